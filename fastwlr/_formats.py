"""The data files of batch jobs: svmlight/libsvm, Vowpal Wabbit text, CSV/TSV and Parquet, read in
chunks of rows (so a file larger than memory streams), and the outputs the command line writes.

Formats (``fastwlr --help`` and README "Batch jobs on files"):

* **svmlight/libsvm** ``label [qid:ID] index:value ... [# comment]``: ``label`` is the watch time T
  (0: an impression without a click) or, with ``labels="binary"``, a 0/1 or -1/+1 label;
  ``qid`` is the request id. Indices are used as they are (column j is index j; a 1-based file
  leaves column 0 empty, which changes nothing). Repeated indices in a row add up.
* **Vowpal Wabbit text** ``label [importance] ['tag]|namespace feature[:value] ... |other ...``:
  each feature is hashed into 2^bits columns by MurmurHash3 (32-bit, x86 variant)::

      h_ns   = murmur3_32(namespace name as UTF-8, seed)       (the name "" for "| f ...": 0 for seed 0)
      column = murmur3_32(feature name as UTF-8, h_ns) & (2^bits - 1)
               (an all-digit name: (int(name) + h_ns) & (2^bits - 1))

  so the same feature name in two namespaces lands in different columns (namespaces kept apart).
  These are vw's own feature indices (``--hash strings``, ``--hash_seed``; checked against the
  vowpalwabbit package); vw's constant feature is not added (the model has an intercept).
  ``|ns:2.5`` scales the namespace's values. The tag is the request id. Lines without a label
  are allowed where no label is needed (``score``, ``rank``).
* **CSV/TSV** with a header line: columns by role (the target, a weight, a request id, columns
  dropped); every other column is a numeric feature, in header order, except the categorical ones,
  which are hashed (``murmur3_32("name=value", seed) & (2^bits - 1)``, after the numeric columns).
* **Parquet** (optional: pyarrow), the same roles as CSV.

Gzip and zstd (if the ``zstandard`` package is installed) inputs are recognised by their magic
bytes. The text parsers are compiled (``backends/cython_core/_parse.pyx``); without the compiled
core the pure-Python parsers here give identical results, only slower.
"""
import csv
import io
import math
import os
import re
import struct
from dataclasses import dataclass

import numpy as np

