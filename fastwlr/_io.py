"""Saving and loading fitted estimators: a documented, versioned format without pickle.

Format ``fastwlr-model``, version 1: one ``.npz`` file (a zip of ``.npy`` arrays, read with
``allow_pickle=False``, so loading never executes code) holding

* ``header``: a 0-d unicode array with a JSON object::

      {"format": "fastwlr-model", "version": 1, "fastwlr_version": "0.1.0",
       "estimator": "WatchTimeRanker" | "WeightedLogisticRegression",
       "params": {...get_params() values; a numpy Generator random_state is stored as null...},
       "fitted": {"n_features_in_": int, "n_iter_": int, "converged_": bool},
       "sgd_state": null | {"optimizer": str, "average": bool, "mean_weight": float},
       "click_model": null | {...the same header, for WatchTimeRanker.click_model_...}}

* ``coef`` float64 (n_features,), ``intercept`` float64 (1,), ``classes`` (numbers or unicode;
  classifiers only);
* when the model was trained by SGD, its state so ``partial_fit`` can continue after loading:
  ``sgd/coef``, ``sgd/acc``, ``sgd/zacc``, ``sgd/last``, ``sgd/avg``, ``sgd/scalars`` (float64);
* a ``click_model_`` of a ``WatchTimeRanker``: the same arrays under the prefix ``click_model/``.

(Files written before the state protocol below also carry ``"click_model": null`` in the header
of a ``WeightedLogisticRegression``; readers ignore it.)

Readers refuse files of another format, of a newer version, with missing or inconsistent arrays,
and truncated or corrupt files (the zip's CRC-32 is checked), each with a
``fastwlr.exceptions.ModelFileError`` (a ``ValueError``) that says which. Files are written to a temporary name and renamed, so a crash never leaves half a model.

This module owns the file (the header's envelope, the array names' prefixes, nesting, atomic
writes, the checks of the container) and a registry of the classes it can rebuild. What a model
*is* belongs to its class, registered with ``register``, which provides

* ``_get_state(self) -> (arrays, info)``: ``arrays`` a dict of numpy arrays (no object dtype),
  ``info`` a dict of JSON values, written as the header's other entries; except that the entries
  named in the class attribute ``_state_parts`` hold a registered estimator or None, which is
  stored recursively (its header in that entry, its arrays under the prefix ``"<name>/"``);
* ``_from_state(cls, arrays, info)`` (a classmethod): the fitted estimator, from the same two
  dicts as read back (the parts already rebuilt). It raises ``KeyError`` for a missing entry or
  ``ValueError`` for inconsistent ones; the reader adds the file name. ``arrays`` reads a member
  when it is first asked for; members nobody asks for are never read;
* optionally ``_array_shapes(cls, info)`` (a classmethod): ``{name: shape}`` of the arrays the
  header implies. Each member's declared shape is checked against it before its data are read,
  and other names are not read at all.
"""
import json
import os
import tempfile
import tokenize
import zipfile

import numpy as np

from ._version import __version__
from .exceptions import ModelFileError

FORMAT = "fastwlr-model"
VERSION = 1
_ENVELOPE = ("format", "version", "fastwlr_version", "estimator")
_REGISTRY = {}


def register(cls):
    """Class decorator: ``save`` writes instances of ``cls`` and ``load`` rebuilds them, under the
    name ``cls.__name__`` (which is what the header's "estimator" records)."""
    name = cls.__name__
    known = _REGISTRY.get(name)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"two classes named {name!r} cannot both be registered: {known!r} and {cls!r}")
    _REGISTRY[name] = cls
    return cls


def _registered(est):
    cls = type(est)
    if _REGISTRY.get(cls.__name__) is not cls:
        raise TypeError(f"can only save fastwlr estimators, got {cls.__name__}")
    return cls


