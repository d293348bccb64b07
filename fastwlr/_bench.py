"""``fastwlr bench``: how fast the command line parses, trains and scores files, and how much memory
a streaming job takes (the numbers of README "Batch jobs on files").

It writes a generated svmlight file (``--rows`` impressions, ``--nnz`` hashed features each, half
binary, half real; requests of ~20 rows; 5 % clicks with log-normal watch times) and the same rows
as VW text, then measures

* parsing alone, in this process: fastwlr's parser (compiled, and the pure-Python fallback on the
  first 50,000 rows) and scikit-learn's ``load_svmlight_file`` on the same file;
* one chunk's ``partial_fit`` and scoring (the per-phase rates, parsing excluded);
* ``fastwlr train --chunk-size`` and ``fastwlr score`` end to end, each in a subprocess whose peak
  RSS (``ru_maxrss``) is reported: it depends on the chunk size, not on the file size.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def write_files(paths, rows, nnz, seed=0, block=100_000):
    """Write the generated rows to ``paths`` ({"svmlight": path, "vw": path}, either or both)."""
    rng = np.random.default_rng(seed)
    files = {fmt: open(path, "w") for fmt, path in paths.items()}
    half = nnz // 2
    svm_fmt = "%.6g qid:%d " + " ".join(["%d:1"] * half + ["%d:%.4g"] * (nnz - half))
    vw_fmt = "%d %.6g '%d |f " + " ".join(["%d"] * half + ["%d:%.4g"] * (nnz - half))
    coef = rng.normal(0, 0.3, 1 << 20)
    done = 0
    while done < rows:
        n = min(block, rows - done)
        idx = np.sort(rng.integers(0, (1 << 20) - nnz, size=(n, nnz)), axis=1) + np.arange(nnz)  # sorted, unique
        val = np.round(rng.normal(0, 1, size=(n, nnz - half)), 4)
        z = coef[idx].sum(axis=1) - 3.0
        clicked = rng.random(n) < 1 / (1 + np.exp(-z))
        t = np.where(clicked, np.round(rng.lognormal(3.5, 1.0, n), 2), 0.0)
        qid = (done + np.arange(n)) // 20
        real = np.empty((n, 2 * (nnz - half)))
        real[:, 0::2], real[:, 1::2] = idx[:, half:], val
        if "svmlight" in files:
            np.savetxt(files["svmlight"], np.column_stack([t, qid, idx[:, :half], real]), fmt=svm_fmt)
        if "vw" in files:
            label = np.where(clicked, 1, -1)
            imp = np.where(clicked, t, 1.0)
            np.savetxt(files["vw"], np.column_stack([label, imp, qid, idx[:, :half], real]), fmt=vw_fmt)
        done += n
    for f in files.values():
        f.close()


# The child reports its own peak RSS (VmHWM of /proc/self/status, which is the memory of the process
# after exec): ru_maxrss from wait4 would also count the pages this parent had at fork time.
_WRAP = """
import sys
from fastwlr.cli import main
code = main(sys.argv[2:])
peak = 0
try:
    with open("/proc/self/status") as f:
        peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
