"""The kernel adapter: the only module that calls a backend.

Callers (``scoring``, ``topk``, the solvers) hand it validated objects: ``Features`` from
``fastwlr._validation``, float64 coefficients, an ``SGDState``. It does the dense/CSR dispatch,
passes the output dtype, and turns what kernels report (counts of non-finite log-odds, the row of
a NaN, a position where SGD diverged) into exceptions with advice. Backends are leaves: they see
plain arrays and the names of ``fastwlr.backends._contract`` (docs/kernels.md), never this layer.

A ``Kernels`` is resolved once per public call or fit: the backend (a name, None for the current
setting) and the thread count (None: the idle cores, counted at each call; -1: all cores).
"""
from dataclasses import replace

import numpy as np

from ._config import current_backend, default_n_threads, get_backend, note_call_end, resolve_n_threads

FLOAT_DTYPES = (np.float32, np.float64)
# Partial gradients of a CSR scatter beyond this many bytes in all, or one partial beyond
# PARTIAL_ABOVE_BYTES: X^T pays (``with_transpose``). This machine's L3 is 32 MB. Newton-cg fits on two
# cores, hashed x 40 non-zeros a row: 2^19 columns (4 MB partials) 1.8-2.0 s by the scatter, 2.4 s
# with X^T; 2^20 columns (8 MB) 4.6-8.3 s by the scatter, 3.5-3.7 s with X^T.
TRANSPOSE_ABOVE_BYTES = 32 << 20
PARTIAL_ABOVE_BYTES = 4 << 20
NAN, INF = 1, 2   # bits of nonfinite_flags
_shared = {}        # Kernels.of's: a handful of (backend setting, n_threads) keys in a process


