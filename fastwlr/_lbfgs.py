"""Exact full-batch solver: scipy's L-BFGS-B driven by the compiled objective + gradient kernel.

It minimises the weighted-mean objective (docs/theory.md)

    L(coef, b) = sum_i w_i [softplus(z_i) - y_i z_i] / sum_i w_i + (alpha / 2) ||coef||^2

The kernel contract computes (1/n) sum_i w_i ... ; we pass it w / mean(w), which is the same
objective. Normalising by the mean keeps the loss O(1) whatever the scale of the weights (watch
times in the millions), so L-BFGS's tolerances mean the same thing for every data set, and the
optimum does not change when all weights are multiplied by a constant.

This is the ground truth the stochastic solvers are tested against, so its default tolerance is
tight: it stops when the largest (preconditioned) gradient component is below ``tol``.
"""
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ._kernels import Kernels
from .exceptions import ConvergenceWarning, DivergenceError
from ._weights import normalised_weights  # w * (n / sum w): same optimum, loss of order 1

# Default gradient tolerance: stop when max_j |dL/dcoef_j| * scale_j <= tol (and |dL/db| <= tol), where
# scale_j = 1 / sqrt(weighted mean of x_j^2 + ridge) is the diagonal preconditioner (see ``minimize``;
# ridge is the L2 penalty's share, 0 without one), so the criterion does not depend on the units of
# each feature; for standardised features without a penalty it is the plain max |gradient|.
# Tight on purpose: fits from this solver are the "exact optimum" other solvers are compared with.
DEFAULT_TOL = 1e-8
DEFAULT_MAX_ITER = 1000
# Dense rows sampled (at a fixed stride) to estimate the diagonal preconditioner, for backends without
# the fused first evaluation (the compiled core computes it from all rows during that pass).
PRECONDITION_ROWS = 1 << 18


@dataclass
class LbfgsResult:
    coef: np.ndarray          # float64 (d,)
    intercept: float
    loss: float               # weighted-mean objective at the solution (regularisation included)
    n_iter: int
    converged: bool
    n_fev: int                # objective + gradient evaluations (passes over the data)
    grad_max: float           # max |gradient component| at the solution, in preconditioned units
    message: str


def fit_lbfgs(features, y, sample_weight, *, alpha, fit_intercept=True, coef_init=None,
              intercept_init=0.0, tol=DEFAULT_TOL, max_iter=DEFAULT_MAX_ITER, n_threads=1,
              backend=None, callback=None, precondition="auto", verbose=0, stop_when=None):
    """Minimise the weighted-mean objective exactly (to ``tol``) with L-BFGS-B.

    Parameters
    ----------
    features : fastwlr._validation.Features
        Validated, finite training features (dense float32/float64 or CSR).
    y : ndarray of float64 (n,)
        0/1 labels.
    sample_weight : ndarray of float64 (n,)
        Non-negative weights, not all zero. Never modified.
    alpha : float
        L2 strength on ``coef`` (the intercept is not regularised).
    fit_intercept : bool
    coef_init, intercept_init : warm start (default zeros).
    tol : float
        Stop when the largest gradient component, each scaled by the root weighted mean square of its
        feature (see ``DEFAULT_TOL``), is <= tol.
    max_iter : int
    n_threads : int or None
        Threads for the kernel (None: the idle cores; -1: all cores). The result does not depend on it.
    backend : str, optional
        As the public functions' ``backend=`` (None: the current setting).
    callback : callable(coef, intercept), optional
        Called after every iteration (used by benchmarks to trace time to optimum).
    precondition : bool or "auto"
        Diagonal (Jacobi) scaling of the coefficients; "auto": for dense features only.
    verbose : int
        > 0: print a line per iteration to stdout (iteration, objective, the largest scaled
        gradient component that ``tol`` bounds, elapsed seconds) and one at the end.
    stop_when : callable(history) -> bool, optional
        Called after every iteration with the list of the stopping criterion's values so far (the
        start's first); True ends the run there, unconverged, without a warning (``solver="auto"``
        hands over to newton this way).

    Returns
    -------
    LbfgsResult
    """
    kernels = Kernels(backend, n_threads)
    # every iteration reads X for its gradient: on wide CSR its transpose may pay (Kernels.with_transpose)
    problem = _InMemory(kernels.with_transpose(features), y, normalised_weights(sample_weight), alpha, kernels)
    return minimize(problem, fit_intercept=fit_intercept, coef_init=coef_init, intercept_init=intercept_init,
                    tol=tol, max_iter=max_iter, callback=callback, precondition=precondition,
                    verbose=verbose, stop_when=stop_when)


