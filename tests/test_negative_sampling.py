"""Training on logs whose negatives were down-sampled: negative_sampling_rate / _correction."""
import math

import numpy as np
import pytest

import fastwlr
from fastwlr import WatchTimeRanker, WeightedLogisticRegression
from fastwlr.datasets import make_watch_time

K = 10   # down-samplings of the same full logs: their spread is the sampling noise


@pytest.fixture(scope="module")
def logs():
    """1M impressions, 2 % clicks, a well-specified model. Watch time in minutes, so that the odds
    e^z are small and the full fit's intercept equation, sum over unclicked rows of sigma(z) = sum
    over clicked rows of T (1 - sigma(z)), reads mean e^z over unclicked rows = sum(T) / N_neg."""
    d = make_watch_time(1_000_000, 8, click_rate=0.02, dtype=np.float64, random_state=0)
    T = d.watch_time / 60.0
    full = WatchTimeRanker(solver="lbfgs").fit(d.X, T)
    return d.X, T, full


def theta(est):
    return np.concatenate((est.coef_[0], est.intercept_))


def down_sample(T, r, seed):
    return (T > 0) | (np.random.default_rng(seed).random(T.shape[0]) < r)


def mean_odds_on_negatives(est, X, T):
    return float(est.predict_odds(X[T == 0]).mean() / (T.sum() / np.count_nonzero(T == 0)))


@pytest.mark.parametrize("r", [0.1, 0.01])
def test_weight_correction_recovers_the_full_logs_fit(logs, r):
    X, T, full = logs
    fits, odds = [], []
    for seed in range(K):
        keep = down_sample(T, r, seed)
        est = WatchTimeRanker(solver="lbfgs", negative_sampling_rate=r).fit(X[keep], T[keep])
        fits.append(theta(est))
        odds.append(mean_odds_on_negatives(est, X, T))
    fits = np.array(fits)
    noise = fits.std(axis=0, ddof=1)                 # sampling noise of one down-sampled fit
    # the noise is what dropping negatives predicts, not optimiser noise: the intercept's spread
    # is that of the estimate sum_kept e^z / r of sum_neg e^z (binomial thinning)
    e = np.exp(X[T == 0] @ full.coef_[0] + full.intercept_[0])
    predicted = math.sqrt((1 - r) / r * np.sum(e * e)) / e.sum()
    assert 0.6 < noise[-1] / predicted < 1.6
    # unbiased: the mean of the K fits is within 5 standard errors of the full fit, every coefficient
    t = (fits.mean(axis=0) - theta(full)) / (noise / math.sqrt(K))
    assert np.abs(t).max() < 5, t
    # and each fit is within 5 noise standard deviations of it
    assert (np.abs(fits - theta(full)) / noise).max() < 5
    # e^z keeps its meaning: mean e^z over the full logs' unclicked rows is sum(T) / N_neg
    assert mean_odds_on_negatives(full, X, T) == pytest.approx(1.0, abs=0.005)
    assert abs(np.mean(odds) - 1.0) < 0.02
    # a single fit scatters around it by the same binomial noise as the intercept (at r = 0.01 on
    # these logs, 9,800 kept negatives: about 2 %)
    assert 0.6 < np.std(odds, ddof=1) / predicted < 1.6
    assert np.abs(np.array(odds) - 1.0).max() < 4 * predicted + 0.005
    # the same check rejects the uncorrected fit: its intercept is off by -log r
    keep = down_sample(T, r, 0)
    raw = theta(WatchTimeRanker(solver="lbfgs").fit(X[keep], T[keep]))
    assert abs(raw[-1] - theta(full)[-1] - (-math.log(r))) < 5 * noise[-1]
    assert abs(raw[-1] - theta(full)[-1]) > 20 * noise[-1]


def test_intercept_correction_is_the_unweighted_fit_shifted_by_log_r(logs):
    X, T, full = logs
    r = 0.1
    keep = down_sample(T, r, 0)
    plain = WatchTimeRanker(solver="lbfgs").fit(X[keep], T[keep])
    shifted = WatchTimeRanker(solver="lbfgs", negative_sampling_rate=r,
                              negative_sampling_correction="intercept").fit(X[keep], T[keep])
    np.testing.assert_array_equal(shifted.coef_, plain.coef_)
    assert shifted.intercept_[0] == pytest.approx(plain.intercept_[0] + math.log(r), abs=1e-12)
    # on this well-specified model it estimates the same population model as the full fit
    assert np.linalg.norm(theta(shifted) - theta(full)) / np.linalg.norm(theta(full)) < 0.05


