"""The CLIFER evaluation on data in reach (issue 16), and the dual memory's speed.

Per person of a folder with one neutral and one smiling photo each (``labels.csv`` with ``file``,
``label`` = neutral / happy, ``identity``; London FRL), split by
:func:`~affective_memory_ros.splits.split_of` (``tune`` and ``val`` reported apart):

* **frames**: jittered copies of the aligned crop (rotation ±4°, scale ±4 %, shift ±3 px, gain 0.85-1.15,
  offset ±10, noise σ 3 grey levels); the training frames and the held-out test frames are distinct draws;
* **phase 1**: the memory learns the person's neutral training frames (real, plus imagined where the
  condition imagines), then is tested on held-out neutral frames and held-out frames of their smile, an
  expression it has never seen from this person (CLIFER's "generalise to unseen classes");
* **phase 2**: it learns the smile's training frames, then is tested on both again ("remember").

Scores (per person, then mean and standard deviation over people): macro-F1 over the two true classes
(neutral, happiness; a prediction of any other class is a miss), and the share of held-out smiles read as
happiness after phase 1 (``smile``), for the episodic and the semantic memory.

Conditions (CLIFER's ablation as far as one photo per class allows):

* ``mlp``: CLIFER's MLP baseline (50-64-32-16-classes, Adam 0.002, 20 epochs per class);
* ``gdm``: the dual memory without imagination or replay (5-frame mini-batches, 10 epochs each);
* ``gdm+replay``: plus CLIFER's replay (from a class's second mini-batch, the previous snapshot of the
  episodic prototypes: 3 epochs through the episodic, 3 through the semantic memory);
* ``clifer(direct)``: plus imagination as CLIFER does it: E(G(z, c)) for every expression c, 5 epochs
  after the class's real frames, then a one-shot replay of the episodic prototypes;
* ``clifer(offset s)``: the same with our offset imagination, z + s (E(G(z, c)) - E(G(z, own))), for each
  scale s given; ``mlp+imagination``: the MLP on real plus offset-imagined codes (the tune-chosen s);
* ``mode(online, ...)``: the shipped mode itself, driven as the pipeline drives it (each frame learned
  once, imagination through :meth:`~affective_memory_ros.modes.clifer.CliferMemory.edit_targets`), with the
  encoder's labels (what the robot has) and with the dataset's labels (a perfect categorical head).

Imagination is computed from the first ``--imagine-frames`` training frames of each class (the frames are
copies of one photo; the PK's edits cost about 50 ms each on a 2-core CPU). Labels of training frames are
the dataset's (as CLIFER's), except in ``mode(online, encoder labels)``. With ``--encoder facechannel_pk``
(the node's encoder of the same name) the memories learn the FaceChannel's codes and imagination renders each
crop with the PK's G at the targets, which the FaceChannel then encodes: the imagined codes live in the
memories' space. ``--encoder E --imagine-with pk`` builds the same pairing
(:class:`~affective_memory_ros.encoders.facechannel_pk.RenderedEditsEncoder`) for any reader E.

Run: ``python -m affective_memory_ros.bench.clifer --people ../shared/data/london_frl --json clifer.json
--markdown clifer.md`` (``--speed-only`` for the speed numbers alone).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..expressions import EXPRESSIONS, NUM_EXPRESSIONS, expression_index
from ..memory.gamma import DualMemory, GammaConfig, GammaGWR, semantic_config
from ..splits import split_of

NEUTRAL, HAPPY = EXPRESSIONS.index("neutral"), EXPRESSIONS.index("happiness")
MINIBATCH, EPOCHS = 5, 10  # CLIFER: 5-frame mini-batches, 10 epochs each
REPLAY_EPOCHS = 3  # CLIFER's GDM+Replay: 3 epochs through each memory
IMAGINE_EPOCHS = 5  # CLIFER: 5 epochs on the imagined codes
MLP_EPOCHS, MLP_LR = 20, 0.002
CACHE_VERSION = 1


# ============================================================================================== data
@dataclass
class Person:
    identity: str
    split: str
    neutral: np.ndarray  # (96, 96, 3) uint8 RGB aligned crop
    happy: np.ndarray


def load_people(root: str | Path, splits: tuple[str, ...] = ("tune", "val"),
                cache_dir: str | Path | None = ".cache/clifer", limit: int | None = None) -> list[Person]:
    """People with a neutral and a happy photo, their aligned crops cut by the package's own detector and
    aligner (:func:`~affective_memory_ros.pk.data.crop_records`), cached by labels.csv content."""
    base = Path(root)
    with (base / "labels.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("identity")
                and expression_index(r.get("label")) in (NEUTRAL, HAPPY)
                and split_of(r["identity"], has_identities=True) in splits]
    key = hashlib.sha1(json.dumps([CACHE_VERSION, str(base.resolve()), rows]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"{base.name}-{key}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            crops, keep = z["crops"], z["keep"]
    else:
        from ..perception.detectors import make_detector
        from ..pk.data import FaceRecord, crop_records

        detector = make_detector("blazeface_short")
        got = [crop_records([FaceRecord(str(base / r["file"]))], detector) for r in rows]
        keep = np.array([len(g) == 1 for g in got], bool)
        crops = np.stack([g.crops[0] for g in got if len(g)]) if keep.any() else np.zeros((0, 96, 96, 3), np.uint8)
        if cache is not None:
            from ..atomic_io import atomic_write_bytes

            buffer = io.BytesIO()
            np.savez_compressed(buffer, crops=crops, keep=keep)
            atomic_write_bytes(cache, buffer.getvalue())
    faces: dict[str, dict[int, np.ndarray]] = {}
    for row, crop in zip([r for r, k in zip(rows, keep, strict=True) if k], crops, strict=True):
        faces.setdefault(row["identity"], {}).setdefault(expression_index(row["label"]), crop)
    people = [Person(ident, split_of(ident, has_identities=True), f[NEUTRAL], f[HAPPY])
              for ident, f in sorted(faces.items()) if NEUTRAL in f and HAPPY in f]
    if limit is not None:
        people = [p for s in splits for p in [q for q in people if q.split == s][:limit]]
    return people


def _seed(*parts: object) -> int:
    return int(hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def jitter_frames(crop: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` camera-like copies of an aligned crop (see the module docstring), deterministic for ``seed``."""
    import cv2

    rng = np.random.default_rng(seed)
    size = crop.shape[0]
    out = np.empty((n, *crop.shape), np.uint8)
    for i in range(n):
        m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-4, 4), 1 + rng.uniform(-0.04, 0.04))
        m[:, 2] += rng.uniform(-3, 3, 2)
        w = cv2.warpAffine(crop, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        w = w.astype(np.float32) * rng.uniform(0.85, 1.15) + rng.uniform(-10, 10) + rng.normal(0, 3, w.shape)
        out[i] = np.clip(np.rint(w), 0, 255).astype(np.uint8)
    return out


@dataclass
class Frames:
    """One class of one person: training and held-out codes, A/V and probabilities; imagination."""

    train: np.ndarray  # (F, D)
    train_av: np.ndarray  # (F, 2)
    train_probs: np.ndarray  # (F, 8)
    test: np.ndarray  # (T, D)
    #: What the encoder edits from, per training frame (:attr:`~..encoders.base.Encoding.edit_sources`).
    train_edit: np.ndarray  # (F, E)
    #: Edits of the first training frames: (I, 1 + C, D), at [the frame's own A/V reading, each prototype].
    edits: np.ndarray
    edit_targets: np.ndarray  # (I, 1 + C, 2)


def encode_person(encoder: Any, person: Person, train: int, test: int, imagine: int, imagined: tuple[str, ...],
                  seed: int = 0) -> dict[int, Frames]:
    """Codes of one person's frames and of their imagined expressions: ``encoder``'s edits (the PK's
    E(G(z, target)); ``facechannel_pk``'s: the FaceChannel's codes of G's renders), as the pipeline asks
    for them (from :attr:`~..encoders.base.Encoding.edit_sources`)."""
    from ..modes.clifer import EXPRESSION_AV

    out = {}
    protos = np.array([EXPRESSION_AV[n] for n in imagined], np.float32)
    for cls, crop in ((NEUTRAL, person.neutral), (HAPPY, person.happy)):
        tr_crops = jitter_frames(crop, train, _seed(seed, person.identity, cls, "train"))
        tr = encoder.encode(tr_crops)
        te = encoder.encode(jitter_frames(crop, test, _seed(seed, person.identity, cls, "test")))
        k = min(imagine, train)
        if k and getattr(encoder, "can_edit", False):
            own = np.clip(np.nan_to_num(tr.av[:k]), -1, 1)
            targets = np.concatenate([own[:, None], np.broadcast_to(protos, (k, *protos.shape))], axis=1)
            flat = encoder.edit_and_encode(np.repeat(tr.edit_sources[:k], targets.shape[1], axis=0),
                                           targets.reshape(-1, 2))
            edits = flat.reshape(k, targets.shape[1], -1)
        else:
            targets = np.zeros((0, len(imagined) + 1, 2), np.float32)
            edits = np.zeros((0, len(imagined) + 1, tr.code.shape[1]), np.float32)
        out[cls] = Frames(tr.code, tr.av, tr.probs, te.code, np.asarray(tr.edit_sources, np.float32),
                          edits.astype(np.float32), targets.astype(np.float32))
    return out


def imagination(frames: Frames, imagined: tuple[str, ...], kind: str, scale: float = 1.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Imagined codes, classes and A/V targets of one class's frames (``kind`` "direct" or "offset")."""
    from ..modes.clifer import imagined_codes

    classes = np.array([EXPRESSIONS.index(n) for n in imagined], np.int64)
    xs, cs, avs = [], [], []
    for i in range(len(frames.edits)):
        ref = frames.edits[i, 0] if kind == "offset" else None
        xs.append(imagined_codes(frames.train[i], frames.edits[i, 1:], ref, scale))
        cs.append(classes)
        avs.append(frames.edit_targets[i, 1:])
    if not xs:
        return np.zeros((0, frames.train.shape[1]), np.float32), np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
    return np.concatenate(xs), np.concatenate(cs), np.concatenate(avs)


# ============================================================================================ scores
def macro_f1(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean F1 over the classes present in ``true``; predictions of other classes count as misses."""
    f1s = []
    for c in np.unique(true):
        tp = int(((pred == c) & (true == c)).sum())
        fp, fn = int(((pred == c) & (true != c)).sum()), int(((pred != c) & (true == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1s)) if f1s else float("nan")


def scores(pred_n: np.ndarray, pred_h: np.ndarray) -> dict[str, float]:
    """F1 over held-out neutral + smile frames, and the share of smiles read as happiness."""
    true = np.r_[np.full(len(pred_n), NEUTRAL), np.full(len(pred_h), HAPPY)]
    return {"f1": macro_f1(np.r_[pred_n, pred_h], true), "smile": float(np.mean(pred_h == HAPPY))}


# ======================================================================================== conditions
Predictor = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # codes -> (episodic, semantic) classes


def _gdm_phase(dual: DualMemory, f: Frames, cls: int, replay: bool, imag: tuple[np.ndarray, ...] | None) -> None:
    snapshot = None
    for b, start in enumerate(range(0, len(f.train), MINIBATCH)):
        if replay and b >= 1 and snapshot is not None:
            dual.replay(REPLAY_EPOCHS, REPLAY_EPOCHS, snapshot)
        for _ in range(EPOCHS):
            for x, av in zip(f.train[start:start + MINIBATCH], f.train_av[start:start + MINIBATCH], strict=True):
                dual.learn(x, cls, av)
        dual.reset_context()
        if replay:
            snapshot = dual.episodic.replay_samples()
    if imag is not None and len(imag[0]):
        dual.learn_imagined(imag[0], imag[1], imag[2], IMAGINE_EPOCHS)
        dual.replay(1, 1)


def run_gdm(frames: dict[int, Frames], episodic: GammaConfig, replay: bool = False, kind: str | None = None,
            scale: float = 1.0, imagined: tuple[str, ...] = ()) -> dict[str, Any]:
    dual = DualMemory.create(episodic, semantic_config(episodic))
    out: dict[str, Any] = {}
    for phase, cls in ((1, NEUTRAL), (2, HAPPY)):
        imag = imagination(frames[cls], imagined, kind, scale) if kind else None
        _gdm_phase(dual, frames[cls], cls, replay, imag)
        rn, rh = dual.predict(frames[NEUTRAL].test), dual.predict(frames[HAPPY].test)
        out[f"p{phase}"] = {"episodic": scores(rn.episodic.classes, rh.episodic.classes),
                            "semantic": scores(rn.semantic.classes, rh.semantic.classes)}
    out["neurons"] = [len(dual.episodic), len(dual.semantic)]
    return out


class MLP:
    """CLIFER's baseline classifier, 50-64-32-16-classes with ReLU, softmax cross-entropy and Adam, in
    numpy (a few hundred tiny steps: torch's per-call overhead would dominate). PyTorch's default
    initialisation: weights and biases uniform in ±1/sqrt(fan_in)."""

    def __init__(self, sizes: tuple[int, ...], lr: float = MLP_LR, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.params = []
        for fan_in, fan_out in itertools.pairwise(sizes):
            bound = 1.0 / np.sqrt(fan_in)
            self.params += [rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.lr, self.t = lr, 0

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        acts = [np.asarray(x, np.float64)]
        for i in range(0, len(self.params), 2):
            z = acts[-1] @ self.params[i] + self.params[i + 1]
            acts.append(np.maximum(z, 0.0) if i + 2 < len(self.params) else z)
        return acts

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[-1].argmax(axis=1)

    def step(self, x: np.ndarray, y: np.ndarray) -> None:
        acts = self.forward(x)
        logits = acts[-1] - acts[-1].max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = p
        grad[np.arange(len(y)), y] -= 1.0
        grad /= len(y)
        grads = [np.empty(0)] * len(self.params)
        for i in range(len(self.params) - 2, -1, -2):
            grads[i], grads[i + 1] = acts[i // 2].T @ grad, grad.sum(axis=0)
            if i:
                grad = (grad @ self.params[i].T) * (acts[i // 2] > 0)
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for k, g in enumerate(grads):
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            m_hat, v_hat = self.m[k] / (1 - b1**self.t), self.v[k] / (1 - b2**self.t)
            self.params[k] -= self.lr * m_hat / (np.sqrt(v_hat) + eps)


def run_mlp(frames: dict[int, Frames], imag: dict[int, tuple[np.ndarray, ...]] | None = None,
            seed: int = 0) -> dict[str, Any]:
    """CLIFER's MLP baseline, trained class after class (no memory of earlier classes but its weights)."""
    dim = frames[NEUTRAL].train.shape[1]
    net = MLP((dim, 64, 32, 16, NUM_EXPRESSIONS), seed=seed)
    gen = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for phase, cls in ((1, NEUTRAL), (2, HAPPY)):
        xs, ys = frames[cls].train, np.full(len(frames[cls].train), cls)
        if imag is not None and len(imag[cls][0]):
            xs, ys = np.concatenate([xs, imag[cls][0]]), np.concatenate([ys, imag[cls][1]])
        for _ in range(MLP_EPOCHS):
            order = gen.permutation(len(xs))
            for i in range(0, len(xs), MINIBATCH):
                idx = order[i:i + MINIBATCH]
                net.step(xs[idx], ys[idx])
        s = scores(net.predict(frames[NEUTRAL].test), net.predict(frames[HAPPY].test))
        out[f"p{phase}"] = {"episodic": s, "semantic": s}  # one network: the same numbers in both columns
    return out


class _CachedEdits:
    """An encoder's ``edit_and_encode`` answered from edits already computed (exact edit source and target)."""

    def __init__(self, encoder: Any, frames: dict[int, Frames]) -> None:
        self.encoder = encoder
        self.table: dict[bytes, np.ndarray] = {}
        for f in frames.values():
            for i in range(len(f.edits)):
                for j in range(f.edits.shape[1]):
                    self.table[f.train_edit[i].tobytes() + f.edit_targets[i, j].tobytes()] = f.edits[i, j]
        self.misses = 0

    def edit_and_encode(self, codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        rows = []
        for z, t in zip(np.asarray(codes, np.float32), np.asarray(targets, np.float32), strict=True):
            hit = self.table.get(z.tobytes() + t.tobytes())
            if hit is None:
                self.misses += 1
                hit = self.encoder.edit_and_encode(z[None], t[None])[0]
            rows.append(hit)
        return np.stack(rows)


def run_mode(frames: dict[int, Frames], editor: Any, code_dim: int, true_labels: bool, rules: Any,
             fps: float = 30.0) -> dict[str, Any]:
    """The shipped mode, driven as the pipeline drives it: each training frame learned once, in order, and
    the mode's own edit requests answered after each frame; the read-outs of :meth:`recall`."""
    from ..modes import Face, MemorySettings
    from ..modes.clifer import CliferMemory

    memory = CliferMemory.create(MemorySettings(), code_dim, can_edit=editor is not None, rules=rules)
    out: dict[str, Any] = {}
    t = 0.0
    for phase, cls in ((1, NEUTRAL), (2, HAPPY)):
        f = frames[cls]
        for i in range(len(f.train)):
            probs = np.eye(NUM_EXPRESSIONS, dtype=np.float32)[cls] if true_labels else f.train_probs[i]
            memory.learn(Face(f.train[i], f.train_av[i], probs, t))
            t += 1.0 / fps
            if editor is not None and memory.edits_wanted:
                targets = memory.edit_targets(48)
                if len(targets):
                    sources = np.repeat(f.train_edit[i][None], len(targets), 0)  # as the pipeline asks
                    memory.seed(editor.edit_and_encode(sources, targets), targets)
        preds = {}
        for c in (NEUTRAL, HAPPY):
            readings = [memory.recall(Face(x, np.zeros(2, np.float32), np.full(NUM_EXPRESSIONS, np.nan), t))
                        for x in frames[c].test]
            preds[c] = {m: np.array([expression_index(getattr(r, f"{m}_expression")) for r in readings])
                        for m in ("episodic", "semantic")}
        out[f"p{phase}"] = {m: scores(preds[NEUTRAL][m], preds[HAPPY][m]) for m in ("episodic", "semantic")}
    out["neurons"] = [len(memory.dual.episodic), len(memory.dual.semantic)]
    return out


# ========================================================================================= aggregate
METRICS = (("p1", "f1"), ("p1", "smile"), ("p2", "f1"))


def aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"people": len(results)}
    for memory in ("episodic", "semantic"):
        for phase, metric in METRICS:
            v = np.array([r[phase][memory][metric] for r in results], np.float64)
            out[f"{memory}.{phase}.{metric}"] = {"mean": round(float(v.mean()), 4), "std": round(float(v.std()), 4)}
    return out


def evaluate(people: list[Person], encoder: Any, *, train: int = 20, test: int = 20, imagine: int = 5,
             scales: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0), mlp: bool = True, mode: bool = True, seed: int = 0,
             distance_scale: float | None = None, imagine_scale: float | None = None,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every condition on every person; per split: the aggregate of each condition; per person: everything.
    ``distance_scale``: sigma of every memory, ``imagine_scale``: the offset scale of the mode and of
    ``mlp+imagination`` (defaults: the mode's for ``encoder``, :func:`~..modes.clifer.rules_for`)."""
    from ..modes.clifer import rules_for

    rules = rules_for(encoder.name)
    if distance_scale is not None:
        rules = dataclasses.replace(rules, distance_scale=distance_scale)
    if imagine_scale is not None:
        rules = dataclasses.replace(rules, imagine_scale=imagine_scale)
    imagined = rules.imagined
    episodic = GammaConfig(dim=encoder.code_dim, distance_scale=rules.distance_scale)
    per_person: dict[str, Any] = {}
    t0 = time.time()
    for k, person in enumerate(people):
        frames = encode_person(encoder, person, train, test, imagine, imagined, seed)
        res: dict[str, Any] = {"gdm": run_gdm(frames, episodic), "gdm+replay": run_gdm(frames, episodic, replay=True)}
        if len(frames[NEUTRAL].edits):
            res["clifer(direct)"] = run_gdm(frames, episodic, kind="direct", imagined=imagined)
            for s in scales:
                res[f"clifer(offset {s:g})"] = run_gdm(frames, episodic, kind="offset", scale=s, imagined=imagined)
        if mlp:
            res["mlp"] = run_mlp(frames, seed=seed)
            if len(frames[NEUTRAL].edits):
                imag = {c: imagination(frames[c], imagined, "offset", rules.imagine_scale) for c in frames}
                res["mlp+imagination"] = run_mlp(frames, imag, seed=seed)
        if mode:
            editor = _CachedEdits(encoder, frames) if len(frames[NEUTRAL].edits) else None
            mode_rules = dataclasses.replace(rules, imagine_frames=imagine) if editor is not None else rules
            res["mode(online, encoder labels)"] = run_mode(frames, editor, encoder.code_dim, False, mode_rules)
            res["mode(online, true labels)"] = run_mode(frames, editor, encoder.code_dim, True, mode_rules)
        per_person[person.identity] = {"split": person.split, **res}
        if log:
            log(f"[{k + 1}/{len(people)}] {person.identity} ({person.split}) {time.time() - t0:.0f} s")
    splits: dict[str, Any] = {}
    for split in sorted({p.split for p in people}):
        rows = [r for r in per_person.values() if r["split"] == split]
        names = [n for n in rows[0] if n != "split"]
        splits[split] = {n: aggregate([r[n] for r in rows]) for n in names}
    best = None
    if "tune" in splits:
        offsets = [n for n in splits["tune"] if n.startswith("clifer(offset")]
        if offsets:
            best = max(offsets, key=lambda n: splits["tune"][n]["episodic.p1.f1"]["mean"])
    return {"splits": splits, "people": per_person, "chosen_on_tune": best,
            "protocol": {"train_frames": train, "test_frames": test, "imagine_frames": imagine, "scales": list(scales),
                         "imaginer": getattr(getattr(encoder, "editor", None), "name", None),
                         "minibatch": MINIBATCH, "epochs": EPOCHS, "imagined": list(imagined), "seed": seed,
                         "episodic": json.loads(episodic.to_json()),
                         "semantic": json.loads(semantic_config(episodic).to_json()),
                         "mode_rules": json.loads(rules.to_json())}}


def markdown(report: dict[str, Any]) -> str:
    lines = []
    for split, conds in report["splits"].items():
        n = next(iter(conds.values()))["people"]
        lines += [f"**{split}** ({n} people): macro-F1 (neutral, happiness) on held-out frames, mean ± sd over "
                  "people; *smile* = share of the unseen smile read as happiness after phase 1", "",
                  "| condition | episodic F1, neutral learned | episodic smile | episodic F1, both learned "
                  "| semantic F1, neutral learned | semantic smile | semantic F1, both learned |",
                  "|---|---|---|---|---|---|---|"]
        for name, agg in conds.items():
            cells = [f"{agg[f'{m}.{p}.{k}']['mean']:.2f} ± {agg[f'{m}.{p}.{k}']['std']:.2f}"
                     for m in ("episodic", "semantic") for p, k in METRICS]
            mark = " (chosen on tune)" if name == report.get("chosen_on_tune") else ""
            lines.append(f"| {name}{mark} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# ============================================================================================ speed
def build_gamma(n: int, gamma: GammaConfig, seed: int = 0) -> GammaGWR:
    """A Gamma-GWR of ``n`` neurons built directly (the memory benchmark's ring lattice), one class each."""
    from .memory import build_network

    rng = np.random.default_rng(seed)
    net = GammaGWR.from_core(gamma, build_network(n, gamma.core(), seed))
    net._hist[np.arange(n), rng.integers(0, gamma.num_classes, n)] = 5.0
    net._av_count[:n] = 3.0
    return net


def time_dual(n: int = 2000, n_semantic: int = 1000, steps: int = 2000, dim: int = 50, seed: int = 0
              ) -> dict[str, float]:
    """Median / p90 microseconds of one :meth:`DualMemory.learn` (episodic step + semantic step) at ``n``
    episodic and ``n_semantic`` semantic neurons, on ordinary (non-inserting) steps; random classes make
    the semantic memory mostly wrong, so it mostly updates (its dearer path)."""
    rng = np.random.default_rng(seed)
    ep = dataclasses.replace(GammaConfig(dim=dim), activity_threshold=0.0, max_neurons=2 * n, max_age=10**6)
    se = dataclasses.replace(semantic_config(GammaConfig(dim=dim)), activity_threshold=0.0,
                             max_neurons=2 * n_semantic, max_age=10**6)
    dual = DualMemory(build_gamma(n, ep, seed), build_gamma(n_semantic, se, seed + 1))
    xs = (dual.episodic.prototypes[rng.integers(0, n, steps)] + rng.normal(0, 0.05, (steps, dim))).astype(np.float32)
    avs = rng.uniform(-1, 1, (steps, 2)).astype(np.float32)
    classes = rng.integers(0, NUM_EXPRESSIONS, steps)
    ns = []
    for x, c, y in zip(xs, classes, avs, strict=True):
        t0 = time.perf_counter_ns()
        dual.learn(x, int(c), y)
        ns.append(time.perf_counter_ns() - t0)
    return {"dual_step_us_median": round(float(np.median(ns)) / 1e3, 2),
            "dual_step_us_p90": round(float(np.percentile(ns, 90)) / 1e3, 2),
            "semantic_skipped_share": round(dual.semantic.skipped / steps, 3)}


def time_mode(n: int = 2000, steps: int = 500, dim: int = 50, seed: int = 0) -> dict[str, float]:
    """Median microseconds per face of the mode itself at ``n`` episodic neurons: learn (dual step plus one
    replayed trajectory) and recall."""
    from ..modes import Face
    from ..modes.clifer import CliferMemory, CliferRules

    rng = np.random.default_rng(seed)
    rules = CliferRules(imagine=False)
    ep, se = CliferMemory.configs(dim, 2 * n, rules)
    ep = dataclasses.replace(ep, activity_threshold=0.0, max_age=10**6)
    se = dataclasses.replace(se, activity_threshold=0.0, max_age=10**6)
    memory = CliferMemory(DualMemory(build_gamma(n, ep, seed), build_gamma(n // 2, se, seed + 1)), rules, 0)
    xs = (memory.dual.episodic.prototypes[rng.integers(0, n, steps)] + rng.normal(0, 0.05, (steps, dim)))
    learn_ns, recall_ns = [], []
    for i, x in enumerate(xs.astype(np.float32)):
        face = Face(x, rng.uniform(-1, 1, 2).astype(np.float32), np.full(NUM_EXPRESSIONS, np.nan), i / 30)
        t0 = time.perf_counter_ns()
        memory.learn(face)
        t1 = time.perf_counter_ns()
        memory.recall(face)
        recall_ns.append(time.perf_counter_ns() - t1)
        learn_ns.append(t1 - t0)
    return {"mode_learn_us_median": round(float(np.median(learn_ns)) / 1e3, 2),
            "mode_recall_us_median": round(float(np.median(recall_ns)) / 1e3, 2)}


def speed(n: int = 2000, steps: int = 2000, dim: int = 50) -> dict[str, Any]:
    """The dual memory's step next to today's single-GWR step, measured in the same process."""
    from .memory import time_steps

    single = time_steps(n, dim, steps)
    dual = time_dual(n, n // 2, steps, dim)
    dual_full = time_dual(n, n, steps, dim)
    return {"neurons": n, "dim": dim, "single_gwr": single, "dual": dual, "dual_semantic_full": dual_full,
            "ratio": round(dual["dual_step_us_median"] / single["step_us_median"], 2),
            "ratio_semantic_full": round(dual_full["dual_step_us_median"] / single["step_us_median"], 2),
            "mode": time_mode(n, min(steps, 500), dim),
            "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                        "numpy": np.__version__}}


# ============================================================================================== CLI
def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--people", default="../shared/data/london_frl", metavar="DIR",
                        help="labels.csv folder with one neutral and one happy photo per identity")
    parser.add_argument("--split", default="tune,val", help="comma-separated parts (tune, val, train)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="at most N people per split")
    parser.add_argument("--pk-model", default=None, help="PK inference model (default: the shipped one)")
    parser.add_argument("--encoder", default="pk", help="encoder (pk and facechannel_pk imagine; others run without "
                        "imagination unless --imagine-with)")
    parser.add_argument("--imagine-with", default=None, metavar="ENCODER",
                        help="an encoder that edits (pk) whose generator renders the imagined faces, which --encoder "
                             "then encodes (--encoder facechannel --imagine-with pk = --encoder facechannel_pk)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train-frames", type=int, default=20)
    parser.add_argument("--test-frames", type=int, default=20)
    parser.add_argument("--imagine-frames", type=int, default=5, help="training frames per class imagined")
    parser.add_argument("--scales", type=_floats, default=(0.1, 0.25, 0.5, 1.0), help="offset imagination scales")
    parser.add_argument("--distance-scale", type=float, default=None,
                        help="activity scale sigma of every memory (default: the mode's)")
    parser.add_argument("--imagine-scale", type=float, default=None,
                        help="offset scale of the mode and of mlp+imagination (default: the mode's)")
    parser.add_argument("--no-mlp", action="store_true")
    parser.add_argument("--no-mode", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=".cache/clifer")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the report here (default: stdout)")
    parser.add_argument("--markdown", default=None, metavar="PATH", help="write the tables here")
    parser.add_argument("--speed-only", action="store_true", help="only the speed numbers")
    parser.add_argument("--no-speed", action="store_true")


def run(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"benchmark": "affective_memory.clifer"}
    if not args.speed_only:
        import torch

        from ..encoders import make_encoder
        from ..encoders.facechannel_pk import FaceChannelPKEncoder, RenderedEditsEncoder

        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        if args.encoder == "facechannel_pk":
            encoder = FaceChannelPKEncoder(None, args.device, pk_path=args.pk_model)
        else:
            encoder = make_encoder(args.encoder, args.pk_model if args.encoder == "pk" else None, args.device)
        if args.imagine_with:
            imaginer = make_encoder(args.imagine_with, args.pk_model if args.imagine_with == "pk" else None,
                                    args.device)
            if not imaginer.can_edit:
                raise SystemExit(f"--imagine-with {args.imagine_with}: that encoder cannot edit faces")
            encoder = RenderedEditsEncoder(encoder, imaginer)
        splits = tuple(s.strip() for s in args.split.split(",") if s.strip())
        people = load_people(args.people, splits, args.cache_dir, args.limit)
        if not people:
            raise SystemExit(f"no person with a neutral and a happy photo in {args.people} ({args.split})")
        report.update(evaluate(people, encoder, train=args.train_frames, test=args.test_frames,
                               imagine=args.imagine_frames, scales=args.scales, mlp=not args.no_mlp,
                               mode=not args.no_mode, seed=args.seed, distance_scale=args.distance_scale,
                               imagine_scale=args.imagine_scale,
                               log=lambda m: print(m, file=sys.stderr, flush=True)))
        report["encoder"] = {"name": encoder.name, "weights": str(getattr(encoder, "path", "")),
                             "provenance_metrics": encoder.provenance.get("metrics", {})}
        if isinstance(encoder, RenderedEditsEncoder):
            report["imaginer"] = {"name": encoder.editor.name, "weights": str(getattr(encoder.editor, "path", ""))}
    if not args.no_speed:
        report["speed"] = speed()
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    if args.markdown and "splits" in report:
        Path(args.markdown).write_text(markdown(report) + "\n")
    if "splits" in report:
        print(markdown(report), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-clifer", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
