"""`occupancy_node` console entry: SIGINT / SIGTERM are caught before the node's heavy imports (torch),
so a signal during start-up ends the process cleanly too (exit code 0, no KeyboardInterrupt)."""

from __future__ import annotations

import sys
from typing import NoReturn

from gausstr_ros.shutdown import StopSignals


def main() -> NoReturn:
    with StopSignals() as stop:
        from gausstr_ros.node import run

        run(sys.argv, stop)


if __name__ == "__main__":
    main()
