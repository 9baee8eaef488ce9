"""Evaluating PK models: CCC and RMSE per dimension, and the paper's Table 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..metrics import ccc, rmse
from .checkpoint import load_inference_model
from .data import CropSet
from .train import predict


def evaluate_models(paths: list[str], data: CropSet, post_train: Any = None) -> list[dict[str, Any]]:
    lab = data.labelled
    results = []
    for path in paths:
        model, provenance = load_inference_model(path)
        pred = predict(model, data.crops[lab], torch.device("cpu"))
        row: dict[str, Any] = {"model": Path(path).name, "variant": model.cfg.name if model.cfg.use_em else
                               provenance.get("variant", "?"), "faces": int(lab.sum())}
        train_cfg = provenance.get("train_config", {})
        cfg = train_cfg.get("model", {})
        if cfg:
            parts = [n for n in ("prior", "real", "em") if cfg.get(f"use_{n}")]
            row["variant"] = "all" if len(parts) == 3 else ("base" if not parts else "+" + "+".join(parts))
        notes = []
        if train_cfg.get("edit_weight"):
            notes.append("edit loss")
        if "epochs" in provenance:
            notes.append(f"{provenance['steps']} steps")
        row["label"] = row["variant"] + (f" ({', '.join(notes)})" if notes else "")
        for i, name in enumerate(("arousal", "valence")):
            row[f"ccc_{name}"] = round(ccc(pred[:, i], data.labels[lab, i]), 4)
            row[f"rmse_{name}"] = round(rmse(pred[:, i], data.labels[lab, i]), 4)
        results.append(row)
    return results


def ablation_table(results: list[dict[str, Any]]) -> str:
    """Markdown in the layout of P-AffMem's Table 2: Model | CCC arousal / valence."""
    order = ["base", "+prior", "+real", "+em", "+prior+real", "+prior+em", "+real+em", "all"]
    rows = sorted(results, key=lambda r: order.index(r["variant"]) if r["variant"] in order else 99)
    lines = ["| Model | CCC arousal / valence |", "|---|---|"]
    for r in rows:
        lines.append(f"| {r.get('label', r['variant'])} | {_fmt(r['ccc_arousal'])} / {_fmt(r['ccc_valence'])} |")
    return "\n".join(lines) + "\n"


def _fmt(v: float) -> str:
    """The paper's style: .38, -.02, 1.00."""
    if not np.isfinite(v):
        return "n/a"
    text = f"{v:.2f}"
    return text.replace("0.", ".", 1) if abs(v) < 1 else text
