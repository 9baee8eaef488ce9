"""Face encoders: one module per model, registered here by name.

Adding an encoder: write ``encoders/<name>.py`` with a
:class:`~.base.FaceEncoder` subclass and its default weights, then add one line
to :data:`ENCODERS`. Importing this package is cheap (no torch); an encoder's
module is imported when it is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import FaceEncoder

#: The registry: name -> "module:class".
ENCODERS: dict[str, str] = {
    "pk": "affective_memory_ros.encoders.pk:PKEncoder",
    "facechannel": "affective_memory_ros.encoders.facechannel:FaceChannelEncoder",
    "facechannel_pk": "affective_memory_ros.encoders.facechannel_pk:FaceChannelPKEncoder",
}
#: The encoders that are one model each (``facechannel_pk`` reads as the FaceChannel and edits with the PK's
#: generator): what measuring every model's readings (``eval-faces``) needs.
MODELS: tuple[str, ...] = ("pk", "facechannel")
#: The FaceChannel reads real faces best (docs/facechannel.md) and needs no seeding edits; the PK remains
#: for the modes that seed from edits (``paper``), and ``facechannel_pk`` gives ``clifer`` its imagination.
DEFAULT_ENCODER = "facechannel"


def encoder_class(name: str) -> type[FaceEncoder]:
    """An encoder's class by its registry name (its class attributes, e.g. ``can_edit``, without weights)."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    module, cls = ENCODERS[name].split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def make_encoder(name: str, weights: str | None = None, device: str = "auto", precision: str = "fp32") -> FaceEncoder:
    """Build an encoder by its registry name; ``weights`` = None loads its shipped default."""
    return encoder_class(name)(weights, device, precision)  # type: ignore[call-arg]
