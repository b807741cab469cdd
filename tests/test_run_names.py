"""The MLflow run name of a job: its overrides, short enough for a column of the UI's runs
table, and still telling the jobs of a sweep apart."""

from __future__ import annotations

import pytest

from nnbench.tracking.names import run_name, short_value


@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("0.0001", "1e-4"),
        ("0.001", "0.001"),
        ("0.0005", "5e-4"),
        ("10.0", "10"),
        ("1.0", "1"),
        ("100000.0", "1e5"),
        ("1000000", "1000000"),  # integers as given
        ("0.123456789", "0.123456789"),  # never rounded
        ("-0.5", "-0.5"),
        ("[128]", "[128]"),
        ("relu", "relu"),
        ("true", "true"),
    ],
)
def test_numbers_take_their_shortest_exact_form(text, short):
    assert short_value(text) == short
    if short != text:
        assert float(short) == float(text)


def test_the_swept_values_only_when_the_sweep_names_them():
    changed = ["optimizer.lr=0.0001", "trainer.epochs=10"]
    assert run_name(changed, ["optimizer.lr"]) == "lr=1e-4"
    assert run_name(changed) == "lr=1e-4 epochs=10"
    assert run_name(changed, ["model.l2"]) == "lr=1e-4 epochs=10"  # none swept: all of them


def test_keys_that_would_read_alike_stay_whole():
    changed = ["model.l2=0.0001", "optimizer.l2=0.1", "+extra.depth=3"]
    assert run_name(changed) == "model.l2=1e-4 optimizer.l2=0.1 depth=3"


def test_groups_deletions_and_no_overrides():
    assert run_name(["optimizer=adam", "optimizer.lr=0.001"]) == "optimizer=adam lr=0.001"
    assert run_name(["~model.l1", "seed=3"]) == "~model.l1 seed=3"
    assert run_name([]) == "defaults"
