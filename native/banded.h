/*
 * Shared between histogram.c (the kernels, the module) and banded.c (banded rgb24
 * conversion through PyAV's own libswscale, histogrammed band by band).
 */
#ifndef LF_BANDED_H
#define LF_BANDED_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Per-channel counts of RGB24 pixels, accumulated over any number of row ranges (the
 * bands of one frame): lf_rgb_start, lf_rgb_count per band, lf_rgb_finish. */
typedef struct {
    _Alignas(32) uint8_t wide[3][16][32]; /* AVX2 8-bit lane counters [phase][nibble] */
    _Alignas(32) uint64_t lanes[3][16][4]; /* `wide` spilled: [channel][nibble], 4 partial
                                            * sums (psadbw's), folded into tot at the end */
    uint64_t tot[3][256]; /* [channel]: high-nibble counts (nibble) or byte-value counts */
    int spills;           /* blocks added to `wide` since it was last spilled */
    int nibble;           /* the AVX2 high-nibble loop: bins divide 16 and the CPU has it */
} lf_rgb_acc;

void lf_rgb_start(lf_rgb_acc *acc, int bins);
void lf_rgb_count(lf_rgb_acc *acc, const uint8_t *data, Py_ssize_t height, Py_ssize_t width,
                  Py_ssize_t stride);
/* out (3 * bins int64) = the counts folded into bins. */
void lf_rgb_finish(lf_rgb_acc *acc, int bins, int64_t *out);

PyObject *lf_banded_new(PyObject *self, PyObject *args);
PyObject *lf_banded_hist(PyObject *self, PyObject *args);
PyObject *lf_banded_convert(PyObject *self, PyObject *args);
/* native/yuv_hist.c: the fused in-register yuv -> rgb24 histograms */
PyObject *lf_yuv_hist(PyObject *self, PyObject *args);
int lf_have_avx2(void);
PyObject *lf_yuv_rgb(PyObject *self, PyObject *args);
#endif
