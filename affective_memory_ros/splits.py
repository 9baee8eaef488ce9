"""The project's one data split: which faces (by group: a person, a video, a file) may be trained on,
which may be tuned on, and which are only ever reported.

Every model and every choice in this package uses this function, so a person
held out from one model is held out from all of them:

* ``val`` (validation): never trained on, and no choice (architecture, loss
  weight, threshold, memory rule) is made on it. Numbers on it are reported
  separately, as the honest estimate on new people.
* ``tune``: never trained on; thresholds and memory rules are chosen on it.
  Only datasets with identities (London FRL) have it: DiffusionFER has one face
  per person and no per-person choices to make, so its non-validation part is
  all ``train``.
* ``train``: models train on it.

The bucket is a salted SHA-1 of the group name: stable across runs, machines
and data order, and one person never straddles two parts. With the 72 London
FRL development people this gives 16 ``val``, 15 ``tune`` and 41 ``train``
people; DiffusionFER's ``val`` part is the 15 % (158 faces) the first shipped
PK was already held out from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Literal

import numpy as np

Split = Literal["train", "tune", "val"]

SALT = "affective_memory_ros"
#: Upper bucket bounds of ``val`` and ``tune`` for datasets with identities.
PERSON_VAL, PERSON_TUNE = 0.20, 0.35
#: Upper bucket bound of ``val`` for datasets without identities (one face per group).
FACE_VAL = 0.15


def bucket(group: str, salt: str = SALT) -> float:
    """A number in [0, 1] fixed by the group name."""
    return int(hashlib.sha1(f"{salt}:{group}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_of(group: str, *, has_identities: bool) -> Split:
    """``val``, ``tune`` or ``train`` for a group (a person where identities are known)."""
    b = bucket(group)
    if has_identities:
        return "val" if b < PERSON_VAL else ("tune" if b < PERSON_TUNE else "train")
    return "val" if b < FACE_VAL else "train"


def split_mask(groups: Iterable[str], part: Split, *, has_identities: bool) -> np.ndarray:
    """Boolean mask of the groups that fall in ``part``."""
    return np.array([split_of(g, has_identities=has_identities) == part for g in groups], bool)
