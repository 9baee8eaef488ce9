"""Supervised training of the FaceChannel on labelled face folders (and AffectNet's CSV).

What each face honestly offers is what it is trained with:

* faces with arousal/valence (DiffusionFER, AffectNet): MSE on both, through the
  dimensional head;
* faces with an expression label: cross-entropy over the eight
  :data:`~affective_memory_ros.expressions.EXPRESSIONS` through the categorical
  head (DiffusionFER's seven map onto them; London FRL's ``happy`` is ``happiness``);
* real people photographed neutral *and* smiling (London FRL) carry no A/V number.
  What is known is (a) a neutral face shows neutral valence, and (b) the same
  person's smile is more positive than their neutral face. ``real_valence``
  chooses how that is used:

  - ``none``: the pairs only feed the categorical head;
  - ``class``: class-conditional targets, neutral -> the mean valence of the
    A/V-labelled neutral training faces, smile -> the mean valence of the
    A/V-labelled happy training faces (a number the real smile never had);
  - ``pair`` (default): the neutral face is pulled to the neutral class mean,
    and a per-person hinge asks v(smile) >= v(neutral) + m, with the margin m =
    mean valence(happy) - mean valence(neutral) of the A/V-labelled training
    faces. Only the ordering, which is a fact about the photos, and its typical
    size are imposed; a broad smile may read higher than the margin.

Every batch holds ``batch_faces`` single faces plus ``batch_pairs`` whole
persons (both photos), so the hinge always compares one person with themself.
Augmentation (flip, shift/scale/rotation, brightness/contrast/gamma, blur,
noise) runs batched on the 64x64 grey input, after the same resize and grey
conversion as at run time. Everything random draws from seeded generators:
the same command and seed give the same weights on the same machine.

Run: ``python -m affective_memory_ros.facechannel.train --labels-csv DIR ... --export FILE``
(``scripts/train_default_facechannel.sh`` builds the shipped default).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from ..atomic_io import atomic_write_bytes
from ..encoders.base import Encoding
from ..encoders.facechannel import INPUT_SPEC
from ..expressions import EXPRESSIONS, expression_index
from ..facesets import (
    CropSet,
    class_valence,
    dev_fold_mask,
    evaluate_faces,
    load_affectnet,
    load_labelled_folder,
    person_pairs,
    training_part,
)
from .model import FaceChannel, FaceChannelConfig, count_parameters

NEUTRAL, HAPPY = expression_index("neutral"), expression_index("happy")


def to_input(crops: np.ndarray) -> torch.Tensor:
    """uint8 RGB crops -> (N, 1, 64, 64) grey in [0, 1], through the run-time encoder's own input spec."""
    return INPUT_SPEC.to_tensor(crops)


