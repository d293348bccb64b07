"""Benchmark cases shared by the pytest-benchmark suites and ``benchmarks/report.py``.

A *case* is one measurement: what is computed (``group``/``name``), on what data (``data``), by
whom (``impl``: a fastwlr backend, a peer library, or the streaming-read ``floor``), with how many
threads. ``case.prepare()`` builds (and caches) the data and returns a zero-argument callable that
does the work once; the runner warms it once (JIT compilation, page faults) and then times it.
Training "time to 1 %" cases time themselves (the callable returns ``{"seconds": ...}``) because
they stop on a condition checked outside the timed region.

Sizes are chosen by name (``FASTWLR_BENCH_SIZE`` or ``report.py --size``):

* ``smoke``: tiny, for CI (``pytest benchmarks --benchmark-disable``): every case runs once and is
  checked against the numpy reference, in well under a minute;
* ``quick``: seconds per suite, for a first look;
* ``full``: the sizes of the README's performance table (1M x 64 scoring, 10,000 x 500 top-k, a
  10M-candidate request).

Nothing here times anything: the runner (pytest-benchmark, or ``report.py``) does.
"""
from dataclasses import dataclass, field
import functools
import math
import os
import shutil
import tempfile
import time
from typing import Callable, Optional

import numpy as np

SIZES = {
    "smoke": dict(n_score=3_000, n_features=64, csr_rows=3_000, csr_cols=2**12, csr_nnz=8,
                  topk_groups=50, topk_cands=40, topk_k=5, big_group=20_000, big_k=10,
                  n_train=3_000, train_cols=2**12, train_nnz=8, ref_sgd_rows=500,
                  max_epochs=3, claims_rows=5_000, lr_max_iter=8, alpha=1e-3),
    "quick": dict(n_score=100_000, n_features=64, csr_rows=100_000, csr_cols=2**20, csr_nnz=40,
                  topk_groups=1_000, topk_cands=500, topk_k=10, big_group=1_000_000, big_k=100,
                  n_train=50_000, train_cols=2**16, train_nnz=40, ref_sgd_rows=2_000,
                  max_epochs=6, claims_rows=100_000, lr_max_iter=20, alpha=1e-5),
    "full": dict(n_score=1_000_000, n_features=64, csr_rows=1_000_000, csr_cols=2**20, csr_nnz=40,
                 topk_groups=10_000, topk_cands=500, topk_k=10, big_group=10_000_000, big_k=100,
                 n_train=200_000, train_cols=2**18, train_nnz=40, ref_sgd_rows=5_000,
                 max_epochs=8, claims_rows=None, lr_max_iter=50, alpha=1e-5),
}
OUTPUTS = ("log_odds", "odds", "proba")
WEIGHTINGS = ("iwa", "gradient", "resample")
OPTIMIZERS = ("adagrad", "sgd", "ftrl")
OUR_BACKENDS = ("reference", "cython", "numba")
# L2 strength of the training cases is SIZES[size]["alpha"] (fastwlr's alpha; peers get the equivalent):
# 1e-5 keeps the hashed CSR problems (many rarely-seen columns) well posed; smoke uses 1e-3 to stay fast.
TARGET_GAP = 0.01      # "time to 1 % of optimum": (L - L*) / L* <= 0.01, L* from a tight L-BFGS fit
SEED = 0


def alpha(size):
    return SIZES[size]["alpha"]


def size_name(default="smoke"):
    name = os.environ.get("FASTWLR_BENCH_SIZE", default)
    if name not in SIZES:
        raise ValueError(f"FASTWLR_BENCH_SIZE must be one of {sorted(SIZES)}, got {name!r}")
    return name


def thread_counts(size=None):
    """1 and all cores; the smoke size trains with 1 thread only (tiny problems, where an OpenMP team on
    a busy machine costs more than the work)."""
    n = os.cpu_count() or 1
    return (1,) if n == 1 or size == "smoke" else (1, n)


class Skip(Exception):
    """The case cannot run here (a backend function or a peer not installed); the message says why."""


@dataclass
class Case:
    group: str                 # "scoring" | "topk" | "training" | "floor"
    name: str                  # what is computed, e.g. "dense float32 -> odds"
    data: str                  # on what data
    impl: str                  # "cython", "numba", "reference", "numpy", "scipy", "sklearn-sgd", "vw", ...
    kind: str                  # "ours" | "reference" | "peer" | "floor"
    threads: int
    build: Callable            # () -> callable doing the work once
    nbytes: Optional[int] = None            # bytes a kernel must read (for GB/s), None if not meaningful
    floor: Optional[str] = None             # key of the streaming-read case over the same bytes
    check: Optional[Callable] = None        # (result) -> None, raises AssertionError if wrong
    self_timed: bool = False                # callable returns {"seconds": ..., ...}
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def id(self):
        return f"{self.group}|{self.name}|{self.impl}|t{self.threads}"

    def prepare(self):
        return self.build()


# ---------------------------------------------------------------------------------------------
# thread control for peers (numpy/BLAS via threadpoolctl) and numba

