"""``affective-memory bench-personal``: does a person's memory read that person better than the generic encoder?

Issue 12's personalisation benchmark. Each person of a folder with one neutral and one smiling photo per
person (``labels.csv`` with ``file``, ``label`` = neutral / happy, ``identity``; e.g. London FRL) becomes
a few synthetic camera sequences, and every variant (a memory mode, or any factory of a fresh
:class:`~affective_memory_ros.pipeline.AffectPipeline`) runs on each sequence in a fresh pipeline. The
variant's published valence and the encoder's own valence (``encoder_valence``, same frames) are scored
side by side. Definitions of every score: docs/personal-benchmark.md.

Sequences (640x480, 30 fps, deterministic for a person, a protocol and a seed):

* ``alternating``: 25 neutral frames (seeding), then 4 x (15 smiling, 15 neutral): 145 frames.
* ``neutral``: 145 neutral frames (stability).
* ``crossfade``: 25 neutral, then 2 x (15-frame neutral->smile cross-fade, 15 smile, 15-frame
  smile->neutral fade, 15 neutral): 145 frames.
* ``smile_first``: 25 smiling frames (the first impression is a smile), then 4 x (15 neutral, 15 smile).

Composition: the package's detector finds the face in both photos; the smiling photo is aligned to the
neutral one (a similarity on the eyes and nose), and both are placed so the inter-ocular distance is
56-70 px (a 240-300 px portrait of a London FRL photo) near the frame centre, the photo extended
downwards (shoulders to the frame's bottom) and feathered into a background of the photo's own border
colour with mild texture. Every frame has a smooth random walk of position (±4 px), size (±3 %) and gain
(x0.9-1.1), and sensor noise (σ 2 grey levels).

Library use (ablations)::

    from affective_memory_ros.bench import personal
    people = personal.load_people("../shared/data/london_frl", splits=("tune",))
    seqs = personal.make_sequences(people, ("alternating", "neutral"), seed=0)
    report = personal.evaluate(seqs, {"paper": lambda: AffectPipeline(cfg, MemorySettings(memory_mode="paper"))})
    print(personal.markdown(report))
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..splits import split_of
from . import to_json

WIDTH, HEIGHT, FPS = 640, 480, 30.0
SEED_FRAMES = 25  # the paper's first second at 25 fps; seeding frames are never scored
SEGMENT = 15  # frames per expression segment (half a second at 30 fps)
PROTOCOLS = ("alternating", "neutral", "crossfade", "smile_first")
SPLITS = ("tune", "val", "train")
NEUTRAL, SMILE, FADE = "neutral", "smile", "fade"
SMILE_LABELS = ("happy", "smile", "smiling")

# Camera simulation (bounds of the smooth random walk, per frame).
SHIFT_PX = 4.0  # position: ± px
SCALE_FRAC = 0.03  # size: ± fraction
GAIN_RANGE = (0.9, 1.1)  # gain: multiplicative
WALK_RHO = 0.95  # AR(1) coefficient of the walk: consecutive frames are close
SENSOR_NOISE = 2.0  # per-frame Gaussian noise, grey levels
IOD_PX = (56.0, 70.0)  # inter-ocular distance in the frame (London FRL: ~120 px in 512 -> 240-300 px portrait)
OFFSET_PX = (60.0, 30.0)  # per-person placement of the face centre around the frame centre: ± x, ± y
FEATHER_PX = 9  # soft edge of the pasted photo

CONSTANT_STD = 1e-6  # an output with less spread than this after seeding is constant
TIE_EPS = 1e-9  # AUCs this close count as equal


# ============================================================================================ scores
def auc(smile: np.ndarray, neutral: np.ndarray) -> float:
    """P(valence on a smiling frame > valence on a neutral frame), ties counted 0.5 (Mann–Whitney U / n_s n_n).
    NaN when either side is empty."""
    s = np.asarray(smile, np.float64).ravel()
    n = np.asarray(neutral, np.float64).ravel()
    s, n = s[np.isfinite(s)], n[np.isfinite(n)]
    if s.size == 0 or n.size == 0:
        return float("nan")
    ns = np.sort(n)
    below = np.searchsorted(ns, s, side="left")  # neutral values < each smile value
    ties = np.searchsorted(ns, s, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (s.size * n.size))


def dprime(smile: np.ndarray, neutral: np.ndarray) -> float:
    """(mean smile − mean neutral) / pooled within-class standard deviation (ddof 1 per class).

    Zero spread: ±inf when the means differ, 0 when they do not (a constant output separates nothing).
    NaN when a class is empty or both have one value only."""
    s = np.asarray(smile, np.float64).ravel()
    n = np.asarray(neutral, np.float64).ravel()
    s, n = s[np.isfinite(s)], n[np.isfinite(n)]
    if s.size == 0 or n.size == 0 or s.size + n.size < 3:
        return float("nan")
    diff = float(s.mean() - n.mean())
    ss = float(((s - s.mean()) ** 2).sum() + ((n - n.mean()) ** 2).sum())
    pooled = math.sqrt(ss / (s.size + n.size - 2))
    if pooled < CONSTANT_STD:
        return 0.0 if abs(diff) < CONSTANT_STD else math.copysign(math.inf, diff)
    return diff / pooled


def is_constant(values: np.ndarray) -> bool:
    """Less spread than :data:`CONSTANT_STD` over the finite values (a memory that never moves)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return bool(v.size > 1 and v.std() < CONSTANT_STD)


