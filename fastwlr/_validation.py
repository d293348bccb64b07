"""The one place that checks and normalises user input.

Everything a backend receives has passed through here, so kernels can trust shapes, dtypes,
contiguity and CSR invariants (see ``fastwlr.backends`` for the guarantees). Nothing the user
passed in is modified: when a conversion is needed we copy.
"""
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from ._kernels import any_inf, nonfinite_flags
from .backends._contract import OUTPUTS

FLOAT_DTYPES = (np.float32, np.float64)


def _is_sparse(X):
    try:
        import scipy.sparse as sp
    except ImportError:  # scipy is a dependency, but dense-only use need not import it
        return False
    return sp.issparse(X)


@dataclass(frozen=True)
class Features:
    """Validated features: dense C-contiguous ``X``, or CSR ``data/indices/indptr``, and for CSR
    perhaps X^T as CSR (``Kernels.with_transpose``: solvers that read X many times)."""
    n_rows: int
    n_features: int
    dtype: np.dtype
    X: np.ndarray = None          # dense
    data: np.ndarray = None       # CSR
    indices: np.ndarray = None
    indptr: np.ndarray = None
    transpose: tuple = None       # (data, indices, indptr) of X^T, the index dtype of ``indices``

    @property
    def is_sparse(self):
        return self.X is None

    def rows(self, start, stop):
        """A row slice [start, stop) as Features (views, no copies)."""
        if not self.is_sparse:
            return Features(stop - start, self.n_features, self.dtype, X=self.X[start:stop])
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        return Features(stop - start, self.n_features, self.dtype, data=self.data[lo:hi],
                        indices=self.indices[lo:hi], indptr=self.indptr[start:stop + 1] - lo)


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))   # == is False for the other byte order


def dense_fast_path(X):
    """``Features`` of the common case without any copy or numpy call: a C-contiguous 2-D float32
    or float64 ndarray in native byte order. None for anything else (then ``check_features``).
    Only the checks ``check_features(X, allow_nan=True, defer_inf_check=True)`` would make of such
    an array; a serving loop pays a few attribute reads instead of several microseconds."""
    if type(X) is np.ndarray and X.ndim == 2 and X.dtype in _NATIVE_FLOATS and X.flags.c_contiguous:
        return Features(X.shape[0], X.shape[1], X.dtype, X=X)
    return None


def _float_dtype(dtype, name):
    # byte order is not precision: a big-endian float32 is float32 (callers copy to native order)
    dtype = np.dtype(dtype).newbyteorder("=")
    if dtype in FLOAT_DTYPES:
        return dtype
    if dtype.kind == "f" and dtype.itemsize < 4:  # float16 -> float32
        return np.dtype(np.float32)
    if dtype.kind in "biuf":  # bool, ints, float128 -> float64
        return np.dtype(np.float64)
    raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")


def check_features(X, *, n_features=None, allow_nan=False, allow_empty=True, name="X", defer_inf_check=False,
                   n_threads=None):
    """Validate dense or sparse features; return a ``Features``.

    Dense input of another float layout (Fortran, strided, big-endian) is copied to C order; integer
    and bool input becomes float64. Sparse input of another format is converted to CSR.
    ``allow_nan``: scoring lets NaN features through (top-k reports the row); training does not.
    ``defer_inf_check`` (with ``allow_nan``): skip the pass looking for inf; the caller promises to
    call ``check_no_inf`` whenever a kernel saw a non-finite log-odds (an inf feature always makes
    its row's z inf or NaN), which saves a full read of X when scoring.
    ``n_threads``: threads for the NaN/inf scan of the values (the caller's ``n_threads``; None: all).
    """
    if _is_sparse(X):
        return _check_csr(X, n_features=n_features, allow_nan=allow_nan, allow_empty=allow_empty, name=name,
                          defer_inf_check=defer_inf_check, n_threads=n_threads)
    if isinstance(X, np.ndarray) and X.dtype == object or not hasattr(X, "__array__") and not isinstance(X, (list, tuple)):
        raise TypeError(f"{name} must be a 2-D numpy array or a scipy sparse matrix, got {type(X).__name__}")
    arr = np.asarray(X)
    if arr.dtype == object:
        raise TypeError(f"{name} must hold real numbers, got an object array")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    dtype = _float_dtype(arr.dtype, name)
    # native byte order, C-contiguous, float32/float64: copies only when needed
    arr = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("="))
    _check_n_features(arr.shape[1], n_features, name)
    if not allow_empty and arr.shape[0] == 0:
        raise ValueError(f"{name} has 0 rows")
    if not allow_nan:
        _check_finite(arr, name, n_threads)
    elif not defer_inf_check and any_inf(arr, n_threads):
        raise ValueError(f"{name} contains inf; features must be finite (NaN rows are reported where scored)")
    return Features(arr.shape[0], arr.shape[1], arr.dtype, X=arr)