class threads_limited:
    """Limit BLAS/OpenMP pools (threadpoolctl) and numba to ``n`` threads inside the block."""

    def __init__(self, n):
        self.n = n
        self._ctl = None
        self._numba_prev = None

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
            self._ctl = threadpool_limits(limits=self.n)
        except ImportError:
            self._ctl = None
        try:
            import numba
            self._numba_prev = numba.get_num_threads()
            numba.set_num_threads(min(self.n, numba.config.NUMBA_NUM_THREADS))
        except Exception:
            self._numba_prev = None
        return self

    def __exit__(self, *exc):
        if self._ctl is not None:
            self._ctl.restore_original_limits()
        if self._numba_prev is not None:
            import numba
            numba.set_num_threads(self._numba_prev)
        return False


def run_once(case):
    """Prepare, run once under the case's thread limits, check; returns (fn, result)."""
    fn = case.prepare()
    with threads_limited(case.threads):
        result = fn()
    if case.check is not None:
        case.check(result)
    return fn, result


# ---------------------------------------------------------------------------------------------
# backends

def _backend(name, *functions):
    """The fastwlr backend module; ``Skip`` if it does not import here (Numba not installed, the
    core not built). A backend that imports must implement ``functions``: a missing one fails."""
    from fastwlr._config import get_backend
    try:
        be = get_backend(name)
    except (ImportError, ValueError) as exc:
        raise Skip(f"backend {name!r} unavailable: {exc}")
    missing = [f for f in functions if not hasattr(be, f)]
    if missing:
        raise AttributeError(f"backend {name!r} lacks {', '.join(missing)} of the kernel contract")
    return be


# ---------------------------------------------------------------------------------------------
# data (cached per size: the suites and the report build each data set once per process)

@functools.lru_cache(maxsize=None)
def scoring_data(size, kind):
    """kind: "dense32", "dense64" or "csr"; returns (X, coef float64, intercept)."""
    from fastwlr.datasets import make_watch_time
    s = SIZES[size]
    if kind == "dense64":
        X32, coef, b = scoring_data(size, "dense32")
        return X32.astype(np.float64), coef, b
    if kind == "dense32":
        data = make_watch_time(s["n_score"], s["n_features"], dtype=np.float32, random_state=SEED)
    else:
        data = make_watch_time(s["csr_rows"], sparse=True, n_hashed_features=s["csr_cols"],
                               nnz_per_row=s["csr_nnz"], dtype=np.float32, random_state=SEED)
    return data.X, np.ascontiguousarray(data.coef, dtype=np.float64), float(data.intercept)


def _describe_scoring(size, kind):
    s = SIZES[size]
    if kind == "csr":
        return (f"CSR {s['csr_rows']:,} rows x 2^{int(math.log2(s['csr_cols']))} cols x {s['csr_nnz']} nnz/row, "
                "float32 data, int32 indices (make_watch_time sparse=True)")
    dt = "float32" if kind == "dense32" else "float64"
    return f"dense {s['n_score']:,} x {s['n_features']} {dt} (make_watch_time, N(0,1) features)"


@functools.lru_cache(maxsize=None)
def topk_data(size, layout):
    """layout: "equal" (G x C candidates), "ragged" (sizes 1..2C-1, same total), "one" (one big group).

    Returns (scores float64, offsets int64)."""
    s = SIZES[size]
    rng = np.random.default_rng(SEED + 1)
    G, C = s["topk_groups"], s["topk_cands"]
    if layout == "equal":
        offsets = np.arange(G + 1, dtype=np.int64) * C
    elif layout == "ragged":
        sizes = rng.integers(1, 2 * C, size=G)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    else:
        offsets = np.array([0, s["big_group"]], dtype=np.int64)
    # log-normal-ish odds: realistic ranking scores with many near-ties in the bulk
    scores = rng.standard_normal(int(offsets[-1]))
    return scores, offsets


def _describe_topk(size, layout):
    s = SIZES[size]
    if layout == "equal":
        return f"{s['topk_groups']:,} requests x {s['topk_cands']} candidates, k={s['topk_k']}"
    if layout == "ragged":
        return (f"{s['topk_groups']:,} requests, ragged 1..{2 * s['topk_cands'] - 1} candidates "
                f"(mean {s['topk_cands']}), k={s['topk_k']}")
    return f"one request of {s['big_group']:,} candidates, k={s['big_k']}"


@functools.lru_cache(maxsize=None)
def fused_data(size, layout):
    """Features for fused score+top-k: dense float32 rows grouped like ``topk_data(layout)``."""
    from fastwlr.datasets import make_watch_time
    _, offsets = topk_data(size, layout)
    s = SIZES[size]
    data = make_watch_time(int(offsets[-1]), s["n_features"], dtype=np.float32, random_state=SEED + 2)
    return data.X, np.ascontiguousarray(data.coef, dtype=np.float64), float(data.intercept), offsets


