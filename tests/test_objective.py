"""The compiled weighted objective + gradient against the numpy reference, and the reference against
finite differences (so the oracle itself is checked)."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from fastwlr._config import get_backend
from fastwlr.backends import reference as ref


def _problem(rng, n, d, dtype, density=None, z_scale=1.0):
    if density is None:
        X = rng.standard_normal((n, d)).astype(dtype)
    else:
        X = sp.random(n, d, density=density, format="csr", dtype=dtype, random_state=rng)
    y = (rng.random(n) < 0.3).astype(np.float64)
    w = rng.exponential(size=n) * (rng.random(n) < 0.8)  # a fifth of the weights are zero
    coef = rng.standard_normal(d) * z_scale
    return X, y, w, coef


def _backend(name):
    return get_backend(name)  # every backend implements the objective: a missing one fails here


def _call(backend, X, y, w, coef, b, l2, n_threads=1):
    if sp.issparse(X):
        return backend.objective_grad_csr(X.data, X.indices, X.indptr, X.shape[1], y, w, coef, b, l2, n_threads)
    return backend.objective_grad_dense(X, y, w, coef, b, l2, n_threads)


def _assert_close(got, want, rtol):
    loss, g, gb = got
    assert isinstance(loss, float) and g.dtype == np.float64 and isinstance(gb, float)
    scale = max(1.0, abs(want[0]))
    assert abs(loss - want[0]) <= rtol * scale
    np.testing.assert_allclose(g, want[1], rtol=rtol, atol=rtol * max(1.0, np.abs(want[1]).max()))
    assert abs(gb - want[2]) <= rtol * max(1.0, abs(want[2]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("density", [None, 0.05])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_matches_reference(backend_name, rng, dtype, density, index_dtype):
    if density is None and index_dtype == np.int64:
        pytest.skip("index dtype only matters for CSR")
    backend = _backend(backend_name)
    X, y, w, coef = _problem(rng, 3000, 37, dtype, density)
    if density is not None:
        X.indices = X.indices.astype(index_dtype)
        X.indptr = X.indptr.astype(index_dtype)
    for n_threads in (1, 2):
        got = _call(backend, X, y, w, coef, 0.7, 0.05, n_threads)
        _assert_close(got, _call(ref, X, y, w, coef, 0.7, 0.05), 1e-12)


def test_reference_gradient_is_the_derivative(rng):
    """Central finite differences of the reference loss: the oracle is checked too."""
    X, y, w, coef = _problem(rng, 200, 5, np.float64)
    b, l2, h = -0.3, 0.2, 1e-6
    loss, g, gb = ref.objective_grad_dense(X, y, w, coef, b, l2)
    num = np.empty(5)
    for j in range(5):
        e = np.zeros(5)
        e[j] = h
        num[j] = (ref.objective_grad_dense(X, y, w, coef + e, b, l2)[0]
                  - ref.objective_grad_dense(X, y, w, coef - e, b, l2)[0]) / (2 * h)
        assert num[j] == pytest.approx(g[j], rel=1e-6, abs=1e-8)
    num_b = (ref.objective_grad_dense(X, y, w, coef, b + h, l2)[0]
             - ref.objective_grad_dense(X, y, w, coef, b - h, l2)[0]) / (2 * h)
    assert num_b == pytest.approx(gb, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("sparse", [False, True])
def test_huge_log_odds_stay_finite_and_exact(compiled_backend_name, sparse):
    """|z| up to 1e4: e^z overflows, the loss must not. Exact values: a positive at z = +1e4 costs
    ~0; a negative at z = +1e4 costs 1e4; gradients are w * (sigma(z) - y) in {-w, 0, w}."""
    backend = _backend(compiled_backend_name)
    X = np.array([[1.0], [1.0], [-1.0], [-1.0]])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    w = np.array([2.0, 3.0, 5.0, 7.0])
    if sparse:
        X = sp.csr_array(X)
    with np.errstate(all="raise"):
        loss, g, gb = _call(backend, X, y, w, np.array([1e4]), 0.0, 0.0)
    # rows: z = 1e4 (y=1: 0), z = 1e4 (y=0: 3e4), z = -1e4 (y=1: 5e4), z = -1e4 (y=0: 0)
    assert loss == pytest.approx((3e4 + 5e4) / 4, rel=1e-15)
    # residuals: 0, 3, -5, 0; gradient sum_i r_i x_i / n = (3*1 + -5*-1) / 4
    assert g[0] == pytest.approx(8.0 / 4, rel=1e-15)
    assert gb == pytest.approx(-2.0 / 4, rel=1e-15)
    want = _call(ref, X, y, w, np.array([1e4]), 0.0, 0.0)
    _assert_close((loss, g, gb), want, 1e-12)


def test_tiny_losses_keep_relative_precision(compiled_backend_name):
    """A positive at z = 30 loses ~9.4e-14: computed as softplus(-z), not softplus(z) - z."""
    backend = _backend(compiled_backend_name)
    loss, g, gb = backend.objective_grad_dense(np.ones((1, 1)), np.ones(1), np.ones(1),
                                               np.array([30.0]), 0.0, 0.0, 1)
    assert loss == pytest.approx(np.log1p(np.exp(-30.0)), rel=1e-14)
    assert gb == pytest.approx(-1.0 / (1.0 + np.exp(30.0)), rel=1e-14)


@pytest.mark.parametrize("sparse", [False, True])
def test_edge_shapes(compiled_backend_name, rng, sparse):
    backend = _backend(compiled_backend_name)
    coef = np.array([0.5, -1.0])
    cases = [
        (np.zeros((0, 2)), np.zeros(0), np.zeros(0)),                     # no rows
        (np.zeros((4, 2)), np.array([0, 1, 0, 1.0]), np.ones(4)),          # all-zero rows
        (np.ones((3, 2)), np.array([1, 0, 1.0]), np.zeros(3)),             # all weights zero
        (rng.standard_normal((1, 2)), np.ones(1), np.full(1, 1e6)),       # one row, big weight
    ]
    for X, y, w in cases:
        X = sp.csr_array(X) if sparse else X
        _assert_close(_call(backend, X, y, w, coef, 0.2, 0.3), _call(ref, X, y, w, coef, 0.2, 0.3), 1e-12)
    # d = 1 and a matrix with no stored entries at all
    X1 = rng.standard_normal((50, 1))
    y1 = (rng.random(50) < 0.5).astype(float)
    X1 = sp.csr_array(X1) if sparse else X1
    _assert_close(_call(backend, X1, y1, np.ones(50), np.array([2.0]), 0.0, 0.0),
                  _call(ref, X1, y1, np.ones(50), np.array([2.0]), 0.0, 0.0), 1e-12)
    if sparse:
        empty = sp.csr_array((5, 3))
        _assert_close(_call(backend, empty, np.ones(5), np.ones(5), np.ones(3), 1.0, 0.1),
                      _call(ref, empty, np.ones(5), np.ones(5), np.ones(3), 1.0, 0.1), 1e-12)


def test_float32_close_to_float64(compiled_backend_name, rng):
    backend = _backend(compiled_backend_name)
    X, y, w, coef = _problem(rng, 2000, 20, np.float64)
    got32 = backend.objective_grad_dense(X.astype(np.float32), y, w, coef, 0.1, 0.0, 1)
    want = backend.objective_grad_dense(X.astype(np.float32).astype(np.float64), y, w, coef, 0.1, 0.0, 1)
    # float32 features are widened, never rounded: same inputs -> same numbers to float64 rounding
    _assert_close(got32, want, 1e-12)
    _assert_close(got32, backend.objective_grad_dense(X, y, w, coef, 0.1, 0.0, 1), 1e-5)


@pytest.mark.parametrize("sparse", [False, True])
def test_thread_count_does_not_change_bits(compiled_backend_name, rng, sparse):
    """Blocks depend on (n, d) only and are reduced in a fixed order: bit-identical for any n_threads."""
    backend = _backend(compiled_backend_name)
    X, y, w, coef = _problem(rng, 40_000, 30, np.float32, 0.1 if sparse else None)
    runs = [_call(backend, X, y, w, coef, 0.1, 0.01, t) for t in (1, 2, 3)]
    for loss, g, gb in runs[1:]:
        assert loss == runs[0][0] and gb == runs[0][2]
        assert np.array_equal(g, runs[0][1])


def test_inputs_not_modified(compiled_backend_name, rng):
    backend = _backend(compiled_backend_name)
    X, y, w, coef = _problem(rng, 100, 4, np.float64)
    copies = [a.copy() for a in (X, y, w, coef)]
    backend.objective_grad_dense(X, y, w, coef, 0.0, 1.0, 2)
    for a, c in zip((X, y, w, coef), copies):
        assert np.array_equal(a, c)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 60), d=st.integers(1, 9), sparse=st.booleans(), f32=st.booleans(),
       z_scale=st.sampled_from([0.0, 1.0, 30.0, 1e3]), seed=st.integers(0, 2**32 - 1))
def test_property_matches_reference(n, d, sparse, f32, z_scale, seed):
    rng = np.random.default_rng(seed)
    X, y, w, coef = _problem(rng, n, d, np.float32 if f32 else np.float64, 0.3 if sparse else None, z_scale)
    want = _call(ref, X, y, w, coef, -0.5, 0.1)
    for name in ("cython", "numba"):
        try:
            backend = get_backend(name)
        except ImportError:
            continue
        if not hasattr(backend, "objective_grad_dense"):
            continue
        # the reference computes softplus(z) - y z directly: its absolute error grows with |z|
        _assert_close(_call(backend, X, y, w, coef, -0.5, 0.1, 2), want, 1e-12 * max(1.0, z_scale))


@pytest.mark.requires_backend("cython")   # a helper only the compiled core has
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weighted_column_sq_helper(rng, dtype):
    """The lbfgs preconditioner's compiled helper against numpy, and the numpy fallback too."""
    from fastwlr._kernels import Kernels
    from fastwlr._validation import check_features
    X = rng.standard_normal((5000, 7)).astype(dtype)
    w = rng.exponential(size=5000) * (rng.random(5000) < 0.9)
    want = w @ (X.astype(np.float64) ** 2)
    np.testing.assert_allclose(Kernels("reference", 2).weighted_column_sq(check_features(X), w), want, rtol=1e-12)
    cy = get_backend("cython")
    got = [cy.weighted_column_sq_dense(X, w, t) for t in (1, 2)]
    np.testing.assert_allclose(got[0], want, rtol=1e-12)
    assert np.array_equal(got[0], got[1])
    assert np.array_equal(cy.weighted_column_sq_dense(X[:0], w[:0], 2), np.zeros(7))


