"""The person: who a face is, and everything kept about them.

* **Person IDs** follow one rule, ``[a-z][a-z0-9_]{0,62}`` (safe as a file name,
  REP-155 style). New IDs are drawn from the operating system's random source,
  10 characters long (about 2.6e15 possibilities), and checked against every
  ID in RAM and in the store, so a new face never gets an ID that belongs, or
  belonged in an earlier run, to somebody else.
* **Appearance signatures** tell whether a face is a person already known, in
  RAM or in the store (:class:`Gallery`). A stored memory is only ever given to
  a face whose signature matches that person's at ``reid_threshold``, a
  threshold measured on real people (docs/perception.md): a stranger never
  inherits someone's memory, and nothing is merged across people.
* **Person** bundles one person's memory (in the configured mode) with its
  bookkeeping, and a person's file holds all of it: the memory, the signature,
  and the person's ID, checked on load (:func:`person_to_bytes`,
  :func:`person_from_bytes`).
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from .file_format import FileFormatError, check_format, read_metadata
from .memory.persistence import FORMAT_NAME as LEGACY_FORMAT
from .memory.persistence import MemoryFileError, memory_from_bytes
from .modes import MemoryStateError, PersonMemory, mode_class
from .perception.appearance import check_signature

PERSON_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: Length of new person IDs: a letter, then letters and digits.
NEW_ID_LENGTH = 10

PERSON_FORMAT = "affective_memory_ros.person"
PERSON_FORMAT_VERSION = 1


class PersonIdError(ValueError):
    """A person ID breaks the ID rule (and could be a path)."""


class PersonFileError(FileFormatError):
    """A person's file is corrupt, foreign, from a newer version, or not this person's. Never modified."""


def is_valid_person_id(person_id: object) -> bool:
    """True for IDs this package creates or accepts: ``[a-z][a-z0-9_]{0,62}``."""
    return isinstance(person_id, str) and PERSON_ID_PATTERN.fullmatch(person_id) is not None


def check_person_id(person_id: object) -> str:
    if not is_valid_person_id(person_id):
        shown = repr(person_id)[:80]
        raise PersonIdError(f"invalid person ID {shown}: expected a lowercase letter, then up to 62 of [a-z0-9_]")
    return person_id  # type: ignore[return-value]


def new_person_id(taken: Callable[[str], bool]) -> str:
    """A fresh, random person ID for which ``taken`` is False (IDs in RAM and in the store)."""
    letters, alnum = "abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyz0123456789"
    while True:
        pid = secrets.choice(letters) + "".join(secrets.choice(alnum) for _ in range(NEW_ID_LENGTH - 1))
        if not taken(pid):
            return pid


# ------------------------------------------------------------------ the person
@dataclass
class Person:
    """One person's memory and bookkeeping. ``version`` counts changes, so the store knows what is saved."""

    person_id: str
    memory: PersonMemory
    encoder: str
    frames_seen: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    version: int = 0

    def touch(self, timestamp: float) -> None:
        self.frames_seen += 1
        self.last_seen = timestamp
        self.version += 1


@dataclass(frozen=True)
class PersonSnapshot:
    """An immutable copy of a person, taken under the pipeline's lock and written outside it."""

    person_id: str
    version: int
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def to_bytes(self) -> bytes:
        metadata = {"format": PERSON_FORMAT, "format_version": str(PERSON_FORMAT_VERSION),
                    "person": json.dumps(self.meta, sort_keys=True)}
        return st_save(self.arrays, metadata=metadata)


def snapshot(person: Person, signature: np.ndarray | None) -> PersonSnapshot:
    """Copy everything a person's file holds (call under the lock that guards ``person``)."""
    arrays, memory_meta = person.memory.state()
    out = {f"memory.{k}": v for k, v in arrays.items()}
    if signature is not None:
        out["signature"] = np.asarray(signature, np.float32).copy()
    meta = {"person_id": person.person_id, "mode": person.memory.mode, "encoder": person.encoder,
            "frames_seen": person.frames_seen, "first_seen": person.first_seen, "last_seen": person.last_seen,
            "saved_at": time.time(), "memory": memory_meta}
    return PersonSnapshot(person.person_id, person.version, meta, out)


def person_to_bytes(person: Person, signature: np.ndarray | None) -> bytes:
    return snapshot(person, signature).to_bytes()


@dataclass(frozen=True)
class LoadedPerson:
    person: Person
    signature: np.ndarray | None
    #: True for a file of the first release (a bare memory, no signature).
    legacy: bool = False


