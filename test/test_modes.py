"""Memory modes on their own: what each one learns and reads, its file, and the refusals (synthetic codes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from affective_memory_ros.expressions import NUM_EXPRESSIONS
from affective_memory_ros.modes import MODES, Face, MemorySettings, MemoryStateError, make_memory, mode_class
from affective_memory_ros.modes.base import Reading
from affective_memory_ros.modes.personal import PersonalMemory, PersonalRules

DIM = 16
NAN_PROBS = np.full(NUM_EXPRESSIONS, np.nan, np.float32)


def face(code: np.ndarray, av: tuple[float, float], t: float) -> Face:
    return Face(np.asarray(code, np.float32), np.asarray(av, np.float32), NAN_PROBS, t)


def person_faces(rng: np.random.Generator, n: int, smile: bool, centre: np.ndarray, noise: float = 0.03,
                 t0: float = 0.0) -> list[Face]:
    """Jittered faces of one expression: codes near ``centre``, encoder valence 0.6 (smile) or 0.0, noisy."""
    v = 0.6 if smile else 0.0
    return [face(centre + rng.normal(0, noise, DIM), (0.1, v + rng.normal(0, 0.08)), t0 + i / 30)
            for i in range(n)]


def seeded(memory: object, rng: np.random.Generator, centre: np.ndarray) -> None:
    while memory.edits_wanted:  # type: ignore[attr-defined]
        n = min(64, memory.edits_wanted)  # type: ignore[attr-defined]
        targets = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        memory.seed(centre + rng.normal(0, 0.05, (n, DIM)) + 0.05 * targets[:, 1:2], targets)  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_round_trips_through_its_state_and_goes_on_identically(mode: str) -> None:
    rng = np.random.default_rng(0)
    centre = rng.normal(0, 1, DIM).astype(np.float32)
    memory = make_memory(MemorySettings(memory_mode=mode, init_frames=2, edits_per_frame=16), DIM)
    seeded(memory, rng, centre)
    for f in person_faces(rng, 40, False, centre) + person_faces(rng, 40, True, centre, t0=2.0):
        memory.learn(f)
    assert memory.ready
    arrays, meta = memory.state()
    json.dumps(meta)  # the metadata is JSON
    copy = mode_class(mode).from_state({k: v.copy() for k, v in arrays.items()}, json.loads(json.dumps(meta)), DIM)
    probe = person_faces(rng, 5, True, centre, t0=5.0)
    for f in probe:
        memory.learn(f)
        copy.learn(f)
        assert memory.recall(f) == copy.recall(f)
    assert memory.summary() == copy.summary()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_refuses_a_state_for_other_codes_or_with_broken_fields(mode: str) -> None:
    rng = np.random.default_rng(1)
    centre = rng.normal(0, 1, DIM).astype(np.float32)
    memory = make_memory(MemorySettings(memory_mode=mode, init_frames=1, edits_per_frame=8), DIM)
    seeded(memory, rng, centre)
    for f in person_faces(rng, 10, False, centre):
        memory.learn(f)
    arrays, meta = memory.state()
    cls = mode_class(mode)
    if cls.space == "code":
        with pytest.raises(MemoryStateError, match="-d codes"):
            cls.from_state(arrays, meta, DIM + 1)
    for key in meta:  # every field is required, and its absence is a clear error, not a crash
        with pytest.raises(MemoryStateError):
            cls.from_state(arrays, {k: v for k, v in meta.items() if k != key}, DIM)
    for name in arrays:
        with pytest.raises(MemoryStateError):
            cls.from_state({k: v for k, v in arrays.items() if k != name}, meta, DIM)
    if "gwr.counters" in meta:
        broken = dict(meta, **{"gwr.counters": json.dumps({"steps": -1, "labelled_steps": 0, "insertions": 0,
                                                             "removals": 0})})
        with pytest.raises(MemoryStateError, match="counters"):
            cls.from_state(arrays, broken, DIM)


def test_paper_needs_an_encoder_that_edits_and_personal_does_without() -> None:
    with pytest.raises(ValueError, match="needs an encoder that can edit"):
        make_memory(MemorySettings(memory_mode="paper"), DIM, can_edit=False)
    memory = make_memory(MemorySettings(memory_mode="personal"), DIM, can_edit=False)
    assert memory.edits_wanted == 0


def test_self_affective_reads_the_mean_of_its_neurons_on_the_av_plane() -> None:
    rng = np.random.default_rng(2)
    memory = make_memory(MemorySettings(memory_mode="self_affective"), DIM)
    assert not memory.ready
    memory.learn(face(rng.normal(size=DIM), (0.2, -0.4), 0.0))
    assert memory.ready and memory.net.num_neurons == 2  # type: ignore[attr-defined]  # both at the first output
    for i in range(60):
        memory.learn(face(rng.normal(size=DIM), (0.2 + rng.normal(0, 0.3), 0.5 + rng.normal(0, 0.3)), i / 30))
    reading = memory.recall(face(rng.normal(size=DIM), (-1.0, -1.0), 2.0))
    weights = memory.net.weights  # type: ignore[attr-defined]
    assert (reading.arousal, reading.valence) == pytest.approx(tuple(np.clip(weights.mean(axis=0), -1, 1)), abs=1e-6)
    assert len(weights) > 2, "new readings far from the neurons grow the memory"


def test_personal_calibration_reads_a_persons_rest_as_neutral() -> None:
    """A person whose encoder reads their resting face at -0.3 valence: the memory reports it near 0."""
    rng = np.random.default_rng(3)
    centre = rng.normal(0, 1, DIM).astype(np.float32)
    settings = MemorySettings(memory_mode="personal", init_frames=1, edits_per_frame=4)
    memories = {calibrate: PersonalMemory.create(settings, DIM, rules=PersonalRules(calibrate=calibrate))
                for calibrate in (True, False)}
    rest = [face(centre + rng.normal(0, 0.02, DIM), (0.0, -0.3 + rng.normal(0, 0.03)), i / 30) for i in range(60)]
    for memory in memories.values():
        seeded(memory, rng, centre)
        out = []
        for f in rest:
            memory.learn(f)
            out.append(memory.recall(f).valence)
        memory.out = np.array(out[20:])  # type: ignore[attr-defined]
    assert abs(memories[True].out.mean()) < 0.08, memories[True].out.mean()  # type: ignore[attr-defined]
    assert memories[False].out.mean() < -0.2  # type: ignore[attr-defined]


def test_personal_calibration_is_bounded_for_a_person_who_always_smiles() -> None:
    rng = np.random.default_rng(4)
    centre = rng.normal(0, 1, DIM).astype(np.float32)
    memory = PersonalMemory.create(MemorySettings(init_frames=1, edits_per_frame=4), DIM,
                                   rules=PersonalRules(max_offset=0.3))
    seeded(memory, rng, centre)
    smiles = person_faces(rng, 120, True, centre)
    for f in smiles:
        memory.learn(f)
    assert memory.recall(smiles[-1]).valence > 0.2, "the shift never exceeds max_offset"
    assert memory.offset()[1] == pytest.approx(0.3)


def test_personal_reading_is_steady_while_faces_jitter_and_follows_a_change_at_once() -> None:
    rng = np.random.default_rng(5)
    centre = rng.normal(0, 1, DIM).astype(np.float32)
    smile_centre = centre + rng.normal(0, 0.6, DIM).astype(np.float32)
    memory = PersonalMemory.create(MemorySettings(init_frames=1, edits_per_frame=4), DIM)
    seeded(memory, rng, centre)
    neutral = person_faces(rng, 60, False, centre)
    smiles = person_faces(rng, 20, True, smile_centre, t0=2.0)
    readings = []
    for f in neutral + smiles:
        memory.learn(f)
        readings.append(memory.recall(f).valence)
    out = np.array(readings)
    encoder = np.array([f.av[1] for f in neutral])
    assert out[30:60].std() < 0.5 * encoder[30:60].std(), "steadier than the encoder's jittering reading"
    assert (out[60 + 4 : 80] > 0.3).all(), "a smile reads positive within a few frames"


def test_personal_rules_a_saved_memory_does_not_name_are_off_when_it_is_loaded() -> None:
    """A memory saved before the novelty and rest-now rules existed goes on under the rules it learned with."""
    old = json.loads(PersonalRules(affect_weight=1.0).to_json())
    for name in ("novelty_power", "rest_now"):
        del old[name]
    loaded = PersonalRules.from_json(json.dumps(old))
    assert loaded.novelty_power == 0.0 and loaded.rest_now is False and loaded.affect_weight == 1.0
    assert PersonalRules.from_json(PersonalRules().to_json()) == PersonalRules(), "a current file keeps its rules"


def test_personal_rules_are_validated() -> None:
    with pytest.raises(ValueError):
        PersonalRules(readout_k=0)
    with pytest.raises(ValueError):
        PersonalRules.from_json('{"readout_k": 3, "unknown": 1}')


def test_personal_without_edits_watches_init_frames_faces_before_it_reads() -> None:
    rng = np.random.default_rng(6)
    centre = rng.normal(0, 1, DIM).astype(np.float32)
    memory = PersonalMemory.create(MemorySettings(init_frames=5), DIM, can_edit=False)
    faces = person_faces(rng, 8, False, centre)
    readiness = []
    for f in faces:
        memory.learn(f)
        readiness.append(memory.ready)
    assert memory.edits_wanted == 0 and readiness == [False] * 5 + [True] * 3, "5 faces watched, then it reads"


def test_personal_tells_apart_expressions_whose_codes_are_close_but_read_differently() -> None:
    """A person whose smile barely moves the code (val person 009 of the benchmark): with the code alone both
    expressions share neurons and the output hardly moves; with the reading appended they separate."""
    rng = np.random.default_rng(7)
    centre = rng.normal(0, 1, DIM).astype(np.float32)
    centre /= np.linalg.norm(centre)
    step = rng.normal(0, 1, DIM).astype(np.float32)
    smile_centre = centre + 0.18 * step / np.linalg.norm(step)  # closer than the GWR's insertion distance
    out = {}
    for weight in (0.0, 1.0):
        memory = PersonalMemory.create(MemorySettings(init_frames=5), DIM, can_edit=False,
                                       rules=PersonalRules(affect_weight=weight))
        rows = []
        for seg in range(8):
            smile = seg % 2 == 1
            for i in range(15):
                code = (smile_centre if smile else centre) + rng.normal(0, 0.005, DIM)
                f = face(code, (0.1, (0.6 if smile else 0.3) + rng.normal(0, 0.01)), seg * 0.5 + i / 30)
                memory.learn(f)
                if memory.ready and seg > 0:
                    rows.append((smile, memory.recall(f).valence))
        s = np.array([v for smile, v in rows if smile])
        n = np.array([v for smile, v in rows if not smile])
        out[weight] = s.mean() - n.mean()
    assert out[1.0] > 0.1 and out[1.0] > 3 * out[0.0], out


def test_personal_rest_follows_the_first_neutral_face_after_a_smiling_first_impression() -> None:
    rng = np.random.default_rng(8)
    centre = rng.normal(0, 1, DIM).astype(np.float32)
    smile_centre = centre + rng.normal(0, 0.6, DIM).astype(np.float32)
    memory = PersonalMemory.create(MemorySettings(init_frames=5), DIM, can_edit=False)
    for f in person_faces(rng, 25, True, smile_centre):
        memory.learn(f)
    assert memory.offset()[1] == pytest.approx(0.3), "a smiling first impression: the shift is bounded"
    neutral = person_faces(rng, 15, False, centre, t0=1.0)
    for f in neutral:
        memory.learn(f)
    assert abs(memory.offset()[1]) < 0.1, "the neutral face, once established, is the rest"
    assert abs(memory.recall(neutral[-1]).valence) < 0.15


def first_reading_of_a_change(rules: PersonalRules, seed: int, before: int, smile_first: bool) -> Reading:
    """A person shows ``before`` faces of one expression (smiling if ``smile_first``), then one face of the
    other: the memory's reading of that first face of the new expression."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(0, 1, DIM).astype(np.float32)
    smile_centre = centre + rng.normal(0, 0.6, DIM).astype(np.float32)
    memory = PersonalMemory.create(MemorySettings(init_frames=5), DIM, can_edit=False, rules=rules)
    for f in person_faces(rng, before, smile_first, smile_centre if smile_first else centre, noise=0.01):
        memory.learn(f)
    new = face(centre, (0.1, 0.0), 1.0) if smile_first else face(smile_centre, (0.1, 0.6), 1.0)
    memory.learn(new)
    return memory.recall(new)


