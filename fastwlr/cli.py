"""``fastwlr``: the batch jobs on files (train, score, rank, evaluate, convert, demo, bench), with
Vowpal Wabbit's core flags (``-d``, ``-f``, ``-i``, ``-p``, ``-k``, ``-b``).

Exit codes: 0 done, 1 a runtime error (bad data, a missing or unreadable file, a model of another
version, an output that cannot be written: one line on stderr), 2 a usage error.
``FASTWLR_DEBUG=1`` lets runtime errors through with their traceback.
"""
import argparse
import difflib
import inspect
import math
import os
import re
import sys
import time

import numpy as np

from . import _formats as fm
from ._version import __version__
from .exceptions import ModelFileError

PROG = "fastwlr"
DEFAULT_CHUNK = 100_000  # rows per chunk when scoring and ranking (and training with --chunk-size)
_LABEL_DEFAULT = {"svmlight": "watch_time", "csv": "watch_time", "tsv": "watch_time", "parquet": "watch_time",
                  "vw": "binary"}


class UsageError(Exception):
    """A bad combination of flags: exit 2 with the subcommand's usage."""


class JobError(Exception):
    """A runtime failure with a message for the user: exit 1."""


# ---------------------------------------------------------------------------- argument parsing
class _Formatter(argparse.HelpFormatter):
    """Every flag's default in --help, unless its text already says it (or there is none)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, "", argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 2 for usage errors and "did you mean" for unknown flags."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def option_strings(self):
        return [s for a in self._actions for s in a.option_strings]

    def unknown(self, extras):
        """Report unknown arguments with the nearest valid flags."""
        hints = []
        for tok in extras:
            if tok.startswith("-"):
                close = difflib.get_close_matches(tok.split("=", 1)[0], self.option_strings(), n=1, cutoff=0.5)
                hints.append(f"{tok} (did you mean {close[0]}?)" if close else tok)
            else:
                hints.append(tok)
        self.error("unrecognized arguments: " + " ".join(hints))


def _estimator_docs():
    """{parameter: its type line ("{"sgd", "lbfgs"}", "float in [0, 1]") from the estimators' numpy
    docstrings}, without the docstring's own default (the flag shows the signature's)."""
    from .estimators import WatchTimeRanker, WeightedLogisticRegression
    docs = {}
    for cls in (WeightedLogisticRegression, WatchTimeRanker):
        for m in re.finditer(r"^    (\w+(?:, \w+)*) : ([^\n]*)$", cls.__doc__ or "", re.M):
            kind = re.sub(r",?\s*default=.*$", "", m.group(2)).strip()
            for name in re.findall(r"\w+", m.group(1)):
                docs.setdefault(name, kind)
    return docs


def _estimator_params():
    """(name, default) of every estimator parameter: the ranker's signature (a superset of
    WeightedLogisticRegression's), so the flags' defaults are the estimators' own."""
    from .estimators import WatchTimeRanker
    sig = inspect.signature(WatchTimeRanker.__init__)
    return [(p.name, p.default) for p in sig.parameters.values() if p.name != "self"]