def person_from_bytes(data: bytes, code_dim: int | None, encoder: str | None) -> LoadedPerson:
    """Rebuild a person from their file's bytes, checking every field; PersonFileError if not valid.

    ``code_dim`` and ``encoder`` are the running encoder's: a memory learned on
    another encoder's codes is refused (None: any encoder, for inspecting a file). Files of the first release (bare
    ``affective_memory_ros.gwr`` memories) load as ``paper`` memories without a
    signature, so they are never matched to a face by appearance.
    """
    try:
        metadata = read_metadata(data, "person file")
    except FileFormatError as exc:
        raise PersonFileError(str(exc)) from None
    if metadata.get("format") == LEGACY_FORMAT:
        return _legacy_person(data, code_dim, encoder)
    try:
        check_format(metadata, PERSON_FORMAT, PERSON_FORMAT_VERSION, "person file")
        meta = json.loads(metadata["person"])
        arrays = st_load(data)
    except FileFormatError as exc:
        raise PersonFileError(str(exc)) from None
    except Exception as exc:  # JSON, KeyError, safetensors' own errors
        raise PersonFileError(f"corrupt person file: {type(exc).__name__}: {exc}") from None
    pid, frames, times, cls = check_person_meta(meta, code_dim, encoder)
    memory_meta = meta["memory"]
    memory_arrays = {k.removeprefix("memory."): v for k, v in arrays.items() if k.startswith("memory.")}
    unexpected = set(arrays) - {f"memory.{k}" for k in memory_arrays} - {"signature"}
    if unexpected:
        raise PersonFileError(f"unexpected arrays {sorted(unexpected)}")
    try:
        memory = cls.from_state(memory_arrays, memory_meta, code_dim)
    except (MemoryStateError, MemoryFileError, ValueError, TypeError, KeyError) as exc:
        raise PersonFileError(f"corrupt memory: {exc}") from None
    signature = arrays.get("signature")
    if signature is not None:
        try:
            check_signature(signature)
        except ValueError as exc:
            raise PersonFileError(str(exc)) from None
    person = Person(pid, memory, str(meta["encoder"]), frames, times[0], times[1])
    return LoadedPerson(person, signature)


def check_person_meta(meta: object, code_dim: int | None, encoder: str | None
                      ) -> tuple[str, int, tuple[float, float], type]:
    """Check a person file's metadata (no arrays): ID, encoder, counts, times, and the memory's own metadata.

    Returns (person_id, frames_seen, (first_seen, last_seen), memory class); raises PersonFileError.
    """
    if not isinstance(meta, dict):
        raise PersonFileError("corrupt person metadata")
    pid = meta.get("person_id")
    if not is_valid_person_id(pid):
        raise PersonFileError(f"invalid person ID {str(pid)[:80]!r} in the file")
    if encoder is not None and meta.get("encoder") != encoder:
        raise PersonFileError(f"memory learned on the {str(meta.get('encoder'))[:40]!r} encoder's codes; "
                              f"this node runs {encoder!r}")
    frames = meta.get("frames_seen")
    times = [meta.get(k) for k in ("first_seen", "last_seen")]
    if not (type(frames) is int and 0 <= frames < 2**53
            and all(isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) for t in times)):
        raise PersonFileError("corrupt person metadata (frames_seen, first_seen, last_seen)")
    try:
        cls = mode_class(str(meta.get("mode")))
    except ValueError as exc:
        raise PersonFileError(str(exc)) from None
    memory_meta = meta.get("memory")
    if not isinstance(memory_meta, dict):
        raise PersonFileError("corrupt memory metadata")
    try:
        cls.check_meta(memory_meta, code_dim)
    except (MemoryStateError, ValueError, TypeError, KeyError) as exc:
        raise PersonFileError(f"corrupt memory: {exc}") from None
    return pid, frames, (float(times[0]), float(times[1])), cls


def _legacy_person(data: bytes, code_dim: int | None, encoder: str | None) -> LoadedPerson:
    from .modes.paper import PaperMemory, check_av_gwr

    if encoder not in (None, "pk"):
        raise PersonFileError("a first-release memory file holds PK codes; this node runs another encoder")
    try:
        net, extra = memory_from_bytes(data)
        check_av_gwr(net, code_dim)
    except (MemoryFileError, MemoryStateError) as exc:
        raise PersonFileError(str(exc)) from None
    pid = extra.get("person_id", "")
    try:
        frames = int(extra.get("frames_seen", "0"))
        last = float(extra.get("last_seen", "0"))
    except ValueError:
        raise PersonFileError("corrupt person metadata") from None
    if not (is_valid_person_id(pid) and 0 <= frames < 2**53 and math.isfinite(last)):
        raise PersonFileError("corrupt person metadata")
    # First-release files were only written after seeding, or mid-seeding; treat them as seeded.
    memory = PaperMemory(net, 0, 0)
    return LoadedPerson(Person(pid, memory, "pk", frames, last, last), None, legacy=True)
