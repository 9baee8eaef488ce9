"""ROS4HRI (REP-155): expression output beside ``affect/av``, and faces from a ROS4HRI pipeline as input.

REP-155 keeps two kinds of IDs apart, and so does this node:

* **Face IDs** are short-lived: one per continuous sighting of a face, made
  by whoever detects and tracks faces (5 random lowercase letters here, as
  ROS4HRI's face detector makes them). They name per-face topics
  ``humans/faces/<face_id>/...`` and disappear from ``humans/faces/tracked``
  when the face is lost.
* **Person IDs** are permanent: the memory's person (``[a-z][a-z0-9]{9}``),
  the same across sightings and restarts, recognised by appearance.

:class:`FaceRegistry` gives each person in view a face ID for as long as they
stay in view (a face missing from up to :data:`FACE_RETENTION_FRAMES`
processed frames keeps its ID, as in ROS4HRI's face detector). A new face is
given a provisional person ID for its first frames; when the pipeline then
recognises it as a known person, the face ID stays and only the person it
maps to changes. The mapping is published the ROS4HRI way, as
``hri_msgs/IdsMatch`` on ``humans/candidate_matches`` (confidence 1.0 when a
face is that person, 0.0 when the association ends), which
``hri_person_manager`` turns into ``/humans/persons/...``.

``hri_msgs`` is on apt (``ros-jazzy-hri-msgs``), not on PyPI. Everything
here takes the message classes as arguments, so the logic is tested without
the package; :func:`hri_messages` says whether it is installed and why not.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

#: Length of a face ID (ROS4HRI's face detector uses 5 random lowercase letters).
FACE_ID_LENGTH = 5
#: Processed frames a face may be missing before its face ID is retired (ROS4HRI's face detector: 4).
FACE_RETENTION_FRAMES = 4
#: AffectNet's expression names (the encoders') -> hri_msgs/Expression constants. hri_msgs has no contempt.
EXPRESSION_TO_HRI: dict[str, str] = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprised", "sadness": "sad", "anger": "angry",
    "disgust": "disgusted", "fear": "scared", "contempt": "",
}
#: hri_msgs/IdsMatch id types.
PERSON, FACE = 1, 2


def hri_messages() -> tuple[ModuleType | None, str]:
    """(hri_msgs.msg, "") where installed, else (None, why not)."""
    try:
        import hri_msgs.msg as msgs
    except ImportError as exc:
        return None, (f"hri_msgs is not installed ({exc}); it is on apt, not on PyPI: "
                      "sudo apt install ros-jazzy-hri-msgs")
    return msgs, ""


def new_face_id(taken: Iterable[str], rng: random.Random | None = None) -> str:
    """A random face ID of :data:`FACE_ID_LENGTH` lowercase letters, not in ``taken`` (a valid ROS name token)."""
    used = set(taken)
    pick = rng or random.SystemRandom()
    while True:
        face = "".join(pick.choice(string.ascii_lowercase) for _ in range(FACE_ID_LENGTH))
        if face not in used:
            return face


@dataclass
class FaceUpdate:
    """What one processed frame changed."""

    tracked: list[tuple[str, str]] = field(default_factory=list)  # (face, person) of every tracked face
    in_view: list[tuple[str, str]] = field(default_factory=list)  # (face, person) seen in this frame, frame order
    new: list[tuple[str, str]] = field(default_factory=list)  # faces that got their ID in this frame
    rebound: list[tuple[str, str, str]] = field(default_factory=list)  # (face, provisional person, known person)
    gone: list[tuple[str, str]] = field(default_factory=list)  # (face, person) retired in this frame


class FaceRegistry:
    """Short-lived face IDs over the pipeline's permanent person IDs (see the module's docstring)."""

    def __init__(self, retention: int = FACE_RETENTION_FRAMES, rng: random.Random | None = None) -> None:
        self.retention = retention
        self._rng = rng
        self._face_of: dict[str, str] = {}  # person -> face
        self._missed: dict[str, int] = {}  # face -> processed frames since last seen
        self._used: set[str] = set()  # every face ID ever given by this registry (never reused)

    def face_of(self, person_id: str) -> str | None:
        return self._face_of.get(person_id)

    def update(self, person_ids: Sequence[str], renamed: dict[str, str] | None = None) -> FaceUpdate:
        """One processed frame: the persons in view (frame order) and the pipeline's provisional -> known renames."""
        out = FaceUpdate()
        for provisional, known in (renamed or {}).items():
            face = self._face_of.pop(provisional, None)
            if face is None:
                continue
            stale = self._face_of.get(known)
            if stale is not None and stale != face:  # the known person's previous face ends
                out.gone.append((stale, known))
                self._missed.pop(stale, None)
            self._face_of[known] = face
            out.rebound.append((face, provisional, known))
        seen = set()
        for pid in person_ids:
            face = self._face_of.get(pid)
            if face is None:
                face = new_face_id(self._used, self._rng)
                self._used.add(face)
                self._face_of[pid] = face
                out.new.append((face, pid))
            self._missed[face] = 0
            seen.add(face)
            out.in_view.append((face, pid))
        for pid, face in list(self._face_of.items()):
            if face in seen:
                continue
            self._missed[face] = self._missed.get(face, 0) + 1
            if self._missed[face] > self.retention:
                del self._face_of[pid]
                del self._missed[face]
                out.gone.append((face, pid))
        out.tracked = sorted(((f, p) for p, f in self._face_of.items()), key=lambda fp: fp[0])
        return out

    def clear(self) -> list[tuple[str, str]]:
        """Retire every face (the node is deactivated); returns (face, person) of each."""
        gone = [(f, p) for p, f in self._face_of.items()]
        self._face_of.clear()
        self._missed.clear()
        return gone