def _loose_value(text):
    """A flag value for a parameter that takes several types ("auto", None, numbers, names)."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _typed(kind):
    def conv(text):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
    conv.__name__ = kind.__name__
    return conv


def _add_estimator_flags(p):
    group = p.add_argument_group("estimator options (WatchTimeRanker / WeightedLogisticRegression parameters)")
    docs = _estimator_docs()
    for name, default in _estimator_params():
        flag = "--" + name.replace("_", "-")
        kind = docs.get(name, "").replace("%", "%%").replace('"', "")
        text = (f"{kind} " if kind and "others" not in kind else "") + f"(default: {default!r})"
        if isinstance(default, bool):
            group.add_argument(flag, dest=f"est_{name}", action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=text)
        else:
            kind = _typed(float) if type(default) is float else _typed(int) if type(default) is int else _loose_value
            group.add_argument(flag, dest=f"est_{name}", type=kind, default=argparse.SUPPRESS, metavar="V", help=text)


def _add_data_flags(p, *, target=True):
    p.add_argument("data", nargs="?", help="the input file (or -d)")
    p.add_argument("-d", "--data", dest="data_opt", metavar="FILE", help="the input file (VW's -d)")
    p.add_argument("--format", choices=fm.FORMATS, default=None,
                   help="input format (default: from the file name: .vw, .svm/.libsvm/.svmlight, .csv, .tsv, "
                        ".parquet, each optionally .gz/.zst)")
    p.add_argument("-b", "--bits", type=_typed(int), default=18,
                   help="hash bits: VW features and categorical CSV columns go to 2^b columns")
    p.add_argument("--hash-seed", type=_typed(int), default=0, help="seed of the MurmurHash3 feature hash")
    p.add_argument("--n-features", type=_typed(int), default=None,
                   help="svmlight column count (default: the model's, else the largest index + 1)")
    p.add_argument("--chunk-size", type=_typed(int), default=None, metavar="ROWS",
                   help=f"rows per chunk (train: stream with partial_fit; score/rank/evaluate read in chunks "
                        f"of {DEFAULT_CHUNK} by default)")
    p.add_argument("--skip-bad-lines", type=_typed(int), default=0, metavar="N",
                   help="skip (and count) up to N malformed lines instead of stopping at the first")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary on stderr")
    g = p.add_argument_group("labels and columns")
    g.add_argument("--labels", choices=("watch_time", "binary"), default=None,
                   help="what a label is: the watch time T (0 = no click; WatchTimeRanker) or a 0/1 or -1/+1 "
                        "label (WeightedLogisticRegression); default: watch_time, binary for VW")
    g.add_argument("--weights", metavar="FILE", default=None,
                   help="sample weights, one number per line (line i weighs data line i)")
    g.add_argument("--watch-time", metavar="COL", default=None, help="CSV/Parquet: the watch-time column")
    g.add_argument("--label", metavar="COL", default=None, help="CSV/Parquet: a 0/1 or -1/+1 label column")
    g.add_argument("--weight", metavar="COL", default=None, help="CSV/Parquet: a sample-weight column")
    g.add_argument("--request", metavar="COL", default=None,
                   help="CSV/Parquet: the request-id column (default: 'qid' or 'request_id' if present)")
    g.add_argument("--categorical", metavar="COLS", default="", help="CSV/Parquet: comma-separated columns to hash")
    g.add_argument("--drop", metavar="COLS", default="", help="CSV/Parquet: comma-separated columns to ignore")


def _add_model_in(p, required=True):
    p.add_argument("-i", "--initial-model", metavar="PATH", required=required,
                   help="a model file (fastwlr.load)" + ("" if required else "; train continues from it"))


def _add_threads(p):
    p.add_argument("--n-threads", type=_typed(int), default=None, help="threads (default: all cores)")


def build_parser():
    top = _Parser(prog=PROG, description="Weighted logistic regression as a watch-time ranker: batch jobs on files. "
                                         "Exit codes: 0 ok, 1 runtime error, 2 usage error.")
    top.add_argument("--version", action="version", version=f"fastwlr {__version__}")
    subs = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subs.required = True

    p = subs.add_parser("train", help="data -> model file", description="Train a WatchTimeRanker (watch-time "
                        "labels) or a WeightedLogisticRegression (--labels binary) on a file.")
    _add_data_flags(p)
    p.add_argument("-f", "--final-model", metavar="PATH", required=True, help="write the model here (.npz)")
    _add_model_in(p, required=False)
    p.add_argument("--passes", type=_typed(int), default=1,
                   help="with --chunk-size: passes over the file (one partial_fit epoch per chunk and pass)")
    _add_estimator_flags(p)
    p.set_defaults(func=cmd_train)

    p = subs.add_parser("score", help="model + data -> predictions", description="Score every row.")
    _add_data_flags(p)
    _add_model_in(p)
    p.add_argument("-p", "--predictions", metavar="PATH", required=True, help="output: .npy, .csv, .tsv or .parquet (by extension; '-': CSV on standard output)")
    p.add_argument("--output", choices=("log_odds", "odds", "proba", "expected"), default="odds",
                   help="log-odds z, odds e^z (the served watch time), sigma(z), or the corrected E[T] = "
                        "e^z(1-p) (a model trained with --fit-click-model)")
    _add_threads(p)
    p.set_defaults(func=cmd_score)

    p = subs.add_parser("rank", help="model + data with request ids -> top-k per request",
                        description="Each request's top-k rows (requests: runs of equal consecutive qid / tag / "
                                    "request column). Output rows: request, rank, row, score.")
    _add_data_flags(p)
    _add_model_in(p)
    p.add_argument("-p", "--predictions", metavar="PATH", required=True, help="output: .npy, .csv, .tsv or .parquet (by extension; '-': CSV on standard output)")
    p.add_argument("-k", type=_typed(int), default=10, help="rows kept per request")
    p.add_argument("--output", choices=("log_odds", "odds", "proba"), default="odds", help="the score column")
    _add_threads(p)
    p.set_defaults(func=cmd_rank)

    p = subs.add_parser("evaluate", help="model + data -> metrics",
                        description="Weighted log-loss, AUC, per-request AUC, weighted per-user loss, NDCG@k and "
                                    "the calibration table.")
    _add_data_flags(p)
    _add_model_in(p)
    p.add_argument("-k", type=_typed(int), default=10, help="NDCG@k")
    p.add_argument("--bins", type=_typed(int), default=10, help="calibration bins")
    p.add_argument("-p", "--predictions", metavar="PATH", default=None, help="also write the metrics as JSON")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="the calibration chart (needs matplotlib)")
    _add_threads(p)
    p.set_defaults(func=cmd_evaluate)

    p = subs.add_parser("convert", help="between formats", description="Convert a data file (output format from "
                        "the -p file name: .svm, .vw, .csv, .tsv, .parquet).")
    _add_data_flags(p)
    p.add_argument("-p", "--predictions", dest="predictions", metavar="PATH", required=True,
                   help="the converted file (.gz: compressed)")
    p.add_argument("--to", choices=("vw", "svmlight", "csv", "tsv", "parquet"), default=None,
                   help="output format (default: from the output file name)")
    p.set_defaults(func=cmd_convert)

    p = subs.add_parser("demo", help="the README's main job (fastwlr-demo)", add_help=False,
                        description="Runs fastwlr-demo; its flags follow (fastwlr demo --help).")
    p.add_argument("demo_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_demo)

    p = subs.add_parser("bench", help="parse/train/score throughput and peak memory on a generated file",
                        description="Writes a generated svmlight (and VW) file, then times parsing (against "
                                    "sklearn's load_svmlight_file), streaming train and score, each in a subprocess "
                                    "whose peak RSS is reported.")
    p.add_argument("--rows", type=_typed(int), default=200_000)
    p.add_argument("--nnz", type=_typed(int), default=16, help="features per row")
    p.add_argument("--chunk-size", type=_typed(int), default=DEFAULT_CHUNK, metavar="ROWS")
    p.add_argument("--dir", default=None, help="where the files go (default: a temporary directory)")
    p.add_argument("--formats", default="svmlight,vw", help="comma-separated: svmlight, vw")
    p.add_argument("--no-sklearn", action="store_true", help="skip load_svmlight_file")
    p.set_defaults(func=cmd_bench)
    return top


def parse_args(argv):
    top = build_parser()
    args, extras = top.parse_known_args(argv)
    if extras:
        sub = top._subparsers._group_actions[0].choices.get(args.command, top)
        sub.unknown(extras)
    args.parser = top._subparsers._group_actions[0].choices[args.command]
    return args


# ---------------------------------------------------------------------------- entry point
def main(argv=None):
    """Console entry point ``fastwlr``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:  # demo's flags are fastwlr-demo's: passed through untouched
        from .demo import main as demo_main
        return _run(lambda: demo_main(argv[1:]), None)
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    return _run(lambda: args.func(args), args.parser, quiet=args.quiet if hasattr(args, "quiet") else False)