def _pack(est, prefix, arrays):
    cls = _registered(est)
    own, info = est._get_state()
    header = {"format": FORMAT, "version": VERSION, "fastwlr_version": __version__,
              "estimator": cls.__name__}
    clash = set(_ENVELOPE).intersection(info)
    if clash:
        raise ValueError(f"{cls.__name__}._get_state() may not set the header entries {sorted(clash)}")
    header.update(info)
    for name, array in own.items():
        array = np.asarray(array)
        if array.dtype == object or (not prefix and name == "header"):
            raise ValueError(f"{cls.__name__}._get_state() returned the array {name!r} ({array.dtype}): "
                             "the format holds no object arrays, and 'header' is its own entry")
        arrays[prefix + name] = array
    for part in getattr(cls, "_state_parts", ()):
        sub = info.get(part)
        header[part] = None if sub is None else _pack(sub, f"{prefix}{part}/", arrays)
    return header


def save(estimator, path):
    """Write a fitted ``WeightedLogisticRegression`` or ``WatchTimeRanker`` to ``path``.

    Parameters
    ----------
    estimator : fitted fastwlr estimator
        Of a registered class (``register``); subclasses are not registered by inheriting.
    path : str or os.PathLike
        Written as given (no extension is added); replaced atomically if it exists.

    Raises
    ------
    TypeError
        ``estimator`` is not of a registered class.
    ValueError
        It is not fitted.
    """
    arrays = {}
    header = _pack(estimator, "", arrays)
    arrays["header"] = np.array(json.dumps(header, sort_keys=True))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastwlr-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# Bounds checked before anything is decompressed or allocated: the header is small JSON; a member
# may not expand more than deflate ever does (~1032:1; np.savez stores members uncompressed); and a
# member's .npy header must declare the shape its estimator expects (``_array_shapes``).
_HEADER_MAX_BYTES = 1 << 20
_MAX_EXPANSION = 1100
_MAX_DEPTH = 8  # nested estimators (a WatchTimeRanker's click model is depth 2)


# What reading a malformed file can raise from zipfile, numpy's .npy header parser, json and the
# estimators' checks; load turns each into a ModelFileError.
_MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, RecursionError,
              NotImplementedError, RuntimeError, EOFError, OSError, UnicodeError, MemoryError, SyntaxError,
              tokenize.TokenError, zipfile.BadZipFile, zipfile.LargeZipFile)


