"""fastwlr's exact solvers (newton, lbfgs) against scikit-learn's LogisticRegression (newton-cholesky, lbfgs).

Same data, same weights, same objective: fastwlr's alpha and scikit-learn's C = 1 / (alpha * sum(w))
(the mapping of the objective docstring in fastwlr/estimators.py). Every contender runs with its
defaults (fastwlr: tol 1e-8 on the scaled gradient, max_iter auto; scikit-learn: tol 1e-4,
max_iter 100) and the wall time of the whole ``fit`` is taken, best of ``--repeat`` runs, the
contenders interleaved (run 1 of each, then run 2 of each, ...) in one process so that a change of
load on the shared machine hits them alike. One untimed fit of each first (imports, page faults).

Gap: (L - L*) / L*, L the weighted-mean objective (loss + penalty, evaluated by the numpy reference),
L* the smallest objective any fit reached, a tight newton fit (tol 1e-12) included. "coef diff":
max |coef - coef_newton| / max |coef_newton| over coefficients and intercept (newton's the reference).

Data: ``online_shoppers`` (12,330 sessions x 67, purchase = event, product-page dwell time = weight)
over alpha 1e-6 .. 1e-1; ``freMTPL2`` (677,991 policies x 43, claim amounts up to 4e6 as weights) at
alpha 1e-6 and 1e-4 (``$FASTWLR_DATA_DIR``, see ``fastwlr.datasets.load_claims``); ``generated``
(``make_watch_time``, 200,000 x 32 float64). Run:

    python benchmarks/experiments/newton_vs_sklearn.py [--data online_shoppers,freMTPL2,generated] [--repeat 3]
    python benchmarks/experiments/newton_vs_sklearn.py --smoke    # seconds: 2,000 generated rows, one alpha, one run

Prints one markdown table; times are from this one run on this machine.
"""
import argparse
import contextlib
import time
import warnings

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="online_shoppers,freMTPL2,generated")
    ap.add_argument("--alphas", default=None, help="comma-separated; default per data set (see the docstring)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many timings per contender")
    ap.add_argument("--threads", type=int, default=None,
                    help="fastwlr's n_threads and scikit-learn's BLAS/OpenMP threads (threadpoolctl); default: "
                         "fastwlr the idle cores, scikit-learn its own default")
    ap.add_argument("--smoke", action="store_true", help="seconds: 2,000 generated rows x 32, one alpha, one timing")
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression
    from fastwlr import WeightedLogisticRegression
    from fastwlr.backends import reference as ref
    from fastwlr.datasets import load_claims, make_watch_time

    default_alphas = {"online_shoppers": [1e-6, 1e-4, 1e-2, 1e-1], "freMTPL2": [1e-6, 1e-4], "generated": [1e-6, 1e-3]}
    names = args.data.split(",")
    if args.smoke:
        args.repeat = 1
        names, default_alphas["generated"] = ["generated"], [1e-3]

    def dataset(name):
        if name == "generated":
            n = 2_000 if args.smoke else 200_000
            d = make_watch_time(n, 32, dtype=np.float64, random_state=0)
            return d.X, d.clicked.astype(np.float64), np.where(d.clicked, d.watch_time, 1.0)
        d = load_claims(name)
        return d.X, d.y, d.sample_weight

    def limited():
        if args.threads is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits
        return threadpool_limits(args.threads)

    contenders = {
        "fastwlr newton": lambda a, W: WeightedLogisticRegression(alpha=a, solver="newton", n_threads=args.threads),
        "fastwlr lbfgs": lambda a, W: WeightedLogisticRegression(alpha=a, solver="lbfgs", n_threads=args.threads),
        "sklearn newton-cholesky": lambda a, W: LogisticRegression(C=1 / (a * W), solver="newton-cholesky"),
        "sklearn lbfgs": lambda a, W: LogisticRegression(C=1 / (a * W), solver="lbfgs"),
    }
    rows = []
    for name in names:
        X, y, w = dataset(name)
        W = float(w.sum())
        w_norm = w * (len(w) / W)
        alphas = [float(a) for a in args.alphas.split(",")] if args.alphas else default_alphas[name]
        print(f"{name}: {X.shape[0]:,} x {X.shape[1]} {X.dtype}, event rate {y.mean():.3f}, "
              f"weights max {w.max():.4g}, sum {W:.4g}", flush=True)

        def objective(est, alpha):
            coef, b = np.ravel(est.coef_), float(np.ravel(est.intercept_)[0])
            return ref.objective_grad_dense(X, y, w_norm, coef, b, alpha)[0]

        for alpha in alphas:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tight = WeightedLogisticRegression(alpha=alpha, solver="newton", tol=1e-12).fit(X, y, w)
                fits = {k: make(alpha, W).fit(X, y, sample_weight=w) for k, make in contenders.items()}  # warm-up
                times = {k: [] for k in contenders}
                for _ in range(args.repeat):
                    for k, make in contenders.items():
                        est = make(alpha, W)
                        with limited():
                            t0 = time.perf_counter()
                            est.fit(X, y, sample_weight=w)
                            times[k].append(time.perf_counter() - t0)
                        fits[k] = est
            L = {k: objective(est, alpha) for k, est in fits.items()}
            best = min([objective(tight, alpha), *L.values()])
            ref_theta = np.append(np.ravel(fits["fastwlr newton"].coef_), fits["fastwlr newton"].intercept_)
            for k, est in fits.items():
                theta = np.append(np.ravel(est.coef_), est.intercept_)
                rows.append((name, f"{X.shape[0]:,} x {X.shape[1]}", alpha, k, min(times[k]),
                             int(np.ravel(est.n_iter_)[0]), (L[k] - best) / best,
                             np.abs(theta - ref_theta).max() / np.abs(ref_theta).max()))
                print(f"  alpha {alpha:g} {k:24s} {min(times[k]) * 1e3:9.1f} ms  {rows[-1][5]:5d} it  "
                      f"gap {rows[-1][6]:.2e}  coef diff {rows[-1][7]:.1e}", flush=True)

    print("\n| data | n x d | alpha | solver | fit time (best of %d) | iterations | objective gap | coef diff vs newton |"
          % args.repeat)
    print("|---|---|---|---|---|---|---|---|")
    for name, shape, alpha, k, t, it, gap, diff in rows:
        print(f"| {name} | {shape} | {alpha:g} | {k} | {_ms(t)} | {it} | {gap:.1e} | {diff:.1e} |")


def _ms(t):
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


if __name__ == "__main__":
    main()
