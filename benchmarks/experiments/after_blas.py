"""Scoring right after a numpy matmul: OpenBLAS's workers keep spinning for ~0.1 s after a BLAS
call and hold the cores that fastwlr's threads would use.

    python benchmarks/experiments/after_blas.py            # 1M x 64 float32, best of 7
    python benchmarks/experiments/after_blas.py --smoke    # seconds

For n_threads None (the default), 1 and 2, a Scorer scores X after a 0.3 s pause (every pool
asleep) and again right after ``A @ A`` (OpenBLAS's workers spinning), round-robin, best of
``--repeat``. What fastwlr mitigates: a big call whose own workers are asleep counts the other
running threads of its process (another library's spinning workers) and leaves their cores
(``fastwlr._config._foreign_spinners``). What it cannot: OpenBLAS's spin time itself
(``OPENBLAS_THREAD_TIMEOUT`` in its build, or ``threadpoolctl.threadpool_limits(1)`` around the
matmul are the user's levers); a warm fastwlr pool right after its own parallel call cannot tell
its own spinning workers from another library's, so it does not correct then.
"""
import argparse
import time

import numpy as np

import fastwlr


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = 50_000 if args.smoke else 1_000_000
    X = rng.standard_normal((n, 64), dtype=np.float32)
    A = rng.standard_normal((400, 400) if args.smoke else (2000, 2000))
    coef = rng.standard_normal(64) * 0.1
    scorers = {nt: fastwlr.Scorer(coef, 0.1, n_threads=nt) for nt in (None, 1, 2)}
    for scorer in scorers.values():
        scorer(X)
    best = {}
    for _ in range(1 if args.smoke else args.repeat):
        for nt, scorer in scorers.items():
            for after in (False, True):
                time.sleep(0.3)
                if after:
                    A @ A
                t0 = time.perf_counter()
                scorer(X)
                best[nt, after] = min(best.get((nt, after), np.inf), time.perf_counter() - t0)
    print(f"{n:,} x 64 float32, odds, best of {args.repeat}:")
    for nt in scorers:
        print(f"  n_threads={str(nt):>4}: idle {best[nt, False] * 1e3:7.2f} ms   right after A @ A "
              f"{best[nt, True] * 1e3:7.2f} ms")
    print(f"default / one thread right after a matmul: {best[None, True] / best[1, True]:.2f}")


if __name__ == "__main__":
    main()
