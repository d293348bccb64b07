"""Time to reach a gap to the optimum: every fastwlr solver against scikit-learn's, as tolerances tighten.

    FASTWLR_DATA_DIR=../shared/data python benchmarks/experiments/time_to_gap.py --out docs/perf/time_to_gap
    python benchmarks/experiments/time_to_gap.py --data dense --repeat 1
    python benchmarks/experiments/time_to_gap.py --smoke          # seconds, prints only
    python benchmarks/experiments/time_to_gap.py --from-json docs/perf/time_to_gap.json --out docs/perf/time_to_gap

The data sets and objective of training_defaults.py (same rows, weights, alpha; scikit-learn at
``C = 1 / (alpha sum(w))``, ``SGDClassifier`` at ``alpha mean(w)``). Each exact solver is fitted at
a ladder of tolerances (its own ``tol``: fastwlr's max scaled gradient, scikit-learn's), SGD for a
ladder of epochs (fastwlr ``max_iter`` with ``tol=None``; ``SGDClassifier`` ``max_iter`` with
``tol=None``), and each fit gives one point: its wall time (best of ``--repeat``, contenders
interleaved, one untimed fit of each first) and its gap L / L* - 1, L the weighted-mean objective
evaluated by one kernel for every contender, L* the smallest any fit reached. A contender's time to
a gap is the fastest of its fits that reached it. Default threads for every library.

Prints a table of the time to 1e-3 (0.1 %) and 1e-4 (0.01 %) and the default fit's point; with
``--out`` also writes <out>.md, <out>.json and <out>.png (gap against time, log-log, one panel per
data set).
"""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_defaults import ALPHA, dataset  # noqa: E402  (same data and alpha)

TOLS_FASTWLR = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8)
TOLS_SKLEARN = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-8)
EPOCHS = (1, 2, 5, 10, 20)
GAPS = (1e-3, 1e-4)


def ladders(alpha, w, d, sparse, smoke):
    """{contender: [(setting label, maker, is_default)]}"""
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from fastwlr import WeightedLogisticRegression
    C = 1.0 / (alpha * float(w.sum()))
    tols_f = TOLS_FASTWLR[::2] if smoke else TOLS_FASTWLR
    tols_s = TOLS_SKLEARN[::3] if smoke else TOLS_SKLEARN
    epochs = EPOCHS[:2] if smoke else EPOCHS
    out = {"fastwlr default": [("defaults", lambda: WeightedLogisticRegression(alpha=alpha), True)]
           + [(f"tol={t:g}", lambda t=t: WeightedLogisticRegression(alpha=alpha, tol=t), False) for t in tols_f]}
    solvers = ["newton-cg", "lbfgs"] + (["newton"] if d + 1 <= 4096 else [])
    for solver in solvers:
        out[f"fastwlr {solver}"] = [(f"tol={t:g}", lambda t=t, s=solver: WeightedLogisticRegression(
            alpha=alpha, solver=s, tol=t, max_iter=10_000), False) for t in tols_f]
    out["fastwlr sgd"] = [(f"{e} epochs", lambda e=e: WeightedLogisticRegression(
        alpha=alpha, solver="sgd", max_iter=e, tol=None, random_state=0), False) for e in epochs]
    sk = ["lbfgs", "newton-cg"] + (["newton-cholesky"] if d <= 4096 else [])
    for solver in sk:
        out[f"sklearn {solver}"] = [("defaults", lambda s=solver: LogisticRegression(C=C, solver=s), True)] + [
            (f"tol={t:g}", lambda t=t, s=solver: LogisticRegression(C=C, solver=s, tol=t, max_iter=10_000), False)
            for t in tols_s]
    sgd_alpha = alpha * float(w.mean())
    out["sklearn SGDClassifier"] = [("defaults", lambda: SGDClassifier(loss="log_loss", alpha=sgd_alpha,
                                                                        random_state=0), True)] + [
        (f"{e} epochs", lambda e=e: SGDClassifier(loss="log_loss", alpha=sgd_alpha, max_iter=e, tol=None,
                                                  random_state=0), False) for e in epochs]
    return out


