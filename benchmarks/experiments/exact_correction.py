"""How far e^z drifts from the true E[T | x] as clicks get common, and how e^z (1 - p) removes it.

    python benchmarks/experiments/exact_correction.py            # ~1-2 min on 2 cores, writes docs/
    python benchmarks/experiments/exact_correction.py --smoke    # seconds, prints only

For click rates from 1 % to 50 %, ``make_watch_time`` draws impressions whose true E[T | x] is
known per row. A ``WatchTimeRanker(solver="lbfgs", fit_click_model=True)`` is fitted on training
rows; on held-out rows we compare with the truth:

* the served e^z (no correction), whose population value is E[T | x] / (1 - p(x));
* e^z (1 - p_hat) with the click model fitted alongside (``predict`` with ``click_model_``);
* e^z (1 - p) with the true click probability (``predict(X, click_log_odds=...)``).

Reported: the aggregate bias sum(prediction) / sum(E[T]) next to its theory mean-weighted
1/(1 - p), the median per-row ratio, the RMS of log(prediction / E[T]), and the held-out weighted
per-user loss and NDCG@5 of ranking by each (the correction also changes the order within a
request).
The table goes between the ``<!-- BEGIN exact_correction -->`` markers of ``docs/weighting.md``,
the chart to ``docs/exact_correction.png``.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from fastwlr import WatchTimeRanker, metrics
from fastwlr.datasets import make_watch_time

DOCS = Path(__file__).resolve().parents[2] / "docs"
RATES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5)


def one_rate(rate, n_train, n_test, d, seed=0):
    data = make_watch_time(n_train + n_test, d, click_rate=rate, watch_time_shape=1.0, dtype=np.float64,
                           random_state=seed)
    off = data.offsets
    cut = int(off[np.searchsorted(off, n_train)])
    te = slice(cut, None)
    test_off = off[off >= cut] - cut
    t0 = time.perf_counter()
    est = WatchTimeRanker(solver="lbfgs", fit_click_model=True).fit(data.X[:cut], data.watch_time[:cut])
    t_fit = time.perf_counter() - t0
    X, truth, T = data.X[te], data.expected_watch_time[te], data.watch_time[te]
    preds = {
        "e^z": est.predict_odds(X),
        "e^z (1 - p_hat)": est.predict(X),
        "e^z (1 - p)": est.predict(X, click_log_odds=data.click_log_odds[te]),
    }
    p = data.p[te]
    row = dict(rate=rate, clicks=float(data.clicked[:cut].mean()), fit_s=t_fit,
               # population bias of e^z*: sum E[T]/(1-p) / sum E[T]
               theory=float(np.sum(truth / (1 - p)) / truth.sum()), p_max=float(p.max()))
    for name, pred in preds.items():
        r = pred / truth
        row[name] = dict(agg=float(pred.sum() / truth.sum()), median=float(np.median(r)),
                         rms_log=float(np.sqrt(np.mean(np.log(r) ** 2))),
                         pul=metrics.weighted_per_user_loss(T, pred, test_off),
                         ndcg=metrics.ndcg(T, pred, 5, offsets=test_off))
    row["oracle_pul"] = metrics.weighted_per_user_loss(T, truth, test_off)
    row["oracle_ndcg"] = metrics.ndcg(T, truth, 5, offsets=test_off)
    row["calibration"] = {name: metrics.calibration_table(truth, pred, n_bins=10) for name, pred in preds.items()}
    return row


def markdown(rows, command, n_train, n_test, d):
    names = ("e^z", "e^z (1 - p_hat)", "e^z (1 - p)")
    out = [f"Produced by `{command}`: {n_train:,} training and {n_test:,} held-out impressions per click rate, "
           f"{d} dense features, log-normal watch time (sigma 1); WatchTimeRanker(solver=\"lbfgs\", "
           "fit_click_model=True). Bias = sum of predictions / sum of the true E[T | x] over the held-out rows "
           "(1 = unbiased); median = median over rows of prediction / E[T | x]; RMS log error = "
           "sqrt(mean(log(prediction / E[T | x])^2)). Per-user loss: held-out weighted per-user loss "
           "when ranking by that prediction, next to ranking by the true E[T | x]; NDCG@5 with watch time as "
           "the gain, likewise.", "",
           "| click rate | theory 1/(1-p) | bias e^z | bias e^z(1-p_hat) | bias e^z(1-p) | median e^z | "
           "median e^z(1-p_hat) | RMS log err e^z | RMS log err e^z(1-p_hat) | per-user loss e^z | "
           "per-user loss e^z(1-p_hat) | per-user loss true E[T] | NDCG@5 e^z | NDCG@5 e^z(1-p_hat) | "
           "NDCG@5 true E[T] |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        a, b, c = (r[n] for n in names)
        out.append(f"| {r['rate']:.0%} | {r['theory']:.3f} | {a['agg']:.3f} | {b['agg']:.3f} | {c['agg']:.3f} | "
                   f"{a['median']:.3f} | {b['median']:.3f} | {a['rms_log']:.3f} | {b['rms_log']:.3f} | "
                   f"{a['pul']:.4f} | {b['pul']:.4f} | {r['oracle_pul']:.4f} | {a['ndcg']:.4f} | "
                   f"{b['ndcg']:.4f} | {r['oracle_ndcg']:.4f} |")
    return "\n".join(out) + "\n"


def chart(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3))
    rates = [r["rate"] for r in rows]
    ax1.plot(rates, [r["theory"] for r in rows], "k--", label="theory: 1/(1-p), weighted by E[T]")
    for name, style in (("e^z", "o-"), ("e^z (1 - p_hat)", "s-"), ("e^z (1 - p)", "^-")):
        ax1.plot(rates, [r[name]["agg"] for r in rows], style, label=name)
    ax1.set_xscale("log")
    ax1.set_xlabel("click rate")
    ax1.set_ylabel("sum(prediction) / sum(true E[T|x]), held out")
    ax1.set_title("bias of e^z and of the exact correction")
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    r = rows[-1]
    for name in ("e^z", "e^z (1 - p_hat)"):
        metrics.plot_calibration(r["calibration"][name], ax=ax2, label=name)
    ax2.set_xlabel("mean prediction (decile of the prediction)")
    ax2.set_ylabel("mean true E[T | x]")
    ax2.set_title(f"calibration against the truth, click rate {r['rate']:.0%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="small data, prints only (seconds)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    n_train, n_test, d = (20_000, 10_000, 8) if args.smoke else (200_000, 100_000, 16)
    rows = []
    for rate in RATES:
        r = one_rate(rate, n_train, n_test, d)
        rows.append(r)
        print(f"click rate {rate:5.0%}: theory {r['theory']:.3f}  bias e^z {r['e^z']['agg']:.3f}  "
              f"e^z(1-p_hat) {r['e^z (1 - p_hat)']['agg']:.3f}  e^z(1-p) {r['e^z (1 - p)']['agg']:.3f}  "
              f"per-user loss {r['e^z']['pul']:.4f} -> {r['e^z (1 - p_hat)']['pul']:.4f} "
              f"(truth {r['oracle_pul']:.4f})  NDCG@5 {r['e^z']['ndcg']:.4f} -> {r['e^z (1 - p_hat)']['ndcg']:.4f} "
              f"(truth {r['oracle_ndcg']:.4f})  fit {r['fit_s']:.1f} s")
    command = "python benchmarks/experiments/exact_correction.py" + (" --smoke" if args.smoke else "")
    md = markdown(rows, command, n_train, n_test, d)
    print("\n" + md)
    if not (args.smoke or args.no_write):
        import sys
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from weighting_experiment import write_into_doc
        write_into_doc(DOCS / "weighting.md", "exact_correction", md)
        chart(rows, DOCS / "exact_correction.png")
        print(f"wrote {DOCS / 'weighting.md'}, {DOCS / 'exact_correction.png'}")


if __name__ == "__main__":
    main()
