# Shared inline maths and types for every kernel of the Cython core. The numpy reference
# (fastwlr/backends/_math.py) is the specification; these are the same formulas in C.
from libc.math cimport exp, log1p, fabs, fmax, INFINITY

# Output transforms; fastwlr.backends.cython_core maps the public names onto these codes.
cdef enum Output:
    LOG_ODDS = 0
    ODDS = 1
    PROBA = 2

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


cdef inline double apply_output(double z, int output) noexcept nogil:
    if output == ODDS:
        return safe_exp(z)
    if output == PROBA:
        return sigmoid(z)
    return z


cdef inline double dot_dense(const feature_t* x, const double* w, Py_ssize_t d) noexcept nogil:
    # Eight independent accumulators: a single running sum is bound by the FP-add latency
    # (~4 cycles a term); eight let the compiler keep a vector of partial sums. The order of
    # summation depends only on d, so results do not depend on the thread count.
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0, s5 = 0.0, s6 = 0.0, s7 = 0.0
    cdef Py_ssize_t j, d8 = d - d % 8
    for j in range(0, d8, 8):
        s0 += <double>x[j] * w[j]
        s1 += <double>x[j + 1] * w[j + 1]
        s2 += <double>x[j + 2] * w[j + 2]
        s3 += <double>x[j + 3] * w[j + 3]
        s4 += <double>x[j + 4] * w[j + 4]
        s5 += <double>x[j + 5] * w[j + 5]
        s6 += <double>x[j + 6] * w[j + 6]
        s7 += <double>x[j + 7] * w[j + 7]
    for j in range(d8, d):
        s0 += <double>x[j] * w[j]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


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
