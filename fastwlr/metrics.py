"""Metrics for a watch-time ranker: how well it orders, and how well e^z matches watch time.

All ranking metrics are sort-based (sorting rows by request and score, O(n log n)), never a loop
over pairs or a sample of them. Requests are given by ``offsets`` as everywhere in fastwlr:
request g owns rows ``offsets[g]:offsets[g + 1]``; ``offsets=None`` is one request holding every
row.

Ties (two rows of a request with equal scores) are handled the same way everywhere:

* AUC, grouped AUC, XAUC: a tied pair counts 1/2 (as scikit-learn's ``roc_auc_score``).
* Weighted per-user loss: a tied pair counts as half mispredicted, so that
  ``weighted_per_user_loss == 1 - weighted_auc(..., offsets=offsets)`` exactly.
* NDCG: tied rows share the average of the discounts of the positions they span (the
  tie-averaged DCG of McSherry & Najork 2008, as scikit-learn's ``ndcg_score`` with
  ``ignore_ties=False``), so the result does not depend on the input order.

XAUC compares pairs of impressions by watch time: a pair with equal watch times (two unclicked
impressions, say) is not comparable and is left out.

A request with no pair to compare (no positives or no negatives for AUC and the per-user loss; no
two different watch times for XAUC) contributes nothing; a request with no watch time contributes
nothing to NDCG (it is left out of the mean). The per-request averages (``grouped_auc``,
``xauc(average="requests")``) skip such requests and report how many with
``return_skipped=True``. When nothing at all is left, a ``ValueError`` says so. With
``sample_weight`` a pair weighs w_i w_j; unweighted pair counts are exact (integers below 2**53),
weighted sums exact up to floating-point round-off.
"""
from dataclasses import dataclass, fields

import math

import numpy as np

from . import _validation as v
from .backends._math import softplus
from ._weights import check_watch_time, recipe, sum_safe, watch_time_targets

__all__ = ["log_loss", "weighted_log_loss", "auc", "weighted_auc", "weighted_per_user_loss", "grouped_auc",
           "xauc", "ndcg", "mae", "rmse", "CalibrationTable", "calibration_table", "GroupCalibrationTable",
           "calibration_by_group", "plot_calibration"]


# ---------------------------------------------------------------------------------------------
# helpers

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


def _earlier_in_request(block_w, g_block):
    """For blocks sorted by request: the total of ``block_w`` over the earlier blocks of the same
    request (an exclusive cumulative sum restarted at each request; exactly 0 for its first block,
    and unchanged across zero-weight blocks)."""
    cum = np.concatenate(([0.0], np.cumsum(block_w)))
    first = np.ones(block_w.shape[0], dtype=bool)
    first[1:] = g_block[1:] != g_block[:-1]
    group_first = np.maximum.accumulate(np.where(first, np.arange(block_w.shape[0]), 0))
    return cum[:-1] - cum[group_first]


def _pair_sums(y, scores, w, offsets):
    """Sums over (positive i, negative j) pairs of the same request of w_i w_j times
    [s_i > s_j] (``correct``), [s_i == s_j] (``tied``) and [s_i < s_j] (``wrong``), pooled."""
    return tuple(float(a.sum()) for a in _pair_sums_per_request(y, scores, w, offsets))


def _pair_sums_per_request(y, scores, w, offsets):
    """``_pair_sums`` for each request: three float64 arrays of shape (n_requests,)."""
    n = y.shape[0]
    n_groups = offsets.shape[0] - 1
    if n == 0:
        return tuple(np.zeros(n_groups) for _ in range(3))
    order, g, block_start = _sort_blocks(scores, offsets)
    ys, ws = y[order], w[order]
    wneg = np.where(ys == 0, ws, 0.0)
    wpos = np.where(ys == 1, ws, 0.0)
    starts = np.flatnonzero(block_start)
    neg_block = np.add.reduceat(wneg, starts)        # negative weight of each tie block
    pos_block = np.add.reduceat(wpos, starts)
    g_block = g[starts]
    below = _earlier_in_request(neg_block, g_block)   # negative weight strictly below each block
    # total negative weight of each block's request
    neg_group = np.bincount(g_block, weights=neg_block, minlength=n_groups)
    total_neg = neg_group[g_block]
    above = np.maximum(total_neg - below - neg_block, 0.0)  # clip round-off of float weights
    return tuple(np.bincount(g_block, weights=pos_block * x, minlength=n_groups)
                 for x in (below, neg_block, above))


