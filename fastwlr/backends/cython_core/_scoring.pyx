# cython: language_level=3
"""Batch scoring: z = X @ coef + b, optionally transformed to odds or probability.

float64 rows are summed in float64; float32 rows against the model's float32 coefficients in
short float32 chains added up in float64 (``dot_score``, _math.pxd), or in float64 when the model
has no float32 copy (``coef_f32``, _fastpath.pxd). z and the transforms are float64.

Parallel over blocks of rows with OpenMP; each row's sum has a fixed order, so results are identical
for any thread count. No temporaries: a block's log-odds wait on the stack for the vectorised
output transform, then go to ``out``.

Both kernels return the number of rows whose log-odds were not finite. An inf feature always
makes its row's z inf or NaN (inf * w is +-inf, inf * 0 is NaN), so a count of 0 proves X holds
no inf and the public layer can skip a separate pass over X looking for one.
"""
from libc.math cimport fabs, INFINITY
from cython.parallel cimport prange
from cpython.buffer cimport Py_buffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE
from cpython.exc cimport PyErr_Clear

from ._fastpath cimport PyObject_GetBuffer, buffer_kind, model_buffer, coef_f32, f32_ptr

from ._topk cimport request_topk

import numpy as np

from ._math cimport (Output, LOG_ODDS, ODDS, PROBA, feature_t, out_t, index_t, apply_output,
                     transform_block, dot_score, dot_score4, dot_score8, redo_nonfinite, dot_csr, madd,
                     F32_CHUNK as _F32_CHUNK, F32_MIN_D as _F32_MIN_D, DENSE_PREFETCH_BYTES, PREFETCH_MIN_BYTES,
                     prefetch_span, dot_csr_prefetch)

# terms per lane of a float32 chain, and the fewest columns summed that way (tests compare them
# with fastwlr.backends._contract's)
F32_CHUNK = _F32_CHUNK
F32_MIN_D = _F32_MIN_D


# Below this many multiply-adds, starting threads costs more than it saves.
cdef Py_ssize_t PARALLEL_MIN_WORK = 1 << 15

# Rows per block of the dense kernel: the log-odds of a block wait on the stack (2 KB) for the
# vectorised output transform. The unit of work of the threads too (static schedule).
DEF BLOCK_ROWS = 256


cdef inline Py_ssize_t score_rows(const feature_t* X, Py_ssize_t d, const double* coef, const float* coef32,
                                  double intercept, int output, out_t* out, Py_ssize_t i0, Py_ssize_t m,
                                  const char* base, Py_ssize_t end_bytes) noexcept nogil:
    # Rows [i0, i0 + m), m <= BLOCK_ROWS: log-odds eight rows at a time into a block on the stack,
    # the output transform over the whole block (vectorised), then one converting copy to out.
    # Returns the count of non-finite log-odds. end_bytes: X's size in bytes, the end of the
    # prefetch, or 0: no prefetch (prefetch_end).
    cdef double z[BLOCK_ROWS]
    cdef Py_ssize_t r = 0, row_bytes = d * sizeof(feature_t), n_nonfinite = 0
    cdef const feature_t* x = X + i0 * d
    while r + 8 <= m:
        # prefetch each cache line that starts in these rows' byte range shifted 4 KB ahead:
        # every line once, none past the end of X
        if end_bytes:
            prefetch_span(base, (i0 + r) * row_bytes + DENSE_PREFETCH_BYTES,
                          min((i0 + r + 8) * row_bytes + DENSE_PREFETCH_BYTES, end_bytes))
        dot_score8(x + r * d, coef, coef32, d, &z[r])
        r += 8
    if r + 4 <= m:
        dot_score4(x + r * d, coef, coef32, d, &z[r])
        r += 4
    while r < m:
        z[r] = dot_score(x + r * d, coef, coef32, d)
        r += 1
    for r in range(m):
        z[r] = z[r] + intercept
        n_nonfinite += not (fabs(z[r]) < INFINITY)   # inf or NaN (NaN compares false)
    if n_nonfinite:   # maybe a float32 sum that overflowed (dot_score8, dot_score4)
        n_nonfinite = redo_nonfinite(x, coef, coef32, d, intercept, z, m)
    transform_block(z, m, output)
    for r in range(m):
        out[i0 + r] = <out_t>z[r]
    return n_nonfinite


