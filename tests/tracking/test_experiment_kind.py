"""The experiments nnbench writes to are of the kind that the MLflow UI opens on its runs
table (the experiment tag ``mlflow.experimentKind``), whoever created them; a kind set
already is kept."""

from __future__ import annotations

from nnbench.tracking import store

KIND = "mlflow.experimentKind"


def test_new_and_existing_experiments_get_the_model_training_kind(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = store.client(uri)
    created = store.experiment_id(client, "fresh", uri)
    assert client.get_experiment(created).tags[KIND] == "custom_model_development"
    older = client.create_experiment("made-elsewhere")  # as MLflow itself makes one
    assert KIND not in client.get_experiment(older).tags
    assert store.experiment_id(client, "made-elsewhere", uri) == older
    assert client.get_experiment(older).tags[KIND] == "custom_model_development"


def test_a_kind_set_already_is_kept(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = store.client(uri)
    chosen = client.create_experiment("agents", tags={KIND: "genai_development"})
    assert store.experiment_id(client, "agents", uri) == chosen
    assert client.get_experiment(chosen).tags[KIND] == "genai_development"
