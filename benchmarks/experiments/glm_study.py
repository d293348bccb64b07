"""Weighted logistic regression (e^z, e^z (1 - p)) against log-link GLMs (Poisson, Tweedie) on held-out data.

    python benchmarks/experiments/glm_study.py                    # both parts (~10 min on 2 cores), writes docs/
    python benchmarks/experiments/glm_study.py --only freMTPL2    # ~8 min: the real data
    python benchmarks/experiments/glm_study.py --only generated   # ~1 min: the generated data
    python benchmarks/experiments/glm_study.py --smoke            # seconds: small data, prints only
    python benchmarks/experiments/glm_study.py --no-write

The question: to predict (and rank by) an expected zero-inflated amount E[T | x], is the watch-time
recipe (weighted LR: positives weighted by T, negatives by 1; serve e^z) as good as a GLM that
models E[T | x] = e^(w.x+b) directly? Contenders, all fitted on the same training rows and scored
on held-out rows:

* ``e^z``: ``WatchTimeRanker(solver="lbfgs")``, the served odds.
* ``e^z (1-p)``: the same times 1 - p, p from a click model (``WeightedLogisticRegression(
  solver="lbfgs")``, unweighted, on the event T > 0).
* ``Poisson``: ``sklearn.linear_model.PoissonRegressor`` on T.
* ``Tweedie 1.9``: ``sklearn.linear_model.TweedieRegressor(power=1.9)`` on T, the compound
  Poisson-gamma model of scikit-learn's pure-premium example.
* on freMTPL2 also ``Tweedie 1.9, sklearn set-up``: exactly as in that example (target the pure
  premium T / exposure, ``sample_weight`` = exposure, no exposure feature), times the exposure.

Data:

* freMTPL2 (``fastwlr.datasets.claims_path``; skipped when absent): the claim amount of a policy as
  T. Prepared as scikit-learn's example "Tweedie regression on insurance claims" prepares it
  (exposure clipped at 1; VehAge and DrivAge in 10 quantile bins, one-hot; VehBrand, VehPower,
  VehGas, Region, Area one-hot; BonusMalus as is; log Density standardised), plus the standardised
  log exposure as a feature (T is the amount per policy, not per year). Two versions: claim amounts
  clipped at 200,000 (as in that example) and raw (up to 4.1 million: the heavy tail).
  ``train_test_split(random_state=0)``: 75 % / 25 %. No requests: XAUC and Gini over all policies.
* generated (``fastwlr.datasets.make_watch_time``; the truth E[T | x] is known): 16 dense
  features, log-normal watch times; click rates 5 % and 35 %, and a heavier tail (sigma 2).
  Split at a request boundary; requests give the weighted per-user loss and per-request XAUC.

Metrics on the held-out rows (``fastwlr.metrics`` unless said): bias sum(pred) / sum(T);
calibration by decile of the prediction (observed / predicted per decile); Gini of the ordered
Lorenz curve (policies from the lowest prediction to the highest against their share of the total
amount; 1 - 2 x area; ties averaged); XAUC; the weighted per-user loss and per-request XAUC where
requests exist; RMSE; each model's own loss on the others' predictions (weighted log-loss with
z = log pred, mean Poisson and Tweedie-1.9 deviance); on generated data the RMS log error against
the true E[T | x]; the wall time of each fit (one run, all threads; shared machine).

Each part writes its tables between the ``<!-- BEGIN glm_fremtpl2 -->`` / ``glm_generated`` markers
of ``docs/glm.md`` and its chart (Lorenz curves and calibration by decile) to ``docs/glm_fremtpl2.png``
/ ``docs/glm_generated.png``.
"""
import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

from fastwlr import WatchTimeRanker, WeightedLogisticRegression, metrics
from fastwlr.datasets import claims_path, make_watch_time

HERE = Path(__file__).resolve().parent
DOCS = next(p for p in (HERE.parent / "docs", HERE.parent.parent / "docs") if p.is_dir())
# regularisation as in scikit-learn's example (Poisson: its frequency model; Tweedie: its pure
# premium model); fastwlr's default alpha (1e-6 on the weight-normalised loss) for both LRs
POISSON_ALPHA, TWEEDIE_ALPHA = 1e-4, 0.1
LR_OPTIONS = {}   # fastwlr's defaults; --smoke caps the iterations (on 15k rows of this rank-deficient
                  # design the default tolerance takes L-BFGS 1,000 iterations)