FORMATS = ("vw", "svmlight", "csv", "tsv", "parquet")
_EXTENSIONS = {".vw": "vw", ".svm": "svmlight", ".libsvm": "svmlight", ".svmlight": "svmlight",
               ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSED = (".gz", ".zst", ".zstd")
NO_REQUEST = np.iinfo(np.int64).min  # svmlight rows without qid:
BLOCK_BYTES = 1 << 22  # text read per parser call: bounded memory whatever the line count


class DataError(ValueError):
    """Malformed input, named by file, line and column: ``FILE:LINE: column C: expected X, got Y``."""

    def __init__(self, path, line, column, expected, got=None):
        self.path, self.line, self.column, self.expected, self.got = path, line, column, expected, got
        where = f"{path}:{line}" if line is not None else f"{path}"
        col = f" column {column}:" if column is not None else ""
        got_s = "" if got is None else f", got {_show(got)}"
        super().__init__(f"{where}:{col} expected {expected}{got_s}")


def _show(got):
    if isinstance(got, bytes):
        got = got.decode("utf-8", "replace")
    got = str(got)
    if got == "":
        return "nothing"
    return repr(got if len(got) <= 40 else got[:37] + "...")


class BadLines:
    """The ``--skip-bad-lines N`` budget shared by all chunks of a file: the first N malformed lines
    are counted and skipped, the next one is the error."""

    def __init__(self, limit=0):
        self.limit, self.count, self.first = int(limit), 0, None

    def record(self, error):
        if self.count >= self.limit:
            if self.count:
                raise DataError(error.path, error.line, error.column,
                                f"{error.expected} (more than --skip-bad-lines {self.limit} bad lines)", error.got)
            raise error
        self.count += 1
        if self.first is None:
            self.first = error


def guess_format(path):
    """The format the file name says (``.vw``, ``.svm``/``.libsvm``/``.svmlight``, ``.csv``,
    ``.tsv``, ``.parquet``, each optionally ``.gz``/``.zst``), or None."""
    name = os.path.basename(os.fspath(path)).lower()
    for ext in _COMPRESSED:
        if name.endswith(ext):
            name = name[:-len(ext)]
            break
    return _EXTENSIONS.get(os.path.splitext(name)[1])


# ---------------------------------------------------------------------------- MurmurHash3
def murmur3_32(data, seed=0):
    """MurmurHash3 x86 32-bit (Austin Appleby's ``MurmurHash3_x86_32``) of ``data`` (bytes or str,
    str as UTF-8), an unsigned 32-bit int. ``murmur3_32(b"hello", 0) == 0x248bfa47``."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    c1, c2, m = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & m
    n = len(data)
    nblocks = n // 4
    for (k,) in struct.iter_unpack("<I", data[:nblocks * 4]):
        k = (k * c1) & m
        k = ((k << 15) | (k >> 17)) & m
        k = (k * c2) & m
        h ^= k
        h = ((h << 13) | (h >> 19)) & m
        h = (h * 5 + 0xE6546B64) & m
    tail = data[nblocks * 4:]
    k = 0
    if len(tail) >= 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        k = (k * c1) & m
        k = ((k << 15) | (k >> 17)) & m
        k = (k * c2) & m
        h ^= k
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    h ^= h >> 16
    return h


# ---------------------------------------------------------------------------- opening files
def open_input(path):
    """A binary file object of ``path``, decompressing gzip/zstd (recognised by magic bytes)."""
    path = os.fspath(path)
    f = open(path, "rb")  # FileNotFoundError/PermissionError/IsADirectoryError: the CLI's one line
    magic = f.read(4)
    f.seek(0)
    if magic[:2] == b"\x1f\x8b":
        import gzip
        return gzip.GzipFile(fileobj=f, mode="rb")
    if magic == b"\x28\xb5\x2f\xfd":
        try:
            import zstandard
        except ImportError:
            f.close()
            raise DataError(path, None, None, "an uncompressed or gzip file: this is zstd-compressed and reading "
                                              "it needs the zstandard package (pip install zstandard)") from None
        return zstandard.ZstdDecompressor().stream_reader(f, closefd=True)
    return f


def _read(f, n, path):
    try:
        return f.read(n)
    except EOFError as exc:  # gzip: "Compressed file ended before the end-of-stream marker was reached"
        raise DataError(path, None, None, f"a complete compressed file: it is truncated ({exc})") from None
    except OSError as exc:  # gzip.BadGzipFile, zlib.error, zstd errors
        raise DataError(path, None, None, f"a readable file: it is corrupt ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # zstandard.ZstdError is not an OSError
        if type(exc).__module__.startswith("zstandard"):
            raise DataError(path, None, None, f"a readable zstd file ({exc})") from None
        raise


def iter_blocks(path, block_bytes=BLOCK_BYTES, skip_lines=0):
    """(text block ending at a line end, number of its first line), over the whole file; the first
    ``skip_lines`` lines (a header) are passed over."""
    with open_input(path) as f:
        line = 1
        rest = b""
        while True:
            data = _read(f, block_bytes, path)
            if not data:
                if rest:
                    yield rest, line
                return
            buf = rest + data
            cut = buf.rfind(b"\n")
            if cut < 0:
                rest = buf
                continue
            block, rest = buf[:cut + 1], buf[cut + 1:]
            while skip_lines and block:
                nl = block.find(b"\n")
                block = block[nl + 1:] if nl >= 0 else b""
                skip_lines -= 1
                line += 1
            if block:
                yield block, line
                line += block.count(b"\n")


# ---------------------------------------------------------------------------- parsed rows
@dataclass
class Rows:
    """Parsed rows: features (CSR arrays, or a dense 2-D array), labels (NaN where a line has none),
    weights (None: all 1), request ids (None: no request column) and each row's line number."""
    label: np.ndarray
    weight: object
    request: object
    line: np.ndarray
    indptr: object = None
    indices: object = None
    data: object = None
    dense: object = None

    @property
    def n_rows(self):
        return int(self.label.shape[0])

    def take(self, start, stop):
        w = None if self.weight is None else self.weight[start:stop]
        r = None if self.request is None else self.request[start:stop]
        if self.dense is not None:
            return Rows(self.label[start:stop], w, r, self.line[start:stop], dense=self.dense[start:stop])
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        return Rows(self.label[start:stop], w, r, self.line[start:stop], self.indptr[start:stop + 1] - lo,
                    self.indices[lo:hi], self.data[lo:hi])

    def matrix(self, n_features):
        """X for the estimators: the dense array, or a scipy CSR matrix of ``n_features`` columns."""
        if self.dense is not None:
            return self.dense
        import scipy.sparse as sp
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=(self.n_rows, n_features))

    def max_index(self):
        if self.dense is not None:
            return self.dense.shape[1] - 1
        return int(self.indices.max()) if self.indices.shape[0] else -1


