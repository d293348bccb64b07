"""Stochastic training of weighted logistic regression: options, state, kernel contract and driver.

The objective (docs/theory.md) is

    L(coef, b) = (1/n) sum_i w_i l_i + (l2/2) ||coef||^2 + l1 ||coef||_1,    l_i = softplus(z_i) - y_i z_i,

with the intercept unregularised. The driver (``fit_sgd``) owns everything stochastic or global:
the row order (a numpy ``Generator`` seeded from ``random_state``), resampling, weight
normalisation, learning-rate defaults, early stopping and divergence reports. A backend only runs
epochs over a row order it is given, so every backend follows the same trajectory.

Weight normalisation
--------------------
Weights are divided by their mean ``m`` before the kernel sees them, and ``l2``, ``l1`` by ``m``
too: the objective is then ``L / m`` (same minimiser), and learning rates do not depend on whether
watch time is counted in seconds or in milliseconds.

The epoch kernels' contract (one epoch over a given row order, the exact step of every
optimiser and weighting, the state layout) is in docs/kernels.md, "SGD epochs".

Within a backend, results are bit-identical for the same inputs (one thread: SGD is sequential).
"""
from dataclasses import dataclass, field, replace
import math
import numbers
import time
import warnings

import numpy as np

from ._kernels import Kernels
from ._weights import mean_weight
from .backends._contract import OPTIMIZERS, SCHEDULES, WEIGHTINGS, EpochParams, SGDState  # noqa: F401
from .exceptions import DivergenceError

# Defaults that need no tuning on standardised features with mean-normalised weights, chosen on
# the generator of fastwlr.datasets.make_watch_time (dense and hashed CSR) and on freMTPL2; tests/test_sgd.py
# checks every weighting x optimiser against the exact optimum. sgd: see _resolve.
DEFAULT_ETA0 = {"sgd": 9.0, "adagrad": 0.05, "ftrl": 0.05, "normalized": 1.0}
# normalized: 1.0 measured on generated data (one pass / five, same row order; 40k rows): L2-normalised
# text wants 2-4, dense standardised 0.5-1, hashed one-hot 1-2; 1.0 is within 1.5x of the best of
# each. optimizer="auto" (the default) takes it for sparse rows only: on dense standardised rows
# adagrad's one pass ends 1.5-3x closer to the optimum (there is nothing to normalise), on
# L2-normalised text rows normalized ends 3.5-4.4x closer than adagrad and closer than Vowpal
# Wabbit's defaults (benchmarks/experiments/sgd_vs_vw.py; ``resolve_optimizer``).
# "gradient" weighting steps with h g but its rates shrink with sum (h g)^2, which heavy-tailed
# weights inflate: its rates end sqrt(E[h^2] / E[h]) (10-20x on watch times) below those of iwa or
# resample. Larger rates catch up, but each heavy row's step is noisy: measured on hashed CSR (100k
# rows, weights up to 500x the mean), 2x reaches 0.1-0.4 % of the optimum in 50 epochs where 1x
# needs more; 3x and more is noisier on dense rows.
GRADIENT_ETA0_FACTOR = 2.0
# Epochs: early stopping (tol) ends most fits in 8-20; "gradient" on hashed CSR needs ~35.
DEFAULT_MAX_ITER = 50
FTRL_BETA = 1.0


class SGDDivergenceError(DivergenceError):
    """Training produced non-finite coefficients or loss. The message says what to change.

    A DivergenceError, so callers of fit_sgd catch the same error as callers of the estimators."""


