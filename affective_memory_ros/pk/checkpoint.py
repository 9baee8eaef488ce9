"""PK files: training checkpoints (resumable) and the small inference model.

* ``*.safetensors`` hold weights and a JSON config/provenance in metadata.
* Optimiser state for resuming goes to a sibling ``*.optim.pt`` written with
  ``torch.save`` and read with ``torch.load(weights_only=True)``: tensors and
  plain containers only, never arbitrary objects.
* The inference model keeps only E, G, D_em and, where the model has one, the
  categorical head C, in float16.

Format version 2 adds the categorical head (``num_classes`` in the config);
version 1 files (no head) are still read, and give no expression probabilities.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..atomic_io import atomic_write_bytes
from ..file_format import FileFormatError, read_format_file
from .model import PK, PKConfig

TRAIN_FORMAT = "affective_memory_ros.pk.train"
INFERENCE_FORMAT = "affective_memory_ros.pk"
#: Written by this version; every version up to it is read (1: no categorical head).
FORMAT_VERSION = 2
INFERENCE_PARTS = ("encoder", "generator", "emotion", "classifier")
#: Largest PK file read (the paper-size model in float32 with discriminators is about 70 MB).
MAX_MODEL_BYTES = 512 << 20


class CheckpointError(FileFormatError):
    """A PK file is corrupt, foreign, or from a newer version."""


def _read(path: Path, fmt: str) -> tuple[bytes, dict[str, str]]:
    try:
        return read_format_file(path, fmt, FORMAT_VERSION, "PK file", MAX_MODEL_BYTES)
    except FileFormatError as exc:
        raise CheckpointError(str(exc)) from None


def save_training_checkpoint(path: str | os.PathLike[str], model: PK, optimizers: dict[str, Any], step: int,
                             epoch: int, train_config: str, provenance: dict[str, Any],
                             generators: dict[str, torch.Generator] | None = None) -> Path:
    p = Path(path)
    meta = {"format": TRAIN_FORMAT, "format_version": str(FORMAT_VERSION), "config": model.cfg.to_json(),
            "train_config": train_config, "provenance": json.dumps(provenance, sort_keys=True, default=str),
            "step": str(step), "epoch": str(epoch)}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim = {name: opt.state_dict() for name, opt in optimizers.items() if opt is not None}
    buffer = io.BytesIO()
    rng = {name: g.get_state() for name, g in (generators or {}).items()}
    torch.save({"step": step, "epoch": epoch, "optimizers": optim, "rng": rng}, buffer)
    atomic_write_bytes(p.with_suffix(".optim.pt"), buffer.getvalue())
    return atomic_write_bytes(p, st_save(state, metadata=meta))


def load_training_checkpoint(path: str | os.PathLike[str], model: PK, optimizers: dict[str, Any],
                             generators: dict[str, torch.Generator] | None = None) -> tuple[int, int]:
    p = Path(path)
    data, meta = _read(p, TRAIN_FORMAT)
    if PKConfig.from_json(meta["config"]) != model.cfg:
        raise CheckpointError(f"{p}: checkpoint config {meta['config']} differs from the model's")
    try:
        model.load_state_dict(st_load(data))
    except Exception as exc:
        raise CheckpointError(f"{p}: corrupt weights: {exc}") from None
    extra = torch.load(p.with_suffix(".optim.pt"), map_location="cpu", weights_only=True)
    for name, opt in optimizers.items():
        if opt is not None and name in extra["optimizers"]:
            opt.load_state_dict(extra["optimizers"][name])
    for name, gen in (generators or {}).items():
        if name in extra.get("rng", {}):
            gen.set_state(extra["rng"][name])
    return int(extra["step"]), int(extra["epoch"])


def save_inference_model(path: str | os.PathLike[str], model: PK, provenance: dict[str, Any]) -> Path:
    """E, G, D_em (and C where present) in float16 with config and provenance: what the node needs."""
    state = {k: v.detach().cpu().half().contiguous() for k, v in model.state_dict().items()
             if k.split(".")[0] in INFERENCE_PARTS}
    meta = {"format": INFERENCE_FORMAT, "format_version": str(FORMAT_VERSION), "config": model.cfg.to_json(),
            "provenance": json.dumps(provenance, sort_keys=True, default=str)}
    return atomic_write_bytes(path, st_save(state, metadata=meta))


def load_inference_model(path: str | os.PathLike[str]) -> tuple[PK, dict[str, Any]]:
    """A PK with E, G, D_em (and C where the file has it) loaded (float32) and no discriminators, plus its
    provenance."""
    p = Path(path)
    data, meta = _read(p, INFERENCE_FORMAT)
    try:
        cfg = PKConfig.from_json(meta["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{p}: bad config: {exc}") from None
    model = PK(PKConfig(z_dim=cfg.z_dim, width=cfg.width, use_prior=False, use_real=False, use_em=cfg.use_em,
                        num_classes=cfg.num_classes))
    try:
        state = {k: v.float() for k, v in st_load(data).items()}
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise CheckpointError(f"{p}: weights do not fit the PK ({exc})") from None
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise CheckpointError(f"{p}: weights contain NaN or infinite values")
    return model.eval(), json.loads(meta.get("provenance", "{}"))


def load_weights(path: str | os.PathLike[str], model: PK) -> list[str]:
    """Start ``model`` from the weights of a training checkpoint or an inference file (for fine-tuning).

    Shapes must match; parts the file lacks (an inference file has no discriminators, an older file no
    categorical head) keep their fresh initialisation. Returns the parts that were loaded.
    """
    p = Path(path)
    try:
        data, meta = _read(p, TRAIN_FORMAT)
    except CheckpointError:
        data, meta = _read(p, INFERENCE_FORMAT)
    try:
        state = {k: v.float() for k, v in st_load(data).items()}
    except Exception as exc:
        raise CheckpointError(f"{p}: corrupt weights: {exc}") from None
    own = model.state_dict()
    foreign = sorted(k for k in state if k not in own or own[k].shape != state[k].shape)
    if foreign:
        raise CheckpointError(f"{p}: weights do not fit this PK ({', '.join(foreign[:5])})")
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise CheckpointError(f"{p}: weights contain NaN or infinite values")
    model.load_state_dict(state, strict=False)
    del meta
    return sorted({k.split(".")[0] for k in state})


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance recorded in a training checkpoint or an inference file."""
    p = Path(path)
    training = True
    try:
        _, meta = _read(p, TRAIN_FORMAT)
    except CheckpointError:
        _, meta = _read(p, INFERENCE_FORMAT)
        training = False
    try:
        provenance = json.loads(meta.get("provenance", "{}"))
        if isinstance(provenance, dict) and training:
            # A checkpoint keeps its run's configuration and step beside the provenance; an export puts them
            # in it. Merged here, a chain of runs started from checkpoints records what each run did.
            provenance = {**provenance, "train_config": json.loads(meta.get("train_config", "{}")),
                          "steps": int(meta.get("step", "0")), "epochs": int(meta.get("epoch", "0"))}
    except ValueError:
        raise CheckpointError(f"{p}: provenance is not JSON") from None
    return provenance if isinstance(provenance, dict) else {}
