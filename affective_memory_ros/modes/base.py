"""What every per-person memory mode offers the pipeline.

A mode is one way of keeping *one affective memory per person* and reading a
person's affect out of it (P-AffMem's own rules, the self-affective memory,
the fixed P-AffMem, CLIFER). The pipeline only talks to this interface, so it
does not know which mode it runs:

* **seed**: modes built on P-AffMem ask for faces *edited* by an encoder with a
  generator (:attr:`PersonMemory.edits_wanted`); the pipeline produces them off
  the frame path and hands them over with :meth:`PersonMemory.seed`.
* **learn** one real face (its encoder code, arousal/valence and class
  probabilities), **recall** what the memory says about it.
* **summary** for the memory-state topic, **plane** for pictures.
* **state** / **from_state** for the person's file: arrays plus JSON-able
  metadata, validated strictly on the way back in.

Modes register in :mod:`affective_memory_ros.modes`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..memory.config import MAX_NEURONS
from ..settings import check, setting

#: The registry: mode name -> "module:class". Adding a mode is its own module plus one line here.
MODES: dict[str, str] = {
    "paper": "affective_memory_ros.modes.paper:PaperMemory",
    "self_affective": "affective_memory_ros.modes.self_affective:SelfAffectiveMemory",
    "personal": "affective_memory_ros.modes.personal:PersonalMemory",
    "clifer": "affective_memory_ros.modes.clifer:CliferMemory",
}
DEFAULT_MODE = "personal"


@dataclass(frozen=True)
class MemorySettings:
    """The settings of every person's memory. Each mode reads the ones it uses (see docs/memory.md)."""

    memory_mode: str = setting(DEFAULT_MODE, "how each person's memory learns and reads out (docs/memory.md)",
                               choices=tuple(MODES))
    init_frames: int = setting(25, "frames before a new memory reads: with an encoder that edits, this many frames' "
                               "worth of its edits seed it; without, it first watches this many faces",
                               range=(1, 10000))
    edits_per_frame: int = setting(48, "encoder edits per seeding frame (P-AffMem modes)", range=(1, 1024))
    activity_threshold: float = setting(0.4, "GWR insertion threshold t_a (P-AffMem modes)", range=(0.0, 1.0))
    habituation_threshold: float = setting(0.2, "GWR habituation threshold t_h (P-AffMem modes)", range=(0.0, 2.0))
    max_neurons: int = setting(2000, "neuron cap per memory", range=(2, MAX_NEURONS))
    distance_scale: float = setting(2.0, "GWR activity distance scale sigma: a = exp(-d / sigma) (P-AffMem modes)",
                                    range=(0.001, 1000.0))
    context_depth: int = setting(0, "temporal context depth K of the episodic memory (clifer mode; CLIFER uses 0, "
                                    "the GDM demo 5)", range=(0, 16))

    def __post_init__(self) -> None:
        check(self)


class MemoryStateError(ValueError):
    """A saved memory state is corrupt, foreign or does not fit this mode and encoder."""


@dataclass(frozen=True)
class Face:
    """One real face as the encoder saw it: ``code`` (D,), ``av`` (2,) = (arousal, valence), ``probs`` (8,),
    and ``time``, the frame's time in seconds (modes with temporal context use it)."""

    code: np.ndarray
    av: np.ndarray
    probs: np.ndarray
    time: float = 0.0


@dataclass(frozen=True)
class Reading:
    """What a memory says about one face: arousal and valence in [-1, 1], its confidence in (0, 1], and,
    for modes with a categorical read-out, the expression (a name of
    :data:`~affective_memory_ros.expressions.EXPRESSIONS`) and its confidence; ``expression`` None
    leaves the encoder's expression to be published."""

    arousal: float
    valence: float
    confidence: float
    expression: str | None = None
    expression_confidence: float = 0.0


@dataclass(frozen=True)
class MemorySummary:
    """One person's memory for the memory-state topic."""

    num_neurons: int
    num_edges: int
    frames_learned: int
    mean_arousal: float
    mean_valence: float


@dataclass(frozen=True)
class MemoryPlane:
    """A memory's neurons on the arousal/valence plane, for pictures: ``av`` (N, 2),
    ``habituation`` (N,) in [0, 1], ``born`` (N,) = the step each neuron was made at."""

    av: np.ndarray
    habituation: np.ndarray
    born: np.ndarray


