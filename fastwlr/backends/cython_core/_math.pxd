# Shared inline maths and types for every kernel of the Cython core. The numpy reference
# (fastwlr/backends/_math.py) is the specification; these are the same formulas in C.
from libc.math cimport exp, log1p, fabs, fmax, INFINITY

# Output transforms; fastwlr.backends.cython_core maps the public names onto these codes.
cdef enum Output:
    LOG_ODDS = 0
    ODDS = 1
    PROBA = 2

# Dense rows are read front to back. Prefetching the cache lines DENSE_PREFETCH_BYTES ahead of the
# current row lets the per-row work (FMAs, horizontal sums, exp) overlap the memory stream: 1M x 64
# float32 odds 25 % faster, down to the time of X.sum(); 2-8 KB were alike, 512 B too short. Where a
# thread's share of X is at most PREFETCH_MIN_BYTES (in L2, or just past it) the hardware prefetcher
# keeps up and the prefetch loop only takes load slots: one thread, 1,000 x 64 float32 odds 4.96 ->
# 4.6 us without it; 5,000 x 64 (1.28 MB) 8-12 % faster, and two threads on 10,000 x 64 (1.28 MB
# each) 5-19 %. From ~2 MB a thread it helped in some runs and not in others; from ~5 MB it helps.
# The fused top-k scan has no such per-block work (no exp, no copy to the output): there the
# hardware prefetcher alone keeps up with X in L3, and the prefetch loop only took load slots
# until SCAN_PREFETCH_MIN_BYTES (2 threads, 10,000 x 64 float32, top-10: 24.5-25.8 -> 21.3-21.9
# us; 30,000 x 64 6 % faster; from ~10 MB on it helped again, as for scoring).
cdef enum:
    DENSE_PREFETCH_BYTES = 4096
    PREFETCH_MIN_BYTES = 3 << 19   # 1.5 MB a thread
    SCAN_PREFETCH_MIN_BYTES = 8 << 20

# Feature and output element types (float32/float64) and CSR index types (int32/int64).
ctypedef fused feature_t:
    float
    double

ctypedef fused out_t:
    float
    double

ctypedef fused index_t:
    int
    long long

# exp overflows double above log(DBL_MAX) and returns exactly 0.0 below about -745.13:
# branching here means no floating-point flag is raised and the result is specified.
cdef extern from *:
    """
    #define FASTWLR_EXP_OVERFLOW_Z 709.782712893384
    #define FASTWLR_EXP_UNDERFLOW_Z (-745.1332191019412)
    """
    const double EXP_OVERFLOW_Z "FASTWLR_EXP_OVERFLOW_Z"
    const double EXP_UNDERFLOW_Z "FASTWLR_EXP_UNDERFLOW_Z"


cdef inline double safe_exp(double z) noexcept nogil:
    if z > EXP_OVERFLOW_Z:
        return INFINITY
    if z < EXP_UNDERFLOW_Z:
        return 0.0
    return exp(z)  # NaN propagates


cdef inline double sigmoid(double z) noexcept nogil:
    # exp only ever sees -|z|, so it cannot overflow: 1/(1+e^-z) for z >= 0, e^z/(1+e^z) below.
    # One exp and a select instead of a branch on the sign: scores of random sign mispredicted
    # that branch (1M x 64 float32 proba, 1 thread: 33.4 -> 24.8 ms). NaN in, NaN out.
    cdef double e = exp(-fabs(z))
    cdef double numerator = 1.0 if z >= 0 else e
    return numerator / (1.0 + e)


cdef inline double softplus(double z) noexcept nogil:
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|), never overflows
    return fmax(z, 0.0) + log1p(exp(-fabs(z)))


# One multiply-add of a CSR dot product, s + x * w, rounded the same way in every kernel. Left to
# itself the compiler contracts "s += x * w" into an FMA in some inlined copies and not in others
# (it did so differently for int32 and int64 indices, so score_topk and score disagreed by an ulp):
# where the target has a fast FMA it is always fused, otherwise never (no FMA instruction to
# contract into).
cdef extern from *:
    """
    #include <math.h>
    #if defined(FP_FAST_FMA)
    #define FASTWLR_MADD(s, x, w) fma((x), (w), (s))
    #else
    #define FASTWLR_MADD(s, x, w) ((s) + (x) * (w))
    #endif
    """
    double madd "FASTWLR_MADD"(double s, double x, double w) noexcept nogil


cdef inline double dot_csr(const feature_t* data, const index_t* indices, Py_ssize_t start,
                           Py_ssize_t stop, const double* w) noexcept nogil:
    # Indices were validated to lie in [0, n_features): the gather cannot go out of bounds.
    cdef double s0 = 0.0, s1 = 0.0
    cdef Py_ssize_t p = start
    while p + 1 < stop:
        s0 = madd(s0, <double>data[p], w[indices[p]])
        s1 = madd(s1, <double>data[p + 1], w[indices[p + 1]])
        p += 2
    if p < stop:
        s0 = madd(s0, <double>data[p], w[indices[p]])
    return s0 + s1