@dataclass(frozen=True)
class SGDParams:
    """Options of stochastic training (validated by ``SGDParams.validate``).

    Parameters
    ----------
    weighting : {"iwa", "gradient", "resample"}
        How sample weights act: importance-aware closed-form steps, gradient times weight, or rows
        repeated ``floor(w * resample_scale) + Bernoulli(frac)`` times per epoch with unit weight.
    optimizer : {"auto", "adagrad", "normalized", "sgd", "ftrl"}
        AdaGrad (per-coordinate rates), AdaGrad normalised by each feature's scale (Vowpal
        Wabbit's default update: invariant to rescaling a column; docs/kernels.md), plain SGD with
        a schedule, or FTRL-Proximal. "auto": ``resolve_optimizer`` (ftrl with an L1 penalty,
        normalized for sparse rows, adagrad for dense ones; a continued state keeps its own).
    l2, l1 : float
        Penalties of the objective. ``l1`` needs ``optimizer="ftrl"``.
    eta0 : float or "auto"
        Base rate (FTRL: alpha). "auto": ``DEFAULT_ETA0[optimizer]`` (times
        ``GRADIENT_ETA0_FACTOR`` for weighting="gradient"); for SGD divided by
        sqrt(R2) with learning_rate="auto" and by R2 otherwise, R2 = mean of ||x||^2 + 1, so the
        first steps move z by about 1 on any feature scale.
    learning_rate : {"auto", "constant", "invscaling", "optimal"}
        SGD schedule: "auto" is AdaGrad-Norm (one rate eta0 / sqrt(sum of squared gradient norms):
        decays by itself, adapts to the weight scale), "constant" eta0, "invscaling"
        eta0 / (1 + t)^power_t, "optimal" eta0 / (1 + eta0 l2 t) (scikit-learn's "optimal" idea:
        1 / (l2 (t0 + t)), the rate for an l2-strongly convex objective; the weight-scale trick then
        makes the iterate the running mean of the steps; needs l2 > 0).
    power_t : float
    average : bool or int
        Polyak-Ruppert averaging of the iterates (SGD and AdaGrad; FTRL ignores it). True: the
        returned coefficients average the last epoch's iterates (the average restarts every epoch,
        after an unaveraged first epoch). An int k: average every step after the first k, never
        restarted.
    resample_scale : float or "auto"
        Expected copies per unit of (mean-normalised) weight; "auto" = 1, an epoch of about n rows.
    ftrl_beta : float
    fit_intercept : bool
    shuffle : bool
        Visit the rows in a new random order each epoch; False: in the given order (an online
        pass over a log). With weighting="resample" the copies are still drawn, and a row's
        copies come one after another at its place.
    """
    weighting: str = "iwa"
    optimizer: str = "auto"
    l2: float = 0.0
    l1: float = 0.0
    eta0: object = "auto"
    learning_rate: str = "auto"
    power_t: float = 0.5
    average: object = True
    resample_scale: object = "auto"
    ftrl_beta: float = FTRL_BETA
    fit_intercept: bool = True
    shuffle: bool = True

    def validate(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {self.weighting!r}")
        if self.optimizer not in OPTIMIZERS and self.optimizer != "auto":
            raise ValueError(f"optimizer must be 'auto' or one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.learning_rate not in SCHEDULES:
            raise ValueError(f"learning_rate must be one of {sorted(SCHEDULES)}, got {self.learning_rate!r}")
        for name in ("l2", "l1", "power_t", "ftrl_beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.learning_rate == "optimal" and self.optimizer == "sgd" and not self.l2 > 0:
            raise ValueError("learning_rate='optimal' decays as 1 / (l2 t) and needs l2 > 0 "
                             "(the estimators' alpha); use 'auto' without regularisation")
        if self.l1 > 0 and self.optimizer not in ("ftrl", "auto"):
            raise ValueError(f"l1 > 0 needs optimizer='ftrl' (got optimizer={self.optimizer!r}); "
                             "SGD and AdaGrad here support l2 only")
        if not (isinstance(self.eta0, str) and self.eta0 == "auto"):
            if isinstance(self.eta0, bool) or not isinstance(self.eta0, numbers.Real) \
                    or not math.isfinite(self.eta0) or self.eta0 <= 0:
                raise ValueError(f"eta0 must be 'auto' or a finite number > 0, got {self.eta0!r}")
        if not (isinstance(self.resample_scale, str) and self.resample_scale == "auto"):
            v = self.resample_scale
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"resample_scale must be 'auto' or a finite number > 0, got {v!r}")
        if not isinstance(self.shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {self.shuffle!r}")
        if not isinstance(self.average, (bool, numbers.Integral)) or (
                not isinstance(self.average, bool) and self.average < 0):
            raise ValueError(f"average must be a bool or an int >= 0, got {self.average!r}")
        if self.average is not False and self.optimizer == "ftrl":
            # FTRL's coefficients move with t between touches (l1 t, l2 t): no O(nnz) lazy average.
            pass
        return self


@dataclass
class SGDResult:
    coef: np.ndarray
    intercept: float
    n_iter: int
    state: SGDState
    history: list = field(default_factory=list)   # objective (original weights) after each epoch
    converged: bool = False
    # the scaled full-batch gradient (``scaled_gradient``) when the objective stalled but the
    # gradient was too far from zero to call it convergence (then converged is False); else None
    stalled_gradient: float = None


# The objective settling for n_iter_no_change epochs is not convergence: SGD stalls far from the
# optimum when its steps are badly scaled (features of 1e6, a constant rate). After it stops by tol
# the driver checks the full-batch gradient once (one objective + gradient pass). Its largest
# component, per unit root weighted mean square of the feature and per unit mean weight, is the
# slope of the mean loss when the log-odds move by one standard deviation of that feature (the
# intercept: by 1). Measured on make_watch_time(5000, 8): runs within 1 % of the optimum end
# below 0.025, the stalled runs of 0.5 vs 0.39 (features times 1e6), 1726 vs 0.39 and 13.6 vs 0.39
# above 0.07.
STALL_GRADIENT_TOL = 0.05


def scaled_gradient(features, y, sample_weight, coef, intercept, l2, l1, kernels):
    """max_j |g_j| / (rms_j mean(w)) of the objective's (sub)gradient, g over the coefficients and
    the intercept (rms_j: root weighted mean square of feature j, 1 for the intercept). With l1,
    the distance of the smooth gradient from the l1 subdifferential."""
    _, g, gb = kernels.objective_grad(features, y, sample_weight, coef, intercept, l2)
    g = np.asarray(g, dtype=np.float64)
    if l1 > 0:
        g = np.where(coef != 0, g + l1 * np.sign(coef), np.maximum(np.abs(g) - l1, 0.0))
    n = features.n_rows
    if features.is_sparse:
        rows = np.repeat(np.arange(n), np.diff(features.indptr))
        data = features.data.astype(np.float64)
        sq = np.bincount(features.indices, weights=data * data * sample_weight[rows],
                         minlength=features.n_features)
    else:
        sq = kernels.weighted_column_sq(features, sample_weight)
    total = float(np.sum(sample_weight))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rms = np.sqrt(sq / total)
        mean_w = total / n
        scaled = np.abs(g) / np.where(rms > 0, rms, 1.0) / mean_w
        worst = max(float(scaled.max()) if scaled.shape[0] else 0.0, abs(float(gb)) / mean_w)
    return worst if math.isfinite(worst) else math.inf


# ---------------------------------------------------------------------------------------------
# Driver

def resolve_optimizer(optimizer, l1, is_sparse, state=None):
    """The optimiser that runs: ``optimizer`` itself, or what "auto" means here: the continued
    state's own; FTRL for an L1 penalty (the only one with it); for sparse rows the normalised
    update (one scale per column: hashed, one-hot and text columns of any units; see
    DEFAULT_ETA0), for dense rows AdaGrad."""
    if optimizer != "auto":
        return optimizer
    if state is not None:
        return state.optimizer
    if l1 > 0:
        return "ftrl"
    return "normalized" if is_sparse else "adagrad"


def _resolve(params, features, w_norm_mean, n_rows_epoch):
    opt = resolve_optimizer(params.optimizer, params.l1, features.is_sparse)
    if params.eta0 == "auto":
        eta0 = DEFAULT_ETA0[opt] * (GRADIENT_ETA0_FACTOR if params.weighting == "gradient" else 1.0)
        if opt == "sgd":
            # first steps move z by about DEFAULT_ETA0: "auto" is normalised by the gradient norm,
            # the fixed schedules are not
            r2 = _mean_sq_norm(features, params.fit_intercept)
            eta0 = eta0 / (math.sqrt(r2) if params.learning_rate == "auto" else r2)
    else:
        eta0 = float(params.eta0)
    if params.average is False or opt == "ftrl":
        avg_start = math.inf
    elif params.average is True:
        avg_start = float(n_rows_epoch)
    else:
        avg_start = float(params.average)
    return EpochParams(
        optimizer=OPTIMIZERS[opt], weighting=WEIGHTINGS[params.weighting],
        schedule=SCHEDULES[params.learning_rate], eta0=eta0, power_t=float(params.power_t),
        l2=float(params.l2) / w_norm_mean, l1=float(params.l1) / w_norm_mean,
        ftrl_alpha=eta0, ftrl_beta=float(params.ftrl_beta), avg_start=avg_start,
        fit_intercept=bool(params.fit_intercept))


def _mean_sq_norm(features, fit_intercept):
    if features.n_rows == 0:
        return 1.0
    if features.is_sparse:
        sq = float(np.dot(features.data.astype(np.float64), features.data.astype(np.float64)))
    else:
        sq = float(np.einsum("ij,ij->", features.X, features.X, dtype=np.float64))
    return max(sq / features.n_rows + (1.0 if fit_intercept else 0.0), 1e-12)


def objective(features, y, sample_weight, coef, intercept, l2, l1=0.0, kernels=None):
    """The objective above (with l1), by the backend's objective kernel (``kernels``: resolved
    ``Kernels``; None: the current backend, one thread)."""
    kernels = kernels if kernels is not None else Kernels(None, 1)
    loss, _, _ = kernels.objective_grad(features, y, sample_weight, coef, intercept, l2)
    return float(loss) + l1 * float(np.abs(coef).sum())


def _epoch_order(rng, n, params, w_norm):
    """Row order of one epoch, and the per-row weights the kernel should use."""
    if params.weighting == "resample":
        scale = 1.0 if params.resample_scale == "auto" else float(params.resample_scale)
        expected = w_norm * scale
        base = np.floor(expected)
        counts = base.astype(np.int64) + (rng.random(n) < (expected - base))
        order = np.repeat(np.arange(n, dtype=np.int64), counts)
        if params.shuffle:
            rng.shuffle(order)
        return order
    if not params.shuffle:
        return np.arange(n, dtype=np.int64)
    return rng.permutation(n).astype(np.int64, copy=False)


def _advice(params, what):
    tips = []
    if params.weighting == "gradient":
        tips.append("weighting='iwa' (importance-aware steps stay stable with weights in the thousands)")
    if params.eta0 != "auto":
        tips.append(f"a smaller eta0 (got {params.eta0}) or eta0='auto'")
    if params.optimizer == "sgd" and params.learning_rate == "constant":
        tips.append("learning_rate='auto' (a decaying schedule)")
    tips.append("standardising the features (e.g. sklearn.preprocessing.StandardScaler)")
    if params.optimizer == "sgd":
        tips.append("optimizer='adagrad'")
    return (f"SGD diverged: {what}. Try " + "; or ".join(tips) + ".")


def fit_sgd(features, y, sample_weight, params=None, *, max_iter=DEFAULT_MAX_ITER, tol=1e-4, n_iter_no_change=2,
            random_state=None, n_threads=1, backend=None, state=None, partial=False, verbose=False):
    """Fit weighted logistic regression by SGD epochs.

    Parameters
    ----------
    features : fastwlr._validation.Features
        Validated training features (finite).
    y : ndarray of float64, shape (n,)
        0/1 labels.
    sample_weight : ndarray of float64, shape (n,)
        Non-negative weights (watch time for positives, 1 for negatives); not modified.
    params : SGDParams, optional
    max_iter : int
        Maximum number of epochs.
    tol : float or None
        Stop when the objective (at the returned coefficients) has not improved by more than
        ``tol * |objective|`` for ``n_iter_no_change`` consecutive epochs. None: run ``max_iter``.
    n_iter_no_change : int
    random_state : None, int or numpy Generator
        Seeds the row order (and resampling).
    n_threads : int or None (None: the idle cores, counted again at each kernel call)
        Threads for the objective evaluations; the epochs are sequential.
    backend : str, optional
        As the public functions' ``backend=`` (None: the current setting); resolved once.
    state : SGDState, optional
        Warm start: continue from a previous result's ``state`` (mutated in place).
    partial : bool
        ``partial_fit``: one epoch over these rows, no objective evaluation, no early stopping.
    verbose : int or bool
        > 0: print a line per epoch to stdout (epoch, objective, elapsed seconds; a ``partial``
        epoch evaluates no objective and prints none of it here).

    Returns
    -------
    SGDResult

    Raises
    ------
    SGDDivergenceError
        If the loss or the coefficients become non-finite; the message suggests what to change.
    """
    params = (params or SGDParams()).validate()
    params = replace(params, optimizer=resolve_optimizer(params.optimizer, params.l1, features.is_sparse, state))
    n, d = features.n_rows, features.n_features
    kernels = Kernels(backend, n_threads)
    rng = random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    y = np.ascontiguousarray(y, dtype=np.float64)
    sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)

    if state is None:
        mean_w = mean_weight(sample_weight)
        state = SGDState.new(d, params.optimizer, params.average is not False and params.optimizer != "ftrl")
        state.mean_weight = mean_w
    else:
        if state.coef.shape[0] != d:
            raise ValueError(f"state has {state.coef.shape[0]} features, X has {d}")
        if state.optimizer != params.optimizer:
            raise ValueError(f"state was created by optimizer={state.optimizer!r}, params ask for {params.optimizer!r}")
        mean_w = state.mean_weight
    w_norm = sample_weight / mean_w
    kernel_w = np.ones(n) if params.weighting == "resample" else w_norm
    n_epoch_rows = n if params.weighting != "resample" else max(1, int(round(w_norm.sum() * (
        1.0 if params.resample_scale == "auto" else params.resample_scale))))
    ep = _resolve(params, features, mean_w, n_epoch_rows)
    if params.average is True and state.t > 0:
        ep = replace(ep, avg_start=min(ep.avg_start, state.t))  # warm start: average this epoch

    def run_epoch():
        if params.average is True and state.t >= ep.avg_start:
            # suffix averaging: the average of the last epoch's iterates (older ones carry the
            # bias of large early steps)
            state.restart_average()
        order = _epoch_order(rng, n, params, w_norm)
        loss_sum, bad = kernels.sgd_epoch(features, y, kernel_w, order, state, ep)
        if bad >= 0:
            row = int(order[bad])
            raise SGDDivergenceError(_advice(params, f"the log-odds became non-finite at row {row} "
                                             f"(weight {sample_weight[row]:.4g}) in epoch {epoch + 1}"))
        coef, b = state.solution()
        if not (np.isfinite(coef).all() and math.isfinite(b)):
            raise SGDDivergenceError(_advice(params, f"the coefficients became non-finite in epoch {epoch + 1}"))
        return loss_sum, coef, b

    history = []
    if partial:
        epoch = 0
        run_epoch()
        coef, b = state.solution()
        return SGDResult(coef.copy(), b, 1, state, history, False)

    best, no_improve, converged = math.inf, 0, False
    epoch = 0
    started = time.perf_counter()
    for epoch in range(int(max_iter)):
        _, coef, b = run_epoch()
        obj = objective(features, y, sample_weight, coef, b, params.l2, params.l1, kernels) \
            if tol is not None or verbose else math.nan
        if tol is not None and not math.isfinite(obj):
            raise SGDDivergenceError(_advice(params, f"the objective is {obj} after epoch {epoch + 1}"))
        history.append(obj)
        if verbose:
            print(f"sgd epoch {epoch + 1}: objective {obj:.12g}, {time.perf_counter() - started:.3f} s", flush=True)
        if tol is None:
            continue
        if obj > best - tol * abs(best):
            no_improve += 1
        else:
            no_improve = 0
        best = min(best, obj)
        if no_improve >= n_iter_no_change:
            converged = True
            break
    coef, b = state.solution()
    stalled = None
    if converged:
        g = scaled_gradient(features, y, sample_weight, coef, b, params.l2, params.l1, kernels)
        if not g <= STALL_GRADIENT_TOL:
            converged, stalled = False, g
    if verbose:
        why = ("the objective settled" if converged else
               f"the objective settled, but the scaled gradient {stalled:.3g} > {STALL_GRADIENT_TOL:g}"
               if stalled is not None else "max_iter reached" if tol is not None else "max_iter epochs (tol=None)")
        print(f"sgd: {'converged' if converged else 'not converged'} after {epoch + 1} epochs ({why}), "
              f"{time.perf_counter() - started:.3f} s", flush=True)
    return SGDResult(coef.copy(), b, epoch + 1, state, history, converged, stalled)
