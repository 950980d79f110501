/*
 * Fused yuv -> rgb24 -> 16-bin histograms, computed in registers (AVX2).
 *
 * The arithmetic is that of libswscale's SSSE3 yuv420/422 -> rgb24 converter (the path
 * PyAV's to_ndarray(format="rgb24") takes for 8-bit yuv420p / yuvj420p / yuv422p on
 * x86 with SSSE3), per pixel with 16-bit lanes:
 *
 *   y' = mulhi(8 Y - yoff, ycoef)           mulhi(a, b) = (a * b) >> 16 (pmulhw)
 *   u' = sat(8 U - 1024), v' = sat(8 V - 1024)
 *   R = clip8(sat(y' + mulhi(v', vr)))      sat: signed 16-bit saturation (paddsw)
 *   G = clip8(sat(y' + sat(mulhi(u', ug) + mulhi(v', vg))))
 *   B = clip8(sat(y' + mulhi(u', ub)))
 *
 * with the six coefficients that swscale derives from the colorspace matrix and the
 * range (lambdaflow/ops/yuvrgb.py computes them). No neighbour enters a pixel: a pixel
 * is a pure function of its (Y, U, V), so lambdaflow/ops/yuvrgb.py proves the path per
 * geometry by converting every (Y, U, V) triple both ways (this one and PyAV's own) and
 * the first real frame, byte for byte, before it trusts it.
 *
 * A band of rows is converted into three planar scratch buffers (R, G, B; one band is a
 * few tens of KB: it stays in L1/L2), each written as one contiguous run of
 * rows * width bytes, and each run is counted with a 1-D nibble kernel. Inside a whole
 * 32-pixel block the bytes are in packing order (even pixels, odd pixels per 128-bit
 * lane): a histogram does not care; the last, partial block of a row is put in pixel
 * order so that its valid pixels are a prefix (the next row's store overwrites the rest).
 * The counting makes two passes of four pshufb tables over each run (it is in L1).
 *
 *   yuv_hist(planes, width, height, hshift, vshift, coeffs, bins, out) -> bool
 *       planes: ((buffer, line_size) x 3) Y, U, V; coeffs: (ycoef, yoff, vr, ub, vg, ug);
 *       out: int64, 3 * bins, overwritten. False (out untouched) if bins does not
 *       divide 16 or the CPU has no AVX2.
 *   yuv_rgb(planes, width, height, hshift, vshift, coeffs, out, interleaved=0)
 *       the same conversion, un-permuted, into out: uint8 (3, height, width) planar R, G, B,
 *       or with interleaved=1 (height, width, 3) as rgb24 (what the proof compares with
 *       PyAV's rgb24 row by row: a contiguous compare, no transposed view).
 */
#include "banded.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define LF_X86 1
#endif

typedef struct {
    Py_buffer views[3];
    const uint8_t *data[3];
    Py_ssize_t stride[3];
    int n;
} Planes;

typedef struct {
    int width, height, hshift, vshift;
    int16_t k[6]; /* ycoef, yoff, vr, ub, vg, ug */
} Geometry;

static void planes_release(Planes *p)
{
    for (int i = 0; i < p->n; i++) PyBuffer_Release(&p->views[i]);
    p->n = 0;
}

static int parse_geometry(Geometry *g, int width, int height, int hshift, int vshift,
                          PyObject *coeffs)
{
    if (width < 1 || height < 1 || hshift != 1 || vshift < 0 || vshift > 1) {
        PyErr_Format(PyExc_ValueError, "yuv: bad geometry %dx%d, chroma shifts %d/%d (this "
                     "converter is for yuv420p / yuv422p: shifts 1/1 or 1/0)",
                     width, height, hshift, vshift);
        return -1;
    }
    int k[6];
    if (!PyArg_ParseTuple(coeffs, "iiiiii;coeffs: (ycoef, yoff, vr, ub, vg, ug)", &k[0], &k[1],
                          &k[2], &k[3], &k[4], &k[5]))
        return -1;
    for (int i = 0; i < 6; i++) {
        if (k[i] < -32768 || k[i] > 32767) {
            PyErr_Format(PyExc_ValueError, "coeffs[%d] = %d is not a 16-bit value", i, k[i]);
            return -1;
        }
        g->k[i] = (int16_t)k[i];
    }
    g->width = width;
    g->height = height;
    g->hshift = hshift;
    g->vshift = vshift;
    return 0;
}

