/*
 * Banded rgb24 conversion: swscale converts a frame in horizontal bands of `band` rows
 * into one small reused buffer (it stays in L2), and each band is histogrammed right
 * away, instead of writing the whole rgb24 frame to memory and reading it back.
 *
 * The swscale used is the one PyAV loaded (function addresses handed over from
 * Python by ctypes, so no FFmpeg headers or libraries are needed to build this). Each
 * band is converted as an image of its own (sws_scale with a context made for that
 * height), so this is exact only where the conversion of a row does not look at rows
 * of other bands: lambdaflow/ops/banded.py decides where that holds (8-bit planar YUV,
 * bands a multiple of the chroma subsampling) and checks the first frame of every
 * geometry against PyAV's own conversion before it trusts it.
 *
 *   banded_new((getContext, setColorspaceDetails, getCoefficients, scale, freeContext),
 *              width, height, src_fmt, dst_fmt, flags, colorspace, src_full, linesize,
 *              band, chroma_shift) -> capsule
 *   banded_hist(conv, planes, bins, out)   planes: ((buffer, line_size), ...) of the
 *              source frame; out: int64, 3 * bins, overwritten; True. False (out
 *              untouched) if a plane's address % 64 is not what banded_convert saw.
 *   banded_convert(conv, planes, out)      the same bands copied into out (height rows
 *              of linesize bytes): what the self-check compares with PyAV; records
 *              each plane's address % 64 (the only alignment banded_hist accepts).
 */
#include "banded.h"

#include <stdlib.h>
#include <string.h>

typedef void *(*get_context_fn)(int, int, int, int, int, int, int, void *, void *,
                                const double *);
typedef int (*set_details_fn)(void *, const int[4], int, const int[4], int, int, int, int);
typedef const int *(*get_coefficients_fn)(int);
typedef int (*scale_fn)(void *, const uint8_t *const[], const int[], int, int,
                        uint8_t *const[], const int[]);
typedef void (*free_context_fn)(void *);

#define LF_MAX_SRC_PLANES 4

typedef struct {
    scale_fn scale;
    free_context_fn free_context;
    void *full;       /* context for bands of `band` rows */
    void *last;       /* context for the last band (height % band rows), or NULL */
    int width, height, band, chroma_shift, linesize;
    int proven_align[LF_MAX_SRC_PLANES]; /* plane address % 64 when banded_convert ran */
    uint8_t *buf;     /* band * linesize bytes, 64-byte aligned */
} Banded;

static const char *CAPSULE = "lambdaflow._native.Banded";

static void banded_free(PyObject *capsule)
{
    Banded *b = PyCapsule_GetPointer(capsule, CAPSULE);
    if (!b) return;
    if (b->full) b->free_context(b->full);
    if (b->last) b->free_context(b->last);
    free(b->buf);
    free(b);
}

static void *make_context(Banded *b, int rows, int src_fmt, int dst_fmt,
                          int flags, int colorspace, int src_full, void **fns)
{
    get_context_fn get_context = (get_context_fn)fns[0];
    set_details_fn set_details = (set_details_fn)fns[1];
    get_coefficients_fn coefficients = (get_coefficients_fn)fns[2];
    void *ctx = get_context(b->width, rows, src_fmt, b->width, rows, dst_fmt, flags, NULL,
                            NULL, NULL);
    if (!ctx) return NULL;
    const int *table = coefficients(colorspace);
    if (set_details(ctx, table, src_full, table, 1, 0, 1 << 16, 1 << 16) < 0) {
        b->free_context(ctx);
        return NULL;
    }
    return ctx;
}

