/*
 * lambdaflow._native: per-channel histograms of 8-bit images, GIL released.
 *
 * Uses only the Python buffer protocol (no numpy headers). Two entry points:
 *
 *   hist_interleaved(data, height, width, stride, channels, bins, out, path="auto")
 *       Pixels of `channels` interleaved bytes (RGB24: channels=3), rows `stride`
 *       bytes apart. out: writable int64 buffer of channels*bins items, overwritten.
 *       path: "auto", "avx2" (RGB24 and bins dividing 16 only) or "scalar".
 *   hist_planes(planes, bins, out, path="auto")
 *       planes: sequence of (data, height, width, stride), one histogram per plane
 *       (YUV420p Y/U/V, or planar RGB). out: int64 buffer of len(planes)*bins items.
 *       path: "auto" (best vector loop), "avx2", "sse2" or "scalar" (tests use it).
 *
 * bin = value * bins / 256 (integer division), bins in 1..256, so the bins split
 * [0, 256) evenly. Every path first counts the 256 byte values (or, on the SIMD path,
 * the 16 high nibbles) and then folds the counts into bins, which is exact for any bins.
 *
 * Speed: the scalar loops spread consecutive increments over 4 sub-histograms so that an
 * increment never waits for the store of the previous one to the same counter. For
 * planes and bins dividing 16, an AVX2 (or SSE2) loop counts nibbles with byte compares
 * into 8-bit lane counters flushed every 255 vectors (no memory traffic per pixel).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "banded.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define LF_X86 1
#endif

/* ---------------------------------------------------------------- scalar kernels */

/* counts[c*256 + v] += occurrences of byte value v in channel c. */
static void count_interleaved(const uint8_t *data, Py_ssize_t height, Py_ssize_t width,
                              Py_ssize_t stride, int channels, uint64_t *counts)
{
    /* 4 sub-histograms per channel, 32-bit counters flushed before they can overflow. */
    uint32_t sub[4 * 4 * 256]; /* channels <= 4 */
    uint64_t since_flush = 0;
    memset(sub, 0, sizeof(sub));
    for (Py_ssize_t y = 0; y < height; y++) {
        const uint8_t *row = data + y * stride;
        Py_ssize_t x = 0;
        if (channels == 3) {
            uint32_t *r0 = sub, *g0 = sub + 256, *b0 = sub + 512;
            uint32_t *r1 = sub + 768, *g1 = sub + 1024, *b1 = sub + 1280;
            uint32_t *r2 = sub + 1536, *g2 = sub + 1792, *b2 = sub + 2048;
            uint32_t *r3 = sub + 2304, *g3 = sub + 2560, *b3 = sub + 2816;
            for (; x + 4 <= width; x += 4, row += 12) {
                r0[row[0]]++; g0[row[1]]++; b0[row[2]]++;
                r1[row[3]]++; g1[row[4]]++; b1[row[5]]++;
                r2[row[6]]++; g2[row[7]]++; b2[row[8]]++;
                r3[row[9]]++; g3[row[10]]++; b3[row[11]]++;
            }
            for (; x < width; x++, row += 3) {
                r0[row[0]]++; g0[row[1]]++; b0[row[2]]++;
            }
        } else {
            for (; x < width; x++, row += channels)
                for (int c = 0; c < channels; c++)
                    sub[((size_t)(x & 3) * channels + c) * 256 + row[c]]++;
        }
        since_flush += (uint64_t)width;
        if (since_flush > 0x3FFFFFFFu || y + 1 == height) {
            for (int k = 0; k < 4; k++)
                for (int c = 0; c < channels; c++)
                    for (int v = 0; v < 256; v++)
                        counts[c * 256 + v] += sub[((size_t)k * channels + c) * 256 + v];
            memset(sub, 0, (size_t)channels * 4 * 256 * sizeof(uint32_t));
            since_flush = 0;
        }
    }
}