@pytest.mark.requires_backend("cython")   # a helper only the compiled core has
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, step", [(5000, 3), (5001, 3), (5002, 3), (7, 10), (1, 2), (0, 4), (4096, 4096)])
def test_weighted_column_sq_helper_row_step(rng, dtype, n, step):
    """row_step reads the rows of X[::step] in place: the same sums (bit for bit) as on the strided
    copy, on every thread count, and the numpy fallback agrees; bad steps raise, never crash."""
    from fastwlr._kernels import Kernels
    from fastwlr._validation import check_features
    X = rng.standard_normal((n, 7)).astype(dtype)
    w = rng.exponential(size=n) * (rng.random(n) < 0.9)
    cy = get_backend("cython")
    want = cy.weighted_column_sq_dense(np.ascontiguousarray(X[::step]), np.ascontiguousarray(w[::step]), 1)
    for t in (1, 2):
        assert np.array_equal(cy.weighted_column_sq_dense(X, w, t, step), want)
    np.testing.assert_allclose(Kernels("reference", 2).weighted_column_sq(check_features(X), w, step),
                               w[::step] @ (X[::step].astype(np.float64) ** 2), rtol=1e-12)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="row_step"):
            cy.weighted_column_sq_dense(X, w, 1, bad)
    with pytest.raises(ValueError, match="rows"):
        cy.weighted_column_sq_dense(X, np.ones(n + 1), 1, step)


