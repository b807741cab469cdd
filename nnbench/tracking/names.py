"""The name of a job's MLflow run: its overrides, short enough for a column of the MLflow
UI and still telling the jobs of a sweep apart (``lr=1e-4``, ``lr=0.001 wd=0.01``). The
training job names its run with it, and the report labels runs and panels the same way."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def run_name(changed: list[str], swept: list[str] | None = None) -> str:
    """The MLflow run name of a job: its overrides short enough for a table column, the
    swept ones only when the sweep says which (``lr=1e-4``, ``lr=0.001 wd=0.01``).

    A key is shortened to its last part (``optimizer.lr`` -> ``lr``) unless two keys would
    then read alike; a number to its shortest exact form (``0.0001`` -> ``1e-4``)."""
    pairs = [_split(o) for o in changed]
    if swept:
        chosen = [(k, v) for k, v in pairs if k.lstrip("+~") in swept]
        pairs = chosen or pairs
    if not pairs:
        return "defaults"
    lasts = [k.lstrip("+~").rsplit(".", 1)[-1] for k, _ in pairs]
    names = [
        last if lasts.count(last) == 1 else key.lstrip("+~")
        for (key, _), last in zip(pairs, lasts, strict=True)
    ]
    return " ".join(
        key if value is None else f"{name}={short_value(value)}"
        for name, (key, value) in zip(names, pairs, strict=True)
    )


def _split(override: str) -> tuple[str, str | None]:
    key, sep, value = override.partition("=")
    return key, (value if sep else None)


def short_value(text: str) -> str:
    """``0.0001`` -> ``1e-4``, ``10.0`` -> ``10``; integers and anything but a plain
    number unchanged."""
    if not _NUMBER.fullmatch(text.strip()) or text.strip().lstrip("+-").isdigit():
        return text
    value = float(text)
    plain = f"{value:g}"
    mantissa, _, exponent = f"{value:e}".partition("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    scientific = f"{mantissa}e{int(exponent)}"
    if "e" in plain:  # %g's own exponent form: 1e-05
        plain = scientific
    if float(plain) != value:  # more digits than %g keeps: the text as given
        return text
    return scientific if len(scientific) + 1 < len(plain) else plain