def _check_n_features(got, expected, name):
    if expected is not None and got != expected:
        raise ValueError(f"{name} has {got} features, but the coefficients have {expected}")


def _check_finite(arr, name, n_threads=1, csr=None):
    """``csr``: (indices, indptr) when ``arr`` is a CSR matrix's data, so that the error names the
    (row, column) of X rather than a position in X.data."""
    if nonfinite_flags(arr, n_threads=n_threads):
        bad = np.argwhere(~np.isfinite(arr))[0]  # the error path only: where, exactly
        if csr is not None:
            indices, indptr = csr
            pos = int(bad[0])
            row = int(np.searchsorted(indptr, pos, side="right")) - 1
            what = "NaN" if np.isnan(arr[pos]) else "inf"
            raise ValueError(f"{name} contains NaN or inf (first: {what} at row {row}, column {int(indices[pos])}; "
                             f"X.data[{pos}])")
        raise ValueError(f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")


def _check_csr(X, *, n_features, allow_nan, allow_empty, name, defer_inf_check=False, n_threads=None):
    import scipy.sparse as sp
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got a sparse array of shape {X.shape}")
    if X.format != "csr":
        X = sp.csr_array(X)  # a converted copy; CSC/COO input is accepted
    n_rows, n_cols = (int(s) for s in X.shape)
    _check_n_features(n_cols, n_features, name)
    if not allow_empty and n_rows == 0:
        raise ValueError(f"{name} has 0 rows")
    indptr = np.asarray(X.indptr)
    indices = np.asarray(X.indices)
    data = np.asarray(X.data)
    if indptr.ndim != 1 or indices.ndim != 1 or data.ndim != 1:
        raise ValueError(f"{name}: malformed CSR, data/indices/indptr must be 1-D, got shapes "
                         f"{data.shape}/{indices.shape}/{indptr.shape}")
    if indptr.shape[0] != n_rows + 1:
        raise ValueError(f"{name}: malformed CSR, indptr has length {indptr.shape[0]}, expected n_rows + 1 = {n_rows + 1}")
    if indptr.dtype.kind not in "iu" or indices.dtype.kind not in "iu":
        raise TypeError(f"{name}: CSR indices/indptr must be integers, got {indices.dtype}/{indptr.dtype}")
    # int32 is kept when both fit; anything else (uint, mixed) becomes int64
    idx_dtype = np.int32 if indptr.dtype == np.int32 and indices.dtype == np.int32 else np.int64
    indptr = np.ascontiguousarray(indptr, dtype=idx_dtype)
    if indptr[0] != 0:
        raise ValueError(f"{name}: malformed CSR, indptr[0] = {indptr[0]}, expected 0")
    if n_rows and np.any(indptr[1:] < indptr[:-1]):
        row = int(np.argmax(indptr[1:] < indptr[:-1]))
        raise ValueError(f"{name}: malformed CSR, indptr decreases at row {row}")
    nnz = int(indptr[-1])
    if nnz > indices.shape[0] or nnz > data.shape[0]:
        raise ValueError(f"{name}: malformed CSR, indptr[-1] = {nnz} but there are only "
                         f"{min(indices.shape[0], data.shape[0])} stored entries")
    indices = np.ascontiguousarray(indices[:nnz], dtype=idx_dtype)
    # one pass instead of min() and max(): seen as unsigned, a negative index is huge
    if nnz and indices.view(np.uint32 if idx_dtype == np.int32 else np.uint64).max() >= n_cols:
        bad = int(indices[(indices < 0) | (indices >= n_cols)][0])
        raise ValueError(f"{name}: malformed CSR, column index {bad} is outside [0, {n_cols})")
    dtype = _float_dtype(data.dtype, name)
    data = np.ascontiguousarray(data[:nnz], dtype=dtype.newbyteorder("="))
    if not allow_nan:
        _check_finite(data, name, n_threads, csr=(indices, indptr))
    elif not defer_inf_check and any_inf(data, n_threads):
        raise ValueError(f"{name} contains inf; features must be finite")
    return Features(n_rows, n_cols, data.dtype, data=data, indices=indices, indptr=indptr)


def _check_real(arr, name):
    """Numbers only: bool, integer or float dtypes (no object, string, complex or datetime arrays)."""
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")


def _real_vector(v, n, name, dtype):
    """A 1-D real array of length n as a contiguous (copy-if-needed) array of ``dtype``."""
    arr = np.asarray(v)
    _check_real(arr, name)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def check_coef(coef, intercept=0.0, n_features=None):
    """coef -> float64 C-contiguous 1-D finite array; intercept -> finite float."""
    arr = np.asarray(coef)
    _check_real(arr, "coef")
    if arr.ndim == 2 and arr.shape[0] == 1:  # sklearn's coef_ has shape (1, n_features)
        arr = arr[0]
    if arr.ndim != 1:
        raise ValueError(f"coef must be 1-D (n_features,), got shape {arr.shape}")
    if n_features is not None and arr.shape[0] != n_features:
        raise ValueError(f"coef has {arr.shape[0]} entries, but X has {n_features} features")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"coef contains NaN or inf (first at index {int(np.argmin(np.isfinite(arr)))})")
    return arr, check_scalar(intercept, "intercept")


