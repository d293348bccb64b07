"""The ``njit`` decorator every kernel of the Numba backend uses, and the shared scalar maths.

The maths is the specification of ``fastwlr/backends/_math.py`` (the same formulas as
``cython_core/_math.pxd``, in the same operation order). No ``fastmath`` except the dense dot
product (see ``DOT_FASTMATH``).
"""
import math
import warnings

import numba
import numpy as np

from .._contract import EXP_OVERFLOW_Z, EXP_UNDERFLOW_Z, ODDS, PROBA

# fastmath for the dense dot product only, and only "reassoc" + "contract" (never nnan/ninf: NaN
# and inf features must propagate). Without reassociation LLVM does not vectorise the float32 ->
# float64 multiply-add reduction (measured 2-3x slower than the Cython core, whose GCC build
# vectorises its eight explicit accumulators). The order LLVM picks depends only on d, not on the
# row, its alignment or the thread count, so results stay deterministic; they differ from the
# written order by reassociation only (within the conformance tolerance).
DOT_FASTMATH = {"reassoc", "contract"}
CACHE_ERRORS = []  # why on-disk caching was off for a kernel (reported by fastwlr.show_config)


def jit(parallel=False, fastmath=False, inline="never"):
    """``numba.njit(cache=True, nogil=True, ...)``, falling back to no disk cache.

    Numba caches next to the source, else in a user-wide directory (``NUMBA_CACHE_DIR``
    overrides both); when none is writable it refuses ``cache=True`` at decoration time. Then the
    kernel still works, it only compiles again in each process.

    ``inline="always"`` (Numba IR inlining) for small helpers that take arrays: a real call passes
    each array as a struct and reference-counts it (atomic increments) on every call, which costs
    more than the helper's work when it runs per coordinate or per row.
    """
    def wrap(fn):
        try:
            return numba.njit(cache=True, nogil=True, parallel=parallel, error_model="numpy", fastmath=fastmath,
                              inline=inline)(fn)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            if not CACHE_ERRORS:
                warnings.warn(f"fastwlr numba backend: no writable cache directory ({exc}); kernels "
                              "compile again in every process. Set NUMBA_CACHE_DIR to fix this.",
                              RuntimeWarning, stacklevel=2)
            CACHE_ERRORS.append(f"{fn.__name__}: {exc}")
            return numba.njit(cache=False, nogil=True, parallel=parallel, error_model="numpy", fastmath=fastmath,
                              inline=inline)(fn)
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


@jit(fastmath=DOT_FASTMATH)  # not inlined in Numba IR: that would drop its fastmath flags
def dot_dense(x, w, d):
    """sum_j x[j] * w[j] in float64 for a row view ``x`` (float32 or float64). Row views, not
    offsets into a flat array: loop indices from ``range`` are provably >= 0, so Numba's
    negative-index wraparound check vanishes and the loop vectorises."""
    s = 0.0
    for j in range(d):
        s += np.float64(x[j]) * w[j]
    return s


@jit(inline="always")
def dot_csr(data, indices, w):
    """sum_p data[p] * w[indices[p]] over one row's views, two accumulators as cython_core's dot_csr
    (gather-bound: nothing to vectorise). Indices were validated to lie in range."""
    s0 = 0.0
    s1 = 0.0
    m = data.shape[0]
    p = 0
    while p + 1 < m:
        s0 += np.float64(data[p]) * w[indices[p]]
        s1 += np.float64(data[p + 1]) * w[indices[p + 1]]
        p += 2
    if p < m:
        s0 += np.float64(data[p]) * w[indices[p]]
    return s0 + s1