def _run(job, parser, quiet=False):
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        # fastwlr's warnings (a ConvergenceWarning, "auto" running Numba because the core is not
        # built) as one line each, not Python's two-line format; --quiet drops them
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=ResourceWarning)
        code = _run_job(job, parser)
    if not quiet:
        seen = set()
        for w in caught:
            text = f"{PROG}: warning: {_one_line(w.message)}"
            if text not in seen:
                seen.add(text)
                print(text, file=sys.stderr)
    return code


def _run_job(job, parser):
    if os.environ.get("FASTWLR_DEBUG"):  # a bug report wants the traceback, not the one line
        return job() or 0
    try:
        return job() or 0
    except UsageError as exc:
        if parser is not None:
            parser.print_usage(sys.stderr)
        print(f"{parser.prog if parser else PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:
        name = exc.filename if exc.filename is not None else ""
        what = exc.strerror or str(exc)
        print(f"{PROG}: error: {name}: {what}" if name else f"{PROG}: error: {what}", file=sys.stderr)
        return 1
    except (JobError, fm.DataError, ModelFileError, ValueError, TypeError, ImportError, MemoryError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc):
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


# ---------------------------------------------------------------------------- shared pieces of the jobs
def _data_path(args):
    if args.data and args.data_opt:
        raise UsageError(f"the data file was given twice: {args.data!r} and -d {args.data_opt!r}")
    path = args.data or args.data_opt
    if not path:
        raise UsageError("no data file: give it as the argument or with -d FILE")
    return path


def _list(text):
    return tuple(c for c in (text or "").split(",") if c)


def _label_mode(args, fmt):
    if args.watch_time and args.label:
        raise UsageError("--watch-time and --label name the same role: give one")
    if args.label and args.labels == "watch_time" or args.watch_time and args.labels == "binary":
        raise UsageError("--labels contradicts --label/--watch-time")
    if args.watch_time:
        return "watch_time"
    if args.label:
        return "binary"
    return args.labels or _LABEL_DEFAULT.get(fmt, "watch_time")


def _check_counts(args):
    for name in ("bits", "chunk_size", "skip_bad_lines", "n_features", "k", "bins", "passes"):
        value = getattr(args, name, None)
        low = {"skip_bad_lines": 0, "bits": 1}.get(name, 1)
        if value is not None and value < low:
            raise UsageError(f"argument --{name.replace('_', '-')}: must be >= {low}, got {value}")
    if args.bits > 31:
        raise UsageError(f"argument -b/--bits: at most 31, got {args.bits}")


def _open_source(args, *, need_target, n_features=None):
    _check_counts(args)
    path = _data_path(args)
    fmt = args.format or fm.guess_format(path)
    if fmt is None:
        raise UsageError(f"cannot tell the format of {path!r} from its name: give --format "
                         f"{{{','.join(fm.FORMATS)}}}")
    table = fmt in ("csv", "tsv", "parquet")
    if not table and (args.watch_time or args.label or args.weight or args.request or args.categorical or args.drop):
        raise UsageError("--watch-time, --label, --weight, --request, --categorical and --drop name columns of "
                         f"CSV/TSV/Parquet input, not of {fmt}")
    mode = _label_mode(args, fmt)
    roles = None
    if table:
        target = args.watch_time or args.label
        header = _table_header(path, fmt)
        if target is None:
            target = next((c for c in ("watch_time", "label") if c in header), None)
            if target == "label" and not args.labels:
                mode = "binary"
        request = args.request or next((c for c in ("qid", "request_id") if c in header), None)
        roles = fm.Roles(target=target, weight=args.weight, request=request,
                         categorical=_list(args.categorical), drop=_list(args.drop))
    n_features = n_features if n_features is not None else args.n_features
    bad = fm.BadLines(args.skip_bad_lines)
    src = fm.Source(path, fmt, bits=args.bits, hash_seed=args.hash_seed, roles=roles, n_features=n_features,
                    bad=bad, need_target=need_target)
    src.label_mode = mode
    src.weights = _WeightsFile(args.weights) if args.weights else None
    return src


def _table_header(path, fmt):
    if fmt == "parquet":
        pq = fm._pyarrow("read Parquet input")
        if not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", path)
        try:
            return pq.ParquetFile(path).schema_arrow.names
        except Exception as exc:
            raise fm.DataError(path, None, None, f"a Parquet file ({exc})") from None
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    return fm.read_csv_header(path, "," if fmt == "csv" else "\t")


class _WeightsFile:
    """``--weights FILE``: line i is the weight of data line i (read forward, as the data stream)."""

    def __init__(self, path):
        if not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", path)
        self.path = path
        self.f = fm.open_input(path)
        self.line = 0
        self.last = None

    def weights_for(self, lines):
        out = np.empty(lines.shape[0], dtype=np.float64)
        for i, target in enumerate(lines.tolist()):
            while self.line < target:
                raw = self.f.readline()
                if not raw:
                    raise fm.DataError(self.path, self.line + 1, None,
                                       f"a weight for line {target} of the data file", "end of file")
                self.line += 1
                self.last = raw
            text = self.last.strip()
            try:
                w = float(text)
            except ValueError:
                raise fm.DataError(self.path, self.line, 1, "a weight (a number >= 0)", text) from None
            if not (w >= 0 and math.isfinite(w)):
                raise fm.DataError(self.path, self.line, 1, "a weight (a finite number >= 0)", text)
            out[i] = w
        return out


def _targets(src, rows):
    """(y or watch time, sample weight or None) of a chunk, checked with the line of a bad label."""
    label = rows.label
    bad = ~np.isfinite(label)
    if src.label_mode == "watch_time":
        bad |= label < 0
        expected = "a watch time (a number >= 0; 0 = not clicked)"
    else:
        bad |= ~np.isin(label, (-1.0, 0.0, 1.0))
        expected = "a label: 0/1 or -1/+1 (--labels binary)"
    if bad.any():
        i = int(np.argmax(bad))
        raise fm.DataError(src.path, int(rows.line[i]), None, expected,
                           "no label" if math.isnan(label[i]) else repr(float(label[i])))
    y = label if src.label_mode == "watch_time" else (label > 0).astype(np.float64)
    w = rows.weight
    if src.weights is not None:
        side = src.weights.weights_for(rows.line)
        w = side if w is None else w * side
    if w is not None and not (np.all(w >= 0) and np.all(np.isfinite(w))):
        i = int(np.argmax(~((w >= 0) & np.isfinite(w))))
        raise fm.DataError(src.path, int(rows.line[i]), None, "a weight >= 0", repr(float(w[i])))
    return y, w


class _Progress:
    """A tqdm bar on stderr when it is a terminal (and tqdm is installed), else nothing."""

    def __init__(self, args, desc):
        self.bar = None
        if getattr(args, "quiet", False) or not sys.stderr.isatty():
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(desc=desc, unit=" rows", unit_scale=True, file=sys.stderr, leave=False)

    def update(self, n, **postfix):
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _say(args, text):
    if not args.quiet:
        print(text, file=sys.stderr)


def _report_bad(args, src):
    if src.bad.count:
        first = src.bad.first
        print(f"{PROG}: skipped {src.bad.count} bad line{'s' if src.bad.count > 1 else ''} of {src.path} "
              f"(--skip-bad-lines {args.skip_bad_lines}); first: {first}", file=sys.stderr)


def _load_model(path):
    from ._io import load
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    return load(path)


def _no_rows(src):
    return fm.DataError(src.path, None, None, "data rows", "an empty file" if src.bad.count == 0
                        else f"only bad lines ({src.bad.count} skipped)")


# ---------------------------------------------------------------------------- train
def _estimator_kwargs(args):
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("est_")}


