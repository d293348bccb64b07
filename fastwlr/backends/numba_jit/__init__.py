"""The Numba backend, adapted to the kernel contract (docs/kernels.md).

For users without a C compiler: the same algorithms as the Cython core (same blocking, same
summation order except inside a dense dot product), compiled by Numba in ``nopython`` mode, parallel with ``prange`` where rows are
independent, cached on disk (a second process loads the machine code instead of compiling it).

Compilation is lazy: a kernel compiles for the dtypes it is first called with (float32/float64
features, int32/int64 indices); ``warmup()`` compiles (or loads) the common ones up front.

Threads: ``numba.set_num_threads`` is thread-local in Numba, and is restored in ``finally``. The
threading layer is Numba's choice (``NUMBA_THREADING_LAYER``); without TBB it is OpenMP, the same
libgomp the Cython core links, so both backends share one OpenMP runtime in a process (see
``fastwlr.show_config()`` and tests/test_config.py).
"""
import numba
import numpy as np

from .._contract import EpochParams, OUTPUT_CODES, SGDState
from . import _kernels, _sgd, _topk
from ._jit import CACHE_ERRORS

name = "numba"
SCORE_COUNTS_NONFINITE = True  # score_dense/score_csr return the count of non-finite log-odds
# Below this many multiply-adds, one thread: waking the pool costs more than it saves.
PARALLEL_MIN_WORK = 1 << 15


def _effective_threads(n_threads, work):
    return 1 if work <= PARALLEL_MIN_WORK else max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))


def _run(kernel, n_threads, work, *args):
    """Call a parallel kernel with ``n_threads`` (capped at Numba's pool size), restoring after."""
    n = _effective_threads(n_threads, work)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        return kernel(*args)
    finally:
        numba.set_num_threads(previous)


def score_dense(X, coef, intercept, output, out, n_threads):
    n, d = X.shape
    return _run(_kernels.score_dense, n_threads, n * (d + 1), X.reshape(-1), d, coef, float(intercept),
                OUTPUT_CODES[output], out)


def score_csr(data, indices, indptr, coef, intercept, output, out, n_threads):
    return _run(_kernels.score_csr, n_threads, indices.shape[0] + indptr.shape[0], data, indices, indptr,
                coef, float(intercept), OUTPUT_CODES[output], out)


def objective_grad_dense(X, y, sample_weight, coef, intercept, l2, n_threads):
    n, d = X.shape
    grad = np.zeros(d)
    loss, g_b = _run(_kernels.objective_grad_dense, n_threads, n * (d + 1), X.reshape(-1), n, d, y,
                     sample_weight, coef, float(intercept), float(l2), grad)
    return float(loss), grad, float(g_b)


def objective_grad_csr(data, indices, indptr, n_features, y, sample_weight, coef, intercept, l2, n_threads):
    grad = np.zeros(int(n_features))
    loss, g_b = _run(_kernels.objective_grad_csr, n_threads, indices.shape[0] + indptr.shape[0], data,
                     indices, indptr, int(n_features), y, sample_weight, coef, float(intercept), float(l2),
                     grad)
    return float(loss), grad, float(g_b)


# ---------------------------------------------------------------------------------- top-k

_NO_COEF = np.empty(0)
_NO_INDEX = np.empty(0, dtype=np.int64)
_NO_EXCLUDE = np.empty(0, dtype=np.bool_)


def _select(rows, coef, intercept, exclude, offsets, k, output, n_threads, row_cost):
    """-> (indices (G, k) int64, values (G, k) float64, lowest NaN row or -1, count of inf log-odds)."""
    G = offsets.shape[0] - 1
    n_thr = _effective_threads(n_threads, (int(offsets[-1]) - int(offsets[0])) * row_cost)
    if G == 1 and int(offsets[1]) - int(offsets[0]) < _topk.SPLIT_MIN:
        n_thr = 1   # one request too small to split: a parallel region would only wake the pool
    n_blocks = max(n_thr, min(G, _topk.BLOCKS_PER_THREAD * n_thr))
    bad = np.zeros((n_blocks, 2), dtype=np.int64)
    bad[:, 0] = -1
    out_idx = np.empty((G, k), dtype=np.int64)
    out_val = np.empty((G, k))
    has_exclude = exclude is not None
    selection = (exclude if has_exclude else _NO_EXCLUDE, has_exclude, offsets, int(k), OUTPUT_CODES[output], n_thr)
    _run(_topk.select_groups, n_thr, PARALLEL_MIN_WORK + 1, rows, (coef, float(intercept)), selection,
         (out_idx, out_val, bad))
    nan = bad[:, 0][bad[:, 0] >= 0]
    return out_idx, out_val, (int(nan.min()) if nan.size else -1), int(bad[:, 1].sum())


def topk(scores, offsets, k, n_threads):
    rows = (_topk.SCORES, scores, _NO_INDEX, _NO_INDEX, 0)
    indices, values, nan_at, _ = _select(rows, _NO_COEF, 0.0, None, offsets, k, "log_odds", n_threads, 1)
    return indices, values.astype(scores.dtype, copy=False), nan_at


def _cast(values, out_dtype):
    with np.errstate(over="ignore"):  # float64 -> float32 rounding to inf is the dtype's answer
        return values.astype(out_dtype, copy=False)