def _n(a, name):
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr.shape[0]


def _optional_weights(sample_weight, n):
    return None if sample_weight is None else sum_safe(v.check_sample_weight(sample_weight, n))


def _ranking_inputs(watch_time, y_score, sample_weight, offsets):
    """Validated (watch_time, scores, sample_weight or None, offsets) of a watch-time ranking metric."""
    t = check_watch_time(watch_time)
    n = t.shape[0]
    return t, v.check_ranking_scores(y_score, n), _optional_weights(sample_weight, n), v.check_offsets(offsets, n)


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
    w = sum_safe(v.check_sample_weight(sample_weight, n))  # a ratio: scale-free, so never overflowing
    total = float(w.sum())
    if not total > 0:
        raise ValueError("sample_weight sums to 0 (or there are no samples): the loss is undefined")
    # softplus(-z) for a positive, not softplus(z) - z: that difference cancels to 0 for large z
    # (the loss e^-z of a confident right answer), which made the mean up to 8x too small
    return float(np.dot(w, np.where(y == 1.0, softplus(-z), softplus(z))) / total)


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
    y, w = watch_time_targets(watch_time, sample_weight)
    return log_loss(y, log_odds, sample_weight=w)


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
    w = sum_safe(v.check_sample_weight(sample_weight, n))  # pair products of 1e200 weights overflow
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
    y, w = watch_time_targets(watch_time, sample_weight)
    return auc(y, y_score, sample_weight=w, offsets=offsets)


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
    t, s, sw, off = _ranking_inputs(watch_time, y_score, sample_weight, offsets)
    y, w = recipe(t, sw)
    correct, tied, wrong = _pair_sums(y, s, w, off)
    total = correct + tied + wrong
    if not total > 0:
        raise ValueError("weighted per-user loss is undefined: no request has both a clicked "
                         "(watch_time > 0) and an unclicked impression with non-zero weight")
    return (wrong + 0.5 * tied) / total


def _check_choice(value, name, choices):
    if not any(value is c or (isinstance(value, str) and value == c) for c in choices):
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _average_requests(num, den, request_weight, average, what, return_skipped):
    """Per-request ratios num/den (defined where den > 0), averaged as asked.

    ``average=None``: the per-request array, NaN where undefined; "pairs": pooled sum(num) /
    sum(den); otherwise the mean of the defined ratios weighted by ``request_weight`` (requests
    whose weight is 0 drop out like undefined ones). Returns the value, or (value, n_skipped)."""
    ok = den > 0
    n_skipped = int(ok.shape[0] - np.count_nonzero(ok))
    with np.errstate(invalid="ignore", divide="ignore"):
        per = np.where(ok, num / np.where(ok, den, 1.0), np.nan)
    if average is None:
        value = per
    elif average == "pairs":
        total = float(den.sum())
        if not total > 0:
            raise ValueError(f"{what} is undefined: {_NO_PAIR[what]}")
        value = float(num.sum()) / total
    else:
        rw = np.where(ok, request_weight, 0.0)
        total = float(rw.sum())
        if not total > 0:
            raise ValueError(f"{what} is undefined: {_NO_PAIR[what]}")
        value = float(np.dot(rw, np.where(ok, per, 0.0)) / total)
    return (value, n_skipped) if return_skipped else value


_NO_PAIR = {"XAUC": "no request has two impressions with different watch times and non-zero weight",
            "grouped AUC": "no request has both a positive and a negative with non-zero weight"}