/* planes: ((buffer, line_size) x 3); checks each plane holds its rows. */
static int planes_get(PyObject *obj, const Geometry *g, Planes *p)
{
    p->n = 0;
    PyObject *seq = PySequence_Fast(obj, "planes: expected ((buffer, line_size) x 3)");
    if (!seq) return -1;
    if (PySequence_Fast_GET_SIZE(seq) != 3) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "planes: expected 3 planes (Y, U, V)");
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        PyObject *buf;
        Py_ssize_t stride;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i),
                              "On;planes: each plane is (buffer, line_size)", &buf, &stride) ||
            PyObject_GetBuffer(buf, &p->views[i], PyBUF_SIMPLE) < 0) {
            Py_DECREF(seq);
            planes_release(p);
            return -1;
        }
        p->n = i + 1;
        int hs = i ? g->hshift : 0, vs = i ? g->vshift : 0;
        Py_ssize_t rows = ((Py_ssize_t)g->height + (1 << vs) - 1) >> vs;
        Py_ssize_t cols = ((Py_ssize_t)g->width + (1 << hs) - 1) >> hs;
        if (stride < cols || p->views[i].len < (rows - 1) * stride + cols) {
            Py_DECREF(seq);
            planes_release(p);
            PyErr_Format(PyExc_ValueError, "plane %d: %zd bytes with line size %zd cannot "
                         "hold %zd rows of %zd", i, p->views[i].len, stride, rows, cols);
            return -1;
        }
        p->data[i] = p->views[i].buf;
        p->stride[i] = stride;
    }
    Py_DECREF(seq);
    return 0;
}

#ifdef LF_X86
/* Band rows: three planar runs of band * width bytes stay within ~24 KB (L1). */
static int band_rows(int width)
{
    int rows = (8192 / width) & ~1;
    return rows < 2 ? 2 : rows;
}

/* One row's R, G, B (bytes of whole blocks in packing order) into r, g, b (width bytes
 * each, plus up to 31 bytes past the end written with junk). */
