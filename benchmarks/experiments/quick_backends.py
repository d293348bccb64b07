"""Quick measurement (not a test): cold start and per-kernel speed of the Numba backend vs the Cython core.

    python benchmarks/experiments/quick_backends.py [--n-samples 1000000] [--repeat 3] [--n-threads 2] [--skip-cold]
    python benchmarks/experiments/quick_backends.py --smoke   # seconds: 20,000 rows, Numba's own cache only

1. Cold start, each in a fresh interpreter (subprocess): ``import fastwlr``, then the first call of
   every kernel on tiny inputs (the compile or the cache load: what a first request pays), then the
   same call again. Numba twice: with an empty disk cache (``NUMBA_CACHE_DIR`` = a new temporary
   directory: it compiles) and with the cache that run filled (it loads). Cython: the extension
   modules load at import, so its first call is the steady-state one plus page faults.
2. Speed, one run, both backends round-robin, best of ``--repeat`` (after a warm-up call, so no JIT
   time is included): 1M x 64 float32 dense and 1M-row hashed CSR (2^20 columns, 40 non-zeros a
   row, float32 / int32) scoring to odds; top-k (groups of 100, k = 10) on precomputed scores;
   fused score+top-k (dense); the objective + gradient (dense, CSR); one SGD epoch (AdaGrad + IWA,
   the default, dense and CSR; sequential by nature). Ratio = Numba time / Cython time (> 1: Cython faster).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

COLD_CODE = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import fastwlr
from fastwlr._validation import check_features
from fastwlr.backends._contract import EpochParams, SGDState
t_import = time.perf_counter() - t0
t0 = time.perf_counter()
be = fastwlr.get_backend(BACKEND)   # imports the backend (numba itself, for the numba backend)
t_backend = time.perf_counter() - t0
rng = np.random.default_rng(0)
X = rng.standard_normal((1000, 64)).astype(np.float32)
coef = rng.standard_normal(64)
y = (rng.random(1000) < 0.3).astype(np.float64)
w = np.ones(1000)
order = np.arange(1000, dtype=np.int64)
import scipy.sparse as sp
S = sp.random(1000, 4096, density=0.01, format="csr", random_state=0, dtype=np.float32)
f = check_features(S)
params = EpochParams(1, 1, 0, 0.05, 0.5, 0.0, 0.0, 0.05, 1.0, float("inf"), True)
offsets = np.arange(0, 1001, 100)
calls = {
    "score_dense": lambda: fastwlr.score(X, coef, backend=BACKEND),
    "score_csr": lambda: fastwlr.score(S, np.zeros(4096), backend=BACKEND),
    "topk": lambda: fastwlr.topk(X[:, 0].copy(), 10, offsets=offsets, backend=BACKEND),
    "score_topk_dense": lambda: fastwlr.score_topk(X, coef, k=10, offsets=offsets, backend=BACKEND),
    "objective_dense": lambda: be.objective_grad_dense(X, y, w, coef, 0.0, 0.0, 2),
    "sgd_epoch_dense": lambda: be.sgd_epoch_dense(X, y, w, order, SGDState.new(64, "adagrad", False), params),
}
first, second = {}, {}
for name, fn in calls.items():
    t = time.perf_counter(); fn(); first[name] = time.perf_counter() - t
    t = time.perf_counter(); fn(); second[name] = time.perf_counter() - t
print(json.dumps({"import": t_import, "backend_import": t_backend, "first": first, "second": second}))
"""