# ------------------------------------------------------------------ messages
def hri_expression(estimate: Any) -> str:
    """The hri_msgs/Expression name of an estimate's expression ("" when it has none or hri_msgs lacks it)."""
    return EXPRESSION_TO_HRI.get(getattr(estimate, "expression", "") or "", "")


def expression_message(expression_type: Any, header: Any, estimate: Any) -> Any:
    """hri_msgs/Expression of one person's estimate.

    ``valence``/``arousal``: the person's memory reading (the encoder's while
    seeding), as on ``affect/av``. ``confidence``: the memory's confidence once
    it is ready; while seeding, the encoder's probability of the expression
    (its own confidence).
    """
    msg = expression_type()
    msg.header = header
    msg.expression = hri_expression(estimate)
    msg.valence = float(np.clip(estimate.valence, -1.0, 1.0))
    msg.arousal = float(np.clip(estimate.arousal, -1.0, 1.0))
    confidence = estimate.expression_confidence if estimate.seeding else estimate.confidence
    msg.confidence = float(np.clip(confidence, 0.0, 1.0))
    return msg


def ids_list_message(ids_list_type: Any, header: Any, ids: Sequence[str]) -> Any:
    msg = ids_list_type()
    msg.header = header
    msg.ids = list(ids)
    return msg


def match_message(ids_match_type: Any, face_id: str, person_id: str, confidence: float) -> Any:
    """hri_msgs/IdsMatch face -> person (confidence 0.0: the two are no longer associated)."""
    msg = ids_match_type()
    msg.id1, msg.id1_type = face_id, FACE
    msg.id2, msg.id2_type = person_id, PERSON
    msg.confidence = float(confidence)
    return msg


def roi_message(roi_type: Any, header: Any, box: Sequence[float], width: int, height: int,
                confidence: float = 1.0) -> Any:
    """hri_msgs/NormalizedRegionOfInterest2D of a pixel box (x1, y1, x2, y2), clipped to the image."""
    msg = roi_type()
    msg.header = header
    x1, y1, x2, y2 = (float(v) for v in box)
    msg.xmin, msg.xmax = (float(np.clip(v / max(width, 1), 0.0, 1.0)) for v in (x1, x2))
    msg.ymin, msg.ymax = (float(np.clip(v / max(height, 1), 0.0, 1.0)) for v in (y1, y2))
    msg.c = float(np.clip(confidence, 0.0, 1.0))
    return msg


# ------------------------------------------------------------------ ROS4HRI input
@dataclass(frozen=True)
class FaceBatch:
    """The faces to process together: upstream face IDs and their newest images, stamped by the newest."""

    stamp: float
    header: Any
    face_ids: list[str]
    crops: list[np.ndarray]


class FaceImageCollector:
    """Faces from a ROS4HRI pipeline: ``humans/faces/tracked`` says who is there, each face's image comes on
    its own topic. Holds the newest image of every tracked face; :meth:`take` hands over those that are new.

    Thread-safe use is the caller's (the node holds its condition lock).
    """

    def __init__(self) -> None:
        self.tracked: list[str] = []
        self._images: dict[str, tuple[float, Any, np.ndarray]] = {}

    def set_tracked(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """The upstream list changed: returns (added, removed) face IDs (subscriptions to open and close)."""
        new = list(dict.fromkeys(ids))
        added = [f for f in new if f not in self.tracked]
        removed = [f for f in self.tracked if f not in new]
        for face in removed:
            self._images.pop(face, None)
        self.tracked = new
        return added, removed

    def add_image(self, face_id: str, stamp: float, header: Any, rgb: np.ndarray) -> bool:
        """Keep the newest image of a tracked face; False (ignored) for a face not tracked or an older image."""
        if face_id not in self.tracked:
            return False
        old = self._images.get(face_id)
        if old is not None and old[0] > stamp:
            return False
        self._images[face_id] = (stamp, header, rgb)
        return True

    def pending(self) -> bool:
        return bool(self._images)

    def take(self) -> FaceBatch | None:
        """Every tracked face with a new image, in the tracked list's order (None when there is none)."""
        faces = [f for f in self.tracked if f in self._images]
        if not faces:
            return None
        items = [self._images.pop(f) for f in faces]
        newest = max(range(len(items)), key=lambda i: items[i][0])
        return FaceBatch(items[newest][0], items[newest][1], faces, [item[2] for item in items])


#: What the ROS4HRI input mode needs from the pipeline; see docs/ros.md.
PIPELINE_FACES_API = "AffectPipeline.process_faces(crops, face_ids, timestamp) -> list[PersonEstimate]"


def pipeline_takes_faces(pipeline: Any) -> bool:
    return callable(getattr(pipeline, "process_faces", None))
