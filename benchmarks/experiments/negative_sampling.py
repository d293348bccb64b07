"""Down-sampled negatives: does the weight 1/r or the intercept shift log r recover the full logs' fit?

    python benchmarks/experiments/negative_sampling.py            # ~1.5 min on 2 cores, writes docs/weighting.md
    python benchmarks/experiments/negative_sampling.py --smoke    # seconds, prints only

For each data set, the full logs are fitted once (``WatchTimeRanker(solver="lbfgs")``). Then the
negatives (unclicked impressions) are kept with probability r, K times with different seeds, and
each sample is fitted with ``negative_sampling_rate=r`` and ``negative_sampling_correction=
"weight"`` (negatives count 1/r) or ``"intercept"`` (unweighted fit, intercept + log r).

Reported per (data, r, correction), with theta = (coef, intercept) and |.| the Euclidean norm
relative to |theta_full|: the distance of the mean of the K fits to the full fit; the noise of a
single fit (root total variance across the K fits); the largest |t| over the coefficients of the
mean's deviation from the full fit, in standard errors (noise / sqrt(K)): about 2-3 if the method
is unbiased for the full fit, much larger if not; on generated data the distance of the mean to the
true coefficients; and the mean e^z over the full logs' rows divided by the full fit's (1 = e^z keeps
its scale).

Data: generated (``make_watch_time``, 1M rows, 8 features, 2 % clicks), fitted with all features
(well specified) and with 4 of the 8 (misspecified: the log-odds given 4 features are not linear);
freMTPL2 (``load_claims``, 678k policies, 3.7 % with a claim; skipped when absent).
The table goes between the ``<!-- BEGIN negative_sampling -->`` markers of ``docs/weighting.md``.
"""
import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from fastwlr import WatchTimeRanker
from fastwlr.datasets import load_claims, make_watch_time

HERE = Path(__file__).resolve().parent
DOCS = next(p for p in (HERE.parent / "docs", HERE.parent.parent / "docs") if p.is_dir())
RATES = (0.1, 0.01)
CORRECTIONS = ("weight", "intercept")


def theta(est):
    return np.concatenate((est.coef_[0], est.intercept_))


def study(name, X, T, truth, k):
    full = WatchTimeRanker(solver="lbfgs").fit(X, T)
    th_full = theta(full)
    scale = np.linalg.norm(th_full)
    mean_odds_full = full.predict_odds(X).mean()
    rows = []
    for r in RATES:
        fits = {c: [] for c in CORRECTIONS}
        odds = {c: [] for c in CORRECTIONS}
        for seed in range(k):
            keep = (T > 0) | (np.random.default_rng(seed).random(T.shape[0]) < r)
            for c in CORRECTIONS:
                est = WatchTimeRanker(solver="lbfgs", negative_sampling_rate=r,
                                      negative_sampling_correction=c).fit(X[keep], T[keep])
                fits[c].append(theta(est))
                odds[c].append(est.predict_odds(X).mean() / mean_odds_full)
        for c in CORRECTIONS:
            f = np.array(fits[c])
            sd = f.std(axis=0, ddof=1)
            dev = f.mean(axis=0) - th_full
            rows.append(dict(data=name, r=r, correction=c, dist=np.linalg.norm(dev) / scale,
                             noise=np.sqrt(np.sum(sd ** 2)) / scale, t=np.abs(dev / (sd / np.sqrt(k))).max(),
                             truth=None if truth is None else np.linalg.norm(f.mean(axis=0) - truth) / scale,
                             odds=np.mean(odds[c]), odds_sd=np.std(odds[c], ddof=1)))
            r_ = rows[-1]
            print(f"{name:38s} r={r:<5g} {c:9s} distance of the mean {r_['dist']:.4f}  noise {r_['noise']:.4f}  "
                  f"max |t| {r_['t']:6.1f}  mean e^z ratio {r_['odds']:.4f}", flush=True)
    truth_full = None if truth is None else np.linalg.norm(th_full - truth) / scale
    return rows, truth_full


def markdown(results, command, k):
    out = [f"Produced by `{command}`: {k} down-samplings per rate; distances relative to |theta_full|.", "",
           "| data | r | correction | mean of the fits: distance to the full fit | noise of one fit | "
           "max \\|t\\| of the mean's deviation | mean: distance to the truth | mean e^z / full fit's (± sd) |",
           "|---|---:|---|---:|---:|---:|---:|---:|"]
    for rows, truth_full in results:
        for r in rows:
            truth = "-" if r["truth"] is None else f"{r['truth']:.4f} (full fit: {truth_full:.4f})"
            out.append(f"| {r['data']} | {r['r']:g} | {r['correction']} | {r['dist']:.4f} | {r['noise']:.4f} | "
                       f"{r['t']:.1f} | {truth} | {r['odds']:.4f} ± {r['odds_sd']:.4f} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="small data, prints only")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*lbfgs stopped.*")
    n, k = (50_000, 3) if args.smoke else (1_000_000, 10)
    d = make_watch_time(n, 8, click_rate=0.02, dtype=np.float64, random_state=0)
    truth = np.concatenate((d.coef, [d.intercept]))
    results = [study("generated, well specified", d.X, d.watch_time, truth, k),
                   study("generated, 4 of 8 features (misspecified)", d.X[:, :4], d.watch_time, None, k)]
    try:
        c = load_claims("freMTPL2")
        if args.smoke:
            c = type(c)(c.name, c.X[:50_000], c.clicked[:50_000], c.amount[:50_000], c.feature_names)
        results.append(study("freMTPL2", c.X, c.amount, None, k))
    except FileNotFoundError as exc:
        print(f"freMTPL2 skipped: {exc}")
    command = "python benchmarks/experiments/negative_sampling.py" + (" --smoke" if args.smoke else "")
    md = markdown(results, command, k)
    print("\n" + md)
    if not (args.smoke or args.no_write):
        sys.path.insert(0, str(HERE))
        from weighting_experiment import write_into_doc
        write_into_doc(DOCS / "weighting.md", "negative_sampling", md)
        print(f"wrote {DOCS / 'weighting.md'}")


if __name__ == "__main__":
    main()
