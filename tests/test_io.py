"""save / load: round trips, partial_fit continuation, and clear errors for bad files."""
import ast
import importlib.util
import json
import zipfile
from pathlib import Path

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


# ------------------------------------------------------------------ files written by earlier versions
V1_DIR = Path(__file__).parent / "data" / "io_v1"
V1_MODELS = ("wlr_lbfgs", "wlr_sgd", "ranker_click_sgd", "ranker_partial_ftrl")


def _v1_script():
    spec = importlib.util.spec_from_file_location("make_io_v1", V1_DIR.parent / "make_io_v1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _exact_or_close(actual, desired):
    """Within a few ulps of what fastwlr 0.1.0 computed: SGD continued from a restored state repeats
    the same updates, and only the rounding of the dot products has changed since (they use explicit
    fused multiply-adds now, where 0.1.0 left the choice to the compiler). A state restored wrongly
    (a lost accumulator, a reset step count) moves the coefficients by far more than 1e-12."""
    np.testing.assert_allclose(actual, desired, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", V1_MODELS)
def test_files_of_format_version_1_still_load(name):
    """Files written by fastwlr 0.1.0 before the estimators described their own state
    (tests/data/make_io_v1.py) load into the same models, and SGD continues where it stopped."""
    X, T = _v1_script().data()
    with np.load(V1_DIR / "expected.npz") as npz:
        expected = {k[len(name) + 1:]: npz[k] for k in npz.files if k.startswith(name + "/")}
    est = load(V1_DIR / f"{name}.npz")
    assert isinstance(est, WatchTimeRanker if name.startswith("ranker") else WeightedLogisticRegression)
    np.testing.assert_array_equal(est.coef_, expected["coef"])
    np.testing.assert_array_equal(est.intercept_, expected["intercept"])
    if est.predict(X).dtype.kind in "US":
        np.testing.assert_array_equal(est.predict(X), expected["predict"])
    else:
        np.testing.assert_allclose(est.predict(X), expected["predict"], rtol=1e-12)
    if "click_model/coef" in expected:
        np.testing.assert_array_equal(est.click_model_.coef_, expected["click_model/coef"])
    elif isinstance(est, WatchTimeRanker):
        assert est.click_model_ is None
    assert (est._sgd_state is None) == (est.solver == "lbfgs")
    if "continued_coef" in expected:
        est._partial_rng = np.random.default_rng(1)
        est.partial_fit(X[150:], T[150:])
        _exact_or_close(est.coef_, expected["continued_coef"])
        _exact_or_close(est.intercept_, expected["continued_intercept"])


def _header_and_arrays(path):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return json.loads(str(arrays.pop("header")[()])), arrays


def _without_empty_click_model(header):
    """A version-1 header as this fastwlr writes it: a WeightedLogisticRegression's header no longer
    carries ``"click_model": null`` (readers never looked at it)."""
    out = {k: v for k, v in header.items() if k != "fastwlr_version"}
    if out["estimator"] == "WeightedLogisticRegression" and out.get("click_model", ()) is None:
        del out["click_model"]
    if isinstance(out.get("click_model"), dict):
        out["click_model"] = _without_empty_click_model(out["click_model"])
    return out


@pytest.mark.parametrize("name", V1_MODELS)
def test_resaving_a_version_1_file_writes_the_same_model(tmp_path, name):
    """Load an old file and save it again: the same arrays under the same names, the same header
    (up to the empty entry above), still format version 1, so older readers read it too."""
    old_header, old_arrays = _header_and_arrays(V1_DIR / f"{name}.npz")
    load(V1_DIR / f"{name}.npz").save(tmp_path / "again.npz")
    new_header, new_arrays = _header_and_arrays(tmp_path / "again.npz")
    assert new_header["version"] == VERSION == 1
    assert _without_empty_click_model(new_header) == _without_empty_click_model(old_header)
    assert list(new_arrays) == list(old_arrays)
    for key in old_arrays:
        assert new_arrays[key].dtype == old_arrays[key].dtype
        np.testing.assert_array_equal(new_arrays[key], old_arrays[key])


# ------------------------------------------------------------------ the registry
def test_only_registered_classes_are_saved(tmp_path, data):
    X, T = data

    class MyRanker(WatchTimeRanker):
        pass

    est = MyRanker(solver="lbfgs").fit(X, T)
    with pytest.raises(TypeError, match="can only save fastwlr estimators, got MyRanker"):
        est.save(tmp_path / "m.npz")
    with pytest.raises(TypeError, match="can only save fastwlr estimators"):
        fastwlr._io.save(object(), tmp_path / "m.npz")
    assert fastwlr._io._REGISTRY == {"WeightedLogisticRegression": WeightedLogisticRegression,
                                     "WatchTimeRanker": WatchTimeRanker}


def test_a_registered_class_round_trips_through_its_state(tmp_path, data):
    """The registry and the state protocol are all ``_io`` needs: a class of another module,
    registered, is saved and loaded with its arrays and JSON values."""
    X, T = data
    from fastwlr import _io

    class Constant:
        _state_parts = ("inner",)

        def __init__(self, value, inner=None):
            self.value, self.inner = value, inner

        def _get_state(self):
            return {"value": np.array([self.value])}, {"label": "c", "inner": self.inner}

        @classmethod
        def _from_state(cls, arrays, info):
            return cls(float(arrays["value"][0]), info["inner"])

    _io.register(Constant)
    try:
        inner = WatchTimeRanker(solver="lbfgs").fit(X, T)
        _io.save(Constant(2.5, inner), tmp_path / "c.npz")
        again = load(tmp_path / "c.npz")
        assert type(again) is Constant and again.value == 2.5
        np.testing.assert_array_equal(again.inner.coef_, inner.coef_)
        header, arrays = _header_and_arrays(tmp_path / "c.npz")
        assert header["estimator"] == "Constant" and header["label"] == "c"
        assert header["inner"]["estimator"] == "WatchTimeRanker"
        assert "value" in arrays and "inner/coef" in arrays
    finally:
        del _io._REGISTRY["Constant"]


def test_io_does_not_import_the_estimators():
    """_io owns the file format; the estimators register with it (importing it), never the reverse."""
    import fastwlr._io as io_module
    tree = ast.parse(Path(io_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert not {m for m in imported if m and "estimators" in m}
    assert all(not (isinstance(node, ast.ImportFrom) and node.level and node.module is None)
               for node in ast.walk(tree)), "_io imports the package fastwlr (which imports it)"


def _saved_sgd_classifier(tmp_path, data):
    X, T = data
    path = tmp_path / "c.npz"
    WeightedLogisticRegression(solver="sgd", random_state=0).fit(X, (T > 0).astype(int)).save(path)
    return path


def _header_edit(section, key, value):
    def mutate(arrays):
        header = json.loads(str(arrays["header"][()]))
        if section is None:
            header[key] = value
        else:
            header[section][key] = value
        arrays["header"] = np.array(json.dumps(header))
    return mutate


def _array_edit(name, value):
    def mutate(arrays):
        arrays[name] = value
    return mutate


@pytest.mark.parametrize("mutate, message", [
    (_array_edit("intercept", np.array([0.5 + 2j])), "intercept"),
    (_array_edit("classes", np.array([1, 1])), "distinct"),
    (_array_edit("classes", np.array([0.0, np.nan])), "finite"),
    (_header_edit(None, "version", True), "version"),
    (_header_edit("fitted", "n_iter_", -3), "n_iter_"),
    (_header_edit("fitted", "n_features_in_", True), "n_features_in_"),
    (_header_edit("fitted", "converged_", "yes"), "converged_"),
    (_header_edit("params", "alpha", -1), "alpha"),
    (_header_edit("params", "n_threads", 0), "n_threads"),
    (_header_edit("params", "weighting", "bogus"), "weighting"),
    (_header_edit("sgd_state", "mean_weight", 0), "mean_weight"),
    (_header_edit("sgd_state", "optimizer", "bogus"), "optimizer"),
    (_header_edit("sgd_state", "average", 3), "average"),
    (_array_edit("sgd/scalars", np.zeros(4)), "sgd/scalars"),
    (_array_edit("sgd/acc", np.zeros(2)), "sgd/acc"),
    (_array_edit("sgd/coef", np.array([np.inf, 0, 0, 0])), "sgd/coef"),
])
def test_invalid_model_files_fail_at_load_naming_the_entry(tmp_path, data, mutate, message):
    # these loaded silently wrong (a complex intercept as its real part, duplicated classes) or
    # failed late (ZeroDivisionError / IndexError at partial_fit): every entry is checked at load
    path = _saved_sgd_classifier(tmp_path, data)
    _rewrite(path, mutate)
    with pytest.raises(ValueError, match=message):
        load(path)


def test_a_valid_sgd_model_still_loads_and_continues(tmp_path, data):
    X, T = data
    path = _saved_sgd_classifier(tmp_path, data)
    est = load(path)
    est.partial_fit(X, (T > 0).astype(int))
    assert np.isfinite(est.coef_).all()


def _add_member(path, name, payload_bytes):
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, payload_bytes)


def test_load_reads_only_known_members(tmp_path, data, monkeypatch):
    # an extra all-zero member (2 GB in the report; 64 MB here) was decompressed by np.load
    path = _saved(tmp_path, data)
    expected = load(path)
    _add_member(path, "junk.npy", bytes(64 << 20))
    read = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        read.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    got = load(path)
    assert "junk.npy" not in read
    np.testing.assert_array_equal(got.coef_, expected.coef_)


def test_declared_shape_is_checked_before_reading(tmp_path, data):
    # a member whose .npy header claims shape (1e12,) raised a raw MemoryError
    path = _saved(tmp_path, data)
    header = {"descr": "<f8", "fortran_order": False, "shape": (10 ** 12,)}
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(bytes(64))

    def mutate(arrays):
        del arrays["coef"]
    _rewrite(path, mutate)
    _add_member(path, "coef.npy", buf.getvalue())
    with pytest.raises(ValueError, match="coef"):
        load(path)


def _fuzz_models(tmp_path, data):
    X, T = data
    sgd = tmp_path / "sgd.npz"
    WeightedLogisticRegression(solver="sgd", random_state=0).fit(X, (T > 0).astype(int)).save(sgd)
    ranker = tmp_path / "ranker.npz"
    WatchTimeRanker(solver="lbfgs", fit_click_model=True).fit(X, T).save(ranker)
    return [sgd, ranker]


def test_damaged_files_raise_only_model_file_error(tmp_path, data):
    # corrupted files raised NotImplementedError, tokenize.TokenError, RuntimeError, AttributeError,
    # KeyError, OverflowError, TypeError...: every malformed file must raise ModelFileError, and a
    # file that still loads must give the model that was saved
    from fastwlr.exceptions import ModelFileError
    X, _ = data
    rng = np.random.default_rng(2024)
    target = tmp_path / "damaged.npz"
    for path in _fuzz_models(tmp_path, data):
        original = load(path)
        expected = original.predict(X)
        raw = path.read_bytes()
        for trial in range(150):
            buf = bytearray(raw)
            if trial % 3 == 0:
                buf = buf[:int(rng.integers(0, len(buf)))]
            else:
                for pos in rng.integers(0, len(buf), size=int(rng.integers(1, 4))):
                    buf[pos] = int(rng.integers(0, 256))
            target.write_bytes(bytes(buf))
            try:
                got = load(target)
            except ModelFileError:
                continue
            np.testing.assert_array_equal(got.predict(X), expected)


@pytest.mark.parametrize("header", ["[" * 100_000, '{"format": "fastwlr-model", "version": 1e999}',
                                    '{"format": "fastwlr-model", "version": 1, "estimator": []}', "\ud800"])
def test_malformed_headers_raise_model_file_error(tmp_path, data, header):
    from fastwlr.exceptions import ModelFileError
    path = _saved(tmp_path, data)
    _rewrite(path, lambda a: a.update(header=np.array(header)))
    with pytest.raises(ModelFileError):
        load(path)


def _edit_json_header(path, edit):
    """Rewrite the file with edit(header dict) applied to its JSON header."""
    def mutate(arrays):
        header = json.loads(str(arrays["header"][()]))
        edit(header)
        arrays["header"] = np.array(json.dumps(header))
    _rewrite(path, mutate)


@pytest.mark.parametrize("backend", ["", "fortran", 3])
def test_a_saved_backend_that_does_not_exist_fails_at_load(tmp_path, data, backend):
    # found by the fuzz campaign: params.backend = "" loaded, and predict then failed
    from fastwlr.exceptions import ModelFileError
    path = _saved(tmp_path, data)
    _edit_json_header(path, lambda header: header["params"].update(backend=backend))
    with pytest.raises(ModelFileError, match="backend"):
        load(path)


def test_a_model_whose_accumulators_overflowed_saves_and_loads(tmp_path):
    # found by the fuzz campaign: SGD on a feature of -1e308 overflows AdaGrad's squared-gradient
    # sum to +inf (that coordinate's rate becomes 0, the coefficients stay finite); the model saved,
    # then load rejected the file ("sgd/acc is not finite")
    X = np.array([[3.4e-2, 1.36, 1.22], [-0.51, -0.30, -1e308], [0.57, 5e-324, 0.75], [-1.85, 1.57, -0.096],
                  [0.68, -0.14, -0.37]])
    T = np.array([0.0, 5.0, 30.6, 0.0, 0.0])
    est = WatchTimeRanker(weighting="gradient", random_state=0).fit(X, T)
    assert not np.isfinite(est._sgd_state.acc).all()
    est.save(tmp_path / "m.npz")
    again = load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    again.partial_fit(X, T)   # and continues


@pytest.mark.parametrize("columns", [[], {"numeric": ["a"]}, {"numeric": ["a", "a"], "categorical": []},
                                     {"numeric": [1], "categorical": []}, {"numeric": list("abcdefgh"), "categorical": []},
                                     {"numeric": "a", "categorical": []}])
def test_saved_input_columns_are_checked(tmp_path, data, columns):
    from fastwlr.exceptions import ModelFileError
    path = _saved(tmp_path, data)
    _edit_json_header(path, lambda header: header["fitted"].update(input_columns=columns))
    with pytest.raises(ModelFileError, match="input_columns"):
        load(path)


def test_input_columns_round_trip(tmp_path, data):
    X, T = data
    est = WatchTimeRanker(solver="lbfgs").fit(X, T)
    est.input_columns_ = {"numeric": ["a", "b", "c"], "categorical": ["d"]}
    est.save(tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").input_columns_ == est.input_columns_
