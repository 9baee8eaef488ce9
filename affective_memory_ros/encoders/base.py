"""What every face encoder offers the pipeline, and what each one needs as input.

An encoder turns a batch of aligned face crops (the perception's 96x96 RGB
uint8 crops, :data:`~affective_memory_ros.perception.align.CROP_SIZE`) into, per
face, a *code* (the vector a person's memory learns on), arousal/valence in
[-1, 1], and probabilities over :data:`~affective_memory_ros.expressions.EXPRESSIONS`.
Encoders with a generator (the PK) can also *edit* a face code towards target
(arousal, valence) and re-encode the result, which P-AffMem's seeding and
CLIFER's imagination need. An encoder may read faces with one model and edit
them with another's generator (``facechannel_pk``): its edits then start from
the generator's own code of the face (:attr:`Encoding.edit_codes`).

Each model carries its own :class:`InputSpec` (size, channels, value range,
layout), so resizing and scaling live with the model and nowhere else.
"""

from __future__ import annotations

import abc
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from ..expressions import NUM_EXPRESSIONS


@dataclass(frozen=True)
class InputSpec:
    """A model's input contract: ``size`` x ``size`` pixels, ``channels`` (3 = RGB, 1 = grey),
    values scaled linearly from [0, 255] to ``value_range``, batches laid out ``NCHW``."""

    size: int
    channels: int
    value_range: tuple[float, float]
    layout: str = "NCHW"

    def to_tensor(self, crops: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """uint8 RGB crops (N, H, W, 3) -> float tensor (N, C, size, size) in ``value_range`` on ``device``."""
        x = np.asarray(crops)
        if x.ndim != 4 or x.shape[3] != 3 or x.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB crops (N, H, W, 3), got {x.shape} {x.dtype}")
        if x.shape[1:3] != (self.size, self.size):
            interp = cv2.INTER_AREA if x.shape[1] > self.size else cv2.INTER_LINEAR
            x = np.stack([cv2.resize(c, (self.size, self.size), interpolation=interp) for c in x]) if len(x) else \
                np.zeros((0, self.size, self.size, 3), np.uint8)
        if self.channels == 1:
            x = (x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        t = t.permute(0, 3, 1, 2).float()
        lo, hi = self.value_range
        return t * ((hi - lo) / 255.0) + lo


@dataclass(frozen=True)
class Encoding:
    """One batch's encoder output: ``code`` (N, D), ``av`` (N, 2) = (arousal, valence), ``probs`` (N, 8), and
    ``edit_codes`` (N, E): what :meth:`FaceEncoder.edit_and_encode` takes for each face, where that is not
    ``code`` (an encoder that edits with another model's generator: its latent code); None = ``code``."""

    code: np.ndarray
    av: np.ndarray
    probs: np.ndarray
    edit_codes: np.ndarray | None = None

    @property
    def edit_sources(self) -> np.ndarray:
        """What :meth:`FaceEncoder.edit_and_encode` takes for each face: ``edit_codes``, else ``code``."""
        return self.code if self.edit_codes is None else self.edit_codes

    def __len__(self) -> int:
        return int(self.code.shape[0])

    @staticmethod
    def empty(code_dim: int) -> Encoding:
        return Encoding(np.zeros((0, code_dim), np.float32), np.zeros((0, 2), np.float32),
                        np.zeros((0, NUM_EXPRESSIONS), np.float32))


class FaceEncoder(abc.ABC):
    """A trained face model at run time (CPU or CUDA, fp32 or fp16 autocast on CUDA)."""

    #: Registry name (``encoder`` setting).
    name: ClassVar[str]
    #: True when :meth:`edit_and_encode` is available (a generator exists).
    can_edit: ClassVar[bool] = False
    #: True when the encoder reads its own edits: the model that encodes the edited face is the one whose
    #: code the generator was trained with (the PK's E and G), so an edit's code is a sample of its target
    #: (arousal, valence), as P-AffMem's seeding learns it. False when the edits are another model's
    #: renders read by this encoder (``facechannel_pk``): they serve CLIFER's imagination as offsets, and the
    #: modes that learn edits as labelled samples run without them (:func:`~affective_memory_ros.modes.make_memory`).
    labelled_edits: ClassVar[bool] = True

    input_spec: InputSpec
    code_dim: int
    device: torch.device
    precision: str
    #: Where the weights came from, what they were trained on, measured numbers (from the file).
    provenance: dict[str, Any]

    @abc.abstractmethod
    def encode(self, crops: np.ndarray) -> Encoding:
        """Encode uint8 RGB aligned crops (N, 96, 96, 3) in one batched call."""

    def edit_and_encode(self, codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Codes of the faces ``codes[i]`` (:attr:`Encoding.edit_sources`) re-rendered at ``targets[i]`` =
        (arousal, valence)."""
        raise NotImplementedError(f"the {self.name} encoder cannot edit faces")

    def render(self, codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The faces a generator renders from ``codes[i]`` at ``targets[i]``, as uint8 RGB crops (N, H, W, 3)."""
        raise NotImplementedError(f"the {self.name} encoder has no generator")

    def _load(self, path: str | os.PathLike[str] | None, default: str, device: str, precision: str,
              loader: Callable[[Path], tuple[torch.nn.Module, dict[str, Any]]]) -> torch.nn.Module:
        """Load the model file (``path``, or the shipped ``default``) with the model's own safe ``loader``, on
        the device, in eval mode; sets ``path``, ``device``, ``precision`` and ``provenance``."""
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, not {precision!r}")
        self.path = Path(path) if path else shipped_weights(default)
        self.device = resolve_device(device)
        model, self.provenance = loader(self.path)
        self.precision = precision
        return model.to(self.device).eval()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()


def shipped_weights(filename: str) -> Path:
    """A weights file shipped inside the package (``affective_memory_ros/models/``)."""
    return Path(str(resources.files("affective_memory_ros") / "models" / filename))


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unsupported device {device!r}; use auto, cpu or cuda") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use auto, cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    return dev
