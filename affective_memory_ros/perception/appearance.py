"""Appearance signatures: who a face is, among the persons already known.

A stored memory is only ever given to a face whose signature matches that
person's (:class:`Gallery`), so the embedding and its threshold decide whether
a stranger could inherit someone's memory. Both are measured on real people
in docs/perception.md.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

#: The signature: uniform-LBP histograms (8 neighbours on radius 3) on a 7 x 7 grid of soft cells over the
#: blurred grey crop, square-rooted and L2-normalised (Ahonen et al. 2006 style). Measured on London FRL against
#: grey thumbnails, HOG and the PK's z: it was the only candidate that tells strangers apart at a usable
#: recognition rate (docs/perception.md, "Re-identification").
GRID, RADIUS, BLUR_SIGMA, N_BINS = 7, 3, 1.0, 59
SIGNATURE_DIM = GRID * GRID * N_BINS
#: Cosine similarity at or above which a face is a known person. Chosen on the train and tune London FRL people
#: so that no stranger pair matches, with a margin (docs/perception.md): a stranger never inherits a memory.
DEFAULT_REID_THRESHOLD = 0.93
#: Frames of a new person averaged before they are compared with persons not in view (in RAM or in the store):
#: a mean of 4 frames recognises twice as many returning people as one frame, with no more false matches.
PROBE_FRAMES = 4


def appearance_embedding(crops: np.ndarray) -> np.ndarray:
    """(N, SIGNATURE_DIM) L2-normalised appearance embeddings of aligned face crops (N, 96, 96, 3) RGB.

    About 0.6 ms per face on one CPU core; nothing learned, so nothing to ship.
    """
    crops = np.asarray(crops)
    if len(crops) == 0:
        return np.zeros((0, SIGNATURE_DIM), np.float32)
    return np.concatenate([_embed(crops[i : i + _CHUNK]) for i in range(0, len(crops), _CHUNK)])


def _uniform_table() -> np.ndarray:
    table = np.full(256, N_BINS - 1, np.int64)
    k = 0
    for code in range(256):
        bits = [(code >> i) & 1 for i in range(8)]
        if sum(bits[i] != bits[(i + 1) % 8] for i in range(8)) <= 2:
            table[code] = k
            k += 1
    return table


_U2 = _uniform_table()


def _lbp_codes(g: np.ndarray, r: int) -> np.ndarray:
    """(N, H, W) float32 -> (N, H-2r, W-2r) uniform-LBP bin indices (0..58)."""
    _, h, w = g.shape
    c = g[:, r:h - r, r:w - r]
    code = np.zeros(c.shape, np.int32)
    for p in range(8):
        a = 2 * np.pi * p / 8
        dy, dx = -r * np.sin(a), r * np.cos(a)
        fy, fx = int(np.floor(dy)), int(np.floor(dx))
        ty, tx = dy - fy, dx - fx
        ty = 0.0 if abs(ty) < 1e-6 else ty
        tx = 0.0 if abs(tx) < 1e-6 else tx

        def sl(oy: int, ox: int) -> np.ndarray:
            return g[:, r + oy:h - r + oy, r + ox:w - r + ox]

        v = (1 - ty) * (1 - tx) * sl(fy, fx)
        if tx:
            v = v + (1 - ty) * tx * sl(fy, fx + 1)
        if ty:
            v = v + ty * (1 - tx) * sl(fy + 1, fx)
        if tx and ty:
            v = v + ty * tx * sl(fy + 1, fx + 1)
        code |= (v >= c - 1e-3).astype(np.int32) << p
    return _U2[code]


def _soft_axis(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pos = (np.arange(m) + 0.5) * GRID / m - 0.5
    lo = np.floor(pos).astype(np.int64)
    t = pos - lo
    return np.clip(lo, 0, GRID - 1), np.clip(lo + 1, 0, GRID - 1), 1 - t, t


_CHUNK = 16  # faces per vectorised step (keeps the intermediates in cache)


def _embed(crops: np.ndarray) -> np.ndarray:
    n = len(crops)
    g = np.stack([cv2.GaussianBlur(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), BLUR_SIGMA)
                  for c in crops])
    codes = _lbp_codes(g, RADIUS)
    _, h, w = codes.shape
    y_i0, y_i1, y_w0, y_w1 = _soft_axis(h)
    x_i0, x_i1, x_w0, x_w1 = _soft_axis(w)
    hist = np.zeros(n * GRID * GRID * N_BINS, np.float64)
    base = np.arange(n)[:, None, None] * GRID * GRID
    for yi, yw in ((y_i0, y_w0), (y_i1, y_w1)):
        for xi, xw in ((x_i0, x_w0), (x_i1, x_w1)):
            cell = yi[:, None] * GRID + xi[None, :]
            wgt = np.broadcast_to((yw[:, None] * xw[None, :])[None], codes.shape)
            idx = (base + cell[None]) * N_BINS + codes
            hist += np.bincount(idx.ravel(), weights=wgt.ravel(), minlength=hist.size)
    hist = hist.reshape(n, GRID * GRID, N_BINS)
    hist /= np.maximum(hist.sum(axis=2, keepdims=True), 1e-12)
    e = np.sqrt(hist).reshape(n, SIGNATURE_DIM).astype(np.float32)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-6)



def check_signature(signature: np.ndarray) -> np.ndarray:
    """A signature read from a file: float32 (k, SIGNATURE_DIM), 1 <= k <= MAX_TEMPLATES, finite, unit rows."""
    sig = np.asarray(signature)
    if sig.dtype != np.float32 or sig.ndim != 2 or sig.shape[1] != SIGNATURE_DIM \
            or not 1 <= sig.shape[0] <= Gallery.MAX_TEMPLATES or not np.isfinite(sig).all() \
            or not ((norms := np.linalg.norm(sig, axis=1)) > 0.5).all() or not (norms < 2.0).all():
        raise ValueError("corrupt appearance signature")
    return sig


class Gallery:
    """Appearance signatures of known persons, in RAM and in the store: who a new face is.

    A person's signature is a few *templates* (at most ``MAX_TEMPLATES``), each
    the renormalised mean of ``BLOCK`` consecutive frames' embeddings. A new
    block joins the closest template when it is nearly the same (cosine >=
    ``MERGE``), else becomes a template of its own, replacing the most redundant
    one when the person has ``MAX_TEMPLATES``: the signature keeps the different
    ways a person has looked (a frown, a laugh) instead of only the latest one.
    A face is compared with every template and a person's score is their best
    template's. Bounded: beyond ``max_size`` persons the least recently seen go
    (they are then never matched again, so they get a new ID: never a wrong one).
    """

    BLOCK = 8
    MAX_TEMPLATES = 4
    MERGE = 0.97

    def __init__(self, threshold: float = DEFAULT_REID_THRESHOLD, max_size: int = 2000) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"reid_threshold={threshold!r} must be in [0, 1]")
        self.threshold = threshold
        self.max_size = max_size
        self._templates: OrderedDict[str, np.ndarray] = OrderedDict()  # person -> (k, D); least recently seen first
        self._blocks: dict[str, list[np.ndarray]] = {}  # person -> embeddings of the block being gathered
        self._stand_in: set[str] = set()  # persons whose only template is their first frame
        self._cache: tuple[list[str], np.ndarray, np.ndarray] | None = None  # ids, template matrix, row offsets

    def __contains__(self, person_id: str) -> bool:
        return person_id in self._templates

    def __len__(self) -> int:
        return len(self._templates)

    def get(self, person_id: str) -> np.ndarray | None:
        """The person's templates (k, SIGNATURE_DIM), what their file keeps."""
        t = self._templates.get(person_id)
        return None if t is None else t.copy()

    def enrol(self, person_id: str, templates: np.ndarray) -> None:
        """Add or replace a person with their templates (k, SIGNATURE_DIM), or one embedding."""
        t = np.asarray(templates, np.float32).reshape(-1, SIGNATURE_DIM) if np.size(templates) % SIGNATURE_DIM == 0 \
            else np.zeros((0, SIGNATURE_DIM), np.float32)
        if not 1 <= len(t) <= self.MAX_TEMPLATES or not np.isfinite(t).all():
            raise ValueError(f"a signature is 1 to {self.MAX_TEMPLATES} rows of {SIGNATURE_DIM} finite numbers")
        self._templates[person_id] = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-6)
        self._templates.move_to_end(person_id)
        self._cache = None
        while len(self._templates) > self.max_size:
            gone, _ = self._templates.popitem(last=False)
            self._blocks.pop(gone, None)
            self._stand_in.discard(gone)

    def observe(self, person_id: str, embedding: np.ndarray) -> None:
        """One more frame of ``person_id`` (enrols them if unknown); every ``BLOCK`` frames, a template."""
        e = np.asarray(embedding, np.float32)
        if person_id not in self._templates:
            self.enrol(person_id, e)
            self._blocks[person_id] = [e]
            self._stand_in.add(person_id)
            return
        self._templates.move_to_end(person_id)
        block = self._blocks.setdefault(person_id, [])
        block.append(e)
        if len(block) < self.BLOCK:
            return
        mean = np.mean(block, axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-6)
        block.clear()
        t = self._templates[person_id]
        sims = t @ mean
        if person_id in self._stand_in:
            self._stand_in.discard(person_id)
            t[0] = mean  # the first frame only stood in for the first block
        elif sims.max() >= self.MERGE:
            k = int(sims.argmax())
            merged = t[k] + mean
            t[k] = merged / max(float(np.linalg.norm(merged)), 1e-6)
        elif len(t) < self.MAX_TEMPLATES:
            self._templates[person_id] = np.concatenate([t, mean[None]])
            self._cache = None
            return
        else:
            gram = t @ t.T
            np.fill_diagonal(gram, -1.0)
            t[int(gram.max(axis=1).argmax())] = mean  # the most redundant template makes room
        self._refresh(person_id)

    def _refresh(self, person_id: str) -> None:
        if self._cache is None:
            return
        ids, mat, offsets = self._cache
        k = ids.index(person_id)
        rows = self._templates[person_id]
        if offsets[k + 1] - offsets[k] != len(rows):
            self._cache = None
        else:
            mat[offsets[k] : offsets[k + 1]] = rows

    def remove(self, person_id: str) -> None:
        self._blocks.pop(person_id, None)
        self._stand_in.discard(person_id)
        if self._templates.pop(person_id, None) is not None:
            self._cache = None

    def _matrix(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        if self._cache is None:
            ids = list(self._templates)
            rows = [self._templates[i] for i in ids]
            mat = np.concatenate(rows) if rows else np.zeros((0, SIGNATURE_DIM), np.float32)
            offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
            self._cache = (ids, mat, offsets)
        return self._cache

    def similarities(self, embeddings: np.ndarray, exclude: set[str]) -> tuple[list[str], np.ndarray]:
        """Known persons not in ``exclude``, and each embedding's best-template cosine with each of them."""
        ids, mat, offsets = self._matrix()
        e = np.asarray(embeddings, np.float32).reshape(-1, SIGNATURE_DIM)
        if not ids:
            return [], np.zeros((len(e), 0), np.float32)
        per_person = np.maximum.reduceat(e @ mat.T, offsets[:-1], axis=1)
        keep = [k for k, pid in enumerate(ids) if pid not in exclude]
        return [ids[k] for k in keep], per_person[:, keep]

    def match(self, embedding: np.ndarray, exclude: set[str]) -> tuple[str | None, float]:
        """The known person this embedding is (best similarity at or above the threshold) and that similarity.

        Persons in ``exclude`` (those already given a face in this frame) are
        skipped: two faces of one frame are never one person.
        """
        ids, sims = self.similarities(embedding, exclude)
        if not ids:
            return None, 0.0
        k = int(np.argmax(sims[0]))
        return (ids[k] if sims[0, k] >= self.threshold else None), float(sims[0, k])
