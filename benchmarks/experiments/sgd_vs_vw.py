"""One online pass (and five) in the same row order: fastwlr's SGD vs Vowpal Wabbit's defaults,
as the distance to the exact optimum (gap = objective / optimum - 1 on the training rows).

    python benchmarks/experiments/sgd_vs_vw.py            # ~2-3 minutes on 2 cores
    python benchmarks/experiments/sgd_vs_vw.py --smoke    # seconds, tiny data

Data (generated, seeded):

* "sparse text": n rows over d columns, Zipf-distributed word counts (a document of ~60 words
  drawn from p_k ~ 1 / (k + 3)^1.1), values log1p(count) * idf, each row scaled to unit L2 norm;
  labels from a sparse ground-truth model (10 % of the columns, log-odds spread ~1.5).
* "dense std": n x 64 standard normal rows, labels from a dense model.

Each with unit weights and with "watch-time" weights: positives LogNormal(log 60 - 0.5, 1),
negatives 1 (the library's use case; heavy-tailed importance weights).

The optimum is fastwlr's exact solver (lbfgs for sparse, newton for dense) at alpha = 1e-6 (the
estimators' default; VW runs without --l2, the difference is far below the gaps reported). Every
model is scored by the same objective, fastwlr's (1/n) sum w_i l_i + (alpha mean(w) / 2)
||coef||^2 on the raw weights (the estimators' objective times mean(w), which leaves the gap
unchanged). VW: ``--loss_function logistic -b 24`` (its default update: adaptive, normalized,
invariant; no --l2), labels +-1, the weights as importance weights, explicit feature indices in
the default namespace (VW's index = the column: no collisions), its weights read back with
``get_weight``. Passes run in the given row order for everyone (fastwlr: ``shuffle=False``).
"""
import argparse
import math
import time
import warnings

import numpy as np
import scipy.sparse as sp

from fastwlr import WeightedLogisticRegression
from fastwlr._kernels import Kernels
from fastwlr._sgd import objective
from fastwlr._validation import check_features

ALPHA = 1e-6
VW_CONSTANT = 11650396   # VW's index of the constant feature (below 2^24)


def sparse_text(n, d, rng, words=60):
    """L2-normalised tf-idf rows with Zipf word counts; a sparse ground-truth model."""
    p = 1.0 / (np.arange(d) + 3.0) ** 1.1
    p /= p.sum()
    lengths = np.maximum(5, rng.poisson(words, n))
    cols = rng.choice(d, size=int(lengths.sum()), p=p)
    rows = np.repeat(np.arange(n), lengths)
    X = sp.csr_array((np.ones(cols.shape[0]), (rows, cols)), shape=(n, d))
    X.sum_duplicates()
    df = np.bincount(X.indices, minlength=d)
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    X.data = np.log1p(X.data) * idf[X.indices]
    norms = np.sqrt(np.add.reduceat(X.data ** 2, X.indptr[:-1]))
    X.data /= np.repeat(norms, np.diff(X.indptr))
    true = np.where(rng.random(d) < 0.1, rng.standard_normal(d), 0.0)
    z = X @ true
    z = 1.5 * (z - z.mean()) / z.std() - 1.0
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
    return X, y


def dense_std(n, d, rng):
    X = rng.standard_normal((n, d))
    z = X @ (rng.standard_normal(d) / math.sqrt(d)) * 1.5 - 1.0
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-z))).astype(np.float64)
    return X, y


def watch_time_weights(y, rng):
    return np.where(y == 1, rng.lognormal(math.log(60.0) - 0.5, 1.0, y.shape[0]), 1.0)


def vw_lines(X):
    """The feature part of each row, '| j:x ...' with explicit indices (default namespace)."""
    if sp.issparse(X):
        X = sp.csr_array(X)
        out = []
        for i in range(X.shape[0]):
            a, b = X.indptr[i], X.indptr[i + 1]
            out.append("| " + " ".join(f"{j}:{v:.9g}" for j, v in zip(X.indices[a:b], X.data[a:b])))
        return out
    idx = [str(j) for j in range(X.shape[1])]
    return ["| " + " ".join(f"{j}:{v:.9g}" for j, v in zip(idx, row)) for row in X]