cdef inline Py_ssize_t prefetch_end(Py_ssize_t total_bytes, int n_threads) noexcept nogil:
    # score_rows's end_bytes: prefetch only when each thread's share of X is beyond
    # PREFETCH_MIN_BYTES (past L2 and then some). Below, the hardware prefetcher keeps up and the prefetch
    # loop only takes load slots: two threads, 10,000 x 64 float32 (1.28 MB each) were 5-19 % faster
    # without it (benchmarks/experiments/build_ab.py); one thread on 2.5 MB mostly slower.
    return total_bytes if total_bytes > PREFETCH_MIN_BYTES * <Py_ssize_t>n_threads else 0


cdef Py_ssize_t score_dense_rows(const feature_t* X, Py_ssize_t n, Py_ssize_t d, const double* coef,
                                 const float* coef32, double intercept, int output, out_t* out,
                                 int n_threads) noexcept nogil:
    """The dense kernel on raw pointers (score_dense and DenseScorer): returns the count of
    non-finite log-odds. coef32: coef_f32's copy for float32 rows (NULL: the float64 path)."""
    cdef Py_ssize_t blk, i, t, lo, hi, end, n_nonfinite = 0
    cdef Py_ssize_t n_blocks = (n + BLOCK_ROWS - 1) // BLOCK_ROWS
    cdef Py_ssize_t total = n * d * sizeof(feature_t)
    cdef double v
    if n == 0:
        return 0
    if d == 0:
        v = apply_output(intercept, output)
        for i in range(n):
            out[i] = <out_t>v
        return 0 if fabs(intercept) < INFINITY else n
    if n_threads <= 1 or n * (d + 1) <= PARALLEL_MIN_WORK or n_blocks == 1:
        # no parallel region at all: entering one costs ~1 us even when it runs on one thread
        end = prefetch_end(total, 1)
        for blk in range(n_blocks):
            n_nonfinite += score_rows(X, d, coef, coef32, intercept, output, out, blk * BLOCK_ROWS,
                                      min(BLOCK_ROWS, n - blk * BLOCK_ROWS), <const char*>X, end)
        return n_nonfinite
    # each thread an equal share of rows (whole blocks of 256 left 10,000 rows split 5,120 / 4,880),
    # in blocks of BLOCK_ROWS from its first row
    end = prefetch_end(total, n_threads)
    for t in prange(n_threads, schedule="static", num_threads=n_threads):
        lo = n * t // n_threads
        hi = n * (t + 1) // n_threads
        while lo < hi:
            n_nonfinite += score_rows(X, d, coef, coef32, intercept, output, out, lo, min(BLOCK_ROWS, hi - lo),
                                      <const char*>X, end)
            lo = lo + BLOCK_ROWS
    return n_nonfinite


def score_dense(const feature_t[:, ::1] X, const double[::1] coef, double intercept, int output,
                out_t[::1] out, int n_threads):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], r
    if n == 0:
        return 0
    # &X[0, 0] is invalid when d == 0: the kernel does not read X then
    cdef const feature_t* x = &X[0, 0] if d > 0 else NULL
    cdef const double* w = &coef[0] if d > 0 else NULL
    coef32 = coef_f32(w, d) if feature_t is float else None
    cdef const float* w32 = f32_ptr(coef32)
    with nogil:
        r = score_dense_rows(x, n, d, w, w32, intercept, output, &out[0], n_threads)
    return r


