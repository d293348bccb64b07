# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""SGD epochs of the Cython core (contract: docs/kernels.md, "SGD epochs").

One generic step for dense and CSR rows (``cols == NULL`` means the dense row 0..d-1), so both
layouts run the same arithmetic. Everything runs without the GIL; a non-finite log-odds stops the
epoch and is returned as a position, never raised inside ``nogil``.
"""
import numpy as np
from libc.math cimport ceil, sqrt, pow, exp, log, log1p, expm1, fabs, isfinite, INFINITY, copysign
from libc.stdlib cimport malloc, free

from fastwlr.backends.cython_core._math cimport (feature_t, index_t, sigmoid, softplus, dot_dense,
    exp_nonpos, expm1_nonpos, log1p_nonneg, LOG_ODDS, ODDS, PROBA, EXP_OVERFLOW_Z, EXP_UNDERFLOW_Z)

# Compile-time copies of fastwlr.backends._contract (codes, scalars layout, constants below):
# C needs them as constants; tests/test_layers.py compares them with the contract (compiled_constants).
cdef enum:
    SGD = 0
    AUTO = 0
    ADAGRAD = 1
    FTRL = 2
    NORMALIZED = 3
    IWA = 1
    CONSTANT = 1
    INVSCALING = 2
    OPTIMAL = 3
    # scalars layout
    I_B = 0
    I_SCALE = 1
    I_T = 2
    I_ACC_B = 3
    I_Z_B = 4
    I_AVG_B = 5
    I_CLOCK = 6
    I_NAVG = 7
    I_ACC_NORM = 8
    N_SC = 9
    I_NORM_W = I_Z_B     # the normalized optimiser's running sums (see _contract.S_NORM_W)
    I_NORM_X = I_CLOCK

cdef double RESCALE_BELOW = 1e-9   # the SGD weight scale is folded into coef below this


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTWLR_PREFETCH(p) __builtin_prefetch((const void*)(p), 0, 1)
    #else
    #define FASTWLR_PREFETCH(p) ((void)0)
    #endif
    """
    void prefetch "FASTWLR_PREFETCH"(const void* p) noexcept nogil

cdef extern from *:
    """
    #define FASTWLR_RESTRICT __restrict   /* C99's restrict, spelled so that MSVC accepts it too */
    #define FASTWLR_ADA_EPS 1e-12          /* AdaGrad's eta0 / (sqrt(acc) + eps), here and in Cython */
    /* The arithmetic of ada_catch_up (_sgd.pyx) for the n gathered coordinates of one row, in C
       for `restrict` (without it the compiler does not vectorise a loop over seven arrays). Flags
       in slow[q] the coordinates it does not cover: x = eta_j l2 outside the series' range, or
       averaging that began within the gap (last_j < avg_start). */
    static void fastwlr_ada_decay_row(Py_ssize_t n, const double* FASTWLR_RESTRICT last,
            const double* FASTWLR_RESTRICT acc, const double* FASTWLR_RESTRICT scale,
            const double* FASTWLR_RESTRICT coef, const double* FASTWLR_RESTRICT avg,
            double* FASTWLR_RESTRICT new_coef, double* FASTWLR_RESTRICT new_avg, double* FASTWLR_RESTRICT slow, double t,
            double eta0_l2, int avg_on, double avg_start) {
        /* scale == NULL: AdaGrad, eta_j = eta0 / (sqrt(acc_j) + eps). Otherwise the normalized
           optimiser's eta_j = eta0 / (s_j (sqrt(acc_j) + eps s_j)), s_j = scale[q] (norm_rate; a
           coordinate never seen, s_j = 0, has rate 0 and is left to the scalar path). */
        double inv_eta0_l2 = eta0_l2 > 0.0 ? 1.0 / eta0_l2 : 0.0;
        /* Two loops on purpose: merged into one with "scale != NULL &&" per element (s_j = 1 gives
           AdaGrad's rate exactly), gcc no longer vectorised it and 3 epochs on 300k x 2^18 took
           1.18 s instead of 0.72. */
        if (scale == NULL) {
            for (Py_ssize_t q = 0; q < n; q++) {
                double m = t - last[q];
                double sq = sqrt(acc[q]) + FASTWLR_ADA_EPS;
                double x = eta0_l2 / sq;                        /* eta_j l2 */
                double e = fastwlr_expm1_nonpos(-m * fastwlr_log1p_series(x));   /* r^m - 1 */
                new_coef[q] = coef[q] + coef[q] * e;
                /* sum_{i=1}^{m} r^i = (1 - r^m) / x, or m without L2 */
                new_avg[q] = avg[q] + coef[q] * (eta0_l2 > 0.0 ? -e * sq * inv_eta0_l2 : m);
                slow[q] = (double)((x >= FASTWLR_LOG1P_SERIES_MAX) | (avg_on & (last[q] < avg_start)));
            }
            return;
        }
        for (Py_ssize_t q = 0; q < n; q++) {
            double m = t - last[q];
            double sc = scale[q] > 0.0 ? scale[q] : 1.0;   /* s_j = 0 goes to the scalar path */
            double sq = sc * (sqrt(acc[q]) + FASTWLR_ADA_EPS * sc);
            double x = eta0_l2 / sq;
            double e = fastwlr_expm1_nonpos(-m * fastwlr_log1p_series(x));
            new_coef[q] = coef[q] + coef[q] * e;
            new_avg[q] = avg[q] + coef[q] * (eta0_l2 > 0.0 ? -e * sq * inv_eta0_l2 : m);
            slow[q] = (double)((x >= FASTWLR_LOG1P_SERIES_MAX) | (avg_on & (last[q] < avg_start))
                               | (scale[q] <= 0.0));
        }
    }
    """
    double ADA_EPS "FASTWLR_ADA_EPS"
    void ada_decay_row "fastwlr_ada_decay_row"(Py_ssize_t n, const double* last, const double* acc,
        const double* scale, const double* coef, const double* avg, double* new_coef, double* new_avg,
        double* slow, double t, double eta0_l2, int avg_on, double avg_start) noexcept nogil

