"""The affective-memory command line on real recordings: run (video and bag), eval, bench."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from affective_memory_ros.recordings import write_image_bag
from affective_memory_ros.video import read_video

FAST = ["--device", "cpu", "--init-frames", "3", "--edits-per-frame", "8"]
COLUMNS = ["frame", "time", "person_id", "arousal", "valence", "encoder_arousal", "encoder_valence", "confidence",
           "expression", "expression_confidence", "seeding", "neurons", "box_x1", "box_y1", "box_x2", "box_y2"]


def cli(*args: str, cwd: Path | None = None, expect: int = 0) -> str:
    exe = shutil.which("affective-memory")
    assert exe, "affective-memory must be on PATH (colcon install)"
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert done.returncode == expect, done.stdout + done.stderr
    return done.stdout if expect == 0 else done.stderr


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def video_run(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "single.csv"
    cli("run", str(media_dir / "single_face.mp4"), "--out", str(out), "--plot", str(out.with_suffix(".png")),
        "--store-dir", str(out.parent / "memories"), "--quiet", *FAST)
    return out


def test_run_writes_the_documented_csv(video_run: Path) -> None:
    with video_run.open() as handle:
        assert next(csv.reader(handle)) == COLUMNS
    data = rows(video_run)
    assert len(data) == 72 and {r["person_id"] for r in data} == {data[0]["person_id"]}
    values = np.array([[float(r[k]) for k in ("arousal", "valence", "encoder_arousal", "encoder_valence")]
                       for r in data])
    assert np.isfinite(values).all() and np.abs(values).max() <= 1
    assert [r["seeding"] for r in data[:4]] == ["1", "1", "1", "0"]
    assert video_run.with_suffix(".png").stat().st_size > 10_000
    (saved,) = (video_run.parent / "memories").glob("*.safetensors")
    assert saved.stem == data[0]["person_id"]


def test_run_reads_a_rosbag2_folder_and_a_bare_mcap(media_dir: Path, tmp_path: Path) -> None:
    frames = read_video(media_dir / "single_face.mp4", max_frames=20)
    bag = write_image_bag(tmp_path / "bag", frames, topic="/head_camera/image_raw")
    out = tmp_path / "bag.csv"
    cli("run", str(bag), "--out", str(out), "--quiet", *FAST)
    data = rows(out)
    assert len(data) == 20 and len({r["person_id"] for r in data}) == 1
    assert float(data[0]["time"]) == 0.0 and float(data[-1]["time"]) == pytest.approx(19 / 25, abs=1e-3), \
        "time counts from the start of the recording, not the epoch"
    mcap = next(bag.glob("*.mcap"))
    cli("run", str(mcap), "--out", str(tmp_path / "mcap.csv"), "--topic", "/head_camera/image_raw", "--quiet", *FAST)
    assert len(rows(tmp_path / "mcap.csv")) == 20


def test_eval_scores_memory_and_pk_per_person(video_run: Path, tmp_path: Path) -> None:
    data = rows(video_run)
    annotations = tmp_path / "annotations.csv"
    with annotations.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["frame", "person_id", "arousal", "valence"])
        for r in data:  # the memory's own output as ground truth, the PK's shifted by a constant
            writer.writerow([r["frame"], r["person_id"], r["arousal"], r["valence"]])
    report = json.loads(cli("eval", str(annotations), str(video_run)))
    overall = report["overall"]
    assert overall["frames"] == 72
    if np.std([float(r["valence"]) for r in data]) > 0:
        assert overall["ccc_memory_valence"] == pytest.approx(1.0, abs=1e-3)
    assert overall["rmse_memory_arousal"] == pytest.approx(0.0, abs=1e-3)
    assert set(report["persons"]) == {data[0]["person_id"]}
    assert "ccc_encoder_valence" in overall


def test_bench_prints_seeding_and_steady_state(media_dir: Path) -> None:
    report = json.loads(cli("bench", "--video", str(media_dir / "single_face.mp4"), "--frames", "12", *FAST))
    assert report["seeding_frames"] == 3 and report["steady_frames"] == 9
    assert report["steady_fps"] > 0 and set(report["steady_stage_ms_median"]) == {
        "decode", "detect", "crop", "track", "encode", "seed", "memory"}


def test_bad_recording_is_a_clear_error(tmp_path: Path) -> None:
    exe = shutil.which("affective-memory")
    assert exe
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    done = subprocess.run([exe, "run", str(bad), "--quiet", *FAST], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 2 and "cannot open" in done.stderr and "Traceback" not in done.stderr


def test_input_is_checked_before_models_load_and_failures_keep_the_old_output(tmp_path: Path) -> None:
    out = tmp_path / "keep.csv"
    out.write_text("an earlier run's results\n")
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 4)
    db3 = tmp_path / "bag" / "bag_0.db3"
    db3.parent.mkdir()
    db3.write_bytes(b"SQLite format 3\x00")
    for recording, reason in ((garbage, "not a readable bag"), (db3, "a bag is the folder"),
                              (tmp_path / "missing.mp4", "no such recording")):
        err = cli("run", str(recording), "--out", str(out), "--quiet", *FAST, expect=2)
        assert reason in err and "Traceback" not in err, err
        assert out.read_text() == "an earlier run's results\n", "a failed run never touches --out"


def test_a_truncated_video_is_reported(media_dir: Path, tmp_path: Path) -> None:
    import cv2

    full = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 360))
    for frame in read_video(media_dir / "single_face.mp4", max_frames=20):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    exe = shutil.which("affective-memory")
    assert exe
    done = subprocess.run([exe, "run", str(truncated), "--out", str(tmp_path / "t.csv"), "--quiet", *FAST],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ended early" in done.stderr and "of 20 frames" in done.stderr, done.stderr
