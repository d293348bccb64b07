"""Process-wide configuration: which backend runs the kernels, and how many threads they use.

One place for both, so that every public function and estimator resolves ``backend=`` and
``n_threads=`` the same way.
"""
import contextlib
import contextvars
import importlib
import os
import sys
import threading
import time
import warnings

# Names of all backends, in the order "auto" prefers them. Adding a backend = adding its name here
# and a module ``fastwlr.backends.<module>`` implementing the contract in ``fastwlr.backends``.
BACKENDS = {
    "cython": "fastwlr.backends.cython_core",
    "numba": "fastwlr.backends.numba_jit",
    "reference": "fastwlr.backends.reference",
}
AUTO_ORDER = ("cython", "numba", "reference")

_state = {"backend": os.environ.get("FASTWLR_BACKEND", "auto")}
_loaded = {}
_load_errors = {}
_load_lock = threading.Lock()  # two threads' first calls must not import a backend twice
# ``use_backend`` blocks: per thread (and per asyncio task), so one thread's block never changes
# the backend another thread runs. None = no block active: the process-wide setting applies.
_context_backend = contextvars.ContextVar("fastwlr_backend", default=None)


# Read once: os.cpu_count() reads /sys on Linux, which cost ~25 us a call on a loaded VM, more than
# scoring one request. (A process whose CPU count changes while it runs keeps the first answer.)
_N_CPU = os.cpu_count() or 1


# n_threads=None: the cores that other work leaves idle. On a machine whose cores are busy (other
# jobs of a shared server, other Dask workers, OpenBLAS threads still spinning after a matmul), an
# OpenMP region waits at its end for a thread the OS has not scheduled yet: scoring 5,000 x 20 took
# 13 ms with 2 threads against 0.5 ms with 1, with two busy processes on 2 cores. So the default
# counts the tasks running right now (Linux: /proc/loadavg's "running" field, minus the caller and
# fastwlr's own workers while they may still spin) and uses the cores they leave, at least one.
# Re-read at most every 50 ms: one read of /proc/loadavg (a few us; 40-55 us at the first call
# after a pause, when the caches are cold).
_BUSY_TTL = 0.05
_busy = [-1.0, _N_CPU]  # [monotonic time when the reading expires, threads]: read lock-free
_monotonic = time.monotonic
_busy_lock = threading.Lock()
_proc = {"loadavg": None, "tasks": {}, "tasks_at": -1.0}


def _own_running():
    """Threads of this process running or runnable now (the caller included); None where this
    cannot be read. Its threads are listed once a second and their stat files kept open."""
    now = time.monotonic()
    tasks = _proc["tasks"]
    if now - _proc["tasks_at"] > 1.0:
        try:
            tids = set(os.listdir("/proc/self/task"))
        except OSError:
            return None
        for tid in set(tasks) - tids:
            os.close(tasks.pop(tid))
        for tid in tids - set(tasks):
            try:
                tasks[tid] = os.open(f"/proc/self/task/{tid}/stat", os.O_RDONLY)
            except OSError:
                pass
        _proc["tasks_at"] = now
    own = 0
    for fd in tasks.values():
        try:
            stat = os.pread(fd, 512, 0)
            own += stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] == b"R"
        except (OSError, ValueError):
            pass
    return own


