"""Reference weighted logistic objective and gradient (docs/kernels.md, "Objective").

    L(coef, b) = (1/n) sum_i w_i [softplus(z_i) - y_i z_i] + (l2/2) ||coef||^2,   z_i = x_i . coef + b

The intercept is not regularised. d/dz of the bracket is sigma(z) - y.
"""
import numpy as np
import scipy.sparse as sp

from .._math import sigmoid, softplus
from .scoring import log_odds_csr, log_odds_dense


def _finish(z, Xt_dot, y, sample_weight, coef, l2):
    n = z.shape[0]
    if n == 0:
        return 0.5 * l2 * float(coef @ coef), l2 * coef, 0.0
    loss = float(sample_weight @ (softplus(z) - y * z)) / n + 0.5 * l2 * float(coef @ coef)
    residual = sample_weight * (sigmoid(z) - y) / n
    return loss, Xt_dot(residual) + l2 * coef, float(residual.sum())


def objective_grad_dense(X, y, sample_weight, coef, intercept, l2, n_threads=1):
    X64 = X.astype(np.float64, copy=False)
    z = log_odds_dense(X64, coef, intercept)
    return _finish(z, lambda r: X64.T @ r, y, sample_weight, coef, l2)


def objective_grad_csr(data, indices, indptr, n_features, y, sample_weight, coef, intercept, l2, n_threads=1):
    z = log_odds_csr(data, indices, indptr, coef, intercept)
    n_rows = indptr.shape[0] - 1
    X = sp.csr_array((data.astype(np.float64), indices, indptr), shape=(n_rows, n_features))
    return _finish(z, lambda r: X.T @ r, y, sample_weight, coef, l2)
