"""Resample or weight the gradient? "gradient" vs "resample" vs "iwa" (and the exact L-BFGS fit).

    python benchmarks/experiments/weighting_experiment.py            # full run (~5 min on 2 cores), writes docs/
    python benchmarks/experiments/weighting_experiment.py --smoke    # seconds: small data, prints only
    python benchmarks/experiments/weighting_experiment.py --no-write # full run, print only

Two data sets:

* generated (``fastwlr.datasets.make_watch_time``): dense, 5 % clicks, log-normal watch time with
  sigma = 1.5 (the longest watch ~ 75x the mean), true coefficients known; train and held-out test
  rows come from one draw, split at a request boundary.
* freMTPL2 (``fastwlr.datasets.load_claims``, real): claim amount as the watch time, weights up to
  4.1e6 (mean weight 89); random 80/20 split. Skipped when the file is absent.

Every stochastic fit is ``WatchTimeRanker(solver="sgd", weighting=..., optimizer=..., tol=None,
max_iter=EPOCHS)`` (suffix-averaged iterates, the default) with the same number of epochs; an
epoch of "resample" draws about n rows (row i ``floor(c w_i) + Bernoulli`` times, c = 1 / mean
weight). Reported per (weighting, optimizer), over seeds: the final training objective's relative
gap to the exact optimum (L-BFGS, tol 1e-8), the distance of the coefficients to the truth
(generated) and to the exact optimum, the held-out weighted per-user loss (requests given by
offsets; freMTPL2 has no requests, so pairs are taken over the whole test set), the spread of the
coefficients across seeds and the wall time of a fit. Then the learning rate is multiplied by 1,
4, 16, 64 and 256 to see which methods stay stable.

The markdown tables are written between the ``<!-- BEGIN weighting_experiment -->`` markers of
``docs/weighting.md`` (and to ``docs/weighting_results.md``), the chart to ``docs/weighting_lr.png``.
"""
import argparse
import math
import re
import time
import warnings
from pathlib import Path

import numpy as np

from fastwlr import WatchTimeRanker
from fastwlr import metrics
from fastwlr._sgd import SGDParams, _resolve, objective
from fastwlr._validation import check_features
from fastwlr.datasets import load_claims, make_watch_time
from fastwlr.exceptions import DivergenceError

DOCS = Path(__file__).resolve().parents[2] / "docs"
METHODS = ("gradient", "resample", "iwa")
OPTIMIZERS = ("sgd", "adagrad")
LR_MULTIPLIERS = (1, 4, 16, 64, 256)


# ----------------------------------------------------------------------------- data
def generated(n_train, n_test, d, seed=0):
    data = make_watch_time(n_train + n_test, d, click_rate=0.05, watch_time_shape=1.5,
                           dtype=np.float64, random_state=seed)
    off = data.offsets
    cut = int(off[np.searchsorted(off, n_train)])          # split at a request boundary
    test_off = off[off >= cut] - cut
    return dict(name="generated", X=data.X[:cut], T=data.watch_time[:cut], X_test=data.X[cut:],
                T_test=data.watch_time[cut:], offsets_test=test_off, true_coef=data.coef,
                true_intercept=data.intercept)


def claims(max_rows=None, seed=0):
    c = load_claims("freMTPL2")
    n = c.X.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    if max_rows:
        perm = perm[:max_rows]
    cut = int(0.8 * perm.shape[0])
    tr, te = np.sort(perm[:cut]), np.sort(perm[cut:])
    return dict(name="freMTPL2", X=c.X[tr], T=c.amount[tr], X_test=c.X[te], T_test=c.amount[te],
                offsets_test=None, true_coef=None, true_intercept=None)


# ----------------------------------------------------------------------------- fitting
def _objective(features, y, w_norm, coef, b, alpha):
    # the estimators' objective: sum w l / sum w + alpha/2 ||coef||^2 (weights normalised by their mean)
    return objective(features, y, w_norm, np.ascontiguousarray(coef, dtype=np.float64), float(b), alpha)


