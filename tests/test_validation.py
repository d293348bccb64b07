"""Bad input gets a clear ValueError/TypeError naming the problem, before any kernel runs; odd but
valid input (big-endian, strided, Fortran, other sparse formats) is accepted; nothing is mutated."""
import numpy as np
import pytest
import scipy.sparse as sp

from fastwlr import score
from fastwlr.backends._contract import F32_SUM_ATOL, F32_SUM_RTOL
from fastwlr import _validation as v
from fastwlr import _kernels as K
from fastwlr._config import resolve_n_threads

X = np.arange(6, dtype=np.float64).reshape(3, 2) / 7
COEF = np.array([0.5, -1.5])


def _readonly(shape, dtype=np.float64):
    a = np.empty(shape, dtype=dtype)
    a.setflags(write=False)
    return a


# ------------------------------------------------------------------------------ dense / args

@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(X=np.ones(3)), ValueError, r"X must be 2-D"),
    (dict(X=np.ones((2, 2, 2))), ValueError, r"X must be 2-D"),
    (dict(X=None), TypeError, r"X must be a 2-D numpy array"),
    (dict(X={"a": 1}), TypeError, r"X must be a 2-D numpy array"),
    (dict(X=np.array([["a", "b"]])), TypeError, r"X must hold real numbers"),
    (dict(X=X.astype(complex)), TypeError, r"X must hold real numbers"),
    (dict(X=X.astype(object)), TypeError, r"X must"),
    (dict(X=np.array([[np.inf, 1.0]])), ValueError, r"X contains inf"),
    (dict(X=np.array([[1.0, -np.inf]], dtype=np.float32)), ValueError, r"X contains inf"),
    (dict(coef=np.ones(3)), ValueError, r"coef has 3 entries, but X has 2 features"),
    (dict(coef=np.ones((2, 2))), ValueError, r"coef must be 1-D"),
    (dict(coef=1.0), ValueError, r"coef must be 1-D"),
    (dict(coef=[np.nan, 1.0]), ValueError, r"coef contains NaN or inf"),
    (dict(coef=[1.0, np.inf]), ValueError, r"coef contains NaN or inf \(first at index 1\)"),
    (dict(coef=["a", "b"]), TypeError, r"coef must hold real numbers"),
    (dict(coef=np.ones(2, dtype=complex)), TypeError, r"coef must hold real numbers"),
    (dict(coef=None), TypeError, r"coef must hold real numbers"),
    (dict(intercept=np.nan), ValueError, r"intercept must be finite"),
    (dict(intercept=-np.inf), ValueError, r"intercept must be finite"),
    (dict(intercept="1"), TypeError, r"intercept must be a real number"),
    (dict(intercept=np.ones(2)), TypeError, r"intercept must be a real number"),
    (dict(intercept=True), TypeError, r"intercept must be a real number"),
    (dict(output="prob"), ValueError, r"output must be one of"),
    (dict(output=None), ValueError, r"output must be one of"),
    (dict(n_threads=0), ValueError, r"n_threads must be >= 1"),
    (dict(n_threads=1.5), TypeError, r"n_threads must be an int"),
    (dict(n_threads="2"), TypeError, r"n_threads must be an int"),
    (dict(n_threads=True), TypeError, r"n_threads must be an int"),
    (dict(out=np.empty(4)), ValueError, r"out must have shape \(3,\)"),
    (dict(out=np.empty((3, 1))), ValueError, r"out must have shape \(3,\)"),
    (dict(out=np.empty(3, dtype=np.int64)), TypeError, r"out must be a float32 or float64"),
    (dict(out=np.empty(3, dtype=np.float16)), TypeError, r"out must be a float32 or float64"),
    (dict(out=[0.0, 0.0, 0.0]), TypeError, r"out must be a float32 or float64 numpy array"),
    (dict(out=np.empty(6)[::2]), ValueError, r"out must be a writable, C-contiguous"),
    (dict(out=_readonly(3)), ValueError, r"out must be a writable"),
    (dict(out=np.empty(3, dtype=">f8")), TypeError, r"out must be"),
    (dict(out=np.empty(3), dtype=np.float32), TypeError, r"conflicts with out.dtype"),
    (dict(dtype=np.int32), TypeError, r"dtype must be float32 or float64"),
    (dict(dtype=np.float16), TypeError, r"dtype must be float32 or float64"),
    (dict(backend="gpu"), ValueError, r"backend must be 'auto' or one of"),
    (dict(backend=3), TypeError, r"backend must be a string"),
])
def test_bad_dense_arguments(kwargs, exc, match):
    args = dict(X=X, coef=COEF, intercept=0.0)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        score(args.pop("X"), args.pop("coef"), args.pop("intercept"), **args)