__attribute__((target("avx2")))
static void convert_row_avx2(const Geometry *gm, const uint8_t *py, const uint8_t *pu,
                             const uint8_t *pv, uint8_t *r, uint8_t *g, uint8_t *b)
{
    const __m256i ycoef = _mm256_set1_epi16(gm->k[0]), yoff = _mm256_set1_epi16(gm->k[1]);
    const __m256i vr = _mm256_set1_epi16(gm->k[2]), ub = _mm256_set1_epi16(gm->k[3]);
    const __m256i vg = _mm256_set1_epi16(gm->k[4]), ug = _mm256_set1_epi16(gm->k[5]);
    const __m256i c1024 = _mm256_set1_epi16(1024), lowbyte = _mm256_set1_epi16(0x00FF);
    /* packing order (even pixels 0-7 | odd 0-7 per lane) -> pixel order, per lane */
    const __m256i order = _mm256_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15,
                                           0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    int width = gm->width;
    int whole = width / 32;
    for (int blk = 0; blk <= whole; blk++) {
        int x = 32 * blk;
        __m256i yv, uv, vv;
        if (blk < whole) {
            yv = _mm256_loadu_si256((const __m256i *)(py + x));
            uv = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(pu + x / 2)));
            vv = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(pv + x / 2)));
        } else {
            int n = width - x;
            if (n == 0) break;
            uint8_t ty[32] = {0}, tu[16] = {0}, tv[16] = {0};
            memcpy(ty, py + x, (size_t)n);
            memcpy(tu, pu + x / 2, (size_t)(n + 1) / 2);
            memcpy(tv, pv + x / 2, (size_t)(n + 1) / 2);
            yv = _mm256_loadu_si256((const __m256i *)ty);
            uv = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)tu));
            vv = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)tv));
        }
        /* even pixels (low bytes) and odd pixels (high bytes) as 16-bit lanes */
        __m256i ye = _mm256_and_si256(yv, lowbyte), yo = _mm256_srli_epi16(yv, 8);
        ye = _mm256_mulhi_epi16(_mm256_sub_epi16(_mm256_slli_epi16(ye, 3), yoff), ycoef);
        yo = _mm256_mulhi_epi16(_mm256_sub_epi16(_mm256_slli_epi16(yo, 3), yoff), ycoef);
        /* chroma i (natural order after the widening) belongs to pixels 2i and 2i + 1 */
        __m256i u = _mm256_subs_epi16(_mm256_slli_epi16(uv, 3), c1024);
        __m256i v = _mm256_subs_epi16(_mm256_slli_epi16(vv, 3), c1024);
        __m256i rc = _mm256_mulhi_epi16(v, vr), bc = _mm256_mulhi_epi16(u, ub);
        __m256i gc = _mm256_adds_epi16(_mm256_mulhi_epi16(u, ug), _mm256_mulhi_epi16(v, vg));
        __m256i R = _mm256_packus_epi16(_mm256_adds_epi16(ye, rc), _mm256_adds_epi16(yo, rc));
        __m256i G = _mm256_packus_epi16(_mm256_adds_epi16(ye, gc), _mm256_adds_epi16(yo, gc));
        __m256i B = _mm256_packus_epi16(_mm256_adds_epi16(ye, bc), _mm256_adds_epi16(yo, bc));
        if (blk == whole) {
            R = _mm256_shuffle_epi8(R, order);
            G = _mm256_shuffle_epi8(G, order);
            B = _mm256_shuffle_epi8(B, order);
        }
        _mm256_storeu_si256((__m256i *)(r + x), R);
        _mm256_storeu_si256((__m256i *)(g + x), G);
        _mm256_storeu_si256((__m256i *)(b + x), B);
    }
}

/* Converts rows [y0, y0 + rows) into r, g, b: row i at offset i * width. */
__attribute__((target("avx2")))
static void convert_band_avx2(const Geometry *gm, const Planes *p, int y0, int rows,
                              uint8_t *r, uint8_t *g, uint8_t *b)
{
    for (int i = 0; i < rows; i++) {
        int y = y0 + i, cy = y >> gm->vshift;
        Py_ssize_t off = (Py_ssize_t)i * gm->width;
        convert_row_avx2(gm, p->data[0] + y * p->stride[0], p->data[1] + cy * p->stride[1],
                         p->data[2] + cy * p->stride[2], r + off, g + off, b + off);
    }
}

/* nib[k] += bytes of data[0..n) whose high nibble is k: pshufb tables adding 0x01 / 0x10
 * (two nibble values per table, 4-bit fields), flushed into 8-bit lane counters every 15
 * vectors, those into nib with psadbw every 17 flushes (15 * 17 = 255). Two passes over
 * the run (it is in L1), of four tables each, so that tables and counters stay in the 16
 * ymm registers (one pass of eight spills them). */
