# cython: language_level=3
"""The weighted logistic objective and its gradient in one pass (docs/kernels.md, "Objective").

    L(coef, b) = (1/n) sum_i w_i [softplus(z_i) - y_i z_i] + (l2/2) ||coef||^2,   z_i = x_i . coef + b

Determinism: rows are cut into K contiguous blocks, where K depends only on (n, d) (for CSR on
(n, d, nnz) and the machine's core count; never on a call's thread count); each block accumulates
its own partial loss / gradient in row order, and the K partials are then summed in block order.
So the result is bit-identical for any ``n_threads`` (OpenMP only decides which thread runs which
block; blocks are handed out dynamically, so a thread slowed down by other processes does not hold
the others up).

Memory: the K partial gradients take K * d doubles. K is capped so that they stay under
``PARTIALS_BUDGET`` bytes: dense data with d = 64 gets up to 256 blocks (128 KiB). For CSR, zeroing and
reducing a block costs O(d), so K is also capped at nnz / (16 d), or at nnz / (4 d) where the
machine has the cores for that many blocks (``csr_scatter_blocks``): on two cores, hashed data with
20M non-zeros over d = 2^20 columns gets 2 blocks (16 MiB); d >= 2^23 or few non-zeros per column
get one block, i.e. a serial gradient scatter (the per-row work -- dot product, exp, log1p -- stays
parallel, see ``objective_grad_csr``).
"""
import os

import numpy as np

from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from ._math cimport (feature_t, index_t, dot_dense, dot_dense4, dot_csr, dot_csr_prefetch, madd, prefetch, prefetch_w,
                     exp_nonpos, log1p_unit, CSR_PREFETCH_AHEAD)

# Partial gradients never take more than this many bytes (see the module docstring).
cdef Py_ssize_t PARTIALS_BUDGET = 64 << 20
cdef Py_ssize_t MAX_BLOCKS = 256
# Rows per block at least this many: fewer, and the per-block reduction costs more than the rows.
cdef Py_ssize_t MIN_BLOCK_ROWS = 512
# Below this many multiply-adds, starting threads costs more than it saves.
cdef Py_ssize_t PARALLEL_MIN_WORK = 1 << 15


