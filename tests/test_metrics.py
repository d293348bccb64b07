"""fastwlr.metrics against brute-force definitions (pairs, per-request loops) and scikit-learn."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fastwlr import metrics as m
from fastwlr.backends._math import sigmoid


# ------------------------------------------------------------------ brute-force definitions
def brute_pairs(y, s, w, offsets):
    """(correct, tied, wrong) pair weights, by looping over every pair of every request."""
    correct = tied = wrong = 0.0
    for g in range(len(offsets) - 1):
        for i in range(offsets[g], offsets[g + 1]):
            if y[i] != 1:
                continue
            for j in range(offsets[g], offsets[g + 1]):
                if y[j] != 0:
                    continue
                pw = w[i] * w[j]
                if s[i] > s[j]:
                    correct += pw
                elif s[i] == s[j]:
                    tied += pw
                else:
                    wrong += pw
    return correct, tied, wrong


def brute_auc(y, s, w, offsets):
    c, t, wr = brute_pairs(y, s, w, offsets)
    return (c + t / 2) / (c + t + wr)


def brute_per_user_loss(T, s, offsets):
    """Covington et al.: for each (positive, negative) pair of a request, T_pos is mispredicted when
    the negative is scored higher (a tie: half); divided by T_pos summed over all such pairs."""
    mis = tot = 0.0
    for g in range(len(offsets) - 1):
        rows = range(offsets[g], offsets[g + 1])
        for i in rows:
            if T[i] <= 0:
                continue
            for j in rows:
                if T[j] > 0:
                    continue
                tot += T[i]
                mis += T[i] * (1.0 if s[j] > s[i] else 0.5 if s[j] == s[i] else 0.0)
    return mis / tot


def brute_ndcg_request(T, s, k):
    """Tie-averaged DCG by enumeration: average DCG over every order of the tied blocks."""
    import itertools
    n = len(T)
    k = n if k is None else min(k, n)
    disc = [1 / math.log2(r + 2) if r < k else 0.0 for r in range(n)]
    ideal = sum(t * d for t, d in zip(sorted(T, reverse=True), disc))
    if ideal == 0:
        return math.nan
    # every permutation consistent with descending scores, averaged (small n only)
    perms = [p for p in itertools.permutations(range(n))
             if all(s[p[r]] >= s[p[r + 1]] for r in range(n - 1))]
    dcg = np.mean([sum(T[p[r]] * disc[r] for r in range(n)) for p in perms])
    return dcg / ideal


def random_requests(rng, n_requests, max_size, p_click=0.3, n_levels=4):
    sizes = rng.integers(0, max_size + 1, size=n_requests)
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    n = int(offsets[-1])
    clicked = rng.random(n) < p_click
    T = np.where(clicked, rng.exponential(30.0, n) + 0.1, 0.0)
    s = rng.integers(0, n_levels, n).astype(np.float64)   # few levels: many ties
    return T, s, offsets


# ------------------------------------------------------------------ AUC
@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties_and_weights(seed):
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(seed)
    n = 300
    y = (rng.random(n) < 0.2).astype(float)
    s = np.round(rng.normal(size=n), 1)   # rounding: many ties
    w = rng.random(n) * 5
    assert m.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m.auc(y, s, sample_weight=w) == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_requests=st.integers(1, 8), max_size=st.integers(0, 7),
       n_levels=st.integers(1, 5))
def test_grouped_auc_and_per_user_loss_match_brute_force(seed, n_requests, max_size, n_levels):
    rng = np.random.default_rng(seed)
    T, s, offsets = random_requests(rng, n_requests, max_size, n_levels=n_levels)
    y = (T > 0).astype(float)
    w = np.where(T > 0, T, 1.0)
    c, t, wr = brute_pairs(y, s, w, offsets)
    if c + t + wr == 0:
        with pytest.raises(ValueError, match="no request has both"):
            m.weighted_per_user_loss(T, s, offsets)
        with pytest.raises(ValueError, match="undefined"):
            m.weighted_auc(T, s, offsets=offsets)
        return
    loss = m.weighted_per_user_loss(T, s, offsets)
    assert loss == pytest.approx(brute_per_user_loss(T, s, offsets), rel=1e-12, abs=1e-15)
    assert m.weighted_auc(T, s, offsets=offsets) == pytest.approx(brute_auc(y, s, w, offsets), rel=1e-12)
    assert loss + m.weighted_auc(T, s, offsets=offsets) == pytest.approx(1.0, abs=1e-12)
    # unweighted grouped AUC too
    assert m.auc(y, s, offsets=offsets) == pytest.approx(brute_auc(y, s, np.ones_like(y), offsets), rel=1e-12)


def test_per_user_loss_doc_example_and_edge_cases():
    T = np.array([0, 30.0, 0, 10.0, 0])
    s = np.array([0.9, 0.5, 0.1, 0.2, 0.7])
    assert m.weighted_per_user_loss(T, s, [0, 3, 5]) == pytest.approx(40 / 70)
    # perfect and reversed orders; all tied -> 0.5
    assert m.weighted_per_user_loss(T, T, [0, 3, 5]) == 0.0
    assert m.weighted_per_user_loss(T, -T, [0, 3, 5]) == 1.0
    assert m.weighted_per_user_loss(T, np.zeros(5), [0, 3, 5]) == 0.5
    # a request with only negatives, one with only positives, an empty one: contribute nothing
    T2 = np.concatenate((T, [0, 0, 0], [5.0, 7.0]))
    s2 = np.concatenate((s, [100, 100, 100], [-100, -100]))
    assert m.weighted_per_user_loss(T2, s2, [0, 3, 5, 5, 8, 10]) == pytest.approx(40 / 70)
    # cross-request pairs do not count: offsets=None (one request) gives a different answer
    assert m.weighted_per_user_loss(T2, s2, None) != pytest.approx(40 / 70)


def test_per_user_loss_is_invariant_to_monotone_transforms_and_row_order_within_requests(rng):
    T, s, offsets = random_requests(rng, 50, 30, n_levels=1000)
    base = m.weighted_per_user_loss(T, s, offsets)
    assert m.weighted_per_user_loss(T, np.exp(s / 100), offsets) == pytest.approx(base, rel=1e-12)
    perm = np.concatenate([offsets[g] + rng.permutation(offsets[g + 1] - offsets[g])
                           for g in range(len(offsets) - 1)]).astype(int)
    assert m.weighted_per_user_loss(T[perm], s[perm], offsets) == pytest.approx(base, rel=1e-12)


def test_per_user_loss_is_fast_for_10k_requests(rng):
    import time
    T, s, offsets = random_requests(rng, 10_000, 40, n_levels=10**6)
    t0 = time.perf_counter()
    m.weighted_per_user_loss(T, s, offsets)
    assert time.perf_counter() - t0 < 2.0   # O(n log n) on ~200k rows; a pair loop would take minutes


def test_auc_errors_and_inputs_untouched():
    y = np.array([0.0, 1.0, 0.0, 1.0])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    y0, s0 = y.copy(), s.copy()
    m.auc(y, s)
    assert np.array_equal(y, y0) and np.array_equal(s, s0)
    with pytest.raises(ValueError, match="only one class present"):
        m.auc(np.zeros(4), s)
    with pytest.raises(ValueError, match="NaN"):
        m.auc(y, np.array([0.1, np.nan, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        m.auc(y, s[:3])
    with pytest.raises(ValueError, match="0/1"):
        m.auc(np.array([0, 2, 0, 1]), s)
    with pytest.raises(ValueError, match="offsets"):
        m.auc(y, s, offsets=[0, 2])
    with pytest.raises(ValueError, match="watch_time must be >= 0"):
        m.weighted_per_user_loss(np.array([-1.0, 1, 0, 0]), s, None)
    with pytest.raises(TypeError):
        m.auc(y, np.array(["a", "b", "c", "d"]))
    # inf scores order fine
    assert m.auc(y, np.array([-np.inf, np.inf, 0.0, 1.0])) == 1.0


def test_weighted_auc_weights_positives_by_watch_time():
    # positive A (T=100) above the negative, positive B (T=1) below it: AUC 1/2, weighted 100/101
    T = np.array([100.0, 0.0, 1.0])
    s = np.array([3.0, 2.0, 1.0])
    assert m.auc(T > 0, s) == 0.5
    assert m.weighted_auc(T, s) == pytest.approx(100 / 101)


# ------------------------------------------------------------------ NDCG
@pytest.mark.parametrize("k", [None, 1, 2, 5, 20])
@pytest.mark.parametrize("seed", range(3))
def test_ndcg_matches_sklearn(k, seed):
    from sklearn.metrics import ndcg_score
    rng = np.random.default_rng(seed)
    G, size = 6, 25
    T = np.where(rng.random((G, size)) < 0.3, rng.exponential(30.0, (G, size)), 0.0)
    T[:, 0] = 5.0   # every request has some watch time: sklearn and we then average the same set
    s = rng.integers(0, 4, (G, size)).astype(float)   # heavy ties
    ours = m.ndcg(T.ravel(), s.ravel(), k, offsets=np.arange(G + 1) * size)
    assert ours == pytest.approx(ndcg_score(T, s, k=k), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_requests=st.integers(1, 5), max_size=st.integers(0, 6),
       k=st.one_of(st.none(), st.integers(1, 7)))
def test_ndcg_matches_brute_force_ragged(seed, n_requests, max_size, k):
    rng = np.random.default_rng(seed)
    T, s, offsets = random_requests(rng, n_requests, max_size, n_levels=3)
    per = m.ndcg(T, s, k, offsets=offsets, average=False)
    expected = [brute_ndcg_request(list(T[a:b]), list(s[a:b]), k) if b > a else math.nan
                for a, b in zip(offsets[:-1], offsets[1:])]
    np.testing.assert_allclose(per, expected, rtol=1e-12, equal_nan=True)
    ok = ~np.isnan(per)
    if ok.any():
        assert m.ndcg(T, s, k, offsets=offsets) == pytest.approx(np.mean(per[ok]), rel=1e-12)
    else:
        with pytest.raises(ValueError, match="no request has any watch time"):
            m.ndcg(T, s, k, offsets=offsets)


def test_ndcg_perfect_and_bounds(rng):
    T, s, offsets = random_requests(rng, 30, 20)
    assert m.ndcg(T, T, offsets=offsets) == pytest.approx(1.0)
    v = m.ndcg(T, s, 3, offsets=offsets)
    assert 0.0 <= v <= 1.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        m.ndcg(T, s, 0, offsets=offsets)


# ------------------------------------------------------------------ log-loss
def test_log_loss_matches_sklearn_and_is_stable(rng):
    from sklearn.metrics import log_loss as sk_log_loss
    n = 500
    y = (rng.random(n) < 0.3).astype(float)
    z = rng.normal(0, 2, n)
    w = rng.random(n)
    assert m.log_loss(y, z, sample_weight=w) == pytest.approx(sk_log_loss(y, sigmoid(z), sample_weight=w), rel=1e-10)
    # extreme log-odds: exact, no clipping (sklearn would clip the probability)
    assert m.log_loss([1.0, 0.0], [-800.0, 800.0]) == pytest.approx(800.0)
    with np.errstate(all="raise"):
        m.log_loss([1.0, 0.0], [-800.0, 800.0])


def test_weighted_log_loss_is_the_recipe_objective(rng):
    n = 400
    T = np.where(rng.random(n) < 0.2, rng.exponential(60.0, n), 0.0)
    z = rng.normal(size=n)
    w = np.where(T > 0, T, 1.0)
    brute = sum(wi * (math.log1p(math.exp(zi)) - (ti > 0) * zi) for wi, zi, ti in zip(w, z, T)) / w.sum()
    assert m.weighted_log_loss(T, z) == pytest.approx(brute, rel=1e-12)
    sw = rng.random(n)
    assert m.weighted_log_loss(T, z, sample_weight=sw) == pytest.approx(
        m.log_loss(T > 0, z, sample_weight=w * sw), rel=1e-14)
    with pytest.raises(ValueError, match="sums to 0"):
        m.log_loss([0.0, 1.0], [0.0, 0.0], sample_weight=[0.0, 0.0])


# ------------------------------------------------------------------ calibration
def test_calibration_table_brute_force(rng):
    n = 1000
    pred = rng.lognormal(3, 1, n)
    T = np.where(rng.random(n) < 0.1, rng.exponential(pred * 5), 0.0)
    w = rng.random(n)
    tab = m.calibration_table(T, pred, n_bins=7, sample_weight=w)
    assert tab.count.sum() == n and (tab.count > 0).all() and tab.bin_edges.shape == (8,)
    assert np.all(np.diff(tab.bin_edges) > 0)
    assert abs(tab.count - n / 7).max() <= 2   # quantile bins: equal counts (no ties here)
    for b in range(7):
        lo, hi = tab.bin_edges[b], tab.bin_edges[b + 1]
        inb = (pred >= lo) & ((pred < hi) if b < 6 else (pred <= hi))
        assert inb.sum() == tab.count[b]
        assert tab.mean_predicted[b] == pytest.approx(np.average(pred[inb], weights=w[inb]))
        assert tab.mean_observed[b] == pytest.approx(np.average(T[inb], weights=w[inb]))
        assert tab.weight[b] == pytest.approx(w[inb].sum())
    assert "| 7 |" in tab.to_markdown()
    assert set(tab.as_dict()) == {"bin_edges", "mean_predicted", "mean_observed", "count", "weight"}


def test_calibration_table_with_ties_has_no_empty_bins():
    pred = np.repeat([1.0, 2.0, 3.0], [50, 3, 47])
    T = np.arange(100.0)
    tab = m.calibration_table(T, pred, n_bins=10)
    assert (tab.count > 0).all() and tab.count.sum() == 100
    assert tab.count.tolist() == [53, 47]   # rows with equal predictions share a bin
    assert tab.bin_edges.tolist() == [1.0, 3.0, 3.0]
    tab1 = m.calibration_table(np.ones(5), np.full(5, 2.0), n_bins=4)
    assert tab1.count.tolist() == [5] and tab1.ratio[0] == 0.5
    with pytest.raises(ValueError, match="NaN"):
        m.calibration_table(T, np.full(100, np.nan))


def test_calibration_on_generated_data_recovers_truth():
    from fastwlr.datasets import make_watch_time
    d = make_watch_time(200_000, 8, click_rate=0.05, watch_time_shape=0.5, random_state=0)
    tab = m.calibration_table(d.watch_time, d.expected_watch_time, n_bins=5)
    # the true E[T|x] is calibrated against observed T up to sampling noise (3-5 % a bin here)
    np.testing.assert_allclose(tab.ratio, 1.0, atol=0.2)
    # against the true E[T|x], e^z overestimates by a factor 1/(1 - p) in every bin (deterministic)
    tab_odds = m.calibration_table(d.expected_watch_time, np.exp(d.log_odds), n_bins=5)
    assert (tab_odds.ratio < 1).all() and (tab_odds.ratio > 1 - d.p.max()).all()


def test_plot_calibration(rng, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    pred = rng.lognormal(3, 1, 500)
    tab = m.calibration_table(pred * rng.random(500) * 2, pred)
    ax = m.plot_calibration(tab, label="model")
    ax.figure.savefig(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 0
    with pytest.raises(TypeError, match="CalibrationTable"):
        m.plot_calibration({"a": 1})


def test_importable_as_submodule():
    import fastwlr
    assert fastwlr.metrics.weighted_per_user_loss is m.weighted_per_user_loss


def test_zero_weight_rows_are_the_same_as_dropped_rows(rng):
    T, s, offsets = random_requests(rng, 40, 12, n_levels=4)
    y = (T > 0).astype(float)
    w = rng.random(T.shape[0])
    w[rng.random(T.shape[0]) < 0.3] = 0.0
    keep = w > 0
    sizes = np.array([keep[a:b].sum() for a, b in zip(offsets[:-1], offsets[1:])])
    kept_offsets = np.concatenate(([0], np.cumsum(sizes)))
    assert m.auc(y, s, sample_weight=w, offsets=offsets) == pytest.approx(
        m.auc(y[keep], s[keep], sample_weight=w[keep], offsets=kept_offsets), rel=1e-12)
    assert m.weighted_per_user_loss(T, s, offsets, sample_weight=w) == pytest.approx(
        m.weighted_per_user_loss(T[keep], s[keep], kept_offsets, sample_weight=w[keep]), rel=1e-12)


def test_float32_scores_tie_at_their_own_precision():
    # distinct in float64, equal once rounded to float32: the float32 input ties
    s64 = np.array([1.0, 1.0 + 1e-12, 0.5])
    T = np.array([0.0, 10.0, 0.0])
    assert m.weighted_per_user_loss(T, s64, None) == 0.0
    assert m.weighted_per_user_loss(T, s64.astype(np.float32), None) == pytest.approx(0.25)
    assert m.auc(T > 0, s64.astype(np.float32)) == pytest.approx(0.75)


def test_empty_inputs_raise_clearly():
    e = np.zeros(0)
    with pytest.raises(ValueError, match="undefined"):
        m.auc(e, e)
    with pytest.raises(ValueError, match="no request"):
        m.weighted_per_user_loss(e, e, None)
    with pytest.raises(ValueError, match="no request has any watch time"):
        m.ndcg(e, e)
    with pytest.raises(ValueError, match="at least one row"):
        m.calibration_table(e, e)


@pytest.mark.parametrize("scale", [1e308, 1e200, 1e-200, 5e-324])
def test_metrics_with_extreme_weights_equal_the_unit_weight_values(scale):
    # sums of 1e308 weights overflowed (log_loss 0.0 instead of 0.693), pair products of 1e200
    # weights too (AUC NaN), and subnormal weights underflowed: the metrics are ratios of weighted
    # sums and must not depend on the weights' scale
    import warnings
    from fastwlr import metrics
    rng = np.random.default_rng(5)
    n = 50
    y = (rng.random(n) < 0.4).astype(float)
    s = rng.standard_normal(n)
    T = np.where(y > 0, rng.exponential(30.0, n), 0.0)
    w = np.full(n, scale)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.log_loss([0, 1], [0, 0], sample_weight=[scale] * 2) == pytest.approx(np.log(2.0), rel=1e-12)
        assert metrics.log_loss(y, s, sample_weight=w) == pytest.approx(metrics.log_loss(y, s), rel=1e-12)
        assert metrics.auc(y, s, sample_weight=w) == pytest.approx(metrics.auc(y, s), rel=1e-12)
        assert metrics.mae(T, s, sample_weight=w) == pytest.approx(metrics.mae(T, s), rel=1e-12)
        got = metrics.calibration_table(T, np.exp(s), n_bins=4, sample_weight=w)
        ref = metrics.calibration_table(T, np.exp(s), n_bins=4)
        np.testing.assert_allclose(got.mean_predicted, ref.mean_predicted, rtol=1e-12)
        np.testing.assert_allclose(got.mean_observed, ref.mean_observed, rtol=1e-12)


def test_calibration_with_all_zero_weights_raises_naming_them():
    from fastwlr import metrics
    with pytest.raises(ValueError, match="sample_weight"):
        metrics.calibration_table([1.0, 0.0, 2.0], [1.0, 2.0, 3.0], n_bins=2, sample_weight=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="sample_weight"):
        metrics.calibration_by_group([1.0, 0.0, 2.0], [1.0, 2.0, 3.0], [0, 1, 0], sample_weight=[0.0, 0.0, 0.0])


def test_log_loss_of_confident_right_answers_is_not_cancelled():
    # found by the fuzz suite: softplus(z) - z rounds to 0 for z = 105, so a positive predicted at
    # z = 105 contributed nothing and the mean came out 8x too small (1.13e-47 instead of 9.49e-47)
    from fastwlr.backends._math import softplus
    y, z = np.array([1, 0, 0]), np.array([105.0, -1264.0, -107.0])
    want = (softplus(-105.0) + softplus(-1264.0) + softplus(-107.0)) / 3
    assert np.isclose(m.log_loss(y, z, sample_weight=np.full(3, 1e200)), want, rtol=1e-14)
    assert np.isclose(m.log_loss(y, z), want, rtol=1e-14)


def test_mae_and_rmse_do_not_overflow_for_huge_errors():
    # found by the fuzz suite: rmse([0], [6.4e299]) was inf (the square overflowed), and
    # T - pred overflows for T = 1e308, pred = -1e308
    assert m.rmse([0.0], [6.4042265e299]) == 6.4042265e299
    assert m.mae([0.0, 0.0], [1e308, 1e308]) == 1e308
    assert m.rmse([1e308, 0.0], [0.0, 1e308], sample_weight=[1.0, 3.0]) == 1e308
    assert m.rmse([1e308], [-1e308]) == np.inf   # 2e308 is beyond float64
    assert m.rmse([3.0, 0.0], [0.0, 4.0]) == np.sqrt(12.5)   # ordinary sizes: the plain computation
