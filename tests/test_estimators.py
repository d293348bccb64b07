"""WeightedLogisticRegression and WatchTimeRanker: protocol, exactness, determinism, recipe, errors."""
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import fastwlr
from fastwlr import WatchTimeRanker, WeightedLogisticRegression
from fastwlr._validation import check_features
from fastwlr.backends import reference as ref
from fastwlr.datasets import make_watch_time
from fastwlr.exceptions import ConvergenceWarning, DivergenceError, NotFittedError


def _data(rng, n=2000, d=6, dtype=np.float64, heavy=False):
    X = rng.standard_normal((n, d)).astype(dtype)
    true = rng.standard_normal(d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ true - 1.0)))).astype(np.float64)
    w = rng.lognormal(3.0, 2.0, n) if heavy else rng.exponential(size=n)
    return X, y, w


# ------------------------------------------------------------------------------------- protocol
def test_get_set_params_and_repr():
    est = WeightedLogisticRegression(alpha=0.1, solver="lbfgs")
    params = est.get_params()
    assert params["alpha"] == 0.1 and params["solver"] == "lbfgs" and params["random_state"] is None
    assert est.set_params(alpha=0.5, tol=1e-6) is est and est.alpha == 0.5 and est.tol == 1e-6
    assert repr(est) == "WeightedLogisticRegression(alpha=0.5, solver='lbfgs', tol=1e-06)"
    with pytest.raises(ValueError, match="invalid parameter 'C'"):
        est.set_params(C=1.0)
    assert "fit_click_model" in WatchTimeRanker().get_params()


def test_partial_fit_exists_only_for_sgd():
    assert hasattr(WeightedLogisticRegression(solver="sgd"), "partial_fit")
    assert not hasattr(WeightedLogisticRegression(solver="lbfgs"), "partial_fit")
    assert not hasattr(WatchTimeRanker(solver="lbfgs"), "partial_fit")


@pytest.mark.parametrize("solver", ["lbfgs", "newton"])
def test_sklearn_check_estimator_exact(solver):
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "does not inherit from BaseEstimator", skipped pandas checks
        results = check_estimator(WeightedLogisticRegression(solver=solver), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed
    names = {r["check_name"] for r in results if r["status"] == "passed"}
    # the checks only an exact solver can meet really ran
    assert {"check_sample_weight_equivalence_on_dense_data",
            "check_sample_weight_equivalence_on_sparse_data"} <= names


# Checks a stochastic solver cannot meet, with the reason (the README lists them).
SGD_EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data":
        "weight k is not k repetitions for a stochastic solver: repeated rows are visited at different "
        "times in the epoch and take k separate steps (IWA/gradient take one weighted step, resampling "
        "draws copies at random), and SGD stops at a relative tolerance of 1e-4, far from rtol=1e-7",
    "check_sample_weight_equivalence_on_sparse_data": "same as the dense version",
}


@pytest.mark.parametrize("options", [{}, {"weighting": "gradient"}, {"weighting": "resample"},
                                     {"optimizer": "sgd"}, {"optimizer": "ftrl", "l1_ratio": 0.5}])
def test_sklearn_check_estimator_sgd(options):
    """Every check passes for the stochastic solvers except the sample-weight equivalence ones."""
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(WeightedLogisticRegression(random_state=0, **options), on_fail=None,
                                  expected_failed_checks=SGD_EXPECTED_FAILED_CHECKS)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert not failed
    xfailed = {r["check_name"] for r in results if r["status"] == "xfail"}
    assert xfailed <= set(SGD_EXPECTED_FAILED_CHECKS)


def test_sklearn_clone_and_pickle(rng):
    sklearn = pytest.importorskip("sklearn")
    X, y, w = _data(rng, 300, 3)
    est = WeightedLogisticRegression(alpha=1e-3, solver="lbfgs").fit(X, y, w)
    twin = sklearn.base.clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "coef_")
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.decision_function(X), est.decision_function(X))