def change_points(target: np.ndarray, start: int) -> list[tuple[int, int, bool]]:
    """Expression changes at or after ``start``: (frame of the change, end of its segment, new class is smile).

    ``target`` is the per-frame class (True = smile). A change is a frame whose class differs from the
    previous frame's; its segment runs to the next change (or the end)."""
    t = np.asarray(target, bool)
    idx = [i for i in range(max(start, 1), t.size) if t[i] != t[i - 1]]
    ends = [*idx[1:], t.size]
    return [(c, e, bool(t[c])) for c, e in zip(idx, ends, strict=True)]


def latencies(values: np.ndarray, target: np.ndarray, midpoint: float, start: int) -> tuple[list[int], int]:
    """Frames from each expression change (at or after ``start``) to the first reading on the correct side
    of ``midpoint`` (above it for a smile, below it for neutral): 0 = right on the first frame of the new
    expression. A change never read correctly within its segment counts the segment's length and is
    counted as missed. Returns (latency per change, missed changes); nothing when the midpoint is NaN."""
    v = np.asarray(values, np.float64)
    if not math.isfinite(midpoint):
        return [], 0
    out, missed = [], 0
    for c, e, smile in change_points(target, start):
        seg = v[c:e]
        ok = (seg > midpoint) if smile else (seg < midpoint)  # NaN (no face) is never correct
        hits = np.flatnonzero(ok)
        if hits.size:
            out.append(int(hits[0]))
        else:
            out.append(e - c)
            missed += 1
    return out, missed