def _ulps(got, want):
    """|got - want| in units of the last place of want (1 ulp of the smallest normal for 0)."""
    spacing = np.spacing(np.maximum(np.abs(want), np.finfo(np.float64).tiny))
    return np.abs(got - want) / spacing


def test_branch_free_exp_and_log1p():
    """The objective's vectorisable exp (x <= 0) and log1p (e in [0, 1]) against numpy's libm:
    within 2 ulps everywhere, exact at the ends, right down to the subnormals and underflow,
    NaN in -> NaN out."""
    obj = pytest.importorskip("fastwlr.backends.cython_core._objective", exc_type=ImportError)
    rng = np.random.default_rng(7)
    x = np.concatenate([-rng.exponential(scale, 200_000) for scale in (1e-8, 0.1, 1.0, 10.0, 100.0)] +
                       [-np.linspace(0, 746, 100_001), -np.linspace(700, 746, 10_001),
                        [0.0, -0.0, -5e-324, -1e-300, -0.5 * np.log(2), -np.log(2), -708.3964185322641,
                         -708.4, -745.1, -745.13321910194, -745.14, -746.0, -1e4, -np.inf]]).astype(np.float64)
    got = np.empty_like(x)
    obj._exp_nonpos(x, got)
    want = np.exp(x)
    normal = want >= np.finfo(np.float64).tiny
    assert _ulps(got[normal], want[normal]).max() <= 2
    assert np.abs(got[~normal] - want[~normal]).max() <= 2 * 5e-324  # subnormal results: absolute
    assert (got[x == 0] == 1.0).all() and got[x <= -746].max() == 0.0
    assert (got > 0).sum() == (want > 0).sum() or np.abs(got - want).max() <= 5e-324

    e = np.concatenate([np.exp(x[np.isfinite(x)]), rng.random(200_000), 1 - rng.random(1000) * 1e-9,
                        [0.0, 5e-324, 1e-300, 1e-17, 2.0 ** -53, 2.0 ** -52, np.sqrt(2) - 1,
                         np.nextafter(np.sqrt(2) - 1, 1), np.nextafter(np.sqrt(2) - 1, 0), 0.5, 1.0]])
    got = np.empty_like(e)
    obj._log1p_unit(e, got)
    want = np.log1p(e)
    assert _ulps(got, want).max() <= 2
    assert got[e == 0].max() == 0.0 and got[-1] == np.log(2.0)

    for fn in (obj._exp_nonpos, obj._log1p_unit):
        out = np.empty(3)
        fn(np.array([np.nan, -np.nan, 0.0]), out)
        assert np.isnan(out[:2]).all() and np.isfinite(out[2])


