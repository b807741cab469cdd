"""`benchmarks/sweep_speed.py`'s command line: the options, their ``--quick`` values, and one
line naming a bad value and what is allowed (exit status 2), never a usage block."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnbench.bench.sweep_runs import LAUNCHERS, TRACKING

PROG = "sweep_speed.py"
PARTS = ("sweeps", "training")
OPTIMIZERS = ("momentum", "adam")
# option -> (full run, --quick)
DEFAULTS = {
    "rounds": (5, 1),
    "rounds_96": (3, 0),
    "rounds_training": (5, 2),
    "members": ([8, 32, 128], [8, 32]),
    "min_sample_s": (0.05, 0.02),
}


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``sweep_speed.py: error: ...``."""

    def error(self, message: str):
        print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)


def positive(kind: str, minimum: int = 1):
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"{kind} {text!r}: must be an integer >= {minimum}")
        return value

    return check


def choices_list(kind: str, allowed):
    def check(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        bad = [name for name in names if name not in allowed] or ([] if names else [text])
        if bad:
            raise argparse.ArgumentTypeError(
                f"{kind} {bad[0]!r} (allowed: {', '.join(allowed)}; comma-separated)"
            )
        return list(dict.fromkeys(names))

    return check


def non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"seconds {text!r}: must be a number >= 0")
    return value


def build_parser(description: str = "") -> OneLineParser:
    p = OneLineParser(prog=PROG, description=description)
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short check: the 24-point grid, 1 round, training only at M = 8, 32 in 2 rounds",
    )
    p.add_argument(
        "--parts",
        type=choices_list("part", PARTS),
        default=list(PARTS),
        help="what to measure: sweeps, training (default both)",
    )
    p.add_argument(
        "--variants",
        type=choices_list("launcher", tuple(LAUNCHERS)),
        default=list(LAUNCHERS),
        help="launchers (default basic,joblib,stacked)",
    )
    p.add_argument(
        "--tracking",
        type=choices_list("tracking mode", tuple(TRACKING)),
        default=list(TRACKING),
        help="tracked,untracked (default both)",
    )
    p.add_argument("--rounds", type=positive("rounds"), help="rounds of the 24-point grid")
    p.add_argument(
        "--rounds-96", type=positive("rounds", 0), help="rounds of the 96-point grid (0: skip it)"
    )
    p.add_argument("--epochs", type=positive("epochs"), default=20)
    p.add_argument("--members", type=positive("members"), nargs="+", help="M of the stacks")
    p.add_argument(
        "--optimizers",
        type=choices_list("optimizer", OPTIMIZERS),
        default=list(OPTIMIZERS),
        help="momentum,adam (default both)",
    )
    p.add_argument(
        "--threads",
        type=positive("threads"),
        default=1,
        help="threads of the training-only workers (default 1)",
    )
    p.add_argument("--rounds-training", type=positive("rounds"))
    p.add_argument("--samples", type=positive("samples"), default=3, help="per round")
    p.add_argument("--min-sample-s", type=non_negative_seconds)
    p.add_argument(
        "--max-wait",
        type=non_negative_seconds,
        default=5.0,
        help="seconds to wait for idle CPUs before each whole sweep",
    )
    p.add_argument("--no-track", action="store_true", help="do not record it in MLflow")
    p.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///outputs/mlflow.db)")
    p.add_argument("--experiment", default="sweep_speed", help="MLflow experiment")
    p.add_argument("--json", type=Path, help="write the figures here")
    return p


def parse(argv=None, description: str = "") -> argparse.Namespace:
    """The options, each unset one from `DEFAULTS` (its --quick value with --quick)."""
    args = build_parser(description).parse_args(argv)
    for name, (full, quick) in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.json is not None and not args.json.parent.is_dir():
        OneLineParser().error(f"--json {str(args.json)!r}: its folder does not exist")
    return args