def run_vw(lines, y, w, d, passes):
    """Coefficient snapshots after each requested pass count: {passes: (coef, intercept)}."""
    from vowpalwabbit import pyvw
    vw = pyvw.Workspace("--loss_function logistic -b 24 --quiet")
    heads = [f"{1 if yi == 1 else -1} {wi:.9g} " for yi, wi in zip(y, w)]
    out = {}
    for p in range(1, max(passes) + 1):
        for head, line in zip(heads, lines):
            vw.learn(head + line)
        if p in passes:
            coef = np.array([vw.get_weight(j) for j in range(d)])
            out[p] = (coef, vw.get_weight(VW_CONSTANT))
    vw.finish()
    return out


def run_fastwlr(X, y, w, passes, **params):
    out = {}
    est = WeightedLogisticRegression(alpha=ALPHA, solver="sgd", shuffle=False, max_iter=1, tol=None,
                                     warm_start=True, n_threads=1, random_state=0, **params)
    for p in range(1, max(passes) + 1):
        est.fit(X, y, sample_weight=w)   # warm_start: one more pass, the state kept
        if p in passes:
            out[p] = (est.coef_[0].copy(), float(est.intercept_[0]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny data, seconds")
    ap.add_argument("--n-sparse", type=int, default=100_000)
    ap.add_argument("--d-sparse", type=int, default=30_000)
    ap.add_argument("--n-dense", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.smoke:
        args.n_sparse, args.d_sparse, args.n_dense = 3000, 2000, 3000
    try:
        import vowpalwabbit  # noqa: F401
        have_vw = True
    except ImportError:
        have_vw = False
        print("vowpalwabbit is not installed: its column is left empty (pip install vowpalwabbit)")
    passes = (1, 5)
    rng = np.random.default_rng(args.seed)
    cases = []
    Xs, ys = sparse_text(args.n_sparse, args.d_sparse, rng)
    cases.append(("sparse text", Xs, ys, "lbfgs"))
    Xd, yd = dense_std(args.n_dense, 64, rng)
    cases.append(("dense std", Xd, yd, "newton"))
    kernels = Kernels(None, 2)
    rows = []
    for name, X, y, exact in cases:
        features = check_features(X)
        lines = vw_lines(X) if have_vw else None
        for wname, w in (("unit", np.ones_like(y)), ("watch time", watch_time_weights(y, rng))):
            l2 = ALPHA * float(w.mean())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt_est = WeightedLogisticRegression(alpha=ALPHA, solver=exact, tol=1e-10, max_iter=5000,
                                                     n_threads=2).fit(X, y, sample_weight=w)
            opt = objective(features, y, w, opt_est.coef_[0], float(opt_est.intercept_[0]), l2, kernels=kernels)

            def gap(cb):
                return objective(features, y, w, cb[0], cb[1], l2, kernels=kernels) / opt - 1.0
            t0 = time.perf_counter()
            res = {"fastwlr default (optimizer auto)": run_fastwlr(X, y, w, passes),
                   "fastwlr adagrad": run_fastwlr(X, y, w, passes, optimizer="adagrad"),
                   "fastwlr normalized": run_fastwlr(X, y, w, passes, optimizer="normalized")}
            if have_vw:
                res["VW defaults"] = run_vw(lines, y, w, X.shape[1], passes)
            for method, snaps in res.items():
                rows.append((name, wname, method, *[gap(snaps[p]) for p in passes]))
            print(f"  {name}, {wname}: {time.perf_counter() - t0:.1f} s", flush=True)
    print()
    print(f"gap = objective / optimum - 1 on the training rows (alpha = {ALPHA:g}), "
          f"one pass and five passes in the same row order")
    print()
    print("| data | weights | method | gap, 1 pass | gap, 5 passes |")
    print("|---|---|---|---|---|")
    for name, wname, method, g1, g5 in rows:
        print(f"| {name} | {wname} | {method} | {g1:.4g} | {g5:.4g} |")


if __name__ == "__main__":
    main()
