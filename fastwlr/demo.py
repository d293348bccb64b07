"""``fastwlr-demo``: how e^(w.x + b) of a weighted logistic regression tracks the expected watch time.

Steps, one function each so later steps (training a ranker, top-k) slot in between:

1. ``make_data``      draw impressions with known ground truth (``fastwlr.datasets.make_watch_time``);
2. ``score_model``    score them with a linear model through ``fastwlr.score`` (here: the TRUE
                      coefficients of the weighted-LR log-odds, so any gap is the maths, not the fit);
3. ``calibration``    a table by decile of the predicted value: mean e^z, mean exact E[T|x] =
                      e^z (1 - p), mean true E[T|x], mean observed watch time;
4. ``report``         print it all, with timings.

Run ``fastwlr-demo --help`` or ``python -m fastwlr.demo``.
"""
import argparse
import sys
import time

import numpy as np


def make_data(n_samples, n_features=64, *, sparse=False, click_rate=0.05, mean_watch_time=60.0, seed=0):
    """Step 1: synthetic impressions with their ground truth (a ``WatchTimeData``)."""
    from .datasets import make_watch_time
    if sparse:
        return make_watch_time(n_samples, sparse=True, click_rate=click_rate,
                               mean_watch_time=mean_watch_time, random_state=seed)
    return make_watch_time(n_samples, n_features, click_rate=click_rate,
                           mean_watch_time=mean_watch_time, random_state=seed)


def score_model(X, coef, intercept, *, n_threads=None, backend=None, repeat=3):
    """Step 2: e^z for every row via ``fastwlr.score``; returns (odds, best seconds of ``repeat``)."""
    from .scoring import score
    out = None
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = score(X, coef, intercept, output="odds", n_threads=n_threads, backend=backend, out=out)
        best = min(best, time.perf_counter() - t0)
    return out, best


def calibration(predicted, columns, n_bins=10):
    """Step 3: rows grouped into ``n_bins`` equal-count bins by ``predicted``; the mean of each
    named column per bin. Returns (bin edges as quantiles of predicted, {name: means per bin}, counts)."""
    predicted = np.asarray(predicted)
    order = np.argsort(predicted, kind="stable")
    bins = np.array_split(order, n_bins)
    means = {name: np.array([np.mean(np.asarray(col)[b]) if b.size else np.nan for b in bins])
             for name, col in columns.items()}
    counts = np.array([b.size for b in bins])
    return means, counts


def format_table(means, counts, title):
    """A plain-text table: one row per bin, one column per series."""
    names = list(means)
    width = max(12, *(len(n) + 2 for n in names))
    lines = [title, "decile".rjust(6) + "rows".rjust(10) + "".join(n.rjust(width) for n in names)]
    for i in range(counts.shape[0]):
        lines.append(f"{i + 1:6d}{counts[i]:10d}" + "".join(f"{means[n][i]:{width}.4g}" for n in names))
    return "\n".join(lines)


def report(data, odds, seconds, *, file=None):
    """Step 4: print the calibration of e^z against E[T|x] and the timing."""
    file = file or sys.stdout
    exact = odds * (1.0 - data.p)  # E[T|x] = e^z (1 - p): the exact correction (docs/theory.md)
    means, counts = calibration(odds, {
        "mean e^z": odds,
        "e^z(1-p)": exact,
        "true E[T|x]": data.expected_watch_time,
        "observed T": data.watch_time,
    })
    print(f"{data.n_samples:,} impressions x {data.n_features:,} features "
          f"({'CSR' if data.params['sparse'] else 'dense'} {data.params['dtype']}), "
          f"{data.params['n_requests']:,} requests; click rate {data.params['click_rate_observed']:.4f} "
          f"(expected {data.params['expected_click_rate']:.4f}), mean watch time of a click "
          f"{data.params['mean_watch_time_observed']:.1f} s (expected "
          f"{data.params['expected_watch_time_given_click']:.1f} s)", file=file)
    print(format_table(means, counts, "\nScored with the TRUE weighted-LR coefficients; rows binned by "
                                      "decile of e^z (seconds of expected watch time):"), file=file)
    rel_err_odds = np.abs(odds - data.expected_watch_time) / data.expected_watch_time
    rel_err_exact = np.abs(exact - data.expected_watch_time) / data.expected_watch_time
    print(f"\ne^z over-estimates E[T|x] by the factor 1/(1-p): median relative error "
          f"{np.median(rel_err_odds):.3%}, worst {rel_err_odds.max():.3%} (at the highest p); "
          f"after the exact correction e^z(1-p): worst {rel_err_exact.max():.2e}.", file=file)
    # observed vs true per decile, in standard errors of the decile's mean watch time
    order = np.argsort(odds, kind="stable")
    z_scores = [(data.watch_time[b].mean() - data.expected_watch_time[b].mean())
                / max(data.watch_time[b].std() / np.sqrt(b.size), 1e-300)
                for b in np.array_split(order, counts.shape[0])]
    print(f"Observed minus true E[T|x] per decile, in standard errors: "
          f"{' '.join(f'{z:+.1f}' for z in z_scores)} (sampling noise: mostly within +-2).", file=file)
    rate = data.n_samples / seconds
    print(f"fastwlr.score(output='odds'): {seconds * 1e3:.2f} ms for {data.n_samples:,} rows "
          f"({rate / 1e6:.1f} M rows/s)", file=file)


