"""topk / score_topk: every backend against the numpy reference, the reference against a brute-force
sort, adversarial groups (ties, +-inf, empty, tiny, huge), errors, thread-count independence."""
import importlib

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings, strategies as st

import fastwlr
from fastwlr import score, score_topk, topk
from fastwlr.backends._contract import F32_SUM_ATOL, F32_SUM_RTOL
from fuzzing import brute_topk  # noqa: E402  (the specification in a few lines: sort each group by (-score, index))
ref = importlib.import_module("fastwlr.backends.reference.topk")  # the module (the package re-exports the function)

# the backend fixture is a plain string: sharing it across examples is safe
settings.register_profile("fastwlr_topk", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_same(got, expected, exact=True):
    gi, gv = got
    ei, ev = expected
    assert gi.dtype == np.int64 and gi.shape == ei.shape
    np.testing.assert_array_equal(gi, ei)
    assert gv.shape == ev.shape
    if exact:
        np.testing.assert_array_equal(gv, ev)
    else:
        np.testing.assert_allclose(gv, ev, rtol=1e-12, atol=0)


def ragged_offsets(rng, n_groups, max_size, dtype=np.int64):
    sizes = rng.integers(0, max_size + 1, size=n_groups)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(dtype)


# ----------------------------------------------------------------------------- the reference itself

@settings(settings.get_profile("fastwlr_topk"))
@given(sizes=st.lists(st.integers(0, 12), min_size=1, max_size=8), k=st.integers(1, 15),
       values=st.sampled_from([[0.0, 1.0], [-np.inf, 0.0, np.inf], [-0.0, 0.0, 2.5], [1.0, 2.0, 3.0, 4.0, 5.0]]),
       seed=st.integers(0, 2**16), use_exclude=st.booleans())
def test_reference_matches_brute_force(sizes, k, values, seed, use_exclude):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    scores = rng.choice(np.array(values), size=int(offsets[-1]))
    exclude = rng.random(scores.shape[0]) < 0.3 if use_exclude else None
    assert_same(ref.topk_loop(scores, offsets, k, exclude), brute_topk(scores, offsets, k, exclude))
    if exclude is None:
        assert_same(ref.topk(scores, offsets, k)[:2], brute_topk(scores, offsets, k))


@pytest.mark.parametrize("size", [0, 1, 3, 7])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_reference_equal_groups_form(rng, size, k):
    G = 6
    offsets = np.arange(G + 1, dtype=np.int64) * size
    scores = rng.integers(0, 3, size=G * size).astype(np.float64)  # many ties
    assert_same(ref.topk_equal(scores, G, size, k), brute_topk(scores, offsets, k))
    assert_same(ref.topk_equal(scores, G, size, k), ref.topk_loop(scores, offsets, k))


# ----------------------------------------------------------------------------- topk on every backend

ADVERSARIAL = {
    "k larger than every group": (np.arange(10.0), [0, 3, 5, 10], 8),
    "empty groups": (np.array([3.0, 1.0, 2.0, 5.0]), [0, 0, 2, 2, 2, 4, 4], 2),
    "all equal": (np.full(50, 7.5), [0, 20, 50], 6),
    "+-inf": (np.array([-np.inf, 1.0, np.inf, -np.inf, np.inf, 0.0, -np.inf, -np.inf]), [0, 5, 8], 4),
    "only -inf beats padding": (np.full(3, -np.inf), [0, 3], 5),
    "signed zeros tie": (np.array([0.0, -0.0, 0.0, -0.0]), [0, 4], 3),
    "one group": (np.array([0.3, 0.1, 0.3, 0.9, 0.1]), None, 3),
    "1-element groups": (np.array([4.0, -1.0, 2.0]), [0, 1, 2, 3], 2),
    "no candidates at all": (np.empty(0), [0, 0, 0], 3),
    "no groups": (np.empty(0), [0], 3),
    "k = 1": (np.array([1.0, 3.0, 3.0, 2.0]), [0, 4], 1),
}


@pytest.mark.parametrize("case", list(ADVERSARIAL), ids=list(ADVERSARIAL))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_topk_adversarial(backend_name, case, dtype):
    scores, offsets, k = ADVERSARIAL[case]
    scores = scores.astype(dtype)
    offs = [0, scores.shape[0]] if offsets is None else offsets
    got = topk(scores, k, offsets=offsets, backend=backend_name, n_threads=1)
    assert got[1].dtype == dtype
    assert_same(got, brute_topk(scores, offs, k))
    # -0.0 and 0.0 tie: the order is by index, and the values are the stored ones (sign kept)
    np.testing.assert_array_equal(np.signbit(got[1]), np.signbit(brute_topk(scores, offs, k)[1]))


@pytest.mark.parametrize("offset_dtype", [np.int32, np.int64, np.uint32])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_topk_random_ragged(backend_name, rng, offset_dtype, k):
    offsets = ragged_offsets(rng, 300, 60, offset_dtype)
    scores = rng.standard_normal(int(offsets[-1]))
    expected = ref.topk_loop(scores, offsets.astype(np.int64), k)
    for n_threads in (1, 2, 3):
        assert_same(topk(scores, k, offsets=offsets, backend=backend_name, n_threads=n_threads), expected)


def test_topk_ties_from_few_values(backend_name, rng):
    offsets = ragged_offsets(rng, 200, 40)
    scores = rng.integers(-2, 3, size=int(offsets[-1])).astype(np.float32)
    assert_same(topk(scores, 6, offsets=offsets, backend=backend_name, n_threads=2),
                brute_topk(scores, offsets, 6))


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_topk_big_group_split_across_threads(backend_name, rng, n_threads):
    # groups of >= 2^16 candidates are cut into chunks whose winners are merged; ties across chunk
    # boundaries must still go to the lower index
    n = 300_000
    scores = rng.integers(0, 1000, size=n).astype(np.float64)  # ~300 copies of each value
    offsets = np.array([0, 5, 200_000, 200_000, n], dtype=np.int64)
    expected = ref.topk_loop(scores, offsets, 100)
    assert_same(topk(scores, 100, offsets=offsets, backend=backend_name, n_threads=n_threads), expected)
    # ascending input: every candidate enters the selection (the selection's worst case)
    asc = np.arange(n, dtype=np.float64)
    assert_same(topk(asc, 50, backend=backend_name, n_threads=n_threads), (np.arange(n - 1, n - 51, -1)[None],
                                                                              asc[n - 1:n - 51:-1][None]))


def test_topk_huge_k_only_costs_its_output(backend_name):
    # heaps are sized by the largest group, not k: 64 threads x k = 10^6 would be 1 GB of scratch
    idx, val = topk(np.arange(5.0), 10**6, offsets=[0, 2, 5], backend=backend_name, n_threads=64)
    assert idx.shape == (2, 10**6) and idx[:, :4].tolist() == [[1, 0, -1, -1], [4, 3, 2, -1]]
    assert np.isneginf(val[:, 3:]).all()


def test_topk_input_dtypes_and_layouts(backend_name):
    ints = np.array([3, 1, 2, 3], dtype=np.int16)
    idx, val = topk(ints, 2, backend=backend_name)
    assert val.dtype == np.float64 and idx.tolist() == [[0, 3]] and val.tolist() == [[3.0, 3.0]]
    strided = np.arange(20.0)[::-2]  # a non-contiguous view is copied, not misread
    idx, val = topk(strided, 3, backend=backend_name)
    assert val.tolist() == [[19.0, 17.0, 15.0]] and idx.tolist() == [[0, 1, 2]]
    big_endian = np.array([1.0, 5.0, 2.0], dtype=">f8")
    assert topk(big_endian, 1, backend=backend_name)[0].tolist() == [[1]]
    assert topk([0.5, 2.0], 1, backend=backend_name)[1].tolist() == [[2.0]]  # lists too


def test_topk_does_not_modify_inputs(backend_name, rng):
    scores = rng.standard_normal(100)
    offsets = np.array([0, 40, 100], dtype=np.int32)
    s0, o0 = scores.copy(), offsets.copy()
    topk(scores, 5, offsets=offsets, backend=backend_name)
    np.testing.assert_array_equal(scores, s0)
    np.testing.assert_array_equal(offsets, o0)


@settings(settings.get_profile("fastwlr_topk"))
@given(sizes=st.lists(st.integers(0, 30), min_size=1, max_size=10), k=st.integers(1, 12),
       seed=st.integers(0, 2**16), pool=st.sampled_from(["normal", "few", "inf"]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_topk_property(compiled_backend_name, sizes, k, seed, pool, dtype):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(offsets[-1])
    if pool == "normal":
        scores = rng.standard_normal(n)
    elif pool == "few":
        scores = rng.integers(0, 3, size=n).astype(float)
    else:
        scores = rng.choice([-np.inf, -1.0, 0.0, np.inf], size=n)
    scores = scores.astype(dtype)
    assert_same(topk(scores, k, offsets=offsets, backend=compiled_backend_name, n_threads=2),
                ref.topk(scores, offsets, k)[:2])


# ----------------------------------------------------------------------------- topk errors

def test_topk_nan_names_the_index(backend_name):
    scores = np.array([1.0, 2.0, np.nan, 3.0, np.nan])
    with pytest.raises(ValueError, match=r"scores\[2\] is NaN"):
        topk(scores, 2, offsets=[0, 2, 5], backend=backend_name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 3])
def test_topk_nan_after_the_heap_is_full_is_found(backend_name, rng, dtype, k):
    # late in a group the compiled scan tests blocks of scores against the root at once: a NaN among
    # scores that all lose must still stop the ranking, and the lowest NaN index is the one named
    scores = (rng.random(400) - 10.0).astype(dtype)       # all far below the first values
    scores[:5] = 100.0
    scores[[237, 333]] = np.nan
    with pytest.raises(ValueError, match=r"scores\[237\] is NaN"):
        topk(scores, k, offsets=[0, 200, 400], backend=backend_name)
    with pytest.raises(ValueError, match=r"scores\[237\] is NaN"):
        topk(scores, k, backend=backend_name, n_threads=2)


@pytest.mark.parametrize("bad_k, err", [(0, ValueError), (-3, ValueError), (None, TypeError), (2.0, TypeError),
                                        (True, TypeError), ("3", TypeError)])
def test_topk_bad_k(backend_name, bad_k, err):
    with pytest.raises(err, match="k must be"):
        topk(np.arange(5.0), bad_k, backend=backend_name)


@pytest.mark.parametrize("offsets, err, match", [
    ([0, 3, 2, 5], ValueError, "non-decreasing"),
    ([0, 3, 6], ValueError, "end at n = 5"),
    ([1, 5], ValueError, "start at 0"),
    ([0, -1, 5], ValueError, "non-decreasing"),
    ([0.0, 5.0], TypeError, "integers"),
    (np.array([], dtype=np.int64), ValueError, "at least one"),
    ([[0, 5]], ValueError, "1-D"),
])
def test_topk_bad_offsets(backend_name, offsets, err, match):
    with pytest.raises(err, match=match):
        topk(np.arange(5.0), 2, offsets=offsets, backend=backend_name)


def test_topk_bad_scores():
    with pytest.raises(ValueError, match="1-D"):
        topk(np.zeros((3, 2)), 1)
    with pytest.raises(TypeError, match="real numbers"):
        topk(np.array(["a", "b"]), 1)
    with pytest.raises(TypeError, match="real numbers"):
        topk(np.array([1 + 2j]), 1)


# ----------------------------------------------------------------------------- score_topk

def integer_problem(rng, n_groups=120, max_size=40, d=6, dtype=np.float64):
    """Small-integer features and half-integer coefficients: every dot product is exact in any
    summation order, so all backends see bitwise-equal log-odds and many exact ties."""
    offsets = ragged_offsets(rng, n_groups, max_size)
    n = int(offsets[-1])
    X = rng.integers(-2, 3, size=(n, d)).astype(dtype)
    X[rng.random((n, d)) < 0.4] = 0.0
    coef = rng.integers(-2, 3, size=d) / 2.0
    return X, coef, 0.5, offsets


@pytest.mark.parametrize("output", ["odds", "log_odds", "proba"])
@pytest.mark.parametrize("layout", ["dense64", "dense32", "csr32", "csr64"])
@pytest.mark.parametrize("use_exclude", [False, True])
def test_score_topk_matches_reference_with_ties(backend_name, rng, output, layout, use_exclude):
    X, coef, b, offsets = integer_problem(rng, dtype=np.float32 if layout == "dense32" else np.float64)
    n = X.shape[0]
    exclude = rng.random(n) < 0.25 if use_exclude else None
    if layout.startswith("csr"):
        Xin = sp.csr_matrix(X)
        Xin.indices = Xin.indices.astype(np.int32 if layout == "csr32" else np.int64)
        Xin.indptr = Xin.indptr.astype(Xin.indices.dtype)
    else:
        Xin = X
    k = 7
    z = X.astype(np.float64) @ coef + b
    exp_idx, _ = brute_topk(z, offsets, k, exclude)
    idx, val = score_topk(Xin, coef, b, k, offsets=offsets, output=output, exclude=exclude,
                          backend=backend_name, n_threads=2)
    np.testing.assert_array_equal(idx, exp_idx)
    expected_dtype = np.float64 if output == "odds" else X.dtype
    assert val.dtype == expected_dtype
    real = exp_idx >= 0
    expected_vals = fastwlr.backends._math.transform(z[exp_idx[real]], output)
    np.testing.assert_allclose(val[real], expected_vals, rtol=1e-6 if expected_dtype == np.float32 else 1e-14)
    assert np.all(val[~real] == -np.inf)
    if use_exclude:
        assert not exclude[idx[real]].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output", ["odds", "log_odds"])
def test_score_topk_equals_score_then_topk(compiled_backend_name, rng, dtype, output):
    # random continuous data: the fused kernel equals scoring every row and selecting afterwards
    offsets = ragged_offsets(rng, 200, 80)
    X = rng.standard_normal((int(offsets[-1]), 16)).astype(dtype)
    coef = rng.standard_normal(16)
    z = score(X, coef, 0.3, output="log_odds", dtype=np.float64, backend=compiled_backend_name)
    exp_idx, exp_z = topk(z, 10, offsets=offsets, backend="reference")
    for n_threads in (1, 2):
        idx, val = score_topk(X, coef, 0.3, 10, offsets=offsets, output=output, backend=compiled_backend_name,
                              n_threads=n_threads)
        np.testing.assert_array_equal(idx, exp_idx)
        real = exp_idx >= 0
        np.testing.assert_allclose(val[real], fastwlr.backends._math.transform(exp_z[real], output), rtol=1e-6)
    # and the reference backend agrees on the indices (random data: no near-ties)
    ridx, _ = score_topk(X, coef, 0.3, 10, offsets=offsets, output=output, backend="reference")
    np.testing.assert_array_equal(ridx, exp_idx)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 7, 8, 64, 67])
