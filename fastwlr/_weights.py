"""Sample weights in one place: the watch-time recipe and the weight normalisation of the solvers.

The recipe (Covington et al. 2016, YouTube): an impression with watch time T > 0 is a clicked
positive of weight T, one with T == 0 an unclicked negative of weight 1; a ``sample_weight``
multiplies both. Weighted logistic regression on these targets has odds e^z = E[T | x] / (1 - p(x))
at its optimum (derived in docs/theory.md). ``WatchTimeRanker``, the watch-time metrics and the
data sets' ``y`` / ``sample_weight`` all take their targets from ``watch_time_targets`` or
``recipe``.

The estimators' objective averages the loss over the weights, sum_i w_i l_i / sum_i w_i; the
kernels compute (1/n) sum_i w_i l_i, so the solvers hand them weights of mean 1. That needs a
positive total weight (``total_weight``, ``mean_weight``). L-BFGS scales the weights by
n / sum(w) (``normalised_weights``); SGD divides them by ``mean_weight``, which it keeps in its
state so that ``partial_fit`` goes on with the first chunk's normalisation. The two are the same
in exact arithmetic but not bit for bit, and each solver's results depend on its own, so both
stay.
"""
import math

import numpy as np

from . import _validation as v

__all__ = ["check_watch_time", "recipe", "watch_time_targets", "total_weight", "mean_weight",
           "normalised_weights", "sum_safe", "check_sgd_weight_scale"]

NOTHING_TO_FIT = "every sample_weight is zero (they sum to 0): there is nothing to fit"


def check_watch_time(watch_time, n=None, name="watch_time"):
    """Watch times as a finite, non-negative, 1-D float64 array (0 = not clicked).

    Parameters
    ----------
    watch_time : array-like of shape (n,)
    n : int, optional
        The required length (e.g. the rows of X); None: any length, but the input must be 1-D.
    name : str
        The argument's name in error messages.

    Raises
    ------
    ValueError
        Naming ``name``: not 1-D or not of length n, NaN or inf, or a negative value.
    """
    if n is None:
        arr = np.asarray(watch_time)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        n = arr.shape[0]
    T = v.check_vector(watch_time, n, name)
    if (T < 0).any():
        raise ValueError(f"{name} must be >= 0 (0 = not clicked); first negative at index "
                         f"{int(np.argmax(T < 0))}")
    return T


def recipe(watch_time, sample_weight=None):
    """The recipe on validated arrays: labels y = [T > 0] and weights w = (T if T > 0 else 1),
    times ``sample_weight`` if given.

    Parameters
    ----------
    watch_time : ndarray of float64, shape (n,)
        As returned by ``check_watch_time``.
    sample_weight : ndarray of float64, shape (n,), or None
        As returned by ``fastwlr._validation.check_sample_weight``.

    Returns
    -------
    y, w : ndarray of float64, shape (n,)
    """
    clicked = watch_time > 0
    w = np.where(clicked, watch_time, 1.0)
    if sample_weight is not None:
        w = w * sample_weight
    return clicked.astype(np.float64), w


def watch_time_targets(watch_time, sample_weight=None, n=None):
    """``recipe`` after validating its inputs: (y, w) of the impressions with these watch times.

    Parameters
    ----------
    watch_time : array-like of shape (n,)
        >= 0 and finite; 0 means not clicked.
    sample_weight : array-like of shape (n,), optional
        >= 0 and finite; multiplies the recipe's weights.
    n : int, optional
        The required length; None: the length of ``watch_time``.

    Returns
    -------
    y, w : ndarray of float64, shape (n,)
    """
    T = check_watch_time(watch_time, n)
    sw = None if sample_weight is None else v.check_sample_weight(sample_weight, T.shape[0])
    return recipe(T, sw)


# Weights whose largest value lies in this range are used as given: their sums (and the pair
# products of the AUCs, and n / sum(w)) stay inside the normal float64 range for any n below 2**60.
_SAFE_LOW, _SAFE_HIGH = 2.0 ** -100, 2.0 ** 100


