"""Data for watch-time ranking: a generator with known ground truth, and real zero-inflated data.

``make_watch_time`` draws impressions from the generator model of docs/theory.md::

    p(x) = sigma(a.x + a0)            click probability
    m(x) = exp(c.x + c0)              mean watch time given a click
    T | click ~ log-normal or gamma with mean m(x)

so the weighted-LR log-odds are exactly linear, z*(x) = (a + c).x + (a0 + c0), and every row's
E[T | x] = p(x) m(x) is known. ``load_claims`` reads real data sets (found through ``data_dir=``
or ``$FASTWLR_DATA_DIR``): an event and a non-negative amount (a claim, a purchase) mapped onto the
same shape.
"""
import csv
import gzip
import io
import os
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from ._weights import watch_time_targets

__all__ = ["WatchTimeData", "make_watch_time", "ClaimsData", "load_claims", "claims_path", "CLAIMS_FILES"]

# Rows per chunk when a float64 temporary per row block is needed: 64k rows x 64 features x 8 bytes
# = 32 MiB, small enough to stay out of the way and large enough to amortise numpy call overhead.
_CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class WatchTimeData:
    """Impressions drawn by ``make_watch_time``, with the ground truth that generated them.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features) or scipy.sparse.csr_array
        Features (float32 or float64). Sparse: hashed one-hot-style, ``nnz_per_row`` distinct
        columns per row, sorted within each row.
    clicked : ndarray of bool, shape (n_samples,)
        Whether the impression was clicked (the label y).
    watch_time : ndarray of float64, shape (n_samples,)
        Seconds watched; 0.0 where not clicked, > 0 where clicked.
    offsets : ndarray of int64, shape (n_requests + 1,)
        Request boundaries: request g holds rows ``offsets[g]:offsets[g + 1]`` (ragged sizes).
    click_coef, click_intercept : ndarray (n_features,), float
        a and a0 of the click model p(x) = sigma(a.x + a0).
    watch_coef, watch_intercept : ndarray (n_features,), float
        c and c0 of the watch-time model m(x) = exp(c.x + c0).
    coef, intercept : ndarray (n_features,), float
        The true weighted-LR log-odds z*(x) = coef.x + intercept, i.e. a + c and a0 + c0.
    log_odds : ndarray of float64, shape (n_samples,)
        z*(x) per row, computed in float64 from ``X`` as stored.
    click_log_odds : ndarray of float64, shape (n_samples,)
        a.x + a0 per row: the click model's log-odds, for the exact correction
        E[T | x] = e^z (1 - p) with p = sigma(click_log_odds).
    p : ndarray of float64, shape (n_samples,)
        Click probability per row.
    expected_watch_time : ndarray of float64, shape (n_samples,)
        E[T | x] = p(x) m(x) per row (the quantity a watch-time ranker estimates).
    params : dict
        The generator's settings and what they achieved: ``expected_click_rate`` (mean of p over the
        rows: the requested click rate up to solver tolerance), ``expected_watch_time_given_click``
        (sum p m / sum p: the requested mean watch time), and the observed ``click_rate`` and
        ``mean_watch_time`` of this draw.
    """
    X: object
    clicked: np.ndarray
    watch_time: np.ndarray
    offsets: np.ndarray
    click_coef: np.ndarray
    click_intercept: float
    watch_coef: np.ndarray
    watch_intercept: float
    coef: np.ndarray
    intercept: float
    log_odds: np.ndarray
    click_log_odds: np.ndarray
    p: np.ndarray
    expected_watch_time: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_samples(self):
        return self.X.shape[0]

    @property
    def n_features(self):
        return self.X.shape[1]

    @property
    def y(self):
        """Labels as float64 0.0/1.0: the recipe's ``watch_time > 0``, i.e. ``clicked``."""
        return watch_time_targets(self.watch_time)[0]

    @property
    def sample_weight(self):
        """The recipe's weights: the watch time for clicked rows, 1.0 for the others."""
        return watch_time_targets(self.watch_time)[1]

    @property
    def mean_watch_time_given_click(self):
        """m(x) = E[T | click, x] = exp(c.x + c0) per row."""
        return np.exp(self.log_odds - self.click_log_odds)


def _check_random_state(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (Integral, np.random.SeedSequence)):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        # legacy RandomState: derive a Generator seed from it (reproducible given its state)
        return np.random.default_rng(random_state.randint(0, 2**32 - 1, size=4, dtype=np.uint64))
    raise TypeError(f"random_state must be None, an int or a numpy Generator, got {type(random_state).__name__}")