def measure(name, repeat, smoke):
    from fastwlr._kernels import Kernels
    from fastwlr._validation import check_features
    from fastwlr._weights import normalised_weights
    X, y, w = dataset(name)
    alpha = ALPHA[name]
    features, w_norm, kernels = check_features(X), normalised_weights(w), Kernels(None, None)

    def objective(est):
        coef = np.ascontiguousarray(np.ravel(est.coef_), dtype=np.float64)
        return kernels.objective_grad(features, y, w_norm, coef, float(np.ravel(est.intercept_)[0]), alpha)[0]

    print(f"{name}: {X.shape[0]:,} x {X.shape[1]:,} {'CSR' if features.is_sparse else 'dense'} {X.dtype}, "
          f"alpha {alpha:g}", flush=True)
    fits = [(c, label, make, default) for c, ladder in ladders(alpha, w, X.shape[1], features.is_sparse,
                                                                smoke).items() for label, make, default in ladder]
    times, L = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the loose ends of the ladders do not converge, by design
        from fastwlr import WeightedLogisticRegression
        tight = WeightedLogisticRegression(alpha=alpha, solver="newton-cg" if features.is_sparse else "newton",
                                           tol=1e-11, max_iter=10_000).fit(X, y, w)
        L_star = objective(tight)
        for c, label, make, _ in fits:  # untimed: imports, page faults, JIT
            make().fit(X, y, sample_weight=w)
        for _ in range(repeat):
            for c, label, make, _ in fits:
                est = make()
                t0 = time.perf_counter()
                est.fit(X, y, sample_weight=w)
                t = time.perf_counter() - t0
                times[c, label] = min(t, times.get((c, label), np.inf))
                L[c, label] = objective(est)
                time.sleep(0.2)  # let BLAS/OpenMP workers go idle between contenders
    L_star = min(L_star, *L.values())
    points = {}
    for c, label, _, default in fits:
        gap = max((L[c, label] - L_star) / L_star, 0.0)
        points.setdefault(c, []).append({"setting": label, "time": times[c, label], "gap": gap, "default": default})
        print(f"  {c:24s} {label:12s} {_fmt(times[c, label]):>9s}  gap {gap:.2e}", flush=True)
    return {"data": name, "shape": f"{X.shape[0]:,} x {X.shape[1]:,}", "points": points}


def time_to(points, gap):
    hits = [p["time"] for p in points if p["gap"] <= gap]
    return min(hits) if hits else None


def table(results):
    lines = ["| data | contender | " + " | ".join(f"time to gap {g:g}" for g in GAPS)
             + " | default fit: time, gap | fastest sklearn to 1e-4 / this |",
             "|---|---|" + "---:|" * (len(GAPS) + 2)]
    for r in results:
        sk = [time_to(pts, 1e-4) for c, pts in r["points"].items() if c.startswith("sklearn")]
        sk = min([t for t in sk if t is not None], default=None)
        for c, pts in r["points"].items():
            cells = [_fmt(t) if t is not None else "not reached" for t in (time_to(pts, g) for g in GAPS)]
            d = [p for p in pts if p["default"]]
            default = f"{_fmt(d[0]['time'])}, {d[0]['gap']:.1e}" if d else "-"
            mine = time_to(pts, 1e-4)
            ratio = f"{sk / mine:.2f}x" if sk is not None and mine is not None else "-"
            lines.append(f"| {r['data']} | {c} | " + " | ".join(cells) + f" | {default} | {ratio} |")
    return "\n".join(lines)


def chart(results, path):
    """Gap against time, log-log: per contender its fits as dots and their lower envelope (the best
    gap reached by that time) as a step line; one colour per contender in every panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(c for r in results for c in r["points"]))
    colour = {c: plt.cm.tab10(i % 10) for i, c in enumerate(names)}
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.8), squeeze=False)
    for ax, r in zip(axes[0], results):
        for c, pts in r["points"].items():
            pts = sorted(pts, key=lambda p: p["time"])
            t = [p["time"] for p in pts]
            g = [max(p["gap"], 1e-16) for p in pts]
            envelope = np.minimum.accumulate(g)
            style = "-" if c.startswith("fastwlr") else "--"
            ax.step(t, envelope, style, where="post", color=colour[c], label=c)
            ax.plot(t, g, ".", color=colour[c], ms=4, alpha=0.5)
            for p in pts:
                if p["default"]:
                    ax.plot(p["time"], max(p["gap"], 1e-16), "*", color=colour[c], mec="k", ms=11)
        for gap in GAPS:
            ax.axhline(gap, color="grey", lw=0.5)
        ax.set(xscale="log", yscale="log", xlabel="fit time (s)", ylabel="gap L / L* - 1",
               title=f"{r['data']} ({r['shape']})")
        ax.grid(True, which="major", lw=0.3)
    handles = [plt.Line2D([], [], color=colour[c], ls="-" if c.startswith("fastwlr") else "--", label=c)
               for c in names]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(names), 5), fontsize=8)
    fig.suptitle("Time to a gap to the optimum: best gap reached by each time (dots: single fits; stars: "
                 "each contender's defaults; gaps below 1e-16 at 1e-16)", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="fremtpl2,dense,csr18", help="comma-separated, as training_defaults.py")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", help="write <out>.md/.json/.png")
    ap.add_argument("--smoke", action="store_true", help="seconds: 3,000 generated rows x 8, short ladders")
    ap.add_argument("--from-json", help="redraw the table and chart of an earlier run's <out>.json")
    args = ap.parse_args()
    names = ["smoke"] if args.smoke else args.data.split(",")
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
    else:
        results = [measure(name, 1 if args.smoke else args.repeat, args.smoke) for name in names]
    text = table(results)
    print("\n" + text)
    if args.out and not args.smoke:
        out = Path(args.out)
        out.with_suffix(".json").write_text(json.dumps(results, indent=1))
        out.with_suffix(".md").write_text(text + "\n")
        chart(results, out.with_suffix(".png"))


def _fmt(t):
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


if __name__ == "__main__":
    main()
