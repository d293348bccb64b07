"""fastwlr on Dask: score, rank and train on data spread over a cluster, with in-memory results.

The in-memory API with dask collections in and out; code moves by changing one import::

    import fastwlr.dask as fd
    odds = fd.score(X, coef, b)                              # X: dask array (dense or CSR chunks) or dataframe
    idx, val = fd.score_topk(X, coef, b, k=10, offsets=offsets)
    ranker = fd.WatchTimeRanker().fit(X, watch_time)         # distributed exact L-BFGS
    expected_T = ranker.predict(X)                           # a lazy dask array

Every partition is handled by the compiled kernels (``fastwlr._kernels.Kernels``) after the same
per-partition checks as in memory (``fastwlr._validation``); nothing here is a distribution layer of
its own, it is Dask's scheduler (threaded without a client, ``dask.distributed`` with one).

Training (``fit``) is the in-memory ``solver="lbfgs"`` objective, distributed as Spark MLlib and
dask-ml do it: the data are validated and persisted once (weights normalised by their *global*
mean, computed in that pass), then every L-BFGS evaluation sends the coefficients to each worker
once (one key of the graph, fetched by each worker from the one that holds it),
each partition returns n_p times its mean loss and gradient from the compiled objective kernel,
and a fixed binary tree of additions over the partitions (so the sums do not depend on which
worker ran what, or on a worker that died and was replaced) brings one (loss, gradient) back to
scipy's L-BFGS-B on the client. docs/dask.md has the details and measurements.

This module imports dask; ``import fastwlr`` never imports it (the ``dask`` extra).
"""
import math

import numpy as np

import dask
import dask.array as da

from . import _validation as v, _weights
from . import estimators as _est
from ._kernels import Kernels
from . import _lbfgs
from ._lbfgs import DEFAULT_MAX_ITER, DEFAULT_TOL
from .scoring import result_dtype

__all__ = ["score", "score_topk", "WeightedLogisticRegression", "WatchTimeRanker",
           "repartition_by_request", "fit_lbfgs"]

DEFAULT_THREADS = 1   # kernel threads per task: Dask runs one task per worker thread


# ------------------------------------------------------------------------------------ helpers
def _is_dataframe(X):
    return type(X).__module__.startswith("dask.dataframe") or hasattr(X, "map_partitions") and hasattr(X, "columns")


def _is_series(X):
    return hasattr(X, "map_partitions") and not hasattr(X, "columns")


def _as_rows_array(X, name="X"):
    """A 2-D dask array chunked by rows only (columns in one chunk); known chunk sizes."""
    if _is_dataframe(X):
        X = X.to_dask_array(lengths=True)
    if not isinstance(X, da.Array):
        raise TypeError(f"{name} must be a dask array or a dask dataframe, got {type(X).__name__} "
                        "(use fastwlr.score etc. for in-memory arrays)")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got {X.ndim}-D")
    if any(math.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})  # a row's dot product needs all its columns
    return X


def _as_vector(a, chunks, name):
    """A 1-D dask array with exactly the row chunks ``chunks`` (never rechunked silently)."""
    if _is_series(a):
        a = a.to_dask_array(lengths=True)
    if not isinstance(a, da.Array):
        raise TypeError(f"{name} must be a dask array (chunked by rows like X), got {type(a).__name__}")
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if any(math.isnan(c) for c in a.chunks[0]):
        a = a.compute_chunk_sizes()
    if a.chunks[0] != chunks:
        raise ValueError(f"{name} is chunked as {a.chunks[0]} but X's rows as {chunks}: the partitions of "
                         f"X, labels and weights must hold the same rows (e.g. {name}.rechunk(X.chunks[0]))")
    return a


def _starts(chunks):
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def _where(i, start, stop):
    return f"partition {i} (rows {start}:{stop})"


def _coef_arg(coef):
    """The coefficients as one key of the graph: the scheduler places it on one worker, and the
    tasks on other workers fetch it from there, so it crosses the network once per worker and
    evaluation, not once per task. A fresh key each evaluation (pure=False). Not
    ``client.scatter(broadcast=True)``: a broadcast to a worker that dies meanwhile waited forever
    (seen in the killed-worker test), where a graph key is simply recomputed elsewhere."""
    return dask.delayed(coef, pure=False)


