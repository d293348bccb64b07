"""Shared fixtures: every kernel test can run over each available backend.

Tests run over the backends that import here. So that a missing backend cannot pass unnoticed
(a core that was not built, Numba absent), ``FASTWLR_REQUIRE_BACKENDS=cython,numba,reference``
makes the session fail at start-up unless each named backend imports; CI sets it.
"""
import os

import numpy as np
import pytest

import fastwlr
from fastwlr._config import available_backends, backend_errors

AVAILABLE = available_backends()
COMPILED = [b for b in AVAILABLE if b != "reference"]


def pytest_report_header(config):
    return (f"fastwlr {fastwlr.__version__} from {os.path.dirname(fastwlr.__file__)}; backends available: "
            f"{AVAILABLE}; failed to import: {backend_errors()}")


def pytest_configure(config):
    required = [b.strip() for b in os.environ.get("FASTWLR_REQUIRE_BACKENDS", "").split(",") if b.strip()]
    missing = [b for b in required if b not in AVAILABLE]
    if missing:
        errors = backend_errors()
        raise pytest.UsageError(
            f"FASTWLR_REQUIRE_BACKENDS={os.environ['FASTWLR_REQUIRE_BACKENDS']}: backend(s) {missing} do not "
            f"import from {os.path.dirname(fastwlr.__file__)}: " + "; ".join(f"{b}: {errors.get(b)}" for b in missing))


def pytest_runtest_setup(item):
    # @pytest.mark.requires_backend("cython"): a test of something only that backend has (a helper
    # outside the kernel contract) is skipped where it does not import; CI requires it (above)
    for mark in item.iter_markers("requires_backend"):
        missing = [b for b in mark.args if b not in AVAILABLE]
        if missing:
            pytest.skip(f"needs the {', '.join(missing)} backend: {'; '.join(str(backend_errors().get(b)) for b in missing)}")


@pytest.fixture(params=AVAILABLE)
def backend_name(request):
    """Every backend that imports here (the reference included)."""
    return request.param


@pytest.fixture(params=COMPILED or [pytest.param(None, marks=pytest.mark.skip(reason="no compiled backend"))])
def compiled_backend_name(request):
    """Every compiled backend (cython, numba) that imports here."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
