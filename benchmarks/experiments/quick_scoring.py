"""Quick measurement (not a test) of scoring speed against numpy/scipy and the memory-bandwidth floor.

    python benchmarks/experiments/quick_scoring.py [--n-samples 1000000] [--repeat 7] [--backend cython]
    python benchmarks/experiments/quick_scoring.py --smoke   # seconds: 20,000 rows, one round

Dense: 1,000,000 x 64 float32, ``fastwlr.score(X, w, b, output="odds")`` against
  * ``np.exp(X @ w + b)`` as a user writes it (w float64: numpy upcasts X to float64 first);
  * ``np.exp(X @ w32 + b)`` with a float32 w (BLAS sgemv, no upcast; float32 result);
  * ``X.sum()``: one streaming read of the same 256 MB, the memory-bandwidth floor of any scorer
    (for 2 threads: two halves summed concurrently, numpy releases the GIL);
  then the three outputs of a ``fastwlr.Scorer`` against numpy's bare ``X @ w32``, default threads.
CSR: 1,000,000 rows, 2^20 columns, 40 non-zeros a row (``make_watch_time(sparse=True)``, float32
values, or float64 with ``--csr-dtype float64``),
``fastwlr.score`` against scipy's ``np.exp(X @ w + b)``.

Each timing is the best of ``--repeat`` rounds, the contenders run round-robin; the output buffer is pre-allocated for fastwlr (as a
serving loop would) and allocated per call for numpy. BLAS threads are limited to the same count
with threadpoolctl when it is installed. Ratios > 1 mean fastwlr is faster.
"""
import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import fastwlr
from fastwlr.backends._contract import F32_SUM_ATOL, F32_SUM_RTOL
from fastwlr.datasets import make_watch_time