def test_bad_input_for_every_backend(backend_name):
    """The checks run before dispatch: the same error whatever the backend."""
    with pytest.raises(ValueError, match="coef contains NaN"):
        score(X, [np.nan, 0.0], backend=backend_name)
    bad = sp.csr_array(X)
    bad.indices = bad.indices.copy()
    bad.indices[0] = 2
    with pytest.raises(ValueError, match="column index 2 is outside"):
        score(bad, COEF, backend=backend_name)


def test_n_threads_is_capped_not_crashing():
    """OpenMP segfaulted when asked for 100000 threads; results do not depend on n_threads."""
    assert resolve_n_threads(10**6) <= max(64, 4 * (__import__("os").cpu_count() or 1))
    assert resolve_n_threads(1) == 1 and resolve_n_threads(2) == 2
    assert resolve_n_threads(-1) >= 1 and resolve_n_threads(-10**6) == 1
    big = np.ones((100_000, 4))
    np.testing.assert_array_equal(score(big, np.ones(4), n_threads=10**5), score(big, np.ones(4), n_threads=1))


# ------------------------------------------------------------------------------------ CSR

def _csr(cls, index_dtype, **attrs):
    """A valid 2 x 3 CSR matrix/array, then attributes replaced behind scipy's back (scipy would
    refuse to build these; a user can still hand them over)."""
    M = cls(np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
    M.indices = M.indices.astype(index_dtype)
    M.indptr = M.indptr.astype(index_dtype)
    for name, value in attrs.items():
        setattr(M, name, np.asarray(value, dtype=None if name == "data" else index_dtype))
    return M


BAD_CSR = [
    (dict(indices=[0, 3, 2]), ValueError, r"column index 3 is outside \[0, 3\)"),
    (dict(indices=[0, 2, 10**6]), ValueError, r"column index 1000000 is outside"),
    (dict(indices=[0, -1, 2]), ValueError, r"column index -1 is outside"),
    (dict(indptr=[0, 2, 1]), ValueError, r"indptr decreases at row 1"),
    (dict(indptr=[0, -1, 3]), ValueError, r"indptr decreases at row 0"),
    (dict(indptr=[1, 2, 3]), ValueError, r"indptr\[0\] = 1, expected 0"),
    (dict(indptr=[0, 2, 5]), ValueError, r"indptr\[-1\] = 5 but there are only 3 stored entries"),
    (dict(indptr=[0, 2]), ValueError, r"indptr has length 2, expected n_rows \+ 1 = 3"),
    (dict(indptr=[0, 1, 2, 3]), ValueError, r"indptr has length 4"),
    (dict(indices=[[0, 2, 2]]), ValueError, r"must be 1-D"),
    (dict(data=[1.0, 2.0]), ValueError, r"only 2 stored entries"),
    (dict(data=[1.0, np.inf, 3.0]), ValueError, r"X contains inf"),
    (dict(data=np.array([1, 2, 3], dtype=complex)), TypeError, r"X must hold real numbers"),
]


@pytest.mark.parametrize("cls", [sp.csr_array, sp.csr_matrix])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("attrs, exc, match", BAD_CSR)
def test_bad_csr(cls, index_dtype, attrs, exc, match):
    M = _csr(cls, index_dtype, **attrs)
    snapshot = [np.array(a, copy=True) for a in (M.data, M.indices, M.indptr)]
    with pytest.raises(exc, match=match):
        score(M, np.ones(3))
    for before, after in zip(snapshot, (M.data, M.indices, M.indptr)):
        np.testing.assert_array_equal(before, after)


def test_bad_csr_index_dtype():
    M = _csr(sp.csr_array, np.int32)
    M.indices = M.indices.astype(np.float64)
    with pytest.raises(TypeError, match="indices/indptr must be integers"):
        score(M, np.ones(3))


def test_bad_sparse_shape():
    with pytest.raises(ValueError, match="must be 2-D"):
        score(sp.coo_array(np.ones(3)), np.ones(3))
    with pytest.raises(ValueError, match="coef has 4 entries, but X has 3 features"):
        score(sp.csr_array(np.ones((2, 3))), np.ones(4))


# ---------------------------------------------------------------------- accepted as valid

@pytest.mark.parametrize("make", [
    lambda a: a.astype(">f8"),
    lambda a: a.astype(">f4"),
    lambda a: np.asfortranarray(a),
    lambda a: np.repeat(a, 3, axis=1)[:, ::3],
    lambda a: np.vstack([a, a])[::2],
    lambda a: a.tolist(),
    lambda a: (a * 7).astype(np.int64),
    lambda a: (a * 7).astype(np.uint8),
    lambda a: a > 0.3,
    lambda a: a.astype(np.float16),
], ids=["big-endian-f8", "big-endian-f4", "fortran", "strided-cols", "strided-rows", "list", "int64",
        "uint8", "bool", "float16"])
def test_accepted_dense_layouts(make):
    Xin = make(X)
    expected = np.asarray(Xin, dtype=np.float64) @ COEF + 0.25
    got = score(Xin, COEF, 0.25, output="log_odds", dtype=np.float64)
    if np.asarray(Xin).dtype.kind == "f" and np.asarray(Xin).dtype.itemsize == 4:
        # float32 features may be summed in float32: the contract's bound (backends/_contract.py)
        scale = np.abs(np.asarray(Xin, dtype=np.float64)) @ np.abs(COEF) + 0.25
        assert np.all(np.abs(got - expected) <= F32_SUM_RTOL * scale + COEF.shape[0] * F32_SUM_ATOL)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    # a big-endian / strided input is never modified in place (a native copy is made)
    np.testing.assert_array_equal(np.asarray(Xin, dtype=np.float64), np.asarray(make(X), dtype=np.float64))


@pytest.mark.parametrize("make", [
    lambda M: sp.csr_array((M.data.astype(">f8"), M.indices, M.indptr), shape=M.shape),
    lambda M: sp.csr_array((M.data, M.indices.astype(np.uint64), M.indptr.astype(np.uint64)), shape=M.shape),
    lambda M: sp.csr_array((M.data, M.indices.astype(np.int32), M.indptr.astype(np.int64)), shape=M.shape),
    lambda M: sp.csr_array((np.append(M.data, 99.0), np.append(M.indices, 0), M.indptr), shape=M.shape),
    lambda M: sp.csc_array(M), lambda M: sp.coo_array(M), lambda M: sp.csr_matrix(M),
    lambda M: sp.coo_matrix(M), lambda M: sp.bsr_array(M), lambda M: sp.dia_array(M),
    lambda M: sp.csr_array((M.data.astype(np.int64), M.indices, M.indptr), shape=M.shape),
], ids=["big-endian-data", "uint64-indices", "mixed-index-dtypes", "extra-stored-entries", "csc", "coo",
        "csr_matrix", "coo_matrix", "bsr", "dia", "int-data"])
def test_accepted_sparse_inputs(make):
    M = sp.csr_array(np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]))
    Min = make(M)
    got = score(Min, [1.0, 10.0, 100.0], 0.5, output="log_odds")
    np.testing.assert_array_equal(got, [201.5, 300.5, 0.5])


