"""Stochastic training of weighted logistic regression: options, state, kernel contract and driver.

The objective is DESIGN.md section 1,

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

Kernel contract (one epoch)
---------------------------
    sgd_epoch_dense(X, y, sample_weight, order, state, params) -> (loss_sum, diverged_at)
    sgd_epoch_csr(data, indices, indptr, y, sample_weight, order, state, params) -> (loss_sum, diverged_at)

* ``X``/``data``/``indices``/``indptr`` as in ``fastwlr.backends`` (validated, finite);
  ``y`` float64 0/1 of length n; ``sample_weight`` float64 >= 0 of length n (already normalised;
  ones for resampling); ``order`` int64 row indices in ``[0, n)``, repeats allowed (resampling).
* ``params`` is an ``EpochParams`` (plain numbers, codes from the tables below).
* ``state`` is an ``SGDState`` (float64 arrays + a float64 ``scalars`` vector), mutated in place.
* For each position p in ``order`` (row i = order[p], weight h = sample_weight[i]), one step:

  1. bring the coordinates of row i up to date (lazy regularisation, lazy averaging: see below);
  2. z = scale * coef . x_i + intercept (FTRL: coef_j materialised from its (zacc_j, acc_j) first);
     add h * l(z) to ``loss_sum``; if z is not finite, stop and return ``diverged_at = p``;
  3. per-coordinate rates eta_j: SGD eta_t, the same for all j: schedule "auto" is AdaGrad-Norm,
     scalars[S_ACC_NORM] += q (||x_i||^2 + 1) first, eta_t = eta0 / (sqrt(scalars[S_ACC_NORM]) + 1e-12);
     "constant" eta0; "invscaling" eta0 / (1 + t)^power_t; "optimal" eta0 / (1 + eta0 l2 t).
     AdaGrad: acc_j += q x_j^2 first, eta_j = eta0 / (sqrt(acc_j) + 1e-12);
     FTRL: eta_j = alpha / (beta + sqrt(acc_j + q x_j^2)); the intercept is coordinate "b", x_b = 1.
     q = (h g)^2 for weighting "gradient", h g^2 for "iwa" (Vowpal Wabbit's choice: a weight-h row
     counts like h unit rows, so one huge weight does not freeze the rates of all the others),
     with g = sigmoid(z) - y;
  4. the scalar step G on z (coef_j -= eta_j G x_j):
     "gradient": G = h g. "iwa": the exact solution of h infinitesimal unit-weight steps,
     ds/dh = l'(z - s k), k = sum_j eta_j x_j^2 (+ eta_b), solved in closed form (``iwa_step``);
  5. update. SGD: coef -= eta_t G x_i / scale, b -= eta_t G, then the L2 proximal step
     scale /= (1 + eta_t l2) (the weight-scale trick: O(nnz) per step). AdaGrad:
     coef_j -= eta_j G x_j, then coef_j /= (1 + eta_j l2) for the touched j (untouched coordinates
     get the same factor lazily, raised to the number of steps missed, when next touched).
     FTRL-Proximal (McMahan et al. 2013): g_j = G x_j, sigma = (sqrt(acc_j + q x_j^2) - sqrt(acc_j))
     / alpha, zacc_j += g_j - sigma coef_j, acc_j += q x_j^2; coef_j = 0 if |zacc_j| <= l1 t else
     -(zacc_j - sign(zacc_j) l1 t) / ((beta + sqrt(acc_j)) / alpha + l2 t), t = steps so far
     (the regulariser of the sum of t losses is t times the per-loss one).
  6. t += 1; averaging adds the step's coefficients to the running sums once t > avg_start.

* At the end of the epoch the kernel brings every coordinate up to date (O(d) once), so that
  between epochs ``coef * scale`` and ``intercept`` are the current iterate, and ``avg / n_avg``
  the averaged one.
* ``loss_sum`` is the sum of h * l(z) at the iterate *before* each step (a progress signal only).
* Kernels never raise inside ``nogil``; a non-finite z stops the epoch and is reported.

Within a backend, results are bit-identical for the same inputs (one thread: SGD is sequential).
"""
from dataclasses import dataclass, field, replace
import math
import numbers
import warnings

