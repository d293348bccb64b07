"""Scoring against numpy across batch sizes, as a user would compare: both at their defaults.

    python benchmarks/experiments/batch_sweep.py                      # the whole sweep (~10 min, 2 cores)
    python benchmarks/experiments/batch_sweep.py --d 64 --max-rows 1000000
    python benchmarks/experiments/batch_sweep.py --smoke              # seconds
    python benchmarks/experiments/batch_sweep.py --out docs/perf/sweep  # also writes .md/.json/.png

For each batch size (1, 10, ..., 10M rows), feature count d (16, 64, 256, 1024), dtype (float32,
float64) and output, three contenders on the same X (C-contiguous; fastwlr gets the coefficients in
float64 as a model stores them, numpy in X's dtype, its fastest case):

* ``fastwlr.score(X, coef, b, output=...)`` (validates the model on every call);
* ``fastwlr.Scorer(coef, b, output=...)(X)`` (the model prepared once, as a serving loop holds it);
* numpy as a user writes it: odds ``np.exp(X @ coef + b)``, log-odds ``X @ coef + b``, probability
  ``1 / (1 + np.exp(-(X @ coef + b)))``.

Threads: "default" = both libraries' defaults (fastwlr the idle cores, numpy's BLAS its own pool);
"1" = ``n_threads=1`` and BLAS limited to one thread (threadpoolctl). The contenders run
round-robin, best of ``--repeat`` rounds after a warm-up, with a pause between contenders so that
neither inherits the other's spinning worker threads; a round of a small batch is many calls
(``--min-time``), so that timer resolution does not matter. Ratio = numpy time / fastwlr time
(> 1: fastwlr is faster). Combinations above ``--max-bytes`` of X are skipped.

The serving case: one request of 500, 2,000 or 10,000 candidates x 256 float32 features, top-10 by
odds: ``fastwlr.score_topk`` and a prepared ``Scorer(...).topk`` against numpy's exp + argpartition +
argsort.

``--busy N`` runs the sweep beside N busy processes (a Python loop each, as on a shared server);
the script then also prints the worst ratio of fastwlr's default-thread time to its one-thread
time over all cells (``Scorer``):

    python benchmarks/experiments/batch_sweep.py --d 64 --max-rows 1000000 --busy 2 --serving
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import fastwlr

OUTPUTS = ("odds", "log_odds", "proba")
NUMPY = {
    "odds": lambda X, w, b: np.exp(X @ w + b),
    "log_odds": lambda X, w, b: X @ w + b,
    "proba": lambda X, w, b: 1.0 / (1.0 + np.exp(-(X @ w + b))),
}


def blas_threads(n):
    """numpy's BLAS limited to n threads (None: its default)."""
    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=n, user_api="blas")


