"""Run the fastwlr benchmark cases and write a report: a table, a JSON record and a PNG chart.

    python benchmarks/report.py            # full sizes (the README's table), ~10-15 minutes on 2 cores
    python benchmarks/report.py --quick    # seconds to a minute or two
    python benchmarks/report.py --size smoke --only scoring,topk

Every row says what it measures and on what data; times are medians over repeated runs after one
warm-up run (JIT compilation and page faults excluded). Ratios: ``x ref`` = numpy reference time /
fastest fastwlr time, ``x peer`` = best peer time / fastest fastwlr time (> 1: fastwlr is faster).
GB/s = bytes the kernel must read / median time; ``% floor`` = that over the best of 5 plain
streaming reads of the same bytes with the same threads, timed just before the case.

numpy is benchmarked with its default BLAS kernel: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, if set in
the environment, are removed for this process (recorded in the JSON with the kernel threadpoolctl
reports); pass --keep-blas-env to keep them.
"""
import os
import sys

_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if __name__ == "__main__" and "--keep-blas-env" not in sys.argv and any(v in os.environ for v in _BLAS_VARS):
    # must happen before numpy loads OpenBLAS: re-execute without the overrides, remembering them
    env = dict(os.environ)
    env["FASTWLR_BENCH_REMOVED_ENV"] = ";".join(f"{v}={env.pop(v)}" for v in _BLAS_VARS if v in env)
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import fastwlr  # noqa: F401,E402  (the installed package)
except ImportError:   # not installed: use the in-place build of this checkout
    sys.path.insert(1, str(ROOT))
import cases  # noqa: E402
GROUPS = ("floor", "scoring", "topk", "training")


# ---------------------------------------------------------------------------------------------
# machine record

def machine_info():
    import numpy as np
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "numpy": np.__version__,
        "removed_env": os.environ.get("FASTWLR_BENCH_REMOVED_ENV", ""),
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    for mod in ("scipy", "sklearn", "numba", "vowpalwabbit", "fastwlr"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = None
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "architecture", "num_threads", "version",
                                                       "threading_layer")} for p in threadpool_info()]
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                            text=True, timeout=10).stdout.strip()
    except Exception:
        info["git_commit"] = None
    try:
        from fastwlr._config import available_backends
        info["backends"] = available_backends()
    except Exception:
        pass
    return info


def _cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---------------------------------------------------------------------------------------------
# measuring

_FLOOR_FNS = {}


def adjacent_floor(case, floors, rounds=5):
    """Best GB/s of ``rounds`` streaming reads of the case's bytes, timed just before the case.

    Memory bandwidth on a shared VM drifts by tens of percent within minutes; measuring the floor
    next to each case keeps the fraction "% of floor" about the same moment."""
    f = floors.get((case.floor, case.threads))
    if f is None:
        return None
    if f.id not in _FLOOR_FNS:
        _FLOOR_FNS[f.id] = cases.run_once(f)[0]
    fn = _FLOOR_FNS[f.id]
    with cases.threads_limited(case.threads):
        best = math.inf
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
    return f.extra["nbytes_fn"]() / best / 1e9


