"""Per-person memory modes: one module per mode, registered here by name.

Adding a mode: write ``modes/<name>.py`` with a :class:`~.base.PersonMemory`
subclass that has ``create(settings, code_dim, can_edit)``, and add one line to
:data:`~.base.MODES`.
"""

from __future__ import annotations

import importlib

from .base import (
    DEFAULT_MODE,
    MODES,
    Face,
    MemoryPlane,
    MemorySettings,
    MemoryStateError,
    MemorySummary,
    PersonMemory,
    Reading,
)


def mode_class(name: str) -> type[PersonMemory]:
    if name not in MODES:
        raise ValueError(f"unknown memory mode {name!r}; choose one of {', '.join(MODES)}")
    module, cls = MODES[name].split(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def make_memory(settings: MemorySettings, code_dim: int, can_edit: bool = True,
                encoder: str | None = None) -> PersonMemory:
    """A new, empty memory in the configured mode for codes of ``code_dim``.

    ``can_edit`` says whether the encoder can edit faces; a mode that needs
    edits refuses (ValueError) when it cannot, one that can do without them
    does without. ``encoder`` is the encoder's registry name (None: unknown);
    modes whose defaults were chosen per encoder use it
    (:meth:`~.base.PersonMemory.create_for`).
    """
    return mode_class(settings.memory_mode).create_for(settings, code_dim, can_edit, encoder)


__all__ = ["DEFAULT_MODE", "MODES", "Face", "MemoryPlane", "MemorySettings", "MemoryStateError",
           "MemorySummary", "PersonMemory", "Reading", "make_memory", "mode_class"]
