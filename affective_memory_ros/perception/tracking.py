"""Stable person IDs: ByteTrack for frame-to-frame continuity, plus appearance
signatures so a person who leaves and comes back gets their ID back.

* ByteTrack (the ``trackers`` package, Apache-2.0) links boxes across frames.
* A face ByteTrack has not linked to a known track yet (a new track, or one
  it has not confirmed) first keeps the person whose box it overlaps in the
  previous frame (IoU >= 0.5), then is matched by appearance against the
  :class:`~.appearance.Gallery`: every known person not yet in view in this
  frame, in RAM or in the memory store. Both steps are optimal assignments
  over all such faces of the frame (not greedy in detection order), so two
  similar-looking people in one frame do not swap IDs. At or above the
  gallery's threshold the face takes that person's ID; otherwise a new person
  is created with an ID from ``new_id`` (the person module's rule, which never
  reuses an ID of the store).
* A new person is on probation for their first ``probe_frames`` frames: the
  mean of those frames' embeddings is then compared with every known person
  not in view, once. A mean of several frames recognises about twice as many
  returning people as one frame at the same (strict) threshold
  (docs/perception.md). If it matches, the new ID is retired and the face is
  that person from then on (:attr:`PersonTracker.renamed`); nothing of the
  retired ID is kept.
* Two faces of one frame never share a person ID.
* The track table is bounded.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from .appearance import PROBE_FRAMES, Gallery
from .detections import FaceDetections


class PersonTracker:
    """Assigns a stable person ID to every face of every frame."""

    def __init__(self, gallery: Gallery, new_id: Callable[[], str], *, frame_rate: float = 30.0,
                 lost_track_buffer: int = 30, max_tracks: int = 1024, probe_frames: int = PROBE_FRAMES) -> None:
        from trackers import ByteTrackTracker

        self._bytetrack = ByteTrackTracker(lost_track_buffer=lost_track_buffer, frame_rate=frame_rate,
                                           track_activation_threshold=0.0, minimum_consecutive_frames=1,
                                           minimum_iou_threshold=0.1, high_conf_det_threshold=0.5)
        self.gallery = gallery
        self.new_id = new_id
        self._track_person: OrderedDict[int | str, str] = OrderedDict()
        self._last_boxes: dict[str, np.ndarray] = {}  # person -> box in the previous frame
        self._max_tracks = max_tracks
        self.probe_frames = probe_frames
        self._probation: OrderedDict[str, list[np.ndarray]] = OrderedDict()  # new person -> first embeddings
        #: Persons created by the last :meth:`update` (a new ID, no memory anywhere yet).
        self.created: list[str] = []
        #: Provisional IDs retired by the last :meth:`update` -> the known person they turned out to be.
        self.renamed: dict[str, str] = {}

    def forget(self, person_id: str) -> None:
        """Drop a person: their signature and their tracks (their next appearance gets a new ID)."""
        self.gallery.remove(person_id)
        self._last_boxes.pop(person_id, None)
        self._probation.pop(person_id, None)
        for track, pid in list(self._track_person.items()):
            if pid == person_id:
                del self._track_person[track]

    def update(self, detections: FaceDetections, embeddings: np.ndarray, timestamp: float) -> list[str]:
        """Person ID per detection, in detection order; ``embeddings`` are the faces' appearance embeddings."""
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

        return self._assign(track_of, detections.boxes, embeddings)

    def update_tracked(self, track_keys: list[str], embeddings: np.ndarray) -> list[str]:
        """Person ID per face for faces an upstream tracker already follows (ROS4HRI face IDs).

        An upstream face ID takes the place of a ByteTrack track: the same ID
        keeps its person; a new one is recognised by appearance (with the same
        probation) or is a new person. There are no boxes, so no overlap step.
        """
        return self._assign([f"face:{k}" for k in track_keys], None, embeddings)

    def _assign(self, track_of: list[int | str], boxes: np.ndarray | None, embeddings: np.ndarray) -> list[str]:
        """Known tracks keep their person; the rest by overlap, then appearance, then new persons."""
        n = len(track_of)
        self.created = []
        result: list[str | None] = [None] * n
        # Faces on a known track keep its person (first come, first served for a person claimed twice).
        for i in range(n):
            pid = self._track_person.get(track_of[i]) if track_of[i] != -1 else None
            if pid is not None and pid in self.gallery and pid not in result:
                result[i] = pid
        # The others: continuity with the previous frame's boxes, then appearance, then a new person.
        rest = [i for i in range(n) if result[i] is None]
        if rest and boxes is not None:
            self._assign_by_overlap(rest, boxes, result)
            rest = [i for i in rest if result[i] is None]
        if rest:
            self._assign_by_appearance(rest, embeddings, result)
        for i in range(n):
            if result[i] is None:
                result[i] = self.new_id()
                self.created.append(result[i])  # type: ignore[arg-type]
                self._probation[result[i]] = []  # type: ignore[index]
        ids: list[str] = result  # type: ignore[assignment]
        self.renamed = {}
        self._end_probations(ids, embeddings)
        for i, pid in enumerate(ids):
            if track_of[i] != -1:
                self._track_person[track_of[i]] = pid
                self._track_person.move_to_end(track_of[i])
            self.gallery.observe(pid, embeddings[i])
        self._last_boxes = {pid: boxes[i].copy() for i, pid in enumerate(ids)} if boxes is not None else {}
        while len(self._track_person) > self._max_tracks:
            self._track_person.popitem(last=False)
        return ids

    def _end_probations(self, ids: list[str], embeddings: np.ndarray) -> None:
        """New persons with ``probe_frames`` frames: their mean embedding meets the persons not in view, once."""
        for i, pid in enumerate(ids):
            frames = self._probation.get(pid)
            if frames is None:
                continue
            frames.append(embeddings[i])
            if len(frames) < self.probe_frames:
                continue
            del self._probation[pid]
            probe = np.mean(frames, axis=0)
            known, _ = self.gallery.match(probe / max(float(np.linalg.norm(probe)), 1e-6), exclude=set(ids))
            if known is not None:
                self.gallery.remove(pid)
                self._last_boxes.pop(pid, None)
                for track, owner in self._track_person.items():
                    if owner == pid:
                        self._track_person[track] = known
                self.renamed[pid] = known
                ids[i] = known
        while len(self._probation) > self._max_tracks:
            self._probation.popitem(last=False)

    def _assign_by_overlap(self, faces: list[int], boxes: np.ndarray, result: list[str | None]) -> None:
        free = [pid for pid in self._last_boxes if pid not in result and pid in self.gallery]
        if not free:
            return
        iou = _iou(boxes[faces], np.stack([self._last_boxes[p] for p in free]))
        for r, c in zip(*_assign(iou), strict=True):
            if iou[r, c] >= 0.5:
                result[faces[r]] = free[c]

    def _assign_by_appearance(self, faces: list[int], embeddings: np.ndarray, result: list[str | None]) -> None:
        taken = {pid for pid in result if pid is not None}
        candidates, sims = self.gallery.similarities(embeddings[faces], exclude=taken)
        if not candidates:
            return
        for r, c in zip(*_assign(sims), strict=True):
            if sims[r, c] >= self.gallery.threshold:
                result[faces[r]] = candidates[c]


def _assign(score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the assignment that maximises the total score (Hungarian)."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment(score, maximize=True)  # type: ignore[no-any-return]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of x1, y1, x2, y2 boxes."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(axis=2)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)
