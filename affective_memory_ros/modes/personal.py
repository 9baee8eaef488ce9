"""``personal``: P-AffMem with fixed rules, the memory that reads a person better than the encoder alone.

It keeps the paper's structure (one GWR per person on the encoder's face
code, seeded from the encoder's edits of the person's face, labelled with
(arousal, valence), learning online from every real face) and changes the
rules that measured badly on real people (docs/memory.md has the benchmark
row that justifies each):

* **Codes on the unit sphere.** A face code is L2-normalised before the GWR
  sees it, so distances (and ``distance_scale``) mean the same for every
  encoder (the PK's 50-d tanh z, the FaceChannel's 200-d features).
* **Real faces label the memory too.** The paper's real faces move prototypes
  but never labels, so a person's memory only ever holds the edits' targets;
  here each real face also pulls its best match's label towards the encoder's
  reading of that face (rate ``label_rate``), and a neuron inserted for a real
  face starts at that reading. Each neuron's label becomes a running mean of
  how the encoder reads *this person's* faces near it: the memory is a
  person-specific, denoised regression from face code to affect.
* **Read-out over the neighbourhood.** Instead of the best-matching neuron's
  label, the activity-weighted mean of the labels of the ``k`` (2)
  best-matching neurons: a frame between two prototypes reads between them.
* **Novel faces read as the encoder reads them.** The read-out is trusted in
  full for a face that its best match represents (activity at or above the
  GWR's insertion threshold) and less the farther the face lies from every
  prototype, the rest of the weight going to the encoder's reading: a new
  expression reads right on its first frames instead of borrowing (and
  dragging) the label of the nearest old prototype until the GWR has a neuron
  for it. This is also what the memory knows: nothing yet about a face unlike
  any it has seen.
* **Slow labels.** A label moves 5 % of the way to each new reading
  (``label_rate``), so it is the mean of the person's last few dozen readings
  near that prototype: the frame's jitter averages out, a change of
  expression does not (it wins another neuron at once). This is where the
  memory reads *better* than the encoder: the same expression of the same
  person reads the same, every frame.
* **Optional temporal filter** (``settle``, ``follow``; off by default): an
  adaptive, one-euro-style filter on the reading. It measured worse than the
  memory's own averaging (a lag after each change), so it stays an ablation.
* **Warm-up without edits.** With an encoder that cannot edit faces (the
  FaceChannel) the memory is ready after ``init_frames`` real faces; until
  then the encoder's estimate is published, flagged as seeding.
* **Personal calibration.** What a person's face looks like at rest is
  personal: some resting faces read sad, others friendly. The rest reading is
  the label, nearest the population's neutral, of the person's established
  neurons (``rest="prototype"``); before there are any, and for a memory
  seeded from edits, a low quantile (``rest_quantile``) of the person's recent
  readings (the first ones are the encoder's: the first impression). The
  output is reported relative to it (rest maps to the population's neutral, (0, 0)),
  with the shift bounded by ``max_offset`` so a person who smiles all the
  time still reads positive. A face that reads more neutral than the current
  rest is read relative to itself at once (``rest_now``), so after a smiling
  first impression the first neutral frames read neutral, not far below it.

The rules are a frozen :class:`PersonalRules`; the benchmark builds variants
with some rules switched back to the paper's to measure each one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..memory import GrowingWhenRequired, GWRConfig
from ..memory.persistence import MemoryFileError, gwr_from_state, gwr_metadata, gwr_state
from .base import Face, MemoryPlane, MemorySettings, MemoryStateError, MemorySummary, PersonMemory, Reading, clip_av
from .paper import check_av_config

#: Readings kept for the rest estimate: about 30 s at 30 fps.
HISTORY = 900
#: Frames counted towards the warm-up (a bound for the file's counter, not a limit on learning).
MAX_FRAMES = 2**31 - 1
#: A neuron that has won at least twice (its habituation fell to 0.49 or below) is part of the person's
#: established repertoire; a neuron inserted for one odd frame is not.
ESTABLISHED = 0.5
#: The population's neutral reading (DiffusionFER's neutral faces average (0.01, -0.02)).
REST_PRIOR = np.zeros(2, np.float32)


#: Rules added after memories were first saved, with the value that means "off" (the behaviour before them).
ADDED_LATER: dict[str, Any] = {"novelty_power": 0.0, "rest_now": False}


@dataclass(frozen=True)
class PersonalRules:
    """The rules that differ from the paper's; each can be switched back for an ablation."""

    #: Real faces pull their best match's label towards the encoder's reading (False: the paper's rule).
    real_labels: bool = True
    #: Rate of that pull, and of the edits' (the GWR's labelling factor gamma; the paper's is 0.4): a
    #: neuron's label averages about the last 2 / rate readings it won, which is what denoises.
    label_rate: float = 0.05
    #: Neurons read out: the activity-weighted mean of the k best matches (1: the paper's best match).
    readout_k: int = 2
    #: Report relative to the person's rest reading (False: no calibration).
    calibrate: bool = True
    #: The quantile of the recent readings taken as the person's rest.
    rest_quantile: float = 0.35
    #: Largest shift calibration may apply to either dimension.
    max_offset: float = 0.3
    #: L2-normalise codes (False: the raw code, as the paper).
    unit_codes: bool = True
    #: Learn the encoder's edits of the person's face (False: no seeding at all).
    use_edits: bool = True
    #: Activity distance scale for unit codes: a = exp(-d / unit_scale) (``distance_scale`` is the raw codes').
    unit_scale: float = 0.25
    #: Temporal coherence: the reading follows the memory's per-frame reading with an adaptive rate, slowly
    #: (time constant ``settle`` seconds) while it only jitters, at once when it jumps by ``follow`` or more
    #: (a one-euro-style filter). 0 (the default: it measured worse than none, docs/memory.md) switches it off.
    settle: float = 0.0
    follow: float = 0.25
    #: Weight of the encoder's (arousal, valence) reading appended to the unit code (0: the code alone, as
    #: the paper). Two expressions of one person whose codes are close but whose readings differ then win
    #: different neurons instead of sharing (and averaging) one label; 1.5 rather than 1 keeps the faces of a
    #: gradual change from averaging into the end states' labels (docs/memory.md).
    affect_weight: float = 1.5
    #: How the rest reading is estimated: ``prototype`` (the label, nearest the population's neutral, of the
    #: established neurons: the expression of this person that reads most neutral) or ``quantile`` (the
    #: ``rest_quantile`` of the recent readings). Both start from the first impression; a memory seeded
    #: from edits uses the quantile (its labels are the edits' targets, not this person's readings).
    rest: str = "prototype"
    #: Novel faces read as the encoder reads them: the read-out is trusted in full for a face that its best
    #: match represents (activity a at or above the GWR's threshold t_a, where no neuron would be inserted
    #: for it) and with weight (a / t_a) ** ``novelty_power`` below, the rest of the weight going to the
    #: encoder's reading. A new expression then reads right on its first frames instead of borrowing the
    #: label of the nearest old prototype (and dragging that label) until the GWR has a neuron for it.
    #: 0 switches it off (the memory's read-out alone).
    novelty_power: float = 2.0
    #: The face on screen is a rest candidate too (``prototype`` rest, no edits): a face that reads more
    #: neutral (nearer (0, 0) in the arousal/valence plane) than the current rest is read relative to itself
    #: at once, instead of relative to an older, less neutral rest until its neuron has won twice (a smiling
    #: first impression otherwise makes the first neutral frames read far below neutral). It is the
    #: prototype rule's own definition of the rest, applied two frames earlier; the summary and the plane
    #: views use the rest of the established neurons.
    rest_now: bool = True

    def __post_init__(self) -> None:
        if not (0.0 < self.label_rate <= 1.0 and 1 <= self.readout_k <= 64 and 0.0 <= self.rest_quantile <= 1.0
                and 0.0 <= self.max_offset <= 1.0 and 0.0 < self.unit_scale <= 10.0 and 0.0 <= self.settle <= 10.0
                and 0.0 < self.follow <= 2.0 and 0.0 <= self.affect_weight <= 100.0
                and self.rest in ("prototype", "quantile") and 0.0 <= self.novelty_power <= 16.0):
            raise ValueError(f"invalid PersonalRules: {self}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PersonalRules:
        """The rules stored with a memory. A rule the file does not name did not exist when it was saved, so
        it is switched off (:data:`ADDED_LATER`): a saved memory goes on with the rules it learned under."""
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"not PersonalRules: {text[:200]}")
        return cls(**{**ADDED_LATER, **data})