# ------------------------------------------------------------------------------------ scoring
def _score_block(Xb, coef, intercept, output, out_dtype, n_threads, backend, where):
    try:
        features = v.check_features(Xb, n_features=coef.shape[0], allow_nan=True, defer_inf_check=True,
                                    n_threads=n_threads)
        out = np.empty(features.n_rows, dtype=out_dtype)
        return Kernels(backend, n_threads).score(features, coef, intercept, output, out)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def _feature_frame(df, columns):
    if columns is not None:
        df = df[list(columns)]
    return df


def score(X, coef, intercept=0.0, *, output="odds", n_threads=DEFAULT_THREADS, dtype=None, backend=None,
          columns=None):
    """``fastwlr.score`` partition by partition: a lazy dask array (or Series for a dataframe).

    X : dask array of shape (n, d) chunked by rows (dense float32/float64 chunks or scipy CSR
        chunks), or a dask DataFrame (``columns``: the feature columns, default all).
    The other parameters are ``fastwlr.score``'s; ``n_threads`` is per task (default 1: Dask runs a
    task per worker thread). Each value equals ``fastwlr.score`` on the concatenated rows, bit for bit.
    """
    output = v.check_output(output)
    if _is_dataframe(X):
        frame = _feature_frame(X, columns)
        coef, intercept = v.check_coef(coef, intercept, n_features=len(frame.columns))
        out_dtype = result_dtype(_frame_dtype(frame), output, dtype)
        import pandas as pd

        def part(pdf, coef, intercept, partition_info=None):
            i = partition_info["number"] if partition_info else "?"
            values = _score_block(pdf.to_numpy(), coef, intercept, output, out_dtype, n_threads, backend,
                                  f"partition {i}")
            return pd.Series(values, index=pdf.index, name=output)

        meta = pd.Series(np.array([], dtype=out_dtype), name=output)
        return frame.map_partitions(part, _coef_arg(coef), intercept, meta=meta)
    X = _as_rows_array(X)
    coef, intercept = v.check_coef(coef, intercept, n_features=X.shape[1])
    out_dtype = result_dtype(_block_dtype(X), output, dtype)
    starts = _starts(X.chunks[0])

    def block(Xb, coef, block_info=None):
        i = block_info[0]["chunk-location"][0] if block_info else 0
        return _score_block(Xb, coef, intercept, output, out_dtype, n_threads, backend,
                            _where(i, starts[i], starts[i + 1]))

    return X.map_blocks(block, _coef_arg(coef), drop_axis=1, dtype=out_dtype,
                        meta=np.empty((0,), dtype=out_dtype))