def fit(ds, alpha, epochs, seed, **kw):
    est = WatchTimeRanker(alpha=alpha, random_state=seed, n_threads=1, **kw)
    if kw.get("solver") == "sgd":
        est.set_params(max_iter=epochs, tol=None)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            est.fit(ds["X"], ds["T"])
        except DivergenceError:
            return None, time.perf_counter() - t0
    return est, time.perf_counter() - t0


def evaluate(ds, est, ctx):
    coef, b = est.coef_[0], float(est.intercept_[0])
    obj = _objective(ctx["features"], ctx["y"], ctx["w_norm"], coef, b, ctx["alpha"])
    z_test = est.decision_function(ds["X_test"])
    out = dict(gap=obj / ctx["opt"] - 1.0, coef=np.append(coef, b),
               dist_opt=float(np.linalg.norm(np.append(coef, b) - ctx["opt_theta"]) / np.linalg.norm(ctx["opt_theta"])),
               pul=metrics.weighted_per_user_loss(ds["T_test"], z_test, ds["offsets_test"]),
               wll=metrics.weighted_log_loss(ds["T_test"], z_test))
    if ds["true_coef"] is not None:
        truth = np.append(ds["true_coef"], ds["true_intercept"])
        out["dist_true"] = float(np.linalg.norm(out["coef"] - truth) / np.linalg.norm(truth))
    return out


def run_dataset(ds, alpha, epochs, seeds, lr_seeds):
    features = check_features(ds["X"])
    y = (ds["T"] > 0).astype(np.float64)
    w = np.where(ds["T"] > 0, ds["T"], 1.0)
    ctx = dict(features=features, y=y, w_norm=w / w.mean(), alpha=alpha)
    lb, t_lb = fit(ds, alpha, epochs, 0, solver="lbfgs")
    ctx["opt"] = _objective(features, y, ctx["w_norm"], lb.coef_[0], lb.intercept_[0], alpha)
    ctx["opt_theta"] = np.append(lb.coef_[0], lb.intercept_[0])
    info = dict(name=ds["name"], n=features.n_rows, d=features.n_features, n_test=ds["X_test"].shape[0],
                clicks=float(y.mean()), w_max=float(w.max()), w_mean=float(w.mean()), epochs=epochs,
                seeds=len(seeds), alpha=alpha, lbfgs_iter=lb.n_iter_,
                # E[w^2] / E[w]^2: how much uniform sampling with weighted gradients inflates the step
                # variance over sampling rows in proportion to their weight (resample)
                w_moment=float(np.mean(w * w) / w.mean() ** 2),
                # expected share of distinct rows a resample epoch visits: P(count >= 1) = min(w / mean w, 1)
                seen=float(np.mean(np.minimum(w / w.mean(), 1.0))))
    print(f"\n== {ds['name']}: n={info['n']} d={info['d']} clicks {info['clicks']:.2%} max weight "
          f"{info['w_max']:.4g} (mean {info['w_mean']:.3g}, E[w^2]/E[w]^2 {info['w_moment']:.3g}, resample visits "
          f"{info['seen']:.1%} of rows per epoch); L-BFGS {t_lb:.2f} s, {lb.n_iter_} iterations, "
          f"objective {ctx['opt']:.6g}")
    rows = [dict(method="exact (L-BFGS)", optimizer="-", time=t_lb, n_ok=1, **_summ([evaluate(ds, lb, ctx)]))]
    _print_row(rows[-1])
    for optimizer in OPTIMIZERS:
        for method in METHODS:
            results, times = [], []
            for s in seeds:
                est, t = fit(ds, alpha, epochs, s, solver="sgd", weighting=method, optimizer=optimizer)
                times.append(t)
                if est is not None:
                    results.append(evaluate(ds, est, ctx))
            rows.append(dict(method=method, optimizer=optimizer, time=float(np.median(times)),
                             n_ok=len(results), **_summ(results)))
            _print_row(rows[-1])
    # stability as the learning rate grows
    lr = {}
    for optimizer in OPTIMIZERS:
        base = _resolve(SGDParams(optimizer=optimizer), features, 1.0, features.n_rows).eta0
        for method in METHODS:
            for mult in LR_MULTIPLIERS:
                gaps = []
                for s in lr_seeds:
                    est, _ = fit(ds, alpha, epochs, s, solver="sgd", weighting=method, optimizer=optimizer,
                                 eta0=base * mult)
                    gaps.append(math.inf if est is None else evaluate(ds, est, ctx)["gap"])
                lr[(optimizer, method, mult)] = gaps
            print(f"  lr sweep {method:9s}+{optimizer:8s} base eta0 {base:.3g}: " + "  ".join(
                f"x{m}: {_fmt_gap(np.median(lr[(optimizer, method, m)]))}" for m in LR_MULTIPLIERS))
    return info, rows, lr


