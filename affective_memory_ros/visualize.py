"""Pictures for people: the annotated camera frame (node debug image), the
arousal/valence timeline, the memory map and grids of edited faces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np


def annotate_frame(frame_rgb: np.ndarray, estimates: Sequence[Any], memories: dict[str, Any] | None = None,
                   panel: int = 120) -> np.ndarray:
    """A copy of the frame with each person's box, ID and memory/encoder arousal
    and valence, and, when ``memories`` maps person IDs to their memories'
    :class:`~.modes.MemoryPlane`, a small memory map beside the face (see :func:`memory_panel`)."""
    out = np.ascontiguousarray(frame_rgb).copy()
    h, w = out.shape[:2]
    for e in estimates:
        x1, y1, x2, y2 = (int(v) for v in np.round(e.box))
        colour = (255, 200, 0) if e.seeding else (0, 220, 120)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        lines = [f"{e.person_id}{' (seeding)' if e.seeding else ''}",
                 f"A {e.arousal:+.2f}  V {e.valence:+.2f}",
                 f"enc A {e.encoder_arousal:+.2f} V {e.encoder_valence:+.2f}"]
        for k, text in enumerate(lines):
            y = max(y1 - 8 - 16 * (len(lines) - 1 - k), 12)
            cv2.putText(out, text, (x1, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, text, (x1, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        memory = (memories or {}).get(e.person_id)
        if memory is not None and panel <= min(h, w):
            px = x2 + 4 if x2 + 4 + panel <= w else max(x1 - 4 - panel, 0)
            py = min(max(y1, 0), h - panel)
            out[py : py + panel, px : px + panel] = memory_panel(memory, (e.arousal, e.valence), panel)
    return out


def memory_panel(plane: Any, current: tuple[float, float] | None = None, size: int = 120) -> np.ndarray:
    """The memory map drawn with OpenCV (fast enough for every debug frame): neurons
    at (valence, arousal), colour by habituation, newest brightest, red mean,
    white ring for the current estimate; axes span [-1, 1]."""
    img = np.full((size, size, 3), 24, np.uint8)
    mid = size // 2
    cv2.line(img, (0, mid), (size - 1, mid), (80, 80, 80), 1)
    cv2.line(img, (mid, 0), (mid, size - 1), (80, 80, 80), 1)

    def to_px(arousal: float, valence: float) -> tuple[int, int]:
        return (round((valence + 1) / 2 * (size - 1)), round((1 - arousal) / 2 * (size - 1)))

    labels = np.asarray(plane.av, np.float64)
    if len(labels):
        born = np.asarray(plane.born, np.float64)
        age = (born - born.min()) / max(float(np.ptp(born)), 1.0)
        hab = np.asarray(plane.habituation, np.float64)
        for (a, v), hv, ag in zip(np.clip(labels, -1, 1), hab, age, strict=True):
            bright = 0.35 + 0.65 * ag
            colour = (int(255 * (1 - hv) * bright), int(200 * bright), int(255 * hv * bright))  # RGB
            cv2.circle(img, to_px(a, v), 2, colour, -1)
        mean = np.clip(labels.mean(axis=0), -1, 1)
        cv2.circle(img, to_px(mean[0], mean[1]), 4, (255, 0, 0), -1)
    if current is not None:
        cv2.circle(img, to_px(float(np.clip(current[0], -1, 1)), float(np.clip(current[1], -1, 1))), 6,
                   (255, 255, 255), 1)
    cv2.putText(img, f"{len(labels)} n", (3, size - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (200, 200, 200), 1)
    return img


def rolling_ccc(prediction: np.ndarray, truth: np.ndarray, window: int) -> np.ndarray:
    """CCC over the trailing ``window`` samples at each point (NaN until the window fills)."""
    from .metrics import ccc

    out = np.full(len(prediction), np.nan)
    for i in range(window - 1, len(prediction)):
        out[i] = ccc(prediction[i - window + 1 : i + 1], truth[i - window + 1 : i + 1])
    return out


def plot_timeline(rows: Sequence[dict[str, Any]], path: Any, title: str = "",
                  annotations: Sequence[dict[str, Any]] | None = None, window: int = 50) -> Any:
    """Arousal and valence over time per person: memory (solid) and encoder (dashed),
    seeding phase shaded. ``rows`` have time, person_id, arousal, valence,
    encoder_arousal, encoder_valence, seeding. With ``annotations`` (matched rows of
    time/frame, person_id, arousal, valence), the ground truth is drawn too and a
    third panel shows the rolling CCC (``window`` samples) of memory and encoder.
    Saves a PNG to ``path``; returns the plotted data per person (for tests)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    persons = sorted({str(r["person_id"]) for r in rows})
    truth_by_person: dict[str, dict[str, np.ndarray]] = {}
    if annotations:
        from .evaluation import match

        pairs = match(list(annotations), [{k: str(v) for k, v in r.items()} for r in rows])
        for pid in persons:
            mine = sorted(((float(p["time"]), a, p) for a, p in pairs if p["person_id"] == pid), key=lambda t: t[0])
            if mine:
                truth_by_person[pid] = {
                    "time": np.array([t for t, _, _ in mine]),
                    **{f"true_{d}": np.array([float(a[d]) for _, a, _ in mine]) for d in ("arousal", "valence")},
                    **{f"{src}_{d}": np.array([float(p[f"{pre}{d}"]) for _, _, p in mine])
                       for src, pre in (("memory", ""), ("encoder", "encoder_")) for d in ("arousal", "valence")}}
    n_panels = 3 if truth_by_person else 2
    fig, axes = plt.subplots(n_panels, 1, figsize=(10, 3 * n_panels), sharex=True)
    plotted: dict[str, dict[str, np.ndarray]] = {}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, pid in enumerate(persons):
        mine = [r for r in rows if str(r["person_id"]) == pid]
        t = np.array([float(r["time"]) for r in mine])
        data = {key: np.array([float(r[key]) for r in mine]) for key in
                ("arousal", "valence", "encoder_arousal", "encoder_valence")}
        data["time"] = t
        seeding = np.array([bool(int(r["seeding"])) for r in mine])
        c = colours[k % len(colours)]
        for ax, dim in zip(axes[:2], ("arousal", "valence"), strict=True):
            ax.plot(t, data[dim], color=c, lw=1.8, label=f"{pid} memory")
            ax.plot(t, data[f"encoder_{dim}"], color=c, lw=1.0, ls="--", alpha=0.7, label=f"{pid} encoder")
            if seeding.any():
                ax.axvspan(t[seeding].min(), t[seeding].max(), color=c, alpha=0.08)
        truth = truth_by_person.get(pid)
        if truth is not None:
            for ax, dim in zip(axes[:2], ("arousal", "valence"), strict=True):
                ax.plot(truth["time"], truth[f"true_{dim}"], color="black", lw=1.0, ls=":", label=f"{pid} annotation")
            for src, style in (("memory", "-"), ("encoder", "--")):
                for dim, alpha in (("arousal", 0.6), ("valence", 1.0)):
                    series = rolling_ccc(truth[f"{src}_{dim}"], truth[f"true_{dim}"], window)
                    data[f"rolling_ccc_{src}_{dim}"] = series
                    axes[2].plot(truth["time"], series, color=c, ls=style, alpha=alpha, label=f"{pid} {src} {dim}")
        plotted[pid] = data
    for ax, dim in zip(axes[:2], ("arousal", "valence"), strict=True):
        ax.set_ylim(-1.05, 1.05)
        ax.set_ylabel(dim)
        ax.axhline(0, color="grey", lw=0.5)
        ax.grid(alpha=0.3)
    if truth_by_person:
        axes[2].set_ylim(-1.05, 1.05)
        axes[2].set_ylabel(f"rolling CCC ({window})")
        axes[2].grid(alpha=0.3)
        axes[2].legend(loc="lower right", fontsize=7, ncol=2)
    axes[0].legend(loc="upper right", fontsize=8, ncol=2)
    axes[-1].set_xlabel("time (s) from the start of the recording; shaded: seeding (encoder estimate)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return plotted


def plot_memory(plane: Any, path: Any, title: str = "") -> dict[str, np.ndarray]:
    """The Affective Memory demo view of one person's memory (a :class:`~.modes.MemoryPlane`):
    every neuron at its (arousal, valence), coloured by habituation, newest
    neurons brightest, the mean in red; axes fixed to [-1, 1]. Saves a PNG and
    returns the plotted data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = np.asarray(plane.av, np.float64)
    born = np.asarray(plane.born, np.float64)
    habituation = np.asarray(plane.habituation, np.float64)
    age = (born - born.min()) / max(float(np.ptp(born)), 1.0) if len(born) else born  # 0 oldest .. 1 newest
    alpha = 0.25 + 0.75 * age
    fig, ax = plt.subplots(figsize=(5.5, 5))
    colours = plt.cm.viridis(habituation)
    colours[:, 3] = alpha
    ax.scatter(labels[:, 1], labels[:, 0], c=colours, s=28, edgecolors="none")
    mean = labels.mean(axis=0) if len(labels) else np.zeros(2)
    ax.scatter([mean[1]], [mean[0]], c="red", s=120, marker="o", edgecolors="white", linewidths=1.5, zorder=3)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")
    ax.set_title((title + "\n" if title else "") + f"{len(labels)} neurons; colour: habituation, bright: newest",
                 fontsize=9)
    sm = plt.cm.ScalarMappable(cmap="viridis", norm=matplotlib.colors.Normalize(0, 1))
    fig.colorbar(sm, ax=ax, label="habituation")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return {"arousal": labels[:, 0], "valence": labels[:, 1], "habituation": habituation, "alpha": alpha,
            "mean": mean}


def edit_grid(faces: np.ndarray, captions: Sequence[str], columns: int) -> np.ndarray:
    """Faces (T, 96, 96, 3) tiled ``columns`` wide into one RGB image, each captioned below."""
    tiles = []
    for face, caption in zip(faces, captions, strict=True):
        tile = cv2.copyMakeBorder(face, 0, 18, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(tile, caption, (2, 109), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)
