"""Where person memories live on disk, and the policy that keeps them safe.

A person's file is ``<store>/<person_id>.safetensors`` (:mod:`.person` defines
its contents). The store owns everything about files, for the node and for
``affective-memory run`` alike:

* **Its own folder.** The store creates its folder (mode 0700) and marks it
  as its own, or adopts an existing folder of the same user that holds
  nothing but memory files. A folder of another user, a shared folder
  (group or world writable, such as ``/tmp``), a folder with other files, a
  read-only folder or a path that is a file are refused with one clear line.
  It never changes permissions of a folder it did not create, and deletes only
  the temporary files its own writes leave (named
  ``.tmp-<person_id>.safetensors.<8 characters>``).
* **Paths.** Person IDs are checked before any path is built. An explicit
  path inside the store must be the person's own file name, never another
  person's or a name the store reserves (anything starting with ``.``);
  outside the store only with ``allow_external_paths``.
* **Reads never hang or blow up.** Only regular files are opened, without
  blocking, after a size check (:func:`~.atomic_io.read_regular_file`), and
  every field is validated. Unreadable files are put aside as
  ``<name>.corrupt-<n>`` (never overwritten, never deleted) with a message.
* **No memory is lost.** A person evicted from RAM stays in the store's RAM
  until their file is written; a failed write (disk full, read-only disk) is
  logged, kept and retried, and :attr:`PersonStore.errors` reports it. Saving
  everyone saves every person it can and lists the ones it could not.
* **Reset forgets.** :meth:`PersonStore.forget` deletes the person's file and
  refuses any later write of that person's older state, so a reset person
  never comes back from disk or from an autosave already under way.

File I/O runs on one background thread (``background=True``, the node), so it
never blocks the frame path, or inline (the offline CLI, deterministic).
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic_io import TEMP_PREFIX, UnsafeFileError, atomic_write_bytes, read_regular_file
from .file_format import MAX_HEADER_BYTES, FileFormatError, check_format
from .memory.persistence import FILE_SUFFIX, MAX_FILE_BYTES
from .perception.appearance import SIGNATURE_DIM, Gallery, check_signature
from .person import (
    PERSON_FORMAT,
    PERSON_FORMAT_VERSION,
    LoadedPerson,
    Person,
    PersonFileError,
    PersonIdError,
    PersonSnapshot,
    check_person_id,
    check_person_meta,
    is_valid_person_id,
    person_from_bytes,
)
from .settings import check, setting

#: The file that marks a folder as a store of this package (JSON: format and version).
MARKER = ".affective_memory_store"
MARKER_FORMAT = {"format": "affective_memory_ros.store", "format_version": 1}
#: Temp files of the store's own atomic writes: ``.tmp-<person file>.<mkstemp's 8 characters>``.
_OWN_TEMP = re.compile(r"^" + re.escape(TEMP_PREFIX) + r"[a-z][a-z0-9_]{0,62}" + re.escape(FILE_SUFFIX)
                       + r"\.[a-z0-9_]{8}$")
_OWN_ASIDE = re.compile(r"^[a-z][a-z0-9_]{0,62}" + re.escape(FILE_SUFFIX) + r"\.corrupt-\d+$")


class StoreError(ValueError):
    """A request names an invalid person ID or a path the store refuses, or the store folder is unusable."""


@dataclass(frozen=True)
class StoreConfig:
    store_dir: str = setting("", "memory store folder, created 0700 and owned by the node; empty = no persistence")
    load_on_start: bool = setting(True, "recognise the store's persons from the first frame (their appearance "
                                        "signatures are read at start, a memory when its person is recognised)")
    save_on_shutdown: bool = setting(True, "save every memory to the store at shutdown", runtime=True)
    autosave_period: float = setting(60.0, "seconds between saves of every changed memory to the store (0: off)",
                                     range=(0.0, 86400.0), cli=False)
    allow_external_paths: bool = setting(False, "let the save/load services use paths outside the store", cli=False)

    def __post_init__(self) -> None:
        check(self)


@dataclass
class SaveReport:
    saved: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class _Inline:
    """An executor that runs each task at once (the offline CLI: deterministic, no threads)."""

    def submit(self, fn: Callable[..., object], *args: object) -> Future[object]:
        future: Future[object] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True) -> None:
        pass


class PersonStore:
    def __init__(self, directory: str | os.PathLike[str] | None, *, code_dim: int | None = None,
                 encoder: str | None = None, background: bool = False, retry_period: float = 10.0) -> None:
        """``code_dim`` and ``encoder`` are the running encoder's (the pipeline sets them): files of another
        encoder are refused. None accepts any encoder's files (inspecting files, e.g. ``plot-memory``)."""
        self.directory = _open_store(directory) if directory else None
        self.code_dim, self.encoder = code_dim, encoder
        self.retry_period = retry_period
        self._lock = threading.Lock()
        self._io: ThreadPoolExecutor | _Inline = (
            ThreadPoolExecutor(1, thread_name_prefix="affect-store") if background else _Inline())
        #: Evicted persons whose file is not written yet: person_id -> (person, signature). Still in RAM.
        self._pending: dict[str, tuple[Person, np.ndarray | None]] = {}
        #: Loads under way or done, taken by the pipeline at the start of a frame.
        self._loads: dict[str, Future[object]] = {}
        #: Reset persons: any write of them is refused (an autosave snapshot may still be in flight).
        self._forgotten: set[str] = set()
        #: Version of each person last written, so unchanged persons are not rewritten.
        self._saved_version: dict[str, int] = {}
        self._last_retry = 0.0
        #: (time, message) of recent failures; the node's diagnostics report them.
        self.errors: deque[tuple[float, str]] = deque(maxlen=50)
        self.removed_temp_files = self._cleanup_temp_files() if self.directory else 0

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def close(self) -> None:
        self._io.shutdown(wait=True)

    # ------------------------------------------------------------- paths
    def path_for(self, person_id: str) -> Path:
        self._check_id(person_id)
        if self.directory is None:
            raise StoreError("no memory store configured (parameter store_dir); give an explicit path")
        return self.directory / f"{person_id}{FILE_SUFFIX}"

    def resolve(self, person_id: str, path: str | None, allow_external: bool = False, write: bool = True) -> Path:
        """The file for a save (``write``) or load request: the store's default, or a checked explicit path.

        Inside the store, a save may only name this person's own file (in the
        store or a subfolder), so no save overwrites another person's memory;
        a load may read any memory file there, and :meth:`read` then refuses one
        saved for another person unless it is an explicit import. Names starting
        with ``.`` are the store's own.
        """
        self._check_id(person_id)
        if not path:
            return self.path_for(person_id)
        if "\x00" in path or len(path) > 4096:
            raise StoreError("invalid path")
        candidate = Path(path).expanduser()
        if not candidate.is_absolute() and self.directory is not None:
            candidate = self.directory / candidate
        resolved = candidate.resolve()
        if resolved.suffix != FILE_SUFFIX:
            raise StoreError(f"memory files must end in {FILE_SUFFIX}: {path!r}")
        inside = self.directory is not None and resolved.is_relative_to(self.directory)
        if not inside and not allow_external:
            raise StoreError(f"path {path!r} is outside the memory store {self.directory}; "
                             "set allow_external_paths to permit it")
        if inside:
            assert self.directory is not None
            parts = resolved.relative_to(self.directory).parts
            if any(part.startswith(".") for part in parts):
                raise StoreError(f"path {path!r} is a name the memory store reserves for itself")
            if write and resolved.name != f"{person_id}{FILE_SUFFIX}":
                raise StoreError(f"inside the memory store, {person_id}'s file must be named "
                                 f"{person_id}{FILE_SUFFIX}, not {resolved.name!r} (a file of another person?)")
        return resolved

    @staticmethod
    def _check_id(person_id: object) -> None:
        try:
            check_person_id(person_id)
        except PersonIdError as exc:
            raise StoreError(str(exc)) from None

    def stored_ids(self) -> set[str]:
        """Person IDs with a file in the store (valid names only)."""
        return {pid for pid, _ in self._files()}

    def has(self, person_id: str) -> bool:
        return self.directory is not None and is_valid_person_id(person_id) and \
            os.path.lexists(self.directory / f"{person_id}{FILE_SUFFIX}")

    def _files(self) -> Iterator[tuple[str, Path]]:
        if self.directory is None:
            return
        for p in sorted(self.directory.glob(f"*{FILE_SUFFIX}")):
            pid = p.name[: -len(FILE_SUFFIX)]
            if is_valid_person_id(pid):
                yield pid, p

    # ------------------------------------------------------------- reading
    def read(self, path: Path, expected_id: str | None) -> LoadedPerson:
        """A person from a file: only a regular file, size-checked, every field validated.

        ``expected_id`` is the person it is loaded into: a file saved for
        another person is refused (None = explicit import, any person).
        """
        try:
            data = read_regular_file(path, MAX_FILE_BYTES)
        except UnsafeFileError as exc:
            raise PersonFileError(str(exc)) from None
        try:
            loaded = person_from_bytes(data, self.code_dim, self.encoder)
        except PersonFileError as exc:
            raise PersonFileError(f"{path}: {exc}") from None
        if expected_id is not None and loaded.person.person_id != expected_id:
            raise StoreError(f"{path} holds the memory of {loaded.person.person_id!r}, not {expected_id!r} "
                             "(ask for an explicit import to load it into another person)")
        return loaded

    def signatures(self) -> dict[str, np.ndarray]:
        """Appearance signature of every person in the store, from the files' headers only.

        Files that cannot be read are put aside with a message in :attr:`errors`;
        first-release files without a signature are listed but never matched.
        """
        out = {}
        for pid, path in self._files():
            try:
                sig = _read_signature(path, self.code_dim, self.encoder, pid)
            except FileNotFoundError:
                continue
            except (PersonFileError, OSError) as exc:
                self._put_aside(path, exc)
                continue
            if sig is not None:
                out[pid] = sig
        return out

    def request_load(self, person_id: str) -> None:
        """Start reading a stored person's file (off the frame path); see :meth:`take_loaded`."""
        with self._lock:
            if person_id in self._loads or self.directory is None:
                return
            self._loads[person_id] = self._io.submit(self._load_task, person_id)

    def _load_task(self, person_id: str) -> LoadedPerson | None:
        path = self.path_for(person_id)
        try:
            return self.read(path, person_id)
        except FileNotFoundError:
            return None
        except (PersonFileError, StoreError, OSError) as exc:
            self._put_aside(path, exc)
            return None

    def take_loaded(self) -> dict[str, LoadedPerson | None]:
        """Loads that finished since the last call: person_id -> the person (None: no usable file)."""
        with self._lock:
            done = {pid: f for pid, f in self._loads.items() if f.done()}
            for pid in done:
                del self._loads[pid]
        out: dict[str, LoadedPerson | None] = {}
        for pid, future in done.items():
            try:
                out[pid] = future.result()  # type: ignore[assignment]
            except Exception as exc:
                self._error(f"loading {pid} failed: {type(exc).__name__}: {exc}")
                out[pid] = None
        return out

    def loading(self, person_id: str) -> bool:
        with self._lock:
            return person_id in self._loads

    # ------------------------------------------------------------- writing
    def write(self, snap: PersonSnapshot, path: Path | None = None) -> Path:
        """Write a snapshot now (the caller's thread); refuses persons that were reset meanwhile."""
        own = path is None or (self.directory is not None and path == self.path_for(snap.person_id))
        target = path or self.path_for(snap.person_id)
        with self._lock:
            if own and snap.person_id in self._forgotten:
                raise StoreError(f"{snap.person_id} was reset; their memory is not written again")
        atomic_write_bytes(target, snap.to_bytes(), mode=0o600)
        if own:
            with self._lock:
                self._saved_version[snap.person_id] = max(snap.version, self._saved_version.get(snap.person_id, -1))
        return target

    def is_saved(self, person: Person) -> bool:
        with self._lock:
            return self._saved_version.get(person.person_id, -1) >= person.version

    def keep(self, person: Person, signature: np.ndarray | None) -> None:
        """A person leaves RAM: their file is written off the frame path; until it is, the store keeps them."""
        if self.directory is None:
            return
        with self._lock:
            self._pending[person.person_id] = (person, signature)
        self._io.submit(self._write_pending, person.person_id)

    def reclaim(self, person_id: str) -> tuple[Person, np.ndarray | None] | None:
        """A kept person who came back before (or after) their file was written: back to the pipeline."""
        with self._lock:
            return self._pending.pop(person_id, None)

    def _write_pending(self, person_id: str) -> None:
        from .person import snapshot

        with self._lock:
            item = self._pending.get(person_id)
        if item is None:
            return
        person, signature = item
        try:
            self.write(snapshot(person, signature))
        except StoreError:
            with self._lock:
                self._pending.pop(person_id, None)  # reset meanwhile: nothing to keep
            return
        except OSError as exc:
            self._error(f"could not save {person_id} ({exc}); the memory stays in RAM and the save is retried")
            return
        with self._lock:
            if self._pending.get(person_id) is item:
                del self._pending[person_id]

    @property
    def unsaved(self) -> list[str]:
        """Evicted persons whose memory is only in RAM because their file could not be written yet."""
        with self._lock:
            return sorted(self._pending)

    def retry(self) -> None:
        """Retry the writes of kept persons (called periodically; at most every ``retry_period`` s)."""
        now = time.monotonic()
        if now - self._last_retry < self.retry_period:
            return
        self._last_retry = now
        for pid in self.unsaved:
            self._io.submit(self._write_pending, pid)

    def save_all(self, snapshots: list[PersonSnapshot], wait: bool = True) -> SaveReport:
        """Write every snapshot it can, then every kept person; failures are listed, never fatal."""
        from .person import snapshot

        report = SaveReport()
        with self._lock:
            kept = [snapshot(p, s) for p, s in self._pending.values()]
        for snap in [*snapshots, *kept]:
            try:
                self.write(snap)
                report.saved.append(snap.person_id)
                with self._lock:
                    item = self._pending.get(snap.person_id)
                    if item is not None and item[0].version <= snap.version:
                        del self._pending[snap.person_id]
            except StoreError:
                continue
            except OSError as exc:
                report.failed[snap.person_id] = str(exc)
                self._error(f"could not save {snap.person_id}: {exc}")
        return report

    def submit(self, fn: Callable[..., object], *args: object) -> Future[object]:
        """Run file work on the store's I/O thread (autosave)."""
        return self._io.submit(fn, *args)

    def forget(self, person_id: str) -> bool:
        """Delete a person's file and refuse later writes of their old state; True if anything existed."""
        self._check_id(person_id)
        with self._lock:
            self._forgotten.add(person_id)
            existed = self._pending.pop(person_id, None) is not None
            self._saved_version.pop(person_id, None)
            self._loads.pop(person_id, None)
        if self.directory is not None:
            path = self.path_for(person_id)
            try:
                path.unlink()
                existed = True
            except FileNotFoundError:
                pass
        return existed

    def forgotten(self, person_id: str) -> bool:
        with self._lock:
            return person_id in self._forgotten

    def unforget(self, person_id: str) -> None:
        """An explicit load gives a reset person a memory again: their writes are allowed again."""
        with self._lock:
            self._forgotten.discard(person_id)

    # ------------------------------------------------------------- problems
    def _error(self, text: str) -> None:
        self.errors.append((time.time(), text))

    def _put_aside(self, path: Path, reason: BaseException) -> None:
        try:
            aside = self.quarantine(path)
        except OSError as exc:
            self._error(f"memory file {path} is unusable ({reason}) and could not be put aside ({exc})")
            return
        self._error(f"memory file {path} is unusable ({reason}); kept aside as {aside}")

    def quarantine(self, path: Path) -> Path:
        """Rename an unusable file to ``<name>.corrupt-<n>`` so it is kept and never overwritten."""
        n = 0
        while os.path.lexists(aside := path.with_name(f"{path.name}.corrupt-{n}")):
            n += 1
        os.rename(path, aside)
        return aside

    def _cleanup_temp_files(self) -> int:
        """Delete temp files left by the store's own writes that were killed before their rename."""
        assert self.directory is not None
        count = 0
        for p in self.directory.iterdir():
            if _OWN_TEMP.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
                count += 1
        return count