cdef extern from *:
    """
    #include <stdlib.h>
    #if defined(__linux__)
    #include <sys/mman.h>
    #endif
    /* A block for random access: 64-byte aligned, on 2 MB pages where Linux allows it (as numpy
       does for large arrays). With 4 KB pages each hashed coordinate would also cost a TLB miss. */
    static void* fastwlr_alloc_random_access(size_t n) {
    #if defined(_WIN32)
        return _aligned_malloc(n, 64);
    #else
        void* p = NULL;
        size_t huge = (size_t)1 << 21;
        if (posix_memalign(&p, n >= huge ? huge : 64, n) != 0) return NULL;
    #if defined(__linux__) && defined(MADV_HUGEPAGE)
        if (n >= huge) madvise(p, n, MADV_HUGEPAGE);   /* advice only: failure is harmless */
    #endif
        return p;
    #endif
    }
    static void fastwlr_free_random_access(void* p) {
    #if defined(_WIN32)
        _aligned_free(p);
    #else
        free(p);
    #endif
    }
    """
    void* alloc_random_access "fastwlr_alloc_random_access"(size_t n) noexcept nogil
    void free_random_access "fastwlr_free_random_access"(void* p) noexcept nogil


cdef struct Params:
    int optimizer
    int weighting
    int schedule
    double eta0
    double power_t
    double l2
    double l1
    double alpha
    double beta
    double avg_start
    bint fit_intercept
    bint avg_on


cdef struct State:
    double* coef
    double* acc
    double* zacc
    double* last
    double* avg
    double* xmax
    double* sc
    double* buf     # per-row scratch (AdaGrad rates)
    Py_ssize_t stride   # coordinate j's values sit at [j * stride] of each array (see pack_state)
    double* gather  # per-row scratch: 8 x gather_n values (catch_up_row)
    Py_ssize_t gather_n
    Py_ssize_t d


cdef inline double iwa_step(double z, double label, double h, double k) noexcept nogil:
    # Same algorithm as the reference backend's iwa_step (see there): Newton from the right on
    # F(delta) = delta + e^v0 expm1(delta) - h k, then G = -s delta / k.
    cdef double s = 2.0 * label - 1.0, v0 = s * z, a = h * k, e, e0, ev, delta, f, new
    cdef int it
    if a <= 0.0 or k <= 0.0:
        return 0.0
    if v0 > 30.0:
        e = exp(-v0) if v0 < 745.0 else 0.0
        delta = a * e / (1.0 + e)
        return -s * delta / k
    e0 = exp(v0)
    delta = log1p(a / e0) if e0 > 0.0 else log(a) - v0
    if a < delta:
        delta = a
    for it in range(100):
        ev = exp(v0 + delta)
        f = delta + (e0 * expm1(delta) if delta < 1.0 else ev - e0) - a
        new = delta - f / (1.0 + ev)
        if new < 0.0:
            new = 0.0
        if not (new < delta) or delta - new <= 1e-15 * delta:
            delta = new
            break
        delta = new
    return -s * delta / k


def iwa_step_c(double z, double label, double h, double k):
    """The compiled IWA step, exposed for tests."""
    return iwa_step(z, label, h, k)


def _inline_math(double[::1] a, double[::1] out, int which):
    """Test hook: the shared inline expm1 (which=1) and log1p (2) of _math.pxd, as the catch-up uses them."""
    cdef Py_ssize_t i
    for i in range(a.shape[0]):
        out[i] = expm1_nonpos(a[i]) if which == 1 else log1p_nonneg(a[i])


cdef inline double eta_sgd(const Params* p, double t) noexcept nogil:
    if p.schedule == CONSTANT:
        return p.eta0
    if p.schedule == INVSCALING:
        return p.eta0 / pow(1.0 + t, p.power_t)
    # OPTIMAL: the last fixed schedule ("auto" is AdaGrad-Norm, whose rate the step computes itself)
    return p.eta0 / (1.0 + p.eta0 * p.l2 * t)