def concat(parts):
    if len(parts) == 1:
        return parts[0]
    label = np.concatenate([p.label for p in parts])
    line = np.concatenate([p.line for p in parts])
    weight = None if all(p.weight is None for p in parts) else np.concatenate(
        [p.weight if p.weight is not None else np.ones(p.n_rows) for p in parts])
    request = None if parts[0].request is None else np.concatenate([p.request for p in parts])
    if parts[0].dense is not None:
        return Rows(label, weight, request, line, dense=np.concatenate([p.dense for p in parts]))
    sizes = [p.indptr[1:] for p in parts]
    shift = np.cumsum([0] + [int(p.indptr[-1]) for p in parts[:-1]])
    indptr = np.concatenate([np.zeros(1, np.int64)] + [s.astype(np.int64) + off for s, off in zip(sizes, shift)])
    return Rows(label, weight, request, line, indptr, np.concatenate([p.indices for p in parts]),
                np.concatenate([p.data for p in parts]))


# ---------------------------------------------------------------------------- text parsers (pure Python)
# The compiled parsers (backends/cython_core/_parse.pyx) implement exactly these rules; the tests
# compare the two on the same text. Both take (block, number of its first line, on_error, ...) and
# return arrays; ``on_error(line, column, expected, got)`` raises or, under --skip-bad-lines, returns
# (the line is then dropped).
_TOKEN = re.compile(rb"\S+")
# The numbers both parsers accept: decimal, optional exponent (no inf/nan, hex or "1_000", which
# Python's float and C's strtod disagree about); the value is then the correctly rounded float64.
_NUMBER = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_INTEGER = re.compile(rb"[+-]?[0-9]+\Z")
MAX_INDEX = 2**31 - 1


class _Bad(Exception):
    pass


def _number(tok, line, col, what):
    if not _NUMBER.match(tok):
        raise _Bad(line, col, what, tok)
    x = float(tok)
    if not math.isfinite(x):
        raise _Bad(line, col, what + " (finite)", tok)
    return x


def parse_svmlight_py(block, first_line, on_error, n_features=-1):
    """svmlight rows of one text block: (label, qid, line, indptr, indices, data) arrays."""
    labels, requests, lines, indptr, indices, values = [], [], [], [0], [], []
    limit = MAX_INDEX if n_features < 0 else min(n_features, MAX_INDEX)
    for i, raw in enumerate(block.split(b"\n")):
        lineno = first_line + i
        text = raw.split(b"#", 1)[0]
        toks = [(m.start() + 1, m.group()) for m in _TOKEN.finditer(text)]
        if not toks:
            continue
        try:
            col, tok = toks[0]
            label = _number(tok, lineno, col, "a label (a number)")
            qid = NO_REQUEST
            k = 1
            if len(toks) > 1 and toks[1][1].startswith(b"qid:"):
                col, tok = toks[1]
                qid = int(tok[4:]) if _INTEGER.match(tok[4:]) else None
                if qid is None or not -2**63 < qid < 2**63:
                    raise _Bad(lineno, col, "qid:INTEGER", tok)
                k = 2
            row_idx, row_val = [], []
            for col, tok in toks[k:]:
                idx_s, sep, val_s = tok.partition(b":")
                if not sep:
                    raise _Bad(lineno, col, "index:value", tok)
                if not idx_s.isdigit() or not idx_s.isascii():
                    raise _Bad(lineno, col, "a feature index (an integer >= 0)", idx_s)
                idx = int(idx_s)
                if idx >= limit:
                    raise _Bad(lineno, col, f"a feature index below {limit} (the column count)", idx_s)
                row_val.append(_number(val_s, lineno, col + len(idx_s) + 1, "a feature value (a number)"))
                row_idx.append(idx)
        except _Bad as err:
            on_error(*err.args)
            continue
        labels.append(label)
        requests.append(qid)
        lines.append(lineno)
        indices.extend(row_idx)
        values.extend(row_val)
        indptr.append(len(indices))
    return (np.array(labels, dtype=np.float64), np.array(requests, dtype=np.int64), np.array(lines, dtype=np.int64),
            np.array(indptr, dtype=np.int64), np.array(indices, dtype=np.int32), np.array(values, dtype=np.float64))


