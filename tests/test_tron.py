"""solver="newton-cg" (trust-region Newton-CG), its CSR kernels, and what solver="auto" picks."""
import warnings
from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from fastwlr import WatchTimeRanker, WeightedLogisticRegression
from fastwlr import _kernels
from fastwlr._kernels import Kernels
from fastwlr._validation import check_features
from fastwlr.backends import reference as ref
from fastwlr.datasets import make_watch_time
from fuzzing import fitted_objective  # noqa: E402  (the numpy oracle of the objective)
from fastwlr.exceptions import ConvergenceWarning


def _hashed(n=4000, cols=3000, nnz=12, seed=0, dtype=np.float64):
    d = make_watch_time(n, sparse=True, n_hashed_features=cols, nnz_per_row=nnz, dtype=dtype, random_state=seed)
    return d.X, d.clicked.astype(np.float64), np.where(d.clicked, d.watch_time, 1.0)


def _one_hot(n=5000, d=300, seed=0):
    """Categorical levels of Zipf frequencies (some seen a handful of times), heavy-tailed weights."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, d + 1)
    cols = np.sort(rng.choice(d, size=(n, 6), p=p / p.sum()), axis=1)
    X = sp.csr_array((np.ones(n * 6), cols.ravel(), np.arange(0, n * 6 + 1, 6)), shape=(n, d))
    X.sum_duplicates()
    z = X @ rng.normal(scale=0.5, size=d) - 2.0
    clicked = rng.random(n) < 1 / (1 + np.exp(-z))
    return X, clicked.astype(np.float64), np.where(clicked, rng.lognormal(3.0, 1.5, n), 1.0)


# ---------------------------------------------------------------------------------- the optimum
@pytest.mark.parametrize("alpha", [1e-6, 1e-3])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("data", ["hashed32", "hashed64", "one_hot", "dense"])
def test_newton_cg_reaches_the_exact_optimum(data, fit_intercept, alpha):
    X, y, w = {"hashed32": lambda: _hashed(dtype=np.float32), "hashed64": _hashed, "one_hot": _one_hot,
               "dense": lambda: make_watch_time(3000, 10, dtype=np.float64, random_state=1).X}[data]() \
        if data != "dense" else (make_watch_time(3000, 10, dtype=np.float64, random_state=1).X,) + _hashed(3000)[1:]
    kw = dict(alpha=alpha, fit_intercept=fit_intercept)
    tron = WeightedLogisticRegression(solver="newton-cg", **kw).fit(X, y, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        exact = WeightedLogisticRegression(solver="lbfgs", tol=1e-10, max_iter=20000, **kw).fit(X, y, w)
    assert tron.converged_ and tron.solver_ == "newton-cg"
    L, L_exact = fitted_objective(X, y, w, tron, alpha), fitted_objective(X, y, w, exact, alpha)
    assert L <= L_exact * (1 + 1e-9) + 1e-15, (L, L_exact)
    if not fit_intercept:
        assert tron.intercept_[0] == 0.0


def test_newton_cg_gradient_is_zero_by_the_reference():
    X, y, w = _one_hot()
    est = WeightedLogisticRegression(solver="newton-cg", alpha=1e-4).fit(X, y, w)
    Xc = sp.csr_array(X)
    _, g, gb = ref.objective_grad_csr(Xc.data, Xc.indices, Xc.indptr, Xc.shape[1], y, w * len(w) / w.sum(),
                                      est.coef_[0], est.intercept_[0], 1e-4)
    assert np.abs(g).max() <= 1e-8 and abs(gb) <= 1e-8


@pytest.mark.parametrize("n_threads", [2, 4])
def test_newton_cg_bit_identical_for_any_thread_count(n_threads):
    X, y, w = _hashed(20000, 5000, 16)
    one = WeightedLogisticRegression(solver="newton-cg", n_threads=1).fit(X, y, w)
    many = WeightedLogisticRegression(solver="newton-cg", n_threads=n_threads).fit(X, y, w)
    np.testing.assert_array_equal(one.coef_, many.coef_)
    assert one.intercept_[0] == many.intercept_[0] and one.n_iter_ == many.n_iter_


def test_newton_cg_backends_agree(backend_name):
    X, y, w = _hashed(1500, 400, 8)
    # tight tolerances: at the default 1e-8 on the gradient, coefficients of weak curvature differ ~1e-6
    est = WeightedLogisticRegression(solver="newton-cg", alpha=1e-3, tol=1e-12, backend=backend_name).fit(X, y, w)
    base = WeightedLogisticRegression(solver="newton", alpha=1e-3, tol=1e-12).fit(X, y, w)
    np.testing.assert_allclose(est.coef_, base.coef_, rtol=1e-6, atol=1e-7)


def test_newton_cg_weight_scale_and_warm_start():
    X, y, w = _one_hot(3000, 100)
    a = WeightedLogisticRegression(solver="newton-cg", alpha=1e-4).fit(X, y, w)
    b = WeightedLogisticRegression(solver="newton-cg", alpha=1e-4).fit(X, y, w * 1e5)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6, atol=1e-8)
    warm = WeightedLogisticRegression(solver="newton-cg", alpha=1e-4, warm_start=True).fit(X, y, w)
    warm.fit(X, y, w)
    assert warm.n_iter_ == 0  # the previous optimum meets the tolerance: no iteration


def test_newton_cg_not_converged_warns():
    X, y, w = _hashed(3000, 2000, 10)
    with pytest.warns(ConvergenceWarning, match="newton-cg stopped after 1 iterations"):
        est = WeightedLogisticRegression(solver="newton-cg", max_iter=1).fit(X, y, w)
    assert est.converged_ is False


def test_newton_cg_ranker_save_load(tmp_path):
    from fastwlr import load
    X, y, w = _hashed(2000, 500, 8)
    T = np.where(y > 0, w, 0.0)
    ranker = WatchTimeRanker(solver="newton-cg").fit(X, T)
    ranker.save(tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert back.solver == "newton-cg"
    np.testing.assert_array_equal(back.predict(X), ranker.predict(X))


# ------------------------------------------------------------------ CSR kernels against numpy
def _csr_case(n, d, density, seed, index_dtype):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=density, format="csr", random_state=seed, dtype=np.float64)
    X.data = rng.normal(scale=3.0, size=X.nnz)
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    return X, rng


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 60), d=st.integers(1, 40), density=st.floats(0.0, 1.0), seed=st.integers(0, 2**31),
       index64=st.booleans(), threads=st.sampled_from([1, 2]))
def test_curvature_and_hessian_vector_match_numpy(n, d, density, seed, index64, threads):
    X, rng = _csr_case(n, d, density, seed, np.int64 if index64 else np.int32)
    w = rng.exponential(size=n) * (rng.random(n) < 0.9)  # some zero weights
    coef, b = rng.normal(scale=2.0, size=d), float(rng.normal())
    v, vb = rng.normal(size=d), float(rng.normal())
    features = check_features(X)
    for backend in ("cython", "reference"):
        try:
            k = Kernels(backend, threads)
        except (ImportError, ValueError):
            continue
        s, diag = k.curvature(features, w, coef, b)
        e = np.exp(-np.abs(X @ coef + b))
        np.testing.assert_allclose(s, w * e / (1 + e) ** 2, rtol=1e-12, atol=1e-300)  # p (1 - p), no cancellation
        Xd = X.toarray()
        np.testing.assert_allclose(diag, (Xd * Xd).T @ s, rtol=1e-10, atol=1e-12)
        hv, hb = k.hessian_vector(features, s, v, vb)
        u = s * (Xd @ v + vb)
        np.testing.assert_allclose(hv, Xd.T @ u, rtol=1e-10, atol=1e-10)
        assert hb == pytest.approx(u.sum(), rel=1e-10, abs=1e-10)
        # with X^T attached (the compiled core's column-by-column passes): the same sums, up to order
        with mock.patch.object(_kernels, "TRANSPOSE_ABOVE_BYTES", -1):
            with_t = k.with_transpose(features)
        assert (with_t.transpose is not None) == (backend == "cython")
        s_t, diag_t = k.curvature(with_t, w, coef, b)
        np.testing.assert_array_equal(s_t, s)
        np.testing.assert_allclose(diag_t, diag, rtol=1e-12, atol=1e-300)
        hv_t, hb_t = k.hessian_vector(with_t, s, v, vb)
        np.testing.assert_allclose(hv_t, hv, rtol=1e-12, atol=1e-12)
        assert hb_t == hb
        y = (rng.random(n) < 0.3).astype(np.float64)
        loss, g, gb = k.objective_grad(features, y, w, coef, b, 0.1)
        # the curvature weights from the objective's pass, and the column sums alone: curvature's
        loss_c, g_c, gb_c, s_c, diag_c = k.objective_grad_curvature(features, y, w, coef, b, 0.1)
        assert (loss_c, gb_c) == (loss, gb) and (s_c is not None) == (backend == "cython")
        np.testing.assert_array_equal(g_c, g)
        if s_c is not None:  # and the column sums from the gradient's pass: column_sq's, bit for bit
            np.testing.assert_array_equal(s_c, s)
            np.testing.assert_array_equal(diag_c, diag)
            _, g_ct, _, s_ct, diag_ct = k.objective_grad_curvature(with_t, y, w, coef, b, 0.1)
            np.testing.assert_array_equal(s_ct, s)
            np.testing.assert_array_equal(diag_ct, diag_t)
            np.testing.assert_array_equal(g_ct, k.objective_grad(with_t, y, w, coef, b, 0.1)[1])
        else:
            assert diag_c is None
        loss_t, g_t, gb_t = k.objective_grad(with_t, y, w, coef, b, 0.1)
        assert (loss_t, gb_t) == (loss, gb)
        np.testing.assert_allclose(g_t, g, rtol=1e-12, atol=1e-12)


def _compiled_objective():
    try:  # where the compiled core is not built, its package raises ImportError (not a skip by itself)
        from fastwlr.backends.cython_core import _objective
    except ImportError:
        pytest.skip("the compiled core is not built")
    return _objective


def test_transpose_rule_and_its_checks():
    """X^T is attached where the scatter's partials would pass TRANSPOSE_ABOVE_BYTES in all or
    PARTIAL_ABOVE_BYTES each, or the scatter is serial; a transpose that does not match X is refused by the kernels."""
    _objective = _compiled_objective()
    k = Kernels("cython", 2)
    narrow = check_features(_hashed(4000, 300, 12)[0])
    assert k.with_transpose(narrow).transpose is None           # a few partials of 2.4 KB
    wide = check_features(_hashed(300, 3000, 4)[0])             # nnz < 4 d: one block, a serial scatter
    assert k.with_transpose(wide).transpose is not None
    assert Kernels("cython", 1).with_transpose(wide).transpose is None   # serial anyway
    with mock.patch.object(_kernels, "PARTIAL_ABOVE_BYTES", 300 * 8 - 1):   # one partial too big
        assert k.with_transpose(narrow).transpose is not None
    with mock.patch.object(_kernels, "TRANSPOSE_ABOVE_BYTES", -1):
        t = k.with_transpose(narrow)
    Xt = sp.csr_array((narrow.data, narrow.indices, narrow.indptr), shape=(4000, 300)).T.tocsr()
    for got, want in zip(t.transpose, (Xt.data, Xt.indices, Xt.indptr)):
        np.testing.assert_array_equal(got, want)           # scipy's transpose, entry for entry
    assert t.transpose[1].dtype == narrow.indices.dtype and t.transpose[2].dtype == narrow.indices.dtype
    assert t.rows(0, 10).transpose is None                      # a slice is another matrix
    bad = (t.transpose[0][:-1], t.transpose[1][:-1], t.transpose[2])
    s, v = np.ones(4000), np.ones(300)
    with pytest.raises(ValueError, match="transpose does not match X"):
        _objective.hessvec_csr(narrow.data, narrow.indices, narrow.indptr, 300, s, v, 0.0, 1, bad)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 3000), d=st.integers(0, 50), density=st.floats(0.0, 1.0), seed=st.integers(0, 2**31),
       index64=st.booleans(), threads=st.sampled_from([1, 2, 3]))
def test_transpose_csr_is_scipys(n, d, density, seed, index64, threads):
    """The compiled counting sort against scipy's transpose, empty rows, columns and matrices included."""
    _objective = _compiled_objective()
    X = sp.random(n, d, density=density, format="csr", random_state=seed, dtype=np.float32) if n and d \
        else sp.csr_array((n, d), dtype=np.float32)
    index = np.int64 if index64 else np.int32
    got = _objective.transpose_csr(X.data, X.indices.astype(index), X.indptr.astype(index), d, threads)
    Xt = sp.csr_array(X).T.tocsr()
    Xt.sort_indices()
    for g, want in zip(got, (Xt.data, Xt.indices, Xt.indptr)):
        np.testing.assert_array_equal(g, want)
    assert got[0].dtype == np.float32 and got[1].dtype == index and got[2].dtype == index


