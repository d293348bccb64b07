"""Scoring and the weighted objective + gradient, compiled by Numba.

Same algorithms as ``cython_core/_scoring.pyx`` and ``cython_core/_objective.pyx`` (read their
docstrings): row-parallel scoring with ``prange``; the objective over K fixed row blocks, K a
function of (n, d) only, each block with its own partial gradient, partials summed in block order,
so the result is bit-identical for any thread count. Dense ``X`` arrives flattened (a view of the
C-contiguous matrix); every row is handed to the dot products of ``_jit`` as a view.
"""
import math

import numpy as np
from numba import prange

from ._jit import apply_output, dot_csr, dot_dense, jit

# Partial gradients never take more than this many bytes; see cython_core/_objective.pyx.
PARTIALS_BUDGET = 64 << 20
MAX_BLOCKS = 256
MIN_BLOCK_ROWS = 512


@jit(parallel=True)
def score_dense(Xf, d, coef, intercept, output, out):
    n = out.shape[0]
    n_nonfinite = 0
    for i in prange(n):
        z = dot_dense(Xf[i * d:(i + 1) * d], coef, d) + intercept
        if not abs(z) < np.inf:  # inf or NaN (NaN compares false)
            n_nonfinite += 1
        out[i] = apply_output(z, output)
    return n_nonfinite


@jit(parallel=True)
def score_csr(data, indices, indptr, coef, intercept, output, out):
    n = indptr.shape[0] - 1
    n_nonfinite = 0
    for i in prange(n):
        z = dot_csr(data[indptr[i]:indptr[i + 1]], indices[indptr[i]:indptr[i + 1]], coef) + intercept
        if not abs(z) < np.inf:
            n_nonfinite += 1
        out[i] = apply_output(z, output)
    return n_nonfinite


@jit()
def n_blocks(n, d):
    """K: a function of (n, d) only, so results do not depend on the thread count."""
    k = (n + MIN_BLOCK_ROWS - 1) // MIN_BLOCK_ROWS
    k = min(k, MAX_BLOCKS)
    k = min(k, PARTIALS_BUDGET // (8 * max(d, 1)))
    return max(k, 1)


@jit()
def row_loss_residual(z, y, w):
    """(w [softplus(z) - y z], w (sigma(z) - y)), exact for y in {0, 1} at any finite |z|
    (written as in cython_core/_objective.pyx: no catastrophic cancellation for y = 1, large z)."""
    e = math.exp(-abs(z))
    l1p = math.log1p(e)
    sp_pos = max(z, 0.0) + l1p
    sp_neg = max(-z, 0.0) + l1p
    inv = 1.0 / (1.0 + e)
    if z >= 0:
        p = inv
        q = e * inv
    else:
        p = e * inv
        q = inv
    return w * ((1.0 - y) * sp_pos + y * sp_neg), w * ((1.0 - y) * p - y * q)


@jit(parallel=True)
def _reduce_partials(partials, out):
    k, d = partials.shape
    for j in prange(d):
        s = 0.0
        for b in range(k):
            s = s + partials[b, j]
        out[j] = s


@jit()
def _finish(loss, g_b, grad, coef, l2, n):
    reg = 0.0
    for j in range(coef.shape[0]):
        reg += coef[j] * coef[j]
        grad[j] = grad[j] / n + l2 * coef[j]
    return loss / n + 0.5 * l2 * reg, g_b / n


@jit(parallel=True)
def objective_grad_dense(Xf, n, d, y, w, coef, intercept, l2, grad):
    """Fills ``grad`` (zeros, length d); returns (loss, grad_intercept)."""
    if n == 0:
        return _finish(0.0, 0.0, grad, coef, l2, 1)
    K = n_blocks(n, d)
    partials = np.zeros((K, max(d, 1)))
    losses = np.zeros(K)
    gbs = np.zeros(K)
    for k in prange(K):
        start = k * n // K
        stop = (k + 1) * n // K
        acc_loss = 0.0
        acc_b = 0.0
        g = partials[k]
        for i in range(start, stop):
            if w[i] == 0.0:  # contributes exactly 0: skip the work
                continue
            x = Xf[i * d:(i + 1) * d]
            z = dot_dense(x, coef, d) + intercept
            li, r = row_loss_residual(z, y[i], w[i])
            acc_loss += li
            acc_b += r
            for j in range(d):
                g[j] += r * np.float64(x[j])
        losses[k] = acc_loss
        gbs[k] = acc_b
    loss = 0.0
    g_b = 0.0
    for b in range(K):
        loss += losses[b]
        g_b += gbs[b]
    if d > 0:
        _reduce_partials(partials, grad)
    return _finish(loss, g_b, grad, coef, l2, n)


@jit(parallel=True)
def objective_grad_csr(data, indices, indptr, d, y, w, coef, intercept, l2, grad):
    """Two passes as in cython_core: residuals + loss over row blocks (count depends on n only),
    then the scatter X^T r over K(n, d) blocks with private partial gradients."""
    n = indptr.shape[0] - 1
    if n == 0:
        return _finish(0.0, 0.0, grad, coef, l2, 1)
    R = n_blocks(n, 0)
    K = n_blocks(n, d)
    residual = np.empty(n)
    losses = np.zeros(R)
    gbs = np.zeros(R)
    for k in prange(R):
        acc_loss = 0.0
        acc_b = 0.0
        for i in range(k * n // R, (k + 1) * n // R):
            if w[i] == 0.0:
                residual[i] = 0.0
                continue
            a = indptr[i]
            b = indptr[i + 1]
            z = dot_csr(data[a:b], indices[a:b], coef) + intercept
            li, r = row_loss_residual(z, y[i], w[i])
            acc_loss += li
            acc_b += r
            residual[i] = r
        losses[k] = acc_loss
        gbs[k] = acc_b
    loss = 0.0
    g_b = 0.0
    for b in range(R):
        loss += losses[b]
        g_b += gbs[b]
    if d > 0:
        partials = np.zeros((K, d))
        for k in prange(K):
            g = partials[k]
            for i in range(k * n // K, (k + 1) * n // K):
                r = residual[i]
                if r == 0.0:
                    continue
                for p in range(indptr[i], indptr[i + 1]):
                    g[indices[p]] += r * np.float64(data[p])
        _reduce_partials(partials, grad)
    return _finish(loss, g_b, grad, coef, l2, n)