PyObject *lf_banded_new(PyObject *self, PyObject *args)
{
    PyObject *syms;
    int width, height, src_fmt, dst_fmt, flags, colorspace, src_full, linesize, band, shift;
    if (!PyArg_ParseTuple(args, "O!iiiiiiiiii:banded_new", &PyTuple_Type, &syms, &width,
                          &height, &src_fmt, &dst_fmt, &flags, &colorspace, &src_full,
                          &linesize, &band, &shift))
        return NULL;
    if (PyTuple_GET_SIZE(syms) != 5)
        return PyErr_Format(PyExc_ValueError, "symbols: expected 5 function addresses");
    void *fns[5];
    for (int i = 0; i < 5; i++) {
        fns[i] = PyLong_AsVoidPtr(PyTuple_GET_ITEM(syms, i));
        if (!fns[i]) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "symbols: a NULL address");
            return NULL;
        }
    }
    if (width < 1 || height < 1 || shift < 0 || shift > 2 || band < 2 ||
        band % (1 << shift) || linesize < 3 * width)
        return PyErr_Format(PyExc_ValueError,
                            "banded_new: bad geometry %dx%d, band %d, chroma shift %d, "
                            "linesize %d", width, height, band, shift, linesize);
    Banded *b = calloc(1, sizeof(Banded));
    if (!b) return PyErr_NoMemory();
    b->scale = (scale_fn)fns[3];
    b->free_context = (free_context_fn)fns[4];
    b->width = width;
    b->height = height;
    b->band = band < height ? band : height;
    b->chroma_shift = shift;
    b->linesize = linesize;
    for (int i = 0; i < LF_MAX_SRC_PLANES; i++) b->proven_align[i] = -1;
    if (posix_memalign((void **)&b->buf, 64, (size_t)b->band * (size_t)linesize)) {
        free(b);
        return PyErr_NoMemory();
    }
    b->full = make_context(b, b->band, src_fmt, dst_fmt, flags, colorspace, src_full, fns);
    int rest = height % b->band;
    if (b->full && rest)
        b->last = make_context(b, rest, src_fmt, dst_fmt, flags, colorspace, src_full, fns);
    if (!b->full || (rest && !b->last)) {
        if (b->full) b->free_context(b->full);
        free(b->buf);
        free(b);
        return PyErr_Format(PyExc_RuntimeError, "banded_new: swscale refused a %dx%d "
                            "context (pixel format %d -> %d)", width, band, src_fmt, dst_fmt);
    }
    PyObject *capsule = PyCapsule_New(b, CAPSULE, banded_free);
    if (!capsule) {
        b->free_context(b->full);
        if (b->last) b->free_context(b->last);
        free(b->buf);
        free(b);
    }
    return capsule;
}

typedef struct {
    Py_buffer views[LF_MAX_SRC_PLANES];
    const uint8_t *data[LF_MAX_SRC_PLANES];
    int stride[LF_MAX_SRC_PLANES];
    int n;
} Source;

static void source_release(Source *s)
{
    for (int i = 0; i < s->n; i++) PyBuffer_Release(&s->views[i]);
    s->n = 0;
}

/* planes: ((buffer, line_size), ...); checks each plane holds the rows it must. */
static int source_get(PyObject *planes, const Banded *b, Source *s)
{
    s->n = 0;
    PyObject *seq = PySequence_Fast(planes, "planes: expected ((buffer, line_size), ...)");
    if (!seq) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n < 1 || n > LF_MAX_SRC_PLANES) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "planes: expected 1..%d planes, got %zd",
                     LF_MAX_SRC_PLANES, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *obj;
        int stride;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "Oi;planes: each plane is "
                              "(buffer, line_size)", &obj, &stride) ||
            PyObject_GetBuffer(obj, &s->views[i], PyBUF_SIMPLE) < 0) {
            Py_DECREF(seq);
            source_release(s);
            return -1;
        }
        s->n = (int)i + 1;
        int shift = (i == 1 || i == 2) ? b->chroma_shift : 0;
        Py_ssize_t rows = ((Py_ssize_t)b->height + (1 << shift) - 1) >> shift;
        if (stride <= 0 || s->views[i].len < rows * (Py_ssize_t)stride) {
            Py_DECREF(seq);
            source_release(s);
            PyErr_Format(PyExc_ValueError, "plane %zd: %zd bytes, %zd rows of %d needed",
                         i, s->views[i].len, rows, stride);
            return -1;
        }
        s->data[i] = s->views[i].buf;
        s->stride[i] = stride;
    }
    Py_DECREF(seq);
    return 0;
}

