"""Quick SGD measurements: time per epoch and time to reach 1 % of the exact optimum, fastwlr vs
scikit-learn's SGDClassifier(loss="log_loss") with the same sample weights; gradient vs resample.

    python benchmarks/experiments/quick_sgd.py                 # everything (a few minutes on 2 cores)
    python benchmarks/experiments/quick_sgd.py --part dense    # 1M x 64 dense float32
    python benchmarks/experiments/quick_sgd.py --part csr      # 1M rows, 2^20 hashed columns, 40 nnz a row
    python benchmarks/experiments/quick_sgd.py --part variance # gradient vs resample with integer weights
    python benchmarks/experiments/quick_sgd.py --n 200000      # smaller
    python benchmarks/experiments/quick_sgd.py --smoke         # seconds: every part on tiny data

All objectives are the mean weighted log-loss (1/n) sum w_i l_i + (l2/2) ||coef||^2 on the raw
weights (docs/theory.md), evaluated by the backend's objective kernel. Epoch times exclude the objective evaluations. The optimum is
L-BFGS (fastwlr._lbfgs) to a gradient tolerance of 1e-9.
"""
import argparse
import math
import time
import warnings

import numpy as np

from fastwlr._kernels import Kernels
from fastwlr._lbfgs import fit_lbfgs
from fastwlr._sgd import SGDParams, fit_sgd, objective
from fastwlr._validation import check_features
from fastwlr.datasets import make_watch_time


def _epochs_fastwlr(features, y, w, l2, params, n_epochs, seed=0):
    rng = np.random.default_rng(seed)
    state, times, objs = None, [], []
    for _ in range(n_epochs):
        t0 = time.perf_counter()
        res = fit_sgd(features, y, w, params, max_iter=1, tol=None, random_state=rng, state=state, n_threads=1)
        times.append(time.perf_counter() - t0)
        state = res.state
        objs.append(objective(features, y, w, res.coef, res.intercept, l2, kernels=Kernels(None, 2)))
    return np.array(times), np.array(objs), res


def _epochs_sklearn(X, y, w, l2, n_epochs, alpha=None, seed=0):
    from sklearn.linear_model import SGDClassifier
    clf = SGDClassifier(loss="log_loss", random_state=seed, **({} if alpha is None else {"alpha": alpha}))
    features = check_features(X)
    times, objs = [], []
    for _ in range(n_epochs):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(X, y, classes=np.array([0.0, 1.0]), sample_weight=w)
        times.append(time.perf_counter() - t0)
        coef = np.ascontiguousarray(clf.coef_[0], dtype=np.float64)
        b = float(clf.intercept_[0])
        objs.append(objective(features, y, w, coef, b, l2, kernels=Kernels(None, 2))
                    if np.isfinite(coef).all() and math.isfinite(b) else math.inf)
    return np.array(times), np.array(objs)


def _time_to(times, objs, target):
    hit = np.nonzero(objs <= target)[0]
    return float(np.cumsum(times)[hit[0]]) if hit.size else math.inf


def _report(name, times, objs, opt):
    t1 = _time_to(times, objs, opt * 1.01)
    gaps = " ".join(f"{o / opt - 1:.1e}" for o in objs)
    print(f"  {name:42s} epoch {np.median(times):7.3f} s   to 1%: "
          f"{'not reached' if math.isinf(t1) else f'{t1:7.2f} s'}   gaps per epoch: {gaps}", flush=True)
    return float(np.median(times)), t1