def _int_param(value, name, low):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _real_param(value, name, low=None, high=None, low_open=True, high_open=True):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or (low is not None and (value < low or low_open and value == low)) \
            or (high is not None and (value > high or high_open and value == high)):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must lie in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}, got {value}")
    return value


def _logsumexp(u):
    """log(sum(exp(u))) without overflow or underflow (u finite, not empty)."""
    top = float(u.max())
    return top + float(np.log(np.sum(np.exp(u - top))))


def _sigmoid(z):
    # branch on the sign (as fastwlr.backends._math.sigmoid): exp never sees a large positive argument
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _solve_intercept(s, rate):
    """a0 with mean(sigma(s + a0)) == rate, by safeguarded Newton on a monotone function.

    Solved on the generated rows, so the expected click rate of *this* sample is the requested one
    (to 1e-12 relative), not only the population's.
    """
    lo, hi = np.log(rate / (1 - rate)) - s.max() - 1.0, np.log(rate / (1 - rate)) - s.min() + 1.0
    a0 = float(np.log(rate / (1 - rate)) - np.median(s))
    for _ in range(100):
        p = _sigmoid(s + a0)
        f = p.mean() - rate
        if abs(f) <= 1e-12 * rate:
            break
        if f > 0:
            hi = a0
        else:
            lo = a0
        step = f / max(float(np.mean(p * (1 - p))), 1e-300)
        a0 = a0 - step
        if not lo < a0 < hi:  # Newton left the bracket: bisect instead
            a0 = 0.5 * (lo + hi)
    return a0


def _request_offsets(rng, n, mean_size):
    """Ragged request boundaries: sizes 1 + Poisson(mean_size - 1), the last one cut at n."""
    chunks, total = [], 0
    while total < n:
        k = int((n - total) / mean_size * 1.1) + 16
        sizes = 1 + rng.poisson(mean_size - 1.0, size=k)
        chunks.append(sizes)
        total += int(sizes.sum())
    ends = np.cumsum(np.concatenate(chunks))
    ends = ends[ends < n]
    return np.concatenate(([0], ends, [n])).astype(np.int64)


def _dense_features(rng, n, d, dtype):
    # standard normal features, generated directly in the target precision (float32 is ~2x faster)
    return rng.standard_normal((n, d), dtype=dtype)


def _sparse_features(rng, n, n_columns, nnz_per_row, dtype):
    """Hashed one-hot-style CSR: ``nnz_per_row`` categorical fields, field f hashed into its own
    block of ``n_columns // nnz_per_row`` columns, so the columns of a row are distinct and sorted.
    Category popularity is skewed (column = floor(B u^2) within the block): a few hot columns and a
    long tail, as with real ids. A quarter of the fields carry small real values (log-normal, around
    1: counts, dwell times), the rest are 1.0."""
    import scipy.sparse as sp
    block = n_columns // nnz_per_row
    idx_dtype = np.int32 if n_columns <= np.iinfo(np.int32).max else np.int64
    indices = np.empty((n, nnz_per_row), dtype=idx_dtype)
    data = np.ones((n, nnz_per_row), dtype=dtype)
    n_real = nnz_per_row // 4
    for f in range(nnz_per_row):  # one vector op per field; no per-row Python loop
        u = rng.random(n, dtype=np.float32 if block < 1 << 20 else np.float64)
        col = (u * u * block).astype(idx_dtype)
        np.minimum(col, block - 1, out=col)  # u*u*block rounds up to block when u is close to 1 in float32
        indices[:, f] = col + f * block
        if f < n_real:
            data[:, f] = np.exp(0.5 * rng.standard_normal(n, dtype=np.float32))
    indptr = np.arange(0, n * nnz_per_row + 1, nnz_per_row, dtype=idx_dtype if n * nnz_per_row <= np.iinfo(np.int32).max else np.int64)
    if indptr.dtype != idx_dtype:
        indices = indices.astype(indptr.dtype)
    return sp.csr_array((data.ravel(), indices.ravel(), indptr), shape=(n, n_columns))


