"""The PK at run time: batched encoding, D_em readout and face editing on CPU or CUDA."""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_inference_model

DEFAULT_MODEL = "pk_default.safetensors"


def default_model_path() -> Path:
    return Path(str(resources.files("affective_memory_ros") / "models" / DEFAULT_MODEL))


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use auto, cpu or cuda")
    return dev


class PKRuntime:
    """Encoder, generator and D_em of a trained PK, ready for inference.

    ``precision='fp16'`` runs under float16 autocast on CUDA (fp32 on CPU,
    where half precision is slower). Inputs are uint8 RGB crops (N, 96, 96, 3).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, device: str = "auto",
                 precision: str = "fp32") -> None:
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, not {precision!r}")
        self.path = Path(path) if path else default_model_path()
        if not self.path.is_file():
            raise FileNotFoundError(f"PK model not found: {self.path}")
        self.device = resolve_device(device)
        model, self.provenance = load_inference_model(self.path)
        self.model = model.to(self.device).eval()
        self.precision = precision
        self.z_dim = model.cfg.z_dim

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp16" and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def to_input(self, crops: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0

    @torch.inference_mode()
    def encode(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(z (N, 50), D_em's (arousal, valence) (N, 2)) for all crops in one batched call."""
        if len(crops) == 0:
            return np.zeros((0, self.z_dim), np.float32), np.zeros((0, 2), np.float32)
        with self._autocast():
            z = self.model.encoder(self.to_input(crops))
            av = self.model.emotion(z)
        return z.float().cpu().numpy(), av.float().cpu().numpy()

    @torch.inference_mode()
    def edit_and_encode(self, z: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """z of G's edits: face code z[i] re-rendered at targets[i] (arousal, valence), re-encoded.

        All edits of all seeding persons go through G and E as one batch.
        """
        if len(z) == 0:
            return np.zeros((0, self.z_dim), np.float32)
        with self._autocast():
            zt = torch.from_numpy(np.ascontiguousarray(z, np.float32)).to(self.device)
            yt = torch.from_numpy(np.ascontiguousarray(targets, np.float32)).to(self.device)
            edited = self.model.generator(zt, yt)
            return self.model.encoder(edited).float().cpu().numpy()

    @torch.inference_mode()
    def edit_images(self, crops: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Edited faces as uint8 RGB: each crop rendered at every target -> (N, T, 96, 96, 3)."""
        with self._autocast():
            z = self.model.encoder(self.to_input(crops))
            n, t = z.shape[0], targets.shape[0]
            y = torch.from_numpy(np.asarray(targets, np.float32)).to(self.device)
            out = self.model.generator(z.repeat_interleave(t, 0), y.repeat(n, 1))
        img = ((out.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return img.reshape(n, t, *img.shape[1:])
