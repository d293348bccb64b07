"""Generated hostile inputs for every public entry point, and the oracle each call must satisfy.

Shared by the CI suite (``tests/test_fuzz.py``, a bounded number of hypothesis examples per entry
point) and the long campaign (``python tests/fuzz_campaign.py``: thousands of cases per entry point,
in worker processes, so that a crash is recorded with the case that caused it).

Every case is drawn by a hypothesis strategy ``CASES[name]`` and run by ``run(name, case)``. The
oracle is the same everywhere: the call either returns what the numpy reference says (and leaves
every input untouched), or raises a documented exception (``ValueError``/``TypeError`` and their
subclasses: ``ModelFileError``, ``DivergenceError``, ``NotFittedError``) with a message. Anything
else (another exception, a wrong or silently NaN result, a modified input, an input the
documentation says is rejected but was accepted) is a finding: ``run`` raises ``AssertionError``.
"""
import copy
import io
import json
import os
import tempfile
import warnings
import zipfile

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st

import fastwlr
from fastwlr import metrics
from fastwlr.backends._contract import F32_SUM_ATOL, F32_SUM_RTOL
from fastwlr.backends._math import safe_exp, sigmoid, softplus
from fastwlr.exceptions import ConvergenceWarning, ModelFileError

DOCUMENTED = (ValueError, TypeError)
SUM_RTOL = 1e-12        # the compiled sums' order-of-summation slack, relative to |b| + sum |w_j x_j|
# dense float32 features may be summed in float32: then the contract's F32_SUM_RTOL / F32_SUM_ATOL
BACKENDS = [b for b in fastwlr.available_backends()]


class Finding(AssertionError):
    pass


def expect(condition, message):
    if not condition:
        raise Finding(message)


# ------------------------------------------------------------------------------------ snapshots

def snapshot(obj):
    """A deep copy to compare with after the call (arrays by bytes, so NaN compares equal)."""
    if sp.issparse(obj):
        return ("sparse", type(obj), obj.shape, [np.array(getattr(obj, a), copy=True) for a in _SPARSE_ATTRS[obj.format]])
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype, obj.shape, obj.tobytes(order="A"), obj.flags.writeable)
    return ("object", copy.deepcopy(obj))


_SPARSE_ATTRS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
                 "coo": ("data", "row", "col") if hasattr(sp.coo_matrix((1, 1)), "row") else ("data", "coords")}


def unchanged(obj, snap):
    now = snapshot(obj)
    if snap[0] == "sparse":
        return now[:3] == snap[:3] and all(a.dtype == b.dtype and a.tobytes() == b.tobytes()
                                           for a, b in zip(now[3], snap[3]))
    if snap[0] == "array":
        return now == snap
    try:
        return bool(np.array_equal(np.asarray(now[1]), np.asarray(snap[1]), equal_nan=True))
    except Exception:  # objects numpy cannot compare (NaN-free by construction): their repr
        return repr(now[1]) == repr(snap[1])


def call_checked(fn, inputs, *, must_fail=None, skip_unchanged=()):
    """Call ``fn()``; return (result, None) or (None, exc) for a documented exception. Checks that
    the inputs (name -> object) are unchanged and that ``must_fail`` inputs were rejected."""
    snaps = {k: snapshot(v) for k, v in inputs.items() if k not in skip_unchanged}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)   # "auto" says once which backend it runs
            result = fn()
    except DOCUMENTED as exc:
        expect(str(exc).strip(), f"{type(exc).__name__} without a message")
        result, error = None, exc
    except Exception as exc:  # noqa: BLE001 - the finding
        raise Finding(f"undocumented exception {type(exc).__name__}: {exc}") from exc
    else:
        error = None
    for k, snap in snaps.items():
        expect(unchanged(inputs[k], snap), f"the call modified its input {k}")
    if must_fail and error is None:
        raise Finding(f"accepted an input the documentation says is rejected: {must_fail}")
    return result, error


# ------------------------------------------------------------------------------------ features

FLOATS = {"float16": np.float16, "float32": np.float32, "float64": np.float64, ">f4": ">f4", ">f8": ">f8",
          "longdouble": np.longdouble}
OTHER = {"int8": np.int8, "int64": np.int64, "uint16": np.uint16, "bool": np.bool_, "complex128": np.complex128,
         "object": object, "str": "U3"}