def per_call(fn, min_time):
    """Seconds per call of fn: as many calls as fit in min_time, at least one."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            return elapsed / calls


def interleaved(fns, repeat, min_time, pause):
    best = {name: float("inf") for name in fns}
    for fn in fns.values():   # warm-up: page faults, first-call costs
        fn()
    for _ in range(repeat):
        for name, fn in fns.items():
            time.sleep(pause)   # let the other library's worker threads go idle
            best[name] = min(best[name], per_call(fn, min_time))
    return best


def sweep(args):
    rng = np.random.default_rng(0)
    rows = []
    sizes = [n for n in (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000) if n <= args.max_rows]
    for d in args.d:
        coef = rng.standard_normal(d) / np.sqrt(d)
        b = -1.0
        for dtype in map(np.dtype, args.dtypes):
            fits = [n for n in sizes if n * d * np.dtype(dtype).itemsize <= args.max_bytes]
            if not fits:
                continue
            X_all = np.empty((fits[-1], d), dtype=dtype)
            for start in range(0, fits[-1], 1 << 20):   # in blocks: no float64 temporary of the whole X
                X_all[start:start + (1 << 20)] = rng.standard_normal((min(1 << 20, fits[-1] - start), d))
            # numpy at its best: coefficients in X's dtype (float64 coefficients would make X @ coef
            # convert a float32 X to float64 first, 5-8x slower; fastwlr takes the model's float64)
            coef_np = coef.astype(dtype)
            for n in fits:
                X = X_all[:n]
                for output in args.outputs:
                    for threads in ("default", "1"):
                        nt = None if threads == "default" else 1
                        scorer = fastwlr.Scorer(coef, b, output=output, n_threads=nt)
                        fns = {
                            "score": lambda: fastwlr.score(X, coef, b, output=output, n_threads=nt),
                            "Scorer": lambda: scorer(X),
                        }
                        with blas_threads(nt):
                            fns["numpy"] = lambda: NUMPY[output](X, coef_np, b)
                            t = interleaved(fns, args.repeat, args.min_time, args.pause)
                        rows.append(dict(d=d, dtype=np.dtype(dtype).name, n=n, output=output, threads=threads,
                                         **{f"t_{k}": v for k, v in t.items()},
                                         ratio_score=t["numpy"] / t["score"], ratio_scorer=t["numpy"] / t["Scorer"]))
                        r = rows[-1]
                        print(f"d={d:>5} {r['dtype']:>7} n={n:>10,} {output:>8} threads={threads:>7}: "
                              f"numpy {t['numpy'] * 1e6:>11.2f} us  score {t['score'] * 1e6:>11.2f} us "
                              f"({r['ratio_score']:5.2f}x)  Scorer {t['Scorer'] * 1e6:>11.2f} us "
                              f"({r['ratio_scorer']:5.2f}x)", flush=True)
    return rows


def serving(args):
    rng = np.random.default_rng(1)
    rows = []
    coef = rng.standard_normal(256) / 16
    for n in args.serving:
        X = rng.standard_normal((n, 256)).astype(np.float32)
        coef32 = coef.astype(np.float32)   # numpy at its best (see sweep)

        def numpy_topk():
            odds = np.exp(X @ coef32 - 1.0)
            top = np.argpartition(-odds, 9)[:10]
            return top[np.argsort(-odds[top], kind="stable")]

        scorer = fastwlr.Scorer(coef, -1.0)
        fns = {"score_topk": lambda: fastwlr.score_topk(X, coef, -1.0, k=10),
               "Scorer.topk": lambda: scorer.topk(X, 10), "numpy": numpy_topk}
        assert np.array_equal(fns["score_topk"]()[0][0], numpy_topk()), "top-10 disagree"
        assert np.array_equal(fns["Scorer.topk"]()[0][0], numpy_topk()), "top-10 disagree"
        t = interleaved(fns, args.repeat, args.min_time, args.pause)
        rows.append(dict(n=n, t_fastwlr=t["score_topk"], t_numpy=t["numpy"], ratio=t["numpy"] / t["score_topk"],
                         t_scorer=t["Scorer.topk"], ratio_scorer=t["numpy"] / t["Scorer.topk"]))
        print(f"one request of {n:,} x 256 float32, top-10: score_topk {t['score_topk'] * 1e6:.1f} us "
              f"({rows[-1]['ratio']:.2f}x), Scorer.topk {t['Scorer.topk'] * 1e6:.1f} us ({rows[-1]['ratio_scorer']:.2f}x), "
              f"numpy exp+argpartition+argsort {t['numpy'] * 1e6:.1f} us", flush=True)
    return rows


def write(out, rows, serve, args):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(date_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cores=os.cpu_count(),
                load_average=os.getloadavg(), fastwlr=fastwlr.__version__, numpy=np.__version__,
                backend=fastwlr.get_backend().name, args=vars(args))
    out.with_suffix(".json").write_text(json.dumps(dict(machine=meta, sweep=rows, serving=serve), indent=1))
    busy = f", beside {args.busy} busy processes" if args.busy else ""
    lines = [f"`python benchmarks/experiments/batch_sweep.py` on {meta['cores']} cores{busy}, {meta['date_utc']}; "
             "ratio = numpy time / fastwlr time (> 1: fastwlr faster).", "",
             "| d | dtype | output | threads | " + " | ".join(f"{n:,}" for n in sorted({r['n'] for r in rows})) + " |",
             "|---|---|---|---|" + "---:|" * len({r['n'] for r in rows})]
    sizes = sorted({r["n"] for r in rows})
    for key in sorted({(r["d"], r["dtype"], r["output"], r["threads"]) for r in rows}):
        cell = {r["n"]: r for r in rows if (r["d"], r["dtype"], r["output"], r["threads"]) == key}
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | " + " | ".join(
            f"{cell[n]['ratio_score']:.2f} / {cell[n]['ratio_scorer']:.2f}" if n in cell else "-" for n in sizes) + " |")
    lines += ["", "Cells: `score()` ratio / `Scorer` ratio.", ""]
    for s in serve:
        lines.append(f"* one request of {s['n']:,} x 256 float32, top-10: `Scorer.topk` {s['ratio_scorer']:.2f}x numpy, "
                     f"`score_topk` {s['ratio']:.2f}x ({s['t_scorer'] * 1e6:.1f} us, {s['t_fastwlr'] * 1e6:.1f} us vs "
                     f"{s['t_numpy'] * 1e6:.1f} us)")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, threads in zip(axes, ("default", "1")):
        for key in sorted({(r["d"], r["dtype"], r["output"]) for r in rows}):
            pts = sorted((r["n"], r["ratio_scorer"]) for r in rows if (r["d"], r["dtype"], r["output"]) == key
                         and r["threads"] == threads)
            ax.plot(*zip(*pts), marker=".", lw=1, label=f"d={key[0]} {key[1]} {key[2]}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("rows per call")
        ax.set_title(f"Scorer vs numpy, threads: {threads}")
    axes[0].set_ylabel("numpy time / fastwlr time")
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--outputs", nargs="+", default=list(OUTPUTS), choices=OUTPUTS)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--max-rows", type=int, default=10_000_000)
    ap.add_argument("--max-bytes", type=float, default=2.6e9, help="skip X larger than this")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.02, help="seconds of calls per timed round")
    # OpenBLAS's workers spin ~0.1 s after its last call (measured here: 105 ms); a shorter pause
    # left them running into the next contender's round (fastwlr's score() then took one thread)
    ap.add_argument("--pause", type=float, default=0.15, help="seconds between contenders")
    ap.add_argument("--serving", type=int, nargs="*", default=[500, 2_000, 10_000])
    ap.add_argument("--out", default=None, help="write <out>.md/.json/.png")
    ap.add_argument("--busy", type=int, default=0, help="busy background processes during the sweep")
    ap.add_argument("--smoke", action="store_true", help="seconds: d=16, up to 1,000 rows, one round")
    args = ap.parse_args(argv)
    if args.smoke:
        args.d, args.max_rows, args.repeat, args.min_time, args.pause, args.serving = [16], 1_000, 1, 0.001, 0.0, [500]
    print(f"fastwlr {fastwlr.__version__} (backend {fastwlr.get_backend().name}), numpy {np.__version__}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(0.5 if procs else 0.0)
        rows = sweep(args)
        serve = serving(args)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    worst = min(rows, key=lambda r: r["ratio_scorer"])
    print(f"lowest Scorer ratio: {worst['ratio_scorer']:.2f}x (d={worst['d']} {worst['dtype']} n={worst['n']:,} "
          f"{worst['output']} threads={worst['threads']})")
    one = {(r["d"], r["dtype"], r["n"], r["output"]): r["t_Scorer"] for r in rows if r["threads"] == "1"}
    own = [(r["t_Scorer"] / one[k], k) for r in rows if r["threads"] == "default"
           and (k := (r["d"], r["dtype"], r["n"], r["output"])) in one]
    if own:
        ratio, (d, dtype, n, output) = max(own)
        print(f"worst default / one-thread Scorer time ({args.busy} busy processes): {ratio:.2f} "
              f"(d={d} {dtype} n={n:,} {output})")
    if args.out:
        write(args.out, rows, serve, args)


if __name__ == "__main__":
    main()
