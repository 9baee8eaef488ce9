"""Evaluating PK models: CCC and RMSE per dimension, and the paper's Table 2; on real faces, the
smile-vs-neutral measures, the categorical head and how G's edits match a person's real smile
(``python -m affective_memory_ros.pk.evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..encoders.pk import INPUT_SPEC as INPUT
from ..facesets import CropSet, dev_fold_mask, encode_all, load_labelled_folder, score_faces
from ..metrics import ccc, rmse, smile_pairs
from .checkpoint import load_inference_model
from .model import PK
from .train import predict


def evaluate_models(paths: list[str], data: CropSet, post_train: Any = None) -> list[dict[str, Any]]:
    lab = data.labelled
    results = []
    for path in paths:
        model, provenance = load_inference_model(path)
        pred = predict(model, data.crops[lab], torch.device("cpu"))
        row: dict[str, Any] = {"model": Path(path).name, "variant": model.cfg.name if model.cfg.use_em else
                               provenance.get("variant", "?"), "faces": int(lab.sum())}
        train_cfg = provenance.get("train_config", {})
        cfg = train_cfg.get("model", {})
        if cfg:
            parts = [n for n in ("prior", "real", "em") if cfg.get(f"use_{n}")]
            row["variant"] = "all" if len(parts) == 3 else ("base" if not parts else "+" + "+".join(parts))
        notes = []
        if train_cfg.get("edit_weight"):
            notes.append("edit loss")
        if "epochs" in provenance:
            notes.append(f"{provenance['steps']} steps")
        row["label"] = row["variant"] + (f" ({', '.join(notes)})" if notes else "")
        for i, name in enumerate(("arousal", "valence")):
            row[f"ccc_{name}"] = round(ccc(pred[:, i], data.labels[lab, i]), 4)
            row[f"rmse_{name}"] = round(rmse(pred[:, i], data.labels[lab, i]), 4)
        results.append(row)
    return results


def ablation_table(results: list[dict[str, Any]]) -> str:
    """Markdown in the layout of P-AffMem's Table 2: Model | CCC arousal / valence."""
    order = ["base", "+prior", "+real", "+em", "+prior+real", "+prior+em", "+real+em", "all"]
    rows = sorted(results, key=lambda r: order.index(r["variant"]) if r["variant"] in order else 99)
    lines = ["| Model | CCC arousal / valence |", "|---|---|"]
    for r in rows:
        lines.append(f"| {r.get('label', r['variant'])} | {_fmt(r['ccc_arousal'])} / {_fmt(r['ccc_valence'])} |")
    return "\n".join(lines) + "\n"


def _fmt(v: float) -> str:
    """The paper's style: .38, -.02, 1.00."""
    if not np.isfinite(v):
        return "n/a"
    text = f"{v:.2f}"
    return text.replace("0.", ".", 1) if abs(v) < 1 else text


# ------------------------------------------------------------------------------------ real faces
#: Valence step of G's "more valence" edit in :func:`edit_alignment`.
EDIT_DELTA = 0.5


@torch.inference_mode()
def edit_alignment(model: PK, neutral: np.ndarray, smile: np.ndarray, delta: float = EDIT_DELTA,
                   device: str | torch.device = "cpu") -> dict[str, Any]:
    """How G's valence edits of a person's neutral face compare with that person's real smile, in z.

    Per person (aligned crops ``neutral[i]``, ``smile[i]``), with z_n = E(x_n), z_s = E(x_s) and
    (a, v) = D_em(z_n), the neutral face's own reading:

    * real change: d = z_s - z_n;
    * G's "more valence" direction: e = E(G(z_n, (a, v + delta))) - E(G(z_n, (a, v)));
    * ``cosine``: cos(d, e);
    * ``magnitude_ratio``: |d| / |E(G(z_n, (a, +1))) - E(G(z_n, (a, -1)))|, the share of a full -1 -> +1
      valence edit that the real smile covers (the issue's 0.09);
    * ``reading_gap``: D_em's valence of the smile minus the neutral face, for scale: a model whose edits
      move z linearly in valence would give a ratio of about reading_gap / 2.
    """
    model = model.to(device).eval()
    to_t = INPUT.to_tensor
    zn = model.encoder(to_t(neutral, device))
    zs = model.encoder(to_t(smile, device))
    read_n, read_s = model.emotion(zn), model.emotion(zs)
    a, v = read_n[:, 0:1], read_n[:, 1:2]

    def code(valence: torch.Tensor) -> torch.Tensor:
        return model.encoder(model.generator(zn, torch.cat([a, valence], dim=1)))

    real = zs - zn
    step = code((v + delta).clamp(-1, 1)) - code(v)
    full = code(torch.ones_like(v)) - code(-torch.ones_like(v))
    cos = torch.nn.functional.cosine_similarity(real, step, dim=1)
    ratio = real.norm(dim=1) / full.norm(dim=1).clamp(min=1e-8)
    gap = read_s[:, 1] - read_n[:, 1]
    return {"people": len(neutral), "cosine": float(cos.mean()), "cosine_median": float(cos.median()),
            "magnitude_ratio": float(ratio.mean()), "reading_gap": float(gap.mean()),
            "per_person_cosine": [round(float(c), 4) for c in cos]}


