"""``clifer``: CLIFER's episodic + semantic memory per person, with imagination through the PK's generator
(with ``encoder: pk``: the PK's codes; with ``encoder: facechannel_pk``: the FaceChannel's codes of G's renders,
the form that reaches the remembering target, docs/clifer.md).

CLIFER (Churamani & Gunes, FG 2020) learns each person's facial expressions continually with two
memories (:class:`~affective_memory_ros.memory.gamma.DualMemory`): an episodic Gamma-GWR that learns
every face fast, and a semantic GWR that learns slowly and only from its mistakes, fed with the episodic
memory's prototypes and with replay. *Imagination* renders the person's face in every expression so the
memories hold expressions of this person they have not seen yet. Design, choices and measurements:
``docs/clifer.md``; the reference's facts: ``../shared/docs/clifer-facts.md``.

What the mode does with each real face (:meth:`CliferMemory.learn`):

* **label**: the encoder's top expression (``Face.probs``); an encoder without a categorical head
  (NaN probabilities, e.g. a PK file from before its head C) gives the expression whose arousal/valence prototype
  (:data:`EXPRESSION_AV`) is nearest to the encoder's arousal/valence reading;
* **learn**: the episodic memory learns the code with that class and the encoder's arousal/valence; the
  semantic memory learns the episodic winner's prototype (regulated);
* **replay**: ``replay_per_frame`` episodic trajectories (round robin over the neurons) are replayed
  through both memories, CLIFER's prototype replay at a bounded cost per frame.

**Imagination** (encoders that can edit): the mode asks for edits of the person's first
``imagine_frames`` faces at each expression's arousal/valence prototype (:meth:`CliferMemory.edit_targets`;
our PK's generator is conditioned on continuous arousal/valence, not on classes). With
``imagination="offset"`` (the default) an imagined code is the real code plus ``imagine_scale`` times
what the generator changes between the face's own reading and the expression
(``z + s (E(G(z, av_c)) - E(G(z, av_own)))``), which removes the re-encoding gap of ``E(G(.))``; with
``"direct"`` it is ``E(G(z, av_c))`` as in CLIFER. Each imagined code is learned with its class and its
target arousal/valence. The rules' defaults depend on the encoder's codes (:func:`rules_for`): sigma and s
were chosen on the tune split for the PK's and for ``facechannel_pk``'s.

**Read-outs** (:meth:`CliferMemory.recall`, from the ``readout`` memory, episodic by default): arousal and
valence as the activity-weighted mean of the running means of the best match and its neighbours (or the
best match's alone), confidence the best match's activity; the expression (CLIFER's own output) as the
argmax of the best match's label histogram, returned in :class:`CliferReading`.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..expressions import EXPRESSIONS, NUM_EXPRESSIONS
from ..memory.gamma import DualMemory, GammaConfig, semantic_config
from ..memory.persistence import MAX_COUNTER, MemoryFileError
from .base import Face, MemoryPlane, MemorySettings, MemoryStateError, MemorySummary, PersonMemory, Reading, clip_av

#: Arousal/valence prototype of each expression: DiffusionFER's class means (arousal, valence). Contempt
#: has none (DiffusionFER has no contempt faces): it is never imagined nor derived from arousal/valence.
EXPRESSION_AV: dict[str, tuple[float, float]] = {
    "neutral": (0.01, -0.02),
    "happiness": (0.28, 0.42),
    "surprise": (0.52, -0.08),
    "sadness": (-0.15, -0.23),
    "anger": (0.52, -0.53),
    "disgust": (0.17, -0.53),
    "fear": (0.24, -0.40),
}
#: Edit requests remembered while their results are on the way (the pipeline has at most one in flight).
MAX_PENDING = 4
#: A target this close to a prototype (either coordinate) counts as that expression's.
TARGET_TOLERANCE = 1e-4
#: An edit at a foreign target (not asked for) is labelled with the nearest prototype's class when it is
#: at most this far from it; farther ones teach arousal/valence only.
FOREIGN_RADIUS = 0.25


@dataclass(frozen=True)
class CliferRules:
    """The mode's own settings (the memories' hyperparameters are CLIFER's, :class:`GammaConfig`)."""

    #: Temporal context depth K of the episodic memory (CLIFER 0; the GDM demo 5).
    context_depth: int = 0
    #: Activity scale sigma of both memories: a = exp(-d / sigma). CLIFER's is 1 (its encoder's 50-d tanh
    #: latent); 0.5 was chosen on the tune split for the PK's, 0.1 for the FaceChannel's (docs/clifer.md;
    #: :data:`ENCODER_RULES`).
    distance_scale: float = 0.5
    #: Imagine the person's expressions (needs an encoder that can edit).
    imagine: bool = True
    #: Faces whose imagined expressions are learned (one group of edits per face).
    imagine_frames: int = 25
    #: "offset" (ours) or "direct" (CLIFER's E(G(z, c))); see the module docstring.
    imagination: str = "offset"
    #: The offset's scale s (``imagination="offset"``); chosen on the tune split for the PK's edits
    #: (docs/clifer.md; 1.5 for the FaceChannel's codes of the PK's renders, :data:`ENCODER_RULES`).
    imagine_scale: float = 0.25
    #: Expressions imagined (names from :data:`EXPRESSION_AV`).
    imagined: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear")
    #: After the first ``imagine_frames``, imagine one more face every this many faces (0: never, the
    #: default: on the tune split refreshing helped the unseen smile less than it hurt the seen classes).
    imagine_every: int = 0
    #: Passes of each imagined face through each memory (CLIFER: 5).
    imagine_epochs: int = 5
    #: The memory read out: "episodic" (CLIFER's better one) or "semantic".
    readout: str = "episodic"
    #: Arousal/valence from the activity-weighted neighbourhood (False: the best match alone).
    av_neighbourhood: bool = True
    #: Episodic trajectories replayed through both memories after each real face (0: no replay).
    replay_per_frame: int = 1
    #: A gap longer than this (seconds) between faces starts a new sequence (temporal context, links).
    context_gap: float = 1.0

    def __post_init__(self) -> None:
        ok = (isinstance(self.context_depth, int) and 0 <= self.context_depth <= 16
              and isinstance(self.distance_scale, int | float) and 0.0 < self.distance_scale <= 1000.0
              and isinstance(self.imagine, bool)
              and isinstance(self.imagine_frames, int) and 0 <= self.imagine_frames <= 10_000
              and self.imagination in ("offset", "direct")
              and isinstance(self.imagine_scale, int | float) and 0.0 < self.imagine_scale <= 4.0
              and isinstance(self.imagined, tuple) and 0 < len(self.imagined) == len(set(self.imagined))
              and all(name in EXPRESSION_AV for name in self.imagined)
              and isinstance(self.imagine_epochs, int) and 1 <= self.imagine_epochs <= 100
              and isinstance(self.imagine_every, int) and 0 <= self.imagine_every <= 1_000_000
              and self.readout in ("episodic", "semantic") and isinstance(self.av_neighbourhood, bool)
              and isinstance(self.replay_per_frame, int) and 0 <= self.replay_per_frame <= 64
              and isinstance(self.context_gap, int | float) and 0.0 < self.context_gap <= 3600.0)
        if not ok:
            raise ValueError(f"invalid CliferRules: {self}")

    @property
    def group(self) -> int:
        """Edits asked for per imagined face: the face's own reading (offset only), then each expression."""
        return len(self.imagined) + (self.imagination == "offset")

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["imagined"] = list(self.imagined)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CliferRules:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"not CliferRules: {str(text)[:200]}")
        if isinstance(data.get("imagined"), list):
            data["imagined"] = tuple(data["imagined"])
        return cls(**data)


