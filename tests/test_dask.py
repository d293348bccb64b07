"""fastwlr.dask on a LocalCluster of 2 worker processes (and on the threaded scheduler): the same
scores, top-k and optimum as in memory, the same result when a worker dies mid-job, clear errors."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("dask.distributed")
import dask  # noqa: E402
import dask.array as da  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import fastwlr  # noqa: E402
import fastwlr.dask as fd  # noqa: E402
from fastwlr.datasets import make_watch_time  # noqa: E402

N, D = 12_000, 8
ALPHA = 1e-4


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def data():
    return make_watch_time(N, D, dtype=np.float32, random_state=0)


def _request_chunks(offsets, n, parts):
    """Row chunks whose boundaries are request boundaries (about n / parts rows each)."""
    cuts = offsets[np.searchsorted(offsets, np.linspace(0, n, parts + 1)[1:-1])]
    return tuple(int(c) for c in np.diff(np.concatenate([[0], cuts, [n]])))


def _objective(X, y, w, coef, b, alpha):
    """The in-memory objective, by the numpy reference: sum w l / sum w + alpha/2 ||coef||^2."""
    z = np.asarray(X @ coef, dtype=np.float64).ravel() + b
    loss = np.logaddexp(0.0, z) - y * z
    return float(w @ loss / w.sum() + 0.5 * alpha * coef @ coef)


def test_import_fastwlr_does_not_import_dask():
    root = os.path.dirname(os.path.dirname(fastwlr.__file__))
    code = "import sys, fastwlr; assert 'dask' not in sys.modules and 'distributed' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root,
                   env=dict(os.environ, PYTHONPATH=root))


# ----------------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("output", ["odds", "log_odds", "proba"])
def test_score_is_bit_identical_dense(client, data, output):
    X = da.from_array(data.X, chunks=(2500, D))
    got = fd.score(X, data.coef, data.intercept, output=output)
    assert isinstance(got, da.Array)
    expected = fastwlr.score(data.X, data.coef, data.intercept, output=output, n_threads=1)
    res = got.compute()
    assert res.dtype == expected.dtype and np.array_equal(res, expected)


def test_score_is_bit_identical_csr_and_threaded_scheduler(client):
    sd = make_watch_time(6000, sparse=True, n_hashed_features=2**12, nnz_per_row=10, random_state=3)
    Xs = sp.csr_matrix(sd.X)
    X = da.from_array(Xs, chunks=(1000, Xs.shape[1]), asarray=False)
    expected = fastwlr.score(Xs, sd.coef, sd.intercept, n_threads=1)
    assert np.array_equal(fd.score(X, sd.coef, sd.intercept).compute(), expected)
    with dask.config.set(scheduler="threads"):
        assert np.array_equal(fd.score(X, sd.coef, sd.intercept, n_threads=2).compute(), expected)


def test_score_topk_is_bit_identical(client, data):
    chunks = _request_chunks(data.offsets, N, 4)
    X = da.from_array(data.X, chunks=(chunks, D))
    exclude = np.zeros(N, bool)
    exclude[::7] = True
    for ex in (None, exclude):
        idx, val = fd.score_topk(X, data.coef, data.intercept, k=5, offsets=data.offsets,
                                 exclude=None if ex is None else da.from_array(ex, chunks=chunks))
        i0, v0 = fastwlr.score_topk(data.X, data.coef, data.intercept, k=5, offsets=data.offsets, exclude=ex,
                                    n_threads=1)
        i1, v1 = dask.compute(idx, val)
        assert np.array_equal(i1, i0) and np.array_equal(v1, v0) and v1.dtype == v0.dtype


def test_dataframe_score_and_topk_with_the_repartition_helper(client, data):
    cols = [f"f{j}" for j in range(D)]
    pdf = pd.DataFrame(data.X, columns=cols)
    pdf["req"] = np.repeat(np.arange(len(data.offsets) - 1), np.diff(data.offsets))
    ddf = dd.from_pandas(pdf, npartitions=3)
    s = fd.score(ddf, data.coef, data.intercept, columns=cols).compute()
    assert np.array_equal(s.sort_index().to_numpy(), fastwlr.score(data.X, data.coef, data.intercept, n_threads=1))
    with pytest.raises(ValueError, match="split across partitions"):
        fd.score_topk(ddf, data.coef, data.intercept, k=3, request="req").compute()
    shuffled = fd.repartition_by_request(ddf, "req")
    top = fd.score_topk(shuffled, data.coef, data.intercept, k=3, request="req").compute()
    top = top.sort_values(["request", "rank"])
    i0, v0 = fastwlr.score_topk(data.X, data.coef, data.intercept, k=3, offsets=data.offsets, n_threads=1)
    assert np.array_equal(top["index"].to_numpy(), i0[i0 >= 0])
    assert np.array_equal(top["odds"].to_numpy(), v0[i0 >= 0])


# ---------------------------------------------------------------------------------- training
def _mem_fit(cls, *args, **kw):
    return cls(alpha=ALPHA, solver="lbfgs", n_threads=1, **kw).fit(*args)


def test_fit_reaches_the_in_memory_optimum_dense(client, data):
    chunks = _request_chunks(data.offsets, N, 4)
    X = da.from_array(data.X, chunks=(chunks, D))
    T = da.from_array(data.watch_time, chunks=chunks)
    ranker = fd.WatchTimeRanker(alpha=ALPHA).fit(X, T)
    mem = _mem_fit(fastwlr.WatchTimeRanker, data.X, data.watch_time)
    y = (data.watch_time > 0).astype(float)
    w = np.where(y > 0, data.watch_time, 1.0)
    ld = _objective(data.X, y, w, ranker.coef_[0], ranker.intercept_[0], ALPHA)
    lm = _objective(data.X, y, w, mem.coef_[0], mem.intercept_[0], ALPHA)
    assert abs(ld - lm) <= 1e-8 * abs(lm)
    assert ranker.converged_
    pred = ranker.predict(X)
    assert isinstance(pred, da.Array)
    np.testing.assert_allclose(pred.compute(), mem.predict(data.X), rtol=1e-5)
    idx, val = ranker.rank(X, 3, offsets=data.offsets)
    assert idx.shape == (len(data.offsets) - 1, 3)
    local = ranker.to_local()
    assert np.array_equal(local.predict(data.X), pred.compute())


def test_fit_reaches_the_in_memory_optimum_csr_with_weights_threaded(client):
    sd = make_watch_time(6000, sparse=True, n_hashed_features=2**10, nnz_per_row=10, random_state=4)
    Xs = sp.csr_matrix(sd.X)
    y = sd.clicked.astype(float)
    sw = np.random.default_rng(0).uniform(0.5, 3.0, Xs.shape[0])
    X = da.from_array(Xs, chunks=(1500, Xs.shape[1]), asarray=False)
    mem = _mem_fit(fastwlr.WeightedLogisticRegression, Xs, y, sw)
    for scheduler in ("distributed", "threads"):
        with dask.config.set(scheduler=scheduler) if scheduler == "threads" else _nullcontext():
            est = fd.WeightedLogisticRegression(alpha=ALPHA).fit(
                X, da.from_array(y, chunks=1500), da.from_array(sw, chunks=1500))
        ld = _objective(Xs, y, sw, est.coef_[0], est.intercept_[0], ALPHA)
        lm = _objective(Xs, y, sw, mem.coef_[0], mem.intercept_[0], ALPHA)
        assert abs(ld - lm) <= 1e-8 * abs(lm), scheduler
        assert np.array_equal(est.classes_, [0.0, 1.0])
        assert isinstance(est.predict(X), da.Array)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --------------------------------------------------------------------------- a worker dies
def _kill_one_worker(client):
    pids = client.run(os.getpid)
    addr = sorted(pids)[0]
    os.kill(pids[addr], signal.SIGKILL)


def _wait_for_two(client):
    client.wait_for_workers(2, timeout=60)


def test_a_worker_killed_mid_fit_does_not_change_the_result(client, data, monkeypatch):
    chunks = _request_chunks(data.offsets, N, 6)
    X = da.from_array(data.X, chunks=(chunks, D))
    T = da.from_array(data.watch_time, chunks=chunks)
    undisturbed = fd.WatchTimeRanker(alpha=ALPHA).fit(X, T)
    _wait_for_two(client)
    original = fd._Distributed.evaluate
    calls = []

    def evaluate(self, *args, **kw):
        calls.append(1)
        if len(calls) == 5:  # kill a worker while the 5th pass is running
            threading.Timer(0.01, _kill_one_worker, (client,)).start()
        return original(self, *args, **kw)

    monkeypatch.setattr(fd._Distributed, "evaluate", evaluate)
    disturbed = fd.WatchTimeRanker(alpha=ALPHA).fit(X, T)
    assert len(calls) > 5
    assert np.array_equal(disturbed.coef_, undisturbed.coef_)
    assert disturbed.intercept_[0] == undisturbed.intercept_[0]
    _wait_for_two(client)


def test_a_worker_killed_mid_scoring_does_not_change_the_result(client, data):
    _wait_for_two(client)

    def slow(block):
        time.sleep(0.15)
        return block

    X = da.from_array(data.X, chunks=(1000, D)).map_blocks(slow, dtype=data.X.dtype)
    future = client.compute(fd.score(X, data.coef, data.intercept))
    time.sleep(0.4)
    _kill_one_worker(client)
    assert np.array_equal(future.result(timeout=120), fastwlr.score(data.X, data.coef, data.intercept, n_threads=1))
    _wait_for_two(client)


# ---------------------------------------------------------------------------------- bad input
def test_nan_in_a_partition_is_an_error_naming_it(client, data):
    Xn = data.X.copy()
    Xn[7000, 3] = np.nan
    X = da.from_array(Xn, chunks=(3000, D))
    T = da.from_array(data.watch_time, chunks=3000)
    with pytest.raises(ValueError, match=r"partition 2 \(rows 6000:9000\).*NaN"):
        fd.WatchTimeRanker(alpha=ALPHA).fit(X, T)
    chunks = _request_chunks(data.offsets, N, 3)
    with pytest.raises(ValueError, match="NaN log-odds"):
        dask.compute(*fd.score_topk(da.from_array(Xn, chunks=(chunks, D)), data.coef, k=2, offsets=data.offsets))


def test_a_request_split_across_chunks_is_an_error(client, data):
    X = da.from_array(data.X, chunks=(2500, D))  # 2500 falls inside a request
    with pytest.raises(ValueError, match="straddles partitions 0 and 1"):
        fd.score_topk(X, data.coef, k=2, offsets=data.offsets)


def test_mismatched_chunks_are_an_error(client, data):
    X = da.from_array(data.X, chunks=(3000, D))
    T = da.from_array(data.watch_time, chunks=3000)
    w = da.from_array(np.ones(N), chunks=4000)
    with pytest.raises(ValueError, match="sample_weight is chunked as"):
        fd.WatchTimeRanker(alpha=ALPHA).fit(X, T, w)
    with pytest.raises(ValueError, match="watch_time is chunked as"):
        fd.WatchTimeRanker(alpha=ALPHA).fit(X, da.from_array(data.watch_time, chunks=5000))


def test_only_the_exact_solver_distributes(data):
    X = da.from_array(data.X, chunks=(3000, D))
    with pytest.raises(ValueError, match="solver='lbfgs'"):
        fd.WatchTimeRanker(solver="sgd").fit(X, da.from_array(data.watch_time, chunks=3000))
