"""Measurement, kept apart from the product: every benchmark and evaluation command's logic lives here.

Each module prints or returns JSON-ready dicts (and Markdown tables where a
table is the result); the ``affective-memory`` CLI only parses arguments and
calls them. Nothing in the product imports from here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def to_json(report: dict[str, Any]) -> str:
    """A report as JSON: numpy scalars and arrays as plain numbers, NaN as null, ±inf as the strings
    "inf"/"-inf" (a median of separations may be infinite; JSON has no infinity)."""
    def clean(o: Any) -> Any:
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [clean(v) for v in o]
        if isinstance(o, np.ndarray):
            return clean(o.tolist())
        if isinstance(o, bool | np.bool_):
            return bool(o)
        if isinstance(o, float | np.floating):
            f = float(o)
            return f if math.isfinite(f) else (None if math.isnan(f) else ("inf" if f > 0 else "-inf"))
        if isinstance(o, np.integer):
            return int(o)
        return o
    return json.dumps(clean(report), indent=1)