def test_zero_rows_and_zero_features():
    for Xin in (np.empty((0, 3)), sp.csr_array((0, 3))):
        got = score(Xin, np.ones(3))
        assert got.shape == (0,) and got.dtype == np.float64
    # zero features: the intercept alone (an empty sum is 0)
    for Xin in (np.empty((4, 0)), sp.csr_array((4, 0))):
        np.testing.assert_array_equal(score(Xin, np.ones(0), 2.0, output="log_odds"), 2.0)


def test_inputs_are_never_mutated(rng):
    Xin = rng.standard_normal((40, 5))
    Xs = sp.csr_array(Xin * (rng.random((40, 5)) < 0.5))
    coef = rng.standard_normal(5)
    saved = [a.copy() for a in (Xin, Xs.data, Xs.indices, Xs.indptr, coef)]
    for output in ("log_odds", "odds", "proba"):
        for dtype in (np.float32, np.float64):
            score(Xin, coef, 1.0, output=output, dtype=dtype)
            score(Xs, coef, 1.0, output=output, dtype=dtype)
    for before, after in zip(saved, (Xin, Xs.data, Xs.indices, Xs.indptr, coef)):
        np.testing.assert_array_equal(before, after)


def test_features_view_no_copy_when_already_valid():
    Xin = np.ones((5, 3), dtype=np.float32)
    assert np.shares_memory(v.check_features(Xin).X, Xin)
    F = np.asfortranarray(Xin)
    C = v.check_features(F).X
    assert C.flags.c_contiguous and not np.shares_memory(C, F)  # a C-ordered copy, F untouched


