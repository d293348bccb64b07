"""save / load: round trips, partial_fit continuation, and clear errors for bad files."""
import json
import zipfile

import numpy as np
import pytest

import fastwlr
from fastwlr import WatchTimeRanker, WeightedLogisticRegression, load
from fastwlr._io import FORMAT, VERSION


@pytest.fixture
def data(rng):
    X = rng.standard_normal((400, 4))
    T = np.where(rng.random(400) < 0.3, rng.lognormal(2, 1, 400), 0.0)
    return X, T


def _assert_same_model(a, b, X):
    assert type(a) is type(b)
    assert a.get_params() == b.get_params()
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    if isinstance(a, WatchTimeRanker):
        assert not hasattr(b, "classes_")  # a regressor
    else:
        np.testing.assert_array_equal(a.classes_, b.classes_)
    assert (a.n_features_in_, a.n_iter_, a.converged_) == (b.n_features_in_, b.n_iter_, b.converged_)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_round_trip_lbfgs(tmp_path, data):
    X, T = data
    labels = np.where(T > 0, "watched", "skipped")
    est = WeightedLogisticRegression(alpha=1e-3, solver="lbfgs", random_state=4).fit(X, labels)
    est.save(tmp_path / "model.npz")
    again = load(tmp_path / "model.npz")
    _assert_same_model(est, again, X)
    np.testing.assert_array_equal(est.predict_proba(X), again.predict_proba(X))


def test_round_trip_ranker_with_click_model(tmp_path, data):
    X, T = data
    est = WatchTimeRanker(alpha=1e-3, solver="lbfgs", fit_click_model=True).fit(X, T)
    path = str(tmp_path / "ranker")  # no extension is added
    fastwlr._io.save(est, path)
    again = fastwlr.load(path)
    _assert_same_model(est, again, X)
    _assert_same_model(est.click_model_, again.click_model_, X)
    np.testing.assert_array_equal(est.predict(X), again.predict(X))  # with the exact correction


def test_partial_fit_continues_after_load(tmp_path, data):
    X, T = data
    a = WatchTimeRanker(random_state=0, n_threads=1)
    a.partial_fit(X[:200], T[:200])
    a.save(tmp_path / "m.npz")
    b = load(tmp_path / "m.npz")
    assert b.get_params()["random_state"] == 0
    # the saved state (AdaGrad accumulators, averages, clock) continues exactly; the row-order stream
    # restarts from the seed, so compare one more chunk with the *same* fresh stream on both sides
    a._partial_rng = np.random.default_rng(1)
    b._partial_rng = np.random.default_rng(1)
    a.partial_fit(X[200:], T[200:])
    b.partial_fit(X[200:], T[200:])
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.n_iter_ == b.n_iter_ == 2


def test_unfitted_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        WeightedLogisticRegression().save(tmp_path / "x.npz")


def test_generator_random_state_is_saved_as_none(tmp_path, data):
    X, T = data
    est = WatchTimeRanker(solver="lbfgs", random_state=np.random.default_rng(0)).fit(X, T)
    est.save(tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").random_state is None


def _saved(tmp_path, data):
    X, T = data
    path = tmp_path / "m.npz"
    WatchTimeRanker(solver="lbfgs").fit(X, T).save(path)
    return path


def _rewrite(path, mutate):
    """Rewrite the archive with mutate(dict of arrays) applied."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    mutate(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _edit_header(path, **changes):
    def mutate(arrays):
        header = json.loads(str(arrays["header"][()]))
        header.update(changes)
        arrays["header"] = np.array(json.dumps(header))
    _rewrite(path, mutate)


def test_truncated_file(tmp_path, data):
    path = _saved(tmp_path, data)
    raw = path.read_bytes()
    for cut in (10, len(raw) // 2, len(raw) - 30):
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="truncated or corrupt|not a fastwlr model"):
            load(path)


def test_corrupt_bytes(tmp_path, data):
    path = _saved(tmp_path, data)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("coef.npy")
    # flip a byte inside the stored coefficients: the zip's CRC-32 catches it
    pos = info.header_offset + 30 + len(info.filename) + info.compress_size - 3
    raw[pos] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="truncated or corrupt|not a fastwlr model"):
        load(path)


def test_not_a_model(tmp_path):
    path = tmp_path / "other.npz"
    with open(path, "wb") as f:
        np.savez(f, a=np.arange(3))
    with pytest.raises(ValueError, match="not a fastwlr model"):
        load(path)
    path.write_text("hello")
    with pytest.raises(ValueError, match="truncated or corrupt|not a fastwlr model"):
        load(path)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")


def test_wrong_format_version_and_kind(tmp_path, data):
    path = _saved(tmp_path, data)
    _edit_header(path, version=VERSION + 1)
    with pytest.raises(ValueError, match=f"format version {VERSION + 1}.*upgrade fastwlr"):
        load(path)
    _edit_header(path, version=VERSION, format="something-else")
    with pytest.raises(ValueError, match="not a fastwlr model"):
        load(path)
    _edit_header(path, format=FORMAT, estimator="RandomForest")
    with pytest.raises(ValueError, match="unknown estimator kind 'RandomForest'"):
        load(path)


def test_inconsistent_arrays(tmp_path, data):
    path = _saved(tmp_path, data)
    _rewrite(path, lambda a: a.update(coef=np.zeros(7)))
    with pytest.raises(ValueError, match="inconsistent arrays"):
        load(path)
    _rewrite(path, lambda a: a.pop("intercept"))
    with pytest.raises(ValueError, match="missing 'intercept'"):
        load(path)
    _rewrite(path, lambda a: a.update(header=np.array("{not json")))
    with pytest.raises(ValueError, match="not valid JSON"):
        load(path)


def test_no_pickle_inside(tmp_path, data):
    """Every entry loads with allow_pickle=False, and the header documents the format."""
    path = _saved(tmp_path, data)
    with np.load(path, allow_pickle=False) as npz:
        entries = {k: npz[k] for k in npz.files}
    header = json.loads(str(entries["header"][()]))
    assert header["format"] == FORMAT and header["version"] == VERSION
    assert header["estimator"] == "WatchTimeRanker"
    assert all(a.dtype != object for a in entries.values())
