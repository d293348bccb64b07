"""fastwlr without its optional parts: Numba not installed, the compiled core not built.

Each test runs a fresh interpreter in which the missing part is hidden by a meta-path finder (an
import of it fails as if it were not installed), so that these cases are checked on a machine that
has everything, and ``import fastwlr`` is checked to load neither.
"""
import os
import subprocess
import sys
import textwrap

import pytest

import fastwlr
from fastwlr import _config

EXTRA = 'pip install "fastwlr[numba]"'
HAS_NUMBA = "numba" in fastwlr.available_backends()
HAS_CORE = "cython" in fastwlr.available_backends()

# Prepended to each child's code: HIDE = names whose import must fail, as if not installed.
BLOCKER = textwrap.dedent("""
    import sys, importlib.abc

    class _Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if any(fullname == h or fullname.startswith(h if h.endswith("_") else h + ".") for h in HIDE):
                raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
            return None

    sys.meta_path.insert(0, _Hide())
""")
CORE = "fastwlr.backends.cython_core._"   # the core's extension modules (_scoring, _topk, ...)


def run_python(code, hide=(), **env):
    """Run ``code`` in a fresh interpreter on the fastwlr this process imports, with ``hide`` hidden.

    It runs in the directory holding that package: from a checkout's root ``python -c`` would
    import the uncompiled source tree instead."""
    root = os.path.dirname(os.path.dirname(fastwlr.__file__))
    full_env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    if "FASTWLR_BACKEND" not in env:
        full_env.pop("FASTWLR_BACKEND", None)
    source = f"HIDE = {list(hide)!r}\n" + BLOCKER + textwrap.dedent(code)
    r = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, env=full_env,
                       timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


# Every feature of the package, on whatever backend "auto" picks; prints that backend's name last.
FEATURES = """
    import warnings
    import numpy as np
    import fastwlr
    from fastwlr.datasets import make_watch_time
    from fastwlr.metrics import weighted_per_user_loss, xauc

    assert "numba" not in sys.modules, "import fastwlr imported numba"
    data = make_watch_time(3000, 6, random_state=0)
    ranker = fastwlr.WatchTimeRanker(random_state=0, max_iter=3, fit_click_model=True).fit(data.X, data.watch_time)
    exact = fastwlr.WatchTimeRanker(solver="lbfgs").fit(data.X, data.watch_time)
    pred = ranker.predict(data.X)
    idx, best = ranker.rank(data.X, k=3, offsets=data.offsets)
    z = fastwlr.score(data.X, exact.coef_, exact.intercept_, output="log_odds")
    top, _ = fastwlr.topk(z, 3, offsets=data.offsets)
    assert np.array_equal(top, fastwlr.score_topk(data.X, exact.coef_, exact.intercept_, 3, offsets=data.offsets)[0])
    assert np.isfinite(weighted_per_user_loss(data.watch_time, pred, data.offsets)) and np.isfinite(pred).all()
    assert 0.5 < xauc(data.watch_time, exact.predict(data.X), data.offsets) <= 1.0
    assert np.abs(exact.coef_ - data.coef).max() < 0.5
    X_csr = make_watch_time(2000, sparse=True, n_hashed_features=1024, nnz_per_row=8, random_state=1)
    fastwlr.WatchTimeRanker(random_state=0, max_iter=2).fit(X_csr.X, X_csr.watch_time).predict(X_csr.X)
    print(fastwlr.get_backend().name)
"""


def test_everything_works_without_numba():
    r = run_python(FEATURES + """
    assert "numba" not in fastwlr.available_backends()
    """, hide=["numba"])
    assert r.stdout.split()[-1] == ("cython" if HAS_CORE else "reference")
    if HAS_CORE:
        assert "RuntimeWarning" not in r.stderr    # the compiled core: nothing to say


def test_without_core_and_numba_auto_runs_the_reference_and_says_so_once():
    r = run_python(FEATURES + """
    assert fastwlr.available_backends() == ["reference"], fastwlr.available_backends()
    """, hide=["numba", CORE], PYTHONWARNINGS="default")
    assert r.stdout.split()[-1] == "reference"
    assert r.stderr.count("RuntimeWarning") == 1, r.stderr
    assert "using the 'reference' backend because neither faster one is available" in r.stderr
    assert EXTRA in r.stderr and "C compiler" in r.stderr


