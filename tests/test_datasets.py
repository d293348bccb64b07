"""The synthetic generator (ground truth consistent, reproducible) and the real-data loaders."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import minimize

from fastwlr import datasets
from fastwlr.backends._math import sigmoid
from fastwlr._validation import check_features, check_offsets
from fastwlr.backends.reference import objective_grad_csr, objective_grad_dense
from fastwlr.datasets import load_claims, make_watch_time


def _arrays(data):
    X = data.X
    parts = [X.data, X.indices, X.indptr] if sp.issparse(X) else [X]
    return parts + [data.clicked, data.watch_time, data.offsets, data.coef, data.log_odds, data.p]


@pytest.mark.parametrize("sparse", [False, True])
def test_reproducible_by_seed(sparse):
    kw = dict(sparse=True, n_hashed_features=4096, nnz_per_row=12) if sparse else dict(n_features=7)
    a, b, c = (make_watch_time(3000, **kw, random_state=s) for s in (5, 5, 6))
    for x, y in zip(_arrays(a), _arrays(b)):
        np.testing.assert_array_equal(x, y)
    assert a.intercept == b.intercept
    assert not np.array_equal(a.watch_time, c.watch_time)
    # a Generator is accepted and advanced: two draws from one generator differ
    rng = np.random.default_rng(0)
    first, second = (make_watch_time(100, 3, random_state=rng).p for _ in range(2))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_shapes_dtypes_and_invariants(dtype):
    d = make_watch_time(5001, 9, dtype=dtype, random_state=1)
    n = 5001
    assert d.X.shape == (n, 9) and d.X.dtype == dtype and d.X.flags.c_contiguous
    assert d.n_samples == n and d.n_features == 9
    assert d.clicked.dtype == bool and d.clicked.shape == (n,)
    assert d.watch_time.dtype == np.float64
    assert np.all(d.watch_time[~d.clicked] == 0.0) and np.all(d.watch_time[d.clicked] > 0.0)
    assert d.offsets.dtype == np.int64 and d.offsets[0] == 0 and d.offsets[-1] == n
    assert np.all(np.diff(d.offsets) >= 1)  # every request has a candidate
    check_offsets(d.offsets, n)
    for arr in (d.coef, d.click_coef, d.watch_coef):
        assert arr.shape == (9,) and arr.dtype == np.float64
    np.testing.assert_array_equal(d.sample_weight, np.where(d.clicked, d.watch_time, 1.0))
    np.testing.assert_array_equal(d.y, d.clicked.astype(float))


def test_ground_truth_is_consistent():
    d = make_watch_time(4000, 6, dtype=np.float32, random_state=2)
    X64 = d.X.astype(np.float64)
    np.testing.assert_allclose(d.coef, d.click_coef + d.watch_coef, rtol=0, atol=0)
    assert d.intercept == pytest.approx(d.click_intercept + d.watch_intercept, rel=1e-15)
    np.testing.assert_allclose(d.click_log_odds, X64 @ d.click_coef + d.click_intercept, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.log_odds, X64 @ d.coef + d.intercept, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.p, sigmoid(d.click_log_odds), rtol=1e-14)
    m = np.exp(X64 @ d.watch_coef + d.watch_intercept)
    np.testing.assert_allclose(d.mean_watch_time_given_click, m, rtol=1e-12)
    np.testing.assert_allclose(d.expected_watch_time, d.p * m, rtol=1e-12)
    # docs/theory.md section 2: E[T|x] = e^z (1 - p) exactly
    np.testing.assert_allclose(np.exp(d.log_odds) * (1 - d.p), d.expected_watch_time, rtol=1e-12)
    # the spread of a.x and c.x is what was asked (x ~ N(0, I): sd(a.x) = ||a||)
    assert np.linalg.norm(d.click_coef) == pytest.approx(1.0, rel=1e-12)
    assert np.linalg.norm(d.watch_coef) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("rate, mean_t", [(0.05, 60.0), (0.01, 300.0), (0.3, 12.0)])
def test_intercepts_hit_the_requested_rate_and_mean(rate, mean_t):
    d = make_watch_time(20_000, 5, click_rate=rate, mean_watch_time=mean_t, random_state=3)
    assert d.p.mean() == pytest.approx(rate, rel=1e-9)
    assert d.params["expected_click_rate"] == pytest.approx(rate, rel=1e-9)
    assert np.dot(d.p, d.mean_watch_time_given_click) / d.p.sum() == pytest.approx(mean_t, rel=1e-9)
    # observed click rate within 5 binomial standard errors of the expected one
    se = np.sqrt(np.sum(d.p * (1 - d.p))) / d.n_samples
    assert abs(d.clicked.mean() - rate) < 5 * se


@pytest.mark.parametrize("dist, shape", [("lognormal", None), ("lognormal", 0.3), ("gamma", None), ("gamma", 0.5)])
def test_observed_watch_time_matches_expected(dist, shape):
    """E[T|x] is the mean of the watch time (0 when not clicked): check it overall and per quartile
    of E[T|x], within 5 standard errors of the observed means."""
    d = make_watch_time(200_000, 4, watch_time_distribution=dist, watch_time_shape=shape, random_state=4)
    order = np.argsort(d.expected_watch_time)
    for rows in [order] + np.array_split(order, 4):
        obs, exp = d.watch_time[rows], d.expected_watch_time[rows]
        se = obs.std() / np.sqrt(rows.size)
        assert abs(obs.mean() - exp.mean()) < 5 * se, (dist, shape, obs.mean(), exp.mean(), se)
    # given a click, the law's mean is m(x): normalised watch times T/m average 1
    ratio = d.watch_time[d.clicked] / d.mean_watch_time_given_click[d.clicked]
    assert abs(ratio.mean() - 1.0) < 5 * ratio.std() / np.sqrt(ratio.size)


def _fit_and_sandwich(objective, Xa, y, w):
    """Unpenalised weighted LR by L-BFGS on the reference objective, and the sandwich covariance
    H^+ G H^+ / n of the estimate (a weighted M-estimator: no information identity)."""
    def f(theta):
        loss, g, gb = objective(theta[:-1], theta[-1])
        return loss, np.append(g, gb)
    res = minimize(f, np.zeros(Xa.shape[1]), jac=True, method="L-BFGS-B",
                   options=dict(maxiter=1000, gtol=1e-10, ftol=1e-15))
    theta = res.x
    n = y.shape[0]
    s = sigmoid(Xa @ theta)
    H = (Xa * (w * s * (1 - s))[:, None]).T @ Xa / n
    G = (Xa * ((w * (s - y)) ** 2)[:, None]).T @ Xa / n
    Hp = np.linalg.pinv(H, rcond=1e-10, hermitian=True)
    rank = np.linalg.matrix_rank(H, tol=1e-10 * np.abs(H).max(), hermitian=True)
    return theta, Hp @ G @ Hp / n, rank


def test_weighted_lr_recovers_the_true_coefficients_dense():
    """The generator's claim: YouTube's weighted LR is well specified on this data. Every fitted
    parameter lies within 5 (sandwich) standard errors of the truth; with 200k rows a standard error
    is about 0.025, so this also bounds the error at ~0.12 absolute."""
    d = make_watch_time(200_000, 8, dtype=np.float64, random_state=0)
    X, y, w = d.X, d.y, d.sample_weight
    Xa = np.hstack([X, np.ones((X.shape[0], 1))])
    theta, cov, rank = _fit_and_sandwich(lambda c, b: objective_grad_dense(X, y, w, c, b, 0.0), Xa, y, w)
    assert rank == 9
    se = np.sqrt(np.diag(cov))
    err = theta - np.append(d.coef, d.intercept)
    assert np.all(se < 0.05)
    assert np.all(np.abs(err) < 5 * se), (err, se)


def test_weighted_lr_recovers_the_true_log_odds_sparse():
    """Same on hashed CSR features (narrow, so each column is seen thousands of times). One-hot
    fields sum to 1 per row, so coefficients are identified only up to a shift per field against
    the intercept: test the error in the identified directions, err' cov^+ err ~ chi2(rank), against
    rank + 6 sd (sd = sqrt(2 rank)); a wrong truth (e.g. coefficients mapped to the wrong columns)
    gives thousands."""
    d = make_watch_time(60_000, sparse=True, n_hashed_features=48, nnz_per_row=6, random_state=1)
    X, y, w = d.X, d.y, d.sample_weight
    assert X.shape == (60_000, 48) and X.nnz == 360_000
    Xa = np.hstack([X.toarray().astype(np.float64), np.ones((X.shape[0], 1))])
    theta, cov, rank = _fit_and_sandwich(
        lambda c, b: objective_grad_csr(X.data, X.indices, X.indptr, X.shape[1], y, w, c, b, 0.0), Xa, y, w)
    assert rank == 49 - 5  # five all-binary fields, each collinear with the intercept
    err = theta - np.append(d.coef, d.intercept)
    chi2 = err @ np.linalg.pinv(cov, rcond=1e-10, hermitian=True) @ err
    assert chi2 < rank + 6 * np.sqrt(2 * rank), chi2
    assert np.sqrt(np.mean((Xa @ err) ** 2)) < 0.4  # RMS log-odds error (0.2-0.28 at this size)


def test_sparse_structure():
    d = make_watch_time(2001, sparse=True, n_hashed_features=10_000, nnz_per_row=13, dtype=np.float64, random_state=7)
    X = d.X
    assert sp.issparse(X) and X.format == "csr" and X.shape == (2001, 10_000) and X.dtype == np.float64
    assert X.indices.dtype == np.int32 and X.indptr.dtype == np.int32
    assert np.all(np.diff(X.indptr) == 13)
    cols = X.indices.reshape(2001, 13)
    assert np.all(np.diff(cols, axis=1) > 0)  # distinct and sorted within a row
    assert cols.min() >= 0 and cols.max() < 10_000
    assert np.all(X.data > 0)
    assert np.any(X.data != 1.0) and np.mean(X.data == 1.0) > 0.5  # mostly one-hot, some small reals
    feats = check_features(X)
    assert feats.is_sparse and feats.n_features == 10_000
    np.testing.assert_allclose(d.log_odds, X.astype(np.float64) @ d.coef + d.intercept, rtol=1e-12, atol=1e-12)


def test_smallest_sizes():
    d = make_watch_time(1, 1, random_state=0)
    assert d.X.shape == (1, 1) and d.offsets.tolist() == [0, 1]
    assert d.p[0] == pytest.approx(0.05, rel=1e-9)
    d = make_watch_time(3, sparse=True, n_hashed_features=2, nnz_per_row=2, random_state=0)
    assert d.X.shape == (3, 2) and d.X.nnz == 6


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(n_samples=0), ValueError, "n_samples"),
    (dict(n_samples=2.5), TypeError, "n_samples"),
    (dict(n_features=0), ValueError, "n_features"),
    (dict(click_rate=0.0), ValueError, "click_rate"),
    (dict(click_rate=1.0), ValueError, "click_rate"),
    (dict(click_rate=float("nan")), ValueError, "click_rate"),
    (dict(mean_watch_time=-1.0), ValueError, "mean_watch_time"),
    (dict(watch_time_distribution="weibull"), ValueError, "watch_time_distribution"),
    (dict(watch_time_shape=0.0), ValueError, "watch_time_shape"),
    (dict(mean_request_size=0.5), ValueError, "mean_request_size"),
    (dict(dtype=np.int32), TypeError, "dtype"),
    (dict(random_state="seed"), TypeError, "random_state"),
    (dict(sparse=True, n_features=10), ValueError, "n_hashed_features"),
    (dict(sparse=True, n_hashed_features=10, nnz_per_row=20), ValueError, "n_hashed_features"),
])
def test_bad_parameters(kwargs, exc, match):
    kwargs = {"n_samples": 10, **kwargs}
    with pytest.raises(exc, match=match):
        make_watch_time(**kwargs)


@pytest.mark.slow
def test_million_rows_is_fast():
    import time
    t0 = time.perf_counter()
    d = make_watch_time(1_000_000, 64, random_state=0)
    elapsed = time.perf_counter() - t0
    assert d.X.nbytes == 256_000_000
    assert elapsed < 30  # "a few seconds" on an idle core; generous for a shared CI machine


# ---------------------------------------------------------------- real data (skipped when absent)

def _available(name):
    try:
        datasets.claims_path(name)
        return True
    except FileNotFoundError:
        return False


EXPECTED = {  # rows, event rate (DATA README)
    "freMTPL2": (677_991, 0.0368), "dataCar": (67_856, 0.0681), "norauto": (183_999, 0.0459),
    "online_shoppers": (12_330, 0.1537),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_claims(name):
    if not _available(name):
        pytest.skip(f"{name} data not found (set FASTWLR_DATA_DIR)")
    d = load_claims(name)
    n, rate = EXPECTED[name]
    assert d.X.shape[0] == n and d.X.dtype == np.float64 and d.X.flags.c_contiguous
    assert len(d.feature_names) == d.X.shape[1] == len(set(d.feature_names))
    assert np.isfinite(d.X).all()
    assert d.clicked.dtype == bool and d.clicked.mean() == pytest.approx(rate, abs=5e-4)
    np.testing.assert_array_equal(d.clicked, d.amount > 0)
    assert np.all(d.amount >= 0)
    np.testing.assert_array_equal(d.sample_weight, np.where(d.clicked, d.amount, 1.0))
    n_numeric = sum("=" not in f for f in d.feature_names)
    num = d.X[:, :n_numeric]
    np.testing.assert_allclose(num.mean(axis=0), 0.0, atol=1e-9)
    assert np.all((np.abs(num.std(axis=0) - 1.0) < 1e-9) | (num.std(axis=0) == 0))
    onehot = d.X[:, n_numeric:]
    assert np.isin(onehot, (0.0, 1.0)).all()
    assert np.all(onehot.sum(axis=1) <= len({f.split("=")[0] for f in d.feature_names[n_numeric:]}))
    # the features are usable as they are: validation accepts them unchanged (no copy)
    assert np.shares_memory(check_features(d.X).X, d.X)


def test_load_claims_leaks_no_target():
    if not _available("dataCar"):
        pytest.skip("dataCar data not found")
    names = load_claims("dataCar").feature_names
    assert not any(f.split("=")[0] in ("clm", "numclaims", "claimcst0") for f in names)


def test_load_claims_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTWLR_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_claims("dataCar", data_dir=tmp_path)
    with pytest.raises(ValueError, match="name must be one of"):
        load_claims("iris")


def test_load_claims_from_a_small_file(tmp_path):
    """The parser on a hand-written file: transforms, reference level dropped, event column."""
    import gzip
    text = ("veh_value,exposure,clm,numclaims,claimcst0,veh_body,veh_age,gender,area,agecat\n"
            "1.0,0.5,0,0,0.0,SEDAN,1,F,A,2\n"
            "2.0,1.0,1,1,350.5,HBACK,2,M,B,3\n"
            "3.0,0.25,0,0,0.0,SEDAN,3,F,A,4\n")
    with gzip.open(tmp_path / "dataCar.csv.gz", "wt") as f:
        f.write(text)
    d = load_claims("dataCar", data_dir=tmp_path)
    np.testing.assert_array_equal(d.amount, [0.0, 350.5, 0.0])
    np.testing.assert_array_equal(d.clicked, [False, True, False])
    assert d.feature_names == ["veh_value", "exposure", "veh_age", "agecat", "veh_body=HBACK", "gender=M", "area=B"]
    v = np.log1p([1.0, 2.0, 3.0])
    np.testing.assert_allclose(d.X[:, 0], (v - v.mean()) / v.std())
    e = np.log([0.5, 1.0, 0.25])
    np.testing.assert_allclose(d.X[:, 1], (e - e.mean()) / e.std())
    np.testing.assert_array_equal(d.X[:, 4:], [[0, 0, 0], [1, 1, 1], [0, 0, 0]])


def test_demo_runs(capsys):
    from fastwlr import demo
    assert demo.main(["--n-samples", "3000", "--n-features", "5", "--n-threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "decile" in out and "e^z(1-p)" in out and "true E[T|x]" in out
    lines = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit() and len(ln.split()) == 6]
    assert len(lines) == 10
    # columns: decile rows e^z e^z(1-p) E[T] observed; e^z >= exact = true, and increasing by decile
    ez, exact, true = (np.array([float(r[k]) for r in lines]) for k in (2, 3, 4))
    assert np.all(ez >= exact) and np.allclose(exact, true, rtol=1e-3) and np.all(np.diff(ez) > 0)


@pytest.mark.parametrize("kwargs", [
    dict(n_samples=10, n_features=64, click_signal=1000.0, watch_signal=1000.0, random_state=44),
    dict(n_samples=200, n_features=8, click_signal=300.0, watch_signal=800.0, random_state=1),
    dict(n_samples=200, n_features=8, click_signal=50.0, watch_signal=500.0, click_rate=0.5,
         watch_time_distribution="gamma", watch_time_shape=1e-3, random_state=2),
    dict(n_samples=200, n_features=8, watch_signal=20.0, watch_time_shape=40.0, random_state=3),
    dict(n_samples=50, n_features=16, click_signal=1000.0, watch_signal=1000.0, random_state=1),
    dict(n_samples=50, n_features=16, click_signal=1000.0, watch_signal=1000.0, watch_time_distribution="gamma",
         watch_time_shape=1e-3, random_state=4),
])
def test_ground_truth_stays_finite_under_extreme_settings(kwargs):
    # strong signals made sum p e^(c.x) underflow: c0 = inf, inf log-odds, NaN expected watch time;
    # extreme draws gave clicked rows a watch time of 0 (or inf)
    import warnings
    from fastwlr.datasets import make_watch_time
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        d = make_watch_time(**kwargs)
    assert np.isfinite(d.log_odds).all() and np.isfinite(d.click_log_odds).all()
    assert np.isfinite(d.expected_watch_time).all() and (d.expected_watch_time >= 0).all()
    assert np.isfinite(d.watch_intercept)
    assert np.all(d.watch_time[d.clicked] > 0) and np.isfinite(d.watch_time).all()
    assert np.all(d.watch_time[~d.clicked] == 0)
    assert np.isfinite(d.params["expected_watch_time_given_click"])