def _float_of(dtype):
    """The documented precision of features of this dtype (None: rejected)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    return None


class Features:
    """A generated X and what the reference knows about it."""

    def __init__(self, X, values, float_dtype, must_fail=None):
        self.X = X                      # what the call gets
        self.values = values            # float64 dense values (None when X must be rejected)
        self.float_dtype = float_dtype  # documented precision of the result
        self.must_fail = must_fail      # why X must be rejected, or None
        self.n = None if values is None else values.shape[0]

    def __repr__(self):
        return f"Features({type(self.X).__name__}, shape={getattr(self.X, 'shape', None)}, must_fail={self.must_fail})"


def _values(rng, n, d, kind):
    scale = {"normal": 1.0, "small": 1e-3, "large": 1e3, "huge": 1e150}[kind]
    return rng.normal(size=(n, d)) * scale


def _inject(rng, vals, specials):
    """Put NaN / +-inf / extremes at a few random positions; return what was put."""
    put = []
    if vals.size == 0:
        return put
    for special in specials:
        i = tuple(int(rng.integers(0, s)) for s in vals.shape)
        vals[i] = special
        put.append(special)
    return put


SPECIALS = [np.nan, np.inf, -np.inf, 1e308, -1e308, 5e-324, -0.0, 3e38, 7e-46]


@st.composite
def dense_features(draw, n=None, d=None, allow_defects=True):
    n = draw(st.sampled_from([0, 1, 2, 3, 5, 8, 33])) if n is None else n
    d = draw(st.sampled_from([1, 2, 3, 5, 16])) if d is None else d
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype_name = draw(st.sampled_from(list(FLOATS) * 3 + list(OTHER)))
    dtype = np.dtype(FLOATS.get(dtype_name) or OTHER[dtype_name])
    vals = _values(rng, n, d, draw(st.sampled_from(["normal", "normal", "small", "large", "huge"])))
    specials = draw(st.lists(st.sampled_from(SPECIALS), max_size=3)) if draw(st.booleans()) else []
    if dtype.kind in "iub":
        vals = np.clip(np.round(vals), -100, 100) if dtype.kind != "b" else vals > 0
        if dtype.kind == "u":
            vals = np.abs(vals)
        specials = []
    put = _inject(rng, vals if dtype.kind == "f" else np.empty(0), specials)
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype.kind in "fc":
            arr = vals.astype(dtype)
        elif dtype.kind == "U":
            arr = vals.astype(dtype)
        elif dtype == object:
            arr = vals.astype(object)
        else:
            arr = vals.astype(dtype)
    float_dtype = _float_of(dtype)
    must_fail = None if float_dtype is not None else f"X of dtype {dtype}"
    layout = draw(st.sampled_from(["C", "C", "F", "strided", "reversed", "readonly", "unaligned", "list", "1-D", "3-D"]))
    if not allow_defects and layout in ("1-D", "3-D"):
        layout = "C"
    X = _layout(arr, layout)
    if layout == "list":  # a list of Python numbers: float64 (or rejected if they are not real)
        arr = np.asarray(X) if dtype.kind != "U" else arr
        dtype = arr.dtype
        float_dtype = _float_of(dtype)
        must_fail = None if float_dtype is not None else f"X of dtype {dtype}"
    if layout in ("1-D", "3-D"):
        must_fail = must_fail or f"X of {layout} shape"
    values = None
    if must_fail is None:
        values = np.array(arr, dtype=np.float64) if dtype.kind != "c" else None
        if values is not None and np.isinf(values).any():
            must_fail = "X contains inf"
    return Features(X, values, float_dtype, must_fail)


def _layout(arr, layout):
    if layout == "F":
        return np.asfortranarray(arr)
    if layout == "strided":
        wide = np.zeros((arr.shape[0], 2 * arr.shape[1]), dtype=arr.dtype)
        wide[:, ::2] = arr
        return wide[:, ::2]
    if layout == "reversed":
        return np.ascontiguousarray(arr[::-1])[::-1]
    if layout == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
        return arr
    if layout == "unaligned" and arr.dtype != object and arr.dtype.itemsize > 1:
        buf = np.zeros(arr.nbytes + 1, dtype=np.uint8)
        view = buf[1:].view(arr.dtype).reshape(arr.shape)
        view[...] = arr
        return view
    if layout == "list":
        return arr.tolist()
    if layout == "1-D":
        return arr.reshape(-1)
    if layout == "3-D":
        return arr.reshape(arr.shape + (1,))
    return arr


CSR_DEFECTS = ["none"] * 6 + ["out of range", "negative index", "indptr decreasing", "indptr[0] != 0",
                              "indptr too short", "indptr beyond nnz", "float indices"]


@st.composite
def sparse_features(draw, n=None, d=None, allow_defects=True):
    n = draw(st.sampled_from([0, 1, 2, 3, 5, 8, 33])) if n is None else n
    d = draw(st.sampled_from([1, 2, 3, 5, 16, 1000])) if d is None else d
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    nnz_per_row = rng.integers(0, min(d, 6) + 1, size=n)
    rows = np.repeat(np.arange(n), nnz_per_row)
    cols = np.concatenate([rng.choice(d, size=k, replace=False) for k in nnz_per_row]) if n else np.zeros(0, int)
    data = rng.normal(size=rows.shape[0]) * draw(st.sampled_from([1.0, 1e-3, 1e3, 1e150]))
    if draw(st.booleans()):           # duplicated entries (summed by the reference and scipy)
        dup = rng.random(rows.shape[0]) < 0.3
        rows, cols, data = np.r_[rows, rows[dup]], np.r_[cols, cols[dup]], np.r_[data, data[dup] * 0.5]
    if draw(st.booleans()):           # explicit zeros
        data[rng.random(data.shape[0]) < 0.3] = 0.0
    specials = draw(st.lists(st.sampled_from(SPECIALS), max_size=2)) if draw(st.booleans()) else []
    put = _inject(rng, data, specials)
    order = np.lexsort((cols, rows)) if draw(st.booleans()) else np.argsort(rows, kind="stable")
    if draw(st.booleans()):           # unsorted columns within rows
        order = np.lexsort((rng.random(rows.shape[0]), rows))
    rows, cols, data = rows[order], cols[order], data[order]
    data_dtype = np.dtype(draw(st.sampled_from([np.float64, np.float32, np.int8, np.int32, np.bool_])))
    with np.errstate(over="ignore", invalid="ignore"):
        if data_dtype.kind in "ib":
            data = np.round(np.clip(np.nan_to_num(data), -50, 50)) if data_dtype.kind == "i" else data > 0
        stored = data.astype(data_dtype)
    index_dtype = np.dtype(draw(st.sampled_from([np.int32, np.int64])))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(index_dtype)
    cls = draw(st.sampled_from([sp.csr_matrix, sp.csr_array, "csc", "coo"]))
    X = sp.csr_matrix((stored, cols.astype(index_dtype), indptr), shape=(n, d)) if cls != sp.csr_array else \
        sp.csr_array((stored, cols.astype(index_dtype), indptr), shape=(n, d))
    X.indices = X.indices.astype(index_dtype, copy=False)
    X.indptr = X.indptr.astype(index_dtype, copy=False)
    defect = draw(st.sampled_from(CSR_DEFECTS)) if allow_defects else "none"
    must_fail = None
    if defect == "out of range" and X.nnz:
        X.indices[int(rng.integers(0, X.nnz))] = d + int(rng.integers(0, 3))
        must_fail = "a column index out of range"
    elif defect == "negative index" and X.nnz:
        X.indices[int(rng.integers(0, X.nnz))] = -1
        must_fail = "a negative column index"
    elif defect == "indptr decreasing" and n >= 3 and X.nnz:
        X.indptr = X.indptr.copy()   # n >= 3: [0, nnz, 0, ..., nnz] really decreases
        X.indptr[1] = X.indptr[-1]
        X.indptr[2:-1] = 0
        must_fail = "indptr decreases"
    elif defect == "indptr[0] != 0" and X.nnz:
        X.indptr = X.indptr.copy()
        X.indptr[0] = 1
        must_fail = "indptr[0] != 0"
    elif defect == "indptr too short" and n >= 1:
        X.indptr = X.indptr[:-1].copy()
        must_fail = "indptr of length n"
    elif defect == "indptr beyond nnz":
        X.indptr = X.indptr.copy()
        X.indptr[-1] = X.nnz + 3
        must_fail = "indptr[-1] > nnz"
    elif defect == "float indices" and X.nnz:
        X.indices = X.indices.astype(np.float64)
        must_fail = "float indices"
    if must_fail is None and cls in ("csc", "coo"):
        X = X.tocsc() if cls == "csc" else X.tocoo()
        # documented: other formats are converted to CSR, by scipy, which sums duplicates in the
        # data's dtype (True + True is True): the reference starts from that CSR
        csr = X.tocsr()
        rows = np.repeat(np.arange(n), np.diff(csr.indptr))
        cols, stored = csr.indices, csr.data
    float_dtype = _float_of(data_dtype)
    values = None
    if must_fail is None:
        values = np.zeros((n, d))
        with np.errstate(over="ignore", invalid="ignore"):
            np.add.at(values, (rows, cols), stored.astype(np.float64))
        if np.isinf(stored.astype(np.float64)).any():
            must_fail = "X contains inf"
    return Features(X, values, float_dtype, must_fail)


def features(n=None, d=None, allow_defects=True):
    return st.one_of(dense_features(n, d, allow_defects), sparse_features(n, d, allow_defects))


# ------------------------------------------------------------------------------------ coefficients

@st.composite
def coefficients(draw, d):
    """(coef, intercept, must_fail)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["ok"] * 8 + ["wrong length", "2-D row", "2-D", "NaN", "inf", "complex", "object",
                                              "ints", "list", "float32", "huge"]))
    coef = rng.normal(size=d) * draw(st.sampled_from([1.0, 1e-3, 10.0, 1e3]))
    must_fail = None
    if kind == "wrong length":
        coef, must_fail = np.ones(d + draw(st.sampled_from([-1, 1]))), "coef of the wrong length"
    elif kind == "2-D row":
        coef = coef[None, :]
    elif kind == "2-D":
        coef, must_fail = np.ones((2, d)), "2-D coef"
    elif kind in ("NaN", "inf"):
        coef[int(rng.integers(0, d))] = np.nan if kind == "NaN" else -np.inf
        must_fail = f"coef with {kind}"
    elif kind == "complex":
        coef, must_fail = coef.astype(complex), "complex coef"
    elif kind == "object":
        coef, must_fail = np.array(["a"] * d, dtype=object), "object coef"
    elif kind == "ints":
        coef = np.round(coef).astype(np.int64)
    elif kind == "list":
        coef = coef.tolist()
    elif kind == "float32":
        coef = coef.astype(np.float32)
    elif kind == "huge":
        coef = coef * 1e300
    ikind = draw(st.sampled_from(["float"] * 6 + ["int", "np.float32", "0-d", "1-elem", "NaN", "inf", "complex",
                                                  "str", "10**400", "2-elem", "bool"]))
    intercept = float(rng.normal())
    if ikind == "int":
        intercept = int(rng.integers(-3, 3))
    elif ikind == "np.float32":
        intercept = np.float32(intercept)
    elif ikind == "0-d":
        intercept = np.array(intercept)
    elif ikind == "1-elem":
        intercept = np.array([intercept])
    elif ikind in ("NaN", "inf", "complex", "str", "10**400", "2-elem", "bool"):
        intercept = {"NaN": np.nan, "inf": np.inf, "complex": 1 + 2j, "str": "0.5", "10**400": 10**400,
                     "2-elem": np.array([1.0, 2.0]), "bool": True}[ikind]
        must_fail = must_fail or f"intercept {ikind}"
    return coef, intercept, must_fail