/* Single channel, 4 sub-histograms: a dedicated loop (the generic one above indexes). */
static void count_plane_fast(const uint8_t *data, Py_ssize_t height, Py_ssize_t width,
                             Py_ssize_t stride, uint64_t *counts)
{
    uint32_t sub[4][256];
    memset(sub, 0, sizeof(sub));
    uint64_t since_flush = 0;
    for (Py_ssize_t y = 0; y < height; y++) {
        const uint8_t *p = data + y * stride;
        Py_ssize_t x = 0;
        for (; x + 8 <= width; x += 8) {
            uint64_t w;
            memcpy(&w, p + x, 8);
            sub[0][w & 0xFF]++; sub[1][(w >> 8) & 0xFF]++;
            sub[2][(w >> 16) & 0xFF]++; sub[3][(w >> 24) & 0xFF]++;
            sub[0][(w >> 32) & 0xFF]++; sub[1][(w >> 40) & 0xFF]++;
            sub[2][(w >> 48) & 0xFF]++; sub[3][w >> 56]++;
        }
        for (; x < width; x++) sub[x & 3][p[x]]++;
        since_flush += (uint64_t)width;
        if (since_flush > 0x3FFFFFFFu || y + 1 == height) {
            for (int v = 0; v < 256; v++)
                counts[v] += (uint64_t)sub[0][v] + sub[1][v] + sub[2][v] + sub[3][v];
            memset(sub, 0, sizeof(sub));
            since_flush = 0;
        }
    }
}

/* ------------------------------------------------------------ SIMD nibble kernels */
/* nib[k] += number of bytes whose high nibble is k (k = 0..15). */

#ifdef LF_X86
/*
 * SSE2 (any x86-64): bytes are
 * flipped to signed (v ^ 0x80) once per vector; then for k = 1..15 a lane counter adds
 * one where v < 16k (a signed compare against a constant) -- c[k] = #(v < 16k) -- and
 * nibble counts are differences of neighbours. A row is cut into segments of at most
 * 255 vectors; each segment is read twice (it stays in L1), once for k = 1..8 and once
 * for k = 9..15, so the counters of a pass stay in registers. The 8-bit lane counters
 * are summed with psadbw before they can wrap.
 */
#define LF_NIBBLE_KERNEL(NAME, TARGET, VEC, W, LOADU, SET1, SETZERO, XOR, SUB8,            \
                         CMPGT8, SAD, HSUM)                                               \
TARGET static void NAME(const uint8_t *data, Py_ssize_t height, Py_ssize_t width,        \
                        Py_ssize_t stride, uint64_t *nib)                                 \
{                                                                                         \
    const VEC flip = SET1(0x80), zero = SETZERO();                                        \
    VEC acc[16];                                                                          \
    uint64_t below[16] = {0}, all = 0; /* below[k] = #(v < 16k) */                        \
    int run = 0;                                                                          \
    for (int k = 0; k < 16; k++) acc[k] = zero;                                           \
    Py_ssize_t vecs_per_row = width / W;                                                  \
    for (Py_ssize_t y = 0; y < height; y++) {                                             \
        const uint8_t *row = data + y * stride;                                           \
        for (Py_ssize_t seg = 0; seg < vecs_per_row; seg += 255) {                        \
            Py_ssize_t nv = vecs_per_row - seg < 255 ? vecs_per_row - seg : 255;          \
            if (run + nv > 255) {                                                         \
                for (int k = 1; k < 16; k++) { below[k] += HSUM(SAD(acc[k], zero)); acc[k] = zero; } \
                run = 0;                                                                  \
            }                                                                             \
            const uint8_t *p = row + seg * W;                                             \
            VEC a0 = acc[1], a1 = acc[2], a2 = acc[3], a3 = acc[4];                       \
            VEC a4 = acc[5], a5 = acc[6], a6 = acc[7], a7 = acc[8];                       \
            for (Py_ssize_t i = 0; i < nv; i++) {                                         \
                VEC v = XOR(LOADU((const VEC *)(p + i * W)), flip);                       \
                a0 = SUB8(a0, CMPGT8(SET1(16 - 128), v));                                 \
                a1 = SUB8(a1, CMPGT8(SET1(32 - 128), v));                                 \
                a2 = SUB8(a2, CMPGT8(SET1(48 - 128), v));                                 \
                a3 = SUB8(a3, CMPGT8(SET1(64 - 128), v));                                 \
                a4 = SUB8(a4, CMPGT8(SET1(80 - 128), v));                                 \
                a5 = SUB8(a5, CMPGT8(SET1(96 - 128), v));                                 \
                a6 = SUB8(a6, CMPGT8(SET1(112 - 128), v));                                \
                a7 = SUB8(a7, CMPGT8(SET1(128 - 128), v));                                \
            }                                                                             \
            acc[1] = a0; acc[2] = a1; acc[3] = a2; acc[4] = a3;                           \
            acc[5] = a4; acc[6] = a5; acc[7] = a6; acc[8] = a7;                           \
            a0 = acc[9]; a1 = acc[10]; a2 = acc[11]; a3 = acc[12];                        \
            a4 = acc[13]; a5 = acc[14]; a6 = acc[15];                                     \
            for (Py_ssize_t i = 0; i < nv; i++) {                                         \
                VEC v = XOR(LOADU((const VEC *)(p + i * W)), flip);                       \
                a0 = SUB8(a0, CMPGT8(SET1(144 - 128), v));                                \
                a1 = SUB8(a1, CMPGT8(SET1(160 - 128), v));                                \
                a2 = SUB8(a2, CMPGT8(SET1(176 - 128), v));                                \
                a3 = SUB8(a3, CMPGT8(SET1(192 - 128), v));                                \
                a4 = SUB8(a4, CMPGT8(SET1(208 - 128), v));                                \
                a5 = SUB8(a5, CMPGT8(SET1(224 - 128), v));                                \
                a6 = SUB8(a6, CMPGT8(SET1(240 - 128), v));                                \
            }                                                                             \
            acc[9] = a0; acc[10] = a1; acc[11] = a2; acc[12] = a3;                        \
            acc[13] = a4; acc[14] = a5; acc[15] = a6;                                     \
            run += (int)nv;                                                               \
        }                                                                                 \
        for (Py_ssize_t x = vecs_per_row * W; x < width; x++)                             \
            for (int k = (row[x] >> 4) + 1; k < 16; k++) below[k]++;                      \
        all += (uint64_t)width;                                                           \
    }                                                                                     \
    for (int k = 1; k < 16; k++) below[k] += HSUM(SAD(acc[k], zero));                     \
    for (int k = 0; k < 15; k++) nib[k] += below[k + 1] - below[k];                       \
    nib[15] += all - below[15];                                                           \
}

