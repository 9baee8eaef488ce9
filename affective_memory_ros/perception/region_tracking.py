"""Full-range search now and then, short-range re-detection around known faces in between.

A robot needs the full-range BlazeFace (faces up to ~5 m), but on a 2-core CPU
it costs ~14 ms per frame, most of a 30 fps budget. Between two frames a face
moves little, so, like MediaPipe's tracking graphs, :class:`RegionTrackingDetector`
runs the full-range model on the whole frame only every ``search_interval``
frames and whenever a known face is lost, and otherwise runs the cheaper
short-range model on square regions around the faces of the previous frame,
all regions in one batch. A region of ``region_scale`` x the face box gives the
short-range model the close-up view it was trained on, whatever the distance,
so far faces are re-detected at a higher resolution than the full frame gives.

New faces are found at the next search, at most ``search_interval`` frames
later (1/3 s at 30 fps with the default 10). The detector keeps the previous
frame's faces, so one instance serves one camera stream, frames in order.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms, box_iou

from .blazeface import NMS_IOU, BlazeFaceDetector
from .detections import FaceDetections, check_frames

#: A face of the previous frame that no full-range face overlaps this much counts as missed by the search.
MATCH_IOU = 0.3
#: A face whose fresh region moved or resized by at most this fraction of its last one keeps the last one.
REGION_TOLERANCE = 0.08
#: Smallest region side in pixels; smaller faces are below what BlazeFace finds anyway.
MIN_REGION = 32


class RegionTrackingDetector:
    """Stateful face detector for one stream: full-range search plus short-range regions around known faces."""

    def __init__(self, device: str | torch.device = "cpu", search_interval: int = 10, region_scale: float = 2.5,
                 max_faces: int = 16, search: BlazeFaceDetector | None = None,
                 refine: BlazeFaceDetector | None = None) -> None:
        if search_interval < 1:
            raise ValueError(f"search_interval must be >= 1, got {search_interval}")
        if not region_scale >= 1.0:
            raise ValueError(f"region_scale must be >= 1, got {region_scale}")
        self.search = search or BlazeFaceDetector("full", device=device, max_faces=max_faces)
        self.refine = refine or BlazeFaceDetector("short", device=device, max_faces=max_faces)
        self.search_interval = search_interval
        self.region_scale = region_scale
        self.max_faces = max_faces
        #: how many frames so far ran the full-range search (for benchmarks and tests)
        self.searches = 0
        self._previous = FaceDetections.empty()
        self._regions = np.zeros((0, 3), np.int64)  # the region each previous face was found in
        self._since_search = search_interval  # the first frame is searched

    def reset(self) -> None:
        """Forget the previous frame's faces (a new stream, a camera switch); the next frame is searched."""
        self._previous = FaceDetections.empty()
        self._regions = np.zeros((0, 3), np.int64)
        self._since_search = self.search_interval

    def __call__(self, frames: np.ndarray | list[np.ndarray]) -> list[FaceDetections]:
        """Faces per frame; the frames are taken as consecutive frames of this detector's stream."""
        return [self._step(frame) for frame in check_frames(frames)]

    def regions(self, boxes: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
        """Square regions (K, 3) as integer (x0, y0, side) centred on the boxes, ``region_scale`` x their size."""
        if len(boxes) == 0:
            return np.zeros((0, 3), np.int64)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        extent = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        side = np.clip(np.rint(extent * self.region_scale), MIN_REGION, max(MIN_REGION, *frame_shape[:2]))
        corner = np.rint(centre - side[:, None] / 2)
        return np.concatenate([corner, side[:, None]], axis=1).astype(np.int64)

    def _next_regions(self, frame_shape: tuple[int, ...]) -> np.ndarray:
        """Regions for this frame: a face that stayed inside its last region is looked for in the same one.

        Re-centring on every frame would feed the detector's own jitter back
        into its input; a fixed region gives a still face the same pixels, so
        its keypoints, and hence its aligned crops, stay as steady as the
        full-range model's.
        """
        fresh = self.regions(self._previous.boxes, frame_shape)
        old = self._regions
        shift = np.abs((fresh[:, :2] + fresh[:, 2:] / 2) - (old[:, :2] + old[:, 2:] / 2)).max(axis=1)
        steady = (shift <= REGION_TOLERANCE * old[:, 2]) & (np.abs(fresh[:, 2] / old[:, 2] - 1) <= REGION_TOLERANCE)
        return np.where(steady[:, None], old, fresh)

    def _step(self, frame: np.ndarray) -> FaceDetections:
        self._since_search += 1
        found: list[tuple[FaceDetections, np.ndarray]] = []
        lost = True
        if len(self._previous):
            regions = self._next_regions(frame.shape)
            per_region = self.refine.detect_regions(frame, regions)
            found = [(d, np.repeat(r[None], len(d), axis=0)) for d, r in zip(per_region, regions, strict=True)]
            lost = any(len(d) == 0 for d in per_region)
        kept, kept_regions = _merge(found, self.max_faces)
        if lost or self._since_search >= self.search_interval:
            # Known faces keep their short-range boxes, so their crops do not jump at search frames;
            # the full-range pass only adds the faces nobody was tracking.
            self.searches += 1
            self._since_search = 0
            dets = self.search([frame])[0]
            new = _select(dets, _unmatched(dets.boxes, kept.boxes))
            if len(new):
                kept, kept_regions = _merge([(kept, kept_regions), (new, self.regions(new.boxes, frame.shape))],
                                            self.max_faces)
        self._previous, self._regions = kept, kept_regions
        return kept


def _select(dets: FaceDetections, mask: np.ndarray) -> FaceDetections:
    return FaceDetections(dets.boxes[mask], dets.scores[mask], dets.keypoints[mask])


def _unmatched(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Which ``boxes`` overlap none of ``others`` by at least :data:`MATCH_IOU`."""
    if len(others) == 0:
        return np.ones(len(boxes), bool)
    iou = box_iou(torch.from_numpy(boxes).float(), torch.from_numpy(others).float())
    return (iou.max(dim=1).values < MATCH_IOU).numpy()


def _merge(parts: list[tuple[FaceDetections, np.ndarray]], max_faces: int) -> tuple[FaceDetections, np.ndarray]:
    """One face per person, with the region it was found in: NMS over faces from overlapping regions."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return FaceDetections.empty(), np.zeros((0, 3), np.int64)
    boxes = np.concatenate([p.boxes for p, _ in parts]).astype(np.float32)
    scores = np.concatenate([p.scores for p, _ in parts]).astype(np.float32)
    keypoints = np.concatenate([p.keypoints for p, _ in parts]).astype(np.float32)
    regions = np.concatenate([r for _, r in parts])
    if len(parts) == 1 and len(boxes) <= max_faces:
        return parts[0][0], regions
    b, s = torch.from_numpy(boxes), torch.from_numpy(scores)
    keep = batched_nms(b, s, torch.zeros(len(s), dtype=torch.long), NMS_IOU)[:max_faces].numpy()
    return FaceDetections(boxes[keep], scores[keep], keypoints[keep]), regions[keep]
