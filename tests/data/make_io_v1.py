"""Write tests/data/io_v1: model files of format fastwlr-model version 1, and what they must give.

The committed files were written by fastwlr 0.1.0 as it was before the estimators described their
own state to ``fastwlr._io`` (the commit "docs/weighting: metric timings from the final
metrics_scaling run"), with the Cython backend; ``tests/test_io.py`` checks that they still load
and predict the same. Rerunning this script writes files of the fastwlr it imports: do it only to
add cases, and keep the files of older versions.

    PYTHONPATH=<fastwlr source tree> python tests/data/make_io_v1.py [OUT_DIR]
"""
import sys
from pathlib import Path

import numpy as np

import fastwlr
from fastwlr import WatchTimeRanker, WeightedLogisticRegression


def data():
    rng = np.random.default_rng(20240)
    X = rng.standard_normal((300, 4))
    T = np.where(rng.random(300) < 0.3, rng.lognormal(2, 1, 300), 0.0)
    return X, T


def models(X, T):
    labels = np.where(T > 0, "watched", "skipped")
    return {
        # a classifier with string labels, exact solver: no SGD state
        "wlr_lbfgs": WeightedLogisticRegression(alpha=1e-3, solver="lbfgs").fit(X, labels),
        # a classifier trained by SGD with numeric labels and weights: SGD state saved
        "wlr_sgd": WeightedLogisticRegression(alpha=1e-4, max_iter=3, tol=None, random_state=1, n_threads=1)
        .fit(X, T > 0, sample_weight=np.where(T > 0, T, 1.0)),
        # a ranker with a click model, both with SGD state: nested header and arrays
        "ranker_click_sgd": WatchTimeRanker(alpha=1e-4, max_iter=3, tol=None, random_state=0, n_threads=1,
                                            fit_click_model=True).fit(X, T),
        # a ranker after one partial_fit chunk (FTRL with L1, no averaging): continues after loading
        "ranker_partial_ftrl": WatchTimeRanker(alpha=1e-4, l1_ratio=0.5, optimizer="ftrl", average=False,
                                               random_state=0, n_threads=1).partial_fit(X[:150], T[:150]),
    }


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    X, T = data()
    expected = {}
    for name, est in models(X, T).items():
        est.save(out / f"{name}.npz")
        expected[f"{name}/coef"] = est.coef_
        expected[f"{name}/intercept"] = est.intercept_
        expected[f"{name}/predict"] = est.predict(X)
        if getattr(est, "click_model_", None) is not None:
            expected[f"{name}/click_model/coef"] = est.click_model_.coef_
        if name == "ranker_partial_ftrl":  # one more chunk, the row order drawn from a fixed stream
            est._partial_rng = np.random.default_rng(1)
            est.partial_fit(X[150:], T[150:])
            expected[f"{name}/continued_coef"] = est.coef_
            expected[f"{name}/continued_intercept"] = est.intercept_
    np.savez(out / "expected.npz", **expected)
    print(f"fastwlr {fastwlr.__version__} ({fastwlr.get_backend().__name__}) wrote {sorted(expected)} to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "io_v1")
