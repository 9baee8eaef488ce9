"""Training data for the PK model: the sources of ``affective-memory train`` as one set of aligned crops.

The face sets themselves (records, cropping, caching, the split, the real
pairs) are :mod:`affective_memory_ros.facesets`, shared with the FaceChannel
and ``eval-faces``; their names are re-exported here for the PK's callers.
This module adds what only the PK's command line uses: every source in one
cached :class:`CropSet` (:func:`build_dataset`) and its original 15 % hold-out
(:func:`held_out`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..facesets import (
    CropSet,
    FaceRecord,
    crop_records,
    crop_video,
    load_cropset,
    person_pairs,
    read_affectnet_csv,
    read_image_folder,
    read_labels_csv,
    save_cropset,
)
from ..perception.align import CROP_SIZE
from ..splits import bucket

__all__ = ["CropSet", "FaceRecord", "build_dataset", "crop_records", "crop_video", "held_out", "load_cropset",
           "person_pairs", "read_affectnet_csv", "read_image_folder", "read_labels_csv", "save_cropset"]


def held_out(groups: list[str], fraction: float = 0.15, salt: str = "affective_memory_ros") -> np.ndarray:
    """Deterministic held-out mask by hashing each group: stable across runs,
    machines and data order, and one person never straddles the split."""
    return np.array([bucket(g, salt) < fraction for g in groups], bool)


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
    key = hashlib.sha1(json.dumps({"records": [(r.path, r.valence, r.arousal, r.group, r.label, r.identity)
                                               for r in records],
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