#: Targets of :func:`edit_readback`: each dimension edited to these values, the other held at 0.
READBACK_TARGETS = (-1.0, 0.0, 1.0)


@torch.inference_mode()
def edit_readback(model: PK, crops: np.ndarray, device: str | torch.device = "cpu",
                  batch: int = 64) -> dict[str, list[float]]:
    """Do G's edits still carry their targets? Each face's code z = E(x) is edited by G to arousal 0 and
    valence -1 / 0 / +1, then to valence 0 and arousal -1 / 0 / +1, and D_em reads each edit back through
    E: the mean reading per target (``valence``: D_em's valence of the valence edits, ``arousal``: its
    arousal of the arousal edits). A PK whose G ignores its targets reads the same for every target."""
    model = model.to(device).eval()
    sums = {"valence": np.zeros(len(READBACK_TARGETS)), "arousal": np.zeros(len(READBACK_TARGETS))}
    for i in range(0, len(crops), batch):
        z = model.encoder(INPUT.to_tensor(crops[i : i + batch], device))
        reads: dict[tuple[float, float], torch.Tensor] = {}  # (0, 0) is on both axes: rendered once
        for dim, key in ((1, "valence"), (0, "arousal")):
            for j, target in enumerate(READBACK_TARGETS):
                goal = (target, 0.0) if dim == 0 else (0.0, target)
                if goal not in reads:
                    y = torch.tensor(goal, device=z.device).expand(len(z), 2)
                    reads[goal] = model.emotion(model.encoder(model.generator(z, y)))
                sums[key][j] += float(reads[goal][:, dim].sum())
    n = max(len(crops), 1)
    means = {key: [round(float(v) / n, 4) for v in vals] for key, vals in sums.items()}
    return {**means, "targets": list(READBACK_TARGETS)}


def real_face_report(models: dict[str, str], london: str | None, diffusionfer: str | None,
                     parts: tuple[str, ...] = ("tune", "val"), cache_dir: str = ".cache/faces",
                     dev_fold: bool = False) -> dict[str, Any]:
    """Every number of docs/pk.md's before/after table, per model and split part.

    London FRL (real people, by person): the smile-vs-neutral valence measures, the happy/neutral accuracy of
    the categorical head and the edit alignment (:func:`edit_alignment`), on each of ``parts``.
    DiffusionFER (by file): CCC/RMSE of arousal/valence and 7-class accuracy on ``val``, or with ``dev_fold``
    on the dev fold inside ``train`` instead (for choices made while developing a recipe).
    """
    from ..encoders.pk import PKEncoder

    report: dict[str, Any] = {"models": {}, "parts": list(parts), "edit_delta": EDIT_DELTA}
    lon = load_labelled_folder(london, cache_dir) if london else None
    dfer = load_labelled_folder(diffusionfer, cache_dir) if diffusionfer else None
    for name, path in models.items():
        enc = PKEncoder(path, device="cpu")
        out: dict[str, Any] = {"file": Path(path).name}
        if lon is not None:
            for part in parts:
                sub = lon.part(part)  # type: ignore[arg-type]
                row: dict[str, Any] = {"faces": len(sub), **score_faces(sub, encode_all(enc, sub.crops))}
                pairs = smile_pairs(sub.identities or [], np.asarray(sub.classes))
                row["edit"] = edit_alignment(enc.model, sub.crops[pairs[:, 0]], sub.crops[pairs[:, 1]])
                out[f"london_{part}"] = row
        if dfer is not None:
            mask = dfer.split_mask("train") & dev_fold_mask(dfer.groups) if dev_fold else dfer.split_mask("val")
            sub = dfer.subset(mask)
            out["diffusionfer_dev" if dev_fold else "diffusionfer_val"] = {
                "faces": len(sub), **score_faces(sub, encode_all(enc, sub.crops)),
                "edit_readback": edit_readback(enc.model, sub.crops)}
        report["models"][name] = out
    return report