def compare(X, y, w, alpha, label, n_epochs, data=None, lbfgs_tol=1e-9, lbfgs_max_iter=3000):
    features = check_features(X)
    l2 = alpha * w.mean()   # alpha on the weight-normalised objective, as the estimators define it
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lb = fit_lbfgs(features, y, w, alpha=alpha, tol=lbfgs_tol, max_iter=lbfgs_max_iter, n_threads=2,
                       backend=None)
    t_lbfgs = time.perf_counter() - t0
    opt = objective(features, y, w, lb.coef, lb.intercept, l2, kernels=Kernels(None, 2))
    print(f"\n{label}: n={features.n_rows} d={features.n_features} alpha={alpha:g} (l2={l2:.3g}); "
          f"optimum {opt:.6f} (L-BFGS {t_lbfgs:.1f} s, {lb.n_iter} iterations, 2 threads)", flush=True)
    rows = {}
    for weighting, optimizer, schedule in [("iwa", "adagrad", "auto"), ("iwa", "ftrl", "auto"), ("iwa", "sgd", "auto"),
                                           ("resample", "sgd", "auto"), ("gradient", "adagrad", "auto"),
                                           ("iwa", "sgd", "optimal"), ("resample", "sgd", "optimal")]:
        params = SGDParams(weighting=weighting, optimizer=optimizer, l2=l2, learning_rate=schedule)
        times, objs, res = _epochs_fastwlr(features, y, w, l2, params, n_epochs)
        name = f"fastwlr {weighting}+{optimizer}" + ("" if schedule == "auto" else f" ({schedule})")
        rows[(weighting, optimizer) if schedule == "auto" else (weighting, optimizer, schedule)] = \
            _report(name, times, objs, opt)
        if data is not None and (weighting, optimizer) == ("iwa", "adagrad"):
            print(f"      max |coef - true coef| after {n_epochs} epochs: {np.abs(res.coef - data.coef).max():.4f}"
                  f" (L-BFGS optimum: {np.abs(lb.coef - data.coef).max():.4f}); |b - true b|: "
                  f"{abs(res.intercept - data.intercept):.4f}")
    sk = {}
    for name, a in [("sklearn SGDClassifier (defaults)", None), ("sklearn SGDClassifier (alpha=l2)", l2)]:
        times, objs = _epochs_sklearn(X, y, w, l2, n_epochs, alpha=a)
        sk[name] = _report(name, times, objs, opt)
    fastest = min(rows, key=lambda k: rows[k][1])
    for label, key in [("fastwlr default (iwa+adagrad)", ("iwa", "adagrad")), (f"fastwlr {'+'.join(fastest)}", fastest)]:
        ep_ours, t1_ours = rows[key]
        for name, (ep, t1) in sk.items():
            if math.isinf(t1):
                to1 = "inf (sklearn never reached it)"
            elif math.isinf(t1_ours):
                to1 = "0 (fastwlr never reached it)"
            else:
                to1 = f"{t1 / t1_ours:.2f}x"
            print(f"  ratio {name} / {label}: epoch {ep / ep_ours:.2f}x, time to 1% {to1}")


def variance(n=100_000, seeds=5):
    """Integer weights: gradient and resample converge to the same optimum; speed and spread."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 16))
    coef = rng.standard_normal(16) * 0.3
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ coef - 2.5)))).astype(np.float64)
    w = np.where(y == 1, rng.integers(1, 100, size=n), 1).astype(np.float64)
    features = check_features(X)
    l2 = 1e-5 * w.mean()
    lb = fit_lbfgs(features, y, w, alpha=1e-5, tol=1e-10, max_iter=3000, n_threads=2, backend=None)
    opt = objective(features, y, w, lb.coef, lb.intercept, l2, kernels=Kernels(None, 2))
    print(f"\ngradient vs resample, integer weights 1..99 on positives, n={n} d=16, 10 epochs, {seeds} seeds:")
    for optimizer in ("sgd", "adagrad"):
        for weighting in ("gradient", "resample"):
            coefs, times, gaps = [], [], []
            for s in range(seeds):
                t0 = time.perf_counter()
                res = fit_sgd(features, y, w, SGDParams(weighting=weighting, optimizer=optimizer, l2=l2),
                              max_iter=10, tol=None, random_state=s)
                times.append(time.perf_counter() - t0)
                coefs.append(res.coef)
                gaps.append(objective(features, y, w, res.coef, res.intercept, l2) / opt - 1)
            coefs = np.array(coefs)
            print(f"  {weighting:9s}+{optimizer:8s} {np.median(times) / 10:.4f} s/epoch  gap mean {np.mean(gaps):.2e}"
                  f"  coef spread across seeds (mean std) {coefs.std(axis=0).mean():.2e}"
                  f"  max |coef - optimum| {np.abs(coefs - lb.coef).max():.2e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["all", "dense", "csr", "variance"])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lbfgs-max-iter", type=int, default=1000)
    ap.add_argument("--smoke", action="store_true", help="seconds: every part on tiny data, 2 epochs")
    args = ap.parse_args()
    columns = 2**20
    if args.smoke:
        args.n, args.epochs, args.lbfgs_max_iter, columns = 5_000, 2, 50, 2**14
    if args.part in ("all", "dense"):
        data = make_watch_time(args.n, 64, dtype=np.float32, random_state=0)
        compare(data.X, data.clicked.astype(np.float64), np.where(data.clicked, data.watch_time, 1.0),
                1e-6, "dense float32", args.epochs, data=data)
    if args.part in ("all", "csr"):
        data = make_watch_time(args.n, sparse=True, n_hashed_features=columns, nnz_per_row=40, random_state=0)
        # alpha 1e-3: ~38 rows per hashed column, a less regularised optimum is mostly overfit
        # (and takes L-BFGS many minutes). On a busy machine cap L-BFGS with --lbfgs-max-iter.
        compare(data.X, data.clicked.astype(np.float64), np.where(data.clicked, data.watch_time, 1.0),
                1e-3, f"CSR 2^{columns.bit_length() - 1} columns, 40 nnz/row", args.epochs, lbfgs_tol=1e-7,
                lbfgs_max_iter=args.lbfgs_max_iter)
    if args.part in ("all", "variance"):
        variance(*((5_000, 2) if args.smoke else ()))


if __name__ == "__main__":
    main()