def _make_estimator(args, mode, initial):
    from .estimators import WatchTimeRanker, WeightedLogisticRegression
    kwargs = _estimator_kwargs(args)
    cls = WatchTimeRanker if mode == "watch_time" else WeightedLogisticRegression
    if cls is WeightedLogisticRegression and "fit_click_model" in kwargs:
        raise UsageError("--fit-click-model needs watch-time labels (a WatchTimeRanker), not --labels binary")
    if initial is not None:
        est = _load_model(initial)
        if type(est) is not cls:
            raise UsageError(f"-i {initial} holds a {type(est).__name__}; these labels train a {cls.__name__}")
        est.set_params(**kwargs)
    else:
        est = cls(**kwargs)
    try:  # the parameters checked now, as usage errors, not after reading the data
        alpha, l1_ratio, _, _ = est._check_params()
        est._check_sampling()
        if est.solver in ("sgd", "auto"):  # "auto" streams with SGD under --chunk-size
            est._sgd_params(alpha, l1_ratio, 1.0).validate()
        from ._config import resolve_n_threads
        resolve_n_threads(est.n_threads)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid estimator option: {_one_line(exc)}") from None
    return est


def cmd_train(args):
    initial = args.initial_model
    n_features = None
    if initial is not None:
        n_features = _load_model(initial).n_features_in_
    src = _open_source(args, need_target=True, n_features=n_features)
    est = _make_estimator(args, src.label_mode, initial)
    if initial is not None:
        _check_columns(src, est, initial)
    out = fm._AtomicFile(args.final_model)  # an unwritable -f fails now, not after the training
    out.abort()
    t0 = time.perf_counter()
    if args.chunk_size is not None:
        n_rows, loss = _train_streaming(args, src, est, initial is not None)
    else:
        if args.passes != 1:
            raise UsageError("--passes needs --chunk-size (in memory, --max-iter sets the epochs)")
        n_rows, loss = _train_in_memory(args, src, est, initial is not None)
    seconds = time.perf_counter() - t0
    if src.schema is not None:  # scoring a table later checks it has these columns, in this order
        est.input_columns_ = {"numeric": list(src.schema.numeric), "categorical": list(src.schema.categorical)}
    est.save(args.final_model)
    _report_bad(args, src)
    extra = f", average loss {loss:.6g} (progressive)" if loss is not None else ""
    _say(args, f"{PROG}: trained {type(est).__name__} on {n_rows} rows x {est.n_features_in_} features in "
               f"{seconds:.2f} s ({n_rows / max(seconds, 1e-9):,.0f} rows/s){extra} -> {args.final_model}")
    return 0