@functools.lru_cache(maxsize=None)
def training_data(size, kind):
    """kind: "dense", "csr" or "claims"; returns (Features, X as given to peers, y 0/1 float64, w raw)."""
    from fastwlr import _validation as v
    from fastwlr.datasets import load_claims, make_watch_time
    s = SIZES[size]
    if kind == "claims":
        try:
            data = load_claims("freMTPL2")
        except FileNotFoundError as exc:
            raise Skip(f"freMTPL2 not found ({exc}); set FASTWLR_DATA_DIR")
        X, y, w = data.X, data.y, data.sample_weight
        if s["claims_rows"] is not None and s["claims_rows"] < X.shape[0]:
            X, y, w = X[:s["claims_rows"]].copy(), y[:s["claims_rows"]].copy(), w[:s["claims_rows"]].copy()
    elif kind == "dense":
        data = make_watch_time(s["n_train"], s["n_features"], dtype=np.float32, random_state=SEED + 3)
        X, y, w = data.X, data.y, data.sample_weight
    else:
        data = make_watch_time(s["n_train"], sparse=True, n_hashed_features=s["train_cols"],
                               nnz_per_row=s["train_nnz"], dtype=np.float32, random_state=SEED + 3)
        X, y, w = data.X, data.y, data.sample_weight
    features = v.check_features(X)
    return features, X, np.ascontiguousarray(y, dtype=np.float64), np.ascontiguousarray(w, dtype=np.float64)


def _describe_training(size, kind):
    s = SIZES[size]
    if kind == "claims":
        rows = "all 677,991" if s["claims_rows"] is None else f"first {s['claims_rows']:,}"
        return (f"freMTPL2 claims ({rows} policies, standardised + one-hot, float64; "
                "weight = claim amount, 1 if none)")
    if kind == "dense":
        return f"dense {s['n_train']:,} x {s['n_features']} float32 (make_watch_time; weight = watch time, 1 if no click)"
    return (f"CSR {s['n_train']:,} x 2^{int(math.log2(s['train_cols']))} x {s['train_nnz']} nnz/row float32 "
            "(make_watch_time sparse; weight = watch time, 1 if no click)")


def objective(size, kind, coef, intercept):
    """The fastwlr objective (weighted-mean log loss with weights / mean(w), + alpha/2 ||coef||^2)."""
    from fastwlr._lbfgs import normalised_weights
    from fastwlr._config import get_backend
    features, _, y, w = training_data(size, kind)
    be = get_backend("cython") if hasattr(get_backend("cython"), "objective_grad_dense") else get_backend("reference")
    coef = np.ascontiguousarray(coef, dtype=np.float64)
    if features.is_sparse:
        loss, _, _ = be.objective_grad_csr(features.data, features.indices, features.indptr, features.n_features,
                                           y, normalised_weights(w), coef, float(intercept), alpha(size),
                                           os.cpu_count() or 1)
    else:
        loss, _, _ = be.objective_grad_dense(features.X, y, normalised_weights(w), coef, float(intercept), alpha(size),
                                             os.cpu_count() or 1)
    return float(loss)


