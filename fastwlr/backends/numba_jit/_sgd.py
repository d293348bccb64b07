"""SGD epochs compiled by Numba (contract: docs/kernels.md, "SGD epochs").

A line-by-line port of ``cython_core/_sgd.pyx`` (itself checked against the reference loop): one
generic step for dense and CSR rows, the same operation order (except the dense dot product,
reassociated: ``_jit.DOT_FASTMATH``), so with the same row order, state and params the trajectory
matches the Cython core's to rounding. An
epoch is sequential; a non-finite log-odds stops it and is returned as a position, never raised.

``params`` arrive packed in one float64 vector (``P_*`` positions below) so that a single compiled
signature serves every optimiser and weighting.
"""
import math

import numpy as np

from .._contract import (ADA_EPS, ADAGRAD, AUTO, CONSTANT, FTRL, INVSCALING, IWA, NORMALIZED, RESCALE_BELOW, SGD,
                         S_ACC_B, S_ACC_NORM, S_AVG_B, S_AVG_CLOCK, S_INTERCEPT, S_N_AVG, S_NORM_W, S_NORM_X,
                         S_SCALE, S_T, S_Z_B)
from ._jit import dot_csr, dot_dense, jit, sigmoid, softplus

# packed params (Numba freezes the contract's module globals above as compile-time constants)
(P_OPT, P_WEIGHTING, P_SCHEDULE, P_ETA0, P_POWER_T, P_L2, P_L1, P_ALPHA, P_BETA, P_AVG_START,
 P_FIT_INTERCEPT, P_AVG_ON) = range(12)
N_PARAMS = 12


@jit()
def iwa_step(z, label, h, k):
    # the reference backend's iwa_step, step for step: Newton from the right on
    # F(delta) = delta + e^v0 expm1(delta) - h k, from the smaller of the two upper bounds
    s = 2.0 * label - 1.0
    v0 = s * z
    a = h * k
    if a <= 0.0 or k <= 0.0:
        return 0.0
    if v0 > 30.0:
        e = math.exp(-v0) if v0 < 745.0 else 0.0
        delta = a * e / (1.0 + e)
        return -s * delta / k
    e0 = math.exp(v0)   # 0.0 when v0 < -745: then e^v <= a bounds delta by log(a) - v0
    delta = min(a, math.log1p(a / e0) if e0 > 0.0 else math.log(a) - v0)
    for _ in range(100):
        ev = math.exp(v0 + delta)
        f = delta + (e0 * math.expm1(delta) if delta < 1.0 else ev - e0) - a
        new = delta - f / (1.0 + ev)
        if new < 0.0:
            new = 0.0
        if not (new < delta) or delta - new <= 1e-15 * delta:
            delta = new
            break
        delta = new
    return -s * delta / k


@jit()
def _eta_sgd(schedule, eta0, power_t, l2, t):
    if schedule == CONSTANT:
        return eta0
    if schedule == INVSCALING:
        return eta0 / math.pow(1.0 + t, power_t)
    # OPTIMAL: the last fixed schedule ("auto" is AdaGrad-Norm, whose rate the step computes itself)
    return eta0 / (1.0 + eta0 * l2 * t)


@jit()
def _ftrl_w(zj, nj, l1, l2, alpha, beta, t):
    l1t = l1 * t
    if abs(zj) <= l1t:
        return 0.0
    return -(zj - math.copysign(l1t, zj)) / ((beta + math.sqrt(nj)) / alpha + l2 * t)


@jit()
def _geom(lr, i0, m):
    # sum_{i=i0}^{m} r^i with r = e^-lr in (0, 1]; expm1 keeps it exact for tiny lr
    if m < i0:
        return 0.0
    if lr == 0.0:
        return m - i0 + 1.0
    return math.exp(-i0 * lr) * math.expm1(-(m - i0 + 1.0) * lr) / math.expm1(-lr)