def report_markdown(report: dict[str, Any]) -> str:
    """One row per model and part: the before/after table of docs/pk.md."""
    lines = ["| model | part | people | person AUC | mean Δv | v smiles | \\|v\\| neutral | happy/neutral acc | "
             "edit cos | edit magnitude | D_em gap |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    dlines = ["| model | part | faces | CCC A | CCC V | RMSE A | RMSE V | 7-class acc | macro-F1 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, out in report["models"].items():
        for key, row in out.items():
            if key.startswith("london_"):
                e = row.get("edit", {})
                lines.append(f"| {name} | {key[7:]} | {row.get('people', 0)} | {_f(row.get('person_auc'))} | "
                             f"{_f(row.get('mean_diff'))} | {_f(row.get('smile_valence'))} | "
                             f"{_f(row.get('neutral_abs_valence'))} | {_f(row.get('happy_neutral_accuracy'))} | "
                             f"{_f(e.get('cosine'))} | {_f(e.get('magnitude_ratio'))} | {_f(e.get('reading_gap'))} |")
            elif key.startswith("diffusionfer_"):
                dlines.append(f"| {name} | {key[13:]} | {row.get('faces', 0)} | {_f(row.get('ccc_arousal'))} | "
                              f"{_f(row.get('ccc_valence'))} | {_f(row.get('rmse_arousal'))} | "
                              f"{_f(row.get('rmse_valence'))} | {_f(row.get('accuracy'))} | "
                              f"{_f(row.get('macro_f1'))} |")
    rlines = ["| model | part | valence edits -1 / 0 / +1 read | arousal edits -1 / 0 / +1 read |", "|---|---|---|---|"]
    for name, out in report["models"].items():
        for key, row in out.items():
            rb = row.get("edit_readback") if key.startswith("diffusionfer_") else None
            if rb:
                rlines.append(f"| {name} | {key[13:]} | {' / '.join(_f(v) for v in rb['valence'])} | "
                              f"{' / '.join(_f(v) for v in rb['arousal'])} |")
    tables = ["\n".join(lines), "\n".join(dlines)] + (["\n".join(rlines)] if len(rlines) > 2 else [])
    return "\n\n".join(tables) + "\n"


def _f(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, int | float) and np.isfinite(v) else "–"


def main(argv: list[str] | None = None) -> int:
    """``python -m affective_memory_ros.pk.evaluate --model NAME=FILE ... --london DIR --diffusionfer DIR``."""
    import argparse
    import json

    from ..atomic_io import atomic_write_bytes

    p = argparse.ArgumentParser(prog="python -m affective_memory_ros.pk.evaluate", description=real_face_report.__doc__)
    p.add_argument("--model", action="append", required=True, metavar="[NAME=]FILE", help="PK file; repeatable")
    p.add_argument("--london", help="London FRL folder (labels.csv with identity and neutral/happy labels)")
    p.add_argument("--diffusionfer", help="DiffusionFER folder (labels.csv with valence, arousal, label)")
    p.add_argument("--part", action="append", choices=("train", "tune", "val"),
                   help="London parts to report (default: tune and val)")
    p.add_argument("--dev-fold", action="store_true", help="DiffusionFER: the dev fold inside train, not val")
    p.add_argument("--cache", default=".cache/faces")
    p.add_argument("--json", help="also write the report here")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    models = dict(m.split("=", 1) if "=" in m else (Path(m).stem, m) for m in args.model)
    report = real_face_report(models, args.london, args.diffusionfer, tuple(args.part or ("tune", "val")),
                              args.cache, args.dev_fold)
    if args.json:
        atomic_write_bytes(args.json, json.dumps(report, indent=1, default=float).encode())
    print(report_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
