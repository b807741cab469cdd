"""Benchmark mode: steady-state step timing, analytic FLOPs, the GEMM-only floor, memory,
epoch time and time to a target accuracy, for one configuration at a time.

    >>> from nnbench.bench import benchmark
    >>> result = benchmark((784, 256, 256, 10), batch_size=256, optimizer="adam")
    >>> result["step_ms_median"], result["gflops"], result["step_over_floor"]

``python -m nnbench.bench --help`` runs the same from a shell and prints JSON;
``benchmarks/compare.py`` sets nnbench against PyTorch and scikit-learn, each framework in
its own worker process (`nnbench.bench.worker`).
"""

from nnbench.bench.floor import GemmFloor, floor_products
from nnbench.bench.flops import format_sizes, mlp_flops, parse_sizes
from nnbench.bench.runner import RESULT_KEYS, benchmark
from nnbench.bench.target import TargetTask, time_to_accuracy
from nnbench.bench.timing import Timing, time_steps

__all__ = [
    "RESULT_KEYS",
    "GemmFloor",
    "TargetTask",
    "Timing",
    "benchmark",
    "floor_products",
    "format_sizes",
    "mlp_flops",
    "parse_sizes",
    "time_steps",
    "time_to_accuracy",
]