def measure(case, min_time, max_rounds, self_timed_rounds, floors=None):
    row = {"group": case.group, "name": case.name, "data": case.data, "impl": case.impl, "kind": case.kind,
           "threads": case.threads, "note": case.note, "floor": case.floor}
    try:
        fn, first = cases.run_once(case)      # warm-up + correctness check against the reference
    except cases.Skip as exc:
        row["skipped"] = str(exc)
        return row
    except Exception as exc:   # a broken case is reported, the run goes on
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    if floors and case.floor:
        row["floor_gbps_adjacent"] = adjacent_floor(case, floors)
    nbytes_fn = case.extra.get("nbytes_fn")
    row["nbytes"] = int(nbytes_fn()) if nbytes_fn else None
    with cases.threads_limited(case.threads):
        if case.self_timed:
            # the warm-up run counts, except where it compiled (numba JIT): compiled code has no warm-up
            runs = ([] if case.impl == "numba" else [first])
            runs += [fn() for _ in range(self_timed_rounds - len(runs))]
            secs = [r["seconds"] for r in runs]
            row.update({k: v for k, v in runs[-1].items() if k != "seconds"})
            row["times"] = secs
        else:
            secs, spent = [], 0.0
            while len(secs) < max_rounds and (len(secs) < 3 or spent < min_time):
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                secs.append(dt)
                spent += dt
            row["times"] = secs
    row["median"] = statistics.median(secs)
    row["min"] = min(secs)
    row["rounds"] = len(secs)
    if row["nbytes"]:
        row["gbps"] = row["nbytes"] / row["median"] / 1e9
    return row


def add_ratios(rows):
    ok = [r for r in rows if "median" in r]
    floors = {(r["name"], r["threads"]): r for r in ok if r["group"] == "floor"}
    for r in ok:
        f = floors.get((r.get("floor"), r["threads"]))
        floor_gbps = r.get("floor_gbps_adjacent") or (f["gbps"] if f is not None else None)
        if floor_gbps and r.get("gbps"):
            r["floor_gbps"] = floor_gbps
            r["frac_of_floor"] = r["gbps"] / floor_gbps
    # x ref: against the reference on the same case; x peer: against the fastest peer on the comparable case
    by_name, by_comp = {}, {}
    for r in ok:
        if r["group"] != "floor":
            by_name.setdefault((r["group"], r["name"], r["threads"]), []).append(r)
            by_comp.setdefault((r["group"], _comparable(r), r["threads"]), []).append(r)
    for r in ok:
        if r["group"] == "floor":
            continue
        ref = [p for p in by_name[(r["group"], r["name"], r["threads"])] if p["kind"] == "reference"]
        if ref and r["kind"] != "reference":
            r["x_ref"] = ref[0]["median"] / r["median"]
        pe = [p for p in by_comp[(r["group"], _comparable(r), r["threads"])] if p["kind"] == "peer"]
        if r["name"].startswith("to 1%"):
            # a time to 1 % only compares with another that got there
            pe = [p for p in pe if p.get("reached")] if r.get("reached") else []
        if pe and r["kind"] != "peer":
            best = min(pe, key=lambda p: p["median"])
            r["x_peer"] = best["median"] / r["median"]
            r["best_peer"] = best["impl"]


def _comparable(r):
    """The name under which peers of this row are found (training: SGD rows compare with peer SGDs)."""
    name = r["name"]
    if r["group"] == "training" and "/" in name:   # "1 epoch iwa/adagrad [dense]" -> "1 epoch peer-sgd [dense]"
        head, tail = name.split(" [")
        head = head.rsplit(" ", 1)[0]
        return f"{head} peer-sgd [{tail}"
    return name


def training_gaps(rows, size):
    for r in rows:
        if r["group"] == "training" and r.get("loss") is not None and "median" in r:
            kind = r["name"].rsplit("[", 1)[1].rstrip("]")
            try:
                opt = cases.optimum(size, kind)
            except cases.Skip:
                continue
            r["optimum"] = opt
            r["gap"] = (r["loss"] - opt) / opt


# ---------------------------------------------------------------------------------------------
# output

def _fmt_t(s):
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def _fmt_x(x):
    return "-" if x is None else (f"{x:.1f}x" if x < 100 else f"{x:.0f}x")


