"""Pictures for people: the annotated camera frame (node debug image)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np


def annotate_frame(frame_rgb: np.ndarray, estimates: Sequence[Any]) -> np.ndarray:
    """A copy of the frame with each person's box, ID and memory/PK arousal and valence."""
    out = np.ascontiguousarray(frame_rgb).copy()
    for e in estimates:
        x1, y1, x2, y2 = (int(v) for v in np.round(e.box))
        colour = (255, 200, 0) if e.seeding else (0, 220, 120)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        lines = [f"{e.person_id}{' (seeding)' if e.seeding else ''}",
                 f"A {e.arousal:+.2f}  V {e.valence:+.2f}",
                 f"PK A {e.pk_arousal:+.2f} V {e.pk_valence:+.2f}"]
        for k, text in enumerate(lines):
            y = max(y1 - 8 - 16 * (len(lines) - 1 - k), 12)
            cv2.putText(out, text, (x1, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, text, (x1, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return out


def plot_timeline(rows: Sequence[dict[str, Any]], path: Any, title: str = "") -> Any:
    """Arousal and valence over time per person: memory (solid) and PK (dashed),
    seeding phase shaded. ``rows`` have time, person_id, arousal, valence,
    pk_arousal, pk_valence, seeding. Returns the figure's plotted data per
    person (for tests) after saving a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    persons = sorted({str(r["person_id"]) for r in rows})
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    plotted: dict[str, dict[str, np.ndarray]] = {}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, pid in enumerate(persons):
        mine = [r for r in rows if str(r["person_id"]) == pid]
        t = np.array([float(r["time"]) for r in mine])
        data = {key: np.array([float(r[key]) for r in mine]) for key in
                ("arousal", "valence", "pk_arousal", "pk_valence")}
        data["time"] = t
        seeding = np.array([bool(int(r["seeding"])) for r in mine])
        plotted[pid] = data
        c = colours[k % len(colours)]
        for ax, dim in zip(axes, ("arousal", "valence"), strict=True):
            ax.plot(t, data[dim], color=c, lw=1.8, label=f"{pid} memory")
            ax.plot(t, data[f"pk_{dim}"], color=c, lw=1.0, ls="--", alpha=0.7, label=f"{pid} PK")
            if seeding.any():
                ax.axvspan(t[seeding].min(), t[seeding].max(), color=c, alpha=0.08)
    for ax, dim in zip(axes, ("arousal", "valence"), strict=True):
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(dim)
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8, ncol=2)
    axes[1].set_xlabel("time (s); shaded: seeding from PK edits")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return plotted
