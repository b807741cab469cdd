"""The resolved config as MLflow params: flattened with dotted keys and made valid.

MLflow accepts keys of at most 250 characters made of letters, digits, ``_ - . / `` and
spaces, and values of at most 6000 characters. Keys are repaired (other characters become
``_``); a value too long for a param is kept whole in an artifact instead, and the param
says where. An unset value (``null``) is not logged: the resolved config, an artifact of
the run, still shows it.

Quantities swept over decades (learning rate, weight decay, L1/L2) also get their base-10
logarithm as a param of their own, ``optimizer.lr_log10`` beside ``optimizer.lr``: the
MLflow UI draws params on linear axes only, where 1e-4, 1e-3 and 1e-2 would sit together.
"""

from __future__ import annotations

import hashlib
import math
import re

MAX_KEY = 250
MAX_VALUE = 6000
OVERFLOW_ARTIFACT = "params_overflow.json"
_BAD_KEY_CHARS = re.compile(r"[^\w.\- /]")
LOG_SCALE_KEYS = ("optimizer.lr", "optimizer.weight_decay", "model.l1", "model.l2")
LOG10_SUFFIX = "_log10"


def flatten(tree, prefix: str = "") -> dict[str, object]:
    """``{"model": {"hidden": [64]}}`` -> ``{"model.hidden": [64]}`` (lists stay values)."""
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def clean_key(key: str) -> str:
    """A key MLflow accepts; a long one keeps its start and gains a short hash.

    MLflow also treats a key as a path that must not resolve to another one: no empty,
    ``.`` or ``..`` segments, no leading ``/`` or ``..``.
    """
    key = _BAD_KEY_CHARS.sub("_", str(key))
    segments = [s for s in key.split("/") if s]
    key = "/".join(f"_{s}" if s in (".", "..") else s for s in segments) or "_"
    if key.startswith(".."):
        key = f"_{key}"
    if len(key) > MAX_KEY:
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        key = f"{key[: MAX_KEY - 9]}-{digest}"
    return key


def to_params(tree) -> tuple[dict[str, str], dict[str, str]]:
    """(params, overflow): params valid for MLflow; overflow holds values too long for it."""
    params, overflow = {}, {}
    flat = flatten(tree)
    flat.update(log_scale(flat))
    for raw_key, value in flat.items():
        if value is None:
            continue
        key = clean_key(raw_key)
        if key in params:  # two keys repaired alike: MLflow refuses duplicates in a batch
            digest = hashlib.sha1(str(raw_key).encode()).hexdigest()[:8]
            key = f"{key[: MAX_KEY - 9]}-{digest}"
        text = str(value)
        if len(text) > MAX_VALUE:
            overflow[key] = text
            text = f"<{len(text)} characters: see artifact {OVERFLOW_ARTIFACT}>"
        params[key] = text
    return params, overflow


def log_scale(flat: dict[str, object]) -> dict[str, str]:
    """``{"optimizer.lr_log10": "-3"}`` for each positive `LOG_SCALE_KEYS` value."""
    logs = {}
    for key in LOG_SCALE_KEYS:
        value = flat.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            logs[key + LOG10_SUFFIX] = f"{math.log10(value):.4g}"
    return logs
