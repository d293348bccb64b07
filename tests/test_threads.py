"""Thread safety: one model and one batch used from 8 threads at once give exactly the serial
results; every compiled kernel releases the GIL (another Python thread keeps running while it
works); concurrent ``partial_fit`` calls on one estimator take turns, as documented."""
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

import fastwlr
from fastwlr import WatchTimeRanker, WeightedLogisticRegression
from fastwlr._config import available_backends, get_backend

from conftest import COMPILED

N_THREADS = 8


def _same(a, b):
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def concurrently(fn, n=N_THREADS, repeats=4):
    """fn() from n threads released together, ``repeats`` times each: every result, or the first error."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def work(i):
        try:
            barrier.wait()
            results[i] = [fn() for _ in range(repeats)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [r for per_thread in results for r in per_thread]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    n, d = 3000, 24
    X = rng.standard_normal((n, d)).astype(np.float32)
    X_csr = sp.random(n, 500, density=0.05, format="csr", random_state=3, dtype=np.float64)
    coef = rng.standard_normal(d)
    coef_csr = rng.standard_normal(500)
    sizes = rng.integers(0, 40, size=200)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    offsets = offsets[offsets <= n]
    offsets = np.r_[offsets, n] if offsets[-1] != n else offsets
    T = np.where(rng.random(n) < 0.3, rng.lognormal(2, 1, n), 0.0)
    return X, X_csr, coef, coef_csr, offsets, T


def _calls(problem, backend, n_threads):
    X, X_csr, coef, coef_csr, offsets, T = problem
    scorer = fastwlr.Scorer(coef, 0.25, output="proba", backend=backend, n_threads=n_threads)
    scores = fastwlr.score(X, coef, 0.25, backend=backend)
    kw = dict(backend=backend, n_threads=n_threads)
    calls = {f"score {output}": (lambda o=output: fastwlr.score(X, coef, 0.25, output=o, **kw))
             for output in ("odds", "log_odds", "proba")}
    calls.update({
        "score CSR": lambda: fastwlr.score(X_csr, coef_csr, -0.5, **kw),
        "Scorer (one shared instance)": lambda: scorer(X),
        "topk": lambda: fastwlr.topk(scores, 5, offsets=offsets, **kw),
        "score_topk dense": lambda: fastwlr.score_topk(X, coef, 0.25, 5, offsets=offsets, **kw),
        "score_topk CSR": lambda: fastwlr.score_topk(X_csr, coef_csr, 0.0, 3, offsets=offsets, output="log_odds", **kw),
    })
    return calls


@pytest.mark.parametrize("n_threads", [1, None])
@pytest.mark.parametrize("backend", available_backends())
def test_eight_threads_calling_one_model_get_the_serial_results(problem, backend, n_threads):
    for name, call in _calls(problem, backend, n_threads).items():
        expected = call()
        for got in concurrently(call):
            assert _same(got, expected), f"{name}: a concurrent call differs from the serial one"


@pytest.mark.parametrize("backend", available_backends())
def test_eight_threads_predicting_with_one_estimator(problem, backend):
    X, X_csr, coef, coef_csr, offsets, T = problem
    ranker = WatchTimeRanker(solver="lbfgs", backend=backend).fit(X, T)
    calls = {"predict": lambda: ranker.predict(X), "decision_function": lambda: ranker.decision_function(X),
             "predict_proba": lambda: ranker.predict_proba(X), "rank": lambda: ranker.rank(X, 4, offsets=offsets),
             "predict (corrected)": lambda: ranker.predict(X, click_log_odds=np.zeros(X.shape[0]))}
    for name, call in calls.items():
        expected = call()
        for got in concurrently(call):
            assert _same(got, expected), f"{name}: a concurrent call differs from the serial one"


def test_concurrent_fits_of_separate_estimators_equal_serial_fits(problem):
    X, _, _, _, _, T = problem

    def fit():
        est = WatchTimeRanker(random_state=0, max_iter=3).fit(X, T)
        return est.coef_.copy(), np.float64(est.intercept_)
    expected = fit()
    for got in concurrently(fit, n=4, repeats=1):
        assert _same(got, expected)


# ------------------------------------------------------------------------------ partial_fit

def test_concurrent_partial_fit_takes_turns(problem):
    # documented: concurrent calls on one estimator are serialised (a lock per estimator), each a
    # whole epoch. Identical chunks: any order is the serial result of 8 calls.
    X, _, _, _, _, T = problem
    y = (T > 0).astype(int)
    shared = WeightedLogisticRegression(random_state=0)
    serial = WeightedLogisticRegression(random_state=0)
    for est in (shared, serial):
        est.partial_fit(X, y, classes=[0, 1])
    for _ in range(N_THREADS):
        serial.partial_fit(X, y)
    concurrently(lambda: shared.partial_fit(X, y), n=N_THREADS, repeats=1)
    np.testing.assert_array_equal(shared.coef_, serial.coef_)
    assert shared.intercept_ == serial.intercept_


def test_concurrent_partial_fit_of_two_chunks_is_one_of_the_two_orders(problem):
    X, _, _, _, _, T = problem
    y = (T > 0).astype(int)
    a, b = slice(0, 1500), slice(1500, 3000)

    def fresh():
        est = WeightedLogisticRegression(random_state=0)
        return est.partial_fit(X[:10], y[:10], classes=[0, 1])

    orders = []
    for first, second in ((a, b), (b, a)):
        est = fresh()
        est.partial_fit(X[first], y[first])
        est.partial_fit(X[second], y[second])
        orders.append(est.coef_.copy())
    for _ in range(3):
        shared = fresh()
        barrier = threading.Barrier(2)

        def chunk(s, est=shared):
            barrier.wait()
            est.partial_fit(X[s], y[s])
        threads = [threading.Thread(target=chunk, args=(s,)) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert any(np.array_equal(shared.coef_, o) for o in orders), "the two epochs interleaved"


# ------------------------------------------------------------------------------ the GIL

def _longest_pause(fn):
    """Run fn() in another thread; meanwhile this thread loops in Python and records the longest
    interval between two of its iterations. A kernel that holds the GIL stops this loop for its
    whole duration; one that releases it lets it go on."""
    started, go, done = threading.Event(), threading.Event(), threading.Event()

    def work():
        started.set()
        go.wait()
        fn()
        done.set()
    t = threading.Thread(target=work)
    t.start()
    started.wait()
    # the clock starts before fn may start, and the last interval counts too: under load fn may
    # run in full between go.set() and this thread's next bytecode, or finish while it waits
    last = time.perf_counter()
    longest = 0.0
    go.set()
    while not done.is_set():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    longest = max(longest, time.perf_counter() - last)
    t.join()
    return longest


def _kernels(backend_name):
    """One long call (tens of ms on one thread) per kernel of the contract, straight at the backend."""
    be = get_backend(backend_name)
    rng = np.random.default_rng(0)
    n, d = 800_000, 96
    X = rng.standard_normal((n, d)).astype(np.float32)
    coef = rng.standard_normal(d)
    out = np.empty(n)
    scores = rng.standard_normal(8_000_000)
    offsets = np.arange(0, 8_000_001, 500, dtype=np.int64)
    X_offsets = np.arange(0, n + 1, 500, dtype=np.int64)
    n_csr = 600_000
    nnz = 20 * n_csr
    csr = sp.csr_matrix((rng.standard_normal(nnz), rng.integers(0, 1 << 18, nnz).astype(np.int32),
                         np.arange(0, nnz + 1, 20, dtype=np.int32)), shape=(n_csr, 1 << 18))
    csr_offsets = np.arange(0, n_csr + 1, 500, dtype=np.int64)
    coef_csr = rng.standard_normal(1 << 18)
    y = (rng.random(n) < 0.3).astype(np.float64)
    w = np.ones(n)
    kernels = {
        "score_dense": lambda: be.score_dense(X, coef, 0.1, "odds", out, 1),
        "score_csr": lambda: be.score_csr(csr.data, csr.indices, csr.indptr, coef_csr, 0.1, "proba", out[:n_csr], 1),
        "topk": lambda: be.topk(scores, offsets, 10, 1),
        "score_topk_dense": lambda: be.score_topk_dense(X, coef, 0.1, X_offsets, 10, "odds", None, np.dtype(np.float64), 1),
        "score_topk_csr": lambda: be.score_topk_csr(csr.data, csr.indices, csr.indptr, coef_csr, 0.1, csr_offsets, 10,
                                                    "odds", None, np.dtype(np.float64), 1),
        "objective_grad_dense": lambda: be.objective_grad_dense(X, y, w, coef, 0.1, 1e-3, 1),
        "objective_grad_csr": lambda: be.objective_grad_csr(csr.data, csr.indices, csr.indptr, 1 << 18, y[:n_csr], w[:n_csr],
                                                            coef_csr, 0.1, 1e-3, 1),
        "sgd epoch (fit, dense)": lambda: WeightedLogisticRegression(max_iter=1, tol=None, backend=backend_name,
                                                                     random_state=0).fit(X[:100_000], y[:100_000]),
    }
    if hasattr(be, "objective_grad_hess_dense"):  # optional (the Newton solver's pass)
        X_hess = np.ascontiguousarray(X[:200_000, :32])
        kernels["objective_grad_hess_dense"] = lambda: be.objective_grad_hess_dense(
            X_hess, y[:200_000], w[:200_000], coef[:32], 0.1, 1e-3, 1)
    if hasattr(be, "hessvec_csr"):  # optional (trust-region Newton-CG's passes)
        s_csr = np.full(n_csr, 0.2)
        kernels["curvature_csr"] = lambda: be.curvature_csr(csr.data, csr.indices, csr.indptr, 1 << 18, w[:n_csr],
                                                            coef_csr, 0.1, 1)
        kernels["hessvec_csr"] = lambda: be.hessvec_csr(csr.data, csr.indices, csr.indptr, 1 << 18, s_csr,
                                                        coef_csr, 0.1, 1)
    if hasattr(be, "nonfinite_flags"):
        flat = X.reshape(-1)
        kernels["nonfinite_flags"] = lambda: be.nonfinite_flags(flat, 1)
    return kernels


@pytest.mark.slow
@pytest.mark.parametrize("backend_name", COMPILED)
def test_every_kernel_releases_the_gil(backend_name):
    import warnings
    failures = []
    for name, call in _kernels(backend_name).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()                                # warm (Numba compiles here, holding the GIL)
            t0 = time.perf_counter()
            call()
            duration = time.perf_counter() - t0
            # best of a few tries: on a busy machine the OS may also pause this thread
            pause = min(_longest_pause(call) for _ in range(4))
        print(f"{backend_name} {name}: call {duration * 1e3:.1f} ms, longest pause of the other thread "
              f"{pause * 1e3:.1f} ms")   # pytest -s shows the overlap
        if not pause < max(0.5 * duration, 0.004):
            failures.append(f"{name}: the Python thread stopped for {pause * 1e3:.1f} ms of a "
                            f"{duration * 1e3:.1f} ms call")
    assert not failures, "; ".join(failures)


def test_the_gil_check_detects_a_call_that_holds_it():
    # the measurement must be able to fail: a long C call that keeps the GIL (a big sort of
    # Python objects... here a plain numpy sort of an object array) stops the loop for its duration
    values = np.random.default_rng(0).random(400_000).astype(object)
    t0 = time.perf_counter()
    np.sort(values)
    duration = time.perf_counter() - t0
    assert _longest_pause(lambda: np.sort(values)) > 0.5 * duration


def test_exact_fits_run_blas_on_one_thread_and_restore_it():
    """Inside an exact fit every BLAS library (numpy's and scipy's own OpenBLAS alike) is limited to
    one thread, so scipy's small algebra between passes never wakes BLAS workers; afterwards the
    user's settings are back."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401  load scipy's own BLAS before taking the "before" picture
    import scipy.optimize  # noqa: F401
    import fastwlr.estimators as estimators

    def blas_threads():
        return sorted((p["filepath"], p["num_threads"]) for p in threadpoolctl.threadpool_info()
                      if p["user_api"] == "blas")

    before = blas_threads()
    seen = []
    original = estimators.fit_lbfgs

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return original(*args, **kwargs)

    X = np.random.default_rng(0).normal(size=(500, 5))
    y = (X[:, 0] > 0).astype(float)
    try:
        estimators.fit_lbfgs = spy
        estimators.WeightedLogisticRegression(alpha=1e-3).fit(X, y)
    finally:
        estimators.fit_lbfgs = original
    assert seen and seen[0] and all(n == 1 for _, n in seen[0])
    assert blas_threads() == before
