# cython: language_level=3
"""The weighted logistic objective and its gradient in one pass (DESIGN.md section 1).

    L(coef, b) = (1/n) sum_i w_i [softplus(z_i) - y_i z_i] + (l2/2) ||coef||^2,   z_i = x_i . coef + b

Determinism: rows are cut into K contiguous blocks, where K depends only on (n, d) (never on the
thread count); each block accumulates its own partial loss / gradient in row order, and the K
partials are then summed in block order. So the result is bit-identical for any ``n_threads``
(OpenMP only decides which thread runs which block; blocks are handed out dynamically, so a
thread slowed down by other processes does not hold the others up).

Memory: the K partial gradients take K * d doubles. K is capped so that they stay under
``PARTIALS_BUDGET`` bytes: dense data with d = 64 gets up to 256 blocks (128 KiB). For CSR, zeroing and
reducing a block costs O(d), so K is also capped at nnz / (4 d): hashed data with 20M non-zeros over
d = 2^20 columns gets 4 blocks (32 MiB); d >= 2^23 or few non-zeros per column get one block, i.e. a
serial gradient scatter (the per-row work -- dot product, exp, log1p -- stays parallel, see
``objective_grad_csr``).
"""
import numpy as np

from cython.parallel cimport prange
from libc.math cimport exp, log1p, fabs, fmax
from libc.string cimport memset

from ._math cimport feature_t, index_t, dot_dense, dot_csr

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


cdef inline double row_loss_residual(double z, double y, double w, double* residual) noexcept nogil:
    """w * [softplus(z) - y z] and, in ``residual``, w * (sigma(z) - y).

    Written as (1 - y) softplus(z) + y softplus(-z) and (1 - y) sigma(z) - y sigma(-z): algebraically
    the same, but exact for y in {0, 1} at any finite |z| (the direct form cancels catastrophically
    when y = 1 and z is large). One exp and one log1p a row.
    """
    cdef double e = exp(-fabs(z))       # in (0, 1]: never overflows; underflows to 0 for |z| > 745
    cdef double l1p = log1p(e)
    cdef double sp_pos = fmax(z, 0.0) + l1p    # softplus(z)
    cdef double sp_neg = fmax(-z, 0.0) + l1p   # softplus(-z)
    cdef double inv = 1.0 / (1.0 + e)
    cdef double p, q                           # sigma(z), sigma(-z), each computed without 1 - x
    if z >= 0:
        p = inv
        q = e * inv
    else:
        p = e * inv
        q = inv
    residual[0] = w * ((1.0 - y) * p - y * q)
    return w * ((1.0 - y) * sp_pos + y * sp_neg)