def test_cython_fused_log_odds_bitwise_equal_score(rng, dtype, d):
    # the fused dense kernel scores four rows at a time but keeps dot_dense's summation order
    if "cython" not in fastwlr.available_backends():
        pytest.skip("cython backend not built")
    offsets = ragged_offsets(rng, 60, 50)
    X = rng.standard_normal((int(offsets[-1]), d)).astype(dtype)
    coef = rng.standard_normal(d)
    z = score(X, coef, 0.25, output="log_odds", dtype=np.float64, backend="cython")
    # k = 3: most winners enter after the heap is full, i.e. through the four-row path
    idx, val = score_topk(X, coef, 0.25, 3, offsets=offsets, output="log_odds", backend="cython")
    real = idx >= 0
    np.testing.assert_array_equal(val[real], z[idx[real]].astype(dtype))  # float32 X: log-odds in float32
    np.testing.assert_array_equal(idx, topk(z, 3, offsets=offsets, backend="reference")[0])


@settings(settings.get_profile("fastwlr_topk"), max_examples=40)
@given(sizes=st.lists(st.sampled_from([0, 1, 8, 31, 32, 33, 500, 1023, 1024, 1025, 2049, 3000]), min_size=1,
                      max_size=4),
       k=st.sampled_from([1, 2, 10, 15, 16, 17, 40, 100, 1000, 1024, 1025]), seed=st.integers(0, 2**16),
       use_exclude=st.booleans(),
       layout=st.sampled_from(["dense64", "dense32", "csr64"]), order=st.sampled_from(["random", "ascending",
                                                                                       "descending", "few values"]),
       n_inf=st.integers(0, 3))