__attribute__((target("avx2")))
static void count_run_avx2(const uint8_t *data, Py_ssize_t n, uint64_t *nib)
{
    const __m256i low4 = _mm256_set1_epi8(0x0F), zero = _mm256_setzero_si256();
    Py_ssize_t vecs = n / 32;
    for (int half = 0; half < 2; half++) {
        __m256i t[4], wide[8];
        for (int j = 0; j < 4; j++) {
            uint8_t b[32] = {0};
            int k = 2 * (4 * half + j);
            b[k] = b[16 + k] = 0x01;
            b[k + 1] = b[16 + k + 1] = 0x10;
            t[j] = _mm256_loadu_si256((const __m256i *)b);
            wide[2 * j] = wide[2 * j + 1] = zero;
        }
        int flushes = 0;
        for (Py_ssize_t g = 0; g < vecs; g += 15) {
            Py_ssize_t nv = vecs - g < 15 ? vecs - g : 15;
            const uint8_t *p = data + g * 32;
            __m256i a0 = zero, a1 = zero, a2 = zero, a3 = zero;
            for (Py_ssize_t i = 0; i < nv; i++) {
                __m256i v = _mm256_and_si256(
                    _mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)(p + i * 32)), 4), low4);
                a0 = _mm256_add_epi8(a0, _mm256_shuffle_epi8(t[0], v));
                a1 = _mm256_add_epi8(a1, _mm256_shuffle_epi8(t[1], v));
                a2 = _mm256_add_epi8(a2, _mm256_shuffle_epi8(t[2], v));
                a3 = _mm256_add_epi8(a3, _mm256_shuffle_epi8(t[3], v));
            }
            __m256i sums[4] = {a0, a1, a2, a3};
            for (int j = 0; j < 4; j++) {
                wide[2 * j] = _mm256_add_epi8(wide[2 * j], _mm256_and_si256(sums[j], low4));
                wide[2 * j + 1] = _mm256_add_epi8(
                    wide[2 * j + 1], _mm256_and_si256(_mm256_srli_epi16(sums[j], 4), low4));
            }
            if (++flushes == 17 || g + 15 >= vecs) {
                for (int j = 0; j < 8; j++) {
                    __m256i s = _mm256_sad_epu8(wide[j], zero);
                    nib[8 * half + j] +=
                        (uint64_t)_mm256_extract_epi64(s, 0) + (uint64_t)_mm256_extract_epi64(s, 1) +
                        (uint64_t)_mm256_extract_epi64(s, 2) + (uint64_t)_mm256_extract_epi64(s, 3);
                    wide[j] = zero;
                }
                flushes = 0;
            }
        }
    }
    for (Py_ssize_t x = vecs * 32; x < n; x++) nib[data[x] >> 4]++;
}
#endif

/* Scratch of one band: three runs of band * width bytes (+ 32 bytes of store slack). */
static uint8_t *scratch_new(int width, int rows, Py_ssize_t *run)
{
    *run = (Py_ssize_t)rows * width + 64;
    uint8_t *s = NULL;
    if (posix_memalign((void **)&s, 64, (size_t)(3 * *run))) return NULL;
    return s;
}

