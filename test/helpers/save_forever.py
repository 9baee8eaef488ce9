"""Child process for the crash test: the store writes version after version of one person's
file, printing each version once its write has returned (the version is the person's frame count)."""

from __future__ import annotations

import sys

import numpy as np

from affective_memory_ros.modes import MemorySettings, make_memory
from affective_memory_ros.person import Person, snapshot
from affective_memory_ros.store import PersonStore


def main() -> int:
    store_dir, start = sys.argv[1], int(sys.argv[2])
    store = PersonStore(store_dir, code_dim=50, encoder="pk")
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(4000, 50)).astype(np.float32)
    labels = rng.uniform(-1, 1, (4000, 2)).astype(np.float32)
    version = start
    while True:
        n = 50 + version % 400
        memory = make_memory(MemorySettings(init_frames=1, edits_per_frame=n, distance_scale=3.0), 50)
        memory.seed(samples[:n], labels[:n])
        store.write(snapshot(Person("ydsgt", memory, "pk", frames_seen=version), None))
        print(version, flush=True)
        version += 1


if __name__ == "__main__":
    raise SystemExit(main())