def test_score_topk_long_groups_match_brute_force(compiled_backend_name, sizes, k, seed, use_exclude, layout,
                                                 order, n_inf):
    """Groups around the fused scan's segment and lane sizes (32, 1,024 rows), in orders that make
    every row enter the selection (ascending) or none after the first k (descending), many exact
    ties, and rows whose log-odds overflow to +-inf: the indices are the brute-force sort's, the
    values are score()'s, for 1 and 2 threads."""
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n, d = int(offsets[-1]), 3
    levels = 3 if order == "few values" else 1000
    X = rng.integers(-levels, levels + 1, size=(n, d)).astype(np.float64)  # exact sums: ties are real
    coef = np.array([1.0, 0.5, -0.25])
    if order != "random" and order != "few values":
        z0 = X @ coef
        X = X[np.argsort(z0 if order == "ascending" else -z0, kind="stable")]
    dtype = np.float32 if layout == "dense32" else np.float64
    if layout != "dense32" and n > 0:
        for row in rng.integers(0, n, size=n_inf):  # 2.25e308 overflows: +-inf log-odds from finite features
            X[row] = np.array([1.5e308, 1.5e308, 0.0]) * rng.choice([-1.0, 1.0])
    X = X.astype(dtype)
    exclude = rng.random(n) < 0.2 if use_exclude else None
    z = X.astype(np.float64) @ coef + 0.5
    expected, _ = brute_topk(z, offsets, k, exclude)
    Xin = sp.csr_matrix(X) if layout.startswith("csr") else X
    for n_threads in (1, 2):
        idx, val = score_topk(Xin, coef, 0.5, k, offsets=offsets, output="log_odds", exclude=exclude,
                              backend=compiled_backend_name, n_threads=n_threads)
        np.testing.assert_array_equal(idx, expected)
        real = idx >= 0
        np.testing.assert_array_equal(val[real], z[idx[real]].astype(dtype))
        assert np.all(val[~real] == -np.inf)