def test_click_model_is_corrected_too(logs):
    X, T, _ = logs
    full = WeightedLogisticRegression(solver="lbfgs").fit(X, T > 0)
    r = 0.1
    keep = down_sample(T, r, 1)
    est = WatchTimeRanker(solver="lbfgs", negative_sampling_rate=r, fit_click_model=True).fit(X[keep], T[keep])
    assert est.click_model_.negative_sampling_rate == r
    # the click rate predicted on the full logs is the full model's, not 1/r times the odds
    p_full = full.predict_proba(X)[:, 1].mean()
    assert est.click_model_.predict_proba(X)[:, 1].mean() == pytest.approx(p_full, rel=0.03)


@pytest.mark.parametrize("correction", ["weight", "intercept"])
def test_sgd_and_partial_fit_apply_the_correction(correction):
    d = make_watch_time(60_000, 4, click_rate=0.05, dtype=np.float64, random_state=3)
    T = d.watch_time / 60.0
    r = 0.2
    keep = down_sample(T, r, 0)
    exact = WatchTimeRanker(solver="lbfgs", negative_sampling_rate=r,
                            negative_sampling_correction=correction).fit(d.X[keep], T[keep])
    sgd = WatchTimeRanker(negative_sampling_rate=r, negative_sampling_correction=correction,
                          random_state=0).fit(d.X[keep], T[keep])
    assert abs(sgd.intercept_[0] - exact.intercept_[0]) < 0.05
    stream = WatchTimeRanker(negative_sampling_rate=r, negative_sampling_correction=correction, random_state=0)
    for _ in range(5):
        stream.partial_fit(d.X[keep], T[keep])
    assert abs(stream.intercept_[0] - exact.intercept_[0]) < 0.3   # 5 streamed epochs: not converged
    # the uncorrected model sits log(1/r) = 1.6 away: both are clearly corrected
    assert abs(WatchTimeRanker(solver="lbfgs").fit(d.X[keep], T[keep]).intercept_[0] - exact.intercept_[0]) > 1.0


def test_weighted_logistic_regression_down_samples_its_negative_class():
    rng = np.random.default_rng(0)
    n = 200_000
    X = rng.normal(size=(n, 3))
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-(X @ [1.0, -0.5, 0.2] - 3))), "buy", "ignore")
    # classes_ sort as ["buy", "ignore"]: the negative class is classes_[0] = "buy" here
    full = WeightedLogisticRegression(solver="lbfgs").fit(X, y)
    r = 0.3
    keep = (y == "ignore") | (rng.random(n) < r)
    est = WeightedLogisticRegression(solver="lbfgs", negative_sampling_rate=r).fit(X[keep], y[keep])
    assert est.classes_.tolist() == ["buy", "ignore"]
    np.testing.assert_allclose(theta(est), theta(full), atol=0.1)
    assert abs(WeightedLogisticRegression(solver="lbfgs").fit(X[keep], y[keep]).intercept_[0]
               - full.intercept_[0]) > 0.8          # log(1 / 0.3) = 1.2 without the correction


def test_parameters_round_trip_and_validation(tmp_path):
    d = make_watch_time(5_000, 3, random_state=0)
    est = WatchTimeRanker(solver="lbfgs", negative_sampling_rate=0.25, negative_sampling_correction="intercept",
                          fit_click_model=True).fit(d.X, d.watch_time)
    params = est.get_params()
    assert params["negative_sampling_rate"] == 0.25 and params["negative_sampling_correction"] == "intercept"
    est.save(tmp_path / "m.npz")
    back = fastwlr.load(tmp_path / "m.npz")
    assert back.get_params() == params
    assert back.click_model_.negative_sampling_rate == 0.25
    np.testing.assert_array_equal(back.predict(d.X), est.predict(d.X))
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    assert clone(est).get_params() == params
    for bad, err in [(dict(negative_sampling_rate=0.0), "negative_sampling_rate must be > 0"),
                     (dict(negative_sampling_rate=1.5), "negative_sampling_rate must be <= 1"),
                     (dict(negative_sampling_correction="shift"), "negative_sampling_correction must be one of"),
                     (dict(negative_sampling_rate=0.5, negative_sampling_correction="intercept",
                           fit_intercept=False), "needs fit_intercept=True")]:
        with pytest.raises(ValueError, match=err):
            WatchTimeRanker(solver="lbfgs", **bad).fit(d.X, d.watch_time)
    with pytest.raises(TypeError, match="negative_sampling_rate must be a real number"):
        WatchTimeRanker(negative_sampling_rate="0.1").fit(d.X, d.watch_time)
    # rate 1.0 (the default) changes nothing
    a = WatchTimeRanker(solver="lbfgs").fit(d.X, d.watch_time)
    b = WatchTimeRanker(solver="lbfgs", negative_sampling_rate=1.0, negative_sampling_correction="intercept").fit(
        d.X, d.watch_time)
    np.testing.assert_array_equal(theta(a), theta(b))