# ----------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=2)
def _read_fremtpl2(max_rows):
    import gzip
    import io
    path = claims_path("freMTPL2")
    with gzip.open(path, "rt") as f:
        text = f.read()
    header = text[:text.index("\n")].split(",")
    col = {c: i for i, c in enumerate(header)}
    num_names = ["Exposure", "VehAge", "DrivAge", "BonusMalus", "Density", "ClaimAmount"]
    cat_names = ["VehBrand", "VehPower", "VehGas", "Region", "Area"]
    num = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, usecols=[col[c] for c in num_names],
                     max_rows=max_rows)
    cat = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, usecols=[col[c] for c in cat_names],
                     dtype=str, max_rows=max_rows)
    return num, cat


def fremtpl2(clip_amount=True, seed=0, max_rows=None):
    """freMTPL2 with scikit-learn's example's features (+ log exposure), split by ``seed``; None when
    the file is absent."""
    import scipy.sparse as sp
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder
    try:
        num, cat = _read_fremtpl2(max_rows)
    except FileNotFoundError as exc:
        print(f"freMTPL2 skipped: {exc}")
        return None
    exposure = np.minimum(num[:, 0], 1.0)
    amount = np.minimum(num[:, 5], 200_000.0) if clip_amount else num[:, 5]
    idx_train, idx_test = train_test_split(np.arange(num.shape[0]), random_state=seed)

    def standardise(x):
        return ((x - x[idx_train].mean()) / x[idx_train].std())[:, None]
    # every transformer is fitted on the training rows only
    bins = KBinsDiscretizer(n_bins=10, subsample=int(2e5), random_state=0).fit(num[idx_train][:, 1:3])
    onehot = OneHotEncoder().fit(cat[idx_train])
    base = sp.hstack([bins.transform(num[:, 1:3]), onehot.transform(cat), num[:, 3:4],
                      standardise(np.log(num[:, 4]))]).tocsr()
    # dense: 76 columns; fastwlr's L-BFGS needed 5x more iterations on the CSR form of this
    # rank-deficient design (every one-hot level kept, as in the example)
    X = np.asarray(sp.hstack([base, standardise(np.log(exposure))]).todense())
    base = np.asarray(base.todense())
    return dict(name=f"freMTPL2, amounts {'clipped at 200k' if clip_amount else 'raw'}", X=X[idx_train],
                X_test=X[idx_test], T=amount[idx_train], T_test=amount[idx_test], offsets_test=None,
                truth_test=None, X_base=base[idx_train], X_base_test=base[idx_test],
                exposure=exposure[idx_train], exposure_test=exposure[idx_test])


def generated(n_train, n_test, click_rate, shape, seed=0):
    d = make_watch_time(n_train + n_test, 16, click_rate=click_rate, watch_time_shape=shape, dtype=np.float64,
                        random_state=seed)
    off = d.offsets
    cut = int(off[np.searchsorted(off, n_train)])   # split at a request boundary
    return dict(name=f"generated, {click_rate:.0%} clicks, sigma {shape:g}", X=d.X[:cut], X_test=d.X[cut:],
                T=d.watch_time[:cut], T_test=d.watch_time[cut:], offsets_test=off[off >= cut] - cut,
                truth_test=d.expected_watch_time[cut:])