static inline uint64_t hsum128(__m128i s)
{
    return (uint64_t)_mm_cvtsi128_si64(s) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s));
}
#define LF_SET1_128(k) _mm_set1_epi8((char)(k))

/*
 * AVX2 nibble counting with pshufb: table j maps nibble 2j to 0x01 and 2j+1 to 0x10, so
 * one shuffle + one add counts two nibble values in the two 4-bit halves of each lane
 * (8 shuffles per vector for 16 values instead of 15 compares + 15 subtracts). The
 * 4-bit fields are spilled into 8-bit lane counters every 15 vectors (before they
 * wrap), and those into 64-bit totals with psadbw every 17 spills (15 * 17 = 255).
 */
__attribute__((target("avx2")))
static void count_nibbles_avx2(const uint8_t *data, Py_ssize_t height, Py_ssize_t width,
                               Py_ssize_t stride, uint64_t *nib)
{
    const __m256i low4 = _mm256_set1_epi8(0x0F), zero = _mm256_setzero_si256();
    __m256i table[8], wide[16];
    uint64_t tot[16] = {0};
    int spills = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t t[32] = {0};
        t[2 * j] = t[16 + 2 * j] = 0x01;
        t[2 * j + 1] = t[16 + 2 * j + 1] = 0x10;
        table[j] = _mm256_loadu_si256((const __m256i *)t);
    }
    for (int k = 0; k < 16; k++) wide[k] = zero;
    Py_ssize_t vecs_per_row = width / 32;
    for (Py_ssize_t y = 0; y < height; y++) {
        const uint8_t *row = data + y * stride;
        for (Py_ssize_t g = 0; g < vecs_per_row; g += 15) {
            Py_ssize_t nv = vecs_per_row - g < 15 ? vecs_per_row - g : 15;
            const uint8_t *p = row + g * 32;
            __m256i a0 = zero, a1 = zero, a2 = zero, a3 = zero;
            __m256i a4 = zero, a5 = zero, a6 = zero, a7 = zero;
            for (Py_ssize_t i = 0; i < nv; i++) {
                __m256i v = _mm256_and_si256(
                    _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(p + i * 32)), 4), low4);
                a0 = _mm256_add_epi8(a0, _mm256_shuffle_epi8(table[0], v));
                a1 = _mm256_add_epi8(a1, _mm256_shuffle_epi8(table[1], v));
                a2 = _mm256_add_epi8(a2, _mm256_shuffle_epi8(table[2], v));
                a3 = _mm256_add_epi8(a3, _mm256_shuffle_epi8(table[3], v));
                a4 = _mm256_add_epi8(a4, _mm256_shuffle_epi8(table[4], v));
                a5 = _mm256_add_epi8(a5, _mm256_shuffle_epi8(table[5], v));
                a6 = _mm256_add_epi8(a6, _mm256_shuffle_epi8(table[6], v));
                a7 = _mm256_add_epi8(a7, _mm256_shuffle_epi8(table[7], v));
            }
            __m256i acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
            for (int j = 0; j < 8; j++) {
                wide[2 * j] = _mm256_add_epi8(wide[2 * j], _mm256_and_si256(acc[j], low4));
                wide[2 * j + 1] = _mm256_add_epi8(
                    wide[2 * j + 1], _mm256_and_si256(_mm256_srli_epi16(acc[j], 4), low4));
            }
            if (++spills == 17) {
                for (int k = 0; k < 16; k++) {
                    __m256i s = _mm256_sad_epu8(wide[k], zero);
                    tot[k] += (uint64_t)_mm256_extract_epi64(s, 0) + (uint64_t)_mm256_extract_epi64(s, 1)
                            + (uint64_t)_mm256_extract_epi64(s, 2) + (uint64_t)_mm256_extract_epi64(s, 3);
                    wide[k] = zero;
                }
                spills = 0;
            }
        }
        for (Py_ssize_t x = vecs_per_row * 32; x < width; x++) tot[row[x] >> 4]++;
    }
    for (int k = 0; k < 16; k++) {
        __m256i s = _mm256_sad_epu8(wide[k], zero);
        nib[k] += tot[k] + (uint64_t)_mm256_extract_epi64(s, 0) + (uint64_t)_mm256_extract_epi64(s, 1)
                + (uint64_t)_mm256_extract_epi64(s, 2) + (uint64_t)_mm256_extract_epi64(s, 3);
    }
}

