"""pytest-benchmark suite: training cases of ``cases.py`` (every backend and peer, threads 1 and all).

Run: ``FASTWLR_BENCH_SIZE=quick pytest benchmarks/test_bench_training.py``; CI: ``FASTWLR_BENCH_SIZE=smoke
pytest benchmarks --benchmark-disable`` (each case once, checked against the numpy reference).
"""
import pytest

import cases

CASES = cases.training_cases(cases.size_name())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_training(run_case, case):
    run_case(case)