class _InMemory:
    """The objective of validated in-memory data as ``minimize`` asks for it: penalised evaluations,
    the starting intercept, the preconditioner and the scale of the gradient's rounding noise.
    (``fastwlr.dask`` gives the same interface over partitions on a cluster.)"""

    def __init__(self, features, y, w_norm, alpha, kernels):
        self.features, self.y, self.w_norm, self.alpha, self.kernels = features, y, w_norm, alpha, kernels
        self.n_rows, self.n_features, self.sparse = features.n_rows, features.n_features, features.is_sparse

    def evaluate(self, coef, b):
        """(loss, grad_coef, grad_b) of the weighted-mean objective, the penalty included."""
        return self.kernels.objective_grad(self.features, self.y, self.w_norm, coef, b, self.alpha)

    def first_evaluation(self, coef, b):
        """``evaluate`` plus sum_i w_i x_ij^2 per column from the same read of X, or None when the
        backend has no such fused kernel (then ``column_scale`` gives the preconditioner)."""
        return self.kernels.objective_grad_colsq(self.features, self.y, self.w_norm, coef, b, self.alpha)

    def column_scale(self):
        return _column_scale(self.features, self.w_norm, self.kernels)

    def base_log_odds(self):
        return _base_log_odds(self.y, self.w_norm)

    def noise_scale(self):
        return _feature_scale(self.features)


