"""Time to within 1 % of the exact optimum: fastwlr's lbfgs vs scikit-learn's LogisticRegression(lbfgs).

Same data, same sample weights, same regularisation (fastwlr alpha = 1 / (C * sum(w)), C = 1, scikit-learn's
default), 1M x 64 dense float32 impressions from ``fastwlr.datasets.make_watch_time`` (positives
weighted by watch time, negatives by 1).

Method: the exact optimum L* is a tight fastwlr lbfgs fit (max |gradient| <= 1e-9). Each solver is then
run from scratch with max_iter = 1, 2, 3, ... (wall time of the whole ``fit``, validation included) until
its objective is within 1 % of L* (``(L - L*) / L* <= 0.01``, the objective being the weighted-mean log
loss + penalty, evaluated by the numpy reference). Both solvers are also timed with their default
tolerances. Run:

    python benchmarks/experiments/quick_lbfgs.py [--n 1000000] [--d 64] [--threads 2] [--repeat 3]
    python benchmarks/experiments/quick_lbfgs.py --data freMTPL2 --alpha 1e-6   # real claims, weights up to 4e6
    python benchmarks/experiments/quick_lbfgs.py --smoke    # seconds: 20,000 x 8, one timing per point

With ``--data freMTPL2`` (``$FASTWLR_DATA_DIR``, see ``fastwlr.datasets.load_claims``) it also times
``WatchTimeRanker()`` with its default (SGD) solver and reports its gap to the optimum.

Prints one table; ratios are from this one run on this machine.
"""
import argparse
import time
import warnings

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many timings per point")
    ap.add_argument("--gap", type=float, default=0.01)
    ap.add_argument("--data", default="generated", help="'generated' or a load_claims name, e.g. freMTPL2")
    ap.add_argument("--alpha", type=float, default=None, help="default: 1 / sum(w), sklearn's C = 1")
    ap.add_argument("--smoke", action="store_true", help="seconds: 20,000 x 8 generated rows, one timing per point")
    args = ap.parse_args()
    if args.smoke:
        args.n, args.d, args.repeat = 20_000, 8, 1

    from sklearn.linear_model import LogisticRegression
    from fastwlr import WeightedLogisticRegression
    from fastwlr.backends import reference as ref
    from fastwlr.datasets import make_watch_time

    if args.data == "generated":
        data = make_watch_time(args.n, args.d, dtype=np.float32, random_state=0)
    else:
        from fastwlr.datasets import load_claims
        data = load_claims(args.data)
    X, y = data.X, data.clicked.astype(np.float64)
    w = np.where(data.clicked, data.watch_time, 1.0)
    alpha = 1.0 / w.sum() if args.alpha is None else args.alpha
    C = 1.0 / (alpha * w.sum())
    w_norm = w * (len(w) / w.sum())
    print(f"data: {X.shape} {X.dtype}, click rate {y.mean():.3f}, weights max {w.max():.0f}, "
          f"alpha = {alpha:.3g}, i.e. sklearn C = 1/(alpha sum w) = {C:.3g}")

    def objective(coef, intercept):
        return ref.objective_grad_dense(X, y, w_norm, np.ravel(coef), float(np.ravel(intercept)[0]), alpha)[0]

    def ours(**kw):
        return WeightedLogisticRegression(alpha=alpha, solver="lbfgs", n_threads=args.threads, **kw)

    def theirs(**kw):
        return LogisticRegression(C=C, solver="lbfgs", **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = ours(tol=1e-9).fit(X, y, w)
    best = objective(exact.coef_, exact.intercept_)
    print(f"exact optimum L* = {best:.10g} ({exact.n_iter_} iterations)")

    def timed(make):
        times = []
        for _ in range(args.repeat):
            est = make()
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X, y, sample_weight=w)
            times.append(time.perf_counter() - t0)
        return min(times), est

    rows = []
    for name, make in (("fastwlr lbfgs", ours), ("sklearn LogisticRegression(lbfgs)", theirs)):
        for k in range(1, 200):
            t, est = timed(lambda: make(max_iter=k))
            gap = (objective(est.coef_, est.intercept_) - best) / best
            if gap <= args.gap:
                break
        t_def, est_def = timed(lambda: make())
        gap_def = (objective(est_def.coef_, est_def.intercept_) - best) / best
        rows.append((name, k, t, t_def, int(np.ravel(est_def.n_iter_)[0]), gap_def))

    print(f"\n{'solver':36s} {'iters to ' + format(args.gap, '.0%'):>12s} {'time to ' + format(args.gap, '.0%'):>11s}"
          f" {'default fit':>12s} {'its':>4s} {'gap at default':>15s}")
    for name, k, t, t_def, it_def, gap_def in rows:
        print(f"{name:36s} {k:12d} {t:10.3f}s {t_def:11.3f}s {it_def:4d} {gap_def:15.2e}")
    print(f"\nspeed-up, time to {args.gap:.0%} of the optimum: {rows[1][2] / rows[0][2]:.2f}x; "
          f"default fits: {rows[1][3] / rows[0][3]:.2f}x")

    if args.data != "generated":
        from fastwlr import WatchTimeRanker
        t_sgd, ranker = timed(lambda: _Recipe(WatchTimeRanker(alpha=alpha, random_state=0, n_threads=args.threads)))
        gap = (objective(ranker.est.coef_, ranker.est.intercept_) - best) / best
        print(f"WatchTimeRanker() default solver ({ranker.est.solver}): {t_sgd:.2f} s, "
              f"{ranker.est.n_iter_} epochs, objective {gap:+.3%} from the optimum")

    # One loss + gradient evaluation (the solvers' inner cost), at the optimum: fastwlr's one-pass
    # kernel vs scikit-learn's LinearModelLoss (private API: skipped if it moved).
    from fastwlr._config import get_backend, resolve_n_threads
    backend, n_threads = get_backend(), resolve_n_threads(args.threads)
    coef = np.ascontiguousarray(exact.coef_[0])
    t_ours = min(_time(lambda: backend.objective_grad_dense(X, y, w_norm, coef, float(exact.intercept_[0]),
                                                             alpha, n_threads)) for _ in range(args.repeat))
    try:
        from sklearn._loss.loss import HalfBinomialLoss
        from sklearn.linear_model._linear_loss import LinearModelLoss
        lml = LinearModelLoss(base_loss=HalfBinomialLoss(), fit_intercept=True)
        theta = np.append(coef, exact.intercept_[0]).astype(X.dtype)
        y32, w32 = y.astype(X.dtype), w_norm.astype(X.dtype)
        t_sk = min(_time(lambda: lml.loss_gradient(theta, X, y32, sample_weight=w32, l2_reg_strength=alpha,
                                                   n_threads=n_threads)) for _ in range(args.repeat))
        print(f"one loss+gradient evaluation: fastwlr {t_ours * 1e3:.1f} ms, scikit-learn {t_sk * 1e3:.1f} ms "
              f"({t_sk / t_ours:.2f}x)")
    except ImportError:
        print(f"one loss+gradient evaluation: fastwlr {t_ours * 1e3:.1f} ms")


class _Recipe:
    """fit(X, y, sample_weight=w) -> WatchTimeRanker.fit(X, watch_time): the same weights by construction."""

    def __init__(self, est):
        self.est = est

    def fit(self, X, y, sample_weight):
        # w = T for positives, 1 for negatives, so T = w * y
        self.est.fit(X, sample_weight * y)
        return self


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
