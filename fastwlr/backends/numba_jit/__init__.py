"""The Numba backend, adapted to the kernel contract (see ``fastwlr.backends``).

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

from ..._validation import check_nonfinite_log_odds
from ..._sgd import (N_SCALARS, S_ACC_B, S_ACC_NORM, S_AVG_B, S_AVG_CLOCK, S_INTERCEPT, S_N_AVG, S_SCALE,
                     S_T, S_Z_B)
from . import _kernels, _sgd, _topk
from ._jit import CACHE_ERRORS, OUTPUT_CODES  # noqa: F401

name = "numba"
SCORE_COUNTS_NONFINITE = True  # score_dense/score_csr return the count of non-finite log-odds
# Below this many multiply-adds, one thread: waking the pool costs more than it saves.
PARALLEL_MIN_WORK = 1 << 15

assert (S_INTERCEPT, S_SCALE, S_T, S_ACC_B, S_Z_B, S_AVG_B, S_AVG_CLOCK, S_N_AVG, S_ACC_NORM) == tuple(range(9)) \
    and N_SCALARS == 9, "SGD scalars layout changed: update numba_jit/_sgd.py"


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
_NO_EXCLUDE = np.empty(0, dtype=np.bool_)


def _select(source, vals, ind, indptr, d, coef, intercept, exclude, offsets, k, output, n_threads, row_cost):
    """-> (indices (G, k) int64, values (G, k) float64, lowest NaN row or -1, count of inf log-odds)."""
    G = offsets.shape[0] - 1
    n_thr = _effective_threads(n_threads, (int(offsets[-1]) - int(offsets[0])) * row_cost)
    n_blocks = max(n_thr, min(G, _topk.BLOCKS_PER_THREAD * n_thr))
    bad = np.zeros((n_blocks, 2), dtype=np.int64)
    bad[:, 0] = -1
    out_idx = np.empty((G, k), dtype=np.int64)
    out_val = np.empty((G, k))
    has_exclude = exclude is not None
    _run(_topk.select_groups, n_thr, PARALLEL_MIN_WORK + 1, source, vals, ind, indptr, d, coef, float(intercept),
         exclude if has_exclude else _NO_EXCLUDE, has_exclude, offsets, int(k), OUTPUT_CODES[output], n_thr,
         out_idx, out_val, bad)
    nan = bad[:, 0][bad[:, 0] >= 0]
    return out_idx, out_val, (int(nan.min()) if nan.size else -1), int(bad[:, 1].sum())


def topk(scores, offsets, k, n_threads):
    indices, values, nan_at, _ = _select(_topk.SCORES, scores, _NO_INDEX, _NO_INDEX, 0, _NO_COEF, 0.0, None,
                                         offsets, k, "log_odds", n_threads, 1)
    if nan_at >= 0:
        raise ValueError(f"scores[{nan_at}] is NaN; top-k needs comparable scores (drop or fill NaN first)")
    return indices, values.astype(scores.dtype, copy=False)


def _cast(values, feature_dtype, output):
    from ...scoring import result_dtype
    with np.errstate(over="ignore"):  # float64 -> float32 rounding to inf is the dtype's answer
        return values.astype(result_dtype(feature_dtype, output), copy=False)


def score_topk_dense(X, coef, intercept, offsets, k, output, exclude, n_threads):
    d = X.shape[1]
    idx, values, nan_row, n_inf = _select(_topk.DENSE, X.reshape(-1), _NO_INDEX, _NO_INDEX, d, coef, intercept,
                                          exclude, offsets, k, output, n_threads, d + 1)
    check_nonfinite_log_odds(X, nan_row, n_inf > 0)
    return idx, _cast(values, X.dtype, output)


def score_topk_csr(data, indices, indptr, coef, intercept, offsets, k, output, exclude, n_threads):
    n = indptr.shape[0] - 1
    cost = 1 + (indices.shape[0] // n if n > 0 else 0)
    idx, values, nan_row, n_inf = _select(_topk.CSR, data, indices, indptr, 0, coef, intercept, exclude,
                                          offsets, k, output, n_threads, cost)
    check_nonfinite_log_odds(data, nan_row, n_inf > 0)
    return idx, _cast(values, data.dtype, output)


# ------------------------------------------------------------------------------------ SGD

def _pack(state, params):
    """(params vector, avg_on) after checking every array the optimiser touches has length d
    (the kernel indexes without bounds checks: never out of bounds)."""
    d = state.coef.shape[0]
    avg_on = bool(np.isfinite(params.avg_start)) and state.avg.shape[0] > 0
    if params.optimizer not in (_sgd.SGD, _sgd.ADAGRAD, _sgd.FTRL):
        raise ValueError(f"unknown optimizer code {params.optimizer}")
    need = {"acc": params.optimizer != _sgd.SGD, "zacc": params.optimizer == _sgd.FTRL,
            "last": params.optimizer == _sgd.ADAGRAD or (avg_on and params.optimizer == _sgd.SGD),
            "avg": avg_on}
    for field, needed in need.items():
        a = getattr(state, field)
        if needed and a.shape[0] != d:
            raise ValueError(f"SGD state: {field} has length {a.shape[0]}, expected {d}")
    if state.scalars.shape[0] != N_SCALARS:
        raise ValueError(f"SGD state: scalars has length {state.scalars.shape[0]}, expected {N_SCALARS}")
    for field in ("coef", "acc", "zacc", "last", "avg", "scalars"):
        a = getattr(state, field)
        if a.dtype != np.float64 or not a.flags.c_contiguous or not a.flags.writeable:
            raise TypeError(f"SGD state: {field} must be a writable contiguous float64 array")
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
    prm[_sgd.P_N_SCHEDULE] = params.n_schedule
    prm[_sgd.P_FIT_INTERCEPT] = 1.0 if params.fit_intercept else 0.0
    prm[_sgd.P_AVG_ON] = 1.0 if avg_on else 0.0
    return prm


def _check_rows(y, sample_weight, order, n):
    if y.shape[0] != n or sample_weight.shape[0] != n:
        raise ValueError("y and sample_weight must have one entry per row")
    if order.dtype != np.int64:
        raise TypeError(f"order must be int64, got {order.dtype}")
    if order.shape[0] and (order.min() < 0 or order.max() >= n):
        raise ValueError(f"order holds row indices outside [0, {n})")


_NO_INDEX = np.empty(0, dtype=np.int64)


def _epoch(data, cols, indptr, dense, d, y, sample_weight, order, state, params):
    prm = _pack(state, params)
    loss, bad = _sgd.run_epoch(data, cols, indptr, dense, d, y, sample_weight, order, state.coef, state.acc,
                               state.zacc, state.last, state.avg, state.scalars, prm)
    return float(loss), int(bad)


def sgd_epoch_dense(X, y, sample_weight, order, state, params):
    n, d = X.shape
    _check_rows(y, sample_weight, order, n)
    if state.coef.shape[0] != d:
        raise ValueError(f"SGD state: coef has length {state.coef.shape[0]}, expected {d}")
    return _epoch(X.reshape(-1), _NO_INDEX, _NO_INDEX, True, d, y, sample_weight, order, state, params)


def sgd_epoch_csr(data, indices, indptr, y, sample_weight, order, state, params):
    n = indptr.shape[0] - 1
    d = state.coef.shape[0]
    _check_rows(y, sample_weight, order, n)
    if indices.shape[0] and (indices.min() < 0 or indices.max() >= d):
        raise ValueError(f"CSR column indices must lie in [0, {d}) (the length of the coefficients)")
    return _epoch(data, indices, indptr, False, 0, y, sample_weight, order, state, params)


# ------------------------------------------------------------------------------- warm-up, info

def warmup(dtypes=(np.float32, np.float64), index_dtypes=(np.int32, np.int64)):
    """Compile (or load from the disk cache) every kernel for these dtypes now, so that the first
    real call pays no JIT time. Returns the seconds spent."""
    import time
    from ..._sgd import EpochParams, SGDState
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
        params = EpochParams(0, 0, 0, 0.1, 0.5, 0.0, 0.0, 0.1, 1.0, np.inf, 2.0, True)
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
            score_topk_csr(data, indices, indptr, coef, 0.0, offsets, 1, "odds", None, 1)
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