# ---------------------------------------------------------------- the other check_* helpers

@pytest.mark.parametrize("call, exc, match", [
    (lambda: v.check_offsets([0, 2, 1, 3], 3), ValueError, r"non-decreasing; offsets\[2\] = 1 < offsets\[1\] = 2"),
    (lambda: v.check_offsets([1, 3], 3), ValueError, r"start at 0 and end at n = 3"),
    (lambda: v.check_offsets([0, 2], 3), ValueError, r"start at 0 and end at n = 3"),
    (lambda: v.check_offsets([0.0, 3.0], 3), TypeError, r"offsets must be integers"),
    (lambda: v.check_offsets(np.zeros((2, 2), dtype=int), 3), ValueError, r"offsets must be 1-D"),
    (lambda: v.check_offsets(np.array([], dtype=np.int64), 0), ValueError, r"at least one entry"),
    (lambda: v.check_k(0), ValueError, r"k must be >= 1"),
    (lambda: v.check_k(1.5), TypeError, r"k must be an integer"),
    (lambda: v.check_k(True), TypeError, r"k must be an integer"),
    (lambda: v.check_sample_weight([1.0, -1.0], 2), ValueError, r"sample_weight must be >= 0"),
    (lambda: v.check_sample_weight([1.0, np.nan], 2), ValueError, r"sample_weight contains NaN"),
    (lambda: v.check_sample_weight([1.0], 2), ValueError, r"sample_weight must have shape \(2,\)"),
    (lambda: v.check_sample_weight(["a", "b"], 2), TypeError, r"sample_weight must hold real numbers"),
    (lambda: v.check_binary_y([0, 2], 2), ValueError, r"y must be 0/1 labels, found 2"),
    (lambda: v.check_binary_y([0, 0.5], 2), ValueError, r"y must be 0/1 labels"),
    (lambda: v.check_binary_y([0, np.nan], 2), ValueError, r"y contains NaN"),
    (lambda: v.check_scalar(np.inf, "l2"), ValueError, r"l2 must be finite"),
    (lambda: v.check_scalar(-1.0, "l2", low=0), ValueError, r"l2 must be >= 0"),
    (lambda: v.check_scalar(0.0, "eta", low=0, low_inclusive=False), ValueError, r"eta must be > 0"),
    (lambda: v.check_scalar(5, "k", high=3, integer=True), ValueError, r"k must be <= 3"),
    (lambda: v.check_features(np.ones((3, 2)), n_features=4), ValueError, r"X has 2 features, but the coefficients have 4"),
    (lambda: v.check_features(np.ones((0, 2)), allow_empty=False), ValueError, r"X has 0 rows"),
    (lambda: v.check_features(np.array([[np.nan, 1.0]])), ValueError, r"X contains NaN or inf \(first at index \(0, 0\)\)"),
    (lambda: v.check_features(sp.csr_array(np.array([[np.nan, 1.0]]))), ValueError, r"X contains NaN or inf"),
])
def test_check_helpers(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_check_helpers_accept_and_normalise():
    np.testing.assert_array_equal(v.check_offsets(None, 4), [0, 4])
    assert v.check_offsets(np.array([0, 0, 4], dtype=np.uint32), 4).dtype == np.int64
    np.testing.assert_array_equal(v.check_sample_weight(None, 3), np.ones(3))
    np.testing.assert_array_equal(v.check_binary_y(np.array([True, False]), 2), [1.0, 0.0])
    assert v.check_k(np.int64(3)) == 3
    assert v.check_scalar(np.array([2.5]), "x") == 2.5
    coef, b = v.check_coef(np.array([[1, 2]], dtype=np.int8), np.float32(0.5))
    assert coef.dtype == np.float64 and coef.flags.c_contiguous and b == 0.5 and isinstance(b, float)


@pytest.mark.parametrize("coef", [np.array([0.5, -1.5]), np.zeros(2)], ids=["coef", "zero-coef"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inf_features_rejected_on_every_backend(backend_name, coef, sparse, dtype):
    """A compiled kernel may look for inf while scoring (an inf feature makes z inf, or NaN when its
    coefficient is 0) instead of in a separate pass: the error must be the same on every backend,
    also next to NaN rows (which are allowed and make the kernel report non-finite z)."""
    Xin = np.array([[np.nan, 1.0], [0.5, 0.25], [2.0, -np.inf], [1.0, 1.0]], dtype=dtype)
    if sparse:
        Xin = sp.csr_array(Xin)
    for output in ("log_odds", "odds", "proba"):
        with pytest.raises(ValueError, match="X contains inf"):
            score(Xin, coef, 0.0, output=output, backend=backend_name)
        with pytest.raises(ValueError, match="X contains inf"):
            score(Xin, coef, 0.0, output=output, backend=backend_name, out=np.empty(4))
    # NaN alone is fine: that row scores NaN, the others are finite
    ok = np.array([[np.nan, 1.0], [0.5, 0.25]], dtype=dtype)
    got = score(sp.csr_array(ok) if sparse else ok, coef, 0.0, output="log_odds", backend=backend_name)
    assert np.isnan(got[0]) and np.isfinite(got[1])
    # a finite X whose sum overflows (z = inf) is not mistaken for an inf feature
    big = np.array([[1e300, 1e300]])
    with np.errstate(over="ignore"):  # the reference's matmul flags the (true) overflow of z
            z = score(sp.csr_array(big) if sparse else big, [1e10, 1e10], 0.0, output="log_odds", dtype=np.float64,
                  backend=backend_name)
    assert np.isposinf(z[0])


# ------------------------------------------------------------------------------ the compiled finite check

def _flags_kernel():
    return pytest.importorskip("fastwlr.backends.cython_core._checks", exc_type=ImportError).nonfinite_flags


def _numpy_flags(a):
    return (K.NAN if np.isnan(a).any() else 0) | (K.INF if np.isinf(a).any() else 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 65535, 65536, 65537, 3 * 65536 + 5])
def test_nonfinite_flags_match_numpy(dtype, n):
    """Every non-finite kind at the start, the end, the middle and the work-chunk edges, alone and
    together, against numpy, on 1 and 2 threads; finite extremes (max, tiny, subnormal, -0) are not
    flagged."""
    kernel = _flags_kernel()
    rng = np.random.default_rng(n)
    base = rng.standard_normal(n).astype(dtype)
    info = np.finfo(dtype)
    extremes = np.array([info.max, -info.max, info.tiny, info.smallest_subnormal, -0.0], dtype=dtype)
    base[:min(n, 5)] = extremes[:min(n, 5)]
    neg_nan = np.copysign(np.array(np.nan, dtype=dtype), dtype(-1))
    payload_nan = np.array(np.nan, dtype=dtype)
    payload_nan.view(np.uint32 if dtype == np.float32 else np.uint64)[...] |= 1  # another quiet NaN
    cases = [base]
    for pos in {0, n // 2, n - 1, 65535, 65536, n - 65537} if n else ():
        if not 0 <= pos < n:
            continue
        for bad in (np.nan, np.inf, -np.inf, neg_nan, payload_nan):
            a = base.copy()
            a[pos] = bad
            cases.append(a)
    if n >= 2:
        both = base.copy()
        both[0], both[-1] = np.nan, -np.inf
        cases.append(both)
    for a in cases:
        for n_threads in (1, 2):
            assert kernel(a, n_threads) == _numpy_flags(a)
            assert K.nonfinite_flags(a) == _numpy_flags(a)


def test_nonfinite_flags_layouts():
    """Read-only, 2-D (through reshape) and non-contiguous input: the validation helper answers
    for every layout (numpy when the kernel cannot take it) and never modifies its input."""
    a = np.zeros((300, 300))
    a[123, 45] = np.inf
    a.setflags(write=False)
    assert _flags_kernel()(a.reshape(-1), 2) == K.INF
    assert K.nonfinite_flags(a) == K.INF
    strided = np.zeros((300, 600))
    strided[7, 1] = np.nan  # outside the view below
    assert K.nonfinite_flags(strided[:, ::2]) == 0
    strided[7, 2] = np.nan
    assert K.nonfinite_flags(strided[:, ::2]) == K.NAN
    assert K.nonfinite_flags(np.array([np.inf], dtype=">f8")) == K.INF  # big-endian: numpy
    assert K.any_inf(np.array([np.nan, 1.0])) is False


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (100, 3), (199_999, 4)])
def test_check_features_names_first_non_finite(dtype, bad, where):
    """The error names the first bad element's index exactly, also when the input was strided or
    Fortran-ordered (validation makes it C-contiguous before the check) and for CSR data."""
    Xin = np.ones((200_000, 5), dtype=dtype)
    Xin[where] = bad
    Xin[-1, -1] = bad  # a later one must not be the one named
    msg = rf"X contains NaN or inf \(first at index \({where[0]}, {where[1]}\)\)"
    if where == (199_999, 4):
        msg = r"X contains NaN or inf \(first at index \(199999, 4\)\)"
    with pytest.raises(ValueError, match=msg):
        v.check_features(Xin)
    with pytest.raises(ValueError, match=msg):
        v.check_features(np.asfortranarray(Xin))
    wide = np.ones((200_000, 10), dtype=dtype)
    wide[:, ::2] = Xin
    wide[0, 1] = np.nan  # not in the strided view
    with pytest.raises(ValueError, match=msg):
        v.check_features(wide[:, ::2])
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        v.check_features(sp.csr_array(Xin))
    if not np.isnan(bad):
        with pytest.raises(ValueError, match="X contains inf"):
            v.check_features(Xin, allow_nan=True)
    else:
        assert v.check_features(Xin, allow_nan=True).n_rows == 200_000
    assert np.count_nonzero(~np.isfinite(Xin)) == (1 if where == (199_999, 4) else 2)  # not modified


def test_nonfinite_flags_numpy_fallback(monkeypatch):
    """Without the compiled core the same answers and errors come from numpy."""
    monkeypatch.setattr(K, "_flags_kernel", [None])
    a = np.ones((4, 3), dtype=np.float32)
    assert K.nonfinite_flags(a) == 0 and K.nonfinite_flags(a[:0]) == 0
    a[2, 1], a[3, 0] = -np.inf, np.nan
    assert K.nonfinite_flags(a) == K.NAN | K.INF and K.any_inf(a)
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at index \(2, 1\)\)"):
        v.check_features(a)
    with pytest.raises(ValueError, match="X contains inf"):
        v.check_features(a, allow_nan=True)


