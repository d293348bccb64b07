"""The compiled Cython core, adapted to the backend contract (see ``fastwlr.backends``).

The extension modules take output codes rather than names and never raise inside ``nogil``;
this module does the translation.
"""
from . import _scoring
from ._build_info import build_info  # noqa: F401

name = "cython"
_OUTPUT = _scoring.OUTPUT_CODES
SCORE_COUNTS_NONFINITE = True  # score_dense/score_csr return the count of non-finite log-odds


def score_dense(X, coef, intercept, output, out, n_threads):
    # returns the count of rows with a non-finite log-odds (see fastwlr.backends: optional)
    return _scoring.score_dense(X, coef, intercept, _OUTPUT[output], out, n_threads)


def score_csr(data, indices, indptr, coef, intercept, output, out, n_threads):
    return _scoring.score_csr(data, indices, indptr, coef, intercept, _OUTPUT[output], out, n_threads)


from . import _objective  # noqa: E402  (issue 3: weighted objective + gradient, one pass)


def objective_grad_dense(X, y, sample_weight, coef, intercept, l2, n_threads):
    return _objective.objective_grad_dense(X, y, sample_weight, coef, intercept, l2, n_threads)


def objective_grad_csr(data, indices, indptr, n_features, y, sample_weight, coef, intercept, l2, n_threads):
    return _objective.objective_grad_csr(data, indices, indptr, n_features, y, sample_weight, coef,
                                         intercept, l2, n_threads)


from . import _sgd  # noqa: E402  (issue 3: SGD epochs; contract in fastwlr._sgd)


def sgd_epoch_dense(X, y, sample_weight, order, state, params):
    return _sgd.sgd_epoch_dense(X, y, sample_weight, order, state, params)


def sgd_epoch_csr(data, indices, indptr, y, sample_weight, order, state, params):
    return _sgd.sgd_epoch_csr(data, indices, indptr, y, sample_weight, order, state, params)


def objective_grad_colsq_dense(X, y, sample_weight, coef, intercept, l2, n_threads):
    """Not part of the contract: ``objective_grad_dense`` plus sum_i w_i x_ij^2 per column from the
    same pass, the lbfgs driver's first evaluation and preconditioner in one read of X (``fastwlr._lbfgs``
    falls back to two passes for backends without it)."""
    return _objective.objective_grad_colsq_dense(X, y, sample_weight, coef, intercept, l2, n_threads)


def weighted_column_sq_dense(X, sample_weight, n_threads, row_step=1):
    """Not part of the contract: a helper of the lbfgs driver (``fastwlr._lbfgs``), which falls back
    to numpy for backends without it. Sums over the rows of ``X[::row_step]``, read in place."""
    return _objective.weighted_column_sq_dense(X, sample_weight, n_threads, row_step)


from . import _topk  # noqa: E402  (issue 4: grouped top-k, alone and fused with scoring)
from ..._validation import check_nonfinite_log_odds as _check_nonfinite_log_odds  # noqa: E402


def topk(scores, offsets, k, n_threads):
    indices, values, nan_at = _topk.topk(scores, offsets, k, n_threads)
    if nan_at >= 0:
        raise ValueError(f"scores[{nan_at}] is NaN; top-k needs comparable scores (drop or fill NaN first)")
    return indices, values


def _out_dtype(feature_dtype, output):
    from ...scoring import result_dtype
    return result_dtype(feature_dtype, output)


def score_topk_dense(X, coef, intercept, offsets, k, output, exclude, n_threads):
    indices, values, nan_row, n_inf = _topk.score_topk_dense(
        X, coef, intercept, offsets, k, _topk.OUTPUT_CODES[output], exclude, _out_dtype(X.dtype, output), n_threads)
    _check_nonfinite_log_odds(X, nan_row, n_inf > 0)
    return indices, values


def score_topk_csr(data, indices, indptr, coef, intercept, offsets, k, output, exclude, n_threads):
    idx, values, nan_row, n_inf = _topk.score_topk_csr(
        data, indices, indptr, coef, intercept, offsets, k, _topk.OUTPUT_CODES[output], exclude,
        _out_dtype(data.dtype, output), n_threads)
    _check_nonfinite_log_odds(data, nan_row, n_inf > 0)
    return idx, values
