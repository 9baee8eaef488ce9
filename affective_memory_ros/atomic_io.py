"""Safe file I/O shared by every on-disk format of the project.

* **Writes are crash-safe.** A robot can lose power mid-save. Writing to a
  temporary file in the target's own directory, fsyncing it, renaming it over
  the target and fsyncing the directory means a reader only ever sees the
  complete old file or the complete new one, never a torn mixture.
* **Reads never hang and never exhaust memory.** :func:`read_regular_file`
  opens without following a FIFO's blocking open (``O_NONBLOCK``), refuses
  anything but a regular file (FIFOs, devices such as ``/dev/zero``,
  directories), and checks the size before reading a byte, so a hostile file
  in a store cannot block a worker or allocate 64 GiB.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"


class UnsafeFileError(ValueError):
    """A path is not a regular file, or is larger than the caller allows. Nothing was read."""


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; refuses anything else without blocking.

    Raises FileNotFoundError for a missing path, :class:`UnsafeFileError` for a
    FIFO, device, socket, directory or an oversized file, and OSError for other
    failures.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFileError(f"{path}: not a regular file")
        if info.st_size > max_bytes:
            raise UnsafeFileError(f"{path}: {info.st_size} bytes, more than the {max_bytes} allowed")
        chunks, left = [], info.st_size + 1  # one byte more tells a file that grew while being read
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise UnsafeFileError(f"{path}: grew beyond the {max_bytes} bytes allowed while being read")
        return data
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``data`` atomically and durably; return the path.

    ``mode`` is the file's permission bits (memories of people use 0o600).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX + target.name + ".", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(target.parent)
    return target


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
