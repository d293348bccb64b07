"""Scoring: every compiled backend against the numpy reference, on random and adversarial input.

The tolerance is stated once (``reference_z_and_slack``): a compiled kernel may sum a row in another
order than the reference, so its float64 log-odds may differ by 1e-12 * (|b| + sum_j |w_j x_j|)
(the condition scale of the dot product; a d-term float64 sum is off by at most ~d * 2^-53 of it);
dense float32 rows may be summed in float32: the contract's bound F32_SUM_RTOL * scale + d *
F32_SUM_ATOL (fastwlr.backends._contract); odds and probability are monotone in z, so they must lie between the transforms of z -/+ that
slack, widened by the output's rounding. This also decides threshold cases (z near 709.78) fairly.
"""
import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st, HealthCheck
from hypothesis.extra import numpy as hnp

import fastwlr
from fastwlr import score
from fastwlr.backends._contract import F32_CHUNK, F32_MIN_D, F32_SUM_ATOL, F32_SUM_RTOL
from fastwlr.backends._math import EXP_OVERFLOW_Z, EXP_UNDERFLOW_Z, safe_exp, sigmoid, softplus

OUTPUTS = ("log_odds", "odds", "proba")
SUM_RTOL = 1e-12  # the compiled sum's order-of-summation slack, relative to the row's scale
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ----------------------------------------------------------------------------------- helpers

def reference_z_and_slack(X, coef, intercept):
    """float64 log-odds of the features *as given* (float32 values are exact in float64) and the
    per-row slack of a backend's sum: SUM_RTOL * scale, or for dense float32 X the contract's
    F32_SUM_RTOL * scale + d * F32_SUM_ATOL, scale = |b| + sum_j |w_j x_j| (X may be sparse)."""
    X64 = sp.csr_array(X).astype(np.float64) if sp.issparse(X) else np.asarray(X).astype(np.float64)
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim == 2:
        coef = coef[0]
    with np.errstate(invalid="ignore", over="ignore"):
        z = X64 @ coef + intercept
        scale = abs(X64) @ np.abs(coef) + abs(intercept)
    with np.errstate(all="ignore"):   # the slack itself may underflow
        if not sp.issparse(X) and np.asarray(X).dtype == np.float32:
            return z, F32_SUM_RTOL * scale + coef.shape[0] * F32_SUM_ATOL
        return z, SUM_RTOL * scale


def _transform(z, output):
    with np.errstate(invalid="ignore"):
        return {"log_odds": lambda t: t, "odds": safe_exp, "proba": sigmoid}[output](z)


def assert_scores(got, z, slack, output, out_dtype, extra_abs_z=0.0):
    """``got`` must equal transform(z') for some z' within ``slack + extra_abs_z`` of z,
    up to the rounding of the output dtype (and 2 ulp of libm exp)."""
    got = np.asarray(got)
    assert got.dtype == out_dtype
    nan = np.isnan(z)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg="NaN rows differ")
    z, slack, got64 = z[~nan], slack[~nan], got[~nan].astype(np.float64)
    with np.errstate(all="ignore"):  # the checker itself may meet denormals and infinities
        slack = slack + extra_abs_z
        lo, hi = _transform(z - slack, output), _transform(z + slack, output)
        eps = float(np.finfo(out_dtype).eps) + (4.5e-16 if output != "log_odds" else 0.0)
        lo = np.where(lo >= 0, lo * (1 - eps), lo * (1 + eps))
        hi = np.where(hi >= 0, hi * (1 + eps), hi * (1 - eps))
        tiny = float(np.finfo(out_dtype).tiny)  # rounding to the output may flush tiny values to 0
        bad = ~((got64 >= lo - tiny) & (got64 <= hi + tiny))
        # values beyond the output dtype's range round to +-inf (float32 log-odds, odds above ~88.7)
        big = float(np.finfo(out_dtype).max) * (1 - 1e-7)
        bad &= ~((got64 == np.inf) & (hi > big)) & ~((got64 == -np.inf) & (lo < -big))
    if bad.any():
        i = int(np.argmax(bad))
        raise AssertionError(f"{output}: row {i} got {got64[i]!r}, allowed [{lo[i]!r}, {hi[i]!r}] "
                             f"(z={z[i]!r}, slack={slack[i]!r}); {int(bad.sum())} rows out of range")


def check_against_reference(backend, X, coef, intercept, output, n_threads=1, **kw):
    got = score(X, coef, intercept, output=output, n_threads=n_threads, backend=backend, **kw)
    ref = score(X, coef, intercept, output=output, backend="reference", **kw)
    z, slack = reference_z_and_slack(X, coef, intercept)
    assert got.dtype == ref.dtype and got.shape == ref.shape == (z.shape[0],)
    assert_scores(got, z, slack, output, got.dtype)
    assert_scores(ref, z, slack, output, ref.dtype)  # the oracle meets its own specification
    return got


