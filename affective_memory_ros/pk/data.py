"""Training data for the PK model: labelled and unlabelled faces as aligned crops.

Three input layouts are read:

* a simple ``labels.csv`` next to the images (``file, valence, arousal`` and
  any other columns), like ``shared/data/diffusionfer_s``;
* AffectNet's own CSV (``subDirectory_filePath, face_x, face_y, face_width,
  face_height, facial_landmarks, expression, valence, arousal``), where -2
  marks a missing valence or arousal;
* a folder of images or a video, unlabelled (real faces to reconstruct).

Every face is cut by the package's own aligner (:func:`~affective_memory_ros.perception.align.crop_faces`),
so the model trains on exactly the crops it sees on the robot. Missing or
unreadable files are skipped and counted, never fatal.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..atomic_io import atomic_write_bytes
from ..perception.align import CROP_SIZE, crop_faces
from ..perception.detections import FaceDetections

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
AFFECTNET_MISSING = -2.0


@dataclass(frozen=True)
class FaceRecord:
    """One training face before cropping. ``box`` (x, y, w, h) skips detection."""

    path: str
    valence: float = float("nan")
    arousal: float = float("nan")
    source: str = ""
    group: str = ""  # split key: identity where known, else the file
    box: tuple[float, float, float, float] | None = None


@dataclass
class CropSet:
    """Aligned crops (N, 96, 96, 3) uint8 RGB and labels (N, 2) = (arousal, valence), NaN if unknown."""

    crops: np.ndarray
    labels: np.ndarray
    groups: list[str]
    sources: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    @property
    def labelled(self) -> np.ndarray:
        return np.isfinite(self.labels).all(axis=1)

    def subset(self, mask: np.ndarray) -> CropSet:
        idx = np.flatnonzero(mask)
        return CropSet(self.crops[idx], self.labels[idx], [self.groups[i] for i in idx],
                       [self.sources[i] for i in idx], dict(self.skipped))

    @staticmethod
    def concat(parts: list[CropSet]) -> CropSet:
        skipped: dict[str, int] = {}
        for p in parts:
            for k, v in p.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
        return CropSet(np.concatenate([p.crops for p in parts]), np.concatenate([p.labels for p in parts]),
                       [g for p in parts for g in p.groups], [s for p in parts for s in p.sources], skipped)


def read_labels_csv(root: str | os.PathLike[str], source: str | None = None) -> list[FaceRecord]:
    """``root/labels.csv`` with at least ``file``; ``valence``/``arousal`` optional (empty = unknown)."""
    base = Path(root)
    csv_path = base / "labels.csv"
    records = []
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "file" not in reader.fieldnames:
            raise ValueError(f"{csv_path}: needs a 'file' column")
        for row in reader:
            records.append(FaceRecord(str(base / row["file"]), _num(row.get("valence")), _num(row.get("arousal")),
                                      source or base.name, row.get("identity") or row["file"]))
    return records


def read_affectnet_csv(csv_path: str | os.PathLike[str], image_root: str | os.PathLike[str]) -> list[FaceRecord]:
    """AffectNet's training/validation CSV. -2 (or anything outside [-1, 1]) means unknown."""
    root = Path(image_root)
    records = []
    with Path(csv_path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        required = {"subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "valence", "arousal"}
        if reader.fieldnames is None or not required <= set(reader.fieldnames):
            raise ValueError(f"{csv_path}: not an AffectNet CSV (needs {sorted(required)})")
        for row in reader:
            box = tuple(float(row[k]) for k in ("face_x", "face_y", "face_width", "face_height"))
            records.append(FaceRecord(str(root / row["subDirectory_filePath"]), _affectnet_value(row["valence"]),
                                      _affectnet_value(row["arousal"]), "affectnet", row["subDirectory_filePath"],
                                      box))  # type: ignore[arg-type]
    return records


def read_image_folder(folder: str | os.PathLike[str], source: str | None = None,
                      group_of: str = "file") -> list[FaceRecord]:
    """Unlabelled images; ``group_of='prefix'`` groups ``<id>_<anything>`` files by id (one person)."""
    base = Path(folder)
    files = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [FaceRecord(str(p), source=source or base.name,
                       group=p.stem.split("_")[0] if group_of == "prefix" else p.name) for p in files]


def _num(value: str | None) -> float:
    try:
        v = float(value) if value not in (None, "") else float("nan")
    except ValueError:
        return float("nan")
    return v if -1.0 <= v <= 1.0 else float("nan")


def _affectnet_value(value: str) -> float:
    v = _num(value)
    return float("nan") if v == AFFECTNET_MISSING else v


def crop_records(records: list[FaceRecord], detector: object) -> CropSet:
    """Detect (unless a box is given), align and crop each record's face.

    Faces are detected on the image padded by half its size (replicated
    border), because tightly cropped dataset faces fill the frame and the
    detector expects some context.
    """
    crops, labels, groups, sources = [], [], [], []
    skipped = {"missing": 0, "unreadable": 0, "no_face": 0}
    for rec in records:
        if not Path(rec.path).is_file():
            skipped["missing"] += 1
            continue
        bgr = cv2.imread(rec.path, cv2.IMREAD_COLOR)
        if bgr is None:
            skipped["unreadable"] += 1
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if rec.box is not None:
            x, y, w, h = rec.box
            dets = _box_detection(x, y, w, h)
            image = rgb
        else:
            pad = max(rgb.shape[:2]) // 2
            image = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            found = detector([image])[0]  # type: ignore[operator]
            if len(found) == 0:
                skipped["no_face"] += 1
                continue
            best = int(np.argmax(found.scores))
            dets = FaceDetections(found.boxes[best:best + 1], found.scores[best:best + 1],
                                  found.keypoints[best:best + 1])
        crops.append(crop_faces(image, dets)[0])
        labels.append((rec.arousal, rec.valence))
        groups.append(rec.group)
        sources.append(rec.source)
    return CropSet(np.stack(crops) if crops else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8),
                   np.array(labels, np.float32).reshape(-1, 2), groups, sources, skipped)


def _box_detection(x: float, y: float, w: float, h: float) -> FaceDetections:
    # A face box without landmarks: keypoints at their typical frontal positions.
    from ..perception.haar import _KEYPOINT_LAYOUT

    kp = np.array([x, y], np.float32) + _KEYPOINT_LAYOUT * np.array([w, h], np.float32)
    return FaceDetections(np.array([[x, y, x + w, y + h]], np.float32), np.ones(1, np.float32), kp[None])


def held_out(groups: list[str], fraction: float = 0.15, salt: str = "affective_memory_ros") -> np.ndarray:
    """Deterministic held-out mask by hashing each group: stable across runs,
    machines and data order, and one person never straddles the split."""
    def bucket(g: str) -> float:
        return int(hashlib.sha1(f"{salt}:{g}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return np.array([bucket(g) < fraction for g in groups], bool)


def save_cropset(path: str | os.PathLike[str], data: CropSet) -> None:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, crops=data.crops, labels=data.labels,
                        meta=np.frombuffer(json.dumps({"groups": data.groups, "sources": data.sources,
                                                       "skipped": data.skipped}).encode(), np.uint8))
    atomic_write_bytes(path, buffer.getvalue())


def load_cropset(path: str | os.PathLike[str]) -> CropSet:
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["meta"].tobytes().decode())
        return CropSet(f["crops"], f["labels"], meta["groups"], meta["sources"], meta["skipped"])


def crop_video(path: str | os.PathLike[str], detector: object, every: int = 5, source: str | None = None) -> CropSet:
    """Unlabelled crops of the most confident face in every ``every``-th frame of a video."""
    from ..video import video_frames

    crops, groups = [], []
    name = Path(path).name
    for i, (_, frame) in enumerate(video_frames(path)):
        if i % every:
            continue
        dets = detector([frame])[0]  # type: ignore[operator]
        if len(dets) == 0:
            continue
        best = int(np.argmax(dets.scores))
        crops.append(crop_faces(frame, FaceDetections(dets.boxes[best:best + 1], dets.scores[best:best + 1],
                                                      dets.keypoints[best:best + 1]))[0])
        groups.append(name)  # one video, one group: never split across train/val
    n = len(crops)
    return CropSet(np.stack(crops) if crops else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8),
                   np.full((n, 2), np.nan, np.float32), groups, [source or name] * n)


def build_dataset(*, labels_csv: list[str], affectnet: list[tuple[str, str]], unlabelled: list[str],
                  videos: list[str], detector: object, cache_dir: str | os.PathLike[str] | None = None) -> CropSet:
    """All sources as one CropSet, cached by a hash of the source list and file sizes/mtimes."""
    records: list[FaceRecord] = []
    for root in labels_csv:
        records += read_labels_csv(root)
    for csv_path, image_root in affectnet:
        records += read_affectnet_csv(csv_path, image_root)
    for folder in unlabelled:
        records += read_image_folder(folder, group_of="prefix")
    key = hashlib.sha1(json.dumps({"records": [(r.path, r.valence, r.arousal, r.group) for r in records],
                                   "videos": [(v, os.path.getsize(v)) for v in videos],
                                   "crop": CROP_SIZE}, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"crops-{key}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        return load_cropset(cache)
    parts = [crop_records(records, detector)] + [crop_video(v, detector) for v in videos]
    data = CropSet.concat(parts)
    if cache is not None:
        save_cropset(cache, data)
    return data