def _train_in_memory(args, src, est, warm):
    bar = _Progress(args, "reading")
    parts = []
    for rows in src.blocks():
        parts.append(rows)
        bar.update(rows.n_rows)
    bar.close()
    if not parts:
        raise _no_rows(src)
    rows = fm.concat(parts)
    n_features = src.n_features if src.n_features is not None else rows.max_index() + 1
    y, w = _targets(src, rows)
    X = rows.matrix(n_features)
    if warm:
        est.set_params(warm_start=True)
    est.fit(X, y, sample_weight=w)
    return rows.n_rows, None


def _train_streaming(args, src, est, warm):
    if est.solver in ("newton", "newton-cg"):
        raise UsageError(f"--solver {est.solver} needs the data in memory (each iteration reads all rows "
                         "several times): drop --chunk-size, or use --solver lbfgs --chunk-size N for the "
                         "same exact fit over chunked passes")
    if est.solver == "lbfgs":
        if args.passes != 1:
            raise UsageError("--passes is for SGD; --solver lbfgs makes as many passes as L-BFGS needs "
                             "(one per objective evaluation; --max-iter bounds the iterations)")
        return _train_lbfgs_chunked(args, src, est, warm)
    n_features = src.scan_n_features()
    if n_features <= 0:
        raise _no_rows(src)
    first = not warm
    n_rows = 0
    loss_sum = weight_sum = 0.0
    bar = _Progress(args, "train")
    for p in range(args.passes):
        seen = 0
        for rows in fm.chunks(src.blocks(), args.chunk_size):
            y, w = _targets(src, rows)
            X = rows.matrix(n_features)
            if not first and p == 0:  # progressive validation: the chunk's loss before it trains
                l, s = _chunk_loss(est, X, y, w, src.label_mode)
                loss_sum, weight_sum = loss_sum + l, weight_sum + s
            if first and src.label_mode == "binary":
                est.partial_fit(X, y, sample_weight=w, classes=np.array([0.0, 1.0]))
            else:
                est.partial_fit(X, y, sample_weight=w)
            first = False
            seen += rows.n_rows
            bar.update(rows.n_rows, loss=f"{loss_sum / weight_sum:.4g}" if weight_sum else "-")
        if p == 0:
            n_rows = seen
            if seen == 0:
                raise _no_rows(src)
            src.bad.limit = src.bad.count  # later passes meet the same bad lines: count them once
            src.bad.count = 0
        else:
            src.bad.count = 0
        if src.weights is not None and p + 1 < args.passes:
            src.weights.f.close()
            src.weights = _WeightsFile(src.weights.path)
    bar.close()
    src.bad.count = src.bad.limit  # the first pass's count (every pass met the same lines)
    return n_rows, (loss_sum / weight_sum if weight_sum else None)


class _ChunkedObjective:
    """The exact objective of ``est`` on a file, evaluated chunk by chunk (one pass over the file per
    evaluation, memory bounded by the chunk size): the interface ``fastwlr._lbfgs.minimize`` asks of
    a problem, as ``fastwlr.dask``'s distributed objective gives it.

    The loss is sum_i w_i l_i / sum_i w_i + (alpha / 2) ||coef||^2, the in-memory solver's: each
    chunk's kernel call gets the weights w_i * n_c / W (W the file's total weight), so that its
    (1/n_c)-mean is the chunk's share of the whole sum. The sums run in another order than one
    in-memory pass, so the optimum agrees to the solver's tolerance, not bit for bit."""

    def __init__(self, src, est, chunk_rows, alpha, kernels):
        from ._validation import check_features
        self.src, self.est, self.chunk_rows, self.alpha, self.kernels = src, est, chunk_rows, alpha, kernels
        self._check = check_features
        self.n_features = src.scan_n_features()
        if self.n_features <= 0:
            raise _no_rows(src)
        # the first pass: rows, total weight, the weighted positive share, max |x|, sum_i w_i x_ij^2
        n = 0
        total = pos = 0.0
        top = 0.0
        sq = np.zeros(self.n_features)
        self.sparse = None
        for feats, y01, w in self._chunks():
            n += feats.n_rows
            total += float(w.sum())
            pos += float(np.dot(w, y01))
            values = feats.data if feats.is_sparse else feats.X
            top = max(top, float(np.abs(values).max(initial=0.0)))
            self.sparse = feats.is_sparse if self.sparse is None else self.sparse
            if not feats.is_sparse:
                sq += np.einsum("i,ij,ij->j", w, feats.X, feats.X)
        if n == 0:
            raise _no_rows(src)
        if not total > 0:
            raise JobError(f"{src.path}: the weights sum to 0: nothing to fit")
        self.n_rows, self.total, self.pos, self.top, self.sq = n, total, pos, top, sq
        src.bad.limit, src.bad.count = src.bad.count, 0  # later passes meet the same bad lines
        self.passes = 1

    def _chunks(self):
        if self.src.weights is not None:  # each pass reads the side file from its start
            self.src.weights.f.close()
            self.src.weights = _WeightsFile(self.src.weights.path)
        self.src.bad.count = 0
        for rows in fm.chunks(self.src.blocks(), self.chunk_rows):
            y, w = _targets(self.src, rows)
            feats = self._check(rows.matrix(self.n_features))
            if self.src.label_mode == "watch_time":
                from ._weights import recipe
                y01, w = recipe(y, w)
            else:
                y01, w = y, (np.ones(rows.n_rows) if w is None else w)
            w, _ = self.est._sampling_weights(y01, w)
            yield feats, y01, np.asarray(w, dtype=np.float64)

    def evaluate(self, coef, b):
        loss, grad, grad_b = 0.0, np.zeros(self.n_features), 0.0
        for feats, y01, w in self._chunks():
            l, g, gb = self.kernels.objective_grad(feats, y01, w * (feats.n_rows / self.total), coef, b, 0.0)
            loss, grad, grad_b = loss + l, grad + g, grad_b + gb
        self.passes += 1
        return loss + 0.5 * self.alpha * float(np.dot(coef, coef)), grad + self.alpha * coef, grad_b

    def first_evaluation(self, coef, b):
        return None

    def column_scale(self):
        from ._lbfgs import _scale_from_sq
        return _scale_from_sq(self.sq / (self.total / self.n_rows), self.n_rows)

    def base_log_odds(self):
        neg = self.total - self.pos
        return float(np.log(self.pos / neg)) if self.pos > 0 and neg > 0 else 0.0

    def noise_scale(self):
        return max(1.0, self.top)