#: The rules that differ from :class:`CliferRules`' defaults (the PK's) for an encoder's codes, by registry
#: name, chosen on the tune split (docs/clifer.md). sigma belongs to the code space: the FaceChannel's codes of
#: one person lie closer under camera jitter (median 0.27, the PK's 1.75) and further apart between their
#: expressions (3.6 vs 1.8). s belongs to the edits: the PK's G moves the FaceChannel's code ~5x less than a
#: real expression does.
ENCODER_RULES: dict[str, dict[str, float]] = {
    "facechannel": {"distance_scale": 0.1},
    "facechannel_pk": {"distance_scale": 0.1, "imagine_scale": 1.5},
}


def rules_for(encoder: str | None, context_depth: int = 0) -> CliferRules:
    """The mode's default rules for the codes of ``encoder`` (a registry name; None or one without an entry in
    :data:`ENCODER_RULES`: the defaults, chosen for the PK's codes)."""
    return CliferRules(context_depth=context_depth, **ENCODER_RULES.get(encoder or "", {}))


@dataclass(frozen=True)
class CliferReading(Reading):
    """A :class:`Reading` with CLIFER's categorical output: ``expression`` (a name of
    :data:`~affective_memory_ros.expressions.EXPRESSIONS`, "" when the best match has no label yet), its
    share of the best match's histogram, and the other memory's expression."""

    expression: str = ""
    expression_confidence: float = 0.0
    semantic_expression: str = ""
    episodic_expression: str = ""


