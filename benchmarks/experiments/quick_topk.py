"""Quick measurement of fused score+top-k: prints time ratios from one run.

    python benchmarks/experiments/quick_topk.py                 # the three comparisons below (~1-2 min, ~1.4 GB)
    python benchmarks/experiments/quick_topk.py --small         # 10x fewer requests
    python benchmarks/experiments/quick_topk.py --smoke         # seconds: 200 requests, one round
    python benchmarks/experiments/quick_topk.py --k 100         # another k (default 10)

Comparisons, each single-threaded and with all cores (numpy's BLAS limited by threadpoolctl):
 1. score_topk on 10,000 requests x 500 candidates x 64 dense float32 features, k = 10, against the
    best numpy: X @ coef (float32 BLAS) + 2-D argpartition + argsort of the k + exp of the winners;
 2. about as many rows in 5,000 ragged requests (1..2,000 candidates, mean ~1,000), against numpy's per-group loop
    (one BLAS matmul, then argpartition/argsort/exp per request) and the padded 2-D form;
 3. fused score_topk against fastwlr.score (all n odds) followed by fastwlr.topk;
 4. fused score_topk on the equal requests against fastwlr.score alone of the same rows (what
    selecting costs on top of scoring: "/ score", below 1 when the fused scan skips the exp);
 5. fastwlr.topk on those rows' float32 scores alone against numpy's 2-D argpartition + argsort.
Times are the best of ``--repeat`` runs after one warm-up run, the contenders run round-robin.
"""
import argparse
import os
import sys
import time

import numpy as np

import fastwlr

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - the bench extra installs it
    threadpool_limits = None