class _Hasher:
    """VW feature hashing with a cache (the pure-Python fallback hashes each distinct name once)."""

    def __init__(self, bits, seed):
        self.mask, self.seed = (1 << bits) - 1, seed
        self.ns, self.feat = {}, {}

    def namespace(self, name):
        h = self.ns.get(name)
        if h is None:
            h = self.ns[name] = murmur3_32(name, self.seed)
        return h

    def column(self, name, h_ns):
        key = (name, h_ns)
        c = self.feat.get(key)
        if c is None:
            if len(self.feat) > 1 << 20:
                self.feat.clear()
            c = self.feat[key] = vw_column(name, h_ns, self.mask)
        return c


def vw_column(name, h_ns, mask):
    """vw's own rule (``hashstring``): an all-digit name is the number plus the namespace hash
    (wrapping at 2^64), any other name is murmur3_32(name, h_ns); then ``& mask``."""
    if name.isdigit() and name.isascii():
        return (int(name) + h_ns) & mask
    return murmur3_32(name, h_ns) & mask


def parse_vw_py(block, first_line, on_error, hasher):
    """VW rows of one text block: (label, weight, tag list, line, indptr, indices, data)."""
    labels, weights, tags, lines, indptr, indices, values = [], [], [], [], [0], [], []
    for i, raw in enumerate(block.split(b"\n")):
        lineno = first_line + i
        if not raw.strip():
            continue
        try:
            bar = raw.find(b"|")
            if bar < 0:
                raise _Bad(lineno, len(raw.rstrip()) + 1, "'|' and the features", b"end of line")
            head = raw[:bar]
            htoks = [(m.start() + 1, m.group()) for m in _TOKEN.finditer(head)]
            label, weight, tag = math.nan, 1.0, b""
            if htoks and (htoks[-1][1].startswith(b"'") or (len(htoks) >= 2 and not head[-1:].isspace())):
                # a tag (VW's rule): the last token when it starts with ' or, after a label, touches the '|'
                tag = htoks.pop()[1]
                tag = tag[1:] if tag.startswith(b"'") else tag
            if len(htoks) > 2:
                col, tok = htoks[2]
                raise _Bad(lineno, col, "'|' after 'label [importance] [tag]'", tok)
            if htoks:
                label = _number(htoks[0][1], lineno, htoks[0][0], "a label (a number)")
            if len(htoks) == 2:
                weight = _number(htoks[1][1], lineno, htoks[1][0], "an importance weight (a number >= 0)")
                if weight < 0:
                    raise _Bad(lineno, htoks[1][0], "an importance weight (a number >= 0)", htoks[1][1])
            row_idx, row_val = [], []
            pos = bar
            while pos < len(raw):
                nxt = raw.find(b"|", pos + 1)
                seg_end = nxt if nxt >= 0 else len(raw)
                seg = raw[pos + 1:seg_end]
                stoks = [(pos + 2 + m.start(), m.group()) for m in _TOKEN.finditer(seg)]
                scale = 1.0
                if seg[:1] and not seg[:1].isspace():
                    col, name = stoks.pop(0)
                    name, sep, sc = name.partition(b":")
                    if sep:
                        scale = _number(sc, lineno, col + len(name) + 1, "a namespace scale (a number)")
                else:
                    name = b""
                h_ns = hasher.namespace(name)
                for col, tok in stoks:
                    fname, sep, val_s = tok.partition(b":")  # vw splits at the first ':'
                    if not fname:
                        raise _Bad(lineno, col, "a feature name before ':'", tok)
                    val = _number(val_s, lineno, col + len(fname) + 1, "a feature value (a number)") if sep else 1.0
                    row_idx.append(hasher.column(fname, h_ns))
                    row_val.append(val * scale)
                pos = seg_end
        except _Bad as err:
            on_error(*err.args)
            continue
        labels.append(label)
        weights.append(weight)
        tags.append(tag.decode("utf-8", "replace"))
        lines.append(lineno)
        indices.extend(row_idx)
        values.extend(row_val)
        indptr.append(len(indices))
    return (np.array(labels, dtype=np.float64), np.array(weights, dtype=np.float64), tags,
            np.array(lines, dtype=np.int64), np.array(indptr, dtype=np.int64), np.array(indices, dtype=np.int32),
            np.array(values, dtype=np.float64))


def _compiled():
    """The compiled parsers, or None (core not built: the pure-Python ones above)."""
    if os.environ.get("FASTWLR_PARSER") == "python":  # for comparing the two
        return None
    try:
        from .backends.cython_core import _parse
    except ImportError:
        return None
    return _parse


# ---------------------------------------------------------------------------- tables (CSV, Parquet)
@dataclass
class Roles:
    """Which columns of a table are what. ``target``: the watch time or label column."""
    target: str = None
    weight: str = None
    request: str = None
    categorical: tuple = ()
    drop: tuple = ()


