"""User mistakes end as one line on stderr and exit code 2, never a traceback.

Hydra reports composition errors through ``hydra._internal.utils.run_and_report``, which
prints multi-line text (or a trimmed traceback) and exits 1. `reporting_user_errors` swaps in
a reporter that turns the errors a user can cause (unknown group option, misspelt key, wrong
type, a value out of range, a missing file) into "nnbench: error: Invalid ..." and exit 2.
A file or folder the program cannot use (an output folder under a regular file, read-only,
a full disk) and a recording that failed are one line too (exit 1 for a full disk or a
failed store, the machine's fault rather than the user's); Ctrl-C and SIGTERM end with one
line and 128 + the signal (`reporting_interrupts`). Anything else is a bug and keeps
Hydra's full report. HYDRA_FULL_ERROR=1 disables the rewriting, as it does in Hydra.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import os
import re
import signal
import sys
import typing

EXIT_USAGE = 2
EXIT_FAULT = 1  # the machine's fault, not the user's: a full disk, an I/O error, a lost store
FAULT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO)
# Launchers that come with an extra of nnbench: what to install for them.
LAUNCHER_EXTRAS = {
    "submitit_local": "slurm",
    "submitit_slurm": "slurm",
    "ray": "ray",
    "ray_aws": "ray",
}
NOT_IN_DEFAULTS = re.compile(r"Could not override '([\w.]+)'\. No match in the defaults list")


def _schema_keys(dotted_parent: str) -> list[str]:
    """Field names of the schema node at ``dotted_parent`` ("" for the top level); an
    optional section that is off (``bench``) is read from its type."""
    from nnbench.config import Config

    node = Config
    for part in filter(None, dotted_parent.split(".")):
        node = _section_type(node, part)
        if node is None:
            return []
    return [f.name for f in dataclasses.fields(node)]


def _section_type(schema, name: str):
    """The dataclass type of field ``name`` of dataclass ``schema`` (unwrapping ``X | None``),
    or None when it is not a section."""
    hint = typing.get_type_hints(schema).get(name) if dataclasses.is_dataclass(schema) else None
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _off_section_key(argv: list[str]) -> str | None:
    """The one-line message for an override of a key inside an optional section that is not
    selected (``bench.framework=x`` without ``+bench=default``), found in ``argv``."""
    from nnbench.config import Config

    for arg in argv:
        key = arg.split("=", 1)[0]
        section = key.split(".")[0]
        if key[:1] in "+~" or "." not in key or _section_type(Config, section) is None:
            continue
        if getattr(Config(), section) is None:
            hint = f"the {section} section is off; select it first: +{section}=default"
            return f"Invalid key: {key!r} ({hint})"
    return None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def describe(exc: BaseException) -> str | None:
    """The one-line message for a user mistake, or None when ``exc`` is not one."""
    from hydra.errors import (
        ConfigCompositionException,
        InstantiationException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        MissingMandatoryValue,
        ValidationError,
    )

    from nnbench.errors import (
        BackendUnavailableError,
        DatasetUnavailableError,
        TrackingUnavailableError,
    )

    if isinstance(exc, MissingConfigException):
        group, _, option = (exc.missing_cfg_file or "").rpartition("/")
        if group and exc.options:
            allowed = f"allowed: {', '.join(sorted(exc.options))}"
            if group == "hydra/launcher" and option in LAUNCHER_EXTRAS:
                extra = LAUNCHER_EXTRAS[option]
                allowed += f"; {option} needs nnbench's {extra} extra: pip install -e '.[{extra}]'"
            return f"Invalid {group}: {option!r} ({allowed})"
        return _first_line(exc)
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, (ConfigCompositionException, InstantiationException)) and cause:
        described = describe(cause)
        return described if described is not None else _first_line(exc)
    if isinstance(exc, (ConfigKeyError, ConfigAttributeError)):
        key = getattr(exc, "full_key", None) or getattr(exc, "key", "?")
        parent = key.rpartition(".")[0]
        keys = _schema_keys(parent)
        where = f"keys under {parent}" if parent else "top-level keys"
        allowed = f"{where}: {', '.join(keys)}" if keys else "not a config key"
        return f"Invalid key: {key!r} ({allowed})"
    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", "?")
        return f"Invalid {key}: missing (set {key}=... on the command line)"
    if isinstance(exc, ValidationError):
        key = getattr(exc, "full_key", None) or "value"
        return f"Invalid {key}: {_first_line(exc)}"
    if isinstance(exc, OverrideParseException):
        override = getattr(exc, "override", None) or "?"
        return (
            f"Invalid override: {override!r} (not valid Hydra syntax; quote a value holding "
            "special characters, e.g. 'dataset.delimiter=\";\"')"
        )
    if isinstance(exc, ConfigCompositionException):
        return _not_in_defaults(str(exc), sys.argv[1:]) or _first_line(exc)
    if isinstance(exc, AssertionError) and "Unexpected type for root" in str(exc):
        return _off_section_key(sys.argv[1:])  # OmegaConf, setting a key under a None node
    unavailable = (BackendUnavailableError, DatasetUnavailableError, TrackingUnavailableError)
    if isinstance(exc, (ValueError, *unavailable)):
        return _first_line(exc)
    from nnbench.tracking.agent_client import TrackingError

    if isinstance(exc, TrackingError):
        return f"recording the run failed: {_first_line(exc)}"
    if isinstance(exc, OSError):
        return _os_error(exc)
    return None


def _not_in_defaults(message: str, argv: list[str]) -> str | None:
    """``sweep=lr`` for ``+sweep=lr``: a group that is not in the default config is added
    with a ``+``."""
    found = NOT_IN_DEFAULTS.search(message)
    if found is None:
        return None
    group = found.group(1)
    typed = next((arg for arg in argv if arg.split("=", 1)[0] == group), f"{group}=...")
    return f"Invalid override: {typed!r} ({group} is not in the default config; add it: +{typed})"


def _os_error(exc: OSError) -> str:
    """A file or folder the program could not use: which one, why, and what to do."""
    where = f" {exc.filename or _written_path(exc)}"
    why = exc.strerror or str(exc)
    if exc.errno == errno.ENOTDIR:
        hint = "a part of the path is a regular file"
    elif exc.errno in FAULT_ERRNOS:
        hint = "free some space or choose another disk; what was recorded before is kept"
    else:
        hint = (
            "choose a folder you can write with hydra.run.dir=..., for a sweep hydra.sweep.dir=..."
        )
    return f"cannot use{where}: {why} ({hint})"


def _written_path(exc: OSError) -> str:
    """The file a write without a file name was for: Hydra's ``_save_config(cfg, filename,
    output_dir)`` (a full disk as a run starts) leaves it in its frame; else "a file"."""
    found, frame = "a file", exc.__traceback__
    while frame is not None:
        names = frame.tb_frame.f_locals
        if "output_dir" in names and isinstance(names.get("filename"), str):
            found = os.path.join(str(names["output_dir"]), names["filename"])
        frame = frame.tb_next
    return found


def exit_status(exc: BaseException) -> int:
    """2 for a user's mistake, 1 for a fault of the machine or the store."""
    from nnbench.tracking.agent_client import AgentStopped, TrackingError

    if isinstance(exc, OSError) and exc.errno in FAULT_ERRNOS:
        return EXIT_FAULT
    if isinstance(exc, TrackingError) and not isinstance(exc, AgentStopped):
        return EXIT_FAULT
    return EXIT_USAGE