def _train_lbfgs_chunked(args, src, est, warm):
    from ._kernels import Kernels
    from ._lbfgs import minimize
    if getattr(est, "fit_click_model", False):
        raise UsageError("--fit-click-model with --chunk-size --solver lbfgs is not available: fit in memory")
    alpha, _, max_iter, tol = est._check_params()
    _, shift = est._check_sampling()
    problem = _ChunkedObjective(src, est, args.chunk_size, alpha,
                                Kernels(est.backend, est.n_threads))
    start = {}
    if warm and getattr(est, "coef_", None) is not None and est.coef_.shape[1] == problem.n_features:
        start = {"coef_init": est.coef_[0], "intercept_init": float(est.intercept_[0]) - shift}
    res = minimize(problem, fit_intercept=bool(est.fit_intercept), tol=tol, max_iter=max_iter,
                   verbose=int(est.verbose), **start)
    est._sgd_state = None
    est._set_solution(res.coef, res.intercept + shift, problem.n_features, res.n_iter, res.converged, "lbfgs")
    if src.label_mode == "binary":
        est.classes_ = np.array([0.0, 1.0])
    src.bad.count = src.bad.limit
    _say(args, f"{PROG}: L-BFGS: {res.n_iter} iterations, {problem.passes} passes over {src.path}")
    return problem.n_rows, None


def _chunk_loss(est, X, y, w, mode):
    from .backends._math import softplus
    z = est.decision_function(X).astype(np.float64)
    if mode == "watch_time":
        from ._weights import recipe
        y01, ww = recipe(y, w)
    else:
        y01, ww = y, np.ones_like(y) if w is None else w
    return float(np.dot(ww, softplus(z) - y01 * z)), float(ww.sum())


# ---------------------------------------------------------------------------- score / rank
def _check_columns(src, model, model_path):
    """A table scored (or trained further) with a model from a table must have the model's feature
    columns in the model's order: the same count in another order would score silently wrong."""
    want = getattr(model, "input_columns_", None)
    if want is None or src.schema is None:
        return
    got = {"numeric": list(src.schema.numeric), "categorical": list(src.schema.categorical)}
    for kind in ("numeric", "categorical"):
        if got[kind] != want[kind]:
            first = next((i for i, (a, b) in enumerate(zip(got[kind], want[kind])) if a != b),
                         min(len(got[kind]), len(want[kind])))
            raise JobError(f"{src.path}: its {kind} feature columns {got[kind]} are not the model's {want[kind]} "
                           f"({model_path} was trained on them in that order; the first difference is at "
                           f"position {first})")


def _scoring_source(args, model):
    src = _open_source(args, need_target=False, n_features=model.n_features_in_)
    _check_columns(src, model, args.initial_model)
    if src.n_features != model.n_features_in_:
        raise JobError(f"{src.path} has {src.n_features} feature columns but the model {args.initial_model} has "
                       f"{model.n_features_in_}" + (" (VW: train and score with the same -b)" if src.fmt == "vw" else ""))
    return src


def cmd_score(args):
    model = _load_model(args.initial_model)
    from .estimators import WatchTimeRanker
    if args.output == "expected" and (not isinstance(model, WatchTimeRanker) or model.click_model_ is None):
        raise UsageError("--output expected needs a WatchTimeRanker trained with --fit-click-model")
    if args.n_threads is not None:
        model.set_params(n_threads=args.n_threads)
    src = _scoring_source(args, model)
    writer = fm.open_output(args.predictions, [args.output], [np.float64])
    from .scoring import score
    t0 = time.perf_counter()
    n = 0
    bar = _Progress(args, "score")
    try:
        for rows in fm.chunks(src.blocks(), args.chunk_size or DEFAULT_CHUNK):
            X = rows.matrix(model.n_features_in_)
            if args.output == "expected":
                values = model.predict(X)
            else:
                values = score(X, model.coef_[0], float(model.intercept_[0]), output=args.output,
                               n_threads=model.n_threads, backend=model.backend, dtype=np.float64)
            writer.write({args.output: values})
            n += rows.n_rows
            bar.update(rows.n_rows)
        if n == 0:
            raise _no_rows(src)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    _report_bad(args, src)
    seconds = time.perf_counter() - t0
    _say(args, f"{PROG}: scored {n} rows in {seconds:.2f} s ({n / max(seconds, 1e-9):,.0f} rows/s) -> {args.predictions}")
    return 0