def test_newton_cg_with_transpose_same_fit_any_threads():
    X, y, w = _hashed(20000, 5000, 16)
    plain = WeightedLogisticRegression(solver="newton-cg", n_threads=2).fit(X, y, w)
    with mock.patch.object(_kernels, "TRANSPOSE_ABOVE_BYTES", -1):
        one = WeightedLogisticRegression(solver="newton-cg", n_threads=1).fit(X, y, w)
        two = WeightedLogisticRegression(solver="newton-cg", n_threads=2).fit(X, y, w)
    np.testing.assert_array_equal(one.coef_, two.coef_)
    assert one.intercept_[0] == two.intercept_[0]
    # both stop at the same tol, by different roundings of the same sums: the same optimum
    L, L_plain = fitted_objective(X, y, w, one, 1e-6), fitted_objective(X, y, w, plain, 1e-6)
    assert L == pytest.approx(L_plain, rel=1e-10)


# ----------------------------------------------------------------------------- solver="auto"
def test_auto_picks_by_shape_and_options():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 64))
    y = (rng.random(2000) < 0.3).astype(float)
    assert WeightedLogisticRegression().fit(X, y).solver_ == "lbfgs"  # standardised rows: lbfgs is fast enough
    assert WeightedLogisticRegression().fit(sp.csr_array(X), y).solver_ == "newton-cg"
    for sgd_option in ({"tol": None}, {"l1_ratio": 0.5, "optimizer": "ftrl"}, {"eta0": 0.1},
                       {"optimizer": "sgd"}, {"weighting": "resample"}, {"average": False}):
        assert WeightedLogisticRegression(max_iter=2, **sgd_option).fit(X, y).solver_ == "sgd", sgd_option
    # the defaults' own values written out are still the defaults: an exact solver
    assert WeightedLogisticRegression(l1_ratio=0, eta0="auto", power_t=0.5).fit(X, y).solver_ != "sgd"
    est = WeightedLogisticRegression()
    est.partial_fit(X, y)
    assert est.solver_ == "sgd"