def _running_elsewhere():
    """Tasks running or runnable on the machine now besides the caller and fastwlr's own workers
    (running while they may still spin after a parallel call: OWN_SPIN_MAX); None where this
    cannot be read (not Linux, no /proc). Another thread of this process is other work here: a
    spinning BLAS worker or a Dask worker's other task holds a core as another process would.
    (Reading every thread's state as well, to leave those out, cost 90-180 us at the first call
    after a pause, when the caches are cold: 100,000 x 64 float32 after 0.2 s took 1.04 ms by
    default against 0.87 ms with n_threads=2, median of 31; with this one read 0.87 against 0.81.)"""
    try:
        if _proc["loadavg"] is None:
            _proc["loadavg"] = os.open("/proc/loadavg", os.O_RDONLY)
        running = int(os.pread(_proc["loadavg"], 128, 0).split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None
    own = _team[0] if _workers_may_spin(_monotonic()) else 1
    return max(0, running - own)


# Rules for work of known size (benchmarks/experiments/busy_threads.py and wake_cost.py, 2-core VM):
# * OpenMP workers (libgomp) spin for a while after each parallel region (300,000 pause
#   instructions: 7.8 ms on this AMD EPYC; the pause's latency, so the window, differs by CPU),
#   then sleep. Waking a sleeping worker is what costs: on a VM the scheduler puts it on the
#   caller's own core (the idle vCPU is halted), where it waits while the caller spins at the end
#   of the region for the same 300,000 pauses. 300,000 x 64 float32 rows took 7.4 ms on 2 cold
#   threads against 2.5 ms on one; on 2 threads still spinning from the call before, 1.3 ms.
#   So a call uses several threads when they are warm (a parallel call ended within WARM_FOR) or
#   when waking them pays: big work (>= BIG_WORK element operations, one thread >= ~4 ms), or a
#   loop (calls back to back, each starting within STREAM_GAP of the previous one's end, for
#   STREAM_WARMUP seconds): waking then costs at most one spin window once, a fraction of the
#   loop's time already spent, and every later call of the loop finds the threads warm.
#   Where the compiled core can steer the workers off the caller's core before the region
#   (fastwlr/backends/cython_core/_workers.pyx; Linux), waking costs 0.05-0.2 ms instead: then a
#   cold call of STEERED_COLD_WORK or more uses them (100,000 x 64 float32 after a 0.2 s pause:
#   686 us on 2 threads, 850 us on one), and a loop wakes them after STEERED_WARMUP.
# * big work uses every core even when they are busy: each thread gets its share of the CPU, so 2
#   threads beside 2 busy processes scored 1M x 64 in 42 ms against 71 ms on one; the wait at the
#   end of the region is small beside the work. Other work follows the count of idle cores.
WARM_FOR = 0.004
BIG_WORK = 1 << 25
STREAM_GAP = WARM_FOR          # a longer gap lets the workers fall asleep between two calls anyway
STREAM_WARMUP = 0.03
STREAM_MIN_WORK = 1 << 18      # below (4,000 rows x 64), warm threads did not beat one
OWN_SPIN_MAX = 0.02            # the longest our workers may spin (300,000 pauses: 1-15 ms by CPU)
STEERED_COLD_WORK = 1 << 22
STEERED_WARMUP = 0.002
# [end of the last call on several threads, end of the last call, start of the current run of
# back-to-back calls] (monotonic seconds): written lock-free; a race only misjudges one call
_clock = [-1.0, -1.0, -1.0]
_team = [1]   # threads of the last call on several (its workers spin for a while after it)


def _workers_may_spin(now):
    """fastwlr's workers may still be spinning after the last parallel call (OWN_SPIN_MAX)."""
    return now - _clock[0] <= OWN_SPIN_MAX


def _foreign_spinners():
    """Threads of this process, besides the caller, running while fastwlr's own workers are asleep
    (no parallel call for OWN_SPIN_MAX): another library's workers spinning, typically OpenBLAS's for
    ~0.1 s after a matmul. A core one of them holds is not ours: 1M x 64 float32 right after a
    BLAS call took 22.7 ms on 2 threads against 18.9 ms on one (12.0 ms on 2 idle cores). At most
    _N_CPU - 1, so that a call keeps one thread."""
    own = _own_running()
    return 0 if own is None else min(max(own - 1, 0), _N_CPU - 1)


_blas_controller = []  # threadpoolctl's ThreadpoolController, made once (it scans the loaded libraries)


@contextlib.contextmanager
def blas_single_threaded():
    """BLAS (OpenBLAS, MKL) on one thread inside the block; fastwlr's own OpenMP kernels keep theirs.

    The exact solvers alternate compiled passes with scipy's small dense algebra (L-BFGS-B's
    bookkeeping, Cholesky): each tiny BLAS call there woke OpenBLAS's workers, which then spun on the
    cores the next pass needed. 1M x 64 float32, default lbfgs fit: 190-230 ms, 14 ms a pass and 2 ms
    a scipy step; with BLAS on one thread 105-110 ms, 9 ms a pass. Without threadpoolctl: no limit."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        yield
        return
    if not _blas_controller:
        import scipy.linalg  # noqa: F401  the solvers' scipy modules load its BLAS: loaded before the scan
        import scipy.optimize  # noqa: F401
        _blas_controller.append(ThreadpoolController())
    with _blas_controller[0].limit(limits=1, user_api="blas"):
        yield


def note_call_end(n_threads):
    """The adapter says a kernel call with work of known size just ended, on ``n_threads``
    threads (several: they are spinning, warm, for a while)."""
    now = _monotonic()
    _clock[1] = now
    if n_threads > 1:
        _clock[0] = now
        _team[0] = n_threads


def default_n_threads(work=None, steered=False):
    """Threads for ``n_threads=None``: the cores not busy with other work now (other processes'
    and this process's other running threads; at least 1); for a kernel call of ``work`` element
    operations, one while the threads sleep unless waking them pays (big work, or a loop of calls:
    see WARM_FOR). Big work uses every core, but, unless ``steered``, not those of another
    library's workers still spinning in this process (see _foreign_spinners).
    ``steered``: the caller keeps the workers off its own core, so waking them is cheap."""
    if work is None:
        return _idle_cores()
    now = _monotonic()
    clock = _clock
    if now - clock[1] > STREAM_GAP:
        clock[2] = now                      # not back to back with the last call: a new run starts
    # this process's running threads are another library's only once ours are asleep. Unsteered,
    # our workers lost to such a spinner (1M x 64 float32 right after a matmul: 22.7 ms on 2
    # threads, 18.9 on one); steered, 2 threads took 4.7-9.3 ms there against 7.9-8.6 on one
    keep_all = steered or _workers_may_spin(now)
    if work >= BIG_WORK:
        return _N_CPU if keep_all else _N_CPU - _foreign_spinners()
    if now - clock[0] > WARM_FOR:           # our workers asleep: wake them only where it pays
        cold_work, warmup = (STEERED_COLD_WORK, STEERED_WARMUP) if steered else (BIG_WORK, STREAM_WARMUP)
        if work < cold_work and (work < STREAM_MIN_WORK or now - clock[2] < warmup):
            return 1
    return _idle_cores()


def _idle_cores():
    busy = _busy
    if _monotonic() < busy[0]:
        return busy[1]
    with _busy_lock:
        if _monotonic() >= _busy[0]:
            others = _running_elsewhere()
            # a count far above the cores is a host's seen from a container: no information
            idle = _N_CPU if others is None or others > 4 * _N_CPU else _N_CPU - others
            _busy[:] = [_monotonic() + _BUSY_TTL, max(1, idle)]
    return _busy[1]


def resolve_n_threads(n_threads):
    """None -> the idle cores (``default_n_threads``); -1 -> all cores, whatever their load;
    k >= 1 -> k; -2 -> all but one (joblib's convention)."""
    n_cpu = _N_CPU
    if n_threads is None:
        return default_n_threads()
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int,)) and not hasattr(n_threads, "__index__"):
        raise TypeError(f"n_threads must be an int or None, got {type(n_threads).__name__}")
    n_threads = int(n_threads)
    if n_threads == 0:
        raise ValueError("n_threads must be >= 1, or negative to count back from all cores (-1 = all); got 0")
    if n_threads < 0:
        return max(1, n_cpu + 1 + n_threads)
    # Capped: OpenMP segfaults creating ~1e5 threads (each needs a stack), and beyond a few per core
    # threads only oversubscribe. Results do not depend on n_threads, so the cap changes only speed.
    return min(n_threads, max(64, 4 * n_cpu))


# What to do when a backend does not import, by the cause (see ``_explain``).
NUMBA_EXTRA = 'pip install "fastwlr[numba]"'
_NOT_BUILT = ("the compiled core was not built when fastwlr was installed (no working C compiler, or "
              "FASTWLR_BUILD_EXT=0); to get it, reinstall fastwlr where a C compiler is available "
              "(FASTWLR_BUILD_EXT=1 makes a failed compile an error that shows why)")
_NOT_INSTALLED = f"Numba is not installed; it is optional: {NUMBA_EXTRA}"


def _core_built():
    """Is there a compiled extension module of the Cython core next to its sources? (Without
    importing it: an unbuilt core and a built one that fails to load are different problems.)"""
    from importlib.machinery import EXTENSION_SUFFIXES
    core = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backends", "cython_core")
    try:
        names = os.listdir(core)
    except OSError:
        return False
    return any(n.startswith("_scoring.") and n.endswith(tuple(EXTENSION_SUFFIXES)) for n in names)


def _explain(name, exc):
    """Why backend ``name`` did not import, with what to do about it."""
    error = f"{type(exc).__name__}: {exc}"
    if name == "numba" and isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "numba":
        return _NOT_INSTALLED
    if name == "cython" and not _core_built():
        return _NOT_BUILT
    if name == "numba":
        return f"{error} (Numba is installed, but the backend failed to import)"
    return error


def _load(name):
    if name in _loaded:
        return _loaded[name]
    if name in _load_errors:
        return None
    with _load_lock:
        if name in _loaded or name in _load_errors:
            return _loaded.get(name)
        try:
            module = importlib.import_module(BACKENDS[name])
        except Exception as exc:  # a backend that fails to import is reported, never silently skipped
            _load_errors[name] = _explain(name, exc)
            return None
        _loaded[name] = module
        return module


def available_backends():
    """Names of the backends that import on this machine."""
    return [name for name in AUTO_ORDER if _load(name) is not None]


def backend_errors():
    """{name: why it did not import} for the backends that failed."""
    for name in BACKENDS:
        _load(name)
    return dict(_load_errors)


_auto_warned = set()


def _auto_fallback_message(candidate):
    """The one warning "auto" gives when it cannot run the compiled core: which backend it runs
    instead, why, and how to get a faster one."""
    why = "; ".join(f"{n!r}: {_load_errors.get(n)}" for n in AUTO_ORDER[:AUTO_ORDER.index(candidate)])
    if candidate == "numba":
        return (f"fastwlr: using the 'numba' backend because the compiled core is not available ({why}). "
                "Numba compiles each kernel on its first call (cached on disk afterwards).")
    return (f"fastwlr: using the 'reference' backend because neither faster one is available ({why}). "
            f"It runs plain numpy and is much slower; for speed: {NUMBA_EXTRA}, or reinstall fastwlr "
            "where a C compiler is available for the compiled core.")


def get_backend(name=None):
    """The backend module for ``name`` (None = the process-wide setting, default "auto").

    "auto" is the Cython core if it imports, else Numba if it is installed, else the numpy
    reference; falling back warns once per process, saying which backend runs and why. A named
    backend that does not import raises ImportError saying why and how to get it (for "numba":
    ``pip install "fastwlr[numba]"``).
    """
    setting = name is None
    if setting:
        name = current_backend()
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    if name == "auto":
        for candidate in AUTO_ORDER:
            module = _load(candidate)
            if module is not None:
                if candidate != AUTO_ORDER[0] and candidate not in _auto_warned:
                    _auto_warned.add(candidate)
                    warnings.warn(_auto_fallback_message(candidate), RuntimeWarning, stacklevel=3)
                return module
        raise ImportError(f"no fastwlr backend imports: {_load_errors}")
    check_backend_name(name)
    module = _load(name)
    if module is None:
        # where the setting came from, only for the message: building it costs a third of a call
        origin = _origin(name) if setting else ""
        raise ImportError(f"fastwlr backend {name!r} is not available{origin}: {_load_errors[name]}")
    return module


# ---------------------------------------------------------------------------------------------
# Choosing the backend: per call (backend=), per block (use_backend), per process (set_backend,
# FASTWLR_BACKEND). The innermost wins.

def _origin(name):
    """Where the process-wide setting came from (e.g. the FASTWLR_BACKEND environment variable),
    as a suffix for error messages, when ``name`` is that setting; else ""."""
    if name == _state["backend"] and _context_backend.get() is None:
        return f" (from {_state.get('source', 'the FASTWLR_BACKEND environment variable')})"
    return ""


def check_backend_name(name):
    """A valid backend name ("auto" or one of BACKENDS), whether or not it imports here."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {name!r}{_origin(name)}")
    return name


def current_backend():
    """The backend name in effect here: the innermost ``use_backend`` block, else the process-wide
    setting (``set_backend``, initially ``$FASTWLR_BACKEND`` or "auto"). Not resolved: may be "auto"."""
    name = _context_backend.get()
    return _state["backend"] if name is None else name


def set_backend(name):
    """Set the process-wide default backend; returns the previous setting.

    Parameters
    ----------
    name : {"auto", "cython", "numba", "reference"}
        "auto" picks the Cython core when it imports, else Numba when it is installed, else the
        numpy reference (with a one-time warning saying why). A named backend must import: it is
        imported now, so a missing one fails here rather than at the first call (for "numba"
        without Numba installed: an ImportError saying ``pip install "fastwlr[numba]"``).

    Returns
    -------
    str
        The previous process-wide setting, to restore it later.

    Notes
    -----
    Process-wide: every thread sees it (except inside a ``use_backend`` block). To change the
    backend for one block of code, or in one thread, use ``fastwlr.use_backend``. A ``backend=``
    argument of a function or estimator overrides both. Initial value: the ``FASTWLR_BACKEND``
    environment variable, else "auto".
    """
    check_backend_name(name)
    if name != "auto":
        get_backend(name)  # ImportError now, naming why, rather than at the first call
    previous = _state["backend"]
    _state["backend"] = name
    _state["source"] = "fastwlr.set_backend"
    return previous


@contextlib.contextmanager
def use_backend(name):
    """Context manager: run the enclosed code with backend ``name``, then restore.

    Local to the current thread (and asyncio task), so concurrent threads can each use their own
    backend. Blocks nest; the innermost wins; ``backend=`` arguments still override it.

    Examples
    --------
    >>> import numpy as np, fastwlr
    >>> with fastwlr.use_backend("reference"):
    ...     fastwlr.score(np.ones((2, 3)), np.zeros(3), output="log_odds").tolist()
    [0.0, 0.0]
    """
    check_backend_name(name)
    if name != "auto":
        get_backend(name)
    token = _context_backend.set(name)
    try:
        yield name
    finally:
        _context_backend.reset(token)


def resolved_backend_name(name=None):
    """The concrete backend name that ``name`` (default: the current setting) runs on."""
    return get_backend(name).name


# ---------------------------------------------------------------------------------------------
# show_config

def _version(module_name):
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == module_name:
            return "not installed" + (f" (optional: {NUMBA_EXTRA})" if module_name == "numba" else "")
        return f"not importable ({type(exc).__name__}: {exc})"
    except Exception as exc:
        return f"not importable ({type(exc).__name__}: {exc})"
    return getattr(module, "__version__", "?")


def config_info():
    """What ``show_config`` prints, as a dict (stable keys, for bug reports and tests)."""
    import platform
    from ._version import __version__
    setting = current_backend()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resolved = resolved_backend_name(setting)
    except Exception as exc:
        resolved = f"error: {type(exc).__name__}: {exc}"
    backends = {}
    for name in BACKENDS:
        module = _load(name)
        entry = {"module": BACKENDS[name], "available": module is not None}
        if module is None:
            entry["error"] = _load_errors.get(name)
        else:
            if hasattr(module, "build_info"):
                entry.update(module.build_info())
            if hasattr(module, "info"):
                entry.update(module.info())
        backends[name] = entry
    info = {
        "fastwlr": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "numba": _version("numba"),
        "cython_core_built_with_cython": _cython_version(),
        "backend_setting": setting,
        "backend_env": os.environ.get("FASTWLR_BACKEND"),
        "auto_order": list(AUTO_ORDER),
        "backend_resolved": resolved,
        "cpu_count": os.cpu_count(),
        "default_n_threads": resolve_n_threads(None),
        "backends": backends,
    }
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                                      "filepath")} for p in threadpool_info()]
    except Exception:  # optional
        info["threadpools"] = None
    return info


def _cython_version():
    try:
        import Cython
        return Cython.__version__
    except Exception:
        return None


def show_config(file=None):
    """Print which backends are available (and why the others are not), versions, threads, and
    how the compiled core was built (OpenMP, SIMD). Paste its output into bug reports.

    Parameters
    ----------
    file : writable text stream, optional
        Default ``sys.stdout``.
    """
    info = config_info()
    file = sys.stdout if file is None else file

    def line(key, value, indent=0):
        print(f"{' ' * indent}{key + ':':<{28 - indent}} {value}", file=file)

    print("fastwlr configuration", file=file)
    for key in ("fastwlr", "python", "platform", "numpy", "scipy", "numba"):
        line(key, info[key])
    line("backend setting", f"{info['backend_setting']!r} (FASTWLR_BACKEND={info['backend_env']!r})")
    line("backend in use", info["backend_resolved"])
    line("auto order", " > ".join(info["auto_order"]))
    line("cpu count", info["cpu_count"])
    line("default n_threads", info["default_n_threads"])
    print("backends:", file=file)
    for name, entry in info["backends"].items():
        if not entry["available"]:
            line(name, f"NOT available: {entry['error']}", 2)
            continue
        details = {k: v for k, v in entry.items() if k not in ("module", "available")}
        line(name, "available" + (": " + ", ".join(f"{k}={v}" for k, v in details.items()) if details else ""), 2)
    if info["threadpools"]:
        print("thread pools loaded (threadpoolctl):", file=file)
        for pool in info["threadpools"]:
            line(f"{pool['user_api']}/{pool['internal_api']}",
                 f"{pool['num_threads']} threads, version {pool['version']}, {pool['filepath']}", 2)