def _block_dtype(X):
    dtype = np.dtype(X.dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def _frame_dtype(frame):
    dtypes = {np.dtype(t) for t in frame.dtypes}
    return np.dtype(np.float32) if dtypes == {np.dtype(np.float32)} else np.dtype(np.float64)


# -------------------------------------------------------------------------------------- top-k
def _local_offsets(offsets, starts):
    """Each partition's offsets (local rows), or ValueError naming a request split across partitions.

    Request g belongs to the partition holding its first row (an empty request at a boundary: the
    partition that starts there; at the end: the last one)."""
    n_parts = len(starts) - 1
    owner = np.clip(np.searchsorted(starts, offsets[:-1], side="right") - 1, 0, n_parts - 1)
    bad = np.flatnonzero(offsets[1:] > starts[owner + 1])
    if bad.size:
        g = int(bad[0])
        raise ValueError(
            f"request {g} (rows {offsets[g]}:{offsets[g + 1]}) straddles partitions {owner[g]} and "
            f"{owner[g] + 1} (boundary at row {starts[owner[g] + 1]}): every request's rows must be in one "
            "partition (rechunk X so that its chunk boundaries are request boundaries; for a dataframe "
            "use fastwlr.dask.repartition_by_request)")
    per = []
    for i in range(n_parts):
        groups = np.flatnonzero(owner == i)
        if groups.size == 0:
            per.append(np.zeros(1, dtype=np.int64))
        else:
            per.append(np.ascontiguousarray(offsets[groups[0]:groups[-1] + 2] - starts[i]))
    return per


def score_topk(X, coef, intercept=0.0, k=None, *, offsets=None, output="odds", exclude=None,
               n_threads=DEFAULT_THREADS, backend=None, request=None, columns=None):
    """``fastwlr.score_topk`` partition by partition.

    Dask array X: ``offsets`` as in memory (global rows; every chunk boundary must be a request
    boundary, else ValueError naming the request), ``exclude`` a bool dask array chunked like X.
    Returns lazy ``(indices, values)`` dask arrays of shape (n_requests, k), indices into the whole
    of X, equal to the in-memory result bit for bit.

    Dask DataFrame X: ``request`` names the request-id column (its rows may be anywhere within a
    partition, but each request in one partition: checked when computed, see
    ``repartition_by_request``); the features are ``columns`` (default: all other columns).
    Returns a lazy dask DataFrame with columns request, rank (0 = best), index (the winner's index
    label) and ``output``; requests with fewer than k rows have fewer entries (no padding).
    """
    if k is None:
        raise TypeError("score_topk() missing required argument k (candidates kept per request)")
    output = v.check_output(output)
    k = v.check_k(k)
    if _is_dataframe(X):
        return _score_topk_frame(X, coef, intercept, k, output, exclude, n_threads, backend, request, columns)
    if request is not None:
        raise TypeError("request= is for dask dataframes; for a dask array pass offsets=")
    X = _as_rows_array(X)
    coef, intercept = v.check_coef(coef, intercept, n_features=X.shape[1])
    n = X.shape[0]
    starts = _starts(X.chunks[0])
    offsets = v.check_offsets(offsets, n)
    local = _local_offsets(offsets, starts)
    out_dtype = result_dtype(_block_dtype(X), output)
    if exclude is not None:
        exclude = _as_vector(exclude, X.chunks[0], "exclude")
    coef_arg = _coef_arg(coef)
    kern = (backend, n_threads)
    idx_parts, val_parts = [], []
    Xd = X.to_delayed().ravel()
    Ed = exclude.to_delayed().ravel() if exclude is not None else [None] * len(Xd)
    for i, (xb, eb) in enumerate(zip(Xd, Ed)):
        pair = dask.delayed(_topk_block, nout=2, pure=True)(
            xb, coef_arg, intercept, local[i], int(starts[i]), k, output, eb, out_dtype, kern,
            _where(i, starts[i], starts[i + 1]))
        g = len(local[i]) - 1
        idx_parts.append(da.from_delayed(pair[0], (g, k), dtype=np.int64))
        val_parts.append(da.from_delayed(pair[1], (g, k), dtype=out_dtype))
    return da.concatenate(idx_parts, axis=0), da.concatenate(val_parts, axis=0)


def _topk_block(Xb, coef, intercept, offsets, start, k, output, exclude, out_dtype, kern, where):
    backend, n_threads = kern
    try:
        features = v.check_features(Xb, n_features=coef.shape[0], allow_nan=True, defer_inf_check=True,
                                    n_threads=n_threads)
        exclude = v.check_exclude(exclude, features.n_rows)
        idx, val = Kernels(backend, n_threads).score_topk(features, coef, intercept, offsets, k, output,
                                                          exclude, out_dtype)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    idx = np.where(idx >= 0, idx + start, idx)  # indices into the whole of X; -1 stays padding
    return idx, val


def _score_topk_frame(df, coef, intercept, k, output, exclude, n_threads, backend, request, columns):
    import pandas as pd
    if request is None:
        raise TypeError("score_topk on a dask dataframe needs request= (the request-id column)")
    if exclude is not None and not isinstance(exclude, str):
        raise TypeError("exclude= on a dataframe names a boolean column")
    drop = {request} | ({exclude} if exclude is not None else set())
    feature_cols = list(columns) if columns is not None else [c for c in df.columns if c not in drop]
    coef, intercept = v.check_coef(coef, intercept, n_features=len(feature_cols))
    out_dtype = result_dtype(_frame_dtype(df[feature_cols]), output)
    check = dask.delayed(_check_requests_apart, pure=True)(df[request].map_partitions(_unique_ids).to_delayed())

    def part(pdf, coef, ok, partition_info=None):
        i = partition_info["number"] if partition_info else "?"
        ids = pdf[request].to_numpy()
        order = np.argsort(ids, kind="stable")  # a request's rows together, in their original order
        sorted_ids = ids[order]
        cut = np.flatnonzero(sorted_ids[1:] != sorted_ids[:-1]) + 1 if len(ids) else np.array([], np.int64)
        offsets = np.concatenate([[0], cut, [len(ids)]]).astype(np.int64) if len(ids) else np.zeros(1, np.int64)
        Xb = pdf[feature_cols].to_numpy()[order]
        ex = pdf[exclude].to_numpy(dtype=bool)[order] if exclude is not None else None
        idx, val = _topk_block(Xb, coef, intercept, offsets, 0, k, output, ex, out_dtype, (backend, n_threads),
                               f"partition {i}")
        g = offsets.shape[0] - 1
        keep = idx >= 0
        rows = order[idx[keep]]
        return pd.DataFrame({"request": np.repeat(sorted_ids[offsets[:-1]] if g else sorted_ids[:0], k)
                             .reshape(g, k)[keep],
                             "rank": np.broadcast_to(np.arange(k), (g, k))[keep],
                             "index": pdf.index.to_numpy()[rows],
                             output: val[keep]})

    meta = pd.DataFrame({"request": pd.Series([], dtype=df[request].dtype), "rank": pd.Series([], dtype=np.int64),
                         "index": pd.Series([], dtype=df.index.dtype), output: pd.Series([], dtype=out_dtype)})
    return df.map_partitions(part, _coef_arg(coef), check, meta=meta, align_dataframes=False)


def _unique_ids(s):
    import pandas as pd
    return pd.Series(pd.unique(s.to_numpy()))


def _check_requests_apart(parts):
    seen = {}
    for i, ids in enumerate(parts):
        for r in ids.tolist():
            j = seen.setdefault(r, i)
            if j != i:
                raise ValueError(f"request {r!r} is split across partitions {j} and {i}: every request's rows "
                                 "must be in one partition (use fastwlr.dask.repartition_by_request(df, column))")
    return True


def repartition_by_request(df, request, npartitions=None):
    """``df`` shuffled so that all rows of each request (equal values of column ``request``) are in
    one partition, as ``score_topk`` and ``rank`` on dataframes need. A hash shuffle (one pass over
    the network); ``npartitions`` default: as many as ``df`` has."""
    return df.shuffle(on=request, npartitions=npartitions)


# ----------------------------------------------------------------------------- distributed L-BFGS
class _Part:
    """One validated, persisted partition: features, 0/1 labels, weights (normalised once known)."""
    __slots__ = ("features", "y", "w")

    def __init__(self, features, y, w):
        self.features, self.y, self.w = features, y, w


def _prepare(Xb, yb, wb, where, n_threads, recipe):
    """Validate one partition as the in-memory fit validates the whole: finite features, labels and
    weights. ``recipe``: (kind, classes or None, rate); yb holds labels (kind "labels") or watch
    times ("watch_time"); wb weights or None."""
    kind, classes, rate, n_features = recipe
    try:
        features = v.check_features(Xb, n_features=n_features, allow_empty=True, n_threads=n_threads)
        n = features.n_rows
        if kind == "watch_time":
            T = _weights.check_watch_time(np.asarray(yb), n)
            sw = None if wb is None else v.check_sample_weight(np.asarray(wb), n)
            y, w = _weights.recipe(T, sw)
        elif kind == "click":   # the click model: labels T > 0, weights sample_weight
            T = _weights.check_watch_time(np.asarray(yb), n)
            y = (T > 0).astype(np.float64)
            w = v.check_sample_weight(None if wb is None else np.asarray(wb), n)
        else:
            lab = np.asarray(yb)
            if lab.ndim != 1 or lab.shape[0] != n:
                raise ValueError(f"y has shape {lab.shape}, X has {n} rows")
            if lab.dtype.kind == "f" and not np.isfinite(lab).all():
                raise ValueError(f"y contains NaN or inf (first at index {int(np.argmin(np.isfinite(lab)))})")
            unknown = ~np.isin(lab, classes)
            if unknown.any():
                raise ValueError(f"y contains a label outside {list(classes)}: {lab[unknown][0]!r}")
            y = (lab == classes[1]).astype(np.float64)
            w = v.check_sample_weight(None if wb is None else np.asarray(wb), n)
        if rate < 1.0:
            w = np.where(y == 0, w / rate, w)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return _Part(features, y, w)


def _stats(part):
    values = part.features.data if part.features.is_sparse else part.features.X
    return (part.features.n_rows, float(np.sum(part.w)), float(np.einsum("i,i", part.w, part.y)),
            float(np.abs(values).max(initial=0.0)))


def _normalise(part, factor):
    return _Part(part.features, part.y, part.w * factor)


def _partial(part, theta, fit_intercept, kern, colsq):
    """n_p times the partition's mean weighted loss and gradient (no penalty: added on the client)."""
    coef, b = np.ascontiguousarray(theta[:-1]), float(theta[-1])
    kernels = Kernels(*kern)
    n = part.features.n_rows
    d = part.features.n_features
    if n == 0:
        return (0.0, np.zeros(d), 0.0) + ((np.zeros(d),) if colsq else ())
    out = None
    if colsq:
        out = kernels.objective_grad_colsq(part.features, part.y, part.w, coef, b, 0.0)
        if out is None:
            loss, g, gb = kernels.objective_grad(part.features, part.y, part.w, coef, b, 0.0)
            out = (loss, g, gb, kernels.weighted_column_sq(part.features, part.w, 1))
    else:
        out = kernels.objective_grad(part.features, part.y, part.w, coef, b, 0.0)
    loss, g, gb = out[:3]
    res = (loss * n, g * n, gb * n)
    return res + ((np.asarray(out[3], dtype=np.float64),) if colsq else ())


def _add(a, b):
    return tuple(x + y for x, y in zip(a, b))


def _tree_sum(items):
    """A fixed binary tree over the partitions, in partition order: the same sums whoever computes them."""
    add = dask.delayed(_add, pure=True)
    while len(items) > 1:
        items = [add(items[i], items[i + 1]) if i + 1 < len(items) else items[i] for i in range(0, len(items), 2)]
    return items[0]


class _Distributed:
    """Persisted validated partitions and one distributed pass of the objective."""

    def __init__(self, X, y, w, recipe, n_threads, backend):
        X = _as_rows_array(X)
        chunks = X.chunks[0]
        y = _as_vector(y, chunks, "y" if recipe[0] == "labels" else "watch_time")
        w = None if w is None else _as_vector(w, chunks, "sample_weight")
        starts = _starts(chunks)
        self.n_features = X.shape[1]
        self.sparse = _is_sparse_meta(X)
        self.kern = (backend, n_threads)
        Xd, yd = X.to_delayed().ravel(), y.to_delayed().ravel()
        wd = w.to_delayed().ravel() if w is not None else [None] * len(Xd)
        recipe = tuple(recipe) + (self.n_features,)
        prep = [dask.delayed(_prepare, pure=True)(xb, yb, wb, _where(i, starts[i], starts[i + 1]), n_threads, recipe)
                for i, (xb, yb, wb) in enumerate(zip(Xd, yd, wd))]
        prep = dask.persist(*prep)
        stats = dask.compute(*[dask.delayed(_stats, pure=True)(p) for p in prep])
        self.n = int(sum(s[0] for s in stats))
        total = sum(s[1] for s in stats)
        if not total > 0.0:
            raise ValueError(_weights.NOTHING_TO_FIT)
        self.total_weight, self.positive_weight = total, sum(s[2] for s in stats)
        self.max_abs = max(s[3] for s in stats)
        factor = self.n / total  # the global mean weight, once: w * (n / sum w) as in memory
        self.parts = dask.persist(*[dask.delayed(_normalise, pure=True)(p, factor) for p in prep])
        del prep
        self.evaluations = 0

    def evaluate(self, coef, b, fit_intercept, colsq=False):
        """(loss, grad_coef, grad_b[, colsq]) of the mean over all rows, without the penalty."""
        theta = _coef_arg(np.append(coef, b))  # one array of d + 1 floats per worker
        partial = dask.delayed(_partial, pure=True)
        total = _tree_sum([partial(p, theta, fit_intercept, self.kern, colsq) for p in self.parts])
        (res,) = dask.compute(total)
        self.evaluations += 1
        n = max(self.n, 1)
        # means over all rows; the column sums of w x^2 stay sums (the preconditioner divides by n)
        return tuple(r / n for r in res[:3]) + tuple(res[3:])


def _is_sparse_meta(X):
    import scipy.sparse as sp
    return sp.issparse(getattr(X, "_meta", None))


class _Objective:
    """A ``_Distributed`` as ``fastwlr._lbfgs.minimize`` asks for it: the same interface as the
    in-memory objective, the penalty added on the client (each partition returns its unpenalised
    sums; the penalty belongs to the total once)."""

    def __init__(self, data, alpha, fit_intercept):
        self.data, self.alpha, self.fit_intercept = data, alpha, fit_intercept
        self.n_rows, self.n_features, self.sparse = data.n, data.n_features, data.sparse

    def _penalised(self, coef, loss, g, *rest):
        return (loss + 0.5 * self.alpha * float(coef @ coef), g + self.alpha * coef) + rest

    def evaluate(self, coef, b):
        return self._penalised(coef, *self.data.evaluate(coef, b, self.fit_intercept))

    def first_evaluation(self, coef, b):
        # the column sums come from the same distributed pass, for dense and CSR partitions alike
        return self._penalised(coef, *self.data.evaluate(coef, b, self.fit_intercept, colsq=True))

    def base_log_odds(self):
        pos, neg = self.data.positive_weight, self.data.total_weight - self.data.positive_weight
        return math.log(pos / neg) if pos > 0 and neg > 0 else 0.0

    def noise_scale(self):
        return max(1.0, self.data.max_abs)


def fit_lbfgs(data, *, alpha, fit_intercept=True, coef_init=None, intercept_init=0.0, tol=DEFAULT_TOL,
              max_iter=DEFAULT_MAX_ITER, callback=None, precondition="auto", verbose=0):
    """``fastwlr._lbfgs.fit_lbfgs`` over a ``_Distributed``: the same driver (objective, start,
    diagonal preconditioner from all rows in the first pass, scipy options, stopping rule)."""
    return _lbfgs.minimize(_Objective(data, alpha, fit_intercept), fit_intercept=fit_intercept,
                           coef_init=coef_init, intercept_init=intercept_init, tol=tol, max_iter=max_iter,
                           callback=callback, precondition=precondition, name="distributed lbfgs",
                           verbose=verbose)


# ----------------------------------------------------------------------------------- estimators
class _DaskMixin:
    """fit on dask collections (distributed exact L-BFGS), predictions as lazy dask collections."""

    def _check_dask_solver(self):
        if self.solver != "lbfgs":
            raise ValueError(f"fastwlr.dask estimators fit with solver='lbfgs' (the exact objective, distributed); "
                             f"got solver={self.solver!r}. For streaming SGD use the in-memory estimator's "
                             "partial_fit on each partition.")

    def _dask_fit(self, X, y, w, recipe, classes=None):
        self._check_dask_solver()
        alpha, _, max_iter, tol = self._check_params()
        rate, shift = self._check_sampling()
        if self.negative_sampling_correction != "weight":
            rate = 1.0
        kind = recipe
        n_threads = DEFAULT_THREADS if self.n_threads is None else self.n_threads
        data = _Distributed(X, y, w, (kind, classes, rate), n_threads, self.backend)
        if data.n == 0:
            raise ValueError("X has 0 rows")
        if kind != "labels" and data.positive_weight in (0.0, data.total_weight):
            what = "no impression was clicked" if data.positive_weight == 0 else "every impression was clicked"
            raise ValueError(f"watch_time must contain both zeros and positive values: {what} (1 class), "
                             "so e^z has no finite optimum")
        warm = self.warm_start and getattr(self, "coef_", None) is not None \
            and self.coef_.shape[1] == data.n_features
        res = fit_lbfgs(data, alpha=alpha, fit_intercept=bool(self.fit_intercept),
                        coef_init=self.coef_[0] if warm else None,
                        intercept_init=float(self.intercept_[0]) - shift if warm else 0.0,
                        tol=tol, max_iter=max_iter, verbose=int(self.verbose))
        self._sgd_state = None
        self.n_evaluations_ = data.evaluations
        self._set_solution(res.coef, res.intercept + shift, data.n_features, res.n_iter, res.converged, "lbfgs")
        self.loss_ = res.loss
        return self

    def to_local(self):
        """The in-memory estimator with these fitted coefficients (to save, or to serve one batch)."""
        self._check_fitted()
        base = type(self).__mro__[2]
        est = base(**self.get_params(deep=False))
        for name in ("coef_", "intercept_", "n_features_in_", "n_iter_", "converged_", "classes_"):
            if hasattr(self, name):
                setattr(est, name, getattr(self, name))
        est._sgd_state = None
        if hasattr(self, "click_model_"):
            est.click_model_ = self.click_model_.to_local() if self.click_model_ is not None else None
        return est

    def save(self, path):
        """Saved as the in-memory estimator (``fastwlr.load`` gives that one back)."""
        self.to_local().save(path)

    def _dscore(self, X, output, dtype=None):
        self._check_fitted()
        d = X.shape[1] if not _is_dataframe(X) else len(X.columns)
        if d != self.n_features_in_:
            raise ValueError(f"X has {d} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return score(X, self.coef_[0], float(self.intercept_[0]), output=output, dtype=dtype,
                     n_threads=DEFAULT_THREADS if self.n_threads is None else self.n_threads, backend=self.backend)

    def decision_function(self, X):
        return self._dscore(X, "log_odds")

    def predict_odds(self, X):
        return self._dscore(X, "odds")

    def predict_proba(self, X):
        from .backends._math import sigmoid
        z = self._dscore(X, "log_odds", dtype=np.float64)
        return z.map_blocks(lambda b: np.column_stack([sigmoid(-b), sigmoid(b)]), new_axis=1,
                            chunks=(z.chunks[0], (2,)), dtype=np.float64)

    def rank(self, X, k, *, offsets=None, exclude=None, output="odds", request=None):
        self._check_fitted()
        return score_topk(X, self.coef_[0], float(self.intercept_[0]), k, offsets=offsets, exclude=exclude,
                          output=output, n_threads=DEFAULT_THREADS if self.n_threads is None else self.n_threads,
                          backend=self.backend, request=request)

    def score(self, X, y, sample_weight=None):
        raise NotImplementedError("score() on dask data: compute predictions with predict() and use fastwlr.metrics")


class WeightedLogisticRegression(_DaskMixin, _est.WeightedLogisticRegression):
    """``fastwlr.WeightedLogisticRegression`` on dask collections: ``fit(X, y, sample_weight)`` with X
    a dask array (dense or CSR chunks) or dataframe chunked by rows and y / sample_weight chunked
    alike, trained by distributed exact L-BFGS (the in-memory ``solver="lbfgs"`` objective and
    optimum); ``predict``, ``predict_odds``, ``decision_function``, ``predict_proba``, ``rank``
    return lazy dask collections. Same parameters; ``solver`` defaults to (and must be) "lbfgs",
    ``n_threads`` is per task (None: 1)."""

    def __init__(self, alpha=1e-6, *, l1_ratio=0.0, solver="lbfgs", fit_intercept=True, max_iter="auto",
                 tol="auto", n_iter_no_change=2, weighting="iwa", optimizer="auto", eta0="auto",
                 learning_rate="auto", power_t=0.5, average=True, warm_start=False, verbose=0, random_state=None,
                 n_threads=None, backend=None, negative_sampling_rate=1.0,
                 negative_sampling_correction="weight"):
        super().__init__(alpha, l1_ratio=l1_ratio, solver=solver, fit_intercept=fit_intercept,
                         max_iter=max_iter, tol=tol, n_iter_no_change=n_iter_no_change,
                         weighting=weighting, optimizer=optimizer, eta0=eta0,
                         learning_rate=learning_rate, power_t=power_t, average=average,
                         warm_start=warm_start, verbose=verbose, random_state=random_state, n_threads=n_threads,
                         backend=backend, negative_sampling_rate=negative_sampling_rate,
                         negative_sampling_correction=negative_sampling_correction)

    def fit(self, X, y, sample_weight=None):
        yv = y.to_dask_array(lengths=True) if _is_series(y) else y
        if not isinstance(yv, da.Array):
            raise TypeError(f"y must be a dask array chunked by rows like X, got {type(y).__name__}")
        classes = np.unique(yv.compute() if yv.shape[0] < (1 << 16) else da.unique(yv).compute())
        if classes.dtype.kind == "f" and not np.isfinite(classes).all():
            raise ValueError("y contains NaN or inf")
        if classes.shape[0] != 2:
            raise ValueError(f"y must hold exactly 2 classes, got {classes.tolist()[:10]}")
        self.classes_ = classes
        return self._dask_fit(X, yv, sample_weight, "labels", classes)

    def predict(self, X):
        classes = self.classes_
        return self._dscore(X, "log_odds").map_blocks(lambda z: classes[(z > 0).astype(np.intp)],
                                                      dtype=classes.dtype)


class WatchTimeRanker(_DaskMixin, _est.WatchTimeRanker):
    """``fastwlr.WatchTimeRanker`` on dask collections: ``fit(X, y, sample_weight)`` (y: the watch times) by
    distributed exact L-BFGS (the recipe y = T > 0, w = T or 1 applied per partition), ``predict``
    (e^z, or e^z (1 - p) with ``fit_click_model=True`` or ``click_log_odds=``) and ``rank`` lazy.
    Same parameters; ``solver`` defaults to (and must be) "lbfgs"."""

    def __init__(self, alpha=1e-6, *, l1_ratio=0.0, solver="lbfgs", fit_intercept=True, max_iter="auto",
                 tol="auto", n_iter_no_change=2, weighting="iwa", optimizer="auto", eta0="auto",
                 learning_rate="auto", power_t=0.5, average=True, warm_start=False, verbose=0, random_state=None,
                 n_threads=None, backend=None, negative_sampling_rate=1.0,
                 negative_sampling_correction="weight", fit_click_model=False):
        super().__init__(alpha, l1_ratio=l1_ratio, solver=solver, fit_intercept=fit_intercept,
                         max_iter=max_iter, tol=tol, n_iter_no_change=n_iter_no_change,
                         weighting=weighting, optimizer=optimizer, eta0=eta0,
                         learning_rate=learning_rate, power_t=power_t, average=average,
                         warm_start=warm_start, verbose=verbose, random_state=random_state, n_threads=n_threads,
                         backend=backend, negative_sampling_rate=negative_sampling_rate,
                         negative_sampling_correction=negative_sampling_correction,
                         fit_click_model=fit_click_model)

    def fit(self, X, y=None, sample_weight=None, *, watch_time=None):
        """``y``: the watch times, a dask array chunked like X (``watch_time=`` is the older name of
        the same argument, as in ``fastwlr.WatchTimeRanker.fit``)."""
        watch_time = _est._watch_time_arg(y, watch_time, "fit")
        self._dask_fit(X, watch_time, sample_weight, "watch_time")
        previous = getattr(self, "click_model_", None)
        self.click_model_ = None
        if self.fit_click_model:
            params = {k: val for k, val in self.get_params(deep=False).items() if k != "fit_click_model"}
            if self.warm_start and isinstance(previous, WeightedLogisticRegression):
                click = previous.set_params(**params)  # warm: from the previous click model
            else:
                click = WeightedLogisticRegression(**params)
            click.classes_ = np.array([0.0, 1.0])
            click._dask_fit(X, watch_time, sample_weight, "click")
            self.click_model_ = click
        return self

    def predict(self, X, click_log_odds=None, click_model=None):
        if click_log_odds is not None and click_model is not None:
            raise ValueError("pass click_log_odds or click_model, not both")
        if click_log_odds is None:
            click_model = click_model if click_model is not None else getattr(self, "click_model_", None)
            if click_model is None:
                return self._dscore(X, "odds")
            click_log_odds = click_model.decision_function(X)
        from .backends._math import safe_exp, softplus
        z = self._dscore(X, "log_odds", dtype=np.float64)
        zc = _as_vector(click_log_odds, z.chunks[0], "click_log_odds")
        return da.map_blocks(lambda a, c: safe_exp(a - softplus(np.asarray(c, dtype=np.float64))), z, zc,
                             dtype=np.float64)