class Kernels:
    """One backend and one thread count, resolved."""

    __slots__ = ("backend", "_n_threads", "_place")

    def __init__(self, backend=None, n_threads=None):
        self.backend = get_backend(backend)
        # the compiled core's worker placement (None: another backend, or not available)
        self._place = _placement() if self.backend.name == "cython" else None
        # None stays None: the idle cores are counted again at each kernel call (a Scorer or a
        # fit lives through changes of load); an explicit count is resolved (and checked) once
        self._n_threads = None if n_threads is None else resolve_n_threads(n_threads)

    @classmethod
    def of(cls, backend=None, n_threads=None):
        """``Kernels(backend, n_threads)``, shared between calls with the same arguments and the same
        backend setting: per-call entry points (``score``, ``topk``, ``predict``) would otherwise
        spend a third of a one-row call resolving them. Anything unusual is resolved afresh."""
        if (backend is None or type(backend) is str) and (n_threads is None or type(n_threads) is int):
            key = (current_backend() if backend is None else backend, n_threads)
            found = _shared.get(key)
            if found is None:
                found = cls(backend, n_threads)   # raises as Kernels() does for bad arguments
                if len(_shared) >= 64:            # a caller cycling through thread counts
                    _shared.clear()
                _shared[key] = found
            return found
        return cls(backend, n_threads)

    @property
    def n_threads(self):
        """The caller's count, resolved, or None (the rule of ``default_n_threads``, call by call)."""
        return self._n_threads

    def _threads(self, work):
        """Threads for a kernel call of ``work`` element operations (``_threads_for``). The call's
        end is reported to ``_ended``."""
        return _threads_for(self._n_threads, work, self._place)

    def _ended(self, n_threads):
        _call_ended(n_threads, self._place)

    def _run(self, work, call):
        """``call(n_threads)`` on the threads for ``work``, its end noted: the thread rule watches
        for workers still awake and for loops of calls."""
        nt = self._threads(work)
        try:
            return call(nt)
        finally:
            self._ended(nt)

    @property
    def name(self):
        return self.backend.name

    # ------------------------------------------------------------------------------ scoring
    def score(self, features, coef, intercept, output, out):
        """Fill ``out`` with ``output`` of Xw + b. X may hold unchecked inf (``check_features(...,
        defer_inf_check=True)``): a backend that counts non-finite log-odds lets us look for inf
        only when it saw one, which saves a second full read of X."""
        counts = getattr(self.backend, "SCORE_COUNTS_NONFINITE", False)
        if not counts:
            check_no_inf(features, self.n_threads)
        if features.is_sparse:
            n_nonfinite = self._run(_work(features), lambda nt: self.backend.score_csr(
                features.data, features.indices, features.indptr, coef, intercept, output, out, nt))
        else:
            n_nonfinite = self._run(_work(features), lambda nt: self.backend.score_dense(
                features.X, coef, intercept, output, out, nt))
        if counts and n_nonfinite:  # NaN features or an overflowing sum land here too: look for inf
            check_no_inf(features, self.n_threads)
        if n_nonfinite or not counts:
            # a NaN score is a NaN feature's (allowed through) or an overflow's (inf - inf): name the latter
            nan_rows = np.flatnonzero(np.isnan(out))
            if nan_rows.shape[0]:
                check_nan_log_odds_from_features(features, nan_rows)
        return out

    def dense_scorer(self, coef, intercept, output, out_dtype):
        """The backend's compiled scorer of a prepared model (``Scorer``), or None if it has none:
        ``f(X)`` returns the scores of a C-contiguous native float ndarray of coef's width, exactly
        as ``score`` would, and None for any other X or when a log-odds is not finite (the caller
        then takes the full path, which checks and reports); ``f.topk(X, k)`` likewise what
        ``score_topk_fast`` would for one request. Threads as ``_threads``."""
        make = getattr(self.backend, "dense_scorer", None)
        if make is None:
            return None
        return make(coef, intercept, output, out_dtype, self._threads, self._ended)

    def score_fast(self, X, coef, intercept, output):
        """``score(X, coef, intercept, output=output)`` by the backend's compiled path for the
        common case (X a C-contiguous native float ndarray, coef a finite float64 vector of its
        width, a finite float intercept), or None: for anything else, for a non-finite log-odds,
        and when the backend has no such path (the caller then takes the full path)."""
        fast = getattr(self.backend, "score_fast", None)
        return None if fast is None else fast(X, coef, intercept, output, self._threads, self._ended)

    # -------------------------------------------------------------------------------- top-k
    def topk(self, scores, offsets, k):
        indices, values, nan_at = self._run(scores.shape[0], lambda nt: self.backend.topk(scores, offsets, k, nt))
        if nan_at >= 0:
            raise ValueError(f"scores[{nan_at}] is NaN; top-k needs comparable scores (drop or fill NaN first)")
        return indices, values

    def score_topk_fast(self, X, coef, intercept, k, output):
        """``score_topk`` of one request (no offsets, no exclude) by the backend's compiled path for
        the common case (as ``score_fast``), or None (the caller then takes the full path)."""
        fast = getattr(self.backend, "score_topk_fast", None)
        return None if fast is None else fast(X, coef, intercept, k, output, self._threads, self._ended)

    def score_topk(self, features, coef, intercept, offsets, k, output, exclude, out_dtype):
        if features.is_sparse:
            indices, values, nan_row, n_inf = self._run(_work(features), lambda nt: self.backend.score_topk_csr(
                features.data, features.indices, features.indptr, coef, intercept, offsets, k, output,
                exclude, out_dtype, nt))
        else:
            indices, values, nan_row, n_inf = self._run(_work(features), lambda nt: self.backend.score_topk_dense(
                features.X, coef, intercept, offsets, k, output, exclude, out_dtype, nt))
        check_nonfinite_log_odds(features, nan_row, n_inf > 0)
        return indices, values

    # ---------------------------------------------------------------------------- objective
    def with_transpose(self, features):
        """``features`` with X^T (CSR) attached when the backend's CSR passes can use it and it pays,
        else ``features`` itself. For solvers that read X tens of times (newton-cg): each gradient,
        curvature or Hessian-vector pass then forms X^T r one column at a time, in parallel and
        without private partial gradients. Those partials are what it saves: one per block of rows,
        each of d doubles to zero, scatter into and sum. Past TRANSPOSE_ABOVE_BYTES in all, or
        PARTIAL_ABOVE_BYTES each, they no longer stay in cache (1M x 2^20 x 40, two threads: a
        Hessian-vector product 96-116 -> 49 ms), and with a single block the scatter is serial.
        Costs a copy of X's non-zeros, and a counting sort to build it (0.25 s for 40M non-zeros on
        two threads)."""
        plan = getattr(self.backend, "csr_scatter_blocks", None)
        build = getattr(self.backend, "transpose_csr", None)
        if plan is None or build is None or not features.is_sparse or features.transpose is not None:
            return features
        n, d, nnz = features.n_rows, features.n_features, features.data.shape[0]
        k = plan(n, d, nnz)
        partials_fit = k * d * 8 <= TRANSPOSE_ABOVE_BYTES and d * 8 <= PARTIAL_ABOVE_BYTES
        if partials_fit and (k > 1 or self._n_threads == 1):
            return features
        if max(n, nnz) > np.iinfo(features.indices.dtype).max:  # X^T's indices and indptr in X's index type
            return features
        transpose = self._run(_work(features), lambda nt: build(features.data, features.indices, features.indptr,
                                                                  d, nt))
        return replace(features, transpose=transpose)

    def _transpose(self, features):
        return {} if features.transpose is None else {"transpose": features.transpose}

    def objective_grad(self, features, y, sample_weight, coef, intercept, l2):
        """(loss, grad_coef, grad_intercept) of (1/n) sum_i w_i l_i + (l2/2) ||coef||^2."""
        if features.is_sparse:
            return self._run(_work(features), lambda nt: self.backend.objective_grad_csr(
                features.data, features.indices, features.indptr, features.n_features, y, sample_weight, coef,
                intercept, l2, nt, **self._transpose(features)))
        return self._run(_work(features), lambda nt: self.backend.objective_grad_dense(
            features.X, y, sample_weight, coef, intercept, l2, nt))

    def objective_grad_colsq(self, features, y, sample_weight, coef, intercept, l2):
        """``objective_grad`` plus sum_i w_i x_ij^2 per column from the same pass, or None when the
        backend has no such fused kernel (optional; dense only)."""
        fused = None if features.is_sparse else getattr(self.backend, "objective_grad_colsq_dense", None)
        if fused is None:
            return None
        return self._run(_work(features), lambda nt: fused(features.X, y, sample_weight, coef, intercept, l2, nt))

    def objective_grad_hess(self, features, y, sample_weight, coef, intercept, l2, want_sq=False):
        """``objective_grad`` plus the Hessian of the data term (1/n) sum_i w_i l_i with respect to
        (coef, intercept): float64 (d+1, d+1), symmetric, the intercept last, without the penalty
        (the caller adds l2 to the coefficients' diagonal). And, if ``want_sq`` (dense only), sum_i
        w_i x_ij^2 per column from the same pass (else None). -> (loss, grad, grad_b, hessian, colsq).

        Dense: the backend's one-pass kernel (``objective_grad_hess_dense``, optional; the compiled
        core has it), else numpy over row blocks of X~^T (D X~) in a fixed order. CSR: the compiled
        loss and gradient, then X~^T D X~ with scipy.sparse."""
        if not features.is_sparse:
            kernel = getattr(self.backend, "objective_grad_hess_dense", None)
            if kernel is not None:
                # threads by the elements read, as the other passes: counted in multiply-adds
                # (d/2 times more) 12k x 67 ran on both cores of a busy VM, 3x slower than on one
                return self._run(_work(features), lambda nt: kernel(
                    features.X, y, sample_weight, coef, intercept, l2, nt, bool(want_sq)))
        loss, grad, grad_b = self.objective_grad(features, y, sample_weight, coef, intercept, l2)
        z = np.empty(features.n_rows)
        self.score(features, coef, intercept, "log_odds", z)
        e = np.exp(-np.abs(z))
        inv = 1.0 / (1.0 + e)
        s = sample_weight * (e * inv) * inv  # w p (1 - p), as the compiled kernel computes it
        return (loss, grad, grad_b) + _hessian_numpy(features, sample_weight, s, want_sq)

    def curvature(self, features, sample_weight, coef, intercept):
        """(s, diag) at (coef, intercept): s_i = w_i p_i (1 - p_i), float64 (n,), and
        sum_i s_i x_ij^2 per column, float64 (d,) (unnormalised: the Hessian of sum_i w_i l_i is
        X~^T diag(s) X~). The backend's CSR kernel, else scoring and numpy/scipy."""
        if features.is_sparse:
            kernel = getattr(self.backend, "curvature_csr", None)
            if kernel is not None:
                return self._run(_work(features), lambda nt: kernel(
                    features.data, features.indices, features.indptr, features.n_features, sample_weight, coef,
                    intercept, nt, **self._transpose(features)))
        z = np.empty(features.n_rows)
        self.score(features, coef, intercept, "log_odds", z)
        e = np.exp(-np.abs(z))
        inv = 1.0 / (1.0 + e)
        s = sample_weight * (e * inv) * inv  # as the compiled kernels compute it
        if features.is_sparse:
            diag = _column_sq_csr_numpy(features, s)
        else:
            diag = np.zeros(features.n_features)
            block = 1 << 15
            for start in range(0, features.n_rows, block):
                Xb = features.X[start:start + block].astype(np.float64)
                diag += s[start:start + block] @ (Xb * Xb)
        return s, diag

    def objective_grad_curvature(self, features, y, sample_weight, coef, intercept, l2):
        """``objective_grad`` and, from the same passes, the curvature weights s_i = w_i p_i (1 - p_i)
        at that point (as ``curvature``'s), float64 (n,), and their column sums sum_i s_i x_ij^2
        (``curvature``'s diagonal, float64 (d,)); s and the sums are None where the backend has no such pass
        (dense X; a backend without ``column_sq_csr``, whose presence says that its
        objective_grad_csr fills ``curvature_out`` and ``diag_out``). -> (loss, grad, grad_b, s, diag)"""
        if not features.is_sparse or getattr(self.backend, "column_sq_csr", None) is None:
            return self.objective_grad(features, y, sample_weight, coef, intercept, l2) + (None, None)
        s = np.empty(features.n_rows)
        diag = np.empty(features.n_features)
        loss, grad, grad_b = self._run(_work(features), lambda nt: self.backend.objective_grad_csr(
            features.data, features.indices, features.indptr, features.n_features, y, sample_weight, coef,
            intercept, l2, nt, curvature_out=s, diag_out=diag, **self._transpose(features)))
        return loss, grad, grad_b, s, diag

    def hessian_vector(self, features, s, v, v_b):
        """(X^T u, sum_i u_i), u = s * (X v + v_b): X~^T diag(s) X~ times (v, v_b), unnormalised."""
        if features.is_sparse:
            kernel = getattr(self.backend, "hessvec_csr", None)
            if kernel is not None:
                v = np.ascontiguousarray(v, dtype=np.float64)
                return self._run(_work(features), lambda nt: kernel(
                    features.data, features.indices, features.indptr, features.n_features, s, v, float(v_b), nt,
                    **self._transpose(features)))
        t = np.empty(features.n_rows)
        self.score(features, np.ascontiguousarray(v, dtype=np.float64), float(v_b), "log_odds", t)
        u = s * t
        if features.is_sparse:
            import scipy.sparse as sp
            X = sp.csr_array((features.data, features.indices, features.indptr),
                             shape=(features.n_rows, features.n_features))
            return np.asarray(X.T @ u, dtype=np.float64), float(u.sum())
        return np.asarray(features.X.T @ u, dtype=np.float64), float(u.sum())

    def weighted_column_sq(self, features, sample_weight, row_step=1):
        """sum_i w_i x_ij^2 over the rows of X[::row_step] (dense), float64 (d,). The backend's kernel
        reads the sampled rows in place; numpy works through them in blocks otherwise."""
        X = features.X
        kernel = getattr(self.backend, "weighted_column_sq_dense", None)
        with np.errstate(over="ignore", invalid="ignore"):  # |x| too large: the caller copes
            if kernel is not None:
                return self._run(X.shape[0] // row_step * (X.shape[1] + 1),
                                 lambda nt: kernel(X, sample_weight, nt, row_step))
            X, w = X[::row_step], sample_weight[::row_step]  # views
            sq = np.zeros(X.shape[1])
            block = 1 << 15  # rows at a time: a float64 temporary of at most 32k x d
            for start in range(0, X.shape[0], block):
                Xb = X[start:start + block].astype(np.float64)
                sq += w[start:start + block] @ (Xb * Xb)
            return sq

    # ---------------------------------------------------------------------------------- SGD
    def sgd_epoch(self, features, y, sample_weight, order, state, params):
        """One epoch over the rows ``order`` (from the driver: int64 in [0, n)). -> (loss_sum,
        diverged_at). The state's arrays are checked here in O(1); X, y and the weights were
        validated once per fit, so the kernels do not look at them again."""
        state.check(features.n_features, params)
        if features.is_sparse:
            return self.backend.sgd_epoch_csr(features.data, features.indices, features.indptr, y,
                                              sample_weight, order, state, params)
        return self.backend.sgd_epoch_dense(features.X, y, sample_weight, order, state, params)