cdef inline double ftrl_w(double zj, double nj, const Params* p, double t) noexcept nogil:
    cdef double l1 = p.l1 * t
    if fabs(zj) <= l1:
        return 0.0
    return -(zj - copysign(l1, zj)) / ((p.beta + sqrt(nj)) / p.alpha + p.l2 * t)


cdef inline double geom(double lr, double x, double i0, double m) noexcept nogil:
    # sum_{i=i0}^{m} r^i with r = 1 / (1 + x) = e^-lr in (0, 1]. r / (1 - r) = 1 / x exactly, so
    # the sum is r^(i0-1) (1 - r^(m-i0+1)) / x: one expm1 (exact for tiny lr), one exp if i0 > 1
    cdef double s
    if m < i0:
        return 0.0
    if x == 0.0:
        return m - i0 + 1.0
    s = -expm1_nonpos(-(m - i0 + 1.0) * lr) / x
    return s if i0 <= 1.0 else s * exp_nonpos(-(i0 - 1.0) * lr)


cdef inline double ada_rate(const Params* p, double acc_j) noexcept nogil:
    return p.eta0 / (sqrt(acc_j) + ADA_EPS)


cdef inline double norm_multiplier(const double* sc) noexcept nogil:
    # the normalized optimiser's sqrt(sum h / sum h ||x / xmax||^2), 1 before any step
    return sqrt(sc[I_NORM_W] / sc[I_NORM_X]) if sc[I_NORM_X] > 0.0 else 1.0


cdef inline double norm_rate(double eta0m, double s, double acc_j) noexcept nogil:
    # the reference's _norm_rate: AdaGrad's rate of x / s per unit of x^2; 0 if never seen
    return eta0m / (s * (sqrt(acc_j) + ADA_EPS * s)) if s > 0.0 else 0.0


cdef inline void ada_catch_up(Py_ssize_t j, double last_j, double eta_j, double c, double avg_j,
                              State* st, const Params* p, double t) noexcept nogil:
    # apply the L2 prox factors r = 1 / (1 + eta_j l2) (and averaging terms) of the steps
    # last_j .. t-1 that skipped coordinate j; AdaGrad's eta_j did not change since (acc_j did
    # not); the normalized optimiser's is the rate of now.
    # Takes coordinate j's state as values (see catch_up_row); two transcendentals in the
    # common case. m == 0 or c == 0 make it a no-op, without a branch.
    cdef double m = t - last_j, x = 0.0, lr = 0.0, shrink = 0.0, i0
    st.last[j] = t
    if p.l2 > 0.0:
        x = eta_j * p.l2
        lr = log1p_nonneg(x)
        shrink = expm1_nonpos(-m * lr)    # r^m - 1
    if p.avg_on:
        # steps s = last_j .. t-1 hold c r^(s - last_j + 1); they count if s >= avg_start
        i0 = ceil(p.avg_start - last_j) + 1.0
        if i0 <= 1.0:                     # all m of them: sum_{i=1}^{m} r^i = (1 - r^m) / x
            st.avg[j] = avg_j + c * (m if x == 0.0 else -shrink / x)
        else:
            st.avg[j] = avg_j + c * geom(lr, x, i0, m)
    st.coef[j] = c + c * shrink


cdef inline void catch_up_row(const feature_t* x, const index_t* cols, Py_ssize_t nr, State* st,
                              const Params* p, double t, double eta0m) noexcept nogil:
    # ada_catch_up for the coordinates of one sparse row, in three loops: gather the state (one
    # cache miss each, all in flight at once), the arithmetic on contiguous copies (branch-free
    # inline polynomials, vectorised: ada_decay_row), scatter. Coordinates outside the fast
    # path's range (large x, averaging that began within the gap, a normalized scale never set:
    # ~1 in 40 touches) take the scalar ada_catch_up instead. Same results as calling ada_catch_up
    # on each, to an ulp or two. AdaGrad (eta0m unused) catches up every stored entry; the
    # normalized optimiser (rate eta0m / (xmax_j (sqrt(acc_j) + eps xmax_j))) skips a stored zero,
    # which is no touch of its coordinate, as its scalar loop does.
    cdef Py_ssize_t q, j, n = st.gather_n
    cdef double* g_last = st.gather
    cdef double* g_acc = g_last + n
    cdef double* g_coef = g_last + 2 * n
    cdef double* g_avg = g_last + 3 * n
    cdef double* new_coef = g_last + 4 * n
    cdef double* new_avg = g_last + 5 * n
    cdef double* slow = g_last + 6 * n
    cdef double* g_scale = g_last + 7 * n
    cdef bint avg_on = p.avg_on, normalized = p.optimizer == NORMALIZED
    for q in range(nr):
        j = <Py_ssize_t>cols[q] * st.stride
        g_last[q] = t if normalized and x[q] == 0 else st.last[j]   # m = 0: no catch-up
        g_acc[q] = st.acc[j]
        g_coef[q] = st.coef[j]
        g_avg[q] = st.avg[j] if avg_on else 0.0
        if normalized:
            g_scale[q] = st.xmax[j]
    ada_decay_row(nr, g_last, g_acc, g_scale if normalized else NULL, g_coef, g_avg, new_coef, new_avg, slow, t,
                  (eta0m if normalized else p.eta0) * p.l2, avg_on, p.avg_start)
    for q in range(nr):
        if normalized and x[q] == 0:
            continue
        j = <Py_ssize_t>cols[q] * st.stride
        if slow[q] != 0.0:
            ada_catch_up(j, g_last[q], norm_rate(eta0m, g_scale[q], g_acc[q]) if normalized else ada_rate(p, g_acc[q]),
                         g_coef[q], g_avg[q], st, p, t)
        else:
            st.last[j] = t
            st.coef[j] = new_coef[q]
            if avg_on:
                st.avg[j] = new_avg[q]


