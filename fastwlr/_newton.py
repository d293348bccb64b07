"""Exact second-order solver for data in memory: Newton's method with the full Hessian.

It minimises the objective of ``fastwlr._lbfgs`` (the estimators' objective, docs/theory.md)

    L(coef, b) = sum_i w_i [softplus(z_i) - y_i z_i] / sum_i w_i + (alpha / 2) ||coef||^2

with the same weight normalisation (the kernels get w * n / sum(w)) and the same gradient kernel, so
both solvers have one optimum and one stopping rule. Each iteration reads X once for the loss, the
gradient and the Hessian

    H = (1/n) X~^T D X~ + alpha * diag(1, ..., 1, 0),   X~ = (X, 1),   D = diag(w~_i p_i (1 - p_i))

(the intercept's row and column last; the penalty is on the coefficients only, in the user's
coordinates; the step that the last one's quadratic rate predicts to end the fit is evaluated without
its Hessian), solves H step = -gradient by Cholesky (of the Jacobi-scaled H; an eigenvalue floor
when it is not numerically positive definite) and backtracks (Armijo) along the step. The Hessian
is dense: (d + 1)^2 float64, so d + 1 <= ``MAX_HESSIAN_SIZE`` (beyond that: ``solver="lbfgs"``).

Tolerance, as lbfgs's (``fastwlr._lbfgs.DEFAULT_TOL``): stop when max_j |dL/dcoef_j| * scale_j <= tol
and |dL/db| <= tol, scale_j = 1 / sqrt(sum_i w~_i x_ij^2 / n) for dense X (lbfgs's preconditioner,
here from all rows of the first pass), 1 for CSR (lbfgs does not precondition CSR). Newton converges
quadratically near the optimum, so the tight default costs one or two iterations more than a loose one.
"""
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ._kernels import Kernels
from ._lbfgs import DEFAULT_TOL, _base_log_odds, _feature_scale, _penalty_ridge, _scale_from_sq, _with_ridge
from ._weights import normalised_weights
from .exceptions import ConvergenceWarning, DivergenceError

DEFAULT_MAX_ITER = 100
# Largest (d + 1) of a dense Hessian: 4096^2 float64 = 128 MiB per copy; the solver holds at most three
# at a time (the current one, a trial point's and the kernel's block partials, or the factorised copy).
MAX_HESSIAN_SIZE = 4096
MAX_LINE_SEARCH = 50  # halvings of the step before giving up (lbfgs's maxls)
ARMIJO = 1e-4         # sufficient decrease: L(theta + t step) <= L + ARMIJO t grad . step
EIGEN_FLOOR = 1e-12   # relative floor of the scaled Hessian's eigenvalues when Cholesky fails


@dataclass
class NewtonResult:
    coef: np.ndarray      # float64 (d,)
    intercept: float
    loss: float           # weighted-mean objective at the solution (penalty included)
    n_iter: int           # Newton steps taken
    converged: bool
    n_fev: int            # passes over X (Hessian passes and line-search evaluations)
    grad_max: float       # the stopping criterion at the solution (see the module docstring)
    message: str


def check_size(n_features):
    """ValueError when the dense Hessian of ``n_features`` + 1 parameters is too large."""
    p = n_features + 1
    if p > MAX_HESSIAN_SIZE:
        raise ValueError(
            f"solver='newton' builds a dense (n_features + 1)^2 Hessian: {n_features} features need "
            f"{p * p * 8 / 2**20:,.0f} MiB per copy, more than the limit of n_features + 1 <= "
            f"{MAX_HESSIAN_SIZE}; use solver='lbfgs' (memory O(n_features)), e.g. for hashed features")


