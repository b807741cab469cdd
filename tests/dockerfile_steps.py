"""Read a Dockerfile and perform some of its steps without Docker, for tests/test_docker.py.

The GPU image cannot be built where the tests run (NVIDIA's base image, a CUDA runtime), so
its install steps are done here the way the builder would do them: the stages from the
chosen variant's base up to the final one, in order; ARG with build arguments, ENV, WORKDIR
and COPY (from the build context) as Docker defines them; the selected RUN lines through
``sh -c``. The same reading tells the static tests the image's ENV, USER, VOLUME and
ENTRYPOINT without performing any RUN line. Container paths are moved under a
``root`` folder (``/opt/venv`` -> ``root/opt/venv``); the system's own folders (/usr, /bin,
...) stay where they are, so the host's Python stands in for the base image's.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSTEM_DIRS = {"bin", "dev", "etc", "lib", "lib64", "proc", "sbin", "sys", "usr"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest, continuation lines joined


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[Instruction]


def parse(text: str) -> list[Instruction]:
    """Instructions in order, continuation lines joined; comment lines are dropped, also
    inside a continued instruction, as Docker drops them."""
    instructions, pending = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending.append(stripped.removesuffix("\\").strip())
        if stripped.endswith("\\"):
            continue
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = []
    return instructions


def expand(value: str, variables: dict[str, str]) -> str:
    """$NAME, ${NAME} and ${NAME:-default}, as in Dockerfile ENV, ARG, WORKDIR and FROM."""

    def one(match):
        name = match.group(1) or match.group(3)
        found = variables.get(name, "")
        return found if found or match.group(2) is None else match.group(2)

    return VARIABLE.sub(one, value)


def split_stages(instructions: list[Instruction], build_args: dict[str, str]):
    """(global ARG values, stages in order). FROM lines see the global ARGs."""
    global_args, stages = {}, []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = expand(ins.args, global_args).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name, words[0], []))
        elif not stages and ins.keyword == "ARG":
            key, _, default = ins.args.partition("=")
            global_args[key] = build_args.get(key, default.strip('"'))
        elif stages:
            stages[-1].instructions.append(ins)
    return global_args, stages


def chain(stages: list[Stage]) -> list[Stage]:
    """The final stage and the stages it is built on, base first."""
    by_name = {stage.name: stage for stage in stages if stage.name}
    result = [stages[-1]]
    while result[0].base in by_name:
        result.insert(0, by_name[result[0].base])
    return result


@dataclass
class Result:
    env: dict[str, str]
    workdir: Path
    entrypoint: list[str]
    volumes: list[str]
    user: str | None
    ran: list[str]


class Builder:
    """Performs a Dockerfile's stages under ``root``, running the RUN lines ``select`` picks."""

    def __init__(self, context: Path, root: Path, env: dict[str, str], select):
        self.context, self.root, self.select = context, root, select
        self.env = dict(env)
        self.args: dict[str, str] = {}
        self.workdir = root
        self.result = Result(self.env, root, [], [], None, [])

    def rebase(self, value: str) -> str:
        """Absolute container paths in a ':'-separated value, moved under root."""
        parts = []
        for part in value.split(":"):
            top = part.split("/")[1] if part.startswith("/") else None
            parts.append(str(self.root) + part if top and top not in SYSTEM_DIRS else part)
        return ":".join(parts)

    def build(self, dockerfile: Path, build_args: dict[str, str]) -> Result:
        _, stages = split_stages(parse(dockerfile.read_text()), build_args)
        for stage in chain(stages):
            self.args = {}
            for ins in stage.instructions:
                self.step(ins, build_args)
        self.result.workdir = self.workdir
        return self.result

    def step(self, ins: Instruction, build_args: dict[str, str]) -> None:
        variables = {**self.env, **self.args}
        if ins.keyword == "ARG":
            key, _, default = ins.args.partition("=")
            self.args[key] = build_args.get(key, expand(default.strip('"'), variables))
        elif ins.keyword == "ENV":
            for pair in shlex.split(ins.args):
                key, _, value = pair.partition("=")
                self.env[key] = expand(self.rebase(value), variables)
        elif ins.keyword == "WORKDIR":
            self.workdir = self.workdir / self.rebase(expand(ins.args, variables))
            self.workdir.mkdir(parents=True, exist_ok=True)
        elif ins.keyword == "COPY":
            self.copy(shlex.split(ins.args))
        elif ins.keyword == "RUN":
            self.run(ins.args)
        elif ins.keyword == "ENTRYPOINT":
            self.result.entrypoint = _json_or_shell(ins.args)
        elif ins.keyword == "VOLUME":
            self.result.volumes += _json_or_shell(ins.args)
        elif ins.keyword == "USER":
            self.result.user = ins.args

    def copy(self, words: list[str]) -> None:
        """COPY from the build context: a folder's contents go to dest, files into dest/ (or
        to dest itself, for one file and a dest without a trailing slash)."""
        if any(word.startswith("--") for word in words):
            raise NotImplementedError(f"COPY {' '.join(words)}: only plain COPY is performed")
        *sources, dest = words
        target = self.workdir / self.rebase(dest)
        into = dest.endswith("/") or len(sources) > 1
        for source in sources:
            path = self.context / source
            if path.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]")
                shutil.copytree(path, target, ignore=ignore, dirs_exist_ok=True)
            else:
                (target if into else target.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / path.name if into else target)

    def run(self, command: str) -> None:
        if not self.select(command):
            return
        if command.startswith("--"):  # RUN --mount=... and the like need BuildKit
            raise NotImplementedError(f"RUN {command}: RUN flags are not performed")
        env = {**self.env, **self.args}
        proc = subprocess.run(
            ["sh", "-c", command], cwd=self.workdir, env=env, capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"RUN {command}\nexit {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        self.result.ran.append(command)


def _json_or_shell(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else ["/bin/sh", "-c", args]
