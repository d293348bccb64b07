"""Conformance: every backend gives the same results, through the kernel contract and the public API.

Parametrised over every backend of ``fastwlr._config.BACKENDS`` that imports here (the
``backend_name`` / ``compiled_backend_name`` fixtures of conftest.py): a new backend is tested by
adding its name there. Each result is compared with an oracle independent of every backend where
one is cheap (exactly rounded sums via ``math.fsum``, Python's ``sorted`` for rankings), else with
the numpy reference (the specification).

Tolerances (what "the same" means):

* log-odds: |z - z_exact| <= (d + 2) * eps64 * (sum_j |x_j coef_j| + |b|)   (any summation order);
  dense float32 X: the contract's float32 bound F32_SUM_RTOL * (sum_j |x_j coef_j| + |b|) + d * F32_SUM_ATOL
  (``fastwlr.backends._contract``: a backend may sum float32 rows in float32);
  odds e^z and sigma(z): relative error <= that bound + 4 eps64 (e^z and sigma are 1-Lipschitz in
  log scale); float32 results: additionally one float32 rounding (2^-23 relative).
* inf, 0.0 and NaN results (overflow, underflow, NaN features) must be identical.
* top-k: indices identical, always (the order is total); values as for scores, and bit-identical
  when they are copies of the input (``topk`` on given scores).
* objective: loss and intercept gradient rtol 1e-12; gradient atol 1e-12 * sum_i w_i |x_i|_inf / n.
* SGD, one thread, same row order: every state array after each epoch within rtol 1e-9 of the
  reference loop (the trajectory, up to floating-point reassociation); the same divergence row.
* estimators: SGD coefficients rtol 1e-9 (same seed); L-BFGS within 1e-6 (an iterative solver:
  rounding differences may change its path slightly, not its optimum).
* any two backends: log-odds within twice the bound above.
"""
import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

import fastwlr
from fastwlr._config import available_backends, get_backend
from fastwlr._sgd import EpochParams, SGDParams, SGDState, fit_sgd
from fastwlr._validation import check_features
from fastwlr.backends._contract import F32_SUM_ATOL, F32_SUM_RTOL

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

EPS64 = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)
SGD_RTOL = 1e-9
LBFGS_RTOL = 1e-6
OBJ_RTOL = 1e-12
OUTPUTS = ("log_odds", "odds", "proba")


# ------------------------------------------------------------------------------ oracles

def exact_log_odds(X, coef, b):
    """(z, bound): z_i = fsum_j x_ij coef_j + b, and the tolerance of any summation order (of a
    float32 sum for dense float32 X)."""
    f32 = not sp.issparse(X) and np.asarray(X).dtype == np.float32
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    n, d = X.shape
    z = np.array([math.fsum(list(X[i] * coef) + [b]) for i in range(n)])
    with np.errstate(invalid="ignore"):
        mag = np.abs(X) @ np.abs(coef) + abs(b)
    if f32:
        return z, F32_SUM_RTOL * mag + d * F32_SUM_ATOL
    return z, (d + 2) * EPS64 * mag


def transform_exact(z, output):
    from fastwlr.backends._math import transform
    return transform(z, output)


def assert_scores_close(actual, z, bound, output, dtype):
    """Compare a backend's scores with the exact log-odds z (see the module docstring)."""
    expected = transform_exact(z, output)
    assert actual.dtype == dtype
    a = actual.astype(np.float64)
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(a), nan, err_msg="NaN positions differ")
    ok = ~nan
    if output == "log_odds":
        tol = bound[ok]
    else:
        tol = (bound[ok] + 4 * EPS64) * np.abs(expected[ok])
    if dtype == np.float32:
        tol = tol + EPS32 * np.abs(expected[ok])
        with np.errstate(over="ignore"):
            expected32 = expected[ok].astype(np.float32).astype(np.float64)
        inf = np.isinf(expected32)
        np.testing.assert_array_equal(a[ok][inf], expected32[inf])
        ok_idx = np.flatnonzero(ok)[~inf]
        err = np.abs(a[ok_idx] - expected[ok_idx])
        tol = tol[~inf]
    else:
        inf = np.isinf(expected[ok])
        np.testing.assert_array_equal(a[ok][inf], expected[ok][inf])
        ok_idx = np.flatnonzero(ok)[~inf]
        err = np.abs(a[ok_idx] - expected[ok_idx])
        tol = tol[~inf]
    bad = err > tol
    assert not bad.any(), f"{bad.sum()} scores off: worst err {err[bad].max()} > tol {tol[bad].min()}"