import numpy as np

from ._config import get_backend, resolve_n_threads
from ._weights import mean_weight
from .exceptions import DivergenceError

WEIGHTINGS = {"gradient": 0, "iwa": 1, "resample": 0}   # resample = unit-weight gradient steps
OPTIMIZERS = {"sgd": 0, "adagrad": 1, "ftrl": 2}
SCHEDULES = {"auto": 0, "constant": 1, "invscaling": 2, "optimal": 3}

# scalars layout in SGDState.scalars (one float64 vector so compiled kernels can mutate it)
S_INTERCEPT, S_SCALE, S_T, S_ACC_B, S_Z_B, S_AVG_B, S_AVG_CLOCK, S_N_AVG, S_ACC_NORM = range(9)
N_SCALARS = 9

# Defaults that need no tuning on standardised features with mean-normalised weights, chosen on
# the generator of DESIGN.md section 2 (dense and hashed CSR) and on freMTPL2; tests/test_sgd.py
# checks every weighting x optimiser against the exact optimum. sgd: see _resolve.
DEFAULT_ETA0 = {"sgd": 9.0, "adagrad": 0.05, "ftrl": 0.05}
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
    optimizer : {"adagrad", "sgd", "ftrl"}
        AdaGrad (per-coordinate rates), plain SGD with a schedule, or FTRL-Proximal.
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
    """
    weighting: str = "iwa"
    optimizer: str = "adagrad"
    l2: float = 0.0
    l1: float = 0.0
    eta0: object = "auto"
    learning_rate: str = "auto"
    power_t: float = 0.5
    average: object = True
    resample_scale: object = "auto"
    ftrl_beta: float = FTRL_BETA
    fit_intercept: bool = True

    def validate(self):
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {self.weighting!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.learning_rate not in SCHEDULES:
            raise ValueError(f"learning_rate must be one of {sorted(SCHEDULES)}, got {self.learning_rate!r}")
        for name in ("l2", "l1", "power_t", "ftrl_beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.learning_rate == "optimal" and self.optimizer == "sgd" and not self.l2 > 0:
            raise ValueError("learning_rate='optimal' decays as 1 / (l2 t) and needs l2 > 0 "
                             "(the estimators' alpha); use 'auto' without regularisation")
        if self.l1 > 0 and self.optimizer != "ftrl":
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
        if not isinstance(self.average, (bool, numbers.Integral)) or (
                not isinstance(self.average, bool) and self.average < 0):
            raise ValueError(f"average must be a bool or an int >= 0, got {self.average!r}")
        if self.average is not False and self.optimizer == "ftrl":
            # FTRL's coefficients move with t between touches (l1 t, l2 t): no O(nnz) lazy average.
            pass
        return self


@dataclass(frozen=True)
class EpochParams:
    """What a kernel reads: plain numbers, resolved by the driver. See the module docstring."""
    optimizer: int
    weighting: int
    schedule: int
    eta0: float
    power_t: float
    l2: float          # already divided by the mean weight
    l1: float
    ftrl_alpha: float
    ftrl_beta: float
    avg_start: float   # averaging counts steps t > avg_start; inf = off
    n_schedule: float  # n of the "auto" schedule (rows per epoch)
    fit_intercept: bool


@dataclass
class SGDState:
    """Mutable training state: plain float64 arrays and one float64 scalars vector.

    coef: raw coefficients (the iterate is ``coef * scalars[S_SCALE]``); acc: AdaGrad's sum of
    squared gradients or FTRL's n; zacc: FTRL's z; last: per-coordinate step stamp (lazy
    regularisation) or averaging clock (lazy averaging); avg: running sum of iterates.
    Arrays an optimiser does not use have length 0.
    """
    coef: np.ndarray
    acc: np.ndarray
    zacc: np.ndarray
    last: np.ndarray
    avg: np.ndarray
    scalars: np.ndarray
    optimizer: str
    average: bool
    mean_weight: float = 1.0   # the normalisation of the first fit, reused by partial_fit

    @classmethod
    def new(cls, n_features, optimizer, average, coef=None, intercept=0.0):
        d = int(n_features)
        e = np.zeros(0)
        needs_acc = optimizer in ("adagrad", "ftrl")
        needs_last = optimizer == "adagrad" or average
        scalars = np.zeros(N_SCALARS)
        scalars[S_SCALE] = 1.0
        scalars[S_INTERCEPT] = float(intercept)
        c = np.zeros(d) if coef is None else np.array(coef, dtype=np.float64, copy=True)
        zacc = np.zeros(d) if optimizer == "ftrl" else e
        if optimizer == "ftrl" and coef is not None and np.any(c):
            raise ValueError("warm-starting FTRL from given coefficients is not supported; "
                             "pass the state of a previous fit instead")
        return cls(coef=c, acc=np.zeros(d) if needs_acc else e, zacc=zacc,
                   last=np.zeros(d) if needs_last else e, avg=np.zeros(d) if average else e,
                   scalars=scalars, optimizer=optimizer, average=bool(average))

    def restart_average(self):
        """Forget the running average (between epochs, when every coordinate is up to date)."""
        if self.average:
            self.avg[:] = 0.0
            if self.optimizer == "sgd":  # last holds averaging-clock marks
                self.last[:] = 0.0
                self.scalars[S_AVG_CLOCK] = 0.0
            self.scalars[S_AVG_B] = 0.0
            self.scalars[S_N_AVG] = 0.0

    def copy(self):
        return replace(self, coef=self.coef.copy(), acc=self.acc.copy(), zacc=self.zacc.copy(),
                       last=self.last.copy(), avg=self.avg.copy(), scalars=self.scalars.copy())

    @property
    def t(self):
        return float(self.scalars[S_T])

    def current(self):
        """(coef, intercept) of the last iterate."""
        return self.coef * self.scalars[S_SCALE], float(self.scalars[S_INTERCEPT])

    def averaged(self):
        """(coef, intercept) averaged over the steps past ``avg_start``; the iterate if none yet."""
        n_avg = self.scalars[S_N_AVG]
        if not self.average or n_avg <= 0:
            return self.current()
        return self.avg / n_avg, float(self.scalars[S_AVG_B] / n_avg)

    def solution(self):
        return self.averaged() if self.average else self.current()


@dataclass
class SGDResult:
    coef: np.ndarray
    intercept: float
    n_iter: int
    state: SGDState
    history: list = field(default_factory=list)   # objective (original weights) after each epoch
    converged: bool = False


# ---------------------------------------------------------------------------------------------
# IWA closed form, shared by the reference kernel and tests (the compiled one mirrors it in C)

def iwa_step(z, label, h, k):
    """Scalar step G on z for an importance-weight-aware logistic update.

    Solves the ODE of h infinitesimal unit-weight steps with rate k = sum_j eta_j x_j^2:
    with s = 2 label - 1 and v = s z, dv/dh = k / (1 + e^v), i.e. v + e^v = v0 + e^v0 + h k
    (Karampatziakis & Langford 2011). We solve for delta = v - v0 >= 0 by Newton from the right
    on F(delta) = delta + e^v0 expm1(delta) - h k (convex, increasing: monotone convergence, no
    cancellation for tiny h k). Returns G such that z moves by -G k, i.e. G = -s delta / k;
    for small h k this is h (sigmoid(z) - label), the gradient step.
    """
    s = 2.0 * label - 1.0
    v0 = s * z
    a = h * k
    if a <= 0.0 or k <= 0.0:
        return 0.0
    if v0 > 30.0:
        # e^v0 > 1e13: delta ~ a sigma(-v0) to relative precision ~ a sigma(-v0)
        e = math.exp(-v0) if v0 < 745 else 0.0
        delta = a * e / (1.0 + e)
        return -s * delta / k
    e0 = math.exp(v0)   # v0 <= 30: no overflow; 0.0 below -745 (then e^v <= a: v <= log a)
    # upper bounds: dv/dh <= k gives delta <= a; e^v <= e^v0 + a gives delta <= log1p(a / e0)
    delta = min(a, math.log1p(a / e0) if e0 > 0.0 else math.log(a) - v0)
    for _ in range(100):
        ev = math.exp(v0 + delta)    # <= e0 + a: finite
        # e0 (e^delta - 1) without cancellation for small delta, without overflow for large
        f = delta + (e0 * math.expm1(delta) if delta < 1.0 else ev - e0) - a
        new = delta - f / (1.0 + ev)
        if new < 0.0:
            new = 0.0
        if not (new < delta) or delta - new <= 1e-15 * delta:
            delta = new
            break
        delta = new
    return -s * delta / k


# ---------------------------------------------------------------------------------------------
# Driver

def _resolve(params, features, w_norm_mean, n_rows_epoch):
    opt = params.optimizer
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
        n_schedule=float(max(n_rows_epoch, 1)), fit_intercept=bool(params.fit_intercept))


def _mean_sq_norm(features, fit_intercept):
    if features.n_rows == 0:
        return 1.0
    if features.is_sparse:
        sq = float(np.dot(features.data.astype(np.float64), features.data.astype(np.float64)))
    else:
        sq = float(np.einsum("ij,ij->", features.X, features.X, dtype=np.float64))
    return max(sq / features.n_rows + (1.0 if fit_intercept else 0.0), 1e-12)


def objective(features, y, sample_weight, coef, intercept, l2, l1=0.0, backend=None, n_threads=1):
    """The objective of DESIGN.md section 1 (with l1), via the backend's objective kernel."""
    be = get_backend(backend)
    if features.is_sparse:
        loss, _, _ = be.objective_grad_csr(features.data, features.indices, features.indptr,
                                           features.n_features, y, sample_weight, coef, intercept,
                                           l2, n_threads)
    else:
        loss, _, _ = be.objective_grad_dense(features.X, y, sample_weight, coef, intercept, l2,
                                             n_threads)
    return float(loss) + l1 * float(np.abs(coef).sum())