def _baseline_seconds(data, repeat=3):
    """numpy/scipy's e^(X @ w + b), for comparison (float64 result, like fastwlr's odds)."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        with np.errstate(over="ignore"):
            np.exp(data.X @ data.coef + data.intercept)
        best = min(best, time.perf_counter() - t0)
    return best


def train_model(data, *, solver="auto", seed=0, n_threads=None, backend=None):
    """Train a ``WatchTimeRanker`` on the impressions (watch time as the weight of a click);
    returns (ranker, seconds)."""
    from .estimators import WatchTimeRanker
    ranker = WatchTimeRanker(solver=solver, random_state=seed, n_threads=n_threads, backend=backend)
    t0 = time.perf_counter()
    ranker.fit(data.X, data.watch_time)
    return ranker, time.perf_counter() - t0


def report_trained(data, ranker, seconds, *, exact=None, exact_seconds=None, file=None):
    """The trained model's e^z against the truth, by decile of e^z; and the training time."""
    file = file or sys.stdout
    odds = ranker.predict(data.X)  # e^z: no click model given, so no correction
    means, counts = calibration(odds, {
        "trained e^z": odds,
        "e^z(1-p)": odds * (1.0 - data.p),  # exact correction with the true click probability
        "true e^z*": np.exp(data.log_odds),
        "true E[T|x]": data.expected_watch_time,
        "observed T": data.watch_time,
    })
    ran = ranker.solver_ if ranker.solver == "auto" else ranker.solver
    chose = f", which ran {ran!r}" if ranker.solver == "auto" else ""
    print(format_table(means, counts, f"\nTRAINED WatchTimeRanker(solver={ranker.solver!r}{chose}): {seconds:.2f} s "
                                      f"({ranker.n_iter_} {'epochs' if ran == 'sgd' else 'iterations'}); "
                                      "rows binned by decile of the trained e^z:"), file=file)
    ratio = means["e^z(1-p)"] / means["true E[T|x]"]
    print(f"Trained e^z(1-p) / true E[T|x] per decile: {' '.join(f'{r:.3f}' for r in ratio)}", file=file)
    if exact is not None:
        from ._kernels import Kernels
        from ._validation import check_features
        from ._weights import normalised_weights
        features = check_features(data.X)
        y, w_norm = data.y, normalised_weights(data.sample_weight)
        loss = [Kernels(m.backend, 1).objective_grad(features, y, w_norm, m.coef_[0], float(m.intercept_[0]),
                                                     m.alpha)[0] for m in (ranker, exact)]
        print(f"Objective {loss[0]:.6g} vs the exact optimum {loss[1]:.6g} ({exact.solver_}, {exact_seconds:.2f} s): "
              f"{(loss[0] - loss[1]) / loss[1]:+.3%}", file=file)


def main(argv=None):
    """Console entry point ``fastwlr-demo``."""
    parser = argparse.ArgumentParser(prog="fastwlr-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--n-samples", type=int, default=200_000, help="impressions (default 200000)")
    parser.add_argument("--n-features", type=int, default=64, help="dense features (default 64)")
    parser.add_argument("--sparse", action="store_true", help="hashed CSR features (2^20 columns, 40 a row)")
    parser.add_argument("--click-rate", type=float, default=0.05)
    parser.add_argument("--mean-watch-time", type=float, default=60.0, help="seconds per click")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-threads", type=int, default=None, help="default: the idle cores")
    parser.add_argument("--backend", default=None, help="auto, cython, numba or reference")
    parser.add_argument("--solver", default="auto", choices=["auto", "sgd", "lbfgs", "newton"],
                        help="WatchTimeRanker solver (default auto: exact, newton or lbfgs by the data's shape)")
    parser.add_argument("--no-train", action="store_true", help="skip training a WatchTimeRanker")
    args = parser.parse_args(argv)
    if args.n_samples < 10:
        parser.error("--n-samples must be >= 10 (ten deciles)")

    t0 = time.perf_counter()
    data = make_data(args.n_samples, args.n_features, sparse=args.sparse, click_rate=args.click_rate,
                     mean_watch_time=args.mean_watch_time, seed=args.seed)
    t_gen = time.perf_counter() - t0
    odds, seconds = score_model(data.X, data.coef, data.intercept, n_threads=args.n_threads, backend=args.backend)
    report(data, odds, seconds)
    t_np = _baseline_seconds(data)
    print(f"numpy/scipy np.exp(X @ w + b): {t_np * 1e3:.2f} ms ({t_np / seconds:.1f}x fastwlr's time); "
          f"data generation took {t_gen:.2f} s", file=sys.stdout)
    if not args.no_train:
        ranker, t_fit = train_model(data, solver=args.solver, seed=args.seed, n_threads=args.n_threads,
                                    backend=args.backend)
        exact, t_exact = (ranker, t_fit) if ranker.solver_ in ("lbfgs", "newton") else train_model(
            data, solver="lbfgs", n_threads=args.n_threads, backend=args.backend)
        report_trained(data, ranker, t_fit, exact=exact, exact_seconds=t_exact)
    return 0


if __name__ == "__main__":
    sys.exit(main())
