"""Backend selection (backend=, use_backend, set_backend, FASTWLR_BACKEND, "auto"), show_config,
and the Numba and Cython backends sharing one process (threads, OpenMP runtimes, disk cache)."""
import io
import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import fastwlr
from fastwlr import _config
from fastwlr._config import BACKENDS, available_backends, current_backend, get_backend

AVAILABLE = available_backends()


@pytest.fixture
def restore_setting():
    previous = dict(_config._state)
    yield
    _config._state.clear()
    _config._state.update(previous)


@pytest.fixture
def fake_unavailable(monkeypatch):
    """Pretend some backends failed to import (without touching the real modules)."""
    def make(*names):
        loaded = dict(_config._loaded)
        errors = dict(_config._load_errors)
        for name in names:
            loaded.pop(name, None)
            errors[name] = f"ImportError: pretend {name} is missing"
        monkeypatch.setattr(_config, "_loaded", loaded)
        monkeypatch.setattr(_config, "_load_errors", errors)
        monkeypatch.setattr(_config, "_auto_warned", set())
    return make


def run_python(code, **env):
    """Run code in a fresh interpreter (the package as this process imports it).

    It runs in the directory that holds that package: ``python -c`` puts its working directory first
    on sys.path, and from a checkout's root that would import the uncompiled source tree instead."""
    root = os.path.dirname(os.path.dirname(fastwlr.__file__))
    full_env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    if "FASTWLR_BACKEND" not in env:
        full_env.pop("FASTWLR_BACKEND", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=300,
                          cwd=root)


# ------------------------------------------------------------------------------ set_backend / use_backend

def test_set_backend_is_process_wide_and_returns_previous(restore_setting):
    name = AVAILABLE[-1]
    previous = fastwlr.set_backend(name)
    assert current_backend() == name and get_backend().name == name
    seen = []
    t = threading.Thread(target=lambda: seen.append(get_backend().name))
    t.start()
    t.join()
    assert seen == [name]                         # other threads see it too
    assert fastwlr.set_backend(previous) == name
    assert current_backend() == previous


def test_set_backend_rejects_bad_names(restore_setting, fake_unavailable):
    before = current_backend()
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of .*'cuda'"):
        fastwlr.set_backend("cuda")
    with pytest.raises(TypeError, match="backend must be a string"):
        fastwlr.set_backend(3)
    fake_unavailable("numba")
    with pytest.raises(ImportError, match="'numba' is not available: ImportError: pretend numba is missing"):
        fastwlr.set_backend("numba")             # fails now, not at the first call
    assert current_backend() == before           # and leaves the setting alone


def test_use_backend_nests_restores_and_beats_set_backend(restore_setting):
    outer, inner = AVAILABLE[0], AVAILABLE[-1]
    fastwlr.set_backend("auto")
    with fastwlr.use_backend(outer):
        assert get_backend().name == outer
        with pytest.raises(RuntimeError):
            with fastwlr.use_backend(inner):
                assert get_backend().name == inner
                raise RuntimeError("restored even on error")
        assert get_backend().name == outer
        fastwlr.set_backend(inner)               # the block still wins over the process setting
        assert get_backend().name == outer
        assert get_backend("reference").name == "reference"    # and backend= wins over the block
    assert current_backend() == inner
    with pytest.raises(ValueError):
        with fastwlr.use_backend("nope"):
            pass


