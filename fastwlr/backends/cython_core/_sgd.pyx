# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""SGD epochs of the Cython core (contract: the module docstring of ``fastwlr._sgd``).

One generic step for dense and CSR rows (``cols == NULL`` means the dense row 0..d-1), so both
layouts run the same arithmetic. Everything runs without the GIL; a non-finite log-odds stops the
epoch and is returned as a position, never raised inside ``nogil``.
"""
import numpy as np
from libc.math cimport ceil, sqrt, pow, exp, log, log1p, expm1, fabs, isfinite, INFINITY, copysign
from libc.stdlib cimport malloc, free

from fastwlr.backends.cython_core._math cimport feature_t, index_t, sigmoid, softplus, dot_dense, dot_csr
from fastwlr._sgd import (S_ACC_B, S_AVG_B, S_AVG_CLOCK, S_INTERCEPT, S_N_AVG, S_SCALE, S_T, S_Z_B,
                          S_ACC_NORM, N_SCALARS)

# codes: keep in step with fastwlr._sgd (OPTIMIZERS, WEIGHTINGS, SCHEDULES)
cdef enum:
    SGD = 0
    AUTO = 0
    ADAGRAD = 1
    FTRL = 2
    IWA = 1
    CONSTANT = 1
    INVSCALING = 2
    # scalars layout (checked against fastwlr._sgd at import)
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

cdef double RESCALE_BELOW = 1e-9   # the SGD weight scale is folded into coef below this
cdef double ADA_EPS = 1e-12

assert (S_INTERCEPT, S_SCALE, S_T, S_ACC_B, S_Z_B, S_AVG_B, S_AVG_CLOCK, S_N_AVG, S_ACC_NORM, N_SCALARS) == \
    (I_B, I_SCALE, I_T, I_ACC_B, I_Z_B, I_AVG_B, I_CLOCK, I_NAVG, I_ACC_NORM, N_SC), "scalars layout changed"


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTWLR_PREFETCH(p) __builtin_prefetch((const void*)(p), 0, 1)
    #else
    #define FASTWLR_PREFETCH(p) ((void)0)
    #endif
    """
    void prefetch "FASTWLR_PREFETCH"(const void* p) noexcept nogil


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
    double n_schedule
    bint fit_intercept
    bint avg_on


cdef struct State:
    double* coef
    double* acc
    double* zacc
    double* last
    double* avg
    double* sc
    double* buf     # per-row scratch (AdaGrad rates)
    Py_ssize_t d


cdef inline double iwa_step(double z, double label, double h, double k) noexcept nogil:
    # Same algorithm as fastwlr._sgd.iwa_step (see there): Newton from the right on
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


cdef inline double eta_sgd(const Params* p, double t) noexcept nogil:
    if p.schedule == CONSTANT:
        return p.eta0
    if p.schedule == INVSCALING:
        return p.eta0 / pow(1.0 + t, p.power_t)
    return p.eta0 / sqrt(1.0 + t / p.n_schedule)


cdef inline double ftrl_w(double zj, double nj, const Params* p, double t) noexcept nogil:
    cdef double l1 = p.l1 * t
    if fabs(zj) <= l1:
        return 0.0
    return -(zj - copysign(l1, zj)) / ((p.beta + sqrt(nj)) / p.alpha + p.l2 * t)


cdef inline double geom(double lr, double i0, double m) noexcept nogil:
    # sum_{i=i0}^{m} r^i with r = e^-lr in (0, 1]; expm1 keeps it exact for tiny lr
    if m < i0:
        return 0.0
    if lr == 0.0:
        return m - i0 + 1.0
    return exp(-i0 * lr) * expm1(-(m - i0 + 1.0) * lr) / expm1(-lr)


cdef inline void ada_catch_up(Py_ssize_t j, State* st, const Params* p, double t) noexcept nogil:
    # apply the L2 prox factors r = 1 / (1 + eta_j l2) (and averaging terms) of the steps
    # last_j .. t-1 that skipped coordinate j; eta_j did not change since (acc_j did not)
    cdef double m = t - st.last[j], lr = 0.0, c = st.coef[j], i0
    if m <= 0:
        return
    st.last[j] = t
    if c == 0.0:      # a zero coefficient stays zero and adds nothing to the average
        return
    if p.l2 > 0.0:
        lr = log1p(p.eta0 / (sqrt(st.acc[j]) + ADA_EPS) * p.l2)
    if p.avg_on:
        # steps s = last_j .. t-1 hold c r^(s - last_j + 1); they count if s >= avg_start
        i0 = ceil(p.avg_start - (t - m)) + 1.0
        if i0 < 1.0:
            i0 = 1.0
        st.avg[j] += c * geom(lr, i0, m)
    if lr > 0.0:
        st.coef[j] = c * exp(-m * lr)