# ----------------------------------------------------------------------------- fits
def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def fit_all(ds):
    """{model: (held-out prediction of E[T | x], training-row prediction, fit seconds, solver iterations)}."""
    from sklearn.linear_model import PoissonRegressor, TweedieRegressor
    X, T, Xt = ds["X"], ds["T"], ds["X_test"]
    out = {}
    wlr, t_wlr = timed(lambda: WatchTimeRanker(solver="lbfgs", **LR_OPTIONS).fit(X, T))
    click, t_click = timed(lambda: WeightedLogisticRegression(solver="lbfgs", **LR_OPTIONS).fit(X, T > 0))
    out["e^z"] = (wlr.predict(Xt), wlr.predict(X), t_wlr, f"{wlr.n_iter_}")
    out["e^z (1-p)"] = (wlr.predict(Xt, click_model=click), wlr.predict(X, click_model=click), t_wlr + t_click,
                        f"{wlr.n_iter_} + {click.n_iter_}")
    glms = {"Poisson": PoissonRegressor(alpha=POISSON_ALPHA, solver="newton-cholesky", max_iter=300),
            "Tweedie 1.9": TweedieRegressor(power=1.9, alpha=TWEEDIE_ALPHA, solver="newton-cholesky", max_iter=300)}
    for name, glm in glms.items():
        _, t = timed(lambda: glm.fit(X, T))
        out[name] = (glm.predict(Xt), glm.predict(X), t, f"{glm.n_iter_}")
    if "X_base" in ds:   # scikit-learn's own set-up: the pure premium T / exposure, weighted by exposure
        e = ds["exposure"]
        tw, t = timed(lambda: TweedieRegressor(power=1.9, alpha=TWEEDIE_ALPHA, solver="newton-cholesky",
                                               max_iter=300).fit(ds["X_base"], T / e, sample_weight=e))
        out["Tweedie 1.9, sklearn set-up"] = (tw.predict(ds["X_base_test"]) * ds["exposure_test"],
                                              tw.predict(ds["X_base"]) * e, t, f"{tw.n_iter_}")
    return out


# ----------------------------------------------------------------------------- metrics
def lorenz(T, pred):
    """Ordered Lorenz curve: share of rows (lowest prediction first) against share of sum(T), at the
    ends of blocks of tied predictions (the straight line between them is the average over the
    orders of a tie)."""
    order = np.argsort(pred, kind="stable")
    p, t = pred[order], T[order]
    ends = np.append(np.flatnonzero(p[1:] != p[:-1]), p.shape[0] - 1)
    x = np.concatenate(([0.0], (ends + 1) / p.shape[0]))
    y = np.concatenate(([0.0], np.cumsum(t)[ends] / t.sum()))
    return x, y


def gini(T, pred):
    x, y = lorenz(T, pred)
    return 1.0 - 2.0 * float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def evaluate(ds, pred, pred_train=None):
    from sklearn.metrics import mean_poisson_deviance, mean_tweedie_deviance
    T, off, truth = ds["T_test"], ds["offsets_test"], ds["truth_test"]
    pred = np.maximum(pred, np.finfo(float).tiny)     # deviances need pred > 0
    r = dict(bias=float(pred.sum() / T.sum()), gini=gini(T, pred), xauc=metrics.xauc(T, pred),
             rmse=metrics.rmse(T, pred), wll=metrics.weighted_log_loss(T, np.log(pred)),
             poisson_dev=mean_poisson_deviance(T, pred), tweedie_dev=mean_tweedie_deviance(T, pred, power=1.9),
             calibration=metrics.calibration_table(T, pred, n_bins=10))
    if pred_train is not None:
        r["bias_train"] = float(pred_train.sum() / ds["T"].sum())
    if off is not None:
        r["pul"] = metrics.weighted_per_user_loss(T, pred, off)
        r["xauc_req"], r["xauc_skipped"] = metrics.xauc(T, pred, off, average="requests", return_skipped=True)
    if truth is not None:
        r["bias_truth"] = float(pred.sum() / truth.sum())
        r["rms_log_truth"] = float(np.sqrt(np.mean(np.log(pred / truth) ** 2)))
    return r


def oracle(ds):
    """The same metrics for the best possible ranking: by the true E[T | x] (generated) and by the
    observed T itself (an upper bound no model reaches)."""
    T, truth = ds["T_test"], ds["truth_test"]
    out = {"observed T": dict(gini=gini(T, T))}
    if truth is not None:
        out["true E[T|x]"] = evaluate(ds, truth)
    return out


def unit_experiment(ds, scales=(1e-3, 1.0, 1e3)):
    """The same weighted LR with T in other units (T x scale; predictions divided back): the fitted
    model is not unit-free, because the unit sets where on the logistic curve the rows sit."""
    rows = []
    for scale in scales:
        est = WatchTimeRanker(solver="lbfgs", **LR_OPTIONS).fit(ds["X"], ds["T"] * scale)
        pred = est.predict(ds["X_test"]) / scale
        z = est.decision_function(ds["X"])
        rows.append(dict(scale=scale, sigma=float(np.mean(1.0 / (1.0 + np.exp(-z)))), gini=gini(ds["T_test"], pred),
                         xauc=metrics.xauc(ds["T_test"], pred), bias=float(pred.sum() / ds["T_test"].sum()),
                         coef_norm=float(np.linalg.norm(est.coef_))))
    return rows