def grouped_auc(y_true, y_score, offsets, *, sample_weight=None, average="impressions", return_skipped=False):
    """GAUC: the AUC of each request, averaged over requests (Zhou et al. 2018, Deep Interest Network).

    Each request's AUC is computed on its own rows (ties 1/2, pairs weighted w_i w_j with
    ``sample_weight``); requests without both a positive and a negative (of non-zero weight) have no
    AUC: they are **skipped** (left out of the average and of its weights) and counted. The mean over
    the others is weighted by each request's impressions (sum of ``sample_weight`` over its rows),
    its clicks (the same over its positives), or equally.

    Use ``auc(..., offsets=offsets)`` for the pooled form (every within-request pair counts the
    same, so large requests weigh quadratically).

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels (clicked or not).
    y_score : array-like of shape (n,)
        Any score that orders; no NaN (+-inf allowed).
    offsets : array-like of int, shape (n_requests + 1,) or None
        Request g owns rows ``offsets[g]:offsets[g + 1]``; None: one request (then GAUC = AUC).
    sample_weight : array-like of shape (n,), optional
        Row weights: they weight the pairs inside a request and count as impressions / clicks.
        E.g. 1/r on negatives kept with probability r recovers the GAUC of the full logs in
        expectation.
    average : {"impressions", "clicks", "requests", None}, default="impressions"
        Weight of a request in the mean; None returns the per-request AUCs (NaN where skipped).
    return_skipped : bool, default=False
        Also return the number of skipped requests (empty ones included): ``(gauc, n_skipped)``.

    Returns
    -------
    float, or ndarray of shape (n_requests,) with ``average=None``; with ``return_skipped``, a tuple
    ``(value, n_skipped)``.

    Raises
    ------
    ValueError
        If no request has an AUC (every request skipped), unless ``average=None``.

    Examples
    --------
    >>> from fastwlr.metrics import grouped_auc
    >>> y = [1, 0, 0, 1, 0, 1, 1]                    # requests: rows 0-2, 3-4, 5-6 (all clicked)
    >>> s = [0.9, 0.5, 0.7, 0.2, 0.4, 0.3, 0.1]
    >>> grouped_auc(y, s, [0, 3, 5, 7], return_skipped=True)   # (1.0 * 3 + 0.0 * 2) / 5, 1 skipped
    (0.6, 1)
    """
    n = _n(y_true, "y_true")
    y = v.check_binary_y(y_true, n)
    s = v.check_ranking_scores(y_score, n)
    w = sum_safe(v.check_sample_weight(sample_weight, n))
    off = v.check_offsets(offsets, n)
    _check_choice(average, "average", ("impressions", "clicks", "requests", None))
    return_skipped = _check_flag(return_skipped, "return_skipped")
    correct, tied, wrong = _pair_sums_per_request(y, s, w, off)
    group = _row_requests(off)
    if average == "impressions":
        rw = np.bincount(group, weights=w, minlength=off.shape[0] - 1)
    elif average == "clicks":
        rw = np.bincount(group, weights=w * y, minlength=off.shape[0] - 1)
    else:
        rw = np.ones(off.shape[0] - 1)
    return _average_requests(correct + 0.5 * tied, correct + tied + wrong, rw, average, "grouped AUC",
                             return_skipped)


# ---------------------------------------------------------------------------------------------
# XAUC: the AUC of watch time itself

def _row_requests(offsets):
    """Request index of every row (int64), from validated offsets."""
    if offsets.shape[0] == 2:
        return np.zeros(int(offsets[1]), dtype=np.int64)
    return np.repeat(np.arange(offsets.shape[0] - 1, dtype=np.int64), np.diff(offsets))


def _stable_argsort_ints(keys, max_key, order=None):
    """Stable argsort of integer ``keys`` in [0, max_key], composed with ``order`` (order[perm]).

    One value sort of ``key << b | position`` (numpy's SIMD sort of int64 is ~8x faster than
    ``argsort``); numpy's stable argsort when the two do not fit in 63 bits together."""
    n = keys.shape[0]
    b = max(int(n).bit_length(), 1)
    if int(max_key).bit_length() + b <= 63:
        packed = keys.astype(np.int64) << b
        packed |= np.arange(n, dtype=np.int64)
        packed.sort()
        perm = packed & ((1 << b) - 1)
    else:  # pragma: no cover - needs > 2**31 rows
        perm = np.argsort(keys, kind="stable")
    return perm if order is None else order[perm]


def _dense_ranks(values, order):
    """0-based dense ranks (equal values share a rank) of ``values``, given ``order``, its argsort."""
    n = values.shape[0]
    sv = values[order]
    new = np.ones(n, dtype=np.int64)
    if n > 1:
        new[1:] = sv[1:] != sv[:-1]
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.cumsum(new) - 1
    return ranks