# ---------------------------------------------------------------------------------------------
# The serving fast path: a prepared model scores the common case (an exact numpy ndarray, 2-D,
# C-contiguous, aligned, native float32/float64, the model's width) with a buffer request, one
# allocation and the kernel: no memoryview, no numpy call besides np.empty. Anything else, and a
# batch with a non-finite log-odds, returns None: the caller's full path then checks, scores and
# reports as always, so the fast path never decides an error message.

cdef object _ndarray = np.ndarray
cdef object _empty = np.empty
cdef object _F32 = np.dtype(np.float32)
cdef object _F64 = np.dtype(np.float64)

# below this many element operations the GIL is kept (releasing and retaking it costs ~0.1 us)
cdef Py_ssize_t NOGIL_MIN_WORK = 1 << 14


cdef class DenseScorer:
    """``DenseScorer(coef, intercept, output, out_size, threads_for, call_ended)(X)``: the scores of X as
    ``score_dense`` computes them, or None when X is not the common case (see above); ``.topk(X, k)``:
    one request's top k (``Scorer.topk``).

    coef: float64, C-contiguous, finite, read-only (the caller's prepared copy, kept alive here).
    out_size: 4 or 8 (the result's itemsize), 0 for the rule "odds float64, else X's precision".
    The float32 coefficients for float32 rows are made once, here.
    Threads: one below PARALLEL_MIN_WORK element operations (the kernel would not start more),
    else ``threads_for(work)``, and then ``call_ended(threads)`` after the kernel."""
    cdef object coef, coef32
    cdef const double* w
    cdef Py_ssize_t d
    cdef double intercept
    cdef int output, out_size
    cdef object threads_for, call_ended

    def __cinit__(self, const double[::1] coef, double intercept, int output, int out_size, threads_for,
                  call_ended):
        self.coef = coef.base
        self.d = coef.shape[0]
        self.w = &coef[0] if self.d > 0 else NULL
        self.coef32 = coef_f32(self.w, self.d)
        self.intercept = intercept
        self.output = output
        self.out_size = out_size
        self.threads_for = threads_for
        self.call_ended = call_ended

    def __call__(self, X):
        return fast_dense(X, self.w, self.d, self.coef32, self.intercept, self.output, self.out_size,
                          self.threads_for, self.call_ended)

    def topk(self, X, k):
        """One request's top k by this model (``_topk.score_topk_fast``'s result), or None: the
        model's checks and float32 copy are not made again for each request."""
        return request_topk(X, k, self.w, self.d, self.coef32, self.intercept, self.output, self.threads_for,
                            self.call_ended)


def score_fast(X, coef, intercept, int output, threads_for, call_ended):
    """``score(X, coef, intercept, output=...)`` with every default for the common case: coef an
    exact ndarray, 1-D float64, C-contiguous, finite, of X's width; intercept a finite float or
    int. The scores, or None (then the caller's full path checks, scores and reports)."""
    cdef Py_buffer cv
    cdef double b = 0.0   # set by model_buffer before any use
    if type(X) is not _ndarray or not model_buffer(coef, intercept, _ndarray, &cv, &b):
        return None
    try:
        return fast_dense(X, <const double*>cv.buf, cv.shape[0], _PER_CALL, b, output, 0, threads_for, call_ended)
    finally:
        PyBuffer_Release(&cv)


# fast_dense's coef32 when the caller has not prepared one: made for float32 X only
cdef object _PER_CALL = object()


