"""Numerically stable scalar maths shared by the numpy reference and the Python layer.

The compiled backends implement the same formulas (``cython_core/_math.pxd``); this module is the
specification they are tested against.
"""
import numpy as np

OUTPUTS = ("log_odds", "odds", "proba")

# exp(z) overflows float64 for z > log(DBL_MAX) = 709.782712893384 and is 0.0 (even denormals
# underflow) for z < -745.1332191019412. We branch on these so no floating-point flag is raised.
EXP_OVERFLOW_Z = 709.782712893384
EXP_UNDERFLOW_Z = -745.1332191019412


def sigmoid(z):
    """sigma(z) = 1 / (1 + e^-z) for any finite z, without overflow (branch on the sign of z)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    with np.errstate(under="ignore"):  # e^-|z| may underflow to 0 for |z| > 745: that is the answer
        e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    out[pos] = 1.0 / (1.0 + e[pos])
    out[~pos] = e[~pos] / (1.0 + e[~pos])
    return out


def softplus(z):
    """log(1 + e^z) = max(z, 0) + log1p(e^-|z|): never overflows."""
    z = np.asarray(z, dtype=np.float64)
    with np.errstate(under="ignore"):
        return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def safe_exp(z):
    """e^z for float64 z: exactly 0.0 below the underflow threshold, +inf above the overflow one,
    with no floating-point warning."""
    z = np.asarray(z, dtype=np.float64)
    out = np.zeros_like(z)
    hi = z > EXP_OVERFLOW_Z
    mid = (z >= EXP_UNDERFLOW_Z) & ~hi
    out[hi] = np.inf
    with np.errstate(under="ignore"):  # denormal results in [-745.13, -708.4) are kept
        out[mid] = np.exp(z[mid])
    out[np.isnan(z)] = np.nan
    return out


def transform(z, output):
    """Apply the named output transform to float64 log-odds."""
    if output == "log_odds":
        return np.asarray(z, dtype=np.float64)
    if output == "odds":
        return safe_exp(z)
    if output == "proba":
        return sigmoid(z)
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
