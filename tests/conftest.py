"""Shared fixtures: every kernel test can run over each available backend."""
import numpy as np
import pytest

from fastwlr._config import AUTO_ORDER, available_backends, backend_errors

AVAILABLE = available_backends()
COMPILED = [b for b in AVAILABLE if b != "reference"]


def pytest_report_header(config):
    return f"fastwlr backends available: {AVAILABLE}; failed to import: {backend_errors()}"


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
