"""Per-request top-k: on precomputed scores (``topk``), or fused with scoring (``score_topk``).

A batch of requests is a ragged array of candidates: request g owns rows
``offsets[g]:offsets[g + 1]``. Both functions return, per request, the indices (into the whole
batch) and values of its k best candidates, best first, as two ``(n_groups, k)`` arrays.

Order: a higher score first; equal scores by the lower index (so results are deterministic and do
not depend on ``n_threads`` or the backend). ``-inf`` is a real score. A request with fewer than
k candidates is padded with index -1 and value -inf: ``indices >= 0`` masks the real entries.
"""
from . import _validation as v
from ._validation import result_dtype
from ._kernels import Kernels
from .backends._contract import OUTPUTS

__all__ = ["topk", "score_topk"]


def _offsets(offsets, n):
    # check_offsets takes any integer dtype (int32 offsets are common) and returns int64
    return v.check_offsets(offsets, n)


def topk(scores, k, *, offsets=None, n_threads=None, backend=None):
    """The k largest scores of each group, with their indices, best first.

    Parameters
    ----------
    scores : array-like of shape (n,)
        float32 and float64 are kept; integer and bool scores become float64. NaN raises
        ``ValueError`` naming its index (a NaN has no place in a ranking).
    k : int
        Candidates kept per group (>= 1). Groups smaller than k are padded; a k above the largest
        group whose output would exceed 2**28 entries of padding raises ValueError.
    offsets : array-like of int, shape (n_groups + 1,), optional
        Group g is ``scores[offsets[g]:offsets[g + 1]]``; non-decreasing, from 0 to n (empty groups
        are allowed). None: one group of all n scores.
    n_threads : int, optional
        OpenMP threads (None: the idle cores; -1: all cores). Results do not depend on it. One very large group is
        split across threads.
    backend : {"auto", "cython", "numba", "reference"}, optional

    Returns
    -------
    indices : ndarray of int64, shape (n_groups, k)
        Indices into ``scores`` (not into the group), -1 for padding.
    values : ndarray of shape (n_groups, k), dtype of the scores
        ``scores[indices]``, non-increasing along each row; -inf for padding.

    Examples
    --------
    >>> import numpy as np, fastwlr
    >>> idx, val = fastwlr.topk(np.array([0.5, 2.0, 1.0, 3.0, 3.0]), 2, offsets=[0, 3, 5])
    >>> idx.tolist(), val.tolist()
    ([[1, 2], [3, 4]], [[2.0, 1.0], [3.0, 3.0]])
    """
    scores = v.check_topk_scores(scores)
    k = v.check_k(k)
    offsets = _offsets(offsets, scores.shape[0])
    k = v.check_k(k, offsets)
    return Kernels.of(backend, n_threads).topk(scores, offsets, k)


def score_topk(X, coef, intercept=0.0, k=None, *, offsets=None, output="odds", exclude=None, n_threads=None,
               backend=None):
    """Score each request's candidates and keep the k best, without storing the n scores.

    Each row's log-odds z = x.coef + intercept is computed in float64 and offered to its request's
    selection; only the k winners per request are transformed to ``output``. Equivalent to
    ``topk(score(X, coef, intercept, output="log_odds", dtype=np.float64), k, offsets=offsets)`` with ``output``
    applied to the values afterwards, but one pass over X and no n-sized temporary.

    Parameters
    ----------
    X : array-like of shape (n, n_features) or scipy sparse matrix
        Candidate features, dense float32/float64 or CSR (as for ``fastwlr.score``).
    coef : array-like of shape (n_features,)
    intercept : float, default 0.0
    k : int
        Required (keyword or fourth positional argument): candidates kept per request, >= 1.
    offsets : array-like of int, shape (n_groups + 1,), optional
        Request g owns rows ``offsets[g]:offsets[g + 1]``; None: one request.
    output : {"odds", "log_odds", "proba"}
        Transform of the returned values. Ranking is always by log-odds, so the order is the same
        for every output: where odds saturate to +inf (z > 709.78) or probabilities round to 1.0,
        the winners stay in log-odds order even though their values tie.
    exclude : array-like of bool, shape (n,), optional
        True marks rows to skip (e.g. already watched). Skipped rows are not even read, so a NaN
        or an inf in them is not reported. A request left with fewer than k rows is padded.
    n_threads : int, optional
        OpenMP threads (None: the idle cores; -1: all cores); results do not depend on it.
    backend : {"auto", "cython", "numba", "reference"}, optional

    Returns
    -------
    indices : ndarray of int64, shape (n_groups, k)
        Row indices into X, best first; -1 for padding.
    values : ndarray of shape (n_groups, k)
        The transformed scores of those rows; -inf for padding. float64 for odds; for log-odds
        and probability, the features' dtype (``fastwlr.scoring.result_dtype``).

    Raises
    ------
    ValueError
        If a scored row's log-odds are NaN (NaN features): the message names the lowest such row.
        Also for k < 1, bad offsets, an ``exclude`` of the wrong length, inf features.

    Examples
    --------
    >>> import numpy as np, fastwlr
    >>> X = np.array([[0.0], [1.0], [2.0], [-1.0]])
    >>> idx, odds = fastwlr.score_topk(X, [1.0], 0.0, k=1, offsets=[0, 2, 4])
    >>> idx.tolist(), odds.round(3).tolist()
    ([[1], [2]], [[2.718], [7.389]])
    """
    if k is None:
        raise TypeError("score_topk() missing required argument k (candidates kept per request)")
    if offsets is None and exclude is None and output in OUTPUTS:
        # one request, the common case: checked in compiled code, one scan, no parallel region
        result = Kernels.of(backend, n_threads).score_topk_fast(X, coef, intercept, k, output)
        if result is not None:
            return result
    output = v.check_output(output)
    k = v.check_k(k)
    # inf features make some log-odds inf or NaN: the kernel flags those and only then is X searched
    # for inf (see _kernels.check_nonfinite_log_odds), which saves a full pass over X
    features = v.check_features(X, allow_nan=True, defer_inf_check=True, n_threads=n_threads)
    coef, intercept = v.check_coef(coef, intercept, n_features=features.n_features)
    offsets = _offsets(offsets, features.n_rows)
    k = v.check_k(k, offsets)
    exclude = v.check_exclude(exclude, features.n_rows)
    out_dtype = result_dtype(features.dtype, output)
    return Kernels(backend, n_threads).score_topk(features, coef, intercept, offsets, k, output, exclude, out_dtype)