def _two_dots(X, a, c, sparse):
    """(X a, X c) in float64, in row chunks so no float64 copy of X is ever made."""
    n = X.shape[0]
    if sparse:
        # every row has the same number of stored entries, laid out row-major: reshape, no scatter
        nnz_per_row = X.indptr[1] - X.indptr[0] if n else 0
        s_a = np.empty(n)
        s_c = np.empty(n)
        for start in range(0, n, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, n)
            lo, hi = start * nnz_per_row, stop * nnz_per_row
            vals = X.data[lo:hi].astype(np.float64).reshape(stop - start, nnz_per_row)
            cols = X.indices[lo:hi].reshape(stop - start, nnz_per_row)
            s_a[start:stop] = (vals * a[cols]).sum(axis=1)
            s_c[start:stop] = (vals * c[cols]).sum(axis=1)
        return s_a, s_c
    W = np.stack([a, c], axis=1)  # (d, 2): one pass over X for both products
    S = np.empty((n, 2))
    for start in range(0, n, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, n)
        S[start:stop] = X[start:stop].astype(np.float64) @ W
    return S[:, 0].copy(), S[:, 1].copy()


def make_watch_time(n_samples=100_000, n_features=None, *, sparse=False, n_hashed_features=2**20,
                    nnz_per_row=40, click_rate=0.05, mean_watch_time=60.0,
                    watch_time_distribution="lognormal", watch_time_shape=None,
                    click_signal=1.0, watch_signal=0.5, mean_request_size=20.0,
                    dtype=np.float32, random_state=None):
    """Generate clicked impressions with watch times, from a model whose answer is known.

    The click model p(x) = sigma(a.x + a0) and watch-time model m(x) = exp(c.x + c0) make the
    YouTube weighted logistic regression well specified: its population log-odds are
    z*(x) = (a + c).x + (a0 + c0), and E[T | x] = p(x) m(x) = e^z* (1 - p(x)).

    Parameters
    ----------
    n_samples : int, default=100_000
        Number of impressions (rows), >= 1.
    n_features : int, optional
        Dense features (default 64). Must be left as None when ``sparse=True``: the width is then
        ``n_hashed_features``.
    sparse : bool, default=False
        False: i.i.d. standard normal features. True: a CSR matrix of hashed one-hot-style
        features (``nnz_per_row`` categorical fields, field f in its own block of
        ``n_hashed_features // nnz_per_row`` columns; values 1.0, a quarter of fields small reals).
    n_hashed_features : int, default=2**20
        Columns of the sparse matrix.
    nnz_per_row : int, default=40
        Stored entries per sparse row (distinct columns, sorted).
    click_rate : float in (0, 1), default=0.05
        Mean click probability. a0 is solved numerically on the generated rows, so the *expected*
        click rate of this sample equals it; the observed rate varies by sampling.
    mean_watch_time : float > 0, default=60.0
        Mean watch time in seconds of a clicked impression, E[T | click]; c0 is set in closed form
        on the generated rows (c0 = log(target sum p / sum p e^(c.x))).
    watch_time_distribution : {"lognormal", "gamma"}, default="lognormal"
        Law of T given a click, with mean m(x) in both cases.
    watch_time_shape : float > 0, optional
        Log-normal: sigma of log T (default 1.0; heavy tail, a few watches 10-20x the mean).
        Gamma: shape k (default 1.0, the exponential law).
    click_signal, watch_signal : float >= 0, default=1.0 and 0.5
        Standard deviation across rows of a.x and of c.x: how much the features tell.
    mean_request_size : float >= 1, default=20.0
        Mean candidates per request; sizes are 1 + Poisson(mean - 1) (ragged).
    dtype : {np.float32, np.float64}, default=np.float32
        Feature dtype. The ground truth is computed in float64 from the features as stored.
    random_state : int, numpy Generator or None
        Seed; the same seed gives the same data.

    Returns
    -------
    WatchTimeData

    Examples
    --------
    >>> from fastwlr.datasets import make_watch_time
    >>> data = make_watch_time(10_000, 8, random_state=0)
    >>> data.X.shape, data.X.dtype, round(data.params["expected_click_rate"], 6)
    ((10000, 8), dtype('float32'), 0.05)
    """
    n = _int_param(n_samples, "n_samples", 1)
    sparse = bool(sparse)
    if sparse:
        if n_features is not None:
            raise ValueError("with sparse=True the width is n_hashed_features; leave n_features=None")
        nnz_per_row = _int_param(nnz_per_row, "nnz_per_row", 1)
        d = _int_param(n_hashed_features, "n_hashed_features", nnz_per_row)
    else:
        d = _int_param(64 if n_features is None else n_features, "n_features", 1)
    rate = _real_param(click_rate, "click_rate", 0.0, 1.0)
    mean_t = _real_param(mean_watch_time, "mean_watch_time", 0.0)
    if watch_time_distribution not in ("lognormal", "gamma"):
        raise ValueError(f"watch_time_distribution must be 'lognormal' or 'gamma', got {watch_time_distribution!r}")
    shape = _real_param(1.0 if watch_time_shape is None else watch_time_shape, "watch_time_shape", 0.0)
    click_signal = _real_param(click_signal, "click_signal", 0.0, low_open=False)
    watch_signal = _real_param(watch_signal, "watch_signal", 0.0, low_open=False)
    mean_request_size = _real_param(mean_request_size, "mean_request_size", 1.0, low_open=False)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    rng = _check_random_state(random_state)

    # True coefficients, scaled so that a.x and c.x have the requested spread across rows.
    if sparse:
        X = _sparse_features(rng, n, d, nnz_per_row, dtype)
        # a row sums nnz_per_row coefficients (values ~1): per-column sd = signal / sqrt(nnz)
        a = rng.standard_normal(d) * (click_signal / np.sqrt(nnz_per_row))
        c = rng.standard_normal(d) * (watch_signal / np.sqrt(nnz_per_row))
    else:
        X = _dense_features(rng, n, d, dtype)
        # x ~ N(0, I): sd of a.x is ||a||, so normalise the direction and scale it exactly
        a = rng.standard_normal(d)
        c = rng.standard_normal(d)
        a *= click_signal / np.linalg.norm(a)
        c *= watch_signal / np.linalg.norm(c)
    s_a, s_c = _two_dots(X, a, c, sparse)

    a0 = _solve_intercept(s_a, rate)
    p = _sigmoid(s_a + a0)
    # m = e^(c.x + c0) with sum p m / sum p = mean_t, solved in log space: with strong signals p
    # underflows to 0 on the rows where c.x is largest, and sum p e^(c.x - max c.x) underflowed to 0
    # (c0 = inf, then inf log-odds and NaN expected watch times)
    z_a = s_a + a0
    log_p = -(np.maximum(-z_a, 0.0) + np.log1p(np.exp(-np.abs(z_a))))  # log sigma(z_a), no underflow
    c0 = float(np.log(mean_t) + _logsumexp(log_p) - _logsumexp(log_p + s_c))
    log_m = s_c + c0
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        m = np.exp(log_m)  # inf only where a click is (all but) impossible

        clicked = rng.random(n) < p
        watch_time = np.zeros(n)
        mc = m[clicked]
        if watch_time_distribution == "lognormal":
            # log T ~ N(log m - shape^2/2, shape^2) has mean m
            watch_time[clicked] = mc * np.exp(shape * rng.standard_normal(mc.shape[0]) - 0.5 * shape * shape)
        else:
            watch_time[clicked] = rng.gamma(shape, mc / shape)
        expected = np.exp(log_p + log_m)  # p m, without 0 * inf
    # 0 < T < inf for every click: a draw with a small shape can underflow to 0.0, one in the far
    # tail of a huge mean overflow
    tiny, big = np.finfo(np.float64).tiny, np.finfo(np.float64).max
    watch_time[clicked] = np.clip(np.nan_to_num(watch_time[clicked], nan=tiny, posinf=big), tiny, big)
    offsets = _request_offsets(rng, n, mean_request_size)

    params = dict(
        n_samples=n, n_features=d, sparse=sparse, nnz_per_row=nnz_per_row if sparse else None,
        click_rate=rate, mean_watch_time=mean_t, watch_time_distribution=watch_time_distribution,
        watch_time_shape=shape, click_signal=click_signal, watch_signal=watch_signal,
        mean_request_size=mean_request_size, dtype=dtype.name,
        expected_click_rate=float(p.mean()),
        expected_watch_time_given_click=float(np.exp(_logsumexp(log_p + log_m) - _logsumexp(log_p))),
        click_rate_observed=float(clicked.mean()),
        mean_watch_time_observed=float(watch_time[clicked].mean()) if clicked.any() else float("nan"),
        n_requests=int(offsets.shape[0] - 1),
    )
    return WatchTimeData(
        X=X, clicked=clicked, watch_time=watch_time, offsets=offsets,
        click_coef=a, click_intercept=float(a0), watch_coef=c, watch_intercept=c0,
        coef=a + c, intercept=float(a0 + c0), log_odds=s_a + s_c + (a0 + c0), click_log_odds=s_a + a0, p=p,
        expected_watch_time=expected, params=params,
    )


