"""Bad input fails at once with a ValueError that names the bad value and what is allowed.

Every message has the shape "Invalid <what>: <repr(value)> (<what is allowed>)"; the tests
match the value and the allowed range, not just the exception type. Checks that do not
depend on the array library run on every backend.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import nnbench as nb


def raises_exactly(text: str):
    """Expect a ValueError whose message contains ``text`` literally."""
    return pytest.raises(ValueError, match=re.escape(text))


def raises_like(pattern: str):
    """Expect a ValueError whose message matches the regular expression ``pattern``."""
    return pytest.raises(ValueError, match=pattern)


def _data(rng, n=6, features=3, classes=4):
    return rng.standard_normal((n, features)), rng.integers(0, classes, size=n)


def _model(backend, **kwargs):
    kwargs.setdefault("activation", "tanh")
    return nb.MLP(3, [5], 4, seed=0, backend=backend, **kwargs)


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------- model input
def test_wrong_input_width(backend, rng):
    model = _model(backend)
    x = backend.asarray(rng.standard_normal((2, 4)))
    with raises_exactly("Invalid input shape: (2, 4) (expected (batch, 3))"):
        model.forward(x)


def test_one_dimensional_input(backend):
    with raises_exactly("Invalid input shape: (3,) (expected (batch, 3))"):
        _model(backend).forward(np.zeros(3))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("training", [False, True])
def test_non_finite_input(backend, rng, bad, training):
    """The message names the offending value and where it is."""
    x = rng.standard_normal((4, 3))
    x[2, 1] = bad
    with raises_like(r"Invalid input at row 2, column 1: .*finite") as info:
        _model(backend).forward(backend.asarray(x), training=training)
    assert repr(float(bad)) in str(info.value)


def test_non_finite_input_to_train_step_leaves_params(backend, rng):
    model = _model(backend)
    before = model.state_dict()
    x, y = _data(rng)
    x[0, 0] = np.nan
    with raises_like("Invalid input at row 0, column 0: nan"):
        nb.train_step(model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), x, y)
    assert _same_state(before, model.state_dict())


# ---------------------------------------------------------------------- labels and targets
@pytest.mark.parametrize("bad", [-1, 4, 10])
def test_label_out_of_range(backend, rng, bad):
    logits = backend.asarray(rng.standard_normal((3, 4)))
    labels = np.array([0, bad, 1])
    with raises_exactly(f"Invalid label: {bad} (allowed class indices: 0..3)"):
        nb.CrossEntropyLoss()(logits, labels)


def test_label_out_of_range_on_device(backend, rng):
    logits = backend.asarray(rng.standard_normal((3, 4)))
    labels = backend.asarray(np.array([0, 2, 7]), backend.int_dtype)
    with raises_exactly("Invalid label: 7 (allowed class indices: 0..3)"):
        nb.CrossEntropyLoss()(logits, labels)


@pytest.mark.parametrize("on_device", [False, True])
def test_float_labels(backend, rng, on_device):
    logits = backend.asarray(rng.standard_normal((3, 4)))
    labels = np.array([0.0, 1.0, 2.0])
    if on_device:
        labels = backend.asarray(labels)
    with raises_like(r"Invalid labels dtype: '.*float64' \(expected integer"):
        nb.CrossEntropyLoss()(logits, labels)


def test_labels_wrong_count(backend, rng):
    logits = backend.asarray(rng.standard_normal((3, 4)))
    with raises_exactly("Invalid labels shape: (2,) (expected (3,)"):
        nb.CrossEntropyLoss()(logits, np.array([0, 1]))


def test_fit_with_out_of_range_labels(backend, rng):
    model = _model(backend)
    x, y = _data(rng)
    y[3] = 4
    with raises_exactly("Invalid label: 4 (allowed class indices: 0..3)"):
        nb.fit(model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), (x, y), epochs=1, batch_size=6)


@pytest.mark.parametrize("target_shape", [(5,), (4, 2), (3, 1)])
def test_mse_target_wrong_size(backend, rng, target_shape):
    pred = backend.asarray(rng.standard_normal((4, 1)))
    target = np.zeros(target_shape)
    expected = f"Invalid target shape: {target_shape} (expected (4, 1) to match)"
    with raises_exactly(expected):
        nb.MSELoss()(pred, target)


@pytest.mark.parametrize("bad", [-0.5, 1.5])
def test_bce_target_outside_unit_interval(backend, rng, bad):
    logits = backend.asarray(rng.standard_normal((3, 1)))
    target = np.array([[0.0], [bad], [1.0]])
    with raises_like(rf"Invalid target: {bad} \(binary targets lie in \[0, 1\]\)"):
        nb.BCEWithLogitsLoss()(logits, target)


# ---------------------------------------------------------------------- hyperparameters
@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_dropout_probability(backend, p):
    allowed = "must be in [0, 1)"
    with raises_exactly(f"Invalid dropout probability: {p} ({allowed})"):
        _model(backend, dropout=p)
    with raises_exactly(f"Invalid dropout probability: {p} ({allowed})"):
        nb.Dropout(p, backend, backend.rng(0))


@pytest.mark.parametrize("lr", [0, 0.0, -1.0, float("nan"), float("inf")])
@pytest.mark.parametrize("optimizer", [nb.SGD, nb.Adam, nb.AdamW])
def test_learning_rate(backend, optimizer, lr):
    model = _model(backend)
    with raises_exactly(f"Invalid learning rate: {lr!r} (must be > 0)"):
        optimizer(model, lr=lr)


def test_unknown_activation(backend):
    allowed = "allowed: sigmoid, tanh, relu, leaky_relu, identity"
    with raises_exactly(f"Invalid activation: 'gelu' ({allowed})"):
        _model(backend, activation="gelu")
    with raises_exactly(f"Invalid activation: 'gelu' ({allowed})"):
        nb.Activation("gelu", backend)


@pytest.mark.parametrize("name", ["tpu", "NumPy", ""])
def test_unknown_backend(name):
    with raises_like(rf"Invalid backend: {name!r} \(allowed: numpy, cupy, auto"):
        nb.get_backend(name)


def test_unknown_dtype():
    with raises_like(r"Invalid dtype: 'float16' \(allowed: float32, float64\)"):
        nb.get_backend("numpy", "float16")


@pytest.mark.parametrize(
    ("kwargs", "what", "value"),
    [
        ({"hidden": [8, 0]}, "hidden size", "0"),
        ({"hidden": [-3]}, "hidden size", "-3"),
        ({"hidden": [2.5]}, "hidden size", "2.5"),
        ({"in_features": 0}, "in_features", "0"),
        ({"out_features": 0}, "out_features", "0"),
    ],
)
def test_layer_sizes(backend, kwargs, what, value):
    args = {"in_features": 3, "hidden": [4], "out_features": 2, **kwargs}
    with raises_exactly(f"Invalid {what}: {value} (must be an integer >= 1)"):
        nb.MLP(backend=backend, **args)


@pytest.mark.parametrize("penalty", ["l1", "l2"])
def test_negative_penalty(backend, penalty):
    with raises_like(rf"Invalid {penalty}: -0.1 \(must be a finite number >= 0\)"):
        _model(backend, **{penalty: -0.1})


# ---------------------------------------------------------------------- state dicts
def test_state_dict_missing_key(backend):
    model = _model(backend)
    before = model.state_dict()
    state = {k: v + 1.0 for k, v in before.items()}
    del state["output.bias"]
    with raises_like(r"Invalid state dict: \"missing key 'output.bias'\" \(expected"):
        model.load_state_dict(state)
    assert _same_state(before, model.state_dict())


def test_state_dict_unexpected_key(backend):
    model = _model(backend)
    before = model.state_dict()
    state = {k: v + 1.0 for k, v in before.items()}
    state["hidden.1.weight"] = np.zeros((4, 5))
    with raises_like(r"unexpected key 'hidden.1.weight'\" \(expected \['hidden"):
        model.load_state_dict(state)
    assert _same_state(before, model.state_dict())


def test_state_dict_wrong_shape_changes_nothing(backend):
    """The first entries are valid and different: a failed load must not have written them."""
    model = _model(backend, batchnorm=True)
    before = model.state_dict()
    state = {k: v + 1.0 for k, v in before.items()}
    state["output.weight"] = np.zeros((5, 4))  # transposed: (out, in) is (4, 5)
    expected = "Invalid state dict entry 'output.weight': 'shape (5, 4)' (expected (4, 5))"
    with raises_exactly(expected):
        model.load_state_dict(state)
    assert _same_state(before, model.state_dict())


def test_state_dict_running_stat_wrong_shape(backend):
    model = _model(backend, batchnorm=True)
    before = model.state_dict()
    state = dict(before)
    state["hidden.0.bn.running_var"] = np.ones(4)
    with raises_like(r"'hidden.0.bn.running_var': 'shape \(4,\)' \(expected \(5,\)"):
        model.load_state_dict(state)
    assert _same_state(before, model.state_dict())


# ---------------------------------------------------------------------- training loop
@pytest.mark.parametrize(
    ("kwargs", "what", "value"),
    [
        ({"epochs": 0}, "epochs", "0"),
        ({"epochs": -2}, "epochs", "-2"),
        ({"epochs": 1.5}, "epochs", "1.5"),
        ({"batch_size": 0}, "batch_size", "0"),
        ({"batch_size": True}, "batch_size", "True"),
        ({"patience": 0}, "patience", "0"),
    ],
)
def test_fit_counts(backend, rng, kwargs, what, value):
    model = _model(backend)
    before = model.state_dict()
    args = {"epochs": 2, "batch_size": 3, **kwargs}
    with raises_exactly(f"Invalid {what}: {value} (must be an integer >= 1)"):
        nb.fit(model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), _data(rng), **args)
    assert _same_state(before, model.state_dict())


def test_fit_rows_mismatch(backend, rng):
    model = _model(backend)
    x, y = _data(rng)
    expected = "Invalid number of target rows: 5 (expected 6, one per input row)"
    with raises_exactly(expected):
        nb.fit(
            model, nb.CrossEntropyLoss(), nb.SGD(model, lr=0.1), (x, y[:5]), epochs=1, batch_size=2
        )


def test_fit_empty_training_set(backend, rng):
    model = _model(backend)
    x, y = _data(rng)
    with raises_exactly("Invalid number of samples: 0 (need at least 1)"):
        nb.fit(
            model,
            nb.CrossEntropyLoss(),
            nb.SGD(model, lr=0.1),
            (x[:0], y[:0]),
            epochs=1,
            batch_size=2,
        )


def test_evaluate_bad_batch_size(backend, rng):
    model = _model(backend)
    with raises_exactly("Invalid batch_size: 0 (must be an integer >= 1)"):
        nb.evaluate(model, nb.CrossEntropyLoss(), *_data(rng), batch_size=0)


# ---------------------------------------------------------------------- batch normalization
def test_batchnorm_training_batch_of_one(backend, rng):
    model = _model(backend, batchnorm=True)
    x = rng.standard_normal((1, 3))
    expected = "Invalid batch size for batch normalization: 1 (training needs at least 2 rows)"
    with raises_exactly(expected):
        model.forward(x, training=True)
    model.forward(x, training=False)  # evaluation uses running statistics: one row is fine


@pytest.mark.parametrize(
    ("n", "batch_size", "what", "value"),
    [(6, 1, "batch_size", 1), (1, 4, "number of samples", 1)],
)
def test_batchnorm_fit_needs_two_rows(backend, rng, n, batch_size, what, value):
    """A batch size of 1 (or one sample) would leave batch normalization nothing to train on."""
    model = _model(backend, batchnorm=True)
    x, y = _data(rng, n=n)
    expected = f"Invalid {what}: {value} (batch normalization needs at least 2)"
    with raises_exactly(expected):
        nb.fit(
            model,
            nb.CrossEntropyLoss(),
            nb.SGD(model, lr=0.1),
            (x, y),
            epochs=1,
            batch_size=batch_size,
        )


# ---------------------------------------------------------------------- the command line
# Each mistake a user makes on the command line: one line on stderr naming the bad value
# and what to do, exit status 2, no traceback, no run left RUNNING (issue "Faults and
# mistakes"). The programs run for real, in tmp_path.
import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.cli_helpers import run_nnbench  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUICK = ("dataset=moons", "trainer.epochs=2")


def one_line(proc, *fragments: str, code: int = 2) -> str:
    """The single stderr line of a failed program, checked to contain every fragment."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tracked(tmp_path, *args):
    return run_nnbench(tmp_path, *QUICK, *args, tracking=None)


