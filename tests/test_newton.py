"""solver="newton": the lbfgs objective's optimum in a few Hessian passes; determinism, errors."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import fastwlr
from fastwlr import WatchTimeRanker, WeightedLogisticRegression
from fastwlr._newton import MAX_HESSIAN_SIZE
from fastwlr.backends import reference as ref
from fastwlr.datasets import make_watch_time
from fuzzing import fitted_objective  # noqa: E402  (the numpy oracle of the objective)
from fastwlr.exceptions import ConvergenceWarning, DivergenceError


def _watch_time_data(sparse, dtype, n=6000, d=12, seed=0):
    if sparse:  # a moderate width: the dense Hessian is (d + 1)^2
        data = make_watch_time(n, sparse=True, n_hashed_features=16 * d, nnz_per_row=8, dtype=dtype,
                               random_state=seed)
    else:
        data = make_watch_time(n, d, dtype=dtype, random_state=seed)
    y = data.clicked.astype(np.float64)
    w = np.where(data.clicked, data.watch_time, 1.0)
    return data.X, y, w


@pytest.mark.parametrize("alpha", [1e-6, 1e-2])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("sparse,dtype", [(False, np.float32), (False, np.float64), (True, np.float64),
                                          (True, np.float32)])
def test_newton_reaches_the_lbfgs_optimum(sparse, dtype, fit_intercept, alpha):
    X, y, w = _watch_time_data(sparse, dtype)
    kw = dict(alpha=alpha, fit_intercept=fit_intercept)
    newton = WeightedLogisticRegression(solver="newton", **kw).fit(X, y, w)
    lbfgs = WeightedLogisticRegression(solver="lbfgs", **kw).fit(X, y, w)
    assert newton.converged_ and lbfgs.converged_
    assert newton.n_iter_ <= 15
    if not fit_intercept:
        assert newton.intercept_[0] == 0.0
    L_newton, L_lbfgs = fitted_objective(X, y, w, newton, alpha), fitted_objective(X, y, w, lbfgs, alpha)
    assert abs(L_newton - L_lbfgs) <= 1e-6 * abs(L_lbfgs)
    assert L_newton <= L_lbfgs * (1 + 1e-12)  # newton's optimum is at least as good
    np.testing.assert_allclose(newton.coef_, lbfgs.coef_, rtol=1e-4, atol=1e-4 * np.abs(lbfgs.coef_).max())


def test_newton_gradient_is_zero_by_the_reference(rng):
    X = rng.standard_normal((1500, 5))
    y = (rng.random(1500) < 0.3).astype(np.float64)
    w = rng.lognormal(3.0, 2.0, 1500)  # heavy-tailed
    est = WeightedLogisticRegression(alpha=1e-3, solver="newton").fit(X, y, w)
    _, g, gb = ref.objective_grad_dense(X, y, w * len(w) / w.sum(), est.coef_[0], est.intercept_[0], 1e-3)
    assert np.abs(g).max() < 1e-7 and abs(gb) < 1e-8


def test_newton_weight_scale_does_not_change_the_model(rng):
    X, y, w = _watch_time_data(False, np.float64, n=2000, d=5)
    a = WeightedLogisticRegression(alpha=1e-4, solver="newton").fit(X, y, w)
    b = WeightedLogisticRegression(alpha=1e-4, solver="newton").fit(X, y, w * 1e6)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("sparse", [False, True])
def test_newton_bit_identical_for_any_thread_count(sparse):
    X, y, w = _watch_time_data(sparse, np.float32, n=40_000, d=20)
    fits = [WeightedLogisticRegression(alpha=1e-5, solver="newton", n_threads=t, backend="auto").fit(X, y, w)
            for t in (1, 2)]
    assert np.array_equal(fits[0].coef_, fits[1].coef_) and fits[0].intercept_ == fits[1].intercept_
    assert fits[0].n_iter_ == fits[1].n_iter_


@pytest.mark.requires_backend("cython")
def test_hessian_kernel_bit_identical_for_any_thread_count(rng):
    from fastwlr.backends.cython_core import _objective
    X = rng.standard_normal((20_000, 9))
    y = (rng.random(20_000) < 0.2).astype(np.float64)
    w = rng.exponential(size=20_000)
    w[::5] = 0.0
    coef = rng.standard_normal(9) * 0.3
    one, two = (_objective.objective_grad_hess_dense(X, y, w, coef, 0.1, 1e-3, t, True) for t in (1, 2))
    for a, b in zip(one, two):
        assert np.array_equal(a, b)
    loss, g, gb, H, sq = one
    Xa = np.hstack([X, np.ones((len(X), 1))])
    z = X @ coef + 0.1
    s = w / (1 + np.exp(-z)) / (1 + np.exp(z))
    np.testing.assert_allclose(H, (Xa * s[:, None]).T @ Xa / len(X), rtol=1e-12, atol=1e-15)
    assert np.array_equal(H, H.T)
    np.testing.assert_allclose(sq, w @ X ** 2, rtol=1e-12)
    np.testing.assert_allclose((loss, gb), _objective.objective_grad_dense(X, y, w, coef, 0.1, 1e-3, 1)[::2],
                               rtol=1e-13)


def test_backends_agree(backend_name):
    """The compiled Hessian pass and the numpy fallbacks (numba, reference) reach one optimum."""
    X, y, w = _watch_time_data(False, np.float32, n=3000, d=6)
    est = WeightedLogisticRegression(alpha=1e-4, solver="newton", backend=backend_name).fit(X, y, w)
    base = WeightedLogisticRegression(alpha=1e-4, solver="newton", backend="reference").fit(X, y, w)
    assert est.converged_
    np.testing.assert_allclose(est.coef_, base.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("sparse", [False, True])
def test_newton_matches_sklearn_newton_cholesky(rng, sparse):
    """alpha = 1 / (C * sum(w)): the objective of LogisticRegression(C), solved by its Newton solver."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    X = rng.standard_normal((3000, 8))
    y = (rng.random(3000) < 1 / (1 + np.exp(-(X @ rng.standard_normal(8) - 1.0)))).astype(np.float64)
    w = rng.lognormal(3.0, 2.0, 3000)
    if sparse:
        X[np.abs(X) < 0.8] = 0
        X = sp.csr_array(X)
    C = 0.05
    theirs = linear_model.LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12, max_iter=100).fit(
        X, y, sample_weight=w)
    ours = WeightedLogisticRegression(alpha=1.0 / (C * w.sum()), solver="newton").fit(X, y, w)
    assert ours.converged_
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-6, atol=1e-6 * np.abs(theirs.coef_).max())
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-6)