cdef object fast_dense(X, const double* w, Py_ssize_t d, coef32, double intercept, int output, int out_size,
                       threads_for, call_ended):
    """The fast path's checks of X, the allocation and the kernel (see above). coef32: coef_f32's
    result, or _PER_CALL. threads_for and call_ended: as DenseScorer's."""
    cdef Py_buffer view
    cdef Py_ssize_t n, work, n_nonfinite = 0
    cdef int kind, size, nt
    if type(X) is not _ndarray:
        return None
    if PyObject_GetBuffer(X, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0:
        PyErr_Clear()
        return None
    try:
        kind = buffer_kind(&view)
        if kind == 0 or view.ndim != 2 or view.shape[1] != d:
            return None
        n = view.shape[0]
        size = out_size if out_size else (8 if output == ODDS else kind)
        out = _empty(n, _F64 if size == 8 else _F32)
        if n == 0:
            return out
        work = n * (d + 1)
        nt = 1 if work <= PARALLEL_MIN_WORK else threads_for(work)
        if coef32 is _PER_CALL:
            coef32 = coef_f32(w, d) if kind == 4 else None
        n_nonfinite = run_dense(view.buf, kind, n, d, w, f32_ptr(coef32), intercept, output, out, size, nt,
                                work >= NOGIL_MIN_WORK)
        if work > PARALLEL_MIN_WORK:
            call_ended(nt)
    finally:
        PyBuffer_Release(&view)
    return None if n_nonfinite else out


cdef Py_ssize_t run_dense(void* X, int kind, Py_ssize_t n, Py_ssize_t d, const double* w, const float* w32,
                          double b, int output, object out, int size, int nt, bint release):
    cdef Py_buffer ov
    cdef Py_ssize_t r
    if PyObject_GetBuffer(out, &ov, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) != 0:   # our own new array
        raise MemoryError("could not access the scores' buffer")
    try:
        if release:
            with nogil:
                r = dense_dispatch(X, kind, n, d, w, w32, b, output, ov.buf, size, nt)
        else:
            r = dense_dispatch(X, kind, n, d, w, w32, b, output, ov.buf, size, nt)
    finally:
        PyBuffer_Release(&ov)
    return r


cdef inline Py_ssize_t dense_dispatch(void* X, int kind, Py_ssize_t n, Py_ssize_t d, const double* w,
                                      const float* w32, double b, int output, void* out, int size,
                                      int nt) noexcept nogil:
    if kind == 4:
        if size == 4:
            return score_dense_rows(<const float*>X, n, d, w, w32, b, output, <float*>out, nt)
        return score_dense_rows(<const float*>X, n, d, w, w32, b, output, <double*>out, nt)
    if size == 4:
        return score_dense_rows(<const double*>X, n, d, w, NULL, b, output, <float*>out, nt)
    return score_dense_rows(<const double*>X, n, d, w, NULL, b, output, <double*>out, nt)


cdef inline Py_ssize_t score_csr_row(const feature_t* data, const index_t* indices, const index_t* indptr,
                                     Py_ssize_t i, const double* coef, double intercept, int output, out_t* out,
                                     Py_ssize_t nnz) noexcept nogil:
    # row i's output into out[i]; 1 if its log-odds are not finite
    cdef double z = dot_csr_prefetch(data, indices, indptr[i], indptr[i + 1], coef, nnz) + intercept
    out[i] = <out_t>apply_output(z, output)
    return not fabs(z) < INFINITY


def score_csr(const feature_t[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
              const double[::1] coef, double intercept, int output, out_t[::1] out, int n_threads):
    cdef Py_ssize_t n = indptr.shape[0] - 1, i, n_nonfinite = 0
    cdef Py_ssize_t nnz = indices.shape[0]
    # &data[0] is invalid on an empty array; a matrix with no stored entries scores b everywhere
    cdef const feature_t* data_p = &data[0] if nnz > 0 else NULL
    cdef const index_t* indices_p = &indices[0] if nnz > 0 else NULL
    if n == 0:
        return 0
    with nogil:
        if n_threads > 1 and nnz + n > PARALLEL_MIN_WORK:
            for i in prange(n, schedule="static", num_threads=n_threads):
                n_nonfinite += score_csr_row(data_p, indices_p, &indptr[0], i, &coef[0], intercept, output, &out[0],
                                             nnz)
        else:   # no parallel region (entering one costs ~1 us even for a team of one)
            for i in range(n):
                n_nonfinite += score_csr_row(data_p, indices_p, &indptr[0], i, &coef[0], intercept, output, &out[0],
                                             nnz)
    return n_nonfinite