def best_of(fns, repeat, pause=0.0):
    """Best wall time of each function over ``repeat`` rounds, run round-robin so that all of them
    see the same machine load (the ratios are what this script is for); ``pause`` seconds before
    each call let the other library's worker threads go idle."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            time.sleep(pause)
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best


def blas_limit(n):
    if n is None:   # both libraries at their defaults
        import contextlib
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(limits=n, user_api="blas")
    except ImportError:  # numpy's BLAS then uses its own default thread count: say so
        print("  (threadpoolctl not installed: BLAS thread count not controlled)")
        import contextlib
        return contextlib.nullcontext()


def parallel_sum(X, n_threads):
    n_threads = n_threads or os.cpu_count() or 1
    if n_threads == 1:
        return X.sum()
    parts = np.array_split(np.arange(X.shape[0]), n_threads)
    with ThreadPoolExecutor(n_threads) as ex:
        return sum(ex.map(lambda r: X[r[0]:r[-1] + 1].sum(), parts))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-samples", type=int, default=1_000_000)
    ap.add_argument("--n-features", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--backend", default="auto", help="auto (the default), cython, numba or reference")
    ap.add_argument("--threads", default="1,2,default",
                    help="comma-separated thread counts; default: n_threads=None and BLAS's own default")
    ap.add_argument("--skip-sparse", action="store_true")
    ap.add_argument("--csr-dtype", default="float32", choices=["float32", "float64"],
                    help="the CSR rows' values (scipy multiplies float64 ones without converting them first)")
    ap.add_argument("--smoke", action="store_true", help="seconds: 20,000 rows, one round")
    args = ap.parse_args(argv)
    if args.smoke:
        args.n_samples, args.repeat = 20_000, 1
    threads = [None if t == "default" else int(t) for t in args.threads.split(",")]
    n, d, rep = args.n_samples, args.n_features, args.repeat

    dense = make_watch_time(n, d, dtype=np.float32, random_state=0)
    X, w, b = dense.X, dense.coef, dense.intercept
    w32 = w.astype(np.float32)
    out = np.empty(n)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"fastwlr {fastwlr.__version__}, backend {fastwlr.get_backend(args.backend).name}; "
          f"{os.cpu_count()} cores, load average "
          f"{load} (ratios are only meaningful on an idle machine); dense {n:,} x {d} float32 "
          f"({X.nbytes / 2**20:.0f} MiB), best of {rep}")
    # correctness first: the thing timed is the thing tested
    ref = np.exp(X.astype(np.float64) @ w + b)
    # float32 rows may be summed in float32: the contract's bound on z, so e^z within e^dz - 1
    dz = F32_SUM_RTOL * (np.abs(X.astype(np.float64)) @ np.abs(w) + abs(b)) + d * F32_SUM_ATOL
    got = fastwlr.score(X, w, b, out=out, backend=args.backend)
    assert np.all(np.abs(got - ref) <= (np.expm1(dz) + 1e-15) * ref), "dense scores off"
    for t in threads:
        with blas_limit(t):
            t_fw, t_np, t_np32, t_sum = best_of([
                lambda: fastwlr.score(X, w, b, output="odds", n_threads=t, out=out, backend=args.backend),
                lambda: np.exp(X @ w + b),
                lambda: np.exp(X @ w32 + np.float32(b)),
                lambda: parallel_sum(X, t)], rep)
        gbs = X.nbytes / t_fw / 1e9
        print(f"  {t or 'default'} thread(s): fastwlr {t_fw * 1e3:7.1f} ms ({gbs:5.1f} GB/s) | "
              f"np.exp(X @ w64 + b) {t_np * 1e3:7.1f} ms -> {t_np / t_fw:5.2f}x | "
              f"np.exp(X @ w32 + b) {t_np32 * 1e3:6.1f} ms -> {t_np32 / t_fw:5.2f}x | "
              f"X.sum() floor {t_sum * 1e3:6.1f} ms ({X.nbytes / t_sum / 1e9:5.1f} GB/s) -> "
              f"fastwlr takes {t_fw / t_sum:4.2f}x the floor")
    # the three outputs of a prepared Scorer against numpy's bare X @ w (its float32 GEMV), both at
    # their default threads, 0.15 s apart (longer than OpenBLAS's 0.1 s of spinning after a call)
    scorers = [fastwlr.Scorer(w, b, output=o, backend=args.backend) for o in ("odds", "log_odds", "proba")]
    *t_out, t_gemv = best_of([*[(lambda s=s: s(X)) for s in scorers], lambda: X @ w32], rep, pause=0.15)
    print("  default threads, a Scorer against numpy's bare X @ w32 " f"{t_gemv * 1e3:.2f} ms: " + ", ".join(
        f"{o} {t * 1e3:.2f} ms ({t / t_gemv:.2f}x)" for o, t in zip(("odds", "log-odds", "probability"), t_out)))
    del X, ref, dense

    if args.skip_sparse:
        return 0
    sparse = make_watch_time(n, sparse=True, n_hashed_features=2**20, nnz_per_row=40, random_state=0)
    Xs, w, b = sparse.X.astype(args.csr_dtype), sparse.coef, sparse.intercept
    nbytes = Xs.data.nbytes + Xs.indices.nbytes + Xs.indptr.nbytes
    print(f"CSR {n:,} x 2^20, 40 nnz/row, {Xs.dtype} data, {Xs.indices.dtype} indices "
          f"({nbytes / 2**20:.0f} MiB + 8 MiB coef)")
    ref = np.exp(Xs @ w + b)
    np.testing.assert_allclose(fastwlr.score(Xs, w, b, out=out, backend=args.backend), ref, rtol=1e-10)
    for t in threads:
        t_fw, t_sp, t_sum = best_of([
            lambda: fastwlr.score(Xs, w, b, output="odds", n_threads=t, out=out, backend=args.backend),
            lambda: np.exp(Xs @ w + b),
            lambda: (parallel_sum(Xs.data, t), parallel_sum(Xs.indices, t))], rep)
        print(f"  {t or 'default'} thread(s): fastwlr {t_fw * 1e3:7.1f} ms | scipy np.exp(X @ w + b) {t_sp * 1e3:7.1f} ms "
              f"-> {t_sp / t_fw:5.2f}x | data+indices sum floor {t_sum * 1e3:6.1f} ms -> "
              f"fastwlr takes {t_fw / t_sum:4.2f}x the floor")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
