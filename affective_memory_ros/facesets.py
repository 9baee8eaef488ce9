"""Labelled face sets: faces cut exactly as the robot cuts them, with every label each one honestly offers,
split by the project's one split, and scored by any encoder. One implementation for every model (the PK,
the FaceChannel) and for ``affective-memory eval-faces``.

Sources read:

* a folder with ``labels.csv``: ``file`` and any of ``valence``, ``arousal`` (in [-1, 1], empty =
  unknown), ``label`` (an expression name, mapped by :func:`~affective_memory_ros.expressions.expression_index`)
  and ``identity`` (the person), like ``../shared/data/diffusionfer_s`` and ``london_frl``;
* AffectNet's own CSV (``subDirectory_filePath, face_x, face_y, face_width, face_height, ..., expression,
  valence, arousal``): faces cut at the given boxes, -2 marks a missing valence or arousal, expression
  codes 8-10 (none, uncertain, no face) no class;
* a folder of images or a video, unlabelled (real faces to reconstruct).

Every face is detected (BlazeFace short range on the image padded by half its size, unless a box is given),
aligned and cut to 96x96 by :func:`~affective_memory_ros.perception.align.crop_faces`, so a model trains and
is measured on exactly the crops it sees on the robot. Missing, unreadable and faceless files are skipped
and counted, never fatal.

The split key of a face (its *group*) is its person where ``identity`` is given, else its file (a video is
one group); :meth:`CropSet.split_mask` applies :mod:`affective_memory_ros.splits` per face.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .atomic_io import atomic_write_bytes, read_regular_file
from .encoders.base import Encoding, FaceEncoder
from .expressions import EXPRESSIONS, expression_index
from .metrics import av_metrics, class_metrics, pair_metrics, smile_pairs, valence_per_class
from .perception.align import CROP_SIZE, crop_faces
from .perception.detections import FaceDetections
from .splits import SALT, Split, bucket, split_of

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
AFFECTNET_MISSING = -2.0
#: AffectNet's expression codes 0-7 (8-10: none, uncertain, no face).
AFFECTNET_CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")
#: Largest labels.csv read.
MAX_LABELS_BYTES = 64 << 20
#: Bump when a cached face set's content changes meaning.
CACHE_VERSION = 2
DEFAULT_DETECTOR = "blazeface_short"


# ------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class FaceRecord:
    """One face before cropping. ``box`` (x, y, w, h) skips detection."""

    path: str
    valence: float = float("nan")
    arousal: float = float("nan")
    source: str = ""
    group: str = ""  # split key: identity where known, else the file
    box: tuple[float, float, float, float] | None = None
    label: str = ""  # expression label as written in the data (mapped by expressions.expression_index)
    identity: str = ""  # the person, where known
    file: str = ""  # the file as written in the data


@dataclass
class CropSet:
    """Aligned crops (N, 96, 96, 3) uint8 RGB and what is known of each face.

    ``labels`` (N, 2) = (arousal, valence), NaN where unknown; ``classes`` (N,) the index into
    :data:`~affective_memory_ros.expressions.EXPRESSIONS`, -1 where unknown; ``groups`` the split keys;
    ``identities`` the persons ("" where unknown); ``files`` the files as written in the data.
    """

    crops: np.ndarray
    labels: np.ndarray
    groups: list[str]
    sources: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    classes: np.ndarray | None = None
    identities: list[str] | None = None
    files: list[str] | None = None
    root: str = ""

    def __post_init__(self) -> None:
        n = len(self.crops)
        self.classes = np.full(n, -1, np.int64) if self.classes is None else \
            np.asarray(self.classes, np.int64).reshape(-1)
        self.identities = [""] * n if self.identities is None else list(self.identities)
        self.files = [""] * n if self.files is None else list(self.files)
        lengths = {len(self.labels), len(self.groups), len(self.sources), len(self.classes), len(self.identities),
                   len(self.files)}
        if lengths != {n}:
            raise ValueError(f"a CropSet of {n} crops with fields of lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    @property
    def labelled(self) -> np.ndarray:
        """Faces with both arousal and valence."""
        return np.isfinite(self.labels).all(axis=1)

    @property
    def has_identities(self) -> bool:
        return any(self.identities or ())

    def split_mask(self, part: Split) -> np.ndarray:
        """Faces in ``part`` of :mod:`affective_memory_ros.splits`: by person where the face has an identity
        (``val``/``tune``/``train``), else by its group (``val``/``train``)."""
        assert self.identities is not None
        return np.array([split_of(g, has_identities=bool(i)) == part
                         for g, i in zip(self.groups, self.identities, strict=True)], bool)

    def part(self, part: Split) -> CropSet:
        return self.subset(self.split_mask(part))

    def subset(self, mask: np.ndarray) -> CropSet:
        idx = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask, np.int64)
        assert self.classes is not None and self.identities is not None and self.files is not None
        return CropSet(self.crops[idx], self.labels[idx], [self.groups[i] for i in idx],
                       [self.sources[i] for i in idx], dict(self.skipped), self.classes[idx],
                       [self.identities[i] for i in idx], [self.files[i] for i in idx], self.root)

    @staticmethod
    def concat(parts: Sequence[CropSet]) -> CropSet:
        skipped: dict[str, int] = {}
        for p in parts:
            for k, v in p.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
        return CropSet(np.concatenate([p.crops for p in parts]), np.concatenate([p.labels for p in parts]),
                       [g for p in parts for g in p.groups], [s for p in parts for s in p.sources], skipped,
                       np.concatenate([np.asarray(p.classes, np.int64) for p in parts]),
                       [i for p in parts for i in (p.identities or ())], [f for p in parts for f in (p.files or ())],
                       ";".join(dict.fromkeys(p.root for p in parts if p.root)))


def read_labels_table(root: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of ``root/labels.csv`` (stripped text; a ``file`` column is required)."""
    path = Path(root) / "labels.csv"
    text = read_regular_file(path, MAX_LABELS_BYTES).decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "file" not in reader.fieldnames:
        raise ValueError(f"{path}: needs a 'file' column")
    return [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def read_labels_csv(root: str | os.PathLike[str], source: str | None = None) -> list[FaceRecord]:
    """``root/labels.csv`` as records. The group (the split key) is the identity where given, else the file."""
    base = Path(root)
    return [FaceRecord(str(base / row["file"]), _num(row.get("valence")), _num(row.get("arousal")),
                       source or base.name, row.get("identity") or row["file"], label=row.get("label", ""),
                       identity=row.get("identity", ""), file=row["file"]) for row in read_labels_table(base)]


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
            name = row["subDirectory_filePath"]
            records.append(FaceRecord(str(root / name), _affectnet_value(row["valence"]),
                                      _affectnet_value(row["arousal"]), "affectnet", name, box,  # type: ignore[arg-type]
                                      label=_affectnet_label(row.get("expression", "")), file=name))
    return records


def read_image_folder(folder: str | os.PathLike[str], source: str | None = None,
                      group_of: str = "file") -> list[FaceRecord]:
    """Unlabelled images; ``group_of='prefix'`` groups ``<id>_<anything>`` files by id (one person)."""
    base = Path(folder)
    files = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [FaceRecord(str(p), source=source or base.name,
                       group=p.stem.split("_")[0] if group_of == "prefix" else p.name,
                       file=str(p.relative_to(base))) for p in files]


def _num(value: str | None) -> float:
    try:
        v = float(value) if value not in (None, "") else float("nan")
    except ValueError:
        return float("nan")
    return v if -1.0 <= v <= 1.0 else float("nan")


def _affectnet_value(value: str) -> float:
    v = _num(value)
    return float("nan") if v == AFFECTNET_MISSING else v


def _affectnet_label(code: str) -> str:
    try:
        i = int(float(code))
    except ValueError:
        return ""
    return AFFECTNET_CLASSES[i] if 0 <= i < len(AFFECTNET_CLASSES) else ""


# ------------------------------------------------------------------------------------------ cropping
def crop_records(records: Sequence[FaceRecord], detector: object) -> CropSet:
    """Detect (unless a box is given), align and crop each record's face.

    Faces are detected on the image padded by half its size (replicated
    border), because tightly cropped dataset faces fill the frame and the
    detector expects some context.
    """
    crops, kept = [], []
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
            dets = _box_detection(*rec.box)
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
        kept.append(rec)
    return CropSet(np.stack(crops) if crops else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8),
                   np.array([(r.arousal, r.valence) for r in kept], np.float32).reshape(-1, 2),
                   [r.group for r in kept], [r.source for r in kept], skipped,
                   np.array([expression_index(r.label) for r in kept], np.int64),
                   [r.identity for r in kept], [r.file for r in kept])