cdef inline void sgd_catch_up(Py_ssize_t j, State* st) noexcept nogil:
    st.avg[j] += st.coef[j] * (st.sc[I_CLOCK] - st.last[j])
    st.last[j] = st.sc[I_CLOCK]


cdef inline Py_ssize_t colj(const index_t* cols, Py_ssize_t q, Py_ssize_t stride) noexcept nogil:
    # the offset of row position q's coordinate in the state arrays (dense rows: stride 1)
    return q if cols == NULL else <Py_ssize_t>cols[q] * stride


cdef inline double dot_csr_strided(const feature_t* data, const index_t* cols, Py_ssize_t nr,
                                   const double* w, Py_ssize_t stride) noexcept nogil:
    # dot_csr of _math.pxd (same two accumulators, same order) over coefficients at [j * stride]
    cdef double s0 = 0.0, s1 = 0.0
    cdef Py_ssize_t q = 0
    while q + 1 < nr:
        s0 += <double>data[q] * w[<Py_ssize_t>cols[q] * stride]
        s1 += <double>data[q + 1] * w[<Py_ssize_t>cols[q + 1] * stride]
        q += 2
    if q < nr:
        s0 += <double>data[q] * w[<Py_ssize_t>cols[q] * stride]
    return s0 + s1


cdef Py_ssize_t run_epoch(const feature_t* data, const index_t* cols_all, const index_t* indptr,
                          Py_ssize_t d_dense, const double* y, const double* sw,
                          const long long* order, Py_ssize_t n_order, State* st, const Params* p,
                          double* loss_out) noexcept nogil:
    """Returns -1, or the position in ``order`` where the log-odds became non-finite."""
    cdef double* sc = st.sc
    cdef double* coef = st.coef
    cdef double loss_sum = 0.0, h, label, t, z, g, eta, k, G, inv_scale, q, eta_b, gj, nj, sigma, v
    cdef double nb, sqn, x2, xv, ax, nx, eta0m
    cdef Py_ssize_t pos, i, i3, a, b, nr, q_i, j, jd
    cdef const feature_t* x
    cdef const index_t* cols
    for pos in range(n_order):
        i = <Py_ssize_t>order[pos]
        h = sw[i]
        label = y[i]
        if cols_all == NULL:   # dense row
            x = data + i * d_dense
            cols = NULL
            nr = d_dense
        else:
            a = <Py_ssize_t>indptr[i]
            b = <Py_ssize_t>indptr[i + 1]
            x = data + a
            cols = cols_all + a
            nr = b - a
        if cols_all == NULL and pos + 1 < n_order:
            # rows come in random order: fetch the next one while this one is processed
            for q_i in range(0, d_dense * <Py_ssize_t>sizeof(feature_t), 64):
                prefetch(<const char*>(data + order[pos + 1] * d_dense) + q_i)
        elif cols_all != NULL:
            # Rows come in random order and hashed columns scatter over the state: every access
            # is a cache miss unless fetched ahead. Three stages, each reading only what the
            # previous one fetched: the row's indptr, weight and label three rows ahead; its
            # indices and values (all their lines) two ahead; its coordinates' state one ahead
            # (one line each when packed, see pack_state).
            if pos + 3 < n_order:
                i3 = <Py_ssize_t>order[pos + 3]
                prefetch(indptr + i3)
                prefetch(sw + i3)
                prefetch(y + i3)
            if pos + 2 < n_order:
                i3 = <Py_ssize_t>order[pos + 2]
                a = <Py_ssize_t>indptr[i3]
                b = <Py_ssize_t>indptr[i3 + 1]
                for q_i in range(0, (b - a) * <Py_ssize_t>sizeof(index_t), 64):
                    prefetch(<const char*>(cols_all + a) + q_i)
                for q_i in range(0, (b - a) * <Py_ssize_t>sizeof(feature_t), 64):
                    prefetch(<const char*>(data + a) + q_i)
                if b > a:                     # the last lines, when the row is not line-aligned
                    prefetch(cols_all + b - 1)
                    prefetch(data + b - 1)
            if pos + 1 < n_order:
                a = <Py_ssize_t>indptr[order[pos + 1]]
                b = <Py_ssize_t>indptr[order[pos + 1] + 1]
                for q_i in range(a, b):
                    j = <Py_ssize_t>cols_all[q_i] * st.stride
                    prefetch(coef + j)
                    if st.stride > 1:   # packed: the whole record is in that line
                        continue
                    if st.acc != NULL:
                        prefetch(st.acc + j)
                    if st.last != NULL:
                        prefetch(st.last + j)
                    if st.avg != NULL:
                        prefetch(st.avg + j)
                    if st.zacc != NULL:
                        prefetch(st.zacc + j)
                    if st.xmax != NULL:
                        prefetch(st.xmax + j)
        t = sc[I_T]
        # 1. lazy catch-up and 2. margin
        if p.optimizer == ADAGRAD:
            if cols != NULL and (p.l2 > 0 or p.avg_on):  # dense rows are never behind
                catch_up_row(x, cols, nr, st, p, t, 0.0)
        elif p.optimizer == NORMALIZED:
            # a step touches the nonzero x_j only, dense or CSR; skipped steps at the rate of now
            if p.l2 > 0 or p.avg_on:
                eta0m = p.eta0 * norm_multiplier(sc)
                if cols != NULL:
                    catch_up_row(x, cols, nr, st, p, t, eta0m)
                else:
                    for q_i in range(nr):
                        if x[q_i] != 0:
                            j = colj(cols, q_i, st.stride)
                            ada_catch_up(j, st.last[j], norm_rate(eta0m, st.xmax[j], st.acc[j]), coef[j],
                                         st.avg[j] if p.avg_on else 0.0, st, p, t)
        elif p.optimizer == FTRL:
            for q_i in range(nr):
                j = colj(cols, q_i, st.stride)
                coef[j] = ftrl_w(st.zacc[j], st.acc[j], p, t)
            if p.fit_intercept:
                sc[I_B] = -sc[I_Z_B] * p.alpha / (p.beta + sqrt(sc[I_ACC_B]))
        elif p.avg_on:
            for q_i in range(nr):
                sgd_catch_up(colj(cols, q_i, st.stride), st)
        if cols == NULL:
            z = dot_dense(x, coef, nr)
        else:
            z = dot_csr_strided(x, cols, nr, coef, st.stride)
        z = sc[I_SCALE] * z + sc[I_B]
        if not isfinite(z):
            loss_out[0] = loss_sum
            return pos
        loss_sum += h * (softplus(z) - label * z)
        g = sigmoid(z) - label
        # 3. rates, 4. the scalar step G, 5. update
        if p.optimizer == SGD:
            x2 = 0.0
            if p.schedule == AUTO or p.weighting == IWA:
                for q_i in range(nr):
                    x2 += <double>x[q_i] * <double>x[q_i]
                x2 += 1.0 if p.fit_intercept else 0.0
            if p.schedule == AUTO:  # AdaGrad-Norm: one accumulator of squared gradient norms
                sc[I_ACC_NORM] += (h * g * g if p.weighting == IWA else (h * g) * (h * g)) * x2
                eta = p.eta0 / (sqrt(sc[I_ACC_NORM]) + ADA_EPS)
            else:
                eta = eta_sgd(p, t)
            if p.weighting == IWA:
                k = eta * x2
                G = iwa_step(z, label, h, k)
            else:
                G = h * g
            inv_scale = 1.0 / sc[I_SCALE]
            v = eta * G * inv_scale
            if cols == NULL:
                for q_i in range(nr):
                    coef[q_i] -= v * <double>x[q_i]
            else:
                for q_i in range(nr):
                    coef[<Py_ssize_t>cols[q_i] * st.stride] -= v * <double>x[q_i]
            if p.fit_intercept:
                sc[I_B] -= eta * G
            sc[I_SCALE] /= 1.0 + eta * p.l2
            if sc[I_SCALE] < RESCALE_BELOW:
                if p.avg_on:
                    for jd in range(st.d):
                        j = jd * st.stride
                        sgd_catch_up(j, st)
                for jd in range(st.d):
                    j = jd * st.stride
                    coef[j] *= sc[I_SCALE]
                sc[I_SCALE] = 1.0
        elif p.optimizer == ADAGRAD:
            q = h * g * g if p.weighting == IWA else (h * g) * (h * g)
            k = 0.0
            for q_i in range(nr):
                j = colj(cols, q_i, st.stride)
                x2 = <double>x[q_i] * <double>x[q_i]
                st.acc[j] += q * x2
                st.buf[q_i] = p.eta0 / (sqrt(st.acc[j]) + ADA_EPS)
                k += st.buf[q_i] * x2
            eta_b = 0.0
            if p.fit_intercept:
                sc[I_ACC_B] += q
                eta_b = p.eta0 / (sqrt(sc[I_ACC_B]) + ADA_EPS)
                k += eta_b
            G = iwa_step(z, label, h, k) if p.weighting == IWA else h * g
            for q_i in range(nr):
                j = colj(cols, q_i, st.stride)
                coef[j] = (coef[j] - st.buf[q_i] * G * <double>x[q_i]) / (1.0 + st.buf[q_i] * p.l2)
                st.last[j] = t + 1
            sc[I_B] -= eta_b * G
        elif p.optimizer == NORMALIZED:
            q = h * g * g if p.weighting == IWA else (h * g) * (h * g)
            nx = 0.0
            for q_i in range(nr):
                xv = <double>x[q_i]
                if xv == 0.0:
                    continue
                j = colj(cols, q_i, st.stride)
                st.acc[j] += q * (xv * xv)
                ax = fabs(xv)
                if ax > st.xmax[j]:   # a larger scale: rescale the weight (Vowpal Wabbit's rule)
                    if st.xmax[j] > 0.0:
                        coef[j] *= st.xmax[j] / ax
                    st.xmax[j] = ax
                x2 = xv / st.xmax[j]
                nx += x2 * x2
            if p.fit_intercept:
                sc[I_ACC_B] += q
                nx += 1.0
            sc[I_NORM_W] += h
            sc[I_NORM_X] += h * nx
            eta0m = p.eta0 * norm_multiplier(sc)
            k = 0.0
            for q_i in range(nr):
                xv = <double>x[q_i]
                st.buf[q_i] = 0.0
                if xv != 0.0:
                    j = colj(cols, q_i, st.stride)
                    st.buf[q_i] = norm_rate(eta0m, st.xmax[j], st.acc[j])
                    k += st.buf[q_i] * (xv * xv)
            eta_b = 0.0
            if p.fit_intercept:
                eta_b = eta0m / (sqrt(sc[I_ACC_B]) + ADA_EPS)
                k += eta_b
            G = iwa_step(z, label, h, k) if p.weighting == IWA else h * g
            for q_i in range(nr):
                xv = <double>x[q_i]
                if xv != 0.0:
                    j = colj(cols, q_i, st.stride)
                    coef[j] = (coef[j] - st.buf[q_i] * G * xv) / (1.0 + st.buf[q_i] * p.l2)
                    st.last[j] = t + 1
            sc[I_B] -= eta_b * G
        else:  # FTRL-Proximal
            if p.weighting == IWA:
                q = h * g * g if p.weighting == IWA else (h * g) * (h * g)
                k = 0.0
                for q_i in range(nr):
                    j = colj(cols, q_i, st.stride)
                    x2 = <double>x[q_i] * <double>x[q_i]
                    k += p.alpha / (p.beta + sqrt(st.acc[j] + q * x2)) * x2
                if p.fit_intercept:
                    k += p.alpha / (p.beta + sqrt(sc[I_ACC_B] + q))
                G = iwa_step(z, label, h, k)
            else:
                q = (h * g) * (h * g)
                G = h * g
            # n grows by q x_j^2 (= g_j^2 for "gradient"; h g^2 x_j^2, as in k above, for "iwa")
            for q_i in range(nr):
                j = colj(cols, q_i, st.stride)
                x2 = <double>x[q_i] * <double>x[q_i]
                gj = G * <double>x[q_i]
                nj = st.acc[j]
                sigma = (sqrt(nj + q * x2) - sqrt(nj)) / p.alpha
                st.zacc[j] += gj - sigma * coef[j]
                st.acc[j] = nj + q * x2
            if p.fit_intercept:
                nb = sc[I_ACC_B]
                sigma = (sqrt(nb + q) - sqrt(nb)) / p.alpha
                sc[I_Z_B] += G - sigma * sc[I_B]
                sc[I_ACC_B] = nb + q
        # 6. step counter and averaging
        sc[I_T] = t + 1
        if p.avg_on and t + 1 > p.avg_start:
            if p.optimizer == SGD:
                sc[I_CLOCK] += sc[I_SCALE]
            else:  # AdaGrad, normalized: the touched coordinates (others lazily)
                for q_i in range(nr):
                    if p.optimizer == ADAGRAD or x[q_i] != 0:
                        j = colj(cols, q_i, st.stride)
                        st.avg[j] += coef[j]
            sc[I_AVG_B] += sc[I_B]
            sc[I_NAVG] += 1.0
    # bring every coordinate up to date
    t = sc[I_T]
    if p.optimizer == ADAGRAD:
        for jd in range(st.d):
            j = jd * st.stride
            ada_catch_up(j, st.last[j], ada_rate(p, st.acc[j]), coef[j], st.avg[j] if p.avg_on else 0.0,
                         st, p, t)
    elif p.optimizer == NORMALIZED:
        eta0m = p.eta0 * norm_multiplier(sc)
        for jd in range(st.d):
            j = jd * st.stride
            ada_catch_up(j, st.last[j], norm_rate(eta0m, st.xmax[j], st.acc[j]), coef[j],
                         st.avg[j] if p.avg_on else 0.0, st, p, t)
    elif p.optimizer == FTRL:
        for jd in range(st.d):
            j = jd * st.stride
            coef[j] = ftrl_w(st.zacc[j], st.acc[j], p, t)
        if p.fit_intercept:
            sc[I_B] = -sc[I_Z_B] * p.alpha / (p.beta + sqrt(sc[I_ACC_B]))
    elif p.avg_on:
        for jd in range(st.d):
            j = jd * st.stride
            sgd_catch_up(j, st)
    loss_out[0] = loss_sum
    return -1


