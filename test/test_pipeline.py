"""The online P-AffMem loop end to end on real video, with the shipped PK model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from affective_memory_ros.memory import GrowingWhenRequired, GWRConfig, MemoryFileError, save_memory
from affective_memory_ros.pipeline import AffectPipeline, PipelineConfig, load_person_state
from affective_memory_ros.video import read_image, read_video


@pytest.fixture(scope="module")
def clip(media_dir: Path) -> list[np.ndarray]:
    return read_video(media_dir / "WolfgangLanger_Pexels.mp4", max_frames=60)


def fast_config(**kw: object) -> PipelineConfig:
    base: dict[str, object] = {"device": "cpu", "init_frames": 6, "edits_per_frame": 16}
    base.update(kw)
    return PipelineConfig(**base)  # type: ignore[arg-type]


def run(pipeline: AffectPipeline, frames: list[np.ndarray]) -> list[list]:
    return [pipeline.process(f, i / 25) for i, f in enumerate(frames)]


def test_one_person_one_id_finite_values_and_seeding_stops(clip: list[np.ndarray]) -> None:
    pipeline = AffectPipeline(fast_config())
    out = run(pipeline, clip[:30])
    flat = [e for frame in out for e in frame]
    assert len(flat) >= 28
    assert len({e.person_id for e in flat}) == 1
    values = np.array([[e.arousal, e.valence, e.pk_arousal, e.pk_valence, e.confidence] for e in flat])
    assert np.isfinite(values).all() and np.abs(values[:, :4]).max() <= 1 and (values[:, 4] > 0).all()
    seeding = [e.seeding for e in flat]
    assert seeding[:6] == [True] * 6 and not any(seeding[6:]), "seeding must stop after init_frames"
    memory = pipeline.persons[flat[0].person_id].memory
    labelled = memory.labelled_steps
    assert labelled == 6 * 16
    run(pipeline, clip[30:40])
    assert memory.labelled_steps == labelled, "after seeding, only real (unlabelled) faces are learned"
    assert memory.steps > labelled


def test_all_faces_of_a_frame_are_estimated(media_dir: Path) -> None:
    image = read_image(media_dir / "multi_face.jpg")
    pipeline = AffectPipeline(fast_config(init_frames=1, edits_per_frame=8))
    estimates = pipeline.process(image, 0.0)
    assert len(estimates) == 5 and len({e.person_id for e in estimates}) == 5
    assert len(pipeline.persons) == 5 and all(e.num_neurons >= 2 for e in estimates)


def test_seeding_budget_is_shared_and_every_person_gets_full_seeding(clip: list[np.ndarray]) -> None:
    # Three people appear together; 9 edits per frame in all, 7 per person per (full) frame, 3 frames' worth.
    frames = [np.concatenate([f] * 3, axis=1) for f in clip[:12]]
    pipeline = AffectPipeline(fast_config(init_frames=3, edits_per_frame=7, max_seed_edits=9))
    labelled_before: dict[str, int] = {}
    seeding_frames: dict[str, int] = {}
    for i, frame in enumerate(frames):
        estimates = pipeline.process(frame, i / 25)
        assert len(estimates) == 3
        spent = 0
        for e in estimates:
            memory = pipeline.persons[e.person_id].memory
            spent += memory.labelled_steps - labelled_before.get(e.person_id, 0)
            labelled_before[e.person_id] = memory.labelled_steps
            seeding_frames[e.person_id] = seeding_frames.get(e.person_id, 0) + e.seeding
        assert spent <= 9, f"frame {i}: {spent} edits spent, budget 9"
    assert all(steps == 3 * 7 for steps in labelled_before.values()), labelled_before
    # 9 // 3 = 3 edits each per frame (3/7 of a frame, inexact in floating point): 21 edits take 7 frames
    assert set(seeding_frames.values()) == {7}, seeding_frames
    assert not any(s.seeding(3) for s in pipeline.persons.values())


def test_save_load_gives_identical_recall_and_reset_forgets(clip: list[np.ndarray], tmp_path: Path) -> None:
    pipeline = AffectPipeline(fast_config())
    run(pipeline, clip[:12])
    (pid,) = pipeline.persons
    path = pipeline.save_person(pid, tmp_path / f"{pid}.safetensors")
    z, _ = pipeline.pk.encode(np.stack([np.zeros((96, 96, 3), np.uint8)]))
    before = pipeline.persons[pid].memory.recall(z[0])
    frames_seen = pipeline.persons[pid].frames_seen
    assert pipeline.reset_person(pid) and pid not in pipeline.persons
    assert not pipeline.reset_person(pid)
    state = pipeline.load_person(pid, path)
    after = state.memory.recall(z[0])
    assert before.neuron == after.neuron and before.activity == after.activity
    np.testing.assert_array_equal(before.labels, after.labels)
    assert state.frames_seen == frames_seen and not state.seeding(pipeline.config.init_frames)
    with pytest.raises(ValueError, match="invalid person ID"):
        pipeline.save_person("../etc/passwd", tmp_path / "x.safetensors")
    with pytest.raises(KeyError):
        pipeline.save_person("nobody", tmp_path / "x.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a memory")
    with pytest.raises(MemoryFileError):
        pipeline.load_person(pid, tmp_path / "bad.safetensors")
    assert pipeline.persons[pid] is state, "a refused load must keep the memory in RAM"


def test_memories_are_bounded_by_max_persons(media_dir: Path) -> None:
    evicted: list[int] = []
    image = read_image(media_dir / "multi_face.jpg")
    pipeline = AffectPipeline(fast_config(init_frames=1, edits_per_frame=4, max_persons=3),
                              on_evict=lambda pid, state: evicted.append(state.memory.num_neurons))
    pipeline.process(image, 0.0)
    assert len(pipeline.persons) == 5 and not evicted, "persons of the current frame are never evicted"
    pipeline.process(np.zeros_like(image), 0.04)  # nobody in view: back to the cap
    assert len(pipeline.persons) == 3 and len(evicted) == 2
    assert min(evicted) >= 2, "evicted memories hold what they learned"


def test_an_evicted_person_comes_back_with_their_memory(media_dir: Path, tmp_path: Path) -> None:
    from affective_memory_ros.pipeline import PersonState, load_person_state, save_person_state

    def evict(pid: str, state: PersonState) -> None:
        save_person_state(pid, state, tmp_path / f"{pid}.safetensors")

    def come_back(pid: str) -> PersonState | None:
        path = tmp_path / f"{pid}.safetensors"
        return load_person_state(path, 50) if path.exists() else None

    image = read_image(media_dir / "multi_face.jpg")
    pipeline = AffectPipeline(fast_config(init_frames=1, edits_per_frame=4, max_persons=3), on_evict=evict,
                              on_new_person=come_back)
    first = {e.person_id: e.num_neurons for e in pipeline.process(image, 0.0)}
    pipeline.process(np.zeros_like(image), 0.04)  # nobody in view: two memories go to disk
    saved = {p.stem for p in tmp_path.glob("*.safetensors")}
    assert len(saved) == 2 and saved <= set(first) and not saved & set(pipeline.persons)
    second = {e.person_id: e for e in pipeline.process(image, 0.08)}
    # They come back with their saved memory, not a fresh, seeding one.
    assert set(second) == set(first)
    for pid in saved:
        assert second[pid].num_neurons >= first[pid] and not second[pid].seeding


def test_bad_frames_are_refused(clip: list[np.ndarray]) -> None:
    pipeline = AffectPipeline(fast_config())
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 4), np.uint8)):
        with pytest.raises(ValueError, match="RGB uint8"):
            pipeline.process(bad, 0.0)
    assert pipeline.process(clip[0], 0.0)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="init_frames"):
        PipelineConfig(init_frames=0)
    with pytest.raises(ValueError, match="max_seed_edits"):
        PipelineConfig(max_seed_edits=0)
    with pytest.raises(ValueError, match="device"):
        PipelineConfig(device="tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_matches_fp32(clip: list[np.ndarray]) -> None:
    from affective_memory_ros.perception.align import crop_faces
    from affective_memory_ros.perception.blazeface import BlazeFaceDetector
    from affective_memory_ros.pk.inference import PKRuntime

    det = BlazeFaceDetector("full", device="cuda")
    crops = np.concatenate([crop_faces(f, d) for f, d in zip(clip[:16], det(np.stack(clip[:16])), strict=True)])
    z32, av32 = PKRuntime(device="cuda", precision="fp32").encode(crops)
    z16, av16 = PKRuntime(device="cuda", precision="fp16").encode(crops)
    # Documented tolerance: fp16 autocast stays within 0.02 of fp32 on z and on D_em's output.
    assert np.abs(z16 - z32).max() < 0.02 and np.abs(av16 - av32).max() < 0.02


def test_memory_files_without_seeding_progress_load_as_fully_seeded_frames(tmp_path: Path) -> None:
    memory = GrowingWhenRequired(GWRConfig(dim=50))
    memory.learn_batch(np.random.default_rng(0).normal(size=(8, 50)).astype(np.float32),
                       np.zeros((8, 2), np.float32))
    # A 0.1.0 file: every frame seen was a full seeding frame, and there is no "seeded" entry.
    save_memory(memory, tmp_path / "old.safetensors", extra={"person_id": "abcde", "frames_seen": "7",
                                                             "last_seen": "1.5"})
    state = load_person_state(tmp_path / "old.safetensors", expected_dim=50)
    assert state.seeded == 7.0 and state.seeding(25) and not state.seeding(7)
    save_memory(memory, tmp_path / "bad.safetensors", extra={"frames_seen": "7", "seeded": "nan"})
    with pytest.raises(ValueError, match="corrupt person metadata"):
        load_person_state(tmp_path / "bad.safetensors", expected_dim=50)
