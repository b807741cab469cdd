"""Where runs are recorded: the default SQLite store under outputs/, or a tracking server.

A fresh SQLite store is created once, under a file lock, before any run writes to it:
several processes racing through MLflow's schema migrations on a new file fail. A server
URI is checked with one short request, so a server that is down gives a clear error within
seconds instead of MLflow's multi-minute retries. A SQLite store is checked the same way
before MLflow opens it (`check_store`): MLflow retries a file that is not a database, or a
folder it cannot write, for minutes before it fails.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import tempfile
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
# The experiment kind MLflow 3 records for a model-training experiment. The 3.17 UI itself
# picks its GenAI or "Model training" pages by a switch of its own (`?workflowType=`), which
# is why the addresses nnbench prints carry workflowType=machine_learning.
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


SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_CHECK_TIMEOUT_S = 5.0  # how long a store locked by another process is waited for
# Schemes MLflow 3 records to here; a plain path (or file:) means its file store, refused.
FILE_STORE = ("file:",)


def uri_source(uri: str) -> str:
    """How the user set ``uri``: ``$MLFLOW_TRACKING_URI`` or ``tracking.uri``."""
    return (
        "$MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") == uri else "tracking.uri"
    )


def unusable(uri: str, why: str) -> TrackingUnavailableError:
    """``Invalid tracking.uri: '<uri>' (<why>)``: one line, exit status 2."""
    return TrackingUnavailableError(f"Invalid {uri_source(uri)}: {uri!r} ({why})")


def check_store(uri: str, write: bool = True, wait_s: float = SQLITE_CHECK_TIMEOUT_S) -> None:
    """Raise TrackingUnavailableError, within seconds, for a store that cannot record: a
    plain path or ``file:`` URI (MLflow's file store), a SQLite file that is not a
    database (or one locked by another process for ``wait_s`` seconds), or (``write``) a
    place where the SQLite file cannot be written. A server is checked by `check_server`;
    another database by MLflow."""
    if is_server(uri):
        return
    if uri.startswith(FILE_STORE) or "://" not in uri:
        path = Path(uri.removeprefix("file://").removeprefix("file:")).expanduser()
        raise unusable(
            uri,
            f"a path is not a store URI; for a SQLite store use sqlite:///{path.resolve()}, "
            "for a tracking server http://<host>:<port>",
        )
    path = sqlite_path(uri)
    if path is not None:
        check_sqlite_file(uri, path.resolve(), write, wait_s)


def check_sqlite_file(
    uri: str, path: Path, write: bool = True, wait_s: float = SQLITE_CHECK_TIMEOUT_S
) -> None:
    """The SQLite store ``path`` is a database (or does not exist yet) in a folder where
    it can be written; else `unusable`."""
    hint = "point tracking.uri at a new file in a writable folder, or use tracking=none"
    folder = _existing_ancestor(path.parent)
    if not folder.is_dir():
        raise unusable(uri, f"{folder} is a file, not a folder; {hint}")
    if path.is_dir():
        raise unusable(
            uri, f"{path} is a folder; name a file in it, e.g. sqlite:///{path}/mlflow.db"
        )
    if path.exists() and not path.is_file():
        raise unusable(uri, f"{path} is not a regular file; {hint}")
    if path.exists():
        _check_database(uri, path, hint, wait_s)
    if write:
        _check_writable(uri, path, hint)


def _existing_ancestor(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (a folder or not)."""
    while not folder.exists() and folder != folder.parent:
        # a path "under" a regular file: exists() is False, but the file is an ancestor
        folder = folder.parent
    return folder


def _check_database(uri: str, path: Path, hint: str, wait_s: float) -> None:
    """An existing file: empty (SQLite makes it a database) or a readable SQLite database."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise unusable(uri, f"{path} cannot be read: {exc.strerror or exc}; {hint}") from None
    if head and head != SQLITE_HEADER:
        raise unusable(uri, f"{path} is not a SQLite database; {hint}")
    if not head:
        return
    try:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=wait_s)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            # MLflow would retry it for minutes, holding locks that every store it opens
            # needs: a warm agent's other runs would wait on this one.
            raise unusable(
                uri,
                f"{path} stayed locked by another process for {wait_s:g} s; "
                "try again once it is free, or use another tracking.uri",
            ) from None
        raise unusable(uri, f"{path} cannot be opened: {exc}; {hint}") from None
    except sqlite3.DatabaseError as exc:
        raise unusable(uri, f"{path} is not a usable SQLite database ({exc}); {hint}") from None


def _check_writable(uri: str, path: Path, hint: str) -> None:
    """The store's folder (created if missing) takes a new file, and the store, if it
    exists, opens for writing: what SQLite needs for its journal and write-ahead log."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".nnbench-probe-") as probe:
            probe.write(bytes(4096))  # a full disk takes a new name but not a page
            probe.flush()
    except OSError as exc:
        raise unusable(uri, f"cannot write in {path.parent}: {_reason(exc)}; {hint}") from None
    try:
        if path.exists():
            os.close(os.open(path, os.O_RDWR))
    except OSError as exc:
        raise unusable(uri, f"cannot write {path}: {_reason(exc)}; {hint}") from None


def _reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{reason} (read-only)"
    return reason


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
    # A store that exists may be opened to read only (the report): its folder need not be
    # writable here; a run checks that before it trains (cli, the sweep's launcher).
    check_store(uri, write=path is None or not path.exists())
    if path is None:
        return MlflowClient(tracking_uri=uri)
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
    and tagged as a model-training experiment (`mark_kind`)."""
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
    """Tag an experiment nnbench writes to as a model-training one (the experiment tag
    ``mlflow.experimentKind``, `KIND_TAGS`); a kind someone set already is kept."""
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        mlflow_client.set_experiment_tag(
            experiment.experiment_id, EXPERIMENT_KIND_TAG, KIND_TAGS[EXPERIMENT_KIND_TAG]
        )
