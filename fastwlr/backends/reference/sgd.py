"""Reference SGD epochs: a plain per-sample Python loop in float64 (slow; the oracle).

Semantics: the kernel contract (docs/kernels.md, "SGD epochs"). Compiled epochs must match this
loop to rounding on the same data, order, state and params.
"""
import math

import numpy as np

from .._contract import (ADA_EPS, ADAGRAD, AUTO, CONSTANT, FTRL, INVSCALING, IWA, NORMALIZED, RESCALE_BELOW, SGD,
                         S_ACC_B, S_ACC_NORM, S_AVG_B, S_AVG_CLOCK, S_INTERCEPT, S_N_AVG, S_NORM_W, S_NORM_X,
                         S_SCALE, S_T, S_Z_B)


def _softplus(z):
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))


def _sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def iwa_step(z, label, h, k):
    """Scalar step G on z for an importance-weight-aware logistic update.

    Solves the ODE of h infinitesimal unit-weight steps with rate k = sum_j eta_j x_j^2:
    with s = 2 label - 1 and v = s z, dv/dh = k / (1 + e^v), i.e. v + e^v = v0 + e^v0 + h k
    (Karampatziakis & Langford 2011). We solve for delta = v - v0 >= 0 by Newton from the right
    on F(delta) = delta + e^v0 expm1(delta) - h k (convex, increasing: monotone convergence, no
    cancellation for tiny h k). Returns G such that z moves by -G k, i.e. G = -s delta / k;
    for small h k this is h (sigmoid(z) - label), the gradient step.
    """
    s = 2.0 * label - 1.0
    v0 = s * z
    a = h * k
    if a <= 0.0 or k <= 0.0:
        return 0.0
    if v0 > 30.0:
        # e^v0 > 1e13: delta ~ a sigma(-v0) to relative precision ~ a sigma(-v0)
        e = math.exp(-v0) if v0 < 745 else 0.0
        delta = a * e / (1.0 + e)
        return -s * delta / k
    e0 = math.exp(v0)   # v0 <= 30: no overflow; 0.0 below -745 (then e^v <= a: v <= log a)
    # upper bounds: dv/dh <= k gives delta <= a; e^v <= e^v0 + a gives delta <= log1p(a / e0)
    delta = min(a, math.log1p(a / e0) if e0 > 0.0 else math.log(a) - v0)
    for _ in range(100):
        ev = math.exp(v0 + delta)    # <= e0 + a: finite
        # e0 (e^delta - 1) without cancellation for small delta, without overflow for large
        f = delta + (e0 * math.expm1(delta) if delta < 1.0 else ev - e0) - a
        new = delta - f / (1.0 + ev)
        if new < 0.0:
            new = 0.0
        if not (new < delta) or delta - new <= 1e-15 * delta:
            delta = new
            break
        delta = new
    return -s * delta / k


def _eta_sgd(p, t):
    if p.schedule == CONSTANT:
        return p.eta0
    if p.schedule == INVSCALING:
        return p.eta0 / (1.0 + t) ** p.power_t
    # OPTIMAL: the last fixed schedule ("auto" is AdaGrad-Norm, whose rate the step computes itself)
    return p.eta0 / (1.0 + p.eta0 * p.l2 * t)


def _ftrl_w(zj, nj, p, t):
    l1 = p.l1 * t
    if abs(zj) <= l1:
        return 0.0
    return -(zj - math.copysign(l1, zj)) / ((p.ftrl_beta + math.sqrt(nj)) / p.ftrl_alpha + p.l2 * t)


def _geom(lr, i0, m):
    """sum_{i=i0}^{m} r^i with r = e^-lr in (0, 1]."""
    if m < i0:
        return 0.0
    if lr == 0.0:
        return float(m - i0 + 1)
    return math.exp(-i0 * lr) * math.expm1(-(m - i0 + 1) * lr) / math.expm1(-lr)


def _norm_multiplier(sc):
    """The normalized optimiser's global factor sqrt(sum h / sum h ||x / xmax||^2) (1 before any)."""
    return math.sqrt(sc[S_NORM_W] / sc[S_NORM_X]) if sc[S_NORM_X] > 0.0 else 1.0


def _norm_rate(eta0m, s, acc):
    """The normalized optimiser's rate of a coordinate of scale s, eta0m = eta0 x multiplier:
    AdaGrad's rate of the feature x / s, per unit of x^2 (eps relative to the scale: rate x^2 is
    free of the feature's units). 0 for a coordinate never seen (its scale is unknown)."""
    return eta0m / (s * (math.sqrt(acc) + ADA_EPS * s)) if s > 0.0 else 0.0


