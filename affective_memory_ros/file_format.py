"""The one reader of the project's safetensors headers: every file the package
writes (memories, PK models and checkpoints, imported detector graphs) names
its format and version in the safetensors metadata, and every reader checks
them here before touching the tensors, so a foreign, torn or newer file is
refused with a clear message instead of being misread."""

from __future__ import annotations

import json
import os
import struct

from .atomic_io import UnsafeFileError, read_regular_file

#: Refuse absurd headers before allocating anything (real headers are a few kB).
MAX_HEADER_BYTES = 1 << 22


class FileFormatError(ValueError):
    """A file is truncated, corrupt, foreign, or from a newer version. It is never modified."""


def read_metadata(data: bytes, what: str = "file") -> dict[str, str]:
    """The metadata map of a complete safetensors blob; checks the layout on the way."""
    # safetensors layout: u64 little-endian header length, JSON header, payload.
    if len(data) < 8:
        raise FileFormatError(f"truncated {what} ({len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(data):
        raise FileFormatError(f"truncated or corrupt {what} header")
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise FileFormatError(f"corrupt {what} header (not JSON)") from None
    if not isinstance(header, dict):
        raise FileFormatError(f"corrupt {what} header")
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict):
        raise FileFormatError(f"not a {what} (no metadata)")
    try:
        payload_end = max((int(v["data_offsets"][1]) for k, v in header.items()
                           if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v), default=0)
    except (TypeError, ValueError, IndexError):
        raise FileFormatError(f"corrupt {what} header (tensor offsets)") from None
    if 8 + header_len + payload_end != len(data):
        raise FileFormatError(f"truncated or padded {what} tensor data")
    return metadata


def check_format(metadata: dict[str, str], name: str, supported: int, what: str = "file") -> int:
    """The file's format version, after checking its format name and that we can read it."""
    fmt = metadata.get("format")
    if fmt != name:
        raise FileFormatError(f"not a {what} (format {fmt!r}, expected {name!r})")
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise FileFormatError(f"unreadable format_version {metadata.get('format_version')!r}") from None
    if version > supported:
        raise FileFormatError(f"{what} format version {version} is newer than this software supports "
                              f"({supported}); upgrade affective_memory_ros to read it")
    if version < 1:
        raise FileFormatError(f"invalid format_version {version}")
    return version


def read_format_file(path: str | os.PathLike[str], name: str, supported: int, what: str,
                     max_bytes: int) -> tuple[bytes, dict[str, str]]:
    """A whole file (a regular file of at most ``max_bytes``) and its checked metadata: format ``name``, version
    at most ``supported``. Raises :class:`FileFormatError` naming the path; nothing is written."""
    try:
        data = read_regular_file(path, max_bytes)
    except UnsafeFileError as exc:
        raise FileFormatError(str(exc)) from None
    try:
        meta = read_metadata(data, what)
        check_format(meta, name, supported, what)
    except FileFormatError as exc:
        raise FileFormatError(f"{path}: {exc}") from None
    return data, meta