def score_topk_dense(X, coef, intercept, offsets, k, output, exclude, out_dtype, n_threads):
    d = X.shape[1]
    rows = (_topk.DENSE, X.reshape(-1), _NO_INDEX, _NO_INDEX, d)
    idx, values, nan_row, n_inf = _select(rows, coef, intercept, exclude, offsets, k, output, n_threads, d + 1)
    return idx, _cast(values, out_dtype), nan_row, n_inf


def score_topk_csr(data, indices, indptr, coef, intercept, offsets, k, output, exclude, out_dtype, n_threads):
    n = indptr.shape[0] - 1
    cost = 1 + (indices.shape[0] // n if n > 0 else 0)
    rows = (_topk.CSR, data, indices, indptr, 0)
    idx, values, nan_row, n_inf = _select(rows, coef, intercept, exclude, offsets, k, output, n_threads, cost)
    return idx, _cast(values, out_dtype), nan_row, n_inf


# ------------------------------------------------------------------------------------ SGD

def _pack(state, params):
    """The params vector of ``_sgd.run_epoch`` (the adapter checked the state's arrays)."""
    avg_on = bool(np.isfinite(params.avg_start)) and state.avg.shape[0] > 0
    prm = np.empty(_sgd.N_PARAMS)
    prm[_sgd.P_OPT] = params.optimizer
    prm[_sgd.P_WEIGHTING] = params.weighting
    prm[_sgd.P_SCHEDULE] = params.schedule
    prm[_sgd.P_ETA0] = params.eta0
    prm[_sgd.P_POWER_T] = params.power_t
    prm[_sgd.P_L2] = params.l2
    prm[_sgd.P_L1] = params.l1
    prm[_sgd.P_ALPHA] = params.ftrl_alpha
    prm[_sgd.P_BETA] = params.ftrl_beta
    prm[_sgd.P_AVG_START] = params.avg_start
    prm[_sgd.P_FIT_INTERCEPT] = 1.0 if params.fit_intercept else 0.0
    prm[_sgd.P_AVG_ON] = 1.0 if avg_on else 0.0
    return prm



def _epoch(rows, y, sample_weight, order, state, params):
    arrays = (state.coef, state.acc, state.zacc, state.last, state.avg, state.scalars, state.xmax)
    loss, bad = _sgd.run_epoch(rows, (y, sample_weight, order), arrays, _pack(state, params))
    return float(loss), int(bad)


def sgd_epoch_dense(X, y, sample_weight, order, state, params):
    n, d = X.shape
    return _epoch((X.reshape(-1), _NO_INDEX, _NO_INDEX, True, d), y, sample_weight, order, state, params)


def sgd_epoch_csr(data, indices, indptr, y, sample_weight, order, state, params):
    return _epoch((data, indices, indptr, False, 0), y, sample_weight, order, state, params)


# ------------------------------------------------------------------------------- warm-up, info

def warmup(dtypes=(np.float32, np.float64), index_dtypes=(np.int32, np.int64)):
    """Compile (or load from the disk cache) every kernel for these dtypes now, so that the first
    real call pays no JIT time. Returns the seconds spent."""
    import time
    t0 = time.perf_counter()
    coef = np.zeros(2)
    y = np.array([0.0, 1.0])
    w = np.ones(2)
    order = np.arange(2, dtype=np.int64)
    for dt in dtypes:
        X = np.zeros((2, 2), dtype=dt)
        for out_dt in (np.float32, np.float64):
            score_dense(X, coef, 0.0, "odds", np.empty(2, out_dt), 1)
        objective_grad_dense(X, y, w, coef, 0.0, 0.0, 1)
        params = EpochParams(0, 0, 0, 0.1, 0.5, 0.0, 0.0, 0.1, 1.0, np.inf, True)
        sgd_epoch_dense(X, y, w, order, SGDState.new(2, "sgd", False), params)
        offsets = np.array([0, 2], dtype=np.int64)
        topk(np.zeros(2, dtype=dt), offsets, 1, 1)
        for it in index_dtypes:
            data = np.ones(2, dtype=dt)
            indices = np.array([0, 1], dtype=it)
            indptr = np.array([0, 1, 2], dtype=it)
            for out_dt in (np.float32, np.float64):
                score_csr(data, indices, indptr, coef, 0.0, "odds", np.empty(2, out_dt), 1)
            objective_grad_csr(data, indices, indptr, 2, y, w, coef, 0.0, 0.0, 1)
            sgd_epoch_csr(data, indices, indptr, y, w, order, SGDState.new(2, "sgd", False), params)
            score_topk_csr(data, indices, indptr, coef, 0.0, offsets, 1, "odds", None, np.float64, 1)
    return time.perf_counter() - t0


def info():
    """Version, thread pool, threading layer (None until a parallel kernel ran) and cache state."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet: Numba has not picked one
        layer = None
    return {"version": numba.__version__, "num_threads": numba.config.NUMBA_NUM_THREADS,
            "threading_layer": layer, "threading_layer_config": numba.config.THREADING_LAYER,
            "cache_dir": numba.config.CACHE_DIR or "(next to the source, else user-wide)",
            "disk_cache": not CACHE_ERRORS}