# ---------------------------------------------------------------- the folder
def _open_store(directory: str | os.PathLike[str]) -> Path:
    """Create and mark the store folder, or check that an existing one is this package's own."""
    d = Path(directory).expanduser().absolute()
    if os.path.lexists(d) and not d.is_dir():
        raise StoreError(f"store_dir {d} is not a folder")
    if not d.exists():
        try:
            d.mkdir(parents=True, mode=0o700)
            os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask
            _write_marker(d)
        except OSError as exc:
            raise StoreError(f"store_dir {d} cannot be created: {exc.strerror or exc}") from None
        return d.resolve()
    d = d.resolve()
    info = d.stat()
    if info.st_uid != os.geteuid():
        raise StoreError(f"store_dir {d} belongs to another user (uid {info.st_uid}); point store_dir at a folder "
                         "of the node's own, e.g. a new path that the node will create")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StoreError(f"store_dir {d} is a shared folder (mode {stat.S_IMODE(info.st_mode):o}): others could "
                         "read or plant memory files; point store_dir at a folder of its own, e.g. "
                         f"{d / 'affective_memory'}, which the node creates with mode 700")
    if not (d / MARKER).is_file():
        foreign = sorted(p.name for p in d.iterdir() if not _looks_like_ours(p.name))
        if foreign:
            raise StoreError(f"store_dir {d} holds files that are not memories of this package "
                             f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); point store_dir "
                             "at a folder of its own")
        try:
            _write_marker(d)
        except OSError as exc:
            raise StoreError(f"store_dir {d} is not writable: {exc.strerror or exc}") from None
    if not os.access(d, os.W_OK | os.X_OK):
        raise StoreError(f"store_dir {d} is not writable")
    return d


