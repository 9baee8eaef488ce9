"""One affective memory <-> one safetensors file.

Why safetensors: it holds raw arrays plus a string->string metadata map and
cannot execute code on load (unlike pickle). The file carries a format name and
version so a foreign or newer file is refused instead of misread, and every
array is checked for shape, dtype, range and finiteness before a network is
built from it. Writes go through :func:`~affective_memory_ros.atomic_io.atomic_write_bytes`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from ..atomic_io import UnsafeFileError, atomic_write_bytes, read_regular_file
from ..file_format import FileFormatError, check_format, read_metadata
from .config import GWRConfig
from .gwr import GrowingWhenRequired

FORMAT_NAME = "affective_memory_ros.gwr"
FORMAT_VERSION = 1
FILE_SUFFIX = ".safetensors"
#: Largest memory file read (a full 100,000-neuron memory is about 30 MB); checked before reading.
MAX_FILE_BYTES = 64 << 20
#: Counters are exact integers below this (JSON numbers stay exact; uint64 message fields never overflow).
MAX_COUNTER = 2**53

_DTYPES = {
    "weights": np.float32,
    "habituation": np.float32,
    "labels": np.float32,
    "neighbors": np.int32,
    "edge_ages": np.int32,
    "born": np.int64,
}


class MemoryFileError(FileFormatError):
    """A memory file is truncated, corrupt, foreign, or from a newer version.

    The file is never modified when this is raised.
    """


def gwr_state(net: GrowingWhenRequired, prefix: str = "") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A copy of ``net``'s state as arrays (names prefixed) and metadata strings (config, counters).

    Cheap (a copy of the arrays, 1.4 MB at 2000 neurons), so callers take it
    under their lock and write the file outside it.
    """
    arrays = {prefix + k: v for k, v in net.state_arrays().items()}
    return arrays, {prefix + "config": net.config.to_json(),
                    prefix + "counters": json.dumps(net.counters(), sort_keys=True)}


def gwr_metadata(metadata: dict[str, str], prefix: str = "") -> tuple[GWRConfig, dict[str, int]]:
    """The config and counters of :func:`gwr_state`'s metadata, every field checked; MemoryFileError if not valid.

    Cheap (no arrays), so a store can check every file's metadata at start.
    """
    try:
        config = GWRConfig.from_json(metadata[prefix + "config"])
        counters = json.loads(metadata[prefix + "counters"])
    except (KeyError, ValueError, TypeError) as exc:
        raise MemoryFileError(f"corrupt metadata: {exc}") from None
    if not (isinstance(counters, dict) and set(counters) == {"steps", "labelled_steps", "insertions", "removals"}
            and all(type(v) is int and 0 <= v < MAX_COUNTER for v in counters.values())):
        raise MemoryFileError(f"corrupt metadata: counters must be integers in [0, 2**53): {str(counters)[:200]}")
    return config, counters


def gwr_from_state(arrays: dict[str, np.ndarray], metadata: dict[str, str], prefix: str = "") -> GrowingWhenRequired:
    """Rebuild a network from :func:`gwr_state`'s output, validating every field; MemoryFileError if not valid."""
    config, counters = gwr_metadata(metadata, prefix)
    own = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    _validate_arrays(own, config)
    return GrowingWhenRequired.from_state(config, own, counters)


def memory_to_bytes(net: GrowingWhenRequired, extra: dict[str, str] | None = None) -> bytes:
    """Serialise ``net``; ``extra`` is caller metadata (e.g. person_id)."""
    arrays, state_meta = gwr_state(net)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        **state_meta,
        "extra": json.dumps(extra or {}, sort_keys=True),
    }
    return st_save(arrays, metadata=metadata)


def save_memory(net: GrowingWhenRequired, path: str | os.PathLike[str], extra: dict[str, str] | None = None) -> Path:
    """Write ``net`` to ``path`` atomically (temp file, fsync, rename).

    The file is readable by its owner only: a memory is personal data.
    """
    return atomic_write_bytes(path, memory_to_bytes(net, extra), mode=0o600)