@functools.lru_cache(maxsize=None)
def optimum(size, kind):
    """L* of the training objective: a tight fastwlr L-BFGS fit (the exact solver's ground truth)."""
    import warnings
    from fastwlr._lbfgs import fit_lbfgs
    features, _, y, w = training_data(size, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_lbfgs(features, y, w, alpha=alpha(size), tol=1e-6, max_iter=500, n_threads=os.cpu_count() or 1,
                        backend="cython")
    return objective(size, kind, res.coef, res.intercept)


# ---------------------------------------------------------------------------------------------
# streaming-read floor: a plain pass over the same bytes, measured in the same run

_STREAM = {}


def _stream_kernel():
    if "fn" not in _STREAM:
        try:
            import numba

            @numba.njit(parallel=True, nogil=True, cache=False)
            def stream_sum(words):
                s = np.uint64(0)
                for i in numba.prange(words.shape[0]):
                    s += words[i]
                return s
            _STREAM["fn"], _STREAM["how"] = stream_sum, "numba prange sum of the buffer as uint64 words"
        except ImportError:
            _STREAM["fn"] = lambda words: words.view(np.float64).sum()
            _STREAM["how"] = "numpy float64 sum of the buffer (numba not installed)"
    return _STREAM["fn"], _STREAM["how"]


def _as_words(arrays):
    out = []
    for a in arrays:
        a = np.ascontiguousarray(a)
        n8 = a.nbytes // 8
        out.append(a.reshape(-1).view(np.uint8)[:n8 * 8].view(np.uint64))
    return out


def floor_case(key, label, arrays_fn, threads):
    def build():
        fn, _ = _stream_kernel()
        words = _as_words(arrays_fn())

        def run():
            return [fn(w) for w in words]
        return run
    nbytes_holder = {}

    def nbytes():
        if "n" not in nbytes_holder:
            nbytes_holder["n"] = sum(a.nbytes for a in arrays_fn())
        return nbytes_holder["n"]
    c = Case("floor", key, label, "stream", "floor", threads, build, note=_stream_kernel()[1])
    c.extra["nbytes_fn"] = nbytes
    return c


def floor_cases(size):
    out = []
    for t in thread_counts():
        for kind in ("dense32", "dense64", "csr"):
            out.append(floor_case(f"read {kind}", _describe_scoring(size, kind),
                                  functools.partial(_feature_arrays, size, kind), t))
        out.append(floor_case("read topk scores", "float64 scores of the equal-groups top-k",
                              lambda: [topk_data(size, "equal")[0]], t))
        out.append(floor_case("read one-group scores", "float64 scores of the one-group top-k",
                              lambda: [topk_data(size, "one")[0]], t))
        out.append(floor_case("read fused features", "float32 features of the fused equal-groups top-k",
                              lambda: [fused_data(size, "equal")[0]], t))
    return out


def _feature_arrays(size, kind):
    X = scoring_data(size, kind)[0]
    if hasattr(X, "indptr"):
        return [X.data, X.indices, X.indptr]
    return [X]


# ---------------------------------------------------------------------------------------------
# scoring

def _transform(z, output):
    if output == "log_odds":
        return z
    if output == "odds":
        with np.errstate(over="ignore"):
            return np.exp(z)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def _check_close(expected_fn, rtol):
    """|result - expected| <= rtol (|expected| + rms(expected)): relative, but not blown up where z ~ 0."""
    def check(result):
        expected = expected_fn()
        got = np.asarray(result, dtype=np.float64)
        finite = np.isfinite(expected)
        assert np.array_equal(finite, np.isfinite(got)), "non-finite values differ from the reference"
        e, g = expected[finite], got[finite]
        scale = np.abs(e) + np.sqrt(np.mean(e * e)) if e.size else e
        with np.errstate(invalid="ignore", divide="ignore"):
            worst = float(np.max(np.abs(g - e) / scale, initial=0.0))
        assert worst <= rtol, f"relative error {worst:.3g} > {rtol:g} against the numpy reference"
    return check


@functools.lru_cache(maxsize=None)
def _scoring_expected(size, kind, output):
    from fastwlr._config import get_backend
    X, coef, b = scoring_data(size, kind)
    out = np.empty(X.shape[0], dtype=np.float64)
    ref = get_backend("reference")
    if hasattr(X, "indptr"):
        ref.score_csr(X.data, X.indices, X.indptr, coef, b, output, out, 1)
    else:
        ref.score_dense(X, coef, b, output, out, 1)
    return out


def scoring_cases(size):
    """Every backend's scoring kernel (validated input, contract call), the public ``fastwlr.score``,
    and numpy/BLAS or scipy.sparse doing the same product natively."""
    cases = []
    for kind in ("dense32", "dense64", "csr"):
        label = _describe_scoring(size, kind)
        out_dtype = np.float32 if kind == "dense32" else np.float64
        for output in OUTPUTS:
            name = f"{kind} -> {output}"
            rtol = 1e-5 if kind in ("dense32", "csr") else 1e-10   # float32 features may be summed in float32
            # odds are float64 by the library's dtype rule; log-odds/proba keep the features' dtype
            res_dtype = np.float64 if output == "odds" else (np.float32 if kind != "dense64" else np.float64)
            for t in thread_counts():
                for be_name in OUR_BACKENDS:
                    def build(be_name=be_name, kind=kind, output=output, t=t, res_dtype=res_dtype):
                        be = _backend(be_name, "score_csr" if kind == "csr" else "score_dense")
                        X, coef, b = scoring_data(size, kind)
                        out = np.empty(X.shape[0], dtype=res_dtype)
                        if kind == "csr":
                            d, i, p = X.data, X.indices, X.indptr
                            return lambda: (be.score_csr(d, i, p, coef, b, output, out, t), out)[1]
                        return lambda: (be.score_dense(X, coef, b, output, out, t), out)[1]
                    cases.append(Case("scoring", name, label, be_name,
                                      "reference" if be_name == "reference" else "ours", t, build,
                                      floor=f"read {kind}",
                                      check=_check_close(functools.partial(_scoring_expected, size, kind, output),
                                                         rtol)))

                def build_api(kind=kind, output=output, t=t, res_dtype=res_dtype):
                    import fastwlr
                    X, coef, b = scoring_data(size, kind)
                    out = np.empty(X.shape[0], dtype=res_dtype)
                    return lambda: fastwlr.score(X, coef, b, output=output, n_threads=t, out=out)
                cases.append(Case("scoring", name, label, "public API", "ours", t, build_api,
                                  floor=f"read {kind}", note="fastwlr.score: validation + auto backend",
                                  check=_check_close(functools.partial(_scoring_expected, size, kind, output), rtol)))

                def build_peer(kind=kind, output=output):
                    X, coef, b = scoring_data(size, kind)
                    # the natural native-precision expression: BLAS gemv / scipy's CSR matvec
                    c = coef.astype(X.dtype)
                    return lambda: _transform(X @ c + X.dtype.type(b), output)
                cases.append(Case("scoring", name, label, "scipy.sparse" if kind == "csr" else "numpy",
                                  "peer", t, build_peer, floor=f"read {kind}",
                                  note=("scipy CSR @ coef" if kind == "csr" else "numpy X @ coef (BLAS gemv)")
                                  + ", then np.exp in the features' dtype",
                                  check=_check_close(functools.partial(_scoring_expected, size, kind, output),
                                                     1e-4 if kind in ("dense32", "csr") else 1e-9)))
    return _attach_nbytes(cases, size)


def _attach_nbytes(cases, size):
    for c in cases:
        if c.group == "scoring":
            kind = c.name.split(" ")[0]
            c.extra["nbytes_fn"] = functools.partial(lambda k: sum(a.nbytes for a in _feature_arrays(size, k)), kind)
    return cases


# ---------------------------------------------------------------------------------------------
# top-k

def _numpy_topk(scores, offsets, k):
    """Best plain-numpy grouped top-k: argpartition on a padded (G, max size) matrix, then sort k."""
    sizes = np.diff(offsets)
    G, m = sizes.shape[0], int(sizes.max(initial=0))
    kk = min(k, m)
    if G == 1:
        s = scores[offsets[0]:offsets[1]]
        part = np.argpartition(-s, kk - 1)[:kk]
        order = part[np.argsort(-s[part], kind="stable")]
        return order[None, :].astype(np.int64), s[order][None, :]
    if np.all(sizes == m):
        mat = scores[:G * m].reshape(G, m)
    else:
        mat = np.full((G, m), -np.inf)
        col = np.arange(scores.shape[0]) - np.repeat(offsets[:-1], sizes)
        mat[np.repeat(np.arange(G), sizes), col] = scores
    part = np.argpartition(-mat, kk - 1, axis=1)[:, :kk]
    vals = np.take_along_axis(mat, part, axis=1)
    o = np.argsort(-vals, axis=1, kind="stable")
    idx = np.take_along_axis(part, o, axis=1) + offsets[:-1, None]
    return idx, np.take_along_axis(vals, o, axis=1)


def _check_topk_values(expected_fn):
    def check(result):
        idx, vals = result[:2]   # kernels also report NaN positions (none here)
        exp_vals = expected_fn()
        vals = np.asarray(vals, dtype=np.float64)
        n = min(vals.shape[1], exp_vals.shape[1])
        finite = np.isfinite(exp_vals[:, :n])
        np.testing.assert_allclose(vals[:, :n][finite], exp_vals[:, :n][finite], rtol=1e-6)
    return check


@functools.lru_cache(maxsize=None)
def _topk_expected(size, layout):
    scores, offsets = topk_data(size, layout)
    k = SIZES[size]["big_k" if layout == "one" else "topk_k"]
    return _numpy_topk(scores, offsets, k)[1]


@functools.lru_cache(maxsize=None)
def _fused_expected(size, layout, output):
    X, coef, b, offsets = fused_data(size, layout)
    z = X.astype(np.float64) @ coef + b
    k = SIZES[size]["big_k" if layout == "one" else "topk_k"]
    return _transform(_numpy_topk(z, offsets, k)[1], output)


def topk_cases(size):
    cases = []
    s = SIZES[size]
    for layout in ("equal", "ragged", "one"):
        k = s["big_k" if layout == "one" else "topk_k"]
        label = _describe_topk(size, layout) + " over float64 scores"
        floor = "read one-group scores" if layout == "one" else "read topk scores"
        for t in thread_counts():
            for be_name in OUR_BACKENDS:
                def build(be_name=be_name, layout=layout, k=k, t=t):
                    be = _backend(be_name, "topk")
                    scores, offsets = topk_data(size, layout)
                    return lambda: be.topk(scores, offsets, k, t)
                cases.append(Case("topk", f"top-k {layout}", label, be_name,
                                  "reference" if be_name == "reference" else "ours", t, build, floor=floor,
                                  check=_check_topk_values(functools.partial(_topk_expected, size, layout))))

            def build_api(layout=layout, k=k, t=t):
                import fastwlr
                scores, offsets = topk_data(size, layout)
                return lambda: fastwlr.topk(scores, k, offsets=offsets, n_threads=t)
            cases.append(Case("topk", f"top-k {layout}", label, "public API", "ours", t, build_api, floor=floor,
                              note="fastwlr.topk: validation + auto backend",
                              check=_check_topk_values(functools.partial(_topk_expected, size, layout))))

            def build_np(layout=layout, k=k):
                scores, offsets = topk_data(size, layout)
                return lambda: _numpy_topk(scores, offsets, k)
            cases.append(Case("topk", f"top-k {layout}", label, "numpy", "peer", t, build_np, floor=floor,
                              note="np.argpartition on a padded (requests x max size) matrix, then argsort of k",
                              check=_check_topk_values(functools.partial(_topk_expected, size, layout))))
            for c in cases[-len(OUR_BACKENDS) - 2:]:
                c.extra["nbytes_fn"] = functools.partial(lambda lay: topk_data(size, lay)[0].nbytes, layout)
    # fused score + top-k: dense float32 features, never materialising the n scores
    for layout in ("equal", "one"):
        k = s["big_k" if layout == "one" else "topk_k"]
        label = (_describe_topk(size, layout) + f"; dense float32 features x {s['n_features']}")
        floor = "read fused features"
        for output in ("odds",):
            for t in thread_counts():
                for be_name in OUR_BACKENDS:
                    def build(be_name=be_name, layout=layout, k=k, t=t, output=output):
                        from fastwlr.scoring import result_dtype
                        be = _backend(be_name, "score_topk_dense")
                        X, coef, b, offsets = fused_data(size, layout)
                        out_dtype = result_dtype(X.dtype, output)
                        return lambda: be.score_topk_dense(X, coef, b, offsets, k, output, None, out_dtype, t)
                    cases.append(Case("topk", f"score+top-k {layout} -> {output}", label, be_name,
                                      "reference" if be_name == "reference" else "ours", t, build,
                                      floor=floor if layout == "equal" else None,
                                      check=_check_topk_values(functools.partial(_fused_expected, size, layout, output))))

                def build_api(layout=layout, k=k, t=t, output=output):
                    import fastwlr
                    X, coef, b, offsets = fused_data(size, layout)
                    return lambda: fastwlr.score_topk(X, coef, b, k, offsets=offsets, output=output, n_threads=t)
                cases.append(Case("topk", f"score+top-k {layout} -> {output}", label, "public API", "ours", t,
                                  build_api, floor=floor if layout == "equal" else None,
                                  note="fastwlr.score_topk: validation + auto backend",
                                  check=_check_topk_values(functools.partial(_fused_expected, size, layout, output))))

                def build_np(layout=layout, k=k, output=output):
                    X, coef, b, offsets = fused_data(size, layout)
                    c = coef.astype(np.float32)

                    def run():
                        idx, z = _numpy_topk(X @ c + np.float32(b), offsets, k)
                        return idx, _transform(z.astype(np.float64), output)
                    return run
                cases.append(Case("topk", f"score+top-k {layout} -> {output}", label, "numpy", "peer", t,
                                  build_np, floor=floor if layout == "equal" else None,
                                  note="X @ coef (BLAS, float32), argpartition, exp of the winners",
                                  check=_check_topk_values(functools.partial(_fused_expected, size, layout, output))))
                for c in cases[-len(OUR_BACKENDS) - 2:]:
                    c.extra["nbytes_fn"] = functools.partial(lambda lay: fused_data(size, lay)[0].nbytes, layout)
    return cases


# ---------------------------------------------------------------------------------------------
# training

class _Reached(Exception):
    pass


def _sgd_params(size, weighting, optimizer):
    from fastwlr._sgd import SGDParams
    # fit_sgd's objective is on raw weights: its l2 is our alpha times the mean weight (estimators.py)
    return lambda mean_w: SGDParams(weighting=weighting, optimizer=optimizer, l2=alpha(size) * mean_w)


def _subset(features, y, w, rows):
    from fastwlr import _validation as v
    if rows >= features.n_rows:
        return features, y, w, 1.0
    if features.is_sparse:
        import scipy.sparse as sp
        X = sp.csr_array((features.data, features.indices, features.indptr),
                         shape=(features.n_rows, features.n_features))[:rows]
    else:
        X = features.X[:rows]
    return v.check_features(X), y[:rows], w[:rows], features.n_rows / rows


def _sgd_epoch_case(size, kind, weighting, optimizer, be_name, label):
    def build():
        from fastwlr._sgd import fit_sgd
        be = _backend(be_name, "sgd_epoch_csr" if kind == "csr" else "sgd_epoch_dense")
        features, _, y, w = training_data(size, kind)
        scale = 1.0
        if be_name == "reference":
            # the reference epoch is a per-row Python loop (an oracle, not a contender): time a slice
            features, y, w, scale = _subset(features, y, w, SIZES[size]["ref_sgd_rows"])
        params = _sgd_params(size, weighting, optimizer)(float(w.mean()))

        def run():
            t0 = time.perf_counter()
            res = fit_sgd(features, y, w, params, max_iter=1, tol=None, random_state=SEED, n_threads=1,
                          backend=be_name)
            sec = (time.perf_counter() - t0) * scale
            out = {"seconds": sec, "epochs": 1}
            if scale == 1.0:
                out["loss"] = objective(size, kind, res.coef, res.intercept)
            else:
                out["extrapolated_from_rows"] = features.n_rows
            return out
        return run
    note = "fit_sgd, 1 epoch from zero, shuffled order (driver included)"
    if be_name == "reference":
        note += f"; per-row Python loop timed on {SIZES[size]['ref_sgd_rows']:,} rows, scaled to all rows"
    return Case("training", f"1 epoch {weighting}/{optimizer} [{kind}]", label, be_name,
                "reference" if be_name == "reference" else "ours", 1, build, check=_check_training,
                self_timed=True, note=note)


def _check_training(result):
    assert result["seconds"] > 0
    if "loss" in result and result["loss"] is not None:
        assert math.isfinite(result["loss"]), result


def _sgd_target_case(size, kind, weighting, optimizer, be_name, label):
    def build():
        from fastwlr._sgd import fit_sgd
        _backend(be_name, "sgd_epoch_csr" if kind == "csr" else "sgd_epoch_dense")
        features, _, y, w = training_data(size, kind)
        target = optimum(size, kind) * (1 + TARGET_GAP)
        params = _sgd_params(size, weighting, optimizer)(float(w.mean()))
        max_epochs = SIZES[size]["max_epochs"]

        def run():
            rng = np.random.default_rng(SEED)
            state, spent, loss = None, 0.0, math.inf
            for epoch in range(1, max_epochs + 1):
                t0 = time.perf_counter()
                res = fit_sgd(features, y, w, params, max_iter=1, tol=None, random_state=rng, n_threads=1,
                              backend=be_name, state=state)
                spent += time.perf_counter() - t0
                state = res.state
                loss = objective(size, kind, res.coef, res.intercept)   # monitoring: not timed
                if loss <= target:
                    return {"seconds": spent, "epochs": epoch, "loss": loss, "reached": True}
            return {"seconds": spent, "epochs": max_epochs, "loss": loss, "reached": False}
        return run
    return Case("training", f"to 1% {weighting}/{optimizer} [{kind}]", label, be_name, "ours", 1, build,
                check=_check_training, self_timed=True,
                note="epochs (warm-started fit_sgd) until (L - L*)/L* <= 1 %; objective checks not timed")


def _lbfgs_case(size, kind, t, label, to_target):
    def build():
        import warnings
        from fastwlr._lbfgs import fit_lbfgs
        _backend("cython", "objective_grad_dense", "objective_grad_csr")
        features, _, y, w = training_data(size, kind)
        target = optimum(size, kind) * (1 + TARGET_GAP) if to_target else None

        def run():
            spent_monitor = [0.0]
            n_it = [0]

            def cb(coef, b):
                n_it[0] += 1
                t1 = time.perf_counter()
                loss = objective(size, kind, coef, b)
                spent_monitor[0] += time.perf_counter() - t1
                if loss <= target:
                    raise _Reached(loss)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    res = fit_lbfgs(features, y, w, alpha=alpha(size), tol=1e-6, n_threads=t, backend="cython",
                                    callback=cb if to_target else None)
                    loss, it = objective(size, kind, res.coef, res.intercept), res.n_iter
                    reached = not to_target or loss <= target
                except _Reached as r:
                    loss, it, reached = float(r.args[0]), n_it[0], True
            sec = time.perf_counter() - t0 - spent_monitor[0]
            return {"seconds": sec, "epochs": it, "loss": loss, "reached": reached}
        return run
    what = "to 1% lbfgs" if to_target else "exact lbfgs (tol 1e-6)"
    return Case("training", f"{what} [{kind}]", label, "cython", "ours", t, build, check=_check_training,
                self_timed=True, note="fastwlr L-BFGS-B over the compiled objective+gradient; 'epochs' = iterations")


def _sklearn_lr_case(size, kind, t, label, to_target):
    def build():
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError:
            raise Skip("scikit-learn not installed (pip install '.[bench]')")
        import warnings
        _, X, y, w = training_data(size, kind)
        C = 1.0 / (alpha(size) * float(w.sum()))   # sklearn: C sum w l + 1/2 ||coef||^2  ==  ours * n / (alpha ...)
        target = optimum(size, kind) * (1 + TARGET_GAP) if to_target else None

        def fit(max_iter, tol):
            clf = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, tol=tol)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                clf.fit(X, y, sample_weight=w)
                sec = time.perf_counter() - t0
            return sec, objective(size, kind, clf.coef_[0], clf.intercept_[0]), clf.n_iter_[0]

        def run():
            if not to_target:
                sec, loss, it = fit(1000, 1e-6)
                return {"seconds": sec, "epochs": int(it), "loss": loss, "reached": True}
            loss = math.inf
            # from scratch with max_iter = 1, 2, 3, ... in steps of about 25 % (time over-estimated by < 30 %)
            for it in sorted({max(1, int(round(1.25 ** j))) for j in range(40)} & set(range(1, SIZES[size]["lr_max_iter"] + 1))):
                sec, loss, _ = fit(it, 0.0)
                if loss <= target:
                    return {"seconds": sec, "epochs": it, "loss": loss, "reached": True}
            return {"seconds": sec, "epochs": it, "loss": loss, "reached": False}
        return run
    what = "to 1% lbfgs" if to_target else "exact lbfgs (tol 1e-6)"
    return Case("training", f"{what} [{kind}]", label, "sklearn-LR", "peer", t, build, check=_check_training,
                self_timed=True, note="LogisticRegression(lbfgs, C = 1/(alpha sum w)), raw sample weights; "
                + ("to 1%: fits from scratch with max_iter = 1, 2, 3, 4, 5, 6, 7, 9, 12, 15, ... (time of the first that reaches)"
                   if to_target else "tol = 1e-6"))


