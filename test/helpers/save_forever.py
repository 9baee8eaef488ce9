"""Child process for the crash test: saves version after version of one memory
to the same file, printing each version once its save has returned."""

from __future__ import annotations

import sys

import numpy as np

from affective_memory_ros.memory import GrowingWhenRequired, GWRConfig, save_memory


def main() -> int:
    path, start = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(4000, 50)).astype(np.float32)
    version = start
    while True:
        net = GrowingWhenRequired(GWRConfig(distance_scale=3.0))
        net.learn_batch(samples[: 50 + version % 400])
        save_memory(net, path, extra={"version": str(version)})
        print(version, flush=True)
        version += 1


if __name__ == "__main__":
    raise SystemExit(main())
