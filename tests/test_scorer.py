"""fastwlr.Scorer: a prepared model gives exactly fastwlr.score's results and errors."""
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

import fastwlr
from fastwlr import Scorer
from fastwlr.backends._contract import F32_SUM_ATOL, F32_SUM_RTOL


@pytest.mark.parametrize("output", ["odds", "log_odds", "proba"])
@pytest.mark.parametrize("layout", ["f32", "f64", "fortran", "int", "csr", "list"])
def test_scorer_equals_score_bit_for_bit(backend_name, output, layout, rng):
    X = rng.standard_normal((257, 9))
    X = {"f32": X.astype(np.float32), "f64": X, "fortran": np.asfortranarray(X), "int": (X * 3).astype(int),
         "csr": sp.csr_matrix(np.where(np.abs(X) > 1, X, 0.0)), "list": X.tolist()}[layout]
    coef, b = rng.standard_normal(9), -0.3
    want = fastwlr.score(X, coef, b, output=output, backend=backend_name, n_threads=2)
    got = Scorer(coef, b, output=output, backend=backend_name, n_threads=2)(X)
    assert got.dtype == want.dtype
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), d=st.integers(1, 20), f32=st.booleans(), seed=st.integers(0, 2**16),
       output=st.sampled_from(["odds", "log_odds", "proba"]), scale=st.sampled_from([1e-3, 1.0, 100.0]))
def test_scorer_matches_the_reference_on_random_shapes(n, d, f32, seed, output, scale):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) * scale).astype(np.float32 if f32 else np.float64)
    coef = rng.standard_normal(d)
    got = Scorer(coef, 0.25, output=output)(X)
    ref = fastwlr.score(X, coef, 0.25, output=output, backend="reference")
    assert got.dtype == ref.dtype
    # the sum's bound (float32 X: the contract's), then odds and probability are 1-Lipschitz in
    # log scale (relative error e^dz - 1); each result rounded to its dtype
    scale = np.abs(X.astype(np.float64)) @ np.abs(coef) + 0.25
    dz = (F32_SUM_RTOL if f32 else 1e-12) * scale + d * F32_SUM_ATOL
    eps, sub = float(np.finfo(got.dtype).eps), float(np.finfo(got.dtype).smallest_subnormal)
    with np.errstate(invalid="ignore"):   # inf - inf: equal infinities pass by got == ref
        err = np.abs(got.astype(np.float64) - ref)
    tol = dz + 2 * eps * np.abs(ref) if output == "log_odds" else (np.expm1(dz) + 2 * eps) * np.abs(ref) + sub
    assert np.all((got == ref) | (err <= tol))


def test_the_model_is_copied_and_read_only(rng):
    coef = rng.standard_normal(4)
    X = rng.standard_normal((3, 4))
    scorer = Scorer(coef, 0.0)
    before = scorer(X)
    coef[:] = 0.0   # the caller's array changes; the scorer's model does not
    assert np.array_equal(scorer(X), before)
    assert not scorer.coef.flags.writeable and scorer.n_features == 4
    assert "n_features=4" in repr(scorer)


def test_out_and_dtype(rng):
    X = rng.standard_normal((5, 3)).astype(np.float32)
    scorer = Scorer(np.ones(3), output="log_odds")
    out = np.empty(5, np.float64)
    assert scorer(X, out=out) is out
    assert np.array_equal(out, fastwlr.score(X, np.ones(3), output="log_odds", dtype=np.float64))
    assert scorer(X).dtype == np.float32  # float32 in, float32 out, as score()
    with pytest.raises(TypeError, match="dtype=float32 conflicts"):
        Scorer(np.ones(3), dtype=np.float32)(X, out=out)
    with pytest.raises(ValueError, match="shape"):
        scorer(X, out=np.empty(4))


@pytest.mark.parametrize("bad, error, match", [
    (np.ones((2, 4)), ValueError, "X has 4 features, but the coefficients have 3"),
    (np.ones(3), ValueError, "2-D"),
    (np.array([[1.0, np.inf, 0.0]]), ValueError, "inf"),
    (np.array([["a", "b", "c"]]), TypeError, "real"),
    ("X", TypeError, "2-D numpy array"),
])
def test_bad_features_get_the_errors_of_score(bad, error, match):
    with pytest.raises(error, match=match):
        Scorer(np.ones(3))(bad)


def test_bad_models_are_rejected_once_at_construction():
    with pytest.raises(ValueError, match="coef contains NaN"):
        Scorer([1.0, np.nan])
    with pytest.raises(ValueError, match="intercept must be finite"):
        Scorer([1.0], np.inf)
    with pytest.raises(ValueError, match="output must be one of"):
        Scorer([1.0], output="expected")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        Scorer([1.0], dtype=np.int32)


def test_the_fast_path_takes_only_what_check_features_would_pass_unchanged(rng):
    from fastwlr import _validation as v
    X = rng.standard_normal((4, 3))
    f = v.dense_fast_path(X)
    assert f is not None and f.X is X and f.n_rows == 4 and f.n_features == 3
    for other in (X.astype(">f8"), np.asfortranarray(X), X[:, ::2], X.astype(np.int64), X.view(np.matrix),
                  X.tolist(), X[0]):
        assert v.dense_fast_path(other) is None


@pytest.mark.parametrize("dtype", [None, np.float32])
def test_a_scorer_pickles_and_copies_to_the_same_scorer(backend_name, dtype, rng):
    """A scorer sent to a process pool or a Dask worker (pickle), or deep-copied, is rebuilt from its
    model and resolved settings: the same scores and top-k, bit for bit, the same backend and threads."""
    import copy
    import pickle
    X = rng.standard_normal((300, 70)).astype(np.float32)
    scorer = Scorer(rng.standard_normal(70) / 8, -0.5, output="proba", dtype=dtype, n_threads=2,
                    backend=backend_name)
    for twin in (pickle.loads(pickle.dumps(scorer)), copy.deepcopy(scorer), copy.copy(scorer)):
        assert type(twin) is Scorer and repr(twin) == repr(scorer) and twin.dtype == scorer.dtype
        assert not twin.coef.flags.writeable and twin.coef is not scorer.coef
        np.testing.assert_array_equal(twin.coef, scorer.coef)
        got, want = twin(X), scorer(X)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        for a, b in zip(twin.topk(X, 5), scorer.topk(X, 5)):
            np.testing.assert_array_equal(a, b)