cdef Py_ssize_t n_blocks(Py_ssize_t n, Py_ssize_t d):
    """K: a function of (n, d) only, so results do not depend on the thread count."""
    cdef Py_ssize_t k = (n + MIN_BLOCK_ROWS - 1) // MIN_BLOCK_ROWS
    k = min(k, MAX_BLOCKS)
    k = min(k, PARTIALS_BUDGET // (8 * max(d, 1)))
    return max(k, 1)


cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>

    /* For m rows: loss[i] = w_i [softplus(z_i) - y_i z_i] and res[i] = w_i (sigma(z_i) - y_i), written
       as (1 - y) softplus(z) + y softplus(-z) and (1 - y) sigma(z) - y sigma(-z): algebraically the
       same, but exact for y in {0, 1} at any finite |z| (the direct form cancels catastrophically
       when y = 1 and z is large). One exp and one log1p a row, all rows of the loop in SIMD lanes. */
    static void fastwlr_loss_residual(const double* z, const double* y, const double* w, Py_ssize_t m,
                                      double* loss, double* res) {
        Py_ssize_t i;
    #ifdef _OPENMP
    #pragma omp simd
    #endif
        for (i = 0; i < m; i++) {
            double zi = z[i], yi = y[i], wi = w[i];
            double e = fastwlr_exp_nonpos(-fabs(zi));     /* in (0, 1]: never overflows */
            double l1p = fastwlr_log1p_unit(e);
            double sp_pos = (zi > 0.0 ? zi : 0.0) + l1p;  /* softplus(z) */
            double sp_neg = (zi < 0.0 ? -zi : 0.0) + l1p; /* softplus(-z) */
            double inv = 1.0 / (1.0 + e);
            double p = zi >= 0.0 ? inv : e * inv;         /* sigma(z), sigma(-z), each without 1 - x */
            double q = zi >= 0.0 ? e * inv : inv;
            res[i] = wi * ((1.0 - yi) * p - yi * q);
            loss[i] = wi * ((1.0 - yi) * sp_pos + yi * sp_neg);
        }
    }
    """
    void loss_residual "fastwlr_loss_residual"(const double* z, const double* y, const double* w,
                                               Py_ssize_t m, double* loss, double* res) noexcept nogil

cdef extern from *:
    """
    /* The curvature of the weighted loss at m rows: s[i] = w_i sigma(z_i) sigma(-z_i), from the
       same e = exp(-|z|) as fastwlr_loss_residual (sigma(z) sigma(-z) = e / (1 + e)^2, exact in
       both tails). */
    static void fastwlr_curvature(const double* z, const double* w, Py_ssize_t m, double* s) {
        Py_ssize_t i;
    #ifdef _OPENMP
    #pragma omp simd
    #endif
        for (i = 0; i < m; i++) {
            double e = fastwlr_exp_nonpos(-fabs(z[i]));
            double inv = 1.0 / (1.0 + e);
            s[i] = w[i] * (e * inv) * inv;
        }
    }

    /* H (p x p, row-major; the upper triangle, diagonal included) += sum_r s_r x_r x_r^T over four
       rows x_0..x_3 (float64, length p). Four rows per read and write of H: the update is bound by
       the multiply-adds, not by the traffic to H. Each element of H gets its terms in a fixed order. */
    static void fastwlr_hess_rank4(double* H, Py_ssize_t p, const double* x0, const double* x1,
                                   const double* x2, const double* x3, double s0, double s1,
                                   double s2, double s3) {
        Py_ssize_t j, k;
        for (j = 0; j < p; j++) {
            double c0 = s0 * x0[j], c1 = s1 * x1[j], c2 = s2 * x2[j], c3 = s3 * x3[j];
            double* h = H + j * p;
    #ifdef _OPENMP
    #pragma omp simd
    #endif
            for (k = j; k < p; k++)
                h[k] += ((c0 * x0[k] + c1 * x1[k]) + (c2 * x2[k] + c3 * x3[k]));
        }
    }

    static void fastwlr_hess_rank1(double* H, Py_ssize_t p, const double* x0, double s0) {
        Py_ssize_t j, k;
        for (j = 0; j < p; j++) {
            double c0 = s0 * x0[j];
            double* h = H + j * p;
    #ifdef _OPENMP
    #pragma omp simd
    #endif
            for (k = j; k < p; k++)
                h[k] += c0 * x0[k];
        }
    }
    """
    void curvature "fastwlr_curvature"(const double* z, const double* w, Py_ssize_t m,
                                       double* s) noexcept nogil
    void hess_rank4 "fastwlr_hess_rank4"(double* H, Py_ssize_t p, const double* x0, const double* x1,
                                         const double* x2, const double* x3, double s0, double s1,
                                         double s2, double s3) noexcept nogil
    void hess_rank1 "fastwlr_hess_rank1"(double* H, Py_ssize_t p, const double* x0,
                                         double s0) noexcept nogil

# Rows whose log-odds are computed before their losses and residuals (in SIMD lanes) and their
# gradient terms are added: the block's rows are still in L1 for the second read.
cdef enum:
    ROW_BATCH = 64


def _exp_nonpos(double[::1] x, double[::1] out):
    """Test hook: exp on x <= 0 as the kernels compute it."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        out[i] = exp_nonpos(x[i])


def _log1p_unit(double[::1] x, double[::1] out):
    """Test hook: log1p on [0, 1] as the kernels compute it."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        out[i] = log1p_unit(x[i])


cdef inline void axpy(double* g, double a, const feature_t* x, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(d):
        g[j] += a * <double>x[j]


cdef inline void axpy_sq(double* g, double* sq, double a, double wi, const feature_t* x,
                         Py_ssize_t d) noexcept nogil:
    """g += a x and sq += wi x^2 (the preconditioner's column sums, see objective_grad_colsq_dense)."""
    cdef Py_ssize_t j
    cdef double v
    for j in range(d):
        v = <double>x[j]
        g[j] += a * v
        sq[j] += wi * v * v


cdef inline void axpy4(double* g, const double* a, const feature_t* x, Py_ssize_t d) noexcept nogil:
    """g += a[0] x_0 + ... + a[3] x_3 for four consecutive rows x_r = x + r d: one read and write of g
    per four rows (a row at a time, g's loads and stores outnumbered the row's own)."""
    cdef Py_ssize_t j
    cdef const feature_t* x1 = x + d
    cdef const feature_t* x2 = x + 2 * d
    cdef const feature_t* x3 = x + 3 * d
    for j in range(d):
        g[j] += (a[0] * <double>x[j] + a[1] * <double>x1[j]) + (a[2] * <double>x2[j] + a[3] * <double>x3[j])


cdef inline void axpy_sq4(double* g, double* sq, const double* a, const double* wi, const feature_t* x,
                          Py_ssize_t d) noexcept nogil:
    """``axpy4`` (the same sums into g) and sq += sum_r wi[r] x_r^2."""
    cdef Py_ssize_t j
    cdef double v0, v1, v2, v3
    for j in range(d):
        v0 = <double>x[j]
        v1 = <double>x[d + j]
        v2 = <double>x[2 * d + j]
        v3 = <double>x[3 * d + j]
        g[j] += (a[0] * v0 + a[1] * v1) + (a[2] * v2 + a[3] * v3)
        sq[j] += (wi[0] * v0 * v0 + wi[1] * v1 * v1) + (wi[2] * v2 * v2 + wi[3] * v3 * v3)


cdef void dense_block(const feature_t* X, Py_ssize_t d, const double* y, const double* w,
                      const double* coef, double intercept, Py_ssize_t start, Py_ssize_t stop,
                      double* g, double* sq, double* loss, double* g_b) noexcept nogil:
    """Rows start..stop-1 into g (and sum_i w_i x_ij^2 into sq, unless it is NULL)."""
    cdef Py_ssize_t i, i0, m
    cdef double z[ROW_BATCH]
    cdef double lb[ROW_BATCH]
    cdef double rb[ROW_BATCH]
    cdef double r, acc_loss = 0.0, acc_b = 0.0
    memset(g, 0, d * sizeof(double))
    if sq != NULL:
        memset(sq, 0, d * sizeof(double))
    i0 = start
    while i0 < stop:
        m = min(<Py_ssize_t>ROW_BATCH, stop - i0)
        i = 0
        while i + 4 <= m:  # four rows a call: each coefficient load serves four rows (same sums as dot_dense)
            dot_dense4(X + (i0 + i) * d, coef, d, &z[i])
            i += 4
        while i < m:
            z[i] = dot_dense(X + (i0 + i) * d, coef, d)
            i += 1
        for i in range(m):
            # w = 0: contributes exactly 0 to loss and gradient (z = 0 keeps the loss's terms finite)
            z[i] = z[i] + intercept if w[i0 + i] != 0.0 else 0.0
        loss_residual(z, y + i0, w + i0, m, lb, rb)
        for i in range(m):
            acc_loss += lb[i]
            acc_b += rb[i]
        # g (and sq) four rows at a time, then the batch's last m % 4 one by one; a w = 0 row's residual
        # is 0, and adding 0 * x (x finite) changes nothing
        i = 0
        while i + 4 <= m:
            if sq != NULL:
                axpy_sq4(g, sq, &rb[i], w + i0 + i, X + (i0 + i) * d, d)
            else:
                axpy4(g, &rb[i], X + (i0 + i) * d, d)
            i += 4
        while i < m:
            if sq != NULL:
                axpy_sq(g, sq, rb[i], w[i0 + i], X + (i0 + i) * d, d)
            else:
                axpy(g, rb[i], X + (i0 + i) * d, d)
            i += 1
        i0 += m
    loss[0] = acc_loss
    g_b[0] = acc_b


cdef void reduce_partials(const double* partials, Py_ssize_t k, Py_ssize_t d, double* out,
                          int n_threads) noexcept nogil:
    """out[j] = sum over blocks, in block order, of partials[b, j] (parallel over j; one block is a
    copy, not worth a parallel region: newton-cg on wide CSR calls this for every CG step)."""
    cdef Py_ssize_t j, b
    cdef double s
    for j in prange(d, schedule="static", num_threads=n_threads,
                    use_threads_if=n_threads > 1 and k > 1 and k * d > PARALLEL_MIN_WORK):
        s = 0.0
        for b in range(k):
            s = s + partials[b * d + j]
        out[j] = s


def _finish(double loss, double g_b, grad, const double[::1] coef, double l2, Py_ssize_t n):
    cdef Py_ssize_t j, d = coef.shape[0]
    cdef double[::1] g = grad
    cdef double reg = 0.0
    for j in range(d):
        reg += coef[j] * coef[j]
        g[j] = g[j] / n + l2 * coef[j]
    return loss / n + 0.5 * l2 * reg, grad, g_b / n


def objective_grad_dense(const feature_t[:, ::1] X, const double[::1] y, const double[::1] sample_weight,
                         const double[::1] coef, double intercept, double l2, int n_threads):
    """Loss, gradient wrt coef (float64 (d,)) and wrt the intercept. See the module docstring."""
    return _dense(X, y, sample_weight, coef, intercept, l2, n_threads, False)[:3]


def objective_grad_colsq_dense(const feature_t[:, ::1] X, const double[::1] y, const double[::1] sample_weight,
                               const double[::1] coef, double intercept, double l2, int n_threads):
    """``objective_grad_dense`` (bit-identical) plus, from the same read of X, sum_i w_i x_ij^2 per
    column (float64 (d,)): the lbfgs driver's first evaluation also yields its diagonal preconditioner,
    so it need not read X a second time for it."""
    return _dense(X, y, sample_weight, coef, intercept, l2, n_threads, True)


cdef _dense(const feature_t[:, ::1] X, const double[::1] y, const double[::1] sample_weight,
            const double[::1] coef, double intercept, double l2, int n_threads, bint want_sq):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k, b
    if y.shape[0] != n or sample_weight.shape[0] != n or coef.shape[0] != d:
        raise ValueError(f"shapes do not match: X {n} x {d}, y {y.shape[0]}, sample_weight "
                         f"{sample_weight.shape[0]}, coef {coef.shape[0]}")
    grad = np.zeros(d, dtype=np.float64)
    colsq = np.zeros(d, dtype=np.float64)
    if n == 0:
        return _finish(0.0, 0.0, grad, coef, l2, 1) + (colsq,)
    cdef Py_ssize_t K = n_blocks(n, d)
    cdef double[:, ::1] partials = np.empty((K, max(d, 1)), dtype=np.float64)
    cdef double[:, ::1] sq_partials = np.empty((K if want_sq else 1, max(d, 1)), dtype=np.float64)
    cdef double[::1] losses = np.empty(K, dtype=np.float64)
    cdef double[::1] gbs = np.empty(K, dtype=np.float64)
    cdef double[::1] g = grad
    cdef double[::1] sq = colsq
    cdef double loss = 0.0, g_b = 0.0
    cdef const feature_t* Xp = &X[0, 0] if d > 0 else NULL
    with nogil:
        for k in prange(K, schedule="dynamic", num_threads=n_threads,
                        use_threads_if=n_threads > 1 and n * (d + 1) > PARALLEL_MIN_WORK):
            dense_block(Xp, d, &y[0], &sample_weight[0], &coef[0] if d > 0 else NULL, intercept,
                        k * n // K, (k + 1) * n // K, &partials[k, 0],
                        &sq_partials[k, 0] if want_sq else NULL, &losses[k], &gbs[k])
        for b in range(K):
            loss += losses[b]
            g_b += gbs[b]
        if d > 0:
            reduce_partials(&partials[0, 0], K, d, &g[0], n_threads)
            if want_sq:
                reduce_partials(&sq_partials[0, 0], K, d, &sq[0], n_threads)
    return _finish(loss, g_b, grad, coef, l2, n) + (colsq,)


# The cores of this machine (not the threads of a call): the scatter's blocks beyond them only cost.
cdef Py_ssize_t MACHINE_CORES = os.cpu_count() or 1


cdef Py_ssize_t csr_scatter_blocks(Py_ssize_t n, Py_ssize_t d, Py_ssize_t nnz):
    """Blocks of the X^T r scatter (gradient, curvature, Hessian-vector products). Each costs d
    doubles to zero and d to sum, a pass over memory per block: K * d is kept to nnz / 16, or to
    nnz / 4 where the machine has the cores to run that many blocks at once. A function of n, d, nnz
    and the machine's core count, never of a call's threads, so a result does not depend on them.
    A power of two, so that 2, 4 or 8 threads get equal shares: 300k x 2^18 x 40 had 11 blocks, and on
    two threads one of them did six (a Hessian-vector product 8.8-9.0 ms; with 8 blocks 7.5-7.6; on
    two cores, 2 blocks instead of 8: 7.0 ms, and the objective 16.5 -> 14.3 ms)."""
    cdef Py_ssize_t per = max(d, 1)
    cdef Py_ssize_t k = max(nnz // (16 * per), min(MACHINE_CORES, nnz // (4 * per)))
    cdef Py_ssize_t p = 1
    k = max(1, min(n_blocks(n, d), k))
    while 2 * p <= k:
        p *= 2
    return p


cdef inline void scatter_row(const feature_t* data, const index_t* indices, Py_ssize_t start, Py_ssize_t stop,
                             double r, double* g) noexcept nogil:
    # g += r x_i over the row's stored entries [start, stop): the one order of additions into a
    # partial gradient that every scatter of a row shares (so fused and separate passes agree)
    cdef Py_ssize_t p
    for p in range(start, stop):
        g[indices[p]] += r * <double>data[p]


cdef void csr_rows(const feature_t* data, const index_t* indices, const index_t* indptr,
                   const double* y, const double* w, const double* coef, double intercept,
                   Py_ssize_t start, Py_ssize_t stop, double* residual, double* loss,
                   double* g_b, double* s_out, double* g, Py_ssize_t d) noexcept nogil:
    """Rows start..stop-1: residuals w_i (sigma(z_i) - y_i), their sum and the loss. s_out (NULL:
    not wanted): the curvature weights w_i p_i (1 - p_i) from the same log-odds, the same values as
    csr_curv_rows computes. g (NULL: not wanted): each batch of rows is also scattered into this
    block's partial gradient (d entries) while still in cache: the same additions, in the same
    order, as csr_scatter over these rows, in one read of them."""
    cdef Py_ssize_t i, i0, m, end = indptr[stop]  # gathers prefetched up to here
    cdef double z[ROW_BATCH]
    cdef double lb[ROW_BATCH]
    cdef double acc_loss = 0.0, acc_b = 0.0, r
    if g != NULL:
        memset(g, 0, d * sizeof(double))
    i0 = start
    while i0 < stop:
        m = min(<Py_ssize_t>ROW_BATCH, stop - i0)
        for i in range(m):
            z[i] = dot_csr_prefetch(data, indices, indptr[i0 + i], indptr[i0 + i + 1], coef, end) + intercept \
                if w[i0 + i] != 0.0 else 0.0
        loss_residual(z, y + i0, w + i0, m, lb, residual + i0)
        if s_out != NULL:
            curvature(z, w + i0, m, s_out + i0)
        for i in range(m):
            acc_loss += lb[i]
            r = residual[i0 + i]
            acc_b += r
            if g != NULL and r != 0.0:
                scatter_row(data, indices, indptr[i0 + i], indptr[i0 + i + 1], r, g)
        i0 += m
    loss[0] = acc_loss
    g_b[0] = acc_b


cdef void csr_scatter(const feature_t* data, const index_t* indices, const index_t* indptr,
                      const double* residual, Py_ssize_t start, Py_ssize_t stop, double* g,
                      Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t i
    memset(g, 0, d * sizeof(double))
    for i in range(start, stop):
        if residual[i] != 0.0:
            scatter_row(data, indices, indptr[i], indptr[i + 1], residual[i], g)


# X^T r through the transpose of X (the CSC of X, as CSR of X^T: each column's rows ascending),
# given by the caller as (t_data, t_indices, t_indptr): every column is one gather-dot over r, so
# the columns split over threads with no partial gradients to zero and reduce, and each column's
# sum has one order whatever the thread count. On wide data the partials cost more than the rows:
# 1M x 2^20 x 40, ten partials of 8 MB (docs/kernels.md).
cdef Py_ssize_t T_COLUMN_BLOCK = 2048   # columns per unit of the threads' (dynamic) schedule


cdef void csr_t_columns(const feature_t* t_data, const index_t* t_indices, const index_t* t_indptr,
                        const double* r, bint squared, Py_ssize_t start, Py_ssize_t stop, double* g) noexcept nogil:
    """g[j] = sum_p x_p r[row_p] (squared: x_p^2 r[row_p]) over column j of X, j in [start, stop)."""
    cdef Py_ssize_t j, p, q, end = t_indptr[stop]
    cdef double acc, x
    for j in range(start, stop):
        if not squared:
            g[j] = dot_csr_prefetch(t_data, t_indices, t_indptr[j], t_indptr[j + 1], r, end)
            continue
        acc = 0.0
        for p in range(t_indptr[j], t_indptr[j + 1]):
            q = p + CSR_PREFETCH_AHEAD
            if q < end:
                prefetch(&r[t_indices[q]])
            x = <double>t_data[p]
            acc = madd(acc, x * x, r[t_indices[p]])
        g[j] = acc


cdef void transposed_product(const feature_t* t_data, const index_t* t_indices, const index_t* t_indptr,
                             Py_ssize_t d, const double* r, bint squared, double* g, int n_threads,
                             bint parallel) noexcept nogil:
    cdef Py_ssize_t c, C = (d + T_COLUMN_BLOCK - 1) // T_COLUMN_BLOCK
    for c in prange(C, schedule="dynamic", num_threads=n_threads, use_threads_if=parallel and C > 1):
        csr_t_columns(t_data, t_indices, t_indptr, r, squared, c * T_COLUMN_BLOCK,
                      min(d, (c + 1) * T_COLUMN_BLOCK), g)


cdef void transposed_pair(const feature_t* t_data, const index_t* t_indices, const index_t* t_indptr,
                          Py_ssize_t d, const double* r, const double* s, double* g, double* sq, int n_threads,
                          bint parallel) noexcept nogil:
    # transposed_product of r, then of s squared, a block of columns at a time: the block's part of
    # X^T is read again from cache, not from memory
    cdef Py_ssize_t c, C = (d + T_COLUMN_BLOCK - 1) // T_COLUMN_BLOCK
    for c in prange(C, schedule="dynamic", num_threads=n_threads, use_threads_if=parallel and C > 1):
        csr_t_columns(t_data, t_indices, t_indptr, r, False, c * T_COLUMN_BLOCK, min(d, (c + 1) * T_COLUMN_BLOCK), g)
        csr_t_columns(t_data, t_indices, t_indptr, s, True, c * T_COLUMN_BLOCK, min(d, (c + 1) * T_COLUMN_BLOCK), sq)


def scatter_blocks(Py_ssize_t n, Py_ssize_t d, Py_ssize_t nnz):
    """K(n, d, nnz): the private partial gradients of a CSR scatter without a transpose (1: the
    scatter is serial). The kernel adapter weighs them against building X^T."""
    return csr_scatter_blocks(n, d, nnz)


def transpose_csr(const feature_t[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                  Py_ssize_t n_features, int n_threads):
    """X^T as CSR, (t_data, t_indices, t_indptr) of X's dtypes, each column's rows ascending (the
    CSC of X; the caller checks that n and nnz fit the index type). A counting sort in parallel:
    each of B row blocks counts its entries per column, the counts give each block its slots in
    every column (blocks in row order), and each block fills its slots. The result is the same for
    any B, so B is the thread count."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, d = n_features, nnz = indices.shape[0]
    cdef Py_ssize_t B = max(1, min(<Py_ssize_t>n_threads, n // 1024)), b, j, pos
    t_data_arr = np.empty(nnz, dtype=np.asarray(data).dtype)
    t_indices_arr = np.empty(nnz, dtype=np.asarray(indices).dtype)
    t_indptr_arr = np.zeros(d + 1, dtype=np.asarray(indices).dtype)
    if nnz == 0 or d == 0:
        return t_data_arr, t_indices_arr, t_indptr_arr
    cdef feature_t[::1] t_data = t_data_arr
    cdef index_t[::1] t_indices = t_indices_arr
    cdef index_t[::1] t_indptr = t_indptr_arr
    cdef Py_ssize_t[:, ::1] slot = np.zeros((B, d), dtype=np.intp)  # counts, then next free slot
    with nogil:
        for b in prange(B, schedule="static", num_threads=B, use_threads_if=B > 1):
            transpose_count(&indices[0], &indptr[0], b * n // B, (b + 1) * n // B, &slot[b, 0])
        pos = 0
        for j in range(d):
            for b in range(B):
                slot[b, j], pos = pos, pos + slot[b, j]
            t_indptr[j + 1] = <index_t>pos
        for b in prange(B, schedule="static", num_threads=B, use_threads_if=B > 1):
            transpose_fill(&data[0], &indices[0], &indptr[0], b * n // B, (b + 1) * n // B, &slot[b, 0],
                           &t_data[0], &t_indices[0])
    return t_data_arr, t_indices_arr, t_indptr_arr


cdef void transpose_count(const index_t* indices, const index_t* indptr, Py_ssize_t start, Py_ssize_t stop,
                          Py_ssize_t* count) noexcept nogil:
    cdef Py_ssize_t p, end = indptr[stop]
    for p in range(indptr[start], end):
        if p + CSR_PREFETCH_AHEAD < end:
            prefetch_w(&count[indices[p + CSR_PREFETCH_AHEAD]])
        count[indices[p]] += 1


cdef void transpose_fill(const feature_t* data, const index_t* indices, const index_t* indptr,
                         Py_ssize_t start, Py_ssize_t stop, Py_ssize_t* slot, feature_t* t_data,
                         index_t* t_indices) noexcept nogil:
    # Each entry lands at a random place of X^T: the slots of the entry 2 * AHEAD on are fetched,
    # then the destinations of the entry AHEAD on (a stale slot only makes that hint miss).
    cdef Py_ssize_t i = start, p, q, r, end = indptr[stop]
    for p in range(indptr[start], end):
        while p >= indptr[i + 1]:
            i += 1
        if p + 2 * CSR_PREFETCH_AHEAD < end:
            prefetch_w(&slot[indices[p + 2 * CSR_PREFETCH_AHEAD]])
        if p + CSR_PREFETCH_AHEAD < end:
            r = slot[indices[p + CSR_PREFETCH_AHEAD]]
            prefetch_w(&t_indices[r])
            prefetch_w(&t_data[r])
        q = slot[indices[p]]
        slot[indices[p]] = q + 1
        t_indices[q] = <index_t>i
        t_data[q] = data[p]


cdef object check_transpose(object transpose, Py_ssize_t n, Py_ssize_t d, Py_ssize_t nnz):
    """(t_data, t_indices, t_indptr) of the caller (the kernel adapter builds them by transpose_csr
    from the validated X): shapes checked here in O(1); their values are X's, so not scanned again."""
    t_data, t_indices, t_indptr = transpose
    if t_indptr.shape[0] != d + 1 or t_indices.shape[0] != nnz or t_data.shape[0] != nnz \
            or (nnz > 0 and (t_indptr[0] != 0 or t_indptr[d] != nnz)):
        raise ValueError(f"transpose does not match X ({n} x {d}, {nnz} non-zeros)")
    return t_data, t_indices, t_indptr


def objective_grad_csr(const feature_t[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                       Py_ssize_t n_features, const double[::1] y, const double[::1] sample_weight,
                       const double[::1] coef, double intercept, double l2, int n_threads, transpose=None,
                       curvature_out=None, diag_out=None):
    """CSR version: (1) residuals w_i (sigma(z_i) - y_i) and loss; (2) the gradient X^T r. With
    K(n, d, nnz) > 1 scatter blocks, one parallel pass over the blocks does both, each batch of rows
    scattered into its block's private partial gradient while still in cache (a read of X less:
    300k x 2^18 x 40, 12.4 -> ~8 ms). Otherwise two passes, so that a huge d does not serialise the
    per-row work: (1) over row blocks whose count depends on n only, (2) a serial scatter (K = 1),
    or, given ``transpose`` (X^T as CSR), one gather-dot per column. ``curvature_out`` (float64 (n,), or None)
    receives pass 1's s_i = w_i p_i (1 - p_i), as curvature_csr's (newton-cg's next curvature, if
    the step is accepted, without reading X for it); ``diag_out`` (float64 (d,), with curvature_out)
    their column sums sum_i s_i x_ij^2, bit for bit column_sq_csr's: given X^T, from the same read of
    each block of its columns (300k x 2^18 x 40: 17.4 -> 15.5 ms with column_sq_csr's pass); with
    the scatter, in a pass of its own (both scatters in one read of the rows took 16-17 -> 20 ms)."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, d = n_features, nnz = indices.shape[0], k, b
    grad = np.zeros(d, dtype=np.float64)
    if n == 0:
        return _finish(0.0, 0.0, grad, coef, l2, 1)
    cdef const feature_t[::1] t_data
    cdef const index_t[::1] t_indices, t_indptr
    if transpose is not None:
        t_data, t_indices, t_indptr = check_transpose(transpose, n, d, nnz)
    cdef double[::1] s_view
    cdef double* s_out = NULL
    if curvature_out is not None:
        s_view = curvature_out
        if s_view.shape[0] != n:
            raise ValueError(f"curvature_out has {s_view.shape[0]} entries for {n} rows")
        s_out = &s_view[0]
    cdef double[::1] diag_view
    cdef bint want_diag = diag_out is not None
    if want_diag:
        diag_view = diag_out
        if s_out == NULL or diag_view.shape[0] != d:
            raise ValueError(f"diag_out needs curvature_out and {d} entries, got {diag_view.shape[0]}")
    cdef const feature_t* data_p = &data[0] if nnz > 0 else NULL
    cdef const index_t* indices_p = &indices[0] if nnz > 0 else NULL
    cdef const double* coef_p = &coef[0] if d > 0 else NULL
    cdef Py_ssize_t R = n_blocks(n, 0)  # row blocks for pass 1: no per-block buffer of size d
    cdef Py_ssize_t K = csr_scatter_blocks(n, d, nnz) if transpose is None else 0
    cdef double[::1] residual = np.empty(n, dtype=np.float64)
    cdef double[::1] losses = np.empty(max(R, K), dtype=np.float64)
    cdef double[::1] gbs = np.empty(max(R, K), dtype=np.float64)
    cdef double[:, ::1] partials = np.empty((max(K, 1), max(d, 1) if K > 0 else 1), dtype=np.float64)
    cdef double[:, ::1] sq_partials = np.empty((max(K, 1) if want_diag else 1, max(d, 1) if K > 0 and want_diag
                                                else 1), dtype=np.float64)
    cdef double[::1] g = grad
    cdef double loss = 0.0, g_b = 0.0
    cdef bint parallel = n_threads > 1 and nnz + n > PARALLEL_MIN_WORK
    cdef bint fused = d > 0 and K > 1   # one block would make the rows' pass serial
    with nogil:
        if fused:   # each block's rows scattered as they are scored: one read of X, not two
            for k in prange(K, schedule="dynamic", num_threads=n_threads, use_threads_if=parallel):
                csr_rows(data_p, indices_p, &indptr[0], &y[0], &sample_weight[0], coef_p, intercept,
                         k * n // K, (k + 1) * n // K, &residual[0], &losses[k], &gbs[k], s_out, &partials[k, 0], d)
            R = K
        else:
            for k in prange(R, schedule="dynamic", num_threads=n_threads, use_threads_if=parallel):
                csr_rows(data_p, indices_p, &indptr[0], &y[0], &sample_weight[0], coef_p, intercept,
                         k * n // R, (k + 1) * n // R, &residual[0], &losses[k], &gbs[k], s_out, NULL, 0)
        for b in range(R):
            loss += losses[b]
            g_b += gbs[b]
        if d > 0 and K == 0 and want_diag:
            transposed_pair(&t_data[0] if nnz > 0 else NULL, &t_indices[0] if nnz > 0 else NULL, &t_indptr[0], d,
                            &residual[0], s_out, &g[0], &diag_view[0], n_threads, parallel)
        elif d > 0 and K == 0:
            transposed_product(&t_data[0] if nnz > 0 else NULL, &t_indices[0] if nnz > 0 else NULL,
                               &t_indptr[0], d, &residual[0], False, &g[0], n_threads, parallel)
        elif d > 0:
            if not fused:
                for k in prange(K, schedule="dynamic", num_threads=n_threads,
                                use_threads_if=parallel and K > 1):
                    csr_scatter(data_p, indices_p, &indptr[0], &residual[0], k * n // K, (k + 1) * n // K,
                                &partials[k, 0], d)
            reduce_partials(&partials[0, 0], K, d, &g[0], n_threads)
            if want_diag:   # a pass of its own: scattering both at once into two partials was slower
                column_sq_blocks(data_p, indices_p, &indptr[0], s_out, n, d, K, &sq_partials[0, 0],
                                 &diag_view[0], n_threads, parallel)
    return _finish(loss, g_b, grad, coef, l2, n)


cdef void sq_block(const feature_t* X, Py_ssize_t d, const double* w, Py_ssize_t step, Py_ssize_t start,
                   Py_ssize_t stop, double* out) noexcept nogil:
    """Sampled rows start..stop-1, i.e. rows start * step, (start + 1) * step, ... of X."""
    cdef Py_ssize_t i, j, row
    cdef double wi, x
    memset(out, 0, d * sizeof(double))
    for i in range(start, stop):
        row = i * step
        wi = w[row]
        if wi == 0.0:
            continue
        for j in range(d):
            x = <double>X[row * d + j]
            out[j] += wi * x * x


def weighted_column_sq_dense(const feature_t[:, ::1] X, const double[::1] sample_weight, int n_threads,
                             Py_ssize_t row_step=1):
    """sum_i w_i x_ij^2 per column (float64 (d,)) over rows 0, row_step, 2 row_step, ... (the rows of
    ``X[::row_step]``, read in place: no strided copy): the diagonal preconditioner of the lbfgs driver.
    Fixed blocks of the sampled rows, as in the objective, so independent of the thread count."""
    if row_step < 1:
        raise ValueError(f"row_step must be >= 1, got {row_step}")
    if sample_weight.shape[0] != X.shape[0]:
        raise ValueError("sample_weight and X have different numbers of rows")
    cdef Py_ssize_t d = X.shape[1], k
    cdef Py_ssize_t n = (X.shape[0] + row_step - 1) // row_step  # sampled rows
    out = np.zeros(d, dtype=np.float64)
    if n == 0 or d == 0:
        return out
    cdef Py_ssize_t K = n_blocks(n, d)
    cdef double[:, ::1] partials = np.empty((K, d), dtype=np.float64)
    cdef double[::1] o = out
    with nogil:
        for k in prange(K, schedule="dynamic", num_threads=n_threads,
                        use_threads_if=n_threads > 1 and n * d > PARALLEL_MIN_WORK):
            sq_block(&X[0, 0], d, &sample_weight[0], row_step, k * n // K, (k + 1) * n // K, &partials[k, 0])
        reduce_partials(&partials[0, 0], K, d, &o[0], n_threads)
    return out


# ------------------------------------------------------------------------------------------------
# Loss, gradient and Hessian in one pass (the Newton solver, fastwlr._newton).
#
# The Hessian is that of the augmented rows x~ = (x, 1): H~ = sum_i s_i x~_i x~_i^T, s_i = w_i p_i (1 - p_i),
# so its last row and column belong to the intercept. Row blocks as in the objective (K a function
# of n and d only, partials summed in block order: bit-identical for any thread count); each block
# holds a (d+1)^2 partial, so K is capped by HESSIAN_PARTIALS_BUDGET (d = 1000: 8 blocks; d >= 2900:
# one block, a serial pass) and by HESSIAN_MAX_BLOCKS.
cdef Py_ssize_t HESSIAN_PARTIALS_BUDGET = 64 << 20
# and at most this many: the partials are fresh pages every pass, which the kernel zeroes (256 blocks
# at d = 43, 4 MB: 19 % of freMTPL2's pass in clear_page); 32 still balance a few threads' loads.
cdef Py_ssize_t HESSIAN_MAX_BLOCKS = 32
# A row with at most d / SPARSE_ROW_RATIO non-zeros (one-hot levels: 9 of freMTPL2's 43 columns) is
# added to the Hessian pair by pair of its non-zeros: ~nz^2 / 2 scalar multiply-adds against ~d^2 / 2
# (4-8 to a vector instruction) for the rank-4 updates. freMTPL2's pass: 41 -> 28 ms on 2 threads.
cdef Py_ssize_t SPARSE_ROW_RATIO = 4


cdef Py_ssize_t hessian_blocks(Py_ssize_t n, Py_ssize_t p):
    return max(1, min(n_blocks(n, p), HESSIAN_MAX_BLOCKS, HESSIAN_PARTIALS_BUDGET // (8 * p * p)))


cdef int hess_block(const feature_t* X, Py_ssize_t d, const double* y, const double* w,
                    const double* coef, double intercept, Py_ssize_t start, Py_ssize_t stop,
                    double* g, double* H, double* sq, double* loss, double* g_b) noexcept nogil:
    """Rows start..stop-1: loss, gradient (as dense_block), sum_i w_i x_ij^2 (unless sq is NULL)
    and the upper triangle of sum_i s_i x~_i x~_i^T into H: rows of few non-zeros pair by pair,
    the others four at a time (rank-4 updates). -1 if a buffer could not be allocated."""
    cdef Py_ssize_t p = d + 1, i, i0, m, j, c, nz, a, b, ja
    cdef double z[ROW_BATCH]
    cdef double lb[ROW_BATCH]
    cdef double rb[ROW_BATCH]
    cdef double sb[ROW_BATCH]
    cdef double cs[ROW_BATCH]
    cdef double r, ca, acc_loss = 0.0, acc_b = 0.0
    cdef const feature_t* x
    cdef double* xr
    cdef double* xb = <double*> malloc(ROW_BATCH * p * sizeof(double))
    cdef Py_ssize_t* nz_idx = <Py_ssize_t*> malloc(p * sizeof(Py_ssize_t))
    cdef double* nz_val = <double*> malloc(p * sizeof(double))
    if xb == NULL or nz_idx == NULL or nz_val == NULL:
        free(xb)
        free(nz_idx)
        free(nz_val)
        return -1
    memset(g, 0, d * sizeof(double))
    memset(H, 0, p * p * sizeof(double))
    if sq != NULL:
        memset(sq, 0, d * sizeof(double))
    i0 = start
    while i0 < stop:
        m = min(<Py_ssize_t>ROW_BATCH, stop - i0)
        for i in range(m):
            z[i] = dot_dense(X + (i0 + i) * d, coef, d) + intercept if w[i0 + i] != 0.0 else 0.0
        loss_residual(z, y + i0, w + i0, m, lb, rb)
        curvature(z, w + i0, m, sb)
        c = 0  # dense rows of this batch with a curvature: copied, as float64 rows (x, 1), into xb
        for i in range(m):
            acc_loss += lb[i]
            r = rb[i]
            acc_b += r
            x = X + (i0 + i) * d
            if sq != NULL and w[i0 + i] != 0.0:
                axpy_sq(g, sq, r, w[i0 + i], x, d)
            elif r != 0.0:
                axpy(g, r, x, d)
            if sb[i] == 0.0:
                continue
            nz = 0
            for j in range(d):  # a vectorised count first: dense rows pay no more
                nz += x[j] != 0
            if nz * SPARSE_ROW_RATIO <= d:
                nz = 0
                for j in range(d):  # branch-free compaction: one-hot zeros defeat a branch predictor
                    nz_idx[nz] = j
                    nz_val[nz] = <double>x[j]
                    nz += x[j] != 0
                nz_idx[nz] = d
                nz_val[nz] = 1.0
                nz += 1
                for a in range(nz):  # ascending indices: the upper triangle
                    ja = nz_idx[a] * p
                    ca = sb[i] * nz_val[a]
                    for b in range(a, nz):
                        H[ja + nz_idx[b]] += ca * nz_val[b]
                continue
            xr = xb + c * p
            for j in range(d):
                xr[j] = <double>x[j]
            xr[d] = 1.0
            cs[c] = sb[i]
            c += 1
        i = 0
        while i + 4 <= c:
            hess_rank4(H, p, xb + i * p, xb + (i + 1) * p, xb + (i + 2) * p, xb + (i + 3) * p,
                       cs[i], cs[i + 1], cs[i + 2], cs[i + 3])
            i += 4
        while i < c:
            hess_rank1(H, p, xb + i * p, cs[i])
            i += 1
        i0 += m
    free(xb)
    free(nz_idx)
    free(nz_val)
    loss[0] = acc_loss
    g_b[0] = acc_b
    return 0


def objective_grad_hess_dense(const feature_t[:, ::1] X, const double[::1] y, const double[::1] sample_weight,
                              const double[::1] coef, double intercept, double l2, int n_threads,
                              bint want_sq=False):
    """(loss, grad_coef, grad_intercept, hessian, colsq): ``objective_grad_dense``'s loss and
    gradient (the same formulas; summed over other blocks, so equal to rounding, not bit for bit),
    the Hessian of the data term (1/n) sum_i w_i l_i with respect to (coef, intercept) as a float64
    (d+1, d+1) symmetric array (the penalty's l2 * I is the caller's to add: it is not on the
    intercept), and, if ``want_sq``, sum_i w_i x_ij^2 per column (else None). One read of X."""
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], p = X.shape[1] + 1, k, b, K, j, i
    if y.shape[0] != n or sample_weight.shape[0] != n or coef.shape[0] != d:
        raise ValueError(f"shapes do not match: X {n} x {d}, y {y.shape[0]}, sample_weight "
                         f"{sample_weight.shape[0]}, coef {coef.shape[0]}")
    grad = np.zeros(d, dtype=np.float64)
    hess = np.zeros((p, p), dtype=np.float64)
    colsq = np.zeros(d, dtype=np.float64) if want_sq else None
    if n == 0:
        return _finish(0.0, 0.0, grad, coef, l2, 1) + (hess, colsq)
    K = hessian_blocks(n, p)
    cdef double[:, ::1] partials = np.empty((K, max(d, 1)), dtype=np.float64)
    cdef double[:, ::1] h_partials = np.empty((K, p * p), dtype=np.float64)
    cdef double[:, ::1] sq_partials = np.empty((K if want_sq else 1, max(d, 1)), dtype=np.float64)
    cdef double[::1] losses = np.empty(K, dtype=np.float64)
    cdef double[::1] gbs = np.empty(K, dtype=np.float64)
    cdef int[::1] status = np.zeros(K, dtype=np.intc)
    cdef double[::1] g = grad
    cdef double[:, ::1] h = hess
    cdef double[::1] sq = colsq if want_sq else np.empty(1)
    cdef double loss = 0.0, g_b = 0.0, v
    cdef const feature_t* Xp = &X[0, 0] if d > 0 else NULL
    cdef double zero = 0.0
    with nogil:
        for k in prange(K, schedule="dynamic", num_threads=n_threads,
                        use_threads_if=n_threads > 1 and n * p * p > PARALLEL_MIN_WORK):
            status[k] = hess_block(Xp, d, &y[0], &sample_weight[0], &coef[0] if d > 0 else &zero,
                                   intercept, k * n // K, (k + 1) * n // K, &partials[k, 0],
                                   &h_partials[k, 0], &sq_partials[k, 0] if want_sq else NULL,
                                   &losses[k], &gbs[k])
    for k in range(K):
        if status[k] != 0:
            raise MemoryError(f"objective_grad_hess_dense: no memory for a row buffer of {p} columns")
    with nogil:
        for b in range(K):
            loss += losses[b]
            g_b += gbs[b]
        if d > 0:
            reduce_partials(&partials[0, 0], K, d, &g[0], n_threads)
            if want_sq:
                reduce_partials(&sq_partials[0, 0], K, d, &sq[0], n_threads)
        # One thread: K (d+1)^2 additions are a fraction of a millisecond, and a second parallel
        # region per pass waits for any thread another process has taken the core of (12k x 67 on
        # two busy cores: 33 ms a pass with it, against 7 ms for the whole pass on one thread).
        for j in range(p):  # in block order; the mean, and the lower triangle from the upper
            for i in range(j, p):
                v = 0.0
                for b in range(K):
                    v = v + h_partials[b, j * p + i]
                h[j, i] = v / n
                h[i, j] = h[j, i]
    return _finish(loss, g_b, grad, coef, l2, n) + (hess, colsq)


# ------------------------------------------------------------------------------------------------
# Curvature and Hessian-vector products on CSR (the trust-region Newton-CG solver, fastwlr._tron).
# H = X~^T diag(s) X~ (unnormalised), s_i = w_i p_i (1 - p_i), X~ = (X, 1): never formed; each CG
# step multiplies by it in two passes, (1) u_i = s_i (x_i . v + v_b) over row blocks, (2) X^T u by
# the gradient's scatter over K(n, d, nnz) blocks with private partials. Block counts as in
# objective_grad_csr, so the results do not depend on the thread count.

cdef void csr_curv_rows(const feature_t* data, const index_t* indices, const index_t* indptr,
                        const double* w, const double* coef, double intercept, Py_ssize_t start,
                        Py_ssize_t stop, double* s) noexcept nogil:
    cdef Py_ssize_t i, i0, m, end = indptr[stop]
    cdef double z[ROW_BATCH]
    i0 = start
    while i0 < stop:
        m = min(<Py_ssize_t>ROW_BATCH, stop - i0)
        for i in range(m):
            z[i] = dot_csr_prefetch(data, indices, indptr[i0 + i], indptr[i0 + i + 1], coef, end) + intercept \
                if w[i0 + i] != 0.0 else 0.0
        curvature(z, w + i0, m, s + i0)
        i0 += m


cdef void csr_scatter_sq(const feature_t* data, const index_t* indices, const index_t* indptr,
                         const double* s, Py_ssize_t start, Py_ssize_t stop, double* g,
                         Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t i, p
    cdef double r, x
    memset(g, 0, d * sizeof(double))
    for i in range(start, stop):
        r = s[i]
        if r == 0.0:
            continue
        for p in range(indptr[i], indptr[i + 1]):
            x = <double>data[p]
            g[indices[p]] += r * x * x


cdef void column_sq_blocks(const feature_t* data, const index_t* indices, const index_t* indptr,
                           const double* s, Py_ssize_t n, Py_ssize_t d, Py_ssize_t K, double* partials,
                           double* out, int n_threads, bint parallel) noexcept nogil:
    """out[j] = sum_i s_i x_ij^2 by the scatter over K(n, d, nnz) row blocks, their partials
    (K x d) summed in block order: column_sq_csr's and objective_grad_csr's diag_out."""
    cdef Py_ssize_t k
    for k in prange(K, schedule="dynamic", num_threads=n_threads, use_threads_if=parallel and K > 1):
        csr_scatter_sq(data, indices, indptr, s, k * n // K, (k + 1) * n // K, partials + k * d, d)
    reduce_partials(partials, K, d, out, n_threads)


cdef void csr_hv_rows(const feature_t* data, const index_t* indices, const index_t* indptr,
                      const double* s, const double* v, double v_b, Py_ssize_t start, Py_ssize_t stop,
                      double* u, double* acc) noexcept nogil:
    cdef Py_ssize_t i, end = indptr[stop]
    cdef double a = 0.0
    for i in range(start, stop):
        u[i] = s[i] * (dot_csr_prefetch(data, indices, indptr[i], indptr[i + 1], v, end) + v_b) if s[i] != 0.0 else 0.0
        a += u[i]
    acc[0] = a


cdef void csr_hv_block(const feature_t* data, const index_t* indices, const index_t* indptr,
                       const double* s, const double* v, double v_b, Py_ssize_t start, Py_ssize_t stop,
                       double* g, Py_ssize_t d, double* acc) noexcept nogil:
    """``csr_hv_rows`` and ``csr_scatter`` of rows start..stop-1 in one read of them: each row's
    u_i = s_i (x_i . v + v_b) is scattered while the row is still in L1 (the same u_i, the same
    order of additions into g as the two passes)."""
    cdef Py_ssize_t i, end = indptr[stop]
    cdef double a = 0.0, r
    memset(g, 0, d * sizeof(double))
    for i in range(start, stop):
        if s[i] == 0.0:
            continue
        r = s[i] * (dot_csr_prefetch(data, indices, indptr[i], indptr[i + 1], v, end) + v_b)
        a += r
        if r != 0.0:
            scatter_row(data, indices, indptr[i], indptr[i + 1], r, g)
    acc[0] = a


def curvature_csr(const feature_t[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                  Py_ssize_t n_features, const double[::1] sample_weight, const double[::1] coef,
                  double intercept, int n_threads, transpose=None):
    """(s, diag): s_i = w_i p_i (1 - p_i) at (coef, intercept), float64 (n,), and the diagonal of
    X^T diag(s) X, sum_i s_i x_ij^2 per column, float64 (d,); unnormalised (no 1/n). ``transpose``
    as in objective_grad_csr."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, d = n_features, nnz = indices.shape[0], k
    s_arr = np.zeros(n, dtype=np.float64)
    if n == 0:
        return s_arr, np.zeros(d, dtype=np.float64)
    cdef const feature_t* data_p = &data[0] if nnz > 0 else NULL
    cdef const index_t* indices_p = &indices[0] if nnz > 0 else NULL
    cdef double zero = 0.0
    cdef const double* coef_p = &coef[0] if d > 0 else &zero
    cdef Py_ssize_t R = n_blocks(n, 0)
    cdef double[::1] s = s_arr
    cdef bint parallel = n_threads > 1 and nnz + n > PARALLEL_MIN_WORK
    with nogil:
        for k in prange(R, schedule="dynamic", num_threads=n_threads, use_threads_if=parallel):
            csr_curv_rows(data_p, indices_p, &indptr[0], &sample_weight[0], coef_p, intercept,
                          k * n // R, (k + 1) * n // R, &s[0])
    return s_arr, column_sq_csr(data, indices, indptr, n_features, s_arr, n_threads, transpose)


def column_sq_csr(const feature_t[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                  Py_ssize_t n_features, const double[::1] s, int n_threads, transpose=None):
    """sum_i s_i x_ij^2 per column, float64 (d,): curvature_csr's second pass, for weights s (n,)
    already at hand (objective_grad_csr's ``curvature_out``)."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, d = n_features, nnz = indices.shape[0], k
    if s.shape[0] != n:
        raise ValueError(f"s has {s.shape[0]} entries for {n} rows")
    diag = np.zeros(d, dtype=np.float64)
    if n == 0 or d == 0:
        return diag
    cdef const feature_t[::1] t_data
    cdef const index_t[::1] t_indices, t_indptr
    if transpose is not None:
        t_data, t_indices, t_indptr = check_transpose(transpose, n, d, nnz)
    cdef const feature_t* data_p = &data[0] if nnz > 0 else NULL
    cdef const index_t* indices_p = &indices[0] if nnz > 0 else NULL
    cdef Py_ssize_t K = csr_scatter_blocks(n, d, nnz) if transpose is None else 0
    cdef double[:, ::1] partials = np.empty((max(K, 1), d if K > 0 else 1), dtype=np.float64)
    cdef double[::1] g = diag
    cdef bint parallel = n_threads > 1 and nnz + n > PARALLEL_MIN_WORK
    with nogil:
        if K == 0:
            transposed_product(&t_data[0] if nnz > 0 else NULL, &t_indices[0] if nnz > 0 else NULL,
                               &t_indptr[0], d, &s[0], True, &g[0], n_threads, parallel)
        else:
            column_sq_blocks(data_p, indices_p, &indptr[0], &s[0], n, d, K, &partials[0, 0], &g[0], n_threads,
                             parallel)
    return diag


def hessvec_csr(const feature_t[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                Py_ssize_t n_features, const double[::1] s, const double[::1] v, double v_b, int n_threads,
                transpose=None):
    """(X^T u, sum_i u_i) with u = s * (X v + v_b): the product of X~^T diag(s) X~ with (v, v_b),
    float64 (d,) and a float; unnormalised. Given ``transpose`` (as in objective_grad_csr): a
    parallel pass for u, then one gather-dot per column. Otherwise, with more than one scatter
    block, one parallel pass over the blocks computes and scatters each row's u_i together (a CG
    step of newton-cg reads X once); with one block (d large against nnz) the products are a
    parallel pass of their own first."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, d = n_features, nnz = indices.shape[0], k, b
    out = np.zeros(d, dtype=np.float64)
    if n == 0:
        return out, 0.0
    if s.shape[0] != n or v.shape[0] != d:
        raise ValueError(f"shapes do not match: {n} rows, {d} columns, s {s.shape[0]}, v {v.shape[0]}")
    cdef const feature_t[::1] t_data
    cdef const index_t[::1] t_indices, t_indptr
    if transpose is not None:
        t_data, t_indices, t_indptr = check_transpose(transpose, n, d, nnz)
    cdef const feature_t* data_p = &data[0] if nnz > 0 else NULL
    cdef const index_t* indices_p = &indices[0] if nnz > 0 else NULL
    cdef double zero = 0.0
    cdef const double* v_p = &v[0] if d > 0 else &zero
    cdef Py_ssize_t K = csr_scatter_blocks(n, d, nnz) if transpose is None else 0
    cdef Py_ssize_t R = n_blocks(n, 0) if K <= 1 else K
    cdef double[::1] u = np.empty(n if K <= 1 else 1, dtype=np.float64)
    cdef double[::1] accs = np.empty(R, dtype=np.float64)
    cdef double[:, ::1] partials = np.empty((max(K, 1), max(d, 1) if K > 0 else 1), dtype=np.float64)
    cdef double[::1] g = out
    cdef double total = 0.0
    cdef bint parallel = n_threads > 1 and nnz + n > PARALLEL_MIN_WORK
    with nogil:
        if K > 1:
            for k in prange(K, schedule="dynamic", num_threads=n_threads, use_threads_if=parallel):
                csr_hv_block(data_p, indices_p, &indptr[0], &s[0], v_p, v_b, k * n // K, (k + 1) * n // K,
                             &partials[k, 0], d, &accs[k])
        else:
            for k in prange(R, schedule="dynamic", num_threads=n_threads, use_threads_if=parallel):
                csr_hv_rows(data_p, indices_p, &indptr[0], &s[0], v_p, v_b, k * n // R, (k + 1) * n // R,
                            &u[0], &accs[k])
            if d > 0 and K == 0:
                transposed_product(&t_data[0] if nnz > 0 else NULL, &t_indices[0] if nnz > 0 else NULL,
                                   &t_indptr[0], d, &u[0], False, &g[0], n_threads, parallel)
            elif d > 0:
                csr_scatter(data_p, indices_p, &indptr[0], &u[0], 0, n, &partials[0, 0], d)
        for b in range(R):
            total += accs[b]
        if d > 0 and K > 0:
            reduce_partials(&partials[0, 0], K, d, &g[0], n_threads)
    return out, total
