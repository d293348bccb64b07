"""The command line (``fastwlr``, fastwlr/cli.py) and its file formats (fastwlr/_formats.py).

End-to-end tests run ``python -m fastwlr`` in a subprocess on small files the tests write; the
round trips (data -> file -> train == the arrays trained in memory, to 1e-12) and the error cases
that need no new process call ``fastwlr.cli.main`` in this one (faster, same code).
"""
import gzip
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import fastwlr
from fastwlr import _formats as fm
from fastwlr.cli import main
from fastwlr.datasets import make_watch_time
from fastwlr.estimators import WatchTimeRanker, WeightedLogisticRegression
from fastwlr._weights import recipe

ROOT = Path(fastwlr.__file__).resolve().parent.parent


def run(*args, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "fastwlr", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.fixture(scope="module")
def data():
    d = make_watch_time(600, 5, random_state=3, mean_request_size=8)
    X = d.X.astype(np.float64)
    req = np.repeat(np.arange(d.offsets.shape[0] - 1), np.diff(d.offsets))
    return X, d.watch_time, req, d.offsets


@pytest.fixture(scope="module")
def files(tmp_path_factory, data):
    X, T, req, _ = data
    root = tmp_path_factory.mktemp("cli")
    with open(root / "d.svm", "wb") as f:
        fm.write_svmlight(f, X, T, req)
    with gzip.open(root / "d.svm.gz", "wb") as f:
        fm.write_svmlight(f, X, T, req)
    y01, w = recipe(T)
    with open(root / "d.vw", "wb") as f:
        fm.write_vw(f, X, 2 * y01 - 1, w, req)
    for name, sep in (("d.csv", ","), ("d.tsv", "\t")):
        with open(root / name, "w") as f:
            f.write(sep.join(["watch_time", "qid"] + [f"x{j}" for j in range(X.shape[1])]) + "\n")
            for i in range(X.shape[0]):
                f.write(sep.join([repr(float(T[i])), str(req[i])] + [repr(float(v)) for v in X[i]]) + "\n")
    return root


SEED = ["--random-state", "0", "--n-threads", "1"]


def _coef(path):
    m = fastwlr.load(path)
    return np.concatenate([m.coef_[0], m.intercept_])


def _vw_matrix(X, bits=18, seed=0):
    """X with column j as VW feature "j" of the default namespace: vw's rule for an all-digit name,
    (j + namespace hash) & mask, the namespace hash murmur3("", seed)."""
    h_ns = fm.murmur3_32(b"", seed)
    cols = np.array([(j + h_ns) & ((1 << bits) - 1) for j in range(X.shape[1])])
    csr = sp.csr_matrix(X)
    return sp.csr_matrix((csr.data, cols[csr.indices], csr.indptr), shape=(X.shape[0], 1 << bits))


# ---------------------------------------------------------------------------- end to end (subprocess)
def test_train_score_rank_evaluate_end_to_end(files, data):
    X, T, req, offsets = data
    r = run("train", "d.svm", "-f", "m.npz", *SEED, cwd=files)
    assert r.returncode == 0, r.stderr
    assert "trained WatchTimeRanker on 600 rows" in r.stderr
    model = fastwlr.load(files / "m.npz")
    ref = WatchTimeRanker(random_state=0, n_threads=1).fit(sp.csr_matrix(X), T)
    np.testing.assert_array_equal(model.coef_, ref.coef_)

    r = run("score", "-d", "d.svm.gz", "-i", "m.npz", "-p", "s.npy", "--output", "log_odds", "--quiet", cwd=files)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    np.testing.assert_array_equal(np.load(files / "s.npy"), ref.decision_function(sp.csr_matrix(X)))

    r = run("rank", "d.svm", "-i", "m.npz", "-p", "r.csv", "-k", "3", "--chunk-size", "50", cwd=files)
    assert r.returncode == 0, r.stderr
    got = np.loadtxt(files / "r.csv", delimiter=",", skiprows=1)
    idx, val = ref.rank(X, 3, offsets=offsets)
    keep = idx >= 0
    np.testing.assert_array_equal(got[:, 2], idx[keep])        # rows, best first, request by request
    # the command line scores CSR rows, the reference dense ones: another summation order (a few ulps)
    np.testing.assert_allclose(got[:, 3], val[keep], rtol=1e-14)
    np.testing.assert_array_equal(got[:, 0], np.repeat(np.arange(idx.shape[0]), keep.sum(1)))
    np.testing.assert_array_equal(got[:, 1], np.concatenate([np.arange(1, c + 1) for c in keep.sum(1)]))

    r = run("evaluate", "d.svm", "-i", "m.npz", "-p", "metrics.json", cwd=files)
    assert r.returncode == 0, r.stderr
    from fastwlr import metrics
    z = ref.decision_function(X)
    assert f"{metrics.weighted_per_user_loss(T, z, offsets):.6g}" in r.stdout
    assert f"{metrics.weighted_log_loss(T, z):.6g}" in r.stdout
    assert "| bin |" in r.stdout and "NDCG@10" in r.stdout


def test_console_errors_one_line_each(files, tmp_path):
    bad = tmp_path / "bad.svm"
    bad.write_text("1.0 qid:1 0:1 1:2\n0 qid:1 0:1 1:x2\n0 qid:2 3:1\n")
    r = run("train", bad, "-f", tmp_path / "m.npz", cwd=files)
    assert r.returncode == 1
    assert r.stderr.strip() == f"fastwlr: error: {bad}:2: column 15: expected a feature value (a number), got 'x2'"
    assert not (tmp_path / "m.npz").exists()

    r = run("train", bad, "-f", tmp_path / "m.npz", "--skip-bad-lines", "1", cwd=files)
    assert r.returncode == 0, r.stderr
    assert "skipped 1 bad line" in r.stderr and "trained WatchTimeRanker on 2 rows" in r.stderr

    empty = tmp_path / "empty.svm"
    empty.write_bytes(b"")
    r = run("train", empty, "-f", tmp_path / "m.npz", cwd=files)
    assert (r.returncode, r.stderr.strip()) == (1, f"fastwlr: error: {empty}: expected data rows, got 'an empty file'")

    r = run("score", tmp_path / "nope.svm", "-i", "m.npz", "-p", tmp_path / "s.npy", cwd=files)
    assert (r.returncode, r.stderr.strip()) == (1, f"fastwlr: error: {tmp_path / 'nope.svm'}: No such file or directory")

    trunc = tmp_path / "t.svm.gz"
    trunc.write_bytes((files / "d.svm.gz").read_bytes()[:-30])
    r = run("train", trunc, "-f", tmp_path / "m.npz", cwd=files)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "truncated" in r.stderr, r.stderr

    r = run("train", "d.svm", "-f", tmp_path / "no" / "dir" / "m.npz", cwd=files)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "No such file or directory" in r.stderr, r.stderr

    r = run("train", "d.svm", "-f", "m.npz", "--alpah", "1", cwd=files)
    assert r.returncode == 2 and "did you mean --alpha?" in r.stderr, r.stderr


def test_model_of_another_version(files, tmp_path):
    import json
    import zipfile
    assert main(["train", str(files / "d.svm"), "-f", str(tmp_path / "m.npz"), "--quiet"]) == 0
    with np.load(tmp_path / "m.npz") as z:
        arrays = dict(z)
    header = json.loads(str(arrays["header"][()]))
    header["version"] = 99
    arrays["header"] = np.array(json.dumps(header))
    np.savez(tmp_path / "new.npz", **arrays)
    assert zipfile.is_zipfile(tmp_path / "new.npz")
    r = run("score", "d.svm", "-i", tmp_path / "new.npz", "-p", tmp_path / "s.csv", cwd=files)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "format version 99" in r.stderr and "upgrade fastwlr" in r.stderr
    assert not (tmp_path / "s.csv").exists()


def test_help_lists_every_estimator_parameter_with_its_default(files):
    r = run("train", "--help", cwd=files)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    options = text[text.index("estimator options"):]
    for p in inspect.signature(WatchTimeRanker.__init__).parameters.values():
        if p.name == "self":
            continue
        flag = "--" + p.name.replace("_", "-")
        assert flag in options, flag
        after = options[options.index(flag + (" V" if not isinstance(p.default, bool) else ",")):]
        assert f"(default: {p.default!r})" in after[:200], (flag, after[:200])
    for flag in ("-d", "-f", "-i", "--format", "-b", "--chunk-size", "--skip-bad-lines", "--quiet"):
        assert f" {flag} " in text or f" {flag}," in text, flag


# ---------------------------------------------------------------------------- round trips, in process
@pytest.mark.parametrize("name", ["d.svm", "d.svm.gz"])
def test_svmlight_round_trip(files, data, tmp_path, name):
    X, T, _, _ = data
    assert main(["train", str(files / name), "-f", str(tmp_path / "m.npz"), "--quiet", *SEED]) == 0
    ref = WatchTimeRanker(random_state=0, n_threads=1).fit(sp.csr_matrix(X), T)
    np.testing.assert_allclose(_coef(tmp_path / "m.npz"), np.r_[ref.coef_[0], ref.intercept_], rtol=0, atol=1e-12)


def test_vw_round_trip_same_hash(files, data, tmp_path):
    X, T, _, _ = data
    assert main(["train", str(files / "d.vw"), "-f", str(tmp_path / "m.npz"), "--quiet", *SEED]) == 0
    y01, w = recipe(T)
    ref = WeightedLogisticRegression(random_state=0, n_threads=1).fit(_vw_matrix(X), y01, sample_weight=w)
    got = fastwlr.load(tmp_path / "m.npz")
    assert type(got) is WeightedLogisticRegression and got.n_features_in_ == 1 << 18
    np.testing.assert_allclose(got.coef_, ref.coef_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.intercept_, ref.intercept_, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["d.csv", "d.tsv"])
def test_table_round_trip_dense(files, data, tmp_path, name):
    X, T, _, _ = data
    assert main(["train", str(files / name), "-f", str(tmp_path / "m.npz"), "--quiet", *SEED]) == 0
    ref = WatchTimeRanker(random_state=0, n_threads=1).fit(X, T)
    np.testing.assert_allclose(_coef(tmp_path / "m.npz"), np.r_[ref.coef_[0], ref.intercept_], rtol=0, atol=1e-12)


def test_parquet_round_trip(files, data, tmp_path):
    pytest.importorskip("pyarrow")
    X, T, _, _ = data
    pq = tmp_path / "d.parquet"
    assert main(["convert", str(files / "d.csv"), "-p", str(pq), "--quiet"]) == 0
    assert main(["train", str(pq), "-f", str(tmp_path / "m.npz"), "--quiet", *SEED]) == 0
    ref = WatchTimeRanker(random_state=0, n_threads=1).fit(X, T)
    np.testing.assert_allclose(_coef(tmp_path / "m.npz"), np.r_[ref.coef_[0], ref.intercept_], rtol=0, atol=1e-12)


def test_lbfgs_round_trip(files, data, tmp_path):
    X, T, _, _ = data
    assert main(["train", str(files / "d.svm"), "-f", str(tmp_path / "m.npz"), "--quiet", "--solver", "lbfgs"]) == 0
    ref = WatchTimeRanker(solver="lbfgs").fit(sp.csr_matrix(X), T)
    np.testing.assert_allclose(_coef(tmp_path / "m.npz"), np.r_[ref.coef_[0], ref.intercept_], rtol=0, atol=1e-12)


def test_newton_round_trip(files, data, tmp_path):
    X, T, _, _ = data
    assert main(["train", str(files / "d.svm"), "-f", str(tmp_path / "m.npz"), "--quiet", "--solver", "newton"]) == 0
    assert fastwlr.load(tmp_path / "m.npz").solver == "newton"
    ref = WatchTimeRanker(solver="newton").fit(sp.csr_matrix(X), T)
    np.testing.assert_allclose(_coef(tmp_path / "m.npz"), np.r_[ref.coef_[0], ref.intercept_], rtol=0, atol=1e-12)


def test_streaming_train_is_partial_fit_over_the_chunks(files, data, tmp_path):
    X, T, _, _ = data
    assert main(["train", str(files / "d.svm"), "-f", str(tmp_path / "m.npz"), "--quiet", "--chunk-size", "128",
                 "--passes", "2", *SEED]) == 0
    ref = WatchTimeRanker(random_state=0, n_threads=1)
    Xc = sp.csr_matrix(X)
    for _ in range(2):
        for lo in range(0, X.shape[0], 128):
            ref.partial_fit(Xc[lo:lo + 128], T[lo:lo + 128])
    np.testing.assert_allclose(_coef(tmp_path / "m.npz"), np.r_[ref.coef_[0], ref.intercept_], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name, dense", [("d.svm", False), ("d.csv", True)])
def test_exact_solver_over_chunked_passes(files, data, tmp_path, name, dense, capsys):
    X, T, _, _ = data
    assert main(["train", str(files / name), "-f", str(tmp_path / "m.npz"), "--solver", "lbfgs",
                 "--chunk-size", "128"]) == 0
    assert "passes over" in capsys.readouterr().err
    ref = WatchTimeRanker(solver="lbfgs").fit(X if dense else sp.csr_matrix(X), T)
    # the gradient summed chunk by chunk rounds differently from one pass: equal to the tolerance's
    # effect, far below it (measured: 3e-16)
    np.testing.assert_allclose(_coef(tmp_path / "m.npz"), np.r_[ref.coef_[0], ref.intercept_], rtol=0, atol=1e-10)


def test_convert_round_trips_between_text_formats(files, tmp_path):
    for to in ("x.svm", "x.csv", "x.tsv.gz"):
        assert main(["convert", str(files / "d.svm"), "-p", str(tmp_path / to), "--quiet"]) == 0
    a = fm.concat(list(fm.Source(files / "d.svm").blocks()))
    b = fm.concat(list(fm.Source(tmp_path / "x.svm").blocks()))
    for name in ("label", "request", "indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    c = fm.concat(list(fm.Source(tmp_path / "x.tsv.gz", roles=fm.Roles(target="watch_time", request="qid")).blocks()))
    np.testing.assert_array_equal(c.dense, a.matrix(5).toarray())
    np.testing.assert_array_equal(c.label, a.label)


def test_train_continues_from_an_initial_model(files, data, tmp_path):
    X, T, _, _ = data
    m1, m2 = str(tmp_path / "m1.npz"), str(tmp_path / "m2.npz")
    assert main(["train", str(files / "d.svm"), "-f", m1, "--quiet", "--max-iter", "2", "--tol", "none", *SEED]) == 0
    assert main(["train", str(files / "d.svm"), "-i", m1, "-f", m2, "--quiet", "--max-iter", "2", "--tol", "none"]) == 0
    ref = WatchTimeRanker(random_state=0, n_threads=1, max_iter=2, tol=None).fit(sp.csr_matrix(X), T)
    ref.set_params(warm_start=True).fit(sp.csr_matrix(X), T)
    np.testing.assert_allclose(_coef(m2), np.r_[ref.coef_[0], ref.intercept_], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("ext", ["npy", "csv", "tsv", "parquet"])
def test_score_outputs_by_extension(files, data, tmp_path, ext):
    if ext == "parquet":
        pq = pytest.importorskip("pyarrow.parquet")
    X, T, _, _ = data
    model = tmp_path / "m.npz"
    WatchTimeRanker(random_state=0).fit(X, T).save(model)
    out = tmp_path / f"s.{ext}"
    assert main(["score", str(files / "d.csv"), "-i", str(model), "-p", str(out), "--output", "proba",
                 "--chunk-size", "100", "--quiet"]) == 0
    expected = fastwlr.score(X, fastwlr.load(model).coef_[0], fastwlr.load(model).intercept_[0], output="proba")
    if ext == "npy":
        got = np.load(out)
    elif ext == "parquet":
        got = pq.read_table(out).column("proba").to_numpy()
    else:
        got = np.loadtxt(out, skiprows=1)
    np.testing.assert_array_equal(got, expected)


def test_rank_with_vw_tags_keeps_requests_whole(files, data, tmp_path, capsys):
    X, T, req, offsets = data
    y01, w = recipe(T)
    model = WeightedLogisticRegression(random_state=0).fit(_vw_matrix(X), y01, sample_weight=w)
    model.save(tmp_path / "m.npz")
    for chunk in ("7", "100000"):
        out = tmp_path / f"r{chunk}.npy"
        assert main(["rank", str(files / "d.vw"), "-i", str(tmp_path / "m.npz"), "-p", str(out), "-k", "2",
                     "--chunk-size", chunk, "--quiet"]) == 0
    a, b = np.load(tmp_path / "r7.npy"), np.load(tmp_path / "r100000.npy")
    np.testing.assert_array_equal(a, b)
    idx, _ = model.rank(_vw_matrix(X), 2, offsets=offsets)
    np.testing.assert_array_equal(a["row"], idx[idx >= 0])
    assert a["request"][0] == "0" and len(set(a["request"])) == offsets.shape[0] - 1


# ---------------------------------------------------------------------------- parsing and errors
def test_murmur3_reference_values():
    # MurmurHash3_x86_32 test vectors (from the reference implementation's users, e.g. Guava, mmh3)
    assert fm.murmur3_32(b"", 0) == 0
    assert fm.murmur3_32(b"", 1) == 0x514E28B7
    assert fm.murmur3_32(b"hello", 0) == 0x248BFA47
    assert fm.murmur3_32(b"The quick brown fox jumps over the lazy dog", 0) == 0x2E4FF723
    assert fm.murmur3_32("hello", 42) == fm.murmur3_32(b"hello", 42) != fm.murmur3_32(b"hello", 0)


def test_vw_namespaces_are_kept_apart_and_values_scaled(tmp_path):
    p = tmp_path / "n.vw"
    p.write_text("1 2.0 'r1|a x y:0.5 |b x |c:3 x:2\n-1 |a x\n")
    rows = fm.concat(list(fm.Source(p).blocks()))
    first = rows.indices[:rows.indptr[1]]
    assert len(set(first.tolist())) == 4  # x in a, b and c: three columns; y a fourth
    np.testing.assert_array_equal(rows.data[:rows.indptr[1]], [1.0, 0.5, 1.0, 6.0])
    np.testing.assert_array_equal(rows.label, [1, -1])
    np.testing.assert_array_equal(rows.weight, [2.0, 1.0])
    assert list(rows.request) == ["r1", ""]
    assert rows.indices[rows.indptr[1]] == first[0]  # x of namespace a: the same column in both rows
    mask = (1 << 18) - 1
    assert first[0] == fm.murmur3_32("x", fm.murmur3_32("a", 0)) & mask


def test_vw_columns_are_vws_own_feature_indices(tmp_path):
    pyvw = pytest.importorskip("vowpalwabbit.pyvw", exc_type=ImportError)
    lines = ["1 |a x y:2 123 |ab x |b:0.5 é 7:3", "-1 'q | x 7 0012 word", "1 |sport ronaldo messi:0.25"]
    for bits, seed in ((18, 0), (10, 7)):
        p = tmp_path / "v.vw"
        p.write_text("\n".join(lines) + "\n")
        rows = fm.concat(list(fm.Source(p, bits=bits, hash_seed=seed).blocks()))
        vw = pyvw.Workspace(f"--quiet -b {bits} --hash_seed {seed}")
        for r, line in enumerate(lines):
            ex = vw.example(line)
            theirs = []
            for i in range(ex.num_namespaces()):
                ns = pyvw.NamespaceId(ex, i)
                if ns.ns == chr(128):  # vw's constant feature: our intercept
                    continue
                theirs += [(ex.feature(ns, j) & ((1 << bits) - 1), ex.feature_weight(ns, j))
                           for j in range(ex.num_features_in(ns))]
            lo, hi = rows.indptr[r], rows.indptr[r + 1]
            assert list(zip(rows.indices[lo:hi].tolist(), rows.data[lo:hi].tolist())) == theirs, line
        vw.finish()


@pytest.mark.parametrize("text, fmt, expected", [
    ("1 qid:1 0:1\nx 0:1\n", "svm", ":2: column 1: expected a label (a number), got 'x'"),
    ("1 qid:1 0:1\n1 qid:z 0:1\n", "svm", ":2: column 3: expected qid:INTEGER, got 'qid:z'"),
    ("1 0:1 a:2\n", "svm", ":1: column 7: expected a feature index (an integer >= 0), got 'a'"),
    ("1 0:1 5\n", "svm", ":1: column 7: expected index:value, got '5'"),
    ("1 0:inf\n", "svm", ":1: column 5: expected a feature value (a number), got 'inf'"),
    ("1 0:1e999\n", "svm", ":1: column 5: expected a feature value (a number) (finite), got '1e999'"),
    ("1 3:1\n", "svm3", ":1: column 3: expected a feature index below 3 (the column count), got '3'"),
    ("1 |a x:1\n1 a x\n", "vw", ":2: column 6: expected '|' and the features, got 'end of line'"),
    ("1 |a x:q\n", "vw", ":1: column 8: expected a feature value (a number), got 'q'"),
    ("1 |a :2\n", "vw", ":1: column 6: expected a feature name before ':', got ':2'"),
    ("a,b\n1,2\n3,x\n", "csv", ":3: column 'b': expected a finite number (a categorical column? name it "
                                "with --categorical), got 'x'"),
    ("a,b\n1,2\n3\n", "csv", ":3: column 1: expected 2 fields (as the header), got '1 fields'"),
])
def test_malformed_lines_name_file_line_column(tmp_path, text, fmt, expected):
    p = tmp_path / f"bad.{fmt[:3]}"
    p.write_text(text)
    roles = fm.Roles(target="a") if fmt == "csv" else None
    with pytest.raises(fm.DataError) as err:
        list(fm.Source(p, roles=roles, n_features=3 if fmt == "svm3" else None).blocks())
    assert str(err.value) == f"{p}{expected}"


def test_skip_bad_lines_budget(tmp_path):
    p = tmp_path / "b.svm"
    p.write_text("1 0:1\nbad\n0 0:2\nbad\n0 1:1\n")
    bad = fm.BadLines(2)
    rows = fm.concat(list(fm.Source(p, bad=bad).blocks()))
    assert bad.count == 2 and rows.n_rows == 3
    np.testing.assert_array_equal(rows.line, [1, 3, 5])
    with pytest.raises(fm.DataError, match="more than --skip-bad-lines 1"):
        list(fm.Source(p, bad=fm.BadLines(1)).blocks())


def test_chunks_never_split_a_request():
    req = np.array([1, 1, 1, 2, 2, 3, 3, 3, 3, 4])
    rows = fm.Rows(np.zeros(10), None, req, np.arange(10), np.arange(11), np.zeros(10, np.int32), np.ones(10))
    blocks = [rows.take(0, 4), rows.take(4, 7), rows.take(7, 10)]
    got = [c.request.tolist() for c in fm.chunks(iter(blocks), 2, by_request=True)]
    assert got == [[1, 1, 1], [2, 2], [3, 3, 3, 3], [4]]
    assert [c.n_rows for c in fm.chunks(iter(blocks), 4)] == [4, 4, 2]


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTWLR_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["train", str(tmp_path / "missing.svm"), "-f", str(tmp_path / "m.npz")])


def test_usage_errors_exit_2(files, capsys):
    assert main(["train", "-f", "m.npz"]) == 2
    assert "no data file" in capsys.readouterr().err
    assert main(["train", str(files / "d.svm"), "-d", str(files / "d.svm"), "-f", "m.npz"]) == 2
    assert main(["train", str(files / "d.svm"), "-f", "m.npz", "--solver", "cg"]) == 2
    assert "solver must be one of" in capsys.readouterr().err
    assert main(["train", str(files / "d.svm"), "-f", "m.npz", "--chunk-size", "10", "--solver", "newton"]) == 2
    assert "needs the data in memory" in capsys.readouterr().err
    assert main(["train", str(files / "d.svm"), "-f", "m.npz", "--chunk-size", "10", "--solver", "lbfgs",
                 "--passes", "2"]) == 2
    assert "--passes is for SGD" in capsys.readouterr().err
    assert main(["score", str(files / "d.svm"), "-p", "s.npy"]) == 2  # -i is required
    assert main(["train", str(files / "d.unknown"), "-f", "m.npz"]) == 2
    assert "give --format" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


def test_inputs_are_not_modified_and_failed_outputs_leave_nothing(files, tmp_path):
    before = {p.name: p.read_bytes() for p in files.iterdir() if p.is_file() and p.suffix != ".npz"}
    out = tmp_path / "s.npy"
    out.write_bytes(b"keep me")
    assert main(["score", str(files / "d.svm"), "-i", str(tmp_path / "missing.npz"), "-p", str(out)]) == 1
    assert out.read_bytes() == b"keep me"
    after = {p.name: p.read_bytes() for p in files.iterdir() if p.is_file() and p.suffix != ".npz"}
    assert before == after
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fastwlr-")]


def test_zstd_input_needs_zstandard(tmp_path):
    p = tmp_path / "d.svm.zst"
    p.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 16)
    try:
        import zstandard  # noqa: F401
    except ImportError:
        with pytest.raises(fm.DataError, match="needs the zstandard package"):
            list(fm.Source(p).blocks())
    else:
        with pytest.raises(fm.DataError):
            list(fm.Source(p).blocks())


def test_weights_side_file_with_binary_labels(files, data, tmp_path):
    X, T, _, _ = data
    y01, w = recipe(T)
    svm = tmp_path / "b.svm"
    with open(svm, "wb") as f:
        fm.write_svmlight(f, X, 2 * y01 - 1)
    (tmp_path / "w.txt").write_text("".join(f"{float(x)!r}\n" for x in w))
    assert main(["train", str(svm), "--labels", "binary", "--weights", str(tmp_path / "w.txt"), "-f",
                 str(tmp_path / "m.npz"), "--quiet", *SEED]) == 0
    ref = WeightedLogisticRegression(random_state=0, n_threads=1).fit(sp.csr_matrix(X), y01, sample_weight=w)
    np.testing.assert_allclose(_coef(tmp_path / "m.npz"), np.r_[ref.coef_[0], ref.intercept_], rtol=0, atol=1e-12)
    (tmp_path / "short.txt").write_text("1\n2\n")
    assert main(["train", str(svm), "--labels", "binary", "--weights", str(tmp_path / "short.txt"), "-f",
                 str(tmp_path / "m.npz"), "--quiet"]) == 1


# ---------------------------------------------------------------------------- compiled parser == pure Python
def _random_block(rng, kind, n_lines=150):
    garbage = ["x", "qid:x", "a:1", ":1", "5", "3:", "3:inf", "1e999", "1:2:3", "99999999999:1", "7:1_0", "|",
               "|b:x", ":3", "z:", "'", "\r", "é", "#", "0x10"]
    sep = [" ", "  ", "\t", " \r"]
    lines = []
    for _ in range(n_lines):
        label = rng.choice(["0", "1", "-1", "2.5", "1e2", ".5", "+3", "17."])
        if kind == "svm":
            toks = [label] + ([f"qid:{rng.randint(-5, 5)}"] if rng.random() < 0.7 else [])
            toks += [f"{rng.randint(0, 20)}:{rng.choice(['1', '-0.25', '3e-3', '12.5'])}" for _ in range(rng.randint(0, 6))]
        else:
            toks = [label] + ([rng.choice(["2", "0.5"])] if rng.random() < 0.5 else [])
            toks += [rng.choice(["'r1", "'q", ""])]
            for _ in range(rng.randint(1, 3)):
                toks.append(rng.choice(["|", "|a", "|b:2", "| "]))
                toks += [rng.choice(["x", "y:2", "u:v:1", "w:-1.5", "é"]) for _ in range(rng.randint(0, 4))]
        if rng.random() < 0.3:
            toks[rng.randrange(len(toks))] = rng.choice(garbage)
        lines.append("".join(t + rng.choice(sep) for t in toks) if rng.random() < 0.95 else rng.choice(["", "  "]))
    return ("\n".join(lines) + rng.choice(["", "\n"])).encode()


def test_compiled_parsers_equal_the_pure_python_ones():
    C = pytest.importorskip("fastwlr.backends.cython_core._parse", reason="the compiled core is not built",
                            exc_type=ImportError)
    import random
    rng = random.Random(0)

    def run(fn, *args):
        errors = []
        return fn(args[0], args[1], lambda *e: errors.append(e), *args[2:]), errors

    n_rows = n_errors = 0
    for _ in range(60):
        for kind in ("svm", "vw"):
            block = _random_block(rng, kind)
            if kind == "svm":
                nf = rng.choice([-1, 21, 10])
                a, b = run(fm.parse_svmlight_py, block, 7, nf), run(C.parse_svmlight, block, 7, nf)
            else:
                bits, seed = rng.choice([4, 18]), rng.choice([0, 5])
                a, b = run(fm.parse_vw_py, block, 3, fm._Hasher(bits, seed)), run(C.parse_vw, block, 3, bits, seed)
            assert a[1] == b[1]  # the same bad lines, columns and messages
            for x, y in zip(a[0], b[0]):
                if isinstance(x, list):
                    assert x == y
                else:
                    assert x.dtype == y.dtype
                    np.testing.assert_array_equal(x, y)
            n_rows += a[0][0].shape[0]
            n_errors += len(a[1])
    assert n_rows > 5000 and n_errors > 1000  # both paths were exercised
    for s in (b"", b"a", b"abcd", b"abcde", "é".encode(), b"hello world!!"):
        for seed in (0, 1, 2**32 - 1):
            assert C.murmur3_32(s, seed) == fm.murmur3_32(s, seed)


# ---------------------------------------------------------------------------- the README's section
README = ROOT / "README.md"


def _readme_section():
    if not README.exists():
        pytest.skip("README.md is not next to the tests (installed package)")
    text = README.read_text()
    return text[text.index("## Batch jobs on files"):text.index("## Which weighting?")]


def test_readme_help_output_is_current(files):
    section = _readme_section()
    shown = section[section.index("$ fastwlr --help\n") + len("$ fastwlr --help\n"):]
    shown = shown[:shown.index("```")]
    env = dict(os.environ, COLUMNS="100", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "fastwlr", "--help"], capture_output=True, text=True, env=env,
                         cwd=files).stdout
    assert shown == out


def test_readme_batch_job_runs(tmp_path, monkeypatch, capsys):
    import shlex
    section = _readme_section()
    block = section[section.index("```bash\n") + 8:]
    commands = [line.split("#")[0] for line in block[:block.index("```")].splitlines() if line.startswith("fastwlr ")]
    assert [shlex.split(c)[1] for c in commands] == ["train", "rank", "evaluate"]
    for name, seed in (("train", 0), ("today", 1), ("heldout", 2)):
        d = make_watch_time(400, 4, random_state=seed)
        req = np.repeat(np.arange(d.offsets.shape[0] - 1), np.diff(d.offsets))
        with gzip.open(tmp_path / f"{name}.svm.gz", "wb") as f:
            fm.write_svmlight(f, d.X.astype(np.float64), d.watch_time, req)
    monkeypatch.chdir(tmp_path)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        commands[2] = commands[2].replace("--plot calibration.png", "")
    for c in commands:
        assert main(shlex.split(c)[1:]) == 0, c
    assert fastwlr.load("ranker.npz").solver == "lbfgs"
    top = np.loadtxt("top10.csv", delimiter=",", skiprows=1)
    assert top.shape[1] == 4 and top[:, 1].max() == 10
    assert "weighted per-user loss" in capsys.readouterr().out


# ---------------------------------------------------------------------------- the rest of the commands
def test_import_fastwlr_needs_no_optional_package():
    code = ("import sys, fastwlr, fastwlr.cli, fastwlr._formats; "
            "print(sorted(m for m in ('tqdm', 'pyarrow', 'matplotlib', 'sklearn') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_progress_bar_only_on_a_terminal(files, tmp_path, monkeypatch, capsys):
    pytest.importorskip("tqdm")
    from fastwlr import cli

    class Tty:
        def __init__(self, real):
            self.real = real

        def isatty(self):
            return True

        def __getattr__(self, name):
            return getattr(self.real, name)

    args = ["train", str(files / "d.svm"), "-f", str(tmp_path / "m.npz"), "--chunk-size", "100"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1  # not a terminal: no bar, the one summary line
    monkeypatch.setattr(sys, "stderr", Tty(sys.stderr))
    bar = cli._Progress(type("A", (), {"quiet": False})(), "train")
    assert bar.bar is not None
    bar.update(10, loss="0.5")
    bar.close()
    assert cli._Progress(type("A", (), {"quiet": True})(), "train").bar is None
    monkeypatch.setitem(sys.modules, "tqdm", None)  # tqdm missing: no bar, the job still runs
    assert cli._Progress(type("A", (), {"quiet": False})(), "train").bar is None
    assert main(args + ["--quiet"]) == 0


def test_score_expected_uses_the_click_model(files, data, tmp_path):
    X, T, _, _ = data
    m = str(tmp_path / "m.npz")
    assert main(["train", str(files / "d.csv"), "-f", m, "--fit-click-model", "--quiet", *SEED]) == 0
    assert main(["score", str(files / "d.csv"), "-i", m, "-p", str(tmp_path / "e.npy"), "--output", "expected",
                 "--quiet"]) == 0
    model = fastwlr.load(m)
    np.testing.assert_array_equal(np.load(tmp_path / "e.npy"), model.predict(X))
    assert not np.array_equal(np.load(tmp_path / "e.npy"), model.predict_odds(X))
    plain = str(tmp_path / "p.npz")
    assert main(["train", str(files / "d.csv"), "-f", plain, "--quiet", "--max-iter", "2"]) == 0
    assert main(["score", str(files / "d.csv"), "-i", plain, "-p", str(tmp_path / "e.npy"), "--output",
                 "expected"]) == 2


def test_categorical_columns_are_hashed_after_the_numeric_ones(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("watch_time,city,x\n0,paris,1.5\n3.5,rome,2\n0,paris,-1\n")
    src = fm.Source(p, roles=fm.Roles(target="watch_time", categorical=("city",)), bits=4)
    rows = fm.concat(list(src.blocks()))
    assert src.n_features == 1 + 16
    X = rows.matrix(src.n_features).toarray()
    np.testing.assert_array_equal(X[:, 0], [1.5, 2, -1])
    col = {c: 1 + (fm.murmur3_32(f"city={c}", 0) & 15) for c in ("paris", "rome")}
    assert X[0, col["paris"]] == X[2, col["paris"]] == X[1, col["rome"]] == 1.0
    assert X[:, 1:].sum() == 3


def test_rank_needs_request_ids(files, data, tmp_path, capsys):
    X, T, _, _ = data
    p = tmp_path / "noqid.svm"
    with open(p, "wb") as f:
        fm.write_svmlight(f, X, T)
    m = tmp_path / "m.npz"
    WatchTimeRanker(max_iter=2, tol=None).fit(X, T).save(m)
    assert main(["rank", str(p), "-i", str(m), "-p", str(tmp_path / "r.csv")]) == 1
    assert capsys.readouterr().err.strip() == f"fastwlr: error: {p}:1: expected qid:ID after the label: rank groups rows by request"
    assert not (tmp_path / "r.csv").exists()


def test_evaluate_binary_labels_and_plot(files, tmp_path, capsys):
    m = str(tmp_path / "m.npz")
    assert main(["train", str(files / "d.vw"), "-f", m, "--quiet", "-b", "10"]) == 0
    capsys.readouterr()
    args = ["evaluate", str(files / "d.vw"), "-i", m, "-b", "10"]
    try:
        import matplotlib  # noqa: F401
        args += ["--plot", str(tmp_path / "c.png")]
    except ImportError:
        pass
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "log-loss" in out and "per-request AUC" in out and "| bin |" in out
    assert "--plot" not in args or (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["evaluate", str(files / "d.vw"), "-i", m]) == 1  # -b 18 hashes into other columns
    assert "train and score with the same -b" in capsys.readouterr().err


def test_demo_and_bench_run(tmp_path, capsys):
    assert main(["demo", "--n-samples", "2000", "--no-train"]) == 0
    assert "impressions" in capsys.readouterr().out
    assert main(["bench", "--rows", "3000", "--nnz", "4", "--chunk-size", "1000", "--formats", "svmlight",
                 "--no-sklearn", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| svmlight | fastwlr train --chunk-size 1000 (parse + train) | 3,000 |" in out


def test_predictions_to_standard_output(files, data, tmp_path):
    X, T, _, _ = data
    WatchTimeRanker(max_iter=2, tol=None).fit(X, T).save(tmp_path / "m.npz")
    r = run("score", "d.csv", "-i", tmp_path / "m.npz", "-p", "-", "--output", "log_odds", "--quiet", cwd=files)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "log_odds" and len(lines) == 601
    np.testing.assert_array_equal(np.array(lines[1:], dtype=float), fastwlr.load(tmp_path / "m.npz").decision_function(X))


def test_npy_header_is_valid_for_any_row_count(tmp_path):
    for n in (0, 1, 12345):
        for dtype in (np.dtype(np.float64), np.dtype([("request", "U64"), ("rank", np.int64)])):
            w = fm.NpyWriter(tmp_path / "a.npy", dtype)
            a = np.zeros(n, dtype=dtype)
            w.write({name: a[name] for name in dtype.names} if dtype.names else {"x": a})
            w.close()
            got = np.load(tmp_path / "a.npy")
            assert got.shape == (n,) and got.dtype == dtype


def test_parquet_without_pyarrow_is_one_clear_line(files, tmp_path, monkeypatch, capsys):
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    for name in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)
    assert main(["train", str(tmp_path / "d.parquet"), "-f", str(tmp_path / "m.npz")]) == 1
    assert capsys.readouterr().err.strip() == ('fastwlr: error: to read Parquet input, install pyarrow: '
                                               'pip install "fastwlr[parquet]"')
    assert main(["convert", str(files / "d.svm"), "-p", str(tmp_path / "x.parquet")]) == 1
    assert "install pyarrow" in capsys.readouterr().err


def test_a_table_with_the_model_columns_in_another_order_is_refused(files, data, tmp_path):
    # the same number of columns in another order scored silently wrong: the model remembers the
    # table's feature columns, and score/rank/train -i compare them (one line, exit 1)
    X, T, req, _ = data
    m = tmp_path / "m.npz"
    assert main(["train", str(files / "d.csv"), "-f", str(m), "--quiet", *SEED]) == 0
    assert fastwlr.load(m).input_columns_ == {"numeric": [f"x{j}" for j in range(X.shape[1])], "categorical": []}
    swapped = tmp_path / "swapped.csv"
    lines = (files / "d.csv").read_text().splitlines()
    header = lines[0].split(",")
    header[2], header[3] = header[3], header[2]           # x0 <-> x1, values unchanged: the columns are renamed
    swapped.write_text("\n".join([",".join(header)] + lines[1:]) + "\n")
    for cmd in (["score", swapped, "-i", m, "-p", tmp_path / "s.npy"], ["rank", swapped, "-i", m, "-p", tmp_path / "r.csv"],
                ["train", swapped, "-i", m, "-f", tmp_path / "m2.npz"]):
        r = run(*cmd, cwd=tmp_path)
        assert r.returncode == 1, r.stderr
        assert "are not the model's" in r.stderr and "position 0" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = run("score", files / "d.csv", "-i", m, "-p", tmp_path / "ok.npy", cwd=tmp_path)  # same columns: fine
    assert r.returncode == 0, r.stderr
    # the Python API round-trips the attribute, and a model from arrays has none (nothing to check)
    assert not hasattr(WatchTimeRanker(random_state=0).fit(X, T), "input_columns_")