class TableSchema:
    """The feature layout of a table from its header: numeric columns in header order, then the
    hashed categorical columns (2^bits)."""

    def __init__(self, header, roles, path, bits, seed, need_target):
        self.path = path
        for name in [roles.target, roles.weight, roles.request, *roles.categorical, *roles.drop]:
            if name is not None and name not in header:
                raise DataError(path, 1, None, f"a column named {name!r} in the header", ", ".join(header))
        if need_target and roles.target is None:
            raise DataError(path, 1, None, "a target column: name it with --watch-time COL or --label COL",
                            ", ".join(header))
        self.header, self.roles = list(header), roles
        special = {roles.target, roles.weight, roles.request, *roles.drop}
        self.numeric = [h for h in header if h not in special and h not in roles.categorical]
        self.categorical = [h for h in header if h in roles.categorical]
        self.hash_bits, self.seed = bits, seed
        self.n_features = len(self.numeric) + (1 << bits if self.categorical else 0)
        if self.n_features == 0:
            raise DataError(path, 1, None, "at least one feature column", ", ".join(header))

    def rows(self, columns, lines, bad):
        """Rows from {name: sequence of str or numbers} (one chunk); bad cells skip their row."""
        n = lines.shape[0]
        keep = np.ones(n, dtype=bool)
        numeric = {}
        for name in self.numeric + [c for c in (self.roles.target, self.roles.weight) if c is not None]:
            numeric[name] = self._numbers(columns[name], name, lines, keep, bad)
        if not keep.all():
            numeric = {k: a[keep] for k, a in numeric.items()}
            columns = {k: np.asarray(columns[k], dtype=object)[keep] for k in columns}
            lines = lines[keep]
            n = lines.shape[0]
        label = numeric[self.roles.target] if self.roles.target is not None else np.full(n, np.nan)
        weight = numeric[self.roles.weight] if self.roles.weight is not None else None
        request = np.asarray(columns[self.roles.request], dtype=object) if self.roles.request else None
        dense = np.empty((n, len(self.numeric)), dtype=np.float64)
        for j, name in enumerate(self.numeric):
            dense[:, j] = numeric[name]
        if not self.categorical:
            return Rows(label, weight, request, lines, dense=dense)
        mask = (1 << self.hash_bits) - 1
        base = len(self.numeric)
        cols = [np.tile(np.arange(base, dtype=np.int64), (n, 1))] if base else []
        for name in self.categorical:
            values = np.asarray(columns[name]).astype(str)
            uniq, inv = np.unique(values, return_inverse=True)
            h = np.array([base + (murmur3_32(f"{name}={u}", self.seed) & mask) for u in uniq], dtype=np.int64)
            cols.append(h[inv.reshape(-1)][:, None])
        k = base + len(self.categorical)
        indices = np.concatenate(cols, axis=1).reshape(-1).astype(np.int32 if self.n_features < 2**31 else np.int64)
        data = np.concatenate([dense, np.ones((n, len(self.categorical)))], axis=1).reshape(-1)
        return Rows(label, weight, request, lines, np.arange(0, n * k + 1, k, dtype=np.int64), indices, data)

    def _numbers(self, column, name, lines, keep, bad):
        arr = np.asarray(column)
        if arr.dtype.kind in "biuf":
            out = arr.astype(np.float64)
            badmask = ~np.isfinite(out)
        else:
            out = np.empty(arr.shape[0], dtype=np.float64)
            badmask = np.zeros(arr.shape[0], dtype=bool)
            for i, s in enumerate(arr):
                try:
                    out[i] = float(s)
                    badmask[i] = not math.isfinite(out[i])
                except (TypeError, ValueError):
                    badmask[i] = True
        for i in np.flatnonzero(badmask & keep):
            hint = "" if name in (self.roles.target, self.roles.weight) else \
                " (a categorical column? name it with --categorical)"
            bad.record(DataError(self.path, int(lines[i]), repr(name), f"a finite number{hint}", arr[i]))
            keep[i] = False
        return out


def read_csv_header(path, delimiter):
    blocks = iter_blocks(path, block_bytes=1 << 16)
    try:
        for block, _ in blocks:
            first = block.split(b"\n", 1)[0].decode("utf-8-sig", "replace").rstrip("\r")
            return next(csv.reader([first], delimiter=delimiter))
    finally:
        blocks.close()
    raise DataError(path, None, None, "a header line and data rows", "an empty file")


