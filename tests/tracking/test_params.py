"""The config as MLflow params: flattened with dotted keys, keys repaired, values too long
for a param kept whole in the artifact params_overflow.json.

MLflow's own validators (mlflow.utils.validation) are the judge of a valid key, and a real
SQLite store is the judge of what can be logged.
"""

from __future__ import annotations

import json

import pytest
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_PARAM_VAL_LENGTH,
    _validate_param,
    _validate_param_keys_unique,
)

from nnbench.tracking.params import OVERFLOW_ARTIFACT, clean_key, flatten, to_params

from .conftest import all_runs, artifact_paths, assert_none_running, client_for, nnbench

ODD_KEYS = [
    "a:b",
    "x@y",
    "sp ace",
    "../up",
    "..",
    ".",
    "./here",
    "a/./b",
    "a/../b",
    "...dots",
    "/leading",
    "trailing/",
    "double//slash",
    "",
    "tab\there",
    "new\nline",
    "quote'\"",
    "star*?",
    "k" * 300,
    "x/" * 200,
    "é-ß",
]


def mlflow_accepts(key: str, value: str = "v") -> None:
    """Raises MlflowException when MLflow would refuse the param."""
    _validate_param(key, value)


def test_flatten_dotted_keys():
    tree = {"model": {"hidden": [64, 32], "dropout": 0.0}, "seed": 0, "x": {"y": {"z": None}}}
    assert flatten(tree) == {
        "model.hidden": [64, 32],
        "model.dropout": 0.0,
        "seed": 0,
        "x.y.z": None,
    }


def test_values_are_strings_and_unset_values_left_out():
    params, overflow = to_params({"a": None, "b": [1, 2], "c": True, "d": 0.5, "e": "s"})
    assert params == {"b": "[1, 2]", "c": "True", "d": "0.5", "e": "s"}
    assert overflow == {}


def test_log_scale_quantities_get_their_log10_beside_them():
    tree = {"optimizer": {"lr": 0.0001, "weight_decay": 0.0}, "model": {"l2": 5e-4, "l1": 0}}
    params, _ = to_params(tree)
    assert params["optimizer.lr_log10"] == "-4"
    assert params["model.l2_log10"] == "-3.301"
    # zero has no logarithm: no param rather than a made-up value
    assert "optimizer.weight_decay_log10" not in params and "model.l1_log10" not in params
    assert params["optimizer.lr"] == "0.0001"


def test_value_at_the_limit_stays_a_param():
    value = "v" * MAX_PARAM_VAL_LENGTH
    params, overflow = to_params({"k": value})
    assert params == {"k": value} and overflow == {}


def test_long_value_goes_to_the_overflow_artifact():
    value = "w" * (MAX_PARAM_VAL_LENGTH + 1)
    params, overflow = to_params({"dataset": {"path": value}, "seed": 1})
    assert overflow == {"dataset.path": value}
    assert params["seed"] == "1"
    note = params["dataset.path"]
    assert len(note) <= MAX_PARAM_VAL_LENGTH
    assert OVERFLOW_ARTIFACT in note and str(MAX_PARAM_VAL_LENGTH + 1) in note
    mlflow_accepts("dataset.path", note)


@pytest.mark.parametrize("key", ODD_KEYS, ids=lambda k: repr(k[:12]))
def test_odd_keys_become_valid(key):
    cleaned = clean_key(key)
    assert 0 < len(cleaned) <= MAX_ENTITY_KEY_LENGTH
    mlflow_accepts(cleaned)


@pytest.mark.parametrize(
    "key, expected",
    [
        ("model.hidden", "model.hidden"),
        ("train/loss", "train/loss"),
        ("sp ace", "sp ace"),
        ("a-b_c.d", "a-b_c.d"),
        ("a:b", "a_b"),
        ("x@y", "x_y"),
        ("double//slash", "double/slash"),
    ],
)
def test_valid_keys_kept_and_bad_characters_replaced(key, expected):
    assert clean_key(key) == expected


def test_long_keys_keep_their_start_and_stay_distinct():
    a, b = "k" * 300 + "a", "k" * 300 + "b"
    assert clean_key(a) != clean_key(b)
    assert clean_key(a).startswith("k" * 200)
    assert len(clean_key(a)) == MAX_ENTITY_KEY_LENGTH


def test_keys_repaired_alike_stay_distinct():
    """ "a:b" and "a@b" both repair to "a_b"; MLflow refuses a batch with a key twice."""
    params, _ = to_params({"a:b": 1, "a@b": 2, "a_b": 3})
    assert len(params) == 3
    assert sorted(params.values()) == ["1", "2", "3"]
    _validate_param_keys_unique([type("P", (), {"key": k})() for k in params])
    for key in params:
        mlflow_accepts(key)


def test_odd_keys_and_long_value_logged_to_a_real_store(tmp_path):
    """Every repaired key and the overflow note land in a fresh SQLite store."""
    from nnbench.tracking import start_run

    tree = {key: f"value {i}" for i, key in enumerate(ODD_KEYS)}
    tree["dataset"] = {"path": "p" * 7000}
    params, overflow = to_params(tree)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    recorder = start_run(
        uri=uri, experiment="params", run_name="odd", params=params, tags={}, parent=None
    )
    recorder.end("FINISHED")
    from mlflow.tracking import MlflowClient

    stored = MlflowClient(uri).get_run(recorder.run_id).data.params
    assert stored == params
    assert len(stored) == len(ODD_KEYS) + 1  # no two keys merged
    assert overflow == {"dataset.path": "p" * 7000}


def test_long_value_end_to_end(tmp_path):
    """The longest value a user can give: model.hidden with 2001 layers of width 1 prints
    as "[1, 1, ..., 1]", 3 * 2001 = 6003 characters. The run still records; the param
    points to params_overflow.json, which holds the whole list."""
    widths = [1] * 2001
    proc = nnbench(
        tmp_path,
        "dataset=xor",
        "trainer.epochs=1",
        f"model.hidden=[{','.join(map(str, widths))}]",
    )
    assert proc.returncode == 0, proc.stderr
    client = client_for(tmp_path)
    (run,) = all_runs(client)
    assert run.info.status == "FINISHED"
    assert OVERFLOW_ARTIFACT in run.data.params["model.hidden"]
    assert OVERFLOW_ARTIFACT in artifact_paths(client, run.info.run_id)
    folder = tmp_path / "downloaded"
    folder.mkdir()
    path = client.download_artifacts(run.info.run_id, OVERFLOW_ARTIFACT, str(folder))
    saved = json.loads(open(path).read())
    assert saved == {"model.hidden": str(widths)}
    assert len(saved["model.hidden"]) == 6003
    assert_none_running(client)