cdef enum:
    PACK = 4   # doubles per packed record: 32 bytes, two records to a 64-byte cache line ...
    PACK_WIDE = 8   # ... or 64 bytes, one a line, when more than 4 arrays are used
    N_FIELDS = 6

cdef struct Packed:
    double* raw         # the malloc'ed block, NULL when the state is not packed
    double** field[6]   # the State fields (coef, acc, zacc, last, avg, xmax) ...
    double* orig[6]     # ... and the arrays they pointed to before packing
    bint used[6]


cdef bint pack_state(State* st, const Params* p, Packed* pk) noexcept nogil:
    """Interleave the state arrays an optimiser uses into records of PACK doubles (CSR epochs).

    A hashed column is a cache miss in every state array it touches (AdaGrad with averaging: coef,
    acc, last, avg): interleaved, coordinate j's values share one line and cost one miss. The two
    O(d) copies an epoch are small next to the epoch (the final catch-up is O(d) already). Returns
    False, leaving the state as it was, when there is nothing to gain or no memory for it."""
    cdef Py_ssize_t f, k = 0, j, d = st.d, width
    cdef double* rec
    pk.raw = NULL
    pk.field[0] = &st.coef
    pk.field[1] = &st.acc
    pk.field[2] = &st.zacc
    pk.field[3] = &st.last
    pk.field[4] = &st.avg
    pk.field[5] = &st.xmax
    pk.used[0] = True
    pk.used[1] = p.optimizer != SGD
    pk.used[2] = p.optimizer == FTRL
    pk.used[3] = p.optimizer == ADAGRAD or p.optimizer == NORMALIZED or (p.optimizer == SGD and p.avg_on)
    pk.used[4] = p.avg_on
    pk.used[5] = p.optimizer == NORMALIZED
    for f in range(N_FIELDS):
        k += pk.used[f]
    if k < 2 or d == 0:
        return False
    width = PACK if k <= PACK else PACK_WIDE
    pk.raw = <double*>alloc_random_access(d * width * sizeof(double))
    if pk.raw == NULL:
        return False
    rec = pk.raw   # 64-byte aligned: records never straddle cache lines
    k = 0
    for f in range(N_FIELDS):
        pk.orig[f] = pk.field[f][0]
        if not pk.used[f]:
            pk.field[f][0] = NULL
            continue
        for j in range(d):
            rec[j * width + k] = pk.orig[f][j]
        pk.field[f][0] = rec + k
        k += 1
    for f in range(k, width):     # padding: never read, but defined
        for j in range(d):
            rec[j * width + f] = 0.0
    st.stride = width
    return True


