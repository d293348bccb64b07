"""Exact solver for wide data in memory: trust-region Newton-CG (``solver="newton-cg"``).

It minimises the objective of ``fastwlr._lbfgs`` and ``fastwlr._newton``

    L(coef, b) = sum_i w_i [softplus(z_i) - y_i z_i] / sum_i w_i + (alpha / 2) ||coef||^2

(the kernels get w * n / sum(w): the same objective, loss of order 1) without ever forming the
Hessian: each Newton step H step = -gradient is solved approximately by conjugate gradients whose
products H v = (1/n) X~^T diag(s) X~ v + alpha v, X~ = (X, 1), s_i = w_i p_i (1 - p_i), cost two
passes over X (compiled for CSR: ``Kernels.hessian_vector``). This is LIBLINEAR's TRON (Lin, Weng &
Keerthi 2008; Hsia, Chiang & Lin 2018 for the preconditioner): the step is confined to a trust
region, the CG is preconditioned by the Hessian's diagonal (one-hot columns of very different
frequencies otherwise need many more CG steps), and the region grows or shrinks with the ratio of
actual to predicted decrease, so no line search is needed. CG stops at a relative residual
min(0.5, sqrt(|g|)), which makes the outer iterations superlinear near the optimum.

For d in the hundreds of thousands it needs memory O(n + d) and a few vector operations per CG
step; scipy's L-BFGS-B (``solver="lbfgs"``) spends ~0.2 s an iteration on its own bookkeeping at
d = 2^18, more than a pass over 4M non-zeros.

Tolerance, as the other exact solvers': stop when max_j |dL/dcoef_j| * scale_j <= tol and
|dL/db| <= tol (``fastwlr._lbfgs.DEFAULT_TOL``), scale_j lbfgs's preconditioner for dense X and 1
for CSR.
"""
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ._kernels import Kernels
from ._lbfgs import DEFAULT_TOL, _base_log_odds, _column_scale, _feature_scale, _penalty_ridge, _with_ridge
from ._weights import normalised_weights
from .exceptions import ConvergenceWarning, DivergenceError

DEFAULT_MAX_ITER = 200   # outer (trust-region) iterations
MAX_CG = 250             # CG steps per outer iteration
# LIBLINEAR's trust-region constants: a step is accepted above ETA0 of its predicted decrease; the
# region shrinks below ETA1, grows above ETA2, by factors SIGMA1..SIGMA3.
ETA0, ETA1, ETA2 = 1e-4, 0.25, 0.75
SIGMA1, SIGMA2, SIGMA3 = 0.25, 0.5, 4.0
# And the textbook rule on top (Nocedal & Wright, Algorithm 4.1): a step as long as the region whose
# decrease the model predicted well (above ETA2) at least doubles it. LIBLINEAR's quadratic fit alone
# leaves the radius about where it was when the model is right along the step, so later CG solves kept
# stopping at the radius of the first step (300k x 2^18 x 40 hashed, alpha 1e-5: 113 -> 93 CG steps).
GROW = 2.0
# CG also stops once max |residual * crit| is this fraction of tol: the gradient after the step is
# about -residual, so solving further only overshoots the fit's tol (1M x 2^20 x 40: the last CG
# solve 19 -> 16 products). 0.5 missed an objective within 1e-9 of the optimum on a test set.
OVERSOLVE = 0.1


@dataclass
class TronResult:
    coef: np.ndarray      # float64 (d,)
    intercept: float
    loss: float           # weighted-mean objective at the solution (penalty included)
    n_iter: int           # outer iterations (accepted or not)
    converged: bool
    n_cg: int             # CG steps in all (each one Hessian-vector product: two passes over X)
    grad_max: float       # the stopping criterion at the solution
    message: str