/* Convert rows [y, y + rows) into b->buf; returns 0 or -1 (swscale failed). */
static int convert_band(const Banded *b, const Source *s, int y, int rows)
{
    const uint8_t *src[LF_MAX_SRC_PLANES] = {0};
    for (int i = 0; i < s->n; i++) {
        int shift = (i == 1 || i == 2) ? b->chroma_shift : 0;
        src[i] = s->data[i] + (Py_ssize_t)(y >> shift) * s->stride[i];
    }
    uint8_t *dst[4] = {b->buf, NULL, NULL, NULL};
    int dst_stride[4] = {b->linesize, 0, 0, 0};
    void *ctx = rows == b->band ? b->full : b->last;
    return b->scale(ctx, src, s->stride, 0, rows, dst, dst_stride) == rows ? 0 : -1;
}

static Banded *get_banded(PyObject *capsule)
{
    return PyCapsule_GetPointer(capsule, CAPSULE);
}

PyObject *lf_banded_hist(PyObject *self, PyObject *args)
{
    PyObject *capsule, *planes, *outobj;
    int bins;
    if (!PyArg_ParseTuple(args, "OOiO:banded_hist", &capsule, &planes, &bins, &outobj))
        return NULL;
    Banded *b = get_banded(capsule);
    if (!b) return NULL;
    if (bins < 1 || bins > 256) return PyErr_Format(PyExc_ValueError, "bins must be 1..256");
    Py_buffer out;
    if (PyObject_GetBuffer(outobj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (out.len != (Py_ssize_t)3 * bins * 8) {
        PyBuffer_Release(&out);
        return PyErr_Format(PyExc_ValueError, "out: expected %d int64 items", 3 * bins);
    }
    Source s;
    if (source_get(planes, b, &s) < 0) {
        PyBuffer_Release(&out);
        return NULL;
    }
    /* swscale picks some vector paths by address alignment: only what was compared. */
    for (int i = 0; i < s.n; i++)
        if ((int)((uintptr_t)s.data[i] % 64) != b->proven_align[i]) {
            source_release(&s);
            PyBuffer_Release(&out);
            Py_RETURN_FALSE;
        }
    int failed = 0;
    lf_rgb_acc acc;
    lf_rgb_start(&acc, bins);
    Py_BEGIN_ALLOW_THREADS
    for (int y = 0; y < b->height && !failed; y += b->band) {
        int rows = b->height - y < b->band ? b->height - y : b->band;
        failed = convert_band(b, &s, y, rows);
        if (!failed) lf_rgb_count(&acc, b->buf, rows, b->width, b->linesize);
    }
    if (!failed) lf_rgb_finish(&acc, bins, (int64_t *)out.buf);
    Py_END_ALLOW_THREADS
    source_release(&s);
    PyBuffer_Release(&out);
    if (failed) return PyErr_Format(PyExc_RuntimeError, "banded_hist: sws_scale failed");
    Py_RETURN_TRUE;
}

PyObject *lf_banded_convert(PyObject *self, PyObject *args)
{
    PyObject *capsule, *planes, *outobj;
    if (!PyArg_ParseTuple(args, "OOO:banded_convert", &capsule, &planes, &outobj)) return NULL;
    Banded *b = get_banded(capsule);
    if (!b) return NULL;
    Py_buffer out;
    if (PyObject_GetBuffer(outobj, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (out.len != (Py_ssize_t)b->height * b->linesize) {
        PyBuffer_Release(&out);
        return PyErr_Format(PyExc_ValueError, "out: expected %zd bytes",
                            (Py_ssize_t)b->height * b->linesize);
    }
    Source s;
    if (source_get(planes, b, &s) < 0) {
        PyBuffer_Release(&out);
        return NULL;
    }
    int failed = 0;
    for (int i = 0; i < s.n; i++) b->proven_align[i] = (int)((uintptr_t)s.data[i] % 64);
    Py_BEGIN_ALLOW_THREADS
    for (int y = 0; y < b->height && !failed; y += b->band) {
        int rows = b->height - y < b->band ? b->height - y : b->band;
        failed = convert_band(b, &s, y, rows);
        if (!failed)
            memcpy((uint8_t *)out.buf + (Py_ssize_t)y * b->linesize, b->buf,
                   (size_t)rows * (size_t)b->linesize);
    }
    Py_END_ALLOW_THREADS
    source_release(&s);
    PyBuffer_Release(&out);
    if (failed) return PyErr_Format(PyExc_RuntimeError, "banded_convert: sws_scale failed");
    Py_RETURN_NONE;
}
