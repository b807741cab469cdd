"""Where runs are recorded: the default SQLite store under outputs/, or a tracking server.

A fresh SQLite store is created once, under a file lock, before any run writes to it:
several processes racing through MLflow's schema migrations on a new file fail. A server
URI is checked with one short request, so a server that is down gives a clear error within
seconds instead of MLflow's multi-minute retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from nnbench.errors import TrackingUnavailableError

DEFAULT_OUTPUTS = Path("outputs")
# Fail fast against a tracking server: a few quick retries, never minutes of back-off.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # MLflow's own INFO lines ("Creating initial MLflow database tables...") are noise here.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}
HEALTH_TIMEOUT_S = 5.0
# The experiment kind that opens on the runs table ("Model training") in the MLflow UI.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
KIND_TAGS = {EXPERIMENT_KIND_TAG: "custom_model_development"}


def default_uri(outputs: Path = DEFAULT_OUTPUTS) -> str:
    """``sqlite:///<absolute path>/outputs/mlflow.db``."""
    return f"sqlite:///{(Path(outputs).resolve() / 'mlflow.db')}"


def resolve_uri(configured: str | None, outputs: Path = DEFAULT_OUTPUTS) -> str:
    """``tracking.uri``, else $MLFLOW_TRACKING_URI, else the default SQLite store; a relative
    SQLite path is made absolute (the tracking agent does not share our working folder)."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(outputs)
    path = sqlite_path(uri)
    if path is not None and not path.is_absolute():
        return f"sqlite:///{path.resolve()}"
    return uri


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go beside it, in ``mlartifacts/`` (the default store's
    are under outputs/mlartifacts); a server, or another database, decides its own."""
    path = sqlite_path(uri)
    if path is None:
        return None
    return (path.resolve().parent / "mlartifacts").as_uri()


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))  # sqlite:////abs -> /abs; sqlite:///rel -> rel


def check_server(uri: str) -> None:
    """Raise TrackingUnavailableError unless the server answers its health check."""
    import urllib.error  # here, not at the top: the tracking agent's start-up waits on it
    import urllib.request

    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise TrackingUnavailableError(
        f"tracking server {uri} is not reachable ({reason}); start it, set tracking.uri "
        "to a running server, or use tracking=none"
    )


def mlflow_defaults() -> None:
    """`HTTP_DEFAULTS` in the environment, where not set already; before MLflow's import,
    which reads its logging level then."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def write_ahead_log() -> None:
    """Every SQLite connection this process opens from now on uses SQLite's write-ahead log
    with ``synchronous=NORMAL``: a commit appends to the log without waiting for the disk
    (the log is synced at checkpoints; a crash of the process loses nothing, a power cut
    at most the last commits), and readers (the UI, the report) never block the writer. A
    run's dozen commits then cost about 1 ms each instead of 5-10. The mode stays with the
    file (``mlflow.db-wal`` and ``-shm`` beside it); it needs a local file system, as
    SQLite itself does for concurrent use."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _write_ahead):
        event.listen(Engine, "connect", _write_ahead)


def _write_ahead(dbapi_connection, _record) -> None:
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def client(uri: str):
    """An MlflowClient for ``uri``, with the store created (SQLite) or checked (server)."""
    mlflow_defaults()
    from mlflow.tracking import MlflowClient

    if is_server(uri):
        check_server(uri)
        return MlflowClient(tracking_uri=uri)
    path = sqlite_path(uri)
    if path is None:
        return MlflowClient(tracking_uri=uri)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingUnavailableError(
            f"the SQLite store {uri} cannot be created: {exc.strerror or exc} "
            f"({path.parent}); set tracking.uri to a writable place, or use tracking=none"
        ) from exc
    write_ahead_log()
    with _locked(path.with_name(path.name + ".lock")):
        mlflow_client = MlflowClient(tracking_uri=uri)
        mlflow_client.search_experiments(max_results=1)  # runs the migrations, once
    return mlflow_client


def forget(uri: str) -> None:
    """Drop what MLflow keeps of the store at ``uri`` (its store object and SQLAlchemy engine,
    cached per URI for the life of the process), so that the next client opens the file that
    is there now: a long-lived process (the warm tracking agent) outlives the files it opened.
    These caches are MLflow's private attributes; where they moved, nothing is dropped."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service import utils

    registry = getattr(utils, "_tracking_store_registry", None)
    cached = getattr(registry, "_get_store_with_resolved_uri", None)
    if hasattr(cached, "cache_clear"):
        cached.cache_clear()
    engines = getattr(SqlAlchemyStore, "_engine_map", {})
    engine = engines.pop(uri, None)
    if engine is not None:
        engine.dispose()


def experiment_id(mlflow_client, name: str, uri: str) -> str:
    """The id of experiment ``name``, created (safely against a concurrent creator) if new,
    and of the kind that the MLflow UI opens on its runs table (`mark_kind`)."""
    from mlflow.exceptions import MlflowException

    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        mark_kind(mlflow_client, found)
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location(uri), tags=KIND_TAGS)
    except MlflowException:
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        mark_kind(mlflow_client, found)
        return found.experiment_id


def mark_kind(mlflow_client, experiment) -> None:
    """MLflow 3's UI opens an experiment by its kind (the experiment tag
    ``mlflow.experimentKind``): one without it opens on the GenAI traces page, with the runs
    a click away. An experiment nnbench writes to is a model-training one; a kind someone
    set already is kept."""
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        mlflow_client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, KIND_TAGS[EXPERIMENT_KIND_TAG]
        )
