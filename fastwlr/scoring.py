"""Batch scoring: log-odds z = Xw + b, odds e^z (the expected watch time), probability sigma(z)."""
import numpy as np

from . import _validation as v
from ._validation import result_dtype
from ._kernels import Kernels
from .topk import score_topk
from .backends._contract import OUTPUTS


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
        OpenMP threads (None: the cores other work leaves idle; -1: all cores). Results do not
        depend on it.
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
    if out is None and dtype is None and output in OUTPUTS:
        kernels = Kernels.of(backend, n_threads)
        scores = kernels.score_fast(X, coef, intercept, output)  # the common case, checked in compiled code
        if scores is not None:
            return scores
    output = v.check_output(output)
    features = _features(X, None, n_threads)
    coef, intercept = v.check_coef(coef, intercept, n_features=features.n_features)
    out = _output_buffer(features, output, out, dtype, coef)
    return Kernels(backend, n_threads).score(features, coef, intercept, output, out)


def _features(X, n_features, n_threads):
    # inf features are rejected, but looking for them is a second full read of X (as long as the
    # scoring itself): the kernel counts non-finite log-odds instead, and only then do we look
    features = v.dense_fast_path(X)
    if features is None:
        return v.check_features(X, n_features=n_features, allow_nan=True, defer_inf_check=True, n_threads=n_threads)
    if n_features is not None and features.n_features != n_features:
        v.check_features(X, n_features=n_features)   # raises the usual error
    return features


def _output_buffer(features, output, out, dtype, coef):
    """``out`` checked (it must not share memory with what the kernel reads), or a new array of
    the documented dtype."""
    if out is None:
        return np.empty(features.n_rows, dtype=result_dtype(features.dtype, output, dtype))
    if not isinstance(out, np.ndarray) or out.dtype not in (np.float32, np.float64):
        raise TypeError(f"out must be a float32 or float64 numpy array, got {getattr(out, 'dtype', type(out).__name__)}")
    if dtype is not None and np.dtype(dtype) != out.dtype:
        raise TypeError(f"dtype={np.dtype(dtype)} conflicts with out.dtype={out.dtype}")
    return v.check_out(out, features.n_rows, out.dtype,
                       inputs=[(features.X, "X"), (features.data, "X.data"), (features.indices, "X.indices"),
                               (features.indptr, "X.indptr"), (coef, "coef")])


def _scorer_from(coef, intercept, output, dtype, n_threads, backend):
    return Scorer(coef, intercept, output=output, dtype=dtype, n_threads=n_threads, backend=backend)


class Scorer:
    """A linear model prepared for serving: ``Scorer(coef, intercept)(X)`` returns exactly what
    ``fastwlr.score(X, coef, intercept)`` returns (the same kernel, the same bits), but the model is
    checked and converted once, and the backend and thread count are resolved once, so that a
    serving loop pays only for its features.

    Parameters
    ----------
    coef, intercept, output, dtype, n_threads, backend
        As for ``fastwlr.score``. ``coef`` is copied (later changes to the caller's array do not
        reach the scorer). The backend and threads are resolved now: a later ``set_backend`` or
        ``use_backend`` does not change an existing scorer.

    Examples
    --------
    >>> import numpy as np, fastwlr
    >>> scorer = fastwlr.Scorer([1.0, -1.0], 0.5, output="log_odds")
    >>> scorer(np.array([[2.0, 1.0]])).tolist()
    [1.5]
    """

    __slots__ = ("coef", "intercept", "output", "dtype", "_kernels", "_fast")

    def __init__(self, coef, intercept=0.0, *, output="odds", dtype=None, n_threads=None, backend=None):
        self.output = v.check_output(output)
        coef, self.intercept = v.check_coef(coef, intercept)
        self.coef = np.array(coef, dtype=np.float64, copy=True)
        self.coef.flags.writeable = False
        self.dtype = None if dtype is None else result_dtype(np.float64, self.output, dtype)
        self._kernels = Kernels(backend, n_threads)
        # the backend's compiled path for the common case (None: every call takes the full path)
        self._fast = self._kernels.dense_scorer(self.coef, self.intercept, self.output, self.dtype)

    @property
    def n_features(self):
        return self.coef.shape[0]

    def __call__(self, X, *, out=None):
        """Score X (as ``fastwlr.score``); ``out`` as there."""
        if out is None and self._fast is not None:
            scores = self._fast(X)
            if scores is not None:
                return scores
        features = _features(X, self.coef.shape[0], self._kernels.n_threads)
        out = _output_buffer(features, self.output, out, self.dtype, self.coef)
        return self._kernels.score(features, self.coef, self.intercept, self.output, out)

    def topk(self, X, k, *, offsets=None, exclude=None):
        """The k best candidates of each request, ranked by this model: what
        ``fastwlr.score_topk(X, coef, intercept, k, offsets=offsets, output=output, exclude=exclude)``
        returns (values of ``score_topk``'s dtype; ``dtype`` is for ``__call__`` only). One request of
        a common dense array skips the per-call set-up of ``score_topk`` (the backend and thread
        rule are the scorer's, the model's checks and float32 copy are made once).

        Examples
        --------
        >>> import numpy as np, fastwlr
        >>> fastwlr.Scorer([1.0], 0.0, output="log_odds").topk(np.array([[0.5], [2.0], [1.0]]), 2)[0].tolist()
        [[1, 2]]
        """
        if offsets is None and exclude is None and self._fast is not None:
            result = self._fast.topk(X, k)
            if result is not None:
                return result
        return score_topk(X, self.coef, self.intercept, k, offsets=offsets, output=self.output, exclude=exclude,
                          n_threads=self._kernels.n_threads, backend=self._kernels.name)

    def __reduce__(self):
        # rebuilt from the model and the resolved settings (the compiled object does not pickle):
        # what a process pool, a Dask worker or copy.deepcopy receives
        return _scorer_from, (self.coef, self.intercept, self.output, self.dtype, self._kernels.n_threads,
                              self._kernels.name)

    def __repr__(self):
        return (f"Scorer(n_features={self.coef.shape[0]}, intercept={self.intercept!r}, output={self.output!r}, "
                f"backend={self._kernels.name!r}, n_threads={self._kernels.n_threads})")
