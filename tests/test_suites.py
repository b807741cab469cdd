"""The two phases of .ci/run, on a throwaway test folder: a first run skips what it cannot run
(and the opt-in suites), ``--rerun-skipped`` runs exactly those, ``--extras`` or ``-m NAME``
selects an opt-in suite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TESTS = textwrap.dedent(
    """
    import os
    import pytest

    needs_extra = pytest.mark.skipif(not os.environ.get("EXTRA"), reason="the extra is absent")

    def test_plain():
        pass

    @needs_extra
    def test_with_extra():
        pass

    @pytest.mark.docker
    def test_in_a_container():
        pass
    """
)
SKIPPED_MODULE = 'import os, pytest\npytest.importorskip("no_such_module_here")\n\n' + (
    "def test_inside():\n    pass\n"
)


def _pytest(folder: Path, *args: str, extra: bool = False) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("EXTRA", None)
    if extra:
        env["EXTRA"] = "1"
    command = [sys.executable, "-m", "pytest", "-p", "tests.suites", "-q", "-rs", *args]
    command += ["-c", os.devnull, "--rootdir", str(folder), "-o", f"cache_dir={folder / '.c'}"]
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 5), proc.stdout + proc.stderr
    return proc.stdout.splitlines()[-1]


def test_a_second_run_takes_exactly_what_the_first_skipped(tmp_path):
    (tmp_path / "test_a.py").write_text(TESTS)
    (tmp_path / "test_b.py").write_text(SKIPPED_MODULE)
    first = _pytest(tmp_path)
    assert first.startswith("1 passed, 3 skipped"), first
    second = _pytest(tmp_path, "--rerun-skipped", "--extras", extra=True)
    assert second.startswith("2 passed, 1 skipped, 1 deselected"), second
    # That run skipped only the module whose import is missing: the next takes just that.
    third = _pytest(tmp_path, "--rerun-skipped", "--extras", extra=True)
    assert third.startswith("1 skipped, 3 deselected"), third


def test_an_opt_in_suite_runs_when_its_marker_is_selected(tmp_path):
    (tmp_path / "test_a.py").write_text(TESTS)
    assert _pytest(tmp_path, "-m", "docker").startswith("1 passed, 2 deselected")
    assert _pytest(tmp_path, "--extras", extra=True).startswith("3 passed")
