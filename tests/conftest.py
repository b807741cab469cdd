"""The backend matrix: every test taking ``backend`` runs on numpy, strict and (with a GPU)
cupy; an absent backend is skipped with the reason. And the warm tracking agents that the
session's runs start live in a folder of the session's, and are stopped when it ends."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import nnbench as nb
from nnbench.backend import NumpyBackend
from nnbench.errors import BackendUnavailableError
from nnbench.tracking.daemon import stop

# The opt-in suites and --record-skipped (the two phases of .ci/run).
pytest_plugins = ("tests.suites",)

BACKEND_NAMES = ("numpy", "strict", "cupy")


def make_backend(name: str, dtype: str = "float64"):
    """A backend of the matrix; ``numpy-plain`` is NumPy without its C kernels."""
    if name == "numpy-plain":
        return NumpyBackend(dtype, native=False)
    if name == "strict" and importlib.util.find_spec("array_api_strict") is None:
        pytest.skip("array-api-strict is not installed (pip install 'nnbench[test]')")
    try:
        return nb.get_backend(name, dtype)
    except BackendUnavailableError as exc:
        pytest.skip(f"{name} backend unavailable here: {exc}")


@pytest.fixture(scope="session", autouse=True)
def warm_agents(tmp_path_factory):
    """Every run of the session shares the session's warm tracking agents (one folder,
    NNBENCH_AGENT_DIR, inherited by the programs the tests start); they are stopped at the
    end, their open runs ended KILLED."""
    folder = tmp_path_factory.mktemp("agents")
    folder.chmod(0o700)
    saved = os.environ.get("NNBENCH_AGENT_DIR")
    os.environ["NNBENCH_AGENT_DIR"] = str(folder)
    yield folder
    stop(folder)
    if saved is None:
        os.environ.pop("NNBENCH_AGENT_DIR", None)
    else:
        os.environ["NNBENCH_AGENT_DIR"] = saved


def pytest_report_header(config):
    """One line saying which backends of the matrix run here, and why the others are skipped."""
    parts = []
    for name in BACKEND_NAMES:
        try:
            nb.get_backend(name)
            parts.append(f"{name}: runs")
        except (BackendUnavailableError, ImportError) as exc:
            parts.append(f"{name}: skipped ({exc})")
    return "backend matrix: " + "; ".join(parts)


@pytest.fixture
def agents(tmp_path):
    """A folder of this test's own for warm agents, emptied of live ones afterwards."""
    folder = tmp_path / "agents"
    folder.mkdir(mode=0o700)
    yield folder
    stop(folder)


@pytest.fixture(params=BACKEND_NAMES)
def backend_name(request) -> str:
    return request.param


@pytest.fixture
def backend(backend_name):
    """A float64 backend of the matrix (float64 so finite differences are meaningful)."""
    return make_backend(backend_name, "float64")


@pytest.fixture
def backend32(backend_name):
    """A float32 backend of the matrix (the training default)."""
    return make_backend(backend_name, "float32")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def to_host(backend, a) -> np.ndarray:
    return backend.to_host(a)
