"""Scoring a ``run`` CSV against per-frame annotations: CCC per person and overall,
for the encoder alone and for the personalised memory."""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import ccc, rmse


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def match(annotations: list[dict[str, str]], predictions: list[dict[str, str]],
          tolerance: float = 0.05) -> list[tuple[dict[str, str], dict[str, str]]]:
    """Pairs (annotation, prediction) of the same person, by frame index when the
    annotations have a ``frame`` column, else by nearest time within ``tolerance`` s."""
    by_person: dict[str, list[dict[str, str]]] = defaultdict(list)
    for p in predictions:
        by_person[p["person_id"]].append(p)
    pairs = []
    key = "frame" if annotations and "frame" in annotations[0] else "time"
    for person, preds in by_person.items():
        if key == "frame":
            index = {int(p["frame"]): p for p in preds}
            pairs += [(a, index[int(a["frame"])]) for a in annotations
                      if a["person_id"] == person and int(a["frame"]) in index]
        else:
            times = np.array([float(p["time"]) for p in preds])
            for a in annotations:
                if a["person_id"] != person:
                    continue
                j = int(np.argmin(np.abs(times - float(a["time"]))))
                if abs(times[j] - float(a["time"])) <= tolerance:
                    pairs.append((a, preds[j]))
    return pairs


def score(pairs: list[tuple[dict[str, str], dict[str, str]]]) -> dict[str, Any]:
    def block(sub: list[tuple[dict[str, str], dict[str, str]]]) -> dict[str, Any]:
        out: dict[str, Any] = {"frames": len(sub)}
        for dim in ("arousal", "valence"):
            truth = np.array([float(a[dim]) for a, _ in sub])
            for source, column in (("memory", dim), ("encoder", f"encoder_{dim}")):
                pred = np.array([float(p[column]) for _, p in sub])
                out[f"ccc_{source}_{dim}"] = round(ccc(pred, truth), 4)
                out[f"rmse_{source}_{dim}"] = round(rmse(pred, truth), 4)
        return out

    persons: dict[str, list[tuple[dict[str, str], dict[str, str]]]] = defaultdict(list)
    for a, p in pairs:
        persons[p["person_id"]].append((a, p))
    return {"overall": block(pairs), "persons": {pid: block(sub) for pid, sub in sorted(persons.items())}}
