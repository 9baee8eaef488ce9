"""FaceChannel inference files: float16 weights, config and provenance in one safetensors file.

Format ``affective_memory_ros.facechannel`` version 1. The metadata holds
``config`` (:class:`~.model.FaceChannelConfig` JSON) and ``provenance`` (what
it was trained on, the recipe, measured numbers). Reads are size-checked and
refuse FIFOs/devices (:func:`~affective_memory_ros.atomic_io.read_regular_file`),
and the format name, version, tensor names and shapes and finiteness are all
checked before a model is returned. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..atomic_io import atomic_write_bytes
from ..file_format import FileFormatError, read_format_file
from .model import FaceChannel, FaceChannelConfig

INFERENCE_FORMAT = "affective_memory_ros.facechannel"
FORMAT_VERSION = 1
#: Full width in float16 is ~9 MB; anything far larger is not a FaceChannel file.
MAX_FILE_BYTES = 64 << 20


class CheckpointError(FileFormatError):
    """A FaceChannel file is corrupt, foreign, oversized or from a newer version."""


def save_inference_model(path: str | os.PathLike[str], model: FaceChannel, provenance: dict[str, Any]) -> Path:
    """Every parameter and batch-norm statistic in float16 (the batch counters are dropped)."""
    state = {k: v.detach().cpu().half().contiguous() for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    meta = {"format": INFERENCE_FORMAT, "format_version": str(FORMAT_VERSION), "config": model.cfg.to_json(),
            "provenance": json.dumps(provenance, sort_keys=True, default=str)}
    return atomic_write_bytes(path, st_save(state, metadata=meta))


def load_inference_model(path: str | os.PathLike[str],
                         max_bytes: int = MAX_FILE_BYTES) -> tuple[FaceChannel, dict[str, Any]]:
    """The model (float32, eval mode) and its provenance; :class:`CheckpointError` for anything else."""
    p = Path(path)
    try:
        data, meta = read_format_file(p, INFERENCE_FORMAT, FORMAT_VERSION, "FaceChannel file", max_bytes)
    except FileFormatError as exc:
        raise CheckpointError(str(exc)) from None
    try:
        cfg = FaceChannelConfig.from_json(meta["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{p}: bad config: {exc}") from None
    model = FaceChannel(cfg)
    try:
        state = {k: v.float() for k, v in st_load(data).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
    except Exception as exc:
        raise CheckpointError(f"{p}: weights do not fit the FaceChannel ({exc})") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise CheckpointError(f"{p}: weights do not fit the FaceChannel (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise CheckpointError(f"{p}: weights contain NaN or infinite values")
    try:
        provenance = json.loads(meta.get("provenance", "{}"))
    except ValueError:
        raise CheckpointError(f"{p}: provenance is not JSON") from None
    return model.eval(), provenance if isinstance(provenance, dict) else {}