def fail(message: str, status: int = EXIT_USAGE) -> None:
    """Print the one-line message and exit with ``status`` (the usage status by default)."""
    print(f"nnbench: error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


@contextlib.contextmanager
def exit_on_user_error():
    """Inside a Hydra job: a user mistake exits at once with one line and status 2.

    Raised as SystemExit, it passes through Hydra's job runner, which would otherwise
    print "Error executing job with overrides: ..." and a traceback.
    """
    try:
        yield
    except Exception as exc:
        message = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else describe(exc)
        if message is None:
            raise
        fail(message, exit_status(exc))


def _report_factory(original):
    def run_and_report(func):
        try:
            return func()
        except Exception as exc:
            message = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else describe(exc)
            if message is None:
                return original(functools.partial(_reraise, exc))
            fail(message, exit_status(exc))

    return run_and_report


def _reraise(exc):
    raise exc


@contextlib.contextmanager
def reporting_user_errors():
    """Within this block Hydra reports user mistakes as one line and exit code 2."""
    import hydra._internal.utils as hydra_utils

    original = hydra_utils.run_and_report
    hydra_utils.run_and_report = _report_factory(original)
    try:
        yield
    except Exception as exc:  # raised outside Hydra's reporter (e.g. while reading the mode)
        message = None if os.environ.get("HYDRA_FULL_ERROR") == "1" else describe(exc)
        if message is None:
            raise
        fail(message)
    finally:
        hydra_utils.run_and_report = original


@contextlib.contextmanager
def reporting_interrupts():
    """Ctrl-C (or SIGTERM, where it is turned into one) ends with one line and exit status
    128 + the signal's number (130 for Ctrl-C), not a traceback: the runs it stopped were
    ended KILLED with what they had logged, on the way out."""
    try:
        yield
    except KeyboardInterrupt:
        from nnbench import interrupt

        name = "Ctrl-C" if interrupt.received == signal.SIGINT else "SIGTERM"
        print(
            f"nnbench: interrupted ({name}); what was recorded is kept, runs in progress "
            "ended KILLED",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(128 + interrupt.received)