def _block_starts(sorted_keys, group):
    """True where a block of equal (request, key...) starts, rows sorted by request then keys."""
    n = group.shape[0]
    start = np.ones(n, dtype=bool)
    if n > 1:
        start[1:] = group[1:] != group[:-1]
        for k in sorted_keys:
            start[1:] |= k[1:] != k[:-1]
    return start


def _pairs_across_blocks(start, group, w, n_groups):
    """Per request: sum of w_i w_j over pairs of rows in different blocks (rows sorted by request,
    then by the key whose equal values form the blocks). A sum of non-negative terms, block weight
    times the weight of the request's earlier blocks, so it is exactly 0 when there is no such pair
    of non-zero weight (a difference of totals would leave round-off there)."""
    starts = np.flatnonzero(start)
    if starts.shape[0] == 0:
        return np.zeros(n_groups)
    if w is None:
        block_w = np.diff(np.append(starts, group.shape[0])).astype(np.float64)
    else:
        block_w = np.add.reduceat(w, starts)
    g_block = group[starts]
    below = _earlier_in_request(block_w, g_block)
    return np.bincount(g_block, weights=block_w * below, minlength=n_groups)


def _discordant_pairs(cur, cw, group, first_pos, base, n_groups):
    """Per request: sum of w_i w_j over pairs with i before j and cur_i > cur_j (strictly).

    ``cur``: each row's dense rank of the prediction *within its request* (0 .. m_g - 1), rows in
    the order (request, watch time, prediction); ``cw`` their weights (None: 1). ``first_pos[d]``
    is where dense id d = base[g] + rank starts among the request's rows sorted by rank
    (``first_pos[-1] = n``).

    An inversion count by the bits of the rank, most significant first (a wavelet-tree pass): a
    pair (i, j) with cur_i > cur_j first differs at some bit b, where i has 1 and j has 0 and both
    share the higher bits. Level b keeps the rows ordered by (request, cur >> (b + 1)) and, inside
    such a group, in their original order; each row with bit 0 counts the bit-1 rows before it in
    its group (a cumulative sum), then every group is split stably into its bit-0 rows and its
    bit-1 rows. Each level is O(n) vectorised work, there are log2(largest request) levels, and
    the buffers are reused across levels (fresh 10M-row temporaries cost more in page faults than
    the arithmetic)."""
    n = cur.shape[0]
    acc = np.zeros(n_groups)
    if n == 0:
        return acc
    idx_t = np.int32 if n < 2**31 - 1 else np.int64
    cur = cur.astype(idx_t)
    first_pos = first_pos.astype(idx_t)
    bg = base[group].astype(idx_t)          # dense id of rank 0 of each row's request
    bn = base[group + 1].astype(idx_t)      # ... of the next request
    idx = np.arange(n, dtype=idx_t)
    nxt = np.empty_like(cur)
    d, gs, bit, ob, tmp = (np.empty(n, dtype=idx_t) for _ in range(5))
    one = np.empty(n, dtype=bool)
    cb = np.zeros(n + 1, dtype=idx_t)
    if cw is None:
        count = np.zeros(n, dtype=np.int64)
    else:
        count = np.zeros(n)
        cs = np.zeros(n + 1)
        fbuf = np.empty(n)
        nxt_w = np.empty_like(cw)
    for b in range(int(cur.max()).bit_length() - 1, -1, -1):
        np.bitwise_and(cur, ~((1 << (b + 1)) - 1), out=d)
        d += bg                                    # dense id of the first rank of the row's group
        np.take(first_pos, d, out=gs, mode="clip")              # where the group starts
        np.right_shift(cur, b, out=bit)
        bit &= 1
        np.not_equal(bit, 0, out=one)
        np.cumsum(bit, out=cb[1:])
        np.take(cb, gs, out=ob, mode="clip")
        np.subtract(cb[:-1], ob, out=ob)           # bit-1 rows before this one in its group
        if cw is None:
            np.multiply(ob, bit, out=tmp)
            np.subtract(ob, tmp, out=tmp)          # ... counted for bit-0 rows only
            count += tmp
        else:
            np.multiply(bit, cw, out=fbuf)
            np.cumsum(fbuf, out=cs[1:])
            np.take(cs, gs, out=fbuf, mode="clip")
            np.subtract(cs[:-1], fbuf, out=fbuf)
            fbuf *= cw
            fbuf[one] = 0.0
            count += fbuf
        # stable split: a bit-0 row moves back by the bit-1 rows before it; a bit-1 row goes to
        # where its group's bit-1 part starts, plus the bit-1 rows before it
        d += 1 << b
        np.minimum(d, bn, out=d)
        np.take(first_pos, d, out=tmp, mode="clip")
        tmp += ob
        np.subtract(idx, ob, out=gs)
        np.copyto(gs, tmp, where=one)
        nxt[gs] = cur
        cur, nxt = nxt, cur
        if cw is not None:
            nxt_w[gs] = cw
            cw, nxt_w = nxt_w, cw
    # a row's request never changes along the passes (groups never cross requests)
    return np.bincount(group, weights=count, minlength=n_groups)


