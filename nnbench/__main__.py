"""``python -m nnbench`` and the ``nnbench`` command.

The tracking agent starts before anything else is imported, so that its own start-up
(MLflow, the store) runs on another core while this process composes the config and trains.
"""

import sys


def main() -> None:
    from nnbench.user_errors import reporting_interrupts

    with reporting_interrupts():
        from nnbench.tracking.agent_client import prestart_for

        prestart_for(sys.argv[1:])
        from nnbench.cli import main as cli_main

        cli_main()


if __name__ == "__main__":
    main()