def _coef64(coef):
    c = np.asarray(coef, dtype=np.float64)
    return c[0] if c.ndim == 2 else c


def _intercept64(intercept):
    return float(np.asarray(intercept).reshape(()))


# ------------------------------------------------------------------------------------ the reference

def reference_scores(values, coef, intercept):
    """float64 log-odds, the scale |b| + sum |w x| of each row's sum, and which rows have NaN."""
    with np.errstate(all="ignore"):
        z = values @ coef + intercept
        scale = np.abs(values) @ np.abs(coef) + abs(intercept)
    nan_row = np.isnan(values).any(axis=1)
    return z, scale, nan_row


_TRANSFORM = {"log_odds": lambda t: t, "odds": safe_exp, "proba": sigmoid}


def check_scores(got, z, scale, nan_row, output, out_dtype, f32_sum=False, d=0):
    """``got`` is transform(z') for some z' within the summation slack of z, rounded to ``out_dtype``.
    ``f32_sum``: the kernel summed dense float32 features (d of them a row)."""
    expect(isinstance(got, np.ndarray) and got.shape == z.shape, f"result shape {getattr(got, 'shape', None)} != {z.shape}")
    expect(got.dtype == out_dtype, f"result dtype {got.dtype}, documented {out_dtype}")
    expect(np.array_equal(np.isnan(got), nan_row),
           f"NaN in rows {np.flatnonzero(np.isnan(got) != nan_row)[:5]}: a NaN result for finite features "
           f"(or a number for a NaN row)")
    ok = ~nan_row & np.isfinite(scale)  # an overflowing scale: the order of summation decides, any non-NaN is fine
    z, scale, got64 = z[ok], scale[ok], got[ok].astype(np.float64)
    with np.errstate(all="ignore"):
        slack = F32_SUM_RTOL * scale + d * F32_SUM_ATOL if f32_sum else SUM_RTOL * scale
        lo, hi = _TRANSFORM[output](z - slack), _TRANSFORM[output](z + slack)
        eps = float(np.finfo(out_dtype).eps) + (4.5e-16 if output != "log_odds" else 0.0)
        lo = np.where(lo >= 0, lo * (1 - eps), lo * (1 + eps))
        hi = np.where(hi >= 0, hi * (1 + eps), hi * (1 - eps))
        tiny = float(np.finfo(out_dtype).tiny)
        big = float(np.finfo(out_dtype).max)
        inside = (got64 >= lo - tiny) & (got64 <= hi + tiny)
        inside |= (got64 == np.inf) & (hi >= big)
        inside |= (got64 == -np.inf) & (lo <= -big)
    bad = np.flatnonzero(~inside)
    expect(bad.size == 0, f"{output}: row {bad[:3]} got {got64[bad[:3]]}, reference {z[bad[:3]]} (scale {scale[bad[:3]]})")


# ------------------------------------------------------------------------------------ score / Scorer

@st.composite
def score_cases(draw):
    d = draw(st.sampled_from([1, 2, 3, 5, 16]))
    feats = draw(features(d=d))
    coef, intercept, coef_fail = draw(coefficients(d))
    output = draw(st.sampled_from(["odds", "log_odds", "proba"] * 4 + ["probability", None]))
    n_threads = draw(st.sampled_from([None, 1, 2, -1] * 3 + [0, 1.5, "2", 10**6, -100]))
    dtype = draw(st.sampled_from([None] * 8 + [np.float32, np.float64, "f4", np.int32, np.float16]))
    out_kind = draw(st.sampled_from(["none"] * 10 + ["ok", "ok", "wrong dtype", "wrong shape", "list", "readonly",
                                                     "strided", "overlaps X", "overlaps coef"]))
    backend = draw(st.sampled_from(BACKENDS * 3 + [None, None, "fortran"]))
    return dict(feats=feats, coef=coef, intercept=intercept, coef_fail=coef_fail, output=output, n_threads=n_threads,
                dtype=dtype, out_kind=out_kind, backend=backend)


def _n_rows(X):
    try:
        return len(X) if isinstance(X, list) else X.shape[0]
    except Exception:
        return 0


def _make_out(case, n, out_dtype):
    kind = case["out_kind"]
    if kind == "none":
        return None, None
    dt = out_dtype or np.float64
    if kind == "ok":
        return np.full(n, -7.0, dtype=dt), None
    if kind == "wrong dtype":
        return np.zeros(n, dtype=np.int64), "out of dtype int64"
    if kind == "wrong shape":
        return np.zeros(n + 1, dtype=dt), "out of the wrong shape"
    if kind == "list":
        return [0.0] * n, "out as a list"
    if kind == "readonly":
        o = np.zeros(n, dtype=dt)
        o.flags.writeable = False
        return o, "read-only out"
    if kind == "strided":
        return np.zeros(2 * n, dtype=dt)[::2], "strided out" if n > 1 else None
    if kind == "overlaps X":
        X = case["feats"].X
        if isinstance(X, np.ndarray) and X.dtype == dt and X.flags.c_contiguous and X.flags.writeable and X.size >= n > 0:
            return X.reshape(-1)[-n:], "out overlapping X"
        return np.zeros(n, dtype=dt), None
    if kind == "overlaps coef":
        c = case["coef"]
        if isinstance(c, np.ndarray) and c.dtype == dt and c.ndim == 1 and c.shape[0] == n and n > 0:
            return c, "out overlapping coef"
        return np.zeros(n, dtype=dt), None
    raise AssertionError(kind)


def _expected_dtype(case):
    """The documented result dtype (None: the arguments are rejected)."""
    output, dtype = case["output"], case["dtype"]
    if dtype is not None:
        dtype = np.dtype(dtype)
        return dtype if dtype in (np.float32, np.float64) else None
    fd = case["feats"].float_dtype
    if fd is None:
        return np.dtype(np.float64)
    return np.dtype(np.float64) if output == "odds" else fd