def check_scalar(value, name, *, low=None, high=None, low_inclusive=True, integer=False):
    """A finite real (or integer) scalar within bounds."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    kinds = (Integral,) if integer else (Real,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    if integer:
        value = int(value)
    else:
        try:
            value = float(value)
        except OverflowError:  # an int beyond float64 (10**400): float() raises rather than gives inf
            raise ValueError(f"{name} must be a finite float64, got an integer of {len(str(abs(int(value))))} "
                             f"digits, beyond the float64 range (~1.8e308)") from None
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (not low_inclusive and value == low)):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_vector(v, n, name, *, dtype=np.float64, nonnegative=False):
    """A 1-D finite array of length n, as a contiguous copy-if-needed of ``dtype``."""
    arr = _real_vector(v, n, name, dtype)
    if nonfinite_flags(arr):
        raise ValueError(f"{name} contains NaN or inf (first at index {int(np.argmin(np.isfinite(arr)))})")
    if nonnegative and (arr < 0).any():
        raise ValueError(f"{name} must be >= 0 (first negative at index {int(np.argmax(arr < 0))})")
    return arr


def check_sample_weight(sample_weight, n):
    """None -> ones; else non-negative finite float64 of length n."""
    if sample_weight is None:
        return np.ones(n, dtype=np.float64)
    return check_vector(sample_weight, n, "sample_weight", nonnegative=True)


def check_binary_y(y, n):
    """Labels in {0, 1} (bool, int or float) -> float64 of 0.0/1.0."""
    arr = check_vector(y, n, "y")
    if not np.isin(arr, (0.0, 1.0)).all():
        bad = arr[~np.isin(arr, (0.0, 1.0))][0]
        raise ValueError(f"y must be 0/1 labels, found {bad}")
    return arr


def check_output(output):
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    return output


def check_out(out, n, dtype, name="out", inputs=()):
    """A user-supplied output buffer: 1-D, length n, exactly ``dtype``, writable, contiguous, and
    sharing no memory with ``inputs`` ((array, name) pairs: the validated arrays a kernel reads
    while it writes ``out``).

    Overlap is an error rather than a reason to copy: the caller asked for the result in that
    memory, and a kernel writing into what it is still reading gives results that depend on the
    thread count. The validated arrays are contiguous, so ``may_share_memory``'s bounds check is
    exact here (and O(1)).
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(out).__name__}")
    if out.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if not out.flags.c_contiguous or not out.flags.writeable or not out.dtype.isnative:
        raise ValueError(f"{name} must be a writable, C-contiguous, native-byte-order array")
    for arr, arr_name in inputs:
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(f"{name} shares memory with {arr_name}: the result would overwrite the input "
                             f"while it is read; pass a separate array")
    return out


