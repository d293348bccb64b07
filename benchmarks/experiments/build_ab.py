"""Two builds of the dense scoring kernel in one process, timed in turns: an A/B of a change.

    git worktree add ../before HEAD~1 && (cd ../before && FASTWLR_BUILD_EXT=1 python setup.py build_ext --inplace)
    python benchmarks/experiments/build_ab.py ../before .                       # the default cases
    python benchmarks/experiments/build_ab.py ../before . --case 10000x64:odds:2 5000x64:log_odds:1
    python benchmarks/experiments/build_ab.py --smoke          # the installed build against itself, seconds

Each checkout's compiled ``_scoring`` module is loaded from its own file (both under the one
name the module was built for, as two module objects) and its ``score_dense(X, coef, b, output,
out, n_threads)`` called: the kernel, its parallel region and the output transform, without the
public API's checks, which both builds share. Two builds in two processes differed by 10-25 % on
code that did not change (the pages each process's X landed on, this VM's slow minutes); in one
process, on the same X, the same code measures within 1-3 %.

Rounds alternate which build goes first; each round is 30 warm-up calls then 10 ms of calls (the
threads are warm, as in a serving loop). Printed: best and median round, in microseconds, and B/A.
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

MODULE = "fastwlr.backends.cython_core._scoring"
OUTPUTS = {"log_odds": 0, "odds": 1, "proba": 2}
DEFAULT_CASES = ["10000x64:log_odds:2", "10000x64:odds:2", "10000x64:log_odds:1", "2000x256:log_odds:2",
                 "1000x64:odds:1"]


def load(root):
    """The compiled _scoring module of the checkout at ``root``, as a module object of its own."""
    path = next((Path(root) / "fastwlr" / "backends" / "cython_core").glob("_scoring.*.so"), None)
    if path is None:
        sys.exit(f"{root}: no compiled _scoring module (build it: FASTWLR_BUILD_EXT=1 python setup.py build_ext --inplace)")
    spec = importlib.util.spec_from_file_location(MODULE, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_round(f, args, seconds):
    for _ in range(30):
        f(*args)
    t0, calls = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        f(*args)
        calls += 1
    return (time.perf_counter() - t0) / calls * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", nargs="?", help="checkout A (built in place)")
    parser.add_argument("b", nargs="?", help="checkout B (built in place)")
    parser.add_argument("--case", nargs="+", default=DEFAULT_CASES, help="ROWSxD:OUTPUT:THREADS, float32 rows")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=0.01, help="of calls per round")
    parser.add_argument("--smoke", action="store_true", help="the installed build against itself, tiny")
    args = parser.parse_args()
    if args.smoke:
        import fastwlr
        args.a = args.b = str(Path(fastwlr.__file__).resolve().parent.parent)
        args.case, args.rounds, args.seconds = ["808x64:odds:1", "808x64:log_odds:2"], 2, 0.001
    elif args.b is None:
        parser.error("give two checkouts, A and B (or --smoke)")
    # the modules import the rest of fastwlr (its Python layer) as they load: the first checkout's
    sys.path.insert(0, str(Path(args.a).resolve()))
    builds = [load(args.a), load(args.b)]
    rng = np.random.default_rng(0)
    print(f"A = {args.a}, B = {args.b}; {args.dtype} rows; best (median) of {args.rounds} rounds, us")
    for case in args.case:
        shape, output, threads = case.split(":")
        n, d = (int(v) for v in shape.lower().split("x"))
        X = rng.standard_normal((n, d)).astype(args.dtype)
        w = rng.standard_normal(d) * 0.1
        out = np.empty(n, np.float64 if output == "odds" or args.dtype == "float64" else np.float32)
        call = (X, w, 0.1, OUTPUTS[output], out, int(threads))
        times = [[], []]
        for r in range(args.rounds):
            for j in (r % 2, 1 - r % 2):
                times[j].append(time_round(builds[j].score_dense, call, args.seconds))
        best = [min(t) for t in times]
        med = [sorted(t)[len(t) // 2] for t in times]
        print(f"{n:>9,} x {d:<4} {output:8s} {threads} thread(s): A {best[0]:9.2f} ({med[0]:9.2f})   "
              f"B {best[1]:9.2f} ({med[1]:9.2f})   B/A {best[1] / best[0]:.3f} ({med[1] / med[0]:.3f})", flush=True)


if __name__ == "__main__":
    main()