def _sklearn_sgd_case(size, kind, label, to_target):
    def build():
        try:
            from sklearn.linear_model import SGDClassifier
        except ImportError:
            raise Skip("scikit-learn not installed (pip install '.[bench]')")
        import warnings
        _, X, y, w = training_data(size, kind)
        w_norm = w / w.mean()   # raw watch times make sklearn's default schedule diverge (benchmarks/README.md)
        target = optimum(size, kind) * (1 + TARGET_GAP)
        max_epochs = SIZES[size]["max_epochs"] if to_target else 1
        perm = np.random.default_rng(SEED).permutation(X.shape[0])
        Xs, ys, ws = X[perm], y[perm], w_norm[perm]

        def run():
            clf = SGDClassifier(loss="log_loss", alpha=alpha(size), random_state=SEED, average=True)
            spent, loss = 0.0, math.inf
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for epoch in range(1, max_epochs + 1):
                    t0 = time.perf_counter()
                    clf.partial_fit(Xs, ys, classes=[0.0, 1.0], sample_weight=ws)
                    spent += time.perf_counter() - t0
                    loss = objective(size, kind, clf.coef_[0], clf.intercept_[0])
                    if to_target and loss <= target:
                        return {"seconds": spent, "epochs": epoch, "loss": loss, "reached": True}
            return {"seconds": spent, "epochs": max_epochs, "loss": loss, "reached": loss <= target}
        return run
    name = f"to 1% peer-sgd [{kind}]" if to_target else f"1 epoch peer-sgd [{kind}]"
    return Case("training", name, label, "sklearn-SGD", "peer", 1, build, check=_check_training, self_timed=True,
                note="SGDClassifier(log_loss, alpha, average=True) partial_fit epochs over rows shuffled once; "
                     "weights / mean(w)")


