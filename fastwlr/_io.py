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

Readers refuse files of another format, of a newer version, with missing or inconsistent arrays,
and truncated or corrupt files (the zip's CRC-32 is checked), each with a ``ValueError`` that says
which. Files are written to a temporary name and renamed, so a crash never leaves half a model.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "fastwlr-model"
VERSION = 1
_SGD_ARRAYS = ("coef", "acc", "zacc", "last", "avg", "scalars")


def _classes():
    from .estimators import WatchTimeRanker, WeightedLogisticRegression
    return {"WeightedLogisticRegression": WeightedLogisticRegression, "WatchTimeRanker": WatchTimeRanker}


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, np.random.Generator):
        return None  # a Generator's state is not a parameter we can write; the seed is gone
    raise TypeError(f"cannot save parameter value {value!r} of type {type(value).__name__}")


def _pack(est, prefix, arrays):
    from . import __version__
    if not hasattr(est, "coef_"):
        raise ValueError(f"this {type(est).__name__} is not fitted: nothing to save")
    header = {
        "format": FORMAT, "version": VERSION, "fastwlr_version": __version__,
        "estimator": type(est).__name__,
        "params": {k: _jsonable(val) for k, val in est.get_params(deep=False).items()},
        "fitted": {"n_features_in_": int(est.n_features_in_), "n_iter_": int(est.n_iter_),
                   "converged_": bool(getattr(est, "converged_", False))},
        "sgd_state": None, "click_model": None,
    }
    arrays[prefix + "coef"] = np.ascontiguousarray(est.coef_[0], dtype=np.float64)
    arrays[prefix + "intercept"] = np.asarray(est.intercept_, dtype=np.float64).reshape(1)
    if hasattr(est, "classes_"):  # classifiers only; a WatchTimeRanker is a regressor
        classes = np.asarray(est.classes_)
        if classes.dtype == object:
            classes = classes.astype(str)
        arrays[prefix + "classes"] = classes
    state = getattr(est, "_sgd_state", None)
    if state is not None:
        header["sgd_state"] = {"optimizer": state.optimizer, "average": bool(state.average),
                               "mean_weight": float(state.mean_weight)}
        for name in _SGD_ARRAYS:
            arrays[f"{prefix}sgd/{name}"] = np.asarray(getattr(state, name), dtype=np.float64)
    click = getattr(est, "click_model_", None)
    if click is not None:
        header["click_model"] = _pack(click, prefix + "click_model/", arrays)
    return header


def save(estimator, path):
    """Write a fitted ``WeightedLogisticRegression`` or ``WatchTimeRanker`` to ``path``.

    Parameters
    ----------
    estimator : fitted fastwlr estimator
    path : str or os.PathLike
        Written as given (no extension is added); replaced atomically if it exists.
    """
    if type(estimator).__name__ not in _classes():
        raise TypeError(f"can only save fastwlr estimators, got {type(estimator).__name__}")
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


def load(path):
    """Read a model written by ``save`` (or ``estimator.save``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    WeightedLogisticRegression or WatchTimeRanker
        Fitted, ready to predict; if it was trained by SGD, ``partial_fit`` continues where it stopped.

    Raises
    ------
    ValueError
        The file is not a fastwlr model, was written by a newer format version, is truncated or
        corrupt, or its arrays are inconsistent with its header.
    FileNotFoundError
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            if "header" not in names:
                raise ValueError(f"{path} is an .npz file but not a fastwlr model (no 'header' entry)")
            arrays = {name: npz[name] for name in names}
    except FileNotFoundError:
        raise
    except ValueError as exc:
        if "fastwlr" in str(exc):
            raise
        raise ValueError(f"{path} is not a fastwlr model file, or is corrupt ({exc})") from exc
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, zipfile.LargeZipFile) as exc:
        raise ValueError(f"{path} is truncated or corrupt, or not a fastwlr model file "
                         f"({type(exc).__name__}: {exc})") from exc
    try:
        header = json.loads(str(arrays["header"][()]))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the fastwlr header is not valid JSON ({exc})") from exc
    return _unpack(header, arrays, "", path)


def _unpack(header, arrays, prefix, path):
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ValueError(f"{path} is not a fastwlr model (format {got!r}, expected {FORMAT!r})")
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: invalid format version {version!r}")
    if version > VERSION:
        raise ValueError(f"{path} was written in format version {version} by fastwlr "
                         f"{header.get('fastwlr_version')}; this fastwlr reads up to version {VERSION}: upgrade fastwlr")
    classes = _classes()
    kind = header.get("estimator")
    if kind not in classes:
        raise ValueError(f"{path}: unknown estimator kind {kind!r} (known: {sorted(classes)})")
    try:
        est = classes[kind](**header["params"])
        fitted = header["fitted"]
        d = int(fitted["n_features_in_"])
        coef = arrays[prefix + "coef"]
        intercept = arrays[prefix + "intercept"]
        labels = arrays[prefix + "classes"] if kind == "WeightedLogisticRegression" else None
    except KeyError as exc:
        raise ValueError(f"{path}: incomplete fastwlr model, missing {exc}") from exc
    except TypeError as exc:
        raise ValueError(f"{path}: the saved parameters do not fit {kind} ({exc})") from exc
    if coef.dtype != np.float64 or coef.shape != (d,) or intercept.shape != (1,) or (
            labels is not None and labels.shape != (2,)):
        raise ValueError(f"{path}: inconsistent arrays (coef {coef.dtype} {coef.shape}, intercept "
                         f"{intercept.shape}, classes {getattr(labels, 'shape', None)}) for n_features_in_ = {d}")
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError(f"{path}: the saved coefficients are not finite")
    est.coef_ = coef.reshape(1, d).copy()
    est.intercept_ = intercept.astype(np.float64).copy()
    if labels is not None:
        est.classes_ = labels.copy()
    est.n_features_in_ = d
    est.n_iter_ = int(fitted["n_iter_"])
    est.converged_ = bool(fitted["converged_"])
    est._sgd_state = None
    sgd = header.get("sgd_state")
    if sgd is not None:
        from ._sgd import SGDState
        try:
            state_arrays = {name: arrays[f"{prefix}sgd/{name}"].astype(np.float64) for name in _SGD_ARRAYS}
        except KeyError as exc:
            raise ValueError(f"{path}: incomplete SGD state, missing {exc}") from exc
        est._sgd_state = SGDState(optimizer=sgd["optimizer"], average=bool(sgd["average"]),
                                  mean_weight=float(sgd["mean_weight"]), **state_arrays)
    if kind == "WatchTimeRanker":
        click = header.get("click_model")
        est.click_model_ = None if click is None else _unpack(click, arrays, prefix + "click_model/", path)
    return est