def test_personal_reads_a_new_expression_as_the_encoder_does_on_its_first_frame() -> None:
    """The novelty rule: a face far from every prototype reads (mostly) as the encoder reads it, so the first
    smile reads as a smile at once. Without the rule, a smile arriving while the neutral neuron is not yet
    habituated (no insertion: the GWR drags that neuron towards the smile instead) reads as the neutral
    prototype's label for several frames."""
    first = {p: first_reading_of_a_change(PersonalRules(novelty_power=p), 9, 7, False) for p in (2.0, 0.0)}
    assert first[2.0].valence > 0.45, first
    assert first[0.0].valence < 0.35, "without the rule the first frame borrows the old prototype's label"
    assert first[2.0].confidence < 0.4, "the reading's confidence says the face is new to this memory"


def test_personal_first_neutral_frame_after_a_smiling_first_impression_reads_neutral() -> None:
    """The rest-now rule: after 25 smiling faces (rest bounded at +0.3), the very first neutral face reads
    near 0 instead of -0.3 while its neuron is not yet established."""
    out = {r: first_reading_of_a_change(PersonalRules(rest_now=r), 10, 25, True).valence for r in (True, False)}
    assert abs(out[True]) < 0.1, out
    assert out[False] < -0.2, "without the rule the old (smiling) rest still applies to this frame"
