"""Training at the defaults, as a user compares: fastwlr's ``fit`` against scikit-learn's solvers.

    python benchmarks/experiments/training_defaults.py                      # all data sets (~15 min, 2 cores)
    python benchmarks/experiments/training_defaults.py --data fremtpl2,dense --repeat 3
    python benchmarks/experiments/training_defaults.py --smoke              # seconds

Same rows, same weights, same objective, every contender at its defaults and default threads:
``WeightedLogisticRegression(alpha=a)`` (solver "auto") and, for reference, each fastwlr solver by
name; scikit-learn's ``LogisticRegression(C=1 / (a sum(w)))`` with ``lbfgs`` (its default),
``newton-cholesky`` and ``newton-cg``, and ``SGDClassifier(loss="log_loss", alpha=a mean(w))``
(the same objective: the mapping of fastwlr/estimators.py's docstring). Wall time of the whole
``fit``, best of ``--repeat`` rounds with the contenders interleaved, one untimed fit of each first.

Gap = L / L* - 1, L the weighted-mean objective (fastwlr's, evaluated by one kernel for all), L* the
smallest objective any fit reached, a tight newton (dense) or newton-cg (CSR) fit included. "vs fastest sklearn" =
(fastest scikit-learn solver's time at its defaults) / (this contender's time): > 1, this is faster.

Data (``$FASTWLR_DATA_DIR`` or ../shared/data for the real ones, see fastwlr.datasets.load_claims):
``fremtpl2`` (677,991 x 43 float64, claim amounts up to 4e6 as weights, alpha 1e-6); ``shoppers``
(online_shoppers, 12,330 x 67, dwell time as weight, alpha 1e-4); ``dense`` (make_watch_time 1M x 64
float32, watch time as weight, alpha 1e-6); ``csr18`` (hashed CSR 300k x 2^18 x 40 nnz float32, alpha
1e-5); ``csr20`` (1M x 2^20 x 40, alpha 1e-5).
"""
import argparse
import time
import warnings

import numpy as np

DATA = ("fremtpl2", "shoppers", "dense", "csr18", "csr20")
ALPHA = {"fremtpl2": 1e-6, "shoppers": 1e-4, "dense": 1e-6, "csr18": 1e-5, "csr20": 1e-5, "smoke": 1e-4}


def dataset(name):
    from fastwlr.datasets import load_claims, make_watch_time
    if name in ("fremtpl2", "shoppers"):
        d = load_claims("freMTPL2" if name == "fremtpl2" else "online_shoppers")
        return d.X, d.y, d.sample_weight
    if name == "dense":
        d = make_watch_time(1_000_000, 64, dtype=np.float32, random_state=3)
    elif name == "smoke":
        d = make_watch_time(3_000, 8, dtype=np.float32, random_state=3)
    else:
        n, cols = (300_000, 2**18) if name == "csr18" else (1_000_000, 2**20)
        d = make_watch_time(n, sparse=True, n_hashed_features=cols, nnz_per_row=40, dtype=np.float32,
                            random_state=3)
    return d.X, d.y.astype(np.float64), d.sample_weight


def contenders(alpha, w, d, sparse):
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from fastwlr import WeightedLogisticRegression
    C = 1.0 / (alpha * float(w.sum()))
    out = {"fastwlr default": lambda: WeightedLogisticRegression(alpha=alpha)}
    for solver in ("newton", "lbfgs", "sgd"):
        if solver == "newton" and d + 1 > 4096:
            continue
        out[f"fastwlr {solver}"] = lambda solver=solver: WeightedLogisticRegression(alpha=alpha, solver=solver,
                                                                                     random_state=0)
    out["sklearn lbfgs"] = lambda: LogisticRegression(C=C)
    if d <= 4096:  # newton-cholesky builds a dense d x d Hessian
        out["sklearn newton-cholesky"] = lambda: LogisticRegression(C=C, solver="newton-cholesky")
    out["sklearn newton-cg"] = lambda: LogisticRegression(C=C, solver="newton-cg")
    out["sklearn SGDClassifier"] = lambda: SGDClassifier(loss="log_loss", alpha=alpha * float(w.mean()),
                                                         random_state=0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=",".join(DATA), help=f"comma-separated of {', '.join(DATA)}")
    ap.add_argument("--repeat", type=int, default=2, help="best of this many timed fits per contender")
    ap.add_argument("--smoke", action="store_true", help="seconds: 3,000 generated rows x 8, one timed fit")
    args = ap.parse_args()
    from fastwlr import WeightedLogisticRegression
    from fastwlr._kernels import Kernels
    from fastwlr._validation import check_features
    from fastwlr._weights import normalised_weights

    names = ["smoke"] if args.smoke else args.data.split(",")
    repeat = 1 if args.smoke else args.repeat
    rows = []
    for name in names:
        X, y, w = dataset(name)
        alpha = ALPHA[name]
        features, w_norm = check_features(X), normalised_weights(w)
        kernels = Kernels(None, None)

        def objective(est):
            coef = np.ascontiguousarray(np.ravel(est.coef_), dtype=np.float64)
            return kernels.objective_grad(features, y, w_norm, coef, float(np.ravel(est.intercept_)[0]), alpha)[0]

        print(f"{name}: {X.shape[0]:,} x {X.shape[1]:,} {X.dtype} {'CSR' if features.is_sparse else 'dense'}, "
              f"alpha {alpha:g}, event rate {y.mean():.4f}, weights max {w.max():.4g}", flush=True)
        makers = contenders(alpha, w, X.shape[1], features.is_sparse)
        fits, times = {}, {k: [] for k in makers}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tight = WeightedLogisticRegression(alpha=alpha, solver="newton-cg" if features.is_sparse else "newton",
                                               tol=1e-10, max_iter=5000).fit(X, y, w)
            for k, make in makers.items():  # untimed: imports, page faults, JIT
                fits[k] = make().fit(X, y, sample_weight=w)
            for _ in range(repeat):
                for k, make in makers.items():
                    est = make()
                    t0 = time.perf_counter()
                    est.fit(X, y, sample_weight=w)
                    times[k].append(time.perf_counter() - t0)
                    fits[k] = est
                    time.sleep(0.2)  # let BLAS/OpenMP workers go idle between contenders
        L = {k: objective(est) for k, est in fits.items()}
        best = min([objective(tight), *L.values()])
        sk_fastest = min(min(t) for k, t in times.items() if k.startswith("sklearn") and "SGD" not in k)
        for k, est in fits.items():
            t = min(times[k])
            extra = f"solver_={est.solver_}" if k == "fastwlr default" else ""
            rows.append((name, f"{X.shape[0]:,} x {X.shape[1]:,}", k, t, (L[k] - best) / best, sk_fastest / t,
                         int(np.ravel(est.n_iter_)[0]), extra))
            print(f"  {k:26s} {_fmt(t):>9s}  gap {rows[-1][4]:.2e}  vs fastest sklearn {rows[-1][5]:5.2f}x  "
                  f"{rows[-1][6]} it {extra}", flush=True)

    print(f"\n| data | n x d | contender | fit time (best of {repeat}) | gap to optimum | "
          "fastest sklearn exact solver's time / this | iterations |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, shape, k, t, gap, ratio, it, extra in rows:
        label = f"{k} ({extra})" if extra else k
        print(f"| {name} | {shape} | {label} | {_fmt(t)} | {gap:.1e} | {ratio:.2f}x | {it} |")


def _fmt(t):
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


if __name__ == "__main__":
    main()