cdef void unpack_state(State* st, Packed* pk) noexcept nogil:
    cdef Py_ssize_t f, j
    cdef double* src
    if pk.raw == NULL:
        return
    for f in range(N_FIELDS):
        if pk.used[f]:
            src = pk.field[f][0]
            for j in range(st.d):
                pk.orig[f][j] = src[j * st.stride]
        pk.field[f][0] = pk.orig[f]
    st.stride = 1
    free_random_access(pk.raw)
    pk.raw = NULL


cdef double* _ptr(double[::1] a, Py_ssize_t need, str name) except? NULL:
    if a.shape[0] != need:
        raise ValueError(f"SGD state: {name} has length {a.shape[0]}, expected {need}")
    return &a[0] if need > 0 else NULL


cdef object _setup(object state, object params, Py_ssize_t d, State* st, Params* p):
    p.optimizer = params.optimizer
    p.weighting = params.weighting
    p.schedule = params.schedule
    p.eta0 = params.eta0
    p.power_t = params.power_t
    p.l2 = params.l2
    p.l1 = params.l1
    p.alpha = params.ftrl_alpha
    p.beta = params.ftrl_beta
    p.avg_start = params.avg_start
    p.fit_intercept = params.fit_intercept
    p.avg_on = isfinite(p.avg_start) and state.avg.shape[0] > 0
    if p.optimizer not in (SGD, ADAGRAD, FTRL, NORMALIZED):
        raise ValueError(f"unknown optimizer code {p.optimizer}")
    # every array the chosen optimiser touches must have length d (never read out of bounds)
    st.d = d
    st.stride = 1
    st.coef = _ptr(state.coef, d, "coef")
    st.acc = _ptr(state.acc, d if p.optimizer != SGD else state.acc.shape[0], "acc")
    st.zacc = _ptr(state.zacc, d if p.optimizer == FTRL else state.zacc.shape[0], "zacc")
    need_last = p.optimizer == ADAGRAD or p.optimizer == NORMALIZED or (p.avg_on and p.optimizer == SGD)
    st.last = _ptr(state.last, d if need_last else state.last.shape[0], "last")
    st.avg = _ptr(state.avg, d if p.avg_on else state.avg.shape[0], "avg")
    st.xmax = _ptr(state.xmax, d if p.optimizer == NORMALIZED else state.xmax.shape[0], "xmax")
    st.sc = _ptr(state.scalars, N_SC, "scalars")
    # keep the arrays alive while we hold raw pointers
    return (state.coef, state.acc, state.zacc, state.last, state.avg, state.scalars, state.xmax)


