"""Where memories may be written: person-ID and path checks, quarantine of bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from affective_memory_ros.store import MemoryStore, StoreError


@pytest.fixture()
def store(tmp_path: Path) -> MemoryStore:
    return MemoryStore(tmp_path / "store")


def test_default_path_and_permissions(store: MemoryStore) -> None:
    assert store.directory is not None
    assert store.path_for("ydsgt") == store.directory / "ydsgt.safetensors"
    assert oct(os.stat(store.directory).st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("bad_id", ["", "../x", "/etc/passwd", "Ab", "1abc", "a" * 64, "a\x00b", "a b", "a.b"])
def test_bad_person_ids_are_refused(store: MemoryStore, bad_id: str) -> None:
    with pytest.raises(StoreError, match="invalid person ID"):
        store.resolve(bad_id, None)


@pytest.mark.parametrize("path", ["../outside.safetensors", "/tmp/elsewhere.safetensors", "sub/../../x.safetensors"])
def test_paths_outside_the_store_are_refused_unless_allowed(store: MemoryStore, path: str) -> None:
    with pytest.raises(StoreError, match="outside"):
        store.resolve("ydsgt", path)
    assert store.resolve("ydsgt", path, allow_external=True).is_absolute()


def test_symlink_escape_is_refused(store: MemoryStore, tmp_path: Path) -> None:
    assert store.directory is not None
    (store.directory / "link").symlink_to(tmp_path)
    with pytest.raises(StoreError, match="outside"):
        store.resolve("ydsgt", "link/ydsgt.safetensors")


def test_inside_paths_and_suffix(store: MemoryStore) -> None:
    assert store.directory is not None
    assert store.resolve("ydsgt", "backup/ydsgt.safetensors") == store.directory / "backup" / "ydsgt.safetensors"
    with pytest.raises(StoreError, match="safetensors"):
        store.resolve("ydsgt", "ydsgt.pkl")
    with pytest.raises(StoreError, match="invalid path"):
        store.resolve("ydsgt", "a\x00b.safetensors")


def test_no_store_needs_an_explicit_path() -> None:
    with pytest.raises(StoreError, match="no memory store"):
        MemoryStore(None).resolve("ydsgt", None)


def test_saved_lists_valid_names_and_quarantine_keeps_files(store: MemoryStore) -> None:
    assert store.directory is not None
    for name in ("ydsgt.safetensors", "BAD.safetensors", "notes.txt", "abc.safetensors"):
        (store.directory / name).write_bytes(b"x")
    assert [pid for pid, _ in store.saved()] == ["abc", "ydsgt"]
    first = store.quarantine(store.directory / "abc.safetensors")
    (store.directory / "abc.safetensors").write_bytes(b"y")
    second = store.quarantine(store.directory / "abc.safetensors")
    assert first.name == "abc.safetensors.corrupt-0" and second.name == "abc.safetensors.corrupt-1"
    assert first.read_bytes() == b"x" and second.read_bytes() == b"y"
    assert [pid for pid, _ in store.saved()] == ["ydsgt"]
