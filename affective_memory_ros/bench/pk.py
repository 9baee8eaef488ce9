"""PK throughput: encoder faces/s at batch 1, 8 and 64, and training steps/s (JSON-ready)."""

from __future__ import annotations

import platform
import time
from typing import Any

import numpy as np
import torch

from ..encoders.pk import PKEncoder
from ..pk.data import CropSet
from ..pk.model import PKConfig
from ..pk.train import TrainConfig, Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def encoder_throughput(runtime: PKEncoder, batch: int, seconds: float = 2.0) -> float:
    crops = np.random.default_rng(0).integers(0, 256, (batch, 96, 96, 3), dtype=np.uint8)
    runtime.encode(crops)  # warm-up
    _sync(runtime.device)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        runtime.encode(crops)
        n += batch
    _sync(runtime.device)
    return round(n / (time.perf_counter() - start), 1)


def training_steps_per_second(device: str, width: int, batch: int = 48, steps: int = 5) -> float:
    rng = np.random.default_rng(0)
    data = CropSet(rng.integers(0, 256, (batch, 96, 96, 3), dtype=np.uint8),
                   rng.uniform(-1, 1, (batch, 2)).astype(np.float32), [str(i) for i in range(batch)], ["b"] * batch)
    trainer = Trainer(TrainConfig(model=PKConfig(width=width), device=device, batch_size=batch,
                                  out_dir="/tmp/affective_memory_bench"), data)
    x, y = next(trainer.batches(0))
    gen = torch.Generator().manual_seed(0)
    trainer.train_step(x, y, gen)  # warm-up
    _sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(x, y, gen)
    _sync(trainer.device)
    return round(steps / (time.perf_counter() - start), 3)


def run(model: str | None = None, devices: tuple[str, ...] = ("cpu",)) -> dict[str, Any]:
    report: dict[str, Any] = {
        "benchmark": "affective_memory.pk",
        "machine": {"cpu": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "encoder_faces_per_s": {}, "train_steps_per_s": {},
    }
    for device in devices:
        precisions = ("fp32", "fp16") if device == "cuda" else ("fp32",)
        for precision in precisions:
            runtime = PKEncoder(model, device, precision)
            report["model_width"] = runtime.model.cfg.width
            report["encoder_faces_per_s"][f"{device}/{precision}"] = {
                str(b): encoder_throughput(runtime, b) for b in (1, 8, 64)}
        for width in (32, 64):
            report["train_steps_per_s"][f"{device}/width{width}/batch48"] = training_steps_per_second(device, width)
    return report
