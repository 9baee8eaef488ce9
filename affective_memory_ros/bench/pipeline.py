"""End-to-end cost of the pipeline on a real clip, seeding and steady state apart (``affective-memory bench``)."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..modes import MemorySettings
from ..pipeline import AffectPipeline, PipelineConfig
from ..video import read_video


def run(video: Path, config: PipelineConfig, memory: MemorySettings | None = None, frames: int = 200,
        replicate: int = 1) -> dict[str, Any]:
    """Frames per second and per-stage milliseconds; ``replicate`` tiles the frame
    side by side to put that many faces in each frame."""
    t0 = time.perf_counter()
    clip = read_video(video, max_frames=frames)
    decode_ms = (time.perf_counter() - t0) / max(len(clip), 1) * 1e3
    if replicate > 1:
        clip = [np.concatenate([f] * replicate, axis=1) for f in clip]
    AffectPipeline(config, memory).process(clip[0], 0.0)  # warm-up: kernels, allocator
    pipeline = AffectPipeline(config, memory)
    seeding, steady = [], []
    stages: dict[str, list[float]] = {k: [] for k in ("detect", "crop", "track", "encode", "seed", "memory")}
    for i, frame in enumerate(clip):
        t = time.perf_counter()
        estimates = pipeline.process(frame, i / 25)
        if pipeline.encoder.device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        (seeding if any(e.seeding for e in estimates) else steady).append(dt)
        if not any(e.seeding for e in estimates):
            for k in stages:
                stages[k].append(getattr(pipeline.times, k))

    def fps(xs: list[float]) -> float | None:
        return round(len(xs) / sum(xs), 1) if xs else None

    return {
        "benchmark": "affective_memory.pipeline", "video": video.name, "frames": len(clip),
        "faces_per_frame": replicate, "frame_size": list(clip[0].shape[1::-1]),
        "device": str(pipeline.encoder.device), "precision": config.precision, "detector": config.detector,
        "encoder": config.encoder, "memory_mode": pipeline.memory_settings.memory_mode,
        "machine": {"cpu": platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "seeding_frames": len(seeding), "seeding_fps": fps(seeding),
        "steady_frames": len(steady), "steady_fps": fps(steady),
        "steady_stage_ms_median": {"decode": round(decode_ms, 3),
                                   **{k: round(float(np.median(v)) * 1e3, 3) if v else None
                                      for k, v in stages.items()}},
    }
