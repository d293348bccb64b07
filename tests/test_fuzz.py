"""The CI fuzz suite: generated hostile inputs for every public entry point (``tests/fuzzing.py``
draws them and holds the oracle). Each case must match the numpy reference and leave its inputs
untouched, or raise a documented ValueError/TypeError with a message; anything else fails.

``FASTWLR_FUZZ_EXAMPLES`` sets the examples per entry point (default 150); the long campaign,
with each case in a worker process so that a crash is recorded, is ``python tests/fuzz_campaign.py``.
"""
import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

import fuzzing  # noqa: E402

EXAMPLES = int(os.environ.get("FASTWLR_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def _fuzz_test(name):
    @FUZZ
    @given(case=fuzzing.CASES[name])
    def test(case):
        fuzzing.run(name, case)
    test.__name__ = f"test_fuzz_{name}"
    test.__doc__ = f"{name}: the reference's answer or a documented error, for any generated input."
    return test


test_fuzz_score = _fuzz_test("score")
test_fuzz_scorer = _fuzz_test("Scorer")
test_fuzz_topk = _fuzz_test("topk")
test_fuzz_score_topk = _fuzz_test("score_topk")
test_fuzz_estimator = _fuzz_test("estimator")
test_fuzz_metrics = _fuzz_test("metrics")
test_fuzz_make_watch_time = _fuzz_test("make_watch_time")
test_fuzz_model_files = _fuzz_test("load")


def test_the_oracle_catches_a_wrong_result(monkeypatch):
    # the suite must be able to fail: a score() that is off by one ulp in one row is a finding
    import numpy as np
    import fastwlr
    real = fastwlr.score

    def off(*args, **kwargs):
        out = real(*args, **kwargs)
        if out.size:
            out[0] = np.nextafter(out[0], np.inf) * (1 + 1e-6)
        return out
    monkeypatch.setattr(fastwlr, "score", off)
    f = fuzzing.Features(np.ones((3, 2)), np.ones((3, 2)), np.dtype(np.float64))
    case = dict(feats=f, coef=np.array([1.0, 2.0]), intercept=0.5, coef_fail=None, output="log_odds", n_threads=1,
                dtype=None, out_kind="none", backend=None)
    with pytest.raises(fuzzing.Finding, match="log_odds: row"):
        fuzzing.run("score", case)


def test_the_oracle_catches_a_modified_input_and_an_undocumented_error():
    import numpy as np
    x = np.zeros(3)

    def mutates():
        x[0] = 1.0
    with pytest.raises(fuzzing.Finding, match="modified its input"):
        fuzzing.call_checked(mutates, {"x": x})
    with pytest.raises(fuzzing.Finding, match="undocumented exception KeyError"):
        fuzzing.call_checked(lambda: {}["k"], {})
    with pytest.raises(fuzzing.Finding, match="documentation says is rejected"):
        fuzzing.call_checked(lambda: 1, {}, must_fail="inf in X")


def test_the_campaign_records_a_crash_with_its_case_and_goes_on(tmp_path):
    # a worker that dies mid-case (here an abort at the 3rd case) leaves that case saved as a
    # finding; the campaign restarts the worker for the cases that remain and exits with status 1
    import os
    import pickle
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, FASTWLR_FUZZ_CRASH_AT="3", PYTHONPATH=os.pathsep.join(
        [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.run([sys.executable, os.path.join(root, "tests", "fuzz_campaign.py"), "--cases", "6",
                           "--entry", "make_watch_time", "--jobs", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    crashes = list(tmp_path.glob("make_watch_time-crash-*.pkl"))
    assert len(crashes) == 2, proc.stdout   # the restarted worker aborts at its own 3rd case too
    saved = pickle.loads(crashes[0].read_bytes())
    assert saved["entry"] == "make_watch_time" and isinstance(saved["case"], dict)
    assert "CRASH" in proc.stdout and "make_watch_time" in proc.stdout