def parse_csv_block(block, first_line, schema, delimiter, bad):
    text = block.decode("utf-8", "replace")
    cells, lines = [], []
    width = len(schema.header)
    # csv.reader counts physical lines only through line_num; quoted newlines are rare in logs
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    for row in reader:
        lineno = first_line + reader.line_num - 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            bad.record(DataError(schema.path, lineno, len(row) if len(row) < width else width + 1,
                                 f"{width} fields (as the header)", f"{len(row)} fields"))
            continue
        cells.append(row)
        lines.append(lineno)
    lines = np.array(lines, dtype=np.int64)
    if not cells:
        return None
    columns = {name: [r[j] for r in cells] for j, name in enumerate(schema.header)}
    return schema.rows(columns, lines, bad)


# ---------------------------------------------------------------------------- outputs
class _AtomicFile:
    """Written under a temporary name next to ``path`` and renamed at ``commit``: a failed job never
    leaves a partial output (nor replaces a good one). Opening checks that ``path`` is writable.
    ``-`` is standard output, and a path that exists but is not a regular file (/dev/stdout, a
    FIFO) is written in place: renaming onto it would replace the device."""

    def __init__(self, path, mode="wb"):
        import tempfile
        self.path = os.fspath(path)
        self.tmp = None
        if self.path == "-":
            import sys
            self.f = sys.stdout.buffer if "b" in mode else sys.stdout
            self.close_f = False
            return
        self.close_f = True
        if os.path.isdir(self.path):
            raise IsADirectoryError(21, "Is a directory", self.path)
        if os.path.exists(self.path) and not os.path.isfile(self.path):
            self.f = open(self.path, mode)
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=".fastwlr-", suffix=".part", dir=directory)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, self.path) from None
        self.f = os.fdopen(fd, mode)

    def commit(self):
        if self.close_f:
            self.f.close()
        else:
            self.f.flush()
        if self.tmp is not None:
            os.replace(self.tmp, self.path)

    def abort(self):
        if self.close_f:
            self.f.close()
        if self.tmp is not None and os.path.exists(self.tmp):
            os.unlink(self.tmp)


class NpyWriter:
    """A 1-D (or structured) .npy written chunk by chunk: the header's row count is filled in at the
    end (the header is sized for any count up front, so the data never move)."""

    def __init__(self, path, dtype):
        self.out, self.dtype, self.n = _AtomicFile(path), np.dtype(dtype), 0
        self.header_len = len(self._header(10 ** 18))
        self.out.f.write(b"\0" * self.header_len)

    def _header(self, n, total=None):
        d = "{'descr': %r, 'fortran_order': False, 'shape': (%d,), }" % (np.lib.format.dtype_to_descr(self.dtype), n)
        total = total or -(-(len(d) + 11) // 64) * 64  # magic + version + length + dict + "\n", 64-aligned
        body = d.ljust(total - 11) + "\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")

    def write(self, columns):
        if self.dtype.names:
            a = np.empty(len(next(iter(columns.values()))), dtype=self.dtype)
            for name in self.dtype.names:
                a[name] = columns[name]
        else:
            (a,) = columns.values()
            a = np.ascontiguousarray(a, dtype=self.dtype)
        self.out.f.write(a.tobytes())
        self.n += a.shape[0]

    def close(self):
        h = self._header(self.n, self.header_len)
        self.out.f.seek(0)
        self.out.f.write(h)
        self.out.commit()

    def abort(self):
        self.out.abort()


class TextWriter:
    def __init__(self, path, names, delimiter):
        self.out, self.names, self.sep = _AtomicFile(path, "w"), names, delimiter
        self.out.f.write(delimiter.join(names) + "\n")

    def write(self, columns):
        cols = [columns[n] for n in self.names]
        fmts = [_text_format(c) for c in cols]
        lines = [self.sep.join(f(v) for f, v in zip(fmts, row)) for row in zip(*cols)]
        if lines:
            self.out.f.write("\n".join(lines) + "\n")

    def close(self):
        self.out.commit()

    def abort(self):
        self.out.abort()


def _text_format(col):
    if isinstance(col, np.ndarray) and col.dtype.kind == "f":
        return repr_float
    return str


def repr_float(x):
    """The shortest text that reads back as the same float64."""
    return repr(float(x))


class ParquetWriter:
    def __init__(self, path, names):
        self.pq = _pyarrow("write Parquet output")
        self.names, self.path, self.writer = names, os.fspath(path), None
        self.out = _AtomicFile(path)

    def write(self, columns):
        import pyarrow as pa
        table = pa.table({n: np.asarray(columns[n]) if not (isinstance(columns[n], np.ndarray) and
                                                             columns[n].dtype == object)
                          else [str(x) for x in columns[n]] for n in self.names})
        if self.writer is None:
            self.writer = self.pq.ParquetWriter(self.out.f, table.schema)
        self.writer.write_table(table)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.out.commit()

    def abort(self):
        self.out.abort()


