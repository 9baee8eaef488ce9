"""Hyperparameters of one affective memory (a Growing-When-Required network).

Defaults follow P-AffMem's Table 1 and Parisi's gwr-tb toolbox; see
``docs/memory.md`` for where each number comes from.

Activity and its scale
----------------------
The paper writes ``a = exp(-||x - w_b||^2)``; the toolbox uses the unsquared
distance. We use ``a = exp(-||x - w_b|| / distance_scale)`` (unsquared, as the
toolbox) with an explicit scale, because an activity threshold only means
something relative to the spread of the inputs. With ``t_a = 0.4`` a neuron is
inserted once the best match is farther than ``-ln(0.4) * distance_scale
= 0.92 * distance_scale``. ``squared_distance=True`` gives the paper's form.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

#: Upper bound on ``max_neurons``: a memory file claiming more is refused before anything is allocated.
MAX_NEURONS = 100_000


@dataclass(frozen=True)
class GWRConfig:
    """Typed, validated configuration of a :class:`~.gwr.GrowingWhenRequired`.

    Frozen so a memory's behaviour cannot change under it; build a new one with
    :func:`dataclasses.replace`.
    """

    #: Input dimension (z of the PK encoder is 50-d).
    dim: int = 50
    #: Names of the associative labels; their count is the label dimension.
    label_names: tuple[str, ...] = ("arousal", "valence")
    #: Activity threshold t_a: insert when the best match's activity is below it.
    activity_threshold: float = 0.4
    #: Habituation threshold t_h: only well-trained (habituated) BMUs spawn neurons.
    #: A value above 1 switches the condition off (h never exceeds 1).
    habituation_threshold: float = 0.2
    #: Learning rate of the BMU, epsilon_b (Table 1 / authors' code: 0.087).
    epsilon_b: float = 0.087
    #: Learning rate of the BMU's neighbours, epsilon_n (Table 1 / authors' code: 0.032).
    epsilon_n: float = 0.032
    #: Habituation rate of the BMU, tau_b (toolbox: 0.3).
    tau_b: float = 0.3
    #: Habituation rate of the BMU's neighbours, tau_n (toolbox: 0.1).
    tau_n: float = 0.1
    #: Habituation constant kappa (toolbox: 1.05); h settles at 1 - 1/kappa.
    kappa: float = 1.05
    #: Labelling factor gamma: how far a labelled sample pulls the BMU's labels.
    label_factor: float = 0.4
    #: Edges of the BMU older than this many steps are removed.
    max_age: int = 100
    #: Hard cap on neurons. Once reached, no neuron is inserted: the BMU and its
    #: neighbours adapt instead (the toolbox's max_nodes behaviour).
    max_neurons: int = 2000
    #: Cap on edges per neuron; a neuron that needs one more drops its oldest edge.
    max_degree: int = 16
    #: Distance scale sigma of the activity a = exp(-d / sigma).
    distance_scale: float = 1.0
    #: Use d = ||x - w||^2 (the paper's formula) instead of ||x - w|| (the toolbox's).
    squared_distance: bool = False
    #: P-AffMem's modulated update dw = eps*h*(x-w)*(1-a); False gives the classic
    #: GWR update dw = eps*h*(x-w), for comparison.
    modulated_update: bool = True
    #: Extra, free-form provenance (never read by the algorithm).
    notes: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise ValueError("invalid GWRConfig: " + "; ".join(problems))

    def _problems(self) -> Iterator[str]:
        def unit(name: str, value: float) -> str | None:
            ok = math.isfinite(value) and 0.0 <= value <= 1.0
            return None if ok else f"{name}={value!r} must be in [0, 1]"

        if not isinstance(self.dim, int) or not 1 <= self.dim <= 4096:
            yield f"dim={self.dim!r} must be an int in [1, 4096]"
        if not self.label_names or len(set(self.label_names)) != len(self.label_names) or len(self.label_names) > 64 \
                or not all(isinstance(n, str) for n in self.label_names):
            yield f"label_names={self.label_names!r} must be 1 to 64 unique strings"
        if not (math.isfinite(self.habituation_threshold) and self.habituation_threshold >= 0):
            yield f"habituation_threshold={self.habituation_threshold!r} must be a finite number >= 0"
        for name in ("activity_threshold", "epsilon_b", "epsilon_n",
                     "tau_b", "tau_n", "label_factor"):
            problem = unit(name, float(getattr(self, name)))
            if problem:
                yield problem
        if not (math.isfinite(self.kappa) and self.kappa >= 1.0):
            # kappa < 1 drives h below zero (see the facts sheet).
            yield f"kappa={self.kappa!r} must be >= 1 (kappa < 1 drives habituation negative)"
        elif max(self.tau_b, self.tau_n) * self.kappa > 1.0:
            # With tau * kappa <= 1 every habituation step maps [0, 1] into itself.
            yield f"tau_b and tau_n times kappa={self.kappa!r} must be <= 1 (habituation would leave [0, 1])"
        if not isinstance(self.max_age, int) or self.max_age < 1:
            yield f"max_age={self.max_age!r} must be an int >= 1"
        if not isinstance(self.max_neurons, int) or not 2 <= self.max_neurons <= MAX_NEURONS:
            yield f"max_neurons={self.max_neurons!r} must be an int in [2, {MAX_NEURONS}]"
        if not isinstance(self.max_degree, int) or not 2 <= self.max_degree <= 1024:
            yield f"max_degree={self.max_degree!r} must be an int in [2, 1024]"
        if not (math.isfinite(self.distance_scale) and self.distance_scale > 0):
            yield f"distance_scale={self.distance_scale!r} must be a positive finite number"

    @property
    def label_dim(self) -> int:
        return len(self.label_names)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["label_names"] = list(self.label_names)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GWRConfig:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("GWRConfig JSON must be an object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown GWRConfig fields: {unknown}")
        if "label_names" in data:
            data["label_names"] = tuple(data["label_names"])
        return cls(**data)
