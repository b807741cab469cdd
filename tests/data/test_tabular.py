"""dataset=csv: a user's file with a header row, a target column and numeric features."""

from __future__ import annotations

import numpy as np
import pytest

from nnbench.data import load_dataset
from tests.data.helpers import write_csv

SPLIT = dict(val_fraction=0.25, test_fraction=0.25)


def table(tmp_path, target_values, name="t.csv", header=("x1", "x2", "y")):
    rows = [[i, 2 * i + 1, t] for i, t in enumerate(target_values)]
    return write_csv(tmp_path / name, list(header), rows)


def all_rows(ds):
    return np.concatenate([ds.y_train, ds.y_val, ds.y_test])


def test_integer_targets_become_labels_0_to_k_minus_1_in_sorted_order(tmp_path):
    path = table(tmp_path, [9, 3, 7, 3] * 5)
    ds = load_dataset("csv", path=path, target="y", **SPLIT)
    expected = ("multiclass", 2, 3, ("3", "7", "9"))
    assert (ds.task, ds.n_features, ds.n_outputs, ds.class_names) == expected
    assert ds.sizes == (10, 5, 5)
    np.testing.assert_array_equal(np.bincount(all_rows(ds)), [10, 5, 5])


def test_text_targets_classify_and_the_target_defaults_to_the_last_column(tmp_path):
    path = table(tmp_path, ["setosa", "virginica"] * 10)
    ds = load_dataset("csv", path=str(path), **SPLIT)
    assert ds.task == "multiclass" and ds.class_names == ("setosa", "virginica")


def test_fractional_targets_regress_unstandardized(tmp_path):
    values = [0.5 * i for i in range(20)]
    ds = load_dataset("csv", path=table(tmp_path, values), target="y", **SPLIT)
    assert (ds.task, ds.n_outputs, ds.class_names) == ("regression", 1, None)
    assert sorted(all_rows(ds)[:, 0]) == values


def test_many_distinct_integers_regress_unless_told_to_classify(tmp_path):
    path = table(tmp_path, list(range(21)))
    assert load_dataset("csv", path=path, **SPLIT).task == "regression"
    ds = load_dataset("csv", path=path, task="multiclass", **SPLIT)
    assert ds.task == "multiclass" and ds.n_outputs == 21


def test_task_regression_and_binary_on_integer_targets(tmp_path):
    path = table(tmp_path, [4, 8] * 10)
    regression = load_dataset("csv", path=path, task="regression", **SPLIT)
    assert sorted(set(all_rows(regression)[:, 0])) == [4.0, 8.0]
    binary = load_dataset("csv", path=path, task="binary", **SPLIT)
    assert (binary.task, binary.n_outputs, binary.class_names) == ("binary", 1, ("4", "8"))
    assert binary.y_train.shape == (10, 1) and set(np.unique(all_rows(binary))) == {0.0, 1.0}


def test_features_are_every_column_but_the_target(tmp_path):
    """Columns a = 0..29 (the target: 30 distinct integers regress), label = 2a + 1, b = 0/1."""
    path = table(tmp_path, [0, 1] * 15, header=("a", "label", "b"))
    ds = load_dataset("csv", path=path, target="a", **SPLIT)
    assert ds.n_features == 2 and ds.task == "regression"
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test]) * ds.x_std + ds.x_mean
    np.testing.assert_allclose(x, np.column_stack([2 * all_rows(ds)[:, 0] + 1, x[:, 1]]))
    assert sorted(set(np.rint(x[:, 1]))) == [0.0, 1.0]


def _message(tmp_path, **options) -> str:
    with pytest.raises(ValueError) as info:
        load_dataset("csv", **options)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_file_says_the_path(tmp_path):
    path = tmp_path / "absent.csv"
    assert _message(tmp_path, path=path) == f"Invalid path: '{path}' (no such file)"
    assert _message(tmp_path) == "Invalid path: None (dataset=csv needs path=<file.csv>)"


def test_missing_column_lists_the_columns(tmp_path):
    path = table(tmp_path, [0, 1] * 10)
    assert _message(tmp_path, path=path, target="label") == (
        "Invalid target: 'label' (available columns: x1, x2, y)"
    )


def test_non_numeric_feature_names_column_value_and_line(tmp_path):
    path = write_csv(tmp_path / "bad.csv", ["a", "b", "y"], [[1, 2, 0], [3, "n/a", 1], [5, 6, 0]])
    assert _message(tmp_path, path=path) == (
        "Invalid value in column 'b': 'n/a' (line 3: features must be finite numbers)"
    )
    path = write_csv(tmp_path / "inf.csv", ["a", "b", "y"], [[1, 2, 0], ["inf", 4, 1]])
    assert "column 'a': 'inf' (line 3:" in _message(tmp_path, path=path)


def test_non_numeric_regression_target_names_value_and_line(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["a", "y"], [[1, 0.5], [2, "high"], [3, 1.5]])
    assert _message(tmp_path, path=path, task="regression") == (
        "Invalid value in column 'y': 'high' (line 3: regression targets must be finite numbers)"
    )


MALFORMED = [
    (["1", "2"], [[3, 4]], {}, "Invalid header: ['1', '2'] (the first row must name the columns)"),
    (["a", "y"], [[1, 0], [2]], {}, "Invalid row: ['2'] (line 3 has 1 fields; the header has 2)"),
    (
        ["a", "y"],
        [[1, 5], [2, 5]],
        {},
        "Invalid target: 'y' (the column holds a single value: nothing to classify)",
    ),
    (
        ["a", "y"],
        [[1, 0], [2, 1], [3, 2]],
        {"task": "binary"},
        "Invalid task: 'binary' (column 'y' has 3 classes, binary needs 2)",
    ),
    (
        ["a", "y"],
        [[1, 0]],
        {"task": "classify"},
        "Invalid task: 'classify' (allowed: auto, multiclass, binary, regression)",
    ),
]


@pytest.mark.parametrize(("header", "rows", "options", "message"), MALFORMED)
def test_malformed_tables_give_one_line_messages(tmp_path, header, rows, options, message):
    path = write_csv(tmp_path / "m.csv", header, rows)
    assert _message(tmp_path, path=path, **options) == message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n\n")
    assert _message(tmp_path, path=path) == (
        f"Invalid path: '{path}' (the file is empty; a header row is required)"
    )
