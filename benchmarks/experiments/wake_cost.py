"""What waking fastwlr's worker threads costs, by the pause since the last call, and what the default
thread rule (``n_threads=None``) makes of it.

    python benchmarks/experiments/wake_cost.py              # ~1 min on 2 cores
    python benchmarks/experiments/wake_cost.py --smoke      # seconds

OpenMP workers spin for a while after each parallel region, then sleep. For each batch of float32
rows (d = 64) a prepared ``Scorer`` with ``n_threads`` 1, 2 and None (the default), and numpy's
``np.exp(X @ w + b)`` at its default threads, are called ``--reps`` times, each call after a pause
of 0, 1, 5 or 200 ms; the table gives the median time of a call. A pause of 0 is a loop of calls.
The contenders run one after another with a 0.3 s pause between them, so that each starts with the
other's threads asleep.

The last table is a loop of calls as a serving process makes them (back to back for ``--loop``
seconds): time per call of each contender, and the default's ratio to the faster of 1 and 2 threads;
also one request at a time of ``--requests`` candidates x 256 float32, top-10 by odds
(``fastwlr.score_topk``), against numpy's exp + argpartition + argsort.
"""
import argparse
import time

import numpy as np

import fastwlr


def median_call(fn, pause, reps):
    times = []
    for _ in range(reps):
        if pause:
            time.sleep(pause)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def loop_call(fn, seconds):
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - t0) / calls


def fmt(seconds):
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} us"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 300_000, 1_000_000])
    ap.add_argument("--pauses", type=float, nargs="+", default=[0.0, 0.001, 0.005, 0.2], help="seconds")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--loop", type=float, default=0.5, help="seconds of the loop table")
    ap.add_argument("--requests", type=int, nargs="+", default=[500, 2_000, 10_000], help="candidates a request")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.rows, args.pauses, args.reps, args.loop, args.requests = [2_000, 20_000], [0.0, 0.005], 2, 0.02, [500]
    rng = np.random.default_rng(0)
    w = rng.standard_normal(64) * 0.1
    w32 = w.astype(np.float32)
    contenders = {}
    for n in args.rows:
        X = rng.standard_normal((n, 64), dtype=np.float32)
        scorers = {nt: fastwlr.Scorer(w, 0.1, n_threads=nt) for nt in (1, 2, None)}
        contenders[n] = [(f"n_threads={nt}", (lambda s=s, X=X: s(X))) for nt, s in scorers.items()]
        contenders[n].append(("numpy", lambda X=X: np.exp(X @ w32 + np.float32(0.1))))
    requests = {}
    w256 = rng.standard_normal(256) / 16
    w256_32 = w256.astype(np.float32)
    for n in args.requests:
        X = rng.standard_normal((n, 256)).astype(np.float32)

        def numpy_topk(X=X):
            odds = np.exp(X @ w256_32 - 1.0)
            top = np.argpartition(-odds, 9)[:10]
            return top[np.argsort(-odds[top], kind="stable")]
        requests[n] = [(f"n_threads={nt}", (lambda X=X, nt=nt: fastwlr.score_topk(X, w256, -1.0, k=10, n_threads=nt)))
                       for nt in (1, 2, None)] + [("numpy", numpy_topk)]
        assert all(np.array_equal(fn()[0][0], numpy_topk()) for _, fn in requests[n][:3]), "top-10 disagree"

    print(f"median time of one call of {args.reps}, float32 rows x 64, odds, by the pause before each call")
    print("| rows | contender | " + " | ".join(f"pause {p * 1e3:g} ms" for p in args.pauses) + " |")
    print("|---|---|" + "---:|" * len(args.pauses))
    for n, fns in contenders.items():
        for name, fn in fns:
            fn()
            cells = []
            for pause in args.pauses:
                time.sleep(0.3)
                cells.append(fmt(median_call(fn, pause, args.reps)))
            print(f"| {n:,} | {name} | " + " | ".join(cells) + " |")

    print(f"\na loop of back-to-back calls for {args.loop:g} s: time per call")
    print("| case (float32) | n_threads=1 | n_threads=2 | default | numpy | default / best of 1 and 2 | numpy / default |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    cases = [(f"{n:,} x 64, odds", fns) for n, fns in contenders.items()]
    cases += [(f"one request {n:,} x 256, top-10", fns) for n, fns in requests.items()]
    for label, fns in cases:
        t = {}
        for name, fn in fns:
            time.sleep(0.3)
            t[name] = loop_call(fn, args.loop)
        best = min(t["n_threads=1"], t["n_threads=2"])
        print(f"| {label} | {fmt(t['n_threads=1'])} | {fmt(t['n_threads=2'])} | {fmt(t['n_threads=None'])} | "
              f"{fmt(t['numpy'])} | {t['n_threads=None'] / best:.2f} | {t['numpy'] / t['n_threads=None']:.2f} |")


if __name__ == "__main__":
    main()