@pytest.mark.parametrize("sparse", [False, True])
def test_batched_rows_match_reference_at_batch_edges(compiled_backend_name, rng, sparse):
    """Rows are processed in batches of 64 (log-odds, then losses in SIMD lanes, then gradients):
    row counts around the batch size and block cuts, zero weights at batch edges, huge |z|."""
    backend = _backend(compiled_backend_name)
    for n in (1, 63, 64, 65, 127, 129, 1000, 4097):
        X, y, w, coef = _problem(rng, n, 9, np.float64, 0.5 if sparse else None, z_scale=3.0)
        w[::64] = 0.0
        w[63::64] = 0.0
        X = sp.csr_array(X) if sparse else X
        want = _call(ref, X, y, w, coef, 0.3, 0.01)
        for n_threads in (1, 2):
            _assert_close(_call(backend, X, y, w, coef, 0.3, 0.01, n_threads), want, 1e-12 * 3)


@pytest.mark.requires_backend("cython")   # a helper only the compiled core has
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 65, 3000])
def test_objective_grad_colsq_helper(rng, dtype, n):
    """The lbfgs driver's fused first evaluation: the objective bit-identical to objective_grad_dense,
    the column sums equal to the separate helper's (and numpy's), on 1 and 2 threads."""
    cy = get_backend("cython")
    X, y, w, coef = _problem(rng, n, 37, dtype)
    plain = cy.objective_grad_dense(X, y, w, coef, 0.7, 0.05, 1)
    for n_threads in (1, 2):
        loss, g, gb, sq = cy.objective_grad_colsq_dense(X, y, w, coef, 0.7, 0.05, n_threads)
        assert loss == plain[0] and gb == plain[2] and np.array_equal(g, plain[1])
        np.testing.assert_allclose(sq, cy.weighted_column_sq_dense(X, w, 1), rtol=1e-13)
        np.testing.assert_allclose(sq, w @ (X.astype(np.float64) ** 2), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="shapes do not match"):
        cy.objective_grad_colsq_dense(X, y[:-1] if n else np.ones(1), w, coef, 0.7, 0.05, 1)


@pytest.mark.requires_backend("cython")   # a helper only the compiled core has
def test_lbfgs_fused_first_evaluation_same_solution(rng, monkeypatch):
    """Preconditioner from all rows in the first pass (compiled core) or from the separate pass
    (backends without the fused helper): both reach the same optimum."""
    from fastwlr._lbfgs import fit_lbfgs
    from fastwlr._validation import check_features
    X, y, w, _ = _problem(rng, 4000, 6, np.float64)
    X *= np.array([1.0, 10.0, 0.1, 100.0, 1.0, 3.0])
    features = check_features(X)
    a = fit_lbfgs(features, y, w, alpha=1e-3, n_threads=2, backend="cython")
    with monkeypatch.context() as m:  # the compiled kernels without the fused helper
        m.delattr(get_backend("cython"), "objective_grad_colsq_dense")
        b = fit_lbfgs(features, y, w, alpha=1e-3, n_threads=2, backend="cython")
    assert a.converged and b.converged
    np.testing.assert_allclose(a.coef, b.coef, rtol=1e-6, atol=1e-8)
    assert a.loss == pytest.approx(b.loss, rel=1e-12)
    warm = fit_lbfgs(features, y, w, alpha=1e-3, n_threads=2, backend="cython", coef_init=a.coef * 1.1,
                     intercept_init=a.intercept)  # u0 * scale need not give theta0 back: no cached call
    np.testing.assert_allclose(warm.coef, a.coef, rtol=1e-6, atol=1e-8)