@settings(settings.get_profile("fastwlr_topk"), max_examples=40)
@given(sizes=st.lists(st.sampled_from([0, 1, 8, 31, 32, 33, 500, 1023, 1024, 1025, 2049, 3000]), min_size=1,
                      max_size=4),
       k=st.sampled_from([1, 2, 10, 15, 16, 17, 40, 100, 1000, 1024, 1025]), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]),
       order=st.sampled_from(["random", "ascending", "descending", "few values"]), n_inf=st.integers(0, 3),
       nan_at=st.one_of(st.none(), st.floats(0, 1)))
def test_topk_long_groups_match_brute_force(backend_name, sizes, k, seed, dtype, order, n_inf, nan_at):
    """topk on given scores, groups around the scan's segment and lane sizes (32, 1,024), in orders
    that make every score enter the selection (ascending) or none after the first k (descending),
    many exact ties, +-inf scores, and a NaN anywhere (named by its index): the brute-force sort's
    indices and the scores' own values, for 1 and 2 threads."""
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(offsets[-1])
    s = rng.integers(-3, 4, size=n).astype(dtype) if order == "few values" else rng.standard_normal(n).astype(dtype)
    if order in ("ascending", "descending"):
        s = np.sort(s) if order == "ascending" else -np.sort(s)
    if n > 0:
        s[rng.integers(0, n, size=n_inf)] = rng.choice([-np.inf, np.inf], size=n_inf)
    if nan_at is not None and n > 0:
        bad = int(nan_at * (n - 1))
        s[bad] = np.nan
        s[rng.integers(bad, n, size=2)] = np.nan   # more NaN after it: the lowest is named
        for n_threads in (1, 2):
            with pytest.raises(ValueError, match=rf"scores\[{bad}\] is NaN"):
                topk(s, k, offsets=offsets, backend=backend_name, n_threads=n_threads)
        return
    expected, _ = brute_topk(s.astype(np.float64), offsets, k)
    for n_threads in (1, 2):
        idx, val = topk(s, k, offsets=offsets, backend=backend_name, n_threads=n_threads)
        np.testing.assert_array_equal(idx, expected)
        real = idx >= 0
        np.testing.assert_array_equal(val[real], s[idx[real]])
        assert val.dtype == s.dtype and np.all(val[~real] == -np.inf)