def interleaved(fns, repeat):
    """Best time of each function, run round-robin so that a change in machine load hits all alike."""
    for fn in fns.values():
        fn()  # warm-up
    best = {name: float("inf") for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def limit_blas(n_threads):
    if threadpool_limits is None:
        return _NullContext()
    return threadpool_limits(limits=n_threads, user_api="blas")


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def numpy_top_rows(mat, k):
    """Each row's k largest of a 2-D array, best first: 2-D argpartition, then argsort of the k.
    -> (column indices, values)."""
    part = np.argpartition(-mat, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(mat, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def numpy_equal_groups(X, coef32, b, G, C, k):
    """Best plain numpy for equal-size requests."""
    z = X @ coef32 + np.float32(b)
    cols, vals = numpy_top_rows(z.reshape(G, C), k)
    return cols + (np.arange(G) * C)[:, None], np.exp(vals.astype(np.float64))


def numpy_loop(X, coef32, b, offsets, k):
    """numpy per request: one matmul for all rows, then argpartition + argsort + exp per request."""
    z = X @ coef32 + np.float32(b)
    G = offsets.shape[0] - 1
    idx = np.full((G, k), -1, dtype=np.int64)
    val = np.full((G, k), -np.inf)
    for g in range(G):
        a, e = offsets[g], offsets[g + 1]
        zg = z[a:e]
        kk = min(k, e - a)
        part = np.argpartition(-zg, kk - 1)[:kk] if kk < e - a else np.arange(e - a)
        order = part[np.argsort(-zg[part], kind="stable")]
        idx[g, :kk] = order + a
        val[g, :kk] = np.exp(zg[order].astype(np.float64))
    return idx, val


def numpy_padded(X, coef32, b, offsets, k):
    """numpy with the ragged requests padded into a (G, max size) matrix of -inf."""
    z = X @ coef32 + np.float32(b)
    sizes = np.diff(offsets)
    G, m = sizes.shape[0], int(sizes.max())
    mat = np.full((G, m), -np.inf, dtype=np.float32)
    col = np.arange(z.shape[0]) - np.repeat(offsets[:-1], sizes)
    mat[np.repeat(np.arange(G), sizes), col] = z
    cols, vals = numpy_top_rows(mat, k)
    return cols + offsets[:-1, None], np.exp(vals.astype(np.float64))


def unfused(X, coef, b, offsets, k, n_threads):
    odds = fastwlr.score(X, coef, b, output="odds", n_threads=n_threads)
    return fastwlr.topk(odds, k, offsets=offsets, n_threads=n_threads)


def agreement(a, b):
    """Fraction of (request, rank) slots where two top-k index arrays agree."""
    return float(np.mean(a[0] == b[0]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="1,000 requests instead of 10,000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="seconds: 200 requests, one round")
    parser.add_argument("--k", type=int, default=10, help="candidates kept per request (default 10)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.repeat = 1

    G, C, d, k = (200 if args.smoke else 1_000 if args.small else 10_000), 500, 64, args.k
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 4 * C + 1, size=G // 2)  # ragged 1..2,000: about as many rows as equal
    ragged = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = max(G * C, int(ragged[-1]))
    X = rng.standard_normal((n, d), dtype=np.float32)
    coef = rng.standard_normal(d) / np.sqrt(d)
    coef32 = coef.astype(np.float32)
    b = -3.0
    equal = np.arange(G + 1, dtype=np.int64) * C
    Xe, Xr = X[:G * C], X[:ragged[-1]]
    all_cores = os.cpu_count() or 1
    print(f"fastwlr {fastwlr.__version__}, backend {fastwlr.get_backend().name}, {all_cores} cores; "
          f"best of {args.repeat} after a warm-up; numpy {np.__version__}", file=sys.stderr)

    rows = []
    for t in sorted({1, all_cores}):
        with limit_blas(t):
            times = interleaved({
                "ours_eq": lambda: fastwlr.score_topk(Xe, coef, b, k, offsets=equal, n_threads=t),
                "np_eq": lambda: numpy_equal_groups(Xe, coef32, b, G, C, k),
                "ours_rg": lambda: fastwlr.score_topk(Xr, coef, b, k, offsets=ragged, n_threads=t),
                "np_loop": lambda: numpy_loop(Xr, coef32, b, ragged, k),
                "np_pad": lambda: numpy_padded(Xr, coef32, b, ragged, k),
                "unf_eq": lambda: unfused(Xe, coef, b, equal, k, t),
                "unf_rg": lambda: unfused(Xr, coef, b, ragged, k, t),
                "score_eq": lambda: fastwlr.score(Xe, coef, b, output="odds", n_threads=t),
            }, args.repeat)
        rows.append((t, *times.values()))

    # the answers agree (numpy scores in float32, so a near-tie may swap: report the agreement)
    fused = fastwlr.score_topk(Xe, coef, b, k, offsets=equal)
    print(f"index agreement with numpy (float32 matmul): equal {agreement(fused, numpy_equal_groups(Xe, coef32, b, G, C, k)):.5f}, "
          f"ragged {agreement(fastwlr.score_topk(Xr, coef, b, k, offsets=ragged), numpy_loop(Xr, coef32, b, ragged, k)):.5f}; "
          f"with score+topk: {agreement(fused, unfused(Xe, coef, b, equal, k, None)):.5f}")

    # topk on given scores (the scores of the equal requests, float32), against numpy's 2-D
    # argpartition + argsort of the k on the same scores
    z = (Xe @ coef32 + np.float32(b)).astype(np.float32)
    zm = z.reshape(G, C)

    def numpy_select():
        return numpy_top_rows(zm, k)[0] + equal[:-1, None]

    assert agreement((numpy_select(),), fastwlr.topk(z, k, offsets=equal)) > 0.999
    select_rows = []
    for t in sorted({1, all_cores}):
        times = interleaved({"ours": lambda: fastwlr.topk(z, k, offsets=equal, n_threads=t),
                             "numpy": numpy_select}, args.repeat)
        select_rows.append((t, times["ours"], times["numpy"]))

    print(f"\nscore_topk, k={k}, {d} float32 features: time (s) and speed-up = other / score_topk")
    print(f"  equal  = {G:,} requests x {C} candidates ({G * C:,} rows)")
    print(f"  ragged = {G // 2:,} requests x 1..{4 * C} candidates ({int(ragged[-1]):,} rows)")
    header = (f"{'threads':>7} | {'equal: ours':>11} {'numpy 2-D':>10} {'ratio':>6} | {'ragged: ours':>12} "
              f"{'numpy loop':>10} {'ratio':>6} {'padded 2-D':>10} {'ratio':>6} | {'score+topk eq':>13} "
              f"{'ratio':>6} {'ragged':>7} {'ratio':>6} | {'score eq':>8} {'/ score':>7}")
    print(header)
    for t, oe, ne, orr, nl, npd, ue, ur, se in rows:
        print(f"{t:>7} | {oe:>11.4f} {ne:>10.4f} {ne / oe:>5.1f}x | {orr:>12.4f} {nl:>10.4f} {nl / orr:>5.1f}x "
              f"{npd:>10.4f} {npd / orr:>5.1f}x | {ue:>13.4f} {ue / oe:>5.2f}x {ur:>7.4f} {ur / orr:>5.2f}x "
              f"| {se:>8.4f} {oe / se:>6.2f}x")
    print(f"\ntopk on the equal requests' float32 scores alone, k={k}: fastwlr.topk against numpy's 2-D "
          f"argpartition + argsort of the k")
    for t, ours, ref in select_rows:
        print(f"{t:>7} | topk {ours:.4f} s  numpy {ref:.4f} s  {ref / ours:5.1f}x")


if __name__ == "__main__":
    main()
