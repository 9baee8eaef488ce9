"""Agreement metrics for arousal/valence estimates, and the scoring of encoders on labelled faces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .expressions import EXPRESSIONS, expression_index


def ccc(prediction: np.ndarray, target: np.ndarray) -> float:
    """Concordance correlation coefficient, 2 rho sx sy / (sx^2 + sy^2 + (mx - my)^2).

    Population (biased) moments, as in the AVEC/OMG evaluation scripts. NaN
    pairs are dropped; fewer than two pairs, or two constant series, give NaN.
    """
    x = np.asarray(prediction, np.float64).ravel()
    y = np.asarray(target, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 2:
        return float("nan")
    mx, my = x.mean(), y.mean()
    vx, vy = x.var(), y.var()
    cov = ((x - mx) * (y - my)).mean()
    denom = vx + vy + (mx - my) ** 2
    return float(2 * cov / denom) if denom > 0 else float("nan")


def rmse(prediction: np.ndarray, target: np.ndarray) -> float:
    x = np.asarray(prediction, np.float64).ravel()
    y = np.asarray(target, np.float64).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    return float(np.sqrt(np.mean((x[keep] - y[keep]) ** 2))) if keep.any() else float("nan")


# ------------------------------------------------------------------ faces: arousal/valence, classes, persons
# Pure scoring of encoder outputs against labelled faces (``eval-faces``, the models' selection reports).
# Classes are indices into :data:`~affective_memory_ros.expressions.EXPRESSIONS` (-1 = unknown).


def av_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """CCC and RMSE of arousal and valence ((N, 2) arrays) over the faces whose target is known; ``n_av``
    counts the faces with both known."""
    pred, tgt = np.asarray(prediction, np.float64), np.asarray(target, np.float64)
    out: dict[str, float] = {}
    for i, name in enumerate(("arousal", "valence")):
        out[f"ccc_{name}"] = ccc(pred[:, i], tgt[:, i])
        out[f"rmse_{name}"] = rmse(pred[:, i], tgt[:, i])
    out["n_av"] = int(np.isfinite(tgt).all(axis=1).sum())
    return out


def class_metrics(probs: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    """Accuracy and macro-F1 over the classes present in ``classes``, the prediction being the most probable
    of those classes; ``accuracy_top1_8`` is the unrestricted top-1 accuracy over every class. Faces with
    ``classes`` < 0 are ignored; empty when no face is labelled or the probabilities are not finite (a model
    without a categorical output)."""
    classes = np.asarray(classes, np.int64)
    keep = classes >= 0
    probs, classes = np.asarray(probs)[keep], classes[keep]
    if len(classes) == 0 or not np.isfinite(probs).all():
        return {}
    present = np.unique(classes)
    pred = present[np.argmax(probs[:, present], axis=1)]
    f1s = []
    for c in present:
        tp = int(((pred == c) & (classes == c)).sum())
        fp, fn = int(((pred == c) & (classes != c)).sum()), int(((pred != c) & (classes == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float((pred == classes).mean()), "macro_f1": float(np.mean(f1s)),
            "accuracy_top1_8": float((np.argmax(probs, axis=1) == classes).mean()),
            "classes": [EXPRESSIONS[c] for c in present], "n_labelled": len(classes)}


def valence_per_class(valence: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Mean valence of the faces of each class present (by expression name)."""
    valence, classes = np.asarray(valence, np.float64), np.asarray(classes, np.int64)
    return {EXPRESSIONS[c]: float(np.mean(valence[classes == c])) for c in np.unique(classes[classes >= 0])}


def smile_pairs(identities: Sequence[str], classes: np.ndarray) -> np.ndarray:
    """(P, 2) indices (neutral, smile) of the persons photographed neutral and smiling (``happiness``),
    sorted by identity; the first photo of each class where a person has more. Empty identities are nobody."""
    neutral, happy = expression_index("neutral"), expression_index("happiness")
    people: dict[str, dict[int, int]] = {}
    for i, (ident, c) in enumerate(zip(identities, np.asarray(classes), strict=True)):
        if ident and c in (neutral, happy):
            people.setdefault(ident, {}).setdefault(int(c), i)
    return np.array([(p[neutral], p[happy]) for _, p in sorted(people.items()) if neutral in p and happy in p],
                    np.int64).reshape(-1, 2)


def pair_metrics(valence: np.ndarray, probs: np.ndarray, pairs: np.ndarray) -> dict[str, float]:
    """A person's smile against their own neutral face, over the (neutral, smile) index ``pairs``.

    * ``person_auc``: per person, the AUC of "the smile reads the higher valence" (one photo per class:
      1, 0.5 for a tie, or 0), averaged over persons; ``share_happy_gt_neutral``: the share with a strictly
      higher smile;
    * ``mean_diff``: mean v(smile) - v(neutral); ``smile_valence``: mean v(smile); ``neutral_valence``
      and ``neutral_abs_valence``: mean v and mean |v| of the neutral faces;
    * ``pooled_auc``: every smile against every neutral face, across persons (Mann-Whitney);
    * ``happy_neutral_accuracy``: both photos classified between neutral and happiness by the larger of
      the two probabilities (a tie counts as neutral).

    Valence measures need finite valence, the accuracy finite probabilities; what cannot be computed is left out.
    """
    neutral, happy = expression_index("neutral"), expression_index("happiness")
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return {}
    valence, probs = np.asarray(valence, np.float64), np.asarray(probs, np.float64)
    out: dict[str, float] = {"people": len(pairs)}
    if np.isfinite(valence[pairs]).all():
        vn, vh = valence[pairs[:, 0]], valence[pairs[:, 1]]
        diff = vh - vn
        out.update({"person_auc": float(np.mean(np.where(diff > 0, 1.0, np.where(diff == 0, 0.5, 0.0)))),
                    "share_happy_gt_neutral": float(np.mean(diff > 0)), "mean_diff": float(np.mean(diff)),
                    "smile_valence": float(np.mean(vh)), "neutral_valence": float(np.mean(vn)),
                    "neutral_abs_valence": float(np.mean(np.abs(vn))), "pooled_auc": auc(vh, vn)})
    if np.isfinite(probs[pairs]).all():
        pn, ph = probs[pairs[:, 0]], probs[pairs[:, 1]]
        correct = np.concatenate([pn[:, neutral] >= pn[:, happy], ph[:, happy] > ph[:, neutral]])
        out["happy_neutral_accuracy"] = float(np.mean(correct))
    return out


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(positive > negative) + 0.5 P(tie) over every pair (the Mann-Whitney AUC); NaN when a side is empty."""
    pos, neg = np.asarray(positive, np.float64).ravel(), np.asarray(negative, np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    d = pos[:, None] - neg[None, :]
    return float(np.mean((d > 0) + 0.5 * (d == 0)))