_PROTO_NAMES = tuple(EXPRESSION_AV)
_PROTO_AV = np.array([EXPRESSION_AV[n] for n in _PROTO_NAMES], np.float32)
_PROTO_CLASS = np.array([EXPRESSIONS.index(n) for n in _PROTO_NAMES], np.int64)


def class_from_av(av: np.ndarray) -> int:
    """The expression whose arousal/valence prototype is nearest to ``av`` (-1 for a NaN reading)."""
    a = np.asarray(av, np.float32).reshape(2)
    if not np.isfinite(a).all():
        return -1
    return int(_PROTO_CLASS[int(np.argmin(((_PROTO_AV - a) ** 2).sum(axis=1)))])


def face_class(probs: np.ndarray, av: np.ndarray) -> int:
    """A real face's label: the encoder's top expression, or :func:`class_from_av` without a head."""
    p = np.asarray(probs, np.float32).reshape(-1)
    if p.shape == (NUM_EXPRESSIONS,) and np.isfinite(p).all() and p.sum() > 0:
        return int(p.argmax())
    return class_from_av(av)


def imagined_codes(source: np.ndarray, edited: np.ndarray, reference: np.ndarray | None, scale: float
                   ) -> np.ndarray:
    """Imagined codes from one face's code ``source`` (D,) and its edits ``edited`` (C, D): ``direct``
    (``reference`` None) returns the edits, ``offset`` returns source + scale (edited - reference)."""
    if reference is None:
        return np.asarray(edited, np.float32)
    return (source[None, :] + np.float32(scale) * (edited - reference[None, :])).astype(np.float32)