def exact_topk(values, offsets, k, exclude=None):
    """Python's sorted() on (value descending, index ascending): the specification's total order."""
    G = len(offsets) - 1
    idx = np.full((G, k), -1, dtype=np.int64)
    for g in range(G):
        rows = [i for i in range(offsets[g], offsets[g + 1]) if exclude is None or not exclude[i]]
        best = sorted(rows, key=lambda i: (-values[i], i))[:k]
        idx[g, :len(best)] = best
    return idx


# ------------------------------------------------------------------------------ case builders

def dense_case(rng, n, d, dtype, scale=1.0):
    X = (rng.standard_normal((n, d)) * scale).astype(dtype)
    coef = rng.standard_normal(d)
    return X, coef, float(rng.standard_normal())


def csr_case(rng, n, d, dtype, index_dtype, density=0.2):
    X = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.standard_normal(X.nnz)
    X = sp.csr_matrix((X.data.astype(dtype), X.indices.astype(index_dtype), X.indptr.astype(index_dtype)),
                      shape=(n, d))
    return X, rng.standard_normal(d), float(rng.standard_normal())


def random_offsets(rng, n, n_groups):
    cuts = np.sort(rng.integers(0, n + 1, n_groups - 1))
    return np.r_[0, cuts, n].astype(np.int64)


LAYOUTS = [("dense", np.float64, None), ("dense", np.float32, None), ("csr", np.float64, np.int32),
           ("csr", np.float32, np.int64)]


def make_case(rng, layout, n=150, d=13):
    kind, dtype, index_dtype = layout
    return dense_case(rng, n, d, dtype) if kind == "dense" else csr_case(rng, n, d, dtype, index_dtype)


def layout_id(layout):
    kind, dtype, index_dtype = layout
    return f"{kind}-{np.dtype(dtype).name}" + (f"-{np.dtype(index_dtype).name}" if index_dtype else "")


# ------------------------------------------------------------------------------ scoring

@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("output", OUTPUTS)
def test_score_random(backend_name, layout, output, rng):
    X, coef, b = make_case(rng, layout)
    z, bound = exact_log_odds(X, coef, b)
    for dtype in (np.float32, np.float64):
        got = fastwlr.score(X, coef, b, output=output, dtype=dtype, backend=backend_name, n_threads=2)
        assert_scores_close(got, z, bound, output, dtype)


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
def test_score_adversarial(backend_name, layout, rng):
    """Huge |z| (odds overflow to inf / underflow to 0 / proba saturates), NaN features, all-zero
    rows, d not a multiple of the unroll (8), exact cancellation."""
    kind, dtype, index_dtype = layout
    d = 11
    X = np.zeros((9, d))
    X[0, :] = 100.0                      # z = +1100 + b: odds inf, proba 1
    X[1, :] = -100.0                     # z = -1100: odds 0.0 exactly, proba tiny/0
    X[2, 3] = np.nan                     # NaN feature -> NaN score
    X[3, :] = 1e150                      # z ~ 1e151: finite in float64, inf in float32 out
    X[4, :] = [1.0, -1.0] * 5 + [0.0]    # exact cancellation
    X[5, :] = 1e-300                     # denormal-range products
    X[6, 10] = 7.0                       # only the unroll tail
    X[7, :] = 70.0                       # z near the exp overflow threshold in float32 out
    coef = np.ones(d)
    if dtype == np.float32:
        X[3, :] = 1e30
        X[5, :] = 1e-30
    X = X.astype(dtype)
    if kind == "csr":
        X = sp.csr_matrix(X)
        X = sp.csr_matrix((X.data, X.indices.astype(index_dtype), X.indptr.astype(index_dtype)), shape=X.shape)
    z, bound = exact_log_odds(X, coef, 0.25)
    for output in OUTPUTS:
        for out_dtype in (np.float32, np.float64):
            with np.errstate(all="raise"):  # no floating-point warning from any backend
                got = fastwlr.score(X, coef, 0.25, output=output, dtype=out_dtype, backend=backend_name)
            assert_scores_close(got, z, bound, output, out_dtype)


