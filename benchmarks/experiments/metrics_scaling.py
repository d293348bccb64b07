"""How the ranking metrics scale: wall time at 1M and 10M rows, one request and 20-row requests.

    python benchmarks/experiments/metrics_scaling.py            # 1M and 10M rows (~2 min, ~6 GB peak)
    python benchmarks/experiments/metrics_scaling.py --smoke    # 10k and 100k rows, seconds

Data: 10 % clicked impressions with exponential watch times (others 0), continuous scores (every
score distinct: the worst case for XAUC's inversion count, whose passes number log2 of the largest
request). Each case runs ``--repeat`` times (best kept, after one untimed warm-up at the smallest
size); the last column is t(large) / t(small) next to the O(n log n) expectation
(large log large) / (small log small). scikit-learn's ``roc_auc_score`` (pooled, one request) is
the yardstick.
"""
import argparse
import math
import time

import numpy as np

from fastwlr import metrics


def cases(T, s, w, offsets):
    y = T > 0
    out = {
        "xauc": lambda: metrics.xauc(T, s, offsets),
        "xauc (weighted)": lambda: metrics.xauc(T, s, offsets, sample_weight=w),
        "xauc per request": lambda: metrics.xauc(T, s, offsets, average="requests"),
        "grouped_auc": lambda: metrics.grouped_auc(y, s, offsets),
        "weighted_per_user_loss": lambda: metrics.weighted_per_user_loss(T, s, offsets),
    }
    if offsets is None:
        from sklearn.metrics import roc_auc_score
        out["sklearn roc_auc_score"] = lambda: roc_auc_score(y, s)
    return out


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    T = np.where(rng.random(n) < 0.1, rng.exponential(30.0, n), 0.0)
    s = np.log1p(T) + rng.normal(0.0, 1.0, n)
    w = rng.random(n)
    return T, s, w


def best_of(fn, repeat):
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="10k and 100k rows (seconds)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    sizes = (10_000, 100_000) if args.smoke else (1_000_000, 10_000_000)
    rows = {}
    for layout in ("one request", "requests of 20"):
        for n in sizes:
            T, s, w = data(n)
            offsets = None if layout == "one request" else np.arange(0, n + 1, 20)
            for name, fn in cases(T, s, w, offsets).items():
                if n == sizes[0]:
                    fn()   # warm-up: imports, first-touch of numpy's code paths
                rows.setdefault((layout, name), {})[n] = best_of(fn, args.repeat)
                print(f"{layout:15s} {name:24s} n={n:>10,}: {rows[(layout, name)][n]:.3f} s", flush=True)
    a, b = sizes
    expect = b * math.log(b) / (a * math.log(a))
    print(f"\n| layout | metric | {a:,} rows | {b:,} rows | ratio (n log n: {expect:.1f}) |")
    print("|---|---|---:|---:|---:|")
    for (layout, name), t in rows.items():
        print(f"| {layout} | {name} | {t[a]:.3f} s | {t[b]:.2f} s | {t[b] / t[a]:.1f} |")


if __name__ == "__main__":
    main()
