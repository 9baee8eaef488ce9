"""Training the PK model: one loop for CPU, one CUDA GPU (mixed precision) and
several GPUs or processes under ``torchrun`` (DistributedDataParallel).

Losses (paper weights lambda = 1, 0.02, 0.3, 0.01, 0.01):

* L_rec  = |x - G(E(x), y)|_1 with y the label (or, for unlabelled faces, D_em's
  own reading of z, detached);
* L_em   = MSE(arousal) + MSE(valence) of D_em(E(x)) on labelled faces;
* L_iden = VGG-Face feature L1, only with a user-supplied weights file;
* L_z    = GAN loss of E against D_prior (uniform prior on z);
* L_img  = conditional GAN loss of G against D_real on (x, y) vs (G(E(x), y), y),
  edits included as fakes.

Ours, on top (``edit_weight``, 0 switches it off): L_edit = MSE(D_em(E(G(z, y'))), y')
for random targets y', with E and D_em frozen in that term. It makes G's
edits show their target (StarGAN's classification loss on fakes); without it G
can reconstruct perfectly while ignoring y.

Ours, for real faces (docs/pk.md, "Real faces"):

* L_cls = cross-entropy of the categorical head C on every face with an
  expression label (``class_weight``; with ``class_detach`` it trains C alone,
  on a detached z, and never shapes E);
* real pairs (:class:`RealPairs`): each step also takes ``pairs_per_step``
  persons photographed neutral and smiling (both photos, one shared
  augmentation) and adds
  - a valence term for faces without an A/V number (``valence``: none, class,
    rank or pair; the default ``pair`` anchors the neutral photo at the neutral
    valence and asks v(smile) >= v(neutral) + margin by a squared hinge),
  - the supervised edit in image space: L1(G(z_n, y_s), x_s) + L1(G(z_s, y_n), x_n),
    with y_s, y_n D_em's (detached) reading of the other photo,
  - and in code space: |E(G(z_n, y_s)) - z_s|^2 + |E(G(z_s, y_n)) - z_n|^2 with
    E frozen in that term, so G's valence edits move z the way the person's
    real smile does.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import itertools
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F  # noqa: N812
from torch import nn

from ..expressions import expression_index
from ..facesets import CropSet, person_pairs
from ..metrics import ccc, rmse
from .checkpoint import load_training_checkpoint, load_weights, save_inference_model, save_training_checkpoint
from .model import PK, PKConfig

NEUTRAL, HAPPY = expression_index("neutral"), expression_index("happy")
REAL_VALENCE_MODES = ("none", "class", "rank", "pair")


@dataclass
class Lambdas:
    rec: float = 1.0
    em: float = 0.02
    iden: float = 0.3
    z: float = 0.01
    img: float = 0.01


@dataclass
class RealPairs:
    """How real people photographed neutral and smiling (no A/V numbers) are trained on; 0 pairs = off."""

    #: Persons (both photos) added to every step.
    pairs_per_step: int = 0
    #: Valence of faces without an A/V number: ``none``; ``class`` (MSE to the class targets below);
    #: ``rank`` (squared hinge v(smile) >= v(neutral) + margin); ``pair`` (rank + neutral photo -> neutral target).
    valence: str = "pair"
    valence_weight: float = 1.0
    #: Class targets: the mean valence of the A/V-labelled neutral / happy training faces (set by the recipe).
    neutral_valence: float = 0.0
    happy_valence: float = 0.4
    #: Hinge margin; None = happy_valence - neutral_valence.
    margin: float | None = None
    #: Supervised edits between a person's two photos: image space (L1) and code space (MSE, E frozen).
    edit_image_weight: float = 1.0
    edit_code_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.valence not in REAL_VALENCE_MODES:
            raise ValueError(f"valence must be one of {', '.join(REAL_VALENCE_MODES)}, not {self.valence!r}")

    @property
    def hinge_margin(self) -> float:
        return self.happy_valence - self.neutral_valence if self.margin is None else self.margin


@dataclass
class TrainConfig:
    out_dir: str = "runs/pk"
    model: PKConfig = field(default_factory=PKConfig)
    lambdas: Lambdas = field(default_factory=Lambdas)
    edit_weight: float = 0.1
    epochs: int = 30
    batch_size: int = 48
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # CUDA only: bfloat16 autocast
    checkpoint_every: int = 200
    max_steps: int | None = None
    iden_weights: str | None = None
    num_threads: int | None = None
    #: Weight of the categorical head's cross-entropy (only where the model has the head).
    class_weight: float = 1.0
    #: The head reads a detached z: the class loss trains C alone and never shapes E's code (as D_em's
    #: reader in the ablations without use_em). Against E fitting the labelled faces' classes (docs/pk.md).
    class_detach: bool = False
    real: RealPairs = field(default_factory=RealPairs)
    #: Weights to start from (a training checkpoint or an inference file); parts it lacks start fresh.
    init_from: str | None = None

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        return json.dumps(data, sort_keys=True)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_tensor(crops: np.ndarray) -> torch.Tensor:
    """uint8 (N, 96, 96, 3) RGB -> float (N, 3, 96, 96) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Light, batched augmentation: horizontal flip, shifts up to 4 px, brightness/contrast jitter."""
    b = x.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)
    shifts = torch.randint(-4, 5, (b, 2), generator=gen)
    padded = F.pad(x, (4, 4, 4, 4), mode="replicate")
    rows = (torch.arange(96)[None, :] + 4 + shifts[:, :1]).to(x.device)
    cols = (torch.arange(96)[None, :] + 4 + shifts[:, 1:]).to(x.device)
    x = padded[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    x = x.permute(0, 3, 1, 2)
    contrast = (1 + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.3).to(x.device)
    brightness = ((torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 0.2).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + brightness).clamp(-1, 1)


@contextlib.contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Parameters of ``modules`` take no gradient inside the block (activations still do)."""
    params = [p for m in modules if m is not None for p in m.parameters()]
    states = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, s in zip(params, states, strict=True):
            p.requires_grad_(s)