# --------------------------------------------------------------------------------------------
# Real data: an event and a non-negative amount, mapped onto clicked / watch time.
# --------------------------------------------------------------------------------------------

# Per data set: file, the amount column, numeric feature columns with their transform, categorical
# columns. Columns that leak the event (claim counts, the event flag itself) are not features.
# Transforms: "log" for strictly positive heavy-tailed columns (exposure), "log1p" for heavy-tailed
# counts/durations/densities with zeros, None for the rest; then every numeric column is standardised.
CLAIMS_FILES = {
    "freMTPL2": dict(
        file="freMTPL2.csv.gz", amount="ClaimAmount",
        numeric={"Exposure": "log", "VehPower": None, "VehAge": "log1p", "DrivAge": None,
                 "BonusMalus": "log", "Density": "log"},
        categorical=["VehBrand", "VehGas", "Area", "Region"]),
    "dataCar": dict(
        file="dataCar.csv.gz", amount="claimcst0",
        numeric={"veh_value": "log1p", "exposure": "log", "veh_age": None, "agecat": None},
        categorical=["veh_body", "gender", "area"]),
    "norauto": dict(
        file="norauto.csv.gz", amount="ClaimAmount",
        numeric={"Male": None, "Young": None, "Expo": "log"},
        categorical=["DistLimit", "GeoRegion"]),
    "online_shoppers": dict(
        file="online_shoppers_intention.csv.gz", amount="ProductRelated_Duration", event="Revenue",
        numeric={"Administrative": "log1p", "Administrative_Duration": "log1p", "Informational": "log1p",
                 "Informational_Duration": "log1p", "ProductRelated": "log1p", "BounceRates": None,
                 "ExitRates": None, "PageValues": "log1p", "SpecialDay": None},
        categorical=["Month", "OperatingSystems", "Browser", "Region", "TrafficType", "VisitorType",
                     "Weekend"]),
}