def test_online_shoppers_matches_sklearn_newton_cholesky():
    """The issue's acceptance check: dwell-time weights, alpha from 1e-6 to 1e-1, coefficients
    within 1e-4 (relative to the largest) of scikit-learn's newton-cholesky at the mapped C."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    try:
        data = fastwlr.datasets.load_claims("online_shoppers")
    except FileNotFoundError:
        pytest.skip("online_shoppers data not found (set FASTWLR_DATA_DIR)")
    y, w = data.y, data.sample_weight
    for alpha in (1e-6, 1e-4, 1e-2, 1e-1):
        ours = WatchTimeRanker(solver="newton", alpha=alpha).fit(data.X, data.watch_time)
        theirs = linear_model.LogisticRegression(C=1.0 / (alpha * w.sum()), solver="newton-cholesky", tol=1e-10,
                                                 max_iter=200).fit(data.X, y, sample_weight=w)
        assert ours.converged_
        a = np.append(ours.coef_[0], ours.intercept_)
        b = np.append(theirs.coef_[0], theirs.intercept_)
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max(), alpha


# ------------------------------------------------------------------------------------- estimator
def test_newton_warm_start_and_ranker(rng):
    data = make_watch_time(3000, 6, random_state=1)
    est = WatchTimeRanker(alpha=1e-4, solver="newton", warm_start=True).fit(data.X, data.watch_time)
    first = est.n_iter_
    est.fit(data.X, data.watch_time)
    assert est.converged_ and est.n_iter_ < first
    exact = WatchTimeRanker(alpha=1e-4, solver="lbfgs").fit(data.X, data.watch_time)
    np.testing.assert_allclose(est.predict(data.X[:50]), exact.predict(data.X[:50]), rtol=1e-5)
    ranker = WatchTimeRanker(solver="newton", fit_click_model=True).fit(data.X, data.watch_time)
    assert ranker.click_model_.solver == "newton" and ranker.click_model_.converged_


def test_newton_negative_sampling_matches_lbfgs():
    data = make_watch_time(4000, 5, random_state=2)
    kw = dict(alpha=1e-4, negative_sampling_rate=0.25)
    a = WatchTimeRanker(solver="newton", **kw).fit(data.X, data.watch_time)
    b = WatchTimeRanker(solver="lbfgs", **kw).fit(data.X, data.watch_time)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-4, atol=1e-6)


def test_newton_not_converged_warns(rng):
    X, y, w = _watch_time_data(False, np.float64, n=2000, d=5)
    with pytest.warns(ConvergenceWarning, match="newton stopped after 1 iterations"):
        est = WeightedLogisticRegression(solver="newton", max_iter=1).fit(X, y, w)
    assert not est.converged_ and est.n_iter_ == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no warning
        assert WeightedLogisticRegression(solver="newton").fit(X, y, w).converged_


def test_newton_separable_without_alpha_warns():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])  # no finite optimum
    with pytest.warns(ConvergenceWarning, match="increase alpha"):
        WeightedLogisticRegression(solver="newton", alpha=0.0, max_iter=5).fit(X, y)


def test_newton_divergence_is_reported_with_advice():
    """Features near the float64 limit: x^2 in the Hessian overflows at the first pass."""
    X = np.array([[1e308], [-1e308], [1e308], [-1e308]])
    with pytest.raises(DivergenceError, match="newton diverged.*scale the features"):
        WeightedLogisticRegression(solver="newton", alpha=0.0).fit(X, [1, 0, 1, 0])


def test_newton_collinear_columns_and_alpha_zero(rng):
    """A singular Hessian (a duplicated column, no penalty): the eigenvalue floor still finds the
    optimum (the two copies share the coefficient)."""
    X = rng.standard_normal((2000, 3))
    X = np.hstack([X, X[:, :1]])
    y = (rng.random(2000) < 1 / (1 + np.exp(-X[:, 0]))).astype(np.float64)
    est = WeightedLogisticRegression(solver="newton", alpha=0.0).fit(X, y)
    ref_est = WeightedLogisticRegression(solver="newton", alpha=0.0).fit(X[:, :3], y)
    assert est.converged_
    assert est.coef_[0, 0] + est.coef_[0, 3] == pytest.approx(ref_est.coef_[0, 0], rel=1e-6)


def test_newton_too_many_features_points_to_lbfgs():
    X = sp.csr_array((np.ones(2), np.array([0, MAX_HESSIAN_SIZE - 1]), np.array([0, 1, 2])),
                     shape=(2, MAX_HESSIAN_SIZE))
    with pytest.raises(ValueError, match="solver='lbfgs'"):
        WeightedLogisticRegression(solver="newton").fit(X, [0, 1])


def test_newton_parameter_errors():
    X, y = np.eye(4), [0, 1, 0, 1]
    with pytest.raises(ValueError, match="l1_ratio"):
        WeightedLogisticRegression(solver="newton", l1_ratio=0.5).fit(X, y)
    with pytest.raises(ValueError, match="newton needs a tolerance"):
        WeightedLogisticRegression(solver="newton", tol=None).fit(X, y)
    assert not hasattr(WeightedLogisticRegression(solver="newton"), "partial_fit")


def test_newton_save_load(tmp_path):
    data = make_watch_time(2000, 4, random_state=3)
    est = WatchTimeRanker(solver="newton", alpha=1e-3).fit(data.X, data.watch_time)
    est.save(tmp_path / "m.npz")
    back = fastwlr.load(tmp_path / "m.npz")
    assert back.solver == "newton" and back.n_iter_ == est.n_iter_ and back.converged_
    np.testing.assert_array_equal(back.coef_, est.coef_)


@pytest.mark.slow
def test_newton_fremtpl2_matches_lbfgs():
    """678k policies, claim amounts up to 4e6 as weights: newton's objective is lbfgs's optimum
    (about 10 s here, most of it lbfgs and loading the data)."""
    try:
        data = fastwlr.datasets.load_claims("freMTPL2")
    except FileNotFoundError:
        pytest.skip("freMTPL2 data not found (set FASTWLR_DATA_DIR)")
    newton = WatchTimeRanker(solver="newton").fit(data.X, data.watch_time)
    lbfgs = WatchTimeRanker(solver="lbfgs").fit(data.X, data.watch_time)
    assert newton.converged_ and newton.n_iter_ <= 20
    y, w = data.y, data.sample_weight
    L_n, L_l = fitted_objective(data.X, y, w, newton, 1e-6), fitted_objective(data.X, y, w, lbfgs, 1e-6)
    assert abs(L_n - L_l) <= 1e-6 * L_l


def test_newton_skips_the_hessian_of_its_last_step(monkeypatch):
    """Once the last step's quadratic rate predicts that the next step meets tol, that step is
    evaluated without its Hessian (which nothing would use): one Hessian pass fewer than steps + 1,
    and the same optimum."""
    from fastwlr._kernels import Kernels
    X, y, w = _watch_time_data(False, np.float64)
    calls = {"hess": 0, "grad": 0}
    hess, grad = Kernels.objective_grad_hess, Kernels.objective_grad

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(Kernels, "objective_grad_hess", counted("hess", hess))
    monkeypatch.setattr(Kernels, "objective_grad", counted("grad", grad))
    est = WeightedLogisticRegression(alpha=1e-4, solver="newton").fit(X, y, w)
    assert est.converged_ and est.n_iter_ >= 3
    # the start and n_iter - 1 steps; the last by the gradient pass (backends without a compiled
    # Hessian kernel make a gradient pass inside each Hessian call too)
    assert calls["hess"] == est.n_iter_ and calls["grad"] >= 1
    monkeypatch.undo()
    lbfgs = WeightedLogisticRegression(alpha=1e-4, solver="lbfgs", tol=1e-10).fit(X, y, w)
    L, L_ref = fitted_objective(X, y, w, est, 1e-4), fitted_objective(X, y, w, lbfgs, 1e-4)
    assert abs(L - L_ref) <= 1e-9 * L_ref