def _ada_catch_up(j, st, p, t, avg_on, eta=None):
    """Apply the L2 prox factors r = 1 / (1 + eta_j l2) (and averaging terms) of the steps
    last_j .. t-1 that skipped coordinate j (eta_j: AdaGrad's, or the given rate)."""
    m = int(t - st.last[j])
    if m <= 0:
        return
    last = st.last[j]
    st.last[j] = t
    c = st.coef[j]
    if c == 0.0:
        return
    lr = 0.0
    if p.l2 > 0.0:
        if eta is None:
            eta = p.eta0 / (math.sqrt(st.acc[j]) + ADA_EPS)
        lr = math.log1p(eta * p.l2)
    if avg_on:
        # steps s = last_j .. t-1 hold values c r^(s - last_j + 1); counted if s >= avg_start
        i0 = max(1, int(math.ceil(p.avg_start - last)) + 1)
        st.avg[j] += c * _geom(lr, i0, m)
    if lr > 0.0:
        st.coef[j] = c * math.exp(-m * lr)


def _sgd_catch_up(j, st):
    sc = st.scalars
    st.avg[j] += st.coef[j] * (sc[S_AVG_CLOCK] - st.last[j])
    st.last[j] = sc[S_AVG_CLOCK]


def _finish(st, p, avg_on):
    """Bring every coordinate up to date at the end of an epoch."""
    t = st.scalars[S_T]
    d = st.coef.shape[0]
    if p.optimizer == ADAGRAD:
        for j in range(d):
            _ada_catch_up(j, st, p, t, avg_on)
    elif p.optimizer == NORMALIZED:
        eta0m = p.eta0 * _norm_multiplier(st.scalars)
        for j in range(d):
            _ada_catch_up(j, st, p, t, avg_on, _norm_rate(eta0m, st.xmax[j], st.acc[j]))
    elif p.optimizer == FTRL:
        for j in range(d):
            st.coef[j] = _ftrl_w(st.zacc[j], st.acc[j], p, t)
    elif avg_on:
        for j in range(d):
            _sgd_catch_up(j, st)