def _xauc_sums(t, s, w, off):
    """Per request: the weight of the comparable pairs (two rows with different watch times) and
    of those ordered right by the prediction (a tie in the prediction counts 1/2)."""
    n = t.shape[0]
    n_groups = off.shape[0] - 1
    group = _row_requests(off)
    # the only float sorts; everything after sorts small integers
    o_s = np.argsort(s)
    r_t = _dense_ranks(t, np.argsort(t))
    # rows by (request, prediction): by prediction, then stably by request. Rows of request g
    # keep positions offsets[g]:offsets[g + 1] in every such order, so ``group`` stays valid.
    q = o_s if n_groups == 1 else _stable_argsort_ints(group[o_s], n_groups - 1, o_s)
    start_s = _block_starts((s[q],), group)
    first_pos = np.append(np.flatnonzero(start_s), n)        # where each (request, s) block starts
    base = np.zeros(n_groups + 1, dtype=np.int64)            # dense id of each request's rank 0
    np.cumsum(np.bincount(group[start_s], minlength=n_groups), out=base[1:])
    # rows by (request, watch time, prediction): stable passes, the least significant key first
    p = _stable_argsort_ints(r_t[q], n, q)
    seq = p if n_groups == 1 else _stable_argsort_ints(group[p], n_groups - 1, p)
    ws = None if w is None else w[seq]
    t_seq = t[seq]
    comparable = _pairs_across_blocks(_block_starts((t_seq,), group), group, ws, n_groups)
    block_of_row = np.cumsum(start_s) - 1                    # dense id of (request, s), q order
    did = np.empty(n, dtype=np.int64)
    did[q] = block_of_row
    # pairs with equal predictions and different watch times: the same count inside each
    # (request, prediction) block with two rows or more, rows by (block, watch time)
    pred_tied = np.zeros(n_groups)
    shared = np.diff(first_pos) > 1
    if shared.any():
        sub = q[shared[block_of_row]]                         # rows of shared blocks, (g, s) order
        sub = _stable_argsort_ints(r_t[sub], n, sub)
        r = _stable_argsort_ints(did[sub], n, sub)
        d_r = did[r]
        per_block = _pairs_across_blocks(_block_starts((t[r],), d_r), d_r, None if w is None else w[r],
                                         first_pos.shape[0] - 1)
        pred_tied = np.bincount(group[first_pos[:-1]], weights=per_block, minlength=n_groups)
    wrong = _discordant_pairs(did[seq] - base[group], ws, group, first_pos, base, n_groups)
    right = np.clip(comparable - wrong - 0.5 * pred_tied, 0.0, comparable)
    return comparable, right


