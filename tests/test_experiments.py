"""Every measurement script in benchmarks/experiments still runs against the current API.

Each runs with ``--smoke`` (tiny sizes, seconds; it prints and never writes docs/) in a fresh
interpreter on the fastwlr these tests import. A new script is picked up by the glob, so it must
have a ``--smoke`` mode too.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastwlr

EXPERIMENTS = Path(__file__).resolve().parent.parent / "benchmarks" / "experiments"
SCRIPTS = sorted(p.name for p in EXPERIMENTS.glob("*.py") if not p.name.startswith("_"))

# What a script's output must contain (a table it prints), where known.
EXPECT = {
    "batch_sweep.py": "lowest Scorer ratio",
    "build_ab.py": "B/A",
    "busy_threads.py": "worst median ratio with busy processes",
    "after_blas.py": "default / one thread right after a matmul",
    "dask_scaling.py": "| fixed cost of a pass |",
    "exact_correction.py": "| click rate |",
    "glm_study.py": "| Tweedie 1.9 |",
    "kernel_ceiling.py": "| kernel + prefetch |",
    "metrics_scaling.py": "| xauc |",
    "negative_sampling.py": "| generated, well specified |",
    "newton_vs_sklearn.py": "| fastwlr newton |",
    "quick_backends.py": "numba/cython",
    "quick_lbfgs.py": "speed-up, time to 1% of the optimum",
    "quick_scoring.py": "the floor",
    "quick_sgd.py": "gradient vs resample",
    "quick_topk.py": "score_topk, k=10",
    "sgd_vs_vw.py": "| gap, 1 pass |",
    "shoppers_alphas.py": "| rel. diff to newton-cholesky |",
    "solver_crossover.py": "| auto / fastest |",
    "time_to_gap.py": "| time to gap 0.001 | time to gap 0.0001 |",
    "training_defaults.py": "fastest sklearn exact solver's time / this",
    "wake_cost.py": "default / best of 1 and 2",
    "weighting_experiment.py": "| weighting |",
}
# Scripts that compare or time particular backends.
NEEDS = {"build_ab.py": ("cython",), "quick_backends.py": ("cython", "numba"), "quick_topk.py": ("cython",)}


def test_the_experiments_are_found():
    assert set(EXPECT) <= set(SCRIPTS), sorted(set(EXPECT) - set(SCRIPTS))


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_experiment_runs_in_smoke_mode(script):
    missing = [b for b in NEEDS.get(script, ()) if b not in fastwlr.available_backends()]
    if missing:
        pytest.skip(f"{script} times backend(s) {', '.join(NEEDS[script])}; {', '.join(missing)} not available here")
    root = str(Path(fastwlr.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    env.pop("FASTWLR_BACKEND", None)
    out = subprocess.run([sys.executable, str(EXPERIMENTS / script), "--smoke"], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert EXPECT.get(script, "") in out.stdout, out.stdout[-3000:]
