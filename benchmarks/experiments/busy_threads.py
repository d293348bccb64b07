"""Default threads on a busy machine: n_threads=None against n_threads=1, with and without other
processes keeping cores busy (a shared server's other jobs, other Dask workers).

    python benchmarks/experiments/busy_threads.py             # 0 and 2 busy processes
    python benchmarks/experiments/busy_threads.py --busy 0 1 2 --repeat 7
    python benchmarks/experiments/busy_threads.py --smoke     # seconds, tiny sizes

Each busy process is a Python loop that never sleeps, started before the cases and stopped after.
For each case the two settings run round-robin (best of ``--repeat``, median also shown) with a
pause between calls, so that neither inherits the other's spinning threads. The ratio is
time(None) / time(1): above 1 the default is slower than one thread; -1 (every core, whatever
their load) shows what the default would cost if it did not count the idle cores.
"""
import argparse
import subprocess
import sys
import time
import warnings

import numpy as np

import fastwlr
from fastwlr.datasets import make_watch_time


def cases(smoke):
    scale = 20 if smoke else 1
    X64 = make_watch_time(1_000_000 // scale, 64, random_state=0).X
    csr = make_watch_time(200_000 // scale, sparse=True, n_hashed_features=2**20, nnz_per_row=40, random_state=1).X
    coef64, coef_csr = np.linspace(-1, 1, 64), np.linspace(-1, 1, 2**20)
    fit = make_watch_time(50_000 // scale, 20, random_state=2, dtype=np.float64)
    fit_csr = make_watch_time(50_000 // scale, sparse=True, n_hashed_features=2**16, nnz_per_row=20, random_state=4)
    offsets = np.arange(0, X64.shape[0] + 1, 500)
    out = {}
    for n in (1_000, 10_000, 100_000, 1_000_000):
        if n <= X64.shape[0]:
            Xn = X64[:n]
            out[f"score {n:,} x 64 float32"] = lambda nt, Xn=Xn: fastwlr.score(Xn, coef64, 0.1, n_threads=nt)
    out[f"score CSR {csr.shape[0]:,} x 2^20 x 40"] = lambda nt: fastwlr.score(csr, coef_csr, 0.1, n_threads=nt)
    out[f"score_topk {len(offsets) - 1:,} requests x 500 x 64, k=10"] = (
        lambda nt: fastwlr.score_topk(X64, coef64, 0.1, 10, offsets=offsets, n_threads=nt))
    out[f"fit lbfgs {fit.X.shape[0]:,} x 20"] = (
        lambda nt: fastwlr.WatchTimeRanker(solver="lbfgs", n_threads=nt).fit(fit.X, fit.watch_time))
    out[f"fit default (auto) {fit.X.shape[0]:,} x 20"] = (
        lambda nt: fastwlr.WatchTimeRanker(n_threads=nt).fit(fit.X, fit.watch_time))
    out[f"fit newton {fit.X.shape[0]:,} x 20"] = (
        lambda nt: fastwlr.WatchTimeRanker(solver="newton", n_threads=nt).fit(fit.X, fit.watch_time))
    out[f"fit default (auto: newton-cg) CSR {fit_csr.X.shape[0]:,} x 2^16"] = (
        lambda nt: fastwlr.WatchTimeRanker(alpha=1e-4, n_threads=nt).fit(fit_csr.X, fit_csr.watch_time))
    out[f"fit sgd {fit.X.shape[0]:,} x 20, 5 epochs"] = (
        lambda nt: fastwlr.WatchTimeRanker(max_iter=5, tol=None, random_state=0, n_threads=nt).fit(fit.X, fit.watch_time))
    return out


SETTINGS = (1, None, -1)  # -1: every core whatever the load (what None meant before it counted idle cores)


def measure(fn, repeat, pause):
    times = {nt: [] for nt in SETTINGS}
    for _ in range(repeat):
        for nt in SETTINGS:
            time.sleep(pause)
            t0 = time.perf_counter()
            fn(nt)
            times[nt].append(time.perf_counter() - t0)
    return {nt: (min(t), float(np.median(t))) for nt, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2], help="busy background processes")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    repeat, pause = (2, 0.0) if args.smoke else (args.repeat, 0.2)
    warnings.simplefilter("ignore")
    todo = cases(args.smoke)
    for fn in todo.values():  # warm: first calls compile / fault in pages
        fn(1)
    print(f"cores: {fastwlr._config._N_CPU}; ratio = default threads / one thread (best of {repeat}; median)\n")
    print("| busy processes | case | n_threads=1 | None (default) | -1 (all cores) | None / 1 (best) | None / 1 (median) "
          "| -1 / 1 (median) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    for busy in args.busy:
        procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(0.5 if busy else 0.0)
            for name, fn in todo.items():
                r = measure(fn, repeat, pause)
                ratio_best, ratio_med = r[None][0] / r[1][0], r[None][1] / r[1][1]
                worst = max(worst, ratio_med if busy else 0.0)
                print(f"| {busy} | {name} | {r[1][0] * 1e3:.2f} ms | {r[None][0] * 1e3:.2f} ms | {r[-1][0] * 1e3:.2f} ms "
                      f"| {ratio_best:.2f} | {ratio_med:.2f} | {r[-1][1] / r[1][1]:.2f} |", flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    print(f"\nworst median ratio with busy processes: {worst:.2f}")


if __name__ == "__main__":
    main()