def xauc(watch_time, y_score, offsets=None, *, sample_weight=None, average="pairs", return_skipped=False):
    """XAUC: the share of pairs of impressions whose predicted order matches the order of their
    watch times (the AUC of a continuous label; used by the watch-time literature, e.g. Zhan et al.
    2022, "Deconfounding Duration Bias in Watch-time Prediction", D2Q).

    ``sum w_i w_j ([s_i > s_j] + [s_i == s_j] / 2) / sum w_i w_j`` over pairs with T_i > T_j: pairs
    with equal watch times (in particular two unclicked impressions, T = 0) are not comparable and
    are left out; a tie in the prediction counts 1/2. Exact, computed in O(n log n) (sorting and an
    O(n log m) inversion count, m the largest request), never by enumerating or sampling pairs.

    With ``offsets``, only pairs within a request count, and ``average`` says how the requests
    combine: pooled over all their pairs, or one XAUC per request averaged. A request without a
    comparable pair (empty, a single impression, or all watch times equal) has no XAUC: it is
    skipped (left out of the average and its weights) and counted (``return_skipped``).

    Parameters
    ----------
    watch_time : array-like of shape (n,)
        >= 0 (0: not clicked). Only its order matters.
    y_score : array-like of shape (n,)
        The prediction (e^z, z, E[T] estimates: only the order matters). No NaN; +-inf allowed.
    offsets : array-like of int, shape (n_requests + 1,), optional
        Request g owns rows ``offsets[g]:offsets[g + 1]``; None: one request (all pairs).
    sample_weight : array-like of shape (n,), optional
        A pair weighs w_i w_j (e.g. 1/r on down-sampled negatives recovers the full logs' XAUC in
        expectation).
    average : {"pairs", "requests", "impressions", None}, default="pairs"
        "pairs": pooled, every comparable pair of every request counts the same (large requests
        weigh quadratically); "requests": the mean of the per-request XAUCs; "impressions": that
        mean weighted by each request's impressions (sum of ``sample_weight``); None: the
        per-request XAUCs, NaN where skipped.
    return_skipped : bool, default=False
        Also return the number of skipped requests: ``(xauc, n_skipped)``.

    Returns
    -------
    float in [0, 1] (0.5: no better than chance), or ndarray of shape (n_requests,) with
    ``average=None``; with ``return_skipped``, a tuple ``(value, n_skipped)``.

    Raises
    ------
    ValueError
        If no request has a comparable pair with non-zero weight (unless ``average=None``).

    Examples
    --------
    >>> from fastwlr.metrics import xauc
    >>> T = [0.0, 0.0, 30.0, 5.0]       # the two unclicked rows are not compared with each other
    >>> s = [0.1, 0.4, 0.9, 0.4]        # 5 comparable pairs: 4 right, 1 tie (0.4 vs 0.4)
    >>> xauc(T, s)
    0.9
    """
    t, s, w, off = _ranking_inputs(watch_time, y_score, sample_weight, offsets)
    _check_choice(average, "average", ("pairs", "requests", "impressions", None))
    return_skipped = _check_flag(return_skipped, "return_skipped")
    comparable, right = _xauc_sums(t, s, w, off)
    if average == "impressions":
        rw = np.diff(off).astype(np.float64) if w is None else np.bincount(
            _row_requests(off), weights=w, minlength=off.shape[0] - 1)
    else:
        rw = np.ones(off.shape[0] - 1)
    return _average_requests(right, comparable, rw, average, "XAUC", return_skipped)


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
    t = check_watch_time(watch_time)
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
# Errors of the predicted watch time

def _errors(watch_time, predicted, sample_weight, name):
    t = check_watch_time(watch_time)
    n = t.shape[0]
    p = v.check_vector(predicted, n, "predicted")
    w = sum_safe(v.check_sample_weight(sample_weight, n))
    total = float(w.sum())
    if not total > 0:
        raise ValueError(f"{name} is undefined: no rows, or sample_weight sums to 0")
    # T - pred and its square overflow for values beyond ~1e154 (found by the fuzz suite: an RMSE
    # of inf for one error of 6.4e299): errors are returned divided by 2**e, exact, with the e
    # to multiply back; e = 0 (the plain computation) for everything of ordinary size
    big = max(float(np.max(np.abs(t), initial=0.0)), float(np.max(np.abs(p), initial=0.0)))
    e = math.frexp(big)[1] if big > 2.0 ** 500 else 0
    return np.ldexp(t, -e) - np.ldexp(p, -e), w, total, e


def mae(watch_time, predicted, *, sample_weight=None):
    """Mean absolute error of a predicted watch time: ``sum w_i |T_i - pred_i| / sum w_i``.

    Over every row given, unclicked ones (T = 0) included. Beware on zero-inflated data: the
    prediction that minimises the MAE is the conditional *median* of T, which is 0 wherever the
    click probability is below 1/2, so on all impressions the MAE rewards predicting 0 rather than
    E[T | x]. It is meaningful on watched impressions (pass only the rows with T > 0, where the
    prediction should then be E[T | x, click] = e^z (1 - p) / p), or when comparing predictions of
    the same kind; ``rmse`` is minimised by E[T | x] itself.

    Parameters
    ----------
    watch_time : array-like of shape (n,)
        >= 0.
    predicted : array-like of shape (n,)
        Finite.
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    float
    """
    err, w, total, e = _errors(watch_time, predicted, sample_weight, "MAE")
    return _ldexp(float(np.dot(w, np.abs(err)) / total), e)