def test_score_empty_shapes(backend_name):
    for X, coef in ((np.zeros((0, 4)), np.ones(4)), (np.zeros((3, 0)), np.zeros(0)),
                    (sp.csr_matrix((5, 4)), np.ones(4))):
        got = fastwlr.score(X, coef, 0.5, output="log_odds", backend=backend_name)
        np.testing.assert_array_equal(got, np.full(X.shape[0], 0.5))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 40), d=st.integers(1, 20), seed=st.integers(0, 2**32 - 1),
       sparse=st.booleans(), f32=st.booleans(), output=st.sampled_from(OUTPUTS))
def test_score_property_all_backends(n, d, seed, sparse, f32, output):
    """Hypothesis: random shapes and layouts; every available backend within tolerance of the exact
    answer (one test over all backends, so shrinking shows which disagree)."""
    rng = np.random.default_rng(seed)
    dtype = np.float32 if f32 else np.float64
    X, coef, b = csr_case(rng, n, d, dtype, np.int32, 0.3) if sparse else dense_case(rng, n, d, dtype, 3.0)
    z, bound = exact_log_odds(X, coef, b)
    for name in available_backends():
        got = fastwlr.score(X, coef, b, output=output, backend=name)
        assert_scores_close(got, z, bound, output, got.dtype)


# ------------------------------------------------------------------------------ top-k

def test_topk_random(backend_name, rng):
    for dtype in (np.float32, np.float64):
        s = rng.standard_normal(2000).astype(dtype)
        s[rng.integers(0, 2000, 300)] = s[5]                      # many exact ties
        offsets = random_offsets(rng, 2000, 40)
        for k in (1, 3, 60):
            idx, val = fastwlr.topk(s, k, offsets=offsets, backend=backend_name, n_threads=2)
            np.testing.assert_array_equal(idx, exact_topk(s, offsets, k))
            assert val.dtype == dtype
            expected = np.where(idx >= 0, s[np.maximum(idx, 0)], -np.inf).astype(dtype)
            np.testing.assert_array_equal(val, expected)         # copies of the input: bit-identical


def test_topk_adversarial(backend_name):
    s = np.array([0.0, -0.0, np.inf, -np.inf, 1.0, 1.0, -np.inf, np.inf, 0.0, 5.0])
    offsets = np.array([0, 0, 4, 4, 10, 10], dtype=np.int64)      # empty groups, ties, +-inf, -0.0
    for k in (1, 2, 5, 12):
        idx, val = fastwlr.topk(s, k, offsets=offsets, backend=backend_name)
        np.testing.assert_array_equal(idx, exact_topk(s, offsets, k))
        assert np.all(val[idx < 0] == -np.inf)
    with pytest.raises(ValueError, match=r"scores\[3\] is NaN"):
        fastwlr.topk(np.array([1.0, 2.0, 0.0, np.nan, np.nan]), 2, offsets=[0, 2, 5], backend=backend_name)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_topk_one_huge_group(backend_name, n_threads, rng):
    """A group above the split size (65536 in the compiled kernels): chunks merged = one scan."""
    s = rng.integers(0, 1000, 70000).astype(np.float64)            # heavy ties across chunks
    idx, _ = fastwlr.topk(s, 25, backend=backend_name, n_threads=n_threads)
    np.testing.assert_array_equal(idx, exact_topk(s, [0, s.shape[0]], 25))


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("output", OUTPUTS)
def test_score_topk_random(backend_name, layout, output, rng):
    X, coef, b = make_case(rng, layout, n=400)
    z, bound = exact_log_odds(X, coef, b)
    offsets = random_offsets(rng, 400, 12)
    exclude = rng.random(400) < 0.2
    for excl in (None, exclude):
        idx, val = fastwlr.score_topk(X, coef, b, k=5, offsets=offsets, output=output, exclude=excl,
                                      backend=backend_name, n_threads=2)
        np.testing.assert_array_equal(idx, exact_topk(z, offsets, 5, excl))
        real = idx >= 0
        assert np.all(val[~real] == -np.inf)
        assert_scores_close(val[real], z[idx[real]], bound[idx[real]], output, val.dtype)


