"""``python -m nnbench.bench``: benchmark one configuration and print the result as JSON.

python -m nnbench.bench --model 784-256-256-10 --batch-size 256 --optimizer adam --threads 1
python -m nnbench.bench --track      # also record it in MLflow as bench/* metrics
"""

from __future__ import annotations

import argparse
import json
import sys

from nnbench.bench.flops import parse_sizes

# Options that count something: (name, the least allowed value); None means the default.
COUNTS = (("batch_size", 1), ("samples", 1), ("epoch_rows", 1), ("threads", 1))


def check_counts(args) -> str | None:
    """The message for the first count out of range, or None."""
    for name, least in COUNTS:
        value = getattr(args, name)
        if value is not None and value < least:
            option = "--" + name.replace("_", "-")
            return f"Invalid {option}: {value} (must be an integer >= {least})"
    if args.min_sample_s < 0:
        return f"Invalid --min-sample-s: {args.min_sample_s} (must be >= 0)"
    if args.lr is not None and not args.lr > 0:
        return f"Invalid --lr: {args.lr} (must be > 0)"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnbench.bench", description=__doc__)
    parser.add_argument("--model", default="784-256-256-10", help="layer widths, in-...-out")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--optimizer", default="sgd", help="sgd, momentum, adam or adamw")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--min-sample-s", type=float, default=0.05, help="seconds per sample")
    parser.add_argument("--epoch-rows", type=int, default=None, help="time one epoch too")
    parser.add_argument("--threads", type=int, default=None, help="BLAS/OpenMP threads")
    parser.add_argument("--no-floor", action="store_true", help="skip the GEMM-only floor")
    parser.add_argument(
        "--track", action="store_true", help="also record the result in MLflow (bench/* metrics)"
    )
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or outputs/mlflow.db"
    )
    parser.add_argument("--experiment", default="bench", help="MLflow experiment (with --track)")
    args = parser.parse_args(argv)
    mistake = check_counts(args)
    if mistake:
        print(f"nnbench.bench: {mistake}", file=sys.stderr)
        return 2
    from nnbench.bench.runner import benchmark
    from nnbench.machine import limit_threads

    limits = limit_threads(args.threads)
    try:
        result = benchmark(
            parse_sizes(args.model),
            batch_size=args.batch_size,
            backend=args.backend,
            dtype=args.dtype,
            optimizer=args.optimizer,
            lr=args.lr,
            samples=args.samples,
            min_sample_s=args.min_sample_s,
            floor=not args.no_floor,
            epoch_rows=args.epoch_rows,
        )
    except (ValueError, RuntimeError) as exc:
        print(f"nnbench.bench: {exc}", file=sys.stderr)
        return 2
    finally:
        if limits is not None:
            limits.restore_original_limits()
    print(json.dumps(result, indent=1, default=str))
    if args.track:
        from nnbench.bench.track import log_result
        from nnbench.errors import TrackingUnavailableError

        try:
            run_id = log_result(result, uri=args.tracking_uri, experiment=args.experiment)
        except TrackingUnavailableError as exc:
            print(f"nnbench.bench: {exc}", file=sys.stderr)
            return 2
        print(f"recorded: run {run_id} in experiment {args.experiment!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
