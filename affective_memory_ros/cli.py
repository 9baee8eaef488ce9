"""The ``affective-memory`` command line: a thin adapter over the ROS-free core."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _bench_memory(args: argparse.Namespace) -> int:
    from .memory import benchmark

    sizes = tuple(int(s) for s in args.sizes.split(","))
    print(json.dumps(benchmark.run(sizes=sizes, dim=args.dim, steps=args.steps), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affective-memory", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench-memory", help="time and size one affective memory (JSON)")
    bench.add_argument("--sizes", default="100,500,1000,2000,5000", help="comma-separated neuron counts")
    bench.add_argument("--dim", type=int, default=50)
    bench.add_argument("--steps", type=int, default=2000, help="learning steps timed per size")
    bench.set_defaults(func=_bench_memory)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