def _pyarrow(what):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"to {what}, install pyarrow: pip install \"fastwlr[parquet]\"") from None
    return pq


def open_output(path, names, dtypes):
    """A writer of the named columns, by ``path``'s extension: .npy, .csv, .tsv, .parquet (default: .csv)."""
    name = os.fspath(path).lower()
    if name.endswith(".npy"):
        if len(names) == 1:
            return NpyWriter(path, dtypes[0])
        fields = [(n, "U64" if np.dtype(d) == object else d) for n, d in zip(names, dtypes)]
        return NpyWriter(path, np.dtype(fields))
    if name.endswith(".parquet"):
        return ParquetWriter(path, names)
    return TextWriter(path, names, "\t" if name.endswith(".tsv") else ",")


# ---------------------------------------------------------------------------- sources and chunks
class Source:
    """One input file as a stream of parsed ``Rows`` blocks.

    ``n_features``: the column count (svmlight: as given, else None until ``scan``; VW: 2^bits;
    tables: from the header). ``bad``: the file's ``BadLines`` budget."""

    def __init__(self, path, fmt=None, *, bits=18, hash_seed=0, roles=None, n_features=None, bad=None,
                 need_target=False, parser="auto"):
        self.path = os.fspath(path)
        self.fmt = fmt or guess_format(self.path)
        if self.fmt is None:
            raise DataError(self.path, None, None, "a known file type (.vw, .svm/.libsvm/.svmlight, .csv, .tsv, "
                                                   ".parquet, optionally .gz): name it with --format")
        if not os.path.exists(self.path):  # before anything else: the one-line error names the file
            raise FileNotFoundError(2, "No such file or directory", self.path)
        self.bits, self.hash_seed = int(bits), int(hash_seed)
        self.bad = bad if bad is not None else BadLines(0)
        self.roles = roles or Roles()
        compiled = _compiled() if parser in ("auto", "compiled") else None
        if parser == "compiled" and compiled is None:
            raise ImportError("the compiled parser is not built")
        self._c = compiled
        self.schema = None
        self.n_features = n_features
        if self.fmt == "vw":
            self.n_features = 1 << self.bits
            self._hasher = _Hasher(self.bits, self.hash_seed)
        elif self.fmt in ("csv", "tsv"):
            self.delimiter = "," if self.fmt == "csv" else "\t"
            self.schema = TableSchema(read_csv_header(self.path, self.delimiter), self.roles, self.path,
                                      self.bits, self.hash_seed, need_target)
            self.n_features = self.schema.n_features
        elif self.fmt == "parquet":
            pq = _pyarrow("read Parquet input")
            try:
                self._pf = pq.ParquetFile(self.path)
            except Exception as exc:
                raise DataError(self.path, None, None, f"a Parquet file ({exc})") from None
            self.schema = TableSchema(self._pf.schema_arrow.names, self.roles, self.path, self.bits,
                                      self.hash_seed, need_target)
            self.n_features = self.schema.n_features

    def blocks(self):
        """Parsed ``Rows`` per block of the file (empty blocks skipped)."""
        if self.fmt == "parquet":
            yield from self._parquet_blocks()
            return
        skip = 1 if self.schema is not None else 0
        for block, first_line in iter_blocks(self.path, skip_lines=skip):
            rows = self._parse(block, first_line)
            if rows is not None and rows.n_rows:
                yield rows

    def _parse(self, block, first_line):
        def on_error(line, column, expected, got):
            self.bad.record(DataError(self.path, line, column, expected, got))

        if self.fmt == "svmlight":
            n = -1 if self.n_features is None else int(self.n_features)
            out = (self._c.parse_svmlight(block, first_line, on_error, n) if self._c is not None
                   else parse_svmlight_py(block, first_line, on_error, n))
            label, qid, line, indptr, indices, data = out
            return Rows(label, None, qid, line, indptr, indices, data)
        if self.fmt == "vw":
            out = (self._c.parse_vw(block, first_line, on_error, self.bits, self.hash_seed) if self._c is not None
                   else parse_vw_py(block, first_line, on_error, self._hasher))
            label, weight, tags, line, indptr, indices, data = out
            tag_array = np.empty(len(tags), dtype=object)
            tag_array[:] = tags
            return Rows(label, weight, tag_array, line, indptr, indices, data)
        return parse_csv_block(block, first_line, self.schema, self.delimiter, self.bad)

    def _parquet_blocks(self, batch_rows=65536):
        first = 1
        try:
            for batch in self._pf.iter_batches(batch_size=batch_rows):
                n = batch.num_rows
                columns = {name: batch.column(name).to_numpy(zero_copy_only=False) for name in batch.schema.names}
                lines = np.arange(first, first + n, dtype=np.int64)
                first += n
                rows = self.schema.rows(columns, lines, self.bad)
                if rows.n_rows:
                    yield rows
        except DataError:
            raise
        except Exception as exc:  # pyarrow's errors on a damaged file
            raise DataError(self.path, None, None, f"a readable Parquet file ({type(exc).__name__}: {exc})") from None

    def scan_n_features(self):
        """svmlight without a column count: one pass for the largest index (streaming needs the
        width before the first chunk trains)."""
        if self.n_features is None:
            top = -1
            bad = self.bad
            self.bad = BadLines(bad.limit)  # the counting pass must not use up the real budget
            try:
                for rows in self.blocks():
                    top = max(top, rows.max_index())
            finally:
                self.bad = bad
            self.n_features = top + 1
        return self.n_features


