"""Reference scoring: z = X @ coef + b in float64, then the output transform."""
import numpy as np

from .._math import transform


# An overflowing dot product (|x_j coef_j| beyond 1.8e308) gives an inf or NaN log-odds, as in the
# compiled kernels, with no floating-point warning: the caller counts non-finite log-odds and the
# adapter raises or reports (the README promises no floating-point warnings).

def log_odds_dense(X, coef, intercept):
    """float64 log-odds of dense X (products and sums in float64 whatever X's dtype)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return X.astype(np.float64, copy=False) @ coef + intercept


def log_odds_csr(data, indices, indptr, coef, intercept):
    """float64 log-odds of a CSR matrix, one segment sum per row."""
    n_rows = indptr.shape[0] - 1
    with np.errstate(over="ignore", invalid="ignore"):
        products = data.astype(np.float64) * coef[indices]
        row_of_entry = np.repeat(np.arange(n_rows), np.diff(indptr))
        return np.bincount(row_of_entry, weights=products, minlength=n_rows) + intercept


def _store(out, values):
    # Rounding float64 results into a float32 ``out`` may give 0 or +-inf (|value| beyond float32's
    # range): that is the dtype's answer, as in the compiled kernels, not a floating-point error.
    with np.errstate(under="ignore", over="ignore"):
        out[:] = values


def score_dense(X, coef, intercept, output, out, n_threads=1):
    _store(out, transform(log_odds_dense(X, coef, intercept), output))


def score_csr(data, indices, indptr, coef, intercept, output, out, n_threads=1):
    _store(out, transform(log_odds_csr(data, indices, indptr, coef, intercept), output))
