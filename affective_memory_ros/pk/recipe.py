"""The shipped PK's recipe, for real faces: data by the project's split, two training stages, export.

``python -m affective_memory_ros.pk.recipe --diffusionfer DIR --london DIR --video FILE ... --export FILE``
(``scripts/train_default_pk.sh`` runs it with the shipped settings).

Data, each face with what it honestly offers, only from the ``train`` part of
:mod:`affective_memory_ros.splits` (London FRL by person, DiffusionFER by file,
videos as one group each):

* DiffusionFER: arousal/valence (L_em) and its expression class (L_cls);
* London FRL: each person's neutral and smiling photo: their expression class,
  and as a pair the real-pair losses (:class:`~affective_memory_ros.pk.train.RealPairs`);
* frames of the bundled videos: reconstruction and the adversarial losses only.

Stage 1 trains the PK with the categorical head from scratch on every face
(no pair losses): the generic model (the shipped PK: ``scripts/train_default_pk.sh``);
``--stage1 FILE`` starts from a given model instead. Stage 2 continues from
stage 1's weights (discriminators included when stage 1 is a training
checkpoint; an inference file has none, so they start fresh; fresh
optimisers) with the real pairs added to every step. After each stage D_em's
spread over the training faces is checked: a collapsed model (every face read
alike) stops the run (:func:`reading_spread`).

``--head-only FILE`` trains nothing but a categorical head for FILE's PK, or
post-trains the head FILE has (:func:`add_head`). ``--dev-fold`` also holds each labelled folder's dev fold
(:func:`~affective_memory_ros.facesets.dev_fold_mask`) out of training, for
choices; ``--report`` covers London ``tune`` and, with ``--dev-fold``, the
DiffusionFER dev fold: never ``val``. Faces are cut and cached by
:func:`~affective_memory_ros.facesets.load_labelled_folder`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic_io import atomic_write_bytes
from ..expressions import EXPRESSIONS, NUM_EXPRESSIONS
from ..facesets import (
    CropSet,
    class_valence,
    crop_video,
    load_cropset,
    load_labelled_folder,
    save_cropset,
    training_part,
)
from .checkpoint import load_inference_model, load_weights, read_provenance, save_inference_model
from .evaluate import real_face_report, report_markdown
from .model import PK, PKConfig
from .train import HeadConfig, Lambdas, RealPairs, TrainConfig, Trainer, post_train_classifier


def load_training_faces(diffusionfer: list[str], london: list[str], videos: list[str], cache: str,
                        dev_fold: bool = False) -> tuple[CropSet, dict[str, Any]]:
    """The ``train`` part of every source as one CropSet (with ``dev_fold``, minus each labelled folder's dev
    fold), and what was taken from each."""
    parts, counts = [], {}
    for root in [*diffusionfer, *london]:
        data = training_part([load_labelled_folder(root, cache)], dev_fold)
        parts.append(data)
        counts[Path(root).name] = {"faces": len(data), "with_av": int(data.labelled.sum()),
                                   "with_class": int((np.asarray(data.classes) >= 0).sum()),
                                   **({"people": len(set(data.identities or ()))} if data.has_identities else {})}
    detector = None
    for video in videos:
        path = Path(cache) / f"video-{Path(video).name}-{Path(video).stat().st_size}.npz"
        if path.is_file():
            data = load_cropset(path)
        else:
            if detector is None:
                from ..perception.detectors import make_detector

                detector = make_detector("blazeface_short")
            data = crop_video(video, detector)
            save_cropset(path, data)
        data = data.part("train")  # a video is one group: wholly in train or wholly held out
        parts.append(data)
        counts[Path(video).name] = {"faces": len(data)}
    return CropSet.concat(parts), counts


#: Below this standard deviation of D_em's valence over the training faces, a model has collapsed (or was
#: never trained): the collapsed runs seen here read 0.0000, an untrained PK about 0.0001, runs of 360
#: steps 0.018-0.19 and trained ones 0.33-0.35 (docs/pk.md, "Collapse").
COLLAPSE_SPREAD = 1e-3


def reading_spread(model: PK, faces: CropSet, limit: int = 1024) -> float:
    """The standard deviation of D_em's valence over ``faces`` (at most ``limit`` of them, evenly spaced, so
    that every source and class is in it): ~0 when training has collapsed to one reading for every face,
    which the losses alone do not show clearly."""
    from .train import predict

    device = next(model.parameters()).device
    pick = np.unique(np.linspace(0, len(faces) - 1, min(limit, len(faces))).round().astype(int))
    return float(predict(model, faces.crops[pick], device)[:, 1].std())


def _stop_if_collapsed(args: argparse.Namespace, model: PK, train: CropSet, stage: str) -> float:
    """D_em's spread over the training faces (recorded in the provenance); stops instead of training on (or
    exporting) a collapsed PK, unless ``--skip-collapse-check`` (smoke runs of a few steps)."""
    spread = reading_spread(model, train)
    if args.skip_collapse_check:
        return spread
    if spread < COLLAPSE_SPREAD:
        raise SystemExit(f"{stage} collapsed: D_em reads every training face alike (valence std {spread:.5f} < "
                         f"{COLLAPSE_SPREAD}); nothing was exported. Run again with another --seed (docs/pk.md, "
                         f"'Collapse'); a smoke run of a few steps, or one without A/V-labelled faces, needs "
                         f"--skip-collapse-check")
    return spread


def build_parser() -> argparse.ArgumentParser:
    """The recipe's options; their defaults are the shipped PK's settings (``scripts/train_default_pk.sh`` adds
    only the data, ``--seed 1`` and where to write)."""
    p = argparse.ArgumentParser(prog="python -m affective_memory_ros.pk.recipe", description=__doc__.split("\n")[0])
    p.add_argument("--diffusionfer", action="append", default=[], metavar="DIR", help="A/V + class faces")
    p.add_argument("--london", action="append", default=[], metavar="DIR", help="real neutral/smiling people")
    p.add_argument("--video", action="append", default=[], help="unlabelled video (every 5th frame)")
    p.add_argument("--out", default="runs/pk_real", help="run folder (stage1/, stage2/)")
    p.add_argument("--export", help="write the stage-2 inference model here")
    p.add_argument("--cache", default=".cache/faces", help="where aligned crops are cached")
    p.add_argument("--dev-fold", action="store_true", help="also hold each labelled folder's dev fold out of train")
    p.add_argument("--report", help="write the selection report (London tune; with --dev-fold, the DiffusionFER "
                                    "dev fold) here as JSON; never val")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-amp", action="store_true", help="CUDA: train in fp32 instead of bfloat16 autocast")
    p.add_argument("--skip-collapse-check", action="store_true",
                   help="export even if D_em reads every face alike (short smoke runs)")
    p.add_argument("--lambda-em", type=float, default=1.0)
    p.add_argument("--edit-weight", type=float, default=0.1)
    p.add_argument("--class-weight", type=float, default=1.0)
    p.add_argument("--class-detach", action="store_true",
                   help="the categorical head reads a detached z: the class loss never shapes E (both stages)")
    p.add_argument("--stage1-steps", type=int, default=1500)
    p.add_argument("--stage1", help="reuse this stage-1 training checkpoint instead of training stage 1")
    p.add_argument("--stage2-steps", type=int, default=1500)
    p.add_argument("--pairs-per-step", type=int, default=8)
    p.add_argument("--valence", default="pair", choices=("none", "class", "rank", "pair"))
    p.add_argument("--valence-weight", type=float, default=3.0)
    p.add_argument("--margin", type=float, help="hinge margin (default: happy - neutral class mean valence)")
    p.add_argument("--edit-image-weight", type=float, default=1.0)
    p.add_argument("--edit-code-weight", type=float, default=10.0)
    p.add_argument("--head-only", metavar="FILE",
                   help="instead of training: add a categorical head to FILE's PK, post-trained on the frozen "
                        "codes of the train faces (E, G, D_em unchanged)")
    p.add_argument("--head-epochs", type=int, default=HeadConfig.epochs)
    return p


def add_head(path: str, train: CropSet, cfg: HeadConfig) -> tuple[PK, dict[str, Any]]:
    """FILE's PK with a categorical head post-trained on ``train`` (:func:`~.train.post_train_classifier`),
    and the provenance to export it with: FILE's own, plus what the head was trained on. A head FILE already
    has (trained jointly with E in the recipe's stages) is the starting point: the post-training only refines
    the read-out of the now fixed codes."""
    from ..atomic_io import read_regular_file
    from ..file_format import read_metadata
    from .checkpoint import MAX_MODEL_BYTES

    _, provenance = load_inference_model(path)
    # The file's own config (the inference model is built without discriminators), plus the head.
    own = PKConfig.from_json(read_metadata(read_regular_file(path, MAX_MODEL_BYTES), "PK file")["config"])
    if own.num_classes not in (0, NUM_EXPRESSIONS):
        raise ValueError(f"{path} has a head of {own.num_classes} classes, not {NUM_EXPRESSIONS}")
    torch.manual_seed(cfg.seed)
    model = PK(dataclasses.replace(own, num_classes=NUM_EXPRESSIONS))
    parts = load_weights(path, model)  # a head the file has is loaded and post-trained further
    continued = "classifier" in parts
    losses = post_train_classifier(model, train, cfg)
    counts = np.bincount(np.asarray(train.classes)[np.asarray(train.classes) >= 0], minlength=NUM_EXPRESSIONS)
    earlier = {"previous": provenance["classifier"]} if "classifier" in provenance else {}
    provenance = {**provenance, "classifier": {**earlier,
        "how": "post-trained alone on the frozen E's codes (affective_memory_ros.pk.train.post_train_classifier)",
        "config": dataclasses.asdict(cfg), "from": Path(path).name,
        "parts_kept": [part for part in parts if part != "classifier"], "continued_from_files_head": continued,
        "faces_per_class": {EXPRESSIONS[c]: int(n) for c, n in enumerate(counts) if n},
        "final_loss": round(losses[-1], 4), "classes": list(EXPRESSIONS)}}
    return model, provenance


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.head_only and args.class_detach:
        parser.error("--class-detach is a training option; --head-only trains the head alone anyway")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    started = time.time()
    train, counts = load_training_faces(args.diffusionfer, args.london, args.video, args.cache, args.dev_fold)
    if args.head_only:
        export = Path(args.export or out / "pk_head.safetensors")
        model, provenance = add_head(args.head_only, train, HeadConfig(epochs=args.head_epochs, seed=args.seed))
        provenance["classifier"]["train"] = {**counts, "split": "affective_memory_ros.splits (train only)",
                                             "dev_fold": args.dev_fold}
        save_inference_model(export, model, provenance)
        print(f"exported {export} after {time.time() - started:.0f} s", flush=True)
        _report(args, export, {})
        return 0
    means = {EXPRESSIONS[c]: v for c, v in class_valence(train).items()}
    print(json.dumps({"train": counts, "class_valence": means}), flush=True)
    provenance: dict[str, Any] = {
        "data": {"train": counts, "split": "affective_memory_ros.splits (train only)", "dev_fold": args.dev_fold,
                 "skipped": train.skipped, "classes": list(EXPRESSIONS)},
        "recipe": "affective_memory_ros.pk.recipe"}
    base = TrainConfig(model=PKConfig(width=args.width, num_classes=NUM_EXPRESSIONS),
                       lambdas=Lambdas(em=args.lambda_em), edit_weight=args.edit_weight, epochs=10_000,
                       batch_size=48, seed=args.seed, device=args.device, num_threads=args.threads,
                       amp=not args.no_amp, class_weight=args.class_weight, class_detach=args.class_detach,
                       checkpoint_every=10_000)
    timings = {}
    if args.stage1:
        stage1 = Path(args.stage1)
        # What the given stage 1 was itself trained on (its data, recipe and, for a chain of runs, its head).
        provenance["stage1"] = {"file": stage1.name, "provenance": read_provenance(stage1)}
    else:
        cfg1 = dataclasses.replace(base, out_dir=str(out / "stage1"), max_steps=args.stage1_steps)
        t0 = time.time()
        trainer = Trainer(cfg1, train, None, provenance)
        trainer.fit()
        stage1 = out / "stage1" / "checkpoint.safetensors"
        timings["stage1_s"] = round(time.time() - t0, 1)
        provenance["stage1"] = {"file": stage1.name, "trained_here": True, "steps": trainer.step,
                                "epochs": trainer.epoch, "train_config": json.loads(cfg1.to_json()),
                                "valence_spread": round(_stop_if_collapsed(args, trainer.model, train, "stage 1"), 5)}
    real = RealPairs(pairs_per_step=args.pairs_per_step, valence=args.valence, valence_weight=args.valence_weight,
                     neutral_valence=means.get("neutral", 0.0), happy_valence=means.get("happiness", 0.4),
                     margin=args.margin, edit_image_weight=args.edit_image_weight,
                     edit_code_weight=args.edit_code_weight)
    cfg2 = dataclasses.replace(base, out_dir=str(out / "stage2"), max_steps=args.stage2_steps, real=real,
                               init_from=str(stage1), seed=args.seed + 1)
    t0 = time.time()
    trainer = Trainer(cfg2, train, None, provenance)
    trainer.fit()
    timings["stage2_s"] = round(time.time() - t0, 1)
    provenance["valence_spread"] = round(_stop_if_collapsed(args, trainer.model, train, "stage 2"), 5)
    provenance["train_seconds"] = timings
    export = Path(args.export) if args.export else out / "pk.safetensors"
    trainer.provenance = provenance
    trainer.export(export, {})
    print(f"exported {export} after {time.time() - started:.0f} s ({timings})", flush=True)
    _report(args, export, timings)
    return 0


def _report(args: argparse.Namespace, export: Path, timings: dict[str, float]) -> None:
    """The selection report (London tune; with --dev-fold, the DiffusionFER dev fold): never val."""
    if not args.report:
        return
    report = real_face_report({"model": str(export)}, args.london[0] if args.london else None,
                              args.diffusionfer[0] if args.diffusionfer and args.dev_fold else None, ("tune",),
                              args.cache, dev_fold=True)
    report["timings"] = timings
    report["args"] = vars(args)
    atomic_write_bytes(args.report, json.dumps(report, indent=1, default=float).encode())
    print(report_markdown(report), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
