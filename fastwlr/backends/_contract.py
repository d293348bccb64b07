"""The kernel contract's shared names: codes, layouts, numerical constants and the SGD structs.

A leaf module (numpy only): every backend imports it, and so do the layers above (the kernel
adapter ``fastwlr._kernels`` and the SGD driver ``fastwlr._sgd``). The contract itself is written
up in docs/kernels.md. The Cython core needs these values at compile time: it declares them again
as C enums and macros, and tests/test_layers.py checks that its copies equal the ones here.
"""
from dataclasses import dataclass, field, replace

import numpy as np

# ---------------------------------------------------------------------------- scoring outputs
OUTPUTS = ("log_odds", "odds", "proba")
LOG_ODDS, ODDS, PROBA = 0, 1, 2
OUTPUT_CODES = {"log_odds": LOG_ODDS, "odds": ODDS, "proba": PROBA}

# exp(z) overflows float64 for z > log(DBL_MAX) and is 0.0 (even denormals underflow) for z below
# the second bound: the kernels branch on these, so no floating-point flag is raised
EXP_OVERFLOW_Z = 709.782712893384
EXP_UNDERFLOW_Z = -745.1332191019412

# ------------------------------------------------------------------- float32 features (scoring)
# A backend may sum a dense float32 row in float32: the Cython core does, against the coefficients
# rounded to float32, in chains of at most F32_CHUNK fused multiply-adds per lane (docs/kernels.md).
# Any backend's log-odds of float32 features are within
#     F32_SUM_RTOL * (|b| + sum_j |w_j x_j|) + d * F32_SUM_ATOL
# of the exact sum of the features as given (derived in README, "Dtype and numerical rules").
F32_CHUNK = 8
F32_MIN_D = 64   # rows of fewer features are summed in float64 (faster there; docs/kernels.md)
F32_SUM_RTOL = (F32_CHUNK + 1.05) * 2.0 ** -24
F32_SUM_ATOL = 2.0 ** -149   # per term: products that underflow float32 (below 2^-126)

# ------------------------------------------------------------------------------ SGD codes
WEIGHTINGS = {"gradient": 0, "iwa": 1, "resample": 0}   # resample = unit-weight gradient steps
GRADIENT, IWA = 0, 1
OPTIMIZERS = {"sgd": 0, "adagrad": 1, "ftrl": 2, "normalized": 3}
SGD, ADAGRAD, FTRL, NORMALIZED = 0, 1, 2, 3
SCHEDULES = {"auto": 0, "constant": 1, "invscaling": 2, "optimal": 3}
AUTO, CONSTANT, INVSCALING, OPTIMAL = 0, 1, 2, 3

# layout of SGDState.scalars (one float64 vector, so that compiled kernels can mutate it in place)
S_INTERCEPT, S_SCALE, S_T, S_ACC_B, S_Z_B, S_AVG_B, S_AVG_CLOCK, S_N_AVG, S_ACC_NORM = range(9)
N_SCALARS = 9
# The normalized optimiser's running sums (sum of h, sum of h ||x / xmax||^2) live in two slots
# it never shares: FTRL's z_b and plain SGD's averaging clock. Nine scalars keep saved files of
# the other optimisers byte for byte what they were (format version 1).
S_NORM_W, S_NORM_X = S_Z_B, S_AVG_CLOCK

ADA_EPS = 1e-12        # AdaGrad's rate eta0 / (sqrt(acc) + ADA_EPS)
RESCALE_BELOW = 1e-9   # plain SGD's weight scale is folded into coef when it gets this small


@dataclass(frozen=True)
class EpochParams:
    """What an SGD epoch kernel reads: plain numbers and the codes above, resolved by the driver."""
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
    fit_intercept: bool


@dataclass
class SGDState:
    """Mutable training state: plain float64 arrays and one float64 scalars vector.

    coef: raw coefficients (the iterate is ``coef * scalars[S_SCALE]``); acc: AdaGrad's sum of
    squared gradients or FTRL's n; zacc: FTRL's z; last: per-coordinate step stamp (lazy
    regularisation) or averaging clock (lazy averaging); avg: running sum of iterates; xmax:
    the normalized optimiser's per-feature scale (largest |x_j| seen so far).
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
    xmax: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def new(cls, n_features, optimizer, average, coef=None, intercept=0.0):
        d = int(n_features)
        e = np.zeros(0)
        needs_acc = optimizer in ("adagrad", "ftrl", "normalized")
        needs_last = optimizer in ("adagrad", "normalized") or average
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
                   scalars=scalars, optimizer=optimizer, average=bool(average),
                   xmax=np.zeros(d) if optimizer == "normalized" else e)

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
                       last=self.last.copy(), avg=self.avg.copy(), scalars=self.scalars.copy(),
                       xmax=self.xmax.copy())

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

    def check(self, n_features, params):
        """Every array the optimiser of ``params`` touches has length ``n_features`` and is a
        writable contiguous float64 vector: the kernels index without bounds checks. O(1)."""
        d = int(n_features)
        avg_on = bool(np.isfinite(params.avg_start)) and self.avg.shape[0] > 0
        if params.optimizer not in (SGD, ADAGRAD, FTRL, NORMALIZED):
            raise ValueError(f"unknown optimizer code {params.optimizer}")
        need = {"coef": True, "acc": params.optimizer != SGD, "zacc": params.optimizer == FTRL,
                "last": params.optimizer in (ADAGRAD, NORMALIZED) or (avg_on and params.optimizer == SGD),
                "avg": avg_on, "xmax": params.optimizer == NORMALIZED}
        for name, needed in need.items():
            a = getattr(self, name)
            if a.dtype != np.float64 or a.ndim != 1 or not a.flags.c_contiguous or not a.flags.writeable:
                raise TypeError(f"SGD state: {name} must be a writable contiguous float64 vector")
            if needed and a.shape[0] != d:
                raise ValueError(f"SGD state: {name} has length {a.shape[0]}, expected {d}")
        if self.scalars.shape[0] != N_SCALARS:
            raise ValueError(f"SGD state: scalars has length {self.scalars.shape[0]}, expected {N_SCALARS}")
        return avg_on
