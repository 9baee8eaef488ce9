"""``self_affective``: the seed Affective Memory system's per-person memory (Barros & Wermter, IJCNN 2017).

A GWR on the encoder's 2-d (arousal, valence) output, not on a face code, with
the constants of the authors' package (``../shared/docs/facechannel-facts.md``):
insertion threshold 0.9, habituation threshold 0.3, epsilon_b 0.35, epsilon_n
0.76, tau_b 0.3, tau_n 0.1, kappa 1.05, max age 100, at most 6 neighbours,
activity exp(-d) with the Euclidean distance, new neurons at (w_b + x) / 2, the
classic (unmodulated) update. Each new frame is learned 5 times, as the
package trains on every point for 5 epochs; the memory starts from two neurons
at the first frame's output. The reading is the **mean of all neurons'
weights**: a temporally correlated value that moves smoothly and reflects this
person's recent range, not one frame. No seeding, so it is ready from the first
frame; its confidence is the best match's activity for the current frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..memory import GrowingWhenRequired, GWRConfig
from ..memory.persistence import MemoryFileError, gwr_from_state, gwr_metadata, gwr_state
from .base import Face, MemoryPlane, MemorySettings, MemoryStateError, MemorySummary, PersonMemory, Reading, clip_av

#: Epochs per frame in the authors' package.
EPOCHS = 5


def config(max_neurons: int) -> GWRConfig:
    return GWRConfig(dim=2, activity_threshold=0.9, habituation_threshold=0.3, epsilon_b=0.35, epsilon_n=0.76,
                     tau_b=0.3, tau_n=0.1, kappa=1.05, max_age=100, max_degree=6, distance_scale=1.0,
                     squared_distance=False, modulated_update=False, max_neurons=max_neurons)


class SelfAffectiveMemory(PersonMemory):
    mode = "self_affective"
    space = "av"

    def __init__(self, net: GrowingWhenRequired) -> None:
        self.net = net

    @classmethod
    def create(cls, settings: MemorySettings, code_dim: int, can_edit: bool = True) -> SelfAffectiveMemory:
        return cls(GrowingWhenRequired(config(settings.max_neurons)))

    @property
    def ready(self) -> bool:
        return len(self.net) >= 2

    def learn(self, face: Face) -> None:
        x = np.clip(np.asarray(face.av, np.float32), -1.0, 1.0)
        self.net.learn_batch(np.repeat(x[None], EPOCHS, axis=0))

    def recall(self, face: Face) -> Reading:
        a, v = clip_av(self.net.weights.mean(axis=0))
        activity = self.net.recall(np.clip(np.asarray(face.av, np.float32), -1.0, 1.0)).activity
        return Reading(a, v, float(activity))

    @property
    def num_neurons(self) -> int:
        return self.net.num_neurons

    def summary(self) -> MemorySummary:
        mean = self.net.weights.mean(axis=0) if len(self.net) else np.zeros(2, np.float32)
        return MemorySummary(self.num_neurons, self.net.num_edges, self.net.steps, float(mean[0]), float(mean[1]))

    def plane(self) -> MemoryPlane:
        """The neurons' weights are points on the arousal/valence plane themselves."""
        return MemoryPlane(np.asarray(self.net.weights), np.asarray(self.net.habituation), np.asarray(self.net.born))

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return gwr_state(self.net, "gwr.")

    @classmethod
    def check_meta(cls, meta: dict[str, Any], code_dim: int | None) -> None:
        try:
            cfg, _ = gwr_metadata(meta, "gwr.")
        except MemoryFileError as exc:
            raise MemoryStateError(str(exc)) from None
        if cfg.dim != 2:
            raise MemoryStateError(f"a self-affective memory is 2-d (arousal, valence), not {cfg.dim}-d")

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                   code_dim: int | None) -> SelfAffectiveMemory:
        cls.check_meta(meta, code_dim)
        try:
            net = gwr_from_state(arrays, meta, "gwr.")
        except MemoryFileError as exc:
            raise MemoryStateError(str(exc)) from None
        if len(net) and np.abs(net.weights).max() > 1.0:
            raise MemoryStateError("arousal/valence outside [-1, 1]")
        return cls(net)