def fit_newton(features, y, sample_weight, *, alpha, fit_intercept=True, coef_init=None,
               intercept_init=0.0, tol=DEFAULT_TOL, max_iter=DEFAULT_MAX_ITER, n_threads=1,
               backend=None, verbose=0):
    """Minimise the weighted-mean objective exactly (to ``tol``) by Newton's method.

    Parameters as ``fastwlr._lbfgs.fit_lbfgs`` (``features``: validated dense float32/float64 or
    CSR; ``sample_weight`` non-negative, not all zero, never modified). ``n_threads``: threads of
    the compiled pass; the result does not depend on it.

    Returns
    -------
    NewtonResult
    """
    d = features.n_features
    check_size(d)
    w = normalised_weights(sample_weight)
    kernels = Kernels(backend, n_threads)
    alpha = float(alpha)
    p = d + 1 if fit_intercept else d  # the free parameters: coef (and the intercept)

    theta = np.zeros(d + 1)
    if coef_init is not None:
        theta[:d] = coef_init
    if fit_intercept:
        theta[d] = intercept_init if coef_init is not None else _base_log_odds(y, w)

    def split(t):
        return np.ascontiguousarray(t[:d]), (float(t[d]) if fit_intercept else 0.0)

    started = time.perf_counter()
    n_fev = 0

    def full(t, want_sq=False):
        """(loss, grad, H, colsq) at t, or None if any of them is not finite."""
        nonlocal n_fev
        n_fev += 1
        coef, b = split(t)
        loss, g, gb, H, sq = kernels.objective_grad_hess(features, y, w, coef, b, alpha, want_sq)
        grad = np.append(g, gb if fit_intercept else 0.0)
        if not (math.isfinite(loss) and np.isfinite(grad).all() and np.isfinite(H).all()):
            return None
        return loss, grad, H, sq

    def cheap(t):
        """(loss, grad, None, None) at t, or None if they are not finite."""
        nonlocal n_fev
        n_fev += 1
        coef, b = split(t)
        loss, g, gb = kernels.objective_grad(features, y, w, coef, b, alpha)
        grad = np.append(g, gb if fit_intercept else 0.0)
        if not (math.isfinite(loss) and np.isfinite(grad).all()):
            return None
        return loss, grad, None, None

    start = full(theta, want_sq=not features.is_sparse)
    if start is None:
        raise _diverged(theta)
    loss, grad, H, sq = start
    crit = np.ones(d + 1)  # the stopping rule's scale per parameter (lbfgs's preconditioner)
    if not features.is_sparse:
        ridge = _penalty_ridge(alpha, _base_log_odds(y, w) if fit_intercept else 0.0)
        crit[:d] = _with_ridge(_scale_from_sq(sq, features.n_rows), ridge)

    def criterion(g):
        return float(np.abs(g * crit).max(initial=0.0))

    gmax = criterion(grad)
    n_iter, message, stalled = 0, "", False
    contraction = None  # gmax_new / gmax^2 of the last full step: quadratic convergence's constant
    while True:
        if gmax <= tol:
            message = f"max scaled |gradient| {gmax:.3g} <= tol"
            break
        if n_iter >= max_iter:
            message = f"max_iter = {max_iter} iterations reached"
            break
        step = _newton_step(H[:p, :p], grad[:p], alpha, d)
        slope = float(grad[:p] @ step)
        if not slope < 0.0:  # H numerically singular along the gradient: no descent direction
            message, stalled = "the Newton step is not a descent direction", True
            break
        # Backtracking: the full step (almost always taken) is tried with the Hessian pass itself,
        # so an accepted full step needs no second read of X; shorter steps with the cheap pass. And
        # the full step too when the last step's rate of quadratic convergence predicts it ends the
        # fit: the Hessian there would not be used (freMTPL2: the last pass costs a third).
        last_step = contraction is not None and contraction * gmax * gmax <= tol
        t, accepted, new = 1.0, False, None
        for _ in range(MAX_LINE_SEARCH):
            trial = theta.copy()
            trial[:p] += t * step
            found = full(trial) if t == 1.0 and not last_step else cheap(trial)
            if found is None:  # the step overflowed (log-odds beyond float64): shorter
                t *= 0.5
                continue
            loss_t, grad_t, H_t, _ = found
            if loss_t <= loss + ARMIJO * t * slope or (
                    # within the loss's rounding (near the optimum the decrease, ~ gradient^2,
                    # is below it): accept a step that still shrinks the gradient
                    loss_t - loss <= 16 * np.finfo(float).eps * abs(loss) and criterion(grad_t) < gmax):
                accepted, new = True, (trial, loss_t, grad_t, H_t)
                break
            t *= 0.5
        if not accepted:
            message, stalled = "the line search found no decrease", True
            break
        theta, loss, grad, H = new
        gmax_before, gmax = gmax, criterion(grad)
        contraction = gmax / (gmax_before * gmax_before) if t == 1.0 and gmax_before > 0 else None
        if H is None and gmax > tol:  # the next step needs the Hessian here
            found = full(theta)
            if found is None:  # finite a pass ago, at this very point: the Hessian overflowed
                raise _diverged(theta)
            loss, grad, H, _ = found
            gmax = criterion(grad)
        n_iter += 1
        if verbose:
            print(f"newton iteration {n_iter}: objective {float(loss):.12g}, max |gradient| {gmax:.3g} "
                  f"(tol {tol:g}), step {t:g}, {time.perf_counter() - started:.3f} s", flush=True)

    coef, b = split(theta)
    converged = gmax <= tol
    if not converged and stalled and gmax <= tol * _feature_scale(features):
        # as lbfgs: no decrease is left in float64 and the gradient is as small as its rounding noise
        converged = True
    if verbose:
        print(f"newton: {'converged' if converged else 'not converged'} after {n_iter} iterations "
              f"({n_fev} passes), objective {float(loss):.12g}, max |gradient| {gmax:.3g} (tol {tol:g}), "
              f"{time.perf_counter() - started:.3f} s: {message}", flush=True)
    if not converged:
        warnings.warn(
            f"newton stopped after {n_iter} iterations with max |gradient| = {gmax:.3g} > tol = {tol:g} "
            f"({message}). Increase max_iter, scale the features (e.g. to unit variance), or increase "
            "alpha (separable data has no finite optimum without regularisation).",
            ConvergenceWarning, stacklevel=4)
    return NewtonResult(coef=coef, intercept=b, loss=float(loss), n_iter=n_iter, converged=bool(converged),
                        n_fev=n_fev, grad_max=gmax, message=message)