def fit_tron(features, y, sample_weight, *, alpha, fit_intercept=True, coef_init=None, intercept_init=0.0,
             tol=DEFAULT_TOL, max_iter=DEFAULT_MAX_ITER, n_threads=1, backend=None, verbose=0):
    """Minimise the weighted-mean objective exactly (to ``tol``) by trust-region Newton-CG.

    Parameters as ``fastwlr._lbfgs.fit_lbfgs``. ``n_threads``: threads of the compiled passes; the
    result does not depend on it.

    Returns
    -------
    TronResult
    """
    d, n = features.n_features, max(features.n_rows, 1)
    w = normalised_weights(sample_weight)
    kernels = Kernels(backend, n_threads)
    features = kernels.with_transpose(features)  # every CG step reads X: its transpose may pay
    alpha = float(alpha)
    p = d + 1 if fit_intercept else d  # free parameters: coef (and the intercept, last)
    base = _base_log_odds(y, w) if fit_intercept else 0.0

    theta = np.zeros(d + 1)
    if coef_init is not None:
        theta[:d] = coef_init
    if fit_intercept:
        theta[d] = intercept_init if coef_init is not None else base
    crit = np.ones(d + 1)  # the stopping rule's scale per parameter (lbfgs's preconditioner)
    if not features.is_sparse:
        crit[:d] = _with_ridge(_column_scale(features, w, kernels), _penalty_ridge(alpha, base))

    def evaluate(t):
        coef = np.ascontiguousarray(t[:d])
        b = float(t[d]) if fit_intercept else 0.0
        # with the curvature weights at t and their column sums where the kernel gives them from the
        # same passes: if the step to t is accepted, its curvature then costs no read of X
        loss, g, gb, s_t, diag_t = kernels.objective_grad_curvature(features, y, w, coef, b, alpha)
        grad = np.append(g, gb if fit_intercept else 0.0)
        if not (math.isfinite(loss) and np.isfinite(grad).all()):
            return None
        return float(loss), grad, (None if s_t is None else (s_t, diag_t))

    def criterion(g):
        return float(np.abs(g * crit).max(initial=0.0))

    started = time.perf_counter()
    found = evaluate(theta)
    if found is None:
        raise _diverged(theta)
    loss, grad, s_at = found
    gmax = criterion(grad)
    s = diag = None
    delta = None
    n_iter = n_cg = 0
    message, stalled = "", False
    while True:
        if gmax <= tol:
            message = f"max scaled |gradient| {gmax:.3g} <= tol"
            break
        if n_iter >= max_iter:
            message = f"max_iter = {max_iter} iterations reached"
            break
        if s is None:  # the curvature at the current point (after each accepted step)
            if s_at is not None:
                s, diag = s_at
            else:
                s, diag = kernels.curvature(features, w, np.ascontiguousarray(theta[:d]),
                                            float(theta[d]) if fit_intercept else 0.0)
            if not (np.isfinite(s).all() and np.isfinite(diag).all()):
                raise _diverged(theta)
            M = np.empty(p)  # the Hessian's diagonal: the CG's preconditioner
            M[:d] = diag / n + alpha
            if fit_intercept:
                M[d] = float(s.sum()) / n
            M = np.where(M > 0, M, 1.0)
            s_n = s / n   # the products' 1/n, once an outer iteration instead of a pass per CG step

        def hv(v, s_n=s_n, out=np.empty(p)):
            # into one buffer per outer iteration: at d = 2^20 each fresh 8 MB vector cost page faults
            u, ub = kernels.hessian_vector(features, s_n, v[:d], float(v[d]) if fit_intercept else 0.0)
            np.multiply(v[:d], alpha, out=out[:d])
            out[:d] += u
            if fit_intercept:
                out[d] = ub
            return out

        g = grad[:p]
        gnorm_m = math.sqrt(_dot(g, g / M))
        if delta is None:
            delta = gnorm_m
        step, r, k = _steihaug(hv, g, M, delta, min(0.5, math.sqrt(gnorm_m)) * gnorm_m,
                               None if features.is_sparse else crit[:p], OVERSOLVE * tol)
        n_cg += k
        trial = theta.copy()
        trial[:p] += step
        gs = _dot(g, step)
        prered = -0.5 * (gs - _dot(step, r))
        found = evaluate(trial)
        snorm = math.sqrt(_dot_m(step, M, step))
        if n_iter == 0:
            delta = min(delta, snorm)
        n_iter += 1
        if found is None:  # the step overflowed: shrink the region, try again
            delta = SIGMA1 * min(delta, snorm)
            continue
        loss_new, grad_new, s_new = found
        actred = loss - loss_new
        full_length = snorm >= (1.0 - 1e-9) * delta  # the step reached the region's boundary
        # the region's new radius from a quadratic fit along the step (LIBLINEAR's rule)
        denom = loss_new - loss - gs
        scale = SIGMA3 if denom <= 0 else max(SIGMA1, -0.5 * gs / denom)
        if actred < ETA0 * prered:
            delta = min(scale * snorm, SIGMA2 * delta)
        elif actred < ETA1 * prered:
            delta = max(SIGMA1 * delta, min(scale * snorm, SIGMA2 * delta))
        elif actred < ETA2 * prered:
            delta = max(SIGMA1 * delta, min(scale * snorm, SIGMA3 * delta))
        else:
            delta = max(delta, min(scale * snorm, SIGMA3 * delta), GROW * delta if full_length else 0.0)
        accepted = actred > ETA0 * prered
        if not accepted and loss_new - loss <= 16 * np.finfo(float).eps * abs(loss) \
                and criterion(grad_new) < gmax:
            accepted = True  # within the loss's rounding near the optimum, the gradient still shrinks
        if accepted:
            theta, loss, grad, s, s_at = trial, loss_new, grad_new, None, s_new
            gmax = criterion(grad)
        if verbose:
            print(f"newton-cg iteration {n_iter}: objective {loss:.12g}, max |gradient| {gmax:.3g} (tol {tol:g}), "
                  f"{k} CG steps, {'accepted' if accepted else 'rejected'}, radius {delta:.3g}, "
                  f"{time.perf_counter() - started:.3f} s", flush=True)
        if not accepted and (prered <= 0 or delta <= 1e-12 * max(1.0, float(np.abs(theta).max()))):
            message, stalled = "the trust region cannot find a decrease", True
            break

    coef = np.ascontiguousarray(theta[:d])
    b = float(theta[d]) if fit_intercept else 0.0
    converged = gmax <= tol
    if not converged and stalled and gmax <= tol * _feature_scale(features):
        converged = True  # as lbfgs: no decrease is left in float64, the gradient is rounding noise
    if verbose:
        print(f"newton-cg: {'converged' if converged else 'not converged'} after {n_iter} iterations "
              f"({n_cg} CG steps), objective {loss:.12g}, max |gradient| {gmax:.3g} (tol {tol:g}), "
              f"{time.perf_counter() - started:.3f} s: {message}", flush=True)
    if not converged:
        warnings.warn(
            f"newton-cg stopped after {n_iter} iterations with max |gradient| = {gmax:.3g} > tol = {tol:g} "
            f"({message}). Increase max_iter, scale the features, or increase alpha (separable data has no "
            "finite optimum without regularisation).", ConvergenceWarning, stacklevel=4)
    return TronResult(coef=coef, intercept=b, loss=loss, n_iter=n_iter, converged=bool(converged), n_cg=n_cg,
                      grad_max=gmax, message=message)