def random_csr(rng, n, d, density, dtype, index_dtype, empty_rows=True):
    X = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.standard_normal(X.nnz)
    if empty_rows and n > 2:  # a third of the rows emptied
        row_of_entry = np.repeat(np.arange(n), np.diff(X.indptr))
        X.data[np.isin(row_of_entry, rng.choice(n, size=n // 3, replace=False))] = 0.0
        X.eliminate_zeros()
    return sp.csr_array((X.data.astype(dtype), X.indices.astype(index_dtype), X.indptr.astype(index_dtype)),
                        shape=(n, d))


# --------------------------------------------------------------------- random, seeded loops

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output", OUTPUTS)
def test_dense_matches_reference_seeded(compiled_backend_name, dtype, output, rng):
    for n in (0, 1, 2, 7, 33, 257):
        for d in (1, 2, 3, 7, 8, 9, 16, 17, 64, 65):
            X = rng.standard_normal((n, d)).astype(dtype) * rng.choice([0.1, 1.0, 30.0])
            coef = rng.standard_normal(d) * rng.choice([0.01, 1.0, 10.0])
            intercept = float(rng.standard_normal() * 3)
            check_against_reference(compiled_backend_name, X, coef, intercept, output)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output", OUTPUTS)
def test_csr_matches_reference_seeded(compiled_backend_name, dtype, index_dtype, output, rng):
    for n, d, density in ((0, 5, 0.5), (1, 1, 1.0), (1, 7, 0.0), (5, 3, 0.6), (40, 100, 0.05),
                          (301, 17, 0.3), (64, 2**20, 1e-5)):
        X = random_csr(rng, n, d, density, dtype, index_dtype)
        coef = rng.standard_normal(d) * 2
        got = check_against_reference(compiled_backend_name, X, coef, -0.7, output)
        if n:
            empty = np.diff(X.indptr) == 0  # an empty row scores the intercept alone
            np.testing.assert_array_equal(got[empty], _transform(np.full(int(empty.sum()), -0.7), output).astype(got.dtype))


def test_csr_index_dtype_is_kept(rng):
    from fastwlr._validation import check_features
    for idx in (np.int32, np.int64):
        X = random_csr(rng, 10, 6, 0.5, np.float32, idx)
        assert X.indices.dtype == idx
        assert check_features(X).indices.dtype == idx


def test_csr_unsorted_and_duplicate_columns(compiled_backend_name):
    """Non-canonical CSR (scipy allows it): duplicates are summed, order does not matter."""
    data = np.array([1.0, 2.0, -3.0, 0.5, 0.5, 4.0])
    indices = np.array([3, 0, 3, 1, 1, 2], dtype=np.int32)
    indptr = np.array([0, 3, 3, 5, 6], dtype=np.int32)
    X = sp.csr_array((data, indices, indptr), shape=(4, 4))
    assert not X.has_canonical_format
    coef = np.array([1.0, 10.0, 100.0, 1000.0])
    for output in OUTPUTS:
        check_against_reference(compiled_backend_name, X, coef, 0.25, output)
    z = score(X, coef, 0.25, output="log_odds", backend=compiled_backend_name)
    np.testing.assert_array_equal(z, [1000 * 1 + 2 - 3000 + 0.25, 0.25, 10.25, 400.25])


@pytest.mark.parametrize("fmt", ["csc", "coo", "csr_matrix", "csr_array"])
def test_other_sparse_formats(compiled_backend_name, fmt, rng):
    X = random_csr(rng, 30, 12, 0.3, np.float64, np.int32)
    X = {"csc": sp.csc_array(X), "coo": sp.coo_array(X), "csr_matrix": sp.csr_matrix(X), "csr_array": X}[fmt]
    check_against_reference(compiled_backend_name, X, rng.standard_normal(12), 0.1, "odds")


# ---------------------------------------------------------------------------- hypothesis

finite64 = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, allow_subnormal=True)
coef_values = st.one_of(st.floats(-1e3, 1e3, allow_nan=False), st.sampled_from([0.0, 1e-300, -1e-300, 1e150, -1e150]))


@st.composite
def dense_problem(draw):
    n = draw(st.integers(0, 12))
    d = draw(st.integers(1, 19))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    X = draw(hnp.arrays(dtype, (n, d), elements=finite64.map(dtype)))
    layout = draw(st.sampled_from(["C", "F", "strided", "bigendian"]))
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "strided":
        X = np.repeat(np.repeat(X, 2, axis=0), 2, axis=1)[::2, ::2]
    elif layout == "bigendian":
        X = X.astype(X.dtype.newbyteorder(">"))
    coef = draw(hnp.arrays(np.float64, d, elements=coef_values))
    intercept = draw(st.one_of(st.floats(-1e4, 1e4, allow_nan=False), st.sampled_from([709.79, -746.0, 0.0])))
    return X, coef, intercept


@HYP
@given(problem=dense_problem(), output=st.sampled_from(OUTPUTS))
def test_dense_hypothesis(compiled_backend_name, problem, output):
    X, coef, intercept = problem
    X_before = X.copy()
    check_against_reference(compiled_backend_name, X, coef, intercept, output)
    np.testing.assert_array_equal(X, X_before)


@st.composite
def csr_problem(draw):
    n = draw(st.integers(0, 10))
    d = draw(st.integers(1, 30))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    index_dtype = draw(st.sampled_from([np.int32, np.int64]))
    counts = draw(st.lists(st.integers(0, d), min_size=n, max_size=n))
    indices = [draw(st.lists(st.integers(0, d - 1), min_size=c, max_size=c, unique=True)) for c in counts]
    nnz = sum(counts)
    data = draw(hnp.arrays(dtype, nnz, elements=finite64.map(dtype)))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(index_dtype)
    flat = np.array([j for row in indices for j in row], dtype=index_dtype)
    X = sp.csr_array((data, flat, indptr), shape=(n, d))
    coef = draw(hnp.arrays(np.float64, d, elements=coef_values))
    intercept = draw(st.floats(-800, 800, allow_nan=False))
    return X, coef, intercept


@HYP
@given(problem=csr_problem(), output=st.sampled_from(OUTPUTS))
def test_csr_hypothesis(compiled_backend_name, problem, output):
    X, coef, intercept = problem
    data_before, ind_before, ptr_before = X.data.copy(), X.indices.copy(), X.indptr.copy()
    check_against_reference(compiled_backend_name, X, coef, intercept, output)
    np.testing.assert_array_equal(X.data, data_before)
    np.testing.assert_array_equal(X.indices, ind_before)
    np.testing.assert_array_equal(X.indptr, ptr_before)


# ------------------------------------------------------- specified values, no FP warnings

def _z_column(z):
    """Features that make the log-odds exactly z (x * 1.0 + 0.0 is exact)."""
    return np.asarray(z, dtype=np.float64)[:, None], np.array([1.0]), 0.0


THRESHOLDS = np.array([-1e4, -1000.0, -746.0, -745.14, -745.13, -745.0, -709.0, -100.0, -36.0, -1.0,
                       -1e-300, 0.0, 1e-300, 1.0, 36.0, 88.7, 88.8, 700.0, 709.78, 709.782712893384,
                       709.7828, 710.0, 1000.0, 1e4, 1e300, -1e300])


def test_specified_values_and_no_floating_point_warning(backend_name):
    X, coef, b = _z_column(THRESHOLDS)
    in32 = (np.abs(THRESHOLDS) < 1e38) & ((np.abs(THRESHOLDS) > 1e-30) | (THRESHOLDS == 0))  # float32-exact
    with np.errstate(all="raise"):
        z = score(X, coef, b, output="log_odds", backend=backend_name)
        odds = score(X, coef, b, output="odds", backend=backend_name)
        proba = score(X, coef, b, output="proba", backend=backend_name)
        X32 = X[in32].astype(np.float32)
        odds32 = score(X32, coef, b, output="odds", backend=backend_name)
        proba32 = score(X32, coef, b, output="proba", backend=backend_name)
        log_odds32 = score(X32, coef, b, output="log_odds", backend=backend_name)
    np.testing.assert_array_equal(z, THRESHOLDS)
    assert odds.dtype == np.float64 and odds32.dtype == np.float64  # odds are float64 whatever X
    # exactly 0.0 for z < -745.13 (z <= -746 in particular), +inf for z > 709.78, finite between
    np.testing.assert_array_equal(odds[THRESHOLDS < EXP_UNDERFLOW_Z], 0.0)
    assert np.all(np.isposinf(odds[THRESHOLDS > EXP_OVERFLOW_Z]))
    mid = (THRESHOLDS >= EXP_UNDERFLOW_Z) & (THRESHOLDS <= EXP_OVERFLOW_Z)
    assert np.all(np.isfinite(odds[mid])) and np.all(odds[mid] > 0)
    np.testing.assert_allclose(odds[mid], np.exp(THRESHOLDS[mid]), rtol=4e-16)
    assert odds[THRESHOLDS == 709.782712893384][0] == np.exp(709.782712893384)  # largest finite
    # probability: in [0, 1], exactly 0/1 far out, symmetric
    assert np.all((proba >= 0) & (proba <= 1))
    assert proba[0] == 0.0 and proba[-3] == 1.0 and proba[THRESHOLDS == 0.0][0] == 0.5
    np.testing.assert_allclose(proba, sigmoid(THRESHOLDS), rtol=4e-16, atol=0)
    z32 = THRESHOLDS[in32].astype(np.float32).astype(np.float64)  # what the float32 features hold
    np.testing.assert_allclose(odds32, safe_exp(z32), rtol=4.5e-16, atol=0)  # libm vs numpy exp: 1 ulp
    np.testing.assert_array_equal(log_odds32, THRESHOLDS[in32].astype(np.float32))
    with np.errstate(under="ignore"):
        np.testing.assert_array_equal(proba32, proba[in32].astype(np.float32))


def test_math_spec_never_overflows():
    """The numpy specification: sigma and softplus are finite and correct for every finite z."""
    z = np.array([-np.finfo(float).max, -1e300, -1e4, -800.0, -745.2, -40.0, -1.0, -1e-320, 0.0,
                  1e-320, 1.0, 40.0, 745.2, 800.0, 1e4, 1e300, np.finfo(float).max])
    with np.errstate(all="raise"):
        s, sp_, e = sigmoid(z), softplus(z), safe_exp(z)
    assert np.all((s >= 0) & (s <= 1)) and np.all(np.isfinite(sp_)) and np.all(sp_ >= 0)
    np.testing.assert_array_equal(s[[0, 1, 2]], 0.0)
    np.testing.assert_array_equal(s[[-1, -2, -3]], 1.0)
    np.testing.assert_array_equal(sp_[z > 40], z[z > 40])  # softplus(z) = z to double precision
    np.testing.assert_allclose(sp_[np.abs(z) <= 40], np.log1p(np.exp(z[np.abs(z) <= 40])), rtol=1e-15)
    np.testing.assert_array_equal(e[z < EXP_UNDERFLOW_Z], 0.0)
    assert np.all(np.isposinf(e[z > EXP_OVERFLOW_Z]))
    assert np.isnan(safe_exp(np.nan)) and np.isnan(sigmoid(np.array([np.nan]))[0])


def test_extreme_coefficients_no_warning(compiled_backend_name, rng):
    """|z| up to ~1e4 and beyond, huge and tiny coefficients: agree with the reference, no FP flag."""
    X = rng.standard_normal((200, 9))
    for coef_scale in (1e-300, 1e-30, 1.0, 1e3, 1e150):
        coef = rng.standard_normal(9) * coef_scale
        for output in OUTPUTS:
            with np.errstate(all="raise"):
                check_against_reference(compiled_backend_name, X, coef, 0.0, output)
                check_against_reference(compiled_backend_name, X.astype(np.float32), coef, 0.0, output)


@pytest.mark.parametrize("output", OUTPUTS)
def test_nan_features_score_nan(compiled_backend_name, output):
    X = np.array([[1.0, np.nan], [0.5, 0.25]], dtype=np.float32)
    got = score(X, [1.0, 2.0], 0.0, output=output, backend=compiled_backend_name)
    assert np.isnan(got[0]) and np.isfinite(got[1])
    Xs = sp.csr_array(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    got = score(Xs, [1.0, 2.0], 0.0, output=output, backend=compiled_backend_name)
    assert np.isnan(got[0]) and np.isfinite(got[1])


# -------------------------------------------------------------- float32 accuracy (stated)

def test_float32_log_odds_bound(compiled_backend_name, rng):
    """Stated bound (README, "Dtype and numerical rules"): the log-odds of float32 features are within
        2^-24 scale                          rounding each x_j to float32 (|w_j (x_j - fl(x_j))|)
      + F32_SUM_RTOL scale + d F32_SUM_ATOL  the sum of the float32 features (the contract's bound)
      + 2^-24 |z| <= 2^-24 scale             rounding z to the float32 output
    of the float64 reference on the float64 features they were rounded from, scale = |b| + sum_j |w_j x_j|."""
    worst = 0.0
    for n, d in ((1000, 64), (500, 1), (300, 257)):
        X64 = rng.standard_normal((n, d)) * rng.lognormal(0, 2, size=d)
        coef = rng.standard_normal(d) * rng.lognormal(0, 2, size=d)
        b = float(rng.standard_normal() * 10)
        z64 = X64 @ coef + b
        scale = np.abs(X64) @ np.abs(coef) + abs(b)
        got = score(X64.astype(np.float32), coef, b, output="log_odds", backend=compiled_backend_name)
        assert got.dtype == np.float32
        err = np.abs(got.astype(np.float64) - z64)
        worst = max(worst, float((err / scale).max()))
        assert np.all(err <= (2.0 ** -23 + F32_SUM_RTOL) * scale + d * F32_SUM_ATOL), (err / scale).max()
        # float32 features, float64 result: no output rounding
        got64 = score(X64.astype(np.float32), coef, b, output="log_odds", dtype=np.float64, backend=compiled_backend_name)
        assert np.all(np.abs(got64 - z64) <= (2.0 ** -24 + F32_SUM_RTOL) * scale + d * F32_SUM_ATOL)
    assert worst > 0  # the float32 rounding is real: this test can see an error


def _exact_z(X, coef, b):
    """The exactly rounded log-odds of the features as given (math.fsum: no summation error)."""
    X64 = np.asarray(X, dtype=np.float64)
    return np.array([math.fsum(list(X64[i] * coef) + [b]) for i in range(X64.shape[0])])


def _assert_f32_bound(X, coef, b, backend):
    """float64 log-odds of float32 X by every entry point within the contract's bound of the exact
    sum, and the dense float32 entry points bitwise equal (one rule for every caller)."""
    got = score(X, coef, b, output="log_odds", dtype=np.float64, n_threads=1, backend=backend)
    z = _exact_z(X, coef, b)
    scale = np.abs(X.astype(np.float64)) @ np.abs(coef) + abs(b)
    err = np.abs(got - z)
    tol = F32_SUM_RTOL * scale + coef.shape[0] * F32_SUM_ATOL
    assert np.all(err <= tol), (float(np.max(err / np.maximum(scale, 1e-300))), X.shape)
    scorer = fastwlr.Scorer(coef, b, output="log_odds", dtype=np.float64, backend=backend)
    np.testing.assert_array_equal(scorer(X).view(np.uint64), got.view(np.uint64))
    if X.shape[0]:
        idx, val = fastwlr.score_topk(X, coef, b, k=X.shape[0], output="odds", backend=backend)
        np.testing.assert_array_equal(val[0], score(X, coef, b, output="odds", backend=backend)[idx[0]])
    return got, z


@st.composite
def f32_cases(draw):
    """Float32 rows built to stress a float32 sum: cancellation (terms of both signs that nearly
    cancel), magnitudes spread over the float32 range, d not a multiple of the lanes."""
    n = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 9]))
    d = draw(st.sampled_from([1, 2, 7, 8, 15, 16, 17, 31, 33, 64, 127, 128, 129, 255, 257, 300]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    kind = draw(st.sampled_from(["normal", "cancel", "spread", "tiny", "big"]))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    coef = rng.standard_normal(d)
    if kind == "cancel":   # pairs x w and -x w (up to a small residue): the sum is far below its scale
        half = d // 2
        X[:, half:2 * half] = X[:, :half] * (1 + rng.standard_normal((n, half)) * 1e-6)
        coef[half:2 * half] = -coef[:half]
    elif kind == "spread":
        X *= 10.0 ** rng.uniform(-30, 30, size=(n, d))
        coef *= 10.0 ** rng.uniform(-30, 30, size=d)
    elif kind == "tiny":   # products at and below float32's normal range (underflow)
        X *= 1e-20
        coef *= 10.0 ** rng.uniform(-37, -20, size=d)
    elif kind == "big":    # products beyond float32's range: the row is summed again in float64
        X *= 1e20
        coef *= 10.0 ** rng.uniform(15, 38, size=d)
    return X.astype(np.float32), coef, float(rng.standard_normal() * draw(st.sampled_from([0.0, 1.0, 1e6])))


@HYP
@given(case=f32_cases())
def test_float32_sum_bound_adversarial(backend_name, case):
    X, coef, b = case
    with np.errstate(all="raise"):
        _assert_f32_bound(X, coef, b, backend_name)


def test_float32_path_is_taken_and_its_exceptions(compiled_backend_name):
    """Pins which path a float32 row takes: a float32 sum loses 2^-25 against 1 in one lane (columns 0
    and 16), a float64 sum keeps it. Coefficients beyond float32's normal range (> FLT_MAX, or
    subnormal in float32) send the model to the float64 path; a row whose float32 products overflow
    is summed again in float64, so no inf appears."""
    be = compiled_backend_name
    X = np.zeros((5, F32_MIN_D + 1), dtype=np.float32)
    X[:, 0], X[:, 16] = 1.0, 2.0 ** -25
    coef = np.ones(F32_MIN_D + 1)
    # narrower rows are summed in float64
    got, z = _assert_f32_bound(np.ascontiguousarray(X[:, :F32_MIN_D - 1]), coef[:F32_MIN_D - 1], 0.0, be)
    assert np.all(got == 1.0 + 2.0 ** -25)
    f32_sum = be == "cython"   # the numba backend sums float32 rows in float64 (docs/kernels.md)
    expect = 1.0 if f32_sum else 1.0 + 2.0 ** -25
    got, z = _assert_f32_bound(X, coef, 0.0, be)
    assert np.all(got == expect) and np.all(z == 1.0 + 2.0 ** -25)
    for extreme in (1e39, 1e-39, -2e38 * 2):   # |w| > FLT_MAX, float32-subnormal: float64 path for the model
        c = coef.copy()
        c[5] = extreme   # X[:, 5] == 0: the value does not change z
        got, z = _assert_f32_bound(X, c, 0.0, be)
        assert np.all(got == 1.0 + 2.0 ** -25), extreme
    c = coef.copy()
    c[3] = 3e38          # normal in float32: the float32 path is kept...
    got, _ = _assert_f32_bound(X, c, 0.0, be)
    assert np.all(got == expect)
    X2 = X.copy()
    X2[2, 3] = 1e10      # ...but row 2's product 3e48 overflows float32: that row is summed in float64
    got, z = _assert_f32_bound(X2, c, 0.0, be)
    assert np.isfinite(got).all() and got[2] == z[2] and np.all(np.delete(got, 2) == expect)


@pytest.mark.requires_backend("cython")
def test_f32_chunk_is_the_contracts():
    from fastwlr.backends.cython_core import _scoring
    assert _scoring.F32_CHUNK == F32_CHUNK and _scoring.F32_MIN_D == F32_MIN_D


def _placed(X, offset):
    """A C-contiguous copy of X whose first element lies ``offset`` elements past a 64-byte line."""
    buf = np.zeros(X.nbytes + 128, dtype=np.uint8)
    start = (-buf.ctypes.data) % 64 + offset * X.itemsize
    placed = buf[start:start + X.nbytes].view(X.dtype).reshape(X.shape)
    placed[...] = X
    return placed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 7, 8, 9, 15, 16, 17, 33, 63, 64, 65, 100, 127, 128, 129, 144, 255, 256, 257, 272])