def _gan(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


class Trainer:
    def __init__(self, cfg: TrainConfig, train: CropSet, val: CropSet | None = None,
                 provenance: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.device = _device(cfg.device)
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                local = int(os.environ.get("LOCAL_RANK", "0"))
                torch.cuda.set_device(local)
                self.device = torch.device("cuda", local)
            # A generous timeout: on a loaded machine a rank can lag its peers by minutes.
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo",
                                    timeout=datetime.timedelta(minutes=30))
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        self.model = PK(cfg.model).to(self.device)
        self.initialised_from: list[str] = []
        if cfg.init_from:
            self.initialised_from = load_weights(cfg.init_from, self.model)
        self.x = to_tensor(train.crops)
        self.y = torch.from_numpy(train.labels.astype(np.float32))
        assert train.classes is not None
        self.c = torch.from_numpy(np.asarray(train.classes, np.int64))
        self.pairs = torch.from_numpy(person_pairs(train)) if cfg.real.pairs_per_step > 0 else \
            torch.zeros((0, 2), dtype=torch.int64)
        if cfg.real.pairs_per_step > 0 and len(self.pairs) < cfg.real.pairs_per_step:
            raise ValueError(f"{cfg.real.pairs_per_step} pairs per step, but the training data has "
                             f"{len(self.pairs)} persons photographed neutral and smiling")
        self.val = val
        self.provenance = provenance or {}
        m = self.model
        self.ddp = {name: self._wrap(getattr(m, name))
                    for name in ("encoder", "generator", "emotion", "prior", "real", "classifier")}
        beta = tuple(cfg.betas)
        ae_params = [*m.encoder.parameters(), *m.generator.parameters(), *m.emotion.parameters()]
        if m.classifier is not None:
            ae_params += list(m.classifier.parameters())
        self.opt_ae = torch.optim.Adam(ae_params, lr=cfg.lr, betas=beta)
        self.opt_prior = torch.optim.Adam(m.prior.parameters(), lr=cfg.lr, betas=beta) if m.prior else None
        self.opt_real = torch.optim.Adam(m.real.parameters(), lr=cfg.lr, betas=beta) if m.real else None
        self.identity = _load_identity_net(cfg.iden_weights, self.device) if cfg.iden_weights else None
        self.step = 0
        self.epoch = 0
        # Random streams of augmentation and of each step's targets/prior samples.
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 17 + self.rank)
        self.step_gen = torch.Generator().manual_seed(cfg.seed + 29)
        self.pair_gen = torch.Generator().manual_seed(cfg.seed + 43)
        self.out = Path(cfg.out_dir)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)

    def _wrap(self, module: nn.Module | None) -> nn.Module | None:
        if module is None or self.world == 1:
            return module
        return nn.parallel.DistributedDataParallel(module, device_ids=[self.device.index] if self.device.type == "cuda"
                                                   else None)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.cfg.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ----------------------------------------------------------------- steps
    def train_step(self, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, classes: torch.Tensor | None = None,
                   pairs: torch.Tensor | None = None) -> dict[str, float]:
        """One optimisation step on this process's share of a global batch.

        ``gen`` draws the step's random targets and prior samples for the whole
        global batch; each rank takes its slice, so a DDP run sees exactly the
        same numbers as a single process on the same global batch. ``classes``
        (expression index per face, -1 unknown) feed the categorical head;
        ``pairs`` (K, 6, 96, 96) are K persons' neutral (channels 0-2) and smiling
        (3-5) photos for the real-pair losses.
        """
        cfg, lam, m = self.cfg, self.cfg.lambdas, self.model
        e, g, em = self.ddp["encoder"], self.ddp["generator"], self.ddp["emotion"]
        d_prior, d_real = self.ddp["prior"], self.ddp["real"]
        n_global = x.shape[0] * self.world
        targets = (torch.rand(n_global, 2, generator=gen) * 2 - 1)
        prior = (torch.rand(n_global, cfg.model.z_dim, generator=gen) * 2 - 1)
        share = slice(self.rank * x.shape[0], (self.rank + 1) * x.shape[0])
        targets, prior = targets[share].to(self.device), prior[share].to(self.device)
        x, y = x.to(self.device), y.to(self.device)
        labelled = torch.isfinite(y).all(dim=1)
        n_lab_global = self._all_sum(labelled.sum().float())
        n = x.shape[0]
        k = 0 if pairs is None else pairs.shape[0]
        x_pn = x_ps = x[:0]
        if pairs is not None and k:
            pairs = pairs.to(self.device)
            x_pn, x_ps = pairs[:, :3], pairs[:, 3:]
        logs: dict[str, float] = {}

        with self._autocast():
            # One pass of E over the batch and the pairs' photos (neutral, then smiling).
            z_all = e(torch.cat([x, x_pn, x_ps]) if k else x)
            pred_all = em(z_all)
            z, pred = z_all[:n], pred_all[:n]
            y_cond = torch.where(labelled[:, None], torch.nan_to_num(y), pred.detach())
            x_rec = g(z, y_cond)
            loss_rec = (x_rec - x).abs().mean()
            loss = lam.rec * loss_rec
            logs["rec"] = loss_rec.item()
            # D_em always learns to read z: it is the inference head. With use_em its loss
            # also shapes E (weight lambda_em); without, it reads a detached z, which is
            # the paper's post-trained reader for the ablations without D_em.
            reader_all = pred_all if cfg.model.use_em else em(z_all.detach())
            reader = reader_all[:n]
            sq = ((reader - torch.nan_to_num(y)) ** 2).sum(dim=1) * labelled
            loss_em = sq.sum() * self.world / n_lab_global.clamp(min=1)  # mean over the global labelled faces
            loss = loss + (lam.em if cfg.model.use_em else 1.0) * loss_em
            logs["em"] = loss_em.item() / self.world
            if m.classifier is not None and cfg.class_weight > 0 and (classes is not None or k):
                c = classes.to(self.device) if classes is not None else torch.full((n,), -1, device=self.device)
                if k:
                    c = torch.cat([c, torch.full((k,), NEUTRAL, device=self.device),
                                   torch.full((k,), HAPPY, device=self.device)])
                known = c >= 0
                n_known = self._all_sum(known.sum().float())
                z_cls = z_all.detach() if cfg.class_detach else z_all
                ce = F.cross_entropy(self.ddp["classifier"](z_cls).float(), c.clamp(min=0), reduction="none")
                loss_cls = (ce * known).sum() * self.world / n_known.clamp(min=1)
                loss = loss + cfg.class_weight * loss_cls
                logs["cls"] = loss_cls.item() / self.world
            if k:
                loss = loss + self._pair_losses(z_all[n:], pred_all[n:], reader_all[n:, 1], x_pn, x_ps, logs)
            # In the autoencoder's step the discriminators (and, for L_edit, E and D_em)
            # are frozen and called unwrapped: no gradient reaches their parameters,
            # so DDP has nothing to synchronise for them here.
            if m.prior is not None:
                with frozen(m.prior):
                    loss_z = _gan(m.prior(z), True)
                loss = loss + lam.z * loss_z
                logs["z"] = loss_z.item()
            x_edit = None
            if cfg.edit_weight > 0:
                x_edit = g(z, targets)
                with frozen(m.encoder, m.emotion):
                    loss_edit = F.mse_loss(m.emotion(m.encoder(x_edit)), targets, reduction="none").sum(1).mean()
                loss = loss + cfg.edit_weight * loss_edit
                logs["edit"] = loss_edit.item()
            if m.real is not None:
                with frozen(m.real):
                    loss_img = _gan(m.real(x_rec, y_cond), True)
                    if x_edit is not None:
                        loss_img = (loss_img + _gan(m.real(x_edit, targets), True)) / 2
                loss = loss + lam.img * loss_img
                logs["img"] = loss_img.item()
            if self.identity is not None:
                loss_iden = _identity_loss(self.identity, x, x_rec)
                loss = loss + lam.iden * loss_iden
                logs["iden"] = loss_iden.item()
        self.opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_ae.step()
        logs["total"] = loss.item()

        # Each discriminator: one forward over real and fake together, one backward.
        if d_prior is not None and self.opt_prior is not None:
            with self._autocast():
                logits = d_prior(torch.cat([prior, z.detach()]))
                n = prior.shape[0]
                loss_dp = (_gan(logits[:n], True) + _gan(logits[n:], False)) / 2
            self.opt_prior.zero_grad(set_to_none=True)
            loss_dp.backward()
            self.opt_prior.step()
            logs["d_prior"] = loss_dp.item()
        if d_real is not None and self.opt_real is not None:
            images, labels = [x, x_rec.detach()], [y_cond, y_cond]
            if x_edit is not None:
                images.append(x_edit.detach())
                labels.append(targets)
            with self._autocast():
                logits = d_real(torch.cat(images), torch.cat(labels)).view(len(images), -1)
                fake = sum(_gan(logits[i], False) for i in range(1, len(images))) / (len(images) - 1)
                loss_dr = (_gan(logits[0], True) + fake) / 2
            self.opt_real.zero_grad(set_to_none=True)
            loss_dr.backward()
            self.opt_real.step()
            logs["d_real"] = loss_dr.item()
        self.step += 1
        return logs

    def _pair_losses(self, z_p: torch.Tensor, read_p: torch.Tensor, valence_p: torch.Tensor, x_pn: torch.Tensor,
                     x_ps: torch.Tensor, logs: dict[str, float]) -> torch.Tensor:
        """The real-pair terms (module docstring) for K persons: z_p, read_p, valence_p hold the K neutral
        photos' codes / D_em readings / valence (as trained) first, then the K smiling photos'."""
        rc, m, g = self.cfg.real, self.model, self.ddp["generator"]
        k = x_pn.shape[0]
        total = z_p.new_zeros(())
        v_n, v_s = valence_p[:k], valence_p[k:]
        if rc.valence != "none" and rc.valence_weight > 0:
            if rc.valence == "class":
                loss_v = ((v_n - rc.neutral_valence) ** 2 + (v_s - rc.happy_valence) ** 2).mean()
            else:
                loss_v = F.relu(rc.hinge_margin - (v_s - v_n)).pow(2).mean()
                if rc.valence == "pair":
                    loss_v = loss_v + ((v_n - rc.neutral_valence) ** 2).mean()
            total = total + rc.valence_weight * loss_v
            logs["pair_v"] = loss_v.item()
        logs["pair_dv"] = (v_s - v_n).mean().item()
        if rc.edit_image_weight > 0 or rc.edit_code_weight > 0:
            # Each photo's code rendered at the other photo's reading: neutral -> smile and smile -> neutral.
            y_swap = torch.cat([read_p[k:], read_p[:k]]).detach()
            cross = g(z_p, y_swap)
            if rc.edit_image_weight > 0:
                loss_pi = (cross - torch.cat([x_ps, x_pn])).abs().mean()
                total = total + rc.edit_image_weight * loss_pi
                logs["pair_img"] = loss_pi.item()
            if rc.edit_code_weight > 0:
                with frozen(m.encoder):
                    z_cross = m.encoder(cross)
                z_goal = torch.cat([z_p[k:], z_p[:k]]).detach()
                loss_pc = ((z_cross - z_goal) ** 2).mean()
                total = total + rc.edit_code_weight * loss_pc
                logs["pair_code"] = loss_pc.item()
        return total

    def _all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            t = t.clone()
            dist.all_reduce(t)
        return t

    # ------------------------------------------------------------------ loop
    def batch_indices(self, epoch: int) -> Iterator[torch.Tensor]:
        """Indices of this rank's shares of the epoch's global batches (same order on every rank)."""
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(self.x.shape[0], generator=gen)
        per_rank = self.cfg.batch_size // self.world
        global_batch = per_rank * self.world
        for start in range(0, len(order) - global_batch + 1, global_batch):
            yield order[start + self.rank * per_rank : start + (self.rank + 1) * per_rank]

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's shares of the epoch's global batches: (faces, arousal/valence)."""
        for idx in self.batch_indices(epoch):
            yield self.x[idx], self.y[idx]

    def pair_batch(self) -> torch.Tensor | None:
        """This rank's share of the step's persons as (K, 6, 96, 96): neutral photo, then smiling photo."""
        k = self.cfg.real.pairs_per_step
        if k == 0:
            return None
        pick = torch.randperm(len(self.pairs), generator=self.pair_gen)[:k]
        per_rank = k // self.world
        idx = self.pairs[pick[self.rank * per_rank : (self.rank + 1) * per_rank]]
        return torch.cat([self.x[idx[:, 0]], self.x[idx[:, 1]]], dim=1)

    def fit(self, log_every: int = 10) -> dict[str, float]:
        from tqdm import tqdm

        metrics_path = self.out / "metrics.csv"
        summary: dict[str, float] = {}
        started = time.time()
        steps_per_epoch = self.x.shape[0] // (self.cfg.batch_size // self.world * self.world)
        total = self.cfg.epochs * steps_per_epoch if self.cfg.max_steps is None else self.cfg.max_steps
        bar = tqdm(total=total, initial=self.step, disable=self.rank != 0, desc="train PK", unit="step")
        # After a mid-epoch resume, the epoch's first batches were already trained on.
        skip = self.step - self.epoch * steps_per_epoch
        while self.epoch < self.cfg.epochs and (self.cfg.max_steps is None or self.step < self.cfg.max_steps):
            finished = True
            for idx in itertools.islice(self.batch_indices(self.epoch), max(skip, 0), None):
                if self.cfg.max_steps is not None and self.step >= self.cfg.max_steps:
                    finished = False
                    break
                pairs = self.pair_batch()
                xb = augment(self.x[idx], self.aug_gen)
                # Both photos of a person share one augmentation (one flip, shift and jitter).
                pb = augment(pairs, self.aug_gen) if pairs is not None else None
                classes = self.c[idx] if self.model.classifier is not None else None
                logs = self.train_step(xb, self.y[idx], self.step_gen, classes, pb)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()
                                 if k in ("rec", "em", "edit", "cls", "pair_dv", "pair_code")})
                if self.rank == 0 and self.step % log_every == 0:
                    _append_csv(metrics_path, {"step": self.step, "epoch": self.epoch,
                                               "seconds": round(time.time() - started, 1), **logs})
                if self.rank == 0 and self.step % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            if not finished:  # stopped by max_steps inside the epoch: it stays the current epoch
                break
            skip = 0
            self.epoch += 1
            if self.rank == 0 and self.val is not None and len(self.val):
                summary = self.evaluate(self.val)
                _append_csv(self.out / "val.csv", {"step": self.step, "epoch": self.epoch, **summary})
                bar.write(f"epoch {self.epoch}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
        bar.close()
        if self.rank == 0:
            if not summary and self.val is not None and len(self.val):
                summary = self.evaluate(self.val)
            self.save_checkpoint()
        return summary

    @torch.inference_mode()
    def evaluate(self, data: CropSet) -> dict[str, float]:
        pred = predict(self.model, data.crops, self.device)
        lab = data.labelled
        out = {}
        for i, name in enumerate(("arousal", "valence")):
            out[f"ccc_{name}"] = ccc(pred[lab, i], data.labels[lab, i])
            out[f"rmse_{name}"] = rmse(pred[lab, i], data.labels[lab, i])
        return out

    def save_checkpoint(self) -> Path:
        path = self.out / "checkpoint.safetensors"
        save_training_checkpoint(path, self.model, self._optimizers(), self.step, self.epoch, self.cfg.to_json(),
                                 self.provenance, self._generators())
        return path

    def resume(self, path: str | os.PathLike[str]) -> None:
        """Continue exactly where a checkpoint left off (weights, optimisers, random streams)."""
        self.step, self.epoch = load_training_checkpoint(path, self.model, self._optimizers(), self._generators())

    def _optimizers(self) -> dict[str, Any]:
        return {"ae": self.opt_ae, "prior": self.opt_prior, "real": self.opt_real}

    def _generators(self) -> dict[str, torch.Generator]:
        return {"aug": self.aug_gen, "step": self.step_gen, "pair": self.pair_gen}

    def export(self, path: str | os.PathLike[str], metrics: dict[str, Any]) -> Path:
        provenance = {**self.provenance, "train_config": json.loads(self.cfg.to_json()), "steps": self.step,
                      "epochs": self.epoch, "metrics": metrics}
        if self.cfg.init_from:
            provenance["initialised_from"] = {"file": Path(self.cfg.init_from).name, "parts": self.initialised_from}
        return save_inference_model(path, self.model, provenance)


@dataclass
class HeadConfig:
    """Post-training of the categorical head C alone (:func:`post_train_classifier`)."""

    #: 50, 200 and 600 gave the same or worse on a dev fold (docs/pk.md); the shipped head used 50.
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    #: Also learn from each face's mirror image.
    flip: bool = True
    seed: int = 0


def post_train_classifier(model: PK, train: CropSet, cfg: HeadConfig | None = None) -> list[float]:
    """Train only the categorical head C, on the frozen E's codes of the faces that carry an expression label
    (and their mirror images); E, G and D_em are not touched, so codes, arousal/valence and edits stay exactly
    as they were. The paper's post-trained reader of z, for a class read-out. Returns the loss per epoch."""
    cfg = cfg or HeadConfig()
    if model.classifier is None:
        raise ValueError("the PK has no categorical head (PKConfig.num_classes = 0)")
    classes = np.asarray(train.classes, np.int64)
    keep = np.flatnonzero(classes >= 0)
    if len(keep) == 0:
        raise ValueError("no face with an expression label to train the categorical head on")
    model.eval()
    with torch.inference_mode():
        views = [to_tensor(train.crops[keep])]
        if cfg.flip:
            views.append(views[0].flip(3))
        z = torch.cat([torch.cat([model.encoder(v[i:i + 256]) for i in range(0, len(v), 256)]) for v in views])
    z = z.clone()
    y = torch.from_numpy(np.tile(classes[keep], len(views)))
    gen = torch.Generator().manual_seed(cfg.seed)
    head = model.classifier
    head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = []
    for _ in range(cfg.epochs):
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            loss = F.cross_entropy(head(z[idx]), y[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(y))
    head.eval()
    return losses


@torch.inference_mode()
def predict(model: PK, crops: np.ndarray, device: torch.device, batch: int = 128) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(crops), batch):
        out.append(model.emotion(model.encoder(to_tensor(crops[i : i + batch]).to(device))).float().cpu().numpy())
    model.train()
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow({k: (round(v, 5) if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()})


def _load_identity_net(path: str, device: torch.device) -> nn.Module:
    """VGG-Face's first five convolution layers from a user-supplied state dict
    (torchvision VGG-16 layout, ``features.*`` keys). Loaded with weights_only."""
    from torchvision.models import vgg16

    state = torch.load(path, map_location="cpu", weights_only=True)
    net = vgg16(weights=None).features[:12]  # conv1_1 .. conv3_1 with their ReLUs and pools: five convolutions
    own = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    wanted = {k: v for k, v in own.items() if k.split(".")[0].isdigit() and int(k.split(".")[0]) < 12}
    net.load_state_dict(wanted, strict=True)
    return net.to(device).eval().requires_grad_(False)


def _identity_loss(net: nn.Module, x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    loss = x.new_zeros(())
    a, b = x, x_rec
    for layer in net:
        a, b = layer(a), layer(b)
        if isinstance(layer, nn.Conv2d):
            loss = loss + (a - b).abs().mean()
    return loss