# Software prefetch (a hint: no fault, no effect on results). For reading, and for a read-modify-write.
cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTWLR_PREFETCH(p) __builtin_prefetch((const void*)(p), 0, 3)
    #define FASTWLR_PREFETCH_W(p) __builtin_prefetch((const void*)(p), 1, 3)
    #else
    #define FASTWLR_PREFETCH(p) ((void)0)
    #define FASTWLR_PREFETCH_W(p) ((void)0)
    #endif
    #include <stdint.h>
    /* every 64-byte line whose first byte lies in [base + from, base + to): consecutive spans
       touch each line once */
    static inline void fastwlr_prefetch_span(const void* base, Py_ssize_t from, Py_ssize_t to) {
        uintptr_t a = ((uintptr_t)base + (uintptr_t)from + 63) & ~(uintptr_t)63;
        uintptr_t z = (uintptr_t)base + (uintptr_t)to;
        for (; a < z; a += 64) FASTWLR_PREFETCH(a);
    }
    """
    void prefetch "FASTWLR_PREFETCH"(const void* p) noexcept nogil
    void prefetch_w "FASTWLR_PREFETCH_W"(const void* p) noexcept nogil
    void prefetch_span "fastwlr_prefetch_span"(const void* base, Py_ssize_t start, Py_ssize_t stop) noexcept nogil

# CSR kernels wait on their gathers w[indices[p]] (and scatters g[indices[p]] += ...): with 2^18-2^20
# columns the vector is 2-8 MB, beyond L2. Touching the entry CSR_PREFETCH_AHEAD non-zeros ahead
# (~1.5 rows of 40) made CSR scoring of 1M x 2^20 x 40 13-16 % faster
# (benchmarks/experiments/quick_scoring.py); 48-96 were alike, 0 and 128+ slower.
# The rows' own data and indices stream from memory, and the hardware prefetcher lost that stream
# among the random gathers: one thread, 1M x 2^20 x 40, 1.07 ns a non-zero against 0.43 with the
# vector in L1. Prefetching their lines CSR_STREAM_AHEAD non-zeros ahead (8 KB of float64 data,
# 4 KB of int32 indices), each line once, row by row: 0.64-0.66 ns (scipy 1.2-1.3); a newton-cg
# Hessian-vector product on 300k x 2^18 9.5 -> 8.6 ms on two threads. 512-2048 were alike.
cdef enum:
    CSR_PREFETCH_AHEAD = 64
    CSR_STREAM_AHEAD = 1024


cdef inline double dot_csr_prefetch(const feature_t* data, const index_t* indices, Py_ssize_t start,
                                    Py_ssize_t stop, const double* w, Py_ssize_t nnz) noexcept nogil:
    # dot_csr plus prefetching (the row's stream ahead, then the gathers): the same sums in the
    # same order, so the same bits as every kernel that uses dot_csr. indices[p + ahead] is read
    # only when it exists (< nnz); its value was validated, so the prefetched address is inside w.
    cdef double s0 = 0.0, s1 = 0.0
    cdef Py_ssize_t p = start
    if start + CSR_STREAM_AHEAD < min(stop + CSR_STREAM_AHEAD, nnz):
        prefetch_span(data, (start + CSR_STREAM_AHEAD) * sizeof(feature_t),
                      min(stop + CSR_STREAM_AHEAD, nnz) * sizeof(feature_t))
        prefetch_span(indices, (start + CSR_STREAM_AHEAD) * sizeof(index_t),
                      min(stop + CSR_STREAM_AHEAD, nnz) * sizeof(index_t))
    while p + 1 < stop:
        if p + CSR_PREFETCH_AHEAD + 1 < nnz:
            prefetch(&w[indices[p + CSR_PREFETCH_AHEAD]])
            prefetch(&w[indices[p + CSR_PREFETCH_AHEAD + 1]])
        s0 = madd(s0, <double>data[p], w[indices[p]])
        s1 = madd(s1, <double>data[p + 1], w[indices[p + 1]])
        p += 2
    if p < stop:
        s0 = madd(s0, <double>data[p], w[indices[p]])
    return s0 + s1

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>
    /* Inline exp, expm1 and log1p for the kernels' loops: libm's are scalar calls (~10-30 ns each,
       and they do not overlap cache misses), these are branch-free so that loops over them
       vectorise. Each is within 1 ulp of glibc (tests: test_objective, test_sgd). */
    /* exp(x) for x <= 0 (NaN in, NaN out), branch-free so that a loop over rows vectorises: libm's
       exp and log1p are scalar calls and took ~65 % of the dense objective (1M x 64 float32).
       x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite: n ln2_hi is exact); exp(r) by its Taylor series
       to r^13 (truncation < 5e-18 relative); 2^n in two normal factors, so results down to the
       subnormals are right and exp(x < -745.2) rounds to 0. Error ~1 ulp (tested against numpy). */
    static inline double fastwlr_exp_nonpos(double x) {
        const double shift = 0x1.8p52, log2e = 1.4426950408889634;
        const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
        double xc = x < -746.0 ? -746.0 : x;              /* also -inf; NaN compares false */
        double kd = xc * log2e + shift;                   /* n = round(x / ln2) in the low bits */
        uint64_t ki, b1, b2;
        memcpy(&ki, &kd, sizeof ki);
        kd -= shift;
        double r = (xc - kd * ln2_hi) - kd * ln2_lo;
        double p = 1.0 / 6227020800.0;                    /* 1/13! */
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
        p = p * r + 1.0 / 3628800.0;
        p = p * r + 1.0 / 362880.0;
        p = p * r + 1.0 / 40320.0;
        p = p * r + 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        int64_t n = (int64_t)(ki - 0x4338000000000000ULL);  /* in [-1077, 0] for finite x */
        int64_t n1 = n / 2, n2 = n - n1;                      /* each >= -539: 2^n1, 2^n2 normal */
        b1 = (uint64_t)(n1 + 1023) << 52;
        b2 = (uint64_t)(n2 + 1023) << 52;
        double s1, s2;
        memcpy(&s1, &b1, sizeof s1);
        memcpy(&s2, &b2, sizeof s2);
        return (p * s1) * s2;
    }

    /* log1p(e) for e in [0, 1] (NaN in, NaN out), branch-free: u = 1 + e rounded, then
       log1p(e) = log(u) + (e - (u - 1)) / u to first order in the rounding error (u - 1 is exact);
       log(u) as fdlibm's e_log.c: u = 2^k m, m in [sqrt(2)/2, sqrt(2)], k in {0, 1},
       log(m) = f - f^2/2 + s (f^2/2 + R(s^2)), s = f / (2 + f), R its minimax polynomial (< 1 ulp). */
    static inline double fastwlr_log1p_unit(double e) {
        const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
        const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                     Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                     Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                     Lg7 = 1.479819860511658591e-01;
        double u = 1.0 + e;
        double c = (e - (u - 1.0)) / u;
        int big = u > 1.4142135623730951;
        double m = big ? 0.5 * u : u;
        double k = big ? 1.0 : 0.0;
        double f = m - 1.0;                               /* exact (Sterbenz) */
        double s = f / (2.0 + f);
        double z = s * s, w = z * z;
        double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
        double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
        double R = t2 + t1, hfsq = 0.5 * f * f;
        return k * ln2_hi - ((hfsq - (s * (hfsq + R) + (k * ln2_lo + c))) - f);
    }

    static inline double fastwlr_expm1_nonpos(double a) {
        /* e^a - 1 for finite a <= 0, without cancellation near 0. Branch-free (both sides, then a
           select) so that loops over it vectorise. */
        double big = fastwlr_exp_nonpos(a) - 1.0;           /* |e^a - 1| > 0.39 */
        double p = 1.0 / 87178291200.0;                     /* 1/14!: |a|^15/15! < 2.3e-17 */
        p = fma(p, a, 1.0 / 6227020800.0);
        p = fma(p, a, 1.0 / 479001600.0);
        p = fma(p, a, 1.0 / 39916800.0);
        p = fma(p, a, 1.0 / 3628800.0);
        p = fma(p, a, 1.0 / 362880.0);
        p = fma(p, a, 1.0 / 40320.0);
        p = fma(p, a, 1.0 / 5040.0);
        p = fma(p, a, 1.0 / 720.0);
        p = fma(p, a, 1.0 / 120.0);
        p = fma(p, a, 1.0 / 24.0);
        p = fma(p, a, 1.0 / 6.0);
        p = fma(p, a, 0.5);
        p = fma(p, a, 1.0);
        return a < -0.5 ? big : p * a;
    }
    #define FASTWLR_LOG1P_SERIES_MAX 0.0078125
    static inline double fastwlr_log1p_series(double x) {
        /* log(1 + x) for 0 <= x < 2^-7 (|x|^9/9 < 2^-66 x); no check, so loops over it vectorise */
        double p = 1.0 / 8.0;
        p = fma(p, -x, 1.0 / 7.0);
        p = fma(p, -x, 1.0 / 6.0);
        p = fma(p, -x, 1.0 / 5.0);
        p = fma(p, -x, 1.0 / 4.0);
        p = fma(p, -x, 1.0 / 3.0);
        p = fma(p, -x, 0.5);
        p = fma(p, -x, 1.0);
        return p * x;
    }
    static inline double fastwlr_log1p_nonneg(double x) {
        /* log(1 + x) for x >= 0 */
        return x < FASTWLR_LOG1P_SERIES_MAX ? fastwlr_log1p_series(x) : log1p(x);
    }
    """
    double exp_nonpos "fastwlr_exp_nonpos"(double x) noexcept nogil
    double log1p_unit "fastwlr_log1p_unit"(double e) noexcept nogil
    double expm1_nonpos "fastwlr_expm1_nonpos"(double a) noexcept nogil
    double log1p_series "fastwlr_log1p_series"(double x) noexcept nogil
    double log1p_nonneg "fastwlr_log1p_nonneg"(double x) noexcept nogil
    double LOG1P_SERIES_MAX "FASTWLR_LOG1P_SERIES_MAX"