PyObject *lf_yuv_hist(PyObject *self, PyObject *args)
{
    PyObject *planes, *coeffs, *outobj;
    int width, height, hshift, vshift, bins;
    if (!PyArg_ParseTuple(args, "OiiiiO!iO:yuv_hist", &planes, &width, &height, &hshift,
                          &vshift, &PyTuple_Type, &coeffs, &bins, &outobj))
        return NULL;
    Geometry gm;
    if (parse_geometry(&gm, width, height, hshift, vshift, coeffs) < 0) return NULL;
    if (bins < 1 || bins > 16 || 16 % bins || !lf_have_avx2()) Py_RETURN_FALSE;
#ifdef LF_X86
    Py_buffer out;
    if (PyObject_GetBuffer(outobj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (out.len != (Py_ssize_t)3 * bins * 8) {
        PyBuffer_Release(&out);
        return PyErr_Format(PyExc_ValueError, "out: expected %d int64 items", 3 * bins);
    }
    Planes p;
    if (planes_get(planes, &gm, &p) < 0) {
        PyBuffer_Release(&out);
        return NULL;
    }
    int band = band_rows(width);
    Py_ssize_t run;
    uint8_t *scratch = scratch_new(width, band, &run);
    if (!scratch) {
        planes_release(&p);
        PyBuffer_Release(&out);
        return PyErr_NoMemory();
    }
    uint64_t nib[3][16] = {{0}};
    Py_BEGIN_ALLOW_THREADS
    for (int y = 0; y < height; y += band) {
        int rows = height - y < band ? height - y : band;
        convert_band_avx2(&gm, &p, y, rows, scratch, scratch + run, scratch + 2 * run);
        for (int c = 0; c < 3; c++)
            count_run_avx2(scratch + c * run, (Py_ssize_t)rows * width, nib[c]);
    }
    int64_t *o = out.buf;
    memset(o, 0, (size_t)out.len);
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 16; k++) o[c * bins + k * bins / 16] += (int64_t)nib[c][k];
    Py_END_ALLOW_THREADS
    free(scratch);
    planes_release(&p);
    PyBuffer_Release(&out);
    Py_RETURN_TRUE;
#else
    (void)planes, (void)outobj;
    Py_RETURN_FALSE;
#endif
}

PyObject *lf_yuv_rgb(PyObject *self, PyObject *args)
{
    PyObject *planes, *coeffs, *outobj;
    int width, height, hshift, vshift, interleaved = 0;
    if (!PyArg_ParseTuple(args, "OiiiiO!O|p:yuv_rgb", &planes, &width, &height, &hshift,
                          &vshift, &PyTuple_Type, &coeffs, &outobj, &interleaved))
        return NULL;
    Geometry gm;
    if (parse_geometry(&gm, width, height, hshift, vshift, coeffs) < 0) return NULL;
    if (!lf_have_avx2())
        return PyErr_Format(PyExc_RuntimeError, "yuv_rgb: this CPU has no AVX2");
#ifdef LF_X86
    Py_buffer out;
    if (PyObject_GetBuffer(outobj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    Py_ssize_t plane = (Py_ssize_t)width * height;
    if (out.len != 3 * plane) {
        PyBuffer_Release(&out);
        return PyErr_Format(PyExc_ValueError, "out: expected 3 x %d x %d bytes", height, width);
    }
    Planes p;
    if (planes_get(planes, &gm, &p) < 0) {
        PyBuffer_Release(&out);
        return NULL;
    }
    Py_ssize_t run;
    uint8_t *scratch = scratch_new(width, 1, &run);
    if (!scratch) {
        planes_release(&p);
        PyBuffer_Release(&out);
        return PyErr_NoMemory();
    }
    int whole = width / 32;
    Py_BEGIN_ALLOW_THREADS
    for (int y = 0; y < height; y++) {
        convert_band_avx2(&gm, &p, y, 1, scratch, scratch + run, scratch + 2 * run);
        for (int c = 0; c < 3; c++) {
            const uint8_t *s = scratch + c * run;
            /* pixel x of channel c goes to d[x * step] */
            Py_ssize_t step = interleaved ? 3 : 1;
            uint8_t *d = (uint8_t *)out.buf +
                         (interleaved ? (Py_ssize_t)y * width * 3 + c
                                      : c * plane + (Py_ssize_t)y * width);
            for (int blk = 0; blk < whole; blk++) /* packing order -> pixel order */
                for (int lane = 0; lane < 2; lane++)
                    for (int j = 0; j < 8; j++) {
                        int base = 32 * blk + 16 * lane;
                        d[(base + 2 * j) * step] = s[base + j];
                        d[(base + 2 * j + 1) * step] = s[base + 8 + j];
                    }
            for (int x = 32 * whole; x < width; x++) d[x * step] = s[x];
        }
    }
    Py_END_ALLOW_THREADS
    free(scratch);
    planes_release(&p);
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
#else
    (void)planes, (void)outobj;
    Py_RETURN_NONE;
#endif
}
