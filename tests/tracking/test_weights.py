"""Weights on disk: a state dict as a plain .npz, read with ``allow_pickle=False``; a file
holding pickled objects is refused, never unpickled."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import nnbench as nb
from nnbench.weights import load_weights, save_weights


def small_model(seed: int) -> nb.MLP:
    return nb.MLP(
        in_features=3,
        hidden=[5, 4],
        out_features=2,
        seed=seed,
        backend=nb.get_backend("numpy", "float64"),
    )


def test_round_trip_equals_the_state_dict(tmp_path):
    state = small_model(0).state_dict()
    path = save_weights(tmp_path / "sub" / "w.npz", state)
    assert path == tmp_path / "sub" / "w.npz"
    loaded = load_weights(path)
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape
        np.testing.assert_array_equal(loaded[key], value)


def test_file_is_a_plain_npz(tmp_path):
    """NumPy itself reads it back with pickling off."""
    state = {"w": np.arange(6.0).reshape(2, 3), "b": np.array([1, 2], dtype=np.int32)}
    save_weights(tmp_path / "w.npz", state)
    with np.load(tmp_path / "w.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["b", "w"]
        np.testing.assert_array_equal(archive["w"], state["w"])
        assert archive["b"].dtype == np.int32


def test_no_temporary_file_left(tmp_path):
    save_weights(tmp_path / "w.npz", {"w": np.ones(3)})
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]


def test_pickled_objects_are_refused(tmp_path):
    """An object array is stored as a pickle inside the .npz; loading it must fail with the
    house ValueError instead of running the unpickler."""
    path = tmp_path / "evil.npz"
    np.savez(path, w=np.ones(2), payload=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match=r"^Invalid weights file: .*pickled objects"):
        load_weights(path)


def test_unpickler_never_runs(tmp_path):
    """A pickle whose loading would have a side effect: the side effect must not happen."""
    marker = tmp_path / "ran"

    class Trap:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "trap.npz"
    payload = np.empty(1, dtype=object)
    payload[0] = Trap()
    np.savez(path, payload=payload)
    pickle.dumps(Trap())  # the trap pickles fine; only loading would create the marker
    with pytest.raises(ValueError):
        load_weights(path)
    assert not marker.exists()


def test_not_an_npz_is_refused(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"^Invalid weights file: "):
        load_weights(path)


def test_load_into_a_model_reproduces_outputs_exactly(tmp_path):
    """A model of another seed given the saved weights computes bit-identical outputs."""
    source, target = small_model(0), small_model(1)
    x = np.random.default_rng(0).normal(size=(7, 3))
    before = np.asarray(source.forward(x, training=False))
    assert not np.array_equal(np.asarray(target.forward(x, training=False)), before)
    save_weights(tmp_path / "w.npz", source.state_dict())
    target.load_state_dict(load_weights(tmp_path / "w.npz"))
    np.testing.assert_array_equal(np.asarray(target.forward(x, training=False)), before)