# ------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_sklearn_at_mapped_C(rng, sparse, dtype):
    """alpha = 1 / (C * sum(sample_weight)): same objective as sklearn's C sum w l + ||w||^2 / 2."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, y, w = _data(rng, 3000, 8, dtype, heavy=True)
    if sparse:
        X[np.abs(X) < 0.8] = 0
        X = sp.csr_array(X)
    C = 0.05
    theirs = linear_model.LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(X, y, sample_weight=w)
    ours = WeightedLogisticRegression(alpha=1.0 / (C * w.sum()), solver="lbfgs").fit(X, y, w)
    assert ours.converged_
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-3, atol=1e-3 * np.abs(theirs.coef_).max())
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-3)


def test_lbfgs_reaches_a_stationary_point_of_the_reference_objective(rng):
    """The optimum is checked with the numpy oracle, not with the kernel that drove the solver."""
    X, y, w = _data(rng, 1500, 5, heavy=True)
    est = WeightedLogisticRegression(alpha=1e-3, solver="lbfgs").fit(X, y, w)
    _, g, gb = ref.objective_grad_dense(X, y, w * len(w) / w.sum(), est.coef_[0], est.intercept_[0], 1e-3)
    assert np.abs(g).max() < 1e-7 and abs(gb) < 1e-7


def test_weight_scale_does_not_change_the_model(rng):
    X, y, w = _data(rng, 1000, 4, heavy=True)
    a = WeightedLogisticRegression(alpha=1e-4, solver="lbfgs").fit(X, y, w)
    b = WeightedLogisticRegression(alpha=1e-4, solver="lbfgs").fit(X, y, w * 1000.0)  # ms vs s
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6, atol=1e-9)


def test_fit_intercept_false_keeps_it_zero(rng):
    X, y, w = _data(rng, 500, 3)
    est = WeightedLogisticRegression(solver="lbfgs", fit_intercept=False, alpha=1e-3).fit(X, y, w)
    assert est.intercept_[0] == 0.0
    _, g, _ = ref.objective_grad_dense(X, y, w * len(w) / w.sum(), est.coef_[0], 0.0, 1e-3)
    assert np.abs(g).max() < 1e-7


def test_warm_start_continues_from_the_solution(rng):
    X, y, w = _data(rng, 1000, 4)
    est = WeightedLogisticRegression(alpha=1e-3, solver="lbfgs", warm_start=True).fit(X, y, w)
    first = est.n_iter_
    est.fit(X, y, w)
    assert est.n_iter_ < first  # already at the optimum: (almost) nothing to do


# ------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("sparse", [False, True])
def test_lbfgs_bit_identical_for_any_thread_count(rng, sparse):
    X, y, w = _data(rng, 30_000, 10, np.float32)
    if sparse:
        X = sp.csr_array(np.where(np.abs(X) > 1, X, 0))
    fits = [WeightedLogisticRegression(alpha=1e-4, solver="lbfgs", n_threads=t).fit(X, y, w) for t in (1, 2)]
    assert np.array_equal(fits[0].coef_, fits[1].coef_) and fits[0].intercept_ == fits[1].intercept_


@pytest.mark.filterwarnings("ignore::fastwlr.exceptions.ConvergenceWarning")  # max_iter=3 on purpose
def test_sgd_same_seed_one_thread_bit_identical(rng):
    X, y, w = _data(rng, 3000, 5, heavy=True)
    kw = dict(solver="sgd", random_state=7, n_threads=1, max_iter=3, tol=None)
    a = WeightedLogisticRegression(**kw).fit(X, y, w)
    b = WeightedLogisticRegression(**kw).fit(X, y, w)
    c = WeightedLogisticRegression(**{**kw, "random_state": 8}).fit(X, y, w)
    assert np.array_equal(a.coef_, b.coef_) and a.intercept_ == b.intercept_
    assert not np.array_equal(a.coef_, c.coef_)  # the seed does drive the row order
    a.fit(X, y, w)  # refitting with an int seed reproduces the same run
    assert np.array_equal(a.coef_, b.coef_)
    # epochs are sequential and the early-stopping objective is thread-count independent, so even
    # n_threads=2 gives the same bits
    d = WeightedLogisticRegression(**{**kw, "n_threads": 2, "tol": 1e-4}).fit(X, y, w)
    e = WeightedLogisticRegression(**{**kw, "n_threads": 1, "tol": 1e-4}).fit(X, y, w)
    assert np.array_equal(d.coef_, e.coef_) and d.n_iter_ == e.n_iter_


# ------------------------------------------------------------------------------------- SGD path
def test_sgd_default_close_to_the_exact_optimum(rng):
    X, y, w = _data(rng, 20_000, 6, heavy=True)
    exact = WeightedLogisticRegression(solver="lbfgs").fit(X, y, w)
    sgd = WeightedLogisticRegression(solver="sgd", random_state=0).fit(X, y, w)
    f = check_features(X)
    wn = w * len(w) / w.sum()
    loss = lambda e: ref.objective_grad_dense(X, y, wn, e.coef_[0], e.intercept_[0], 1e-6)[0]  # noqa: E731
    assert loss(sgd) <= loss(exact) * 1.01
    assert f.n_rows == 20_000


def test_partial_fit_streams_chunks_and_improves(rng):
    X, y, w = _data(rng, 6000, 4, heavy=True)
    est = WeightedLogisticRegression(random_state=0)
    wn = w * len(w) / w.sum()
    losses = []
    for epoch in range(3):
        for chunk in np.array_split(np.arange(6000), 4):
            est.partial_fit(X[chunk], y[chunk], w[chunk])
        losses.append(ref.objective_grad_dense(X, y, wn, est.coef_[0], est.intercept_[0], 0.0)[0])
    assert est.n_iter_ == 12 and est.classes_.tolist() == [0.0, 1.0]
    exact = WeightedLogisticRegression(solver="lbfgs").fit(X, y, w)
    best = ref.objective_grad_dense(X, y, wn, exact.coef_[0], exact.intercept_[0], 0.0)[0]
    assert losses[-1] <= best * 1.02
    with pytest.raises(ValueError, match="not seen in the first partial_fit"):
        est.partial_fit(X[:5], np.full(5, 3.0))


def test_partial_fit_first_chunk_with_one_label_needs_classes(rng):
    X, y, w = _data(rng, 100, 3)
    est = WeightedLogisticRegression(random_state=0)
    with pytest.raises(ValueError, match="1 class"):
        est.partial_fit(X[y == 0], y[y == 0])
    est.partial_fit(X[y == 0], y[y == 0], classes=[0, 1])
    est.partial_fit(X[y == 1], y[y == 1])
    assert est.classes_.tolist() == [0, 1]


def test_sgd_divergence_is_reported_with_advice(rng):
    """Logistic gradients are bounded, so it takes huge features and a huge constant rate to
    overflow the log-odds; the kernel flags it and the estimator raises with advice."""
    X, y, w = _data(rng, 2000, 5)
    X = X * 1e150
    w = np.where(y > 0, 1e6, 1.0)
    est = WeightedLogisticRegression(weighting="gradient", optimizer="sgd", learning_rate="constant",
                                     eta0=1e10, average=False, random_state=0, max_iter=5)
    with pytest.raises(DivergenceError, match="(?i)diverged.*(iwa|eta0|standardis)"):
        est.fit(X, y, w)


def test_lbfgs_divergence_is_reported_with_advice():
    """Features near the float64 limit: the first step overflows the log-odds to inf."""
    X = np.array([[1e308], [-1e308], [1e308], [-1e308]])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    with pytest.raises(DivergenceError, match="scale the features"):
        WeightedLogisticRegression(solver="lbfgs", alpha=0.0).fit(X, y)


def test_lbfgs_not_converged_warns():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])  # separable: no finite optimum without alpha
    with pytest.warns(ConvergenceWarning, match="increase alpha"):
        WeightedLogisticRegression(solver="lbfgs", alpha=0.0, max_iter=5).fit(X, y)


# ------------------------------------------------------------------------------------- predictions
def test_predictions_and_dtypes(rng):
    X, y, w = _data(rng, 500, 3, np.float32)
    labels = np.where(y > 0, "watch", "skip")
    est = WeightedLogisticRegression(alpha=1e-3, solver="lbfgs").fit(X, labels, w)
    assert est.classes_.tolist() == ["skip", "watch"] and est.n_features_in_ == 3
    z = est.decision_function(X)
    assert z.dtype == np.float32  # float32 features stay float32 end to end
    proba = est.predict_proba(X)
    assert proba.shape == (500, 2) and np.allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-6)
    np.testing.assert_allclose(np.log(proba), est.predict_log_proba(X), rtol=1e-10, atol=1e-12)
    assert (est.predict(X) == np.where(z > 0, "watch", "skip")).all()
    odds = est.predict_odds(X)
    assert odds.dtype == np.float64
    np.testing.assert_allclose(odds, np.exp(z.astype(np.float64)), rtol=1e-6)
    assert 0.5 < est.score(X, labels) <= 1.0


def test_input_errors(rng):
    X, y, w = _data(rng, 50, 3)
    est = WeightedLogisticRegression(solver="lbfgs")
    with pytest.raises(NotFittedError):
        est.predict(X)
    with pytest.raises(ValueError, match="solver must be one of"):
        WeightedLogisticRegression(solver="cg").fit(X, y)
    with pytest.raises(ValueError, match="l1_ratio > 0"):
        WeightedLogisticRegression(solver="lbfgs", l1_ratio=0.5).fit(X, y)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        WeightedLogisticRegression(solver="lbfgs", alpha=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="NaN or inf"):
        est.fit(np.where(X > 1, np.nan, X), y)
    with pytest.raises(ValueError, match="sample_weight must be >= 0"):
        est.fit(X, y, -w)
    with pytest.raises(ValueError, match="weight is zero"):
        est.fit(X, y, np.zeros(50))
    with pytest.raises(ValueError, match="Only binary classification"):
        est.fit(X, np.arange(50) % 3)
    est.fit(X, y, w)
    with pytest.raises(ValueError, match="X has 2 features, but WeightedLogisticRegression is expecting 3"):
        est.predict(X[:, :2])
    w0 = w.copy()
    est.fit(X, y, w)
    assert np.array_equal(w, w0)  # inputs are never modified


# ------------------------------------------------------------------------------------- WatchTimeRanker
@pytest.mark.parametrize("sparse", [False, True])
def test_watch_time_recipe_is_weighted_lr(rng, sparse):
    X, _, _ = _data(rng, 2000, 5)
    T = np.where(rng.random(2000) < 0.2, rng.lognormal(3, 1, 2000), 0.0)
    if sparse:
        X = sp.csr_array(np.where(np.abs(X) > 0.5, X, 0))
    sw = rng.uniform(0.5, 2.0, 2000)
    ranker = WatchTimeRanker(alpha=1e-4, solver="lbfgs").fit(X, T, sample_weight=sw)
    wlr = WeightedLogisticRegression(alpha=1e-4, solver="lbfgs").fit(X, T > 0, np.where(T > 0, T, 1.0) * sw)
    assert np.array_equal(ranker.coef_, wlr.coef_) and np.array_equal(ranker.intercept_, wlr.intercept_)
    np.testing.assert_array_equal(ranker.predict(X), wlr.predict_odds(X))


def test_watch_time_errors(rng):
    X, _, _ = _data(rng, 20, 2)
    with pytest.raises(ValueError, match="watch_time must be >= 0"):
        WatchTimeRanker(solver="lbfgs").fit(X, -np.ones(20))
    with pytest.raises(ValueError, match="no impression was clicked"):
        WatchTimeRanker(solver="lbfgs").fit(X, np.zeros(20))
    with pytest.raises(ValueError, match="NaN or inf"):
        WatchTimeRanker(solver="lbfgs").fit(X, np.full(20, np.nan))


def _calibration_error(pred, truth, n_bins=10):
    """max over deciles of pred of |mean pred / mean truth - 1|."""
    order = np.argsort(pred)
    return max(abs(pred[b].mean() / truth[b].mean() - 1) for b in np.array_split(order, n_bins))


def test_exact_correction_on_generated_data():
    """With 30 % clicks e^z overstates E[T|x] by 1/(1-p); the correction removes the bias."""
    data = make_watch_time(100_000, 5, click_rate=0.3, dtype=np.float64, random_state=3)
    ranker = WatchTimeRanker(alpha=0.0, solver="lbfgs", fit_click_model=True).fit(data.X, data.watch_time)
    truth = data.expected_watch_time
    odds = ranker.predict_odds(data.X)
    assert _calibration_error(odds, truth) > 0.2                       # uncorrected: biased
    exact_fitted = ranker.predict(data.X)                                   # with click_model_
    exact_true = ranker.predict(data.X, click_log_odds=data.click_log_odds)
    assert _calibration_error(exact_fitted, truth) < 0.1
    assert _calibration_error(exact_true, truth) < 0.1
    np.testing.assert_allclose(exact_true, odds * (1 - data.p), rtol=1e-9)
    # the weighted model recovers z* = (a + c).x + (a0 + c0)
    np.testing.assert_allclose(ranker.coef_[0], data.coef, atol=0.1)
    click = WeightedLogisticRegression(alpha=0.0, solver="lbfgs").fit(data.X, data.clicked)
    np.testing.assert_allclose(ranker.predict(data.X, click_model=click), exact_fitted, rtol=1e-6)


def test_sgd_option_defaults_match_fit_sgd():
    """The estimators forward their SGD options to fastwlr._sgd: the defaults must be the same."""
    import inspect
    from fastwlr._sgd import SGDParams
    est = WeightedLogisticRegression()
    base = SGDParams()
    for name in ("weighting", "optimizer", "eta0", "learning_rate", "power_t", "average"):
        assert getattr(est, name) == getattr(base, name), name
    sig = inspect.signature(WatchTimeRanker.__init__).parameters
    for name in ("weighting", "optimizer", "eta0", "learning_rate", "power_t", "average", "alpha"):
        assert sig[name].default == inspect.signature(WeightedLogisticRegression.__init__).parameters[name].default


# ------------------------------------------------------------------------------------- real data
def _fremtpl2():
    from fastwlr.datasets import load_claims
    try:
        return load_claims("freMTPL2")
    except FileNotFoundError as exc:
        pytest.skip(f"freMTPL2 not available: {exc}")


@pytest.mark.slow
def test_fremtpl2_defaults_reach_the_exact_optimum():
    """Defaults that survive real weights: with no tuning, WatchTimeRanker().fit on 678k
    policies with claim amounts up to 4e6 as weights reaches the exact (lbfgs) optimum (solver
    "auto" runs newton on these 43 columns), and solver="sgd" at its defaults ends within 1 % of it.
    About 30-60 s here (half of it the lbfgs reference)."""
    data = _fremtpl2()
    exact = WatchTimeRanker(solver="lbfgs").fit(data.X, data.watch_time)
    assert exact.converged_
    default = WatchTimeRanker().fit(data.X, data.watch_time)
    assert default.solver_ == "newton" and default.converged_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter may end SGD before tol: judged below
        sgd = WatchTimeRanker(solver="sgd", random_state=0).fit(data.X, data.watch_time)
    y, w = data.y, data.sample_weight
    wn = w * len(w) / w.sum()
    loss = [ref.objective_grad_dense(data.X, y, wn, m.coef_[0], m.intercept_[0], m.alpha)[0]
            for m in (default, sgd, exact)]
    assert abs(loss[0] - loss[2]) <= 1e-9 * loss[2], f"the default fit ends {(loss[0] - loss[2]) / loss[2]:.2e} off"
    gap = (loss[1] - loss[2]) / loss[2]
    assert 0 <= gap <= 0.01, f"SGD defaults end {gap:.2%} above the optimum"
    # the exact optimum is a stationary point of the reference objective (checked without the kernel)
    _, g, gb = ref.objective_grad_dense(data.X, y, wn, exact.coef_[0], exact.intercept_[0], exact.alpha)
    assert np.abs(g).max() < 1e-6 and abs(gb) < 1e-6


def test_predict_click_arguments_are_checked(rng):
    X, _, _ = _data(rng, 100, 3)
    T = np.where(rng.random(100) < 0.3, 5.0, 0.0)
    ranker = WatchTimeRanker(solver="lbfgs", alpha=1e-3).fit(X, T)
    zc = np.full(100, -2.0)
    np.testing.assert_allclose(ranker.predict(X, click_log_odds=zc),
                               ranker.predict(X) * (1 - 1 / (1 + np.exp(2.0))), rtol=1e-12)
    with pytest.raises(ValueError, match=r"click_log_odds must have shape \(100,\)"):
        ranker.predict(X, click_log_odds=zc[:5])
    with pytest.raises(ValueError, match="NaN or inf"):
        ranker.predict(X, click_log_odds=np.full(100, np.nan))
    with pytest.raises(ValueError, match="not both"):
        ranker.predict(X, click_log_odds=zc, click_model=ranker)


@pytest.mark.parametrize("sparse", [False, True])
def test_rank_is_the_top_k_of_predict(rng, sparse):
    X, _, _ = _data(rng, 600, 4)
    T = np.where(rng.random(600) < 0.3, rng.lognormal(2, 1, 600), 0.0)
    ranker = WatchTimeRanker(solver="lbfgs", alpha=1e-3).fit(X, T)
    Xs = sp.csr_array(X) if sparse else X
    offsets = np.array([0, 7, 7, 250, 600])  # ragged, with an empty request
    exclude = np.zeros(600, dtype=bool)
    exclude[[3, 300]] = True
    idx, values = ranker.rank(Xs, 5, offsets=offsets, exclude=exclude)
    pred = ranker.predict(X)
    for g in range(4):
        rows = [i for i in range(offsets[g], offsets[g + 1]) if not exclude[i]]
        want = sorted(rows, key=lambda i: -pred[i])[:5]
        got = [i for i in idx[g] if i >= 0]
        assert got == want
        np.testing.assert_allclose(values[g][:len(got)], pred[got], rtol=1e-12)
    assert (idx[1] == -1).all()
    with pytest.raises(ValueError, match="expecting 4 features"):
        ranker.rank(X[:, :3], 2)
    with pytest.raises(NotFittedError):
        WatchTimeRanker().rank(X, 2)


@pytest.mark.parametrize("scale", [1e308, 1e-320])
@pytest.mark.parametrize("solver", ["lbfgs"])
def test_fit_with_extreme_weights_equals_unit_weights(scale, solver):
    # weights of 1e308 summed to inf and L-BFGS fitted all-zero coefficients silently; subnormal
    # weights normalised to inf and raised a DivergenceError blaming "too large" weights. The
    # objective averages over the weights, so their scale must not matter.
    import warnings
    rng = np.random.default_rng(11)
    X = rng.standard_normal((200, 3))
    y = (rng.random(200) < 1.0 / (1.0 + np.exp(-X @ [1.0, -0.5, 0.25]))).astype(float)
    ref = WeightedLogisticRegression(solver=solver, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = WeightedLogisticRegression(solver=solver, random_state=0).fit(X, y, sample_weight=np.full(200, scale))
    assert np.abs(got.coef_).max() > 0.1
    np.testing.assert_allclose(got.coef_, ref.coef_, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("scale, kwargs", [
    (1e6, {}),
    (1e6, {"weighting": "gradient"}),
    (1.0, {"optimizer": "sgd", "learning_rate": "constant", "weighting": "gradient"}),
])
def test_sgd_stalled_far_from_optimum_is_not_converged(scale, kwargs):
    # the objective settling for n_iter_no_change epochs was reported as convergence although it
    # settled far from the optimum (0.4997, 1726 and 13.6 vs 0.386): converged_ must be False,
    # with a ConvergenceWarning saying what to do
    d = make_watch_time(5000, 8, dtype=np.float64, random_state=0)
    est = WeightedLogisticRegression(alpha=1e-4, solver="sgd", random_state=0, **kwargs)
    with pytest.warns(ConvergenceWarning, match="not at an optimum.*standardise"):
        est.fit(d.X * scale, d.y, sample_weight=d.sample_weight)
    assert est.converged_ is False


def test_sgd_converged_near_the_optimum_stays_converged():
    d = make_watch_time(5000, 8, dtype=np.float64, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = WeightedLogisticRegression(alpha=1e-4, solver="sgd", random_state=0).fit(d.X, d.y,
                                                                                        sample_weight=d.sample_weight)
    assert est.converged_


def test_sgd_with_overflowing_weights_names_the_weights():
    # "l2 must be a finite number >= 0, got inf" (or "the objective is inf: standardise the
    # features") named neither the weights nor what to do
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = (rng.random(200) < 0.4).astype(float)
    with pytest.raises(ValueError, match="sample_weight is too large for solver='sgd'.*divide them"):
        WeightedLogisticRegression(solver="sgd").fit(X, y, sample_weight=np.full(200, 1e308))
    with pytest.raises(ValueError, match="watch_time.*too large for solver='sgd'"):
        WatchTimeRanker(alpha=1e10, solver="sgd").fit(X, np.where(y > 0, 1e300, 0.0))
    with pytest.raises(ValueError, match="watch_time.*too large for solver='sgd'"):
        WatchTimeRanker(solver="sgd").fit(X, np.where(y > 0, 1e308, 0.0))
    # the exact solvers normalise the weights by a power of two: the default fit takes them
    assert WatchTimeRanker().fit(X, np.where(y > 0, 1e308, 0.0)).converged_


def test_rank_accepts_the_inputs_predict_accepts():
    # an object array of numbers was accepted by predict but rejected by rank
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 3))
    y = (rng.random(30) < 0.5).astype(int)
    est = WeightedLogisticRegression(solver="lbfgs").fit(X, y)
    Xo = X.astype(object)
    np.testing.assert_array_equal(est.predict_proba(Xo), est.predict_proba(X))
    idx, val = est.rank(Xo, 3, offsets=[0, 10, 30])
    idx2, val2 = est.rank(X, 3, offsets=[0, 10, 30])
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_array_equal(val, val2)


def test_partial_fit_from_several_threads_takes_turns():
    # threads calling partial_fit on one estimator raced silently (lost epochs, mixed states);
    # calls are serialised by a per-estimator lock, so every epoch counts
    import threading
    from fastwlr.backends._contract import S_T
    d = make_watch_time(4000, 16, dtype=np.float64, random_state=0)
    est = WeightedLogisticRegression(random_state=0)
    est.partial_fit(d.X[:100], d.y[:100], classes=[0.0, 1.0])
    chunks = [(d.X[i:i + 50], d.y[i:i + 50]) for i in range(0, 4000, 50)]
    errors = []

    def work():
        try:
            for X, y in chunks:
                est.partial_fit(X, y)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert est.n_iter_ == 1 + 4 * len(chunks)
    assert est._sgd_state.scalars[S_T] == 100 + 4 * 4000  # one step per row of every epoch
    pickle.loads(pickle.dumps(est))  # the lock is not part of the estimator


def test_sgd_with_subnormal_weights_names_the_weights():
    # weights of 1e-320 made the SGD normalisation and its penalty subnormal: the fit silently used
    # a different regularisation (alpha * 1e-320 rounds to 0) and did not converge
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = (rng.random(200) < 0.4).astype(float)
    with pytest.raises(ValueError, match="sample_weight is too small for solver='sgd'.*multiply them"):
        WeightedLogisticRegression(solver="sgd").fit(X, y, sample_weight=np.full(200, 1e-320))
    WeightedLogisticRegression(solver="lbfgs").fit(X, y, sample_weight=np.full(200, 1e-320))  # fine there


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predictions_take_the_fast_path_with_the_same_bits_and_errors(dtype):
    """predict_odds/decision_function of a plain float array go through the compiled fast path:
    the bits of score() on the full path, and NaN/inf features and a wrong width still raise."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 7)).astype(dtype)
    T = np.where(rng.random(300) < 0.3, rng.lognormal(size=300), 0.0)
    model = WatchTimeRanker(solver="lbfgs").fit(X, T)
    for method, output in (("predict_odds", "odds"), ("decision_function", "log_odds")):
        full = fastwlr.score(X, model.coef_[0], model.intercept_[0], output=output,
                             out=np.empty(300, fastwlr.scoring.result_dtype(X.dtype, output)))
        got = getattr(model, method)(X)
        assert got.dtype == full.dtype
        np.testing.assert_array_equal(got, full)
    for bad in (np.full((2, 7), np.nan, dtype), np.full((2, 7), np.inf, dtype)):
        with pytest.raises(ValueError):
            model.predict_odds(bad)
    with pytest.raises(ValueError, match="features"):
        model.predict_odds(np.ones((2, 6), dtype))


@pytest.mark.parametrize("solver", ["auto", "lbfgs", "newton", "newton-cg"])
def test_subnormal_watch_time_fits(solver):
    """A watch time of 5e-310 puts the starting intercept at log(5e-310) = -712: the penalty's
    share of the curvature there (p0 (1 - p0) ~ 1e-309) must not overflow (it raised OverflowError)."""
    X = np.array([[0.1257], [-0.1321]], dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = WatchTimeRanker(solver=solver).fit(X, np.array([0.0, 5e-310]))
    assert np.isfinite(est.coef_).all() and est.intercept_[0] == pytest.approx(np.log(5e-310), rel=1e-6)
