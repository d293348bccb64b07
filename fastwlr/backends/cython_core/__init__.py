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