@pytest.mark.parametrize("sparse", [False, True])
def test_score_topk_adversarial(backend_name, sparse):
    """Integer-valued features: every summation order is exact, so exact ties stay ties; odds
    saturating to inf keep their log-odds order; a NaN row is reported by its index."""
    X = np.array([[1, 2], [2, 1], [800, 0], [900, 0], [1, 2], [0, 0], [-800, 0], [3, 0]], dtype=np.float64)
    coef = np.array([1.0, 1.0])
    Xs = sp.csr_matrix(X) if sparse else X
    offsets = np.array([0, 5, 5, 8])
    z, _ = exact_log_odds(X, coef, 0.0)
    for output in OUTPUTS:
        idx, val = fastwlr.score_topk(Xs, coef, 0.0, k=4, offsets=offsets, output=output, backend=backend_name)
        np.testing.assert_array_equal(idx, exact_topk(z, offsets, 4))
        if output == "odds":
            assert val[0, 0] == np.inf and val[0, 1] == np.inf   # 900 before 800, both inf
    Xn = X.copy()
    Xn[6, 1] = np.nan
    with pytest.raises(ValueError, match="row 6 of X has NaN"):
        fastwlr.score_topk(sp.csr_matrix(Xn) if sparse else Xn, coef, k=2, offsets=offsets, backend=backend_name)
    excl = np.zeros(8, dtype=bool)
    excl[6] = True                                               # excluded rows are not even scored
    idx, _ = fastwlr.score_topk(sp.csr_matrix(Xn) if sparse else Xn, coef, k=2, offsets=offsets,
                                exclude=excl, backend=backend_name)
    np.testing.assert_array_equal(idx, exact_topk(z, offsets, 2, excl))


# ------------------------------------------------------------------------------ objective

