"""Which tests a run leaves out, and how a second run picks them up.

`make test` on a fresh machine runs the default suite; a test that needs an extra it did not
install (PyTorch, PostgreSQL, Ray, ...) skips with the reason. Suites that take minutes and
system software beyond Python are opt-in (OPT_IN): they run when their marker is selected
(``-m docker``) or with ``--extras``, and say so when skipped.

Every run remembers in pytest's cache which tests (or whole modules) it skipped;
``--rerun-skipped`` then runs only those, as ``--last-failed`` does for failures. After
installing the extras, ``pytest --extras --rerun-skipped`` runs what the first run could not:
`.ci/run`'s second phase.
"""

from __future__ import annotations

import pytest

OPT_IN = {
    "docker": "builds the Docker image and repeats studies in containers (needs a Docker engine)",
    "browser": "drives the MLflow UI in headless Chromium (needs chromium and selenium)",
}
CACHE_KEY = "nnbench/skipped"


def pytest_addoption(parser):
    group = parser.getgroup("nnbench")
    group.addoption(
        "--extras",
        action="store_true",
        help=f"also run the opt-in suites ({', '.join(OPT_IN)}) where they can run",
    )
    group.addoption(
        "--rerun-skipped",
        action="store_true",
        help="run only the tests that the last run skipped",
    )


def pytest_configure(config):
    for name, what in OPT_IN.items():
        config.addinivalue_line("markers", f"{name}: opt-in suite: {what}")
    if getattr(config, "cache", None) is not None:
        config.pluginmanager.register(SkipRecorder(config), "nnbench-skip-recorder")


def _selected(config, name: str) -> bool:
    return config.getoption("extras") or name in (config.getoption("markexpr") or "")


def _was_skipped(nodeid: str, skipped: set[str]) -> bool:
    """A test was skipped by itself, or with its whole module (at import)."""
    return nodeid in skipped or nodeid.split("::", 1)[0] in skipped


def pytest_collection_modifyitems(config, items):
    """Keep only the last run's skipped tests when asked; mark the opt-in suites skipped
    unless they were asked for."""
    if config.getoption("rerun_skipped"):
        skipped = set(config.cache.get(CACHE_KEY, []) if config.cache else [])
        kept = [item for item in items if _was_skipped(item.nodeid, skipped)]
        dropped = [item for item in items if not _was_skipped(item.nodeid, skipped)]
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    for name, what in OPT_IN.items():
        if _selected(config, name):
            continue
        skip = pytest.mark.skip(reason=f"opt-in suite '{name}' ({what}): run it with -m {name}")
        for item in items:
            if item.get_closest_marker(name):
                item.add_marker(skip)


class SkipRecorder:
    """Collects the skipped node ids of a session and stores them in pytest's cache at its
    end (a run that selected nothing leaves the previous list in place)."""

    def __init__(self, config):
        self.config = config
        self.skipped: dict[str, None] = {}
        self.ran = False

    def pytest_collectreport(self, report):
        if report.skipped:
            self.skipped[report.nodeid] = None

    def pytest_runtest_logreport(self, report):
        self.ran = True
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skipped[report.nodeid] = None

    def pytest_sessionfinish(self, session):
        if self.ran or self.skipped:
            self.config.cache.set(CACHE_KEY, list(self.skipped))
