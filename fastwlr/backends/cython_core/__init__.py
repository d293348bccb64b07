"""The compiled Cython core, adapted to the kernel contract (docs/kernels.md).

The extension modules take output codes rather than names and never raise inside ``nogil``;
this module maps the names (``fastwlr.backends._contract``) onto the codes.
"""
from .._contract import OUTPUT_CODES as _OUTPUT
from . import _objective, _scoring, _sgd, _topk
from ._build_info import build_info  # noqa: F401

name = "cython"
SCORE_COUNTS_NONFINITE = True  # score_dense/score_csr return the count of non-finite log-odds


def score_dense(X, coef, intercept, output, out, n_threads):
    return _scoring.score_dense(X, coef, intercept, _OUTPUT[output], out, n_threads)


def dense_scorer(coef, intercept, output, out_dtype, threads_for, call_ended):
    """Optional (docs/kernels.md): a callable X -> scores for the common dense case, or None."""
    return _scoring.DenseScorer(coef, intercept, _OUTPUT[output], 0 if out_dtype is None else out_dtype.itemsize,
                                threads_for, call_ended)


def score_fast(X, coef, intercept, output, threads_for, call_ended):
    """Optional (docs/kernels.md): ``score`` of the common dense case with every default, or None."""
    return _scoring.score_fast(X, coef, intercept, _OUTPUT[output], threads_for, call_ended)


def score_csr(data, indices, indptr, coef, intercept, output, out, n_threads):
    return _scoring.score_csr(data, indices, indptr, coef, intercept, _OUTPUT[output], out, n_threads)


objective_grad_dense = _objective.objective_grad_dense
objective_grad_csr = _objective.objective_grad_csr
# optional (the adapter falls back without them): the first L-BFGS evaluation and the
# preconditioner's column sums in one read of X; the column sums alone, read in place
objective_grad_colsq_dense = _objective.objective_grad_colsq_dense
weighted_column_sq_dense = _objective.weighted_column_sq_dense
# optional: loss, gradient and Hessian in one read of X (the Newton solver; numpy otherwise)
objective_grad_hess_dense = _objective.objective_grad_hess_dense
# optional: the curvature and Hessian-vector products of trust-region Newton-CG on CSR (scipy otherwise)
curvature_csr = _objective.curvature_csr
hessvec_csr = _objective.hessvec_csr
# optional: the partials the three CSR passes above would scatter into; given X^T (their
# ``transpose=``) they gather column by column instead (the adapter's ``with_transpose``)
csr_scatter_blocks = _objective.scatter_blocks
transpose_csr = _objective.transpose_csr
# optional: curvature_csr's column sums for weights s at hand; its presence also says that
# objective_grad_csr takes curvature_out= (s) and diag_out= (these sums, from the same passes)
column_sq_csr = _objective.column_sq_csr

sgd_epoch_dense = _sgd.sgd_epoch_dense
sgd_epoch_csr = _sgd.sgd_epoch_csr

topk = _topk.topk


def score_topk_dense(X, coef, intercept, offsets, k, output, exclude, out_dtype, n_threads):
    return _topk.score_topk_dense(X, coef, intercept, offsets, k, _OUTPUT[output], exclude, out_dtype, n_threads)


def score_topk_csr(data, indices, indptr, coef, intercept, offsets, k, output, exclude, out_dtype, n_threads):
    return _topk.score_topk_csr(data, indices, indptr, coef, intercept, offsets, k, _OUTPUT[output], exclude,
                                out_dtype, n_threads)


def score_topk_fast(X, coef, intercept, k, output, threads_for, call_ended):
    """Optional (docs/kernels.md): ``score_topk`` of one request with every default, or None."""
    return _topk.score_topk_fast(X, coef, intercept, k, _OUTPUT[output], threads_for, call_ended)