def unit_markdown(name, rows):
    out = [f"Weighted LR on **{name}** (seed 0) with the amount in other units (T x scale; predictions "
           "scaled back):", "",
           "| T x | mean sigma(z), training rows | Gini | XAUC | bias, held out | norm of coef |",
           "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['scale']:g} | {r['sigma']:.3f} | {r['gini']:.4f} | {r['xauc']:.4f} | {r['bias']:.3f} | "
                   f"{r['coef_norm']:.3f} |")
    return "\n".join(out) + "\n"


def tail_experiment(ds, k=5):
    """How far the k largest training amounts move each model: refit without them and compare."""
    from sklearn.linear_model import PoissonRegressor, TweedieRegressor
    keep = np.ones(ds["T"].shape[0], dtype=bool)
    top = np.argsort(ds["T"])[-k:]
    keep[top] = False
    makers = {"e^z": lambda: WatchTimeRanker(solver="lbfgs", **LR_OPTIONS),
              "Poisson": lambda: PoissonRegressor(alpha=POISSON_ALPHA, solver="newton-cholesky", max_iter=300),
              "Tweedie 1.9": lambda: TweedieRegressor(power=1.9, alpha=TWEEDIE_ALPHA, solver="newton-cholesky",
                                                      max_iter=300)}
    rows = []
    for model, make in makers.items():
        full = make().fit(ds["X"], ds["T"]).predict(ds["X_test"])
        cut = make().fit(ds["X"][keep], ds["T"][keep]).predict(ds["X_test"])
        shift = np.abs(np.log(full / cut))
        rows.append(dict(model=model, gini=gini(ds["T_test"], full), gini_cut=gini(ds["T_test"], cut),
                         median=float(np.median(shift)), max=float(shift.max())))
    return ds["T"][top], rows


def tail_markdown(name, top, rows):
    out = [f"The {len(top)} largest training amounts of **{name}** (seed 0: "
           + ", ".join(f"{t:,.0f}" for t in np.sort(top)[::-1]) + ") left out and each model refitted:", "",
           "| model | held-out Gini, all rows | without them | median factor by which a held-out prediction moves | "
           "largest factor |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['gini']:.4f} | {r['gini_cut']:.4f} | {np.exp(r['median']):.3f} | "
                   f"{np.exp(r['max']):.1f} |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- reporting
COLUMNS = [  # (key, header, format); a column appears when its key is measured
    ("fit_s", "fit time", "{:.2f} s"), ("iterations", "solver iterations (seed 0)", "{}"), ("bias", "bias, held out", "{:.3f}"),
    ("bias_train", "bias, training rows", "{:.3f}"), ("bias_truth", "bias vs true E[T]", "{:.3f}"),
    ("rms_log_truth", "RMS log error vs true E[T]", "{:.3f}"), ("gini", "Gini", "{:.4f}"), ("xauc", "XAUC", "{:.4f}"),
    ("xauc_req", "XAUC per request", "{:.4f}"), ("pul", "weighted per-user loss", "{:.4f}"),
    ("rmse", "RMSE", "{:.5g}"), ("wll", "weighted log-loss", "{:.5f}"), ("poisson_dev", "Poisson deviance", "{:.5g}"),
    ("tweedie_dev", "Tweedie-1.9 deviance", "{:.5f}")]
PAIRED = [("gini", "Gini"), ("xauc", "XAUC"), ("pul", "weighted per-user loss"), ("rms_log_truth", "RMS log error vs truth")]
REFERENCE = "Tweedie 1.9"


def _cell(values, fmt, median=False):
    values = [x for x in values if x is not None]
    if not values:
        return "-"
    if median:
        return fmt.format(np.median(values))
    if isinstance(values[0], str):
        return values[0]
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values, ddof=1))}"


