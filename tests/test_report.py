"""The report on a small learning-rate sweep made by the real program: the summary the parent
run gets at the end of the sweep, and ``python -m nnbench.report``.

The expected order of the runs is not computed by the report's code: it comes from the job
lines the program printed while training (``[job N] optimizer.lr=X ...: completed ...
val/loss V  val/acc A``), so a wrong sort, a wrong direction or a diverged run ranked by a
number shows up as a mismatch.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from nnbench.report import colors, main, plots, runs, table

LRS = ("0.01", "0.1", "10")  # 10 diverges in the first epoch
JOB_LINE = re.compile(r"^\[job \d+\] optimizer\.lr=(\S+) .*?: (completed|diverged)(.*)$", re.M)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    env["NNBENCH_DATA"] = str(tmp / "cache")
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One sweep, recorded in <tmp>/outputs/mlflow.db: what the jobs printed, the parent."""
    tmp = tmp_path_factory.mktemp("report")
    command = [sys.executable, "-m", "nnbench", "+sweep=lr", f"optimizer.lr={','.join(LRS)}"]
    command += ["trainer.epochs=2", "hydra.sweep.dir=sweep"]
    proc = subprocess.run(command, cwd=tmp, env=_env(tmp), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {}
    for lr, outcome, rest in JOB_LINE.findall(proc.stdout):
        numbers = dict(re.findall(r"(\w+/\w+) (-?\d+\.\d+)", rest))
        jobs[float(lr)] = {"outcome": outcome, **{k: float(v) for k, v in numbers.items()}}
    assert sorted(jobs) == sorted(float(lr) for lr in LRS), proc.stdout
    info = json.loads((tmp / "sweep" / "nnbench_sweep.json").read_text())
    return {
        "tmp": tmp,
        "jobs": jobs,
        "parent": info["parent_run_id"],
        "uri": info["uri"],
        "stdout": proc.stdout,
    }


@pytest.fixture(scope="module")
def client(sweep):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=sweep["uri"])


def expected_order(jobs: dict, metric: str, descending: bool) -> list[float]:
    """Learning rates best first by the printed metric; diverged runs after all others."""
    done = [lr for lr, job in jobs.items() if job["outcome"] == "completed"]
    done.sort(key=lambda lr: jobs[lr][metric], reverse=descending)
    return done + [lr for lr, job in jobs.items() if job["outcome"] == "diverged"]