def tables(rows):
    ok = [r for r in rows if "median" in r]
    out = []
    # bandwidth floor
    fl = [r for r in ok if r["group"] == "floor"]
    if fl:
        out.append("### Streaming-read floor (plain pass over the same bytes)\n")
        out.append("| bytes read | threads | time | GB/s |")
        out.append("|---|---:|---:|---:|")
        for r in fl:
            out.append(f"| {r['name']}: {r['data']} ({r['nbytes'] / 1e6:.0f} MB) | {r['threads']} | "
                       f"{_fmt_t(r['median'])} | {r['gbps']:.1f} |")
        out.append("")
    for group, title in (("scoring", "Scoring"), ("topk", "Top-k")):
        g = [r for r in ok if r["group"] == group]
        if not g:
            continue
        impls = [i for i in ("reference", "cython", "numba", "public API") if any(r["impl"] == i for r in g)]
        out.append(f"### {title}: median time per call (lower is better)\n")
        out.append("| what | data | threads | " + "".join(f"{i} | " for i in impls) +
                   "best peer | fastest fastwlr | GB/s | floor GB/s | % of floor | x ref | x peer |")
        out.append("|---|---|---:|" + "---:|" * len(impls) + "---|---|---:|---:|---:|---:|---:|")
        keys = []
        for r in g:
            if (r["name"], r["threads"]) not in keys:
                keys.append((r["name"], r["threads"]))
        for name, t in keys:
            rs = [r for r in g if r["name"] == name and r["threads"] == t]
            cells = []
            for i in impls:
                m = [r for r in rs if r["impl"] == i]
                cells.append(_fmt_t(m[0]["median"]) if m else "-")
            peers = [r for r in rs if r["kind"] == "peer"]
            bp = min(peers, key=lambda r: r["median"]) if peers else None
            ours = [r for r in rs if r["kind"] == "ours"]
            best = min(ours, key=lambda r: r["median"]) if ours else None
            out.append(f"| {name} | {rs[0]['data']} | {t} | " + "".join(f"{c} | " for c in cells)
                       + (f"{bp['impl']} {_fmt_t(bp['median'])}" if bp else "-") + " | "
                       + (best["impl"] if best else "-") + " | "
                       + (f"{best['gbps']:.1f}" if best and best.get("gbps") else "-") + " | "
                       + (f"{best['floor_gbps']:.1f}" if best and best.get("floor_gbps") else "-") + " | "
                       + (f"{100 * best['frac_of_floor']:.0f} %" if best and best.get("frac_of_floor") else "-")
                       + " | " + _fmt_x(best.get("x_ref") if best else None)
                       + " | " + _fmt_x(best.get("x_peer") if best else None) + " |")
        out.append("")
    g = [r for r in ok if r["group"] == "training"]
    if g:
        out.append("### Training: seconds (1 epoch, or until (L - L*)/L* <= 1 %), final objective and gap to L*\n")
        datas = []
        for r in g:
            kind = r["name"].rsplit("[", 1)[1].rstrip("]")
            if (kind, r["data"]) not in datas:
                datas.append((kind, r["data"]))
        for kind, data in datas:
            out.append(f"**[{kind}]** {data}\n")
            out.append("| what | impl | threads | time | epochs/iters | objective | gap to L* | reached 1 % | x ref | x best peer |")
            out.append("|---|---|---:|---:|---:|---:|---:|---|---:|---:|")
            for r in g:
                if not r["name"].endswith(f"[{kind}]"):
                    continue
                what = r["name"].rsplit(" [", 1)[0]
                loss = r.get("loss")
                reached = r.get("reached")
                extrap = " (extrapolated)" if r.get("extrapolated_from_rows") else ""
                out.append(f"| {what} | {r['impl']} | {r['threads']} | {_fmt_t(r['median'])}{extrap} | "
                           f"{r.get('epochs', '-')} | " + (f"{loss:.6g}" if loss is not None else "-") + " | "
                           + (f"{100 * r['gap']:.2f} %" if r.get("gap") is not None else "-") + " | "
                           + ("-" if reached is None else ("yes" if reached else "no")) + " | "
                           + _fmt_x(r.get("x_ref")) + " | "
                           + (f"{_fmt_x(r['x_peer'])} ({r['best_peer']})" if r.get("x_peer") else "-") + " |")
            out.append("")
    skipped = [r for r in rows if "skipped" in r or "error" in r]
    if skipped:
        out.append("### Not measured\n")
        seen = set()
        for r in skipped:
            why = r.get("skipped") or "ERROR " + r["error"]
            key = (r["impl"], why)
            if key in seen:
                continue
            seen.add(key)
            n = sum(1 for s in skipped if (s["impl"], s.get("skipped") or "ERROR " + s["error"]) == key)
            out.append(f"- {r['impl']}: {why} ({n} case{'s' if n > 1 else ''})")
        out.append("")
    return "\n".join(out)