cdef inline void sgd_catch_up(Py_ssize_t j, State* st) noexcept nogil:
    st.avg[j] += st.coef[j] * (st.sc[I_CLOCK] - st.last[j])
    st.last[j] = st.sc[I_CLOCK]


cdef inline Py_ssize_t colj(const index_t* cols, Py_ssize_t q) noexcept nogil:
    return q if cols == NULL else <Py_ssize_t>cols[q]


cdef Py_ssize_t run_epoch(const feature_t* data, const index_t* cols_all, const index_t* indptr,
                          Py_ssize_t d_dense, const double* y, const double* sw,
                          const long long* order, Py_ssize_t n_order, State* st, const Params* p,
                          double* loss_out) noexcept nogil:
    """Returns -1, or the position in ``order`` where the log-odds became non-finite."""
    cdef double* sc = st.sc
    cdef double* coef = st.coef
    cdef double loss_sum = 0.0, h, label, t, z, g, eta, k, G, inv_scale, q, eta_b, gj, nj, sigma, v
    cdef double nb, sqn, x2
    cdef Py_ssize_t pos, i, a, b, nr, q_i, j
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
            # hashed columns: every coordinate touched is a cache miss in 4-5 state arrays.
            # Two-stage prefetch: the indices of the row after next, the state of the next row.
            if pos + 2 < n_order:
                a = <Py_ssize_t>indptr[order[pos + 2]]
                prefetch(cols_all + a)
                prefetch(data + a)
            if pos + 1 < n_order:
                a = <Py_ssize_t>indptr[order[pos + 1]]
                b = <Py_ssize_t>indptr[order[pos + 1] + 1]
                for q_i in range(a, b):
                    j = <Py_ssize_t>cols_all[q_i]
                    prefetch(coef + j)
                    if st.acc != NULL:
                        prefetch(st.acc + j)
                    if st.last != NULL:
                        prefetch(st.last + j)
                    if st.avg != NULL:
                        prefetch(st.avg + j)
                    if st.zacc != NULL:
                        prefetch(st.zacc + j)
        t = sc[I_T]
        # 1. lazy catch-up and 2. margin
        if p.optimizer == ADAGRAD:
            if cols != NULL and (p.l2 > 0 or p.avg_on):  # dense rows are never behind
                for q_i in range(nr):
                    ada_catch_up(colj(cols, q_i), st, p, t)
        elif p.optimizer == FTRL:
            for q_i in range(nr):
                j = colj(cols, q_i)
                coef[j] = ftrl_w(st.zacc[j], st.acc[j], p, t)
            if p.fit_intercept:
                sc[I_B] = -sc[I_Z_B] * p.alpha / (p.beta + sqrt(sc[I_ACC_B]))
        elif p.avg_on:
            for q_i in range(nr):
                sgd_catch_up(colj(cols, q_i), st)
        if cols == NULL:
            z = dot_dense(x, coef, nr)
        else:
            z = dot_csr(x, cols, 0, nr, coef)
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
                    coef[cols[q_i]] -= v * <double>x[q_i]
            if p.fit_intercept:
                sc[I_B] -= eta * G
            sc[I_SCALE] /= 1.0 + eta * p.l2
            if sc[I_SCALE] < RESCALE_BELOW:
                if p.avg_on:
                    for j in range(st.d):
                        sgd_catch_up(j, st)
                for j in range(st.d):
                    coef[j] *= sc[I_SCALE]
                sc[I_SCALE] = 1.0
        elif p.optimizer == ADAGRAD:
            q = h * g * g if p.weighting == IWA else (h * g) * (h * g)
            k = 0.0
            for q_i in range(nr):
                j = colj(cols, q_i)
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
                j = colj(cols, q_i)
                coef[j] = (coef[j] - st.buf[q_i] * G * <double>x[q_i]) / (1.0 + st.buf[q_i] * p.l2)
                st.last[j] = t + 1
            sc[I_B] -= eta_b * G
        else:  # FTRL-Proximal
            if p.weighting == IWA:
                q = h * g * g if p.weighting == IWA else (h * g) * (h * g)
                k = 0.0
                for q_i in range(nr):
                    j = colj(cols, q_i)
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
                j = colj(cols, q_i)
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
            else:
                for q_i in range(nr):
                    j = colj(cols, q_i)
                    st.avg[j] += coef[j]
            sc[I_AVG_B] += sc[I_B]
            sc[I_NAVG] += 1.0
    # bring every coordinate up to date
    t = sc[I_T]
    if p.optimizer == ADAGRAD:
        for j in range(st.d):
            ada_catch_up(j, st, p, t)
    elif p.optimizer == FTRL:
        for j in range(st.d):
            coef[j] = ftrl_w(st.zacc[j], st.acc[j], p, t)
        if p.fit_intercept:
            sc[I_B] = -sc[I_Z_B] * p.alpha / (p.beta + sqrt(sc[I_ACC_B]))
    elif p.avg_on:
        for j in range(st.d):
            sgd_catch_up(j, st)
    loss_out[0] = loss_sum
    return -1


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
    p.n_schedule = params.n_schedule
    p.fit_intercept = params.fit_intercept
    p.avg_on = isfinite(p.avg_start) and state.avg.shape[0] > 0
    if p.optimizer not in (SGD, ADAGRAD, FTRL):
        raise ValueError(f"unknown optimizer code {p.optimizer}")
    # every array the chosen optimiser touches must have length d (never read out of bounds)
    st.d = d
    st.coef = _ptr(state.coef, d, "coef")
    st.acc = _ptr(state.acc, d if p.optimizer != SGD else state.acc.shape[0], "acc")
    st.zacc = _ptr(state.zacc, d if p.optimizer == FTRL else state.zacc.shape[0], "zacc")
    need_last = p.optimizer == ADAGRAD or (p.avg_on and p.optimizer == SGD)
    st.last = _ptr(state.last, d if need_last else state.last.shape[0], "last")
    st.avg = _ptr(state.avg, d if p.avg_on else state.avg.shape[0], "avg")
    st.sc = _ptr(state.scalars, N_SC, "scalars")
    # keep the arrays alive while we hold raw pointers
    return (state.coef, state.acc, state.zacc, state.last, state.avg, state.scalars)