def _request_column(src, rows):
    r = rows.request
    if r is None or (r.dtype == np.int64 and np.any(r == fm.NO_REQUEST)):
        i = 0 if r is None else int(np.argmax(r == fm.NO_REQUEST))
        what = {"svmlight": "qid:ID after the label", "vw": "a tag ('ID) before the '|'"}.get(
            src.fmt, "a request-id column (--request COL)")
        raise fm.DataError(src.path, int(rows.line[i]), None, f"{what}: rank groups rows by request")
    return r


def cmd_rank(args):
    model = _load_model(args.initial_model)
    if args.n_threads is not None:
        model.set_params(n_threads=args.n_threads)
    src = _scoring_source(args, model)
    k = args.k
    probe = None
    writer = None
    t0 = time.perf_counter()
    n = n_req = 0
    bar = _Progress(args, "rank")
    try:
        for rows in fm.chunks(src.blocks(), args.chunk_size or DEFAULT_CHUNK, by_request=True):
            req = _request_column(src, rows)
            if writer is None:
                probe = np.int64 if req.dtype == np.int64 else object
                writer = fm.open_output(args.predictions, ["request", "rank", "row", "score"],
                                        [probe, np.int64, np.int64, np.float64])
            offsets = fm.request_offsets(req)
            idx, val = model.rank(rows.matrix(model.n_features_in_), k, offsets=offsets, output=args.output)
            keep = idx >= 0
            g = np.repeat(np.arange(idx.shape[0]), keep.sum(axis=1))
            ranks = np.tile(np.arange(1, k + 1), (idx.shape[0], 1))[keep]
            local = idx[keep]
            writer.write({"request": req[offsets[:-1]][g], "rank": ranks, "row": local + n,
                          "score": val[keep].astype(np.float64)})
            n += rows.n_rows
            n_req += idx.shape[0]
            bar.update(rows.n_rows)
        if n == 0:
            if writer is None:  # still nothing written: check the output path before failing on the input
                fm._AtomicFile(args.predictions).abort()
            raise _no_rows(src)
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
    _report_bad(args, src)
    seconds = time.perf_counter() - t0
    _say(args, f"{PROG}: ranked {n_req} requests ({n} rows, top {k}) in {seconds:.2f} s -> {args.predictions}")
    return 0


# ---------------------------------------------------------------------------- evaluate
def cmd_evaluate(args):
    model = _load_model(args.initial_model)
    if args.n_threads is not None:
        model.set_params(n_threads=args.n_threads)
    from .estimators import WatchTimeRanker
    if args.labels is None and not (args.watch_time or args.label):
        args.labels = "watch_time" if isinstance(model, WatchTimeRanker) else "binary"
    src = _scoring_source(args, model)
    if args.plot:
        fm._AtomicFile(args.plot).abort()
    if args.predictions:
        fm._AtomicFile(args.predictions).abort()
    # the scores, labels, weights and request ids (O(n) numbers, never the features)
    zs, ys, ws, reqs = [], [], [], []
    bar = _Progress(args, "evaluate")
    for rows in fm.chunks(src.blocks(), args.chunk_size or DEFAULT_CHUNK, by_request=True):
        y, w = _targets(src, rows)
        zs.append(model.decision_function(rows.matrix(model.n_features_in_)).astype(np.float64))
        ys.append(y)
        ws.append(np.ones_like(y) if w is None else w)
        r = rows.request
        reqs.append(None if r is None or (r.dtype == np.int64 and np.any(r == fm.NO_REQUEST)) else r)
        bar.update(rows.n_rows)
    bar.close()
    if not zs:
        raise _no_rows(src)
    z, y, w = np.concatenate(zs), np.concatenate(ys), np.concatenate(ws)
    offsets = None
    if all(r is not None for r in reqs):
        offsets = fm.request_offsets(np.concatenate(reqs))
    results = _metrics(z, y, w, offsets, src.label_mode, args.k, args.bins, model)
    _report_bad(args, src)
    table = results.pop("calibration")
    print(f"{src.path}: {z.shape[0]} rows" + (f", {offsets.shape[0] - 1} requests" if offsets is not None else ""))
    for name, value in results.items():
        print(f"{name:28s} {value:.6g}" if isinstance(value, float) else f"{name:28s} {value}")
    print("\ncalibration (by quantile of the prediction):")
    print(table.to_markdown())
    if args.predictions:
        import json
        out = fm._AtomicFile(args.predictions, "w")
        json.dump({**results, "calibration": {k: np.asarray(v).tolist() for k, v in table.as_dict().items()}},
                  out.f, indent=1)
        out.commit()
    if args.plot:
        _plot(table, args.plot)
    return 0


