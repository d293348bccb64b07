# The serving fast paths' checks of what the user passed (fastwlr.score, Scorer, score_topk of one
# request): a buffer request and a few comparisons in place of validation's numpy calls. Each says
# only "this is the common case" or "it is not"; the full path decides every error message.
from cpython.buffer cimport Py_buffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT
from cpython.exc cimport PyErr_Clear
from libc.math cimport fabs, INFINITY

from ._math cimport coef_f32_fill, f32_padded, F32_PAD

cdef extern from "Python.h":
    # without Cython's "except -1": a refused request (not contiguous, ...) is a "no", not an error
    int PyObject_GetBuffer(object obj, Py_buffer* view, int flags)


cdef inline int buffer_kind(const Py_buffer* view) noexcept:
    """4 (float32) or 8 (float64) for a native, aligned float buffer; 0 otherwise."""
    if view.format == NULL or view.format[0] == 0 or view.format[1] != 0:
        return 0
    if view.format[0] == b'f' and view.itemsize == 4 and (<size_t>view.buf) % 4 == 0:
        return 4
    if view.format[0] == b'd' and view.itemsize == 8 and (<size_t>view.buf) % 8 == 0:
        return 8
    return 0


cdef inline bint as_finite_intercept(object intercept, double* b):
    """A finite float, or an int that float64 holds exactly, into b."""
    if type(intercept) is float:
        b[0] = intercept
    elif type(intercept) is int and -(1 << 53) <= intercept <= (1 << 53):
        b[0] = intercept
    else:
        return False
    return fabs(b[0]) < INFINITY


cdef inline bint all_finite(const double* w, Py_ssize_t d) noexcept nogil:
    cdef double v = 0.0
    cdef Py_ssize_t j
    for j in range(d):
        v += w[j] * 0.0   # NaN if any entry is NaN or inf
    return v == 0.0


cdef inline bint model_buffer(object coef, object intercept, object ndarray, Py_buffer* cv, double* b):
    """The per-call model of ``score`` and ``score_topk`` in the common case: True, with coef's
    buffer held in cv (the caller releases it) and the intercept in b, when coef is an exact
    ``ndarray`` (numpy's type, passed in), 1-D float64, C-contiguous, finite, and the intercept a
    finite float or int; False, holding nothing, otherwise."""
    if type(coef) is not ndarray or not as_finite_intercept(intercept, b):
        return False
    if PyObject_GetBuffer(coef, cv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0:
        PyErr_Clear()
        return False
    if buffer_kind(cv) != 8 or cv.ndim != 1 or not all_finite(<const double*>cv.buf, cv.shape[0]):
        PyBuffer_Release(cv)
        return False
    return True


cdef inline object coef_f32(const double* w, Py_ssize_t d):
    """The model's float32 coefficients for float32 rows (zero-padded, in a bytearray), or None:
    float32 rows take the float64 path (the rule is coef_f32_fill's, _math.pxd)."""
    cdef bytearray buf
    if d == 0:
        return None
    buf = bytearray((f32_padded(d) + 2 * F32_PAD) * 4)   # zeros around: see FASTWLR_F32_PAD
    if not coef_f32_fill(w, d, <float*><char*>buf + F32_PAD):
        return None
    return buf


cdef inline const float* f32_ptr(object coef32):
    cdef bytearray buf
    if coef32 is None:
        return NULL
    buf = coef32
    return <const float*><char*>buf + F32_PAD
