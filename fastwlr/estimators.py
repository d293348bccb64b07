"""Estimators: ``WeightedLogisticRegression`` and the YouTube recipe on top of it, ``WatchTimeRanker``.

Both follow the scikit-learn protocol (``get_params``/``set_params``, ``fit`` returning self,
fitted attributes ending in ``_``, ``n_features_in_``) without importing scikit-learn; when
scikit-learn is installed they also describe themselves to it (``__sklearn_tags__``), so
``clone``, pipelines, grid search and ``check_estimator`` work.

The objective (both solvers, both estimators)::

    L(coef, b) = sum_i w_i [softplus(z_i) - y_i z_i] / sum_i w_i
                 + alpha * ((1 - l1_ratio) / 2 * ||coef||^2 + l1_ratio * ||coef||_1)

i.e. the weighted logistic loss of docs/theory.md averaged over the *weights* (with
``sample_weight=None``, sum_i w_i = n: the mean loss, with l2 = alpha). Averaging over the weights makes the
model independent of a common scale of all the weights (``sample_weight`` times c gives the same
coefficients) and makes an integer weight exactly equivalent to repeating the row. The unit of the
watch time is another matter: it scales the positives' weights but not the negatives', so for a
misspecified model seconds and milliseconds give different coefficients, not only a shifted
intercept (docs/glm.md measures it).

Mapping to scikit-learn's ``LogisticRegression(C=...)``, whose objective is
C sum_i w_i l_i + ||coef||^2 / 2: divide it by C sum_i w_i to get sum_i w_i l_i / sum_i w_i +
||coef||^2 / (2 C sum_i w_i), so (with l1_ratio = 0)

    alpha = 1 / (C * sum_i w_i),     C = 1 / (alpha * sum_i w_i).
"""
import functools
import inspect
import math
import numbers
import threading
import time
import warnings
import weakref

import numpy as np

from . import _io, _validation as v, _weights
from ._config import blas_single_threaded, check_backend_name, resolve_n_threads
from ._kernels import Kernels
from ._lbfgs import DEFAULT_MAX_ITER as LBFGS_MAX_ITER, DEFAULT_TOL as LBFGS_TOL, fit_lbfgs
from ._newton import DEFAULT_MAX_ITER as NEWTON_MAX_ITER, fit_newton
from ._tron import DEFAULT_MAX_ITER as TRON_MAX_ITER, fit_tron
from .backends._math import sigmoid, softplus
from .exceptions import ConvergenceWarning, DataConversionWarning, DivergenceError, NotFittedError
from .scoring import score_features

__all__ = ["WeightedLogisticRegression", "WatchTimeRanker"]


def _sklearn_flavoured(ours, sklearn_name):
    """``ours``, or (when scikit-learn is already imported by the caller) a subclass of both ours and
    scikit-learn's class of the same meaning, so ``except sklearn.exceptions.X`` catches it too.
    Never imports scikit-learn itself."""
    import sys
    mod = sys.modules.get("sklearn.exceptions")
    theirs = getattr(mod, sklearn_name, None) if mod is not None else None
    if theirs is None or issubclass(ours, theirs):
        return ours
    key = (ours, theirs)
    if key not in _FLAVOURED:
        _FLAVOURED[key] = type(ours.__name__, (ours, theirs), {"__module__": ours.__module__})
    return _FLAVOURED[key]


_FLAVOURED = {}


class _only_for_sgd:
    """Descriptor: the method exists only when ``solver="sgd"`` (like scikit-learn's ``available_if``),
    so ``hasattr(est, "partial_fit")`` tells meta-estimators whether streaming is possible."""

    def __init__(self, fn):
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self.fn
        if obj.solver not in STREAMING_SOLVERS:
            raise AttributeError(f"{self.name} is available only with solver='sgd' or 'auto' "
                                 f"(this estimator has solver={obj.solver!r})")
        return self.fn.__get__(obj, objtype)

SOLVERS = ("auto", "sgd", "lbfgs", "newton", "newton-cg")
EXACT_SOLVERS = ("lbfgs", "newton", "newton-cg")  # full batch, to a gradient tolerance: one objective, one optimum
STREAMING_SOLVERS = ("auto", "sgd")  # partial_fit runs SGD epochs; "auto" streams with SGD too

# solver="auto" for fit (``_auto_solver``; measured by benchmarks/experiments/solver_crossover.py,
# docs/performance.md "Choosing a solver"). CSR: trust-region Newton-CG, as fast as newton at 43
# columns and 5-15x faster than newton or lbfgs from 256 columns up (lbfgs is not preconditioned on
# CSR: 80-440 iterations on one-hot columns; scipy's L-BFGS-B costs ~0.2 s an iteration of its own
# at 2^18 columns). Dense: lbfgs first, and newton from where it is as soon as lbfgs's recent
# progress predicts more iterations to tol than newton would cost (``_lbfgs_too_slow``).
# Preconditioned lbfgs converges in 5-17 iterations on standardised rows (newton is 2-9x slower
# there: a dense Hessian pass costs ~4.4x a gradient pass at d = 43, ~5x at 64, ~14x at 128), but
# needs 35-160+ on heavy-tailed weights and rare one-hot columns, where newton takes 5-8 steps
# whatever the conditioning. Above AUTO_DENSE_NEWTON_MAX columns the Hessian costs too much: lbfgs alone.
AUTO_DENSE_NEWTON_MAX = 512
AUTO_WINDOW = 3             # lbfgs iterations over which its rate of progress is measured
AUTO_NEWTON_PASSES = 3      # Hessian passes newton needs from a point lbfgs has reached (measured: 2-4)
HESSIAN_PASS_COLUMNS = 10   # a dense Hessian pass costs ~ (d + 1) / 10 gradient passes (the figures above)


def _lbfgs_too_slow(history, tol, n_features):
    """True when lbfgs should hand over to newton: at the rate by which lbfgs shrank its stopping
    criterion over its last AUTO_WINDOW iterations (``history``: the criterion at the start and
    after each iteration), reaching ``tol`` would take more gradient passes than newton's
    AUTO_NEWTON_PASSES Hessian passes cost."""
    if len(history) <= AUTO_WINDOW:
        return False
    if not tol > 0.0:  # tol=0: lbfgs never gets there; newton ends where float64 lets it
        return True
    newton_cost = AUTO_NEWTON_PASSES * max(1.0, (n_features + 1) / HESSIAN_PASS_COLUMNS)
    rate = (history[-1] / history[-1 - AUTO_WINDOW]) ** (1.0 / AUTO_WINDOW) if history[-1 - AUTO_WINDOW] > 0 else 0.0
    if not rate < 1.0:  # no progress (lbfgs's criterion is not monotone): newton
        return True
    if not rate > 0.0:
        return False
    return math.log(tol / history[-1]) / math.log(rate) > newton_cost


# Parameters only SGD reads, at their defaults: solver="auto" runs SGD when one of them is set
# otherwise (an option that was asked for is never ignored), or when tol=None (fixed epochs).
_SGD_ONLY = {"l1_ratio": 0.0, "n_iter_no_change": 2, "weighting": "iwa", "optimizer": "auto", "eta0": "auto",
             "learning_rate": "auto", "power_t": 0.5, "average": True, "shuffle": True}

# scikit-learn's estimator checks that cannot pass, and why (the docstrings and README repeat it;
# tests/test_sklearn_checks.py asserts that exactly these fail).
_SKLEARN_XFAIL_SGD = {
    "check_sample_weight_equivalence_on_dense_data":
        "a weight of k is not k repeated rows for a stochastic solver: the repeats are visited at "
        "different times in an epoch and take k steps (IWA/gradient weighting take one weighted step, "
        "resampling draws copies at random), and SGD stops at a relative tolerance of 1e-4, far from "
        "the check's rtol=1e-7 (solver='lbfgs' passes it)",
    "check_sample_weight_equivalence_on_sparse_data": "as check_sample_weight_equivalence_on_dense_data",
}
# The ranker's target is a watch time: >= 0, and both 0 (unclicked) and > 0 (clicked) must occur.
_NEGATIVE = ("the check's targets include negative values, and a watch time must be >= 0 (a negative "
             "one would be a negative weight); the property checked holds on valid watch times "
             "(tests/test_sklearn_checks.py runs the check on them)")
_ALL_CLICKED = ("the check's targets are all > 0: every impression clicked, none unclicked, so the recipe "
                "has no negatives and e^z no finite optimum (fit raises ValueError); the property checked "
                "holds on valid watch times (tests/test_sklearn_checks.py runs the check on them)")
