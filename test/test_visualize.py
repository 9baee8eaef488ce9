"""Pictures from real data: memory map, timeline, edited faces (checked by their data and size)."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from affective_memory_ros.modes import MemorySettings
from affective_memory_ros.pipeline import AffectPipeline, PipelineConfig
from affective_memory_ros.video import read_video
from affective_memory_ros.visualize import annotate_frame, plot_memory, plot_timeline


@pytest.fixture(scope="module")
def run_rows(media_dir: Path) -> tuple[AffectPipeline, list[dict[str, object]], list[np.ndarray]]:
    frames = read_video(media_dir / "WolfgangLanger_Pexels.mp4", max_frames=20)
    pipeline = AffectPipeline(PipelineConfig(device="cpu", encoder="pk"),
                              MemorySettings(memory_mode="paper", init_frames=4, edits_per_frame=12))
    rows = []
    for i, frame in enumerate(frames):
        for e in pipeline.process(frame, i / 25):
            rows.append({"time": i / 25, "person_id": e.person_id, "arousal": e.arousal, "valence": e.valence,
                         "encoder_arousal": e.encoder_arousal, "encoder_valence": e.encoder_valence,
                         "seeding": int(e.seeding)})
    return pipeline, rows, frames


def test_memory_map_plots_exactly_the_memorys_labels(run_rows: tuple, tmp_path: Path) -> None:
    pipeline, _, _ = run_rows
    (state,) = pipeline.persons.values()
    out = tmp_path / "map.png"
    data = plot_memory(state.memory.plane(), out, title="test")
    np.testing.assert_array_equal(data["arousal"], state.memory.net.labels[:, 0])
    np.testing.assert_array_equal(data["valence"], state.memory.net.labels[:, 1])
    np.testing.assert_allclose(data["mean"], state.memory.net.mean_labels(), rtol=1e-5)
    assert data["alpha"].max() == pytest.approx(1.0) and data["alpha"].min() >= 0.25  # newest brightest
    image = cv2.imread(str(out))
    assert image.shape == (500, 550, 3) and image.std() > 10


def test_timeline_plots_the_run(run_rows: tuple, tmp_path: Path) -> None:
    _, rows, _ = run_rows
    out = tmp_path / "timeline.png"
    data = plot_timeline(rows, out)
    (pid,) = data
    np.testing.assert_allclose(data[pid]["valence"], [r["valence"] for r in rows])
    np.testing.assert_allclose(data[pid]["encoder_arousal"], [r["encoder_arousal"] for r in rows])
    assert cv2.imread(str(out)).shape == (600, 1000, 3)


def test_debug_frame_is_annotated(run_rows: tuple) -> None:
    pipeline, _, frames = run_rows
    frame = frames[-1].copy()
    estimates = pipeline.process(frame, 1.0)
    out = annotate_frame(frame, estimates)
    assert out.shape == frame.shape and (out != frame).any()
    np.testing.assert_array_equal(frame, frames[-1])  # the input frame is left untouched
    memories = {e.person_id: pipeline.persons[e.person_id].memory.plane() for e in estimates}
    with_map = annotate_frame(frame, estimates, memories)
    changed = (with_map != out).any(axis=2)
    assert changed.sum() > 0.5 * 120 * 120, "a 120 px memory map is drawn beside the face"
    x1, _, x2, _ = estimates[0].box
    columns = np.flatnonzero(changed.any(axis=0))
    assert columns.min() > x2 or columns.max() < x1, "beside the face, not over it"


def test_memory_panel_places_neurons_at_their_labels(run_rows: tuple) -> None:
    from affective_memory_ros.visualize import memory_panel

    pipeline, _, _ = run_rows
    (state,) = pipeline.persons.values()
    panel = memory_panel(state.memory.plane(), None, 120)
    assert panel.shape == (120, 120, 3)
    for a, v in np.clip(state.memory.net.labels[:20], -1, 1):
        x, y = round((v + 1) / 2 * 119), round((1 - a) / 2 * 119)
        assert panel[y, x].max() > 40, "a neuron is drawn at its (valence, arousal) position"


def test_plot_memory_and_edit_commands(run_rows: tuple, media_dir: Path, tmp_path: Path) -> None:
    pipeline, _, _ = run_rows
    pid = next(iter(pipeline.persons))
    from affective_memory_ros.store import PersonStore

    memory_file = PersonStore(None).write(pipeline.snapshot(pid), tmp_path / f"{pid}.safetensors")
    exe = shutil.which("affective-memory")
    assert exe
    subprocess.run([exe, "plot-memory", str(memory_file), "--out", str(tmp_path / "m.png")], check=True,
                   timeout=120, capture_output=True)
    assert cv2.imread(str(tmp_path / "m.png")).shape == (500, 550, 3)
    subprocess.run([exe, "edit", str(media_dir / "single_face.jpg"), "--out", str(tmp_path / "e.png"), "--grid", "5",
                    "--device", "cpu"], check=True, timeout=120, capture_output=True)
    grid = cv2.imread(str(tmp_path / "e.png"))
    assert grid.shape == (6 * 114, 5 * 96, 3)  # input + 3 edits, then the 5x5 grid; 96 px faces, 18 px captions
    top_left = grid[:96, :96]
    assert top_left.std() > 10


def test_run_csv_round_trips_into_the_timeline(tmp_path: Path) -> None:
    rows = [{"time": t / 10, "person_id": "ydsgt", "arousal": 0.1 * t, "valence": -0.05 * t, "encoder_arousal": 0.0,
             "encoder_valence": 0.0, "seeding": int(t < 3)} for t in range(10)]
    path = tmp_path / "run.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    from affective_memory_ros.evaluation import read_rows

    data = plot_timeline(read_rows(path), tmp_path / "t.png")
    np.testing.assert_allclose(data["ydsgt"]["arousal"], [r["arousal"] for r in rows])


def test_timeline_with_annotations_shows_rolling_ccc(tmp_path: Path) -> None:
    t = np.arange(120)
    truth = np.sin(t / 10)
    rows = [{"frame": i, "time": i / 25, "person_id": "ydsgt", "arousal": truth[i], "valence": 0.5 * truth[i],
             "encoder_arousal": -truth[i], "encoder_valence": 0.0, "seeding": 0} for i in t]
    annotations = [{"frame": str(i), "person_id": "ydsgt", "arousal": str(truth[i]), "valence": str(0.5 * truth[i])}
                   for i in t]
    out = tmp_path / "timeline.png"
    data = plot_timeline(rows, out, annotations=annotations, window=20)["ydsgt"]
    memory = data["rolling_ccc_memory_arousal"]
    assert np.isnan(memory[:19]).all() and np.allclose(memory[19:], 1.0)  # the memory matches the annotation
    encoder = data["rolling_ccc_encoder_arousal"][19:]
    assert np.isfinite(encoder).all() and (encoder < 0).all()  # the encoder moves against the annotation
    assert cv2.imread(str(out)).shape == (900, 1000, 3)