def test_use_backend_is_thread_local():
    if len(AVAILABLE) < 2:
        pytest.skip("needs two backends")
    a, b = AVAILABLE[0], AVAILABLE[-1]
    barrier = threading.Barrier(2, timeout=30)
    seen = {}

    def worker(tag, name):
        with fastwlr.use_backend(name):
            barrier.wait()                       # both blocks are open at once
            seen[tag] = get_backend().name
            barrier.wait()

    threads = [threading.Thread(target=worker, args=(0, a)), threading.Thread(target=worker, args=(1, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {0: a, 1: b}


def test_environment_variable_sets_the_default():
    r = run_python("import fastwlr, numpy as np; from fastwlr._config import current_backend, get_backend;"
                   "fastwlr.score(np.ones((2, 2)), [1, 1]); print(current_backend(), get_backend().name)",
                   FASTWLR_BACKEND="reference")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["reference", "reference"]
    r = run_python("import fastwlr, numpy as np; fastwlr.score(np.ones((2, 2)), [1, 1])", FASTWLR_BACKEND="gpu")
    assert r.returncode != 0
    assert "got 'gpu' (from the FASTWLR_BACKEND environment variable)" in r.stderr


# ------------------------------------------------------------------------------ "auto"

def test_auto_prefers_the_first_available_and_warns_once_when_falling_back(fake_unavailable):
    first = available_backends()[0]
    if first == _config.AUTO_ORDER[0]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")       # the preferred backend: no warning
            assert get_backend("auto").name == first
    else:                                        # this install has no compiled core: auto says so
        _config._auto_warned.discard(first)      # warned already by an earlier test: warn again
        with pytest.warns(RuntimeWarning, match=f"using the '{first}' backend because"):
            assert get_backend("auto").name == first
    fake_unavailable("cython")
    expected = "numba" if "numba" in AVAILABLE else "reference"
    with pytest.warns(RuntimeWarning, match=f"using the '{expected}' backend because .*pretend cython is missing"):
        assert get_backend("auto").name == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # once per process
        assert get_backend("auto").name == expected
    fake_unavailable("cython", "numba")
    with pytest.warns(RuntimeWarning, match="using the 'reference' backend because"):
        assert get_backend("auto").name == "reference"


def test_no_backend_at_all_is_a_clear_error(fake_unavailable):
    fake_unavailable(*BACKENDS)
    with pytest.raises(ImportError, match="no fastwlr backend imports"):
        get_backend("auto")


# ------------------------------------------------------------------------------ show_config

def test_show_config_reports_backends_versions_threads():
    buf = io.StringIO()
    fastwlr.show_config(file=buf)
    text = buf.getvalue()
    for needle in ("numpy:", "scipy:", "numba:", "backend in use:", "default n_threads:", "cython:",
                   "reference:"):
        assert needle in text, needle
    info = _config.config_info()
    assert info["backend_resolved"] == get_backend().name
    assert set(info["backends"]) == set(BACKENDS)
    for name, entry in info["backends"].items():
        assert entry["available"] == (name in AVAILABLE)
        if not entry["available"]:
            assert entry["error"]
    if "cython" in AVAILABLE:
        assert {"openmp", "simd", "omp_max_threads"} <= set(info["backends"]["cython"])
    if "numba" in AVAILABLE:
        assert {"version", "threading_layer", "num_threads"} <= set(info["backends"]["numba"])


def test_show_config_names_why_a_backend_is_missing(fake_unavailable):
    fake_unavailable("numba")
    buf = io.StringIO()
    fastwlr.show_config(file=buf)
    assert "NOT available: ImportError: pretend numba is missing" in buf.getvalue()


# ------------------------------------------------------------------------------ Numba + Cython in one process

needs_both = pytest.mark.skipif(not {"cython", "numba"} <= set(AVAILABLE), reason="needs cython and numba")


@needs_both
def test_numba_and_cython_share_a_process_and_threads(rng):
    """Both backends' parallel kernels, interleaved and concurrently from two Python threads
    (two OpenMP runtimes in one process: https://github.com/numba/numba/issues/3341). Results must be the
    single-thread ones."""
    X = rng.standard_normal((40000, 16))
    coef = rng.standard_normal(16)
    offsets = np.arange(0, 40001, 100)
    expected = {n: (fastwlr.score(X, coef, backend=n, n_threads=1),
                    fastwlr.score_topk(X, coef, k=3, offsets=offsets, backend=n, n_threads=1)[0])
                for n in ("cython", "numba")}
    errors = []

    def hammer(name):
        try:
            for _ in range(5):
                s = fastwlr.score(X, coef, backend=name, n_threads=2)
                idx = fastwlr.score_topk(X, coef, k=3, offsets=offsets, backend=name, n_threads=2)[0]
                if not (np.array_equal(s, expected[name][0]) and np.array_equal(idx, expected[name][1])):
                    errors.append(f"{name}: results changed")
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(f"{name}: {exc!r}")

    threads = [threading.Thread(target=hammer, args=(n,)) for n in ("cython", "numba", "numba", "cython")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    layer = _config.config_info()["backends"]["numba"]["threading_layer"]
    assert layer in ("omp", "tbb", "workqueue")


@needs_both
def test_fresh_process_both_backends_and_unwritable_cache_dir():
    """A fresh process runs both backends in parallel mode; a NUMBA_CACHE_DIR that cannot be
    created does not break the numba backend (it caches elsewhere or compiles in memory)."""
    code = ("import numpy as np, fastwlr; X = np.random.default_rng(0).standard_normal((50000, 8)); c = np.ones(8);"
            "a = fastwlr.score(X, c, backend='cython', n_threads=2); b = fastwlr.score(X, c, backend='numba', n_threads=2);"
            "assert np.allclose(a, b, rtol=1e-12); a = fastwlr.score(X, c, backend='cython', n_threads=2);"
            "print(fastwlr._config.config_info()['backends']['numba']['threading_layer'])")
    r = run_python(code, NUMBA_CACHE_DIR="/dev/null/not-a-directory")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("omp", "tbb", "workqueue")


def test_jit_falls_back_to_no_cache_when_no_locator(monkeypatch):
    """Numba refuses cache=True at decoration when no cache directory is usable: the kernel must
    still compile (without a disk cache), with a warning that says how to fix it."""
    numba = pytest.importorskip("numba")
    from fastwlr.backends.numba_jit import _jit

    real = numba.njit

    def fussy(*args, **kwargs):
        if kwargs.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x.py'")
        return real(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", fussy)
    monkeypatch.setattr(_jit, "CACHE_ERRORS", [])
    with pytest.warns(RuntimeWarning, match="NUMBA_CACHE_DIR"):
        f = _jit.jit()(lambda x: x + 1.0)
    assert f(1.0) == 2.0
    assert _jit.CACHE_ERRORS


@pytest.mark.skipif("numba" not in AVAILABLE, reason="needs numba")
def test_numba_thread_count_is_capped_and_restored(rng):
    import numba
    from fastwlr.backends import numba_jit
    X = rng.standard_normal((30000, 8))
    coef = rng.standard_normal(8)
    before = numba.get_num_threads()
    expected = fastwlr.score(X, coef, backend="numba", n_threads=1)
    # more threads than Numba's pool (NUMBA_NUM_THREADS): capped, same result, setting restored
    np.testing.assert_array_equal(fastwlr.score(X, coef, backend="numba", n_threads=10_000), expected)
    assert numba.get_num_threads() == before
    assert numba_jit.warmup(dtypes=(np.float64,), index_dtypes=(np.int64,)) >= 0.0


# ------------------------------------------------------------------------- default threads

@pytest.fixture
def fresh_reading(monkeypatch):
    """default_n_threads without its cached reading; returns a setter for what /proc says."""
    import fastwlr._config as config
    monkeypatch.setattr(config, "_busy", [-1.0, config._N_CPU])
    seen = {"others": 0}
    monkeypatch.setattr(config, "_running_elsewhere", lambda: seen["others"])
    monkeypatch.setattr(config, "_own_running", lambda: seen.get("own", 1))

    def set_others(value, own=1):
        seen["others"], seen["own"] = value, own
        config._busy[0] = -1.0   # expire the reading
    return config, set_others


@pytest.fixture
def clock(monkeypatch):
    """default_n_threads on a fake monotonic clock: returns a setter of now (seconds)."""
    import fastwlr._config as config
    now = [100.0]
    monkeypatch.setattr(config, "_monotonic", lambda: now[0])
    monkeypatch.setattr(config, "_clock", [-1.0, -1.0, -1.0])

    def at(t):
        now[0] = t
    return at


def test_default_threads_are_the_idle_cores(fresh_reading, monkeypatch):
    # (no work given: the idle-core rule alone)
    config, set_others = fresh_reading
    monkeypatch.setattr(config, "_N_CPU", 8)
    for others, expected in [(0, 8), (3, 5), (7, 1), (8, 1), (30, 1), (33, 8), (None, 8)]:
        set_others(others)   # 33 > 4 x 8: a host's count seen from a container, ignored
        assert config.default_n_threads() == expected, others
        assert config.resolve_n_threads(None) == expected
    set_others(7)
    assert config.resolve_n_threads(-1) == 8 and config.resolve_n_threads(3) == 3  # explicit counts ignore load


def test_default_threads_are_read_again_after_50_ms_and_by_a_live_scorer(fresh_reading, clock, monkeypatch):
    config, set_others = fresh_reading
    monkeypatch.setattr(config, "_N_CPU", 4)
    set_others(0)
    scorer = fastwlr.Scorer([1.0, 2.0], 0.0)
    assert scorer._kernels.n_threads is None   # resolved call by call
    config.note_call_end(4)                    # threads awake: the idle-core count decides
    assert scorer._kernels._threads(10_000) == 4
    config._running_elsewhere = lambda: 3      # cached: not read again within 50 ms
    assert scorer._kernels._threads(10_000) == 4
    clock(100.0 + config._BUSY_TTL / 2)
    config.note_call_end(4)
    assert scorer._kernels._threads(10_000) == 4
    clock(100.0 + config._BUSY_TTL * 1.5)      # expired: read again
    config.note_call_end(4)
    assert scorer._kernels._threads(10_000) == 1
    assert fastwlr.Scorer([1.0], 0.0, n_threads=2)._kernels.n_threads == 2


def test_other_work_is_every_running_task_but_the_caller_and_fastwlrs_spinning_workers(tmp_path, clock,
                                                                                        monkeypatch):
    # one read of /proc/loadavg per reading: another running thread of this process (a BLAS
    # worker spinning after a matmul, a Dask worker's other task) holds a core as another process
    # would; fastwlr's own workers are left out while they may still spin after a parallel call
    import fastwlr._config as config
    fake = tmp_path / "loadavg"
    fake.write_bytes(b"0.52 0.58 0.59 5/312 12345\n")
    fd = os.open(fake, os.O_RDONLY)
    monkeypatch.setitem(config._proc, "loadavg", fd)
    monkeypatch.setattr(config, "_team", [1])
    monkeypatch.setattr(config, "_own_running", lambda: pytest.fail("per-thread states are not read"))
    try:
        assert config._running_elsewhere() == 4             # 5 running, the caller among them
        config.note_call_end(3)                              # a call on 3 threads just ended
        clock(100.0 + config.OWN_SPIN_MAX / 2)
        assert config._running_elsewhere() == 2             # its 2 workers may still spin
        config.note_call_end(1)                              # a call on one thread wakes none
        assert config._running_elsewhere() == 2
        clock(100.0 + 2 * config.OWN_SPIN_MAX)
        assert config._running_elsewhere() == 4             # asleep by now
    finally:
        os.close(fd)


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="counts running tasks from /proc (Linux)")
def test_default_threads_see_busy_processes():
    import subprocess
    import sys
    import time
    import fastwlr._config as config
    n_cpu = config._N_CPU
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n_cpu)]
    try:
        time.sleep(0.3)
        config._busy[0] = -1.0
        others = config._running_elsewhere()
        assert others is not None and others >= n_cpu - 1   # the OS may be between two of them
        assert n_cpu == 1 or config.default_n_threads() < n_cpu   # not every core while they are busy
    finally:
        for p in procs:
            p.kill()
            p.wait()
    config._busy[0] = -1.0


def test_default_threads_by_work_big_every_core_small_and_cold_one(fresh_reading, clock, monkeypatch):
    config, set_others = fresh_reading
    monkeypatch.setattr(config, "_N_CPU", 4)
    set_others(3)                                           # three busy tasks elsewhere: 1 idle core
    assert config.default_n_threads(config.BIG_WORK) == 4   # big work: every core (each thread gets its share)
    set_others(0)
    assert config.default_n_threads(config.BIG_WORK - 1) == 1   # below, threads asleep, no loop: one
    config.note_call_end(4)                                 # a parallel call just ended: threads awake
    clock(100.0 + config.WARM_FOR / 2)
    assert config.default_n_threads(10_000) == 4
    set_others(2)
    assert config.default_n_threads(10_000) == 2            # awake, but only 2 cores idle
    set_others(0)
    clock(100.0 + 2 * config.WARM_FOR)                      # asleep again
    assert config.default_n_threads(10_000) == 1
    config.note_call_end(1)                                 # a call on one thread does not wake them
    assert config.default_n_threads(10_000) == 1


def test_a_loop_of_calls_wakes_the_threads_once_it_has_lasted(fresh_reading, clock, monkeypatch):
    # waking sleeping workers costs up to their spin window, once; a loop that has run for
    # STREAM_WARMUP pays it from time already spent, and later calls find them awake
    config, set_others = fresh_reading
    monkeypatch.setattr(config, "_N_CPU", 2)
    work, t, seen = config.STREAM_MIN_WORK, 100.0, []
    while t < 100.0 + 2 * config.STREAM_WARMUP:
        clock(t)
        n = config.default_n_threads(work)
        seen.append((t - 100.0, n))
        clock(t + 0.0005)                                    # the call takes 0.5 ms
        config.note_call_end(n)
        t += 0.0005 + config.STREAM_GAP / 2                  # back to back
    assert all(n == 1 for s, n in seen if s < config.STREAM_WARMUP)
    assert all(n == 2 for s, n in seen if s >= config.STREAM_WARMUP + 0.002)
    # a pause longer than STREAM_GAP ends the loop; once the threads sleep, the next loop waits again
    clock(t + config.STREAM_GAP + config.WARM_FOR)
    assert config.default_n_threads(work) == 1
    # small calls never wake them, however long they loop
    monkeypatch.setattr(config, "_clock", [-1.0, -1.0, -1.0])
    t += 1.0
    for _ in range(200):
        clock(t)
        n = config.default_n_threads(config.STREAM_MIN_WORK - 1)
        assert n == 1
        config.note_call_end(n)
        t += 0.001
    # nor does a loop while the other cores are busy
    set_others(1)
    monkeypatch.setattr(config, "_clock", [-1.0, -1.0, -1.0])
    for _ in range(100):
        clock(t)
        n = config.default_n_threads(work)
        assert n == 1
        config.note_call_end(n)
        t += 0.001


def test_big_work_leaves_the_cores_of_another_librarys_spinning_workers(fresh_reading, clock, monkeypatch):
    # e.g. OpenBLAS's workers spin for ~0.1 s after a matmul: running threads of this process
    # while fastwlr's own workers are asleep
    config, set_others = fresh_reading
    monkeypatch.setattr(config, "_N_CPU", 4)
    for own, expected in [(1, 4), (2, 3), (4, 1), (9, 1), (0, 4)]:
        set_others(0, own=own)
        assert config.default_n_threads(config.BIG_WORK) == expected, own
    config.note_call_end(4)              # our own workers may be the ones running: no correction
    clock(100.0 + config.OWN_SPIN_MAX / 2)
    set_others(0, own=3)
    assert config.default_n_threads(config.BIG_WORK) == 4


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads thread states from /proc (Linux)")
def test_own_running_threads_are_counted():
    import threading
    import fastwlr._config as config
    stop = threading.Event()
    base = config._own_running()
    assert base is not None and base >= 1               # the caller runs

    def spin():                                          # holds a core, mostly outside the GIL
        while not stop.is_set():
            np.sort(np.random.random(200_000))
    threads = [threading.Thread(target=spin) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        config._proc["tasks_at"] = -1.0                  # list the new threads
        import time
        seen = max(config._own_running() for _ in range(200) if time.sleep(0.001) is None)
        assert seen >= 2
    finally:
        stop.set()
        for t in threads:
            t.join()


@pytest.mark.parametrize("path", ["score", "Scorer", "score_topk", "full"])
def test_kernels_note_the_end_of_their_calls(monkeypatch, path):
    # the thread rule needs each call's end: a parallel one leaves the workers awake
    import fastwlr._config as config
    monkeypatch.setattr(config, "_clock", [-1.0, -1.0, -1.0])
    monkeypatch.setattr(config, "_own_running", lambda: 1)   # no other library's workers spinning now
    X = np.ones((config.BIG_WORK // 8 + 1, 7), dtype=np.float32)   # big: every core
    before = time.monotonic()
    if path == "score":
        fastwlr.score(X, np.ones(7), 0.0)
    elif path == "Scorer":
        fastwlr.Scorer(np.ones(7), 0.0)(X)
    elif path == "score_topk":
        fastwlr.score_topk(X, np.ones(7), 0.0, 3, offsets=[0, X.shape[0] // 2, X.shape[0]])
    else:
        fastwlr.score(X, np.ones(7), 0.0, out=np.empty(X.shape[0]))   # the validated path
    assert config._clock[1] >= before
    assert (config._clock[0] >= before) == (config._N_CPU > 1)


def test_steered_workers_wake_cheaply_so_colder_calls_use_them(fresh_reading, clock, monkeypatch):
    # with the workers kept off the caller's core, waking them costs ~0.1 ms instead of a spin
    # window: a cold call of STEERED_COLD_WORK uses the idle cores, a loop wakes them sooner
    config, set_others = fresh_reading
    monkeypatch.setattr(config, "_N_CPU", 2)
    work = config.STEERED_COLD_WORK
    assert config.default_n_threads(work, steered=True) == 2
    assert config.default_n_threads(work, steered=False) == 1
    assert config.default_n_threads(work - 1, steered=True) == 1
    set_others(1)
    assert config.default_n_threads(work, steered=True) == 1       # the other core is busy
    set_others(0)
    t = 100.0 + 1.0
    for _ in range(20):                                              # a loop of small calls
        clock(t)
        n = config.default_n_threads(config.STREAM_MIN_WORK, steered=True)
        config.note_call_end(1)
        t += 0.0002
    assert n == 2 and 20 * 0.0002 > config.STEERED_WARMUP


@pytest.mark.skipif(not os.path.exists("/proc/self/task") or (os.cpu_count() or 1) < 2,
                    reason="reads thread affinities from /proc (Linux, 2+ cores)")
def test_workers_are_steered_off_the_callers_core():
    from fastwlr._kernels import _placement
    if _placement() is None:           # no compiled core (its package import raises ImportError), or no OpenMP
        pytest.skip("the compiled core's worker placement is not available here")

    def allowed():
        out = {}
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/status") as f:
                line = next(x for x in f if x.startswith("Cpus_allowed_list"))
            out[int(tid)] = line.split()[1]
        return out
    mine = os.sched_getaffinity(0)
    if len(mine) < 2:
        pytest.skip("this process may run on one core only")
    X = np.ones((20_000, 64), dtype=np.float32)
    scorer = fastwlr.Scorer(np.ones(64), 0.0, n_threads=2)
    expected = scorer(X)
    main = threading.get_native_id()
    before = allowed()[main]
    for _ in range(3):                 # record the workers, then steer them (and score right)
        np.testing.assert_array_equal(scorer(X), expected)
    after = allowed()
    assert after[main] == before                             # the caller's own mask is never touched
    narrowed = [tid for tid, cpus in after.items() if tid != main and cpus != before]
    assert narrowed, after
    for tid in narrowed:               # each worker may run anywhere the caller may, but one core
        cpus = set()
        for part in after[tid].split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
        assert cpus < mine and len(cpus) == len(mine) - 1


def test_cold_calls_leave_the_cores_of_another_librarys_spinning_workers_unless_steered(
        fresh_reading, clock, monkeypatch):
    # not only big work: any call that would wake our threads while OpenBLAS's spin; steered
    # workers share a core with such a spinner well enough to keep it
    config, set_others = fresh_reading
    monkeypatch.setattr(config, "_N_CPU", 2)
    set_others(0, own=2)                        # the caller and one foreign spinner
    assert config.default_n_threads(config.BIG_WORK - 1, steered=False) == 1
    assert config.default_n_threads(config.BIG_WORK, steered=False) == 1
    assert config.default_n_threads(config.STEERED_COLD_WORK, steered=True) == 2
    assert config.default_n_threads(config.BIG_WORK, steered=True) == 2
    set_others(0, own=1)
    assert config.default_n_threads(config.BIG_WORK, steered=False) == 2


def test_kernels_of_is_shared_per_setting_and_checks_as_kernels(restore_setting):
    # The per-call entry points share one resolved Kernels per (backend setting, n_threads); a
    # change of setting gives another, and bad arguments raise exactly as Kernels() does.
    from fastwlr._kernels import Kernels
    fastwlr.set_backend("auto")
    a = Kernels.of(None, 1)
    assert Kernels.of(None, 1) is a and Kernels.of(None, None) is not a
    assert Kernels.of(None, 1).name == Kernels(None, 1).name
    with fastwlr.use_backend("reference"):
        assert Kernels.of(None, 1).name == "reference"
        X = np.ones((3, 2))
        assert np.array_equal(fastwlr.score(X, [0.5, 0.25], 0.1),
                              fastwlr.score(X, [0.5, 0.25], 0.1, backend=AVAILABLE[0]))
    assert Kernels.of(None, 1) is a
    for bad in (0, True, 1.5, "2"):
        with pytest.raises((TypeError, ValueError)) as shared:
            Kernels.of(None, bad)
        with pytest.raises(type(shared.value)) as plain:
            Kernels(None, bad)
        assert str(shared.value) == str(plain.value)
    with pytest.raises(ValueError) as shared:
        Kernels.of("gpu", None)
    with pytest.raises(ValueError) as plain:
        Kernels("gpu", None)
    assert str(shared.value) == str(plain.value)
