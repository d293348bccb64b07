# cython: language_level=3
"""What the compiled core was built with, for fastwlr.show_config()."""
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int fastwlr_openmp(void) { return 1; }
    static int fastwlr_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fastwlr_openmp(void) { return 0; }
    static int fastwlr_omp_max_threads(void) { return 1; }
    #endif
    #if defined(__AVX512F__)
    #define FASTWLR_SIMD "AVX-512"
    #elif defined(__AVX2__)
    #define FASTWLR_SIMD "AVX2"
    #elif defined(__SSE2__)
    #define FASTWLR_SIMD "SSE2"
    #else
    #define FASTWLR_SIMD "none"
    #endif
    """
    int fastwlr_openmp()
    int fastwlr_omp_max_threads()
    const char* FASTWLR_SIMD


def build_info():
    return {"openmp": bool(fastwlr_openmp()), "omp_max_threads": fastwlr_omp_max_threads(),
            "simd": FASTWLR_SIMD.decode()}
