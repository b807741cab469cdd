"""Which kernels serve the NumPy backend here, and building them for another machine.

    python -m nnbench.backend                         # "on (<compiler>)" or "off: <why>"
    python -m nnbench.backend --build-kernels FOLDER  # FOLDER/nnbench-native.so

The built library serves a machine without a C compiler through
``NNBENCH_NATIVE_LIBRARY=FOLDER/nnbench-native.so`` (see `nnbench.backend._native`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnbench.backend import _native


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnbench.backend", description=__doc__)
    parser.add_argument(
        "--build-kernels",
        type=Path,
        metavar="FOLDER",
        help=f"compile the CPU kernels into FOLDER/{_native.LIBRARY_NAME}",
    )
    args = parser.parse_args(argv)
    if args.build_kernels is None:
        print(f"CPU kernels: {_native.status()}")
        return 0
    try:
        print(_native.build(args.build_kernels))
    except (RuntimeError, OSError) as exc:
        print(f"nnbench: cannot build the CPU kernels: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
