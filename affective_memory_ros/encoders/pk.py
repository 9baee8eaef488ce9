"""The PK (P-AffMem's prior-knowledge adversarial autoencoder) as a face encoder.

Code: E's 50-d tanh z. Arousal/valence: D_em's reading of z. Expression
probabilities: the categorical head on z where the model file has one
(models trained before it existed give none, see :attr:`PKEncoder.has_classes`).
Editing: G renders z at a target (arousal, valence) (:meth:`PKEncoder.render`), E re-encodes the result;
all edits of all seeding persons go through one batch.

Model, training and files: :mod:`affective_memory_ros.pk`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..expressions import NUM_EXPRESSIONS
from .base import Encoding, FaceEncoder, InputSpec, shipped_weights

#: The shipped default weights, inside the package.
DEFAULT_WEIGHTS = "pk_default.safetensors"
#: 96x96 RGB in (-1, 1), as the paper's PK takes faces.
INPUT_SPEC = InputSpec(size=96, channels=3, value_range=(-1.0, 1.0))
#: On CPU, G renders edits in chunks of this many: its transposed convolutions, in channels-last layout,
#: cost 4.1 ms per edit in chunks of 32 against 9.5 ms in the seeding worker's batches of 96 in the default
#: layout (one thread; the same images to 1e-6). A newcomer's 1,200 seeding edits: 14 s -> 7 s of a core.
CPU_EDIT_CHUNK = 32


def default_weights_path() -> Path:
    return shipped_weights(DEFAULT_WEIGHTS)


class PKEncoder(FaceEncoder):
    name = "pk"
    can_edit = True
    input_spec = INPUT_SPEC

    def __init__(self, path: str | os.PathLike[str] | None = None, device: str = "auto",
                 precision: str = "fp32") -> None:
        from ..pk.checkpoint import load_inference_model

        self.model = self._load(path, DEFAULT_WEIGHTS, device, precision, load_inference_model)
        self.code_dim = self.model.cfg.z_dim
        self.has_classes = getattr(self.model, "classifier", None) is not None
        if self.device.type == "cpu":
            self.model.generator.to(memory_format=torch.channels_last)  # see CPU_EDIT_CHUNK

    def _generate(self, codes: np.ndarray, targets: np.ndarray) -> torch.Tensor:
        """G's faces for ``codes`` at ``targets`` (autocast and inference mode are the caller's)."""
        zt = torch.from_numpy(np.ascontiguousarray(codes, np.float32)).to(self.device)
        yt = torch.from_numpy(np.ascontiguousarray(targets, np.float32)).to(self.device)
        if self.device.type != "cpu" or len(zt) <= CPU_EDIT_CHUNK:
            return self.model.generator(zt, yt)
        return torch.cat([self.model.generator(zt[i:i + CPU_EDIT_CHUNK], yt[i:i + CPU_EDIT_CHUNK])
                          for i in range(0, len(zt), CPU_EDIT_CHUNK)])

    @torch.inference_mode()
    def encode(self, crops: np.ndarray) -> Encoding:
        if len(crops) == 0:
            return Encoding.empty(self.code_dim)
        with self._autocast():
            z = self.model.encoder(self.input_spec.to_tensor(crops, self.device))
            av = self.model.emotion(z)
            if self.has_classes:
                probs = torch.softmax(self.model.classifier(z).float(), dim=1)
            else:
                probs = torch.full((z.shape[0], NUM_EXPRESSIONS), float("nan"), device=z.device)
        return Encoding(z.float().cpu().numpy(), av.float().cpu().numpy(), probs.float().cpu().numpy())

    @torch.inference_mode()
    def edit_and_encode(self, codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        if len(codes) == 0:
            return np.zeros((0, self.code_dim), np.float32)
        with self._autocast():
            return self.model.encoder(self._generate(codes, targets)).float().cpu().numpy()

    @torch.inference_mode()
    def render(self, codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The faces G renders from ``codes[i]`` at ``targets[i]``, as uint8 RGB crops (N, 96, 96, 3)."""
        if len(codes) == 0:
            return np.zeros((0, self.input_spec.size, self.input_spec.size, 3), np.uint8)
        with self._autocast():
            out = self._generate(codes, targets)
        return ((out.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    def edit_images(self, crops: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Edited faces as uint8 RGB: each crop rendered at every target -> (N, T, 96, 96, 3)."""
        z = self.encode(crops).code
        n, t = len(z), len(targets)
        img = self.render(np.repeat(z, t, axis=0), np.tile(np.asarray(targets, np.float32), (n, 1)))
        return img.reshape(n, t, *img.shape[1:])
