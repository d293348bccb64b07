"""The ``njit`` decorator every kernel of the Numba backend uses, and the shared scalar maths.

The maths is the specification of ``fastwlr/_math.py`` (and the same formulas as
``cython_core/_math.pxd``), in the same operation order, so compiled results agree to the last bit
where the Cython core's do. No ``fastmath``: reassociation would let LLVM reorder the sums, and
results must depend on nothing but the input.
"""
import math
import warnings

import numba
import numpy as np

EXP_OVERFLOW_Z = 709.782712893384
EXP_UNDERFLOW_Z = -745.1332191019412
LOG_ODDS, ODDS, PROBA = 0, 1, 2
OUTPUT_CODES = {"log_odds": LOG_ODDS, "odds": ODDS, "proba": PROBA}

# No fastmath flag at all, not even "contract" (FMA): results are the plain IEEE evaluation of the
# written order on every CPU. (The Cython core, built with -march=native, lets GCC contract some
# a*b + c into FMA, so the two differ in the last bit on ~2% of dot products; see test_conformance.)
FASTMATH = False
CACHE_ERRORS = []  # why on-disk caching was off for a kernel (reported by fastwlr.show_config)


def jit(parallel=False):
    """``numba.njit(cache=True, nogil=True, ...)``, falling back to no disk cache.

    Numba caches next to the source, else in a user-wide directory (``NUMBA_CACHE_DIR``
    overrides both); when none is writable it refuses ``cache=True`` at decoration time. Then the
    kernel still works, it only compiles again in each process.
    """
    def wrap(fn):
        try:
            return numba.njit(cache=True, nogil=True, parallel=parallel, error_model="numpy", fastmath=FASTMATH)(fn)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            if not CACHE_ERRORS:
                warnings.warn(f"fastwlr numba backend: no writable cache directory ({exc}); kernels "
                              "compile again in every process. Set NUMBA_CACHE_DIR to fix this.",
                              RuntimeWarning, stacklevel=2)
            CACHE_ERRORS.append(f"{fn.__name__}: {exc}")
            return numba.njit(cache=False, nogil=True, parallel=parallel, error_model="numpy", fastmath=FASTMATH)(fn)
    return wrap


@jit()
def safe_exp(z):
    if z > EXP_OVERFLOW_Z:
        return np.inf
    if z < EXP_UNDERFLOW_Z:
        return 0.0
    return math.exp(z)  # NaN propagates


@jit()
def sigmoid(z):
    # branch on the sign so exp never sees a large positive argument; NaN takes the second path
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@jit()
def softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


@jit()
def apply_output(z, output):
    if output == ODDS:
        return safe_exp(z)
    if output == PROBA:
        return sigmoid(z)
    return z


@jit()
def dot_dense(x, start, w, d):
    """sum_j x[start + j] * w[j] with eight accumulators, combined as cython_core's dot_dense
    (same order: same bits, and independent of the thread count)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    s4 = 0.0
    s5 = 0.0
    s6 = 0.0
    s7 = 0.0
    d8 = d - d % 8
    for j in range(0, d8, 8):
        p = start + j
        s0 += np.float64(x[p]) * w[j]
        s1 += np.float64(x[p + 1]) * w[j + 1]
        s2 += np.float64(x[p + 2]) * w[j + 2]
        s3 += np.float64(x[p + 3]) * w[j + 3]
        s4 += np.float64(x[p + 4]) * w[j + 4]
        s5 += np.float64(x[p + 5]) * w[j + 5]
        s6 += np.float64(x[p + 6]) * w[j + 6]
        s7 += np.float64(x[p + 7]) * w[j + 7]
    for j in range(d8, d):
        s0 += np.float64(x[start + j]) * w[j]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@jit()
def dot_csr(data, indices, start, stop, w):
    """Two accumulators, as cython_core's dot_csr. Indices were validated to lie in range."""
    s0 = 0.0
    s1 = 0.0
    p = start
    while p + 1 < stop:
        s0 += np.float64(data[p]) * w[indices[p]]
        s1 += np.float64(data[p + 1]) * w[indices[p + 1]]
        p += 2
    if p < stop:
        s0 += np.float64(data[p]) * w[indices[p]]
    return s0 + s1