def chart(rows, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart (pip install '.[bench]')")
        return None
    ok = [r for r in rows if "median" in r and r["group"] in ("scoring", "topk")]
    tmax = max((r["threads"] for r in ok), default=1)
    ok = [r for r in ok if r["threads"] == tmax]
    names = []
    for r in ok:
        if r["name"] not in names:
            names.append(r["name"])
    impls = [i for i in ("reference", "numpy", "scipy.sparse", "cython", "numba", "public API")
             if any(r["impl"] == i for r in ok)]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 0.45 * len(names) + 2.5), sharey=True)
    h = 0.8 / max(len(impls), 1)
    for j, impl in enumerate(impls):
        ys, gb = [], []
        for i, name in enumerate(names):
            m = [r for r in ok if r["name"] == name and r["impl"] == impl]
            ys.append(i + j * h)
            gb.append(m[0].get("frac_of_floor", math.nan) * 100 if m else math.nan)
        tt = []
        for name in names:
            m = [r for r in ok if r["name"] == name and r["impl"] == impl]
            tt.append(m[0]["median"] * 1e3 if m else math.nan)
        ax1.barh(ys, tt, height=h, label=impl)
        ax2.barh(ys, gb, height=h, label=impl)
    ax1.set_xscale("log")
    ax1.set_xlabel(f"median time per call, ms (log scale; {tmax} threads)")
    ax2.set_xlabel("% of the streaming-read floor over the same bytes")
    ax2.axvline(100, color="k", lw=0.8)
    ax1.set_yticks([i + 0.4 - h / 2 for i in range(len(names))])
    ax1.set_yticklabels(names)
    ax1.invert_yaxis()
    ax2.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description="fastwlr benchmark report (see the module docstring)")
    ap.add_argument("--size", choices=sorted(cases.SIZES), default="full")
    ap.add_argument("--quick", action="store_true", help="same as --size quick")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {GROUPS}")
    ap.add_argument("--out", default=str(ROOT / "docs" / "perf"), help="directory for results-<size>.json/.png/.md")
    ap.add_argument("--min-time", type=float, default=None, help="seconds of timed rounds per case (default by size)")
    ap.add_argument("--keep-blas-env", action="store_true", help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE")
    ap.add_argument("--from-json", nargs="+", metavar="JSON",
                    help="re-render tables and chart from saved results (merged in order) instead of running")
    args = ap.parse_args(argv)
    if args.from_json:
        return render_saved(args.from_json, Path(args.out))
    size = "quick" if args.quick else args.size
    only = [g.strip() for g in args.only.split(",") if g.strip()]
    bad = [g for g in only if g not in GROUPS]
    if bad:
        ap.error(f"unknown groups {bad}; choose from {GROUPS}")
    min_time = args.min_time if args.min_time is not None else {"smoke": 0.0, "quick": 0.2, "full": 0.5}[size]
    self_rounds = {"smoke": 1, "quick": 1, "full": 3}[size]

    info = machine_info()
    info.update(size=size, sizes=cases.SIZES[size], command=" ".join(["python", "benchmarks/report.py"] + sys.argv[1:]))
    print(f"# fastwlr benchmarks, size {size!r}: {info['cpu']}, {info['cores']} cores, {info['date_utc']}")
    if info["removed_env"]:
        print(f"# removed for this run: {info['removed_env']}")
    print(f"# BLAS: {info.get('threadpools')}")

    todo = []
    if "floor" in only or any(g in only for g in ("scoring", "topk")):
        todo += cases.floor_cases(size)
    if "scoring" in only:
        todo += cases.scoring_cases(size)
    if "topk" in only:
        todo += cases.topk_cases(size)
    if "training" in only:
        todo += cases.training_cases(size)
    floor_index = {(c.name, c.threads): c for c in todo if c.group == "floor"}
    rows = []
    t_start = time.perf_counter()
    for i, case in enumerate(todo):
        t0 = time.perf_counter()
        row = measure(case, min_time, max_rounds=50, self_timed_rounds=self_rounds if "1 epoch" in case.name else 1,
                      floors=floor_index)
        rows.append(row)
        status = row.get("skipped") or row.get("error") or f"{_fmt_t(row['median'])}"
        print(f"[{i + 1}/{len(todo)} {time.perf_counter() - t_start:6.0f}s] {case.id}: {status}"
              f" ({time.perf_counter() - t0:.1f}s)", flush=True)
    if "training" in only:
        training_gaps(rows, size)
    add_ratios(rows)
    info["wall_seconds"] = time.perf_counter() - t_start
    info["stream_floor"] = cases._stream_kernel()[1]

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = tables(rows)
    header = (f"Run `{info['command']}` on {info['cpu']} ({info['cores']} cores), {info['date_utc']}, "
              f"fastwlr {info.get('fastwlr')} @ {info.get('git_commit')}, numpy {info['numpy']} "
              f"(BLAS: {_blas(info)}), {info['wall_seconds']:.0f} s in all.\n")
    print()
    print(header)
    print(text)
    (out_dir / f"results-{size}.json").write_text(json.dumps({"machine": info, "results": rows}, indent=1,
                                                             default=_json_default))
    (out_dir / f"results-{size}.md").write_text(header + "\n" + text + "\n")
    png = chart(rows, out_dir / f"results-{size}.png",
                f"fastwlr {size} run, {info['cpu']}, {info['cores']} cores, {info['date_utc']}")
    print(f"wrote {out_dir / f'results-{size}.json'}, {out_dir / f'results-{size}.md'}" + (f", {png}" if png else ""))
    return 0


def render_saved(paths, out_dir):
    """Tables + chart from one or more saved JSON files (e.g. a scoring run and a training run)."""
    rows, infos = [], []
    for p in paths:
        saved = json.loads(Path(p).read_text())
        infos.append(saved["machine"])
        rows += saved["results"]
    for r in rows:
        for k in ("x_ref", "x_peer", "best_peer", "frac_of_floor", "floor_gbps"):
            r.pop(k, None)
    add_ratios(rows)
    text = tables(rows)
    header = "\n".join(f"Run `{i['command']}` on {i['cpu']} ({i['cores']} cores), {i['date_utc']}, fastwlr "
                       f"{i.get('fastwlr')} @ {i.get('git_commit')}, numpy {i['numpy']} (BLAS: {_blas(i)}), "
                       f"{i.get('wall_seconds', 0):.0f} s." for i in infos) + "\n"
    print(header)
    print(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    size = infos[0]["size"]
    (out_dir / f"report-{size}.md").write_text(header + "\n" + text + "\n")
    (out_dir / f"report-{size}.json").write_text(json.dumps({"machines": infos, "results": rows}, indent=1,
                                                            default=_json_default))
    chart(rows, out_dir / f"report-{size}.png", f"fastwlr {size} run, {infos[0]['cpu']}, {infos[0]['cores']} cores, "
          f"{infos[0]['date_utc']}")
    return 0


def _blas(info):
    tp = info.get("threadpools")
    if isinstance(tp, list):
        return ", ".join(f"{p['internal_api']} {p.get('version')} {p.get('architecture')}" for p in tp) or "none"
    return str(tp)


def _json_default(o):
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