/*
 * AVX2 nibble counting of interleaved RGB24 (channels = 3). A row is cut into groups of
 * 96 bytes (32 pixels = 3 vectors); lane j of the group's vector q always holds channel
 * (32q + j) % 3, so each of the three vector phases keeps its own lane counters, and
 * the channels are separated only when the 8-bit counters are spilled: psadbw over the lanes of one channel (a byte mask per phase and
 * channel). The pixels left over at the end of a row (width not a multiple of 32) are
 * counted by one more group that ends at the row's end: it starts on a pixel, so its
 * lanes have the same channels, and the lanes of pixels already counted get index bytes
 * with the high bit set, which pshufb turns into 0 (they count nothing). Rows narrower
 * than 32 pixels are counted one pixel at a time. A vector is counted with pshufb
 * tables that add 0x01 or 0x10 to a byte (two nibble values' 4-bit counters per table,
 * flushed into 8-bit counters every <= 15 vectors), in two passes of four tables (values
 * 0-7, then 8-15) so that tables and counters stay in the 16 ymm registers; one pass of
 * eight tables spilled them (measured: the two-pass loop with the masked tail group is
 * about 1.3x faster at 854x480).
 */
/* Constant vectors of the RGB24 kernel, filled once by init_rgb_tables (module init). */
static uint8_t rgb_tables[8][32];   /* table j: nibble 2j -> 0x01, 2j+1 -> 0x10 */
static uint8_t rgb_masks[3][3][32]; /* [q][c]: 0xFF in the lanes of phase q holding channel c */

static void init_rgb_tables(void)
{
    memset(rgb_tables, 0, sizeof(rgb_tables));
    for (int j = 0; j < 8; j++) {
        rgb_tables[j][2 * j] = rgb_tables[j][16 + 2 * j] = 0x01;
        rgb_tables[j][2 * j + 1] = rgb_tables[j][16 + 2 * j + 1] = 0x10;
    }
    for (int q = 0; q < 3; q++)
        for (int c = 0; c < 3; c++)
            for (int j = 0; j < 32; j++) rgb_masks[q][c][j] = ((32 * q + j) % 3 == c) ? 0xFF : 0;
}

/* The 8-bit lane counters -> acc->lanes (psadbw over each channel's lanes, added as
 * vectors: no extraction here), then zero. */
