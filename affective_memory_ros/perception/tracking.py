"""Stable person IDs: ByteTrack for frame-to-frame continuity, plus a small
appearance gallery so a person who leaves and comes back gets their ID back.

* ByteTrack (the ``trackers`` package, Apache-2.0) links boxes across frames.
* When ByteTrack starts a new track, the face's appearance embedding is
  compared (cosine similarity) with the gallery's mean embedding of every known
  person who is not in view in this frame. At or above ``reid_threshold`` the
  track takes that person's ID; otherwise a new person is created.
* Two faces of one frame never share a person ID.
* The gallery is bounded (``max_persons``, least recently seen evicted), and
  so is the track table.

Person IDs are REP-155 style: a letter followed by lowercase letters and
digits, safe as file names (see :func:`is_valid_person_id`).
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .detections import FaceDetections

PERSON_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: Cosine similarity between a new face's embedding and a known person's mean
#: embedding above which the face is that person (see docs/perception.md).
DEFAULT_REID_THRESHOLD = 0.45

Embedder = Callable[[np.ndarray], np.ndarray]


def is_valid_person_id(person_id: object) -> bool:
    """True for IDs this package creates or accepts: ``[a-z][a-z0-9_]{0,62}``."""
    return isinstance(person_id, str) and PERSON_ID_PATTERN.fullmatch(person_id) is not None


def thumbnail_embedding(crops: np.ndarray, size: int = 24) -> np.ndarray:
    """Appearance embedding of aligned face crops: the mean-removed, L2-normalised
    grey thumbnail. Cheap (~0.05 ms per face) and expression-tolerant at this
    resolution; it tells people apart under similar lighting, which is what
    re-identification within one session needs. Not a face-recognition model.
    """
    if len(crops) == 0:
        return np.zeros((0, size * size), np.float32)
    grey = np.stack([
        cv2.resize(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA) for c in crops
    ]).reshape(len(crops), -1).astype(np.float32)
    grey -= grey.mean(axis=1, keepdims=True)
    return grey / np.maximum(np.linalg.norm(grey, axis=1, keepdims=True), 1e-6)


@dataclass
class _Person:
    embedding: np.ndarray
    last_seen: float


class PersonTracker:
    """Assigns a stable person ID to every face of every frame."""

    def __init__(self, *, frame_rate: float = 30.0, lost_track_buffer: int = 30,
                 reid_threshold: float = DEFAULT_REID_THRESHOLD, max_persons: int = 256,
                 embedder: Embedder = thumbnail_embedding, embedding_momentum: float = 0.1,
                 seed: int | None = None) -> None:
        from trackers import ByteTrackTracker

        if not 0.0 <= reid_threshold <= 1.0:
            raise ValueError(f"reid_threshold={reid_threshold!r} must be in [0, 1]")
        self._bytetrack = ByteTrackTracker(lost_track_buffer=lost_track_buffer, frame_rate=frame_rate,
                                           track_activation_threshold=0.0, minimum_consecutive_frames=1,
                                           minimum_iou_threshold=0.1, high_conf_det_threshold=0.5)
        self.reid_threshold = reid_threshold
        self.max_persons = max_persons
        self.embedder = embedder
        self.momentum = embedding_momentum
        self._rng = np.random.default_rng(seed)
        self._persons: OrderedDict[str, _Person] = OrderedDict()  # least recently seen first
        self._track_person: OrderedDict[int, str] = OrderedDict()
        self._max_tracks = 4 * max_persons

    @property
    def known_persons(self) -> list[str]:
        return list(self._persons)

    def forget(self, person_id: str) -> None:
        """Drop a person from the gallery (their next appearance gets a new ID)."""
        self._persons.pop(person_id, None)
        for track, pid in list(self._track_person.items()):
            if pid == person_id:
                del self._track_person[track]

    def update(self, detections: FaceDetections, crops: np.ndarray, timestamp: float) -> list[str]:
        """Person ID per detection, in detection order."""
        import supervision as sv

        n = len(detections)
        sv_dets = sv.Detections(xyxy=detections.boxes.astype(np.float32).reshape(-1, 4),
                                confidence=detections.scores.astype(np.float32),
                                data={"index": np.arange(n)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracked = self._bytetrack.update(sv_dets, timestamp=timestamp)
        track_of = [-1] * n
        if n and len(tracked):
            for index, tid in zip(tracked.data["index"].tolist(), tracked.tracker_id.tolist(), strict=True):
                track_of[index] = int(tid)

        embeddings = self.embedder(crops) if n else np.zeros((0, 1), np.float32)
        in_frame: set[str] = set()
        result: list[str] = [""] * n
        # Known tracks first, so their persons are taken before new tracks are matched.
        order = sorted(range(n), key=lambda i: track_of[i] not in self._track_person)
        for i in order:
            tid = track_of[i]
            pid = self._track_person.get(tid) if tid >= 0 else None
            if pid is None or pid in in_frame or pid not in self._persons:
                # A new track, or one ByteTrack has not confirmed yet (-1): re-identify.
                pid = self._match_or_create(embeddings[i], in_frame)
            if tid >= 0:
                self._track_person[tid] = pid
                self._track_person.move_to_end(tid)
            in_frame.add(pid)
            person = self._persons[pid]
            mixed = (1 - self.momentum) * person.embedding + self.momentum * embeddings[i]
            person.embedding = mixed / max(float(np.linalg.norm(mixed)), 1e-6)
            person.last_seen = timestamp
            self._persons.move_to_end(pid)
            result[i] = pid
        while len(self._track_person) > self._max_tracks:
            self._track_person.popitem(last=False)
        return result

    def _match_or_create(self, embedding: np.ndarray, taken: set[str]) -> str:
        candidates = [pid for pid in self._persons if pid not in taken]
        if candidates:
            gallery = np.stack([self._persons[pid].embedding for pid in candidates])
            sims = gallery @ embedding
            best = int(np.argmax(sims))
            if sims[best] >= self.reid_threshold:
                return candidates[best]
        pid = self._new_id()
        self._persons[pid] = _Person(embedding.copy(), 0.0)
        while len(self._persons) > self.max_persons:
            self._persons.popitem(last=False)
        return pid

    def _new_id(self) -> str:
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        while True:
            pid = "".join(self._rng.choice(letters, 5))
            if pid not in self._persons:
                return pid