_HAS_PROBA = ("the ranker keeps predict_proba, the probability of its weighted model, which scikit-learn's "
              "check only expects of classifiers (it reads the classifier tags of an estimator with "
              "predict_proba); fitting and predicting sparse input works and is tested")
_SKLEARN_XFAIL_RANKER = {
    **{name: _NEGATIVE for name in (
        "check_n_features_in", "check_n_features_in_after_fitting", "check_fit_idempotent",
        "check_fit_check_is_fitted", "check_regressors_train", "check_regressor_data_not_an_array")},
    **{name: _ALL_CLICKED for name in (
        "check_estimators_dtypes", "check_fit2d_1feature", "check_sample_weights_pandas_series",
        "check_sample_weights_not_an_array", "check_sample_weights_shape",
        "check_sample_weights_not_overwritten")},
    "check_estimator_sparse_array": _HAS_PROBA,
    "check_estimator_sparse_matrix": _HAS_PROBA,
    "check_regressors_no_decision_function":
        "the ranker keeps decision_function (the log-odds z, log of predict, which the ranking "
        "metrics and the command line take) and predict_proba/predict_log_proba of its weighted "
        "model, which this check forbids a regressor (its targets are also negative)",
}

SAMPLING_CORRECTIONS = ("weight", "intercept")

# partial_fit reads the SGD state, runs an epoch on it (without the GIL) and writes the solution
# back: two threads calling it on one estimator lost epochs and mixed states silently. Calls on one
# estimator are serialised by a lock of its own (kept outside the instance, so estimators still
# pickle and clone); calls on different estimators still run in parallel.
_PARTIAL_FIT_LOCKS = weakref.WeakKeyDictionary()
_PARTIAL_FIT_LOCKS_GUARD = threading.Lock()


def _serialised(fn):
    """partial_fit under the estimator's own lock (see _PARTIAL_FIT_LOCKS)."""
    @functools.wraps(fn)
    def locked(self, *args, **kwargs):
        with _PARTIAL_FIT_LOCKS_GUARD:
            lock = _PARTIAL_FIT_LOCKS.get(self)
            if lock is None:
                lock = _PARTIAL_FIT_LOCKS[self] = threading.RLock()
        with lock:
            return fn(self, *args, **kwargs)
    return locked


def _sgd_defaults():
    """max_iter and tol of ``fastwlr._sgd.fit_sgd``: "auto" follows them, so the two never drift."""
    from ._sgd import fit_sgd
    params = inspect.signature(fit_sgd).parameters
    return params["max_iter"].default, params["tol"].default


class _Params:
    """get_params / set_params / repr from the ``__init__`` signature (scikit-learn's convention:
    ``__init__`` stores its arguments unchanged; all checking happens in ``fit``)."""

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep=True):
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", val) for k, val in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        valid = self._param_names()
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; valid: {valid}")
            if sub:
                getattr(self, name).set_params(**{sub: value})
            else:
                setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{k}={getattr(self, k)!r}" for k in self._param_names()
                   if not _same(getattr(self, k), defaults.get(k))]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self):
        return hasattr(self, "coef_")


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:
        return a is b