@pytest.mark.parametrize("k", [17, 100, 499, 500, 501])
def test_topk_large_k_signed_zeros_and_ties(backend_name, k):
    """k past the heap's segment bound (the radix select): -0.0 and +0.0 are one value, so their
    order is the index order, as for every tie; +-inf rank at the ends."""
    rng = np.random.default_rng(k)
    # about 50 values above zero a group: from k = 100 on, the k-th best is a zero of either sign
    s = rng.choice(np.array([-0.0, 0.0, 1.0, -1.0, np.inf, -np.inf]), size=500 * 4, p=[0.4, 0.4, 0.08, 0.08, 0.02, 0.02])
    offsets = np.arange(0, s.size + 1, 500)
    expected, _ = brute_topk(s, offsets, k)
    for n_threads in (1, 2):
        for dtype in (np.float64, np.float32):
            idx, val = topk(s.astype(dtype), k, offsets=offsets, backend=backend_name, n_threads=n_threads)
            np.testing.assert_array_equal(idx, expected)


def test_score_topk_one_big_group_split(backend_name, rng):
    n, d = 150_000, 4
    X = rng.integers(-3, 4, size=(n, d)).astype(np.float32)  # exact sums: heavy ties across chunks
    coef = np.array([1.0, 0.5, -0.25, 2.0])
    z = X.astype(np.float64) @ coef
    expected = ref.topk_loop(z, np.array([0, n]), 100)
    for n_threads in (1, 2):
        idx, val = score_topk(X, coef, 0.0, 100, output="log_odds", backend=backend_name, n_threads=n_threads)
        np.testing.assert_array_equal(idx, expected[0])
        np.testing.assert_array_equal(val, expected[1].astype(np.float32))


def test_score_topk_exclude_everything_in_a_group(backend_name, rng):
    X = rng.standard_normal((9, 3))
    offsets = [0, 3, 6, 9]
    exclude = np.zeros(9, dtype=bool)
    exclude[3:6] = True
    exclude[7] = True
    idx, val = score_topk(X, np.ones(3), 0.0, k=4, offsets=offsets, exclude=exclude, backend=backend_name)
    assert idx[1].tolist() == [-1] * 4 and np.all(val[1] == -np.inf)
    assert sorted(idx[2][idx[2] >= 0].tolist()) == [6, 8] and idx[2, 2:].tolist() == [-1, -1]
    idx, val = score_topk(X, np.ones(3), k=2, exclude=np.ones(9, dtype=bool), backend=backend_name)
    assert idx.tolist() == [[-1, -1]]


def test_score_topk_saturated_transforms_keep_log_odds_order(backend_name):
    # z = 800, 750, 720 all give odds +inf and probability 1.0: the order is still by log-odds
    X = np.array([[720.0], [800.0], [-5.0], [750.0], [-800.0], [-900.0]])
    offsets = [0, 4, 6]
    for output in ("odds", "proba"):
        idx, val = score_topk(X, [1.0], 0.0, 3, offsets=offsets, output=output, backend=backend_name)
        assert idx.tolist() == [[1, 3, 0], [4, 5, -1]]
    idx, val = score_topk(X, [1.0], 0.0, 3, offsets=offsets, output="odds", backend=backend_name)
    assert np.isposinf(val[0]).all() and val[1, 0] == 0.0 and val[1, 1] == 0.0
    idx, val = score_topk(X, [1.0], 0.0, 3, offsets=offsets, output="proba", backend=backend_name)
    assert (val[0] == 1.0).all() and val[1, 2] == -np.inf


def test_score_topk_positional_k_and_estimator_call_shape(backend_name, rng):
    X = rng.standard_normal((30, 4))
    coef = rng.standard_normal(4)
    a = score_topk(X, coef, 0.1, 5, offsets=[0, 10, 30], backend=backend_name)
    b = score_topk(X, coef, intercept=0.1, k=5, offsets=np.array([0, 10, 30], dtype=np.int32), backend=backend_name)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(TypeError, match="missing required argument k"):
        score_topk(X, coef, 0.1)


def test_score_topk_does_not_modify_inputs(backend_name, rng):
    X = rng.standard_normal((50, 5)).astype(np.float32)
    coef = rng.standard_normal(5)
    exclude = rng.random(50) < 0.5
    copies = [a.copy() for a in (X, coef, exclude)]
    score_topk(X, coef, 0.0, 3, offsets=[0, 25, 50], exclude=exclude, backend=backend_name)
    for a, c in zip((X, coef, exclude), copies):
        np.testing.assert_array_equal(a, c)


# ----------------------------------------------------------------------------- score_topk errors

