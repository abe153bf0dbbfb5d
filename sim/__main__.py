"""``python -m sim --port 8090 --seed 1 --profile fast``: the simulator without the CLI."""

from __future__ import annotations

import argparse

from sim.config import PROFILES
from sim.server import run_sim


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="realistic", choices=sorted(PROFILES))
    args = parser.parse_args(argv)
    run_sim(port=args.port, host=args.host, seed=args.seed, profile=args.profile)


if __name__ == "__main__":
    main()
