"""Where each exact solver wins: the measurements behind solver="auto" (fastwlr/estimators.py).

    python benchmarks/experiments/solver_crossover.py            # ~5 min on 2 cores
    python benchmarks/experiments/solver_crossover.py --smoke    # seconds

Every exact solver (newton, newton-cg, lbfgs) and the default ("auto") fits the same data at the
default tolerance, default threads; wall time of ``fit`` (one run each, so read the ratios, not the
last digit) and iterations. Data:

* ``dense d``: ``make_watch_time`` rows, standardised normal features (well conditioned), float32;
* ``one-hot d``: CSR, 10 levels a row drawn with Zipf frequencies (1/rank: a few levels seen in
  most rows, many in a handful), log-normal watch times as weights; ``dense one-hot d`` is the same
  matrix stored dense (ill-conditioned dense data);
* ``hashed``: ``make_watch_time(sparse=True)`` rows, 40 of 2^18 hashed columns, alpha 1e-5;
* the real data sets where found (``$FASTWLR_DATA_DIR`` or ../shared/data): freMTPL2 (678k x 43,
  claim amounts as weights) and online_shoppers (12k x 67, dwell time), dense and as CSR.
"""
import argparse
import time
import warnings

import numpy as np
import scipy.sparse as sp


def one_hot(n, d, seed=0, per_row=10):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, d + 1)
    cols = np.sort(rng.choice(d, size=(n, per_row), p=p / p.sum()), axis=1)
    X = sp.csr_array((np.ones(n * per_row), cols.ravel(), np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    X.sum_duplicates()
    z = X @ (rng.normal(size=d) * 0.3) - 3.0
    clicked = rng.random(n) < 1 / (1 + np.exp(-z))
    return X, clicked.astype(np.float64), np.where(clicked, rng.lognormal(3.0, 1.5, n), 1.0)


def cases(smoke):
    from fastwlr.datasets import load_claims, make_watch_time
    if smoke:
        g = make_watch_time(2000, 8, dtype=np.float32, random_state=0)
        yield "dense 8", g.X, g.y.astype(np.float64), g.sample_weight, 1e-6
        X, y, w = one_hot(2000, 30)
        yield "one-hot 30", X, y, w, 1e-6
        return
    for n, d in ((200_000, 32), (200_000, 64), (200_000, 128), (100_000, 256)):
        g = make_watch_time(n, d, dtype=np.float32, random_state=0)
        yield f"dense {d}", g.X, g.y.astype(np.float64), g.sample_weight, 1e-6
    for d in (64, 256, 1024):
        X, y, w = one_hot(200_000, d)
        yield f"one-hot {d}", X, y, w, 1e-6
        if d <= 256:
            yield f"dense one-hot {d}", X.toarray(), y, w, 1e-6
    g = make_watch_time(100_000, sparse=True, n_hashed_features=2**18, nnz_per_row=40, dtype=np.float32,
                        random_state=3)
    yield "hashed 2^18", g.X, g.y.astype(np.float64), g.sample_weight, 1e-5
    for name in ("freMTPL2", "online_shoppers"):
        try:
            c = load_claims(name)
        except FileNotFoundError:
            continue
        yield name, c.X, c.y, c.sample_weight, 1e-6
        yield f"{name} CSR", sp.csr_array(c.X), c.y, c.sample_weight, 1e-6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="seconds: two tiny cases")
    args = ap.parse_args()
    from fastwlr import WeightedLogisticRegression

    rows = []
    warm = np.random.default_rng(0).standard_normal((500, 4))
    for solver in ("auto", "newton", "newton-cg", "lbfgs"):  # untimed: imports, first calls
        WeightedLogisticRegression(solver=solver).fit(warm, warm[:, 0] > 0)
    for name, X, y, w, alpha in cases(args.smoke):
        res = {}
        for solver in ("auto", "newton", "newton-cg", "lbfgs"):
            if solver == "newton" and X.shape[1] > 1100:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                est = WeightedLogisticRegression(alpha=alpha, solver=solver).fit(X, y, w)
                res[solver] = (time.perf_counter() - t0, est.n_iter_, est.solver_)
            time.sleep(0.2)
        best = min(t for t, _, _ in res.values())
        cells = {k: f"{t:.2f} s ({it} it)" + (" **fastest**" if t == best else "") for k, (t, it, _) in res.items()}
        rows.append((name, f"{X.shape[0]:,} x {X.shape[1]:,}", cells, res["auto"][2], res["auto"][0] / best))
        print(name, {k: v for k, v in cells.items()}, "auto ran", res["auto"][2], flush=True)
    print("\n| data | n x d | auto (what it ran) | newton | newton-cg | lbfgs | auto / fastest |")
    print("|---|---|---|---|---|---|---:|")
    for name, shape, cells, ran, ratio in rows:
        print(f"| {name} | {shape} | {cells['auto']} ({ran}) | {cells.get('newton', '-')} | {cells['newton-cg']} | "
              f"{cells['lbfgs']} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