def _box_detection(x: float, y: float, w: float, h: float) -> FaceDetections:
    # A face box without landmarks: keypoints at their typical frontal positions.
    from .perception.haar import _KEYPOINT_LAYOUT

    kp = np.array([x, y], np.float32) + _KEYPOINT_LAYOUT * np.array([w, h], np.float32)
    return FaceDetections(np.array([[x, y, x + w, y + h]], np.float32), np.ones(1, np.float32), kp[None])


def crop_video(path: str | os.PathLike[str], detector: object, every: int = 5, source: str | None = None) -> CropSet:
    """Unlabelled crops of the most confident face in every ``every``-th frame of a video (one group)."""
    from .video import video_frames

    crops = []
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
    n = len(crops)
    return CropSet(np.stack(crops) if crops else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8),
                   np.full((n, 2), np.nan, np.float32), [name] * n, [source or name] * n,
                   files=[name] * n, root=str(path))


# ------------------------------------------------------------------------------------------ files
def save_cropset(path: str | os.PathLike[str], data: CropSet) -> None:
    buffer = io.BytesIO()
    meta = {"groups": data.groups, "sources": data.sources, "skipped": data.skipped, "identities": data.identities,
            "files": data.files, "root": data.root}
    np.savez_compressed(buffer, crops=data.crops, labels=data.labels, classes=np.asarray(data.classes, np.int64),
                        meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    atomic_write_bytes(path, buffer.getvalue())


def load_cropset(path: str | os.PathLike[str]) -> CropSet:
    """A saved CropSet (files written before classes, identities or files existed give their defaults)."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["meta"].tobytes().decode())
        classes = f["classes"] if "classes" in f.files else None
        return CropSet(f["crops"], f["labels"], meta["groups"], meta["sources"], meta["skipped"], classes,
                       meta.get("identities"), meta.get("files"), meta.get("root", ""))


def load_labelled_folder(root: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = ".cache/faces",
                         detector_name: str = DEFAULT_DETECTOR) -> CropSet:
    """Every face listed in ``root/labels.csv``, cut as the robot cuts faces; cached in ``cache_dir`` by the
    content of labels.csv (and the folder and detector)."""
    base = Path(root)
    rows = read_labels_table(base)
    key = hashlib.sha1(json.dumps([CACHE_VERSION, detector_name, str(base.resolve()), rows]).encode()).hexdigest()
    cache = Path(cache_dir) / f"{base.name}-{key[:16]}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        data = load_cropset(cache)
    else:
        from .perception.detectors import make_detector

        data = crop_records(read_labels_csv(base), make_detector(detector_name))
        data.root = str(base)
        if cache is not None:
            save_cropset(cache, data)
    data.root = str(base)
    return data


def load_affectnet(csv_path: str | os.PathLike[str], image_root: str | os.PathLike[str],
                   cache_dir: str | os.PathLike[str] | None = ".cache/faces") -> CropSet:
    """AffectNet's own CSV (:func:`read_affectnet_csv`): faces cut at the given boxes; cached in ``cache_dir``
    by the CSV's path and size."""
    path = Path(csv_path)
    key = hashlib.sha1(json.dumps([CACHE_VERSION, str(path.resolve()), path.stat().st_size,
                                   str(Path(image_root).resolve())]).encode()).hexdigest()
    cache = Path(cache_dir) / f"affectnet-{key[:16]}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        data = load_cropset(cache)
    else:
        data = crop_records(read_affectnet_csv(path, image_root), None)
        if cache is not None:
            save_cropset(cache, data)
    data.root = str(path)
    return data


# ------------------------------------------------------------------------------------------ splits
def dev_fold_mask(groups: Sequence[str], fraction: float = 0.15) -> np.ndarray:
    """A second, independent held-out fold inside ``train`` (another salt over the same groups): faces for
    choosing a recipe's settings without touching ``tune`` or ``val``."""
    return np.array([bucket(g, SALT + ":dev") < fraction for g in groups], bool)


def training_part(folders: Sequence[CropSet], dev_fold: bool = False) -> CropSet:
    """The ``train`` part of every face set, as one (minus each one's dev fold with ``dev_fold``)."""
    parts = []
    for d in folders:
        mask = d.split_mask("train")
        if dev_fold:
            mask &= ~dev_fold_mask(d.groups)
        parts.append(d.subset(mask))
    return CropSet.concat(parts)


def person_pairs(data: CropSet) -> np.ndarray:
    """(P, 2) indices (neutral, smile) of the persons photographed neutral and smiling whose photos carry no
    arousal/valence number (London FRL's real pairs): :func:`~affective_memory_ros.metrics.smile_pairs` over
    the faces without A/V, persons by group."""
    classes = np.where(np.isfinite(data.labels).any(axis=1), -1, np.asarray(data.classes))
    return smile_pairs(data.groups, classes)


def class_valence(data: CropSet) -> dict[int, float]:
    """Mean valence per expression class of the faces that have both (class index -> valence)."""
    assert data.classes is not None
    ok = np.isfinite(data.labels[:, 1]) & (data.classes >= 0)
    return {int(c): float(data.labels[ok & (data.classes == c), 1].mean()) for c in np.unique(data.classes[ok])}


# ------------------------------------------------------------------------------------------ evaluation
#: An encoder to evaluate: a :class:`~affective_memory_ros.encoders.base.FaceEncoder` or any callable
#: ``uint8 RGB crops -> Encoding`` (a baseline without A/V gives NaN there).
EncoderLike = FaceEncoder | Callable[[np.ndarray], Encoding]


def encode_all(encoder: EncoderLike, crops: np.ndarray, batch: int = 64) -> Encoding:
    """One :class:`Encoding` of every crop, in batches."""
    fn = encoder.encode if isinstance(encoder, FaceEncoder) else encoder
    parts = [fn(crops[i:i + batch]) for i in range(0, len(crops), batch)]
    if not parts:
        return Encoding(np.zeros((0, 0), np.float32), np.zeros((0, 2), np.float32),
                        np.zeros((0, len(EXPRESSIONS)), np.float32))
    return Encoding(np.concatenate([p.code for p in parts]), np.concatenate([p.av for p in parts]),
                    np.concatenate([p.probs for p in parts]))


def score_faces(data: CropSet, out: Encoding) -> dict[str, Any]:
    """Every measure the faces allow (:mod:`affective_memory_ros.metrics`): CCC/RMSE where A/V exist;
    accuracy, macro-F1 and the mean valence per class where labels exist; the smile-vs-neutral measures for
    persons photographed neutral and smiling."""
    assert data.classes is not None and data.identities is not None
    m: dict[str, Any] = {}
    has_pred_av = len(out) > 0 and bool(np.isfinite(out.av).all())
    if has_pred_av and data.labelled.any():
        m.update(av_metrics(out.av, data.labels))
    if (data.classes >= 0).any():
        m.update(class_metrics(out.probs, data.classes))
        if has_pred_av:
            m["valence_per_class"] = valence_per_class(out.av[:, 1], data.classes)
    pairs = smile_pairs(data.identities, data.classes)
    if len(pairs):
        m.update(pair_metrics(out.av[:, 1], out.probs, pairs))
    return m


def evaluate_faces(data: CropSet, encoders: dict[str, EncoderLike], name: str = "") -> dict[str, Any]:
    """One face set's entry: its size and every encoder's :func:`score_faces` (and seconds to encode)."""
    entry: dict[str, Any] = {"folder": name or Path(data.root.split(";")[0]).name, "faces": len(data),
                             "skipped": dict(data.skipped), "encoders": {}}
    if data.has_identities:
        entry["people"] = len({i for i in data.identities or () if i})
    for enc_name, enc in encoders.items():
        started = time.perf_counter()
        out = encode_all(enc, data.crops)
        entry["encoders"][enc_name] = {"seconds": round(time.perf_counter() - started, 3), **score_faces(data, out)}
    return entry


def evaluate_folders(labels_dirs: Sequence[str | os.PathLike[str]], encoders: dict[str, EncoderLike],
                     parts: Sequence[Split] | None = ("val",),
                     cache_dir: str | os.PathLike[str] | None = ".cache/faces") -> dict[str, Any]:
    """Every folder's ``parts`` of the split, each part separately (``parts=None``: every image, unsplit)."""
    entries = []
    for d in labels_dirs:
        data = load_labelled_folder(d, cache_dir)
        if parts is None:
            entries.append({**evaluate_faces(data, encoders, Path(d).name), "split": "all"})
            continue
        for part in parts:
            if part == "tune" and not data.has_identities:
                continue  # only folders with identities have a tune part
            entries.append({**evaluate_faces(data.part(part), encoders, Path(d).name), "split": part})
    return {"split": "all" if parts is None else list(parts), "folders": entries}