def _dot(a, b):
    """a . b without BLAS: OpenBLAS threads ddot on long vectors, and where other processes keep the
    cores busy each call waits for a descheduled worker (2,500 x 2^16 CSR: a 60 ms fit took 0.3-0.8 s
    on a loaded machine); einsum's own loop is one thread and always sums in the same order."""
    return float(np.einsum("i,i", a, b))


def _steihaug(hv, g, M, delta, cg_tol, crit, done):
    """Preconditioned CG on H step = -g within ||step||_M <= delta (Steihaug): (step, residual
    -g - H step, CG steps). Stops at ||r||_{M^-1} <= cg_tol, once max |r * crit| <= done (see
    OVERSOLVE), at the region's boundary, or along a direction of non-positive curvature (to the
    boundary). ``hv`` may return the same buffer each time; the vectors here are updated in place
    (a CG step at d = 2^20 spent 8 ms on temporaries).

    ||step||_M, step . M direction and ||direction||_M follow from CG's recurrences (Conn, Gould &
    Toint, Trust-Region Methods, 7.5.1) instead of a pass each: a CG step reads the vectors
    (2 MB each at d = 2^18) about ten times instead of fifteen. So does the max-norm test, skipped
    while the residual is provably too large for it: max |r_i c_i| >= sqrt(min(M c^2) r.M^-1 r / p)."""
    p = g.shape[0]
    step = np.zeros_like(g)
    r = -g
    m_inv = 1.0 / M
    z = r * m_inv
    direction = z.copy()
    tmp = np.empty_like(g)
    rz = _dot(r, z)
    s_ms, s_md, d_md = 0.0, 0.0, rz   # ||step||_M^2, step . M direction, ||direction||_M^2 (= r . z now)
    c2_min = float(M.min()) if crit is None else float((M * crit * crit).min())
    for k in range(1, MAX_CG + 1):
        if math.sqrt(max(rz, 0.0)) <= cg_tol or (
                k > 1 and c2_min * rz <= p * done * done and _max_abs(r, crit) <= done):
            return step, r, k - 1
        Hd = hv(direction)
        dHd = _dot(direction, Hd)
        if dHd > 0:
            a = rz / dHd
            s_ms_next = s_ms + a * (2.0 * s_md + a * d_md)
            if s_ms_next <= delta * delta:
                np.multiply(direction, a, out=tmp)
                step += tmp
                np.multiply(Hd, a, out=tmp)
                r -= tmp
                np.multiply(r, m_inv, out=z)
                rz_new = _dot(r, z)
                beta = rz_new / rz
                s_ms, s_md, d_md = s_ms_next, beta * (s_md + a * d_md), rz_new + beta * beta * d_md
                direction *= beta
                direction += z
                rz = rz_new
                continue
        # to the boundary: ||step + tau direction||_M = delta, tau >= 0
        tau = (-s_md + math.sqrt(max(s_md * s_md + d_md * (delta * delta - s_ms), 0.0))) / d_md
        return step + tau * direction, r - tau * Hd, k
    return step, r, MAX_CG


def _max_abs(r, crit):
    """max |r * crit| (crit None: all ones), without a temporary where it can."""
    if crit is None:
        return max(float(r.max()), -float(r.min()), 0.0) if r.shape[0] else 0.0
    return float(np.abs(r * crit).max(initial=0.0))


def _dot_m(a, M, b):
    """a . (M * b), as _dot, without the temporary."""
    return float(np.einsum("i,i,i", a, M, b))


def _diverged(theta):
    return DivergenceError(
        f"newton-cg diverged: the loss or gradient is not finite (coefficients finite: "
        f"{bool(np.isfinite(theta).all())}). The features or weights are too large for float64 arithmetic: "
        "scale the features, or increase alpha.")