@dataclass(frozen=True)
class ClaimsData:
    """A real zero-inflated data set in the watch-time shape.

    Attributes
    ----------
    name : str
    X : ndarray of float64, shape (n_samples, n_features)
        Standardised numeric columns (after a log transform where heavy-tailed) followed by one-hot
        categoricals; each categorical's most frequent level is the reference and has no column,
        so the design has full column rank together with an intercept.
    clicked : ndarray of bool
        ``amount > 0`` (the event: a claim with a cost, a session with a purchase).
    amount : ndarray of float64
        The watch-time stand-in; 0.0 where not clicked.
    feature_names : list of str
        ``"Column"`` for numeric, ``"Column=level"`` for one-hot columns.
    """
    name: str
    X: np.ndarray
    clicked: np.ndarray
    amount: np.ndarray
    feature_names: list

    @property
    def watch_time(self):
        return self.amount

    @property
    def y(self):
        """Labels as float64 0.0/1.0: the recipe's ``amount > 0``, i.e. ``clicked``."""
        return watch_time_targets(self.amount)[0]

    @property
    def sample_weight(self):
        """The recipe's weights: the amount for positives, 1.0 for negatives."""
        return watch_time_targets(self.amount)[1]


def _data_dir_candidates(data_dir):
    if data_dir is not None:
        return [Path(data_dir)]
    out = []
    for var in ("FASTWLR_DATA_DIR", "FASTWLR_SHARED_DATA"):
        if os.environ.get(var):
            out.append(Path(os.environ[var]))
    # <repo>/../shared/data, from the source tree and from the working directory (an installed
    # package lives in site-packages, where only the second can work)
    out.append(Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    out.append(Path.cwd().parent / "shared" / "data")
    out.append(Path.cwd() / "shared" / "data")
    return out


def claims_path(name="freMTPL2", data_dir=None):
    """Path of a real data file; FileNotFoundError listing where it looked."""
    if name not in CLAIMS_FILES:
        raise ValueError(f"name must be one of {sorted(CLAIMS_FILES)}, got {name!r}")
    fname = CLAIMS_FILES[name]["file"]
    tried = []
    for d in _data_dir_candidates(data_dir):
        path = d / fname
        tried.append(str(path))
        if path.is_file():
            return path
    raise FileNotFoundError(f"{fname} not found; looked in: {', '.join(tried)}. Pass data_dir= or set "
                            "FASTWLR_DATA_DIR to the directory holding the shared data sets.")


def _factorize(col):
    """codes (int64) and levels (sorted str) of a bytes column, via a dict (faster than np.unique)."""
    seen = {}
    codes = np.fromiter((seen.setdefault(v, len(seen)) for v in col.tolist()), dtype=np.int64, count=col.shape[0])
    levels = [k.decode() for k in seen]
    order = np.argsort(levels, kind="stable")   # levels sorted by name: independent of row order
    remap = np.empty(len(levels), dtype=np.int64)
    remap[order] = np.arange(len(levels))
    return remap[codes], [levels[i] for i in order]


def load_claims(name="freMTPL2", data_dir=None):
    """Load a real event-and-amount data set as features, ``clicked`` and an amount.

    Parameters
    ----------
    name : {"freMTPL2", "dataCar", "norauto", "online_shoppers"}
        freMTPL2: French motor claims (678k policies, 3.7 % with a claim cost); dataCar: Australian
        motor (68k, 6.8 %); norauto: Norwegian motor (184k, 4.6 %); online_shoppers: web sessions
        (12k; purchase sessions, amount = product-page dwell time in seconds).
    data_dir : str or Path, optional
        Directory holding the ``*.csv.gz`` files. Default: ``$FASTWLR_DATA_DIR``, else
        ``$FASTWLR_SHARED_DATA``, else ``../shared/data`` relative to the source tree or the
        working directory.

    Returns
    -------
    ClaimsData

    Raises
    ------
    FileNotFoundError
        When the file is in none of those places (the message lists them).
    """
    spec = CLAIMS_FILES.get(name)
    path = claims_path(name, data_dir)
    with gzip.open(path, "rt", newline="") as f:
        text = f.read()
    header = next(csv.reader([text[:text.index("\n")]]))
    col = {c: i for i, c in enumerate(header)}
    missing = [c for c in [spec["amount"], *spec["numeric"], *spec["categorical"], spec.get("event", spec["amount"])]
               if c not in col]
    if missing:
        raise ValueError(f"{path}: columns {missing} not found (header: {header})")
    numeric_cols = [spec["amount"], *spec["numeric"]]
    # numpy's C csv parser (no pandas): numeric columns as float64, categoricals as bytes
    num = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, dtype=np.float64,
                     usecols=[col[c] for c in numeric_cols], ndmin=2)
    cat_cols = list(spec["categorical"])
    if "event" in spec:
        cat_cols.append(spec["event"])
    cat = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, dtype="S",
                     usecols=[col[c] for c in cat_cols], ndmin=2)
    del text
    n = num.shape[0]
    amount = num[:, 0].copy()
    if "event" in spec:  # amount counts only when the event happened (a purchase session's dwell time)
        event = np.char.upper(cat[:, -1]) == b"TRUE"
        amount[~event] = 0.0
        cat = cat[:, :-1]
    if not np.isfinite(amount).all() or (amount < 0).any():
        raise ValueError(f"{path}: amounts must be finite and >= 0")
    clicked = amount > 0

    blocks, names = [], []
    for j, (cname, transform) in enumerate(spec["numeric"].items(), start=1):
        x = num[:, j]
        if transform == "log":
            x = np.log(np.maximum(x, np.finfo(np.float64).tiny))
        elif transform == "log1p":
            x = np.log1p(np.maximum(x, 0.0))
        sd = x.std()
        blocks.append(((x - x.mean()) / (sd if sd > 0 else 1.0))[:, None])
        names.append(cname)
    for j, cname in enumerate(spec["categorical"]):
        codes, levels = _factorize(cat[:, j])
        ref = int(np.argmax(np.bincount(codes, minlength=len(levels))))  # most frequent = reference
        keep = [k for k in range(len(levels)) if k != ref]
        onehot = np.zeros((n, len(keep)))
        pos = np.full(len(levels), -1)
        pos[keep] = np.arange(len(keep))
        rows = np.flatnonzero(codes != ref)
        onehot[rows, pos[codes[rows]]] = 1.0
        blocks.append(onehot)
        names.extend(f"{cname}={levels[k]}" for k in keep)
    X = np.ascontiguousarray(np.hstack(blocks))
    return ClaimsData(name=name, X=X, clicked=clicked, amount=amount, feature_names=names)