class CliferMemory(PersonMemory):
    mode = "clifer"
    uses_edits = True

    def __init__(self, dual: DualMemory, rules: CliferRules, edits_total: int, edits_done: int = 0,
                 frames: int = 0, replay_cursor: int = 0, imagined_at: int = 0) -> None:
        self.dual = dual
        self.rules = rules
        self.edits_total = edits_total
        self.edits_done = edits_done
        self.frames = frames
        self.replay_cursor = replay_cursor
        #: The face count when the last refresh of imagination was asked for.
        self.imagined_at = imagined_at
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # the last face's code and A/V
        self._last_time: float | None = None
        self._recall_prev = -1  # the episodic winner before the last face (its context, for recall)
        self._pending: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=MAX_PENDING)

    @staticmethod
    def configs(code_dim: int, max_neurons: int, rules: CliferRules) -> tuple[GammaConfig, GammaConfig]:
        episodic = GammaConfig(dim=code_dim, context_depth=rules.context_depth, max_neurons=max_neurons,
                               distance_scale=rules.distance_scale)
        return episodic, semantic_config(episodic)

    @classmethod
    def create(cls, settings: MemorySettings, code_dim: int, can_edit: bool = True,
               rules: CliferRules | None = None) -> CliferMemory:
        """A new memory with ``rules`` (None: the defaults, the PK's, with ``settings.context_depth``)."""
        rules = rules or rules_for(None, settings.context_depth)
        episodic, semantic = cls.configs(code_dim, settings.max_neurons, rules)
        edits = rules.imagine_frames * rules.group if rules.imagine and can_edit else 0
        return cls(DualMemory.create(episodic, semantic), rules, edits)

    @classmethod
    def create_for(cls, settings: MemorySettings, code_dim: int, can_edit: bool = True,
                   encoder: str | None = None) -> CliferMemory:
        """A new memory with the rules chosen for ``encoder``'s codes (:func:`rules_for`); imagination works
        with any encoder that edits (its edits serve as offsets, labelled or not)."""
        return cls.create(settings, code_dim, can_edit, rules_for(encoder, settings.context_depth))

    # ------------------------------------------------------------ imagination
    @property
    def edits_wanted(self) -> int:
        """Edits still wanted: the first ``imagine_frames`` faces' (seeding), then one face's every
        ``imagine_every`` faces."""
        seeding = self.edits_total - self.edits_done
        if seeding > 0:
            return seeding
        every = self.rules.imagine_every
        due = self.edits_total > 0 and every > 0 and self.frames - self.imagined_at >= every
        return self.rules.group if due else 0

    def edit_targets(self, count: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """The (arousal, valence) targets this memory wants its next edits at, at most ``count`` of them
        (fewer is normal, none while it has no face to imagine): for the last face learned, its own reading
        (offset imagination) and every imagined expression's prototype. The pipeline edits the last face's
        code at these targets and hands the results to :meth:`seed`. ``rng`` is unused (the targets are
        fixed); it is there for a pipeline that passes its own to every mode."""
        n = min(int(count), self.edits_wanted, self.rules.group)
        if n <= 0 or self._last is None:
            return np.zeros((0, 2), np.float32)
        code, av = self._last
        rows = [EXPRESSION_AV[name] for name in self.rules.imagined]
        classes = [EXPRESSIONS.index(name) for name in self.rules.imagined]
        if self.rules.imagination == "offset":
            own = np.clip(av, -1, 1) if np.isfinite(av).all() else np.array(EXPRESSION_AV["neutral"])
            rows, classes = [tuple(own.tolist()), *rows], [-1, *classes]
        targets = np.array(rows[:n], np.float32)
        self.imagined_at = self.frames  # the next refresh is due ``imagine_every`` faces later
        self._pending.append((code.copy(), targets, np.array(classes[:n], np.int64)))
        return targets.copy()

    def seed(self, codes: np.ndarray, targets: np.ndarray) -> None:
        """Learn edits: ours (:meth:`edit_targets`) as imagined expressions, any others (e.g. random
        targets) labelled with the nearest prototype's expression when one is near, else A/V only."""
        codes = np.asarray(codes, np.float32)
        targets = np.clip(np.asarray(targets, np.float32), -1.0, 1.0)
        if codes.ndim != 2 or codes.shape[1] != self.dual.episodic.gamma.dim or targets.shape != (len(codes), 2):
            raise ValueError(f"expected ({len(codes)}, {self.dual.episodic.gamma.dim}) codes and (N, 2) targets")
        request = self._match(targets)
        if request is not None:
            source, asked, classes = request
            if self.rules.imagination == "offset":
                if len(codes) < 2:
                    self._count_edits(len(codes))
                    return
                xs = imagined_codes(source, codes[1:], codes[0], self.rules.imagine_scale)
                classes, av = classes[1:], asked[1:]
            else:
                xs, av = codes, asked
        else:
            xs, av = codes, targets
            d = np.sqrt(((av[:, None, :] - _PROTO_AV[None]) ** 2).sum(axis=2))
            near = d.argmin(axis=1)
            classes = np.where(d[np.arange(len(d)), near] <= FOREIGN_RADIUS, _PROTO_CLASS[near], -1)
        self.dual.learn_imagined(xs, classes, av, self.rules.imagine_epochs)
        self._count_edits(len(codes))

    def _count_edits(self, n: int) -> None:
        self.edits_done = min(self.edits_done + n, self.edits_total)

    def _match(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        while self._pending:
            request = self._pending.popleft()
            if request[1].shape == targets.shape and np.allclose(request[1], targets, atol=TARGET_TOLERANCE):
                return request
        return None

    # ------------------------------------------------------------ learning
    @property
    def ready(self) -> bool:
        return self.edits_done >= self.edits_total and len(self.dual) >= 2

    def learn(self, face: Face) -> None:
        code = np.asarray(face.code, np.float32).reshape(-1)
        av = np.asarray(face.av, np.float32).reshape(-1)
        cls = face_class(face.probs, av)
        av_ok = av.shape == (2,) and bool(np.isfinite(av).all())
        t = float(face.time)
        if self._last_time is None or not 0.0 <= t - self._last_time <= self.rules.context_gap:
            self.dual.reset_context()
        self._recall_prev = self.dual.episodic.prev
        self.dual.learn(code, cls, av if av_ok else None)
        self._last_time = t
        self._last = (code.copy(), av.copy() if av_ok else np.full(2, np.nan, np.float32))
        self.frames += 1
        for _ in range(self.rules.replay_per_frame):
            n = len(self.dual.episodic)
            if n < 2:
                break
            self.replay_cursor %= n
            self.dual.replay_from(self.replay_cursor)
            self.replay_cursor += 1

    def recall(self, face: Face) -> CliferReading:
        code = np.asarray(face.code, np.float32).reshape(1, -1)
        e = self.dual.episodic.readout(code, self.rules.av_neighbourhood, sequence=True, prev=self._recall_prev)
        s = self.dual.semantic.readout(e.weight, self.rules.av_neighbourhood)
        main = e if self.rules.readout == "episodic" else s
        a, v = clip_av(main.av[0])
        names = [EXPRESSIONS[int(r.classes[0])] if r.classes[0] >= 0 else "" for r in (e, s)]
        return CliferReading(a, v, float(e.activity[0]), names[0] if main is e else names[1],
                             float(main.class_share[0]), names[1], names[0])

    # ------------------------------------------------------------- views
    @property
    def num_neurons(self) -> int:
        return len(self.dual.episodic) + len(self.dual.semantic)

    def summary(self) -> MemorySummary:
        e = self.dual.episodic
        held = e.av_count > 0
        mean = e.av[held].mean(axis=0) if held.any() else np.zeros(2, np.float32)
        return MemorySummary(self.num_neurons, e.num_edges + self.dual.semantic.num_edges,
                             self.frames, float(mean[0]), float(mean[1]))

    def plane(self) -> MemoryPlane:
        e = self.dual.episodic
        return MemoryPlane(np.clip(np.asarray(e.av), -1.0, 1.0), np.asarray(e.habituation), np.asarray(e.born))

    # ------------------------------------------------------------- files
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = self.dual.state()
        return arrays, {**meta, "rules": self.rules.to_json(), "edits_total": self.edits_total,
                        "edits_done": self.edits_done, "frames": self.frames, "replay_cursor": self.replay_cursor,
                        "imagined_at": self.imagined_at}

    @classmethod
    def check_meta(cls, meta: dict[str, Any], code_dim: int | None) -> None:
        try:
            rules = CliferRules.from_json(str(meta.get("rules")))
            episodic, semantic = DualMemory.check_meta(meta)
        except (MemoryFileError, ValueError, TypeError) as exc:
            raise MemoryStateError(str(exc)) from None
        if code_dim is not None and episodic.dim != code_dim:
            raise MemoryStateError(f"the memory holds {episodic.dim}-d codes, the encoder gives {code_dim}-d codes")
        expected = cls.configs(episodic.dim, episodic.max_neurons, rules)
        if (episodic, semantic) != expected:
            raise MemoryStateError("the memories' configs are not the ones this mode builds from its rules")
        counts = [meta.get(k) for k in ("edits_total", "edits_done", "frames", "replay_cursor", "imagined_at")]
        if not all(type(v) is int and 0 <= v < MAX_COUNTER for v in counts) or counts[0] > 10_000 * 64:
            raise MemoryStateError(f"corrupt counters: {counts!r}")

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], code_dim: int | None) -> CliferMemory:
        cls.check_meta(meta, code_dim)
        try:
            dual = DualMemory.from_state(arrays, meta)
        except (MemoryFileError, ValueError) as exc:
            raise MemoryStateError(str(exc)) from None
        return cls(dual, CliferRules.from_json(meta["rules"]), meta["edits_total"],
                   min(meta["edits_done"], meta["edits_total"]), meta["frames"], meta["replay_cursor"],
                   min(meta["imagined_at"], meta["frames"]))
