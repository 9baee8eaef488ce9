"""The online P-AffMem loop: frame in, one arousal/valence estimate per visible person out.

Per frame: detect faces, crop, track to person IDs, encode all crops in one
batched PK call. A person's affective memory is created when they are first
seen. For their first ``init_frames`` frames, G edits their face towards
``edits_per_frame`` (arousal, valence) targets; the encoded edits, labelled
with their targets, seed and train the memory (all seeding persons' edits in
one batch). After that, seeding stops and each real face updates the memory
online. The output is the memory's recall of the real face, next to the PK's
own, person-independent D_em reading.

ROS-free: the node and the CLI are thin adapters over :class:`AffectPipeline`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .memory import GrowingWhenRequired, GWRConfig, load_memory, save_memory
from .perception.align import crop_faces
from .perception.detectors import DEFAULT_DETECTOR, make_detector
from .perception.tracking import DEFAULT_REID_THRESHOLD, PersonTracker
from .pk.inference import PKRuntime
from .store import check_person_id

#: Default activity distance scale for the PK's 50-d tanh codes (see docs/pipeline.md).
DEFAULT_DISTANCE_SCALE = 2.0


@dataclass(frozen=True)
class PipelineConfig:
    detector: str = DEFAULT_DETECTOR
    device: str = "auto"
    precision: str = "fp32"
    pk_model: str | None = None
    init_frames: int = 25
    edits_per_frame: int = 48
    #: PK edits per frame across all seeding persons: bounds a frame's cost when several people appear at once
    max_seed_edits: int = 96
    max_persons: int = 32
    reid_threshold: float = DEFAULT_REID_THRESHOLD
    memory: GWRConfig = field(default_factory=lambda: GWRConfig(distance_scale=DEFAULT_DISTANCE_SCALE))
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.init_frames <= 10_000:
            problems.append(f"init_frames={self.init_frames} must be in [1, 10000]")
        if not 1 <= self.edits_per_frame <= 1024:
            problems.append(f"edits_per_frame={self.edits_per_frame} must be in [1, 1024]")
        if not 1 <= self.max_seed_edits <= 65536:
            problems.append(f"max_seed_edits={self.max_seed_edits} must be in [1, 65536]")
        if not 1 <= self.max_persons <= 4096:
            problems.append(f"max_persons={self.max_persons} must be in [1, 4096]")
        if self.precision not in ("fp32", "fp16"):
            problems.append(f"precision={self.precision!r} must be fp32 or fp16")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            problems.append(f"device={self.device!r} must be auto, cpu or cuda")
        if problems:
            raise ValueError("invalid PipelineConfig: " + "; ".join(problems))


@dataclass(frozen=True)
class PersonEstimate:
    """One visible person in one frame."""

    person_id: str
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels
    arousal: float
    valence: float
    pk_arousal: float
    pk_valence: float
    confidence: float  # the memory's activity for this face, (0, 1]
    seeding: bool
    num_neurons: int


@dataclass
class PersonState:
    """One person's affective memory and its bookkeeping."""

    memory: GrowingWhenRequired
    frames_seen: int = 0
    last_seen: float = 0.0
    #: seeding received so far, in frames' worth of edits (``edits_per_frame`` edits = 1.0); always
    #: a whole number of edits divided by ``edits_per_frame``, so a finished seeding is exactly ``init_frames``
    seeded: float = 0.0

    def seeding(self, init_frames: int) -> bool:
        return self.seeded < init_frames


@dataclass(frozen=True)
class PersonSummary:
    person_id: str
    num_neurons: int
    num_edges: int
    frames_learned: int
    seeding: bool
    last_seen: float
    mean_arousal: float
    mean_valence: float


@dataclass
class StageTimes:
    """Seconds spent per stage in the last :meth:`AffectPipeline.process` call."""

    detect: float = 0.0
    crop: float = 0.0
    track: float = 0.0
    encode: float = 0.0
    seed: float = 0.0
    memory: float = 0.0