def load_memory(path: str | os.PathLike[str]) -> tuple[GrowingWhenRequired, dict[str, str]]:
    """Read a memory file; returns the network and the caller metadata saved with it."""
    p = Path(path)
    try:
        data = read_regular_file(p, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise
    except (OSError, UnsafeFileError) as exc:
        raise MemoryFileError(f"{p}: cannot read: {exc}") from exc
    try:
        return memory_from_bytes(data)
    except MemoryFileError as exc:
        raise MemoryFileError(f"{p}: {exc}") from None


def memory_from_bytes(data: bytes) -> tuple[GrowingWhenRequired, dict[str, str]]:
    try:
        metadata = read_metadata(data, "memory file")
        check_format(metadata, FORMAT_NAME, FORMAT_VERSION, "memory file")
    except FileFormatError as exc:
        raise MemoryFileError(str(exc)) from None
    try:
        extra = json.loads(metadata.get("extra", "{}"))
    except (ValueError, TypeError) as exc:
        raise MemoryFileError(f"corrupt metadata: {exc}") from None
    if not (isinstance(extra, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items())):
        raise MemoryFileError("corrupt metadata: extra must map strings to strings")
    try:
        arrays = st_load(data)
    except Exception as exc:  # safetensors raises its own error types for bad payloads
        raise MemoryFileError(f"corrupt tensor data: {exc}") from None
    return gwr_from_state(arrays, metadata), extra


def _validate_arrays(arrays: dict[str, np.ndarray], config: GWRConfig) -> None:
    if set(arrays) != set(_DTYPES):
        raise MemoryFileError(f"unexpected arrays {sorted(arrays)}; expected {sorted(_DTYPES)}")
    for name, dtype in _DTYPES.items():
        if arrays[name].dtype != dtype:
            raise MemoryFileError(f"array {name!r} has dtype {arrays[name].dtype}, expected {np.dtype(dtype)}")
    n = arrays["weights"].shape[0]
    expected = {
        "weights": (n, config.dim),
        "habituation": (n,),
        "labels": (n, config.label_dim),
        "neighbors": (n, config.max_degree),
        "edge_ages": (n, config.max_degree),
        "born": (n,),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise MemoryFileError(f"array {name!r} has shape {arrays[name].shape}, expected {shape}")
    if n > config.max_neurons:
        raise MemoryFileError(f"{n} neurons exceed the file's own cap of {config.max_neurons}")
    for name in ("weights", "habituation", "labels"):
        if not np.isfinite(arrays[name]).all():
            raise MemoryFileError(f"array {name!r} contains NaN or infinite values")
    h = arrays["habituation"]
    if ((h < 0) | (h > 1)).any():
        raise MemoryFileError("habituation outside [0, 1]")
    nb = arrays["neighbors"]
    if ((nb < -1) | (nb >= n)).any():
        raise MemoryFileError("edge endpoints out of range")
    if (arrays["edge_ages"] < 0).any():
        raise MemoryFileError("negative edge ages")
    if (arrays["born"] < 0).any() or (arrays["born"] >= MAX_COUNTER).any():
        raise MemoryFileError("neuron birth steps out of range")
    rows, slots = np.nonzero(nb >= 0)
    cols = nb[rows, slots]
    if (rows == cols).any():
        raise MemoryFileError("self-loop edges")
    ages = arrays["edge_ages"][rows, slots]
    forward = dict(zip(zip(rows.tolist(), cols.tolist(), strict=True), ages.tolist(), strict=True))
    if len(forward) != rows.size or any(forward.get((j, i)) != age for (i, j), age in forward.items()):
        raise MemoryFileError("edge lists are not symmetric, repeat an edge, or disagree on an edge's age")
