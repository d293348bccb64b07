"""Metrics for a watch-time ranker: how well it orders, and how well e^z matches watch time.

All ranking metrics are sort-based (one global ``lexsort`` by request and score, O(n log n)),
never a loop over pairs. Requests are given by ``offsets`` as everywhere in fastwlr: request g
owns rows ``offsets[g]:offsets[g + 1]``; ``offsets=None`` is one request holding every row.

Ties (two rows of a request with equal scores) are handled the same way everywhere:

* AUC: a tied positive/negative pair counts 1/2 (as scikit-learn's ``roc_auc_score``).
* Weighted per-user loss: a tied pair counts as half mispredicted, so that
  ``weighted_per_user_loss == 1 - weighted_auc(..., offsets=offsets)`` exactly.
* NDCG: tied rows share the average of the discounts of the positions they span (the
  tie-averaged DCG of McSherry & Najork 2008, as scikit-learn's ``ndcg_score`` with
  ``ignore_ties=False``), so the result does not depend on the input order.

A request with no positives or no negatives has no pairs and contributes nothing to AUC or the
per-user loss; a request with no watch time contributes nothing to NDCG (it is left out of the
mean). When nothing at all is left, a ``ValueError`` says so.
"""
from dataclasses import dataclass

import numpy as np

from . import _validation as v
from ._math import softplus

__all__ = ["log_loss", "weighted_log_loss", "auc", "weighted_auc", "weighted_per_user_loss", "ndcg",
           "CalibrationTable", "calibration_table", "plot_calibration"]


# ---------------------------------------------------------------------------------------------
# helpers

def _recipe_weights(watch_time, sample_weight):
    """YouTube's weights: T for a clicked (T > 0) impression, 1 otherwise, times sample_weight."""
    w = np.where(watch_time > 0, watch_time, 1.0)
    if sample_weight is not None:
        w = w * sample_weight
    return w