def minimize(problem, *, fit_intercept=True, coef_init=None, intercept_init=0.0, tol=DEFAULT_TOL,
             max_iter=DEFAULT_MAX_ITER, callback=None, precondition="auto", name="lbfgs", verbose=0,
             stop_when=None):
    """L-BFGS-B over ``problem`` (``_InMemory``, or the distributed objective of ``fastwlr.dask``):
    the start, the diagonal preconditioner, scipy's options and the stopping rule of ``fit_lbfgs``."""
    from scipy.optimize import minimize as scipy_minimize

    started = time.perf_counter()
    d = problem.n_features
    theta0 = np.zeros(d + 1, dtype=np.float64)
    if coef_init is not None:
        theta0[:d] = coef_init
    base = problem.base_log_odds() if fit_intercept else 0.0
    if fit_intercept:
        theta0[d] = intercept_init if coef_init is not None else base

    # Diagonal preconditioning: L-BFGS runs on u = coef / scale with scale_j = 1 / sqrt(weighted mean
    # of x_j^2 + ridge) (the Hessian's diagonal at the start, up to a constant). The optimum is the
    # same, only the path changes. Measured: on freMTPL2 (dense, standardised numeric + one-hot
    # columns) it cuts the iterations to tol from ~115 to ~30; on hashed one-hot CSR (40 fields,
    # 2^14 columns) it raised them from 34 to 270 (the scaled field-sum directions couple strongly
    # with the intercept). Hence "auto": dense only.
    # ridge: the penalty's part of that diagonal. At the start (coef 0, the intercept at its optimum
    # ``base``) the loss's Hessian diagonal is q mean_w(x_j^2), q = p0 (1 - p0) with p0 = sigmoid(base),
    # and the penalty adds alpha: in the units of mean_w(x_j^2), alpha / q. Without it a rare one-hot
    # level (mean square 3e-7 on online_shoppers) got a scale of ~1900, so the penalty's curvature
    # there was alpha * 1900^2 = 360 against <= 0.25 elsewhere: with alpha = 1e-4 the default
    # max_iter=1000 ended in "not converged" with a scaled gradient of 7e-3 that measured the rare
    # column, not the fit (after 3000 iterations the objective was 2.5e-9 above the optimum); with
    # the ridge it converges in 39 iterations (alpha = 1e-6: 61 instead of 862). alpha = 0: as before.
    alpha = float(getattr(problem, "alpha", 0.0))
    ridge = _penalty_ridge(alpha, base)
    scale = np.ones(d + 1)
    if precondition == "auto":
        precondition = not problem.sparse
    first = []  # [u0 bytes, (loss, grad, grad_b)]: an evaluation at the start already done
    coef0 = np.ascontiguousarray(theta0[:d])
    b0 = float(theta0[d]) if fit_intercept else 0.0
    first_eval = problem.first_evaluation(coef0, b0) if precondition else None
    if first_eval is not None:
        # The first evaluation and the preconditioner's column sums in one read of X (all rows,
        # where the separate pass below samples 2^18 of them); scipy's first call is then answered
        # from it. Only when u0 * scale gives back theta0 exactly (always from the default start:
        # coef 0), so the answer is the one ``fun`` would compute.
        loss0, g0, gb0, sq = first_eval
        scale[:d] = _with_ridge(_scale_from_sq(sq, problem.n_rows), ridge)
        u0 = theta0 / scale
        if np.array_equal(u0 * scale, theta0):
            first = [u0.tobytes(), (loss0, g0, gb0)]
        theta0 = u0
    else:
        if precondition:
            scale[:d] = _with_ridge(problem.column_scale(), ridge)
        theta0 = theta0 / scale

    def split(u):
        theta = u * scale
        coef = np.ascontiguousarray(theta[:d])
        return coef, (float(theta[d]) if fit_intercept else 0.0)

    last = {}  # the most recent evaluation: the solution's loss/gradient need no extra pass
    history = []  # the stopping criterion at the start and after each iteration (for stop_when)

    def fun(theta):
        if first and theta.tobytes() == first[0]:
            loss, g, gb = first[1]
        else:
            coef, b = split(theta)
            loss, g, gb = problem.evaluate(coef, b)
        grad = np.empty(d + 1)
        grad[:d] = g
        grad[d] = gb if fit_intercept else 0.0  # a fixed intercept: zero gradient keeps it at 0
        if not (np.isfinite(loss) and np.isfinite(grad).all()):
            raise _diverged(theta * scale, loss)
        last.clear()
        last[theta.tobytes()] = (loss, grad.copy())
        if not history:  # scipy's first call is at the start
            history.append(float(np.abs(grad * scale).max()))
        return loss, grad * scale  # chain rule: d/du = scale * d/dcoef

    iteration = [0]
    stopped = [False]

    def cb(theta):
        iteration[0] += 1
        # scipy calls back at the accepted point, which its line search evaluated last
        loss, grad = last.get(theta.tobytes(), (math.nan, np.full(d + 1, math.nan)))
        gmax = float(np.abs(grad * scale).max())
        if verbose:
            print(f"{name} iteration {iteration[0]}: objective {loss:.12g}, max |gradient| "
                  f"{gmax:.3g} (tol {tol:g}), {time.perf_counter() - started:.3f} s", flush=True)
        if callback is not None:
            callback(*split(theta))
        if stop_when is not None:
            history.append(gmax)
            if gmax > tol and stop_when(history):
                stopped[0] = True
                raise StopIteration

    res = scipy_minimize(fun, theta0, method="L-BFGS-B", jac=True,
                         callback=cb if callback is not None or verbose or stop_when is not None else None,
                         options={"maxiter": int(max_iter), "gtol": float(tol),
                                  # ftol = 0: stop on the gradient (or a failed line search), never on a
                                  # stalled loss
                                  "ftol": 0.0, "maxls": 50,
                                  # memory: 20 pairs help on small d; scipy's L-BFGS-B step costs O(m^2 d)
                                  # (31 ms an iteration at d = 16k, m = 20), so large d keeps its default 10
                                  "maxcor": 20 if d <= 4096 else 10})
    coef, b = split(res.x)
    if res.x.tobytes() not in last:
        fun(res.x)
    loss, grad = last[res.x.tobytes()]
    grad_max = float(np.abs(grad * scale).max())  # the criterion scipy used (see DEFAULT_TOL)
    if not (np.isfinite(coef).all() and np.isfinite(b) and np.isfinite(loss)):
        raise _diverged(res.x * scale, loss)
    converged = bool(grad_max <= tol)
    if not converged and res.status == 2 and grad_max <= tol * problem.noise_scale():
        # The line search cannot lower the loss any more in float64 (scipy's ABNORMAL / relative
        # reduction <= 0): the gradient is as small as its rounding noise, which grows with |x|.
        converged = True
    if verbose:
        print(f"{name}: {'converged' if converged else 'not converged'} after {res.nit} iterations "
              f"({res.nfev} evaluations), objective {float(loss):.12g}, max |gradient| {grad_max:.3g} "
              f"(tol {tol:g}), {time.perf_counter() - started:.3f} s: {_message(res)}", flush=True)
    if not converged and not stopped[0]:
        warnings.warn(
            f"{name} stopped after {res.nit} iterations with max |gradient| = {grad_max:.3g} > tol = {tol:g} "
            f"({_message(res)}). Increase max_iter, scale the features (e.g. to unit variance), "
            "or increase alpha (separable data has no finite optimum without regularisation).",
            ConvergenceWarning, stacklevel=4)
    return LbfgsResult(coef=coef, intercept=b, loss=float(loss), n_iter=int(res.nit),
                       converged=converged, n_fev=int(res.nfev), grad_max=grad_max, message=_message(res))