def _safe_exponent(w):
    """0 when max(w) is in [_SAFE_LOW, _SAFE_HIGH] (or w is empty or all 0); otherwise the
    exponent e with max(w) * 2**-e in [0.5, 1)."""
    if w.shape[0] == 0:
        return 0
    top = float(np.max(w))
    if top == 0.0 or _SAFE_LOW <= top <= _SAFE_HIGH:
        return 0
    return int(np.frexp(top)[1])


def sum_safe(w):
    """Weights for ratios of weighted sums (means, losses, AUCs): ``w`` itself, or ``w`` times a
    power of two when max(w) is so large that sum(w) overflows (1e308 each) or so small that it
    leaves the normal range (subnormal weights, or pair products of 1e-200 weights underflowing).

    Scaling by a power of two is exact, so a ratio computed from the result is the ratio of the
    given weights, bit for bit whenever the unscaled computation had not overflowed."""
    e = _safe_exponent(w)
    return w if e == 0 else np.ldexp(w, -e)


def total_weight(w, message=NOTHING_TO_FIT):
    """sum(w) as a float (inf if it overflows float64); ValueError(``message``) unless it is > 0
    (no rows, or every weight 0)."""
    e = _safe_exponent(w)
    total = float(np.sum(sum_safe(w)))
    if not total > 0.0:
        raise ValueError(message)
    if e == 0:
        return total
    try:
        return math.ldexp(total, e)
    except OverflowError:
        return math.inf


def mean_weight(w):
    """mean(w) as a float, the SGD normalisation (1.0 for no rows); ValueError unless it is > 0.
    Computed without overflow: the mean of weights of 1e308 is 1e308, not inf."""
    e = _safe_exponent(w)
    mean = float(sum_safe(w).mean()) if w.shape[0] else 1.0
    if not mean > 0.0:
        raise ValueError(NOTHING_TO_FIT)
    return mean if e == 0 else math.ldexp(mean, e)  # a mean never exceeds max(w): no overflow


def normalised_weights(w):
    """w * (n / sum(w)): mean 1, so the kernels' (1/n) sum w_i l_i is the weighted mean loss
    (the L-BFGS objective). ValueError if every weight is zero. Weights whose sum would overflow
    (or be subnormal) are first scaled by a power of two: the result is the same, not all zeros
    (1e308 each) or inf (subnormal weights)."""
    w = sum_safe(w)
    return w * (w.shape[0] / total_weight(w))


# SGD's objective (its stopping signal) and penalties are in the units of the raw weights:
# (1/n) sum_i w_i l_i and alpha * mean(w). Weights whose sum leaves this much headroom below the
# float64 maximum keep both finite for mean losses up to 1e6 (beyond that SGD has diverged anyway).
_SGD_MAX_TOTAL = np.finfo(np.float64).max / 1e6


def check_sgd_weight_scale(w, alpha, name="sample_weight"):
    """ValueError naming the weights when SGD's raw-weight objective or its penalty alpha * mean(w)
    would overflow float64 (weights of 1e308; watch times of 1e300 with a large alpha), or when they
    are so small that the mean weight or the penalty is subnormal (weights of 1e-320: the
    normalisation w / mean(w) and alpha * mean / mean lose their precision)."""
    tiny = float(np.finfo(np.float64).tiny)
    mean = mean_weight(w)
    if mean < tiny * 2.0 ** 53 or (alpha > 0 and alpha * mean < tiny):
        raise ValueError(f"{name} is too small for solver='sgd': the mean weight is {mean:.3g}, so the weight "
                         f"normalisation or the penalty alpha * mean weight is subnormal and loses its precision. "
                         f"The fit does not depend on the weights' scale: multiply them by a constant, or use "
                         f"solver='lbfgs'")
    total = total_weight(w)
    if total > _SGD_MAX_TOTAL or not math.isfinite(alpha * mean):
        raise ValueError(f"{name} is too large for solver='sgd': the weights sum to {total:.3g} (largest "
                         f"{float(np.max(w)):.3g}), so the objective or the penalty alpha * mean weight "
                         f"overflows float64. The fit does not depend on the weights' scale: divide them by a "
                         f"constant, or use solver='lbfgs'")
