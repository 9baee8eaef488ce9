"""CLIFER's memories on the fast GWR core: a Gamma-GWR with temporal context, label histograms, running
arousal/valence, temporal links and regulated learning, and the episodic + semantic pair built from it.

CLIFER (Churamani & Gunes, FG 2020) keeps two memories per person, both Growing-When-Required networks
(Parisi et al. 2018's Growing Dual-Memory): an *episodic* Gamma-GWR that learns every frame fast, and a
*semantic* GWR that learns slowly and only when it predicts wrong (*regulated*), fed with the episodic
memory's best-matching prototypes and with replay. The facts this module follows, with the reference
code's defects it does not copy, are in ``../shared/docs/clifer-facts.md``; the design is in
``docs/clifer.md``.

:class:`GammaGWR` extends :class:`~.gwr.GrowingWhenRequired` by subclassing: the same preallocated
arrays, sparse ``{neighbour: age}`` adjacency, swap-with-last removal and file format, plus

* **temporal context** (K = ``context_depth``): each neuron's weight row holds K + 1 vectors of the
  input size (row 0 the prototype, rows 1..K its context), stored flat as one (K + 1) x D row of the
  core's weight matrix. The global context is C_0 = x(t), C_k = beta W_{b(t-1),k} + (1 - beta)
  W_{b(t-1),k-1}; the distance d_j = sum_k alpha_k ||C_k - W_{j,k}|| with alpha_k ~ e^-k (CLIFER's
  form). K = 0 (CLIFER) is the core's plain Euclidean distance, on the core's one-gemv fast path;
* **label histograms** over the expression classes (+``hist_increment`` at the label,
  -``hist_decrement`` elsewhere, floored at 0; a new neuron starts one-hot), read out by argmax;
* **arousal/valence** as a running mean per neuron (the core's label columns; rate 1/count, floored at
  ``av_rate_min`` so old neurons keep following), read out from the best match or its neighbourhood;
* **temporal links** for replay: a bounded ``{next: count}`` dict per neuron of the transitions
  b(t-1) -> b(t) (a sparse stand-in for the reference's dense N x N matrix); a trajectory follows the
  most frequent successor;
* **regulated learning** (the semantic memory): a labelled sample whose best match already predicts its
  class changes nothing; otherwise a neuron is inserted where the GWR rule allows, else the best match
  and its neighbours adapt at ``regulated_rate`` times the rates, the histogram untouched.

:class:`DualMemory` is one person's episodic + semantic pair: one :meth:`DualMemory.learn` per face (the
episodic step, then the semantic step on the episodic winner's prototype), :meth:`DualMemory.replay`,
:meth:`DualMemory.learn_imagined`, :meth:`DualMemory.predict`. Everything is deterministic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .config import MAX_NEURONS, GWRConfig
from .gwr import EmptyMemoryError, GrowingWhenRequired
from .persistence import MAX_COUNTER, MemoryFileError, gwr_from_state, gwr_metadata, gwr_state

AV_LABELS = ("arousal", "valence")
#: Largest histogram count kept (counts saturate there; a file claiming more is refused).
HIST_MAX = 1e9
#: Largest per-neuron sample count of the arousal/valence running mean.
AV_COUNT_MAX = 1e9
#: Largest temporal-link count (saturates).
LINK_MAX = 2**31 - 1


@dataclass(frozen=True)
class GammaConfig:
    """A Gamma-GWR's hyperparameters. Defaults are CLIFER's episodic memory (facts sheet, section 4);
    :func:`semantic_config` gives the semantic one. Frozen and validated; every field is saved with the
    memory."""

    #: Input size D (the encoder's code).
    dim: int = 50
    #: Temporal context depth K (CLIFER 0: frame-based; the GDM demo 5).
    context_depth: int = 0
    #: Context mixing beta.
    context_beta: float = 0.7
    #: Activity threshold a_T: insert when a = exp(-d / distance_scale) < a_T.
    activity_threshold: float = 0.4
    #: Habituation threshold h_T: only a BMU habituated below it spawns a neuron.
    habituation_threshold: float = 0.5
    epsilon_b: float = 0.2
    epsilon_n: float = 0.001
    tau_b: float = 0.3
    tau_n: float = 0.1
    kappa: float = 1.05
    #: Edges of the BMU older than this many of its wins are removed (only the BMU's edges age).
    max_age: int = 1000
    max_neurons: int = 2000
    max_degree: int = 16
    #: Activity scale sigma (CLIFER: 1, the unscaled distance in the encoder's latent space).
    distance_scale: float = 1.0
    #: Number of expression classes in each neuron's histogram.
    num_classes: int = 8
    hist_increment: float = 1.0
    hist_decrement: float = 0.1
    #: Floor of the arousal/valence running mean's rate 1 / count.
    av_rate_min: float = 0.05
    #: Regulated learning (the semantic memory).
    regulated: bool = False
    #: Rate factor of a regulated update (CLIFER 0.01).
    regulated_rate: float = 0.01
    #: Temporal successors kept per neuron (the least frequent makes room).
    max_links: int = 8

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.context_depth, int) or not 0 <= self.context_depth <= 16:
            problems.append(f"context_depth={self.context_depth!r} must be an int in [0, 16]")
        if not isinstance(self.dim, int) or not 1 <= self.dim <= 4096:
            problems.append(f"dim={self.dim!r} must be an int in [1, 4096]")
        elif isinstance(self.context_depth, int) and self.dim * (self.context_depth + 1) > 4096:
            problems.append("dim * (context_depth + 1) must be <= 4096")
        if not isinstance(self.num_classes, int) or not 1 <= self.num_classes <= 64:
            problems.append(f"num_classes={self.num_classes!r} must be an int in [1, 64]")
        if not isinstance(self.max_links, int) or not 1 <= self.max_links <= 256:
            problems.append(f"max_links={self.max_links!r} must be an int in [1, 256]")
        for name in ("context_beta", "av_rate_min", "regulated_rate", "hist_decrement"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
                problems.append(f"{name}={value!r} must be in [0, 1]")
        if not (isinstance(self.hist_increment, int | float) and 0.0 < self.hist_increment <= 1000.0):
            problems.append(f"hist_increment={self.hist_increment!r} must be in (0, 1000]")
        if not isinstance(self.regulated, bool):
            problems.append(f"regulated={self.regulated!r} must be a bool")
        if problems:
            raise ValueError("invalid GammaConfig: " + "; ".join(problems))
        self.core()  # the core's own validation (names every offending field)

    def core(self) -> GWRConfig:
        """The core GWR's config: weights of (K + 1) x D, arousal/valence labels."""
        return GWRConfig(dim=self.dim * (self.context_depth + 1), label_names=AV_LABELS,
                         activity_threshold=self.activity_threshold,
                         habituation_threshold=self.habituation_threshold, epsilon_b=self.epsilon_b,
                         epsilon_n=self.epsilon_n, tau_b=self.tau_b, tau_n=self.tau_n, kappa=self.kappa,
                         label_factor=self.av_rate_min, max_age=self.max_age, max_neurons=self.max_neurons,
                         max_degree=self.max_degree, distance_scale=self.distance_scale)

    @property
    def alphas(self) -> np.ndarray:
        """Context weights alpha_k ~ e^-k, normalised (CLIFER's compute_alphas)."""
        a = np.exp(-np.arange(self.context_depth + 1, dtype=np.float64))
        return (a / a.sum()).astype(np.float32)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GammaConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            raise ValueError(f"not a GammaConfig: {str(text)[:200]}")
        return cls(**data)