__attribute__((target("avx2")))
static void spill_rgb_avx2(lf_rgb_acc *acc)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256i *wide = (__m256i *)acc->wide, *lanes = (__m256i *)acc->lanes;
    for (int q = 0; q < 3; q++) {
        __m256i mask[3];
        for (int c = 0; c < 3; c++) mask[c] = _mm256_loadu_si256((const __m256i *)rgb_masks[q][c]);
        for (int k = 0; k < 16; k++) {
            __m256i w = wide[16 * q + k];
            for (int c = 0; c < 3; c++)
                lanes[16 * c + k] = _mm256_add_epi64(
                    lanes[16 * c + k], _mm256_sad_epu8(_mm256_and_si256(w, mask[c]), zero));
            wide[16 * q + k] = zero;
        }
    }
    acc->spills = 0;
}

/* acc->lanes -> acc->tot (the four partial sums of each channel and nibble), then zero. */
static void fold_lanes(lf_rgb_acc *acc)
{
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 16; k++) {
            uint64_t *l = acc->lanes[c][k];
            acc->tot[c][k] += l[0] + l[1] + l[2] + l[3];
            l[0] = l[1] = l[2] = l[3] = 0;
        }
}

/* Counts the rows into acc (wide lane counters, spilled into acc->tot every 17 blocks;
 * lf_rgb_finish spills the rest), so that one frame's bands share the same counters. */
__attribute__((target("avx2")))
static void count_nibbles_rgb_avx2(lf_rgb_acc *acc, const uint8_t *data, Py_ssize_t height,
                                   Py_ssize_t width, Py_ssize_t stride)
{
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i zero = _mm256_setzero_si256();
    __m256i table[8], *wide = (__m256i *)acc->wide;
    for (int j = 0; j < 8; j++) table[j] = _mm256_loadu_si256((const __m256i *)rgb_tables[j]);
    Py_ssize_t groups = (3 * width) / 96;
    Py_ssize_t tail = width - 32 * groups; /* pixels after the last whole group */
    int vtail = tail > 0 && groups > 0;     /* counted by an overlapping, masked group */
    Py_ssize_t block = vtail ? 14 : 15;     /* + the tail group: <= 15 per 4-bit counter */
    __m256i skip[3];                        /* 0x80 in the lanes of pixels already counted */
    for (int q = 0; q < 3; q++) {
        uint8_t m[32];
        for (int j = 0; j < 32; j++) m[j] = (32 * q + j < 3 * (32 - tail)) ? 0x80 : 0;
        skip[q] = _mm256_loadu_si256((const __m256i *)m);
    }
    /* One pass per half of the nibble values (4 tables, 4 counters: all in registers). */
#define LF_COUNT_VECTOR(v)                                              \
    do {                                                                \
        a0 = _mm256_add_epi8(a0, _mm256_shuffle_epi8(t0, v));           \
        a1 = _mm256_add_epi8(a1, _mm256_shuffle_epi8(t1, v));           \
        a2 = _mm256_add_epi8(a2, _mm256_shuffle_epi8(t2, v));           \
        a3 = _mm256_add_epi8(a3, _mm256_shuffle_epi8(t3, v));           \
    } while (0)
    for (Py_ssize_t y = 0; y < height; y++) {
        const uint8_t *row = data + y * stride;
        for (Py_ssize_t g = 0; g < groups; g += block) {
            Py_ssize_t nv = groups - g < block ? groups - g : block;
            int last = g + nv == groups;
            for (int q = 0; q < 3; q++) {
                const uint8_t *p = row + g * 96 + 32 * q;
                for (int half = 0; half < 2; half++) {
                    const __m256i t0 = table[4 * half], t1 = table[4 * half + 1];
                    const __m256i t2 = table[4 * half + 2], t3 = table[4 * half + 3];
                    __m256i a0 = zero, a1 = zero, a2 = zero, a3 = zero;
                    for (Py_ssize_t i = 0; i < nv; i++) {
                        __m256i v = _mm256_and_si256(
                            _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(p + i * 96)), 4),
                            low4);
                        LF_COUNT_VECTOR(v);
                    }
                    if (last && vtail) {
                        const uint8_t *t = row + 3 * (width - 32) + 32 * q;
                        __m256i v = _mm256_or_si256(
                            _mm256_and_si256(
                                _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)t), 4), low4),
                            skip[q]);
                        LF_COUNT_VECTOR(v);
                    }
                    __m256i sums[4] = {a0, a1, a2, a3};
                    for (int j = 0; j < 4; j++) {
                        int k = 2 * (4 * half + j);
                        __m256i *w = wide + 16 * q + k;
                        w[0] = _mm256_add_epi8(w[0], _mm256_and_si256(sums[j], low4));
                        w[1] = _mm256_add_epi8(
                            w[1], _mm256_and_si256(_mm256_srli_epi16(sums[j], 4), low4));
                    }
                }
            }
            if (++acc->spills == 17) spill_rgb_avx2(acc);
        }
        if (!vtail)
            for (Py_ssize_t x = groups * 32; x < width; x++)
                for (int c = 0; c < 3; c++) acc->tot[c][row[3 * x + c] >> 4]++;
    }