def cold_start(backend, cache_dir=None):
    import fastwlr
    # the child imports the fastwlr this process runs (from a checkout's root, ``python -c`` would
    # import the source tree first, which may not hold the compiled core)
    root = os.path.dirname(os.path.dirname(fastwlr.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    env.pop("FASTWLR_BACKEND", None)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", f"BACKEND = {backend!r}\n" + COLD_CODE], capture_output=True,
                       text=True, env=env, timeout=1800, cwd=root)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["process_wall"] = wall
    return out


def print_cold(label, res):
    first = res["first"]
    print(f"{label:<20} import fastwlr {res['import']:5.2f} s + backend {res['backend_import']:5.2f} s | "
          f"first calls total {sum(first.values()):7.2f} s | whole process {res['process_wall']:6.2f} s")
    print("    " + "  ".join(f"{k} {v:.3f}/{res['second'][k] * 1e3:.1f}ms" for k, v in first.items()))


def speed(n, repeat, n_threads):
    from quick_scoring import best_of   # round-robin best-of timing (this directory is sys.path[0])
    import scipy.sparse as sp

    import fastwlr
    from fastwlr._sgd import SGDParams, SGDState, _resolve
    from fastwlr._validation import check_features

    rng = np.random.default_rng(0)
    d = 64
    X = rng.standard_normal((n, d), dtype=np.float32)
    coef = rng.standard_normal(d) * 0.1
    nnz_row, D = 40, 1 << 20
    indptr = np.arange(0, (n + 1) * nnz_row, nnz_row, dtype=np.int32)
    indices = rng.integers(0, D, n * nnz_row, dtype=np.int32)
    data = np.ones(n * nnz_row, dtype=np.float32)
    S = sp.csr_matrix((data, indices, indptr), shape=(n, D))
    S.has_canonical_format = False
    coef_s = rng.standard_normal(D) * 0.1
    y = (rng.random(n) < 0.1).astype(np.float64)
    w = np.where(y > 0, rng.lognormal(3, 1, n), 1.0)
    w /= w.mean()
    offsets = np.arange(0, n + 1, 100)
    scores = rng.standard_normal(n)
    fd, fs = check_features(X), check_features(S)
    params = SGDParams(optimizer="adagrad")  # the states below are AdaGrad's
    order = rng.permutation(n).astype(np.int64)

    def cases(name):
        be = fastwlr.get_backend(name)
        out = np.empty(n)
        ep_d = _resolve(params, fd, 1.0, n)
        ep_s = _resolve(params, fs, 1.0, n)
        return {
            "score dense 1Mx64 f32": lambda: fastwlr.score(X, coef, out=out, n_threads=n_threads, backend=name),
            "score CSR 1M x 2^20, 40nnz": lambda: fastwlr.score(S, coef_s, out=out, n_threads=n_threads, backend=name),
            "topk scores (g=100,k=10)": lambda: fastwlr.topk(scores, 10, offsets=offsets, n_threads=n_threads,
                                                             backend=name),
            "score_topk dense": lambda: fastwlr.score_topk(X, coef, k=10, offsets=offsets, n_threads=n_threads,
                                                           backend=name),
            "objective dense": lambda: be.objective_grad_dense(X, y, w, coef, 0.1, 1e-4, n_threads),
            "objective CSR": lambda: be.objective_grad_csr(fs.data, fs.indices, fs.indptr, D, y, w, coef_s, 0.1,
                                                           1e-4, n_threads),
            "SGD epoch dense (1 thr)": lambda: be.sgd_epoch_dense(X, y, w, order, SGDState.new(d, "adagrad", True), ep_d),
            "SGD epoch CSR (1 thr)": lambda: be.sgd_epoch_csr(fs.data, fs.indices, fs.indptr, y, w, order,
                                                              SGDState.new(D, "adagrad", True), ep_s),
        }

    cy, nb = cases("cython"), cases("numba")
    print(f"\nspeed: n = {n}, n_threads = {n_threads}, best of {repeat} (round-robin), after a warm-up call")
    print(f"{'kernel':<30} {'cython':>10} {'numba':>10} {'numba/cython':>13}")
    rows = {}
    for key in cy:
        cy[key]()
        nb[key]()   # warm-up: compile / cache load, first-touch of the output
        t_cy, t_nb = best_of([cy[key], nb[key]], repeat)
        rows[key] = (t_cy, t_nb)
        print(f"{key:<30} {t_cy * 1e3:8.1f}ms {t_nb * 1e3:8.1f}ms {t_nb / t_cy:13.2f}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-samples", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n-threads", type=int, default=2)
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds: 20,000 rows, one round; the cold start uses Numba's usual cache (an empty one "
                         "would compile every kernel: minutes)")
    args = ap.parse_args()
    if args.smoke:
        args.n_samples, args.repeat = 20_000, 1
    import fastwlr
    fastwlr.show_config()
    if not args.skip_cold:
        print("\ncold start (fresh process; per kernel: first call s / second call ms)")
        if args.smoke:
            print_cold("numba, usual cache", cold_start("numba"))
        else:
            with tempfile.TemporaryDirectory(prefix="fastwlr-numba-cache-") as cache:
                print_cold("numba, empty cache", cold_start("numba", cache))
                print_cold("numba, warm cache", cold_start("numba", cache))
        print_cold("cython", cold_start("cython"))
    if not args.skip_speed:
        speed(args.n_samples, args.repeat, args.n_threads)


if __name__ == "__main__":
    main()