@pytest.mark.parametrize(
    "content", [b"hello, I am a text file\n", bytes(range(256)) * 20], ids=["text", "bytes"]
)
def test_store_that_is_not_a_database(tmp_path, content):
    store = tmp_path / "store.db"
    store.write_bytes(content)
    proc = tracked(tmp_path, f"tracking.uri=sqlite:///{store}")
    one_line(proc, f"Invalid tracking.uri: 'sqlite:///{store}'", "is not a SQLite database")
    assert store.read_bytes() == content  # untouched


def test_store_under_a_regular_file(tmp_path):
    (tmp_path / "plain").write_text("x")
    proc = tracked(tmp_path, f"tracking.uri=sqlite:///{tmp_path}/plain/mlflow.db")
    one_line(proc, "Invalid tracking.uri", f"{tmp_path}/plain is a file, not a folder")


def test_store_in_a_folder_that_cannot_be_written(tmp_path):
    proc = tracked(tmp_path, "tracking.uri=sqlite:////proc/mlflow.db")
    one_line(proc, "Invalid tracking.uri: 'sqlite:////proc/mlflow.db'", "cannot write in /proc")


def test_store_given_as_a_plain_path(tmp_path):
    proc = tracked(tmp_path, f"tracking.uri={tmp_path}/path.db")
    one_line(proc, f"Invalid tracking.uri: '{tmp_path}/path.db'", f"sqlite:///{tmp_path}/path.db")
    assert not (tmp_path / "path.db").exists()