def exact_objective(X, y, w, coef, b, l2):
    """float64 objective and gradient summed with fsum (independent of every backend)."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = X.astype(np.float64)
    n = X.shape[0]
    z = np.array([math.fsum(list(X[i] * coef) + [b]) for i in range(n)])
    from fastwlr.backends._math import sigmoid, softplus
    terms = w * ((1 - y) * softplus(z) + y * softplus(-z))
    r = w * ((1 - y) * sigmoid(z) - y * sigmoid(-z))
    loss = math.fsum(terms) / max(n, 1) + 0.5 * l2 * math.fsum(coef * coef)
    grad = np.array([math.fsum(r * X[:, j]) for j in range(X.shape[1])]) / max(n, 1) + l2 * coef
    scale = (w * np.abs(X).max(axis=1, initial=0.0)).sum() / max(n, 1)
    return loss, grad, math.fsum(r) / max(n, 1), scale


def objective_via(name, X, y, w, coef, b, l2, n_threads=2):
    be = get_backend(name)
    f = check_features(X)
    if f.is_sparse:
        return be.objective_grad_csr(f.data, f.indices, f.indptr, f.n_features, y, w, coef, b, l2, n_threads)
    return be.objective_grad_dense(f.X, y, w, coef, b, l2, n_threads)


@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
def test_objective_random_and_adversarial(backend_name, layout, rng):
    X, coef, b = make_case(rng, layout, n=1500)   # > 512 rows: several blocks
    n = X.shape[0]
    y = (rng.random(n) < 0.3).astype(np.float64)
    w = np.where(y > 0, rng.lognormal(3, 1.5, n), 1.0)
    w[:50] = 0.0                                   # zero weights are skipped, contribute nothing
    cases = [(coef, b, 0.0), (coef, b, 0.3), (coef * 200, 40.0, 0.01),   # |z| in the hundreds: exact tails
             (np.zeros_like(coef), 0.0, 0.0)]
    for c, bb, l2 in cases:
        loss, grad, gb = objective_via(backend_name, X, y, w, c, bb, l2)
        e_loss, e_grad, e_gb, scale = exact_objective(X, y, w, c, bb, l2)
        assert loss == pytest.approx(e_loss, rel=OBJ_RTOL)
        assert gb == pytest.approx(e_gb, rel=OBJ_RTOL, abs=1e-12 * scale)
        np.testing.assert_allclose(grad, e_grad, rtol=OBJ_RTOL, atol=1e-12 * scale)


def test_objective_thread_count_invariant(backend_name, rng):
    X, coef, b = dense_case(rng, 3000, 9, np.float64)
    y = (rng.random(3000) < 0.5).astype(np.float64)
    w = rng.random(3000) * 10
    r1 = objective_via(backend_name, X, y, w, coef, b, 0.1, n_threads=1)
    r2 = objective_via(backend_name, X, y, w, coef, b, 0.1, n_threads=2)
    assert r1[0] == r2[0] and r1[2] == r2[2]
    np.testing.assert_array_equal(r1[1], r2[1])


def test_compiled_backends_agree_with_each_other(rng):
    """Pairwise, every available backend against every other: within twice the exact-answer bound
    (Cython and Numba sum in the same order, but GCC contracts some a*b + c into FMA under
    -march=native while Numba does not, so they are not bit-identical)."""
    names = available_backends()
    for layout in LAYOUTS:
        X, coef, b = make_case(rng, layout, n=1200)
        _, bound = exact_log_odds(X, coef, b)
        z = {n: fastwlr.score(X, coef, b, output="log_odds", dtype=np.float64, backend=n) for n in names}
        for a in names:
            for c in names:
                assert np.all(np.abs(z[a] - z[c]) <= 2 * bound), (a, c, layout_id(layout))


# ------------------------------------------------------------------------------ SGD

SGD_CONFIGS = [(opt, wt) for opt in ("sgd", "adagrad", "ftrl", "normalized") for wt in ("gradient", "iwa")]


def _epoch_params(optimizer, weighting, l2, n, average):
    codes = {"sgd": 0, "adagrad": 1, "ftrl": 2, "normalized": 3}
    return EpochParams(optimizer=codes[optimizer], weighting={"gradient": 0, "iwa": 1}[weighting],
                       schedule=0, eta0={"sgd": 0.5, "normalized": 0.5}.get(optimizer, 0.05), power_t=0.5, l2=l2,
                       l1=0.002 if optimizer == "ftrl" else 0.0, ftrl_alpha=0.05, ftrl_beta=1.0,
                       avg_start=float(n // 2) if average else math.inf, fit_intercept=True)


def _states_close(a, b, what):
    for field in ("coef", "acc", "zacc", "last", "avg", "scalars", "xmax"):
        x, y = getattr(a, field), getattr(b, field)
        np.testing.assert_allclose(x, y, rtol=SGD_RTOL, atol=SGD_RTOL * (np.abs(y).max(initial=0.0) + 1e-300),
                                   err_msg=f"{what}: state.{field}")


@pytest.mark.parametrize("optimizer,weighting", SGD_CONFIGS)
@pytest.mark.parametrize("layout", [LAYOUTS[0], LAYOUTS[2]], ids=layout_id)
def test_sgd_trajectory(compiled_backend_name, optimizer, weighting, layout, rng):
    """Same data, same row orders, same start: the state after every epoch matches the reference's."""
    X, _, _ = make_case(rng, layout, n=120, d=9)
    n = X.shape[0]
    y = (rng.random(n) < 0.3).astype(np.float64)
    w = np.where(y > 0, rng.lognormal(1, 1, n), 1.0)
    w /= w.mean()
    w[3] = 0.0
    f = check_features(X)
    be, ref = get_backend(compiled_backend_name), get_backend("reference")
    for l2, average in ((0.0, False), (0.01, True)):
        params = _epoch_params(optimizer, weighting, l2, n, average and optimizer != "ftrl")
        states = [SGDState.new(f.n_features, optimizer, params.avg_start < math.inf) for _ in range(2)]
        for epoch in range(3):
            order = rng.permutation(n).astype(np.int64)
            if epoch == 2:
                order = np.r_[order, order[:30]]                      # repeats, as in resampling
            outs = []
            for module, state in zip((be, ref), states):
                if f.is_sparse:
                    outs.append(module.sgd_epoch_csr(f.data, f.indices, f.indptr, y, w, order, state, params))
                else:
                    outs.append(module.sgd_epoch_dense(f.X, y, w, order, state, params))
            assert outs[0][1] == outs[1][1] == -1
            assert outs[0][0] == pytest.approx(outs[1][0], rel=SGD_RTOL)
            _states_close(states[0], states[1], f"{compiled_backend_name} {optimizer}/{weighting} epoch {epoch}")