def _epoch(rows, y, sample_weight, order, st, p):
    """rows(i) -> (cols int array, vals float64 array)."""
    sc = st.scalars
    avg_on = math.isfinite(p.avg_start) and st.avg.shape[0] > 0
    loss_sum = 0.0
    for pos in range(order.shape[0]):
        i = int(order[pos])
        h = float(sample_weight[i])
        label = float(y[i])
        cols, vals = rows(i)
        t = sc[S_T]
        # 1. lazy catch-up and 2. margin
        if p.optimizer == ADAGRAD:
            for j in cols:
                _ada_catch_up(j, st, p, t, avg_on)
        elif p.optimizer == NORMALIZED:
            # a step touches the nonzero x_j only (dense and CSR alike); the skipped steps'
            # L2 factors and averaging terms come at the rate of now
            eta0m = p.eta0 * _norm_multiplier(sc)
            for j, v in zip(cols, vals):
                if v != 0.0:
                    _ada_catch_up(j, st, p, t, avg_on, _norm_rate(eta0m, st.xmax[j], st.acc[j]))
        elif p.optimizer == FTRL:
            for j in cols:
                st.coef[j] = _ftrl_w(st.zacc[j], st.acc[j], p, t)
            if p.fit_intercept:
                sc[S_INTERCEPT] = -sc[S_Z_B] * p.ftrl_alpha / (p.ftrl_beta + math.sqrt(sc[S_ACC_B]))
        elif avg_on:
            for j in cols:
                _sgd_catch_up(j, st)
        dot = 0.0
        for j, v in zip(cols, vals):
            dot += v * st.coef[j]
        z = sc[S_SCALE] * dot + sc[S_INTERCEPT]
        if not math.isfinite(z):
            return loss_sum, pos
        loss_sum += h * (_softplus(z) - label * z)
        g = _sigmoid(z) - label
        # 3. rates, 4. scalar step G
        if p.optimizer == SGD:
            x2 = float(vals @ vals) + (1.0 if p.fit_intercept else 0.0)
            if p.schedule == AUTO:  # AdaGrad-Norm: one accumulator of squared gradient norms
                sc[S_ACC_NORM] += (h * g * g if p.weighting == IWA else (h * g) ** 2) * x2
                eta = p.eta0 / (math.sqrt(sc[S_ACC_NORM]) + ADA_EPS)
            else:
                eta = _eta_sgd(p, t)
            if p.weighting == IWA:
                k = eta * x2
                G = iwa_step(z, label, h, k)
            else:
                G = h * g
            inv_scale = 1.0 / sc[S_SCALE]
            for j, v in zip(cols, vals):
                st.coef[j] -= eta * G * v * inv_scale
            if p.fit_intercept:
                sc[S_INTERCEPT] -= eta * G
            sc[S_SCALE] /= 1.0 + eta * p.l2
            if sc[S_SCALE] < RESCALE_BELOW:
                if avg_on:
                    for j in range(st.coef.shape[0]):
                        _sgd_catch_up(j, st)
                st.coef *= sc[S_SCALE]
                sc[S_SCALE] = 1.0
        elif p.optimizer == ADAGRAD:
            q = h * g * g if p.weighting == IWA else (h * g) ** 2
            k = 0.0
            etas = np.empty(len(cols))
            for a, (j, v) in enumerate(zip(cols, vals)):
                st.acc[j] += q * v * v
                etas[a] = p.eta0 / (math.sqrt(st.acc[j]) + ADA_EPS)
                k += etas[a] * v * v
            eta_b = 0.0
            if p.fit_intercept:
                sc[S_ACC_B] += q
                eta_b = p.eta0 / (math.sqrt(sc[S_ACC_B]) + ADA_EPS)
                k += eta_b
            G = iwa_step(z, label, h, k) if p.weighting == IWA else h * g
            for a, (j, v) in enumerate(zip(cols, vals)):
                st.coef[j] = (st.coef[j] - etas[a] * G * v) / (1.0 + etas[a] * p.l2)
                st.last[j] = t + 1
            sc[S_INTERCEPT] -= eta_b * G
        elif p.optimizer == NORMALIZED:
            q = h * g * g if p.weighting == IWA else (h * g) ** 2
            nx = 0.0
            for j, v in zip(cols, vals):
                if v == 0.0:
                    continue
                st.acc[j] += q * v * v
                ax = abs(v)
                if ax > st.xmax[j]:
                    # a larger scale: shrink the weight as if this scale had been known (Vowpal
                    # Wabbit's rescaling; z above used the old weight)
                    if st.xmax[j] > 0.0:
                        st.coef[j] *= st.xmax[j] / ax
                    st.xmax[j] = ax
                nx += (v / st.xmax[j]) ** 2
            if p.fit_intercept:
                sc[S_ACC_B] += q
                nx += 1.0
            sc[S_NORM_W] += h
            sc[S_NORM_X] += h * nx
            eta0m = p.eta0 * _norm_multiplier(sc)
            k = 0.0
            etas = np.zeros(len(cols))
            for a, (j, v) in enumerate(zip(cols, vals)):
                if v != 0.0:
                    etas[a] = _norm_rate(eta0m, st.xmax[j], st.acc[j])
                    k += etas[a] * v * v
            eta_b = 0.0
            if p.fit_intercept:
                eta_b = eta0m / (math.sqrt(sc[S_ACC_B]) + ADA_EPS)
                k += eta_b
            G = iwa_step(z, label, h, k) if p.weighting == IWA else h * g
            for a, (j, v) in enumerate(zip(cols, vals)):
                if v != 0.0:
                    st.coef[j] = (st.coef[j] - etas[a] * G * v) / (1.0 + etas[a] * p.l2)
                    st.last[j] = t + 1
            sc[S_INTERCEPT] -= eta_b * G
        else:  # FTRL
            if p.weighting == IWA:
                q = h * g * g if p.weighting == IWA else (h * g) ** 2
                k = 0.0
                for j, v in zip(cols, vals):
                    k += p.ftrl_alpha / (p.ftrl_beta + math.sqrt(st.acc[j] + q * v * v)) * v * v
                if p.fit_intercept:
                    k += p.ftrl_alpha / (p.ftrl_beta + math.sqrt(sc[S_ACC_B] + q))
                G = iwa_step(z, label, h, k)
            else:
                q = (h * g) ** 2
                G = h * g
            # n grows by q x_j^2 (= g_j^2 for "gradient"; h g^2 x_j^2, as in k above, for "iwa")
            for j, v in zip(cols, vals):
                gj = G * v
                nj = st.acc[j]
                sigma = (math.sqrt(nj + q * v * v) - math.sqrt(nj)) / p.ftrl_alpha
                st.zacc[j] += gj - sigma * st.coef[j]
                st.acc[j] = nj + q * v * v
            if p.fit_intercept:
                nb = sc[S_ACC_B]
                sigma = (math.sqrt(nb + q) - math.sqrt(nb)) / p.ftrl_alpha
                sc[S_Z_B] += G - sigma * sc[S_INTERCEPT]
                sc[S_ACC_B] = nb + q
        # 6. step counter and averaging
        sc[S_T] = t + 1
        if avg_on and t + 1 > p.avg_start:
            if p.optimizer == SGD:
                sc[S_AVG_CLOCK] += sc[S_SCALE]
            else:  # AdaGrad, normalized: this step's value of the touched coordinates (others lazily)
                for j, v in zip(cols, vals):
                    if p.optimizer == ADAGRAD or v != 0.0:
                        st.avg[j] += st.coef[j]
            sc[S_AVG_B] += sc[S_INTERCEPT]
            sc[S_N_AVG] += 1.0
    _finish(st, p, avg_on)
    if p.optimizer == FTRL and p.fit_intercept:
        sc[S_INTERCEPT] = -sc[S_Z_B] * p.ftrl_alpha / (p.ftrl_beta + math.sqrt(sc[S_ACC_B]))
    return loss_sum, -1


def sgd_epoch_dense(X, y, sample_weight, order, state, params):
    d = X.shape[1]
    cols = np.arange(d)

    def rows(i):
        return cols, X[i].astype(np.float64)
    return _epoch(rows, y, sample_weight, order, state, params)


def sgd_epoch_csr(data, indices, indptr, y, sample_weight, order, state, params):
    def rows(i):
        a, b = int(indptr[i]), int(indptr[i + 1])
        return indices[a:b].astype(np.int64), data[a:b].astype(np.float64)
    return _epoch(rows, y, sample_weight, order, state, params)