@jit()
def _ada_catch_up(cols, dense, nr, coef, acc, last, avg, eta0, l2, avg_on, avg_start, t):
    """Apply the L2 prox factors r = 1 / (1 + eta_j l2) (and averaging terms) of the steps
    last_j .. t-1 that skipped each coordinate of one row (``dense``: 0 .. nr-1), in the log form
    of cython_core's ada_catch_up. One call a row, not a coordinate: a call passes and
    reference-counts every array argument, which cost more than the work per coordinate."""
    for q in range(nr):
        j = q if dense else cols[q]
        m = t - last[j]
        if m <= 0:
            continue
        last[j] = t
        c = coef[j]
        if c == 0.0:  # a zero coefficient stays zero and adds nothing to the average
            continue
        lr = 0.0
        if l2 > 0.0:
            lr = math.log1p(eta0 / (math.sqrt(acc[j]) + ADA_EPS) * l2)
        if avg_on:
            # steps s = last_j .. t-1 hold c r^(s - last_j + 1); they count if s >= avg_start
            i0 = math.ceil(avg_start - (t - m)) + 1.0
            if i0 < 1.0:
                i0 = 1.0
            avg[j] += c * _geom(lr, i0, m)
        if lr > 0.0:
            coef[j] = c * math.exp(-m * lr)


@jit()
def _norm_multiplier(sc):
    # the reference's _norm_multiplier: sqrt(sum h / sum h ||x / xmax||^2), 1 before any step
    return math.sqrt(sc[S_NORM_W] / sc[S_NORM_X]) if sc[S_NORM_X] > 0.0 else 1.0


@jit()
def _norm_rate(eta0m, s, acc):
    # the reference's _norm_rate: 0 for a coordinate never seen
    return eta0m / (s * (math.sqrt(acc) + ADA_EPS * s)) if s > 0.0 else 0.0


@jit()
def _norm_catch_up(j, eta, coef, last, avg, l2, avg_on, avg_start, t):
    """The reference's _ada_catch_up at a given rate eta (the normalized optimiser's)."""
    m = t - last[j]
    if m <= 0:
        return
    last[j] = t
    c = coef[j]
    if c == 0.0:
        return
    lr = 0.0
    if l2 > 0.0:
        lr = math.log1p(eta * l2)
    if avg_on:
        i0 = math.ceil(avg_start - (t - m)) + 1.0
        if i0 < 1.0:
            i0 = 1.0
        avg[j] += c * _geom(lr, i0, m)
    if lr > 0.0:
        coef[j] = c * math.exp(-m * lr)