def markdown(runs, command):
    out = [f"Produced by `{command}`. Each cell: mean ± standard deviation over the seeds (freMTPL2: "
           "train/test splits; generated: independent draws); fit time: median, one run per seed, all threads, "
           "on a shared 2-core machine. Bias = sum of predictions / sum of T; Gini of the ordered Lorenz curve "
           "against the observed T; each model is also scored on the other models' losses (weighted log-loss "
           "with z = log prediction, mean Poisson and Tweedie-1.9 deviances).", ""]
    for name, run in runs.items():
        seeds = run["per_seed"]
        models = list(seeds[0])
        rows = [(m, [s[m] for s in seeds]) for m in models]
        if "true E[T|x]" in run["oracle"][0]:
            rows.append(("*true E[T \\| x]*", [o["true E[T|x]"] for o in run["oracle"]]))
        cols = [c for c in COLUMNS if c[0] in seeds[0][models[0]]]
        out += [f"**{name}** ({len(seeds)} seeds): {run['info']}", "",
                "| model | " + " | ".join(h for _, h, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
        for model, rs in rows:
            out.append(f"| {model} | " + " | ".join(_cell([r.get(k) for r in rs], f, k == "fit_s") for k, _, f in cols) + " |")
        ceiling = [o["observed T"]["gini"] for o in run["oracle"]]
        out += ["", f"Gini of ranking by the observed T itself (the ceiling no model reaches): {np.mean(ceiling):.4f}.", ""]
        paired = [(k, h) for k, h in PAIRED if k in seeds[0][models[0]]]
        if REFERENCE in models and len(seeds) > 1:
            out += [f"Paired differences from {REFERENCE} on the same split / draw (mean ± sd over seeds; "
                    "in brackets: seeds where the model is better):", "",
                    "| model | " + " | ".join(h for _, h in paired) + " |", "|---|" + "---:|" * len(paired)]
            for model in models:
                if model == REFERENCE:
                    continue
                cells = []
                for k, _ in paired:
                    d = np.array([s[model][k] - s[REFERENCE][k] for s in seeds])
                    better = int(np.sum(d > 0) if k in ("gini", "xauc") else np.sum(d < 0))
                    cells.append(f"{np.mean(d):+.4f} ± {np.std(d, ddof=1):.4f} ({better}/{len(d)})")
                out.append(f"| {model} | " + " | ".join(cells) + " |")
            out.append("")
        out += [f"Calibration by decile of the prediction, seed 0 (observed / predicted; d1 = lowest predictions):", "",
                "| model | " + " | ".join(f"d{k}" for k in range(1, 11)) + " |", "|---|" + "---:|" * 10]
        for model, rs in rows:
            ratio = rs[0]["calibration"].ratio
            out.append(f"| {model} | " + " | ".join(f"{x:.2f}" for x in ratio) + " |" * (1 + 10 - ratio.shape[0]))
        out.append("")
    return "\n".join(out)


def chart(name, run, path):
    """Two panels for one data set (seed 0): ordered Lorenz curves and calibration by decile."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ds, preds = run["ds0"], run["preds0"]
    T = ds["T_test"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 5))
    curves = dict(preds)
    if ds["truth_test"] is not None:
        curves["true E[T|x]"] = ds["truth_test"]
    for model, pred in curves.items():
        x, y = lorenz(T, pred)
        ax1.plot(x, y, ":" if model.startswith("true") else "-", label=f"{model} (Gini {gini(T, pred):.3f})")
    x, y = lorenz(T, T)
    ax1.plot(x, y, color="grey", ls="-.", label=f"observed T (Gini {gini(T, T):.3f})")
    ax1.plot([0, 1], [0, 1], "k--", lw=1, label="random")
    ax1.set_xlabel("share of held-out rows, lowest prediction first")
    ax1.set_ylabel("share of the total amount")
    ax1.set_title(f"ordered Lorenz curves, seed 0: {name}", fontsize=9)
    ax1.legend(fontsize=7, loc="upper left")
    ax1.grid(True, alpha=0.3)
    for model, r in run["per_seed"][0].items():
        metrics.plot_calibration(r["calibration"], ax=ax2, label=model)
    ax2.set_title(f"calibration by decile, seed 0: {name}", fontsize=9)
    ax2.set_ylabel("mean observed amount in the decile")
    ax2.set_xlabel("mean prediction in the decile")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def describe(ds):
    T, Tt = ds["T"], ds["T_test"]
    pos = T[T > 0]
    rse = Tt.std() * np.sqrt(Tt.shape[0]) / Tt.sum()
    return (f"{ds['X'].shape[0]:,} training and {Tt.shape[0]:,} held-out rows x {ds['X'].shape[1]} features; "
            f"{np.mean(T > 0):.1%} with T > 0; T given T > 0: mean {pos.mean():.4g}, max {pos.max():.4g} "
            f"({pos.max() / pos.mean():.0f}x the mean); relative standard error of the held-out sum(T), "
            f"which any held-out bias inherits: {rse:.1%}")


PARTS = {  # part: (data sets as functions of the seed, the one charted, doc block and chart file)
    "freMTPL2": ([lambda s: fremtpl2(True, s), lambda s: fremtpl2(False, s)], "clipped", "glm_fremtpl2"),
    "generated": ([lambda s: generated(200_000, 100_000, 0.05, 1.0, s), lambda s: generated(200_000, 100_000, 0.35, 1.0, s),
                   lambda s: generated(200_000, 100_000, 0.05, 2.0, s)], "35%", "glm_generated"),
}
SMOKE = {"freMTPL2": [lambda s: fremtpl2(True, s, max_rows=20_000)],
         "generated": [lambda s: generated(4_000, 2_000, 0.35, 1.0, s)]}


def run_part(makers, n_seeds):
    runs = {}
    for make in makers:
        for seed in range(n_seeds):
            ds = make(seed)
            if ds is None:
                break
            fits = fit_all(ds)
            res = {m: dict(evaluate(ds, p, p_train), fit_s=t, iterations=it) for m, (p, p_train, t, it) in fits.items()}
            if seed == 0:
                runs[ds["name"]] = dict(info=describe(ds), per_seed=[], oracle=[], ds0=ds,
                                        preds0={m: f[0] for m, f in fits.items()})
            runs[ds["name"]]["per_seed"].append(res)
            runs[ds["name"]]["oracle"].append(oracle(ds))
            for m, r in res.items():
                print(f"{ds['name']:36s} seed {seed} {m:28s} fit {r['fit_s']:6.2f} s  bias {r['bias']:.3f}  "
                      f"Gini {r['gini']:.4f}  XAUC {r['xauc']:.4f}" + (f"  per-user loss {r['pul']:.4f}" if "pul" in r else ""),
                      flush=True)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="small data, 2 seeds, prints only (seconds)")
    ap.add_argument("--only", choices=sorted(PARTS), help="run one part (each writes its own tables and chart)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per data set (default 5; smoke 2)")
    ap.add_argument("--no-write", action="store_true", help="print only, do not touch docs/")
    args = ap.parse_args()
    n_seeds = args.seeds or (2 if args.smoke else 5)
    if args.smoke:
        import warnings
        warnings.filterwarnings("ignore")   # the capped fits do not converge, and say so
        LR_OPTIONS["max_iter"] = 30
    for part in [args.only] if args.only else list(PARTS):
        makers, charted, tag = PARTS[part]
        runs = run_part(SMOKE[part] if args.smoke else makers, n_seeds)
        if not runs:
            continue
        command = "python benchmarks/experiments/glm_study.py" + (" --smoke" if args.smoke else f" --only {part}")
        md = markdown(runs, command)
        if part == "freMTPL2":   # the heavy tail: on the last (raw) data set
            name = list(runs)[-1]
            md += "\n" + tail_markdown(name, *tail_experiment(runs[name]["ds0"]))
            md += "\n" + unit_markdown(name, unit_experiment(runs[name]["ds0"]))
        print("\n" + md)
        if not (args.smoke or args.no_write):
            sys.path.insert(0, str(HERE))
            from weighting_experiment import write_into_doc
            write_into_doc(DOCS / "glm.md", tag, md)
            name = next(n for n in runs if charted in n)
            chart(name, runs[name], DOCS / f"{tag}.png")
            print(f"wrote {DOCS / 'glm.md'} ({tag}), {DOCS / (tag + '.png')}")


if __name__ == "__main__":
    main()