except (OSError, StopIteration):
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
open(sys.argv[1], "w").write(str(peak))
sys.exit(code)
"""


def _child(args, directory):
    """(seconds, peak RSS in MB) of ``fastwlr args`` run in a subprocess."""
    report = os.path.join(directory, "peak_rss.txt")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, report, *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"fastwlr {' '.join(args)} failed: {proc.stderr.strip()}")
    with open(report) as f:
        return seconds, int(f.read()) / 1024.0


def _parse_rate(path, fmt, max_rows=None, parser="auto"):
    from . import _formats as fm
    src = fm.Source(path, fmt, parser=parser)
    t0 = time.perf_counter()
    n = nbytes = 0
    for block, first in fm.iter_blocks(path):
        rows = src._parse(block, first)
        n += rows.n_rows
        nbytes += len(block)
        if max_rows is not None and n >= max_rows:
            break
    return n, nbytes, time.perf_counter() - t0


def run(args):
    from . import _formats as fm
    from .estimators import WatchTimeRanker
    from .scoring import score
    formats = [f for f in args.formats.split(",") if f]
    directory = args.dir or tempfile.mkdtemp(prefix="fastwlr-bench-")
    os.makedirs(directory, exist_ok=True)
    t0 = time.perf_counter()
    paths = {f: os.path.join(directory, f"bench_{args.rows}_{args.nnz}.{'svm' if f == 'svmlight' else f}")
             for f in formats}
    todo = [f for f, p in paths.items() if not os.path.exists(p)]  # files of an earlier run are reused
    if todo:
        write_files(paths, args.rows, args.nnz)
        print(f"wrote {args.rows:,} rows x {args.nnz} features in {time.perf_counter() - t0:.1f} s to {directory}")
    compiled = fm._compiled() is not None
    lines = ["| format | step | rows | seconds | rows/s | MB/s | peak RSS MB |", "|---|---|---:|---:|---:|---:|---:|"]

    def row(fmt, step, n, sec, mb=None, rss=None):
        rate = f"{n / sec:,.0f}" if sec > 0 else "-"
        mbs = f"{mb / sec:.1f}" if mb is not None and sec > 0 else ""
        lines.append(f"| {fmt} | {step} | {n:,} | {sec:.2f} | {rate} | {mbs} | {'' if rss is None else f'{rss:.0f}'} |")

    for fmt, path in paths.items():
        size_mb = os.path.getsize(path) / 1e6
        n, nb, sec = _parse_rate(path, fmt)
        row(fmt, f"parse ({'compiled' if compiled else 'pure Python'})", n, sec, nb / 1e6)
        n, nb, sec = _parse_rate(path, fmt, max_rows=50_000, parser="python")
        row(fmt, "parse (pure Python, first 50k rows)", n, sec, nb / 1e6)
        if fmt == "svmlight" and not args.no_sklearn:
            try:
                from sklearn.datasets import load_svmlight_file
            except ImportError:
                load_svmlight_file = None
            if load_svmlight_file is not None:
                # without query_id: with it, scikit-learn 1.x's parse is superlinear in the rows
                # (measured: 20k rows 3.0 s, 80k rows 16.1 s; without: 1.7 s and 6.2 s)
                t1 = time.perf_counter()
                X, _ = load_svmlight_file(path, n_features=1 << 20, zero_based=True)
                row(fmt, "sklearn load_svmlight_file (qid ignored)", X.shape[0], time.perf_counter() - t1, size_mb)
                del X
        # one chunk: training and scoring alone
        src = fm.Source(path, fmt, bits=20)
        chunk = next(fm.chunks(src.blocks(), min(args.chunk_size, args.rows)))
        X = chunk.matrix(1 << 20)
        if fmt == "vw":
            from ._weights import recipe  # noqa: F401  (VW rows are +-1 labels with importance weights)
            y = (chunk.label > 0).astype(float)
            from .estimators import WeightedLogisticRegression
            est = WeightedLogisticRegression(random_state=0)
            t1 = time.perf_counter()
            est.partial_fit(X, y, sample_weight=chunk.weight, classes=np.array([0.0, 1.0]))
        else:
            est = WatchTimeRanker(random_state=0)
            t1 = time.perf_counter()
            est.partial_fit(X, chunk.label)
        row(fmt, "partial_fit, one chunk in memory", chunk.n_rows, time.perf_counter() - t1)
        t1 = time.perf_counter()
        score(X, est.coef_[0], float(est.intercept_[0]))
        row(fmt, "score, one chunk in memory", chunk.n_rows, time.perf_counter() - t1)
        model = os.path.join(directory, f"bench_{fmt}.npz")
        bits = ["-b", "20"] if fmt == "vw" else ["--n-features", str(1 << 20)]
        sec, rss = _child(["train", path, "-f", model, "--chunk-size", str(args.chunk_size), "--quiet",
                           "--random-state", "0", *bits], directory)
        row(fmt, f"fastwlr train --chunk-size {args.chunk_size} (parse + train)", args.rows, sec, size_mb, rss)
        preds = os.path.join(directory, f"bench_{fmt}_pred.npy")
        sec, rss = _child(["score", path, "-i", model, "-p", preds, "--chunk-size", str(args.chunk_size),
                           "--quiet", *(["-b", "20"] if fmt == "vw" else [])], directory)
        row(fmt, "fastwlr score (parse + score + write .npy)", args.rows, sec, size_mb, rss)
        print(f"{fmt}: {path} ({size_mb:.0f} MB)")
    print("\n".join(lines))
    return 0