def _score_must_fail(case, out_fail):
    f = case["feats"]
    reasons = [f.must_fail, case["coef_fail"], out_fail]
    if case["output"] not in ("odds", "log_odds", "proba"):
        reasons.append(f"output={case['output']!r}")
    nt = case["n_threads"]
    if nt is not None and (isinstance(nt, (float, str)) or nt == 0):
        reasons.append(f"n_threads={nt!r}")
    if case["dtype"] is not None and np.dtype(case["dtype"]) not in (np.float32, np.float64):
        reasons.append(f"dtype={case['dtype']}")
    if case["backend"] == "fortran":
        reasons.append("backend='fortran'")
    return next((r for r in reasons if r), None)


def _kw(case, out):
    kw = dict(output=case["output"], n_threads=case["n_threads"], out=out, dtype=case["dtype"], backend=case["backend"])
    if case["output"] is None or case.get("output_default"):
        del kw["output"]
    return kw


def run_score(case):
    f = case["feats"]
    n = _n_rows(f.X)
    if case["output"] is None:
        case = dict(case, output="odds")  # the default (left out of the call by _kw)
        case["output_default"] = True
    out_dtype = _expected_dtype(case)
    out, out_fail = _make_out(case, n, out_dtype)
    must_fail = _score_must_fail(case, out_fail)
    inputs = {"X": f.X, "coef": case["coef"], "intercept": case["intercept"]}
    got, error = call_checked(lambda: fastwlr.score(f.X, case["coef"], case["intercept"], **_kw(case, out)),
                              inputs, must_fail=must_fail, skip_unchanged=("X",) if case["out_kind"] == "overlaps X" else ())
    if error is not None:
        return
    expect(out is None or got is out, "out= given, but the result is another array")
    z, scale, nan_row = reference_scores(f.values, _coef64(case["coef"]), _intercept64(case["intercept"]))
    # a row whose terms overflow (inf - inf: a NaN reference) must be an error or a number, never a
    # NaN (check_scores); which, depends on rounding: with fused multiply-adds -1.8e308 + inf is inf
    f32_sum = not sp.issparse(f.X) and f.float_dtype == np.float32
    check_scores(got, z, scale, nan_row, case["output"], out_dtype if out is None else out.dtype,
                 f32_sum=f32_sum, d=f.values.shape[1] if f.values.ndim == 2 else 0)
    if case["n_threads"] not in (1,) and case["out_kind"] == "none":  # the thread count never changes a bit
        again = fastwlr.score(f.X, case["coef"], case["intercept"], **dict(_kw(case, None), n_threads=1))
        expect(np.array_equal(again, got, equal_nan=True), "the result depends on n_threads")


def run_scorer(case):
    """Scorer(...)(X) is score(X, ...) exactly, or both are rejected."""
    f = case["feats"]
    kw = _kw(case, None)
    kw.pop("out")

    def both():
        scorer = fastwlr.Scorer(case["coef"], case["intercept"], **kw)
        return scorer(f.X)
    inputs = {"X": f.X, "coef": case["coef"]}
    got, error = call_checked(both, inputs)
    want, want_error = call_checked(lambda: fastwlr.score(f.X, case["coef"], case["intercept"], **kw), inputs)
    expect((error is None) == (want_error is None),
           f"Scorer and score disagree on whether to reject: {error!r} vs {want_error!r}")
    if error is None:
        expect(got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True), "Scorer(...)(X) != score(X, ...)")


# ------------------------------------------------------------------------------------ top-k

def fitted_objective(X, y, w, est, alpha):
    """The estimators' objective at a fitted model, by the numpy reference (not the kernels that drove
    the solvers): sum_i w_i l_i / sum_i w_i + (alpha / 2) ||coef||^2."""
    from fastwlr.backends import reference as ref
    w_norm = w * (len(w) / w.sum())
    coef, b = est.coef_[0], float(est.intercept_[0])
    if sp.issparse(X):
        X = sp.csr_array(X)
        return ref.objective_grad_csr(X.data, X.indices, X.indptr, X.shape[1], y, w_norm, coef, b, alpha)[0]
    return ref.objective_grad_dense(X, y, w_norm, coef, b, alpha)[0]


def brute_topk(scores, offsets, k, exclude=None):
    """Each group sorted by (-score, index); -1 / -inf padding."""
    scores = np.asarray(scores)
    G = len(offsets) - 1
    idx = np.full((G, k), -1, dtype=np.int64)
    val = np.full((G, k), -np.inf, dtype=scores.dtype)
    for g in range(G):
        pos = [i for i in range(offsets[g], offsets[g + 1]) if exclude is None or not exclude[i]]
        best = sorted(pos, key=lambda i: (-scores[i], i))[:k]
        idx[g, :len(best)] = best
        val[g, :len(best)] = scores[best]
    return idx, val


