"""Where person memories live on disk, and which paths a request may touch.

A memory file is ``<store>/<person_id>.safetensors``. Person IDs are checked
against the package's ID rule before any path is built from them, and an
explicit path must resolve (symlinks included) inside the store unless the
caller allows external paths. Nothing here ever writes outside the resolved path.
"""

from __future__ import annotations

import os
from pathlib import Path

from .atomic_io import TEMP_PREFIX
from .memory.persistence import FILE_SUFFIX
from .perception.tracking import is_valid_person_id


class StoreError(ValueError):
    """A request names an invalid person ID or a path the store refuses."""


class MemoryStore:
    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.directory = Path(directory).expanduser().resolve() if directory else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)  # people's memories: owner only
            self.removed_temp_files = self.cleanup_temp_files()

    def cleanup_temp_files(self) -> int:
        """Delete temp files left by writes that were killed before their rename.

        Safe because the store has one writer (this node): a temp file that exists
        when the store opens belongs to a write that can never finish.
        """
        if self.directory is None:
            return 0
        stale = list(self.directory.glob(f"{TEMP_PREFIX}*"))
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    def path_for(self, person_id: str) -> Path:
        check_person_id(person_id)
        if self.directory is None:
            raise StoreError("no memory store configured (parameter store_dir); give an explicit path")
        return self.directory / f"{person_id}{FILE_SUFFIX}"

    def resolve(self, person_id: str, path: str | None, allow_external: bool = False) -> Path:
        """The file for a save/load request: the store's default, or a checked explicit path."""
        check_person_id(person_id)
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
        return resolved

    def quarantine(self, path: Path) -> Path:
        """Rename an unreadable file to ``<name>.corrupt-<n>`` so it is kept and never overwritten."""
        n = 0
        while (aside := path.with_name(f"{path.name}.corrupt-{n}")).exists():
            n += 1
        path.rename(aside)
        return aside

    def saved(self) -> list[tuple[str, Path]]:
        """(person_id, file) for every valid memory file in the store."""
        if self.directory is None:
            return []
        out = []
        for p in sorted(self.directory.glob(f"*{FILE_SUFFIX}")):
            pid = p.name[: -len(FILE_SUFFIX)]
            if is_valid_person_id(pid) and p.is_file():
                out.append((pid, p))
        return out


def check_person_id(person_id: object) -> None:
    if not is_valid_person_id(person_id):
        shown = repr(person_id)[:80]
        raise StoreError(f"invalid person ID {shown}: expected a lowercase letter, then up to 62 of [a-z0-9_]")
