"""The ``affective-memory`` command line: a thin adapter over the ROS-free core."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _bench_memory(args: argparse.Namespace) -> int:
    from .memory import benchmark

    sizes = tuple(int(s) for s in args.sizes.split(","))
    print(json.dumps(benchmark.run(sizes=sizes, dim=args.dim, steps=args.steps), indent=2))
    return 0


def _bench_perception(args: argparse.Namespace) -> int:
    import torch

    from .perception import benchmark

    devices = ("cpu", "cuda") if torch.cuda.is_available() and args.device == "auto" else (
        ("cpu",) if args.device == "auto" else (args.device,))
    print(json.dumps(benchmark.run(Path(args.video), devices, frames=args.frames), indent=2))
    return 0


def _media(name: str) -> str:
    return str(Path(os.environ.get("AFFECTIVE_MEMORY_MEDIA", ".cache/media")) / name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affective-memory", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench-memory", help="time and size one affective memory (JSON)")
    bench.add_argument("--sizes", default="100,500,1000,2000,5000", help="comma-separated neuron counts")
    bench.add_argument("--dim", type=int, default=50)
    bench.add_argument("--steps", type=int, default=2000, help="learning steps timed per size")
    bench.set_defaults(func=_bench_memory)
    perc = sub.add_parser("bench-perception", help="time detection, cropping and tracking per frame (JSON)")
    perc.add_argument("--video", default=_media("WolfgangLanger_Pexels.mp4"))
    perc.add_argument("--frames", type=int, default=120)
    perc.add_argument("--device", default="auto", help="auto (CPU, and CUDA when present), cpu or cuda")
    perc.set_defaults(func=_bench_perception)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