def compiled_constants():
    """The compile-time copies of the contract's names, for the test that pins them equal."""
    return {"LOG_ODDS": LOG_ODDS, "ODDS": ODDS, "PROBA": PROBA, "EXP_OVERFLOW_Z": EXP_OVERFLOW_Z,
            "EXP_UNDERFLOW_Z": EXP_UNDERFLOW_Z, "SGD": SGD, "ADAGRAD": ADAGRAD, "FTRL": FTRL,
            "NORMALIZED": NORMALIZED, "S_NORM_W": I_NORM_W, "S_NORM_X": I_NORM_X, "GRADIENT": 0,
            "IWA": IWA, "AUTO": AUTO, "CONSTANT": CONSTANT, "INVSCALING": INVSCALING, "OPTIMAL": OPTIMAL,
            "S_INTERCEPT": I_B, "S_SCALE": I_SCALE, "S_T": I_T, "S_ACC_B": I_ACC_B, "S_Z_B": I_Z_B,
            "S_AVG_B": I_AVG_B, "S_AVG_CLOCK": I_CLOCK, "S_N_AVG": I_NAVG, "S_ACC_NORM": I_ACC_NORM,
            "N_SCALARS": N_SC, "ADA_EPS": ADA_EPS, "RESCALE_BELOW": RESCALE_BELOW}