#undef LF_COUNT_VECTOR
}

LF_NIBBLE_KERNEL(count_nibbles_sse2, , __m128i, 16,
                 _mm_loadu_si128, LF_SET1_128, _mm_setzero_si128, _mm_xor_si128,
                 _mm_sub_epi8, _mm_cmpgt_epi8, _mm_sad_epu8, hsum128)
#endif

/* Whether this CPU runs AVX2 (cached; banded.h: yuv_hist.c asks too). */
int lf_have_avx2(void)
{
#ifdef LF_X86
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return cached;
#else
    return 0;
#endif
}

static const char *simd_name(void)
{
#ifdef LF_X86
    return lf_have_avx2() ? "avx2" : "sse2";
#else
    return "scalar";
#endif
}

/* -------------------------------------------------------------- argument helpers */

static int get_image(PyObject *obj, Py_buffer *view, Py_ssize_t height, Py_ssize_t width,
                     Py_ssize_t stride, int channels, const char *what)
{
    if (height < 0 || width < 0) {
        PyErr_Format(PyExc_ValueError, "%s: height and width must be >= 0, got %zd x %zd",
                     what, height, width);
        return -1;
    }
    if (stride < width * channels) {
        PyErr_Format(PyExc_ValueError,
                     "%s: stride %zd is smaller than a row (%zd pixels x %d bytes)",
                     what, stride, width, channels);
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        if (PyObject_GetBuffer(obj, view, PyBUF_ND | PyBUF_C_CONTIGUOUS) < 0) {
            PyErr_Format(PyExc_TypeError, "%s: expected a contiguous bytes-like object "
                         "(bytes, numpy array, av VideoPlane), got %.80s",
                         what, Py_TYPE(obj)->tp_name);
            return -1;
        }
    }
    Py_ssize_t need = height == 0 ? 0 : (height - 1) * stride + width * channels;
    if (view->len < need) {
        PyErr_Format(PyExc_ValueError,
                     "%s: buffer holds %zd bytes but %zd rows of stride %zd need %zd",
                     what, view->len, height, stride, need);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int get_out(PyObject *obj, Py_buffer *view, Py_ssize_t items)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError,
                        "out: expected a writable C-contiguous int64 buffer (numpy int64 array)");
        return -1;
    }
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (view->itemsize != 8 || !(strcmp(f, "q") == 0 || strcmp(f, "l") == 0)) {
        PyErr_Format(PyExc_TypeError, "out: expected int64 items, got format '%s' "
                     "(itemsize %zd)", view->format ? view->format : "B", view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    if (view->len / 8 != items) {
        PyErr_Format(PyExc_ValueError, "out: expected %zd int64 items, got %zd",
                     items, view->len / 8);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static void fold256(const uint64_t *counts, int bins, int64_t *out)
{
    memset(out, 0, (size_t)bins * sizeof(int64_t));
    for (int v = 0; v < 256; v++) out[(v * bins) >> 8] += (int64_t)counts[v];
}

/* ------------------------------------------- RGB24 counting shared with banded.c */

void lf_rgb_start(lf_rgb_acc *acc, int bins)
{
    memset(acc, 0, sizeof(*acc));
    acc->nibble = strcmp(simd_name(), "avx2") == 0 && bins <= 16 && (16 % bins) == 0;
}

void lf_rgb_count(lf_rgb_acc *acc, const uint8_t *data, Py_ssize_t height, Py_ssize_t width,
                  Py_ssize_t stride)
{
#ifdef LF_X86
    if (acc->nibble) {
        count_nibbles_rgb_avx2(acc, data, height, width, stride);
        return;
    }
#endif
    count_interleaved(data, height, width, stride, 3, &acc->tot[0][0]);
}

void lf_rgb_finish(lf_rgb_acc *acc, int bins, int64_t *out)
{
    for (int c = 0; c < 3; c++) {
        int64_t *o = out + (Py_ssize_t)c * bins;
        if (acc->nibble) {
#ifdef LF_X86
            if (c == 0) {
                spill_rgb_avx2(acc);
                fold_lanes(acc);
            }
#endif
            memset(o, 0, (size_t)bins * sizeof(int64_t));
            for (int k = 0; k < 16; k++) o[k * bins / 16] += (int64_t)acc->tot[c][k];
        } else
            fold256(acc->tot[c], bins, o);
    }
}

/* ------------------------------------------------------------------ entry points */

static PyObject *hist_interleaved(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"data", "height", "width", "stride", "channels", "bins", "out",
                             "path", NULL};
    PyObject *data, *outobj;
    Py_ssize_t height, width, stride;
    int channels, bins;
    const char *path = "auto";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OnnniiO|s:hist_interleaved", kwlist, &data,
                                     &height, &width, &stride, &channels, &bins, &outobj, &path))
        return NULL;
    int vector; /* 1: the AVX2 RGB24 nibble loop */
    if (strcmp(path, "auto") == 0) vector = strcmp(simd_name(), "avx2") == 0;
    else if (strcmp(path, "scalar") == 0) vector = 0;
    else if (strcmp(path, "avx2") == 0 && strcmp(simd_name(), "avx2") == 0) vector = 1;
    else {
        PyErr_Format(PyExc_ValueError, "path must be 'auto', 'scalar' or 'avx2' where this "
                     "CPU has it (best here: '%s'), got '%s'", simd_name(), path);
        return NULL;
    }
    if (channels < 1 || channels > 4) {
        PyErr_Format(PyExc_ValueError, "channels must be 1..4, got %d", channels);
        return NULL;
    }
    if (bins < 1 || bins > 256) {
        PyErr_Format(PyExc_ValueError, "bins must be 1..256, got %d", bins);
        return NULL;
    }
    Py_buffer img, out;
    if (get_image(data, &img, height, width, stride, channels, "data") < 0) return NULL;
    if (get_out(outobj, &out, (Py_ssize_t)channels * bins) < 0) {
        PyBuffer_Release(&img);
        return NULL;
    }
    uint64_t counts[4 * 256];
    memset(counts, 0, sizeof(counts));
    int rgb = channels == 3 && vector; /* the RGB24 accumulator (AVX2 where bins allow) */
    Py_BEGIN_ALLOW_THREADS
    if (rgb) {
        lf_rgb_acc acc;
        lf_rgb_start(&acc, bins);
        lf_rgb_count(&acc, (const uint8_t *)img.buf, height, width, stride);
        lf_rgb_finish(&acc, bins, (int64_t *)out.buf);
    } else {
        if (channels == 1)
            count_plane_fast((const uint8_t *)img.buf, height, width, stride, counts);
        else
            count_interleaved((const uint8_t *)img.buf, height, width, stride, channels, counts);
        for (int c = 0; c < channels; c++)
            fold256(counts + c * 256, bins, (int64_t *)out.buf + (Py_ssize_t)c * bins);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&img);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

#define LF_MAX_PLANES 8

static PyObject *hist_planes(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"planes", "bins", "out", "path", NULL};
    PyObject *planes, *outobj;
    int bins;
    const char *path = "auto";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OiO|s:hist_planes", kwlist, &planes,
                                     &bins, &outobj, &path))
        return NULL;
    int kernel; /* 0 scalar, 1 sse2, 2 avx2 */
    if (strcmp(path, "auto") == 0) kernel = strcmp(simd_name(), "avx2") == 0 ? 2
                                          : strcmp(simd_name(), "sse2") == 0 ? 1 : 0;
    else if (strcmp(path, "scalar") == 0) kernel = 0;
    else if (strcmp(path, "sse2") == 0 && strcmp(simd_name(), "scalar") != 0) kernel = 1;
    else if (strcmp(path, "avx2") == 0 && strcmp(simd_name(), "avx2") == 0) kernel = 2;
    else {
        PyErr_Format(PyExc_ValueError, "path must be 'auto', 'scalar' or a vector path this "
                     "CPU has (best here: '%s'), got '%s'", simd_name(), path);
        return NULL;
    }
    if (bins < 1 || bins > 256) {
        PyErr_Format(PyExc_ValueError, "bins must be 1..256, got %d", bins);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(planes, "planes: expected a sequence of "
                                            "(data, height, width, stride) tuples");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > LF_MAX_PLANES) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "planes: expected 1..%d planes, got %zd",
                            LF_MAX_PLANES, n);
    }
    Py_buffer views[LF_MAX_PLANES], out;
    Py_ssize_t hs[LF_MAX_PLANES], ws[LF_MAX_PLANES], ss[LF_MAX_PLANES];
    Py_ssize_t got = 0;
    for (; got < n; got++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, got), *data;
        if (!PyArg_ParseTuple(item, "Onnn;planes: each plane is (data, height, width, stride)",
                              &data, &hs[got], &ws[got], &ss[got]))
            goto fail;
        char what[32];
        snprintf(what, sizeof(what), "plane %zd", got);
        if (get_image(data, &views[got], hs[got], ws[got], ss[got], 1, what) < 0) goto fail;
    }
    if (get_out(outobj, &out, n * bins) < 0) goto fail;
    int nibble = kernel > 0 && bins <= 16 && (16 % bins) == 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const uint8_t *p = (const uint8_t *)views[i].buf;
        int64_t *o = (int64_t *)out.buf + i * bins;
        if (nibble) {
            uint64_t nib[16] = {0};
#ifdef LF_X86
            if (kernel == 2) count_nibbles_avx2(p, hs[i], ws[i], ss[i], nib);
            else count_nibbles_sse2(p, hs[i], ws[i], ss[i], nib);
#endif
            memset(o, 0, (size_t)bins * sizeof(int64_t));
            for (int k = 0; k < 16; k++) o[k * bins / 16] += (int64_t)nib[k];
        } else {
            uint64_t counts[256] = {0};
            count_plane_fast(p, hs[i], ws[i], ss[i], counts);
            fold256(counts, bins, o);
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&out);
    for (Py_ssize_t i = 0; i < n; i++) PyBuffer_Release(&views[i]);
    Py_DECREF(seq);
    Py_RETURN_NONE;