def test_nonfinite_scan_uses_the_callers_threads(monkeypatch):
    # n_threads=1 means one thread, validation included (the scan of X); vectors use one
    _flags_kernel()
    K.nonfinite_flags(np.zeros(1))   # looks the compiled kernel up
    seen = []
    real = K._flags_kernel[0]

    def recording(x, n_threads):
        seen.append((x.shape[0], n_threads))
        return real(x, n_threads)

    monkeypatch.setattr(K, "_flags_kernel", [recording])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = (rng.random(200) < 0.5).astype(float)
    import fastwlr
    from fastwlr import WeightedLogisticRegression
    from fastwlr._config import default_n_threads
    WeightedLogisticRegression(solver="lbfgs", n_threads=1).fit(X, y)
    assert seen and all(t == 1 for _, t in seen), seen
    seen.clear()
    v.check_features(X, n_threads=None)   # the default rule, for the scan's own size
    assert seen == [(600, default_n_threads(600))]
    seen.clear()
    fastwlr.score(X, np.ones(3), 0.0, n_threads=1)
    K.check_no_inf(v.check_features(X, n_threads=1), n_threads=1)
    assert all(t == 1 for _, t in seen), seen


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_csr_non_finite_error_names_row_and_column(index_dtype):
    # the error said "first at index (1,)": a position in X.data, not in X
    from fastwlr import WeightedLogisticRegression
    X = sp.csr_matrix(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [2.0, 0.0, 3.0]]))
    X.indices, X.indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    X.data[2] = np.nan  # the entry at row 2, column 2
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first: NaN at row 2, column 2"):
        v.check_features(X)
    with pytest.raises(ValueError, match=r"first: NaN at row 2, column 2"):
        WeightedLogisticRegression(solver="lbfgs").fit(X, [0, 1, 1])