# --------------------------------------------------------------------------------------- augmentation
def augment(x: torch.Tensor, gen: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Batched camera-jitter augmentation of (N, 1, 64, 64) grey faces in [0, 1].

    Horizontal flip; rotation up to 10 degrees, scale 0.9-1.1, shift up to 6 % (the
    aligner's jitter between frames); brightness +-0.12, contrast x0.7-1.3,
    gamma 0.7-1.4; Gaussian blur (sigma 0.3-1.2) on 30 %; pixel noise (sd up to 0.02).
    """
    n = x.shape[0]
    s = strength

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen)

    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    angle = u(-10, 10) * s * math.pi / 180
    scale = 1 + u(-0.1, 0.1) * s
    shift = u(-0.06, 0.06, 2) * s * 2  # in [-1, 1] grid units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gamma = torch.exp(u(math.log(0.7), math.log(1.4), 1, 1, 1) * s)
    x = x.clamp(1e-4, 1) ** gamma
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1 + u(-0.3, 0.3, 1, 1, 1) * s) + mean + u(-0.12, 0.12, 1, 1, 1) * s
    blur = torch.rand(n, generator=gen) < 0.3 * s
    if bool(blur.any()):
        sigma = float(u(0.3, 1.2)[0])
        r = torch.arange(-2, 3, dtype=torch.float32)
        k = torch.exp(-(r**2) / (2 * sigma**2))
        k = k / k.sum()
        blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), (k[:, None] * k[None, :])[None, None])
        x = torch.where(blur[:, None, None, None], blurred, x)
    x = x + torch.randn(x.shape, generator=gen) * u(0, 0.02, 1, 1, 1) * s
    return x.clamp(0, 1)


# ------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainConfig:
    model: FaceChannelConfig = dataclasses.field(default_factory=FaceChannelConfig)
    epochs: int = 60
    #: Single faces (A/V and/or a label) per batch.
    batch_faces: int = 48
    #: Persons with a neutral and a smiling photo per batch (two images each).
    batch_pairs: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    av_weight: float = 1.0
    #: Weight of (1 - CCC) of arousal and of valence over each batch's A/V faces, beside the MSE.
    ccc_weight: float = 0.0
    class_weight: float = 0.5
    label_smoothing: float = 0.1
    #: How real smiles without A/V are used: none, class or pair (module docstring).
    real_valence: str = "pair"
    real_weight: float = 1.0
    #: Hinge margin of ``pair``; None = mean valence(happy) - mean valence(neutral) of the A/V training faces.
    pair_margin: float | None = None
    augment: float = 1.0
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if self.real_valence not in ("none", "class", "pair"):
            raise ValueError(f"real_valence must be none, class or pair, not {self.real_valence!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def batch_ccc(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Differentiable concordance correlation coefficient of two 1-d tensors (population moments)."""
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return 2 * cov / (x.var(unbiased=False) + y.var(unbiased=False) + (mx - my) ** 2 + 1e-8)


class Trainer:
    def __init__(self, cfg: TrainConfig, train: CropSet) -> None:
        self.cfg = cfg
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model = FaceChannel(cfg.model)
        self.x = to_input(train.crops)
        self.av = torch.from_numpy(np.asarray(train.labels, np.float32))
        self.classes = torch.from_numpy(np.asarray(train.classes, np.int64))
        self.pairs = person_pairs(train)
        in_pairs = np.zeros(len(train), bool)
        in_pairs[self.pairs.ravel()] = True
        useful = np.isfinite(train.labels).any(axis=1) | (np.asarray(train.classes) >= 0)
        self.singles = np.flatnonzero(useful & ~in_pairs)
        means = class_valence(train)
        self.neutral_valence = means.get(NEUTRAL, 0.0)
        self.happy_valence = means.get(HAPPY, 0.5)
        self.margin = cfg.pair_margin if cfg.pair_margin is not None else self.happy_valence - self.neutral_valence
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.steps_per_epoch = max(1, len(self.singles) // cfg.batch_faces) if len(self.singles) else \
            max(1, len(self.pairs) // max(cfg.batch_pairs, 1))
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, self._lr_factor)
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 17)
        self.step = 0
        self.log: list[dict[str, float]] = []
        self.train_info = {"faces": len(train), "singles": len(self.singles), "pairs": len(self.pairs),
                           "neutral_valence": round(self.neutral_valence, 4),
                           "happy_valence": round(self.happy_valence, 4), "pair_margin": round(self.margin, 4)}

    def _lr_factor(self, step: int) -> float:
        warm = self.cfg.warmup_epochs * self.steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, self.total_steps - warm)))

    def batches(self, epoch: int) -> Iterator[tuple[np.ndarray, int]]:
        """Index batches: ``batch_faces`` singles + ``batch_pairs`` persons as (neutral, smile) adjacent."""
        gen = np.random.default_rng([self.cfg.seed, epoch])
        singles = gen.permutation(self.singles)
        pair_order = gen.permutation(len(self.pairs)) if len(self.pairs) else np.zeros(0, np.int64)
        p = 0
        for s in range(self.steps_per_epoch):
            idx = singles[s * self.cfg.batch_faces:(s + 1) * self.cfg.batch_faces]
            take = []
            for _ in range(min(self.cfg.batch_pairs, len(self.pairs))):
                if p == len(pair_order):
                    pair_order, p = gen.permutation(len(self.pairs)), 0
                take.append(pair_order[p])
                p += 1
            pairs = self.pairs[np.array(take, np.int64)].ravel() if take else np.zeros(0, np.int64)
            yield np.concatenate([idx, pairs]).astype(np.int64), len(idx)

    def losses(self, idx: np.ndarray, n_single: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        x = augment(self.x[idx], self.aug_gen, cfg.augment) if cfg.augment > 0 else self.x[idx]
        _, av, logits = self.model(x)
        target_av, classes = self.av[idx], self.classes[idx]
        out: dict[str, torch.Tensor] = {}
        known = torch.isfinite(target_av)
        out["av"] = F.mse_loss(av[known], target_av[known]) if bool(known.any()) else av.sum() * 0
        both = known.all(dim=1)
        if cfg.ccc_weight > 0 and int(both.sum()) > 2:
            out["ccc"] = 2 - batch_ccc(av[both, 0], target_av[both, 0]) - batch_ccc(av[both, 1], target_av[both, 1])
        else:
            out["ccc"] = av.sum() * 0
        has = classes >= 0
        out["ce"] = F.cross_entropy(logits[has], classes[has], label_smoothing=cfg.label_smoothing) \
            if bool(has.any()) else logits.sum() * 0
        v = av[n_single:, 1].reshape(-1, 2)  # (persons, [neutral, smile])
        if cfg.real_valence == "none" or v.shape[0] == 0:
            out["real"] = av.sum() * 0
        elif cfg.real_valence == "class":
            targets = torch.tensor([self.neutral_valence, self.happy_valence]).expand_as(v)
            out["real"] = F.mse_loss(v, targets)
        else:
            anchor = F.mse_loss(v[:, 0], torch.full_like(v[:, 0], self.neutral_valence))
            hinge = F.relu(self.margin - (v[:, 1] - v[:, 0])).pow(2).mean()
            out["real"] = anchor + hinge
        out["total"] = (cfg.av_weight * out["av"] + cfg.ccc_weight * out["ccc"] + cfg.class_weight * out["ce"]
                        + cfg.real_weight * out["real"])
        return out

    def fit(self, progress: bool = True) -> list[dict[str, float]]:
        started = time.time()
        self.model.train()
        for epoch in range(self.cfg.epochs):
            sums: dict[str, float] = {}
            for idx, n_single in self.batches(epoch):
                parts = self.losses(idx, n_single)
                self.opt.zero_grad(set_to_none=True)
                parts["total"].backward()
                self.opt.step()
                self.sched.step()
                self.step += 1
                for k, val in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(val.detach())
            row = {"epoch": epoch + 1, "seconds": round(time.time() - started, 1),
                   **{k: round(val / self.steps_per_epoch, 5) for k, val in sums.items()}}
            self.log.append(row)
            if progress:
                print(json.dumps(row), flush=True)
        self.model.eval()
        return self.log

    def provenance(self, data_sources: list[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"model": "FaceChannel V1 (Barros, Churamani & Sciutti, FG 2020), PyTorch re-implementation",
                "train_config": json.loads(self.cfg.to_json()), "train_data": data_sources, **self.train_info,
                "split": "affective_memory_ros.splits (train part only)", "steps": self.step,
                "parameters": count_parameters(self.model), "torch": torch.__version__,
                "machine": platform.machine(), **(extra or {})}


@torch.inference_mode()
def predict(model: FaceChannel, crops: np.ndarray, batch: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(code, av, probs) for uint8 RGB crops, in eval mode."""
    was = model.training
    model.eval()
    codes, avs, probs = [], [], []
    for i in range(0, len(crops), batch):
        c, a, lg = model(to_input(crops[i:i + batch]))
        codes.append(c.numpy())
        avs.append(a.numpy())
        probs.append(torch.softmax(lg, 1).numpy())
    model.train(was)
    if not codes:
        return (np.zeros((0, model.cfg.dense), np.float32), np.zeros((0, 2), np.float32),
                np.zeros((0, model.cfg.num_classes), np.float32))
    return np.concatenate(codes), np.concatenate(avs), np.concatenate(probs)


# ------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m affective_memory_ros.facechannel.train",
                                description="Train the FaceChannel on the train split of labelled face folders.")
    p.add_argument("--labels-csv", action="append", default=[], metavar="DIR",
                   help="folder with labels.csv (file + any of valence, arousal, label, identity); repeatable")
    p.add_argument("--affectnet-csv", help="AffectNet's training CSV (its own layout)")
    p.add_argument("--affectnet-root", help="AffectNet's image folder (with --affectnet-csv)")
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--real-valence", choices=("none", "class", "pair"), default="pair")
    p.add_argument("--real-weight", type=float, default=TrainConfig.real_weight)
    p.add_argument("--class-weight", type=float, default=TrainConfig.class_weight)
    p.add_argument("--ccc-weight", type=float, default=TrainConfig.ccc_weight)
    p.add_argument("--pair-margin", type=float, default=None,
                   help="hinge margin of --real-valence pair (default: from the A/V training faces' class means)")
    p.add_argument("--augment", type=float, default=1.0, help="augmentation strength (0 = off)")
    p.add_argument("--dev-fold", action="store_true", help="also hold out a dev fold of train (for choices)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default=".cache/faces", help="where aligned crops are cached")
    p.add_argument("--export", help="write the inference weights (float16 safetensors) here")
    p.add_argument("--log", help="write the per-epoch losses (JSON) here")
    p.add_argument("--report", help="after training, write metrics on the tune people (and the dev fold with "
                                    "--dev-fold) here as JSON; never on val")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The training configuration the command line's flags select."""
    return TrainConfig(model=FaceChannelConfig(width=args.width), epochs=args.epochs, lr=args.lr,
                       real_valence=args.real_valence, real_weight=args.real_weight, class_weight=args.class_weight,
                       ccc_weight=args.ccc_weight, pair_margin=args.pair_margin,
                       augment=args.augment, seed=args.seed, threads=args.threads)


def main(argv: Sequence[str] | None = None) -> int:
    from .checkpoint import save_inference_model

    args = build_parser().parse_args(argv)
    if not args.labels_csv and not args.affectnet_csv:
        raise SystemExit("give at least one --labels-csv DIR or --affectnet-csv")
    torch.set_num_threads(args.threads)
    folders = [load_labelled_folder(d, args.cache) for d in args.labels_csv]
    if args.affectnet_csv:
        if not args.affectnet_root:
            raise SystemExit("--affectnet-csv needs --affectnet-root")
        folders.append(load_affectnet(args.affectnet_csv, args.affectnet_root, args.cache))
    train = training_part(folders, args.dev_fold)
    cfg = config_from_args(args)
    trainer = Trainer(cfg, train)
    print(json.dumps({"train": trainer.train_info, "config": json.loads(cfg.to_json())}), flush=True)
    log = trainer.fit()
    if args.log:
        atomic_write_bytes(args.log, json.dumps(log, indent=1).encode())
    if args.export:
        sources = [Path(d).name for d in args.labels_csv] + (["affectnet"] if args.affectnet_csv else [])
        path = save_inference_model(args.export, trainer.model, trainer.provenance(
            sources, {"dev_fold_held_out": bool(args.dev_fold), "classes": list(EXPRESSIONS)}))
        print(f"wrote {path} ({path.stat().st_size} bytes)", flush=True)
    if args.report:
        report = selection_report(trainer.model, folders, args.dev_fold)
        report["config"] = json.loads(cfg.to_json())
        report["train_seconds"] = log[-1]["seconds"] if log else 0
        atomic_write_bytes(args.report, json.dumps(report, indent=1, default=float).encode())
        print(json.dumps(report, default=float), flush=True)
    return 0


def selection_report(model: FaceChannel, folders: Sequence[CropSet], dev_fold: bool) -> dict[str, Any]:
    """Metrics for choosing settings: each folder's ``tune`` people and (``dev_fold``) the dev fold of ``train``.
    ``val`` is never looked at."""
    def encoder(crops: np.ndarray) -> Encoding:
        return Encoding(*predict(model, crops))

    out: dict[str, Any] = {}
    for d in folders:
        name = Path(d.root).name
        if d.has_identities and d.split_mask("tune").any():
            out[f"{name}:tune"] = evaluate_faces(d.part("tune"), {"fc": encoder})["encoders"]["fc"]
        if dev_fold:
            mask = d.split_mask("train") & dev_fold_mask(d.groups)
            if mask.any():
                out[f"{name}:dev"] = evaluate_faces(d.subset(mask), {"fc": encoder})["encoders"]["fc"]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
