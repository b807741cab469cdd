"""The backend contract: backends are interchangeable, and the optional dependencies stay lazy.

Modelled on thinc's ``test_ops_consistency``: every backend class implements every public
method of the reference `Backend` with an identical signature and adds no public method of its
own, so code written against `Backend` runs on any of them.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest

from nnbench.backend.base import Backend


def _backend_classes():
    """Every backend class, imported without constructing it (so without CuPy or a GPU)."""
    from nnbench.backend.cupy_backend import CupyBackend
    from nnbench.backend.numpy_backend import NumpyBackend
    from nnbench.backend.strict import StrictBackend

    return [NumpyBackend, StrictBackend, CupyBackend]


BACKEND_CLASSES = _backend_classes()


def public_members(cls) -> dict:
    """Public methods and properties of ``cls`` (inherited included), by name."""
    return {
        name: inspect.getattr_static(cls, name)
        for name in dir(cls)
        if not name.startswith("_")
        and (
            inspect.isfunction(inspect.getattr_static(cls, name))
            or isinstance(inspect.getattr_static(cls, name), (property, staticmethod))
        )
    }


BASE_MEMBERS = public_members(Backend)


def test_base_interface_is_small_and_nonempty():
    """The interface exists and stays a few dozen primitives at most (docs/design.md,
    "Parts and layers": a new device implements only these)."""
    assert {"linear", "activation", "cross_entropy", "sgd_step", "views"} <= set(BASE_MEMBERS)
    assert len(BASE_MEMBERS) <= 48


@pytest.mark.parametrize("cls", BACKEND_CLASSES, ids=lambda c: c.__name__)
def test_backend_is_a_backend(cls):
    assert issubclass(cls, Backend)
    assert cls.name != Backend.name, "each backend names itself (get_backend, tags)"


@pytest.mark.parametrize("cls", BACKEND_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("method", sorted(BASE_MEMBERS))
def test_method_matches_base_signature(cls, method):
    base = BASE_MEMBERS[method]
    mine = inspect.getattr_static(cls, method)
    assert type(mine) is type(base), f"{cls.__name__}.{method} is a {type(mine).__name__}"
    if isinstance(base, property):
        base, mine = base.fget, mine.fget
    elif isinstance(base, staticmethod):
        base, mine = base.__func__, mine.__func__
    assert inspect.signature(mine) == inspect.signature(base), (
        f"{cls.__name__}.{method}{inspect.signature(mine)} differs from "
        f"Backend.{method}{inspect.signature(base)}"
    )


@pytest.mark.parametrize("cls", BACKEND_CLASSES, ids=lambda c: c.__name__)
def test_no_public_method_beyond_base(cls):
    extra = {name for name in dir(cls) if not name.startswith("_") and not hasattr(Backend, name)}
    assert not extra, f"{cls.__name__} adds public members the base lacks: {sorted(extra)}"


def _run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_import_nnbench_is_light():
    """``import nnbench`` needs only NumPy: CuPy, Hydra and MLflow load where they are used."""
    out = _run_python(
        """
        import sys
        import nnbench
        import nnbench.backend.cupy_backend
        import nnbench.backend.strict
        heavy = ("cupy", "hydra", "mlflow", "omegaconf")
        print(sorted({m.split(".")[0] for m in sys.modules} & set(heavy)))
        """
    )
    assert out == "[]", f"importing nnbench imported {out}"


def test_cupy_backend_module_does_not_import_cupy():
    """The class is importable (for the contract test) without touching CuPy."""
    out = _run_python(
        """
        import sys
        from nnbench.backend.cupy_backend import CupyBackend
        print("cupy" in sys.modules)
        """
    )
    assert out == "False"
