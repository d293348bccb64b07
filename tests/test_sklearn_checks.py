"""scikit-learn's estimator checks on both estimators, and the scikit-learn conventions around them.

``parametrize_with_checks`` runs every check as its own test. The checks an estimator cannot pass
are listed, with the reason, by the estimator (``_sklearn_expected_failed_checks``; the docstrings
and the README explain them) and run as strict expected failures: a listed check that starts to
pass fails this file, so the list stays exact. The ranker's are about its target (a watch time is
>= 0 and the recipe needs clicked and unclicked rows), so the same checks are run again on targets
made valid, to show that the property each one checks does hold.
"""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from fastwlr import WatchTimeRanker, WeightedLogisticRegression
from fastwlr.estimators import _ALL_CLICKED, _NEGATIVE, _only_for_sgd

sklearn = pytest.importorskip("sklearn")
from sklearn.utils import estimator_checks  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

ESTIMATORS = [
    WeightedLogisticRegression(),  # solver="auto": newton on the checks' small data
    WeightedLogisticRegression(solver="lbfgs"),
    WeightedLogisticRegression(solver="sgd", random_state=0),
    WatchTimeRanker(),
    WatchTimeRanker(solver="lbfgs"),
    WatchTimeRanker(solver="sgd", random_state=0),
]


def _expected_failures(est):
    return est._sklearn_expected_failed_checks()


with warnings.catch_warnings():  # "does not inherit from BaseEstimator", when the checks are listed
    warnings.simplefilter("ignore", UserWarning)
    _all_checks = parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failures,
                                          xfail_strict=True)


@_all_checks
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # "does not inherit from BaseEstimator" (fastwlr does not import scikit-learn), and the
        # ConvergenceWarnings of the checks' tiny data sets
        warnings.simplefilter("ignore")
        check(estimator)


def test_expected_failures_are_few_and_explained():
    for est in ESTIMATORS:
        listed = est._sklearn_expected_failed_checks()
        assert all(isinstance(reason, str) and len(reason) > 40 for reason in listed.values())
        doc = " ".join(cls.__doc__ or "" for cls in type(est).__mro__)
        for name in listed:  # every listed check is named in the estimator's docstring (or its base's)
            assert name in doc, (type(est).__name__, name)
    assert WeightedLogisticRegression(solver="lbfgs")._sklearn_expected_failed_checks() == {}
    assert len(WatchTimeRanker(solver="lbfgs")._sklearn_expected_failed_checks()) <= 15


class _ValidWatchTimes(WatchTimeRanker):
    """The ranker on the checks' targets made into watch times: shifted so that the smallest is 0
    (unclicked), the others > 0 (clicked). Nothing else changes: it is how the ranker's own
    expected failures are shown to fail only because of their targets."""

    def fit(self, X, y=None, sample_weight=None):
        return super().fit(X, _shifted(y), sample_weight)

    @_only_for_sgd
    def partial_fit(self, X, y=None, sample_weight=None):
        return super().partial_fit(X, _shifted(y), sample_weight)

    def score(self, X, y=None, sample_weight=None):
        return super().score(X, _shifted(y), sample_weight)


def _shifted(y):
    y = np.asarray(y, dtype=np.float64)
    return y - y.min()


