"""Speed and size of one affective memory, as JSON-ready numbers.

Measured, never asserted: tests check behaviour, this reports cost. The
networks are built directly at the target size (ring-lattice edges, degree 4)
so that every size is measured under the same conditions.
"""

from __future__ import annotations

import dataclasses
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..memory.config import GWRConfig
from ..memory.gwr import GrowingWhenRequired
from ..memory.persistence import save_memory


def build_network(n: int, config: GWRConfig, seed: int = 0) -> GrowingWhenRequired:
    rng = np.random.default_rng(seed)
    neighbors = np.full((n, config.max_degree), -1, np.int32)
    for offset, slot in ((1, 0), (-1, 1), (2, 2), (-2, 3)):
        neighbors[:, slot] = (np.arange(n) + offset) % n
    arrays = {
        "weights": rng.uniform(-1, 1, (n, config.dim)).astype(np.float32),
        "habituation": rng.uniform(0.05, 1.0, n),
        "labels": rng.uniform(-1, 1, (n, config.label_dim)).astype(np.float32),
        "neighbors": neighbors,
        "edge_ages": np.zeros((n, config.max_degree), np.int32),
        "born": np.arange(n, dtype=np.int64),
    }
    counters = {"steps": n, "labelled_steps": n, "insertions": n - 2, "removals": 0}
    return GrowingWhenRequired.from_state(config, arrays, counters)


def _median_us(samples_ns: list[int]) -> float:
    return round(float(np.median(samples_ns)) / 1e3, 2)


def time_steps(n: int, dim: int = 50, steps: int = 2000, seed: int = 0) -> dict[str, float]:
    """Median microseconds of an ordinary learning step and of an insertion step at size n."""
    rng = np.random.default_rng(seed)
    # Ordinary steps: inputs near existing prototypes, activity threshold 0 (never inserts).
    config = GWRConfig(dim=dim, activity_threshold=0.0, max_neurons=max(n, 2) * 2, max_age=10**6)
    net = build_network(n, config, seed)
    xs = (net.weights[rng.integers(0, n, steps)] + rng.normal(0, 0.05, (steps, dim))).astype(np.float32)
    ys = rng.uniform(-1, 1, (steps, 2)).astype(np.float32)
    step_ns = []
    for x, y in zip(xs, ys, strict=True):
        t0 = time.perf_counter_ns()
        net.learn(x, y)
        step_ns.append(time.perf_counter_ns() - t0)
    # Insertion steps: every step inserts (a < 1 always, habituation condition off).
    ins_steps = min(steps, 500)
    ins_config = dataclasses.replace(config, activity_threshold=1.0, habituation_threshold=1.5,
                                     max_neurons=n + ins_steps + 2)
    net = build_network(n, ins_config, seed)
    far = rng.uniform(-3, 3, (ins_steps, dim)).astype(np.float32)
    ins_ns = []
    for x in far:
        t0 = time.perf_counter_ns()
        net.learn(x)
        ins_ns.append(time.perf_counter_ns() - t0)
    return {"step_us_median": _median_us(step_ns), "step_us_p90": round(float(np.percentile(step_ns, 90)) / 1e3, 2),
            "insertion_us_median": _median_us(ins_ns)}


def run(sizes: tuple[int, ...] = (100, 500, 1000, 2000, 5000), dim: int = 50, steps: int = 2000) -> dict[str, Any]:
    config = GWRConfig(dim=dim, max_neurons=2000)
    net = build_network(2000, config)
    with tempfile.TemporaryDirectory() as tmp:
        file_bytes = save_memory(net, Path(tmp) / "m.safetensors").stat().st_size
    return {
        "benchmark": "affective_memory.gwr",
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "numpy": np.__version__},
        "dim": dim,
        "state_bytes_at_2000": net.nbytes(),
        "file_bytes_at_2000": file_bytes,
        "scaling": {str(n): time_steps(n, dim, steps) for n in sizes},
        "reference_gwr_tb_at_2000": {"step_ms": "7-11", "insertion_ms": "22-42", "state_bytes": 65_000_000},
    }