def _check_order(const long long[::1] order, Py_ssize_t n):
    if order.shape[0] and (np.min(order) < 0 or np.max(order) >= n):
        raise ValueError(f"order holds row indices outside [0, {n})")


def sgd_epoch_dense(const feature_t[:, ::1] X, const double[::1] y, const double[::1] sample_weight,
                    const long long[::1] order, state, params):
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], bad
    cdef State st
    cdef Params p
    cdef double loss = 0.0
    if y.shape[0] != n or sample_weight.shape[0] != n:
        raise ValueError("y and sample_weight must have one entry per row of X")
    _check_order(order, n)
    keep = _setup(state, params, d, &st, &p)
    st.buf = <double*>malloc((d + 1) * sizeof(double))
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
    cdef double loss = 0.0
    if y.shape[0] != n or sample_weight.shape[0] != n:
        raise ValueError("y and sample_weight must have one entry per row")
    _check_order(order, n)
    if n > 0:
        maxnnz = int(np.max(np.diff(indptr)))
    if indices.shape[0] and (np.min(indices) < 0 or np.max(indices) >= d):
        raise ValueError(f"CSR column indices must lie in [0, {d}) (the length of the coefficients)")
    keep = _setup(state, params, d, &st, &p)
    st.buf = <double*>malloc((maxnnz + 1) * sizeof(double))
    if st.buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            bad = run_epoch(&data[0] if data.shape[0] else NULL, &indices[0] if indices.shape[0] else <const index_t*>&indptr[0],
                                                &indptr[0], 0, &y[0] if n else NULL,
                                                &sample_weight[0] if n else NULL,
                                                &order[0] if order.shape[0] else NULL, order.shape[0],
                                                &st, &p, &loss)
    finally:
        free(st.buf)
    return loss, bad