# A k above the largest group only adds padding columns (-1 / -inf); that is allowed (a fixed k for
# batches of any size), but not beyond this many output entries (16 bytes each: 4 GiB).
MAX_PADDED_TOPK_ENTRIES = 1 << 28


def check_k(k, offsets=None):
    """k >= 1. With the validated ``offsets``: a k larger than the largest group whose (n_groups, k)
    output would exceed MAX_PADDED_TOPK_ENTRIES is rejected (it asked for terabytes of padding:
    a MemoryError, or an OverflowError beyond 2**63), rather than clamped, which would change the
    documented output shape."""
    k = check_scalar(k, "k", low=1, integer=True)
    if offsets is not None:
        n_groups = offsets.shape[0] - 1
        largest = int(np.diff(offsets).max()) if n_groups > 0 else 0
        if k > largest and n_groups * k > MAX_PADDED_TOPK_ENTRIES:
            raise ValueError(f"k={k} is larger than the largest group ({largest} rows) and its ({n_groups}, {k}) "
                             f"output would be padding beyond {MAX_PADDED_TOPK_ENTRIES} entries; pass "
                             f"k <= {max(largest, 1)}")
    return k


def check_offsets(offsets, n):
    """Group offsets: None -> one group [0, n]; else non-decreasing int64 from 0 to n."""
    if offsets is None:
        return np.array([0, n], dtype=np.int64)
    arr = np.asarray(offsets)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"offsets must be integers, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"offsets must be 1-D with at least one entry, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr[0] != 0 or arr[-1] != n:
        raise ValueError(f"offsets must start at 0 and end at n = {n}, got {arr[0]} ... {arr[-1]}")
    if np.any(arr[1:] < arr[:-1]):
        g = int(np.argmax(arr[1:] < arr[:-1]))
        raise ValueError(f"offsets must be non-decreasing; offsets[{g + 1}] = {arr[g + 1]} < offsets[{g}] = {arr[g]}")
    return arr


def check_exclude(exclude, n):
    """Top-k ``exclude``: None, or a boolean mask of length n (True = skip the candidate).

    Only bool is accepted: an integer array is more likely a list of indices than a 0/1 mask.
    Returned as a contiguous bool array (a copy only if needed)."""
    if exclude is None:
        return None
    arr = np.asarray(exclude)
    if arr.dtype != np.bool_:
        raise TypeError(f"exclude must be a boolean mask, got dtype {arr.dtype} "
                        "(to exclude by index, build a mask: m = np.zeros(n, bool); m[idx] = True)")
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"exclude must have shape ({n},) (one flag per candidate row), got {arr.shape}")
    return np.ascontiguousarray(arr)


def check_topk_scores(scores):
    """Top-k scores: 1-D real; float32/float64 kept, other real dtypes become float64.
    NaN is not checked here: the kernels find it during their pass and report its index."""
    arr = np.asarray(scores)
    _check_real(arr, "scores")
    if arr.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=_float_dtype(arr.dtype, "scores").newbyteorder("="))


def check_ranking_scores(scores, n, name="y_score"):
    """Scores that only order rows (metrics): 1-D real of length n as float64; +-inf allowed (they
    order fine), NaN is not (it has no place in an order)."""
    arr = _real_vector(scores, n, name, np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN (first at index {int(np.argmax(np.isnan(arr)))}); "
                         "a NaN score cannot be ranked")
    return arr


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
