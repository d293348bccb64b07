"""fastwlr.dask on one machine: 1 vs 2 worker processes against the in-memory calls.

Measures, on dense float32 impressions (``make_watch_time(n, d)``) and on hashed CSR rows
(``make_watch_time(n, sparse=True)``):

* scoring throughput (rows/s): ``fastwlr.dask.score`` persisted on the workers, vs ``fastwlr.score``;
* one distributed objective + gradient pass (rows/s), vs the in-memory kernel;
* the fixed cost of a pass (scatter the coefficients, one task per partition, the tree of sums,
  the result back to the client): the same pass over partitions of 100 rows;
* a whole ``fastwlr.dask.WatchTimeRanker(alpha).fit`` (validation, persist, L-BFGS) vs the in-memory
  ``WatchTimeRanker(solver="lbfgs", alpha)``, and the gap between their objectives.

Each cluster is a ``LocalCluster(n_workers=k, threads_per_worker=1, processes=True)``; the rows are
generated on the client and scattered to the workers in ``--parts-per-worker`` chunks per worker
(4 by default: 8 partitions with 2 workers). The in-memory baselines use ``--threads`` (default 2,
the cores of this machine: the same compute as 2 workers). Best of ``--repeat`` timings.

    python benchmarks/experiments/dask_scaling.py            # 2M x 64 float32 and 2M hashed CSR rows (~10 min)
    python benchmarks/experiments/dask_scaling.py --smoke    # seconds
"""
import argparse
import gc
import time
import warnings

import numpy as np


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def scattered_array(client, X, n_parts):
    """X as a dask array whose row chunks were scattered to the workers (round robin)."""
    import dask
    import dask.array as da
    bounds = np.linspace(0, X.shape[0], n_parts + 1).astype(int)
    chunks = [X[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    futures = client.scatter(chunks)
    parts = [da.from_delayed(dask.delayed(f), shape=(c.shape[0],) + X.shape[1:], dtype=X.dtype,
                             meta=X[:0]) for f, c in zip(futures, chunks)]
    return da.concatenate(parts, axis=0), futures, tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))


def objective(X, y, w, coef, b, alpha):
    z = np.asarray(X @ coef, dtype=np.float64).ravel() + b
    return float(w @ (np.logaddexp(0.0, z) - y * z) / w.sum() + 0.5 * alpha * coef @ coef)


def run_case(name, X, T, alpha, workers, args, rows):
    import dask.array as da
    from distributed import Client, LocalCluster, wait
    import fastwlr
    import fastwlr.dask as fd
    from fastwlr._validation import check_features
    from fastwlr._kernels import Kernels
    from fastwlr._weights import recipe, normalised_weights

    n = X.shape[0]
    y, w = recipe(T)
    coef = np.random.default_rng(0).normal(0, 0.01, X.shape[1])
    # in memory
    t_score = best(lambda: fastwlr.score(X, coef, 0.1, n_threads=args.threads), args.repeat)
    feats, wn = check_features(X), normalised_weights(w)
    kern = Kernels(None, args.threads)
    t_pass = best(lambda: kern.objective_grad(feats, y, wn, coef, 0.1, alpha), args.repeat)
    t = time.perf_counter()
    mem = fastwlr.WatchTimeRanker(alpha=alpha, solver="lbfgs", n_threads=args.threads).fit(X, T)
    t_fit = time.perf_counter() - t
    l_mem = objective(X, y, w, mem.coef_[0], mem.intercept_[0], alpha)
    rows.append((name, "in memory", f"{args.threads} threads", n / t_score, n / t_pass, None, t_fit, mem.n_iter_,
                 None))
    for k in workers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cluster = LocalCluster(n_workers=k, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=40)
        client = Client(cluster)
        try:
            parts = args.parts_per_worker * k
            Xd, fx, chunks = scattered_array(client, X, parts)
            Td, ft, _ = scattered_array(client, T, parts)

            def score_once():
                s = fd.score(Xd, coef, 0.1).persist()
                wait(s)
                del s
            t_dscore = best(score_once, args.repeat)
            data = fd._Distributed(Xd, Td, None, ("watch_time", None, 1.0), 1, None)
            t_dpass = best(lambda: data.evaluate(coef, 0.1, True), args.repeat)
            del data
            tiny, ftx, _ = scattered_array(client, X[:100 * parts], parts)
            tinyT, ftt, _ = scattered_array(client, T[:100 * parts], parts)
            tdata = fd._Distributed(tiny, tinyT, None, ("watch_time", None, 1.0), 1, None)
            t_over = best(lambda: tdata.evaluate(coef, 0.1, True), max(args.repeat, 5))
            del tdata
            t = time.perf_counter()
            est = fd.WatchTimeRanker(alpha=alpha).fit(Xd, Td)
            t_dfit = time.perf_counter() - t
            gap = (objective(X, y, w, est.coef_[0], est.intercept_[0], alpha) - l_mem) / abs(l_mem)
            rows.append((name, f"{k} worker{'s' if k > 1 else ''}", f"{parts} partitions", n / t_dscore,
                         n / t_dpass, t_over, t_dfit, est.n_iter_, gap))
        finally:
            client.close()
            cluster.close()
        gc.collect()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--csr-n", type=int, default=2_000_000)
    ap.add_argument("--hashed", type=int, default=2 ** 20)
    ap.add_argument("--nnz", type=int, default=40)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--parts-per-worker", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=1e-6, help="L2 of the dense fits")
    ap.add_argument("--csr-alpha", type=float, default=1e-5, help="L2 of the CSR fits")
    ap.add_argument("--smoke", action="store_true", help="seconds: 20,000 x 8 dense, 20,000 CSR rows of 2^12")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.d, args.csr_n, args.hashed, args.nnz, args.repeat = 20_000, 8, 20_000, 2 ** 12, 10, 1
        args.csr_alpha = 1e-3
    workers = [int(k) for k in args.workers.split(",")]
    from fastwlr.datasets import make_watch_time

    rows = []
    dense = make_watch_time(args.n, args.d, dtype=np.float32, random_state=0)
    alpha = args.alpha
    print(f"dense: {dense.X.shape} float32, click rate {dense.clicked.mean():.3f}, alpha {alpha:g}", flush=True)
    run_case(f"dense {args.n:,} x {args.d}", dense.X, dense.watch_time, alpha, workers, args, rows)
    del dense
    gc.collect()
    csr = make_watch_time(args.csr_n, sparse=True, n_hashed_features=args.hashed, nnz_per_row=args.nnz,
                          random_state=1)
    print(f"csr: {csr.X.shape}, {args.nnz} nnz/row, alpha {args.csr_alpha:g}", flush=True)
    import scipy.sparse as sp
    run_case(f"CSR {args.csr_n:,} rows x 2^{int(np.log2(args.hashed))}", sp.csr_matrix(csr.X), csr.watch_time,
             args.csr_alpha, workers, args, rows)

    print()
    print("| data | where | partitions | scoring, rows/s | one objective+gradient pass, rows/s | "
          "fixed cost of a pass | fit | L-BFGS iterations | objective vs in memory |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name, where, parts, r_score, r_pass, over, fit, n_iter, gap in rows:
        print(f"| {name} | {where} | {parts} | {r_score / 1e6:.1f} M | {r_pass / 1e6:.1f} M | "
              f"{'' if over is None else f'{over * 1e3:.0f} ms'} | {fit:.2f} s | {n_iter} | "
              f"{'' if gap is None else f'{gap:+.1e}'} |")


if __name__ == "__main__":
    main()
