"""``paper``: P-AffMem's per-person memory with the paper's rules unchanged, kept for reproduction.

A GWR on the encoder's face code (the PK's 50-d z). It is seeded with the
encoder's edits of the person's face, each labelled with its target
(arousal, valence): ``init_frames`` x ``edits_per_frame`` edits in all. Real
faces move prototypes, never labels, and the output is the best-matching
neuron's labels, its activity the confidence (Barros, Parisi & Wermter 2019;
docs/memory.md). Measured on real people, this read-out is sticky and reads
them worse than the encoder alone (docs/memory.md has the table); the other
modes exist because of that.

Real faces seen before the first edits arrive wait in a short buffer, so the
memory starts from edited prototypes as the paper's does, although the edits
are now computed off the frame path.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..memory import GrowingWhenRequired, GWRConfig
from ..memory.persistence import MemoryFileError, gwr_from_state, gwr_metadata, gwr_state
from .base import Face, MemoryPlane, MemorySettings, MemoryStateError, MemorySummary, PersonMemory, Reading, clip_av

AV_LABELS = ("arousal", "valence")
#: Real faces kept while waiting for the first edits (about one second of video).
MAX_WAITING = 32


def gwr_config(settings: MemorySettings, code_dim: int) -> GWRConfig:
    return GWRConfig(dim=code_dim, activity_threshold=settings.activity_threshold,
                     habituation_threshold=settings.habituation_threshold, max_neurons=settings.max_neurons,
                     distance_scale=settings.distance_scale)


def check_av_config(config: GWRConfig, code_dim: int | None) -> None:
    """A GWR of a person's memory fits this encoder's codes (None: any) and holds arousal/valence labels."""
    if code_dim is not None and config.dim != code_dim:
        raise MemoryStateError(f"the memory holds {config.dim}-d codes, the encoder gives {code_dim}-d codes")
    if tuple(config.label_names) != AV_LABELS:
        raise MemoryStateError(f"the memory's labels are {list(config.label_names)}, expected {list(AV_LABELS)}")


def check_av_gwr(net: GrowingWhenRequired, code_dim: int | None) -> None:
    """A loaded GWR must fit this encoder's codes and hold arousal/valence labels in [-1, 1]."""
    check_av_config(net.config, code_dim)
    if len(net) and np.abs(net.labels).max() > 1.0:
        raise MemoryStateError("arousal/valence labels outside [-1, 1]")


class PaperMemory(PersonMemory):
    mode = "paper"
    uses_edits = True

    def __init__(self, net: GrowingWhenRequired, edits_total: int, edits_done: int = 0) -> None:
        self.net = net
        self.edits_total = edits_total
        self.edits_done = edits_done
        self._waiting: list[np.ndarray] = []

    @classmethod
    def create(cls, settings: MemorySettings, code_dim: int, can_edit: bool = True) -> PaperMemory:
        if not can_edit:
            raise ValueError("memory_mode 'paper' is seeded from an encoder's edits of the face: it needs an encoder "
                             "that can edit faces (pk)")
        return cls(GrowingWhenRequired(gwr_config(settings, code_dim)),
                   settings.init_frames * settings.edits_per_frame)

    # ------------------------------------------------------------ learning
    @property
    def edits_wanted(self) -> int:
        return max(self.edits_total - self.edits_done, 0)

    def seed(self, codes: np.ndarray, targets: np.ndarray) -> None:
        self.net.learn_batch(codes, targets)
        self.edits_done += len(codes)
        if self._waiting and len(self.net) >= 2:
            self.net.learn_batch(np.stack(self._waiting))
            self._waiting.clear()

    @property
    def ready(self) -> bool:
        return self.edits_wanted == 0 and len(self.net) >= 2

    def learn(self, face: Face) -> None:
        if self.edits_done == 0 and self.edits_total > 0:
            if len(self._waiting) < MAX_WAITING:
                self._waiting.append(np.asarray(face.code, np.float32).copy())
            return
        self.net.learn(face.code)

    def recall(self, face: Face) -> Reading:
        r = self.net.recall(face.code)
        a, v = clip_av(r.labels)
        return Reading(a, v, float(r.activity))

    # ------------------------------------------------------------- views
    @property
    def num_neurons(self) -> int:
        return self.net.num_neurons

    def summary(self) -> MemorySummary:
        mean = self.net.mean_labels() if len(self.net) else np.zeros(2, np.float32)
        return MemorySummary(self.num_neurons, self.net.num_edges, self.net.steps, float(mean[0]), float(mean[1]))

    def plane(self) -> MemoryPlane:
        return MemoryPlane(np.asarray(self.net.labels), np.asarray(self.net.habituation), np.asarray(self.net.born))

    # ------------------------------------------------------------- files
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = gwr_state(self.net, "gwr.")
        return arrays, {**meta, "edits_total": self.edits_total, "edits_done": self.edits_done}

    @classmethod
    def check_meta(cls, meta: dict[str, Any], code_dim: int | None) -> None:
        try:
            config, _ = gwr_metadata(meta, "gwr.")
        except MemoryFileError as exc:
            raise MemoryStateError(str(exc)) from None
        check_av_config(config, code_dim)
        total, done = meta.get("edits_total"), meta.get("edits_done")
        if not (type(total) is int and type(done) is int and done >= 0 and 0 <= total <= 10_000 * 1024):
            raise MemoryStateError(f"seeding progress must be whole edit counts, got {total!r} / {done!r}")

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], code_dim: int | None) -> PaperMemory:
        cls.check_meta(meta, code_dim)
        try:
            net = gwr_from_state(arrays, meta, "gwr.")
        except MemoryFileError as exc:
            raise MemoryStateError(str(exc)) from None
        check_av_gwr(net, code_dim)
        return cls(net, meta["edits_total"], min(meta["edits_done"], meta["edits_total"]))