def semantic_config(episodic: GammaConfig) -> GammaConfig:
    """CLIFER's semantic memory next to ``episodic``: a_T 0.2, h_T 0.2, epsilon 0.02 / 0.001, max age 2000,
    half the neurons, no context, regulated."""
    return dataclasses.replace(episodic, context_depth=0, activity_threshold=0.2, habituation_threshold=0.2,
                               epsilon_b=0.02, epsilon_n=0.001, max_age=2000,
                               max_neurons=max(2, episodic.max_neurons // 2), regulated=True)


class GammaStep(NamedTuple):
    """What one step did. ``weight`` (D,) is the prototype that now wins the sample (the inserted neuron's,
    else the updated BMU's), ``predicted`` its histogram's class (-1: empty histogram); ``changed`` is
    False when a regulated memory already predicted the sample's class and left everything as it was."""

    bmu: int
    second: int
    activity: float
    inserted: int | None
    weight: np.ndarray
    predicted: int
    changed: bool


@dataclass(frozen=True)
class Readout:
    """Read-outs of a batch: ``classes`` (B,) argmax of the best match's histogram (-1: empty),
    ``class_share`` (B,) that bin's share of the histogram, ``av`` (B, 2), ``activity`` (B,) of the best
    match, ``neuron`` (B,), ``weight`` (B, D) the best match's prototype."""

    classes: np.ndarray
    class_share: np.ndarray
    av: np.ndarray
    activity: np.ndarray
    neuron: np.ndarray
    weight: np.ndarray


class GammaGWR(GrowingWhenRequired):
    """A Gamma-GWR (episodic) or regulated GWR (semantic) on the fast core; see the module docstring."""

    def __init__(self, gamma: GammaConfig | None = None, initial_capacity: int = 64) -> None:
        self.gamma = gamma or GammaConfig()
        super().__init__(self.gamma.core(), initial_capacity)
        cap = self._weights.shape[0]
        g = self.gamma
        self._hist = np.zeros((cap, g.num_classes), np.float32)
        self._av_count = np.zeros(cap, np.float32)
        self._lsq = np.zeros((cap, g.context_depth + 1), np.float32)  # per-layer squared norms (K > 0)
        #: _links[i] maps each temporal successor j of neuron i to the count of i -> j transitions;
        #: _links_in[j] is the set of neurons linking to j (for O(degree) removal).
        self._links: list[dict[int, int]] = []
        self._links_in: list[set[int]] = []
        #: The previous winner (context and temporal links); -1 at the start of a sequence.
        self.prev = -1
        #: A winner kept aside while replay runs (removals renumber it like ``prev``); -1: none.
        self.held_prev = -1
        #: Labelled samples a regulated memory already predicted right (and so skipped).
        self.skipped = 0
        self._alphas = g.alphas
        self._hist_step = np.full(g.num_classes, -g.hist_decrement, np.float32)

    # ------------------------------------------------------------------ views
    @property
    def prototypes(self) -> np.ndarray:
        """(N, D) row 0 of every neuron's weights (the prototype without its context); read-only."""
        return self.weights[:, : self.gamma.dim]

    @property
    def histograms(self) -> np.ndarray:
        view = self._hist[: self._n].view()
        view.flags.writeable = False
        return view

    @property
    def av(self) -> np.ndarray:
        """(N, 2) running mean arousal/valence per neuron (meaningful where :attr:`av_count` > 0)."""
        return self.labels

    @property
    def av_count(self) -> np.ndarray:
        view = self._av_count[: self._n].view()
        view.flags.writeable = False
        return view

    def classes(self) -> np.ndarray:
        """(N,) each neuron's class: the argmax of its histogram, -1 where the histogram is empty."""
        h = self._hist[: self._n]
        return np.where(h.max(axis=1) > 0, h.argmax(axis=1), -1)

    def links(self) -> np.ndarray:
        """(L, 3) temporal links (from, to, count), sorted; for tests and plots."""
        rows = [(i, j, c) for i, d in enumerate(self._links) for j, c in d.items()]
        return np.array(sorted(rows), np.int64).reshape(-1, 3)

    def nbytes(self) -> int:
        extra = self._hist.nbytes + self._av_count.nbytes + self._lsq.nbytes
        links = sum(sys.getsizeof(d) + 56 * len(d) for d in self._links) + \
            sum(sys.getsizeof(s) for s in self._links_in)
        return super().nbytes() + extra + links

    # --------------------------------------------------------------- learning
    def reset_context(self) -> None:
        """Start a new sequence: no context from, and no temporal link to, the previous winner."""
        self.prev = -1

    def learn_sample(self, x: np.ndarray, cls: int = -1, av: np.ndarray | None = None) -> GammaStep | None:
        """Learn one sample with its class (-1: none) and arousal/valence (None: none).

        Returns None while the first two samples become the first two neurons.
        """
        xv, avv = self._check_sample_g(x, av)
        if not (type(cls) is int or isinstance(cls, np.integer)) or not -1 <= int(cls) < self.gamma.num_classes:
            raise ValueError(f"class {cls!r} out of range [-1, {self.gamma.num_classes})")
        return self._gstep(xv, int(cls), avv)

    def _check_sample_g(self, x: np.ndarray, av: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        xv = np.asarray(x, dtype=np.float32).reshape(-1)
        if xv.shape != (self.gamma.dim,):
            raise ValueError(f"expected a sample of shape ({self.gamma.dim},), got {np.shape(x)}")
        if not math.isfinite(float(xv.dot(xv))):
            raise ValueError("sample contains NaN or infinite (or absurdly large) values; nothing was learned")
        if av is None:
            return xv, None
        avv = np.asarray(av, dtype=np.float32).reshape(-1)
        if avv.shape != (2,):
            raise ValueError(f"arousal/valence must be 2 finite numbers, got {av!r}")
        a, v = avv.tolist()
        if not (math.isfinite(a) and math.isfinite(v)):
            raise ValueError(f"arousal/valence must be 2 finite numbers, got {av!r}")
        return xv, np.array((min(max(a, -1.0), 1.0), min(max(v, -1.0), 1.0)), np.float32)

    def learn(self, x: np.ndarray, label: np.ndarray | None = None) -> GammaStep | None:  # type: ignore[override]
        """The core's interface: ``x`` (D,) with an optional arousal/valence ``label``, no class."""
        return self.learn_sample(x, -1, label)

    def learn_batch(self, xs: np.ndarray, labels: np.ndarray | None = None) -> list[GammaStep | None]:  # type: ignore[override]
        """Samples in order, each one validated before anything is learned (as the core's)."""
        arr = np.asarray(xs)
        if arr.ndim != 2 or (labels is not None and np.shape(labels) != (arr.shape[0], 2)):
            raise ValueError(f"expected a (B, {self.gamma.dim}) batch and (B, 2) labels")
        checked = [self._check_sample_g(arr[i], None if labels is None else labels[i]) for i in range(len(arr))]
        return [self._gstep(x, -1, y) for x, y in checked]

    def context(self, x: np.ndarray, prev: int | None = None) -> np.ndarray:
        """The global context vector (flat (K + 1) x D) for input ``x`` after winner ``prev``
        (default: the last one). At the start of a sequence every context row is x (a still input)."""
        g = self.gamma
        k = g.context_depth
        if k == 0:
            return x
        prev = self.prev if prev is None else prev
        out = np.empty((k + 1) * g.dim, np.float32)
        if prev < 0 or prev >= self._n:
            out.reshape(k + 1, g.dim)[:] = x
            return out
        w = self._weights[prev].reshape(k + 1, g.dim)
        c = out.reshape(k + 1, g.dim)
        c[0] = x
        c[1:] = g.context_beta * w[1:] + (1.0 - g.context_beta) * w[:-1]
        return out

    def _search(self, c: np.ndarray) -> tuple[int, int, float]:
        """Best and second-best match of context vector ``c`` and the best one's exact distance."""
        n = self._n
        g = self.gamma
        if g.context_depth == 0:
            d2 = (-2.0 * c) @ self._weights[:n].T
            d2 += self._sqnorm[:n]
            b = int(d2.argmin())
            d2[b] = np.inf
            s = int(d2.argmin())
            diff = c - self._weights[b]
            return b, s, math.sqrt(float(diff.dot(diff)))
        k1, dim = g.context_depth + 1, g.dim
        c3 = c.reshape(k1, dim)
        dots = np.einsum("nkd,kd->nk", self._weights[:n].reshape(n, k1, dim), c3)
        d2 = self._lsq[:n] - 2.0 * dots + np.einsum("kd,kd->k", c3, c3)
        d = np.sqrt(np.maximum(d2, 0.0)) @ self._alphas
        b = int(d.argmin())
        d[b] = np.inf
        s = int(d.argmin())
        diff = (c - self._weights[b]).reshape(k1, dim)
        return b, s, float(np.sqrt(np.einsum("kd,kd->k", diff, diff)) @ self._alphas)

    def _gstep(self, x: np.ndarray, cls: int, av: np.ndarray | None) -> GammaStep | None:
        g = self.gamma
        self.steps += 1
        if cls >= 0 or av is not None:
            self.labelled_steps += 1
        c = self.context(x)
        if self._n < 2:
            r = self._append_g(c, cls, av, None)
            self._link(r)
            if self._n == 2:
                self._connect(0, 1)
            return None

        b, s, dist = self._search(c)
        a = math.exp(-dist / g.distance_scale)
        hist = self._hist
        if g.regulated and cls >= 0:
            hb = hist[b]
            if hb[cls] > 0 and int(hb.argmax()) == cls:
                # Already right: no update at all (only the arousal/valence statistic follows).
                self.skipped += 1
                if av is not None:
                    self._update_av(b, av)
                self.prev = b
                return GammaStep(b, s, a, None, self._weights[b, : g.dim].copy(), cls, False)

        if a < g.activity_threshold and self._habituation[b] < g.habituation_threshold and self._n < g.max_neurons:
            r = self._append_g(0.5 * (self._weights[b] + c), cls, av, b)
            self._disconnect(b, s)
            self._connect(r, b)
            self._connect(r, s)
            self.insertions += 1
            self._link(r)
            weight = self._weights[r, : g.dim].copy()
            predicted = self._predicted(r)
            self._remove_pending_isolated()
            return GammaStep(b, s, a, r, weight, predicted, True)

        edges = self._edges
        nbrs_b = edges[b]
        for j in nbrs_b:
            age = nbrs_b[j] + 1
            nbrs_b[j] = age
            edges[j][b] = age
        self._connect(b, s)
        oldest = max(nbrs_b.values())

        idx = np.array([b, *nbrs_b], np.intp)
        eps, hab_scale, hab_shift = self._rates(len(nbrs_b))
        h = self._habituation[idx]
        w = self._weights[idx]
        coef = eps * np.float32((1.0 - a) * (g.regulated_rate if g.regulated else 1.0))
        w += (coef * h)[:, None] * (c - w)
        self._weights[idx] = w
        self._sqnorm[idx] = (w * w).sum(axis=1)
        if g.context_depth:
            w3 = w.reshape(len(idx), g.context_depth + 1, g.dim)
            self._lsq[idx] = np.einsum("nkd,nkd->nk", w3, w3)
        self._habituation[idx] = h * hab_scale + hab_shift

        if cls >= 0 and not g.regulated:
            hb = hist[b]
            hb += self._hist_step
            hb[cls] = min(float(hb[cls]) + g.hist_increment + g.hist_decrement, HIST_MAX)
            np.maximum(hb, 0.0, out=hb)
        if av is not None:
            self._update_av(b, av)
        self._link(b)
        weight = self._weights[b, : g.dim].copy()
        predicted = self._predicted(b)
        if oldest > g.max_age:
            self._prune_old_edges(b)
        self._remove_pending_isolated()
        return GammaStep(b, s, a, None, weight, predicted, True)

    def _predicted(self, i: int) -> int:
        h = self._hist[i]
        k = int(h.argmax())
        return k if h[k] > 0 else -1

    def _update_av(self, i: int, av: np.ndarray) -> None:
        count = min(float(self._av_count[i]) + 1.0, AV_COUNT_MAX)
        rate = max(1.0 / count, self.gamma.av_rate_min)
        (a0, v0), (a, v) = self._labels[i].tolist(), av.tolist()
        self._labels[i] = (a0 + rate * (a - a0), v0 + rate * (v - v0))
        self._av_count[i] = count

    def _append_g(self, w: np.ndarray, cls: int, av: np.ndarray | None, parent: int | None) -> int:
        """Append a neuron: histogram one-hot at ``cls`` (else the parent's), A/V the sample's (else the
        parent's, with its count)."""
        if av is not None:
            label, count = av, 1.0
        elif parent is not None:
            label, count = self._labels[parent].copy(), float(self._av_count[parent])
        else:
            label, count = np.zeros(2, np.float32), 0.0
        hist = self._hist[parent].copy() if cls < 0 and parent is not None else None
        i = self._append(w, label, 1.0)
        self._hist[i] = 0.0
        if cls >= 0:
            self._hist[i, cls] = self.gamma.hist_increment
        elif hist is not None:
            self._hist[i] = hist
        self._av_count[i] = count
        return i

    # Keep the extra per-neuron state in step with the core's arrays.
    def _append(self, w: np.ndarray, label: np.ndarray, h: float) -> int:
        i = super()._append(w, label, h)
        if self.gamma.context_depth:
            w3 = self._weights[i].reshape(self.gamma.context_depth + 1, self.gamma.dim)
            self._lsq[i] = np.einsum("kd,kd->k", w3, w3)
        self._links.append({})
        self._links_in.append(set())
        return i

    def _grow(self) -> None:
        super()._grow()
        cap = self._weights.shape[0]
        for name in ("_hist", "_av_count", "_lsq"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def _remove_neuron(self, k: int) -> None:
        last = self._n - 1
        links, links_in = self._links, self._links_in
        for j in links[k]:
            links_in[j].discard(k)
        for i in links_in[k]:
            links[i].pop(k, None)
        links[k], links_in[k] = {}, set()
        if k != last:
            for name in ("_hist", "_av_count", "_lsq"):
                arr = getattr(self, name)
                arr[k] = arr[last]
            for j in links[last]:
                links_in[j].discard(last)
                links_in[j].add(k)
            for i in links_in[last]:
                links[i][k] = links[i].pop(last)
            links[k], links_in[k] = links[last], links_in[last]
        links.pop()
        links_in.pop()
        for name in ("prev", "held_prev"):
            value = getattr(self, name)
            if value == k:
                setattr(self, name, -1)
            elif value == last:
                setattr(self, name, k)
        super()._remove_neuron(k)

    def _link(self, j: int) -> None:
        """Count the transition prev -> j (no self-links), then j becomes prev."""
        i = self.prev
        if 0 <= i != j:
            out = self._links[i]
            if j not in out and len(out) >= self.gamma.max_links:
                # The least frequent successor makes room (lowest index on ties: deterministic).
                drop = min(out, key=lambda t: (out[t], t))
                del out[drop]
                self._links_in[drop].discard(i)
            out[j] = min(out.get(j, 0) + 1, LINK_MAX)
            self._links_in[j].add(i)
        self.prev = j

    # ------------------------------------------------------------------ recall
    def readout(self, xs: np.ndarray, av_neighbourhood: bool = True, sequence: bool = False,
                prev: int = -1) -> Readout:
        """Best matches of (B, D) samples and their read-outs.

        Samples are independent (each with a still context) unless ``sequence``: then they are consecutive
        frames, each one's context taken from the previous one's best match (the first one's from ``prev``).
        A/V: the activity-weighted mean over the best match and its neighbours that hold A/V
        (``av_neighbourhood``), else the best match's own.
        """
        if self._n == 0:
            raise EmptyMemoryError("the memory is empty: it has not learned any sample yet")
        g = self.gamma
        arr = np.asarray(xs, np.float32)
        if arr.ndim != 2 or arr.shape[1] != g.dim:
            raise ValueError(f"expected a (B, {g.dim}) batch, got shape {np.shape(xs)}")
        if not np.isfinite(arr).all():
            raise ValueError("samples contain NaN or infinite values")
        n = self._n
        if g.context_depth == 0:
            d2 = self._sqnorm[None, :n] - 2.0 * (arr @ self._weights[:n].T)
            bmu = np.argmin(d2, axis=1)
            diff = (arr - self._weights[bmu]).astype(np.float64)
            dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        else:
            bmu = np.zeros(len(arr), np.int64)
            dist = np.zeros(len(arr))
            last = prev
            for i, x in enumerate(arr):
                c = self.context(x, last if sequence else -1)
                if n >= 2:
                    b, _, d = self._search(c)
                else:
                    b, d = 0, float(np.linalg.norm(c - self._weights[0]))
                bmu[i], dist[i], last = b, d, b
        activity = np.exp(-dist / g.distance_scale)
        h = self._hist[bmu]
        top = h.argmax(axis=1)
        total = h.sum(axis=1)
        best = h[np.arange(len(h)), top]
        classes = np.where(best > 0, top, -1)
        share = np.where(total > 0, best / np.maximum(total, 1e-12), 0.0)
        av = self._labels[bmu].copy()
        if av_neighbourhood:
            av = np.stack([self._neighbourhood_av(int(b), arr[i]) for i, b in enumerate(bmu)]) if len(arr) else av
        return Readout(classes.astype(np.int64), share.astype(np.float32), av.astype(np.float32),
                       activity.astype(np.float32), bmu.astype(np.int64), self._weights[bmu, : g.dim].copy())

    def _neighbourhood_av(self, b: int, x: np.ndarray) -> np.ndarray:
        idx = np.array([b, *self._edges[b]], np.intp)
        idx = idx[self._av_count[idx] > 0]
        if len(idx) == 0:
            return self._labels[b].copy()
        diff = self._weights[idx, : self.gamma.dim] - x
        act = np.exp(-np.sqrt(np.einsum("ij,ij->i", diff, diff)) / self.gamma.distance_scale)
        wsum = float(act.sum())
        if wsum <= 0:
            return self._labels[b].copy()
        return (act[:, None] * self._labels[idx]).sum(axis=0) / wsum

    # ------------------------------------------------------------------ replay
    def trajectory(self, start: int, length: int | None = None) -> np.ndarray:
        """The path from neuron ``start`` that follows the most frequent successor (ties: the lowest index)
        for ``length`` neurons (default 2K + 1; CLIFER's K = 0 gives the prototype alone), stopping early
        at a neuron without successors or where the path would loop."""
        steps = 2 * self.gamma.context_depth + 1 if length is None else length
        path = [start]
        cur = start
        while len(path) < steps:
            succ = self._links[cur]
            if not succ:
                break
            nxt = max(succ, key=lambda t: (succ[t], -t))
            if nxt in path:
                break
            path.append(nxt)
            cur = nxt
        return np.array(path, np.int64)

    def trajectories(self, length: int | None = None) -> list[np.ndarray]:
        """:meth:`trajectory` from every neuron."""
        return [self.trajectory(i, length) for i in range(self._n)]

    def trajectory_samples(self, path: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A path's samples: (prototypes (S, D), classes (S,), A/V (S, 2) with NaN where unknown)."""
        h = self._hist[path]
        classes = np.where(h.max(axis=1) > 0, h.argmax(axis=1), -1)
        av = np.where(self._av_count[path, None] > 0, self._labels[path], np.nan).astype(np.float32)
        return self._weights[path, : self.gamma.dim].copy(), classes, av

    def replay_samples(self, length: int | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every trajectory as samples (:meth:`trajectory_samples`): a snapshot for replay."""
        return [self.trajectory_samples(p) for p in self.trajectories(length)]

    # ----------------------------------------------------------- (de)serialising
    @classmethod
    def from_core(cls, gamma: GammaConfig, core: GrowingWhenRequired) -> GammaGWR:
        """A Gamma-GWR holding ``core``'s network (no histograms, A/V counts or links yet)."""
        if core.config != gamma.core():
            raise ValueError("the core network's config does not match the Gamma config")
        n = len(core)
        net = cls(gamma, initial_capacity=max(n, 2))
        arrays = core.state_arrays()
        net._n = n
        net._weights[:n] = arrays["weights"]
        w = net._weights[:n]
        net._sqnorm[:n] = np.einsum("ij,ij->i", w, w)
        if gamma.context_depth:
            w3 = w.reshape(n, gamma.context_depth + 1, gamma.dim)
            net._lsq[:n] = np.einsum("nkd,nkd->nk", w3, w3)
        net._habituation[:n] = arrays["habituation"]
        net._labels[:n] = arrays["labels"]
        net._born[:n] = arrays["born"]
        net._edges = [dict(core.neighbors_of(i)) for i in range(n)]
        net._links = [{} for _ in range(n)]
        net._links_in = [set() for _ in range(n)]
        for key, value in core.counters().items():
            setattr(net, key, int(value))
        return net


# ------------------------------------------------------------------------------------ files
_EXTRA_DTYPES = {"hist": np.float32, "av_count": np.float32, "links": np.int32, "link_counts": np.int32}


def gamma_state(net: GammaGWR, prefix: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A copy of ``net``'s full state: the core's arrays under ``prefix + "gwr."``, the rest under
    ``prefix + "x."``; metadata (JSON-able) under ``prefix``."""
    arrays, meta = gwr_state(net, prefix + "gwr.")
    n, g = len(net), net.gamma
    links = np.full((n, g.max_links), -1, np.int32)
    counts = np.zeros((n, g.max_links), np.int32)
    for i, d in enumerate(net._links):
        links[i, : len(d)] = list(d)
        counts[i, : len(d)] = list(d.values())
    arrays.update({prefix + "x.hist": net._hist[:n].copy(), prefix + "x.av_count": net._av_count[:n].copy(),
                   prefix + "x.links": links, prefix + "x.link_counts": counts})
    meta[prefix + "gamma"] = g.to_json()
    meta[prefix + "prev"] = int(net.prev)
    meta[prefix + "skipped"] = int(net.skipped)
    return arrays, meta


def gamma_check_meta(meta: dict[str, Any], prefix: str) -> GammaConfig:
    """The config in ``meta``, every field checked (cheap: no arrays); MemoryFileError if not valid."""
    try:
        gamma = GammaConfig.from_json(str(meta[prefix + "gamma"]))
        core, _ = gwr_metadata(meta, prefix + "gwr.")
    except (KeyError, ValueError, TypeError) as exc:
        raise MemoryFileError(f"corrupt {prefix or 'gamma '}metadata: {exc}") from None
    if core != gamma.core():
        raise MemoryFileError(f"{prefix}: the network's config does not match its Gamma config")
    prev, skipped = meta.get(prefix + "prev"), meta.get(prefix + "skipped")
    if not (type(prev) is int and -1 <= prev < MAX_NEURONS and type(skipped) is int and 0 <= skipped < MAX_COUNTER):
        raise MemoryFileError(f"{prefix}: corrupt prev / skipped: {prev!r} / {skipped!r}")
    return gamma


def gamma_from_state(arrays: dict[str, np.ndarray], meta: dict[str, Any], prefix: str) -> GammaGWR:
    """Rebuild a Gamma-GWR from :func:`gamma_state`'s output, validating every field; MemoryFileError if not."""
    gamma = gamma_check_meta(meta, prefix)
    core_arrays = {k: v for k, v in arrays.items() if k.startswith(prefix + "gwr.")}
    core = gwr_from_state(core_arrays, meta, prefix + "gwr.")
    n = len(core)
    extra = {k[len(prefix) + 2:]: v for k, v in arrays.items() if k.startswith(prefix + "x.")}
    if set(extra) != set(_EXTRA_DTYPES):
        raise MemoryFileError(f"{prefix}: unexpected arrays {sorted(extra)}; expected {sorted(_EXTRA_DTYPES)}")
    shapes = {"hist": (n, gamma.num_classes), "av_count": (n,), "links": (n, gamma.max_links),
              "link_counts": (n, gamma.max_links)}
    for name, dtype in _EXTRA_DTYPES.items():
        if extra[name].dtype != dtype or extra[name].shape != shapes[name]:
            raise MemoryFileError(f"{prefix}x.{name}: {extra[name].dtype} {extra[name].shape}, expected "
                                  f"{np.dtype(dtype)} {shapes[name]}")
    hist, count = extra["hist"], extra["av_count"]
    if not (np.isfinite(hist).all() and (hist >= 0).all() and (hist <= HIST_MAX).all()):
        raise MemoryFileError(f"{prefix}: histograms must be finite counts in [0, {HIST_MAX:g}]")
    if not (np.isfinite(count).all() and (count >= 0).all() and (count <= AV_COUNT_MAX).all()):
        raise MemoryFileError(f"{prefix}: arousal/valence counts must be finite in [0, {AV_COUNT_MAX:g}]")
    if n and np.abs(core.labels).max() > 1.0:
        raise MemoryFileError(f"{prefix}: arousal/valence outside [-1, 1]")
    links, counts = extra["links"], extra["link_counts"]
    if ((links < -1) | (links >= n)).any():
        raise MemoryFileError(f"{prefix}: temporal link endpoints out of range")
    used = links >= 0
    if (counts[used] < 1).any() or (counts[~used] != 0).any():
        raise MemoryFileError(f"{prefix}: temporal link counts must be >= 1 on links and 0 on empty slots")
    if (np.diff(used.astype(np.int8), axis=1) > 0).any():
        raise MemoryFileError(f"{prefix}: empty temporal link slots must come last")
    rows = np.nonzero(used)[0]
    if (links[used] == rows).any():
        raise MemoryFileError(f"{prefix}: temporal self-links")
    for i in range(n):
        row = links[i][used[i]]
        if len(np.unique(row)) != len(row):
            raise MemoryFileError(f"{prefix}: repeated temporal link")
    prev = meta[prefix + "prev"]
    if prev >= n:
        raise MemoryFileError(f"{prefix}: previous winner {prev} out of range")
    net = GammaGWR.from_core(gamma, core)
    net._hist[:n] = hist
    net._av_count[:n] = count
    for i in range(n):
        for j, c in zip(links[i][used[i]].tolist(), counts[i][used[i]].tolist(), strict=True):
            net._links[i][j] = c
            net._links_in[j].add(i)
    net.prev = prev
    net.skipped = meta[prefix + "skipped"]
    return net


# ----------------------------------------------------------------------------- the pair
@dataclass(frozen=True)
class DualReadout:
    """Both memories' read-outs of a batch (see :class:`Readout`)."""

    episodic: Readout
    semantic: Readout


class DualMemory:
    """One person's episodic + semantic memories (CLIFER's Growing Dual-Memory)."""

    def __init__(self, episodic: GammaGWR, semantic: GammaGWR) -> None:
        if episodic.gamma.dim != semantic.gamma.dim or not semantic.gamma.regulated or episodic.gamma.regulated:
            raise ValueError("a dual memory pairs an unregulated episodic and a regulated semantic memory "
                             "of the same input size")
        if semantic.gamma.context_depth != 0:
            raise ValueError("the semantic memory has no temporal context")
        self.episodic = episodic
        self.semantic = semantic

    @classmethod
    def create(cls, episodic: GammaConfig | None = None, semantic: GammaConfig | None = None) -> DualMemory:
        e = episodic or GammaConfig()
        return cls(GammaGWR(e), GammaGWR(semantic or semantic_config(e)))

    def __len__(self) -> int:
        return len(self.episodic)

    def learn(self, x: np.ndarray, cls: int = -1, av: np.ndarray | None = None) -> tuple[GammaStep | None, ...]:
        """One face: the episodic memory learns it, then the semantic memory learns the episodic winner's
        prototype with the face's class (the episodic prediction when the face has none) and A/V."""
        episodic = self.episodic
        xv, avv = episodic._check_sample_g(x, av)
        if not (type(cls) is int or isinstance(cls, np.integer)) or not -1 <= int(cls) < episodic.gamma.num_classes:
            raise ValueError(f"class {cls!r} out of range [-1, {episodic.gamma.num_classes})")
        cls = int(cls)
        e = episodic._gstep(xv, cls, avv)
        if e is None:  # the episodic memory is taking its first neurons: so does the semantic one
            return e, self.semantic._gstep(xv, cls, avv)
        return e, self.semantic._gstep(e.weight, cls if cls >= 0 else e.predicted, avv)

    def reset_context(self) -> None:
        self.episodic.reset_context()
        self.semantic.reset_context()

    def replay(self, epochs_episodic: int = 1, epochs_semantic: int = 1,
               samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> int:
        """Replay the episodic memory's trajectories (``samples``: a snapshot taken earlier; default now):
        ``epochs_episodic`` passes through the episodic memory, then ``epochs_semantic`` through the
        semantic one, each trajectory as its own sequence. Returns the samples replayed."""
        if samples is None:
            samples = self.episodic.replay_samples()
        done = 0
        for net, epochs in ((self.episodic, epochs_episodic), (self.semantic, epochs_semantic)):
            for _ in range(epochs):
                for protos, classes, av in samples:
                    net.reset_context()
                    for x, c, y in zip(protos, classes, av, strict=True):
                        net.learn_sample(x, int(c), None if not np.isfinite(y).all() else y)
                        done += 1
                net.reset_context()
        return done

    def replay_from(self, start: int) -> int:
        """Replay the episodic trajectory from neuron ``start`` once through each memory (the online,
        bounded-cost form of replay: a few neurons per frame, round robin). Returns the samples replayed."""
        sample = self.episodic.trajectory_samples(self.episodic.trajectory(start))
        nets = (self.episodic, self.semantic)
        for net in nets:
            net.held_prev = net.prev
        done = self.replay(1, 1, [sample])
        # Replay is not part of the live sequence: the next real face continues from the last real one.
        for net in nets:
            net.prev, net.held_prev = net.held_prev, -1
        return done

    def learn_imagined(self, codes: np.ndarray, classes: np.ndarray, av: np.ndarray, epochs: int = 1) -> None:
        """Imagined faces (one per row): ``epochs`` passes through the episodic memory, then as many through
        the semantic memory, each sample on its own (no temporal context across imagined faces)."""
        for net in (self.episodic, self.semantic):
            for _ in range(epochs):
                for x, c, y in zip(codes, classes, av, strict=True):
                    net.reset_context()
                    net.learn_sample(x, int(c), y)
            net.reset_context()

    def predict(self, xs: np.ndarray, av_neighbourhood: bool = True, sequence: bool = False) -> DualReadout:
        """Read-outs of both memories; the semantic memory reads the episodic winners' prototypes, as it
        learns them."""
        e = self.episodic.readout(xs, av_neighbourhood, sequence)
        return DualReadout(e, self.semantic.readout(e.weight, av_neighbourhood))

    def state(self, prefix: str = "") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        ea, em = gamma_state(self.episodic, prefix + "episodic.")
        sa, sm = gamma_state(self.semantic, prefix + "semantic.")
        return {**ea, **sa}, {**em, **sm}

    @staticmethod
    def check_meta(meta: dict[str, Any], prefix: str = "") -> tuple[GammaConfig, GammaConfig]:
        e = gamma_check_meta(meta, prefix + "episodic.")
        s = gamma_check_meta(meta, prefix + "semantic.")
        if e.dim != s.dim or e.regulated or not s.regulated or s.context_depth:
            raise MemoryFileError("the episodic and semantic configs do not make a dual memory")
        return e, s

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], prefix: str = "") -> DualMemory:
        cls.check_meta(meta, prefix)
        known = (prefix + "episodic.", prefix + "semantic.")
        unexpected = [k for k in arrays if not k.startswith(known)]
        if unexpected:
            raise MemoryFileError(f"unexpected arrays {sorted(unexpected)[:5]}")
        return cls(gamma_from_state(arrays, meta, known[0]), gamma_from_state(arrays, meta, known[1]))