def test_store_from_the_environment_is_named_so(tmp_path):
    (tmp_path / "text.db").write_text("not a database")
    env_uri = f"sqlite:///{tmp_path}/text.db"
    proc = subprocess.run(
        [sys.executable, "-m", "nnbench", *QUICK],
        cwd=tmp_path,
        env={**clean_env(tmp_path), "MLFLOW_TRACKING_URI": env_uri},
        capture_output=True,
        text=True,
        timeout=120,
    )
    one_line(proc, f"Invalid $MLFLOW_TRACKING_URI: '{env_uri}'")


def clean_env(tmp_path):
    from tests.cli_helpers import clean_env as env

    return env(tmp_path)


def test_store_not_a_database_in_a_sweep(tmp_path):
    """The sweep's launcher checks the store before its parent run exists: no job runs."""
    (tmp_path / "text.db").write_text("not a database")
    proc = tracked(tmp_path, "+sweep=lr", f"tracking.uri=sqlite:///{tmp_path}/text.db")
    one_line(proc, "is not a SQLite database")
    assert "[job" not in proc.stdout


def test_run_dir_under_a_regular_file(tmp_path):
    (tmp_path / "plain").write_text("x")
    proc = run_nnbench(tmp_path, f"hydra.run.dir={tmp_path}/plain/run")
    one_line(proc, f"cannot use {tmp_path}/plain/run", "regular file")


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_output_folder_that_cannot_be_made(tmp_path, mode):
    key = "hydra.run.dir" if mode == "run" else "hydra.sweep.dir"
    extra = ("+sweep=lr",) if mode == "sweep" else ()
    proc = tracked(tmp_path, *extra, f"{key}=/proc/x")
    one_line(proc, "cannot use /proc/x", key)
    if mode == "sweep":  # no parent run was made for a sweep that could not start
        assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_read_only_output_folder(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(read_only)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a read-only tmpfs is not permitted here (needs root)")
    try:
        proc = run_nnbench(tmp_path, f"hydra.run.dir={read_only}/run")
        one_line(proc, f"cannot use {read_only}/run", "Read-only file system")
        proc = tracked(tmp_path, f"tracking.uri=sqlite:///{read_only}/mlflow.db")
        one_line(proc, "Invalid tracking.uri", f"cannot write in {read_only}")
    finally:
        subprocess.run(["umount", str(read_only)], check=True)


def test_binary_file_as_dataset(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes([0x91, 0x00, 0xFF]) * 100)
    proc = run_nnbench(tmp_path, "dataset=csv", f"dataset.path={path}")
    one_line(proc, f"Invalid dataset.path: '{path}'", "not a CSV text file", "0x91")


@pytest.mark.parametrize(
    ("separator", "setting"), [(";", 'dataset.delimiter=";"'), ("\t", "dataset.delimiter=tab")]
)
def test_csv_with_another_separator(tmp_path, separator, setting):
    path = tmp_path / "data.csv"
    rows = ["a b label"] + [f"{i} {i % 3} {i % 2}" for i in range(40)]
    path.write_text("\n".join(r.replace(" ", separator) for r in rows) + "\n")
    proc = run_nnbench(tmp_path, "dataset=csv", f"dataset.path={path}")
    one_line(proc, f"Invalid dataset.path: '{path}'", "one column", setting)
    value = setting.split("=", 1)[1]
    ok = run_nnbench(
        tmp_path,
        "dataset=csv",
        f"dataset.path={path}",
        f"dataset.delimiter={value}",
        "trainer.epochs=1",
    )
    assert ok.returncode == 0, ok.stderr


def test_folder_as_dataset(tmp_path):
    proc = run_nnbench(tmp_path, "dataset=csv", f"dataset.path={tmp_path}")
    one_line(proc, f"Invalid dataset.path: '{tmp_path}'", "a folder, not a file")


@pytest.mark.parametrize(
    ("launcher", "extra", "module"),
    [
        ("submitit_local", "slurm", "hydra_plugins.hydra_submitit_launcher"),
        ("ray", "ray", "hydra_plugins.hydra_ray_launcher"),
    ],
)
def test_launcher_without_its_extra(tmp_path, launcher, extra, module):
    if importlib.util.find_spec("hydra_plugins") is not None and _has_module(module):
        pytest.skip(f"{module} is installed: the launcher is available")
    proc = run_nnbench(tmp_path, "+sweep=lr", f"hydra/launcher={launcher}")
    one_line(proc, f"Invalid hydra/launcher: '{launcher}'", f"pip install -e '.[{extra}]'")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.parametrize("group", ["sweep=lr", "experiment=xor_mlp"])
def test_group_without_its_plus(tmp_path, group):
    proc = run_nnbench(tmp_path, group)
    one_line(proc, f"Invalid override: '{group}'", f"+{group}")


def test_help_shows_the_plus(tmp_path):
    proc = run_nnbench(tmp_path, "--help", tracking=None)
    assert proc.returncode == 0
    assert "+sweep=lr" in proc.stdout and "+experiment=" in proc.stdout


def test_bench_batch_size_zero():
    proc = subprocess.run(
        [sys.executable, "-m", "nnbench.bench", "--batch-size", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = one_line(proc, "Invalid --batch-size: 0", "must be an integer >= 1")
    assert line.startswith("nnbench.bench: ")


def test_compare_without_pytorch():
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("PyTorch is installed: compare.py runs")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare.py"), "--quick", "--no-track"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    one_line(proc, "PyTorch is not installed", "make reference")


def test_experiment_records_under_its_own_name():
    """+experiment=lr_figure runs the lr sweep on sine: it must not mix with +sweep=lr."""
    from nnbench.tracking import experiment_name

    assert experiment_name(None, {"experiment": "lr_figure", "sweep": "lr"}) == "lr_figure"
    assert experiment_name(None, {"sweep": "lr"}) == "sweep-lr"
    assert experiment_name("mine", {"experiment": "lr_figure"}) == "mine"


def test_sweep_goes_on_past_a_backend_that_cannot_run_here(tmp_path):
    """+sweep=backend without CuPy: the cupy job is recorded FAILED with the reason, the
    numpy job completes, the sweep exits 0."""
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed: the cupy job may run here")
    from tests.sweep_helpers import all_runs, client_for, parents

    proc = tracked(tmp_path, "+sweep=backend")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "backend=cupy" in proc.stdout and "unavailable: backend=cupy:" in proc.stdout
    client = client_for(tmp_path)
    runs = {r.data.params.get("backend.name"): r for r in all_runs(client)}
    failed, completed = runs["cupy"], runs["numpy"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["nnbench.outcome"] == "failed"
    assert failed.data.tags["nnbench.error"].startswith("unavailable here: backend=cupy:")
    assert completed.info.status == "FINISHED"
    (parent,) = parents(client)
    assert parent.info.status == "FINISHED"