fail:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
    Py_DECREF(seq);
    return NULL;
}

static PyObject *simd(PyObject *self, PyObject *unused)
{
    return PyUnicode_FromString(simd_name());
}

static PyMethodDef methods[] = {
    {"hist_interleaved", (PyCFunction)(void (*)(void))hist_interleaved, METH_VARARGS | METH_KEYWORDS,
     "hist_interleaved(data, height, width, stride, channels, bins, out, path='auto')\n--\n\n"
     "Per-channel histograms of interleaved 8-bit pixels into out (int64, channels*bins)."},
    {"hist_planes", (PyCFunction)(void (*)(void))hist_planes, METH_VARARGS | METH_KEYWORDS,
     "hist_planes(planes, bins, out, path='auto')\n--\n\n"
     "One histogram per (data, height, width, stride) plane into out (int64, n*bins)."},
    {"banded_new", (PyCFunction)(void (*)(void))lf_banded_new, METH_VARARGS,
     "banded_new(symbols, width, height, src_fmt, dst_fmt, flags, colorspace, src_full, "
     "linesize, band, chroma_shift)\n--\n\nA banded swscale rgb24 converter (a capsule)."},
    {"banded_hist", (PyCFunction)(void (*)(void))lf_banded_hist, METH_VARARGS,
     "banded_hist(conv, planes, bins, out)\n--\n\nConvert band by band, histogram each band."},
    {"banded_convert", (PyCFunction)(void (*)(void))lf_banded_convert, METH_VARARGS,
     "banded_convert(conv, planes, out)\n--\n\nThe same conversion into out (height*linesize)."},
    {"yuv_hist", (PyCFunction)(void (*)(void))lf_yuv_hist, METH_VARARGS,
     "yuv_hist(planes, width, height, hshift, vshift, coeffs, bins, out)\n--\n\n"
     "Fused yuv -> rgb24 (swscale's SSSE3 arithmetic) -> histograms; False if not here."},
    {"yuv_rgb", (PyCFunction)(void (*)(void))lf_yuv_rgb, METH_VARARGS,
     "yuv_rgb(planes, width, height, hshift, vshift, coeffs, out, interleaved=0)\n--\n\n"
     "The same conversion into out: uint8 (3, height, width) planar R, G, B, or rgb24 order."},
    {"simd", simd, METH_NOARGS, "simd()\n--\n\nThe vector path hist_planes uses: avx2, sse2 or scalar."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native",
    "Per-channel 8-bit histograms (bin = value * bins // 256), GIL released.", -1, methods,
};

PyMODINIT_FUNC PyInit__native(void)
{
    init_rgb_tables();
    return PyModule_Create(&module);
}