def chunks(blocks, chunk_rows, by_request=False):
    """``Rows`` of ``chunk_rows`` rows (the last one shorter) from a stream of blocks. With
    ``by_request``, a chunk ends only where the request id changes (a request never straddles two
    chunks; one request larger than ``chunk_rows`` makes a larger chunk)."""
    pending, n = [], 0
    for rows in blocks:
        pending.append(rows)
        n += rows.n_rows
        while n >= chunk_rows:
            allrows = concat(pending)
            cut = chunk_rows
            if by_request:
                cut = _request_cut(allrows.request, chunk_rows)
                if cut is None:  # the last request goes on past the data so far: read more
                    pending = [allrows]
                    break
            yield allrows.take(0, cut)
            rest = allrows.take(cut, allrows.n_rows)
            pending, n = ([rest] if rest.n_rows else []), rest.n_rows
    if n:
        yield concat(pending)


def _request_cut(request, at):
    """The first row >= ``at`` that starts a new request (None: no boundary after ``at``)."""
    r = request
    change = np.flatnonzero(r[at:] != r[at - 1:-1]) if r.shape[0] > at else np.array([], dtype=np.int64)
    return int(at + change[0]) if change.shape[0] else None


def request_offsets(request):
    """Offsets of the runs of equal consecutive request ids."""
    n = request.shape[0]
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(request[1:] != request[:-1]) + 1
    return np.concatenate(([0], starts, [n])).astype(np.int64)


# ---------------------------------------------------------------------------- writers of the input formats
def write_svmlight(f, X, label, request=None, *, precision=None):
    """Rows as svmlight text to the binary file ``f`` (values written exactly: repr of float64)."""
    import scipy.sparse as sp
    X = sp.csr_matrix(X)
    data, indices, indptr = X.data.astype(np.float64), X.indices, X.indptr
    out = []
    for i in range(X.shape[0]):
        lo, hi = indptr[i], indptr[i + 1]
        head = repr_float(label[i]) if request is None else f"{repr_float(label[i])} qid:{int(request[i])}"
        feats = " ".join(f"{j}:{repr_float(x)}" for j, x in zip(indices[lo:hi].tolist(), data[lo:hi].tolist()))
        out.append(f"{head} {feats}\n" if feats else head + "\n")
        if len(out) >= 10000:
            f.write("".join(out).encode())
            out = []
    f.write("".join(out).encode())


def write_vw(f, X, label, weight=None, tag=None, names=None, namespace=""):
    """Rows as VW text: feature j is named ``names[j]`` (default: j) in one namespace."""
    import scipy.sparse as sp
    X = sp.csr_matrix(X)
    data, indices, indptr = X.data.astype(np.float64), X.indices, X.indptr
    names = [str(j) for j in range(X.shape[1])] if names is None else names
    out = []
    for i in range(X.shape[0]):
        lo, hi = indptr[i], indptr[i + 1]
        head = "" if label is None or math.isnan(label[i]) else repr_float(label[i])
        if weight is not None:
            head += f" {repr_float(weight[i])}"
        if tag is not None:
            head += f" '{tag[i]}"
        feats = " ".join(f"{names[j]}:{repr_float(x)}" for j, x in zip(indices[lo:hi].tolist(), data[lo:hi].tolist()))
        out.append(f"{head} |{namespace} {feats}\n")
        if len(out) >= 10000:
            f.write("".join(out).encode())
            out = []
    f.write("".join(out).encode())