_TARGET_ONLY = sorted(name for name, reason in WatchTimeRanker()._sklearn_expected_failed_checks().items()
                      if reason in (_NEGATIVE, _ALL_CLICKED))


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
@pytest.mark.parametrize("name", _TARGET_ONLY)
def test_ranker_expected_failures_pass_on_valid_watch_times(name, solver):
    check = getattr(estimator_checks, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check("WatchTimeRanker", _ValidWatchTimes(solver=solver, random_state=0))


def test_ranker_expected_failures_do_fail_for_their_reason():
    """The targets, not something else, are what these checks trip on."""
    for name in _TARGET_ONLY:
        with warnings.catch_warnings(), pytest.raises(Exception) as info:
            warnings.simplefilter("ignore")
            getattr(estimator_checks, name)("WatchTimeRanker", WatchTimeRanker(solver="lbfgs"))
        # some checks re-raise the ranker's error as their own, or quote it
        chain, exc = [], info.value
        while exc is not None:
            chain.append(str(exc))
            exc = exc.__cause__ or exc.__context__
        assert any("watch_time must" in msg for msg in chain), (name, chain)


def test_ranker_fits_and_predicts_sparse_input():
    """What check_estimator_sparse_* would test, were it not for predict_proba on a regressor."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    X[np.abs(X) < 0.7] = 0.0
    T = np.where(rng.random(60) < 0.4, rng.exponential(30.0, 60), 0.0)
    dense = WatchTimeRanker(solver="lbfgs").fit(X, T)
    for container in (sp.csr_array, sp.csr_matrix, sp.csc_array, sp.coo_matrix):
        est = WatchTimeRanker(solver="lbfgs").fit(container(X), T)
        np.testing.assert_allclose(est.coef_, dense.coef_, rtol=1e-6, atol=1e-9)
        assert est.predict(container(X)).shape == (60,)


# ------------------------------------------------------------------------------------- the target as y
def _watch_data(n=200, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    T = np.where(rng.random(n) < 0.3, rng.exponential(30.0, n), 0.0)
    return X, T


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_ranker_takes_the_watch_time_as_y_or_by_its_old_keyword(solver):
    X, T = _watch_data()
    kw = dict(solver=solver, random_state=0, n_threads=1)
    by_position = WatchTimeRanker(**kw).fit(X, T)
    by_y = WatchTimeRanker(**kw).fit(X, y=T)
    by_old_name = WatchTimeRanker(**kw).fit(X, watch_time=T)
    np.testing.assert_array_equal(by_y.coef_, by_position.coef_)
    np.testing.assert_array_equal(by_old_name.coef_, by_position.coef_)
    assert by_position.score(X, watch_time=T) == by_position.score(X, T) == by_position.score(X, y=T)
    if solver == "sgd":
        a = WatchTimeRanker(**kw).partial_fit(X, T)
        b = WatchTimeRanker(**kw).partial_fit(X, watch_time=T)
        np.testing.assert_array_equal(a.coef_, b.coef_)


def test_ranker_watch_time_given_twice_or_not_at_all():
    X, T = _watch_data()
    est = WatchTimeRanker(solver="lbfgs")
    with pytest.raises(TypeError, match="twice, as y and as watch_time"):
        est.fit(X, T, watch_time=T)
    with pytest.raises(ValueError, match="requires y to be passed"):
        est.fit(X)
    est.fit(X, T)
    with pytest.raises(TypeError, match=r"score\(\) got the watch times twice"):
        est.score(X, T, watch_time=T)
    with pytest.raises(TypeError, match=r"partial_fit\(\) got the watch times twice"):
        WatchTimeRanker().partial_fit(X, T, watch_time=T)


def test_ranker_column_vector_and_object_targets():
    X, T = _watch_data()
    ref = WatchTimeRanker(solver="lbfgs").fit(X, T)
    with pytest.warns(sklearn.exceptions.DataConversionWarning, match="column-vector y"):
        col = WatchTimeRanker(solver="lbfgs").fit(X, T[:, None])
    np.testing.assert_array_equal(col.coef_, ref.coef_)
    obj = WatchTimeRanker(solver="lbfgs").fit(X, T.astype(object))
    np.testing.assert_array_equal(obj.coef_, ref.coef_)
    with pytest.raises(ValueError, match="must hold numbers"):
        WatchTimeRanker(solver="lbfgs").fit(X, np.array(["a"] * len(T), dtype=object))


# ------------------------------------------------------------------------------------- warm_start, verbose
def test_lbfgs_warm_start_starts_from_the_previous_solution():
    X, T = _watch_data(2000, 5)
    cold = WatchTimeRanker(solver="lbfgs").fit(X, T)
    warm = WatchTimeRanker(solver="lbfgs", warm_start=True).fit(X, T)
    again = warm.fit(X, T)  # at the optimum already: no iteration needed
    assert again.n_iter_ <= 1 and again.converged_
    np.testing.assert_allclose(again.coef_, cold.coef_, rtol=1e-6, atol=1e-8)
    # on slightly changed data, two iterations from the previous solution get closer to the new
    # optimum than two from scratch
    X2 = X + 0.05 * np.random.default_rng(1).standard_normal(X.shape)
    target = WatchTimeRanker(solver="lbfgs").fit(X2, T).coef_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=2: not converged
        from_scratch = WatchTimeRanker(solver="lbfgs", max_iter=2).fit(X2, T).coef_
        from_previous = warm.set_params(max_iter=2).fit(X2, T).coef_
    assert np.abs(from_previous - target).max() < 0.1 * np.abs(from_scratch - target).max()


def test_sgd_warm_start_keeps_the_optimizer_state():
    X, T = _watch_data(2000, 5)
    kw = dict(random_state=0, n_threads=1, max_iter=2, tol=None)
    est = WatchTimeRanker(warm_start=True, **kw).fit(X, T)
    state = est._sgd_state
    steps = state.t
    est.fit(X, T)
    assert est._sgd_state is state and state.t > steps  # continued, not restarted
    cold_twice = WatchTimeRanker(**kw).fit(X, T).fit(X, T)
    assert not np.array_equal(est.coef_, cold_twice.coef_)
    np.testing.assert_array_equal(cold_twice.coef_, WatchTimeRanker(**kw).fit(X, T).coef_)


def test_warm_start_refits_the_click_model_from_its_previous_solution():
    X, T = _watch_data(2000, 5)
    est = WatchTimeRanker(solver="lbfgs", fit_click_model=True, warm_start=True).fit(X, T)
    click = est.click_model_
    est.fit(X, T)
    assert est.click_model_ is click and click.n_iter_ <= 1


@pytest.mark.parametrize("solver", ["lbfgs", "sgd"])
def test_verbose_prints_a_line_per_iteration(capsys, solver):
    X, T = _watch_data(1000, 4)
    est = WatchTimeRanker(solver=solver, random_state=0, n_threads=1).fit(X, T)
    assert capsys.readouterr().out == ""
    est.set_params(verbose=1).fit(X, T)
    lines = capsys.readouterr().out.splitlines()
    unit = "iteration" if solver == "lbfgs" else "epoch"
    per_step = [line for line in lines if line.startswith(f"{solver} {unit} ")]
    assert len(per_step) == est.n_iter_ and len(lines) == est.n_iter_ + 1
    assert lines[-1].startswith(f"{solver}: converged after {est.n_iter_} ")
    assert "objective" in per_step[-1] and per_step[-1].endswith(" s")
    if solver == "lbfgs":
        assert "max |gradient|" in per_step[-1]
    else:
        est.partial_fit(X, T)
        assert capsys.readouterr().out.startswith(f"partial_fit epoch {est.n_iter_}: {len(T)} rows, ")


@pytest.mark.parametrize("value, error", [(-1, ValueError), ("yes", TypeError), (1.5, TypeError)])
def test_bad_verbose_or_warm_start(value, error):
    X, T = _watch_data()
    with pytest.raises(error, match="verbose"):
        WatchTimeRanker(verbose=value).fit(X, T)
    with pytest.raises(TypeError, match="warm_start must be a bool"):
        WatchTimeRanker(warm_start="no").fit(X, T)


def test_saved_models_keep_warm_start_and_verbose(tmp_path, capsys):
    import fastwlr
    from fastwlr.exceptions import ModelFileError
    X, T = _watch_data()
    est = WatchTimeRanker(warm_start=True, verbose=2, random_state=0, max_iter=3, tol=None).fit(X, T)
    capsys.readouterr()
    est.save(tmp_path / "m.npz")
    again = fastwlr.load(tmp_path / "m.npz")
    assert again.warm_start is True and again.verbose == 2
    # a file with an invalid value fails at load, naming it
    import json
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(str(arrays["header"][()]))
    header["params"]["verbose"] = -3
    arrays["header"] = np.array(json.dumps(header))
    with open(tmp_path / "bad.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ModelFileError, match="verbose"):
        fastwlr.load(tmp_path / "bad.npz")
    # a model leaving verbose at 0 does not write it: fastwlr versions before it read the file
    est.set_params(verbose=0).save(tmp_path / "quiet.npz")
    with np.load(tmp_path / "quiet.npz", allow_pickle=False) as npz:
        assert "verbose" not in json.loads(str(npz["header"][()]))["params"]
    # a file written before the parameter existed loads with its default
    del header["params"]["verbose"]
    arrays["header"] = np.array(json.dumps(header))
    with open(tmp_path / "old.npz", "wb") as f:
        np.savez(f, **arrays)
    assert fastwlr.load(tmp_path / "old.npz").verbose == 0


def test_command_line_verbose_and_warm_start(tmp_path, capsys):
    from fastwlr import _formats as fm
    from fastwlr.cli import main
    X, T = _watch_data(300, 4)
    with open(tmp_path / "d.svm", "wb") as f:
        fm.write_svmlight(f, X, T, np.zeros(len(T), dtype=np.int64))
    args = ["train", str(tmp_path / "d.svm"), "-f", str(tmp_path / "m.npz"), "--quiet", "--solver", "lbfgs"]
    assert main([*args, "--verbose", "1", "--warm-start"]) == 0
    out = capsys.readouterr().out
    assert "lbfgs iteration 1: objective" in out and "lbfgs: converged after" in out
    model = __import__("fastwlr").load(tmp_path / "m.npz")
    assert model.verbose == 1 and model.warm_start is True
    assert main([*args, "--chunk-size", "100", "--verbose", "1"]) == 0
    assert "lbfgs iteration 1: objective" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- lbfgs tolerance
def test_lbfgs_preconditioner_counts_the_penalty_on_rare_columns():
    """A rare one-hot level (mean square 2.5e-7) used to get a preconditioner scale of 2000, so the
    L2 penalty's curvature on it dominated: 37 iterations here, and on online_shoppers (alpha=1e-4)
    max_iter=1000 ended in a ConvergenceWarning a few 1e-9 from the optimum. Now the scale includes
    the penalty."""
    rng = np.random.default_rng(0)
    n = 20000
    X = rng.standard_normal((n, 6))
    X[:, 5] = 0.0
    X[:2, 5] = 0.05
    z = X[:, :5] @ rng.standard_normal(5) * 0.5 - 2.5
    T = np.where(rng.random(n) < 1 / (1 + np.exp(-z)), rng.lognormal(3, 1, n), 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = WatchTimeRanker(solver="lbfgs", alpha=1e-4, n_threads=1).fit(X, T)
    assert est.converged_ and est.n_iter_ <= 15
    from fastwlr._lbfgs import fit_lbfgs
    from fastwlr._validation import check_features
    from fastwlr._weights import recipe
    y, w = recipe(T)
    ref = fit_lbfgs(check_features(X), y, w, alpha=1e-4, precondition=False, n_threads=1)
    np.testing.assert_allclose(est.coef_[0], ref.coef, rtol=1e-5, atol=1e-6)