class PersonalMemory(PersonMemory):
    mode = "personal"
    uses_edits = True

    def __init__(self, net: GrowingWhenRequired, rules: PersonalRules, edits_total: int, edits_done: int = 0,
                 history: np.ndarray | None = None, warmup: int = 0, frames_seen: int = 0) -> None:
        self.net = net
        self.rules = rules
        self.edits_total = edits_total
        self.edits_done = edits_done
        #: Without edits (an encoder that cannot edit, or ``use_edits`` off) the memory first watches
        #: ``warmup`` real faces: the encoder's readings of them are the first impression the rest estimate
        #: starts from, and the neurons have labels from more than one frame before the memory is read.
        self.warmup = warmup
        self.frames_seen = frames_seen
        self._history = np.zeros((HISTORY, 2), np.float32)
        self._count = 0  # readings ever kept (the ring holds the last HISTORY)
        if history is not None and len(history):
            n = min(len(history), HISTORY)
            self._history[:n] = history[-n:]
            self._count = n
        self._smooth: np.ndarray | None = None  # the filtered reading and the time of its last update
        self._smooth_time = 0.0

    @classmethod
    def create(cls, settings: MemorySettings, code_dim: int, can_edit: bool = True,
               rules: PersonalRules | None = None) -> PersonalMemory:
        rules = rules or PersonalRules()
        config = GWRConfig(dim=code_dim + (2 if rules.affect_weight > 0 else 0),
                           activity_threshold=settings.activity_threshold,
                           habituation_threshold=settings.habituation_threshold, max_neurons=settings.max_neurons,
                           distance_scale=rules.unit_scale if rules.unit_codes else settings.distance_scale,
                           label_factor=rules.label_rate)
        edits = settings.init_frames * settings.edits_per_frame if rules.use_edits and can_edit else 0
        return cls(GrowingWhenRequired(config), rules, edits, warmup=0 if edits else settings.init_frames)

    # ------------------------------------------------------------ learning
    def _x(self, code: np.ndarray, av: np.ndarray) -> np.ndarray:
        """The GWR's input for a face: its code (on the unit sphere), then the weighted reading if any."""
        x = np.asarray(code, np.float32).reshape(-1)
        if self.rules.unit_codes:
            x = x / max(float(np.linalg.norm(x)), 1e-6)
        if self.rules.affect_weight > 0:
            a = np.clip(np.asarray(av, np.float32).reshape(2), -1.0, 1.0)
            x = np.concatenate([x, self.rules.affect_weight * a])
        return x

    @property
    def edits_wanted(self) -> int:
        return max(self.edits_total - self.edits_done, 0)

    def seed(self, codes: np.ndarray, targets: np.ndarray) -> None:
        xs = np.asarray(codes, np.float32)
        if self.rules.unit_codes:
            xs = xs / np.maximum(np.linalg.norm(xs, axis=1, keepdims=True), 1e-6)
        labels = np.clip(np.asarray(targets, np.float32), -1.0, 1.0)
        if self.rules.affect_weight > 0:  # an edit is placed at the reading it was made for
            xs = np.concatenate([xs, self.rules.affect_weight * labels], axis=1)
        self.net.learn_batch(xs, labels)
        self.edits_done += len(codes)

    @property
    def ready(self) -> bool:
        # Without edits, the first ``warmup`` faces publish the encoder's estimate, as seeding frames do.
        return self.edits_wanted == 0 and self.frames_seen > self.warmup and len(self.net) >= 1

    def learn(self, face: Face) -> None:
        av = np.clip(np.asarray(face.av, np.float32), -1.0, 1.0)
        ready = self.ready  # while seeding, the labels are the edits' targets: keep the encoder's reading instead
        self.net.learn(self._x(face.code, av), av if self.rules.real_labels else None)
        self.frames_seen = min(self.frames_seen + 1, MAX_FRAMES)
        if self.rules.calibrate:
            self._keep(self._match(face)[0] if ready else av)

    def _keep(self, reading: np.ndarray) -> None:
        self._history[self._count % HISTORY] = reading
        self._count += 1

    def _match(self, face: Face) -> tuple[np.ndarray, float]:
        """The activity-weighted mean label of the k best-matching neurons (before calibration), and the
        distance to the best one: one distance computation per face for both."""
        x = self._x(face.code, face.av)
        w = self.net.weights
        d = np.sqrt(np.maximum(((w - x) ** 2).sum(axis=1), 0.0))
        k = min(self.rules.readout_k, len(d))
        best = np.argpartition(d, k - 1)[:k] if k < len(d) else np.arange(len(d))
        activity = np.exp(-d[best] / self.net.config.distance_scale)
        weights = activity / max(float(activity.sum()), 1e-12)
        return (weights[:, None] * self.net.labels[best]).sum(axis=0).astype(np.float32), float(d[best].min())

    def _prototype_rest(self) -> bool:
        """Whether the rest is read from the person's own neurons (not from the quantile of readings)."""
        return self.rules.rest == "prototype" and self.ready and self.edits_total == 0

    def _rest(self) -> np.ndarray | None:
        """The person's rest reading (None: no calibration)."""
        if not self.rules.calibrate or self._count == 0:
            return None
        if self._prototype_rest():
            # (A memory seeded from edits holds the edits' targets as labels: any of them may read neutral.)
            established = np.asarray(self.net.habituation) <= ESTABLISHED
            if established.any():
                labels = np.asarray(self.net.labels)[established]
                return labels[int(np.argmin(((labels - REST_PRIOR) ** 2).sum(axis=1)))]
        held = self._history[: min(self._count, HISTORY)]
        return np.quantile(held, self.rules.rest_quantile, axis=0)

    def _shift(self, rest: np.ndarray | None) -> np.ndarray:
        """The calibration shift for a rest reading: (rest - the population's neutral), bounded."""
        if rest is None:
            return np.zeros(2, np.float32)
        return np.clip(rest - REST_PRIOR, -self.rules.max_offset, self.rules.max_offset).astype(np.float32)

    def offset(self) -> np.ndarray:
        """The calibration shift: (the person's rest reading - the population's neutral), bounded."""
        return self._shift(self._rest())

    def recall(self, face: Face) -> Reading:
        raw, nearest = self._match(face)
        activity = float(np.exp(-nearest / self.net.config.distance_scale))
        reading = raw
        if self.rules.novelty_power > 0:  # a novel face: partly (far away: wholly) the encoder's reading
            threshold = self.net.config.activity_threshold
            trust = min(1.0, activity / threshold) ** self.rules.novelty_power if threshold > 0 else 1.0
            encoder = np.clip(np.asarray(face.av, np.float32).reshape(2), -1.0, 1.0)
            reading = (trust * raw + (1.0 - trust) * encoder).astype(np.float32)
        rest = self._rest()
        if (rest is not None and self.rules.rest_now and self._prototype_rest()
                and float(((reading - REST_PRIOR) ** 2).sum()) < float(((rest - REST_PRIOR) ** 2).sum())):
            rest = reading  # this face reads more neutral than the rest: it is its own rest
        offset = self._shift(rest)
        a, v = clip_av(self._coherent(reading - offset, face.time))
        return Reading(a, v, activity)

    def _coherent(self, reading: np.ndarray, t: float) -> np.ndarray:
        """Adaptive smoothing over time: slow while the reading jitters, immediate when it jumps."""
        rules = self.rules
        dt = t - self._smooth_time
        if rules.settle <= 0 or self._smooth is None or not 0.0 < dt <= 1.0:  # first, or after a gap: start over
            self._smooth, self._smooth_time = reading.astype(np.float32), t
            return self._smooth
        base = 1.0 - np.exp(-dt / rules.settle)
        jump = np.abs(reading - self._smooth) / rules.follow
        rate = np.clip(base + (1.0 - base) * jump, 0.0, 1.0)
        self._smooth = (self._smooth + rate * (reading - self._smooth)).astype(np.float32)
        self._smooth_time = t
        return self._smooth

    # ------------------------------------------------------------- views
    @property
    def num_neurons(self) -> int:
        return self.net.num_neurons

    def summary(self) -> MemorySummary:
        mean = (self.net.mean_labels() - self.offset()) if len(self.net) else np.zeros(2, np.float32)
        return MemorySummary(self.num_neurons, self.net.num_edges, self.net.steps, float(mean[0]), float(mean[1]))

    def plane(self) -> MemoryPlane:
        labels = np.clip(np.asarray(self.net.labels) - self.offset(), -1.0, 1.0)
        return MemoryPlane(labels, np.asarray(self.net.habituation), np.asarray(self.net.born))

    # ------------------------------------------------------------- files
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = gwr_state(self.net, "gwr.")
        n = min(self._count, HISTORY)
        order = (np.arange(self._count - n, self._count) % HISTORY) if n else np.zeros(0, np.int64)
        arrays["history"] = self._history[order].copy()
        return arrays, {**meta, "rules": self.rules.to_json(), "edits_total": self.edits_total,
                        "edits_done": self.edits_done, "warmup": self.warmup, "frames_seen": self.frames_seen}

    @classmethod
    def check_meta(cls, meta: dict[str, Any], code_dim: int | None) -> None:
        try:
            config, _ = gwr_metadata(meta, "gwr.")
            rules = PersonalRules.from_json(str(meta.get("rules")))
        except (MemoryFileError, ValueError, TypeError) as exc:
            raise MemoryStateError(str(exc)) from None
        extra = 2 if rules.affect_weight > 0 else 0  # the reading appended to the code
        check_av_config(config, None if code_dim is None else code_dim + extra)
        total, done = meta.get("edits_total"), meta.get("edits_done")
        if not all(type(v) is int and 0 <= v <= 10_000 * 1024 for v in (total, done)):
            raise MemoryStateError(f"seeding progress must be whole edit counts, got {total!r} / {done!r}")
        warmup, seen = meta.get("warmup"), meta.get("frames_seen")
        if not all(type(v) is int and 0 <= v <= MAX_FRAMES for v in (warmup, seen)):
            raise MemoryStateError(f"warm-up progress must be whole frame counts, got {warmup!r} / {seen!r}")

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any],
                   code_dim: int | None) -> PersonalMemory:
        cls.check_meta(meta, code_dim)
        history = arrays.get("history")
        if history is None or history.dtype != np.float32 or history.ndim != 2 or history.shape[1] != 2 \
                or len(history) > HISTORY or not np.isfinite(history).all() or np.abs(history).max(initial=0) > 1:
            raise MemoryStateError("corrupt reading history")
        try:
            net = gwr_from_state({k: v for k, v in arrays.items() if k != "history"}, meta, "gwr.")
        except MemoryFileError as exc:
            raise MemoryStateError(str(exc)) from None
        if len(net) and np.abs(net.labels).max() > 1.0:
            raise MemoryStateError("arousal/valence labels outside [-1, 1]")
        return cls(net, PersonalRules.from_json(meta["rules"]), meta["edits_total"],
                   min(meta["edits_done"], meta["edits_total"]), history, meta["warmup"], meta["frames_seen"])
