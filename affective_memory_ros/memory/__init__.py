"""Per-person affective memory: a Growing-When-Required network with
associative arousal/valence labels, and its on-disk format."""

from .config import GWRConfig
from .gwr import BatchRecall, EmptyMemoryError, GrowingWhenRequired, Recall, StepInfo
from .persistence import FORMAT_VERSION, MemoryFileError, load_memory, save_memory

__all__ = [
    "FORMAT_VERSION",
    "BatchRecall",
    "EmptyMemoryError",
    "GWRConfig",
    "GrowingWhenRequired",
    "MemoryFileError",
    "Recall",
    "StepInfo",
    "load_memory",
    "save_memory",
]