def table_rows(stdout: str) -> list[list[str]]:
    """The cells of the terminal table: the lines after the header's ``----`` rule."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("----")) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return [line.split() for line in lines[start:end]]


def test_the_sweep_has_a_diverged_job(sweep):
    outcomes = {lr: job["outcome"] for lr, job in sweep["jobs"].items()}
    assert outcomes == {0.01: "completed", 0.1: "completed", 10.0: "diverged"}


# -- the summary the parent run gets at the end of the sweep ---------------------------------


def test_parent_run_has_the_summary_artifacts(sweep, client):
    logged = {Path(a.path).name for a in client.list_artifacts(sweep["parent"], "summary")}
    assert {"runs.csv", "runs.md", "val_loss_curves.png", "final_val_loss.png"} <= logged
    folder = sweep["tmp"] / "sweep" / "summary"
    for name in ("val_loss_curves.png", "final_val_loss.png"):
        assert (folder / name).read_bytes()[:8] == PNG_MAGIC


def test_summary_csv_has_one_row_per_child_in_rank_order(sweep, client):
    children = client.search_runs(
        [client.get_run(sweep["parent"]).info.experiment_id],
        f"tags.mlflow.parentRunId = '{sweep['parent']}'",
    )
    with open(sweep["tmp"] / "sweep" / "summary" / "runs.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["run_id"] for r in rows) == sorted(c.info.run_id for c in children)
    order = [float(r["optimizer.lr"]) for r in rows]
    assert order == expected_order(sweep["jobs"], "val/loss", descending=False)
    diverged = rows[-1]
    assert (diverged["outcome"], diverged["rank"], diverged["epochs"]) == ("diverged", "", "0")
    assert diverged["diverged_at"].startswith("epoch 1")
    # its last finite values: the validation scores before training, logged at step 0
    (before,) = client.get_metric_history(diverged["run_id"], "val/loss")
    assert before.step == 0 and float(diverged["val/loss"]) == before.value
    assert float(diverged["diverged/epoch"]) == 1
    for row in rows[:-1]:  # the CSV holds the stored values; the job line rounds to 4 places
        lr = float(row["optimizer.lr"])
        assert float(row["val/loss"]) == pytest.approx(sweep["jobs"][lr]["val/loss"], abs=1e-4)


def test_summary_markdown_ranks_the_diverged_run_last(sweep):
    text = (sweep["tmp"] / "sweep" / "summary" / "runs.md").read_text()
    body = [line for line in text.splitlines() if line.startswith("| ") and "rank" not in line]
    assert len(body) == 3
    assert "diverged at epoch 1" in body[-1]


def test_parent_run_gets_summary_metrics_and_tags(sweep, client):
    parent = client.get_run(sweep["parent"])
    jobs = sweep["jobs"]
    best_lr = expected_order(jobs, "val/loss", descending=False)[0]
    metrics, tags = parent.data.metrics, parent.data.tags
    assert metrics["best/val_loss"] == pytest.approx(jobs[best_lr]["val/loss"], abs=1e-4)
    assert (metrics["runs/completed"], metrics["runs/diverged"], metrics["runs/total"]) == (2, 1, 3)
    assert float(tags["nnbench.best.optimizer.lr"]) == best_lr
    best = client.get_run(tags["nnbench.best_run_id"])
    assert float(best.data.params["optimizer.lr"]) == best_lr


def test_the_sweep_ends_with_where_to_look(sweep):
    """As a single run does: the record, the UI command and address, the report command."""
    lines = sweep["stdout"].splitlines()
    closing = lines[lines.index(next(ln for ln in lines if ln.startswith("sweep lr "))) :]
    best = expected_order(sweep["jobs"], "val/loss", descending=False)[0]
    assert closing[0].startswith("sweep lr ") and "3 runs (2 completed, 1 diverged)" in closing[0]
    assert f"best lr={best:g}: val/loss" in closing[0]
    parent, uri = sweep["parent"], sweep["uri"]
    assert closing[1] == f"recorded: sweep run {parent} in {uri}"
    assert closing[2] == (
        f"look at it: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"
    )
    assert closing[3].startswith("  its runs compared: http://127.0.0.1:5000/#/experiments/")
    assert f"viewStateShareKey=nnbench-{parent}" in closing[3]
    assert closing[4] == f"compare in the terminal: python -m nnbench.report --sweep {parent}"
    assert closing[5] == "outputs: sweep"


def test_children_are_named_by_their_swept_values_and_log_no_nulls(sweep, client):
    parent = client.get_run(sweep["parent"])
    experiment = client.get_experiment(parent.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{sweep['parent']}'"
    )
    assert sorted(c.info.run_name for c in children) == ["lr=0.01", "lr=0.1", "lr=10"]
    for child in children:
        params = child.data.params
        assert "null" not in params.values()
        lr = float(params["optimizer.lr"])
        assert float(params["optimizer.lr_log10"]) == pytest.approx(math.log10(lr), abs=1e-3)


def test_the_sweep_has_a_saved_view_of_its_children(sweep, client):
    parent = client.get_run(sweep["parent"])
    tags = client.get_experiment(parent.info.experiment_id).tags
    envelope = json.loads(tags[f"mlflow.sharedViewState.nnbench-{sweep['parent']}"])
    assert envelope["name"] == f"sweep {parent.info.run_name}"
    state = json.loads(envelope["state"])
    assert state["searchFilter"] == f"tags.`mlflow.parentRunId` = '{sweep['parent']}'"
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`val/loss`", True)
    columns = state["selectedColumns"]
    assert columns[:3] == ["params.`optimizer.lr`", "params.`optimizer.lr_log10`",
                           "metrics.`val/loss`"]  # fmt: skip
    (scatter,) = [c for c in state["compareRunCharts"] if c["type"] == "SCATTER"]
    assert scatter["xaxis"] == {"key": "optimizer.lr_log10", "type": "PARAM"}
    assert scatter["yaxis"] == {"key": "val/loss", "type": "METRIC"}


def test_parent_note_ranks_the_runs_and_links_the_plots(sweep, client):
    parent = client.get_run(sweep["parent"])
    note = parent.data.tags["mlflow.note.content"]
    best = client.get_run(parent.data.tags["nnbench.best_run_id"])
    experiment_id = parent.info.experiment_id
    assert f"**Best: [{best.info.run_name}](#/experiments/{experiment_id}/runs/" in note
    assert f"Best configuration: `optimizer.lr={best.data.params['optimizer.lr']}`" in note
    for name in ("final_val_loss.png", "val_loss_curves.png", "runs.md"):
        assert f"/runs/{parent.info.run_id}/artifacts/summary/{name})" in note
    assert f"get-artifact?path=summary%2Ffinal_val_loss.png&run_uuid={parent.info.run_id}" in note
    body = [ln for ln in note.splitlines() if ln.startswith("| ") and "rank" not in ln]
    assert len(body) == 3 and "diverged at epoch 1" in body[-1] and body[0].startswith("| 1 |")


# -- python -m nnbench.report -----------------------------------------------------------------


def test_report_command_shows_the_latest_sweep_ranked(sweep, client):
    """No arguments: the default store under the working directory, the latest sweep."""
    tmp = sweep["tmp"]
    command = [sys.executable, "-m", "nnbench.report"]
    proc = subprocess.run(command, cwd=tmp, env=_env(tmp), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    header = next(ln for ln in proc.stdout.splitlines() if ln.split()[:1] == ["rank"])
    assert header.split()[:4] == ["rank", "optimizer.lr", "outcome", "epochs"]
    assert "trainer.epochs" not in header  # identical in every run: not a column
    rows = table_rows(proc.stdout)
    assert [float(r[1]) for r in rows] == expected_order(sweep["jobs"], "val/loss", False)
    assert [r[0] for r in rows] == ["1", "2", "-"]
    assert " ".join(rows[-1][2:]) == "diverged 0 diverged at epoch 1"
    out = tmp / "outputs" / "reports"
    assert len(list(out.glob("*/val_loss_curves.png"))) == 1
    logged = {Path(a.path).name for a in client.list_artifacts(sweep["parent"], "report")}
    assert {"val_loss_curves.png", "final_val_loss.png"} <= logged


def test_console_script_is_declared():
    scripts = entry_points(group="console_scripts", name="nnbench-report")
    assert [s.value for s in scripts] == ["nnbench.report:main"]


def run_report(capsys, sweep, *args: str) -> str:
    main(["--uri", sweep["uri"], "--no-log", "--out", str(sweep["tmp"] / "r"), *args])
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "metric", "descending"),
    [
        (["--metric", "val/acc"], "val/acc", True),  # accuracy: highest first
        (["--metric", "val/acc", "--ascending"], "val/acc", False),
        (["--metric", "val/loss", "--descending"], "val/loss", True),
    ],
)
def test_metric_and_order(capsys, sweep, args, metric, descending):
    rows = table_rows(run_report(capsys, sweep, "--sweep", sweep["parent"], *args))
    assert [float(r[1]) for r in rows] == expected_order(sweep["jobs"], metric, descending)
    assert rows[-1][2] == "diverged"


def test_experiment_lists_its_runs_not_the_parent(capsys, sweep):
    out = run_report(capsys, sweep, "--experiment", "sweep-lr")
    assert out.startswith("experiment sweep-lr: 3 runs")
    assert len(table_rows(out)) == 3


def test_limit_keeps_the_best(capsys, sweep):
    rows = table_rows(run_report(capsys, sweep, "--limit", "1"))
    assert [float(r[1]) for r in rows] == expected_order(sweep["jobs"], "val/loss", False)[:1]


@pytest.mark.parametrize(
    ("args", "start", "contains"),
    [
        (["--experiment", "nope"], "Invalid experiment: 'nope' (available: ", "sweep-lr"),
        (["--sweep", "0123abcd"], "Invalid run id: '0123abcd' (no such run", ""),
        (["--metric", "val/los"], "Invalid metric: 'val/los' (available: ", "val/loss"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(capsys, sweep, args, start, contains):
    with pytest.raises(SystemExit) as exited:
        main(["--uri", sweep["uri"], "--no-log", *args])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.count("\n") == 1
    assert err.startswith(f"nnbench-report: error: {start}")
    assert contains in err


def test_missing_store_says_how_to_make_runs_and_creates_nothing(capsys, tmp_path):
    missing = tmp_path / "outputs" / "mlflow.db"
    with pytest.raises(SystemExit) as exited:
        main(["--uri", f"sqlite:///{missing}"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1
    assert "no MLflow store" in err and "python -m nnbench" in err
    assert not missing.exists()


# -- the pieces, on runs written out by hand --------------------------------------------------


def row(lr: str, outcome: str, loss: float | None = None, **extra) -> runs.RunRow:
    metrics = {} if loss is None else {"val/loss": loss, "val/acc": 1.0 - loss / 10}
    return runs.RunRow(
        run_id=f"id-{lr}",
        name=f"lr={lr}",
        outcome=outcome,
        params={"optimizer.lr": lr, "trainer.epochs": "5"},
        metrics=metrics,
        start_time=0,
        **extra,
    )


def test_unfinished_runs_rank_last_whatever_their_numbers():
    """A run with the best-looking number but a bad outcome still goes after completed ones."""
    rows = [
        row("1", "interrupted", 0.01),
        row("0.1", "completed", 0.5),
        row("10", "diverged", 0.001, diverged_at="epoch 3, step 2"),
        row("0.01", "completed", 0.3),
        row("0.5", "failed", 0.0001, error="ValueError: boom"),
    ]
    ranked = runs.rank(rows, "val/loss", descending=False)
    assert [r.params["optimizer.lr"] for r in ranked] == ["0.01", "0.1", "1", "0.5", "10"]
    assert [r.rank for r in ranked] == [1, 2, None, None, None]


@pytest.mark.parametrize(
    ("metric", "higher"),
    [("val/acc", True), ("test/acc", True), ("val/loss", False), ("test/mse", False)],
)
def test_accuracy_is_maximized_and_losses_minimized(metric, higher):
    assert runs.higher_is_better(metric) is higher


def test_swept_params_are_the_ones_that_differ():
    rows = [row("0.1", "completed", 1.0), row("0.01", "completed", 2.0)]
    assert runs.swept_params(rows) == ["optimizer.lr"]


def test_terminal_table_is_aligned_and_notes_replace_numbers():
    rows = [row("0.001", "completed", 0.25), row("10", "diverged", diverged_at="epoch 3, step 2")]
    for r in rows:
        r.curve = [(1, 1.0), (2, 0.5)]
    text = table.terminal(runs.rank(rows, "val/loss", False), ["optimizer.lr"], ["val/loss"])
    lines = text.splitlines()
    assert lines[0].split() == ["rank", "optimizer.lr", "outcome", "epochs", "val/loss"]
    assert lines[2].split() == ["1", "0.001", "completed", "2", "0.2500"]
    assert lines[3].split() == ["-", "10", "diverged", "2", "diverged", "at", "epoch", "3"]
    assert lines[2].index("completed") == lines[3].index("diverged") == lines[0].index("outcome")


def test_plots_of_a_run_diverging_after_some_epochs(tmp_path):
    diverged = row("10", "diverged", diverged_at="epoch 3, step 1")
    diverged.curve = [(1, 2.0), (2, 4.0)]
    done = row("0.1", "completed", 0.5)
    done.curve = [(1, 1.0), (2, 0.7), (3, 0.5)]
    rows, params = [done, diverged], ["optimizer.lr"]
    curves = plots.curves(rows, params, "val/loss", tmp_path / "c.png", "t")
    final = plots.metric_vs_params(rows, params, "val/loss", tmp_path / "f.png", "t")
    assert curves.read_bytes()[:8] == PNG_MAGIC and final.read_bytes()[:8] == PNG_MAGIC
    assert plots.label(diverged, params) == "optimizer.lr=10"


def grid_rows(grid: dict[str, list], diverged_lr: float | None = None) -> list[runs.RunRow]:
    """One row per combination of ``grid``, a short decreasing curve each; runs with
    ``optimizer.lr`` >= ``diverged_lr`` diverge in epoch 2."""
    import itertools

    rows = []
    for i, values in enumerate(itertools.product(*grid.values())):
        params = {key: str(v) for key, v in zip(grid, values, strict=True)}
        lr = float(params.get("optimizer.lr", 0.1))
        diverged = diverged_lr is not None and lr >= diverged_lr
        r = runs.RunRow(
            run_id=f"r{i}",
            name=f"job{i}",
            outcome="diverged" if diverged else "completed",
            params=params,
            metrics={} if diverged else {"val/loss": 1.0 / (i + 2)},
            start_time=i,
            diverged_at="epoch 2, step 3" if diverged else None,
        )
        r.curve = [(1, 2.0 + i / 100)] if diverged else [(e, 2.0 / e + i / 100) for e in (1, 2, 3)]
        rows.append(r)
    return rows


LRS6 = [0.0001, 0.001, 0.01, 0.1, 1.0, 10.0]


def test_a_numeric_sweep_is_coloured_by_its_value_on_a_log_colour_bar(tmp_path):
    rows = grid_rows({"optimizer.lr": LRS6}, diverged_lr=10)
    scheme = colors.scheme(rows, ["optimizer.lr"])
    assert scheme.primary == "optimizer.lr" and scheme.log
    assert [scheme.fraction(v) for v in (0.0001, 0.01, 10.0)] == pytest.approx([0, 0.4, 1])
    plt = plots._pyplot()
    fig = plots.curves_figure(plt, rows, ["optimizer.lr"], "val/loss", "t")
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and bars[0].get_ylabel() == "optimizer.lr"
    assert bars[0].get_yscale() == "log"
    plt.close(fig)


@pytest.mark.parametrize("count", [2, 6, 24, 96, 200])
def test_curves_stay_readable_and_distinct(tmp_path, count):
    """2 to 200 jobs: every panel at least 2 inches wide and tall, the legend outside every
    panel, no two runs of a panel in one colour, every diverged run marked."""
    grids = {
        2: {"optimizer.lr": [0.1, 10.0]},
        6: {"optimizer.lr": LRS6},
        24: {"optimizer.lr": LRS6, "model.dropout": [0.0, 0.5], "model.batchnorm": [False, True]},
        96: {"optimizer.lr": LRS6, "model.dropout": [0, 0.2, 0.35, 0.5],
             "model.l2": [0, 1e-4, 1e-3, 1e-2]},
        200: {"optimizer.lr": [0.001, 0.01, 0.1, 1.0, 10.0], "seed": list(range(40))},
    }  # fmt: skip
    params = list(grids[count])
    rows = grid_rows(grids[count], diverged_lr=10)
    assert len(rows) == count
    plt = plots._pyplot()
    fig = plots.curves_figure(plt, rows, params, "val/loss", "t")
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    renderer = fig.canvas.get_renderer()
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in panels)
    marks = 0
    for ax in panels:
        box = ax.get_window_extent(renderer)
        assert box.width >= 2 * fig.dpi and box.height >= 1.5 * fig.dpi
        curves = [line for line in ax.get_lines() if line.get_linestyle() != "None"]
        shades = [tuple(round(c, 4) for c in line.get_color()) for line in curves]
        assert len(set(shades)) == len(shades)
        marks += sum(1 for line in ax.get_lines() if line.get_marker() == "x")
    assert marks == sum(1 for r in rows if r.outcome == "diverged") > 0
    plt.close(fig)


def test_a_sweep_of_categories_gets_distinct_colours_and_a_legend_below(tmp_path):
    grid = {"model.activation": ["sigmoid", "tanh", "relu", "leaky_relu"], "seed": ["a", "b", "c"]}
    grid["optimizer.name"] = ["sgd", "adam"]
    rows = grid_rows(grid)
    plt = plots._pyplot()
    fig = plots.curves_figure(plt, rows, list(grid), "val/loss", "t")
    (ax,) = [a for a in fig.axes if a.get_visible()]
    shades = {tuple(line.get_color()) for line in ax.get_lines()}
    assert len(shades) == len(rows) == 24
    (legend,) = fig.legends
    assert len(legend.get_texts()) == 24
    plt.close(fig)


def test_final_metric_plot_counts_runs_diverged_at_one_value(tmp_path):
    rows = grid_rows({"optimizer.lr": LRS6, "model.dropout": [0.0, 0.2, 0.5]}, diverged_lr=1)
    path = plots.metric_vs_params(rows, ["optimizer.lr", "model.dropout"], "val/loss",
                                  tmp_path / "f.png", "t")  # fmt: skip
    assert path.read_bytes()[:8] == PNG_MAGIC
    plt = plots._pyplot()
    fig, ax = plt.subplots()
    plots._panel(ax, rows, "optimizer.lr", "val/loss", single=False)
    counts = sorted(t.get_text() for t in ax.texts)
    assert counts == ["3", "3"]  # lr=1 and lr=10: three runs each, one mark each
    plt.close(fig)
