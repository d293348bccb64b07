# cython: language_level=3
"""Input checks of the validation layer (``fastwlr._validation``), compiled: not part of the kernel
contract, and every caller has a numpy fallback.

``nonfinite_flags`` answers "is there a NaN / an inf?" in one read of the values, without the
n-byte bool temporary ``np.isfinite(x).all()`` allocates and then reads again (1M x 64 float32:
64 MB written and read back). It looks at the bits: a float is non-finite iff its exponent bits are
all ones; |bits| equal to those of inf is an inf, above them a NaN. Integer max / or reductions
vectorise without -ffast-math (a float compare reduction would not), and a sign-insensitive
mask covers -inf and negative NaNs.
"""
from cython.parallel cimport prange
from libc.stdint cimport uint32_t, uint64_t

from ._math cimport feature_t

# Values per work item: large enough that a thread's start-up is amortised, small enough that two
# threads share the work evenly.
cdef Py_ssize_t CHUNK = 1 << 16

NAN_FLAG = 1
INF_FLAG = 2


ctypedef fused bits_t:
    uint32_t
    uint64_t


cdef int flags(const bits_t* u, Py_ssize_t n) noexcept nogil:
    """The flags of n floats given as their bits (float32: uint32_t, float64: uint64_t)."""
    cdef Py_ssize_t i
    cdef bits_t a, top = 0, inf = 0, magnitude, exponent
    if bits_t is uint32_t:
        magnitude, exponent = 0x7fffffffu, 0x7f800000u
    else:
        magnitude, exponent = 0x7fffffffffffffffu, 0x7ff0000000000000u
    for i in range(n):
        a = u[i] & magnitude
        top = a if a > top else top
        inf |= (a == exponent)
    return (1 if top > exponent else 0) | (2 if inf else 0)


def nonfinite_flags(const feature_t[::1] x, int n_threads):
    """NAN_FLAG | INF_FLAG: which kinds of non-finite values ``x`` holds (0: all finite, or empty).
    ``x`` is 1-D contiguous float32/float64 (a C-contiguous 2-D array: pass ``arr.reshape(-1)``)."""
    cdef Py_ssize_t n = x.shape[0], k, K = (n + CHUNK - 1) // CHUNK, start, stop
    cdef int result = 0
    if n == 0:
        return 0
    cdef const void* p = &x[0]
    with nogil:
        for k in prange(K, schedule="dynamic", num_threads=n_threads, use_threads_if=n_threads > 1 and K > 1):
            start = k * CHUNK
            stop = min(start + CHUNK, n)
            if feature_t is float:
                result |= flags(<const uint32_t*>p + start, stop - start)
            else:
                result |= flags(<const uint64_t*>p + start, stop - start)
    return result