@st.composite
def offsets_for(draw, n):
    """(offsets, as_int64 or None if invalid, must_fail)."""
    kind = draw(st.sampled_from(["none", "none", "ok", "ok", "ok", "one group", "empty groups", "not from 0",
                                 "not to n", "decreasing", "float", "2-D", "empty", "int32"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    cuts = np.sort(rng.integers(0, n + 1, size=int(rng.integers(0, 5))))
    good = np.concatenate([[0], cuts, [n]]).astype(np.int64)
    if kind == "none":
        return None, np.array([0, n]), None
    if kind in ("ok", "int32"):
        return good.astype(np.int32 if kind == "int32" else np.int64), good, None
    if kind == "one group":
        return [0, n], np.array([0, n]), None
    if kind == "empty groups":
        e = np.concatenate([[0, 0], good[1:], [n, n]])
        return e, e, None
    if kind == "not from 0":
        return np.r_[1, good[1:]] if n else np.array([1]), None, "offsets not starting at 0"
    if kind == "not to n":
        return np.r_[good[:-1], n + 1], None, "offsets not ending at n"
    if kind == "decreasing" and n >= 2:
        return np.array([0, n, 1, n]), None, "decreasing offsets"
    if kind == "float":
        return good.astype(float), None, "float offsets"
    if kind == "2-D":
        return good[None, :], None, "2-D offsets"
    if kind == "empty":
        return np.zeros(0, np.int64), None, "empty offsets"
    return good, good, None


K_VALUES = [1, 1, 2, 3, 5, 10, 40, 0, -1, 2.0, True, np.int64(3), np.uint8(2), 2**40, 2**63, "3", None]


def _k_fail(k):
    if k is None or isinstance(k, (bool, np.bool_, float, str)) or int(k) < 1:
        return f"k={k!r}"
    return None


@st.composite
def topk_cases(draw):
    n = draw(st.sampled_from([0, 1, 2, 5, 9, 40]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = draw(st.sampled_from([[0.0, 1.0], [-np.inf, 0.0, np.inf], [-0.0, 0.0, 2.5], None]))
    scores = rng.choice(np.array(pool), size=n) if pool else rng.normal(size=n)
    dtype = draw(st.sampled_from([np.float64, np.float32, np.float16, np.int64, np.bool_, ">f8", complex, object]))
    with np.errstate(invalid="ignore", over="ignore"):
        scores = scores.astype(dtype) if np.dtype(dtype).kind != "i" else np.nan_to_num(scores, posinf=9, neginf=-9).astype(dtype)
    fail = None if np.dtype(dtype).kind in "biuf" else f"scores of dtype {np.dtype(dtype)}"
    if draw(st.booleans()) and n and np.dtype(dtype).kind == "f":
        scores[int(rng.integers(0, n))] = np.nan
        fail = fail or "a NaN score"
    offsets, off64, off_fail = draw(offsets_for(n))
    k = draw(st.sampled_from(K_VALUES))
    layout = draw(st.sampled_from(["C", "C", "strided", "list", "2-D"]))
    if layout == "strided":
        s2 = np.zeros(2 * n, dtype=scores.dtype)
        s2[::2] = scores
        given = s2[::2]
    elif layout == "list":  # Python numbers: float64, bool or int (object of floats included)
        given = scores.tolist()
        scores = np.asarray(given)
        fail = None if scores.dtype.kind in "biuf" else f"scores of dtype {scores.dtype}"
        if fail is None and scores.dtype.kind == "f" and np.isnan(scores).any():
            fail = "a NaN score"
    elif layout == "2-D":
        given, fail = scores[None, :], fail or "2-D scores"
    else:
        given = scores
    return dict(scores=given, values=scores, offsets=offsets, off64=off64, k=k,
                must_fail=fail or off_fail or _k_fail(k), n_threads=draw(st.sampled_from([None, 1, 2])),
                backend=draw(st.sampled_from(BACKENDS + [None])))


def _huge_k_ok(k, off64):
    """A huge k is rejected when its padding would be absurd (documented: beyond 2**28 entries)."""
    G = len(off64) - 1
    largest = int(np.diff(off64).max()) if G else 0
    return not (k > largest and G * k > (1 << 28))


def run_topk(case):
    inputs = {"scores": case["scores"], "offsets": case["offsets"]}
    must_fail = case["must_fail"]
    if must_fail is None and not _huge_k_ok(int(case["k"]), case["off64"]):
        must_fail = f"k={case['k']} (absurd padding)"
    got, error = call_checked(lambda: fastwlr.topk(case["scores"], case["k"], offsets=case["offsets"],
                                                   n_threads=case["n_threads"], backend=case["backend"]),
                              inputs, must_fail=must_fail)
    if error is not None:
        return
    idx, val = got
    scores = case["values"]
    want_dtype = _float_of(scores.dtype)
    expect(val.dtype == want_dtype, f"top-k values of dtype {val.dtype}, documented {want_dtype}")
    ei, ev = brute_topk(scores.astype(want_dtype), case["off64"], int(case["k"]))
    expect(idx.dtype == np.int64 and np.array_equal(idx, ei), f"top-k indices {idx.tolist()} != {ei.tolist()}")
    expect(np.array_equal(val, ev), "top-k values differ from the scores at those indices")


@st.composite
def score_topk_cases(draw):
    case = draw(score_cases())
    n = _n_rows(case["feats"].X)
    offsets, off64, off_fail = draw(offsets_for(n))
    exclude = draw(st.sampled_from([None, None, "mask", "int mask", "wrong length"]))
    return dict(case, offsets=offsets, off64=off64, off_fail=off_fail, k=draw(st.sampled_from(K_VALUES)),
                exclude=exclude, seed=draw(st.integers(0, 2**16)))


def run_score_topk(case):
    """score_topk(X, ...) is topk(score(X, ...)) bit for bit (documented), or both are rejected;
    and when it returns, it is the brute-force top-k of the reference scores."""
    f = case["feats"]
    n = _n_rows(f.X)
    rng = np.random.default_rng(case["seed"])
    exclude = {None: None, "mask": rng.random(n) < 0.3, "int mask": (rng.random(n) < 0.3).astype(int),
               "wrong length": np.zeros(n + 1, bool)}[case["exclude"]]
    kw = _kw(case, None)
    for unused in ("out", "dtype"):
        kw.pop(unused)
    inputs = {"X": f.X, "coef": case["coef"], "offsets": case["offsets"]}
    got, error = call_checked(lambda: fastwlr.score_topk(f.X, case["coef"], case["intercept"], case["k"],
                                                         offsets=case["offsets"], exclude=exclude, **kw), inputs)

    def composed():
        # documented: ranking is by the float64 log-odds (so saturated odds keep their order), the
        # values are the output's scores of the winners
        z = fastwlr.score(f.X, case["coef"], case["intercept"], **dict(kw, output="log_odds"), dtype=np.float64)
        s = fastwlr.score(f.X, case["coef"], case["intercept"], **kw)
        ex = None
        if exclude is not None:
            ex = np.asarray(exclude)
            if ex.dtype != bool or ex.shape != (n,):
                raise ValueError("exclude")
        idx, _ = fastwlr.topk(z, case["k"], offsets=case["offsets"], n_threads=1)
        if ex is not None:
            if np.isnan(z[~ex]).any():
                raise ValueError("NaN")
            idx, _ = brute_topk(np.where(ex, 0.0, z), case["off64"], idx.shape[1], exclude=ex)
        val = np.where(idx >= 0, s[np.maximum(idx, 0)] if n else np.zeros(idx.shape, s.dtype), -np.inf).astype(s.dtype)
        return idx, val
    want, want_error = call_checked(composed, inputs)
    if error is None and want_error is not None and exclude is not None and f.values is not None:
        # documented: excluded rows are not read, so a NaN or inf in them is not reported
        bad_rows = ~np.isfinite(f.values).all(axis=1)
        ex = np.asarray(exclude)
        if ex.dtype == bool and ex.shape == (n,) and bad_rows.any() and not (bad_rows & ~ex).any():
            return
    expect((error is None) == (want_error is None),
           f"score_topk and topk(score()) disagree on whether to reject: {error!r} vs {want_error!r}")
    if error is None:
        wi, wv = want
        gi, gv = got
        expect(np.array_equal(gi, wi), f"score_topk indices {gi.tolist()} != topk(score()) {wi.tolist()}")
        expect(gv.dtype == wv.dtype and np.array_equal(gv, wv), "score_topk values != topk(score()) values")


# ------------------------------------------------------------------------------------ estimators

@st.composite
def labels_and_weights(draw, n, watch_time=False):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    fail = None
    if watch_time:
        kind = draw(st.sampled_from(["ok"] * 6 + ["negative", "NaN", "inf", "all zero", "all positive", "huge",
                                                  "tiny", "2-D column", "wrong length", "strings"]))
        y = np.where(rng.random(n) < 0.4, rng.lognormal(3, 2, size=n), 0.0)
        if n >= 2:
            y[0], y[1] = 0.0, 5.0
        if kind == "negative" and n:
            y[0], fail = -1.0, "a negative watch time"
        elif kind == "NaN" and n:
            y[-1], fail = np.nan, "a NaN watch time"
        elif kind == "inf" and n:
            y[-1], fail = np.inf, "an inf watch time"
        elif kind == "all zero":
            y, fail = np.zeros(n), "no clicked impression"
        elif kind == "all positive":
            y, fail = np.full(n, 3.0), "no impression without a click"
        elif kind == "huge":
            y = y * 1e300
        elif kind == "tiny":
            y = y * 1e-310
        elif kind == "2-D column":
            y = y[:, None]
        elif kind == "wrong length":
            y, fail = np.r_[y, 1.0], "watch_time of the wrong length"
        elif kind == "strings":
            y, fail = y.astype(str), "string watch times"
    else:
        kind = draw(st.sampled_from(["ok"] * 5 + ["bool", "pm1", "strings", "one class", "three classes", "NaN",
                                                  "float 0.5", "wrong length"]))
        y = (rng.random(n) < 0.4).astype(np.int64)
        if n >= 2:
            y[0], y[1] = 0, 1
        if kind == "bool":
            y = y.astype(bool)
        elif kind == "pm1":
            y = 2 * y - 1
        elif kind == "strings":
            y = np.where(y == 1, "click", "skip")
        elif kind == "one class":
            y, fail = np.zeros(n, int), "a single class"
        elif kind == "three classes" and n >= 3:
            y = y.copy()
            y[2], fail = 2, "three classes"
        elif kind == "NaN" and n:
            y, fail = y.astype(float), "a NaN label"
            y[-1] = np.nan
        elif kind == "float 0.5" and n >= 3:
            y = y.astype(float)
            y[2], fail = 0.5, "a label 0.5 (a third class)"
        elif kind == "wrong length":
            y, fail = np.r_[y, 1], "y of the wrong length"
    wkind = draw(st.sampled_from(["none"] * 4 + ["ok", "heavy", "zeros", "negative", "NaN", "inf", "1e308",
                                                  "subnormal", "wrong length", "2-D", "all zero"]))
    w = None
    if wkind == "ok":
        w = rng.random(n) + 0.5
    elif wkind == "heavy":
        w = rng.pareto(0.8, size=n) * 1000 + 1
    elif wkind == "zeros":
        w = np.where(rng.random(n) < 0.3, 0.0, 1.0)
        if n >= 2:
            w[:2] = 1.0
    elif wkind == "negative" and n:
        w = np.ones(n)
        w[0], fail = -1.0, fail or "a negative weight"
    elif wkind == "NaN" and n:
        w = np.ones(n)
        w[0], fail = np.nan, fail or "a NaN weight"
    elif wkind == "inf" and n:
        w = np.ones(n)
        w[0], fail = np.inf, fail or "an inf weight"
    elif wkind == "1e308":
        w = np.full(n, 1e308)
    elif wkind == "subnormal":
        w = np.full(n, 1e-315)
    elif wkind == "wrong length":
        w, fail = np.ones(n + 1), fail or "sample_weight of the wrong length"
    elif wkind == "2-D":
        w, fail = np.ones((n, 1)), fail or "2-D sample_weight"
    elif wkind == "all zero":
        w, fail = np.zeros(n), fail or "all-zero weights"
    return y, w, fail


ESTIMATOR_PARAMS = [
    {}, {"solver": "lbfgs"}, {"solver": "lbfgs", "alpha": 1e-2}, {"optimizer": "ftrl", "l1_ratio": 0.5},
    {"weighting": "gradient"}, {"weighting": "resample"}, {"optimizer": "sgd", "learning_rate": "constant"},
    {"average": True}, {"max_iter": 3}, {"fit_intercept": False},
    {"alpha": -1.0}, {"alpha": np.nan}, {"solver": "newton-magic"}, {"max_iter": 0}, {"l1_ratio": 2.0},
    {"n_threads": 0}, {"tol": -1.0}, {"weighting": "nope"},
    {"solver": "newton"}, {"solver": "newton", "alpha": 0.0, "fit_intercept": False},
]
_BAD_PARAM = {10: "alpha=-1", 11: "alpha=NaN", 12: "solver", 13: "max_iter=0", 14: "l1_ratio=2", 15: "n_threads=0",
              16: "tol=-1", 17: "weighting='nope'"}


@st.composite
def estimator_cases(draw):
    ranker = draw(st.booleans())
    n = draw(st.sampled_from([0, 1, 2, 5, 20, 60]))
    d = draw(st.sampled_from([1, 3, 8]))
    feats = draw(features(n=n, d=d))
    y, w, yfail = draw(labels_and_weights(n, watch_time=ranker))
    p = draw(st.integers(0, len(ESTIMATOR_PARAMS) - 1))
    return dict(ranker=ranker, feats=feats, y=y, w=w, yfail=yfail, params=dict(ESTIMATOR_PARAMS[p], random_state=0),
                pfail=_BAD_PARAM.get(p), method=draw(st.sampled_from(["fit", "fit", "partial_fit"])),
                k=draw(st.sampled_from([1, 3, 0])))


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def run_estimator(case):
    """fit/partial_fit then predict*, rank, save/load: documented errors, or a finite model whose
    predictions are score() of its coefficients and survive a save/load round trip bit for bit."""
    f = case["feats"]
    cls = fastwlr.WatchTimeRanker if case["ranker"] else fastwlr.WeightedLogisticRegression
    est = cls(**case["params"])
    n = _n_rows(f.X)
    fmust_fail = f.must_fail
    if isinstance(f.X, np.ndarray) and f.X.dtype == object and f.X.ndim == 2:
        fmust_fail = None  # estimators turn object arrays of numbers into float64 (scikit-learn's convention)
        if not np.isfinite(f.X.astype(np.float64)).all():
            fmust_fail = "non-finite features in training data"
    must_fail = fmust_fail or case["yfail"] or case["pfail"] or (n == 0 and "X with 0 rows")
    if must_fail is None and f.values is not None and np.isnan(f.values).any():
        must_fail = "NaN features in training data"
    inputs = {"X": f.X, "y": case["y"], "sample_weight": case["w"]}

    if not hasattr(est, case["method"]):  # partial_fit exists only for SGD (scikit-learn's available_if)
        expect(case["method"] == "partial_fit" and est.get_params()["solver"] != "sgd",
               f"{case['method']} is missing")
        return

    def fit():
        if case["method"] == "partial_fit" and not case["ranker"]:
            return est.partial_fit(f.X, case["y"], sample_weight=case["w"], classes=[0, 1]
                                   if np.asarray(case["y"]).dtype.kind in "iubf" else None)
        return getattr(est, case["method"])(f.X, case["y"], sample_weight=case["w"])
    labels = np.asarray(case["y"])
    if not case["ranker"] and case["method"] == "partial_fit" and labels.dtype.kind not in "iubf":
        must_fail = must_fail or None  # string classes without classes=: documented error, or accepted on the first call
    one_sided = ("a single class", "no clicked impression", "no impression without a click")
    if case["method"] == "partial_fit" and must_fail in one_sided:
        must_fail = None  # a chunk of a stream may hold one label only
    got, error = call_checked(fit, inputs, must_fail=must_fail)
    if error is not None:
        return
    expect(got is est, "fit did not return self")
    coef = np.asarray(est.coef_).reshape(-1)
    expect(np.isfinite(coef).all() and np.isfinite(est.intercept_).all(), "fit returned non-finite coefficients")
    X = f.X
    z = est.decision_function(X)
    Xs = X.astype(np.float64) if isinstance(X, np.ndarray) and X.dtype == object else X  # score() takes no object arrays
    want = fastwlr.score(Xs, coef, float(np.asarray(est.intercept_).reshape(-1)[0]), output="log_odds", dtype=np.float64)
    expect(np.array_equal(np.asarray(z, dtype=np.float64), want, equal_nan=True) or np.allclose(z, want, rtol=1e-6),
           "decision_function != score(X, coef_, intercept_)")
    pred = est.predict(X)
    expect(np.asarray(pred).shape[0] == n, "predict returned the wrong number of rows")
    got, error = call_checked(lambda: est.rank(X, case["k"]), {"X": X}, must_fail=f"k={case['k']}" if case["k"] < 1 else None)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        est.save(path)
        again = fastwlr.load(path)
        expect(_same(again.predict(X), pred),
               "a saved and loaded model predicts differently")


# ------------------------------------------------------------------------------------ metrics

@st.composite
def metric_cases(draw):
    name = draw(st.sampled_from(["log_loss", "weighted_log_loss", "auc", "weighted_auc", "weighted_per_user_loss",
                                 "grouped_auc", "xauc", "ndcg", "mae", "rmse", "calibration_table"]))
    n = draw(st.sampled_from([0, 1, 2, 3, 7, 30]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    T = np.where(rng.random(n) < 0.4, rng.lognormal(2, 2, size=n), 0.0)
    if draw(st.booleans()):
        T = np.round(T)  # ties
    s = rng.normal(size=n) * draw(st.sampled_from([1.0, 1e-8, 1e3]))
    if draw(st.booleans()):
        s = np.round(s)
    fail = None
    skind = draw(st.sampled_from(["ok"] * 5 + ["NaN", "inf", "huge", "wrong length", "2-D", "object"]))
    if skind == "NaN" and n:
        s[0], fail = np.nan, "a NaN score"
    elif skind == "inf" and n:
        s[0] = np.inf
    elif skind == "huge":
        s = s * 1e300
    elif skind == "wrong length":
        s, fail = np.r_[s, 0.0], "y_score of the wrong length"
    elif skind == "2-D":
        s, fail = s[None, :], "2-D y_score"
    elif skind == "object":
        s, fail = s.astype(object), "object y_score"
    wkind = draw(st.sampled_from(["none", "none", "ok", "1e308", "1e200", "zeros", "all zero", "negative", "subnormal"]))
    w = {"none": None, "ok": rng.random(n) + 0.1, "1e308": np.full(n, 1e308), "1e200": np.full(n, 1e200),
         "zeros": (rng.random(n) < 0.7).astype(float), "all zero": np.zeros(n), "negative": -np.ones(n),
         "subnormal": np.full(n, 1e-320)}[wkind]
    if wkind == "negative" and n and name != "ndcg":  # ndcg takes no weights
        fail = fail or "negative weights"
    offsets, off64, off_fail = draw(offsets_for(n))
    return dict(name=name, T=T, s=s, w=w, fail=fail, offsets=offsets, off64=off64, off_fail=off_fail, wkind=wkind)


def _norm_w(w, n):
    w = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
    m = w.max() if w.size else 1.0
    return w / m if m > 0 else w


def _brute_auc(y, s, w):
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    num = den = 0.0
    for i in pos:
        for j in neg:
            ww = w[i] * w[j]
            den += ww
            num += ww * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
    return num / den if den > 0 else np.nan


def run_metric(case):
    """Every metric: documented errors, or a value; log-loss, AUC, MAE and RMSE also against a
    float64 reference with the weights scaled first (weights of 1e308 must not overflow)."""
    name, T, s, w = case["name"], case["T"], case["s"], case["w"]
    fn = getattr(metrics, name)
    y = (T > 0).astype(np.int64)
    kw = {} if w is None or name == "ndcg" else {"sample_weight": w}
    args = {"log_loss": (y, s), "weighted_log_loss": (T, s), "auc": (y, s), "weighted_auc": (T, s),
            "weighted_per_user_loss": (T, s, case["offsets"]), "grouped_auc": (y, s, case["offsets"]),
            "xauc": (T, s), "ndcg": (T, s), "mae": (T, s), "rmse": (T, s), "calibration_table": (T, s)}[name]
    if name in ("weighted_per_user_loss", "grouped_auc") and case["offsets"] is None:
        args = args[:2] + (np.array([0, len(T)]),)
    inputs = {"T": T, "s": s, "w": w}
    got, error = call_checked(lambda: fn(*args, **kw), inputs, must_fail=case["fail"])
    if error is not None:
        return
    n = len(T)
    wn = _norm_w(w, n)
    with np.errstate(all="ignore"):
        if name == "log_loss" and wn.sum() > 0 and np.isfinite(s).all():
            ref = np.sum(wn * np.where(y == 1, softplus(-s), softplus(s))) / wn.sum()
            expect(np.isclose(got, ref, rtol=1e-9, atol=1e-300), f"log_loss {got} != reference {ref}")
        if name == "auc" and n <= 30:
            ref = _brute_auc(y, s, wn)
            expect((np.isnan(ref) and np.isnan(got)) or np.isclose(got, ref, rtol=1e-9),
                   f"auc {got} != brute force {ref}")
        if name in ("mae", "rmse") and wn.sum() > 0 and np.isfinite(s).all() and np.isfinite(T - s).all():
            e = np.abs(T - s)
            e = e / e.max() if e.max() > 0 else e
            scale = np.abs(T - s).max() if n else 0.0
            ref = (np.sum(wn * e) / wn.sum() if name == "mae" else np.sqrt(np.sum(wn * e * e) / wn.sum())) * scale
            expect(np.isclose(got, ref, rtol=1e-9), f"{name} {got} != reference {ref}")
    if np.ndim(got) == 0 and wn.sum() > 0 and n and np.isfinite(s).all() and name in ("log_loss", "mae", "rmse", "weighted_log_loss"):
        expect(np.isfinite(got), f"{name} returned {got} for finite input")


# ------------------------------------------------------------------------------------ datasets

@st.composite
def dataset_cases(draw):
    """Mostly valid settings (each parameter is bad about one time in six), extremes included."""
    def pick(good, bad):
        return draw(st.sampled_from(good)) if draw(st.integers(0, 5)) else draw(st.sampled_from(bad))
    sparse = draw(st.booleans())
    kw = dict(n_samples=pick([1, 2, 10, 50], [0, -1, 2.5, "10", True]), sparse=sparse,
              click_signal=pick([0.0, 1.0, 5.0, 1000.0], [-1.0, np.nan, np.inf]),
              watch_signal=pick([0.0, 0.5, 1000.0], [-1.0, np.inf]),
              click_rate=pick([0.05, 0.5, 0.999, 1e-9], [0.0, 1.0, 2.0, np.nan]),
              mean_watch_time=pick([60.0, 1e-6, 1e6], [0.0, -1.0, np.inf]),
              watch_time_distribution=pick(["lognormal", "gamma", "exponential", "pareto"], ["normal", None]),
              mean_request_size=pick([1.0, 20.0], [0.0, -5.0]),
              random_state=pick([0, 44, 2**31, None], [-1, "x", 1.5]),
              dtype=pick([np.float32, np.float64], [np.int32, "f2"]))
    if sparse:
        kw.update(n_hashed_features=pick([64, 2**10], [0, -1]), nnz_per_row=pick([1, 5, 40], [0, -2]),
                  n_features=pick([None], [8]))
    else:
        kw["n_features"] = pick([1, 2, 8], [0, -3, None, 2.0])
    return kw


def run_dataset(kw):
    """make_watch_time: documented errors, or finite ground truth consistent with the labels."""
    import inspect
    sig = inspect.signature(fastwlr.datasets.make_watch_time).parameters
    kw = {k: v for k, v in kw.items() if k in sig}
    got, error = call_checked(lambda: fastwlr.datasets.make_watch_time(**kw), {})
    if error is not None:
        return
    data = got
    n = data.X.shape[0]
    for field in ("watch_time", "p", "expected_watch_time"):
        arr = np.asarray(getattr(data, field))
        expect(arr.shape == (n,) and np.isfinite(arr).all(), f"make_watch_time({kw}).{field} is not finite")
    clicked = np.asarray(data.clicked).astype(bool)
    T = np.asarray(data.watch_time)
    expect(np.all(T[clicked] > 0) and np.all(T[~clicked] == 0), f"make_watch_time({kw}): a clicked row with T == 0 "
                                                                 "or an unclicked row with T > 0")
    expect(np.isfinite(data.coef).all() and np.isfinite(data.intercept), "non-finite true coefficients")
    off = np.asarray(data.offsets)
    expect(off[0] == 0 and off[-1] == n and np.all(np.diff(off) >= 0), "invalid request offsets")


# ------------------------------------------------------------------------------------ model files

_TEMPLATES = {}


def model_templates():
    """Bytes of valid model files: SGD and L-BFGS, classifier and ranker (click model included)."""
    if not _TEMPLATES:
        data = fastwlr.datasets.make_watch_time(300, 4, random_state=0)
        X, T = data.X, data.watch_time
        models = {"sgd": fastwlr.WeightedLogisticRegression(solver="sgd", random_state=0, max_iter=3).fit(X, (T > 0).astype(int)),
                  "lbfgs-ranker": fastwlr.WatchTimeRanker(solver="lbfgs", fit_click_model=True).fit(X, T),
                  "ftrl-avg": fastwlr.WatchTimeRanker(optimizer="ftrl", average=True, max_iter=2,
                                                      random_state=1).fit(X, T)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, est in models.items():
                buf = io.BytesIO()
                with tempfile.TemporaryDirectory() as tmp:
                    path = os.path.join(tmp, "m.npz")
                    est.save(path)
                    with open(path, "rb") as fh:
                        buf.write(fh.read())
                _TEMPLATES[name] = (buf.getvalue(), est.predict(X[:20]), X[:20])
    return _TEMPLATES


JSON_VALUES = [None, True, False, 0, -1, 1, 2, 10**20, 1e400, -1e-300, 0.5, "", "x", "sgd", [], [1], [[]], {}, {"a": 1},
               "nan", float("nan")]


def _members(raw):
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        return {name: z.read(name) for name in z.namelist()}


def _zip(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buf.getvalue()


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _edit_json(obj, rng, value):
    """Replace one randomly chosen value inside a JSON document."""
    if isinstance(obj, dict) and obj:
        key = list(obj)[int(rng.integers(0, len(obj)))]
        if rng.random() < 0.5 or not isinstance(obj[key], (dict, list)):
            obj[key] = value
        else:
            _edit_json(obj[key], rng, value)
    elif isinstance(obj, list) and obj:
        i = int(rng.integers(0, len(obj)))
        if rng.random() < 0.5 or not isinstance(obj[i], (dict, list)):
            obj[i] = value
        else:
            _edit_json(obj[i], rng, value)
    return obj


@st.composite
def model_file_cases(draw):
    return dict(template=draw(st.sampled_from(["sgd", "lbfgs-ranker", "ftrl-avg"])),
                mutation=draw(st.sampled_from(["flip", "flip", "truncate", "header value", "header value", "member array",
                                               "drop member", "extra member", "header not json", "plain npy",
                                               "huge header shape"])),
                seed=draw(st.integers(0, 2**32 - 1)), value=draw(st.sampled_from(range(len(JSON_VALUES)))))


def mutate_model(case):
    raw, _, _ = model_templates()[case["template"]]
    rng = np.random.default_rng(case["seed"])
    m = case["mutation"]
    if m == "flip":
        buf = bytearray(raw)
        for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 5))):
            buf[pos] = int(rng.integers(0, 256))
        return bytes(buf)
    if m == "truncate":
        return raw[:int(rng.integers(0, len(raw)))]
    members = _members(raw)
    if m == "header value":
        header = json.loads(str(np.load(io.BytesIO(members["header.npy"]))[()]))
        members["header.npy"] = _npy(np.array(json.dumps(_edit_json(header, rng, JSON_VALUES[case["value"]]))))
    elif m == "member array":
        name = sorted(n for n in members if n != "header.npy")[int(rng.integers(0, len(members) - 1))]
        choice = int(rng.integers(0, 6))
        arr = [np.zeros(0), np.full(3, np.nan), np.ones((2, 2)), np.array(["a"]), np.array(1 + 1j), np.arange(7)][choice]
        members[name] = _npy(arr)
    elif m == "drop member":
        name = sorted(members)[int(rng.integers(0, len(members)))]
        del members[name]
    elif m == "extra member":
        members["extra.npy"] = _npy(np.zeros(10))
    elif m == "header not json":
        members["header.npy"] = _npy(np.array(["{", "[" * 5000, "{\"format\": 1}", "null", "\"x\""][int(rng.integers(0, 5))]))
    elif m == "plain npy":
        return _npy(np.arange(5.0))
    elif m == "huge header shape":
        name = sorted(n for n in members if n != "header.npy")[0]
        b = io.BytesIO()
        np.lib.format.write_array_header_1_0(b, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
        members[name] = b.getvalue() + bytes(16)
    return _zip(members)


def run_model_file(case):
    """load: ModelFileError for a malformed file; a file that still loads predicts what was saved,
    and (for SGD) can continue training without an undocumented error."""
    data = mutate_model(case)
    _, expected, X = model_templates()[case["template"]]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            est = fastwlr.load(path)
        except ModelFileError as exc:
            expect(str(exc).strip(), "ModelFileError without a message")
            return
        except Exception as exc:  # noqa: BLE001
            raise Finding(f"load raised {type(exc).__name__} (documented: ModelFileError): {exc}") from exc
    got, error = call_checked(lambda: est.predict(X), {"X": X})
    expect(error is None, f"a model that loaded cannot predict: {error!r}")
    if case["mutation"] in ("flip", "truncate", "extra member"):
        # the zip CRC catches damage to what is read: what loads is what was saved
        expect(np.array_equal(got, expected), "a damaged file loaded and predicts something else")
    else:  # an edited header that still loads: a valid model (load checks every entry)
        expect(not np.isnan(np.asarray(got, dtype=np.float64)).any(), "a loaded model predicts NaN")


# ------------------------------------------------------------------------------------ registry

CASES = {"score": score_cases(), "Scorer": score_cases(), "topk": topk_cases(), "score_topk": score_topk_cases(),
         "estimator": estimator_cases(), "metrics": metric_cases(), "make_watch_time": dataset_cases(),
         "load": model_file_cases()}
RUN = {"score": run_score, "Scorer": run_scorer, "topk": run_topk, "score_topk": run_score_topk,
       "estimator": run_estimator, "metrics": run_metric, "make_watch_time": run_dataset, "load": run_model_file}


def run(name, case):
    RUN[name](case)
