"""Reference grouped top-k: the specification the compiled kernels are tested against.

For each group ``offsets[g]:offsets[g + 1]`` keep the k best candidates, best first, where
"better" is a total order: a higher score, and on equal scores the lower index (``-0.0 == 0.0``
is a tie; ``-inf`` is a real score and still beats the padding). Groups with fewer than k
candidates are padded with index -1 and value -inf. NaN scores have no place in that order:
they raise ``ValueError`` naming the first one.

``score_topk_*`` rank by the float64 log-odds z and transform only the winners, so the order
never depends on ``output``: where odds saturate to +inf (z > 709.78) or probabilities round to
1.0, the winners keep their log-odds order (ties in the transformed value are not re-broken by
index). Rows where ``exclude`` is True are skipped before anything else (their NaN goes unseen).

Two implementations of the selection, checked against each other in the tests:
``topk_loop`` (argpartition + argsort per group, any group sizes) and ``topk_equal`` (the same,
vectorised over a (n_groups, size) matrix when every group has the same size).
"""
import numpy as np

from .._math import transform
from .scoring import log_odds_csr, log_odds_dense

PAD_INDEX = -1


def _raise_first_nan(scores, base=0):
    nan = np.isnan(scores)
    if nan.any():
        i = base + int(np.argmax(nan))
        raise ValueError(f"scores[{i}] is NaN; top-k needs comparable scores (drop or fill NaN first)")


def _select(s, k):
    """Local positions of the min(k, len(s)) best entries of s, best first (ties: lower position).

    argpartition alone breaks ties at the k-th value arbitrarily, so the boundary is rebuilt
    exactly: everything strictly above the k-th best value, then the lowest positions equal to it.
    """
    m = s.shape[0]
    kk = min(k, m)
    if kk == 0:
        return np.empty(0, dtype=np.int64)
    kth = np.partition(s, m - kk)[m - kk]  # the kk-th largest value
    above = np.flatnonzero(s > kth)
    ties = np.flatnonzero(s == kth)[:kk - above.shape[0]]
    chosen = np.concatenate([above, ties])  # exactly kk positions
    chosen.sort()  # by position, so the stable sort below breaks value ties by position
    return chosen[np.argsort(-s[chosen], kind="stable")]


def _empty_result(n_groups, k, dtype):
    return (np.full((n_groups, k), PAD_INDEX, dtype=np.int64), np.full((n_groups, k), -np.inf, dtype=dtype))


def topk_loop(scores, offsets, k, exclude=None):
    """Grouped top-k, one group at a time (argpartition + argsort). Returns (indices, values)."""
    _raise_first_nan(scores if exclude is None else np.where(exclude, 0.0, scores))
    n_groups = offsets.shape[0] - 1
    indices, values = _empty_result(n_groups, k, scores.dtype)
    for g in range(n_groups):
        a, b = int(offsets[g]), int(offsets[g + 1])
        pos = np.arange(a, b) if exclude is None else a + np.flatnonzero(~exclude[a:b])
        best = pos[_select(scores[pos], k)]
        indices[g, :best.shape[0]] = best
        values[g, :best.shape[0]] = scores[best]
    return indices, values


def topk_equal(scores, n_groups, size, k):
    """Grouped top-k for ``n_groups`` consecutive groups of one ``size`` (the vectorised 2-D form).

    Same exact tie rule as ``_select``, row by row: strictly above the k-th value, then the first
    positions equal to it (a cumulative count), then a stable sort of the k winners.
    """
    _raise_first_nan(scores)
    kk = min(k, size)
    indices, values = _empty_result(n_groups, k, scores.dtype)
    if n_groups == 0 or kk == 0:
        return indices, values
    mat = scores.reshape(n_groups, size)
    kth = np.partition(mat, size - kk, axis=1)[:, size - kk, None]
    above = mat > kth
    need = kk - above.sum(axis=1, keepdims=True)
    tie = mat == kth
    chosen = above | (tie & (np.cumsum(tie, axis=1) <= need))
    pos = np.nonzero(chosen)[1].reshape(n_groups, kk)  # row-major: positions ascending in each row
    vals = np.take_along_axis(mat, pos, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    pos = np.take_along_axis(pos, order, axis=1)
    indices[:, :kk] = pos + (np.arange(n_groups, dtype=np.int64) * size)[:, None]
    values[:, :kk] = np.take_along_axis(vals, order, axis=1)
    return indices, values


def _equal_size(offsets):
    sizes = np.diff(offsets)
    return int(sizes[0]) if sizes.shape[0] and np.all(sizes == sizes[0]) else None


def _grouped(scores, offsets, k, exclude=None):
    size = _equal_size(offsets)
    if exclude is None and size is not None:
        return topk_equal(scores, offsets.shape[0] - 1, size, k)
    return topk_loop(scores, offsets, k, exclude)


# ---------------------------------------------------------------------------- kernel contract

def topk(scores, offsets, k, n_threads=1):
    """-> (indices, values, index of the first NaN score or -1)."""
    nan = np.isnan(scores)
    if nan.any():
        return None, None, int(np.argmax(nan))
    return (*_grouped(scores, offsets, k), -1)


def _score_topk(z, offsets, k, output, exclude, out_dtype):
    """-> (indices, values, lowest scored row with NaN log-odds or -1, count of inf log-odds)."""
    rows = np.arange(z.shape[0]) if exclude is None else np.flatnonzero(~exclude)
    nan = np.isnan(z[rows])
    nan_row = int(rows[np.argmax(nan)]) if nan.any() else -1
    n_inf = int(np.isinf(z[rows]).sum())
    if nan_row >= 0:  # the adapter raises: no ranking to compute
        return None, None, nan_row, n_inf
    indices, zs = _grouped(z, offsets, k, exclude)
    with np.errstate(over="ignore", under="ignore"):  # rounding into float32 is the dtype's answer
        values = transform(zs, output).astype(out_dtype)
    values[indices < 0] = -np.inf  # padding stays -inf whatever the transform
    return indices, values, nan_row, n_inf


def score_topk_dense(X, coef, intercept, offsets, k, output, exclude, out_dtype, n_threads=1):
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf rows are reported
        z = log_odds_dense(X, coef, intercept)
    return _score_topk(z, offsets, k, output, exclude, out_dtype)


def score_topk_csr(data, indices, indptr, coef, intercept, offsets, k, output, exclude, out_dtype, n_threads=1):
    with np.errstate(invalid="ignore", over="ignore"):
        z = log_odds_csr(data, indices, indptr, coef, intercept)
    return _score_topk(z, offsets, k, output, exclude, out_dtype)