def _base_log_odds(y, w):
    """The optimal intercept when coef = 0: log(sum w y / sum w (1 - y)). Starting there instead of at
    0 removes the largest part of the initial loss (a rare, heavily weighted positive class)."""
    # Not w @ y: that is a multi-threaded BLAS call, after which OpenBLAS's threads keep spinning for
    # a while and take cores from the first objective passes (1M x 64 float32 on 2 cores: a pass right
    # after w @ y took 92 ms instead of 44-58). einsum's own loop uses no BLAS.
    pos = float(np.einsum("i,i", w, y))
    neg = float(w.sum()) - pos
    if pos <= 0.0 or neg <= 0.0:
        return 0.0
    return float(np.log(pos / neg))


def _column_scale(features, w_norm, kernels):
    """1 / sqrt(weighted mean of x_j^2) per column (1 for empty columns), float64 (d,)."""
    n, d = features.n_rows, features.n_features
    if features.is_sparse:
        rows = np.repeat(np.arange(n), np.diff(features.indptr))
        with np.errstate(over="ignore", invalid="ignore"):
            sq = np.bincount(features.indices, weights=w_norm[rows] * features.data.astype(np.float64) ** 2,
                             minlength=d).astype(np.float64)
    else:
        # A preconditioner needs no precision: every k-th row (a fixed stride, so deterministic) costs
        # a fraction of a pass over X instead of a whole one. The rows are read in place (copying
        # them first cost 55 ms of a 0.31 s fit on 1M x 64 float32). Fewer rows are not enough: with
        # freMTPL2's weights (up to 4e6) 2^16 rows raised the iterations to tol from 33 to 46, 2^12 to 185.
        stride = n // PRECONDITION_ROWS if n > 2 * PRECONDITION_ROWS else 1
        sq = kernels.weighted_column_sq(features, w_norm, stride)
        n = (n + stride - 1) // stride
    return _scale_from_sq(sq, n)


def _scale_from_sq(sq, n):
    """1 / sqrt(sq / n) per column; 1 where that is not a positive finite number."""
    d = sq.shape[0]
    sq = sq / max(n, 1)
    out = np.ones(d)
    nz = (sq > 0) & np.isfinite(sq)
    out[nz] = 1.0 / np.sqrt(sq[nz])
    return out


def _penalty_ridge(alpha, base):
    """The L2 penalty's share of the Hessian's diagonal at the start (coef 0, intercept ``base``),
    in units of a column's weighted mean square: alpha / (p0 (1 - p0)). Shared by every exact
    solver's stopping rule, so that ``tol`` means the same for lbfgs and newton."""
    if not alpha > 0:
        return 0.0
    e = math.exp(-abs(base))  # p0 (1 - p0) = e / (1 + e)^2 without overflow (|base| up to ~745 for
    return alpha / max(e / (1.0 + e) ** 2, 1e-300)  # a subnormal weight share of one class)


def _with_ridge(scale, ridge):
    """1 / sqrt(1 / scale^2 + ridge): the scale of a column whose mean square 1 / scale^2 has the
    penalty's ``ridge`` added (a column scaled 1 for want of a mean square is taken as of mean square 1)."""
    return scale if ridge == 0.0 else scale / np.sqrt(1.0 + ridge * scale * scale)


def _feature_scale(features):
    """max(1, largest |feature|): the scale of the gradient's rounding noise."""
    values = features.data if features.is_sparse else features.X
    return max(1.0, float(np.abs(values).max(initial=0.0)))


def _message(res):
    msg = res.message
    return msg.decode() if isinstance(msg, bytes) else str(msg)


def _diverged(theta, loss):
    return DivergenceError(
        f"lbfgs diverged: loss = {loss}, coefficients finite: {bool(np.isfinite(theta).all())}. "
        "The features or weights are too large for float64 arithmetic: scale the features, "
        "or increase alpha.")