def rmse(watch_time, predicted, *, sample_weight=None):
    """Root mean squared error of a predicted watch time: ``sqrt(sum w_i (T_i - pred_i)^2 / sum w_i)``.

    Minimised by E[T | x], so it scores e^z (1 - p) against e^z directly; heavy-tailed watch times
    make it dominated by the longest watches (compare models on the same rows only). Parameters
    and return value as ``mae``.
    """
    err, w, total, e = _errors(watch_time, predicted, sample_weight, "RMSE")
    return _ldexp(float(np.sqrt(np.dot(w, err * err) / total)), e)


def _ldexp(x, e):
    try:
        return math.ldexp(x, e)
    except OverflowError:  # the mean of finite errors beyond float64 (errors of 1.7e308 each)
        return math.inf


# ---------------------------------------------------------------------------------------------
# Calibration

class _ObservedVsPredicted:
    """What both calibration tables share: observed / predicted means per bin or level."""

    @property
    def ratio(self):
        """mean_observed / mean_predicted per bin or level (1 = calibrated)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.mean_observed / self.mean_predicted

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _means_by(idx, k, w, predicted, observed):
    """Rows, weight and weighted means of predicted and observed for each of k bins / levels."""
    if not (w > 0).any():
        raise ValueError("sample_weight is zero everywhere (it sums to 0): the weighted means are undefined")
    count = np.bincount(idx, minlength=k).astype(np.int64)
    weight = np.bincount(idx, weights=w, minlength=k)
    ws = sum_safe(w)  # the means are ratios: scaled weights give them without overflow
    wsum = weight if ws is w else np.bincount(idx, weights=ws, minlength=k)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_pred = np.bincount(idx, weights=ws * predicted, minlength=k) / wsum
        mean_obs = np.bincount(idx, weights=ws * observed, minlength=k) / wsum
    return count, weight, mean_pred, mean_obs


@dataclass(frozen=True)
class CalibrationTable(_ObservedVsPredicted):
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
    t = check_watch_time(watch_time)
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
    count, weight, mean_pred, mean_obs = _means_by(idx, n_b, w, p, t)
    return CalibrationTable(edges, mean_pred, mean_obs, count, weight)


@dataclass(frozen=True)
class GroupCalibrationTable(_ObservedVsPredicted):
    """Predicted vs observed watch time for each level of a categorical column.

    Attributes
    ----------
    levels : ndarray of shape (n_levels,)
        The distinct values of ``groups``, sorted (as ``numpy.unique`` sorts them).
    count : ndarray of int64
        Rows per level.
    weight : ndarray
        Sum of ``sample_weight`` per level (= count without weights).
    mean_predicted, mean_observed : ndarray
        Weighted means of the prediction and of the observed watch time per level.
    observed_se : ndarray
        Standard error of ``mean_observed`` (``sqrt(n / (n - 1) * sum w^2 (T - mean)^2) / sum w``,
        weights taken as fixed; NaN for a level of one row): how far the observed mean of a level
        moves by chance. A level whose |observed - predicted| is several ``observed_se`` is
        miscalibrated; with heavy-tailed watch times small levels are noisy.
    """
    levels: np.ndarray
    count: np.ndarray
    weight: np.ndarray
    mean_predicted: np.ndarray
    mean_observed: np.ndarray
    observed_se: np.ndarray

    @property
    def z_score(self):
        """(mean_observed - mean_predicted) / observed_se per level."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return (self.mean_observed - self.mean_predicted) / self.observed_se

    def to_markdown(self, fmt="{:.4g}", sort_by="level", max_rows=None):
        """The table as GitHub markdown, one row per level.

        ``sort_by``: "level" (as stored), "weight" (largest first) or "z_score" (largest
        |z| first: the most significantly miscalibrated levels); ``max_rows`` keeps the first ones."""
        _check_choice(sort_by, "sort_by", ("level", "weight", "z_score"))
        order = np.arange(self.count.shape[0])
        if sort_by == "weight":
            order = np.argsort(-self.weight, kind="stable")
        elif sort_by == "z_score":
            order = np.argsort(-np.nan_to_num(np.abs(self.z_score), nan=-1.0), kind="stable")
        if max_rows is not None:
            order = order[:v.check_scalar(max_rows, "max_rows", low=1, integer=True)]
        lines = ["| level | rows | mean predicted | mean observed (± se) | observed / predicted |",
                 "|---|---:|---:|---:|---:|"]
        for i in order:
            lines.append(f"| {self.levels[i]} | {self.count[i]} | {fmt.format(self.mean_predicted[i])} | "
                         f"{fmt.format(self.mean_observed[i])} ± {fmt.format(self.observed_se[i])} | "
                         f"{self.ratio[i]:.3f} |")
        return "\n".join(lines)


