"""The online loop: frame in, one arousal/valence estimate per visible person out.

Per frame: detect faces, crop, recognise each face as a person (tracking plus
appearance signatures, :mod:`.person`), encode all crops in one batched call
of the configured encoder, and let each person's memory, in the configured
mode, learn the face and read it out. The pipeline knows neither which encoder
nor which memory mode it runs (:mod:`.encoders`, :mod:`.modes`).

Slow work never blocks the frame path when ``background=True`` (the node):

* **Seeding.** Memories built on P-AffMem want encoder edits of the person's
  face. Each frame hands at most ``max_seed_edits`` edits, shared by the seeding
  persons in view, to a background worker; the results train the memories
  when they are ready. Until a memory is ready, the encoder's own estimate is
  published, flagged as seeding.
* **Files.** Persons recognised from the store are read by the store's I/O
  thread, and evicted persons written by it (:mod:`.store`).

With ``background=False`` (offline runs, benchmarks) the same work runs in
order, so a run is deterministic.

ROS-free: the node and the CLI are thin adapters over :class:`AffectPipeline`.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .encoders import DEFAULT_ENCODER, ENCODERS, make_encoder
from .expressions import EXPRESSIONS
from .modes import Face, MemorySettings, MemorySummary, PersonMemory, Reading, make_memory
from .perception.align import CROP_SIZE, crop_faces
from .perception.appearance import DEFAULT_REID_THRESHOLD, Gallery, appearance_embedding
from .perception.detectors import DEFAULT_DETECTOR, DETECTORS, make_detector
from .perception.tracking import PersonTracker
from .person import LoadedPerson, Person, PersonSnapshot, check_person_id, new_person_id, snapshot
from .seed_worker import SeedWorker
from .settings import check, setting
from .store import PersonStore

#: 4K UHD (3840 x 2160 = 8.3 MP) fits; larger frames are refused before any work is done.
DEFAULT_MAX_FRAME_PIXELS = 8_388_608
#: Persons seen in fewer frames are never written to the store: their memory has hardly begun, and an
#: appearance signature of fewer frames is not one to recognise them by (docs/perception.md).
MIN_FRAMES_TO_KEEP = 8


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the perception and encoding loop (the memory's are :class:`~.modes.MemorySettings`)."""

    detector: str = setting(DEFAULT_DETECTOR, "face detector; blazeface_tracked = full-range search every 10 "
                                              "frames, short-range regions around known faces in between "
                                              "(docs/perception.md)", choices=DETECTORS)
    encoder: str = setting(DEFAULT_ENCODER, "face encoder: its code, arousal/valence and expression feed the "
                                            "memories (docs/encoders.md)", choices=tuple(ENCODERS))
    encoder_weights: str = setting("", "encoder weights file; empty = the encoder's shipped default")
    device: str = setting("auto", "device of the encoder and detector: auto, cpu, cuda or cuda:N",
                          choices=("auto", "cpu", "cuda"), prefix_choices=("cuda:",))
    precision: str = setting("fp32", "encoder precision on CUDA (fp16 = autocast)", choices=("fp32", "fp16"))
    max_seed_edits: int = setting(96, "encoder edits per frame across all seeding persons: bounds the seeding "
                                      "work a frame hands to the background worker", range=(1, 65536))
    max_persons: int = setting(32, "memories kept in RAM; beyond it the least recently seen are written to the "
                                   "store and leave RAM", range=(1, 4096))
    reid_threshold: float = setting(DEFAULT_REID_THRESHOLD, "appearance similarity at or above which a face is a "
                                                            "known person, in RAM or in the store "
                                                            "(docs/perception.md)", range=(0.0, 1.0))
    max_frame_pixels: int = setting(DEFAULT_MAX_FRAME_PIXELS, "largest frame accepted (width x height); larger "
                                                              "frames are refused with a message",
                                    range=(1, 1 << 28))
    seed: int = setting(0, "seed of the seeding edits' random targets", range=(0, 2**31 - 1))

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class PersonEstimate:
    """One visible person in one frame."""

    person_id: str
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels
    arousal: float  # the memory's reading; the encoder's while seeding
    valence: float
    encoder_arousal: float  # the encoder's own, person-independent reading
    encoder_valence: float
    confidence: float  # the memory's confidence in (0, 1]; 0 while seeding
    expression: str  # the encoder's top expression ("" when the encoder has no categorical head)
    expression_confidence: float
    seeding: bool
    num_neurons: int


@dataclass(frozen=True)
class PersonSummary:
    person_id: str
    summary: MemorySummary
    seeding: bool
    last_seen: float