@pytest.mark.parametrize("n", [400, 200], ids=["packed", "unpacked"])
@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "ftrl", "normalized"])
def test_sgd_trajectory_hashed_columns(compiled_backend_name, optimizer, n, rng):
    """Hashed-style CSR (2,000 columns, 6 a row): coordinates wait hundreds of steps between
    touches, so the lazy catch-up meets long gaps (r^m far below 1 with strong L2) and averaging
    that starts inside a gap. The cython CSR epoch packs its state when an epoch touches at least
    d coordinates (400 x 6 >= 2,000), and works on the arrays in place otherwise (200 x 6)."""
    d, k = 2000, 6
    cols = np.concatenate([np.sort(rng.choice(d, k, replace=False)) for _ in range(n)])
    X = sp.csr_array((rng.standard_normal(n * k), cols, np.arange(0, n * k + 1, k)), shape=(n, d))
    y = (rng.random(n) < 0.3).astype(np.float64)
    w = np.where(y > 0, rng.lognormal(1, 1, n), 1.0)
    w /= w.mean()
    f = check_features(X)
    be, ref = get_backend(compiled_backend_name), get_backend("reference")
    for l2 in (0.0, 0.05, 5.0):
        params = _epoch_params(optimizer, "iwa", l2, n, optimizer != "ftrl")
        states = [SGDState.new(d, optimizer, params.avg_start < math.inf) for _ in range(2)]
        for epoch in range(3):
            order = rng.permutation(n).astype(np.int64)
            outs = [m.sgd_epoch_csr(f.data, f.indices, f.indptr, y, w, order, st, params)
                    for m, st in zip((be, ref), states)]
            assert outs[0][1] == outs[1][1] == -1
            assert outs[0][0] == pytest.approx(outs[1][0], rel=SGD_RTOL)
            _states_close(states[0], states[1], f"{compiled_backend_name} {optimizer} l2={l2} epoch {epoch}")


def test_sgd_divergence_same_position(compiled_backend_name, rng):
    X, _, _ = dense_case(rng, 200, 5, np.float64, scale=1e160)   # one step: |coef| ~ 1e167, z overflows
    y = (rng.random(200) < 0.5).astype(np.float64)
    w = np.where(y > 0, 1e4, 1.0)
    params = EpochParams(0, 0, 1, 1e3, 0.5, 0.0, 0.0, 0.1, 1.0, math.inf, True)  # constant, huge rate
    order = rng.permutation(200).astype(np.int64)
    results = []
    for name in (compiled_backend_name, "reference"):
        state = SGDState.new(5, "sgd", False)
        with np.errstate(all="ignore"):  # the numpy reference warns as its sums overflow
            results.append(get_backend(name).sgd_epoch_dense(X, y, w, order, state, params)[1])
    assert results[0] == results[1] >= 0


@pytest.mark.parametrize("params", [SGDParams(), SGDParams(weighting="resample", optimizer="sgd", l2=1e-3),
                                    SGDParams(weighting="gradient", optimizer="ftrl", l1=1e-3)],
                         ids=["default", "resample-sgd", "ftrl-l1"])