_VW_FILES = {}


def _vw_cache(size, kind):
    """A VW text file and binary cache of the training data (built untimed, removed at exit)."""
    key = (size, kind)
    if key in _VW_FILES:
        return _VW_FILES[key]
    import atexit
    features, X, y, w = training_data(size, kind)
    tmp = tempfile.mkdtemp(prefix="fastwlr_vw_")
    atexit.register(shutil.rmtree, tmp, True)
    path = os.path.join(tmp, "train.vw")
    lab = np.where(y > 0, 1, -1)
    n = features.n_rows
    with open(path, "w") as f:
        if features.is_sparse:
            nnz = np.diff(features.indptr)
            if not np.all(nnz == nnz[0]):
                raise Skip("VW writer assumes a fixed number of non-zeros per row")
            m = int(nnz[0])
            pairs = np.empty((n, 2 * m), dtype=np.float64)
            pairs[:, 0::2] = features.indices.reshape(n, m)
            pairs[:, 1::2] = features.data.reshape(n, m)
        else:
            m = features.n_features
            pairs = np.empty((n, 2 * m), dtype=np.float64)
            pairs[:, 0::2] = np.arange(m)
            pairs[:, 1::2] = features.X
        table = np.column_stack([lab, w, pairs])
        fmt = "%d %.9g |f " + " ".join(["%d:%.9g"] * m)
        np.savetxt(f, table, fmt=fmt)
    _VW_FILES[key] = (tmp, path)
    return _VW_FILES[key]


