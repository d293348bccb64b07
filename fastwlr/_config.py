"""Process-wide configuration: which backend runs the kernels, and how many threads they use.

One place for both, so that every public function and estimator resolves ``backend=`` and
``n_threads=`` the same way.
"""
import importlib
import os
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


def resolve_n_threads(n_threads):
    """None / -1 -> all cores, k >= 1 -> k; -2 -> all but one (joblib's convention)."""
    n_cpu = os.cpu_count() or 1
    if n_threads is None:
        return n_cpu
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


def _load(name):
    if name in _loaded:
        return _loaded[name]
    if name in _load_errors:
        return None
    try:
        module = importlib.import_module(BACKENDS[name])
    except Exception as exc:  # a backend that fails to import is reported, never silently skipped
        _load_errors[name] = f"{type(exc).__name__}: {exc}"
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


def get_backend(name=None):
    """The backend module for ``name`` (None = the process-wide setting, default "auto")."""
    if name is None:
        name = _state["backend"]
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    if name == "auto":
        for candidate in AUTO_ORDER:
            module = _load(candidate)
            if module is not None:
                if candidate != AUTO_ORDER[0] and candidate not in _auto_warned:
                    _auto_warned.add(candidate)
                    skipped = {n: _load_errors.get(n) for n in AUTO_ORDER[:AUTO_ORDER.index(candidate)]}
                    warnings.warn(f"fastwlr: using the {candidate!r} backend because {skipped} "
                                  "did not import", RuntimeWarning, stacklevel=3)
                return module
        raise ImportError(f"no fastwlr backend imports: {_load_errors}")
    if name not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {name!r}")
    module = _load(name)
    if module is None:
        raise ImportError(f"fastwlr backend {name!r} is not available: {_load_errors[name]}")
    return module