def learns_edits(can_edit: bool, encoder: str | None) -> bool:
    """Whether a memory that learns edits as samples labelled with their targets (P-AffMem's seeding) gets
    edits from ``encoder`` (a registry name; None: unknown, trust ``can_edit``): it must edit faces and read
    its own edits (:attr:`~affective_memory_ros.encoders.base.FaceEncoder.labelled_edits`)."""
    if not can_edit or encoder is None:
        return can_edit
    from ..encoders import encoder_class

    return encoder_class(encoder).labelled_edits


class PersonMemory(abc.ABC):
    """One person's affective memory in one mode."""

    #: Registry name (``memory_mode`` setting).
    mode: ClassVar[str]
    #: What the mode learns on: "code" (the encoder's face code) or "av" (its arousal/valence).
    space: ClassVar[str] = "code"
    #: True when the mode is seeded from an encoder's edits of the person's face.
    uses_edits: ClassVar[bool] = False

    @classmethod
    def create_for(cls, settings: MemorySettings, code_dim: int, can_edit: bool = True,
                   encoder: str | None = None) -> PersonMemory:
        """A new, empty memory for the codes of ``encoder`` (its registry name; None: unknown), through the
        mode's ``create(settings, code_dim, can_edit)``. This default is for the modes that learn edits as
        samples labelled with their targets (P-AffMem's seeding): an encoder whose edits are not such samples
        (:attr:`~affective_memory_ros.encoders.base.FaceEncoder.labelled_edits` False) counts as one that
        cannot edit. Modes whose defaults depend on the encoder override it (``clifer``)."""
        return cls.create(settings, code_dim, learns_edits(can_edit, encoder))  # type: ignore[attr-defined,no-any-return]

    @property
    def edits_wanted(self) -> int:
        """Edited faces this memory still wants before it is fully seeded (0: none)."""
        return 0

    def edit_targets(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """The (arousal, valence) targets of the next at most ``count`` edits of the person's latest face.

        P-AffMem draws them uniformly from [-1, 1]^2; modes that imagine particular expressions
        (CLIFER) ask for those. The pipeline edits the face just learned at these targets.
        """
        return rng.uniform(-1.0, 1.0, size=(min(count, self.edits_wanted), 2)).astype(np.float32)

    def seed(self, codes: np.ndarray, targets: np.ndarray) -> None:  # noqa: B027 - optional for modes without edits
        """Learn encoder edits of this person's face: ``codes`` (B, D) rendered at ``targets`` (B, 2)."""

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """True once :meth:`recall` gives the memory's own reading (before, the encoder's is published)."""

    @abc.abstractmethod
    def learn(self, face: Face) -> None:
        """Learn one real face of this person."""

    @abc.abstractmethod
    def recall(self, face: Face) -> Reading:
        """The memory's reading of one face (only called when :attr:`ready`)."""

    @property
    @abc.abstractmethod
    def num_neurons(self) -> int:
        """How many neurons the memory holds: published with every frame's estimate, so it must be cheap
        (:meth:`summary` also computes means and the calibration)."""

    @abc.abstractmethod
    def summary(self) -> MemorySummary: ...

    @abc.abstractmethod
    def plane(self) -> MemoryPlane: ...

    @abc.abstractmethod
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """A copy of the full state: arrays, and JSON-able metadata (the mode's config included)."""

    @classmethod
    @abc.abstractmethod
    def check_meta(cls, meta: dict[str, Any], code_dim: int | None) -> None:
        """Check the metadata half of :meth:`state` without its arrays (cheap: a store checks every file at
        start); raises :class:`MemoryStateError`. :meth:`from_state` checks everything again."""

    @classmethod
    @abc.abstractmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], code_dim: int | None) -> PersonMemory:
        """Rebuild a memory from :meth:`state`; raises :class:`MemoryStateError` for anything invalid,
        including a memory made for codes of another size than ``code_dim`` (None: any size)."""


def clip_av(av: np.ndarray | tuple[float, float]) -> tuple[float, float]:
    a, v = (float(x) for x in av)
    return float(np.clip(a, -1.0, 1.0)), float(np.clip(v, -1.0, 1.0))