def test_row_bits_do_not_depend_on_the_rows_around_it(compiled_backend_name, dtype, d, rng):
    # The dense kernels take rows eight, four or one at a time (with 512-bit registers where the
    # build has them): each grouping must give every row the same bits, at every width around the
    # lane (8, 16), chunk (128) and float32-path (64) boundaries, and a row with an overflowing
    # float32 product inside a group of eight or of four must be the one summed again, alone.
    X = rng.standard_normal((29, d)).astype(dtype)
    X[rng.random(X.shape) < 0.1] *= 1e3
    if dtype == np.float32:
        X[11, d // 2] = 3e38   # * 7: beyond float32's range in the float32 path
        X[25, d // 2] = 3e38   # rows 24-27 of the 29: a group of four
    coef = rng.standard_normal(d)
    coef[d // 2] = 7.0
    whole = score(X, coef, 0.25, output="log_odds", n_threads=1, backend=compiled_backend_name)
    alone = np.concatenate([score(X[i:i + 1], coef, 0.25, output="log_odds", backend=compiled_backend_name)
                            for i in range(len(X))])
    shifted = score(X[3:], coef, 0.25, output="log_odds", n_threads=1, backend=compiled_backend_name)
    np.testing.assert_array_equal(whole.view(np.uint8), alone.view(np.uint8))
    np.testing.assert_array_equal(whole[3:].view(np.uint8), shifted.view(np.uint8))
    # Rows starting anywhere in a cache line (float32 rows of a multiple of 16 columns that do not
    # start on one are read line by line with the coefficients shifted instead): the same bits. The
    # entries' exponents are spread, so that lanes summed in another order would round otherwise.
    Xs = np.where(np.abs(X) < 1e30, X * 2.0 ** rng.integers(-40, 40, X.shape), X).astype(dtype)
    alone = np.concatenate([score(Xs[i:i + 1], coef, 0.25, output="log_odds", dtype=np.float64,
                                  backend=compiled_backend_name) for i in range(len(Xs))])
    for offset in range(64 // X.itemsize):
        placed = _placed(Xs, offset)
        assert placed.ctypes.data % 64 == offset * X.itemsize
        got = score(placed, coef, 0.25, output="log_odds", dtype=np.float64, n_threads=1,
                    backend=compiled_backend_name)
        np.testing.assert_array_equal(got.view(np.uint8), alone.view(np.uint8), err_msg=f"offset {offset}")
        index, values = fastwlr.score_topk(placed, coef, 0.25, k=len(X), output="log_odds",
                                           backend=compiled_backend_name)
        with np.errstate(over="ignore"):   # row 11's log-odds are beyond float32: inf, as the kernel's
            expect = alone[index[0]].astype(values.dtype)
        np.testing.assert_array_equal(values[0].view(np.uint8), expect.view(np.uint8))
    whole64 = score(X, coef, 0.25, output="log_odds", dtype=np.float64, backend=compiled_backend_name)
    ref, slack = reference_z_and_slack(X, coef, 0.25)
    assert np.all(np.isfinite(whole64)) and np.all(np.abs(whole64 - ref) <= slack)
    index, values = fastwlr.score_topk(X, coef, 0.25, k=len(X), output="log_odds", backend=compiled_backend_name)
    np.testing.assert_array_equal(values[0].view(np.uint8), whole[index[0]].view(np.uint8))


# ----------------------------------------------------------------- threads and out=

@pytest.mark.parametrize("output", OUTPUTS)
def test_threads_bitwise_identical(compiled_backend_name, output, rng):
    # big enough that the kernels really go parallel (> 2^15 multiply-adds)
    Xd = rng.standard_normal((6001, 33)).astype(np.float32)
    Xs = random_csr(rng, 6001, 5000, 0.004, np.float64, np.int64)
    coef_d, coef_s = rng.standard_normal(33), rng.standard_normal(5000)
    for X, coef in ((Xd, coef_d), (Xs, coef_s), (Xd.astype(np.float64), coef_d)):
        one = score(X, coef, 0.3, output=output, n_threads=1, backend=compiled_backend_name)
        two = score(X, coef, 0.3, output=output, n_threads=2, backend=compiled_backend_name)
        three = score(X, coef, 0.3, output=output, n_threads=3, backend=compiled_backend_name)
        np.testing.assert_array_equal(one.view(np.uint8), two.view(np.uint8))
        np.testing.assert_array_equal(one.view(np.uint8), three.view(np.uint8))


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True])
def test_out_filled_in_place_and_nothing_else_modified(compiled_backend_name, out_dtype, sparse, rng):
    X = random_csr(rng, 50, 8, 0.4, np.float32, np.int32) if sparse else rng.standard_normal((50, 8))
    coef = rng.standard_normal(8)
    X_copy = X.copy()
    coef_copy = coef.copy()
    out = np.full(50, -12345.0, dtype=out_dtype)
    res = score(X, coef, 0.5, output="proba", out=out, backend=compiled_backend_name)
    assert res is out
    assert not np.any(out == -12345.0)
    z, slack = reference_z_and_slack(X, coef, 0.5)
    assert_scores(out, z, slack, "proba", out_dtype)
    np.testing.assert_array_equal(coef, coef_copy)
    if sparse:
        np.testing.assert_array_equal(X.toarray(), X_copy.toarray())
    else:
        np.testing.assert_array_equal(X, X_copy)
    # a larger buffer's slice: only the slice is written
    big = np.zeros(60, dtype=out_dtype)
    score(X, coef, 0.5, output="proba", out=big[5:55], backend=compiled_backend_name)
    np.testing.assert_array_equal(big[5:55], out)
    assert np.all(big[:5] == 0) and np.all(big[55:] == 0)


# ----------------------------------------------------------------------------- dtype rule

@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_dtype_rule(backend):
    X32 = np.ones((3, 2), dtype=np.float32)
    assert score(X32, [1, 2], output="log_odds", backend=backend).dtype == np.float32
    assert score(X32, [1, 2], output="proba", backend=backend).dtype == np.float32
    assert score(X32, [1, 2], output="odds", backend=backend).dtype == np.float64
    assert score(X32.astype(np.float64), [1, 2], output="log_odds", backend=backend).dtype == np.float64
    assert score(np.ones((3, 2), dtype=np.int64), [1, 2], output="log_odds", backend=backend).dtype == np.float64
    assert score(np.ones((3, 2), dtype=np.float16), [1, 2], output="log_odds", backend=backend).dtype == np.float32
    assert score(X32, [1, 2], output="odds", dtype=np.float32, backend=backend).dtype == np.float32
    assert score(X32, [1, 2], output="log_odds", dtype="float64", backend=backend).dtype == np.float64
    assert score(sp.csr_array(X32), [1, 2], output="proba", backend=backend).dtype == np.float32
    np.testing.assert_array_equal(score(X32, [1, 2], output="log_odds", backend=backend), 3.0)


def test_default_backend_is_compiled():
    """``score`` without ``backend=`` runs compiled code when it is built (no silent fallback)."""
    from fastwlr._config import get_backend
    assert get_backend().name in fastwlr.available_backends()
    if "cython" in fastwlr.available_backends():
        assert get_backend().name == "cython"


def test_list_input_and_sklearn_coef_shape(compiled_backend_name):
    got = score([[1.0, 2.0], [3.0, 4.0]], np.array([[0.5, -0.25]]), 1.0, output="log_odds",
                backend=compiled_backend_name)
    np.testing.assert_array_equal(got, [1.0, 1.5])


@pytest.mark.parametrize("sparse", [False, True])
def test_score_and_fused_topk_agree_bitwise(compiled_backend_name, sparse, rng):
    """The scoring kernels prefetch (dense: X ahead, CSR: coef ahead) but must sum exactly as
    dot_dense / dot_csr, which the fused top-k kernel uses: the same log-odds to the last bit."""
    from fastwlr.topk import score_topk
    n = 3000
    if sparse:
        X = random_csr(rng, n, 4000, 0.01, np.float64, np.int32)
        coef = rng.standard_normal(4000)
    else:
        X = rng.standard_normal((n, 37))  # float64 features: log-odds returned in float64 by both
        coef = rng.standard_normal(37)
    z = score(X, coef, 0.3, output="log_odds", backend=compiled_backend_name)
    offsets = np.arange(0, n + 1, 10)
    idx, val = score_topk(X, coef, 0.3, 10, offsets=offsets, output="log_odds", backend=compiled_backend_name)
    np.testing.assert_array_equal(val.ravel().view(np.uint64), z[idx.ravel()].view(np.uint64))


@pytest.mark.parametrize("which", ["coef", "X_tail", "X_csr_data"])
def test_out_overlapping_an_input_is_rejected(backend_name, which):
    # the kernels read X and coef while writing out: an out that shares memory with either gave
    # silently wrong results that depended on the thread count
    rng = np.random.default_rng(3)
    n = d = 64
    X = rng.standard_normal((n, d))
    c = rng.standard_normal(d)
    if which == "coef":
        args, out = (X, c), c
    elif which == "X_tail":
        args, out = (X, c), X.reshape(-1)[-n:]
    else:
        Xs = sp.csr_matrix(X)
        args, out = (Xs, c), Xs.data[:n]
    before = [a.copy() for a in args]
    with pytest.raises(ValueError, match="out shares memory with"):
        score(*args, output="log_odds", out=out, backend=backend_name)
    for a, b in zip(args, before):
        np.testing.assert_array_equal(a.toarray() if sp.issparse(a) else a, b.toarray() if sp.issparse(b) else b)
    # a separate buffer is fine, and so is one that overlaps only a copy validation made
    fresh = np.empty(n)
    np.testing.assert_array_equal(score(*before, output="log_odds", out=fresh, backend=backend_name),
                                  score(*before, output="log_odds", backend=backend_name))


def test_score_argument_errors_name_the_argument():
    # out=[0.]*4 with dtype= raised AttributeError ('list' has no dtype); an intercept of 10**400
    # raised OverflowError from float()
    X = np.ones((4, 1))
    with pytest.raises(TypeError, match="out must be a float32 or float64 numpy array, got list"):
        score(X, [1.0], out=[0.0] * 4, dtype=np.float64)
    with pytest.raises(ValueError, match="intercept must be a finite float64"):
        score(X, [1.0], 10**400)


@pytest.mark.parametrize("sparse", [False, True])
def test_overflowing_dot_product_is_named_not_silent(backend_name, sparse):
    # 1e308 * 10 - 1e308 * 10 = inf - inf: score returned NaN silently and score_topk blamed "a NaN
    # feature" that does not exist
    # (8 columns: every backend sums the two products in different partial sums, inf + -inf)
    X = np.array([[1.0] * 8, [1e308] * 8])
    coef = [10.0, -10.0] + [0.0] * 6
    Xin = sp.csr_matrix(X) if sparse else X
    with pytest.raises(ValueError, match="row 1 of X has NaN log-odds although its features are finite: "
                                         "x . coef overflows"):
        score(Xin, coef, output="log_odds", backend=backend_name)
    with pytest.raises(ValueError, match="row 1 of X .*overflows"):
        fastwlr.score_topk(Xin, coef, 0.0, 1, backend=backend_name)
    # a NaN feature still scores NaN (score) and is named as such (score_topk)
    Xn = np.array([[1.0, np.nan], [1.0, 2.0]])
    Xn_in = sp.csr_matrix(Xn) if sparse else Xn
    assert np.isnan(score(Xn_in, [10.0, -10.0], output="log_odds", backend=backend_name)[0])
    with pytest.raises(ValueError, match="a NaN feature"):
        fastwlr.score_topk(Xn_in, [10.0, -10.0], 0.0, 1, backend=backend_name)


@pytest.mark.parametrize("sparse", [False, True])
def test_big_endian_float32_keeps_float32(backend_name, sparse):
    # ">f4" was widened to float64, against "float32 in, float32 out"
    rng = np.random.default_rng(4)
    X = rng.standard_normal((20, 3)).astype(np.float32)
    Xb = X.astype(">f4")
    if sparse:
        X, Xb = sp.csr_matrix(X), sp.csr_matrix(X)
        Xb.data = Xb.data.astype(">f4")  # scipy builds no big-endian matrix, but holds one
    coef = rng.standard_normal(3)
    got = score(Xb, coef, output="log_odds", backend=backend_name)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, score(X, coef, output="log_odds", backend=backend_name))
    idx, val = fastwlr.score_topk(Xb, coef, 0.0, 2, output="proba", backend=backend_name)
    assert val.dtype == np.float32
    assert fastwlr.topk(np.arange(4.0, dtype=">f4"), 2, backend=backend_name)[1].dtype == np.float32


@pytest.mark.parametrize("sparse", [False, True])
def test_reference_scoring_raises_no_floating_point_warning(sparse):
    # the reference backend emitted "RuntimeWarning: overflow encountered in matmul" for an
    # overflowing (legitimately inf) score, although the README promises no floating-point warnings
    import warnings
    X = np.array([[1e308, 1.0], [1.0, 2.0]])
    Xin = sp.csr_matrix(X) if sparse else X
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = score(Xin, [10.0, 1.0], output="log_odds", backend="reference")
        fastwlr.score_topk(Xin, [10.0, 1.0], 0.0, 1, backend="reference")
    assert z[0] == np.inf and z[1] == 12.0


# ------------------------------------------------ the vectorised transform and the fast paths

def test_vectorised_exp_and_sigmoid_across_the_range(compiled_backend_name, rng):
    """The compiled kernels' branch-free exp (blocks of four) and its scalar twin: within 1 ulp of
    libm over the whole range, the documented limits outside it, identical for any row position."""
    z = np.concatenate([np.linspace(-760.0, 720.0, 100_003), rng.uniform(-40, 40, 20_000),
                        np.nextafter(-708.0, [-np.inf, np.inf]), np.nextafter(709.0, [-np.inf, np.inf]),
                        [-708.0, 709.0, EXP_OVERFLOW_Z, EXP_UNDERFLOW_Z, -0.0, 1e-300, -1e-300, np.nan]])
    X, coef, b = _z_column(z)
    with np.errstate(all="raise"):
        odds = score(X, coef, b, output="odds", backend=compiled_backend_name)
        proba = score(X, coef, b, output="proba", backend=compiled_backend_name)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(odds, safe_exp(z), rtol=2.3e-16, atol=0)   # ~1 ulp
        np.testing.assert_allclose(proba, sigmoid(z), rtol=4.5e-16, atol=0)
    # a single row (the scalar twin) gives the bits of the same z inside a block
    for i in rng.choice(z.shape[0], 200, replace=False):
        one = score(X[i:i + 1], coef, b, output="odds", backend=compiled_backend_name)
        np.testing.assert_array_equal(one, odds[i:i + 1])


@st.composite
def fast_path_problem(draw):
    n = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257, 300, 513]))
    d = draw(st.integers(0, 40))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) * draw(st.sampled_from([1.0, 30.0, 1e3]))).astype(dtype)
    if n and d and draw(st.booleans()):
        X[rng.integers(0, n, 1 + n // 50), rng.integers(0, d, 1 + n // 50)] = np.nan
    coef = rng.standard_normal(d) * draw(st.sampled_from([0.1, 1.0, 10.0]))
    intercept = draw(st.one_of(st.floats(-800, 800, allow_nan=False), st.integers(-5, 5)))
    return X, coef, intercept


@HYP
@given(problem=fast_path_problem(), output=st.sampled_from(OUTPUTS), n_threads=st.sampled_from([None, 1, 2]))
def test_fast_paths_give_the_full_paths_bits(compiled_backend_name, problem, output, n_threads):
    """fastwlr.score's and Scorer's compiled paths for the common case return what the full path
    (taken whenever out= is given) returns, to the bit, NaN rows included."""
    X, coef, intercept = problem
    dtype = fastwlr.scoring.result_dtype(X.dtype, output)
    full = score(X, coef, intercept, output=output, backend=compiled_backend_name, n_threads=n_threads,
                 out=np.empty(X.shape[0], dtype))
    with fastwlr.use_backend(compiled_backend_name):
        fast = score(X, coef, intercept, output=output)
    prepared = fastwlr.Scorer(coef, intercept, output=output, n_threads=n_threads, backend=compiled_backend_name)(X)
    for got in (fast, prepared):
        assert got.dtype == dtype and got.shape == full.shape
        np.testing.assert_array_equal(got, full)


def test_fast_path_declines_what_it_does_not_check(compiled_backend_name):
    """Inputs outside the common case reach the full path and its errors (the fast path decides no
    error message): a subclass, a wrong width, a non-finite coefficient or intercept, a bool."""
    X = np.ones((3, 2))
    with fastwlr.use_backend(compiled_backend_name):
        with pytest.raises(ValueError, match="coef"):
            score(X, np.array([1.0, np.nan]))
        with pytest.raises(ValueError, match="coef"):
            score(X, np.array([1.0, np.inf]))
        with pytest.raises(ValueError, match="intercept"):
            score(X, np.ones(2), np.inf)
        with pytest.raises(ValueError, match="features|coef"):
            score(X, np.ones(3))
        with pytest.raises(ValueError, match="inf"):
            score(np.array([[np.inf, 1.0]]), np.ones(2))
        np.testing.assert_array_equal(score(np.ma.masked_array(X), np.ones(2), 1, output="log_odds"), [3.0] * 3)
        scorer = fastwlr.Scorer(np.ones(2), 0.0)
        with pytest.raises(ValueError, match="feature"):
            scorer(np.ones((3, 3)))
        with pytest.raises(ValueError, match="inf"):
            scorer(np.array([[np.inf, 1.0]]))


@pytest.mark.parametrize("layout", ["F", "strided", "bigendian", "unaligned", "readonly", "subclass"])
def test_fast_paths_on_other_layouts(compiled_backend_name, layout, rng):
    """Layouts the fast path declines (or, read-only, takes) score as the full path scores them."""
    X = rng.standard_normal((9, 5))
    coef = rng.standard_normal(5)
    if layout == "F":
        Y = np.asfortranarray(X)
    elif layout == "strided":
        Y = np.repeat(X, 2, axis=0)[::2]
    elif layout == "bigendian":
        Y = X.astype(">f8")
    elif layout == "unaligned":
        Y = np.frombuffer(b"\0" + X.tobytes(), dtype=np.float64, offset=1).reshape(X.shape)
    elif layout == "readonly":
        Y = X.copy()
        Y.flags.writeable = False
    else:
        Y = X.view(np.matrix)
    expected = score(X, coef, 0.5, backend=compiled_backend_name, out=np.empty(9))
    with fastwlr.use_backend(compiled_backend_name):
        np.testing.assert_array_equal(score(Y, coef, 0.5), expected)
        np.testing.assert_array_equal(fastwlr.Scorer(coef, 0.5)(Y), expected)
