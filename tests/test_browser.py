"""Comparing a sweep in the MLflow UI, in a real browser, as the README tells a user to.

A real sweep (``+sweep=lr trainer.epochs=3``: six learning rates, the largest diverges in
its first epoch) is recorded in a fresh SQLite store; ``mlflow ui`` serves it on 127.0.0.1
and headless Chromium, driven by Selenium, opens what the sweep's last lines point to. The
checks are on what the page shows: the runs table, the parent run with its children, the
children's names, the columns, the Compare page's scatter of ``val/loss`` against the log
learning rate with every child on it, and the parent run's description. Screenshots go to
``outputs/browser/``. The UI and the browser are stopped at the end, whatever happened.

Needs Debian's ``chromium`` and ``chromium-driver`` and Selenium (``pip install -e
'.[browser]'``); skipped, with the reason, without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.sweep_helpers import PARENT, all_runs, client_for, nnbench

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).resolve().parents[1] / "outputs" / "browser"
RATES = ("0.0001", "0.001", "0.01", "0.1", "1.0", "10.0")
NAMES = {"lr=1e-4", "lr=0.001", "lr=0.01", "lr=0.1", "lr=1", "lr=10"}
UI_START_S = 150  # `mlflow ui` takes up to ~40 s to answer on a busy 2-core machine
PAGE_S = 60  # the longest wait for one thing to show on a page


def chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, Debian's names first."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _skip_reason() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "Selenium not installed: pip install -e '.[browser]'"
    if chromium() is None:
        return "Chromium or chromedriver not installed: apt-get install chromium chromium-driver"
    return None


if _skip_reason():
    pytest.skip(_skip_reason(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The sweep's folder, its output, and its store's client."""
    cwd = tmp_path_factory.mktemp("browser")
    proc = nnbench(cwd, "+sweep=lr", f"optimizer.lr={','.join(RATES)}", "trainer.epochs=3")
    assert proc.returncode == 0, proc.stderr
    return cwd, proc.stdout, client_for(cwd)


