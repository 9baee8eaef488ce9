"""The ``affective-memory`` command line: a thin adapter over the ROS-free core."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _bench_memory(args: argparse.Namespace) -> int:
    from .bench import memory as benchmark

    sizes = tuple(int(s) for s in args.sizes.split(","))
    print(json.dumps(benchmark.run(sizes=sizes, dim=args.dim, steps=args.steps), indent=2))
    return 0


def _bench_perception(args: argparse.Namespace) -> int:
    import torch

    from .bench import perception as benchmark

    devices = ("cpu", "cuda") if torch.cuda.is_available() and args.device == "auto" else (
        ("cpu",) if args.device == "auto" else (args.device,))
    print(json.dumps(benchmark.run(Path(args.video), devices, frames=args.frames), indent=2))
    return 0


def _pk_data(args: argparse.Namespace) -> tuple[object, object]:
    """(train, held-out) CropSets from the data arguments; held-out split by group hash."""
    from .perception.detectors import make_detector
    from .pk.data import build_dataset, held_out

    if len(args.affectnet) % 2:
        raise SystemExit("--affectnet takes CSV and IMAGE_ROOT pairs")
    affectnet = list(zip(args.affectnet[::2], args.affectnet[1::2], strict=True))
    data = build_dataset(labels_csv=args.labels_csv, affectnet=affectnet, unlabelled=args.unlabelled,
                         videos=args.video, detector=make_detector("blazeface_short"), cache_dir=args.cache)
    if len(data) == 0:
        raise SystemExit("no faces found in the given data")
    val = held_out(data.groups, args.holdout)
    return data.subset(~val), data.subset(val)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels-csv", action="append", default=[], metavar="DIR",
                   help="folder with labels.csv (file, valence, arousal) and its images; repeatable")
    p.add_argument("--affectnet", nargs="*", default=[], metavar="CSV IMAGE_ROOT",
                   help="AffectNet CSV and its image root (pairs); -2 labels count as missing")
    p.add_argument("--unlabelled", action="append", default=[], metavar="DIR",
                   help="folder of unlabelled face images (files <id>_*.jpg group by person); repeatable")
    p.add_argument("--video", action="append", default=[], help="unlabelled video (every 5th frame); repeatable")
    p.add_argument("--holdout", type=float, default=0.15, help="held-out fraction (by hashed group)")
    p.add_argument("--cache", default=".cache/pk", help="where aligned crops are cached")


def _train(args: argparse.Namespace) -> int:
    from .pk.model import PKConfig
    from .pk.train import Lambdas, TrainConfig, Trainer

    train, val = _pk_data(args)
    cfg = TrainConfig(out_dir=args.out, model=PKConfig(width=args.width, use_prior=not args.no_prior,
                                                       use_real=not args.no_real, use_em=not args.no_em),
                      lambdas=Lambdas(em=args.lambda_em), edit_weight=args.edit_weight, epochs=args.epochs,
                      batch_size=args.batch_size, seed=args.seed, device=args.device, amp=not args.no_amp,
                      checkpoint_every=args.checkpoint_every, max_steps=args.max_steps,
                      iden_weights=args.vgg_face, num_threads=args.threads)
    provenance = {"data": {"labels_csv": args.labels_csv, "affectnet": args.affectnet, "unlabelled": args.unlabelled,
                           "videos": [Path(v).name for v in args.video], "holdout": args.holdout,
                           "train_faces": len(train), "train_labelled": int(train.labelled.sum()),
                           "heldout_faces": len(val), "heldout_labelled": int(val.labelled.sum()),
                           "skipped": train.skipped}}
    trainer = Trainer(cfg, train, val, provenance)
    if args.resume:
        trainer.resume(args.resume)
    summary = trainer.fit()
    if args.export and trainer.rank == 0:
        trainer.export(args.export, summary)
        print(f"exported inference model to {args.export}")
    print(json.dumps({"steps": trainer.step, "epochs": trainer.epoch, "heldout": summary}))
    return 0


def _eval_pk(args: argparse.Namespace) -> int:
    from .pk.evaluate import ablation_table, evaluate_models

    _, val = _pk_data(args)
    results = evaluate_models(args.model, val, post_train=None)
    print(json.dumps(results, indent=2))
    if args.table:
        Path(args.table).write_text(ablation_table(results))
        print(f"wrote {args.table}")
    return 0


def _configs(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """PipelineConfig, MemorySettings and StoreConfig from the flags (generated from the declarations)."""
    from .modes import MemorySettings
    from .pipeline import PipelineConfig
    from .settings import from_arguments
    from .store import StoreConfig

    return (from_arguments(PipelineConfig, args), from_arguments(MemorySettings, args),
            from_arguments(StoreConfig, args))


def _add_pipeline_args(p: argparse.ArgumentParser, store: bool = False) -> None:
    """Every setting the node has that makes sense offline, as flags (see the README's parameter table)."""
    from .modes import MemorySettings
    from .pipeline import PipelineConfig
    from .settings import add_arguments
    from .store import StoreConfig

    add_arguments(p, PipelineConfig, MemorySettings, *((StoreConfig,) if store else ()))


RUN_COLUMNS = ("frame", "time", "person_id", "arousal", "valence", "encoder_arousal", "encoder_valence",
               "confidence", "expression", "expression_confidence", "seeding", "neurons",
               "box_x1", "box_y1", "box_x2", "box_y2")


def _run(args: argparse.Namespace) -> int:
    import csv
    import io

    from tqdm import tqdm

    from .atomic_io import atomic_write_bytes
    from .pipeline import AffectPipeline
    from .recordings import check_recording, recording_frames
    from .store import PersonStore

    # Everything about the input and the settings is checked before a model is loaded.
    total = check_recording(args.recording, args.topic)
    pipeline_cfg, memory_cfg, store_cfg = _configs(args)
    store = PersonStore(store_cfg.store_dir or None)
    out = Path(args.out or Path(args.recording).with_suffix(".av.csv").name)
    pipeline = AffectPipeline(pipeline_cfg, memory_cfg, store, load_from_store=store_cfg.load_on_start)
    count = 0
    buffer = io.StringIO()  # the CSV replaces --out only when the run succeeded
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RUN_COLUMNS)
    start: float | None = None
    frames = recording_frames(args.recording, args.topic)
    index = -1
    for index, (t, frame) in enumerate(tqdm(frames, total=total, unit="frame", desc=Path(args.recording).name,
                                             disable=args.quiet)):
        start = t if start is None else start
        for e in pipeline.process(frame, t):
            writer.writerow([index, f"{t - start:.4f}", e.person_id, f"{e.arousal:.4f}", f"{e.valence:.4f}",
                             f"{e.encoder_arousal:.4f}", f"{e.encoder_valence:.4f}", f"{e.confidence:.4f}",
                             e.expression, f"{e.expression_confidence:.4f}", int(e.seeding), e.num_neurons,
                             *(f"{v:.1f}" for v in e.box)])
            count += 1
    if total is not None and index + 1 < total:
        print(f"affective-memory run: warning: the recording ended early: {index + 1} of {total} frames read "
              "(truncated or damaged file)", file=sys.stderr)
    atomic_write_bytes(out, buffer.getvalue().encode())
    print(f"wrote {count} rows for {len(pipeline.persons)} person(s) to {out}")
    if store.enabled and store_cfg.save_on_shutdown:
        report = store.save_all(pipeline.snapshots())
        print(f"saved {len(report.saved)} memories to {store.directory}")
    for _, text in sorted([*store.errors, *pipeline.errors]):
        print(f"affective-memory run: {text}", file=sys.stderr)
    if args.plot:
        from .evaluation import read_rows
        from .visualize import plot_timeline

        annotations = read_rows(args.annotations) if args.annotations else None
        plot_timeline(read_rows(out), args.plot, title=Path(args.recording).name, annotations=annotations)
        print(f"wrote {args.plot}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .evaluation import match, read_rows, score

    pairs = match(read_rows(args.annotations), read_rows(args.predictions), args.tolerance)
    if not pairs:
        raise SystemExit("no annotation matched a prediction (same person_id and frame or time)")
    print(json.dumps(score(pairs), indent=2))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench.pipeline import run

    pipeline_cfg, memory_cfg, _ = _configs(args)
    report = run(Path(args.video), pipeline_cfg, memory_cfg, frames=args.frames, replicate=args.faces)
    print(json.dumps(report, indent=2))
    return 0


def _bench_pk(args: argparse.Namespace) -> int:
    import torch

    from .bench.pk import run

    devices = ("cpu", "cuda") if torch.cuda.is_available() and args.device == "auto" else (
        ("cpu",) if args.device == "auto" else (args.device,))
    print(json.dumps(run(args.pk_model, devices), indent=2))
    return 0


def _plot_memory(args: argparse.Namespace) -> int:
    from .store import PersonStore
    from .visualize import plot_memory

    loaded = PersonStore(None).read(Path(args.file), expected_id=None)
    plane = loaded.person.memory.plane()
    out = args.out or Path(args.file).with_suffix(".png").name
    plot_memory(plane, out, title=f"{loaded.person.person_id} ({loaded.person.memory.mode} memory)")
    print(f"wrote {out} ({len(plane.av)} neurons)")
    return 0


def _edit(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from .encoders.pk import PKEncoder
    from .perception.align import crop_faces
    from .perception.detectors import make_detector
    from .video import read_image
    from .visualize import edit_grid

    image = read_image(args.image)
    pad = max(image.shape[:2]) // 2  # tight portraits need context for the detector
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    dets = make_detector("blazeface_short")([padded])[0]
    if len(dets) == 0:
        raise ValueError(f"no face found in {args.image}")
    best = int(np.argmax(dets.scores))
    crop = crop_faces(padded, dets)[best : best + 1]
    axis = np.linspace(-1, 1, args.grid)
    grid = [(a, v) for a in axis[::-1] for v in axis]
    targets = np.array([(-1, -1), (0, 0), (1, 1), *grid], np.float32)
    edits = PKEncoder(args.pk_model, args.device).edit_images(crop, targets)[0]
    captions = [f"a{a:+.1f} v{v:+.1f}" for a, v in targets]
    cols = max(4, args.grid)
    picture = np.concatenate([edit_grid(np.concatenate([crop, edits[:3]]), ["input", *captions[:3]], cols),
                              edit_grid(edits[3:], captions[3:], cols)])
    out = args.out or Path(args.image).with_suffix(".edits.png").name
    cv2.imwrite(str(out), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(f"wrote {out}: the face and its edits at (-1,-1), (0,0), (1,1) and a {args.grid}x{args.grid} grid")
    return 0


def _media(name: str) -> str:
    return str(Path(os.environ.get("AFFECTIVE_MEMORY_MEDIA", ".cache/media")) / name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="affective-memory", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench-memory", help="time and size one affective memory (JSON)")
    bench.add_argument("--sizes", default="100,500,1000,2000,5000", help="comma-separated neuron counts")
    bench.add_argument("--dim", type=int, default=50)
    bench.add_argument("--steps", type=int, default=2000, help="learning steps timed per size")
    bench.set_defaults(func=_bench_memory)
    perc = sub.add_parser("bench-perception", help="time detection, cropping and tracking per frame (JSON)")
    perc.add_argument("--video", default=_media("WolfgangLanger_Pexels.mp4"))
    perc.add_argument("--frames", type=int, default=120)
    perc.add_argument("--device", default="auto", help="auto (CPU, and CUDA when present), cpu or cuda")
    perc.set_defaults(func=_bench_perception)

    run = sub.add_parser("run", help="run P-AffMem on a video file, rosbag2 folder or MCAP file; write a CSV")
    run.add_argument("recording", help="video file, rosbag2 folder or .mcap with sensor_msgs/Image")
    run.add_argument("--topic", help="image topic in a bag (needed when it has several)")
    run.add_argument("--out", help="CSV path (default: <recording>.av.csv in the current folder)")
    run.add_argument("--plot", help="also write the arousal/valence timeline PNG here")
    run.add_argument("--annotations", help="with --plot: CSV (frame or time, person_id, arousal, valence) to draw "
                                           "and score with a rolling CCC")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_pipeline_args(run, store=True)
    run.set_defaults(func=_run)

    ev = sub.add_parser("eval", help="CCC per person and overall of a run CSV against annotations")
    ev.add_argument("annotations", help="CSV: frame or time, person_id, arousal, valence")
    ev.add_argument("predictions", help="CSV written by 'affective-memory run'")
    ev.add_argument("--tolerance", type=float, default=0.05, help="time matching tolerance (s)")
    ev.set_defaults(func=_eval)

    bench_all = sub.add_parser("bench", help="end-to-end frames/s and per-stage ms on a real clip (JSON)")
    bench_all.add_argument("--video", default=_media("WolfgangLanger_Pexels.mp4"))
    bench_all.add_argument("--frames", type=int, default=200)
    bench_all.add_argument("--faces", type=int, default=1, help="tile the frame to show this many faces")
    _add_pipeline_args(bench_all)
    bench_all.set_defaults(func=_bench)

    bench_pk = sub.add_parser("bench-pk", help="PK encoder faces/s (batch 1, 8, 64) and training steps/s (JSON)")
    bench_pk.add_argument("--pk-model", help="PK inference model (default: the shipped one)")
    bench_pk.add_argument("--device", default="auto", help="auto (CPU, and CUDA when present), cpu or cuda")
    bench_pk.set_defaults(func=_bench_pk)

    reid = sub.add_parser("bench-reid", help="re-identification error rates of the appearance signature on a "
                                             "labelled face folder (JSON; --markdown for a table)")
    from .bench import reid as reid_bench

    reid_bench.add_arguments(reid)
    reid.set_defaults(func=reid_bench.run)

    cl = sub.add_parser("bench-clifer", help="CLIFER's evaluation (neutral learned, unseen smile, both learned) "
                                             "on a labelled face folder, and the dual memory's speed (JSON)")
    from .bench import clifer as clifer_bench

    clifer_bench.add_arguments(cl)
    cl.set_defaults(func=clifer_bench.run)

    pers = sub.add_parser("bench-personal", help="does each person's memory read them better than the encoder? "
                          "Memory modes on synthetic camera sequences of real people (JSON, Markdown)")
    from .bench import personal as personal_bench

    personal_bench.add_arguments(pers)
    pers.set_defaults(func=personal_bench.run)

    lat = sub.add_parser("bench-latency", help="the running node's latency, camera stamp to affect/av, at 30 fps "
                                               "with one known person and with newcomers arriving (JSON)")
    from .bench import node_latency as latency_bench

    latency_bench.add_arguments(lat)
    lat.set_defaults(func=latency_bench.run)

    adv = sub.add_parser("bench-adversarial", help="repeat the reliability review's attacks against the installed "
                         "node: crashes, hangs, memories lost, files touched outside the store (JSON, Markdown)")
    from .bench import adversarial as adversarial_bench

    adversarial_bench.add_arguments(adv)
    adv.set_defaults(func=adversarial_bench.run)

    pm = sub.add_parser("plot-memory", help="draw a saved memory's neurons on the arousal/valence plane (PNG)")
    pm.add_argument("file", help="a memory file (<person_id>.safetensors)")
    pm.add_argument("--out", help="PNG path (default: <file>.png in the current folder)")
    pm.set_defaults(func=_plot_memory)

    ed = sub.add_parser("edit", help="grid of the PK's edits of the face in an image (PNG)")
    ed.add_argument("image")
    ed.add_argument("--out", help="PNG path (default: <image>.edits.png in the current folder)")
    ed.add_argument("--grid", type=int, default=5, help="targets per axis of the (arousal, valence) grid")
    ed.add_argument("--pk-model", help="PK inference model (default: the shipped one)")
    ed.add_argument("--device", default="auto")
    ed.set_defaults(func=_edit)

    train = sub.add_parser("train", help="train the PK model (CPU, CUDA, or torchrun for several GPUs)")
    _add_data_args(train)
    train.add_argument("--out", default="runs/pk", help="run folder: checkpoints, metrics.csv, val.csv")
    train.add_argument("--export", help="write the inference model (E, G, D_em, fp16) here when done")
    train.add_argument("--width", type=int, default=64, help="base channels (64: the paper's size)")
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--max-steps", type=int)
    train.add_argument("--batch-size", type=int, default=48)
    train.add_argument("--lambda-em", type=float, default=0.02)
    train.add_argument("--edit-weight", type=float, default=0.1, help="weight of the edit-consistency loss (0: off)")
    train.add_argument("--no-prior", action="store_true", help="ablation: no D_prior")
    train.add_argument("--no-real", action="store_true", help="ablation: no D_real")
    train.add_argument("--no-em", action="store_true", help="ablation: D_em only post-trained on frozen z")
    train.add_argument("--vgg-face", help="VGG-Face weights (torchvision VGG-16 keys) to enable L_iden")
    train.add_argument("--device", default="auto")
    train.add_argument("--no-amp", action="store_true", help="no bfloat16 autocast on CUDA")
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=200)
    train.add_argument("--resume", help="training checkpoint to resume from")
    train.set_defaults(func=_train)

    ef = sub.add_parser("eval-faces", help="encoders on labelled face folders: CCC/RMSE, accuracy/macro-F1, "
                                           "smile-vs-neutral per person, beside the fer baseline (JSON, Markdown)")
    from .bench import faces as faces_bench

    faces_bench.add_arguments(ef)
    ef.set_defaults(func=faces_bench.run)

    be = sub.add_parser("bench-encoders", help="face encoders' faces/s at batch 1, 8, 64, parameters and file size "
                                               "(JSON)")
    from .bench import encoders as encoders_bench

    encoders_bench.add_arguments(be)
    be.set_defaults(func=encoders_bench.run)

    evalpk = sub.add_parser("eval-pk", help="CCC/RMSE of PK models on the held-out split; ablation table")
    _add_data_args(evalpk)
    evalpk.add_argument("--model", action="append", required=True, help="inference model file; repeatable")
    evalpk.add_argument("--table", help="write a Markdown table in the paper's Table 2 format here")
    evalpk.set_defaults(func=_eval_pk)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"affective-memory {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