def _looks_like_ours(name: str) -> bool:
    return (name.endswith(FILE_SUFFIX) and is_valid_person_id(name[: -len(FILE_SUFFIX)])) \
        or _OWN_TEMP.fullmatch(name) is not None or _OWN_ASIDE.fullmatch(name) is not None


def _write_marker(d: Path) -> None:
    atomic_write_bytes(d / MARKER, json.dumps(MARKER_FORMAT).encode() + b"\n", mode=0o600)


def _read_signature(path: Path, code_dim: int | None, encoder: str | None,
                    expected_id: str | None = None) -> np.ndarray | None:
    """The appearance signature of a person's file, reading only its header and that tensor.

    Same safety as every read: a regular file (no FIFO, no device, no symlink
    out of the store), of plausible size, with a well-formed header whose
    metadata passes every check a full load makes (the arrays are checked
    when the person is recognised and their memory read). A file that holds
    another person than its name (``expected_id``) says is refused here, before
    its signature could give a face that name.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PersonFileError(f"{path}: not a regular file")
        if info.st_size > MAX_FILE_BYTES or info.st_size < 8:
            raise PersonFileError(f"{path}: {info.st_size} bytes, not a memory file")
        (header_len,) = struct.unpack("<Q", os.pread(fd, 8, 0))
        if header_len > MAX_HEADER_BYTES or 8 + header_len > info.st_size:
            raise PersonFileError(f"{path}: corrupt header")
        try:
            header = json.loads(os.pread(fd, header_len, 8).decode("utf-8"))
            meta = header["__metadata__"]
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise PersonFileError(f"{path}: corrupt header") from None
        if not isinstance(meta, dict):
            raise PersonFileError(f"{path}: corrupt header")
        if meta.get("format") != PERSON_FORMAT:
            if meta.get("format") == "affective_memory_ros.gwr":
                return None  # a first-release file: loadable by explicit request, never matched by appearance
            raise PersonFileError(f"{path}: not a person file (format {str(meta.get('format'))[:40]!r})")
        try:
            check_format(meta, PERSON_FORMAT, PERSON_FORMAT_VERSION, "person file")
            holder = check_person_meta(json.loads(meta["person"]), code_dim, encoder)[0]
        except (FileFormatError, ValueError, KeyError, TypeError) as exc:
            raise PersonFileError(f"{path}: {exc}") from None
        if expected_id is not None and holder != expected_id:
            raise PersonFileError(f"{path} holds the memory of {holder!r}, not {expected_id!r}: a copy under "
                                  "another name is never used to recognise anyone")
        entry = header.get("signature")
        if entry is None:
            return None
        try:
            start, end = (int(x) for x in entry["data_offsets"])
            rows, cols = (int(x) for x in entry["shape"])
            ok = entry["dtype"] == "F32" and cols == SIGNATURE_DIM and 1 <= rows <= Gallery.MAX_TEMPLATES \
                and end - start == 4 * rows * cols and start >= 0
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok or 8 + header_len + end > info.st_size:
            raise PersonFileError(f"{path}: corrupt appearance signature")
        sig = np.frombuffer(os.pread(fd, end - start, 8 + header_len + start), "<f4").astype(np.float32)
        try:
            return check_signature(sig.reshape(rows, cols))
        except ValueError as exc:
            raise PersonFileError(f"{path}: {exc}") from None
    finally:
        os.close(fd)
