"""The long fuzz campaign: many generated cases per public entry point, in worker processes.

    python tests/fuzz_campaign.py                        # 10,000 cases for each entry point
    python tests/fuzz_campaign.py --cases 500 --entry score topk --jobs 2
    python tests/fuzz_campaign.py --replay fuzz-findings/score-3.pkl

Cases and oracle are those of the CI suite (``tests/fuzzing.py``). Each entry point runs in a worker
process that saves every case before running it, so a crash (a segfault, an abort) is recorded
with the case that caused it; the worker is then restarted for the cases that remain. Findings
(a case that broke the oracle, or crashed its worker) are pickled into ``--out`` (default
``fuzz-findings/``) with the message; ``--replay`` reruns one. The exit status is 1 if there was any
finding. Run it from the repository root, with fastwlr importable (installed, or built in place).
"""
import argparse
import json
import os
import pickle
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def worker(entry, cases, out, seed):
    """Run ``cases`` cases of one entry point; save each before running it; pickle findings."""
    import warnings

    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    import fuzzing
    warnings.simplefilter("ignore")
    current = os.path.join(out, f"{entry}.current.pkl")
    counts = {"cases": 0, "findings": 0}
    crash_at = int(os.environ.get("FASTWLR_FUZZ_CRASH_AT", "0"))  # tests of the campaign itself

    @hseed(seed)
    @settings(max_examples=cases, deadline=None, database=None, phases=["generate"],
              suppress_health_check=list(HealthCheck))
    @given(case=fuzzing.CASES[entry])
    def one(case):
        counts["cases"] += 1
        with open(current, "wb") as fh:  # the case number first, so the parent knows how many ran
            pickle.dump((counts["cases"], case), fh)
        if counts["cases"] == crash_at:
            os.abort()
        try:
            fuzzing.run(entry, case)
        except Exception as exc:  # noqa: BLE001 - a Finding, or the oracle itself failing: both are recorded
            counts["findings"] += 1
            path = os.path.join(out, f"{entry}-{seed}-{counts['cases']}.pkl")
            with open(path, "wb") as fh:
                pickle.dump({"entry": entry, "case": case, "message": f"{'' if isinstance(exc, fuzzing.Finding) else type(exc).__name__ + ': '}{exc}",
                             "traceback": traceback.format_exc()}, fh)
    one()
    os.remove(current)
    with open(os.path.join(out, f"{entry}.summary.json"), "w") as fh:
        json.dump(counts, fh)


def campaign(entries, cases, out, jobs):
    os.makedirs(out, exist_ok=True)
    pending = {e: cases for e in entries}
    totals = {e: {"cases": 0, "findings": 0, "crashes": 0} for e in entries}
    running = {}
    seed = int(time.time())
    started = time.time()
    while pending or running:
        while pending and len(running) < jobs:
            entry, left = pending.popitem()
            seed += 1
            summary = os.path.join(out, f"{entry}.summary.json")
            if os.path.exists(summary):
                os.remove(summary)
            proc = subprocess.Popen([sys.executable, __file__, "--worker", entry, "--cases", str(left),
                                     "--out", out, "--seed", str(seed)])
            running[proc] = (entry, left, seed)
        time.sleep(0.2)
        for proc in [p for p in running if p.poll() is not None]:
            entry, left, wseed = running.pop(proc)
            summary = os.path.join(out, f"{entry}.summary.json")
            if proc.returncode == 0 and os.path.exists(summary):
                with open(summary) as fh:
                    got = json.load(fh)
                totals[entry]["cases"] += got["cases"]
                totals[entry]["findings"] += got["findings"]
                print(f"{entry}: {got['cases']} cases, {got['findings']} findings", flush=True)
                continue
            # the worker died: the case it was running is the finding; restart it for the rest
            current = os.path.join(out, f"{entry}.current.pkl")
            totals[entry]["crashes"] += 1
            done = 0
            if os.path.exists(current):
                with open(current, "rb") as fh:
                    done, case = pickle.load(fh)
                totals[entry]["cases"] += done
                path = os.path.join(out, f"{entry}-crash-{wseed}.pkl")
                with open(path, "wb") as fh:
                    pickle.dump({"entry": entry, "case": case, "message": f"worker died (exit {proc.returncode})",
                                 "traceback": ""}, fh)
                os.remove(current)
                print(f"{entry}: CRASH (exit {proc.returncode}); case saved as {path}", flush=True)
            if totals[entry]["crashes"] < 20 and left - done > 0:
                pending[entry] = left - done
    print(f"\n{'entry point':<18} {'cases':>8} {'findings':>9} {'crashes':>8}   ({time.time() - started:.0f} s)")
    for entry, t in sorted(totals.items()):
        print(f"{entry:<18} {t['cases']:>8} {t['findings']:>9} {t['crashes']:>8}")
    bad = sum(t["findings"] + t["crashes"] for t in totals.values())
    print(f"findings saved in {out}/" if bad else "no findings")
    return 1 if bad else 0


def replay(path):
    import fuzzing
    with open(path, "rb") as fh:
        saved = pickle.load(fh)
    print(f"{saved['entry']}: {saved['message']}\ncase: {saved['case']!r}")
    fuzzing.run(saved["entry"], saved["case"])
    print("the case passes now")


def main(argv=None):
    import fuzzing
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--cases", type=int, default=10_000, help="cases per entry point (default 10000)")
    parser.add_argument("--entry", nargs="+", choices=sorted(fuzzing.CASES), default=sorted(fuzzing.CASES),
                        help="entry points (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes at once")
    parser.add_argument("--out", default="fuzz-findings", help="directory for findings (default fuzz-findings)")
    parser.add_argument("--replay", help="rerun one saved finding")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.cases, args.out, args.seed)
    if args.replay:
        return replay(args.replay)
    return campaign(args.entry, args.cases, args.out, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