def _check_groups(groups, n):
    arr = np.asarray(groups)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"groups must have shape ({n},) (one label per row), got {arr.shape}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"groups contains NaN (first at index {int(np.argmax(np.isnan(arr)))}); "
                         "give missing values a label of their own")
    if arr.dtype.kind == "c":
        raise TypeError("groups must hold labels (numbers, strings, bools), got complex numbers")
    if arr.dtype == object and any(x is None or (isinstance(x, float) and x != x) for x in arr):
        raise ValueError("groups contains None or NaN; give missing values a label of their own")
    try:
        return np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise TypeError(f"groups must hold mutually comparable labels (one type): {exc}") from None


def calibration_by_group(watch_time, predicted, groups, *, sample_weight=None):
    """Calibration of predicted watch time within each level of a categorical column.

    For every distinct value of ``groups`` (a region, a device, a content category...): the mean
    prediction, the mean observed watch time (0 for unclicked impressions) and the standard error of
    the latter. A model calibrated overall can be biased per segment (e^z's 1/(1 - p) excess is
    largest where clicks are frequent); this table shows where.

    Parameters
    ----------
    watch_time : array-like of shape (n,)
        Observed watch time, >= 0 (or, on generated data, the true E[T | x]).
    predicted : array-like of shape (n,)
        Predicted expected watch time. Finite.
    groups : array-like of shape (n,)
        Labels: integers, strings or bools (any one comparable type; NaN / None are rejected).
    sample_weight : array-like of shape (n,), optional

    Returns
    -------
    GroupCalibrationTable
        One entry per level, sorted by level.

    Examples
    --------
    >>> from fastwlr.metrics import calibration_by_group
    >>> tab = calibration_by_group([0, 10, 0, 30], [4, 6, 10, 10], ["a", "a", "b", "b"])
    >>> tab.levels.tolist(), tab.mean_predicted.tolist(), tab.mean_observed.tolist()
    (['a', 'b'], [5.0, 10.0], [5.0, 15.0])
    """
    t = check_watch_time(watch_time)
    n = t.shape[0]
    if n == 0:
        raise ValueError("calibration_by_group needs at least one row")
    p = v.check_vector(predicted, n, "predicted")
    w = v.check_sample_weight(sample_weight, n)
    levels, idx = _check_groups(groups, n)
    k = levels.shape[0]
    count, weight, mean_pred, mean_obs = _means_by(idx, k, w, p, t)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = t - mean_obs[idx]
        var = np.bincount(idx, weights=(w * dev) ** 2, minlength=k)
        se = np.where(count > 1, np.sqrt(var * count / np.maximum(count - 1, 1)) / weight, np.nan)
    return GroupCalibrationTable(levels, count, weight, mean_pred, mean_obs, se)


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
        lo, hi = float(both.min()), float(both.max())
        # one "calibrated" diagonal per axes, however many curves are drawn on it: a later curve
        # widens the existing one rather than drawing another on top
        diagonal = next((line for line in ax.get_lines() if line.get_label() == "calibrated"), None)
        if diagonal is None:
            ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="calibrated")
        else:
            old = np.asarray(diagonal.get_xdata(), dtype=float)
            lo, hi = min(lo, float(old.min())), max(hi, float(old.max()))
            diagonal.set_data([lo, hi], [lo, hi])
            ax.relim()
            ax.autoscale_view()
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("mean predicted watch time")
    ax.set_ylabel("mean observed watch time")
    ax.legend()
    return ax
