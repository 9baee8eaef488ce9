"""The FaceChannel as a face encoder: a direct arousal/valence regressor and expression classifier.

Code: the dimensional head's 200-d hidden layer (ReLU), the vector a person's
memory learns on. Arousal/valence: the two tanh outputs. Expression
probabilities: softmax of the categorical head over
:data:`~affective_memory_ros.expressions.EXPRESSIONS`. It has no generator, so
it cannot edit faces (``can_edit = False``).

Model, training and files: :mod:`affective_memory_ros.facechannel`; model card: ``docs/facechannel.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .base import Encoding, FaceEncoder, InputSpec, shipped_weights

#: The shipped default weights, inside the package.
DEFAULT_WEIGHTS = "facechannel_default.safetensors"
#: 64x64 grey (ITU-R 601 luma of the RGB crop) in [0, 1], as the FaceChannel takes faces.
INPUT_SPEC = InputSpec(size=64, channels=1, value_range=(0.0, 1.0))


def default_weights_path() -> Path:
    return shipped_weights(DEFAULT_WEIGHTS)


class FaceChannelEncoder(FaceEncoder):
    name = "facechannel"
    can_edit = False
    input_spec = INPUT_SPEC

    def __init__(self, path: str | os.PathLike[str] | None = None, device: str = "auto",
                 precision: str = "fp32") -> None:
        from ..facechannel.checkpoint import load_inference_model

        self.model = self._load(path, DEFAULT_WEIGHTS, device, precision, load_inference_model)
        self.code_dim = self.model.cfg.dense

    @torch.inference_mode()
    def encode(self, crops: np.ndarray) -> Encoding:
        if len(crops) == 0:
            return Encoding.empty(self.code_dim)
        with self._autocast():
            code, av, logits = self.model(self.input_spec.to_tensor(crops, self.device))
            probs = torch.softmax(logits.float(), dim=1)
        return Encoding(code.float().cpu().numpy(), av.float().cpu().numpy(), probs.cpu().numpy())
