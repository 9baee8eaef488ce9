"""Agreement metrics for arousal/valence estimates."""

from __future__ import annotations

import numpy as np


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