def test_fit_sgd_same_seed(compiled_backend_name, params, rng):
    X, coef, b = dense_case(rng, 300, 6, np.float32)
    y = (rng.random(300) < 0.2).astype(np.float64)
    w = np.where(y > 0, rng.lognormal(2, 1, 300), 1.0)
    f = check_features(X)
    res = [fit_sgd(f, y, w, params, max_iter=4, tol=None, random_state=11, backend=name, n_threads=1)
           for name in (compiled_backend_name, "reference")]
    np.testing.assert_allclose(res[0].coef, res[1].coef, rtol=SGD_RTOL, atol=SGD_RTOL * np.abs(res[1].coef).max())
    assert res[0].intercept == pytest.approx(res[1].intercept, rel=SGD_RTOL)


# ------------------------------------------------------------------------------ estimators (public API)

@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
@pytest.mark.parametrize("sparse", [False, True])
def test_estimator_same_model_every_backend(solver, sparse, rng):
    X, _, _ = dense_case(rng, 400, 5, np.float64)
    T = np.where(rng.random(400) < 0.3, rng.lognormal(2, 1, 400), 0.0)
    Xf = sp.csr_matrix(np.where(np.abs(X) > 0.7, X, 0.0)) if sparse else X
    tol = SGD_RTOL if solver == "sgd" else LBFGS_RTOL
    fits = {}
    for name in available_backends():
        model = fastwlr.WatchTimeRanker(solver=solver, random_state=3, n_threads=1, backend=name,
                                        **({"max_iter": 3, "tol": None} if solver == "sgd" else {}))
        fits[name] = model.fit(Xf, T)   # watch time T > 0: a click weighted T; T = 0: a negative
    ref = fits["reference"]
    for name, model in fits.items():
        np.testing.assert_allclose(model.coef_, ref.coef_, rtol=tol, atol=tol * np.abs(ref.coef_).max(), err_msg=name)
        np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=tol, err_msg=name)
        # predictions through the same backend agree within the scoring tolerance
        np.testing.assert_allclose(model.predict(Xf), ref.predict(Xf), rtol=10 * tol)


# ------------------------------------------------------------------------------ selection reaches every call

def test_use_backend_reaches_public_functions(rng, monkeypatch):
    """Inside use_backend(name), the public functions run that backend's kernels."""
    X, coef, b = dense_case(rng, 50, 4, np.float64)
    for name in available_backends():
        calls = []
        module = get_backend(name)
        # score() and score_topk() of this common case take the backend's compiled fast paths where it has them
        score_fn = "score_fast" if hasattr(module, "score_fast") else "score_dense"
        topk_fn = "score_topk_fast" if hasattr(module, "score_topk_fast") else "score_topk_dense"
        for fn in (score_fn, "topk", topk_fn):
            original = getattr(module, fn)
            monkeypatch.setattr(module, fn, lambda *a, _o=original, _fn=fn, **k: (calls.append(_fn), _o(*a, **k))[1])
        with fastwlr.use_backend(name):
            fastwlr.score(X, coef, b)
            fastwlr.topk(rng.standard_normal(10), 2)
            fastwlr.score_topk(X, coef, b, k=2)
        assert calls == [score_fn, "topk", topk_fn], name
        monkeypatch.undo()


def test_sgd_optimal_schedule_trajectory(compiled_backend_name, rng):
    """learning_rate="optimal" (eta0 / (1 + eta0 l2 t)) follows the reference, dense and CSR."""
    for layout in (LAYOUTS[0], LAYOUTS[2]):
        X, _, _ = make_case(rng, layout, n=150, d=7)
        n = X.shape[0]
        y = (rng.random(n) < 0.3).astype(np.float64)
        w = np.where(y > 0, rng.lognormal(1, 1, n), 1.0)
        f = check_features(X)
        params = replace(_epoch_params("sgd", "iwa", 0.05, n, True), schedule=3)
        states = [SGDState.new(f.n_features, "sgd", True) for _ in range(2)]
        for epoch in range(2):
            order = rng.permutation(n).astype(np.int64)
            for module, state in zip((get_backend(compiled_backend_name), get_backend("reference")), states):
                if f.is_sparse:
                    module.sgd_epoch_csr(f.data, f.indices, f.indptr, y, w / w.mean(), order, state, params)
                else:
                    module.sgd_epoch_dense(f.X, y, w / w.mean(), order, state, params)
            _states_close(states[0], states[1], f"{compiled_backend_name} optimal {layout_id(layout)} epoch {epoch}")
