# cython: language_level=3
"""Batch scoring: z = X @ coef + b in float64, optionally transformed to odds or probability.

Parallel over rows with OpenMP; each row's sum has a fixed order, so results are identical for
any thread count. No temporaries: each row goes straight from X to ``out``.

Both kernels return the number of rows whose log-odds were not finite. An inf feature always
makes its row's z inf or NaN (inf * w is +-inf, inf * 0 is NaN), so a count of 0 proves X holds
no inf and the public layer can skip a separate pass over X looking for one.
"""
from libc.math cimport fabs, INFINITY
from cython.parallel cimport prange

from ._math cimport (Output, LOG_ODDS, ODDS, PROBA, feature_t, out_t, index_t, apply_output,
                     dot_dense, dot_csr, madd)


# Below this many multiply-adds, starting threads costs more than it saves.
cdef Py_ssize_t PARALLEL_MIN_WORK = 1 << 15

# CSR scoring is bound by the gather coef[indices[p]]: with 2^20 columns coef is 8 MB, beyond L2,
# and each gather waits on L3. Prefetching the coefficient PREFETCH_AHEAD entries ahead (~1.5 rows
# of 40) measured 13-16 % faster on 1M x 2^20 with 40 nnz/row (benchmarks/experiments/quick_scoring.py); 48-96
# were alike, 0 and 128+ slower.
cdef Py_ssize_t PREFETCH_AHEAD = 64

# Dense scoring reads X once, front to back; the per-row work (float->double, FMA, the horizontal
# sum, exp) did not overlap with the memory stream: time was compute + transfer. Prefetching the
# cache lines 4 KB ahead of the current row made 1M x 64 float32 odds 25 % faster, down to the time
# of X.sum(); 2-8 KB were alike, 512 B too short.
cdef Py_ssize_t DENSE_PREFETCH_BYTES = 4096

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTWLR_PREFETCH(p) __builtin_prefetch((const void*)(p), 0, 3)
    #else
    #define FASTWLR_PREFETCH(p) ((void)0)
    #endif
    """
    void prefetch "FASTWLR_PREFETCH"(const void* p) noexcept nogil


cdef inline double dot_csr_prefetch(const feature_t* data, const index_t* indices, Py_ssize_t start,
                                    Py_ssize_t stop, const double* w, Py_ssize_t nnz) noexcept nogil:
    # dot_csr (_math.pxd) plus prefetching: the same sums in the same order, so the same bits as
    # every other kernel that scores with dot_csr (top-k). indices[p + ahead] is read only when it
    # exists (< nnz); its value was validated, so the prefetched address is inside coef.
    cdef double s0 = 0.0, s1 = 0.0
    cdef Py_ssize_t p = start
    while p + 1 < stop:
        if p + PREFETCH_AHEAD + 1 < nnz:
            prefetch(&w[indices[p + PREFETCH_AHEAD]])
            prefetch(&w[indices[p + PREFETCH_AHEAD + 1]])
        s0 = madd(s0, <double>data[p], w[indices[p]])
        s1 = madd(s1, <double>data[p + 1], w[indices[p + 1]])
        p += 2
    if p < stop:
        s0 = madd(s0, <double>data[p], w[indices[p]])
    return s0 + s1


def score_dense(const feature_t[:, ::1] X, const double[::1] coef, double intercept, int output,
                out_t[::1] out, int n_threads):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], i, n_nonfinite = 0
    cdef Py_ssize_t row_bytes = d * sizeof(feature_t), total_bytes = n * d * sizeof(feature_t), q, q_end
    cdef double z
    cdef const char* base
    if n == 0 or d == 0:
        if n:
            out[:] = <out_t>apply_output(intercept, output)
            return 0 if fabs(intercept) < INFINITY else n
        return 0
    base = <const char*>&X[0, 0]
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads,
                        use_threads_if=n_threads > 1 and n * (d + 1) > PARALLEL_MIN_WORK):
            # prefetch each cache line that starts in this row's byte range shifted 4 KB ahead:
            # every line once, none past the end of X
            q = ((i * row_bytes + DENSE_PREFETCH_BYTES + 63) >> 6) << 6
            q_end = min((i + 1) * row_bytes + DENSE_PREFETCH_BYTES, total_bytes)
            while q < q_end:
                prefetch(base + q)
                q = q + 64
            z = dot_dense(&X[i, 0], &coef[0], d) + intercept
            if not fabs(z) < INFINITY:  # inf or NaN (NaN compares false)
                n_nonfinite += 1
            out[i] = <out_t>apply_output(z, output)
    return n_nonfinite


def score_csr(const feature_t[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
              const double[::1] coef, double intercept, int output, out_t[::1] out, int n_threads):
    cdef Py_ssize_t n = indptr.shape[0] - 1, i, n_nonfinite = 0
    cdef Py_ssize_t nnz = indices.shape[0]
    cdef double z
    # &data[0] is invalid on an empty array; a matrix with no stored entries scores b everywhere
    cdef const feature_t* data_p = &data[0] if nnz > 0 else NULL
    cdef const index_t* indices_p = &indices[0] if nnz > 0 else NULL
    if n == 0:
        return 0
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads,
                        use_threads_if=n_threads > 1 and nnz + n > PARALLEL_MIN_WORK):
            z = dot_csr_prefetch(data_p, indices_p, indptr[i], indptr[i + 1], &coef[0], nnz) + intercept
            if not fabs(z) < INFINITY:
                n_nonfinite += 1
            out[i] = <out_t>apply_output(z, output)
    return n_nonfinite