@dataclass
class StageTimes:
    """Seconds spent per stage in the last :meth:`AffectPipeline.process` call."""

    detect: float = 0.0
    crop: float = 0.0
    track: float = 0.0
    encode: float = 0.0
    seed: float = 0.0
    memory: float = 0.0


class _InlineFuture:
    def __init__(self, value: Any) -> None:
        self._value = value

    def done(self) -> bool:
        return True

    def result(self) -> Any:
        return self._value


class AffectPipeline:
    def __init__(self, config: PipelineConfig | None = None, memory: MemorySettings | None = None,
                 store: PersonStore | None = None, *, background: bool = False,
                 load_from_store: bool = True, memory_factory: Callable[[], PersonMemory] | None = None) -> None:
        """``store`` = None keeps nothing on disk. ``background`` moves seeding and file I/O off the frame
        path (the node); ``load_from_store`` recognises the store's persons (the ``load_on_start`` setting).
        ``memory_factory`` replaces the configured mode's new memories (benchmarks build rule variants with it)."""
        self.config = cfg = config or PipelineConfig()
        self.memory_settings = memory or MemorySettings()
        self.encoder = make_encoder(cfg.encoder, cfg.encoder_weights or None, cfg.device, cfg.precision)
        self.memory_factory = memory_factory or (
            lambda: make_memory(self.memory_settings, self.encoder.code_dim, self.encoder.can_edit,
                                self.encoder.name))
        self.memory_factory()  # a mode that cannot work with this encoder refuses now, not at the first face
        self.detector = make_detector(cfg.detector, self.encoder.device)
        self.store = store or PersonStore(None)
        self.store.code_dim, self.store.encoder = self.encoder.code_dim, self.encoder.name
        self.gallery = Gallery(cfg.reid_threshold)
        if load_from_store:
            for pid, signature in self.store.signatures().items():
                self.gallery.enrol(pid, signature)
        self.tracker = PersonTracker(self.gallery, self._new_id)
        self.persons: OrderedDict[str, Person] = OrderedDict()  # least recently seen first
        self._rng = np.random.default_rng(cfg.seed)
        self._background = background
        # Started now when new persons will want edits (its model loads before the first newcomer), else on need.
        self._seeder: SeedWorker | None = None
        if background and self.encoder.can_edit and self.memory_factory().edits_wanted > 0:
            self._start_seeder()
        self._seeding: tuple[Future[np.ndarray] | _InlineFuture, list[tuple[Person, int]], np.ndarray] | None = None
        self.times = StageTimes()
        #: (time, message) of recent per-person failures (a bad memory never spoils anyone else's output).
        self.errors: deque[tuple[float, str]] = deque(maxlen=50)

    def close(self) -> None:
        if self._seeder is not None:
            self._seeder.close()

    def _start_seeder(self) -> None:
        """The background seeding worker, building the same encoder from the same weights."""
        self._seeder = SeedWorker(self.encoder, self.config.encoder_weights or None)

    def _new_id(self) -> str:
        return new_person_id(lambda pid: pid in self.persons or pid in self.gallery or self.store.has(pid)
                             or self.store.forgotten(pid))

    # ------------------------------------------------------------- the loop
    def check_frame(self, frame_rgb: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.shape} {frame.dtype}")
        if frame.shape[0] * frame.shape[1] > self.config.max_frame_pixels:
            raise ValueError(f"frame of {frame.shape[1]}x{frame.shape[0]} pixels is larger than max_frame_pixels="
                             f"{self.config.max_frame_pixels}; refused")
        return frame

    def process(self, frame_rgb: np.ndarray, timestamp: float) -> list[PersonEstimate]:
        """One camera frame: detect, crop, recognise, encode, and each person's memory."""
        frame = self.check_frame(frame_rgb)
        t0 = time.perf_counter()
        self._collect()
        dets = self.detector([frame])[0]
        t1 = time.perf_counter()
        crops = crop_faces(frame, dets)
        t2 = time.perf_counter()
        ids = self.tracker.update(dets, appearance_embedding(crops), timestamp)
        t3 = time.perf_counter()
        return self._faces(crops, ids, dets.boxes, timestamp, (t0, t1, t2, t3))

    def process_faces(self, faces: list[np.ndarray], face_ids: list[str], timestamp: float) -> list[PersonEstimate]:
        """Faces found and tracked upstream (a ROS4HRI face pipeline): RGB uint8 face images of any size,
        each with the upstream face ID that follows it. The face ID takes the place of a track: the same ID
        keeps its person, a new one is recognised by appearance or is a new person. Boxes are empty."""
        if len(faces) != len(face_ids):
            raise ValueError(f"{len(faces)} faces but {len(face_ids)} face IDs")
        crops = np.zeros((len(faces), CROP_SIZE, CROP_SIZE, 3), np.uint8)
        for i, face in enumerate(faces):
            f = np.asarray(face)
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8 or min(f.shape[:2]) < 8:
                raise ValueError(f"face {i}: expected an RGB uint8 image (H, W, 3), got {f.shape} {f.dtype}")
            if f.shape[0] * f.shape[1] > self.config.max_frame_pixels:
                raise ValueError(f"face {i} is larger than max_frame_pixels={self.config.max_frame_pixels}")
            crops[i] = cv2.resize(f, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA if f.shape[0] > CROP_SIZE
                                  else cv2.INTER_LINEAR)
        t0 = time.perf_counter()
        self._collect()
        ids = self.tracker.update_tracked(list(face_ids), appearance_embedding(crops))
        t3 = time.perf_counter()
        return self._faces(crops, ids, np.zeros((len(ids), 4), np.float32), timestamp, (t0, t0, t0, t3))

    def _faces(self, crops: np.ndarray, ids: list[str], boxes: np.ndarray, timestamp: float,
               started: tuple[float, float, float, float]) -> list[PersonEstimate]:
        """Encode the recognised faces, let each person's memory learn and read them, hand over slow work."""
        t0, t1, t2, t3 = started
        for provisional in self.tracker.renamed:  # recognised after their first frames: the new ID retires
            self.persons.pop(provisional, None)
        enc = self.encoder.encode(crops)
        t4 = time.perf_counter()
        estimates = []
        for i, pid in enumerate(ids):
            face = Face(enc.code[i], enc.av[i], enc.probs[i], timestamp)
            person = self._person(pid, timestamp)
            reading = self._learn_and_recall(person, face) if person is not None else None
            if person is not None:
                person.touch(timestamp)
            probs = enc.probs[i]
            top = int(np.argmax(probs)) if np.isfinite(probs).all() else -1
            expression, expression_p = (EXPRESSIONS[top], float(probs[top])) if top >= 0 else ("", 0.0)
            if reading is not None and reading.expression:  # a mode with its own categorical read-out
                expression, expression_p = reading.expression, reading.expression_confidence
            a, v = (float(np.clip(x, -1, 1)) for x in enc.av[i])
            estimates.append(PersonEstimate(
                pid, boxes[i].copy(), reading.arousal if reading else a, reading.valence if reading else v,
                a, v, reading.confidence if reading else 0.0, expression, expression_p, reading is None,
                person.memory.num_neurons if person is not None else 0))
        t5 = time.perf_counter()
        self._schedule_seeding(ids, enc.edit_sources)
        self._collect()
        self._evict_if_needed(keep=set(ids))
        t6 = time.perf_counter()
        self.times = StageTimes(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t6 - t5, t5 - t4)
        return estimates

    def _learn_and_recall(self, person: Person, face: Face) -> Reading | None:
        """The memory learns the face and reads it out; a failing memory is replaced, never fatal to others."""
        try:
            person.memory.learn(face)
            return person.memory.recall(face) if person.memory.ready else None
        except Exception as exc:
            self.errors.append((time.time(), f"{person.person_id}: memory failed ({type(exc).__name__}: {exc}); "
                                             "it starts afresh"))
            person.memory = self.memory_factory()
            return None

    def _person(self, person_id: str, timestamp: float) -> Person | None:
        """The person in RAM, or back from the store (None while their file is being read)."""
        person = self.persons.get(person_id)
        if person is None:
            kept = self.store.reclaim(person_id)
            if kept is not None:
                person = kept[0]
            elif person_id not in self.tracker.created and self.store.has(person_id):
                self.store.request_load(person_id)
                loaded = self.store.take_loaded()  # inline stores have it at once
                self._install_loaded(loaded)
                person = self.persons.get(person_id)
                if person is None and self.store.loading(person_id):
                    return None
            if person is None:
                person = Person(person_id, self.memory_factory(),
                                self.encoder.name, first_seen=timestamp, last_seen=timestamp)
            self.persons[person_id] = person
        self.persons.move_to_end(person_id)
        return person

    def _install_loaded(self, loaded: dict[str, LoadedPerson | None]) -> None:
        for pid, item in loaded.items():
            if item is not None and pid not in self.persons and pid in self.gallery:
                self.persons[pid] = item.person

    # ------------------------------------------------------------- seeding
    def _schedule_seeding(self, ids: list[str], codes: np.ndarray) -> None:
        """Hand this frame's share of edits to the worker (at most one batch in flight). ``codes`` are what
        the encoder edits from, one per face (:attr:`~.encoders.base.Encoding.edit_sources`).

        A frame spends at most ``max_seed_edits``, shared evenly by the seeding
        persons in view (at least one edit each), so five people appearing at
        once stretch their seeding over more frames instead of stalling any.
        """
        if self._seeding is not None or not self.encoder.can_edit:
            return
        wanting = [(i, p) for i, pid in enumerate(ids) if (p := self.persons.get(pid)) is not None
                   and p.memory.edits_wanted > 0]
        if not wanting:
            return
        cfg, per_frame = self.config, self.memory_settings.edits_per_frame
        share = max(1, min(per_frame, cfg.max_seed_edits // len(wanting)))
        asked = [(i, p, p.memory.edit_targets(share, self._rng)) for i, p in wanting]
        asked = [(i, p, t) for i, p, t in asked if len(t)]
        if not asked:
            return
        jobs = [(p, len(t)) for _, p, t in asked]
        rows = np.repeat(codes[[i for i, _, _ in asked]], [len(t) for _, _, t in asked], axis=0)
        targets = np.concatenate([t for _, _, t in asked]).astype(np.float32)
        if self._background and self._seeder is None:
            self._start_seeder()
        if self._seeder is None:
            future: Future[np.ndarray] | _InlineFuture = _InlineFuture(self.encoder.edit_and_encode(rows, targets))
        else:
            future = self._seeder.submit(rows, targets)
        self._seeding = (future, jobs, targets)

    def _collect(self) -> None:
        """Apply finished background work: seeding edits, persons read from the store."""
        self._install_loaded(self.store.take_loaded())
        if self._seeding is None or not self._seeding[0].done():
            return
        future, jobs, targets = self._seeding
        self._seeding = None
        try:
            edited = future.result()
        except Exception as exc:
            self.errors.append((time.time(), f"seeding failed: {type(exc).__name__}: {exc}"))
            return
        start = 0
        for person, count in jobs:
            rows = slice(start, start + count)
            start += count
            if self.persons.get(person.person_id) is person:  # still here, not reset or evicted meanwhile
                try:
                    person.memory.seed(edited[rows], targets[rows])
                    person.version += 1
                except Exception as exc:
                    self.errors.append((time.time(), f"{person.person_id}: seeding failed: {exc}"))

    def _evict_if_needed(self, keep: set[str]) -> None:
        """Persons beyond ``max_persons``, least recently seen first, leave RAM for the store.

        Persons in ``keep`` (those of the current frame) are never evicted, so a
        frame with more faces than ``max_persons`` holds them all until it is done.
        The store keeps each evicted person until their file is written.
        """
        excess = len(self.persons) - self.config.max_persons
        for victim in [pid for pid in self.persons if pid not in keep][: max(excess, 0)]:
            person = self.persons.pop(victim)
            if self.store.enabled and person.frames_seen >= MIN_FRAMES_TO_KEEP:
                self.store.keep(person, self.gallery.get(victim))

    # ------------------------------------------------ per-person operations
    def summaries(self) -> list[PersonSummary]:
        return [PersonSummary(pid, p.memory.summary(), not p.memory.ready, p.last_seen)
                for pid, p in self.persons.items()]

    def reset_person(self, person_id: str) -> bool:
        """Forget a person in RAM and on disk (their file is deleted); their next sighting is a new person."""
        check_person_id(person_id)
        known = self.persons.pop(person_id, None) is not None or person_id in self.gallery
        self.tracker.forget(person_id)
        return self.store.forget(person_id) or known

    def snapshot(self, person_id: str) -> PersonSnapshot:
        """A copy of a person for their file (cheap; take it under the lock, write outside it)."""
        check_person_id(person_id)
        person = self.persons.get(person_id)
        if person is None:
            raise KeyError(f"unknown person {person_id!r}")
        return snapshot(person, self.gallery.get(person_id))

    def snapshots(self, changed_only: bool = False) -> list[PersonSnapshot]:
        """Copies of every person worth keeping (seen in ``MIN_FRAMES_TO_KEEP`` frames or more)."""
        return [snapshot(p, self.gallery.get(pid)) for pid, p in self.persons.items()
                if p.frames_seen >= MIN_FRAMES_TO_KEEP and not (changed_only and self.store.is_saved(p))]

    def install(self, person_id: str, loaded: LoadedPerson) -> Person:
        """Give ``person_id`` a memory read from a file (an explicit load); replaces the one in RAM."""
        check_person_id(person_id)
        person = loaded.person
        person.person_id = person_id
        person.version += 1
        self.persons[person_id] = person
        self.persons.move_to_end(person_id)
        if loaded.signature is not None and person_id not in self.gallery:
            self.gallery.enrol(person_id, loaded.signature)
        self.store.reclaim(person_id)  # a kept older state must not overwrite this one
        self.store.unforget(person_id)
        self._evict_if_needed(keep={person_id})
        return person