@pytest.mark.parametrize("sparse", [False, True])
def test_score_topk_nan_row_is_named(backend_name, rng, sparse):
    X = rng.standard_normal((40, 3))
    X[17, 1] = np.nan
    X[31, 0] = np.nan
    Xin = sp.csr_matrix(X) if sparse else X
    with pytest.raises(ValueError, match="row 17 of X has NaN log-odds"):
        score_topk(Xin, np.ones(3), 0.0, 5, offsets=[0, 20, 40], backend=backend_name, n_threads=2)
    # an excluded NaN row is never scored
    exclude = np.zeros(40, dtype=bool)
    exclude[[17, 31]] = True
    idx, _ = score_topk(Xin, np.ones(3), 0.0, 5, offsets=[0, 20, 40], exclude=exclude, backend=backend_name)
    assert not np.isin(idx, [17, 31]).any()


def test_score_topk_nan_row_in_big_split_group(backend_name, rng):
    X = rng.standard_normal((140_000, 2)).astype(np.float32)
    X[[90_001, 120_000], 0] = np.nan
    with pytest.raises(ValueError, match="row 90001 "):
        score_topk(X, np.ones(2), 0.0, 3, backend=backend_name, n_threads=2)


def test_score_topk_inf_features(backend_name):
    X = np.array([[1.0, 0.0], [np.inf, 1.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match="contains inf"):
        score_topk(X, [1.0, 1.0], 0.0, 2, backend=backend_name)
    with pytest.raises(ValueError, match="contains inf"):  # inf * 0 = NaN: still reported as inf
        score_topk(X, [0.0, 1.0], 0.0, 2, backend=backend_name)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(k=0), ValueError, "k must be >= 1"),
    (dict(k=2, offsets=[0, 5, 3, 6]), ValueError, "non-decreasing"),
    (dict(k=2, offsets=[0, 7]), ValueError, "end at n = 6"),
    (dict(k=2, exclude=np.zeros(5, dtype=bool)), ValueError, r"exclude must have shape \(6,\)"),
    (dict(k=2, exclude=np.zeros(6, dtype=int)), TypeError, "exclude must be a boolean mask"),
    (dict(k=2, exclude=np.zeros((6, 1), dtype=bool)), ValueError, "exclude must have shape"),
    (dict(k=2, output="expected_watch_time"), ValueError, "output must be one of"),
])
def test_score_topk_bad_arguments(backend_name, kwargs, err, match):
    X = np.ones((6, 2))
    with pytest.raises(err, match=match):
        score_topk(X, [1.0, 2.0], 0.0, backend=backend_name, **kwargs)


def test_score_topk_bad_coef_shape():
    with pytest.raises(ValueError, match="coef has 3 entries"):
        score_topk(np.ones((4, 2)), [1.0, 2.0, 3.0], 0.0, 2)


# ----------------------------------------------------------------------------- a serving-shaped example