def _hessian_numpy(features, sample_weight, s, want_sq):
    """(X~^T diag(s) X~ / n as a dense (d+1, d+1) float64 array, sum_i w_i x_ij^2 or None), X~ = (X, 1)."""
    n, d = features.n_rows, features.n_features
    H = np.zeros((d + 1, d + 1))
    sq = None
    if features.is_sparse:
        import scipy.sparse as sp
        X = sp.csr_array((features.data.astype(np.float64, copy=False), features.indices, features.indptr),
                         shape=(n, d))
        # Row blocks: (D X_b)^T, sparse, times X_b made dense: nnz * d multiply-adds and a block of
        # at most 2^21 float64. scipy's sparse X^T (D X) took 4 s per pass on freMTPL2 one-hot (678k x 43),
        # this ~0.1 s: a sparse-sparse product allocates and sorts its result.
        block = max(1, (1 << 21) // max(d, 1))
        for start in range(0, n, block):
            Xb = X[start:start + block]
            Xs = sp.csr_array((Xb.data * np.repeat(s[start:start + block], np.diff(Xb.indptr)), Xb.indices,
                               Xb.indptr), shape=Xb.shape)
            H[:d, :d] += Xs.T @ Xb.toarray()
            H[:d, d] += Xs.sum(axis=0)
    else:
        sq = np.zeros(d) if want_sq else None
        block = 1 << 14  # rows at a time: two float64 temporaries of at most 16k x d
        for start in range(0, n, block):
            Xb = features.X[start:start + block].astype(np.float64)
            Xs = Xb * s[start:start + block, None]
            H[:d, :d] += Xs.T @ Xb
            H[:d, d] += Xs.sum(axis=0)
            if want_sq:
                sq += sample_weight[start:start + block] @ (Xb * Xb)
    H[d, :d] = H[:d, d]
    H[d, d] = float(s.sum())
    H /= max(n, 1)
    H[:d, :d] = 0.5 * (H[:d, :d] + H[:d, :d].T)  # exactly symmetric
    return H, sq


# A stored entry of a CSR row counts as several dense elements: its coefficient is a gather, a
# cache miss once coef outgrows L2 (1M x 2^20 x 40 scored at ~6 ns an entry on one thread, dense
# float32 rows at ~0.15 ns an element). 4 keeps the count an underestimate.
SPARSE_ENTRY_WORK = 4


def _column_sq_csr_numpy(features, s):
    data = features.data.astype(np.float64)
    return np.bincount(features.indices, weights=data * data * np.repeat(s, np.diff(features.indptr)),
                       minlength=features.n_features).astype(np.float64)


def _work(features):
    """Element operations of one pass over the features (what decides whether threads pay)."""
    if features.is_sparse:
        return SPARSE_ENTRY_WORK * (features.data.shape[0] + features.n_rows)
    return features.n_rows * (features.n_features + 1)


# ------------------------------------------------------------------------------------------------
# The non-finite scan. A helper of validation, not a backend choice: the compiled scan (one read,
# all cores, no n-byte bool temporary: 1M x 64 float32 44 -> 12 ms on 2 cores) is used whichever
# backend runs the kernels, because the answer is the same; numpy answers without it.

_flags_kernel = []  # [the compiled scan, or None]: looked up once
_workers = []       # [the compiled core's worker placement, or None]: looked up once


def _placement():
    """``fastwlr.backends.cython_core._workers`` where it works here (Linux, OpenMP), else None."""
    if not _workers:
        try:
            from .backends.cython_core import _workers as module
        except ImportError:
            module = None
        _workers.append(module if module is not None and module.AVAILABLE else None)
    return _workers[0]


def _threads_for(n_threads, work, place):
    """Threads for a compiled call of ``work`` element operations: ``n_threads`` if the caller
    gave a count (resolved), else ``default_n_threads``'s rule. ``place``: the worker placement
    (``_placement()``, or None for a backend whose workers it does not steer); several threads are
    steered off the caller's core."""
    n = default_n_threads(work, place is not None) if n_threads is None else n_threads
    if n > 1 and place is not None:
        place.steer(n)
    return n


def _call_ended(n_threads, place):
    """A compiled call on ``n_threads`` ended: the thread rule notes it; the workers' ids are
    learnt while they are awake."""
    note_call_end(n_threads)
    if n_threads > 1 and place is not None:
        place.record(n_threads)


def nonfinite_flags(arr, inf_only=False, n_threads=1):
    """NAN | INF: which kinds of non-finite values ``arr`` holds (0: none, or empty).
    ``inf_only``: the numpy fallback need not look for NaN. ``n_threads`` as the caller's."""
    if arr.size == 0:
        return 0
    if not _flags_kernel:
        try:
            from .backends.cython_core._checks import nonfinite_flags as kernel
        except ImportError:  # not built: numpy below (the backend loader reports why, if it matters)
            kernel = None
        _flags_kernel.append(kernel)
    kernel = _flags_kernel[0]
    if kernel is not None and arr.dtype in FLOAT_DTYPES and arr.dtype.isnative and arr.flags.c_contiguous:
        place = _placement()
        nt = _threads_for(None if n_threads is None else resolve_n_threads(n_threads), arr.size, place)
        try:
            return kernel(arr.reshape(-1), nt)
        finally:
            _call_ended(nt, place)
    if inf_only:
        return INF if np.isinf(arr).any() else 0
    if np.isfinite(arr).all():
        return 0
    return (NAN if np.isnan(arr).any() else 0) | (INF if np.isinf(arr).any() else 0)


def any_inf(arr, n_threads=1):
    return bool(nonfinite_flags(arr, inf_only=True, n_threads=n_threads) & INF)


def check_no_inf(features, n_threads=None, name="X"):
    """The inf check that ``check_features(..., defer_inf_check=True)`` skipped (dense or CSR)."""
    values = features.data if features.is_sparse else features.X
    if any_inf(values, n_threads):
        raise ValueError(f"{name} contains inf; features must be finite (NaN rows are reported where scored)")


def check_nonfinite_log_odds(features, nan_row, has_inf, name="X"):
    """After a fused score+top-k pass: raise if a scored row's log-odds were NaN or inf.

    ``nan_row``: the lowest scored row whose log-odds were NaN (-1: none); ``has_inf``: some
    scored row's log-odds were +-inf. Inf features are the likelier cause of either, so they are
    looked for (a full pass) only then; an inf log-odds from finite features (an overflowing sum)
    is a legitimate, if extreme, score."""
    if nan_row < 0 and not has_inf:
        return
    if any_inf(features.data if features.is_sparse else features.X):
        raise ValueError(f"{name} contains inf; features must be finite")
    if nan_row >= 0:
        check_nan_log_odds_from_features(features, np.array([nan_row]), name)
        raise ValueError(f"row {nan_row} of {name} has NaN log-odds (a NaN feature): it cannot be ranked; "
                         "drop or impute it, or mark it in exclude=")


def _row_has_nan(features, row):
    if features.is_sparse:
        return bool(np.isnan(features.data[features.indptr[row]:features.indptr[row + 1]]).any())
    return bool(np.isnan(features.X[row]).any())


def check_nan_log_odds_from_features(features, rows, name="X"):
    """``rows`` (ascending) have NaN log-odds while X holds no inf: each must hold a NaN feature;
    otherwise x . coef overflowed float64 (terms of +inf and -inf), and the first such row is
    named. The rows are looked at only when a kernel reported a non-finite log-odds."""
    for row in rows:
        if not _row_has_nan(features, int(row)):
            raise ValueError(f"row {int(row)} of {name} has NaN log-odds although its features are finite: "
                             f"x . coef overflows float64 (products beyond 1.8e308 of both signs); scale the "
                             f"features or the coefficients")