class AffectPipeline:
    def __init__(self, config: PipelineConfig | None = None,
                 on_evict: Callable[[str, PersonState], None] | None = None,
                 on_new_person: Callable[[str], PersonState | None] | None = None) -> None:
        """``on_evict`` receives a memory pushed out of RAM (the node saves it);
        ``on_new_person`` may return a saved memory for a person not in RAM (the
        node loads it from its store), else a fresh memory is created."""
        self.config = cfg = config or PipelineConfig()
        self.pk = PKRuntime(cfg.pk_model, cfg.device, cfg.precision)
        self.detector = make_detector(cfg.detector, self.pk.device)
        self.tracker = PersonTracker(reid_threshold=cfg.reid_threshold, seed=cfg.seed)
        memory_cfg = cfg.memory
        if memory_cfg.dim != self.pk.z_dim:
            memory_cfg = dataclasses.replace(memory_cfg, dim=self.pk.z_dim)
        self.memory_config = memory_cfg
        self.persons: OrderedDict[str, PersonState] = OrderedDict()  # least recently seen first
        self.on_evict = on_evict
        self.on_new_person = on_new_person
        self._rng = np.random.default_rng(cfg.seed)
        self.times = StageTimes()

    # ------------------------------------------------------------- the loop
    def process(self, frame_rgb: np.ndarray, timestamp: float) -> list[PersonEstimate]:
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.shape} {frame.dtype}")
        t0 = time.perf_counter()
        dets = self.detector([frame])[0]
        t1 = time.perf_counter()
        crops = crop_faces(frame, dets)
        t2 = time.perf_counter()
        ids = self.tracker.update(dets, crops, timestamp)
        t3 = time.perf_counter()
        z, pk_av = self.pk.encode(crops)
        t4 = time.perf_counter()
        states = [self._person(pid, timestamp) for pid in ids]
        seeding_now = [s.seeding(self.config.init_frames) for s in states]
        self._seed(z, states)
        t5 = time.perf_counter()
        estimates = []
        for i, (pid, state, seeding) in enumerate(zip(ids, states, seeding_now, strict=True)):
            state.memory.learn(z[i])
            recall = state.memory.recall(z[i])
            state.frames_seen += 1
            state.last_seen = timestamp
            estimates.append(PersonEstimate(
                pid, dets.boxes[i].copy(), float(np.clip(recall.arousal, -1, 1)),
                float(np.clip(recall.valence, -1, 1)), float(pk_av[i, 0]), float(pk_av[i, 1]),
                float(recall.activity), seeding, state.memory.num_neurons))
        self._evict_if_needed(keep=set(ids))
        t6 = time.perf_counter()
        self.times = StageTimes(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)
        return estimates

    def _seed(self, z: np.ndarray, states: list[PersonState]) -> None:
        """Edited faces, labelled with their targets, train the memories of seeding persons.

        Each person needs ``init_frames`` x ``edits_per_frame`` edits in all. A
        frame spends at most ``max_seed_edits``, shared evenly by the seeding
        persons in view (at least one edit each), so five people appearing at
        once stretch their seeding over more frames instead of stalling one
        frame for seconds; every one of them still gets the same total.
        """
        cfg = self.config
        seeding = [i for i, s in enumerate(states) if s.seeding(cfg.init_frames)]
        if not seeding:
            return
        per_frame = cfg.edits_per_frame
        share = max(1, min(per_frame, cfg.max_seed_edits // len(seeding)))
        done = [round(states[i].seeded * per_frame) for i in seeding]  # edits so far, a whole number
        counts = [min(share, max(1, cfg.init_frames * per_frame - d)) for d in done]
        total = sum(counts)
        targets = self._rng.uniform(-1.0, 1.0, size=(total, 2)).astype(np.float32)
        z_edits = self.pk.edit_and_encode(np.repeat(z[seeding], counts, axis=0), targets)
        start = 0
        for i, count, d in zip(seeding, counts, done, strict=True):
            rows = slice(start, start + count)
            states[i].memory.learn_batch(z_edits[rows], targets[rows])
            # recomputed from whole edits rather than summed, so no rounding error accumulates
            states[i].seeded = (d + count) / per_frame
            start += count

    def _person(self, person_id: str, timestamp: float) -> PersonState:
        state = self.persons.get(person_id)
        if state is None and self.on_new_person is not None:
            state = self.on_new_person(person_id)
            if state is not None:
                self.persons[person_id] = state
        if state is None:
            state = PersonState(GrowingWhenRequired(self.memory_config), 0, timestamp)
            self.persons[person_id] = state
        self.persons.move_to_end(person_id)
        return state

    def _evict_if_needed(self, keep: set[str]) -> None:
        """Hand the least recently seen memories beyond ``max_persons`` to ``on_evict``.

        Persons in ``keep`` (those of the current frame) are never evicted, so a
        frame with more faces than ``max_persons`` holds them all until it is done.
        """
        excess = len(self.persons) - self.config.max_persons
        for victim in [pid for pid in self.persons if pid not in keep][: max(excess, 0)]:
            state = self.persons.pop(victim)
            if self.on_evict is not None:
                self.on_evict(victim, state)

    # ------------------------------------------------ per-person operations
    def summaries(self) -> list[PersonSummary]:
        out = []
        for pid, s in self.persons.items():
            mean = s.memory.mean_labels() if len(s.memory) else np.zeros(2, np.float32)
            out.append(PersonSummary(pid, s.memory.num_neurons, s.memory.num_edges, s.memory.steps,
                                     s.seeding(self.config.init_frames), s.last_seen, float(mean[0]),
                                     float(mean[1])))
        return out

    def reset_person(self, person_id: str) -> bool:
        """Forget a person's memory; it is re-created and re-seeded when they are next seen."""
        check_person_id(person_id)
        return self.persons.pop(person_id, None) is not None

    def save_person(self, person_id: str, path: str | os.PathLike[str]) -> Path:
        check_person_id(person_id)
        state = self.persons.get(person_id)
        if state is None:
            raise KeyError(f"unknown person {person_id!r}")
        return save_person_state(person_id, state, path)

    def load_person(self, person_id: str, path: str | os.PathLike[str]) -> PersonState:
        """Replace (or create) a person's memory from a file; refuses foreign memories."""
        check_person_id(person_id)
        state = load_person_state(path, expected_dim=self.memory_config.dim)
        self.persons[person_id] = state
        self.persons.move_to_end(person_id)
        self._evict_if_needed(keep={person_id})
        return state


def save_person_state(person_id: str, state: PersonState, path: str | os.PathLike[str]) -> Path:
    extra = {"person_id": person_id, "frames_seen": str(state.frames_seen), "last_seen": repr(state.last_seen),
             "seeded": repr(state.seeded)}
    return save_memory(state.memory, path, extra=extra)


def load_person_state(path: str | os.PathLike[str], expected_dim: int) -> PersonState:
    memory, extra = load_memory(path)
    if memory.config.dim != expected_dim:
        raise ValueError(f"{path}: memory has {memory.config.dim}-d prototypes, the PK gives {expected_dim}-d codes")
    try:
        frames = int(extra.get("frames_seen", "0"))
        last = float(extra.get("last_seen", "0"))
        # files from 0.1.0 have no "seeded": every frame seen then was a full seeding frame
        seeded = float(extra.get("seeded", str(frames)))
    except ValueError:
        raise ValueError(f"{path}: corrupt person metadata") from None
    if not (math.isfinite(last) and math.isfinite(seeded)):
        raise ValueError(f"{path}: corrupt person metadata")
    return PersonState(memory, max(frames, 0), last, max(seeded, 0.0))