def _sort_blocks(scores, offsets, descending=False):
    """Order rows by (request, score) and find the tie blocks.

    Returns ``order`` (row indices), ``group`` (request of each sorted row) and ``block_start``
    (bool, True where a new (request, score) block begins in sorted order).
    """
    n = scores.shape[0]
    sizes = np.diff(offsets)
    group = np.repeat(np.arange(sizes.shape[0], dtype=np.int64), sizes)
    key = -scores if descending else scores
    order = np.lexsort((key, group))   # last key is primary: request, then score
    s = key[order]
    g = group[order]
    block_start = np.ones(n, dtype=bool)
    if n > 1:
        # -0.0 == 0.0 and inf == inf, as the comparisons of the definition
        block_start[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    return order, g, block_start


def _pair_sums(y, scores, w, offsets):
    """Sums over (positive i, negative j) pairs of the same request of w_i w_j times
    [s_i > s_j] (``correct``), [s_i == s_j] (``tied``) and 1 (``total``)."""
    n = y.shape[0]
    if n == 0:
        return 0.0, 0.0, 0.0
    order, g, block_start = _sort_blocks(scores, offsets)
    ys, ws = y[order], w[order]
    wneg = np.where(ys == 0, ws, 0.0)
    wpos = np.where(ys == 1, ws, 0.0)
    starts = np.flatnonzero(block_start)
    neg_block = np.add.reduceat(wneg, starts)        # negative weight of each tie block
    pos_block = np.add.reduceat(wpos, starts)
    g_block = g[starts]
    # negative weight strictly below each block, within its request: an exclusive cumulative sum
    # over blocks, restarted at each request (subtract the value at the request's first block)
    cum = np.concatenate(([0.0], np.cumsum(neg_block)))
    first_block_of_group = np.ones(starts.shape[0], dtype=bool)
    first_block_of_group[1:] = g_block[1:] != g_block[:-1]
    group_first = np.maximum.accumulate(np.where(first_block_of_group, np.arange(starts.shape[0]), 0))
    below = cum[:-1] - cum[group_first]
    # total negative weight of each block's request
    n_groups = offsets.shape[0] - 1
    neg_group = np.bincount(g_block, weights=neg_block, minlength=n_groups)
    total_neg = neg_group[g_block]
    above = np.maximum(total_neg - below - neg_block, 0.0)  # clip round-off of float weights
    correct = float(np.dot(pos_block, below))
    tied = float(np.dot(pos_block, neg_block))
    wrong = float(np.dot(pos_block, above))
    return correct, tied, wrong


def _n(a, name):
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr.shape[0]


def _watch_time(watch_time):
    n = _n(watch_time, "watch_time")
    return v.check_vector(watch_time, n, "watch_time", nonnegative=True)


def _weights(sample_weight, n):
    return None if sample_weight is None else v.check_sample_weight(sample_weight, n)


# ---------------------------------------------------------------------------------------------
# log-loss

def log_loss(y_true, log_odds, *, sample_weight=None):
    """Weighted binary log-loss of log-odds predictions.

    ``sum_i w_i [softplus(z_i) - y_i z_i] / sum_i w_i``: the mean negative log-likelihood, computed
    from the log-odds z without overflow or clipping (so it stays finite and exact for any finite z).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels.
    log_odds : array-like of shape (n,)
        Predicted log-odds z (``decision_function``), finite.
    sample_weight : array-like of shape (n,), optional
        Non-negative weights, not all zero.

    Returns
    -------
    float
    """
    n = _n(y_true, "y_true")
    y = v.check_binary_y(y_true, n)
    z = v.check_vector(log_odds, n, "log_odds")
    w = v.check_sample_weight(sample_weight, n)
    total = float(w.sum())
    if not total > 0:
        raise ValueError("sample_weight sums to 0 (or there are no samples): the loss is undefined")
    return float(np.dot(w, softplus(z) - y * z) / total)


def weighted_log_loss(watch_time, log_odds, *, sample_weight=None):
    """The training objective of the watch-time recipe, evaluated on (held-out) impressions.

    ``log_loss`` with labels ``watch_time > 0`` and weights ``watch_time`` for clicked impressions,
    1 for the others (times ``sample_weight``): the unregularised objective
    ``WatchTimeRanker`` minimises, normalised by the total weight.

    Parameters
    ----------
    watch_time : array-like of shape (n,)
        >= 0; 0 means not clicked.
    log_odds : array-like of shape (n,)
        The model's log-odds z (``decision_function``; log of the served e^z).
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    float
    """
    t = _watch_time(watch_time)
    sw = _weights(sample_weight, t.shape[0])
    return log_loss((t > 0).astype(np.float64), log_odds, sample_weight=_recipe_weights(t, sw))


# ---------------------------------------------------------------------------------------------
# AUC and the weighted per-user loss

def auc(y_true, y_score, *, sample_weight=None, offsets=None):
    """Area under the ROC curve: the weighted share of (positive, negative) pairs ordered right.

    ``sum_{i pos, j neg} w_i w_j ([s_i > s_j] + [s_i == s_j] / 2) / sum_{i pos, j neg} w_i w_j``;
    with ``offsets=None`` over all pairs (equal to scikit-learn's ``roc_auc_score(y_true, y_score,
    sample_weight=...)``), with ``offsets`` only over pairs within the same request (pooled over
    requests: every pair counts the same, whichever request it is in).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels.
    y_score : array-like of shape (n,)
        Any score that orders (log-odds, odds, probability: the result is the same). No NaN.
    sample_weight : array-like of shape (n,), optional
    offsets : array-like of int, shape (n_requests + 1,), optional

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If there is no (positive, negative) pair with non-zero weight (within a request).
    """
    n = _n(y_true, "y_true")
    y = v.check_binary_y(y_true, n)
    s = v.check_ranking_scores(y_score, n)
    w = v.check_sample_weight(sample_weight, n)
    off = v.check_offsets(offsets, n)
    correct, tied, wrong = _pair_sums(y, s, w, off)
    total = correct + tied + wrong
    if not total > 0:
        where = " within any request" if offsets is not None else " (only one class present)"
        raise ValueError(f"AUC is undefined: no (positive, negative) pair with non-zero weight{where}")
    return (correct + 0.5 * tied) / total


def weighted_auc(watch_time, y_score, *, sample_weight=None, offsets=None):
    """AUC with each clicked impression weighted by its watch time (negatives by 1).

    The probability that a randomly drawn second of watch time came from an impression scored
    above a randomly drawn unclicked impression (ties 1/2): ``auc(watch_time > 0, y_score,
    sample_weight=recipe weights)``. With ``offsets``, pairs are taken within requests, and
    ``1 - weighted_auc`` is ``weighted_per_user_loss``.

    Parameters
    ----------
    watch_time : array-like of shape (n,)
        >= 0; 0 means not clicked.
    y_score : array-like of shape (n,)
    sample_weight : array-like of shape (n,), optional
        Multiplies the recipe's weights.
    offsets : array-like of int, shape (n_requests + 1,), optional

    Returns
    -------
    float
    """
    t = _watch_time(watch_time)
    sw = _weights(sample_weight, t.shape[0])
    return auc((t > 0).astype(np.float64), y_score, sample_weight=_recipe_weights(t, sw), offsets=offsets)


def weighted_per_user_loss(watch_time, y_score, offsets, *, sample_weight=None):
    """YouTube's weighted, per-user loss (Covington et al. 2016, section 4).

    For every pair of a clicked impression i (watch time T_i > 0) and an unclicked impression j
    of the same request where j is scored higher, T_i counts as mispredicted watch time; the loss
    is the mispredicted watch time over the total watch time of all such (positive, negative)
    pairs::

        sum_{pairs} T_i ([s_j > s_i] + [s_j == s_i] / 2) / sum_{pairs} T_i

    A tie counts as half mispredicted (so the loss is exactly ``1 - weighted_auc(...,
    offsets=offsets)``; an untrained constant scorer gets 0.5). A request with no clicked or no
    unclicked impression has no pairs and contributes nothing. Computed with one sort,
    O(n log n), never over the pairs themselves. Lower is better; 0 = every watched impression
    above every unwatched one of its request.

    Parameters
    ----------
    watch_time : array-like of shape (n,)
        >= 0; 0 means not clicked.
    y_score : array-like of shape (n,)
        The ranker's scores (e^z or z: any increasing transform gives the same loss). No NaN.
    offsets : array-like of int, shape (n_requests + 1,) or None
        Request boundaries; None treats all rows as one request.
    sample_weight : array-like of shape (n,), optional
        Multiplies each pair's weight (w_i T_i w_j).

    Returns
    -------
    float in [0, 1]

    Raises
    ------
    ValueError
        If no request has both a clicked and an unclicked impression.

    Examples
    --------
    >>> import numpy as np
    >>> from fastwlr.metrics import weighted_per_user_loss
    >>> T = np.array([0, 30.0, 0, 10.0, 0])        # request 0: rows 0-2, request 1: rows 3-4
    >>> s = np.array([0.9, 0.5, 0.1, 0.2, 0.7])
    >>> weighted_per_user_loss(T, s, offsets=[0, 3, 5])  # (30 * 1 + 10 * 1) / (30 * 2 + 10 * 1)
    0.5714285714285714
    """
    t = _watch_time(watch_time)
    n = t.shape[0]
    s = v.check_ranking_scores(y_score, n)
    sw = _weights(sample_weight, n)
    off = v.check_offsets(offsets, n)
    correct, tied, wrong = _pair_sums((t > 0).astype(np.float64), s, _recipe_weights(t, sw), off)
    total = correct + tied + wrong
    if not total > 0:
        raise ValueError("weighted per-user loss is undefined: no request has both a clicked "
                         "(watch_time > 0) and an unclicked impression with non-zero weight")
    return (wrong + 0.5 * tied) / total


# ---------------------------------------------------------------------------------------------
# NDCG

def ndcg(watch_time, y_score, k=None, *, offsets=None, average=True):
    """Normalised discounted cumulative gain at k, with watch time as the gain.

    Per request: ``DCG@k = sum_r T_(r) / log2(r + 1)`` over the first k positions r = 1..k in
    descending score order, divided by the DCG@k of the best order (by watch time). Tied scores
    share the mean discount of the positions they span (as scikit-learn's ``ndcg_score`` with
    ``ignore_ties=False``; a tie straddling position k shares the discounts inside the top k).

    Parameters
    ----------
    watch_time : array-like of shape (n,)
        Gains, >= 0.
    y_score : array-like of shape (n,)
        No NaN.
    k : int, optional
        Positions counted; None = all.
    offsets : array-like of int, shape (n_requests + 1,), optional
    average : bool, default=True
        True: the mean over the requests with some watch time (the others contribute nothing).
        False: one value per request, NaN where the request has no watch time.

    Returns
    -------
    float, or ndarray of shape (n_requests,)
    """
    t = _watch_time(watch_time)
    n = t.shape[0]
    s = v.check_ranking_scores(y_score, n)
    off = v.check_offsets(offsets, n)
    n_groups = off.shape[0] - 1
    k = None if k is None else v.check_k(k)
    sizes = np.diff(off)
    max_size = int(sizes.max()) if n_groups else 0
    kk = max_size if k is None else min(k, max_size)
    disc = np.zeros(max_size + 1)
    disc[:kk] = 1.0 / np.log2(np.arange(kk) + 2.0)
    cum = np.concatenate(([0.0], np.cumsum(disc)))     # cum[r] = discount of positions < r
    dcg = np.zeros(n_groups)
    idcg = np.zeros(n_groups)
    if n:
        order, g, block_start = _sort_blocks(s, off, descending=True)
        pos = np.arange(n) - off[g]                       # 0-based rank within the request
        starts = np.flatnonzero(block_start)
        ends = np.append(starts[1:], n)
        a, b = pos[starts], pos[starts] + (ends - starts)
        mean_disc = (cum[b] - cum[a]) / (b - a)
        gain_block = np.add.reduceat(t[order], starts)
        dcg = np.bincount(g[starts], weights=gain_block * mean_disc, minlength=n_groups)
        group = np.repeat(np.arange(n_groups, dtype=np.int64), sizes)
        best = np.lexsort((-t, group))
        idcg = np.bincount(group, weights=t[best] * disc[np.arange(n) - off[group]], minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)
    if not average:
        return per
    ok = idcg > 0
    if not ok.any():
        raise ValueError("NDCG is undefined: no request has any watch time (every ideal DCG is 0)")
    return float(per[ok].mean())


# ---------------------------------------------------------------------------------------------
# Calibration

@dataclass(frozen=True)
class CalibrationTable:
    """Predicted vs observed expected watch time by quantile bins of the prediction.

    Attributes
    ----------
    bin_edges : ndarray of shape (n_bins + 1,)
        Bin b holds predictions in ``[bin_edges[b], bin_edges[b + 1])``, the last bin is closed
        (its two edges are equal when it holds only the largest prediction).
    mean_predicted, mean_observed : ndarray of shape (n_bins,)
        Weighted means of the prediction and of the observed watch time (0 for unclicked rows)
        in each bin. A calibrated model has them equal.
    count : ndarray of int64, shape (n_bins,)
        Rows per bin.
    weight : ndarray of shape (n_bins,)
        Sum of ``sample_weight`` per bin (= count without weights).
    """
    bin_edges: np.ndarray
    mean_predicted: np.ndarray
    mean_observed: np.ndarray
    count: np.ndarray
    weight: np.ndarray

    @property
    def ratio(self):
        """mean_observed / mean_predicted per bin (1 = calibrated)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.mean_observed / self.mean_predicted

    def as_dict(self):
        return {k: getattr(self, k) for k in ("bin_edges", "mean_predicted", "mean_observed", "count", "weight")}

    def to_markdown(self, fmt="{:.4g}"):
        """The table as GitHub markdown (one row per bin)."""
        lines = ["| bin | predicted range | rows | mean predicted | mean observed | observed / predicted |",
                 "|---:|---|---:|---:|---:|---:|"]
        for b in range(self.count.shape[0]):
            lo, hi = self.bin_edges[b], self.bin_edges[b + 1]
            close = "]" if b == self.count.shape[0] - 1 else ")"
            lines.append(f"| {b + 1} | [{fmt.format(lo)}, {fmt.format(hi)}{close}"
                         f" | {self.count[b]} | {fmt.format(self.mean_predicted[b])} | "
                         f"{fmt.format(self.mean_observed[b])} | {self.ratio[b]:.3f} |")
        return "\n".join(lines)


def calibration_table(watch_time, predicted, *, n_bins=10, sample_weight=None):
    """Calibration of predicted expected watch time against observed watch time.

    Rows are put in ``n_bins`` bins of (about) equal row counts by quantiles of ``predicted``; in
    each bin the mean prediction is compared with the mean observed watch time (0 for unclicked
    impressions). Rows with equal predictions always share a bin, so with many ties there are
    fewer bins (never an empty one).

    Parameters
    ----------
    watch_time : array-like of shape (n,)
        Observed watch time, >= 0 (or, on generated data, the true E[T | x] per row).
    predicted : array-like of shape (n,)
        Predicted expected watch time, e.g. ``WatchTimeRanker.predict`` (e^z, or e^z (1 - p)).
        Finite.
    n_bins : int, default=10
    sample_weight : array-like of shape (n,), optional
        Weights of the per-bin means.

    Returns
    -------
    CalibrationTable
    """
    t = _watch_time(watch_time)
    n = t.shape[0]
    if n == 0:
        raise ValueError("calibration_table needs at least one row")
    p = v.check_vector(predicted, n, "predicted")
    n_bins = v.check_scalar(n_bins, "n_bins", low=1, integer=True)
    w = v.check_sample_weight(sample_weight, n)
    # cut points are data values ("inverted_cdf" quantiles), unique and above the minimum: bin b
    # is [cut_b, cut_b+1) and holds cut_b itself, so no bin is ever empty
    q = np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)[1:-1], method="inverted_cdf")
    lo, hi = float(p.min()), float(p.max())
    cuts = np.unique(q[q > lo])
    edges = np.concatenate(([lo], cuts, [hi]))
    n_b = cuts.shape[0] + 1
    idx = np.searchsorted(cuts, p, side="right")
    count = np.bincount(idx, minlength=n_b).astype(np.int64)
    weight = np.bincount(idx, weights=w, minlength=n_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_pred = np.bincount(idx, weights=w * p, minlength=n_b) / weight
        mean_obs = np.bincount(idx, weights=w * t, minlength=n_b) / weight
    return CalibrationTable(edges, mean_pred, mean_obs, count, weight)


def plot_calibration(table, *, ax=None, label=None, log=True):
    """Plot a ``CalibrationTable``: mean observed vs mean predicted per bin, with the diagonal.

    Needs matplotlib (imported here, not by ``fastwlr``).

    Parameters
    ----------
    table : CalibrationTable
    ax : matplotlib Axes, optional
        Default: a new figure's axes.
    label : str, optional
        Legend label of this curve.
    log : bool, default=True
        Log-log axes (watch times span orders of magnitude).

    Returns
    -------
    matplotlib Axes
    """
    if not isinstance(table, CalibrationTable):
        raise TypeError(f"table must be a CalibrationTable (from calibration_table), got {type(table).__name__}")
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plot_calibration needs matplotlib: pip install matplotlib") from exc
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    ok = table.count > 0
    x, y = table.mean_predicted[ok], table.mean_observed[ok]
    ax.plot(x, y, "o-", label=label)
    both = np.concatenate((x, y))
    both = both[both > 0] if log else both
    if both.size:
        lo, hi = both.min(), both.max()
        # one "calibrated" diagonal per axes, however many curves are drawn on it
        first = "calibrated" not in ax.get_legend_handles_labels()[1]
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="calibrated" if first else None)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("mean predicted watch time")
    ax.set_ylabel("mean observed watch time")
    ax.legend()
    return ax