@pytest.mark.skipif(not HAS_NUMBA, reason="needs numba installed (the [numba] extra)")
def test_without_core_auto_runs_numba_and_says_so_once():
    r = run_python("""
    import warnings
    import numpy as np
    import fastwlr
    assert "numba" not in sys.modules
    X = np.random.default_rng(0).standard_normal((50, 4))
    expected = fastwlr.score(X, np.ones(4), backend="reference")
    np.testing.assert_allclose(fastwlr.score(X, np.ones(4)), expected, rtol=1e-12)
    fastwlr.score(X, np.ones(4))
    print(fastwlr.get_backend().name)
    """, hide=[CORE], PYTHONWARNINGS="default")
    assert r.stdout.split()[-1] == "numba"
    assert r.stderr.count("RuntimeWarning") == 1, r.stderr
    assert "using the 'numba' backend because the compiled core is not available" in r.stderr


def test_asking_for_numba_without_numba_names_the_extra():
    r = run_python("""
    import numpy as np
    import fastwlr
    X = np.ones((2, 2))
    calls = {
        "get_backend": lambda: fastwlr.get_backend("numba"),
        "set_backend": lambda: fastwlr.set_backend("numba"),
        "use_backend": lambda: fastwlr.use_backend("numba").__enter__(),
        "score": lambda: fastwlr.score(X, [1, 1], backend="numba"),
        "topk": lambda: fastwlr.topk(np.ones(3), 1, backend="numba"),
        "estimator": lambda: fastwlr.WatchTimeRanker(backend="numba").fit(X, [0.0, 3.0]),
    }
    for what, call in calls.items():
        try:
            call()
        except ImportError as exc:
            assert 'pip install "fastwlr[numba]"' in str(exc), (what, str(exc))
        else:
            raise AssertionError(f"{what}: no ImportError")
    assert fastwlr.get_backend().name in ("cython", "reference")   # the setting did not change
    print("ok")
    """, hide=["numba"])
    assert r.stdout.split()[-1] == "ok"


def test_numba_from_the_environment_without_numba_names_the_variable_and_the_extra():
    root = os.path.dirname(os.path.dirname(fastwlr.__file__))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), FASTWLR_BACKEND="numba")
    code = f"HIDE = ['numba']\n{BLOCKER}\nimport numpy as np, fastwlr\nfastwlr.score(np.ones((2, 2)), [1, 1])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, cwd=root)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastwlr backend 'numba' is not available (from the FASTWLR_BACKEND "
                           "environment variable)"), last
    assert EXTRA in last


def test_show_config_without_numba_says_not_installed():
    r = run_python("""
    import fastwlr
    fastwlr.show_config()
    """, hide=["numba"])
    assert f"numba:                       not installed (optional: {EXTRA})" in r.stdout
    assert f"NOT available: Numba is not installed; it is optional: {EXTRA}" in r.stdout


@pytest.mark.skipif(not HAS_CORE, reason="needs the compiled core (without it, auto itself runs numba)")
def test_import_and_the_compiled_core_never_load_numba():
    # numba installed or not: with the core built, nothing but an explicit backend="numba" imports it
    r = run_python(FEATURES + """
    assert "numba" not in sys.modules, "a feature imported numba"
    """)
    assert r.stdout.split()[-1] == "cython"


def test_an_unbuilt_core_is_told_apart_from_a_broken_one(monkeypatch):
    exc = ImportError("cannot import name '_scoring' from 'fastwlr.backends.cython_core'")
    monkeypatch.setattr(_config, "_core_built", lambda: False)
    assert "the compiled core was not built" in _config._explain("cython", exc)
    assert "FASTWLR_BUILD_EXT" in _config._explain("cython", exc)
    monkeypatch.setattr(_config, "_core_built", lambda: True)
    assert _config._explain("cython", exc) == f"ImportError: {exc}"
    missing = ModuleNotFoundError("No module named 'numba'", name="numba")
    assert _config._explain("numba", missing) == f"Numba is not installed; it is optional: {EXTRA}"
    broken = ImportError("numba needs numpy < 3")
    assert "Numba is installed, but the backend failed to import" in _config._explain("numba", broken)


def test_core_built_matches_what_imports():
    assert _config._core_built() == HAS_CORE