def load(path):
    """Read a model written by ``save`` (or ``estimator.save``).

    Only the members the header calls for are read, each after checking that its declared size and
    shape are those the header implies, so a file cannot make ``load`` decompress or allocate more
    than the model it describes.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    WeightedLogisticRegression or WatchTimeRanker
        Fitted, ready to predict; if it was trained by SGD, ``partial_fit`` continues where it stopped.

    Raises
    ------
    fastwlr.exceptions.ModelFileError
        (a ValueError) for every malformed file: not a fastwlr model, written by a newer format
        version, truncated or corrupt, or with arrays inconsistent with its header.
    FileNotFoundError, PermissionError, ...
        The file cannot be opened (OSError from ``open``).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:  # cannot open: the OSError as it is
        try:
            return _load(f, path)
        except ModelFileError:
            raise
        except _MALFORMED as exc:
            message = str(exc) if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError) else (
                f"{path} is truncated or corrupt, or not a fastwlr model file ({type(exc).__name__}: {exc})")
            raise ModelFileError(message) from exc


def _load(f, path):
    try:
        zf = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile, ValueError) as exc:
        raise ValueError(f"{path} is truncated or corrupt, or not a fastwlr model file "
                         f"({type(exc).__name__}: {exc})") from exc
    with zf:
        if "header.npy" not in zf.namelist():
            raise ValueError(f"{path} is an .npz file but not a fastwlr model (no 'header' entry)")
        try:
            text = _read_member(zf, "header", (), max_bytes=_HEADER_MAX_BYTES)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        if text.dtype.kind != "U":
            raise ValueError(f"{path}: the fastwlr header is not a string ({text.dtype})")
        try:
            header = json.loads(str(text[()]))
        except (json.JSONDecodeError, TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"{path}: the fastwlr header is not valid JSON ({type(exc).__name__}: {exc})") from exc
        return _unpack(header, zf, "", path)


def _read_member(zf, name, shape, max_bytes=None):
    """The array stored as ``name``.npy, after checking its sizes (and its shape, unless None).
    ValueError (without the file name: the caller adds it) or KeyError(name) if it is missing."""
    try:
        info = zf.getinfo(name + ".npy")
    except KeyError:
        raise KeyError(name) from None
    if info.file_size > _MAX_EXPANSION * info.compress_size + 4096 or (
            max_bytes is not None and info.file_size > max_bytes):
        raise ValueError(f"member {name!r} declares {info.file_size} bytes "
                         f"({info.compress_size} stored): not a fastwlr model")
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                got_shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                got_shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject:
                raise ValueError("object arrays are not part of the format")
            if shape is not None and tuple(got_shape) != tuple(shape):
                raise ValueError(f"inconsistent arrays: shape {tuple(got_shape)} where the header implies "
                                 f"{tuple(shape)}")
            nbytes = dtype.itemsize
            for n in got_shape:
                nbytes *= int(n)
            if nbytes > info.file_size:
                raise ValueError(f"declares {nbytes} bytes of data in a member of {info.file_size}")
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise ValueError("truncated")
            if f.read(1):
                raise ValueError("data after the array")
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as exc:
        raise ValueError(f"truncated or corrupt ({type(exc).__name__} in member {name!r}: {exc})") from exc
    except ValueError as exc:
        raise ValueError(f"member {name!r} is not a valid array ({exc})") from exc
    return np.frombuffer(data, dtype=dtype).reshape(got_shape, order="F" if fortran else "C").copy()


class _Arrays(dict):
    """One estimator's arrays, names without its prefix, read from the file when first asked for
    (so only members the estimator knows are ever read); a missing one is reported by its full name."""

    def __init__(self, prefix, zf, shapes, path):
        super().__init__()
        self.prefix, self.zf, self.shapes, self.path = prefix, zf, shapes, path

    def __missing__(self, name):
        if self.shapes is not None and name not in self.shapes:
            raise KeyError(self.prefix + name)
        shape = None if self.shapes is None else self.shapes[name]
        try:
            array = _read_member(self.zf, self.prefix + name, shape)
        except KeyError:
            raise KeyError(self.prefix + name) from None
        self[name] = array
        return array


def _unpack(header, zf, prefix, path, depth=0):
    if depth > _MAX_DEPTH:
        raise ValueError(f"{path}: estimators nested more than {_MAX_DEPTH} deep")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ValueError(f"{path} is not a fastwlr model (format {got!r}, expected {FORMAT!r})")
    version = header.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: invalid format version {version!r}")
    if version > VERSION:
        raise ValueError(f"{path} was written in format version {version} by fastwlr "
                         f"{header.get('fastwlr_version')}; this fastwlr reads up to version {VERSION}: upgrade fastwlr")
    kind = header.get("estimator")
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"{path}: unknown estimator kind {kind!r} (known: {sorted(_REGISTRY)})")
    info = {key: value for key, value in header.items() if key not in _ENVELOPE}
    parts = tuple(getattr(cls, "_state_parts", ()))
    for part in parts:
        sub = header.get(part)
        info[part] = None if sub is None else _unpack(sub, zf, f"{prefix}{part}/", path, depth + 1)
    try:
        shapes = cls._array_shapes(info) if hasattr(cls, "_array_shapes") else None
        if shapes is not None:
            stored = set(zf.namelist())
            for name in shapes:
                if f"{prefix}{name}.npy" not in stored:
                    raise KeyError(prefix + name)
        own = _Arrays(prefix, zf, shapes, path)
        return cls._from_state(own, info)
    except KeyError as exc:
        raise ValueError(f"{path}: incomplete fastwlr model, missing {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
