"""A Growing-When-Required network with associative labels (Marsland et al. 2002;
Parisi et al. 2015), as P-AffMem uses for each person's affective memory.

Design choices, each made for a robot that runs for hours:

* **Bounded storage.** Neuron arrays (weights, habituation, labels) are
  preallocated and double in capacity when full (amortised O(1) insertion, no
  O(N^2) copy). Edges are a sparse adjacency: one small ``{neighbour: age}``
  dict per neuron, at most ``max_degree`` entries, instead of the toolbox's
  dense N x N float64 edge and age matrices (about 1 MB instead of 65 MB at
  2000 neurons and 50 dimensions). Every per-step edge operation is
  O(degree) dict work, cheaper than a numpy call on so few items.
* **One vectorised search.** Squared norms of the weights are cached, so the
  best and second-best match cost one matrix-vector product. The winner's
  distance is then recomputed exactly, because the activity depends on it.
* **Only the BMU's edges age** (the toolbox ages the whole matrix each step).
* **Deterministic.** No randomness: the same samples in the same order give a
  bit-identical network. The first two samples become the first two neurons.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .config import GWRConfig

#: Per-neuron arrays, all indexed by neuron and grown together.
_NEURON_ARRAYS = ("_weights", "_sqnorm", "_habituation", "_labels", "_born")


class EmptyMemoryError(ValueError):
    """Raised when recalling from a memory that has not learned anything yet."""


@dataclass(frozen=True)
class Recall:
    """What the memory says about one sample.

    ``labels`` follow ``config.label_names`` (arousal, valence by default);
    ``activity`` is the best match's activity in (0, 1], a familiarity score.
    """

    labels: np.ndarray
    activity: float
    neuron: int
    label_names: tuple[str, ...] = ("arousal", "valence")

    def label(self, name: str) -> float:
        return float(self.labels[self.label_names.index(name)])

    @property
    def arousal(self) -> float:
        return self.label("arousal")

    @property
    def valence(self) -> float:
        return self.label("valence")


@dataclass(frozen=True)
class BatchRecall:
    """Recall of a batch: ``labels`` (B, L), ``activity`` (B,), ``neuron`` (B,)."""

    labels: np.ndarray
    activity: np.ndarray
    neuron: np.ndarray
    label_names: tuple[str, ...] = ("arousal", "valence")

    def __len__(self) -> int:
        return int(self.activity.shape[0])

    def __getitem__(self, i: int) -> Recall:
        return Recall(self.labels[i].copy(), float(self.activity[i]), int(self.neuron[i]), self.label_names)


class StepInfo(NamedTuple):
    """What one learning step did; returned so callers and tests can observe it.

    Indices refer to the network as it was during the step, before neurons left
    without edges were removed at its end.
    """

    bmu: int
    second: int
    activity: float
    inserted: int | None


class GrowingWhenRequired:
    """One person's affective memory: a GWR network with associative labels."""

    def __init__(self, config: GWRConfig | None = None, initial_capacity: int = 64) -> None:
        self.config = config or GWRConfig()
        cap = max(2, min(initial_capacity, self.config.max_neurons))
        c = self.config
        self._n = 0
        self._weights = np.zeros((cap, c.dim), np.float32)
        self._sqnorm = np.zeros(cap, np.float32)
        self._habituation = np.ones(cap, np.float32)
        self._labels = np.zeros((cap, c.label_dim), np.float32)
        #: _edges[i] maps each neighbour j of neuron i to the age of edge i-j.
        #: Both directions are stored and always hold the same age.
        self._edges: list[dict[int, int]] = []
        self._born = np.zeros(cap, np.int64)
        self._maybe_isolated: list[int] = []
        self._rate_cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        #: Samples learned, labelled samples among them, insertions, removals.
        self.steps = 0
        self.labelled_steps = 0
        self.insertions = 0
        self.removals = 0

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return self._n

    @property
    def num_neurons(self) -> int:
        return self._n

    @property
    def weights(self) -> np.ndarray:
        """(N, dim) prototypes; a read-only view."""
        return _readonly(self._weights[: self._n])

    @property
    def habituation(self) -> np.ndarray:
        return _readonly(self._habituation[: self._n])

    @property
    def labels(self) -> np.ndarray:
        """(N, L) associative labels; a read-only view."""
        return _readonly(self._labels[: self._n])

    @property
    def born(self) -> np.ndarray:
        """Step at which each neuron was created (for 'newest brightest' plots)."""
        return _readonly(self._born[: self._n])

    def edges(self) -> np.ndarray:
        """(E, 3) array of (i, j, age) with i < j, sorted; for tests and plots."""
        rows = [(i, j, age) for i, nbrs in enumerate(self._edges) for j, age in nbrs.items() if i < j]
        return np.array(sorted(rows), np.int64).reshape(-1, 3)

    def neighbors_of(self, i: int) -> dict[int, int]:
        """Neighbours of neuron i with the ages of their edges (a copy)."""
        return dict(self._edges[i])

    @property
    def num_edges(self) -> int:
        return sum(len(nbrs) for nbrs in self._edges) // 2

    def nbytes(self) -> int:
        """Bytes held by the network state: arrays (allocated capacity included)
        plus the adjacency dicts and their int objects."""
        arrays = sum(a.nbytes for a in (self._weights, self._sqnorm, self._habituation, self._labels, self._born))
        adjacency = sys.getsizeof(self._edges) + sum(
            sys.getsizeof(d) + sum(sys.getsizeof(j) + sys.getsizeof(a) for j, a in d.items()) for d in self._edges)
        return arrays + adjacency

    # --------------------------------------------------------------- learning
    def learn(self, x: np.ndarray, label: np.ndarray | None = None) -> StepInfo | None:
        """Learn one sample; ``label`` (L,) makes it a labelled sample.

        Only labelled samples (the PK-edited faces with their target) move labels;
        real faces move prototypes only. Returns None while the network is still
        taking its first two samples as its first two neurons.
        """
        xv, lv = self._check_sample(x, label)
        return self._step(xv, lv)

    def learn_batch(self, xs: np.ndarray, labels: np.ndarray | None = None) -> list[StepInfo | None]:
        """Learn samples in order; identical to calling :meth:`learn` on each.

        GWR learning is sequential by nature (each step changes what the next
        step matches), so a batch is validated at once and then stepped in order.
        Nothing is learned if any sample is invalid.
        """
        xs_arr = np.asarray(xs)
        if xs_arr.ndim != 2:
            raise ValueError(f"expected a (B, {self.config.dim}) batch, got shape {xs_arr.shape}")
        if labels is not None:
            labels_arr = np.asarray(labels)
            if labels_arr.shape != (xs_arr.shape[0], self.config.label_dim):
                raise ValueError(
                    f"labels must have shape ({xs_arr.shape[0]}, {self.config.label_dim}), got {labels_arr.shape}")
        checked = [self._check_sample(xs_arr[i], None if labels is None else labels_arr[i])
                   for i in range(xs_arr.shape[0])]
        return [self._step(xv, lv) for xv, lv in checked]

    def _check_sample(self, x: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        xv = np.asarray(x, dtype=np.float32)
        if xv.shape != (self.config.dim,):
            raise ValueError(f"expected a sample of shape ({self.config.dim},), got {np.shape(x)}")
        # One dot product rejects NaN, inf, and magnitudes whose squared norm
        # overflows float32 (no encoder produces those).
        if not math.isfinite(float(xv.dot(xv))):
            raise ValueError("sample contains NaN or infinite (or absurdly large) values; nothing was learned")
        if label is None:
            return xv, None
        lv = np.asarray(label, dtype=np.float32)
        if lv.shape != (self.config.label_dim,):
            raise ValueError(f"expected a label of shape ({self.config.label_dim},), got {np.shape(label)}")
        if not all(map(math.isfinite, lv.tolist())):
            raise ValueError("label contains NaN or infinite values; nothing was learned")
        return xv, lv

    def _activity(self, distance: np.ndarray) -> np.ndarray:
        c = self.config
        d = np.square(distance) if c.squared_distance else distance
        return np.exp(-d / c.distance_scale)

    def _step(self, x: np.ndarray, label: np.ndarray | None) -> StepInfo | None:
        c = self.config
        self.steps += 1
        if label is not None:
            self.labelled_steps += 1
        if self._n < 2:
            # Marsland's initialisation with two neurons, taken from the data.
            self._append(x, label if label is not None else np.zeros(c.label_dim, np.float32), 1.0)
            if self._n == 2:
                self._connect(0, 1)
            return None

        n = self._n
        # ||x - w||^2 = ||w||^2 - 2 x.w + ||x||^2; the last term cannot change the argmin.
        # (x @ W.T runs BLAS's transposed gemv, measurably faster here than W @ x.)
        d2 = (-2.0 * x) @ self._weights[:n].T
        d2 += self._sqnorm[:n]
        b = int(d2.argmin())
        d2[b] = np.inf
        s = int(d2.argmin())
        diff_b = x - self._weights[b]
        dist_b = math.sqrt(float(diff_b.dot(diff_b)))
        a = math.exp(-(dist_b * dist_b if c.squared_distance else dist_b) / c.distance_scale)

        if a < c.activity_threshold and self._habituation[b] < c.habituation_threshold and n < c.max_neurons:
            new_label = label if label is not None else self._labels[b]
            r = self._append(0.5 * (self._weights[b] + x), new_label, 1.0)
            self._disconnect(b, s)
            self._connect(r, b)
            self._connect(r, s)
            self.insertions += 1
            self._remove_pending_isolated()
            return StepInfo(b, s, a, r)

        # Edges ending at the BMU age; then the b-s edge is made or refreshed
        # with age 0 (Marsland et al. 2002, steps 5 and 8).
        edges = self._edges
        nbrs_b = edges[b]
        for j in nbrs_b:
            age = nbrs_b[j] + 1
            nbrs_b[j] = age
            edges[j][b] = age
        self._connect(b, s)
        oldest = max(nbrs_b.values())

        # BMU and neighbours adapt in one vectorised update:
        # dw = eps * h * (x - w) * (1 - a)   (P-AffMem Eq. 8; without (1 - a) when not modulated)
        # dh = tau * kappa * (1 - h) - tau   (stays in [0, 1] because tau * kappa <= 1)
        idx = np.array([b, *nbrs_b], np.intp)
        eps, hab_scale, hab_shift = self._rates(len(nbrs_b))
        h = self._habituation[idx]
        w = self._weights[idx]
        coef = eps * np.float32(1.0 - a) if c.modulated_update else eps
        w += (coef * h)[:, None] * (x - w)
        self._weights[idx] = w
        self._sqnorm[idx] = (w * w).sum(axis=1)
        self._habituation[idx] = h * hab_scale + hab_shift

        if label is not None:
            lb = self._labels[b]
            lb += c.label_factor * (label - lb)

        if oldest > c.max_age:
            self._prune_old_edges(b)
        self._remove_pending_isolated()
        return StepInfo(b, s, a, None)

    def _rates(self, num_neighbors: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-row constants for [BMU, neighbours...], cached by degree.

        Returns epsilon, and the habituation step rewritten as h' = h * scale + shift
        with scale = 1 - tau * kappa and shift = tau * (kappa - 1).
        """
        rates = self._rate_cache.get(num_neighbors)
        if rates is None:
            c = self.config
            eps = np.array([c.epsilon_b] + [c.epsilon_n] * num_neighbors)
            tau = np.array([c.tau_b] + [c.tau_n] * num_neighbors)
            # float32 throughout: mixing in float64 would upcast every temporary.
            rates = (eps.astype(np.float32), (1.0 - tau * c.kappa).astype(np.float32),
                     (tau * (c.kappa - 1.0)).astype(np.float32))
            self._rate_cache[num_neighbors] = rates
        return rates

    # ----------------------------------------------------------------- recall
    def recall(self, x: np.ndarray) -> Recall:
        """Labels of the best-matching neuron, with its activity."""
        return self.recall_batch(np.asarray(x)[None, :])[0]

    def recall_batch(self, xs: np.ndarray) -> BatchRecall:
        """Vectorised recall for (B, dim) samples."""
        if self._n == 0:
            raise EmptyMemoryError("the memory is empty: it has not learned any sample yet")
        xs_arr = np.asarray(xs, dtype=np.float32)
        if xs_arr.ndim != 2 or xs_arr.shape[1] != self.config.dim:
            raise ValueError(f"expected a (B, {self.config.dim}) batch, got shape {np.shape(xs)}")
        if not np.isfinite(xs_arr).all():
            raise ValueError("samples contain NaN or infinite values")
        n = self._n
        d2 = self._sqnorm[None, :n] - 2.0 * (xs_arr @ self._weights[:n].T)
        bmu = np.argmin(d2, axis=1)
        diff = (xs_arr - self._weights[bmu]).astype(np.float64)
        dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        return BatchRecall(self._labels[bmu].copy(), np.asarray(self._activity(dist)), bmu.astype(np.int64),
                           self.config.label_names)

    def mean_labels(self) -> np.ndarray:
        """Mean label over all neurons (the demo's red dot)."""
        if self._n == 0:
            raise EmptyMemoryError("the memory is empty")
        return self._labels[: self._n].mean(axis=0)

    # ------------------------------------------------------- graph operations
    def _append(self, w: np.ndarray, label: np.ndarray, h: float) -> int:
        if self._n == self._weights.shape[0]:
            self._grow()
        i = self._n
        self._weights[i] = w
        self._sqnorm[i] = self._weights[i].dot(self._weights[i])
        self._habituation[i] = h
        self._labels[i] = label
        self._born[i] = self.steps
        self._edges.append({})
        self._n += 1
        return i

    def _grow(self) -> None:
        new_cap = min(self.config.max_neurons, 2 * self._weights.shape[0])
        for name in _NEURON_ARRAYS:
            old = getattr(self, name)
            new = np.zeros((new_cap, *old.shape[1:]), old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)

    def _connect(self, i: int, j: int) -> None:
        """Create edge i-j, or refresh it, with age 0."""
        for u, v in ((i, j), (j, i)):
            nbrs = self._edges[u]
            if v not in nbrs and len(nbrs) >= self.config.max_degree:
                # Degree cap: the oldest edge of u makes room. Removing a neuron
                # now would renumber neurons mid-step, so that waits for the end.
                dropped = max(nbrs, key=nbrs.__getitem__)
                self._disconnect(u, dropped)
                self._maybe_isolated.append(dropped)
        self._edges[i][j] = 0
        self._edges[j][i] = 0

    def _disconnect(self, i: int, j: int) -> None:
        self._edges[i].pop(j, None)
        self._edges[j].pop(i, None)

    def _prune_old_edges(self, b: int) -> None:
        max_age = self.config.max_age
        gone = [j for j, age in self._edges[b].items() if age > max_age]
        for j in gone:
            self._disconnect(b, j)
        self._maybe_isolated.extend([*gone, b])

    def _remove_pending_isolated(self) -> None:
        if not self._maybe_isolated:
            return
        candidates, self._maybe_isolated = self._maybe_isolated, []
        # Highest index first, so a swap-with-last never moves a pending candidate
        # to an index we have not looked at yet.
        for k in sorted(set(candidates), reverse=True):
            if self._n > 2 and k < self._n and not self._edges[k]:
                self._remove_neuron(k)

    def _remove_neuron(self, k: int) -> None:
        """Delete neuron k by moving the last neuron into its slot (O(degree))."""
        last = self._n - 1
        if k != last:
            for name in _NEURON_ARRAYS:
                arr = getattr(self, name)
                arr[k] = arr[last]
            moved = self._edges[last]
            for j, age in moved.items():
                del self._edges[j][last]
                self._edges[j][k] = age
            self._edges[k] = moved
        self._edges.pop()
        self._n -= 1
        self.removals += 1

    # -------------------------------------------------------- (de)serialising
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Exact state as contiguous arrays (what :mod:`.persistence` writes).

        Edges become a padded (N, max_degree) neighbour table (-1 = no edge)
        with matching ages, in each neuron's dict order, so a round trip
        restores the very same network.
        """
        n = self._n
        neighbors = np.full((n, self.config.max_degree), -1, np.int32)
        ages = np.zeros((n, self.config.max_degree), np.int32)
        for i, nbrs in enumerate(self._edges):
            neighbors[i, : len(nbrs)] = list(nbrs)
            ages[i, : len(nbrs)] = list(nbrs.values())
        return {
            "weights": self._weights[:n].copy(),
            "habituation": self._habituation[:n].copy(),
            "labels": self._labels[:n].copy(),
            "neighbors": neighbors,
            "edge_ages": ages,
            "born": self._born[:n].copy(),
        }

    def counters(self) -> dict[str, int]:
        return {"steps": self.steps, "labelled_steps": self.labelled_steps,
                "insertions": self.insertions, "removals": self.removals}

    @classmethod
    def from_state(
        cls, config: GWRConfig, arrays: dict[str, np.ndarray], counters: dict[str, int]
    ) -> GrowingWhenRequired:
        """Rebuild a network from :meth:`state_arrays`; the caller validated them."""
        n = int(arrays["weights"].shape[0])
        net = cls(config, initial_capacity=max(n, 2))
        net._n = n
        net._weights[:n] = arrays["weights"]
        w = net._weights[:n]
        net._sqnorm[:n] = np.einsum("ij,ij->i", w, w)
        net._habituation[:n] = arrays["habituation"]
        net._labels[:n] = arrays["labels"]
        net._born[:n] = arrays["born"]
        net._edges = [
            {int(j): int(a) for j, a in zip(row, ages, strict=True) if j >= 0}
            for row, ages in zip(arrays["neighbors"].tolist(), arrays["edge_ages"].tolist(), strict=True)
        ]
        for key, value in counters.items():
            setattr(net, key, int(value))
        return net


def _readonly(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view
