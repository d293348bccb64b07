"""Batch scoring: log-odds z = Xw + b, odds e^z (the expected watch time), probability sigma(z)."""
import numpy as np

from . import _validation as v
from ._kernels import Kernels


def result_dtype(feature_dtype, output, dtype=None):
    """The documented dtype rule.

    log-odds and probability keep the features' precision (float32 in, float32 out); odds are float64
    whatever the input, because e^z overflows float32 already at z > 88.7 and the top of the ranking
    would collapse to inf. ``dtype`` (float32 or float64) overrides the rule.
    """
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    return np.dtype(np.float64) if output == "odds" else np.dtype(feature_dtype)


def score_features(features, coef, intercept, output, out, kernels):
    """Score validated ``Features`` with resolved ``Kernels`` (internal: no checks)."""
    return kernels.score(features, coef, intercept, output, out)


def score(X, coef, intercept=0.0, *, output="odds", n_threads=None, out=None, dtype=None, backend=None):
    """Score a batch of candidates with a linear model.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or scipy sparse matrix
        Dense float32/float64 (other layouts and dtypes are copied) or CSR (int32/int64 indices;
        other sparse formats are converted).
    coef : array-like of shape (n_features,)
        Model coefficients (``coef_`` of shape (1, n_features) is accepted too).
    intercept : float
    output : {"odds", "log_odds", "proba"}
        ``"odds"`` is e^z, the expected watch time of a watch-time model; ``"log_odds"`` is z;
        ``"proba"`` is sigma(z). Computed in float64 and stable for any finite z: odds are exactly 0.0
        for z < -745.13 and +inf for z > 709.78, with no floating-point warning.
    n_threads : int, optional
        OpenMP threads (None or -1: all cores). Results do not depend on it.
    out : ndarray of shape (n_samples,), optional
        Filled in place and returned; its dtype (float32 or float64) sets the result's dtype. If X
        holds inf, the ValueError may come after ``out`` was written (its content is then undefined).
        ``out`` must not share memory with X or coef (ValueError): the kernels read them while writing it.
    dtype : float32 or float64, optional
        Result dtype when ``out`` is not given; default: see ``result_dtype``.
    backend : {"auto", "cython", "numba", "reference"}, optional

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    output = v.check_output(output)
    # inf features are rejected, but looking for them is a second full read of X (as long as the
    # scoring itself): the kernel counts non-finite log-odds instead, and only then do we look
    features = v.check_features(X, allow_nan=True, defer_inf_check=True, n_threads=n_threads)
    coef, intercept = v.check_coef(coef, intercept, n_features=features.n_features)
    if out is None:
        out = np.empty(features.n_rows, dtype=result_dtype(features.dtype, output, dtype))
    else:
        if not isinstance(out, np.ndarray) or out.dtype not in (np.float32, np.float64):
            raise TypeError(f"out must be a float32 or float64 numpy array, got {getattr(out, 'dtype', type(out).__name__)}")
        if dtype is not None and np.dtype(dtype) != out.dtype:
            raise TypeError(f"dtype={np.dtype(dtype)} conflicts with out.dtype={out.dtype}")
        v.check_out(out, features.n_rows, out.dtype,
                    inputs=[(features.X, "X"), (features.data, "X.data"), (features.indices, "X.indices"),
                            (features.indptr, "X.indptr"), (coef, "coef")])
    return Kernels(backend, n_threads).score(features, coef, intercept, output, out)