def test_ranker_workflow_on_generated_requests():
    # the README snippet, checked: fit on generated impressions, rank each request's candidates
    from fastwlr.datasets import make_watch_time
    data = make_watch_time(3000, 8, random_state=0)
    offsets = np.arange(0, 3001, 100)
    idx, odds = score_topk(data.X, data.coef, data.intercept, k=5, offsets=offsets)
    X64 = data.X.astype(np.float64)
    z = X64 @ data.coef + data.intercept
    assert idx.shape == (30, 5) and (idx // 100 == np.arange(30)[:, None]).all()
    # the sum's bound (float32 X: the contract's float32 one), then e^z: relative error e^dz - 1
    scale = np.abs(X64) @ np.abs(data.coef) + abs(data.intercept)
    rtol = F32_SUM_RTOL if data.X.dtype == np.float32 else 1e-12
    dz = rtol * scale[idx] + X64.shape[1] * F32_SUM_ATOL
    assert np.all(np.abs(odds - np.exp(z[idx])) <= (np.expm1(dz) + 1e-15) * np.exp(z[idx]))
    assert (np.diff(odds, axis=1) <= 0).all()


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("d", [2, 12, 67])
def test_fused_csr_log_odds_bitwise_equal_score(compiled_backend_name, rng, index_dtype, d):
    # the fused CSR kernel must sum each row in score()'s order for either index type: the
    # compiler contracted multiply-adds differently in the int64 specialisation, so ~half the
    # rows of score_topk differed by an ulp from score() and the two could rank differently
    offsets = ragged_offsets(rng, 80, 40)
    X = sp.random(int(offsets[-1]), d, density=0.5, format="csr", random_state=7, dtype=np.float64)
    X.data = rng.standard_normal(X.nnz)
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    coef = rng.standard_normal(d)
    z = score(X, coef, 0.25, output="log_odds", dtype=np.float64, backend=compiled_backend_name)
    every = np.arange(X.shape[0] + 1)
    idx, val = score_topk(X, coef, 0.25, 1, offsets=every, output="log_odds", backend=compiled_backend_name)
    np.testing.assert_array_equal(val[:, 0], z)
    idx, val = score_topk(X, coef, 0.25, 3, offsets=offsets, output="log_odds", backend=compiled_backend_name)
    real = idx >= 0
    np.testing.assert_array_equal(val[real], z[idx[real]])
    np.testing.assert_array_equal(idx, topk(z, 3, offsets=offsets, backend="reference")[0])


@pytest.mark.parametrize("k", [2**40, 2**63, 10**30])
def test_topk_absurd_k_raises_naming_k(backend_name, k):
    # k had no upper bound: 2**40 raised MemoryError, 2**63 OverflowError. A k above the largest
    # group that asks for more than 2**28 padded entries is rejected (not clamped: the output
    # shape stays (n_groups, k) for every accepted k)
    s = np.arange(5.0)
    with pytest.raises(ValueError, match=r"k=\d+ is larger than the largest group \(3 rows\)"):
        topk(s, k, offsets=[0, 2, 5], backend=backend_name)
    with pytest.raises(ValueError, match=r"k=\d+ is larger than the largest group"):
        score_topk(s[:, None], [1.0], 0.0, k, offsets=[0, 2, 5], backend=backend_name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.sampled_from([1, 2, 3, 4, 5, 9, 64, 300]), d=st.integers(0, 40), k=st.sampled_from([1, 2, 10, 500]),
       dtype=st.sampled_from([np.float32, np.float64]), output=st.sampled_from(["odds", "log_odds", "proba"]),
       ties=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_one_request_fast_path_gives_the_full_paths_result(compiled_backend_name, n, d, k, dtype, output, ties, seed):
    """score_topk of one request (no offsets, no exclude) takes a compiled fast path: the same
    indices, values and dtypes as the general driver (offsets=[0, n]), ties and padding included."""
    rng = np.random.default_rng(seed)
    X = (rng.integers(-2, 3, (n, d)) if ties else rng.standard_normal((n, d))).astype(dtype)
    coef = rng.standard_normal(d)
    with fastwlr.use_backend(compiled_backend_name):
        fast = fastwlr.score_topk(X, coef, 0.25, k=k, output=output)
        full = fastwlr.score_topk(X, coef, 0.25, k=k, output=output, offsets=[0, n])
    for a, b in zip(fast, full):
        assert a.dtype == b.dtype and a.shape == b.shape == (1, k)
        np.testing.assert_array_equal(a, b)


def test_one_request_fast_path_leaves_errors_to_the_full_path(compiled_backend_name):
    X = np.ones((4, 2))
    with fastwlr.use_backend(compiled_backend_name):
        with pytest.raises(ValueError, match="NaN"):
            fastwlr.score_topk(np.array([[np.nan, 1.0], [1.0, 1.0]]), np.ones(2), k=1)
        with pytest.raises(ValueError, match="inf"):
            fastwlr.score_topk(np.array([[np.inf, 1.0], [1.0, 1.0]]), np.ones(2), k=1)
        with pytest.raises(ValueError, match="k"):
            fastwlr.score_topk(X, np.ones(2), k=0)
        with pytest.raises(ValueError, match="coef"):
            fastwlr.score_topk(X, np.array([np.nan, 1.0]), k=1)
        with pytest.raises(ValueError, match="features|coef"):
            fastwlr.score_topk(X, np.ones(3), k=1)
        idx, val = fastwlr.score_topk(np.empty((0, 2)), np.ones(2), k=2)
        assert idx.tolist() == [[-1, -1]] and val.tolist() == [[-np.inf, -np.inf]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.sampled_from([4_100, 9_001, 20_000]), d=st.sampled_from([64, 70]), k=st.sampled_from([1, 10, 3_000]),
       dtype=st.sampled_from([np.float32, np.float64]), output=st.sampled_from(["odds", "log_odds", "proba"]),
       ties=st.booleans(), n_threads=st.sampled_from([2, 3]), seed=st.integers(0, 2**32 - 1))
def test_one_request_fast_path_split_across_threads_gives_one_threads_result(
        compiled_backend_name, n, d, k, dtype, output, ties, n_threads, seed):
    """A request big enough to split (n (d + 1) >= 2^18) is cut into one chunk per thread in the fast
    path; the chunks' winners merged give the one-thread result, ties (lower index first) included."""
    rng = np.random.default_rng(seed)
    X = (rng.integers(-1, 2, (n, d)) if ties else rng.standard_normal((n, d))).astype(dtype)
    coef = rng.standard_normal(d) / 8
    with fastwlr.use_backend(compiled_backend_name):
        one = fastwlr.score_topk(X, coef, 0.25, k=k, output=output, n_threads=1)
        split = fastwlr.score_topk(X, coef, 0.25, k=k, output=output, n_threads=n_threads)
        full = fastwlr.score_topk(X, coef, 0.25, k=k, output=output, offsets=[0, n], n_threads=1)
    for a, b, c in zip(split, one, full):
        assert a.dtype == b.dtype == c.dtype and a.shape == (1, k)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_one_request_fast_path_split_leaves_a_nan_in_any_chunk_to_the_full_path(compiled_backend_name):
    X = np.ones((9_000, 64), dtype=np.float32)
    for row in (10, 8_990):   # in the first chunk and in the last
        Xb = X.copy()
        Xb[row, 3] = np.nan
        with fastwlr.use_backend(compiled_backend_name):
            with pytest.raises(ValueError, match=f"NaN.*{row}|{row}.*NaN"):
                fastwlr.score_topk(Xb, np.ones(64), k=5, n_threads=2)


@pytest.mark.parametrize("output", ["odds", "log_odds", "proba"])
def test_scorer_topk_is_score_topk(backend_name, output):
    """Scorer.topk returns score_topk's indices and values bit for bit: one dense request (the
    prepared fast path), requests with offsets and exclude, CSR and a list (the full path)."""
    rng = np.random.default_rng(7)
    coef = rng.standard_normal(20)
    scorer = fastwlr.Scorer(coef, 0.25, output=output, backend=backend_name)
    X64 = rng.standard_normal((700, 20))
    offsets = np.array([0, 5, 400, 700])
    exclude = rng.random(700) < 0.3
    for X, kw in [(X64, {}), (X64.astype(np.float32), {}), (X64, {"offsets": offsets}),
                  (X64.astype(np.float32), {"offsets": offsets, "exclude": exclude}),
                  (sp.csr_matrix(X64 * (rng.random(X64.shape) < 0.2)), {}), (X64[:3].tolist(), {})]:
        for k in (1, 10, 100):
            expected = score_topk(X, coef, 0.25, k, output=output, backend=backend_name, **kw)
            got = scorer.topk(X, k, **kw)
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])
            assert got[1].dtype == expected[1].dtype


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.sampled_from([1, 9, 300, 4_100]), d=st.sampled_from([0, 1, 64, 70, 256]),
       k=st.sampled_from([1, 10, 500]), dtype=st.sampled_from([np.float32, np.float64]),
       output=st.sampled_from(["odds", "log_odds", "proba"]), n_threads=st.sampled_from([1, 2]),
       ties=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_prepared_scorer_topk_gives_the_full_paths_result(compiled_backend_name, n, d, k, dtype, output, n_threads,
                                                          ties, seed):
    """Scorer.topk of one request takes the prepared ranker (the model checked and its float32
    copy made once): the general driver's indices, values and dtypes, at widths that take the
    float32 path (64, 256) and that do not, split across threads or not."""
    rng = np.random.default_rng(seed)
    X = (rng.integers(-1, 2, (n, d)) if ties else rng.standard_normal((n, d))).astype(dtype)
    coef = rng.standard_normal(d) / 8
    scorer = fastwlr.Scorer(coef, 0.25, output=output, n_threads=n_threads, backend=compiled_backend_name)
    assert (scorer._fast is not None) == (compiled_backend_name == "cython")   # Numba has none
    full = score_topk(X, coef, 0.25, k, output=output, offsets=[0, n], n_threads=1, backend=compiled_backend_name)
    for got in (scorer.topk(X, k), scorer.topk(X, np.int64(k))):   # a numpy k: the full path
        for a, b in zip(got, full):
            assert a.dtype == b.dtype and a.shape == b.shape == (1, k)
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [40, 3_000])
@pytest.mark.parametrize("d", [64, 256])
def test_topk_ranks_rows_whose_float32_sum_overflows(compiled_backend_name, n, d, rng):
    """A float32 row whose float32 products overflow is summed again in float64, in the top-k scan
    as in scoring: while the first candidates are buffered and once the heap is full, in a full
    block of eight rows and in the last rows. Products of +2e39 and -2e39 (3e38 x 7) meet in one
    float32 lane as inf - inf = NaN; in float64 they cancel, and a third feature puts the row first,
    last or in the middle."""
    X = rng.standard_normal((n, d)).astype(np.float32)
    coef = rng.standard_normal(d) / 8
    coef[3], coef[19], coef[20] = 7.0, 7.0, 0.125   # columns 3 and 19: the same lane
    X[:, [3, 19]] = 0.0
    for row, extra in ((2, 80.0), (11, 80.0), (n // 2 + 5, 80.0), (n - 2, 80.0), (n // 3, -80.0),
                       (n // 4, 16.0), (n - 5, 0.0)):
        X[row, 3], X[row, 19], X[row, 20] = 3e38, -3e38, extra
    k = 10
    z = score(X, coef, 0.25, output="log_odds", n_threads=1, backend=compiled_backend_name)
    assert np.isfinite(z).all()
    expect = brute_topk(z, [0, n], k)
    assert {2, 11, n // 2 + 5, n - 2} <= set(expect[0][0])
    for n_threads in (1, 2):
        scorer = fastwlr.Scorer(coef, 0.25, output="log_odds", n_threads=n_threads, backend=compiled_backend_name)
        for idx, vals in (scorer.topk(X, k),
                          score_topk(X, coef, 0.25, k, output="log_odds", n_threads=n_threads,
                                     backend=compiled_backend_name),
                          score_topk(X, coef, 0.25, k, output="log_odds", offsets=[0, n], n_threads=n_threads,
                                     backend=compiled_backend_name)):
            np.testing.assert_array_equal(idx, expect[0])
            np.testing.assert_array_equal(vals, expect[1])


def test_scorer_topk_errors_are_score_topks(backend_name):
    scorer = fastwlr.Scorer(np.ones(3), 0.0, backend=backend_name)
    X = np.zeros((4, 3))
    with pytest.raises(ValueError, match="k"):
        scorer.topk(X, 0)
    with pytest.raises(ValueError, match="features"):
        scorer.topk(np.zeros((4, 2)), 2)
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="row 2"):
        scorer.topk(X, 2)
    X[2, 1] = 0.0
    before = X.copy()
    scorer.topk(X, 2)
    np.testing.assert_array_equal(X, before)