def _summ(results):
    if not results:
        return dict(gap=math.inf, gap_sd=math.nan, dist_opt=math.nan, dist_true=math.nan, pul=math.nan,
                    pul_sd=math.nan, wll=math.nan, spread=math.nan)
    coefs = np.array([r["coef"] for r in results])
    return dict(gap=float(np.mean([r["gap"] for r in results])),
                gap_sd=float(np.std([r["gap"] for r in results])),
                dist_opt=float(np.mean([r["dist_opt"] for r in results])),
                dist_true=float(np.mean([r.get("dist_true", math.nan) for r in results])),
                pul=float(np.mean([r["pul"] for r in results])),
                pul_sd=float(np.std([r["pul"] for r in results])),
                wll=float(np.mean([r["wll"] for r in results])),
                # spread across seeds relative to the size of the coefficients
                spread=float(np.sqrt(coefs.var(axis=0).sum()) / max(np.linalg.norm(coefs.mean(axis=0)), 1e-300))
                if len(results) > 1 else math.nan)


def _fmt_gap(g):
    if not math.isfinite(g):
        return "diverged"
    return f"{g:.1e}" if abs(g) < 100 else f"{g:.0f}"


def _fmt(x, spec):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _print_row(r):
    print(f"  {r['method']:15s} {r['optimizer']:8s} gap {_fmt_gap(r['gap']):>9s} (sd {_fmt(r['gap_sd'], '.1e')})"
          f"  |d-opt| {_fmt(r['dist_opt'], '.3f')}  |d-true| {_fmt(r['dist_true'], '.3f')}"
          f"  per-user loss {_fmt(r['pul'], '.4f')} (sd {_fmt(r['pul_sd'], '.1e')})"
          f"  spread {_fmt(r['spread'], '.3f')}  {r['time']:.2f} s  ok {r['n_ok']}")


# ----------------------------------------------------------------------------- output
def markdown(results, command):
    out = [f"Produced by `{command}`.", ""]
    for info, rows, lr in results:
        pairs = "request" if info["name"] == "generated" else "whole test set (no requests)"
        out += [f"**{info['name']}**: {info['n']:,} training rows x {info['d']} features, {info['n_test']:,} "
                f"held-out rows; {info['clicks']:.1%} positives; weights up to {info['w_max']:.3g} "
                f"(mean {info['w_mean']:.3g}), E[w^2]/E[w]^2 = {info['w_moment']:.3g}; a resample epoch visits "
                f"{info['seen']:.1%} of the distinct rows; alpha = {info['alpha']:g}; "
                f"{info['epochs']} epochs per SGD fit, "
                f"{info['seeds']} seeds; per-user loss pairs within each {pairs}; L-BFGS: "
                f"{info['lbfgs_iter']} iterations.", "",
                "| weighting | optimiser | objective gap (mean ± sd over seeds) | distance to exact optimum | "
                "distance to truth | held-out weighted per-user loss (± sd) | held-out weighted log-loss | "
                "spread across seeds | wall time per fit |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            gap = "0 (optimum)" if r["optimizer"] == "-" else (
                f"{_fmt_gap(r['gap'])} ± {_fmt(r['gap_sd'], '.1e')}" if math.isfinite(r["gap"]) else "diverged")
            out.append(f"| {r['method']} | {r['optimizer']} | {gap} | {_fmt(r['dist_opt'], '.3f')} | "
                       f"{_fmt(r['dist_true'], '.3f')} | {_fmt(r['pul'], '.4f')} ± {_fmt(r['pul_sd'], '.4f')} | "
                       f"{_fmt(r['wll'], '.5g')} | {_fmt(r['spread'], '.3f')} | {r['time']:.2f} s |")
        out += ["", f"Learning-rate sweep on **{info['name']}** (objective gap after {info['epochs']} epochs, "
                "median over seeds; eta0 = multiplier x the iwa and resample default, the same for all three (gradient's own default is 2x it)):", "",
                "| weighting | optimiser | " + " | ".join(f"x{m}" for m in LR_MULTIPLIERS) + " |",
                "|---|---|" + "---:|" * len(LR_MULTIPLIERS)]
        for optimizer in OPTIMIZERS:
            for method in METHODS:
                out.append(f"| {method} | {optimizer} | " + " | ".join(
                    _fmt_gap(float(np.median(lr[(optimizer, method, m)]))) for m in LR_MULTIPLIERS) + " |")
        out.append("")
    return "\n".join(out)


def chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    colours = dict(gradient="tab:red", resample="tab:blue", iwa="tab:green")
    for ax, (info, _, lr) in zip(axes[0], results):
        for optimizer, style in zip(OPTIMIZERS, ("-", "--")):
            for method in METHODS:
                g = np.array([np.median(lr[(optimizer, method, m)]) for m in LR_MULTIPLIERS])
                g_plot = np.where(np.isfinite(g), np.maximum(g, 1e-8), np.nan)
                ax.plot(LR_MULTIPLIERS, g_plot, style, marker="o", color=colours[method],
                        label=f"{method} + {optimizer}")
                for m, gi in zip(LR_MULTIPLIERS, g):
                    if not np.isfinite(gi):
                        ax.plot([m], [ax.get_ylim()[1] if ax.has_data() else 1.0], "x", color=colours[method], ms=10)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("learning rate / default")
        ax.set_ylabel(f"objective gap to the optimum after {info['epochs']} epochs")
        ax.set_title(f"{info['name']} (max weight {info['w_max']:.2g}); x = diverged")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_into_doc(doc, tag, text):
    begin, end = f"<!-- BEGIN {tag} -->", f"<!-- END {tag} -->"
    body = doc.read_text() if doc.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in body and end in body:
        body = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, body, flags=re.S)
    else:
        body = body + "\n" + block + "\n"
    doc.write_text(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="small data, 2 seeds; prints only (seconds)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not touch docs/")
    ap.add_argument("--no-claims", action="store_true", help="skip the real freMTPL2 data")
    args = ap.parse_args()
    if args.smoke:
        sets = [(generated(10_000, 5_000, 8), 1e-6, 5)]
        if not args.no_claims:
            try:
                sets.append((claims(max_rows=30_000), 1e-6, 5))
            except FileNotFoundError as exc:
                print(f"freMTPL2 skipped: {exc}")
        seeds, lr_seeds = [0, 1], [0]
    else:
        sets = [(generated(100_000, 50_000, 16), 1e-6, 10)]
        if not args.no_claims:
            try:
                sets.append((claims(), 1e-6, 5))
            except FileNotFoundError as exc:
                print(f"freMTPL2 skipped: {exc}")
        seeds, lr_seeds = [0, 1, 2, 3, 4], [0, 1]
    t0 = time.perf_counter()
    results = [run_dataset(ds, alpha, epochs, seeds, lr_seeds) for ds, alpha, epochs in sets]
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    command = "python benchmarks/experiments/weighting_experiment.py" + (" --smoke" if args.smoke else "") + (
        " --no-claims" if args.no_claims else "")
    md = markdown(results, command)
    print("\n" + md)
    if not (args.smoke or args.no_write):
        DOCS.mkdir(exist_ok=True)
        (DOCS / "weighting_results.md").write_text(md + "\n")
        write_into_doc(DOCS / "weighting.md", "weighting_experiment", md)
        chart(results, DOCS / "weighting_lr.png")
        print(f"wrote {DOCS / 'weighting_results.md'}, {DOCS / 'weighting.md'}, {DOCS / 'weighting_lr.png'}")


if __name__ == "__main__":
    main()