def _metrics(z, y, w, offsets, mode, k, bins, model):
    from . import metrics as m
    from .backends._math import safe_exp
    out = {}
    if mode == "watch_time":
        t = y
        clicked = (t > 0).astype(np.float64)
        out["weighted log-loss"] = m.weighted_log_loss(t, z, sample_weight=w)
        out["AUC (clicks)"] = _maybe(m.auc, clicked, z, sample_weight=w)
        out["weighted AUC (watch time)"] = _maybe(m.weighted_auc, t, z, sample_weight=w)
        if offsets is not None:
            out["per-request AUC (clicks)"] = _maybe(m.auc, clicked, z, sample_weight=w, offsets=offsets)
            out["weighted per-user loss"] = _maybe(m.weighted_per_user_loss, t, z, offsets, sample_weight=w)
            out[f"NDCG@{k}"] = _maybe(m.ndcg, t, z, k, offsets=offsets)
        pred = safe_exp(z)
        out["calibration"] = m.calibration_table(t, pred, n_bins=bins, sample_weight=w)
    else:
        out["log-loss"] = m.log_loss(y, z, sample_weight=w)
        out["AUC"] = _maybe(m.auc, y, z, sample_weight=w)
        if offsets is not None:
            out["per-request AUC"] = _maybe(m.auc, y, z, sample_weight=w, offsets=offsets)
            out[f"NDCG@{k} (gain: label)"] = _maybe(m.ndcg, y, z, k, offsets=offsets)
        from .backends._math import sigmoid
        out["calibration"] = m.calibration_table(y, sigmoid(z), n_bins=bins, sample_weight=w)
    return out


def _maybe(fn, *a, **kw):
    try:
        return float(fn(*a, **kw))
    except ValueError as exc:  # undefined on these data (one class, no pair): say so, keep the rest
        return f"undefined ({_one_line(exc)})"


def _plot(table, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise JobError("--plot needs matplotlib (pip install matplotlib)") from None
    from .metrics import plot_calibration
    fig, ax = plt.subplots(figsize=(5, 5))
    plot_calibration(table, ax=ax)
    out = fm._AtomicFile(path)
    fig.savefig(out.f, format=os.path.splitext(path)[1][1:] or "png")
    plt.close(fig)
    out.commit()


# ---------------------------------------------------------------------------- convert
def cmd_convert(args):
    src = _open_source(args, need_target=False)
    to = args.to or fm.guess_format(args.predictions)
    if to is None:
        raise UsageError(f"cannot tell the output format of {args.predictions!r}: give --to")
    if to == "parquet":
        fm._pyarrow("write Parquet output")
    if src.n_features is None:
        src.scan_n_features()
    out = fm._AtomicFile(args.predictions)
    raw = out.f
    if args.predictions.endswith(".gz"):
        import gzip
        raw = gzip.GzipFile(fileobj=out.f, mode="wb")
    n = 0
    pw = None
    try:
        for rows in fm.chunks(src.blocks(), args.chunk_size or DEFAULT_CHUNK):
            X = rows.matrix(src.n_features)
            req = rows.request
            has_req = req is not None and not (req.dtype == np.int64 and np.any(req == fm.NO_REQUEST))
            if to == "svmlight":
                if has_req and req.dtype != np.int64:
                    req = _int_requests(req, src, rows)
                fm.write_svmlight(raw, X, rows.label, req if has_req else None)
            elif to == "vw":
                label, weight = rows.label, rows.weight
                if src.label_mode == "watch_time":  # the recipe, in VW's terms: +-1 labels, T as importance
                    from ._weights import recipe
                    y01, weight = recipe(label, weight)
                    label = 2.0 * y01 - 1.0
                fm.write_vw(raw, X, label, weight, req if has_req else None)
            else:
                import scipy.sparse as sp
                dense = X.toarray() if sp.issparse(X) else X
                cols = {"label" if src.label_mode == "binary" else "watch_time": rows.label}
                if rows.weight is not None:
                    cols["weight"] = rows.weight
                if has_req:
                    cols["qid"] = req
                for j in range(dense.shape[1]):
                    cols[f"x{j}"] = dense[:, j]
                if to == "parquet":
                    import pyarrow as pa
                    import pyarrow.parquet as pq
                    table = pa.table({k: (v if v.dtype != object else v.astype(str)) for k, v in cols.items()})
                    if pw is None:
                        pw = pq.ParquetWriter(raw, table.schema)
                    pw.write_table(table)
                else:
                    sep = "," if to == "csv" else "\t"
                    if n == 0:
                        raw.write((sep.join(cols) + "\n").encode())
                    fmts = [fm._text_format(c) for c in cols.values()]
                    lines = [sep.join(f(v) for f, v in zip(fmts, r)) for r in zip(*cols.values())]
                    raw.write(("\n".join(lines) + "\n").encode())
            n += rows.n_rows
        if n == 0:
            raise _no_rows(src)
        if pw is not None:
            pw.close()
        if raw is not out.f:
            raw.close()
        out.commit()
    except BaseException:
        out.abort()
        raise
    _report_bad(args, src)
    _say(args, f"{PROG}: wrote {n} rows ({src.fmt} -> {to}) to {args.predictions}")
    return 0


def _int_requests(req, src, rows):
    try:
        return np.array([int(r) for r in req], dtype=np.int64)
    except ValueError:
        raise JobError(f"{src.path}: svmlight needs integer request ids (qid:), got {req[0]!r}") from None


# ---------------------------------------------------------------------------- demo / bench
def cmd_demo(args):  # main() passes demo's flags through before argparse sees them
    from .demo import main as demo_main
    return demo_main(args.demo_args)


def cmd_bench(args):
    from ._bench import run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