cdef inline void axpy(double* g, double a, const feature_t* x, Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(d):
        g[j] += a * <double>x[j]


cdef void dense_block(const feature_t* X, Py_ssize_t d, const double* y, const double* w,
                      const double* coef, double intercept, Py_ssize_t start, Py_ssize_t stop,
                      double* g, double* loss, double* g_b) noexcept nogil:
    cdef Py_ssize_t i
    cdef double z, r, acc_loss = 0.0, acc_b = 0.0
    memset(g, 0, d * sizeof(double))
    for i in range(start, stop):
        if w[i] == 0.0:  # contributes exactly 0 to loss and gradient; skip the work
            continue
        z = dot_dense(X + i * d, coef, d) + intercept
        acc_loss += row_loss_residual(z, y[i], w[i], &r)
        acc_b += r
        axpy(g, r, X + i * d, d)
    loss[0] = acc_loss
    g_b[0] = acc_b


cdef void reduce_partials(const double* partials, Py_ssize_t k, Py_ssize_t d, double* out,
                          int n_threads) noexcept nogil:
    """out[j] = sum over blocks, in block order, of partials[b, j] (parallel over j)."""
    cdef Py_ssize_t j, b
    cdef double s
    for j in prange(d, schedule="static", num_threads=n_threads,
                    use_threads_if=n_threads > 1 and k * d > PARALLEL_MIN_WORK):
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
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k, b
    grad = np.zeros(d, dtype=np.float64)
    if n == 0:
        return _finish(0.0, 0.0, grad, coef, l2, 1)
    cdef Py_ssize_t K = n_blocks(n, d)
    cdef double[:, ::1] partials = np.empty((K, max(d, 1)), dtype=np.float64)
    cdef double[::1] losses = np.empty(K, dtype=np.float64)
    cdef double[::1] gbs = np.empty(K, dtype=np.float64)
    cdef double[::1] g = grad
    cdef double loss = 0.0, g_b = 0.0
    cdef const feature_t* Xp = &X[0, 0] if d > 0 else NULL
    with nogil:
        for k in prange(K, schedule="dynamic", num_threads=n_threads,
                        use_threads_if=n_threads > 1 and n * (d + 1) > PARALLEL_MIN_WORK):
            dense_block(Xp, d, &y[0], &sample_weight[0], &coef[0] if d > 0 else NULL, intercept,
                        k * n // K, (k + 1) * n // K, &partials[k, 0], &losses[k], &gbs[k])
        for b in range(K):
            loss += losses[b]
            g_b += gbs[b]
        if d > 0:
            reduce_partials(&partials[0, 0], K, d, &g[0], n_threads)
    return _finish(loss, g_b, grad, coef, l2, n)


cdef void csr_rows(const feature_t* data, const index_t* indices, const index_t* indptr,
                   const double* y, const double* w, const double* coef, double intercept,
                   Py_ssize_t start, Py_ssize_t stop, double* residual, double* loss,
                   double* g_b) noexcept nogil:
    cdef Py_ssize_t i
    cdef double z, r, acc_loss = 0.0, acc_b = 0.0
    for i in range(start, stop):
        if w[i] == 0.0:
            residual[i] = 0.0
            continue
        z = dot_csr(data, indices, indptr[i], indptr[i + 1], coef) + intercept
        acc_loss += row_loss_residual(z, y[i], w[i], &r)
        acc_b += r
        residual[i] = r
    loss[0] = acc_loss
    g_b[0] = acc_b


cdef void csr_scatter(const feature_t* data, const index_t* indices, const index_t* indptr,
                      const double* residual, Py_ssize_t start, Py_ssize_t stop, double* g,
                      Py_ssize_t d) noexcept nogil:
    cdef Py_ssize_t i, p
    cdef double r
    memset(g, 0, d * sizeof(double))
    for i in range(start, stop):
        r = residual[i]
        if r == 0.0:
            continue
        for p in range(indptr[i], indptr[i + 1]):
            g[indices[p]] += r * <double>data[p]


def objective_grad_csr(const feature_t[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                       Py_ssize_t n_features, const double[::1] y, const double[::1] sample_weight,
                       const double[::1] coef, double intercept, double l2, int n_threads):
    """CSR version, in two parallel passes so that a huge d does not serialise the per-row work:
    (1) residuals w_i (sigma(z_i) - y_i) and loss, over row blocks whose count depends on n only;
    (2) the gradient scatter X^T r over K(n, d) blocks with private partial gradients."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, d = n_features, nnz = indices.shape[0], k, b
    grad = np.zeros(d, dtype=np.float64)
    if n == 0:
        return _finish(0.0, 0.0, grad, coef, l2, 1)
    cdef const feature_t* data_p = &data[0] if nnz > 0 else NULL
    cdef const index_t* indices_p = &indices[0] if nnz > 0 else NULL
    cdef const double* coef_p = &coef[0] if d > 0 else NULL
    cdef Py_ssize_t R = n_blocks(n, 0)  # row blocks for pass 1: no per-block buffer of size d
    # Scatter blocks: each costs O(d) to zero and reduce, so keep K * d well under nnz (a function of
    # n, d and nnz only, never of the thread count).
    cdef Py_ssize_t K = max(1, min(n_blocks(n, d), nnz // (4 * max(d, 1))))
    cdef double[::1] residual = np.empty(n, dtype=np.float64)
    cdef double[::1] losses = np.empty(R, dtype=np.float64)
    cdef double[::1] gbs = np.empty(R, dtype=np.float64)
    cdef double[:, ::1] partials = np.empty((K, max(d, 1)), dtype=np.float64)
    cdef double[::1] g = grad
    cdef double loss = 0.0, g_b = 0.0
    cdef bint parallel = n_threads > 1 and nnz + n > PARALLEL_MIN_WORK
    with nogil:
        for k in prange(R, schedule="dynamic", num_threads=n_threads, use_threads_if=parallel):
            csr_rows(data_p, indices_p, &indptr[0], &y[0], &sample_weight[0], coef_p, intercept,
                     k * n // R, (k + 1) * n // R, &residual[0], &losses[k], &gbs[k])
        for b in range(R):
            loss += losses[b]
            g_b += gbs[b]
        if d > 0:
            for k in prange(K, schedule="dynamic", num_threads=n_threads,
                            use_threads_if=parallel and K > 1):
                csr_scatter(data_p, indices_p, &indptr[0], &residual[0], k * n // K, (k + 1) * n // K,
                            &partials[k, 0], d)
            reduce_partials(&partials[0, 0], K, d, &g[0], n_threads)
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
