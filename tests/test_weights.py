"""fastwlr._weights: the watch-time recipe and the weight checks every caller shares."""
import numpy as np
import pytest

from fastwlr import WatchTimeRanker, WeightedLogisticRegression, metrics
from fastwlr._weights import (check_watch_time, mean_weight, normalised_weights, recipe, total_weight,
                              watch_time_targets)
from fastwlr.datasets import ClaimsData, make_watch_time


def test_recipe_labels_and_weights():
    T = np.array([0.0, 3.5, 0.0, 120.0, -0.0])
    y, w = watch_time_targets(T)
    assert y.dtype == w.dtype == np.float64
    np.testing.assert_array_equal(y, [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(w, [1.0, 3.5, 1.0, 120.0, 1.0])
    sw = np.array([2.0, 0.5, 0.0, 1.0, 3.0])
    y2, w2 = watch_time_targets(T, sw)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(w2, w * sw)
    # on validated arrays, without a sample_weight: no multiplication, the same numbers
    np.testing.assert_array_equal(recipe(T)[1], w)
    assert watch_time_targets([0, 2, 0], n=3)[1].tolist() == [1.0, 2.0, 1.0]  # lists and ints


@pytest.mark.parametrize("bad, match", [
    (np.array([0.0, -1.0, 2.0]), r"watch_time must be >= 0 \(0 = not clicked\); first negative at index 1"),
    (np.array([0.0, np.nan]), r"watch_time contains NaN or inf"),
    (np.array([0.0, np.inf]), r"watch_time contains NaN or inf"),
    (np.zeros((3, 2)), r"watch_time must be 1-D"),
    (np.zeros((3, 1)), r"watch_time must be 1-D"),
])
def test_watch_time_errors_name_the_argument(bad, match):
    with pytest.raises(ValueError, match=match):
        check_watch_time(bad)
    with pytest.raises(ValueError, match=match.replace("watch_time", "amount")):
        check_watch_time(bad, name="amount")


def test_lengths_and_sample_weight_errors():
    with pytest.raises(ValueError, match=r"watch_time must have shape \(4,\)"):
        watch_time_targets(np.zeros(3), n=4)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(3,\)"):
        watch_time_targets(np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="sample_weight must be >= 0"):
        watch_time_targets(np.zeros(3), -np.ones(3))
    with pytest.raises(ValueError, match="sample_weight contains NaN or inf"):
        watch_time_targets(np.zeros(3), [1.0, np.nan, 1.0])


def test_total_mean_and_normalised_weights():
    w = np.array([1.0, 3.0, 0.0, 4.0])
    assert total_weight(w) == 8.0
    assert mean_weight(w) == 2.0
    np.testing.assert_array_equal(normalised_weights(w), w * (4 / 8.0))
    assert mean_weight(np.zeros(0)) == 1.0  # no rows: nothing to normalise
    for fn in (total_weight, mean_weight, normalised_weights):
        with pytest.raises(ValueError, match="every sample_weight is zero"):
            fn(np.zeros(3))
    with pytest.raises(ValueError, match="first chunk"):
        total_weight(np.zeros(0), "the first chunk weighs nothing")


def test_every_caller_uses_the_same_recipe(rng):
    """The ranker, the metrics and the data sets give the labels and weights of watch_time_targets."""
    data = make_watch_time(2000, 4, random_state=3)
    y, w = watch_time_targets(data.watch_time)
    np.testing.assert_array_equal(data.y, y)
    np.testing.assert_array_equal(data.sample_weight, w)
    np.testing.assert_array_equal(data.y, data.clicked)
    claims = ClaimsData(name="toy", X=np.zeros((3, 1)), clicked=np.array([False, True, False]),
                        amount=np.array([0.0, 250.0, 0.0]), feature_names=["x"])
    np.testing.assert_array_equal(claims.y, [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(claims.sample_weight, [1.0, 250.0, 1.0])

    X = np.asarray(data.X, dtype=np.float64)
    sw = rng.uniform(0.5, 2.0, X.shape[0])
    ranker = WatchTimeRanker(alpha=1e-3, solver="lbfgs").fit(X, data.watch_time, sample_weight=sw)
    y, w = watch_time_targets(data.watch_time, sw)
    wlr = WeightedLogisticRegression(alpha=1e-3, solver="lbfgs").fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(ranker.coef_, wlr.coef_)
    z = ranker.decision_function(X)
    assert metrics.weighted_log_loss(data.watch_time, z, sample_weight=sw) == \
        metrics.log_loss(y, z, sample_weight=w)
    assert metrics.weighted_auc(data.watch_time, z, sample_weight=sw) == metrics.auc(y, z, sample_weight=w)