@jit()
def run_epoch(rows, samples, state, prm):
    """One epoch; returns (loss_sum, -1 or the position where z became non-finite).

    rows = (data, cols_all, indptr, dense, d), samples = (y, sample_weight, order),
    state = (coef, acc, zacc, last, avg, scalars, xmax), prm = the packed params (``P_*``).

    Dense rows: ``data`` is X flattened, row i at ``i * d``, column q is coordinate q. CSR rows:
    ``data[indptr[i]:indptr[i + 1]]`` at coordinates ``cols_all[...]``.
    """
    data, cols_all, indptr, dense, d = rows
    y, sw, order = samples
    coef, acc, zacc, last, avg, sc, xmax = state
    opt = int(prm[P_OPT])
    weighting = int(prm[P_WEIGHTING])
    schedule = int(prm[P_SCHEDULE])
    eta0 = prm[P_ETA0]
    power_t = prm[P_POWER_T]
    l2 = prm[P_L2]
    l1 = prm[P_L1]
    alpha = prm[P_ALPHA]
    beta = prm[P_BETA]
    avg_start = prm[P_AVG_START]
    fit_intercept = prm[P_FIT_INTERCEPT] != 0.0
    avg_on = prm[P_AVG_ON] != 0.0
    ncoef = coef.shape[0]
    if dense:
        maxnr = d
    else:
        maxnr = 0
        for i in range(indptr.shape[0] - 1):
            maxnr = max(maxnr, indptr[i + 1] - indptr[i])
    buf = np.empty(maxnr + 1)  # AdaGrad's per-row rates
    loss_sum = 0.0
    for pos in range(order.shape[0]):
        i = order[pos]
        h = sw[i]
        label = y[i]
        if dense:
            base = i * d
            nr = d
        else:
            base = indptr[i]
            nr = indptr[i + 1] - base
        # row views: indices from range() are provably >= 0, so no wraparound checks in the loops
        x = data[base:base + nr]
        cols = cols_all[0:0] if dense else cols_all[base:base + nr]
        t = sc[S_T]
        # 1. lazy catch-up and 2. margin
        if opt == ADAGRAD:
            if l2 > 0 or avg_on:
                _ada_catch_up(cols, dense, nr, coef, acc, last, avg, eta0, l2, avg_on, avg_start, t)
        elif opt == NORMALIZED:
            if l2 > 0 or avg_on:
                eta0m = eta0 * _norm_multiplier(sc)
                for q in range(nr):
                    if x[q] != 0:
                        j = q if dense else cols[q]
                        _norm_catch_up(j, _norm_rate(eta0m, xmax[j], acc[j]), coef, last, avg, l2,
                                       avg_on, avg_start, t)
        elif opt == FTRL:
            for q in range(nr):
                j = q if dense else cols[q]
                coef[j] = _ftrl_w(zacc[j], acc[j], l1, l2, alpha, beta, t)
            if fit_intercept:
                sc[S_INTERCEPT] = -sc[S_Z_B] * alpha / (beta + math.sqrt(sc[S_ACC_B]))
        elif avg_on:
            for q in range(nr):
                j = q if dense else cols[q]
                avg[j] += coef[j] * (sc[S_AVG_CLOCK] - last[j])
                last[j] = sc[S_AVG_CLOCK]
        if dense:
            z = dot_dense(x, coef, nr)
        else:
            z = dot_csr(x, cols, coef)
        z = sc[S_SCALE] * z + sc[S_INTERCEPT]
        if not math.isfinite(z):
            return loss_sum, pos
        loss_sum += h * (softplus(z) - label * z)
        g = sigmoid(z) - label
        # 3. rates, 4. the scalar step G, 5. update
        if opt == SGD:
            x2 = 0.0
            if schedule == AUTO or weighting == IWA:
                for q in range(nr):
                    x2 += np.float64(x[q]) * np.float64(x[q])
                x2 += 1.0 if fit_intercept else 0.0
            if schedule == AUTO:  # AdaGrad-Norm: one accumulator of squared gradient norms
                sc[S_ACC_NORM] += (h * g * g if weighting == IWA else (h * g) * (h * g)) * x2
                eta = eta0 / (math.sqrt(sc[S_ACC_NORM]) + ADA_EPS)
            else:
                eta = _eta_sgd(schedule, eta0, power_t, l2, t)
            if weighting == IWA:
                G = iwa_step(z, label, h, eta * x2)
            else:
                G = h * g
            inv_scale = 1.0 / sc[S_SCALE]
            v = eta * G * inv_scale
            for q in range(nr):
                j = q if dense else cols[q]
                coef[j] -= v * np.float64(x[q])
            if fit_intercept:
                sc[S_INTERCEPT] -= eta * G
            sc[S_SCALE] /= 1.0 + eta * l2
            if sc[S_SCALE] < RESCALE_BELOW:
                if avg_on:
                    for j in range(ncoef):
                        avg[j] += coef[j] * (sc[S_AVG_CLOCK] - last[j])
                        last[j] = sc[S_AVG_CLOCK]
                for j in range(ncoef):
                    coef[j] *= sc[S_SCALE]
                sc[S_SCALE] = 1.0
        elif opt == ADAGRAD:
            qq = h * g * g if weighting == IWA else (h * g) * (h * g)
            k = 0.0
            for q in range(nr):
                j = q if dense else cols[q]
                xv = np.float64(x[q])
                x2 = xv * xv
                acc[j] += qq * x2
                buf[q] = eta0 / (math.sqrt(acc[j]) + ADA_EPS)
                k += buf[q] * x2
            eta_b = 0.0
            if fit_intercept:
                sc[S_ACC_B] += qq
                eta_b = eta0 / (math.sqrt(sc[S_ACC_B]) + ADA_EPS)
                k += eta_b
            G = iwa_step(z, label, h, k) if weighting == IWA else h * g
            for q in range(nr):
                j = q if dense else cols[q]
                coef[j] = (coef[j] - buf[q] * G * np.float64(x[q])) / (1.0 + buf[q] * l2)
                last[j] = t + 1
            sc[S_INTERCEPT] -= eta_b * G
        elif opt == NORMALIZED:
            qq = h * g * g if weighting == IWA else (h * g) * (h * g)
            nx = 0.0
            for q in range(nr):
                xv = np.float64(x[q])
                if xv == 0.0:
                    continue
                j = q if dense else cols[q]
                acc[j] += qq * (xv * xv)
                ax = abs(xv)
                if ax > xmax[j]:
                    if xmax[j] > 0.0:
                        coef[j] *= xmax[j] / ax
                    xmax[j] = ax
                r = xv / xmax[j]
                nx += r * r
            if fit_intercept:
                sc[S_ACC_B] += qq
                nx += 1.0
            sc[S_NORM_W] += h
            sc[S_NORM_X] += h * nx
            eta0m = eta0 * _norm_multiplier(sc)
            k = 0.0
            for q in range(nr):
                xv = np.float64(x[q])
                buf[q] = 0.0
                if xv != 0.0:
                    j = q if dense else cols[q]
                    buf[q] = _norm_rate(eta0m, xmax[j], acc[j])
                    k += buf[q] * (xv * xv)
            eta_b = 0.0
            if fit_intercept:
                eta_b = eta0m / (math.sqrt(sc[S_ACC_B]) + ADA_EPS)
                k += eta_b
            G = iwa_step(z, label, h, k) if weighting == IWA else h * g
            for q in range(nr):
                xv = np.float64(x[q])
                if xv != 0.0:
                    j = q if dense else cols[q]
                    coef[j] = (coef[j] - buf[q] * G * xv) / (1.0 + buf[q] * l2)
                    last[j] = t + 1
            sc[S_INTERCEPT] -= eta_b * G
        else:  # FTRL-Proximal
            if weighting == IWA:
                qq = h * g * g
                k = 0.0
                for q in range(nr):
                    j = q if dense else cols[q]
                    xv = np.float64(x[q])
                    x2 = xv * xv
                    k += alpha / (beta + math.sqrt(acc[j] + qq * x2)) * x2
                if fit_intercept:
                    k += alpha / (beta + math.sqrt(sc[S_ACC_B] + qq))
                G = iwa_step(z, label, h, k)
            else:
                qq = (h * g) * (h * g)
                G = h * g
            for q in range(nr):
                j = q if dense else cols[q]
                xv = np.float64(x[q])
                x2 = xv * xv
                gj = G * xv
                nj = acc[j]
                sigma = (math.sqrt(nj + qq * x2) - math.sqrt(nj)) / alpha
                zacc[j] += gj - sigma * coef[j]
                acc[j] = nj + qq * x2
            if fit_intercept:
                nb = sc[S_ACC_B]
                sigma = (math.sqrt(nb + qq) - math.sqrt(nb)) / alpha
                sc[S_Z_B] += G - sigma * sc[S_INTERCEPT]
                sc[S_ACC_B] = nb + qq
        # 6. step counter and averaging
        sc[S_T] = t + 1
        if avg_on and t + 1 > avg_start:
            if opt == SGD:
                sc[S_AVG_CLOCK] += sc[S_SCALE]
            else:  # AdaGrad, normalized: the touched coordinates (others lazily)
                for q in range(nr):
                    if opt == ADAGRAD or x[q] != 0:
                        j = q if dense else cols[q]
                        avg[j] += coef[j]
            sc[S_AVG_B] += sc[S_INTERCEPT]
            sc[S_N_AVG] += 1.0
    # bring every coordinate up to date
    t = sc[S_T]
    if opt == ADAGRAD:
        _ada_catch_up(cols_all[0:0], True, ncoef, coef, acc, last, avg, eta0, l2, avg_on, avg_start, t)
    elif opt == NORMALIZED:
        eta0m = eta0 * _norm_multiplier(sc)
        for j in range(ncoef):
            _norm_catch_up(j, _norm_rate(eta0m, xmax[j], acc[j]), coef, last, avg, l2, avg_on, avg_start, t)
    elif opt == FTRL:
        for j in range(ncoef):
            coef[j] = _ftrl_w(zacc[j], acc[j], l1, l2, alpha, beta, t)
        if fit_intercept:
            sc[S_INTERCEPT] = -sc[S_Z_B] * alpha / (beta + math.sqrt(sc[S_ACC_B]))
    elif avg_on:
        for j in range(ncoef):
            avg[j] += coef[j] * (sc[S_AVG_CLOCK] - last[j])
            last[j] = sc[S_AVG_CLOCK]
    return loss_sum, -1