# ------------------------------------------------------------------------------ scoring kernels
# The dense dot product and the output transforms of score() and the top-k kernels, in C so that
# they are SIMD from end to end (AVX2 + FMA where the build targets it, portable C otherwise).
#
# Dot product: eight partial sums, lane l summing x[j] w[j] for j = l (mod 8) by fused
# multiply-adds, the tail (d mod 8 terms) into lane 0, then ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)).
# Scoring float32 rows against float32 coefficients: fastwlr_dot_f32s below (float32 chains).
# The order depends only on d, so the bits do not depend on the thread count, on the row's
# position in a block, or on whether one row or four are computed at once.
#
# exp: x = n ln2 + r (Cody-Waite), e^r by its Taylor series to r^13 (truncation < 5e-18), times
# 2^n built in the exponent bits; within ~1 ulp of libm. Only for x in [-708, 709], where 2^n is a
# normal double; outside it (and for NaN) libm's exp with the documented limits: exactly 0.0 below
# -745.13, +inf above 709.78. The vector and the scalar versions perform the same operations in the
# same order, so a block of scores and a single score agree to the bit.
cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>
    #if defined(__AVX2__) && defined(__FMA__)
    #include <immintrin.h>
    #define FASTWLR_SIMD 1
    #else
    #define FASTWLR_SIMD 0
    #endif
    #if FASTWLR_SIMD && defined(__AVX512F__)
    #define FASTWLR_SIMD512 1
    #else
    #define FASTWLR_SIMD512 0
    #endif
    #if FASTWLR_SIMD || defined(FP_FAST_FMA)
    #define FASTWLR_FMA(a, b, c) fma((a), (b), (c))
    #else
    #define FASTWLR_FMA(a, b, c) ((a) * (b) + (c))
    #endif

    #define FASTWLR_EXP_MID_LO (-708.0)
    #define FASTWLR_EXP_MID_HI 709.0
    static const double fastwlr_exp_c[14] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0,
        1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};
    #define FASTWLR_EXP_SHIFT 0x1.8p52
    #define FASTWLR_LOG2E 1.4426950408889634
    #define FASTWLR_LN2_HI 6.93147180369123816490e-01
    #define FASTWLR_LN2_LO 1.90821492927058770002e-10

    /* e^x for x in [-708, 709] (scalar twin of fastwlr_exp_mid4) */
    static inline double fastwlr_exp_taylor(double x) {
        double kd = FASTWLR_FMA(x, FASTWLR_LOG2E, FASTWLR_EXP_SHIFT);   /* n = round(x / ln2) in the low bits */
        uint64_t ki, bits;
        memcpy(&ki, &kd, sizeof ki);
        kd -= FASTWLR_EXP_SHIFT;
        double r = FASTWLR_FMA(-kd, FASTWLR_LN2_HI, x);                  /* exact: ln2_hi has 32 bits */
        r = FASTWLR_FMA(-kd, FASTWLR_LN2_LO, r);
        double p = fastwlr_exp_c[0];
        for (int c = 1; c < 14; c++) p = FASTWLR_FMA(p, r, fastwlr_exp_c[c]);
        bits = (ki + 1023) << 52;       /* the low bits of ki hold 2^51 + n: 2^n, n in [-1022, 1023] */
        double scale;
        memcpy(&scale, &bits, sizeof scale);
        return p * scale;
    }

    /* With AVX-512 the scoring exp looks 2^(i/32) up in a table of 32 (two 16-entry permutes of
       registers) and needs only r in [-ln2/64, ln2/64]: six multiply-adds instead of thirteen,
       10k odds 8.1 -> 4.1 us. Each entry is 2^(i/32) rounded (hi) plus its rounding error (lo),
       so that the table adds no error of its own: within 1 ulp of libm, as the Taylor series. */
    static const double fastwlr_exp2_hi[32] = {
        0x1p+0, 0x1.059b0d3158574p+0, 0x1.0b5586cf9890fp+0, 0x1.11301d0125b51p+0,
        0x1.172b83c7d517bp+0, 0x1.1d4873168b9aap+0, 0x1.2387a6e756238p+0, 0x1.29e9df51fdee1p+0,
        0x1.306fe0a31b715p+0, 0x1.371a7373aa9cbp+0, 0x1.3dea64c123422p+0, 0x1.44e086061892dp+0,
        0x1.4bfdad5362a27p+0, 0x1.5342b569d4f82p+0, 0x1.5ab07dd485429p+0, 0x1.6247eb03a5585p+0,
        0x1.6a09e667f3bcdp+0, 0x1.71f75e8ec5f74p+0, 0x1.7a11473eb0187p+0, 0x1.82589994cce13p+0,
        0x1.8ace5422aa0dbp+0, 0x1.93737b0cdc5e5p+0, 0x1.9c49182a3f090p+0, 0x1.a5503b23e255dp+0,
        0x1.ae89f995ad3adp+0, 0x1.b7f76f2fb5e47p+0, 0x1.c199bdd85529cp+0, 0x1.cb720dcef9069p+0,
        0x1.d5818dcfba487p+0, 0x1.dfc97337b9b5fp+0, 0x1.ea4afa2a490dap+0, 0x1.f50765b6e4540p+0,
    };
    static const double fastwlr_exp2_lo[32] = {
        0x0.0p+0, 0x1.d73e2a475b465p-55, 0x1.8a62e4adc610bp-54, -0x1.6c51039449b3ap-54,
        -0x1.19041b9d78a76p-55, 0x1.e016e00a2643cp-54, 0x1.9b07eb6c70573p-54, 0x1.612e8afad1255p-55,
        0x1.6f46ad23182e4p-55, -0x1.63aeabf42eae2p-54, 0x1.ada0911f09ebcp-55, 0x1.89b7a04ef80d0p-59,
        0x1.d4397afec42e2p-56, -0x1.07abe1db13cadp-55, 0x1.6324c054647adp-54, -0x1.383c17e40b497p-54,
        -0x1.bdd3413b26456p-54, -0x1.16e4786887a99p-55, -0x1.41577ee04992fp-55, -0x1.d4c1dd41532d8p-54,
        0x1.6e9f156864b27p-54, -0x1.75fc781b57ebcp-57, 0x1.c7c46b071f2bep-56, -0x1.d2f6edb8d41e1p-54,
        0x1.7a1cd345dcc81p-54, -0x1.5584f7e54ac3bp-56, 0x1.11065895048ddp-55, 0x1.503cbd1e949dbp-56,
        0x1.2ed02d75b3707p-55, -0x1.1a5cd4f184b5cp-54, -0x1.e9c23179c2893p-54, 0x1.9d3e12dd8a18bp-54,
    };
    #define FASTWLR_N_LOG2E (32 * 1.4426950408889634)
    /* ln2 / 32 in two parts; the first has 32 significant bits, so k times it is exact */
    #define FASTWLR_LN2N_HI (6.93147180369123816490e-01 / 32)
    #define FASTWLR_LN2N_LO (1.90821492927058770002e-10 / 32)

    /* e^x for x in [-708, 709] (scalar twin of fastwlr_exp_mid8): k = round(32 x / ln2),
       e^x = 2^(k >> 5) 2^((k & 31) / 32) e^r */
    static inline double fastwlr_exp_table(double x) {
        double kd = fma(x, FASTWLR_N_LOG2E, FASTWLR_EXP_SHIFT);
        uint64_t ki, bits;
        memcpy(&ki, &kd, sizeof ki);
        kd -= FASTWLR_EXP_SHIFT;
        double r = fma(-kd, FASTWLR_LN2N_HI, x);
        r = fma(-kd, FASTWLR_LN2N_LO, r);
        double p = fma(fma(fma(fma(fma(1.0 / 720, r, 1.0 / 120), r, 1.0 / 24), r, 1.0 / 6), r, 0.5), r, 1.0) * r;
        int i = (int)(ki & 31);
        bits = ((ki >> 5) + 1023) << 52;   /* ki >> 5 holds 2^46 + (k >> 5): 2^n, n in [-1022, 1022] */
        double scale, t = fastwlr_exp2_hi[i];
        memcpy(&scale, &bits, sizeof scale);
        return scale * (t + fma(t, p, fastwlr_exp2_lo[i]));
    }

    #if FASTWLR_SIMD512
    #define fastwlr_exp_mid fastwlr_exp_table
    #else
    #define fastwlr_exp_mid fastwlr_exp_taylor
    #endif

    static inline double fastwlr_exp_edge(double x) {
        if (x > 709.782712893384) return INFINITY;
        if (x < -745.1332191019412) return 0.0;
        return exp(x);                  /* NaN propagates */
    }

    static inline double fastwlr_score_exp(double x) {
        return (x >= FASTWLR_EXP_MID_LO && x <= FASTWLR_EXP_MID_HI) ? fastwlr_exp_mid(x) : fastwlr_exp_edge(x);
    }

    /* sigma(z) = 1/(1+e^-z) for z >= 0, e^z/(1+e^z) below: exp only sees -|z| */
    static inline double fastwlr_score_sigmoid(double z) {
        double e = fastwlr_score_exp(-fabs(z));
        return (z >= 0 ? 1.0 : e) / (1.0 + e);
    }

    #if FASTWLR_SIMD
    static inline __m256d fastwlr_exp_mid4(__m256d x) {
        __m256d shift = _mm256_set1_pd(FASTWLR_EXP_SHIFT);
        __m256d kd = _mm256_fmadd_pd(x, _mm256_set1_pd(FASTWLR_LOG2E), shift);
        __m256i ki = _mm256_castpd_si256(kd);
        kd = _mm256_sub_pd(kd, shift);
        __m256d r = _mm256_fnmadd_pd(kd, _mm256_set1_pd(FASTWLR_LN2_HI), x);
        r = _mm256_fnmadd_pd(kd, _mm256_set1_pd(FASTWLR_LN2_LO), r);
        __m256d p = _mm256_set1_pd(fastwlr_exp_c[0]);
        for (int c = 1; c < 14; c++) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(fastwlr_exp_c[c]));
        __m256i bits = _mm256_slli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(1023)), 52);
        return _mm256_mul_pd(p, _mm256_castsi256_pd(bits));
    }

    /* e^x of four lanes; lanes outside [-708, 709] (or NaN) come from the scalar edge path */
    static inline __m256d fastwlr_exp4(__m256d x) {
        __m256d lo = _mm256_set1_pd(FASTWLR_EXP_MID_LO), hi = _mm256_set1_pd(FASTWLR_EXP_MID_HI);
        __m256d in = _mm256_and_pd(_mm256_cmp_pd(x, lo, _CMP_GE_OQ), _mm256_cmp_pd(x, hi, _CMP_LE_OQ));
        __m256d xc = _mm256_blendv_pd(_mm256_setzero_pd(), x, in);     /* keep the bit tricks in range */
        __m256d e = fastwlr_exp_mid4(xc);
        int outside = ~_mm256_movemask_pd(in) & 15;
        if (outside) {
            double xs[4], es[4];
            _mm256_storeu_pd(xs, x);
            _mm256_storeu_pd(es, e);
            for (int l = 0; l < 4; l++)
                if (outside >> l & 1) es[l] = fastwlr_exp_edge(xs[l]);
            e = _mm256_loadu_pd(es);
        }
        return e;
    }
    #endif

    #if FASTWLR_SIMD512
    static inline __m512d fastwlr_exp_mid8(__m512d x) {
        __m512d shift = _mm512_set1_pd(FASTWLR_EXP_SHIFT);
        __m512d kd = _mm512_fmadd_pd(x, _mm512_set1_pd(FASTWLR_N_LOG2E), shift);
        __m512i ki = _mm512_castpd_si512(kd);
        kd = _mm512_sub_pd(kd, shift);
        __m512d r = _mm512_fnmadd_pd(kd, _mm512_set1_pd(FASTWLR_LN2N_HI), x);
        r = _mm512_fnmadd_pd(kd, _mm512_set1_pd(FASTWLR_LN2N_LO), r);
        __m512d q = _mm512_fmadd_pd(_mm512_set1_pd(1.0 / 720), r, _mm512_set1_pd(1.0 / 120));
        q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 24));
        q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 6));
        q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(0.5));
        q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0));
        __m512d p = _mm512_mul_pd(q, r);
        /* entry k & 31: bits 0-3 pick one of 16 in each half, bit 4 the half */
        const double* H = fastwlr_exp2_hi;
        const double* L = fastwlr_exp2_lo;
        __mmask8 upper = _mm512_test_epi64_mask(ki, _mm512_set1_epi64(16));
        __m512d t = _mm512_mask_blend_pd(upper,
            _mm512_permutex2var_pd(_mm512_loadu_pd(H), ki, _mm512_loadu_pd(H + 8)),
            _mm512_permutex2var_pd(_mm512_loadu_pd(H + 16), ki, _mm512_loadu_pd(H + 24)));
        __m512d tl = _mm512_mask_blend_pd(upper,
            _mm512_permutex2var_pd(_mm512_loadu_pd(L), ki, _mm512_loadu_pd(L + 8)),
            _mm512_permutex2var_pd(_mm512_loadu_pd(L + 16), ki, _mm512_loadu_pd(L + 24)));
        __m512i bits = _mm512_slli_epi64(_mm512_add_epi64(_mm512_srli_epi64(ki, 5), _mm512_set1_epi64(1023)), 52);
        return _mm512_mul_pd(_mm512_castsi512_pd(bits), _mm512_add_pd(t, _mm512_fmadd_pd(t, p, tl)));
    }

    /* e^x of eight lanes; lanes outside [-708, 709] (or NaN) come from the scalar edge path */
    static inline __m512d fastwlr_exp8(__m512d x) {
        __mmask8 in = _mm512_cmp_pd_mask(x, _mm512_set1_pd(FASTWLR_EXP_MID_LO), _CMP_GE_OQ)
                    & _mm512_cmp_pd_mask(x, _mm512_set1_pd(FASTWLR_EXP_MID_HI), _CMP_LE_OQ);
        __m512d e = fastwlr_exp_mid8(_mm512_maskz_mov_pd(in, x));   /* keep the bit tricks in range */
        /* The rare lanes outside, one by one, in registers: with the lanes stored to a local
           array, GCC gave the array 64-byte alignment and stored it with vmovapd, which crashed
           under AddressSanitizer's fake stack (32-byte aligned frames). */
        for (unsigned out = ~(unsigned)in & 0xffu; out; out &= out - 1) {
            int l = __builtin_ctz(out);
            double xl = _mm_cvtsd_f64(_mm512_castpd512_pd128(_mm512_permutexvar_pd(_mm512_set1_epi64(l), x)));
            e = _mm512_mask_blend_pd((__mmask8)(1u << l), e, _mm512_set1_pd(fastwlr_exp_edge(xl)));
        }
        return e;
    }
    #endif

    /* z[0:m] <- odds or probability of z[0:m] in place (output 1 = odds, 2 = proba, else nothing) */
    static inline void fastwlr_transform_block(double* z, Py_ssize_t m, int output) {
        Py_ssize_t i = 0;
        if (output == 1) {
    #if FASTWLR_SIMD512
            for (; i + 8 <= m; i += 8) _mm512_storeu_pd(z + i, fastwlr_exp8(_mm512_loadu_pd(z + i)));
    #elif FASTWLR_SIMD
            for (; i + 4 <= m; i += 4) _mm256_storeu_pd(z + i, fastwlr_exp4(_mm256_loadu_pd(z + i)));
    #endif
            for (; i < m; i++) z[i] = fastwlr_score_exp(z[i]);
        } else if (output == 2) {
    #if FASTWLR_SIMD512
            __m512d one8 = _mm512_set1_pd(1.0);
            for (; i + 8 <= m; i += 8) {
                __m512d v = _mm512_loadu_pd(z + i);
                __m512d e = fastwlr_exp8(_mm512_castsi512_pd(_mm512_or_si512(_mm512_castpd_si512(v),
                                  _mm512_set1_epi64((long long)0x8000000000000000ULL))));   /* e^-|z| */
                __m512d num = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_GE_OQ), e, one8);
                _mm512_storeu_pd(z + i, _mm512_div_pd(num, _mm512_add_pd(one8, e)));
            }
    #elif FASTWLR_SIMD
            __m256d sign = _mm256_set1_pd(-0.0), one = _mm256_set1_pd(1.0);
            for (; i + 4 <= m; i += 4) {
                __m256d v = _mm256_loadu_pd(z + i);
                __m256d e = fastwlr_exp4(_mm256_or_pd(v, sign));                  /* e^-|z| */
                __m256d num = _mm256_blendv_pd(e, one, _mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_GE_OQ));
                _mm256_storeu_pd(z + i, _mm256_div_pd(num, _mm256_add_pd(one, e)));
            }
    #endif
            for (; i < m; i++) z[i] = fastwlr_score_sigmoid(z[i]);
        }
    }

    /* Dot products of one row and of four consecutive rows (row stride d), float and double rows */
    #if FASTWLR_SIMD
    #define FASTWLR_LOAD4_f64(p) _mm256_loadu_pd(p)
    #define FASTWLR_LOAD4_f32(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
    /* lanes a = s0..s3, b = s4..s7; tail terms into s0 */
    #define FASTWLR_DOT_TAIL(T, a, x, w, d8, d) do { \
            if ((d8) < (d)) { \
                double s0 = _mm256_cvtsd_f64(a); \
                for (Py_ssize_t j = (d8); j < (d); j++) s0 = fma((double)(x)[j], (w)[j], s0); \
                a = _mm256_blend_pd(a, _mm256_set1_pd(s0), 1); \
            } } while (0)
    #define FASTWLR_DEFINE_DOT(T, SFX) \
    static inline double fastwlr_dot_##SFX(const T* x, const double* w, Py_ssize_t d) { \
        __m256d a = _mm256_setzero_pd(), b = _mm256_setzero_pd(); \
        Py_ssize_t d8 = d - d % 8; \
        for (Py_ssize_t j = 0; j < d8; j += 8) { \
            a = _mm256_fmadd_pd(FASTWLR_LOAD4_##SFX(x + j), _mm256_loadu_pd(w + j), a); \
            b = _mm256_fmadd_pd(FASTWLR_LOAD4_##SFX(x + j + 4), _mm256_loadu_pd(w + j + 4), b); \
        } \
        FASTWLR_DOT_TAIL(T, a, x, w, d8, d); \
        __m256d h = _mm256_hadd_pd(a, b);               /* s0+s1, s4+s5, s2+s3, s6+s7 */ \
        __m128d u = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1)); \
        return _mm_cvtsd_f64(u) + _mm_cvtsd_f64(_mm_unpackhi_pd(u, u)); \
    } \
    static inline void fastwlr_dot4_##SFX(const T* x, const double* w, Py_ssize_t d, double* z) { \
        __m256d a0 = _mm256_setzero_pd(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0; \
        Py_ssize_t d8 = d - d % 8; \
        for (Py_ssize_t j = 0; j < d8; j += 8) { \
            __m256d wa = _mm256_loadu_pd(w + j), wb = _mm256_loadu_pd(w + j + 4); \
            a0 = _mm256_fmadd_pd(FASTWLR_LOAD4_##SFX(x + j), wa, a0); \
            b0 = _mm256_fmadd_pd(FASTWLR_LOAD4_##SFX(x + j + 4), wb, b0); \
            a1 = _mm256_fmadd_pd(FASTWLR_LOAD4_##SFX(x + d + j), wa, a1); \
            b1 = _mm256_fmadd_pd(FASTWLR_LOAD4_##SFX(x + d + j + 4), wb, b1); \
            a2 = _mm256_fmadd_pd(FASTWLR_LOAD4_##SFX(x + 2 * d + j), wa, a2); \
            b2 = _mm256_fmadd_pd(FASTWLR_LOAD4_##SFX(x + 2 * d + j + 4), wb, b2); \
            a3 = _mm256_fmadd_pd(FASTWLR_LOAD4_##SFX(x + 3 * d + j), wa, a3); \
            b3 = _mm256_fmadd_pd(FASTWLR_LOAD4_##SFX(x + 3 * d + j + 4), wb, b3); \
        } \
        FASTWLR_DOT_TAIL(T, a0, x, w, d8, d); \
        FASTWLR_DOT_TAIL(T, a1, x + d, w, d8, d); \
        FASTWLR_DOT_TAIL(T, a2, x + 2 * d, w, d8, d); \
        FASTWLR_DOT_TAIL(T, a3, x + 3 * d, w, d8, d); \
        /* per row (s0+s1)+(s2+s3) and (s4+s5)+(s6+s7), four rows to a vector */ \
        __m256d h01 = _mm256_hadd_pd(a0, a1), h23 = _mm256_hadd_pd(a2, a3); \
        __m256d sa = _mm256_add_pd(_mm256_permute2f128_pd(h01, h23, 0x20), _mm256_permute2f128_pd(h01, h23, 0x31)); \
        __m256d g01 = _mm256_hadd_pd(b0, b1), g23 = _mm256_hadd_pd(b2, b3); \
        __m256d sb = _mm256_add_pd(_mm256_permute2f128_pd(g01, g23, 0x20), _mm256_permute2f128_pd(g01, g23, 0x31)); \
        _mm256_storeu_pd(z, _mm256_add_pd(sa, sb)); \
    }
    #else
    #define FASTWLR_DEFINE_DOT(T, SFX) \
    static inline double fastwlr_dot_##SFX(const T* x, const double* w, Py_ssize_t d) { \
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0}; \
        Py_ssize_t j, l, d8 = d - d % 8; \
        for (j = 0; j < d8; j += 8) \
            for (l = 0; l < 8; l++) s[l] = FASTWLR_FMA((double)x[j + l], w[j + l], s[l]); \
        for (j = d8; j < d; j++) s[0] = FASTWLR_FMA((double)x[j], w[j], s[0]); \
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])); \
    } \
    static inline void fastwlr_dot4_##SFX(const T* x, const double* w, Py_ssize_t d, double* z) { \
        for (int r = 0; r < 4; r++) z[r] = fastwlr_dot_##SFX(x + r * d, w, d); \
    }
    #endif
    FASTWLR_DEFINE_DOT(double, f64)
    FASTWLR_DEFINE_DOT(float, f32)

    /* float32 rows against float32 coefficients: the scoring kernels' path for float32 X (README,
       "Dtype and numerical rules", derives its bound). 16 lanes, lane l summing x[j] w[j] for
       j = l (mod 16) by float32 FMAs, in chunks of FASTWLR_F32_CHUNK terms per lane (128 columns);
       after each chunk lane l's sum is widened and added to double lane l mod 8 (l before l + 8);
       then ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)) as fastwlr_dot_f64. Short float32 chains keep the
       bound (K + 1) 2^-24 instead of d/16 2^-24. w is zero-padded to FASTWLR_F32_PADDED(d); the
       last partial 16 columns of x are read with a mask. The order depends only on d. */
    #define FASTWLR_F32_CHUNK 8
    /* Narrower rows stay on the float64 path: each row's widening and pairwise combination of 16
       lanes costs as much as ~3 float32 steps, and below 48 columns that outweighs the cheaper
       multiply-adds (one thread, 1k-100k rows: float64 path / float32 path 0.49-0.67 at d = 8-24,
       0.83-0.86 at 32, 0.95-1.09 at 48, 1.05-1.27 at 64, 1.05-1.66 at 96-256). */
    #define FASTWLR_F32_MIN_D 64
    #define FASTWLR_F32_PADDED(d) (((d) + 15) / 16 * 16)
    #define FASTWLR_F32_STEPS(d) (((d) + 15) / 16)
    /* zero floats before and after the model's float32 copy (w32 points past the first ones):
       fastwlr_dot8_f32s_shifted reads the coefficients up to 15 floats early or late */
    #define FASTWLR_F32_PAD 16

    /* The rule "float32 path or float64 path", in one place: fills w32 (FASTWLR_F32_PADDED(d)
       floats) and returns 1 when the row has at least FASTWLR_F32_MIN_D columns and every
       coefficient is 0 or a normal float32 in magnitude
       (FLT_MIN <= |w| <= FLT_MAX), so that rounding it is relative (2^-24); else 0: the model
       takes the float64 path. Never raises a floating-point flag (w is finite: validated). */
    static inline int fastwlr_coef_f32(const double* w, Py_ssize_t d, float* w32) {
        Py_ssize_t j, n_ok = 0;
        if (d < FASTWLR_F32_MIN_D) return 0;
        /* On the bits (|w| of a double orders as its bits do), with no early exit and no float
           comparison, so that the loop vectorises: a serving call converts the model each time
           (d = 256: 0.2 us in a 1.4 us call before). Only entries in range are converted (the
           others become 0.0, and w32 is unused then): no flag. */
        for (j = 0; j < d; j++) {
            uint64_t u, a, normal;
            double v;
            memcpy(&u, w + j, 8);
            a = u & 0x7fffffffffffffffull;
            normal = (uint64_t)((a >= 0x3810000000000000ull) & (a <= 0x47efffffe0000000ull));  /* 2^-126, FLT_MAX */
            n_ok += (a == 0) | normal;
            u &= -normal;
            memcpy(&v, &u, 8);
            w32[j] = (float)v;
        }
        for (; j < FASTWLR_F32_PADDED(d); j++) w32[j] = 0.0f;
        return n_ok == d;
    }

    #if FASTWLR_SIMD
    /* lanes [0, r) of 8 set, r in [0, 8] */
    static inline __m256i fastwlr_mask8(Py_ssize_t r) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    #define FASTWLR_WIDEN_ADD(lo, hi, a, b) do { \
            lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(a))); \
            hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1))); \
            lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(b))); \
            hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1))); } while (0)

    static inline double fastwlr_dot_f32s(const float* x, const float* w, Py_ssize_t d) {
        __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
        Py_ssize_t steps = FASTWLR_F32_STEPS(d), full = d / 16, r = d - 16 * full;
        __m256i m0 = fastwlr_mask8(r < 8 ? r : 8), m1 = fastwlr_mask8(r > 8 ? r - 8 : 0);
        for (Py_ssize_t s0 = 0; s0 < steps; s0 += FASTWLR_F32_CHUNK) {
            Py_ssize_t s1 = s0 + FASTWLR_F32_CHUNK < full ? s0 + FASTWLR_F32_CHUNK : full;
            __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
            for (Py_ssize_t j = 16 * s0; j < 16 * s1; j += 16) {
                a = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(w + j), a);
                b = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8), _mm256_loadu_ps(w + j + 8), b);
            }
            if (r && s1 == full && full < s0 + FASTWLR_F32_CHUNK) {   /* the masked last step */
                Py_ssize_t j = 16 * full;
                a = _mm256_fmadd_ps(_mm256_maskload_ps(x + j, m0), _mm256_loadu_ps(w + j), a);
                b = _mm256_fmadd_ps(_mm256_maskload_ps(x + j + 8, m1), _mm256_loadu_ps(w + j + 8), b);
            }
            FASTWLR_WIDEN_ADD(lo, hi, a, b);
        }
        __m256d h = _mm256_hadd_pd(lo, hi);             /* s0+s1, s4+s5, s2+s3, s6+s7 */
        __m128d u = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
        return _mm_cvtsd_f64(u) + _mm_cvtsd_f64(_mm_unpackhi_pd(u, u));
    }

    /* four consecutive rows (stride d); lane r is bitwise fastwlr_dot_f32s(x + r d, w, d) */
    static inline __m256d fastwlr_dot4_f32s(const float* x, const float* w, Py_ssize_t d) {
        __m256d lo0 = _mm256_setzero_pd(), hi0 = lo0, lo1 = lo0, hi1 = lo0, lo2 = lo0, hi2 = lo0, lo3 = lo0, hi3 = lo0;
        Py_ssize_t steps = FASTWLR_F32_STEPS(d), full = d / 16, r = d - 16 * full;
        __m256i m0 = fastwlr_mask8(r < 8 ? r : 8), m1 = fastwlr_mask8(r > 8 ? r - 8 : 0);
        for (Py_ssize_t s0 = 0; s0 < steps; s0 += FASTWLR_F32_CHUNK) {
            Py_ssize_t s1 = s0 + FASTWLR_F32_CHUNK < full ? s0 + FASTWLR_F32_CHUNK : full;
            __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
            for (Py_ssize_t j = 16 * s0; j < 16 * s1; j += 16) {
                __m256 wa = _mm256_loadu_ps(w + j), wb = _mm256_loadu_ps(w + j + 8);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j), wa, a0);
                b0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + j + 8), wb, b0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d + j), wa, a1);
                b1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d + j + 8), wb, b1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 2 * d + j), wa, a2);
                b2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 2 * d + j + 8), wb, b2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 3 * d + j), wa, a3);
                b3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + 3 * d + j + 8), wb, b3);
            }
            if (r && s1 == full && full < s0 + FASTWLR_F32_CHUNK) {
                Py_ssize_t j = 16 * full;
                __m256 wa = _mm256_loadu_ps(w + j), wb = _mm256_loadu_ps(w + j + 8);
                a0 = _mm256_fmadd_ps(_mm256_maskload_ps(x + j, m0), wa, a0);
                b0 = _mm256_fmadd_ps(_mm256_maskload_ps(x + j + 8, m1), wb, b0);
                a1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + d + j, m0), wa, a1);
                b1 = _mm256_fmadd_ps(_mm256_maskload_ps(x + d + j + 8, m1), wb, b1);
                a2 = _mm256_fmadd_ps(_mm256_maskload_ps(x + 2 * d + j, m0), wa, a2);
                b2 = _mm256_fmadd_ps(_mm256_maskload_ps(x + 2 * d + j + 8, m1), wb, b2);
                a3 = _mm256_fmadd_ps(_mm256_maskload_ps(x + 3 * d + j, m0), wa, a3);
                b3 = _mm256_fmadd_ps(_mm256_maskload_ps(x + 3 * d + j + 8, m1), wb, b3);
            }
            FASTWLR_WIDEN_ADD(lo0, hi0, a0, b0);
            FASTWLR_WIDEN_ADD(lo1, hi1, a1, b1);
            FASTWLR_WIDEN_ADD(lo2, hi2, a2, b2);
            FASTWLR_WIDEN_ADD(lo3, hi3, a3, b3);
        }
        /* as fastwlr_dot4_f64: per row (s0+s1)+(s2+s3) and (s4+s5)+(s6+s7), four rows to a vector */
        __m256d h01 = _mm256_hadd_pd(lo0, lo1), h23 = _mm256_hadd_pd(lo2, lo3);
        __m256d sa = _mm256_add_pd(_mm256_permute2f128_pd(h01, h23, 0x20), _mm256_permute2f128_pd(h01, h23, 0x31));
        __m256d g01 = _mm256_hadd_pd(hi0, hi1), g23 = _mm256_hadd_pd(hi2, hi3);
        __m256d sb = _mm256_add_pd(_mm256_permute2f128_pd(g01, g23, 0x20), _mm256_permute2f128_pd(g01, g23, 0x31));
        return _mm256_add_pd(sa, sb);
    }
    #else
    #if defined(FP_FAST_FMAF)
    #define FASTWLR_FMAF(x, w, s) fmaf((x), (w), (s))
    #else
    /* the product is exact in double; the sum rounds twice (double, then float): < 2^-24 + 2^-53 */
    #define FASTWLR_FMAF(x, w, s) ((float)((double)(x) * (double)(w) + (double)(s)))
    #endif
    static inline double fastwlr_dot_f32s(const float* x, const float* w, Py_ssize_t d) {
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (Py_ssize_t j0 = 0; j0 < d; j0 += 16 * FASTWLR_F32_CHUNK) {
            float a[16] = {0};
            Py_ssize_t j1 = j0 + 16 * FASTWLR_F32_CHUNK < d ? j0 + 16 * FASTWLR_F32_CHUNK : d;
            for (Py_ssize_t j = j0; j < j1; j++) a[(j - j0) % 16] = FASTWLR_FMAF(x[j], w[j], a[(j - j0) % 16]);
            for (int l = 0; l < 8; l++) { s[l] += (double)a[l]; s[l] += (double)a[l + 8]; }
        }
        return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }
    #endif

    /* A float32 sum that overflowed (|x_j w_j| or a lane sum beyond FLT_MAX) is not the row's
       log-odds: such a row (and a NaN row) is summed again in float64, so overflow never shows. */
    static inline double fastwlr_dot_f32w(const float* x, const float* w32, const double* w, Py_ssize_t d) {
        double z = fastwlr_dot_f32s(x, w32, d);
        return fabs(z) < INFINITY ? z : fastwlr_dot_f32(x, w, d);
    }
    /* Four and eight rows' float32 sums as they come: a row whose sum overflowed is left non-finite,
       and the callers, which test every log-odds for finiteness anyway, sum it again
       (redo_nonfinite). A test and a branch per block, waiting on the reduction, made 1,000-2,000
       x 64 float32 scoring 5-8 % slower. */
    static inline void fastwlr_dot4_f32w(const float* x, const float* w32, Py_ssize_t d, double* z) {
    #if FASTWLR_SIMD
        _mm256_storeu_pd(z, fastwlr_dot4_f32s(x, w32, d));
    #else
        for (int r = 0; r < 4; r++) z[r] = fastwlr_dot_f32s(x + r * d, w32, d);
    #endif
    }

    /* Eight consecutive rows (stride d) at once, with AVX-512 where the build has it: one 512-bit
       register holds a row's 16 float32 lanes (or its 8 float64 ones), eight rows keep the FMA
       units busy, and the eight rows' last reductions share one tree of shuffles. Each z[r] is
       bitwise the one-row dot product of the same kind: the same lanes, chains and final order
       ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)). One thread, in cache: 1k x 64 float32 1.4x faster
       than four rows of 256 bits, 10k x 16 2x. Without AVX-512: two calls of four rows. */
    #if FASTWLR_SIMD512
    /* z[0:8] <- the per-row sums of eight vectors of eight lanes, in the order above */
    static inline __m512d fastwlr_sum8x8(__m512d s0, __m512d s1, __m512d s2, __m512d s3,
                                         __m512d s4, __m512d s5, __m512d s6, __m512d s7) {
        /* [row0: s0+s1, row1: s0+s1 | row0: s2+s3, row1: s2+s3 | ...] */
        __m512d t01 = _mm512_add_pd(_mm512_unpacklo_pd(s0, s1), _mm512_unpackhi_pd(s0, s1));
        __m512d t23 = _mm512_add_pd(_mm512_unpacklo_pd(s2, s3), _mm512_unpackhi_pd(s2, s3));
        __m512d t45 = _mm512_add_pd(_mm512_unpacklo_pd(s4, s5), _mm512_unpackhi_pd(s4, s5));
        __m512d t67 = _mm512_add_pd(_mm512_unpacklo_pd(s6, s7), _mm512_unpackhi_pd(s6, s7));
        /* [(s0+s1)+(s2+s3) of rows 0, 1 | (s4+s5)+(s6+s7) of rows 0, 1 | the same of rows 2, 3] */
        __m512d u = _mm512_add_pd(_mm512_shuffle_f64x2(t01, t23, 0x88), _mm512_shuffle_f64x2(t01, t23, 0xdd));
        __m512d v = _mm512_add_pd(_mm512_shuffle_f64x2(t45, t67, 0x88), _mm512_shuffle_f64x2(t45, t67, 0xdd));
        return _mm512_add_pd(_mm512_shuffle_f64x2(u, v, 0x88), _mm512_shuffle_f64x2(u, v, 0xdd));
    }
    #define FASTWLR_REP8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)

    /* float32 lanes in chains of FASTWLR_F32_CHUNK, as fastwlr_dot_f32s */
    static inline __m512d fastwlr_dot8_f32s(const float* x, const float* w, Py_ssize_t d) {
        __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        Py_ssize_t steps = FASTWLR_F32_STEPS(d), full = d / 16, r = d - 16 * full;
        __mmask16 m = (__mmask16)((1u << r) - 1u);
        for (Py_ssize_t c0 = 0; c0 < steps; c0 += FASTWLR_F32_CHUNK) {
            Py_ssize_t c1 = c0 + FASTWLR_F32_CHUNK < full ? c0 + FASTWLR_F32_CHUNK : full;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            for (Py_ssize_t j = 16 * c0; j < 16 * c1; j += 16) {
                __m512 wv = _mm512_loadu_ps(w + j);
    #define FASTWLR_STEP(k) a##k = _mm512_fmadd_ps(_mm512_loadu_ps(x + k * d + j), wv, a##k);
                FASTWLR_REP8(FASTWLR_STEP)
    #undef FASTWLR_STEP
            }
            if (r && c1 == full && full < c0 + FASTWLR_F32_CHUNK) {   /* the masked last step */
                Py_ssize_t j = 16 * full;
                __m512 wv = _mm512_loadu_ps(w + j);
    #define FASTWLR_STEP(k) a##k = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k * d + j), wv, a##k);
                FASTWLR_REP8(FASTWLR_STEP)
    #undef FASTWLR_STEP
            }
            /* lane l widened into double lane l, then lane l + 8 */
    #define FASTWLR_STEP(k) s##k = _mm512_add_pd(_mm512_add_pd(s##k, _mm512_cvtps_pd(_mm512_castps512_ps256(a##k))), \
                _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a##k), 1))));
            FASTWLR_REP8(FASTWLR_STEP)
    #undef FASTWLR_STEP
        }
        return fastwlr_sum8x8(s0, s1, s2, s3, s4, s5, s6, s7);
    }

    /* fastwlr_dot8_f32s, bitwise, for rows that start o floats (1-15) past a 64-byte line, d a
       multiple of 16 (all rows then start there: numpy's large arrays start 16 bytes past a line).
       Every 64-byte load of the rows themselves would straddle two lines; here only aligned lines
       are loaded, and the coefficients are read shifted instead (w zero-padded by 16 floats on both
       sides: FASTWLR_F32_PAD). Lane t of line m of a row holds column 16 m + t - o, so it takes
       the terms that lane (t - o) mod 16 takes in fastwlr_dot8_f32s, in the same ascending order;
       the first line of a chunk of columns (lanes >= o) and its last (lanes < o) are masked, so
       that each lane's chain has exactly the same terms, and one permutation per row puts the
       lanes back before they are widened as there. */
    static inline __m512d fastwlr_dot8_f32s_shifted(const float* x, const float* w, Py_ssize_t d, int o) {
        const float* P = x - o;   /* 64-byte aligned */
        Py_ssize_t S = d / 16;
        __mmask16 hi = (__mmask16)(0xffffu << o), lo = (__mmask16)~hi;
        __m512i back = _mm512_and_si512(_mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                                                           13, 14, 15), _mm512_set1_epi32(o)),
                                        _mm512_set1_epi32(15));
        __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        for (Py_ssize_t c0 = 0; c0 < S; c0 += FASTWLR_F32_CHUNK) {
            Py_ssize_t c1 = c0 + FASTWLR_F32_CHUNK < S ? c0 + FASTWLR_F32_CHUNK : S;
            __m512 z = _mm512_setzero_ps(), wv = _mm512_loadu_ps(w + 16 * c0 - o);
            __m512 a0, a1, a2, a3, a4, a5, a6, a7;
    #define FASTWLR_STEP(k) a##k = _mm512_mask3_fmadd_ps(_mm512_maskz_load_ps(hi, P + k * d + 16 * c0), wv, z, hi);
            FASTWLR_REP8(FASTWLR_STEP)
    #undef FASTWLR_STEP
            for (Py_ssize_t m = c0 + 1; m < c1; m++) {
                wv = _mm512_loadu_ps(w + 16 * m - o);
    #define FASTWLR_STEP(k) a##k = _mm512_fmadd_ps(_mm512_load_ps(P + k * d + 16 * m), wv, a##k);
                FASTWLR_REP8(FASTWLR_STEP)
    #undef FASTWLR_STEP
            }
            wv = _mm512_loadu_ps(w + 16 * c1 - o);
    #define FASTWLR_STEP(k) a##k = _mm512_permutexvar_ps(back, _mm512_mask3_fmadd_ps( \
                _mm512_maskz_load_ps(lo, P + k * d + 16 * c1), wv, a##k, lo)); \
            s##k = _mm512_add_pd(_mm512_add_pd(s##k, _mm512_cvtps_pd(_mm512_castps512_ps256(a##k))), \
                _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a##k), 1))));
            FASTWLR_REP8(FASTWLR_STEP)
    #undef FASTWLR_STEP
        }
        return fastwlr_sum8x8(s0, s1, s2, s3, s4, s5, s6, s7);
    }

    /* fastwlr_dot8_f32s_shifted, bitwise, for the commonest rows: 64 columns starting 16, 32 or 48
       bytes past a line (o = 4, 8 or 12: numpy's arrays start 16 bytes past one, and keep it row
       after row). Two differences, the same terms in each lane's chain:
       - the rows are read in memory order, each row's five lines in turn, and the line two rows
         share is loaded once (the end of one row in lanes < o, the start of the next in lanes >= o);
         the shifted kernel read line m of all eight rows, then line m + 1: one thread, 10,000 x 64
         5-9 % faster this way (in L3), 1,000 x 64 12-17 % (in L2);
       - the lanes are not permuted back. Lane t holds the chain of lane (t - o) mod 16; widening
         adds float lanes t and t + 8 into double lane t from zero, where the two adds commute, so
         double lane t holds the pair sum of lane (t - o) mod 8: the pairs rotated by 0 or 4. The
         final tree ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)) only swaps its two halves under a rotation
         by 4, and its last add commutes too. (A NaN's payload may differ: such a row is not finite
         and is summed again by the callers, redo_nonfinite.) */
    static inline __m512d fastwlr_dot8_f32s_64(const float* x, const float* w, int o) {
        const float* P = x - o;   /* 64-byte aligned */
        __mmask16 hi = (__mmask16)(0xffffu << o), lo = (__mmask16)~hi;
        __m512 z = _mm512_setzero_ps(), a;
        __m512 w0 = _mm512_loadu_ps(w - o), w1 = _mm512_loadu_ps(w + 16 - o), w2 = _mm512_loadu_ps(w + 32 - o),
               w3 = _mm512_loadu_ps(w + 48 - o), w4 = _mm512_loadu_ps(w + 64 - o);
        __m512d s0, s1, s2, s3, s4, s5, s6, s7;
        __m512 L = _mm512_maskz_load_ps(hi, P);   /* row 0's first line: lanes >= o only */
        /* the shared line: whole inside the eight rows, except after the last row (masked) */
    #define FASTWLR_STEP(k) \
            a = _mm512_mask3_fmadd_ps(L, w0, z, hi); \
            a = _mm512_fmadd_ps(_mm512_load_ps(P + 64 * k + 16), w1, a); \
            a = _mm512_fmadd_ps(_mm512_load_ps(P + 64 * k + 32), w2, a); \
            a = _mm512_fmadd_ps(_mm512_load_ps(P + 64 * k + 48), w3, a); \
            L = k < 7 ? _mm512_load_ps(P + 64 * k + 64) : _mm512_maskz_load_ps(lo, P + 64 * k + 64); \
            a = _mm512_mask3_fmadd_ps(L, w4, a, lo); \
            s##k = _mm512_add_pd(_mm512_add_pd(_mm512_setzero_pd(), _mm512_cvtps_pd(_mm512_castps512_ps256(a))), \
                _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1))));
        FASTWLR_REP8(FASTWLR_STEP)
    #undef FASTWLR_STEP
        return fastwlr_sum8x8(s0, s1, s2, s3, s4, s5, s6, s7);
    }

    /* float64 lanes, as fastwlr_dot_f64 / fastwlr_dot_f32: lane l sums j = l (mod 8), the tail into lane 0 */
    #define FASTWLR_LOAD8_f64(p) _mm512_loadu_pd(p)
    #define FASTWLR_LOAD8_f32(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
    #define FASTWLR_DEFINE_DOT8(T, SFX) \
    static inline __m512d fastwlr_dot8v_##SFX(const T* x, const double* w, Py_ssize_t d) { \
        __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0; \
        Py_ssize_t d8 = d - d % 8; \
        for (Py_ssize_t j = 0; j < d8; j += 8) { \
            __m512d wv = _mm512_loadu_pd(w + j); \
            s0 = _mm512_fmadd_pd(FASTWLR_LOAD8_##SFX(x + j), wv, s0); \
            s1 = _mm512_fmadd_pd(FASTWLR_LOAD8_##SFX(x + d + j), wv, s1); \
            s2 = _mm512_fmadd_pd(FASTWLR_LOAD8_##SFX(x + 2 * d + j), wv, s2); \
            s3 = _mm512_fmadd_pd(FASTWLR_LOAD8_##SFX(x + 3 * d + j), wv, s3); \
            s4 = _mm512_fmadd_pd(FASTWLR_LOAD8_##SFX(x + 4 * d + j), wv, s4); \
            s5 = _mm512_fmadd_pd(FASTWLR_LOAD8_##SFX(x + 5 * d + j), wv, s5); \
            s6 = _mm512_fmadd_pd(FASTWLR_LOAD8_##SFX(x + 6 * d + j), wv, s6); \
            s7 = _mm512_fmadd_pd(FASTWLR_LOAD8_##SFX(x + 7 * d + j), wv, s7); \
        } \
        if (d8 < d) { \
            FASTWLR_TAIL8(s0, x, 0) FASTWLR_TAIL8(s1, x, 1) FASTWLR_TAIL8(s2, x, 2) FASTWLR_TAIL8(s3, x, 3) \
            FASTWLR_TAIL8(s4, x, 4) FASTWLR_TAIL8(s5, x, 5) FASTWLR_TAIL8(s6, x, 6) FASTWLR_TAIL8(s7, x, 7) \
        } \
        return fastwlr_sum8x8(s0, s1, s2, s3, s4, s5, s6, s7); \
    }
    #define FASTWLR_TAIL8(s, x, k) { \
            double t = _mm512_cvtsd_f64(s); \
            for (Py_ssize_t j = d8; j < d; j++) t = fma((double)(x)[(k) * d + j], w[j], t); \
            s = _mm512_mask_mov_pd(s, 1, _mm512_set1_pd(t)); }
    FASTWLR_DEFINE_DOT8(double, f64)
    FASTWLR_DEFINE_DOT8(float, f32)
    /* fastwlr_dot8v_f64, bitwise, for rows that start o doubles (1-7) past a 64-byte line, d a
       multiple of 8: the rows read as aligned lines and w shifted instead, as
       fastwlr_dot8_f32s_shifted does for float32 rows (w itself is not padded: its first and last
       shifted reads are masked loads, which touch only the lanes they keep). */
    static inline __m512d fastwlr_dot8v_f64_shifted(const double* x, const double* w, Py_ssize_t d, int o) {
        const double* P = x - o;   /* 64-byte aligned */
        Py_ssize_t S = d / 8;
        __mmask8 hi = (__mmask8)(0xffu << o), lo = (__mmask8)~hi;
        __m512i back = _mm512_and_si512(_mm512_add_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
                                                         _mm512_set1_epi64(o)), _mm512_set1_epi64(7));
        __m512d z = _mm512_setzero_pd(), wv = _mm512_maskz_loadu_pd(hi, w - o);
        __m512d s0, s1, s2, s3, s4, s5, s6, s7;
    #define FASTWLR_STEP(k) s##k = _mm512_mask3_fmadd_pd(_mm512_maskz_load_pd(hi, P + k * d), wv, z, hi);
        FASTWLR_REP8(FASTWLR_STEP)
    #undef FASTWLR_STEP
        for (Py_ssize_t m = 1; m < S; m++) {
            wv = _mm512_loadu_pd(w + 8 * m - o);
    #define FASTWLR_STEP(k) s##k = _mm512_fmadd_pd(_mm512_load_pd(P + k * d + 8 * m), wv, s##k);
            FASTWLR_REP8(FASTWLR_STEP)
    #undef FASTWLR_STEP
        }
        wv = _mm512_maskz_loadu_pd(lo, w + 8 * S - o);
    #define FASTWLR_STEP(k) s##k = _mm512_permutexvar_pd(back, _mm512_mask3_fmadd_pd( \
                _mm512_maskz_load_pd(lo, P + k * d + 8 * S), wv, s##k, lo));
        FASTWLR_REP8(FASTWLR_STEP)
    #undef FASTWLR_STEP
        return fastwlr_sum8x8(s0, s1, s2, s3, s4, s5, s6, s7);
    }
    /* Rows of fewer doubles pay more for the masked ends and the permutation than they save (one
       thread, rows 16 bytes past a line: 1,000 x 16 1.60-1.65 -> 1.77-1.83 us, 1,000 x 64 the same,
       1,000 x 128 2-3 % faster, 200 x 1,024 8 %, 1,000 x 256 12-17 %). */
    #define FASTWLR_F64_SHIFT_MIN_D 128
    static inline void fastwlr_dot8_f64(const double* x, const double* w, Py_ssize_t d, double* z) {
        uintptr_t at = (uintptr_t)x;
        int o = (int)(at >> 3 & 7);
        _mm512_storeu_pd(z, d >= FASTWLR_F64_SHIFT_MIN_D && (d & 7) == 0 && (at & 7) == 0 && o != 0
                                ? fastwlr_dot8v_f64_shifted(x, w, d, o) : fastwlr_dot8v_f64(x, w, d));
    }
    static inline void fastwlr_dot8_f32(const float* x, const double* w, Py_ssize_t d, double* z) {
        _mm512_storeu_pd(z, fastwlr_dot8v_f32(x, w, d));
    }
    /* as fastwlr_dot4_f32w: the sums as they come */
    static inline void fastwlr_dot8_f32w(const float* x, const float* w32, Py_ssize_t d, double* z) {
        uintptr_t at = (uintptr_t)x;
        int o = (int)(at >> 2 & 15);
        __m512d v;
        if ((d & 15) != 0 || (at & 3) != 0 || o == 0) v = fastwlr_dot8_f32s(x, w32, d);
        else if (d == 64 && (o & 3) == 0) v = fastwlr_dot8_f32s_64(x, w32, o);
        else v = fastwlr_dot8_f32s_shifted(x, w32, d, o);
        _mm512_storeu_pd(z, v);
    }
    #else
    static inline void fastwlr_dot8_f64(const double* x, const double* w, Py_ssize_t d, double* z) {
        fastwlr_dot4_f64(x, w, d, z);
        fastwlr_dot4_f64(x + 4 * d, w, d, z + 4);
    }
    static inline void fastwlr_dot8_f32(const float* x, const double* w, Py_ssize_t d, double* z) {
        fastwlr_dot4_f32(x, w, d, z);
        fastwlr_dot4_f32(x + 4 * d, w, d, z + 4);
    }
    static inline void fastwlr_dot8_f32w(const float* x, const float* w32, Py_ssize_t d, double* z) {
        fastwlr_dot4_f32w(x, w32, d, z);
        fastwlr_dot4_f32w(x + 4 * d, w32, d, z + 4);
    }
    #endif
    """
    int F32_CHUNK "FASTWLR_F32_CHUNK"
    int F32_MIN_D "FASTWLR_F32_MIN_D"
    int F32_PAD "FASTWLR_F32_PAD"
    Py_ssize_t f32_padded "FASTWLR_F32_PADDED"(Py_ssize_t d) noexcept nogil
    int coef_f32_fill "fastwlr_coef_f32"(const double* w, Py_ssize_t d, float* w32) noexcept nogil
    double dot_f32w "fastwlr_dot_f32w"(const float* x, const float* w32, const double* w, Py_ssize_t d) noexcept nogil
    void dot4_f32w "fastwlr_dot4_f32w"(const float* x, const float* w32, Py_ssize_t d, double* z) noexcept nogil
    bint SIMD_BUILD "FASTWLR_SIMD"
    double score_exp "fastwlr_score_exp"(double x) noexcept nogil
    double score_sigmoid "fastwlr_score_sigmoid"(double z) noexcept nogil
    void transform_block "fastwlr_transform_block"(double* z, Py_ssize_t m, int output) noexcept nogil
    double dot_f64 "fastwlr_dot_f64"(const double* x, const double* w, Py_ssize_t d) noexcept nogil
    double dot_f32 "fastwlr_dot_f32"(const float* x, const double* w, Py_ssize_t d) noexcept nogil
    void dot4_f64 "fastwlr_dot4_f64"(const double* x, const double* w, Py_ssize_t d, double* z) noexcept nogil
    void dot4_f32 "fastwlr_dot4_f32"(const float* x, const double* w, Py_ssize_t d, double* z) noexcept nogil
    void dot8_f64 "fastwlr_dot8_f64"(const double* x, const double* w, Py_ssize_t d, double* z) noexcept nogil
    void dot8_f32 "fastwlr_dot8_f32"(const float* x, const double* w, Py_ssize_t d, double* z) noexcept nogil
    void dot8_f32w "fastwlr_dot8_f32w"(const float* x, const float* w32, Py_ssize_t d, double* z) noexcept nogil


cdef inline double dot_dense(const feature_t* x, const double* w, Py_ssize_t d) noexcept nogil:
    # see "scoring kernels" above: the order of summation depends only on d
    if feature_t is float:
        return dot_f32(x, w, d)
    else:
        return dot_f64(x, w, d)


cdef inline void dot_dense4(const feature_t* x, const double* w, Py_ssize_t d, double* z) noexcept nogil:
    # four consecutive rows at once (four load streams, each coefficient load serves four rows);
    # each z[r] is bitwise dot_dense(x + r * d, w, d)
    if feature_t is float:
        dot4_f32(x, w, d, z)
    else:
        dot4_f64(x, w, d, z)


cdef inline double dot_score(const feature_t* x, const double* w, const float* w32, Py_ssize_t d) noexcept nogil:
    # The scoring kernels' dot product (score, Scorer, top-k): float32 rows take the float32 path
    # when the model has one (w32 from coef_f32_fill, else NULL); training keeps dot_dense.
    if feature_t is float:
        if w32 != NULL:
            return dot_f32w(x, w32, w, d)
        return dot_f32(x, w, d)
    else:
        return dot_f64(x, w, d)


cdef inline void dot_score4(const feature_t* x, const double* w, const float* w32, Py_ssize_t d,
                            double* z) noexcept nogil:
    # four consecutive rows; each finite z[r] is bitwise dot_score(x + r * d, w, w32, d) (a
    # non-finite one: see dot_score8)
    if feature_t is float:
        if w32 != NULL:
            dot4_f32w(x, w32, d, z)
        else:
            dot4_f32(x, w, d, z)
    else:
        dot4_f64(x, w, d, z)


cdef inline void dot_score8(const feature_t* x, const double* w, const float* w32, Py_ssize_t d,
                            double* z) noexcept nogil:
    # eight consecutive rows; each finite z[r] is bitwise dot_score(x + r * d, w, w32, d). A
    # non-finite one may be a float32 sum that overflowed: redo_nonfinite sums it again.
    if feature_t is float:
        if w32 != NULL:
            dot8_f32w(x, w32, d, z)
        else:
            dot8_f32(x, w, d, z)
    else:
        dot8_f64(x, w, d, z)


cdef inline Py_ssize_t redo_nonfinite(const feature_t* x, const double* w, const float* w32, Py_ssize_t d, double b,
                                      double* z, Py_ssize_t m) noexcept nogil:
    # After dot_score8 or dot_score4 and the intercept b: z[r] = dot_score(x + r * d, ...) + b for every
    # non-finite z[r] of rows [0, m) (a float32 sum that overflowed, summed again in float64);
    # returns how many are still not finite. The one home of that rule for the scoring loop and
    # the top-k scan; it runs only for rows that are not finite, so rarely.
    cdef Py_ssize_t r, n_nonfinite = 0
    for r in range(m):
        if not (fabs(z[r]) < INFINITY):   # inf or NaN
            if feature_t is float:
                if w32 != NULL:
                    z[r] = dot_score(x + r * d, w, w32, d) + b
            n_nonfinite += not (fabs(z[r]) < INFINITY)
    return n_nonfinite


cdef inline double apply_output(double z, int output) noexcept nogil:
    # The scoring kernels' transform of one log-odds (score, top-k): the same bits as
    # transform_block's, so a fused top-k returns exactly what score() gives.
    if output == ODDS:
        return score_exp(z)
    if output == PROBA:
        return score_sigmoid(z)
    return z