def _epoch_order(rng, n, params, w_norm):
    """Row order of one epoch, and the per-row weights the kernel should use."""
    if params.weighting == "resample":
        scale = 1.0 if params.resample_scale == "auto" else float(params.resample_scale)
        expected = w_norm * scale
        base = np.floor(expected)
        counts = base.astype(np.int64) + (rng.random(n) < (expected - base))
        order = np.repeat(np.arange(n, dtype=np.int64), counts)
        rng.shuffle(order)
        return order
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
    n_threads : int
        Threads for the objective evaluations; the epochs are sequential.
    backend : str, optional
    state : SGDState, optional
        Warm start: continue from a previous result's ``state`` (mutated in place).
    partial : bool
        ``partial_fit``: one epoch over these rows, no objective evaluation, no early stopping.

    Returns
    -------
    SGDResult

    Raises
    ------
    SGDDivergenceError
        If the loss or the coefficients become non-finite; the message suggests what to change.
    """
    params = (params or SGDParams()).validate()
    n, d = features.n_rows, features.n_features
    be = get_backend(backend)
    n_threads = resolve_n_threads(n_threads)
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
        if features.is_sparse:
            loss_sum, bad = be.sgd_epoch_csr(features.data, features.indices, features.indptr, y,
                                             kernel_w, order, state, ep)
        else:
            loss_sum, bad = be.sgd_epoch_dense(features.X, y, kernel_w, order, state, ep)
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
    for epoch in range(int(max_iter)):
        _, coef, b = run_epoch()
        obj = objective(features, y, sample_weight, coef, b, params.l2, params.l1, backend, n_threads) \
            if tol is not None or verbose else math.nan
        if tol is not None and not math.isfinite(obj):
            raise SGDDivergenceError(_advice(params, f"the objective is {obj} after epoch {epoch + 1}"))
        history.append(obj)
        if verbose:
            print(f"epoch {epoch + 1}: objective {obj:.10g}")
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
    return SGDResult(coef.copy(), b, epoch + 1, state, history, converged)