@_io.register
class WeightedLogisticRegression(_Params):
    """Binary logistic regression with sample weights, trained by SGD or exactly (L-BFGS or Newton).

    Parameters
    ----------
    alpha : float, default=1e-6
        Regularisation strength (see the module docstring for the objective and the mapping to
        scikit-learn's ``C``: ``C = 1 / (alpha * sum(sample_weight))``). The intercept is not
        regularised.
    l1_ratio : float in [0, 1], default=0.0
        Share of L1 in the penalty; > 0 needs SGD with FTRL (what ``solver="auto"`` and
        ``optimizer="auto"`` then run).
    solver : {"auto", "sgd", "lbfgs", "newton", "newton-cg"}, default="auto"
        ``"auto"``: ``fit`` solves exactly: ``"newton-cg"`` for sparse (CSR) input; for dense input
        ``"lbfgs"``, which hands over to ``"newton"`` from where it is as soon as its progress predicts
        more work to ``tol`` than newton's (``_lbfgs_too_slow``; up to 512 features, lbfgs alone
        beyond). Measured rules,
        docs/performance.md "Choosing a solver". ``partial_fit`` runs ``"sgd"``, and so does ``fit``
        when a parameter only SGD reads
        is set (``l1_ratio``, ``n_iter_no_change``, ``weighting``, ``optimizer``, ``eta0``,
        ``learning_rate``, ``power_t``, ``average``, ``shuffle`` away from their defaults, or ``tol=None``).
        ``solver_`` says which ran (the last one, when lbfgs handed over to newton).
        ``"newton-cg"``: trust-region Newton-CG (``fastwlr._tron``, LIBLINEAR's method): Hessian-vector
        products, never the Hessian, so memory O(n + n_features); the solver for wide and sparse data.
        On very wide CSR (private partial gradients of more than 32 MB, e.g. 2^20 columns) it also
        keeps a transposed copy of X's non-zeros for the fit: twice X's memory, half the time of a
        pass (docs/kernels.md, "X^T for wide data"); ``"lbfgs"`` does the same.
        ``"sgd"``: streaming epochs (``fastwlr._sgd``), supports ``partial_fit``. ``"lbfgs"``: exact
        full-batch quasi-Newton over the compiled objective + gradient; for data that fits in memory,
        and the reference the stochastic solvers are compared with. ``"newton"``: exact Newton with
        the full (n_features + 1)^2 Hessian (``fastwlr._newton``), the same objective, optimum and
        stopping rule as lbfgs in a few iterations; for data in memory with up to a few hundred
        features (n_features + 1 <= 4096, else a ValueError), and the solver of choice for
        heavy-tailed weights or weak regularisation, where lbfgs needs many iterations.
    fit_intercept : bool, default=True
    max_iter : int or "auto", default="auto"
        Epochs (sgd; auto = ``fastwlr._sgd.fit_sgd``'s default, 50) or iterations (lbfgs, auto = 1000;
        newton, auto = 100).
    tol : float, None or "auto", default="auto"
        sgd: stop when the objective has improved by less than ``tol * |objective|`` for
        ``n_iter_no_change`` epochs (auto = ``fit_sgd``'s default, 1e-4; None = run ``max_iter``
        epochs); that counts as convergence only if the full-batch gradient is then small
        (``fastwlr._sgd.STALL_GRADIENT_TOL``), else ``converged_`` is False with a ConvergenceWarning.
        lbfgs and newton: stop when max_j |dL/dcoef_j| s_j <= tol and |dL/db| <= tol (auto = 1e-8, tight: it
        is the ground truth), L the weight-averaged objective above and s_j = 1 / sqrt(mean_w(x_j^2)
        + alpha / (p0 (1 - p0))), p0 the weighted share of positives: the gradient per unit of the
        Hessian's diagonal at the start, so tol means the same whatever the scale of the weights or
        of each feature (for standardised features and alpha = 0 it is the plain max |gradient|;
        sparse input, which is not preconditioned, uses s_j = 1). ``tol`` is absolute in these
        units, not relative to the starting gradient: a warm start from the optimum needs no
        iteration. The fit also counts as converged when the line search can no longer lower the
        objective in float64 and the gradient is within ``tol * max(1, max |x|)`` (its rounding
        noise). ``n_iter_`` counts the iterations of each solver (epochs for sgd).
    n_iter_no_change : int, default=2
    weighting : {"iwa", "gradient", "resample"}, default="iwa"
        sgd: how a sample weight acts (importance-aware step, gradient times weight, or resampling).
    optimizer : {"auto", "adagrad", "normalized", "sgd", "ftrl"}, default="auto"
        sgd: the per-step update. "normalized": AdaGrad with each feature's rate normalised by
        its scale (Vowpal Wabbit's default update): predictions do not depend on the units of a
        column, so it needs no standardisation (``fastwlr._sgd.SGDParams``). "auto": "ftrl" when
        ``l1_ratio > 0``, else "normalized" for sparse X and "adagrad" for dense X (measured:
        ``fastwlr._sgd.DEFAULT_ETA0``'s comment); a warm start or ``partial_fit`` keeps the
        optimiser of the state it continues.
    eta0 : float or "auto", default="auto"
    learning_rate : {"auto", "constant", "invscaling", "optimal"}, default="auto"
        optimizer="sgd": the rate schedule (``fastwlr._sgd.SGDParams``); "optimal" decays as
        1 / (alpha t), scikit-learn's choice for strongly regularised fits (needs alpha > 0).
    power_t : float, default=0.5
    average : bool or int, default=True
        sgd: Polyak-Ruppert averaging of the iterates.
    shuffle : bool, default=True
        sgd: visit the rows in a new random order each epoch; False: in the order given (an
        online pass in the order of a log, e.g. ``max_iter=1``; ``partial_fit`` too). With
        weighting="resample" the copies are still drawn (from ``random_state``) and a row's
        copies come one after another at its place.
    warm_start : bool, default=False
        ``fit`` starts from the previous ``fit``'s solution (scikit-learn's meaning; the first fit,
        or one on another number of features, starts cold). lbfgs, newton: the previous coefficients and
        intercept are the starting point (then the iterations count from 0 and the tolerance is
        the same). sgd: the optimizer state is *kept*, not restarted: the coefficients, the
        AdaGrad/FTRL accumulators (so the rates go on decaying where they were), the step count,
        the averaging and the weight normalisation of the first fit continue, as if the epochs
        had gone on. Changing ``optimizer`` between warm fits is an error; ``partial_fit`` always
        continues. A ``WatchTimeRanker``'s click model (``fit_click_model=True``) warm-starts too.
    verbose : int, default=0
        > 0: print one line per iteration (lbfgs, newton: iteration, objective, the largest scaled
        gradient component that ``tol`` bounds, elapsed seconds) or epoch (sgd: epoch, objective,
        elapsed seconds; ``partial_fit``: epoch, rows, elapsed) to stdout, and a final line saying
        whether and why the fit stopped.
    random_state : None, int or numpy Generator
        Seeds the sgd row order. Same seed, same data, one thread: bit-identical coefficients.
    n_threads : int or None, default=None
        OpenMP threads for the compiled kernels (None: the cores other work leaves idle, counted
        at each kernel call; -1: all cores). lbfgs and newton results do not depend on it.
    backend : {"auto", "cython", "numba", "reference"} or None
    negative_sampling_rate : float in (0, 1], default=1.0
        The training rows are logs whose negatives (``classes_[0]``; for ``WatchTimeRanker`` the
        unclicked impressions) were kept with this probability, the positives all kept. The fit is
        corrected so that it estimates the model the full logs would give (see
        ``negative_sampling_correction``). 1.0: nothing was dropped.
    negative_sampling_correction : {"weight", "intercept"}, default="weight"
        ``"weight"``: each negative counts 1 / rate times (times its ``sample_weight``). The expected
        objective over the sampling then *is* the full logs' objective, for any model, so the fit
        matches the full-data fit up to the sampling noise of the dropped negatives. ``"intercept"``:
        fit the sampled rows as they are and add log(rate) to the intercept (the classic prior
        correction). Exact only when the model is well specified (the true log-odds are linear in
        the features); otherwise it converges to another model. It has less variance when the model
        is right. Needs ``fit_intercept=True``.

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features), float64
    intercept_ : ndarray of shape (1,)
    classes_ : ndarray of shape (2,)
    n_features_in_ : int
    n_iter_ : int
        Epochs (sgd) or iterations (lbfgs, newton) run by the last ``fit``; epochs so far for ``partial_fit``.
    converged_ : bool
    solver_ : {"sgd", "lbfgs", "newton", "newton-cg"}
        The solver the last ``fit`` or ``partial_fit`` ran (``solver``, or what ``"auto"`` chose).

    Notes
    -----
    scikit-learn's ``check_estimator`` passes in full with ``solver="lbfgs"``. With ``solver="sgd"``
    two checks are expected to fail, ``check_sample_weight_equivalence_on_dense_data`` and
    ``check_sample_weight_equivalence_on_sparse_data``: a weight of k is not k repeated rows for a
    stochastic solver (the repeats are visited at different times and take k steps), and SGD stops
    at a relative tolerance of 1e-4, not the check's 1e-7. ``est._sklearn_expected_failed_checks()``
    gives them with their reasons, for ``check_estimator(est, expected_failed_checks=...)``.
    """

    _estimator_type = "classifier"

    def __init__(self, alpha=1e-6, *, l1_ratio=0.0, solver="auto", fit_intercept=True, max_iter="auto",
                 tol="auto", n_iter_no_change=2, weighting="iwa", optimizer="auto", eta0="auto",
                 learning_rate="auto", power_t=0.5, average=True, shuffle=True, warm_start=False, verbose=0,
                 random_state=None,
                 n_threads=None, backend=None, negative_sampling_rate=1.0,
                 negative_sampling_correction="weight"):
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.solver = solver
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.weighting = weighting
        self.optimizer = optimizer
        self.eta0 = eta0
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.average = average
        self.shuffle = shuffle
        self.warm_start = warm_start
        self.verbose = verbose
        self.random_state = random_state
        self.n_threads = n_threads
        self.backend = backend
        self.negative_sampling_rate = negative_sampling_rate
        self.negative_sampling_correction = negative_sampling_correction

    # ------------------------------------------------------------------ scikit-learn integration
    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so importing it here never makes it a runtime dependency.
        from sklearn.utils import ClassifierTags, Tags, TargetTags
        tags = Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(multi_class=False))
        tags.input_tags.sparse = True
        tags.non_deterministic = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"binary_only": True, "_xfail_checks": self._sklearn_expected_failed_checks()}

    def _sklearn_expected_failed_checks(self):
        """{check name: reason} of the scikit-learn estimator checks this configuration cannot pass,
        for ``check_estimator(est, expected_failed_checks=est._sklearn_expected_failed_checks())``
        (the class docstring explains each)."""
        return dict(_SKLEARN_XFAIL_SGD) if self.solver == "sgd" else {}  # "auto" fits exactly

    # ------------------------------------------------------------------ input handling
    def _check_params(self, solver=None):
        """The checked (alpha, l1_ratio, max_iter, tol) for ``solver``, the solver that will run
        (default: the parameter; "auto" resolved by ``_auto_solver`` where the data are known)."""
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        solver = solver or self.solver
        alpha = v.check_scalar(self.alpha, "alpha", low=0.0)
        l1_ratio = v.check_scalar(self.l1_ratio, "l1_ratio", low=0.0, high=1.0)
        if l1_ratio > 0 and solver in EXACT_SOLVERS:
            raise ValueError(f"l1_ratio > 0 (an L1 penalty) is not supported by solver={solver!r}; "
                             "use solver='sgd' with optimizer='ftrl'")
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(f"fit_intercept must be a bool, got {type(self.fit_intercept).__name__}")
        if _is_auto(self.max_iter):
            max_iter = {"sgd": _sgd_defaults()[0], "lbfgs": LBFGS_MAX_ITER, "newton": NEWTON_MAX_ITER,
                        "newton-cg": TRON_MAX_ITER, "lbfgs+newton": LBFGS_MAX_ITER, "auto": NEWTON_MAX_ITER}[solver]
        else:
            max_iter = v.check_scalar(self.max_iter, "max_iter", low=1, integer=True)
        if _is_auto(self.tol):
            tol = _sgd_defaults()[1] if solver == "sgd" else LBFGS_TOL
        elif self.tol is None:
            if solver in EXACT_SOLVERS:
                raise ValueError(f"tol=None (no early stopping) applies to solver='sgd'; {solver} "
                                 "needs a tolerance")
            tol = None
        else:
            tol = v.check_scalar(self.tol, "tol", low=0.0)
        v.check_scalar(self.n_iter_no_change, "n_iter_no_change", low=1, integer=True)
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise TypeError(f"warm_start must be a bool, got {type(self.warm_start).__name__}")
        if not isinstance(self.verbose, (bool, np.bool_)):
            v.check_scalar(self.verbose, "verbose", low=0, integer=True)
        if self.backend is not None:  # a name only: a model saved with backend="numba" loads where Numba is absent
            check_backend_name(self.backend)
        return alpha, l1_ratio, max_iter, tol

    def _check_sampling(self):
        """(rate, intercept shift): the negative down-sampling correction this fit applies."""
        rate = v.check_scalar(self.negative_sampling_rate, "negative_sampling_rate", low=0.0, high=1.0,
                              low_inclusive=False)
        if self.negative_sampling_correction not in SAMPLING_CORRECTIONS:
            raise ValueError(f"negative_sampling_correction must be one of {SAMPLING_CORRECTIONS}, "
                             f"got {self.negative_sampling_correction!r}")
        if self.negative_sampling_correction == "intercept" and rate < 1.0:
            if not self.fit_intercept:
                raise ValueError("negative_sampling_correction='intercept' shifts the intercept: it needs "
                                 "fit_intercept=True (or use the default 'weight')")
            return rate, math.log(rate)
        return rate, 0.0

    def _validate_X(self, X, reset):
        X = _numeric_X(X)
        if reset:
            features = v.check_features(X, allow_empty=False, n_threads=self.n_threads)
            if features.n_features == 0:
                raise ValueError(f"Found array with 0 feature(s) (shape=({features.n_rows}, 0)) while a "
                                 "minimum of 1 is required.")
            return features
        self._check_fitted()
        d = _n_columns(X)
        if d is not None and d != self.n_features_in_:
            raise ValueError(f"X has {d} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return v.check_features(X, n_features=self.n_features_in_, n_threads=self.n_threads)

    def _encode_y(self, y, n, reset):
        """Labels -> float64 0/1, setting ``classes_`` (sorted; classes_[1] is the positive class)."""
        y = _as_1d_labels(y, n)
        if reset:
            classes = np.unique(y)
            if classes.shape[0] > 2:
                raise ValueError(f"Only binary classification is supported by {type(self).__name__}, but y has "
                                 f"{classes.shape[0]} classes: {classes[:5].tolist()}...")
            if classes.shape[0] < 2:
                raise ValueError("y contains only one class (1 class); a binary classifier needs samples "
                                 f"of 2 classes, got only {classes.tolist()}")
            self.classes_ = classes
        else:
            unknown = ~np.isin(y, self.classes_)
            if unknown.any():
                raise ValueError(f"y contains a label not seen in the first partial_fit: {y[unknown][0]!r} "
                                 f"(classes_ = {self.classes_.tolist()})")
        return (y == self.classes_[1]).astype(np.float64)

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise _sklearn_flavoured(NotFittedError, "NotFittedError")(f"This {type(self).__name__} instance is not fitted yet; call 'fit' first.")

    # ------------------------------------------------------------------ training
    def fit(self, X, y, sample_weight=None):
        """Fit the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or scipy sparse matrix
            float32 stays float32 in the kernels; other dtypes become float64.
        y : array-like of shape (n_samples,)
            Two classes (any labels; ``classes_[1]``, the larger, is the positive class).
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative; an integer weight is equivalent to repeating the row.

        Returns
        -------
        self
        """
        features = self._validate_X(X, reset=True)
        y01 = self._encode_y(y, features.n_rows, reset=True)
        w = v.check_sample_weight(sample_weight, features.n_rows)
        return self._fit(features, y01, w)

    def _auto_solver(self, features):
        """The solver ``fit`` runs: ``solver`` itself, or what "auto" picks for these features."""
        if self.solver != "auto":
            return self.solver
        if self.tol is None or any(not _at_default(getattr(self, k), default) for k, default in _SGD_ONLY.items()):
            return "sgd"
        if features.is_sparse:
            return "newton-cg"
        return "lbfgs+newton" if features.n_features <= AUTO_DENSE_NEWTON_MAX else "lbfgs"

    def _fit(self, features, y01, w):
        solver = self._auto_solver(features)
        alpha, l1_ratio, max_iter, tol = self._check_params(solver)
        w, shift = self._sampling_weights(y01, w)
        _weights.total_weight(w)
        warm = self.warm_start and getattr(self, "coef_", None) is not None \
            and self.coef_.shape[1] == features.n_features
        resolve_n_threads(self.n_threads)  # checked now; None stays None (idle cores, per kernel call)
        n_threads = self.n_threads
        if solver in EXACT_SOLVERS or solver == "lbfgs+newton":
            coef0, b0 = (self.coef_[0], float(self.intercept_[0]) - shift) if warm else (None, 0.0)
            with blas_single_threaded():  # scipy's small algebra between passes must not wake BLAS's workers
                res, solver, n_before = self._fit_exact(solver, features, y01, w, alpha, max_iter, tol, coef0, b0)
            self._sgd_state = None
            self._set_solution(res.coef, res.intercept + shift, features.n_features, n_before + res.n_iter,
                               res.converged, solver)
            return self
        state = self._sgd_state if warm and getattr(self, "_sgd_state", None) is not None else None
        res = self._run_sgd(features, y01, w, alpha, l1_ratio, max_iter, tol, state, partial=False,
                            n_threads=n_threads)
        # the SGD state keeps the uncorrected intercept, so warm starts and partial_fit continue it
        self._set_solution(res.coef, res.intercept + shift, features.n_features, res.n_iter, res.converged,
                           "sgd")
        if res.stalled_gradient is not None:
            from ._sgd import STALL_GRADIENT_TOL
            warnings.warn(f"sgd's objective stopped improving (tol={tol:g}) but not at an optimum: the "
                          f"scaled gradient is {res.stalled_gradient:.3g} > {STALL_GRADIENT_TOL:g}; "
                          f"standardise the features, keep weighting='iwa' and learning_rate='auto', or "
                          f"use solver='lbfgs'.", ConvergenceWarning, stacklevel=2)
        elif not res.converged and tol is not None:
            warnings.warn(f"sgd stopped after max_iter={max_iter} epochs before the objective settled "
                          f"(tol={tol:g}); increase max_iter or use solver='lbfgs'.",
                          ConvergenceWarning, stacklevel=2)
        return self

    def _fit_exact(self, solver, features, y01, w, alpha, max_iter, tol, coef0, b0):
        """An exact solver's fit from (coef0, b0) -> (result, the solver that gave it, iterations run
        before it). "lbfgs+newton": lbfgs, then newton from where lbfgs stopped if it has not
        converged by the time it looks slower than newton (``_lbfgs_too_slow``)."""
        kw = dict(alpha=alpha, fit_intercept=bool(self.fit_intercept), tol=tol, n_threads=self.n_threads,
                  backend=self.backend, verbose=int(self.verbose))
        n_before = 0
        if solver == "lbfgs+newton":
            d = features.n_features
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                res = fit_lbfgs(features, y01, w, coef_init=coef0, intercept_init=b0, max_iter=max_iter,
                                stop_when=lambda history: len(history) <= max_iter and
                                _lbfgs_too_slow(history, tol, d), **kw)
            done = res.converged or res.n_iter >= max_iter  # done, or out of iterations: lbfgs's own warning
            for warning in caught:  # lbfgs's ConvergenceWarning only if newton does not take over
                if done or not issubclass(warning.category, ConvergenceWarning):
                    warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            if done:
                return res, "lbfgs", 0
            # not converged (too slow, or its line search failed): newton takes over and warns if it must
            solver, coef0, b0, n_before, max_iter = "newton", res.coef, res.intercept, res.n_iter, \
                max_iter - res.n_iter
        fit = {"lbfgs": fit_lbfgs, "newton": fit_newton, "newton-cg": fit_tron}[solver]
        return fit(features, y01, w, coef_init=coef0, intercept_init=b0, max_iter=max_iter, **kw), solver, n_before

    def _sgd_params(self, alpha, l1_ratio, mean_w):
        """The SGD options of these parameters; the penalties in the raw weights' units (times the
        mean weight ``mean_w``: fit_sgd divides them by it again, see _run_sgd)."""
        from ._sgd import SGDParams
        return SGDParams(weighting=self.weighting, optimizer=self.optimizer,
                         l2=alpha * (1.0 - l1_ratio) * mean_w, l1=alpha * l1_ratio * mean_w,
                         eta0=self.eta0, learning_rate=self.learning_rate, power_t=self.power_t,
                         average=self.average, fit_intercept=bool(self.fit_intercept), shuffle=self.shuffle)

    def _run_sgd(self, features, y01, w, alpha, l1_ratio, max_iter, tol, state, partial, n_threads):
        from . import _sgd
        # fit_sgd's objective is (1/n) sum w_i l_i + l2/2 ||coef||^2 + l1 ||coef||_1 on the raw weights:
        # ours divided by mean(w), so its penalties are ours times the mean weight of the first fit.
        # fit_sgd divides them by that mean again for its kernels. The round trip stays: a * m / m is
        # not always a in floating point, and dropping it would change the fitted bits.
        if state is None:
            _weights.check_sgd_weight_scale(w, alpha, self._weights_name)
        mean_w = state.mean_weight if state is not None else _weights.mean_weight(w)
        params = self._sgd_params(alpha, l1_ratio, mean_w)
        try:
            res = _sgd.fit_sgd(features, y01, w, params, max_iter=max_iter, tol=tol,
                               n_iter_no_change=int(self.n_iter_no_change),
                               random_state=self._rng(partial), n_threads=n_threads, backend=self.backend,
                               state=state, partial=partial, verbose=int(self.verbose))
        except _sgd.SGDDivergenceError as exc:
            raise DivergenceError(str(exc)) from exc
        self._sgd_state = res.state
        return res

    def _rng(self, partial=False):
        # fit: a fresh Generator from random_state, so refitting reproduces the same coefficients.
        # partial_fit: one Generator created by the first call, so the calls continue one stream.
        rs = self.random_state
        if not partial:
            return rs if isinstance(rs, np.random.Generator) else np.random.default_rng(rs)
        if getattr(self, "_partial_rng", None) is None:
            self._partial_rng = rs if isinstance(rs, np.random.Generator) else np.random.default_rng(rs)
        return self._partial_rng

    @_only_for_sgd
    @_serialised
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One SGD epoch over this chunk, continuing from the previous call (streaming training).

        The first call fixes ``classes_`` (pass ``classes`` if the first chunk might hold only one
        label) and the weight normalisation (the first chunk's mean weight). Needs ``solver="sgd"``
        or ``"auto"`` (which streams with SGD).
        Thread-safe: concurrent calls on one estimator take turns (a lock per estimator), each one
        a whole epoch; their order is whichever thread gets the lock first.
        """
        if self.solver not in STREAMING_SOLVERS:
            raise ValueError(f"partial_fit needs solver='sgd' or 'auto' (streaming epochs), got solver={self.solver!r}")
        first = self._partial_fit_first()
        features = self._validate_X(X, reset=first)
        if first:
            if classes is not None:
                classes = np.unique(_as_1d_labels(classes, None))
                if classes.shape[0] != 2:
                    raise ValueError(f"classes must hold exactly 2 labels, got {classes.tolist()}")
                self.classes_ = classes
                y01 = self._encode_y(y, features.n_rows, reset=False)
            else:
                y01 = self._encode_y(y, features.n_rows, reset=True)
        else:
            y01 = self._encode_y(y, features.n_rows, reset=False)
        w = v.check_sample_weight(sample_weight, features.n_rows)
        return self._partial_fit(features, y01, w, first)

    def _partial_fit_first(self):
        return not hasattr(self, "coef_") or getattr(self, "_sgd_state", None) is None

    def _partial_fit(self, features, y01, w, first):
        alpha, l1_ratio, _, _ = self._check_params("sgd")
        w, shift = self._sampling_weights(y01, w)
        if first:
            self._partial_rng = None
            _weights.total_weight(w, "the first partial_fit chunk has sample_weight summing to 0")
        state = None if first else self._sgd_state
        started = time.perf_counter()
        res = self._run_sgd(features, y01, w, alpha, l1_ratio, 1, None, state, partial=True,
                            n_threads=self.n_threads)
        n_iter = (0 if first else self.n_iter_) + 1
        if self.verbose:
            print(f"partial_fit epoch {n_iter}: {features.n_rows} rows, {time.perf_counter() - started:.3f} s",
                  flush=True)
        self._set_solution(res.coef, res.intercept + shift, features.n_features, n_iter, False, "sgd")
        return self

    def _sampling_weights(self, y01, w):
        """The negative down-sampling correction, in one place: (weights, intercept shift).
        "weight": negatives (y = 0) count 1 / rate; "intercept": weights as given, intercept + log(rate)."""
        rate, shift = self._check_sampling()
        if rate < 1.0 and self.negative_sampling_correction == "weight":
            w = np.where(y01 == 0, w / rate, w)
        return w, shift

    def _set_solution(self, coef, intercept, d, n_iter, converged, solver):
        coef = np.asarray(coef, dtype=np.float64).reshape(1, d)
        if not (np.isfinite(coef).all() and math.isfinite(intercept)):
            raise DivergenceError("training produced non-finite coefficients; scale the features, "
                                  "use weighting='iwa', or lower eta0")
        self.coef_ = coef
        self.intercept_ = np.array([float(intercept)])
        self.n_features_in_ = int(d)
        self.n_iter_ = int(n_iter)
        self.converged_ = bool(converged)
        self.solver_ = solver

    # ------------------------------------------------------------------ prediction
    def _score(self, X, output, dtype=None):
        coef = getattr(self, "coef_", None)
        if dtype is None and coef is not None and not hasattr(self, "feature_names_in_"):
            # the common case (a float ndarray of the right width, finite log-odds) checked in
            # compiled code: what predict would check and compute, without validation's numpy calls
            scores = Kernels.of(self.backend, self.n_threads).score_fast(X, coef[0], float(self.intercept_[0]), output)
            if scores is not None:
                return scores
        features = self._validate_X(X, reset=False)
        from .scoring import result_dtype
        out = np.empty(features.n_rows, dtype=result_dtype(features.dtype, output, dtype))
        return score_features(features, self.coef_[0], float(self.intercept_[0]), output, out,
                              Kernels(self.backend, self.n_threads))

    def decision_function(self, X):
        """Log-odds z = x . coef + b, shape (n_samples,) (float32 for float32 X)."""
        return self._score(X, "log_odds")

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, 2): columns follow ``classes_``."""
        z = self._score(X, "log_odds", dtype=np.float64)
        return np.column_stack([sigmoid(-z), sigmoid(z)])

    def predict_log_proba(self, X):
        z = self._score(X, "log_odds", dtype=np.float64)
        return np.column_stack([-softplus(z), -softplus(-z)])

    def predict(self, X):
        """Labels: ``classes_[1]`` where z > 0."""
        positive = self._score(X, "log_odds") > 0
        return self.classes_[positive.astype(np.intp)]

    def predict_odds(self, X):
        """Odds e^z, float64 (for a watch-time model: the served expected watch time)."""
        return self._score(X, "odds")

    def score(self, X, y, sample_weight=None):
        """Mean (weighted) accuracy, as scikit-learn classifiers define ``score``."""
        pred = self.predict(X)
        y = _as_1d_labels(y, pred.shape[0])
        w = v.check_sample_weight(sample_weight, pred.shape[0])
        return float(np.average(pred == y, weights=w))

    def rank(self, X, k, *, offsets=None, exclude=None, output="odds"):
        """Each request's top-k candidates by the model's score, in one pass over ``X``.

        Calls ``fastwlr.score_topk`` with ``coef_`` and ``intercept_``: the n scores are never stored.

        Parameters
        ----------
        X : array-like of shape (n, n_features) or scipy sparse matrix
        k : int
            Candidates kept per request.
        offsets : array-like of int, shape (n_requests + 1,), optional
            Request g owns rows ``offsets[g]:offsets[g + 1]``; None: one request.
        exclude : array-like of bool, shape (n,), optional
            Rows never returned (e.g. already watched).
        output : {"odds", "log_odds", "proba"}
            Values returned; the order is by log-odds whatever the output. For a
            ``WatchTimeRanker``, "odds" is e^z, the expected watch time without the click correction.

        Returns
        -------
        indices : ndarray of int64, shape (n_requests, k)
            Row indices into X, best first; -1 pads requests with fewer than k rows.
        values : ndarray, shape (n_requests, k)
        """
        from .topk import score_topk
        self._check_fitted()
        X = _numeric_X(X)  # the input conventions of predict: object arrays of numbers, no complex
        d = _n_columns(X)
        if d is not None and d != self.n_features_in_:
            raise ValueError(f"X has {d} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return score_topk(X, self.coef_[0], float(self.intercept_[0]), k, offsets=offsets,
                          exclude=exclude, output=output, n_threads=self.n_threads, backend=self.backend)

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Write the fitted model to ``path`` (see ``fastwlr.load``; a versioned, non-pickle format)."""
        _io.save(self, path)

    _state_parts = ()  # entries of _get_state's info holding nested estimators (see fastwlr._io)
    _weights_name = "sample_weight"  # what the training weights are, for error messages

    def _get_state(self):
        """The fitted model as (arrays, info) for ``fastwlr._io``: float64 (and label) arrays, and
        JSON values: the parameters, the fitted scalars and the SGD state's scalars."""
        if not hasattr(self, "coef_"):
            raise ValueError(f"this {type(self).__name__} is not fitted: nothing to save")
        info = {
            "params": {k: _jsonable(val) for k, val in self.get_params(deep=False).items()
                       if not (k in _SAVED_IF_SET and _same(val, _SAVED_IF_SET[k]))},
            "fitted": {"n_features_in_": int(self.n_features_in_), "n_iter_": int(self.n_iter_),
                       "converged_": bool(getattr(self, "converged_", False))},
            "sgd_state": None,
        }
        if self.solver == "auto":  # what it chose (any other solver is the one that ran)
            info["fitted"]["solver_"] = getattr(self, "solver_", "sgd")
        columns = getattr(self, "input_columns_", None)
        if columns is not None:  # the table columns a model trained from a file read (the command line)
            info["fitted"]["input_columns"] = {"numeric": list(columns["numeric"]),
                                               "categorical": list(columns["categorical"])}
        arrays = {"coef": np.ascontiguousarray(self.coef_[0], dtype=np.float64),
                  "intercept": np.asarray(self.intercept_, dtype=np.float64).reshape(1)}
        if hasattr(self, "classes_"):  # classifiers only; a WatchTimeRanker is a regressor
            classes = np.asarray(self.classes_)
            if classes.dtype == object:
                classes = classes.astype(str)
            arrays["classes"] = classes
        state = getattr(self, "_sgd_state", None)
        if state is not None:
            info["sgd_state"] = {"optimizer": state.optimizer, "average": bool(state.average),
                                 "mean_weight": float(state.mean_weight)}
            for name in _sgd_array_names(state.optimizer):
                arrays[f"sgd/{name}"] = np.asarray(getattr(state, name), dtype=np.float64)
        return arrays, info

    @classmethod
    def _array_shapes(cls, info):
        return _saved_shapes(info, cls._estimator_type == "classifier")

    @classmethod
    def _from_state(cls, arrays, info):
        """The fitted estimator that ``_get_state`` described (``fastwlr._io`` reads the file).

        Everything is checked here, against what ``fit`` could have produced, so that a damaged or
        hand-edited file fails at load with a ValueError naming the entry, not later (at predict or
        partial_fit) or silently (a complex intercept read as its real part)."""
        params, fitted = info["params"], info["fitted"]
        if not isinstance(params, dict) or not isinstance(fitted, dict):
            raise ValueError("the header's 'params' and 'fitted' entries must be JSON objects")
        try:
            est = cls(**params)
            alpha, l1_ratio, _, _ = est._check_params()
            resolve_n_threads(est.n_threads)
            if est.solver in STREAMING_SOLVERS:
                est._sgd_params(alpha, l1_ratio, 1.0).validate()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the saved parameters are not valid for {cls.__name__} ({exc})") from exc
        d = _saved_count(fitted["n_features_in_"], "fitted.n_features_in_")
        n_iter = _saved_count(fitted["n_iter_"], "fitted.n_iter_")
        columns = _saved_input_columns(fitted.get("input_columns"), d)
        converged = fitted["converged_"]
        if not isinstance(converged, bool):
            raise ValueError(f"fitted.converged_ must be true or false, got {converged!r}")
        coef = arrays["coef"]
        intercept = arrays["intercept"]
        labels = arrays["classes"] if cls._estimator_type == "classifier" else None
        if coef.dtype != np.float64 or coef.shape != (d,) or intercept.dtype != np.float64 or \
                intercept.shape != (1,) or (labels is not None and labels.shape != (2,)):
            raise ValueError(f"inconsistent arrays (coef {coef.dtype} {coef.shape}, intercept {intercept.dtype} "
                             f"{intercept.shape}, classes {getattr(labels, 'shape', None)}) for n_features_in_ = {d}"
                             " (coef and intercept must be float64)")
        if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
            raise ValueError("the saved coefficients are not finite")
        if labels is not None:
            if labels.dtype.kind not in "biufU":
                raise ValueError(f"classes must be numbers or strings, got dtype {labels.dtype}")
            if labels.dtype.kind == "f" and not np.isfinite(labels).all():
                raise ValueError(f"classes must be finite, got {labels.tolist()}")
            if labels[0] == labels[1]:
                raise ValueError(f"classes must be two distinct labels, got {labels.tolist()}")
        est.coef_ = coef.reshape(1, d).copy()
        est.intercept_ = intercept.copy()
        if labels is not None:
            est.classes_ = labels.copy()
        est.n_features_in_ = d
        est.n_iter_ = n_iter
        est.converged_ = converged
        if columns is not None:
            est.input_columns_ = columns
        est._sgd_state = None
        sgd = info.get("sgd_state")
        est.solver_ = _saved_solver(fitted.get("solver_"), est.solver, sgd is not None)
        if sgd is not None:
            est._sgd_state = _saved_sgd_state(est, sgd, arrays, d)
        return est


def _saved_shapes(info, classifier):
    """{array name: shape} of the arrays a saved header implies (``fastwlr._io`` checks that they
    are present, and their declared shapes, before reading them)."""
    fitted = info.get("fitted")
    if not isinstance(fitted, dict):
        raise ValueError("the header's 'fitted' entry must be a JSON object")
    d = _saved_count(fitted.get("n_features_in_"), "fitted.n_features_in_")
    shapes = {"coef": (d,), "intercept": (1,)}
    if classifier:
        shapes["classes"] = (2,)
    sgd = info.get("sgd_state")
    if isinstance(sgd, dict):
        from ._sgd import OPTIMIZERS, SGDState
        optimizer, average = sgd.get("optimizer"), sgd.get("average")
        if isinstance(optimizer, str) and optimizer in OPTIMIZERS and isinstance(average, bool):
            template = SGDState.new(d, optimizer, average)
            shapes.update({f"sgd/{name}": getattr(template, name).shape for name in _sgd_array_names(optimizer)})
        else:  # _from_state names the bad entry; the arrays must not be read meanwhile
            shapes.update({f"sgd/{name}": (-1,) for name in _SGD_ARRAYS})
    return shapes


def _saved_count(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _saved_sgd_state(est, sgd, arrays, d):
    """The saved SGDState, checked: what partial_fit continues from must be what a fit leaves."""
    from ._sgd import OPTIMIZERS, SGDState
    if not isinstance(sgd, dict):
        raise ValueError(f"sgd_state must be a JSON object or null, got {type(sgd).__name__}")
    if est.solver not in STREAMING_SOLVERS:
        raise ValueError(f"an SGD state was saved with solver={est.solver!r}")
    optimizer, average, mean_w = sgd.get("optimizer"), sgd.get("average"), sgd.get("mean_weight")
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise ValueError(f"sgd_state.optimizer must be one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
    if optimizer != est.optimizer and est.optimizer != "auto":
        raise ValueError(f"sgd_state.optimizer {optimizer!r} differs from the parameter optimizer={est.optimizer!r}")
    if not isinstance(average, bool):
        raise ValueError(f"sgd_state.average must be true or false, got {average!r}")
    if isinstance(mean_w, bool) or not isinstance(mean_w, (int, float)) or not (0 < mean_w < math.inf):
        raise ValueError(f"sgd_state.mean_weight must be a finite number > 0, got {mean_w!r}")
    template = SGDState.new(d, optimizer, average)
    state_arrays = {}
    for name in _sgd_array_names(optimizer):
        try:
            a = arrays[f"sgd/{name}"]
        except KeyError as exc:
            raise ValueError(f"incomplete SGD state, missing {exc}") from exc
        expected = getattr(template, name).shape
        if a.dtype != np.float64 or a.shape != expected:
            raise ValueError(f"sgd/{name} must be float64 of shape {expected}, got {a.dtype} {a.shape}")
        _check_saved_state_array(name, a)
        state_arrays[name] = np.ascontiguousarray(a).copy()
    return SGDState(optimizer=optimizer, average=average, mean_weight=float(mean_w), **state_arrays)


def _saved_solver(saved, solver, has_sgd_state):
    """fitted.solver_: the solver that ran; saved only for solver="auto" (otherwise, and in files
    written before "auto" existed, the ``solver`` parameter is the one that ran)."""
    if saved is None and solver != "auto":
        saved = solver
    ran = tuple(x for x in SOLVERS if x != "auto")
    if saved not in ran or (solver != "auto" and saved != solver):
        raise ValueError(f"fitted.solver_ must be the solver that ran ({solver!r}, or what 'auto' chose: "
                         f"one of {ran}), got {saved!r}")
    if has_sgd_state != (saved == "sgd"):
        raise ValueError(f"fitted.solver_ = {saved!r} and an SGD state {'was' if has_sgd_state else 'was not'} "
                         "saved: only an SGD fit has one")
    return saved


def _saved_input_columns(columns, d):
    """fitted.input_columns: absent, or {"numeric": [names], "categorical": [names]} of distinct
    strings, no more numeric columns than features."""
    if columns is None:
        return None
    if not isinstance(columns, dict) or set(columns) != {"numeric", "categorical"}:
        raise ValueError("fitted.input_columns must be an object with the lists 'numeric' and 'categorical'")
    names = [*columns["numeric"], *columns["categorical"]] if all(
        isinstance(columns[k], list) for k in columns) else None
    if names is None or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ValueError("fitted.input_columns must list distinct column names (strings)")
    if len(columns["numeric"]) > d:
        raise ValueError(f"fitted.input_columns names {len(columns['numeric'])} numeric columns for {d} features")
    return columns


def _check_saved_state_array(name, a):
    """Finite, except the squared-gradient accumulators: a fit on huge features can overflow them
    to +inf (the coordinate's AdaGrad/FTRL rate is then 0), and a file must load what fit saved
    (found by the fuzz campaign: such a model saved, then failed to load)."""
    from .backends._contract import S_ACC_B, S_ACC_NORM
    accumulators = {"acc": slice(None), "scalars": [S_ACC_B, S_ACC_NORM]}.get(name)
    if accumulators is None:
        if not np.isfinite(a).all():
            raise ValueError(f"sgd/{name} is not finite")
        if name == "xmax" and (a < 0).any():
            raise ValueError("sgd/xmax: a feature scale is negative")
        return
    acc = a[accumulators]
    if np.isnan(acc).any() or (acc < 0).any():
        raise ValueError(f"sgd/{name}: a squared-gradient accumulator is NaN or negative")
    rest = np.delete(a, np.arange(a.shape[0])[accumulators]) if name == "scalars" else a[:0]
    if not np.isfinite(rest).all():
        raise ValueError(f"sgd/{name} is not finite")


@_io.register
class WatchTimeRanker(WeightedLogisticRegression):
    """The YouTube recipe (Covington et al. 2016): weighted logistic regression whose odds e^z
    estimate the expected watch time.

    ``fit(X, y)``, ``y`` the watch times, labels impressions with y > 0 as clicked and gives them weight
    T (their watch time), the others weight 1 (times ``sample_weight`` if given). At the optimum,
    e^z = E[T | x] / (1 - p(x)) with p the click probability (derived in docs/theory.md): ``predict``
    returns e^z, which equals E[T | x] when clicks are rare; the exact E[T | x] = e^z (1 - p) is returned when a
    click model is available (``click_log_odds=`` or ``click_model=`` in ``predict``, or
    ``fit_click_model=True``).

    Parameters
    ----------
    fit_click_model : bool, default=False
        Also fit an unweighted ``WeightedLogisticRegression`` (same solver and options) on the click
        labels, stored as ``click_model_``; ``predict`` then applies the exact correction.
    negative_sampling_rate : float in (0, 1], default=1.0
        Logs whose unclicked impressions were kept with this probability (every clicked one kept):
        the fit (and the click model's) is corrected to the model of the full logs, so e^z keeps
        meaning E[T | x] / (1 - p). ``negative_sampling_correction`` says how (default "weight":
        unclicked rows count 1 / rate, exact in expectation for any model; see
        ``WeightedLogisticRegression``). ``score`` evaluates the rows it is given as they are.
    **others : as ``WeightedLogisticRegression``.

    Notes
    -----
    scikit-learn: a regressor whose target ``y`` is the watch time. Of scikit-learn's (1.9) 60
    estimator-check runs, 42 pass with ``solver="lbfgs"`` and one is skipped (40 with ``"sgd"``,
    which also fails the two sample-weight equivalence checks, as ``WeightedLogisticRegression``).
    The other 17 (15 checks; ``check_regressors_train`` runs three times) cannot, for three reasons
    (``est._sklearn_expected_failed_checks()`` lists them, for ``check_estimator(est,
    expected_failed_checks=...)``):

    * their targets include negative values, and a watch time must be >= 0: ``check_n_features_in``,
      ``check_n_features_in_after_fitting``, ``check_fit_idempotent``, ``check_fit_check_is_fitted``,
      ``check_regressors_train``, ``check_regressor_data_not_an_array``;
    * their targets are all > 0, so no impression is unclicked and the recipe has no finite optimum
      (``fit`` raises ValueError): ``check_estimators_dtypes``, ``check_fit2d_1feature``,
      ``check_sample_weights_pandas_series``, ``check_sample_weights_not_an_array``,
      ``check_sample_weights_shape``, ``check_sample_weights_not_overwritten``. (The tag
      ``target_tags.positive_only`` is not set: scikit-learn reads it as "strictly positive" and
      would shift the targets of every check above 0.)
    * the ranker keeps ``decision_function`` (the log-odds z = log of ``predict``) and
      ``predict_proba``/``predict_log_proba`` of its weighted model, which scikit-learn expects only
      of classifiers: ``check_regressors_no_decision_function``, ``check_estimator_sparse_array`` and
      ``check_estimator_sparse_matrix`` (sparse input itself is supported).

    The first two groups pass when their targets are shifted to valid watch times (smallest = 0);
    ``tests/test_sklearn_checks.py`` runs them so. ``score`` is the negated log-loss of the recipe,
    not an R^2, hence the tag ``regressor_tags.poor_score``.
    """

    _estimator_type = "regressor"

    def __init__(self, alpha=1e-6, *, l1_ratio=0.0, solver="auto", fit_intercept=True, max_iter="auto",
                 tol="auto", n_iter_no_change=2, weighting="iwa", optimizer="auto", eta0="auto",
                 learning_rate="auto", power_t=0.5, average=True, shuffle=True, warm_start=False, verbose=0,
                 random_state=None,
                 n_threads=None, backend=None, negative_sampling_rate=1.0,
                 negative_sampling_correction="weight", fit_click_model=False):
        super().__init__(alpha, l1_ratio=l1_ratio, solver=solver, fit_intercept=fit_intercept,
                         max_iter=max_iter, tol=tol, n_iter_no_change=n_iter_no_change,
                         weighting=weighting, optimizer=optimizer, eta0=eta0,
                         learning_rate=learning_rate, power_t=power_t, average=average, shuffle=shuffle,
                         warm_start=warm_start, verbose=verbose, random_state=random_state, n_threads=n_threads,
                         backend=backend, negative_sampling_rate=negative_sampling_rate,
                         negative_sampling_correction=negative_sampling_correction)
        self.fit_click_model = fit_click_model

    def __sklearn_tags__(self):
        from sklearn.utils import RegressorTags, Tags, TargetTags
        # Not target_tags.positive_only: scikit-learn reads it as "strictly positive" and its checks
        # then shift every target above 0, which leaves no unclicked impression, and the recipe
        # needs both (see _SKLEARN_XFAIL_RANKER).
        tags = Tags(estimator_type="regressor", target_tags=TargetTags(required=True),
                    regressor_tags=RegressorTags())
        tags.input_tags.sparse = True
        tags.non_deterministic = False
        # score is the negated log-loss of the recipe (<= 0), not an R^2: the checks' "score > 0.5"
        # does not apply
        tags.regressor_tags.poor_score = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"poor_score": True, "_xfail_checks": self._sklearn_expected_failed_checks()}

    def _sklearn_expected_failed_checks(self):
        return {**super()._sklearn_expected_failed_checks(), **_SKLEARN_XFAIL_RANKER}

    def fit(self, X, y=None, sample_weight=None, *, watch_time=None):
        """Fit on impressions and their watch times.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or scipy sparse matrix
        y : array-like of shape (n_samples,)
            The watch times: >= 0, 0 means not clicked (``y`` is scikit-learn's name for the target).
        sample_weight : array-like of shape (n_samples,), optional
            Multiplies the recipe's weights (T for positives, 1 for negatives).
        watch_time : array-like of shape (n_samples,), optional
            The keyword this argument had before it was named ``y``: ``fit(X, watch_time=T)`` still
            works. Passing both is a TypeError.

        Returns
        -------
        self
        """
        watch_time = _watch_time_arg(y, watch_time, "fit")
        features = self._validate_X(X, reset=True)
        y, w = _recipe(watch_time, sample_weight, features.n_rows)
        self._check_both_labels(y)
        self._fit(features, y, w)
        previous = getattr(self, "click_model_", None)
        self.click_model_ = None
        if self.fit_click_model:
            params = {k: val for k, val in self.get_params(deep=False).items() if k != "fit_click_model"}
            if self.warm_start and isinstance(previous, WeightedLogisticRegression):
                click = previous.set_params(**params)  # warm: from the previous click model
            else:
                click = WeightedLogisticRegression(**params)
            if self.verbose:
                print("click model:", flush=True)
            click.classes_ = np.array([0.0, 1.0])
            base_w = v.check_sample_weight(sample_weight, features.n_rows)
            click._fit(features, y, base_w)
            self.click_model_ = click
        return self

    @staticmethod
    def _check_both_labels(y):
        if y.shape[0] and (y.min() == y.max()):
            what = "no impression was clicked" if y.max() == 0 else "every impression was clicked"
            raise ValueError(f"watch_time must contain both zeros and positive values: {what} "
                             "(1 class), so e^z has no finite optimum")

    @_only_for_sgd
    @_serialised
    def partial_fit(self, X, y=None, sample_weight=None, *, watch_time=None):
        """One SGD epoch over this chunk of impressions (see ``WeightedLogisticRegression.partial_fit``);
        ``y`` (or ``watch_time=``) as in ``fit``."""
        watch_time = _watch_time_arg(y, watch_time, "partial_fit")
        first = self._partial_fit_first()
        features = self._validate_X(X, reset=first)
        y, w = _recipe(watch_time, sample_weight, features.n_rows)
        self._partial_fit(features, y, w, first)
        self.click_model_ = None
        return self

    _state_parts = ("click_model",)
    _weights_name = "the weights (watch_time of the clicked rows, times sample_weight)"

    def _get_state(self):
        arrays, info = super()._get_state()
        info["click_model"] = getattr(self, "click_model_", None)
        return arrays, info

    @classmethod
    def _from_state(cls, arrays, info):
        est = super()._from_state(arrays, info)
        est.click_model_ = info.get("click_model")
        return est

    def predict(self, X, click_log_odds=None, click_model=None):
        """Expected watch time.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
        click_log_odds : array-like of shape (n_samples,), optional
            A click model's log-odds z_c; returns the exact E[T | x] = e^z (1 - sigma(z_c)),
            computed as exp(z - softplus(z_c)).
        click_model : fitted estimator with ``decision_function``, optional
            Used to compute ``click_log_odds`` from ``X``. Default: ``click_model_`` if
            ``fit_click_model=True``; otherwise no correction and the result is e^z.

        Returns
        -------
        ndarray of float64, shape (n_samples,)
        """
        if click_log_odds is not None and click_model is not None:
            raise ValueError("pass click_log_odds or click_model, not both")
        if click_log_odds is None:
            click_model = click_model if click_model is not None else getattr(self, "click_model_", None)
            if click_model is None:
                return self._score(X, "odds")
            click_log_odds = click_model.decision_function(X)
        z = self._score(X, "log_odds", dtype=np.float64)
        zc = _as_1d_numeric(click_log_odds, z.shape[0], "click_log_odds")
        from .backends._math import safe_exp
        return safe_exp(z - softplus(zc))

    def score(self, X, y=None, sample_weight=None, *, watch_time=None):
        """Weighted log-loss of the recipe's labels and weights (lower is better), negated so that
        higher is better, as scikit-learn scorers expect; ``y`` (or ``watch_time=``) as in ``fit``."""
        watch_time = _watch_time_arg(y, watch_time, "score")
        self._check_fitted()
        features = self._validate_X(X, reset=False)
        y, w = _recipe(watch_time, sample_weight, features.n_rows)
        loss, _, _ = Kernels(self.backend, self.n_threads).objective_grad(
            features, y, w / max(w.mean(), np.finfo(float).tiny), self.coef_[0], float(self.intercept_[0]), 0.0)
        return -float(loss)


# ---------------------------------------------------------------------- helpers
_SGD_ARRAYS = ("coef", "acc", "zacc", "last", "avg", "scalars")  # the saved SGDState arrays


def _sgd_array_names(optimizer):
    """The SGDState arrays a file holds: xmax only for the optimiser that has one (files of the
    others stay byte for byte what earlier versions wrote and read)."""
    return _SGD_ARRAYS + ("xmax",) if optimizer == "normalized" else _SGD_ARRAYS
# Parameters newer than the files already written, with their defaults: saved only when set
# otherwise. A reader passes every saved parameter to the constructor, so a fastwlr from before
# the parameter reads a model that leaves it at its default (and refuses one that sets it, naming
# the parameter); loading a file without it gives the default.
_SAVED_IF_SET = {"verbose": 0, "shuffle": True}


def _at_default(value, default):
    """Is this parameter value its default (1 for 1.0, np.float64(0.5) for 0.5; not True for 1)?"""
    if isinstance(default, str) or isinstance(value, str):
        return isinstance(value, str) and value == default
    if isinstance(default, bool) or isinstance(value, (bool, np.bool_)):
        return isinstance(value, (bool, np.bool_)) and isinstance(default, bool) and bool(value) == default
    return isinstance(value, numbers.Real) and value == default


def _jsonable(value):
    """A parameter value as JSON can hold it, for ``_get_state``."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.random.Generator):
        return None  # a Generator's state is not a parameter we can write; the seed is gone
    raise TypeError(f"cannot save parameter value {value!r} of type {type(value).__name__}")


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _reject_complex(X):
    dtype = getattr(X, "dtype", None)
    if dtype is None and not hasattr(X, "__array__") and isinstance(X, (list, tuple)):
        dtype = np.asarray(X).dtype
    if dtype is not None and np.dtype(dtype).kind == "c":
        raise ValueError("Complex data not supported")


def _numeric_X(X):
    """Reject complex input; turn object arrays of numbers into float64 (scikit-learn's convention)
    and 1-D input into a clear error."""
    _reject_complex(X)
    if isinstance(X, np.ndarray) and X.dtype == object:
        X = X.astype(np.float64)  # TypeError naming the offending element if it is not a number
    if isinstance(X, (np.ndarray, list, tuple)) and np.ndim(X) == 1:
        raise ValueError("Expected a 2-D array, got a 1-D array. Reshape your data either using "
                         "X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample.")
    return X


def _n_columns(X):
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) == 2:
        return int(shape[1])
    return None


def _as_1d_labels(y, n):
    """Class labels as a 1-D array (numbers or strings); a column vector is flattened."""
    if y is None:
        raise ValueError("this estimator requires y to be passed, but the target y is None")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; pass a 1-D array "
                      "of shape (n_samples,)", _sklearn_flavoured(DataConversionWarning, "DataConversionWarning"),
                      stacklevel=3)
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"y must be 1-D (n_samples,), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"y has {arr.shape[0]} entries, X has {n} rows")
    if arr.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError("y contains NaN or inf")
        if not np.all(arr == np.round(arr)):
            raise ValueError("Unknown label type: continuous y; a classifier needs 2 classes")
    if arr.dtype == object:
        kinds = {type(a) for a in arr}
        if not all(issubclass(k, (str, numbers.Integral, np.bool_)) for k in kinds):
            raise ValueError(f"Unknown label type: y holds {sorted(k.__name__ for k in kinds)}")
        if len(kinds) > 1 and any(issubclass(k, str) for k in kinds):
            raise ValueError("Unknown label type: y mixes strings and numbers")
    return arr


def _as_1d(a):
    """A 1-D array as given, or the column of a column vector; complex input refused."""
    arr = np.asarray(a)
    if arr.dtype.kind == "c":
        raise ValueError("Complex data not supported")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr


def _as_1d_numeric(a, n, name):
    return v.check_vector(_as_1d(a), n, name)


def _watch_time_arg(y, watch_time, method):
    """The watch times of ``WatchTimeRanker.<method>``: passed as ``y`` (scikit-learn's name) or by
    the keyword they had before, ``watch_time``; not both, and not neither."""
    if watch_time is not None:
        if y is not None:
            raise TypeError(f"WatchTimeRanker.{method}() got the watch times twice, as y and as watch_time; "
                            "pass one of them (y is the scikit-learn name)")
        return watch_time
    if y is None:
        raise ValueError("WatchTimeRanker requires y to be passed, but the target y is None "
                         "(y: the watch times, 0 = not clicked)")
    return y


def _recipe(watch_time, sample_weight, n):
    """The recipe's (y, w) for the n rows of X (``fastwlr._weights``). As scikit-learn treats a
    regressor's y: a column vector is flattened with a DataConversionWarning, and an object array
    of numbers becomes float64 (anything else in it is a ValueError naming the value)."""
    T = np.asarray(watch_time)
    if T.ndim == 2 and T.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; pass a 1-D array "
                      "of shape (n_samples,)", _sklearn_flavoured(DataConversionWarning, "DataConversionWarning"),
                      stacklevel=3)
    if T.dtype == object:
        try:
            T = T.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"watch_time (y) must hold numbers, got an object array ({exc})") from None
    return _weights.watch_time_targets(_as_1d(T), sample_weight, n)