@pytest.fixture(scope="module")
def ui(sweep):
    """``mlflow ui`` on the sweep's store, 127.0.0.1 only; its address."""
    cwd, _, _ = sweep
    port = free_port()
    log = open(cwd / "mlflow-ui.log", "w")  # noqa: SIM115 (closed below)
    command = [sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{cwd}/outputs/mlflow.db"]
    proc = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    address = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(address, proc, cwd / "mlflow-ui.log")
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _wait_healthy(address: str, proc, log: Path) -> None:
    deadline = time.monotonic() + UI_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow ui exited ({proc.returncode}): {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{address}/health", timeout=5) as response:
                if response.status == 200:
                    return
        time.sleep(1)
    pytest.fail(f"mlflow ui did not answer within {UI_START_S} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def browser(ui):
    browser_path, driver_path = chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    profile = tempfile.mkdtemp(prefix="nnbench-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1600,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(PAGE_S)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def printed(stdout: str, prefix: str) -> str:
    """What the sweep's closing line starting with ``prefix`` says."""
    for line in stdout.splitlines():
        if line.strip().startswith(prefix):
            return line.strip().removeprefix(prefix).strip()
    raise AssertionError(f"no line {prefix!r} in the sweep's output:\n{stdout}")


def wait_for(driver, condition, what: str):
    """The first truthy value of ``condition(driver)`` within PAGE_S, else a failure with
    a screenshot of the page as it was."""
    try:
        return WebDriverWait(driver, PAGE_S, poll_frequency=0.5).until(condition)
    except Exception as exc:
        name = re.sub(r"\W+", "_", what)[:60]
        driver.save_screenshot(str(SHOTS / f"failed_{name}.png"))
        raise AssertionError(f"the page never showed {what}: {driver.current_url}") from exc


def texts(driver, xpath: str) -> list[str]:
    found = []
    for element in driver.find_elements(By.XPATH, xpath):
        with contextlib.suppress(Exception):
            found.append(element.text.strip())
    return found


def shows(*wanted: str):
    """A condition: every one of ``wanted`` is shown as some element's whole text."""

    def condition(driver):
        shown = set(texts(driver, "//body//*[not(*)]"))
        return all(text in shown for text in wanted) and shown

    return condition


def says(*wanted: str):
    """A condition: the page's text holds every one of ``wanted``."""

    def condition(driver):
        text = driver.find_element(By.TAG_NAME, "body").text
        return all(part in text for part in wanted)

    return condition


def close_assistant(driver) -> None:
    """The UI opens an assistant panel beside every page; close it for the screenshots."""
    for button in driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):
        with contextlib.suppress(Exception):
            button.click()
            return


def children(client) -> list:
    return [r for r in all_runs(client) if PARENT in r.data.tags]


def test_sweep_ends_with_where_to_look(sweep):
    _, stdout, client = sweep
    (parent,) = [r for r in all_runs(client) if PARENT not in r.data.tags]
    assert printed(stdout, "recorded: sweep run").startswith(parent.info.run_id)
    assert printed(stdout, "look at it:").startswith("mlflow ui --backend-store-uri sqlite:///")
    assert printed(stdout, "compare in the terminal:") == (
        f"python -m nnbench.report --sweep {parent.info.run_id}"
    )


def test_the_printed_address_opens_the_runs_table(sweep, ui, browser):
    """The experiment's runs table comes first: the address the sweep prints opens it,
    with the sweep's children as rows, named by their learning rate, ranked by val/loss,
    and the swept param, its log10 and val/loss as columns."""
    _, stdout, client = sweep
    address = printed(stdout, "its runs compared:")
    assert address.startswith("http://127.0.0.1:5000/#/experiments/")
    browser.get(ui + address.removeprefix("http://127.0.0.1:5000"))
    wait_for(browser, shows(*NAMES), "the children's names")
    wait_for(browser, shows("optimizer.lr", "optimizer.lr_log10", "val/loss"), "the columns")
    close_assistant(browser)
    time.sleep(1)
    browser.save_screenshot(str(SHOTS / "sweep_view_table.png"))
    assert "/runs" in browser.current_url
    # ranked: the child with the lowest final val/loss is the first row
    rows = [t for t in texts(browser, "//a[starts-with(normalize-space(.), 'lr=')]") if t]
    assert rows[0] == best_child(client).info.run_name, rows
    assert set(rows) == NAMES, rows


def test_experiment_lists_the_parent_with_its_children(sweep, ui, browser):
    """The experiment's own runs page (Model training): the sweep is one parent row,
    named after the sweep, that expands to its six children."""
    _, _, client = sweep
    experiment = client.get_experiment_by_name("sweep-lr")
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    (parent,) = [r for r in all_runs(client) if PARENT not in r.data.tags]
    browser.get(f"{ui}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning")
    wait_for(browser, shows(parent.info.run_name), "the parent run")
    assert "/runs" in browser.current_url, browser.current_url
    expand = wait_for(
        browser,
        lambda d: d.find_elements(By.CSS_SELECTOR, "button[data-component-id*='runnamecell']"),
        "the parent's expand button",
    )
    expand[0].click()
    wait_for(browser, shows(*NAMES), "the children under the parent")
    close_assistant(browser)
    time.sleep(1)
    browser.save_screenshot(str(SHOTS / "experiment_parent_children.png"))


def test_compare_scatter_has_every_child(sweep, ui, browser):
    """Compare, Scatter Plot: val/loss against optimizer.lr_log10, one point per child,
    the diverged one (its val/loss before training) included, each at its own x."""
    _, _, client = sweep
    kids = children(client)
    assert len(kids) == len(RATES)
    diverged = [r for r in kids if r.data.tags["nnbench.outcome"] == "diverged"]
    assert [r.info.run_name for r in diverged] == ["lr=10"]
    assert diverged[0].data.metrics["diverged/epoch"] == 1
    assert "val/loss" in diverged[0].data.metrics
    ids = json.dumps([r.info.run_id for r in kids])
    experiment = json.dumps([kids[0].info.experiment_id])
    page = f"{ui}/#/compare-runs?runs={ids}&experiments={experiment}"
    browser.get(page + "&workflowType=machine_learning")
    tab = wait_for(
        browser,
        lambda d: d.find_elements(By.XPATH, "//*[normalize-space(text())='Scatter Plot']"),
        "the Scatter Plot tab",
    )
    tab[0].click()
    choose(browser, "x-axis-selector", "optimizer.lr_log10")
    choose(browser, "y-axis-selector", "val/loss")
    close_assistant(browser)
    wanted = {r.info.run_name: float(r.data.params["optimizer.lr_log10"]) for r in kids}
    drawn = wait_for(browser, lambda d: scatter_points(d, len(wanted)), "every child plotted")
    assert {name: x for name, (x, _) in drawn.items()} == wanted
    assert drawn["lr=10"][1] == pytest.approx(diverged[0].data.metrics["val/loss"], rel=1e-3)
    time.sleep(1)
    browser.save_screenshot(str(SHOTS / "compare_scatter.png"))


PLOTTED = """
const plot = document.querySelector('.js-plotly-plot');
if (!plot || !plot.data || !plot.layout) return null;
return JSON.stringify({
    traces: plot.data.map(t => ({x: t.x, y: t.y, text: t.text})),
    x: plot.layout.xaxis.title.text, y: plot.layout.yaxis.title.text});
"""


def scatter_points(driver, count: int) -> dict | None:
    """{run name: (x, y)} of the Compare page's scatter (a WebGL plot: its points are
    read from the plot's own data, the hover text naming each run), once it plots
    ``count`` runs of ``val/loss`` against ``optimizer.lr_log10``."""
    text = driver.execute_script(PLOTTED)
    if not text:
        return None
    plot = json.loads(text)
    if (plot["x"], plot["y"]) != ("optimizer.lr_log10", "val/loss"):
        return None
    points = {}
    for trace in plot["traces"]:
        for x, y, hover in zip(trace["x"], trace["y"], trace["text"], strict=True):
            name = re.match(r"<b>(.*?)</b>", hover).group(1)
            points[name] = (float(x), float(y))
    return points if len(points) == count else None


def choose(driver, selector_id: str, option: str) -> None:
    """Pick ``option`` in the Compare page's axis selector ``selector_id``."""
    box = wait_for(driver, lambda d: d.find_elements(By.ID, selector_id), selector_id)
    box[0].click()
    xpath = f"//*[@role='option'][normalize-space(.)='{option}']"
    item = wait_for(driver, lambda d: d.find_elements(By.XPATH, xpath), f"option {option}")
    item[0].click()
    wait_for(driver, lambda d: d.find_element(By.ID, selector_id).text.strip() == option, option)


def test_parent_note_holds_the_ranked_table(sweep, ui, browser):
    """The parent run's page: its description names the best run and its configuration,
    links to the summary plots, and holds the ranked table, the diverged run last."""
    _, _, client = sweep
    (parent,) = [r for r in all_runs(client) if PARENT not in r.data.tags]
    experiment_id = parent.info.experiment_id
    page = f"{ui}/#/experiments/{experiment_id}/runs/{parent.info.run_id}"
    browser.get(page + "?workflowType=machine_learning")
    wait_for(browser, says("Description", "Best configuration:"), "the description")
    more = browser.find_elements(By.XPATH, "//*[normalize-space(text())='Show more']")
    if more:
        more[0].click()
    wait_for(browser, says("final_val_loss.png", "diverged at epoch 1"), "the whole note")
    cells = texts(browser, "//table//td")
    assert "diverged at epoch 1" in cells, cells
    best = best_child(client)
    assert cells[:2] == ["1", best.data.params["optimizer.lr"]], cells
    link = browser.find_element(By.XPATH, f"//a[normalize-space(.)='{best.info.run_name}']")
    assert link.get_attribute("href").endswith(f"/runs/{best.info.run_id}")
    close_assistant(browser)
    browser.set_window_size(1600, 1800)
    time.sleep(1)
    browser.save_screenshot(str(SHOTS / "parent_note.png"))
    browser.set_window_size(1600, 1000)


def best_child(client):
    """The completed child with the lowest final val/loss."""
    done = [r for r in children(client) if r.data.tags["nnbench.outcome"] == "completed"]
    return min(done, key=lambda r: r.data.metrics["val/loss"])


def test_the_views_chart_section_plots_every_child(sweep, ui, browser):
    """The saved view's Chart view opens on the sweep's charts: val/loss per epoch, val/loss
    against optimizer.lr_log10 and parallel coordinates, over all six children."""
    _, stdout, _ = sweep
    address = printed(stdout, "its runs compared:").removeprefix("http://127.0.0.1:5000")
    browser.get(ui + address.replace("compareRunsMode=TABLE", "compareRunsMode=CHART"))
    wait_for(browser, says("Parallel Coordinates"), "the sweep's charts")
    xs = wait_for(browser, lambda d: chart_xs(d, len(NAMES)), "every child on the scatter chart")
    assert sorted(xs) == [-4, -3, -2, -1, 0, 1]
    close_assistant(browser)
    time.sleep(3)
    browser.save_screenshot(str(SHOTS / "sweep_view_charts.png"))


CHART_XS = """
const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
const scatter = plots.find(p => p.layout && p.layout.xaxis && p.layout.xaxis.title
    && p.layout.xaxis.title.text === 'optimizer.lr_log10');
return scatter && scatter.data ? JSON.stringify(scatter.data.flatMap(t => t.x)) : null;
"""


def chart_xs(driver, count: int) -> list[float] | None:
    """The x values of the Chart view's scatter of val/loss against optimizer.lr_log10,
    once it has ``count``."""
    text = driver.execute_script(CHART_XS)
    xs = [float(x) for x in json.loads(text)] if text else []
    return xs if len(xs) == count else None
