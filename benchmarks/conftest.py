"""Shared runner of the benchmark suites: ``pytest benchmarks`` (size from ``FASTWLR_BENCH_SIZE``).

Each test prepares one case of ``cases.py``, runs it once under its thread limits and checks the
result against the numpy reference (so ``--benchmark-disable`` is a correctness smoke run), then
times it with pytest-benchmark. Cases that time themselves (training to a target) run once and
report their own seconds in ``extra_info``.
"""
import pytest

import cases


def pytest_report_header(config):
    return f"fastwlr benchmarks: size {cases.size_name()!r} (FASTWLR_BENCH_SIZE), threads {cases.thread_counts()}"


@pytest.fixture
def run_case(benchmark):
    def run(case):
        try:
            fn, result = cases.run_once(case)          # warm-up (JIT, page faults) + correctness check
        except cases.Skip as exc:
            pytest.skip(str(exc))
        benchmark.group = f"{case.group}: {case.name} ({case.threads} thread{'s' if case.threads > 1 else ''})"
        benchmark.extra_info.update(impl=case.impl, kind=case.kind, data=case.data, threads=case.threads)
        with cases.threads_limited(case.threads):
            if case.self_timed:
                # a self-timed case already ran once in run_once: with timings off, don't run it again
                again = fn if not getattr(benchmark, "disabled", False) else (lambda: result)
                result = benchmark.pedantic(again, rounds=1, iterations=1)
                if isinstance(result, dict):
                    benchmark.extra_info.update(result)
            else:
                benchmark(fn)
    return run