def sgd_epoch_dense(const feature_t[:, ::1] X, const double[::1] y, const double[::1] sample_weight,
                    const long long[::1] order, state, params):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], bad
    cdef State st
    cdef Params p
    cdef double loss = 0.0
    if y.shape[0] != n or sample_weight.shape[0] != n:
        raise ValueError("y and sample_weight must have one entry per row of X")
    keep = _setup(state, params, d, &st, &p)
    st.buf = <double*>malloc((d + 1) * sizeof(double))
    st.gather = NULL
    st.gather_n = 0
    if st.buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            bad = run_epoch(&X[0, 0] if n > 0 else NULL, <const int*>NULL, <const int*>NULL, d, &y[0] if n else NULL,
                                            &sample_weight[0] if n else NULL,
                                            &order[0] if order.shape[0] else NULL, order.shape[0],
                                            &st, &p, &loss)
    finally:
        free(st.buf)
    return loss, bad


def sgd_epoch_csr(const feature_t[::1] data, const index_t[::1] indices, const index_t[::1] indptr,
                  const double[::1] y, const double[::1] sample_weight, const long long[::1] order,
                  state, params):
    cdef Py_ssize_t n = indptr.shape[0] - 1, d = state.coef.shape[0], bad, maxnnz = 0
    cdef State st
    cdef Params p
    cdef Packed pk
    cdef double loss = 0.0
    cdef bint worth_packing
    pk.raw = NULL
    if y.shape[0] != n or sample_weight.shape[0] != n:
        raise ValueError("y and sample_weight must have one entry per row")
    if n > 0:
        maxnnz = int(np.max(np.diff(indptr)))
    if indptr.shape[0] == 0:
        raise ValueError("indptr must have n_rows + 1 entries")
    keep = _setup(state, params, d, &st, &p)
    st.buf = <double*>malloc((maxnnz + 1) * sizeof(double))
    st.gather_n = maxnnz + 1
    st.gather = <double*>malloc(8 * st.gather_n * sizeof(double))
    if st.buf == NULL or st.gather == NULL:
        free(st.buf)
        free(st.gather)
        raise MemoryError()
    # packing costs two O(d) passes: worth it when the epoch touches at least d coordinates
    # (a small partial_fit chunk over 2^24 hashed columns is faster unpacked)
    worth_packing = <double>order.shape[0] * <double>indices.shape[0] >= <double>d * <double>max(n, 1)
    try:
        with nogil:
            if worth_packing:
                pack_state(&st, &p, &pk)
            bad = run_epoch(&data[0] if data.shape[0] else NULL, &indices[0] if indices.shape[0] else <const index_t*>&indptr[0],
                                                &indptr[0], 0, &y[0] if n else NULL,
                                                &sample_weight[0] if n else NULL,
                                                &order[0] if order.shape[0] else NULL, order.shape[0],
                                                &st, &p, &loss)
    finally:
        unpack_state(&st, &pk)
        free(st.buf)
        free(st.gather)
    return loss, bad