def _vw_case(size, kind, label, to_target):
    def build():
        try:
            from vowpalwabbit import pyvw
        except ImportError:
            raise Skip("vowpalwabbit not installed (pip install '.[bench]')")
        features, _, y, w = training_data(size, kind)
        tmp, path = _vw_cache(size, kind)
        d = features.n_features
        bits = max(18, int(math.ceil(math.log2(d + 1))) + 1)
        cache = os.path.join(tmp, "train.cache")
        # no --l2: VW applies it per update, not as alpha/2 ||coef||^2 on the mean loss; with alpha = 1e-6
        # the penalty is negligible in the objective we report anyway
        base = f"--loss_function logistic --quiet -b {bits} --holdout_off"
        if not os.path.exists(cache):   # build the binary cache untimed: the timed passes read it
            pyvw.Workspace(f"{base} -d {path} --cache_file {cache}").finish()
        target = optimum(size, kind) * (1 + TARGET_GAP)
        max_passes = SIZES[size]["max_epochs"] if to_target else 1

        def train(passes):
            t0 = time.perf_counter()
            vw = pyvw.Workspace(f"{base} --cache_file {cache} --passes {passes}")
            vw.run_parser()
            sec = time.perf_counter() - t0
            ns = vw.hash_space("f")
            mask = (1 << bits) - 1
            coef = np.array([vw.get_weight((ns + j) & mask) for j in range(d)]) if d <= 2**16 else \
                _vw_weights(vw, ns, mask, d)
            b = vw.get_weight(11650396 & mask)   # VW's constant feature
            vw.finish()
            return sec, objective(size, kind, coef, b)

        def run():
            loss = math.inf
            for p in range(1, max_passes + 1):   # VW decays its rate across passes: fresh runs of p passes
                sec, loss = train(p)
                if to_target and loss <= target:
                    return {"seconds": sec, "epochs": p, "loss": loss, "reached": True}
            return {"seconds": sec, "epochs": max_passes, "loss": loss, "reached": loss <= target}
        return run
    name = f"to 1% peer-sgd [{kind}]" if to_target else f"1 epoch peer-sgd [{kind}]"
    return Case("training", name, label, "vw", "peer", 1, build, check=_check_training, self_timed=True,
                note="vowpalwabbit: logistic loss, importance weight = raw weight, default adaptive/normalised/"
                     "invariant updates, --holdout_off, reads its binary cache (parse included); loss = our "
                     "objective on its extracted weights")


def _vw_weights(vw, ns, mask, d):
    return np.fromiter((vw.get_weight((ns + j) & mask) for j in range(d)), dtype=np.float64, count=d)


def training_cases(size):
    cases = []
    for kind in ("dense", "csr", "claims"):
        label = _describe_training(size, kind)
        for weighting in WEIGHTINGS:
            for optimizer in OPTIMIZERS:
                for be_name in OUR_BACKENDS:
                    cases.append(_sgd_epoch_case(size, kind, weighting, optimizer, be_name, label))
                for be_name in ("cython", "numba"):
                    cases.append(_sgd_target_case(size, kind, weighting, optimizer, be_name, label))
        for to_target in (False, True):
            for t in thread_counts(size):
                cases.append(_lbfgs_case(size, kind, t, label, to_target))
                cases.append(_sklearn_lr_case(size, kind, t, label, to_target))
            cases.append(_sklearn_sgd_case(size, kind, label, to_target))
            cases.append(_vw_case(size, kind, label, to_target))
    return cases


def all_cases(size):
    return floor_cases(size) + scoring_cases(size) + topk_cases(size) + training_cases(size)
