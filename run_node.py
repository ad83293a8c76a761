"""The node's launcher. Until the actor node lands (issue 3), it runs the simulator."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from bench import simulate

    return simulate.main(argv, prog="run_node.py")


if __name__ == "__main__":
    sys.exit(main())
