"""Warnings and errors raised by fastwlr's solvers and estimators."""


class ConvergenceWarning(UserWarning):
    """A solver stopped (``max_iter`` reached, line search failed) before meeting its tolerance.

    Same convention as ``sklearn.exceptions.ConvergenceWarning``, without importing scikit-learn.
    """


class DivergenceError(FloatingPointError, ValueError):
    """Training produced NaN or inf coefficients or loss. The message says what to try."""


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit`` (same bases as ``sklearn.exceptions.NotFittedError``)."""


class DataConversionWarning(UserWarning):
    """Input was converted to the expected shape (e.g. a column-vector y flattened)."""


class ModelFileError(ValueError):
    """``fastwlr.load`` was given a file that is not a valid fastwlr model: not a zip of ``.npy``
    arrays, truncated, corrupt, of another format or a newer version, or with entries that are
    missing or inconsistent. Every malformed file raises this (and nothing else); the message
    names the file and what is wrong."""
