"""pytest-benchmark suite: scoring cases of ``cases.py`` (every backend and peer, threads 1 and all).

Run: ``FASTWLR_BENCH_SIZE=quick pytest benchmarks/test_bench_scoring.py``; CI: ``FASTWLR_BENCH_SIZE=smoke
pytest benchmarks --benchmark-disable`` (each case once, checked against the numpy reference).
"""
import pytest

import cases

CASES = cases.scoring_cases(cases.size_name()) + cases.floor_cases(cases.size_name())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_scoring(run_case, case):
    run_case(case)