def test_auto_hands_over_to_newton_where_lbfgs_is_slow():
    """Rare one-hot columns and heavy-tailed weights in a dense array: lbfgs's progress is too slow,
    and newton finishes from where it stopped, at the optimum."""
    X, y, w = _one_hot(20000, 60)
    Xd = X.toarray()
    auto = WeightedLogisticRegression(alpha=1e-6).fit(Xd, y, w)
    lbfgs = WeightedLogisticRegression(alpha=1e-6, solver="lbfgs").fit(Xd, y, w)
    assert lbfgs.n_iter_ > 15, "the case no longer needs the hand-over"
    assert auto.solver_ == "newton" and auto.converged_ and auto.n_iter_ < lbfgs.n_iter_
    L, L_lbfgs = fitted_objective(Xd, y, w, auto, 1e-6), fitted_objective(Xd, y, w, lbfgs, 1e-6)
    assert abs(L - L_lbfgs) <= 1e-9 * L_lbfgs


def test_lbfgs_too_slow_rule():
    from fastwlr.estimators import AUTO_WINDOW, _lbfgs_too_slow
    fast = [10.0 ** -k for k in range(AUTO_WINDOW + 1)]          # 10x an iteration: 5 more to 1e-8
    assert not _lbfgs_too_slow(fast, 1e-8, 64)
    assert not _lbfgs_too_slow(fast[:-1], 1e-8, 64) and not _lbfgs_too_slow([1.0], 1e-8, 64)  # too early
    slow = [1.0, 0.9, 0.8, 0.7]                                       # ~130 more iterations
    assert _lbfgs_too_slow(slow, 1e-8, 64)
    assert _lbfgs_too_slow([1.0, 2.0, 3.0, 1.5], 1e-8, 64)           # no progress over the window
    # the same rate is slow against a cheap Hessian (few columns), fast enough against a costly one
    moderate = [1.0, 0.5, 0.25, 0.125]                                # ~25 more iterations
    assert _lbfgs_too_slow(moderate, 1e-8, 20) and not _lbfgs_too_slow(moderate, 1e-8, 200)
    assert _lbfgs_too_slow(fast, 0.0, 64)  # tol=0: lbfgs never gets there


def test_auto_with_tol_zero_hands_over_and_stops():
    X, y, w = _one_hot(3000, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0 is never met exactly
        est = WeightedLogisticRegression(alpha=1e-4, tol=0.0, max_iter=60).fit(X.toarray(), y, w)
    assert est.solver_ == "newton" and np.isfinite(est.coef_).all()


def test_auto_small_max_iter_is_plain_lbfgs_with_its_warning():
    X, y, w = _one_hot(5000, 60)
    with pytest.warns(ConvergenceWarning, match="lbfgs stopped after 3"):
        est = WeightedLogisticRegression(max_iter=3).fit(X.toarray(), y, w)
    assert est.solver_ == "lbfgs" and est.n_iter_ == 3


def test_auto_model_files_record_the_solver(tmp_path):
    import json
    from fastwlr import load
    X, y, w = _hashed(1000, 200, 6)
    est = WeightedLogisticRegression().fit(X, y, w)
    est.save(tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert back.solver == "auto" and back.solver_ == "newton-cg"
    # a header whose solver_ contradicts the saved state is refused
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays["header"][()]))
    header["fitted"]["solver_"] = "sgd"
    arrays["header"] = np.array(json.dumps(header))
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="solver_"):
        load(tmp_path / "bad.npz")
