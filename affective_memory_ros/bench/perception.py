"""Per-stage cost of perception on real frames, as JSON-ready numbers."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..perception.align import crop_faces
from ..perception.appearance import Gallery, appearance_embedding
from ..perception.detectors import DETECTORS, make_detector
from ..perception.region_tracking import RegionTrackingDetector
from ..perception.tracking import PersonTracker
from ..person import new_person_id
from ..video import letterbox, read_video


def _median_ms(samples: list[float]) -> float:
    return round(float(np.median(samples)) * 1e3, 3)


def run(video: Path, devices: tuple[str, ...], frames: int = 120, size: tuple[int, int] = (640, 480)) -> dict[str, Any]:
    clip = [letterbox(f, size) for f in read_video(video, max_frames=frames)]
    report: dict[str, Any] = {
        "benchmark": "affective_memory.perception",
        "video": video.name, "frame_size": list(size), "frames": len(clip),
        "machine": {"cpu": platform.machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "results": {},
    }
    for device in devices:
        for name in DETECTORS:
            if name == "haar" and device != "cpu":
                continue
            detector = make_detector(name, device)
            gallery = Gallery()
            tracker = PersonTracker(gallery, lambda g=gallery: new_person_id(lambda pid: pid in g))
            detector(clip[:3])  # warm-up
            if isinstance(detector, RegionTrackingDetector):
                detector.reset()
                detector.searches = 0
            det_t, trk_t, crop_t, faces = [], [], [], 0
            for i, frame in enumerate(clip):
                t0 = time.perf_counter()
                dets = detector([frame])[0]
                _sync(device)
                t1 = time.perf_counter()
                crops = crop_faces(frame, dets)
                t2 = time.perf_counter()
                tracker.update(dets, appearance_embedding(crops), i / 30)
                t3 = time.perf_counter()
                det_t.append(t1 - t0)
                crop_t.append(t2 - t1)
                trk_t.append(t3 - t2)
                faces += len(dets)
            total = [a + b + c for a, b, c in zip(det_t, crop_t, trk_t, strict=True)]
            entry: dict[str, Any] = {
                "detect_ms_median": _median_ms(det_t), "crop_ms_median": _median_ms(crop_t),
                "track_ms_median": _median_ms(trk_t), "total_ms_median": _median_ms(total),
                "total_ms_p90": round(float(np.percentile(total, 90)) * 1e3, 3),
                "faces_per_frame": round(faces / len(clip), 3),
            }
            if isinstance(detector, RegionTrackingDetector):
                entry["search_frames"] = detector.searches  # frames that ran the full-range pass too
            elif name != "haar":  # batching concerns stateless detectors
                batch = np.stack(clip[:8])
                detector(batch)
                _sync(device)
                t0 = time.perf_counter()
                reps = 5
                for _ in range(reps):
                    found = sum(len(d) for d in detector(batch))
                _sync(device)
                entry["batch8_faces_per_s"] = round(found * reps / (time.perf_counter() - t0), 1)
                entry["batch8_frames_per_s"] = round(8 * reps / (time.perf_counter() - t0), 1)
            report["results"][f"{name}@{device}"] = entry
    return report


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