def _newton_step(H, g, alpha, d):
    """Solve (H + alpha I_coef) step = -g: Cholesky of the Jacobi-scaled matrix, an eigenvalue
    floor when that is not numerically positive definite (collinear columns, alpha = 0)."""
    from scipy.linalg import LinAlgError, cho_factor, cho_solve, eigh

    A = H.copy()  # factorised in place below
    idx = np.arange(d)
    A[idx, idx] += alpha
    diag = np.diag(A).copy()
    scale = np.ones_like(diag)
    ok = diag > 0
    scale[ok] = 1.0 / np.sqrt(diag[ok])
    A *= scale[:, None]
    A *= scale[None, :]
    rhs = -g * scale
    try:
        u = cho_solve(cho_factor(A, lower=True, overwrite_a=True, check_finite=False), rhs, check_finite=False)
        if np.isfinite(u).all():
            return u * scale
    except LinAlgError:
        pass
    A = H.copy()  # cho_factor overwrote it
    A[idx, idx] += alpha
    A *= scale[:, None]
    A *= scale[None, :]
    lam, V = eigh(A, overwrite_a=True, check_finite=False)
    floor = EIGEN_FLOOR * max(float(lam.max(initial=0.0)), 1.0)
    lam = np.maximum(lam, floor)
    return (V @ ((V.T @ rhs) / lam)) * scale


def _diverged(theta):
    return DivergenceError(
        f"newton diverged: the loss, gradient or Hessian is not finite (coefficients finite: "
        f"{bool(np.isfinite(theta).all())}). The features or weights are too large for float64 arithmetic: "
        "scale the features, or increase alpha.")