def _mean(x: Iterable[float]) -> float:
    a = np.asarray(list(x), np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def _median(x: Iterable[float]) -> float:
    a = np.asarray(list(x), np.float64)
    a = a[~np.isnan(a)]  # +-inf stay: a median of separations may be infinite
    return float(np.median(a)) if a.size else float("nan")


def score_output(values: np.ndarray, seq: Sequence) -> dict[str, Any]:
    """Every per-person score of one output (a variant's valence or the encoder's) on one sequence.

    ``values`` (T,) per frame, NaN where the face was not found; frames before ``seq.seed_frames`` are
    never scored, fades are left out of everything but ``weight_corr`` and the latencies."""
    v = np.asarray(values, np.float64)
    start = seq.seed_frames
    labels = np.asarray(seq.labels)
    after = np.arange(v.size) >= start
    sm, ne = v[after & (labels == SMILE)], v[after & (labels == NEUTRAL)]
    sm, ne = sm[np.isfinite(sm)], ne[np.isfinite(ne)]
    scored = v[after]
    scored = scored[np.isfinite(scored)]
    mean_s = float(sm.mean()) if sm.size else float("nan")
    mean_n = float(ne.mean()) if ne.size else float("nan")
    mid = (mean_s + mean_n) / 2
    lat, missed = latencies(v, seq.weights >= 0.5, mid, start)
    w = seq.weights[after]
    fin = np.isfinite(v[after])
    corr = float("nan")
    if np.ptp(w[fin]) > 0 and fin.sum() > 2 and scored.std() > CONSTANT_STD:
        corr = float(np.corrcoef(v[after][fin], w[fin])[0, 1])
    return {
        "smile_frames": int(sm.size), "neutral_frames": int(ne.size),
        "auc": auc(sm, ne), "dprime": dprime(sm, ne), "diff": mean_s - mean_n,
        "mean_neutral": mean_n, "mean_smile": mean_s,
        "std": float(scored.std()) if scored.size else float("nan"),
        "constant": is_constant(scored),
        "latency": _mean(lat) if lat else float("nan"), "changes": len(lat), "latency_missed": missed,
        "weight_corr": corr,
    }


# ============================================================================================ people
@dataclass(frozen=True)
class PersonPhotos:
    """One person: a neutral and a smiling photo (paths or RGB uint8 arrays)."""

    identity: str
    neutral: str | np.ndarray
    smile: str | np.ndarray
    split: str = ""


def load_people(folder: str | os.PathLike[str], splits: Iterable[str] | None = None,
                limit: int | None = None) -> list[PersonPhotos]:
    """The people of ``folder/labels.csv`` (``file``, ``label``, ``identity``) with one neutral and one
    smiling (``happy``/``smile``/``smiling``) photo, in identity order, optionally only those of ``splits``
    (:func:`~affective_memory_ros.splits.split_of`) and at most ``limit`` per split."""
    base = Path(folder)
    photos: dict[str, dict[str, str]] = {}
    with (base / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            label = (row.get("label") or "").strip().lower()
            kind = NEUTRAL if label == NEUTRAL else SMILE if label in SMILE_LABELS else None
            ident = (row.get("identity") or "").strip()
            if kind and ident:
                photos.setdefault(ident, {}).setdefault(kind, str(base / row["file"]))
    wanted = set(splits) if splits is not None else None
    out: list[PersonPhotos] = []
    count: dict[str, int] = {}
    for ident in sorted(photos):
        p = photos[ident]
        split = split_of(ident, has_identities=True)
        if NEUTRAL not in p or SMILE not in p or (wanted is not None and split not in wanted):
            continue
        if limit is not None and count.get(split, 0) >= limit:
            continue
        count[split] = count.get(split, 0) + 1
        out.append(PersonPhotos(ident, p[NEUTRAL], p[SMILE], split))
    return out


# ========================================================================================= sequences
def protocol_weights(protocol: str, seed_frames: int = SEED_FRAMES, segment: int = SEGMENT
                     ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per frame the smile weight in [0, 1] (0 = the neutral photo, 1 = the smiling one) and the label
    (``neutral``, ``smile``, or ``fade`` for a cross-fade frame)."""
    n, s = np.zeros(segment), np.ones(segment)
    up = (np.arange(segment) + 0.5) / segment  # neutral -> smile, crossing 0.5 mid-fade
    if protocol == "alternating":
        parts = [np.zeros(seed_frames)] + [s, n] * 4
    elif protocol == "neutral":
        parts = [np.zeros(seed_frames + 8 * segment)]
    elif protocol == "crossfade":
        parts = [np.zeros(seed_frames)] + [up, s, up[::-1], n] * 2
    elif protocol == "smile_first":
        parts = [np.ones(seed_frames)] + [n, s] * 4
    else:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    w = np.concatenate(parts)
    labels = tuple(NEUTRAL if x == 0 else SMILE if x == 1 else FADE for x in w)
    return w, labels


def random_walk(rng: np.random.Generator, n: int, bound: float, rho: float = WALK_RHO) -> np.ndarray:
    """A smooth bounded random walk: AR(1) with stationary spread bound/2, clipped to ±bound."""
    x = np.empty(n)
    sd = bound / 2
    x[0] = rng.normal(0, sd)
    step = sd * math.sqrt(1 - rho * rho)
    for i in range(1, n):
        x[i] = rho * x[i - 1] + rng.normal(0, step)
    return np.clip(x, -bound, bound)


def _stable_int(*parts: object) -> int:
    return int(hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity (rotation, uniform scale, shift) mapping src points onto dst (Umeyama)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / max((a**2).sum() / len(src), 1e-12))
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - m[:, :2] @ ms
    return m


@dataclass
class Portrait:
    """A person's two photos at the frame's scale: ``neutral`` and ``smile`` (aligned to it), float32 RGB;
    ``mask`` (float32, feathered, the bottom fading out) where the photo is pasted; ``background`` colour (the
    photo's border); face ``centre`` in portrait pixels."""

    neutral: np.ndarray
    smile: np.ndarray
    mask: np.ndarray
    background: np.ndarray
    centre: np.ndarray


def _read(photo: str | np.ndarray) -> np.ndarray:
    if isinstance(photo, np.ndarray):
        return np.ascontiguousarray(photo[..., :3]).astype(np.uint8, copy=False)
    from ..video import read_image

    return read_image(photo)


def _keypoints(image: np.ndarray, detectors: list[Any]) -> np.ndarray | None:
    for det in detectors:
        d = det([image])[0]
        if len(d):
            return np.asarray(d.keypoints[int(np.argmax(d.scores))], np.float64)
    return None


def _feather(h: int, w: int) -> np.ndarray:
    """1 inside, smooth ramps of FEATHER_PX at the top and sides and over the bottom fifth (neck and shirt fade
    into the background)."""
    def ramp(n: int, lo: float, hi: float) -> np.ndarray:
        i = np.arange(n, dtype=np.float32)
        r = np.minimum(np.clip(i / lo, 0, 1), np.clip((n - 1 - i) / hi, 0, 1))
        return r * r * (3 - 2 * r)  # smoothstep
    return (ramp(h, FEATHER_PX, max(h / 5, FEATHER_PX))[:, None] * ramp(w, FEATHER_PX, FEATHER_PX)[None, :])


def make_portrait(person: PersonPhotos, detectors: list[Any], iod: float) -> Portrait:
    """Detect the face in both photos, align the smiling photo to the neutral one (similarity on the eyes and
    nose tip), and resize both so the inter-ocular distance is ``iod`` pixels."""
    neutral, smile = _read(person.neutral), _read(person.smile)
    kn, ks = _keypoints(neutral, detectors), _keypoints(smile, detectors)
    if kn is None or ks is None:
        raise ValueError(f"person {person.identity}: no face found in the "
                         f"{'neutral' if kn is None else 'smiling'} photo")
    h, w = neutral.shape[:2]
    k = iod / max(float(np.linalg.norm(kn[1] - kn[0])), 1.0)
    size = (max(round(w * k), 1), max(round(h * k), 1))
    align = _similarity(ks[:3], kn[:3])  # smiling photo -> neutral photo
    smile_on = cv2.warpAffine(smile, align, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    imgs = [cv2.resize(img, size, interpolation=interp).astype(np.float32) for img in (neutral, smile_on)]
    border = np.concatenate([neutral[0], neutral[:, 0], neutral[:, -1]])
    centre = ((kn[0] + kn[1]) / 4 + kn[3] / 2) * np.array([size[0] / w, size[1] / h])  # as the aligner centres
    return Portrait(imgs[0], imgs[1], _feather(size[1], size[0]), np.median(border, axis=0).astype(np.float32),
                    centre)


@dataclass
class Sequence:
    """One person's synthetic camera sequence.

    ``weights`` (T,) smile weight per frame (0 neutral photo, 1 smiling photo, between: a cross-fade),
    ``labels`` per frame (``neutral``, ``smile``, ``fade``), ``seed_frames`` never scored, ``jitter`` (T, 4)
    = x shift px, y shift px, scale factor, gain. Frames are rendered on demand (:meth:`frame`,
    :meth:`frames`), the same for the same seed."""

    person: str
    protocol: str
    weights: np.ndarray
    labels: tuple[str, ...]
    seed_frames: int
    jitter: np.ndarray
    render: Callable[[int], np.ndarray] = field(repr=False)
    split: str = ""
    fps: float = FPS

    def __len__(self) -> int:
        return int(self.weights.size)

    def frame(self, i: int) -> np.ndarray:
        return self.render(i)

    def frames(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.render(i)


class _Renderer:
    """Frames of one person and protocol: the portrait (cross-faded) shifted and scaled by the frame's jitter
    about the face centre, feathered into the background, then gain and sensor noise."""

    def __init__(self, portrait: Portrait, weights: np.ndarray, jitter: np.ndarray, placement: np.ndarray,
                 noise_seed: int) -> None:
        self.p, self.weights, self.jitter, self.placement = portrait, weights, jitter, placement
        self.noise_seed = noise_seed
        rng = np.random.default_rng(noise_seed)
        shade = cv2.GaussianBlur(rng.standard_normal((HEIGHT, WIDTH), np.float32), (0, 0), 16)
        shade *= 3.0 / max(float(shade.std()), 1e-6)  # mild low-frequency shading
        grain = rng.standard_normal((HEIGHT, WIDTH), np.float32) * 1.5  # and fine grain
        self.background = portrait.background[None, None, :] + (shade + grain)[..., None]

    def matrix(self, i: int) -> np.ndarray:
        """Portrait pixels -> frame pixels for frame ``i``."""
        dx, dy, k, _ = self.jitter[i]
        c = self.p.centre
        return np.array([[k, 0.0, self.placement[0] + dx - k * c[0]],
                         [0.0, k, self.placement[1] + dy - k * c[1]]])

    def __call__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.weights.size:
            raise IndexError(f"frame {i} of {self.weights.size}")
        w = float(self.weights[i])
        p = self.p
        src = p.neutral if w <= 0 else p.smile if w >= 1 else (1 - w) * p.neutral + w * p.smile
        m = self.matrix(i)
        img = cv2.warpAffine(src, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        a = cv2.warpAffine(p.mask, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        out = self.background + a[..., None] * (img - self.background)
        noise = np.random.default_rng([self.noise_seed, i]).standard_normal(out.shape, np.float32)
        out = out * np.float32(self.jitter[i, 3]) + noise * np.float32(SENSOR_NOISE)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def make_jitter(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 4): x shift, y shift (px), scale factor, gain; smooth bounded random walks."""
    g0, g1 = GAIN_RANGE
    return np.stack([random_walk(rng, n, SHIFT_PX), random_walk(rng, n, SHIFT_PX),
                     1.0 + random_walk(rng, n, SCALE_FRAC),
                     (g0 + g1) / 2 + random_walk(rng, n, (g1 - g0) / 2)], axis=1)


def make_sequences(person_rows: Iterable[PersonPhotos | Mapping[str, Any]], protocols: Iterable[str] = PROTOCOLS,
                   seed: int = 0, *, seed_frames: int = SEED_FRAMES, segment: int = SEGMENT,
                   detectors: list[Any] | None = None, skipped: list[dict[str, str]] | None = None
                   ) -> Iterator[Sequence]:
    """For each person, one :class:`Sequence` per protocol (lazily: a person's photos are read when reached).

    ``person_rows``: :class:`PersonPhotos` or mappings with ``identity``, ``neutral``, ``smile`` (paths or RGB
    arrays) and optionally ``split``. Face size and placement are per person and seed; jitter and noise per
    person, protocol and seed. ``seed_frames`` and ``segment`` (frames per expression segment) shorten the
    protocols for quick checks. A person without a detectable face in a photo raises, or, with ``skipped``
    given, is appended to it (``identity``, ``split``, ``reason``) and left out."""
    protocols = tuple(protocols)
    for p in protocols:
        protocol_weights(p, seed_frames, segment)  # unknown names fail before any work
    if detectors is None:
        from ..perception.detectors import make_detector

        detectors = [make_detector("blazeface_short"), make_detector("blazeface_full")]
    for row in person_rows:
        person = row if isinstance(row, PersonPhotos) else PersonPhotos(
            str(row["identity"]), row["neutral"], row["smile"], str(row.get("split", "")))
        prng = np.random.default_rng(_stable_int(seed, person.identity))
        iod = float(prng.uniform(*IOD_PX))
        try:
            portrait = make_portrait(person, detectors, iod)
        except ValueError as exc:
            if skipped is None:
                raise
            skipped.append({"identity": person.identity, "split": person.split, "reason": str(exc)})
            continue
        placement = np.array([WIDTH / 2 + prng.uniform(-OFFSET_PX[0], OFFSET_PX[0]),
                              HEIGHT / 2 + prng.uniform(-OFFSET_PX[1], OFFSET_PX[1])])
        for proto in protocols:
            weights, labels = protocol_weights(proto, seed_frames, segment)
            key = _stable_int(seed, person.identity, proto)
            jitter = make_jitter(np.random.default_rng(key), weights.size)
            render = _Renderer(portrait, weights, jitter, placement, key)
            yield Sequence(person.identity, proto, weights, labels, seed_frames, jitter, render, person.split)


# ========================================================================================== evaluate
def run_sequence(pipeline: Any, seq: Sequence) -> dict[str, Any]:
    """Feed a sequence to a pipeline; per frame the published and the encoder's valence of the main face
    (the largest box; NaN when no face), whether it was still seeding, and the IDs seen."""
    n = len(seq)
    out = {"valence": np.full(n, np.nan), "encoder_valence": np.full(n, np.nan),
           "arousal": np.full(n, np.nan), "encoder_arousal": np.full(n, np.nan),
           "seeding": np.zeros(n, bool), "ids": [], "extra_faces": 0}
    for i, frame in enumerate(seq.frames()):
        est = pipeline.process(frame, i / seq.fps)
        if not est:
            out["ids"].append("")
            continue
        if len(est) > 1:
            out["extra_faces"] += 1
        e = max(est, key=lambda x: float((x.box[2] - x.box[0]) * (x.box[3] - x.box[1])))
        out["valence"][i], out["encoder_valence"][i] = e.valence, e.encoder_valence
        out["arousal"][i], out["encoder_arousal"][i] = e.arousal, e.encoder_arousal
        out["seeding"][i] = e.seeding
        out["ids"].append(e.person_id)
    return out


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-person scores of one output over the people of a split and protocol."""
    d = [r["dprime"] for r in rows]
    return {
        "people": len(rows),
        "auc_mean": _mean(r["auc"] for r in rows), "auc_median": _median(r["auc"] for r in rows),
        "dprime_median": _median(d), "dprime_infinite": int(sum(1 for x in d if math.isinf(x))),
        "diff_mean": _mean(r["diff"] for r in rows),
        "mean_neutral": _mean(r["mean_neutral"] for r in rows), "mean_smile": _mean(r["mean_smile"] for r in rows),
        "std_mean": _mean(r["std"] for r in rows), "constant_people": int(sum(r["constant"] for r in rows)),
        "latency_median": _median(r["latency"] for r in rows),
        "latency_missed": int(sum(r["latency_missed"] for r in rows)),
        "changes": int(sum(r["changes"] for r in rows)),
        "weight_corr_mean": _mean(r["weight_corr"] for r in rows),
    }


def _vs_encoder(mem: list[dict[str, Any]], enc: list[dict[str, Any]]) -> dict[str, Any]:
    pairs = [(m["auc"], e["auc"]) for m, e in zip(mem, enc, strict=True)
             if math.isfinite(m["auc"]) and math.isfinite(e["auc"])]
    n = len(pairs)
    return {"people": n,
            "not_below": sum(m >= e - TIE_EPS for m, e in pairs) / n if n else float("nan"),
            "better": sum(m > e + TIE_EPS for m, e in pairs) / n if n else float("nan")}


def score_trace(trace: Mapping[str, Any], seq: Sequence, *, keep_trace: bool = False) -> dict[str, Any]:
    """One sequence's row: the published and the encoder's valence scored (:func:`score_output`), IDs, frames
    without a face, frames with more than one face, frames still seeding after ``seq.seed_frames``."""
    ids = {i for i in trace["ids"] if i}
    row: dict[str, Any] = {
        "memory": score_output(trace["valence"], seq),
        "encoder": score_output(trace["encoder_valence"], seq),
        "ids": len(ids),
        "frames_without_face": int(sum(1 for i in trace["ids"] if not i)),
        "extra_face_frames": int(trace["extra_faces"]),
        "seeding_frames_scored": int(np.asarray(trace["seeding"])[seq.seed_frames:].sum()),
    }
    if keep_trace:
        row["trace"] = {k: np.asarray(trace[k]).tolist()
                        for k in ("valence", "encoder_valence", "arousal", "encoder_arousal", "seeding")}
        row["trace"]["weights"] = seq.weights.tolist()
    return row


def evaluate(sequences: Iterable[Sequence], variants: Mapping[str, Callable[[], Any]], *,
             keep_traces: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every variant on every sequence, each in a fresh pipeline from the variant's factory (so a variant
    can be a memory mode or any ablation of one), and score the variant's valence and the encoder's side by
    side. Returns :func:`aggregate`'s report; ``keep_traces`` keeps each sequence's per-frame outputs."""
    names = list(variants)
    timing = {v: {"seconds": 0.0, "sequences": 0, "frames": 0} for v in names}
    rows: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}  # split -> protocol -> variant -> person -> row
    for seq in sequences:
        split = seq.split or "all"
        for name in names:
            t0 = time.perf_counter()
            pipeline = variants[name]()
            try:
                trace = run_sequence(pipeline, seq)
            finally:
                close = getattr(pipeline, "close", None)
                if close is not None:
                    close()
            dt = time.perf_counter() - t0
            timing[name]["seconds"] += dt
            timing[name]["sequences"] += 1
            timing[name]["frames"] += len(seq)
            row = score_trace(trace, seq, keep_trace=keep_traces)
            row["seconds"] = dt
            rows.setdefault(split, {}).setdefault(seq.protocol, {}).setdefault(name, {})[seq.person] = row
            if progress is not None:
                m, e = row["memory"], row["encoder"]
                progress(f"{split} {seq.person} {seq.protocol:<11} {name}: {dt:5.1f} s, AUC {m['auc']:.3f} "
                         f"(encoder {e['auc']:.3f}), std {m['std']:.3f}, IDs {row['ids']}, "
                         f"no face {row['frames_without_face']}")
    return aggregate(rows, timing)


def aggregate(rows: Mapping[str, Mapping[str, Mapping[str, Mapping[str, dict[str, Any]]]]],
              timing: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The report from per-sequence rows (``rows[split][protocol][variant][person]``, :func:`score_trace`):

    ``{"variants": {name: {"seconds", "sequences", "frames", "seconds_per_sequence", "ms_per_frame"}},
    "splits": {split: {"people": [...], "protocols": {protocol: {variant: {"memory": summary, "encoder":
    summary, "vs_encoder": {"people", "not_below", "better"}, "sequences_with_several_ids", "max_ids",
    "frames_without_face", "extra_face_frames", "seeding_frames_scored", "per_person": rows}}},
    "constant_any_protocol": {variant: {"memory": n, "encoder": n}}}}}``."""
    splits: dict[str, Any] = {}
    for split, protos in rows.items():
        people: set[str] = set()
        out_protos: dict[str, Any] = {}
        constant: dict[str, dict[str, set[str]]] = {}
        for proto, by_var in protos.items():
            out_protos[proto] = {}
            for name, persons in by_var.items():
                people.update(persons)
                mem = [r["memory"] for r in persons.values()]
                enc = [r["encoder"] for r in persons.values()]
                c = constant.setdefault(name, {"memory": set(), "encoder": set()})
                for who, r in persons.items():
                    for src in ("memory", "encoder"):
                        if r[src]["constant"]:
                            c[src].add(who)
                out_protos[proto][name] = {
                    "memory": _summary(mem), "encoder": _summary(enc), "vs_encoder": _vs_encoder(mem, enc),
                    "sequences_with_several_ids": int(sum(r["ids"] > 1 for r in persons.values())),
                    "max_ids": int(max((r["ids"] for r in persons.values()), default=0)),
                    "frames_without_face": int(sum(r["frames_without_face"] for r in persons.values())),
                    "extra_face_frames": int(sum(r["extra_face_frames"] for r in persons.values())),
                    "seeding_frames_scored": int(sum(r["seeding_frames_scored"] for r in persons.values())),
                    "per_person": dict(persons),
                }
        splits[split] = {"people": sorted(people), "protocols": out_protos,
                         "constant_any_protocol": {v: {k: len(x) for k, x in c.items()} for v, c in constant.items()}}
    timing = {k: dict(v) for k, v in (timing or {}).items()}
    for t in timing.values():
        n, f = t.get("sequences", 0), t.get("frames", 0)
        t["seconds_per_sequence"] = t["seconds"] / n if n else float("nan")
        t["ms_per_frame"] = 1000 * t["seconds"] / f if f else float("nan")
    order = {s: i for i, s in enumerate((*SPLITS, "all"))}
    return {"variants": timing, "splits": dict(sorted(splits.items(), key=lambda kv: order.get(kv[0], 9)))}


# ========================================================================================== report
def _f(x: Any, digits: int = 3) -> str:
    if isinstance(x, int | np.integer) and not isinstance(x, bool):
        return str(x)
    if isinstance(x, float | np.floating):
        if math.isnan(x):
            return "–"
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return f"{x:.{digits}f}"
    return str(x)


def _pct(x: Any) -> str:
    return f"{100 * x:.0f} %" if isinstance(x, float) and math.isfinite(x) else "–"


def markdown(report: dict[str, Any]) -> str:
    """The report's tables: per split, one row per protocol and output (each variant, and the encoder once
    where its scores are the same for every variant)."""
    lines: list[str] = []
    head = ("| protocol | output | AUC mean | AUC ≥ / > encoder | d′ median (∞) | smile − neutral | V neutral | "
            "V smile | std | constant | latency (missed/changes) | r(smile weight) | IDs > 1 | no face |")
    for split, s in report["splits"].items():
        lines += [f"**{split}** ({len(s['people'])} people)", "", head, "|" + "---|" * 14]
        for proto, by_var in s["protocols"].items():
            shown_encoder: list[str] = []
            same = len({to_json(r["encoder"]) for r in by_var.values()}) == 1
            for name, r in by_var.items():
                for src in ("memory", "encoder"):
                    x = r[src]
                    if src == "encoder":
                        if to_json(x) in shown_encoder:  # the same frames scored the same: shown once
                            continue
                        shown_encoder.append(to_json(x))
                    label = name if src == "memory" else ("encoder" if same else f"encoder ({name})")
                    vs = (f"{_pct(r['vs_encoder']['not_below'])} / {_pct(r['vs_encoder']['better'])}"
                          if src == "memory" else "")
                    lines.append(
                        f"| {proto} | {label} | {_f(x['auc_mean'])} | {vs} | {_f(x['dprime_median'], 2)} "
                        f"({x['dprime_infinite']}) | {_f(x['diff_mean'])} | {_f(x['mean_neutral'])} | "
                        f"{_f(x['mean_smile'])} | {_f(x['std_mean'])} | {x['constant_people']} | "
                        f"{_f(x['latency_median'], 1)} ({x['latency_missed']}/{x['changes']}) | "
                        f"{_f(x['weight_corr_mean'], 2)} | {r['sequences_with_several_ids']} | "
                        f"{r['frames_without_face']} |")
        const = ", ".join(f"{v}: {c['memory']} (encoder {c['encoder']})" for v, c in s["constant_any_protocol"].items())
        lines += ["", f"Constant-output people in any protocol: {const}.", ""]
    if report.get("skipped_people"):
        lines += ["Left out (no face found in a photo): "
                  + ", ".join(f"{p['identity']} ({p['split']})" for p in report["skipped_people"]) + ".", ""]
    lines.append("| variant | sequences | s per sequence | ms per frame |")
    lines.append("|---|---|---|---|")
    for name, t in report["variants"].items():
        lines.append(f"| {name} | {t['sequences']} | {_f(t['seconds_per_sequence'], 1)} | "
                     f"{_f(t['ms_per_frame'], 1)} |")
    m = report.get("machine")
    if m:
        load = m.get("load_average_before")
        lines += ["", f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')} with "
                      f"{m.get('torch_threads')} thread" + (f"; load average {load[0]} at the start" if load else "")
                  + "."]
    return "\n".join(lines) + "\n"


def from_json(text: str) -> dict[str, Any]:
    """A report back from :func:`to_json` (null -> NaN, "inf"/"-inf" -> ±inf), e.g. to redo its tables."""
    def back(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: back(v) for k, v in o.items()}
        if isinstance(o, list):
            return [back(v) for v in o]
        if o is None:
            return float("nan")
        if o in ("inf", "-inf"):
            return float(o)
        return o
    return back(json.loads(text))  # type: ignore[no-any-return]


# =============================================================================================== CLI
def mode_factory(mode: str, device: str = "cpu", encoder: str | None = None, **config: Any) -> Callable[[], Any]:
    """A factory of fresh deterministic (``background=False``) pipelines in one memory mode."""
    from ..modes import MemorySettings
    from ..pipeline import AffectPipeline, PipelineConfig

    kw = dict(config, device=device)
    if encoder:
        kw["encoder"] = encoder
    cfg, mem = PipelineConfig(**kw), MemorySettings(memory_mode=mode)
    return functools.partial(AffectPipeline, cfg, mem, background=False)


#: The personal mode's rules, each switched back to the paper's (or, for the temporal filter, switched on):
#: the rows that justify each departure from P-AffMem (docs/memory.md).
ABLATIONS: dict[str, dict[str, Any]] = {
    "personal/paper_labels": {"real_labels": False},  # real faces move prototypes, never labels
    "personal/bmu_readout": {"readout_k": 1},  # the best-matching neuron's label
    "personal/no_calibration": {"calibrate": False},  # no personal rest reading
    "personal/raw_codes": {"unit_codes": False},  # codes as the encoder gives them
    "personal/label_rate_0.2": {"label_rate": 0.2},  # faster labels
    "personal/temporal_filter": {"settle": 0.1, "follow": 0.25},  # an adaptive filter on the reading
    "personal/code_only": {"affect_weight": 0.0},  # the GWR sees the code alone, not the reading too
    "personal/quantile_rest": {"rest": "quantile"},  # rest = a low quantile of recent readings
    "personal/no_novelty": {"novelty_power": 0.0},  # novel faces read the nearest prototype's label alone
    "personal/established_rest": {"rest_now": False},  # only established neurons can be the rest
    "personal/affect_weight_1": {"affect_weight": 1.0},  # the reading weighs as much as the unit code
}


def rules_factory(changes: Mapping[str, Any], device: str = "cpu", encoder: str | None = None) -> Callable[[], Any]:
    """A factory of fresh pipelines in the ``personal`` mode with some of its rules changed."""
    import dataclasses

    from ..modes import MemorySettings
    from ..modes.base import learns_edits
    from ..modes.personal import PersonalMemory, PersonalRules

    rules = dataclasses.replace(PersonalRules(), **changes)
    settings = MemorySettings(memory_mode="personal")
    make = mode_factory("personal", device, encoder)

    def build() -> Any:
        pipeline = make()
        enc = pipeline.encoder
        pipeline.memory_factory = lambda: PersonalMemory.create(settings, enc.code_dim,
                                                                  learns_edits(enc.can_edit, enc.name), rules)
        return pipeline

    return build


def default_variants() -> tuple[str, ...]:
    """Every registered mode, with the default encoder where the mode works with it, else with the PK
    (``mode@pk``: modes that seed from edits need an encoder that can edit faces); the personal mode
    also with the PK."""
    from ..encoders import DEFAULT_ENCODER, encoder_class
    from ..modes import MODES, MemorySettings, make_memory

    can_edit = encoder_class(DEFAULT_ENCODER).can_edit
    out = []
    for mode in MODES:
        try:
            make_memory(MemorySettings(memory_mode=mode), 8, can_edit=can_edit)
            out.append(mode)
        except ValueError:
            out.append(f"{mode}@pk")
    if DEFAULT_ENCODER != "pk" and "personal" in MODES:
        out.append("personal@pk")
    return tuple(out)


def variant_factory(name: str, device: str = "cpu", encoder: str | None = None) -> Callable[[], Any]:
    """``mode``, ``mode@encoder`` or an :data:`ABLATIONS` name (``...@encoder`` too) -> a pipeline factory."""
    base, _, enc = name.partition("@")
    enc = enc or encoder or ""
    if base in ABLATIONS:
        return rules_factory(ABLATIONS[base], device, enc or None)
    return mode_factory(base, device, enc or None)


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _load() -> list[float] | None:
    """1, 5 and 15 minute load averages: timings on a shared machine mean little without them."""
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def _splits(arg: str) -> tuple[str, ...]:
    parts = [p.strip() for p in arg.split(",") if p.strip()]
    if "all" in parts:
        return SPLITS
    bad = [p for p in parts if p not in SPLITS]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"--split: choose from tune, val, train, all (comma-separated); got {arg!r}")
    return tuple(dict.fromkeys(parts))


def _list(arg: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in arg.split(",") if p.strip()))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--people", required=True, metavar="DIR",
                        help="folder with labels.csv (file, label neutral/happy, identity), e.g. London FRL")
    parser.add_argument("--split", default="tune,val", type=_splits,
                        help="people to run, reported per split: tune, val, train, all, or a comma list "
                             "(default tune,val)")
    parser.add_argument("--modes", default=None, type=_list,
                        help="comma-separated variants: a memory mode, optionally @encoder (e.g. paper@pk), or a "
                             "rule ablation of the personal mode (--list-ablations); default: every registered "
                             "mode, with the PK where the mode needs edits")
    parser.add_argument("--ablations", action="store_true",
                        help="add the personal mode's rule ablations (docs/memory.md) to the variants")
    parser.add_argument("--encoder", default=None, help="encoder (default: the pipeline's default)")
    parser.add_argument("--device", default="cpu", help="cpu (default, deterministic), cuda or auto")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), type=_list,
                        help=f"comma-separated protocols (default {','.join(PROTOCOLS)})")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="at most N people per split")
    parser.add_argument("--seed", type=int, default=0, help="seed of placement, jitter and noise")
    parser.add_argument("--seed-frames", type=int, default=SEED_FRAMES, help=argparse.SUPPRESS)  # quick checks
    parser.add_argument("--segment", type=int, default=SEGMENT, help=argparse.SUPPRESS)
    parser.add_argument("--markdown", metavar="FILE", help="also write the tables here")
    parser.add_argument("--traces", action="store_true", help="include per-frame valences in the JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..modes import MODES

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from ..encoders import ENCODERS

    modes = tuple(args.modes or default_variants()) + (tuple(ABLATIONS) if args.ablations else ())
    unknown = [m for m in modes if m.partition("@")[0] not in (*MODES, *ABLATIONS)
               or (m.partition("@")[2] and m.partition("@")[2] not in ENCODERS)]
    if unknown:
        print(f"unknown variant(s) {', '.join(unknown)}; modes: {', '.join(MODES)}; ablations: "
              f"{', '.join(ABLATIONS)}; encoders (after @): {', '.join(ENCODERS)}", file=sys.stderr)
        return 2
    bad = [p for p in args.protocols if p not in PROTOCOLS]
    if bad or not args.protocols:
        print(f"unknown protocol(s) {', '.join(bad)}; choose from {', '.join(PROTOCOLS)}", file=sys.stderr)
        return 2
    if not (Path(args.people) / "labels.csv").is_file():
        print(f"{args.people}: no labels.csv", file=sys.stderr)
        return 2
    people = load_people(args.people, args.split, args.limit)
    if not people:
        print(f"{args.people}: no person with a neutral and a smiling photo in split(s) {','.join(args.split)}",
              file=sys.stderr)
        return 2
    variants = {m: variant_factory(m, args.device, args.encoder) for m in modes}
    progress = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    load_before = _load()
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(1))
        skipped: list[dict[str, str]] = []
        sequences = make_sequences(people, args.protocols, args.seed, seed_frames=args.seed_frames,
                                   segment=args.segment, skipped=skipped)
        report = evaluate(sequences, variants,
                          keep_traces=args.traces, progress=progress)
    report = {
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "people_dir": str(args.people), "splits_run": list(args.split), "protocols": list(args.protocols),
        "modes": list(modes), "encoder": args.encoder or "default", "device": args.device, "seed": args.seed,
        "seed_frames": args.seed_frames, "segment": args.segment,
        "people": {s: sum(p.split == s for p in people) for s in args.split},
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": 1, "load_average_before": load_before,
                    "load_average_after": _load()},
        "skipped_people": skipped, "seconds": time.perf_counter() - t0,
        **report,
    }
    print(to_json(report))
    if args.markdown:
        from ..atomic_io import atomic_write_bytes

        atomic_write_bytes(args.markdown, markdown(report).encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="affective-memory bench-personal",
                                     description=(__doc__ or "").split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
