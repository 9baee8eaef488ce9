"""The memory store: its own folder, paths a request may touch, safe reads of hostile files, no memory lost.

Real files on a real filesystem throughout; failing writes are real too (the
file-size limit of the process, RLIMIT_FSIZE, makes every write of a memory
fail with EFBIG the way a full disk fails with ENOSPC).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import stat
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from affective_memory_ros.modes import MemorySettings, make_memory
from affective_memory_ros.perception.appearance import SIGNATURE_DIM
from affective_memory_ros.person import Person, PersonFileError, person_to_bytes, snapshot
from affective_memory_ros.store import MARKER, PersonStore, StoreError

CODE_DIM = 8


def person(pid: str, rng: np.random.Generator | None = None, steps: int = 60) -> tuple[Person, np.ndarray]:
    """A person with a small, really trained paper-mode memory and a signature."""
    rng = rng or np.random.default_rng(0)
    memory = make_memory(MemorySettings(memory_mode="paper", init_frames=1, edits_per_frame=steps), CODE_DIM)
    memory.seed(rng.normal(size=(steps, CODE_DIM)).astype(np.float32),
                rng.uniform(-1, 1, (steps, 2)).astype(np.float32))
    sig = rng.normal(size=(2, SIGNATURE_DIM)).astype(np.float32)
    sig /= np.linalg.norm(sig, axis=1, keepdims=True)
    return Person(pid, memory, "pk", frames_seen=steps, first_seen=1.0, last_seen=2.0), sig


def open_store(path: Path, **kw: object) -> PersonStore:
    return PersonStore(path, code_dim=CODE_DIM, encoder="pk", **kw)  # type: ignore[arg-type]


@pytest.fixture()
def store(tmp_path: Path) -> PersonStore:
    return open_store(tmp_path / "store")


@contextlib.contextmanager
def failing_writes(limit: int = 64) -> Iterator[None]:
    """Every write beyond ``limit`` bytes fails (EFBIG), as on a full disk. Python ignores SIGXFSZ."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


# ---------------------------------------------------------------- the folder
def test_a_new_store_folder_is_created_private_and_marked(store: PersonStore) -> None:
    assert store.directory is not None
    assert oct(os.stat(store.directory).st_mode & 0o777) == "0o700"
    assert json.loads((store.directory / MARKER).read_text())["format"] == "affective_memory_ros.store"
    assert store.path_for("ydsgt") == store.directory / "ydsgt.safetensors"


def test_a_shared_folder_is_refused_and_left_untouched(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    other = shared / ".tmp-someone-elses-file"
    other.write_bytes(b"keep me")
    with pytest.raises(StoreError, match="shared folder"):
        open_store(shared)
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777, "permissions of a folder the store does not own stay"
    assert other.read_bytes() == b"keep me" and sorted(p.name for p in shared.iterdir()) == [other.name]


def test_a_folder_with_other_files_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "documents"
    folder.mkdir(mode=0o700)
    (folder / "thesis.txt").write_text("mine")
    with pytest.raises(StoreError, match="not memories of this package"):
        open_store(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.txt"]


def test_a_file_path_and_an_uncreatable_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        open_store(tmp_path / "afile")
    with pytest.raises(StoreError, match="cannot be created"):
        open_store(tmp_path / "afile" / "store")


def test_an_old_store_of_memory_files_is_adopted(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir(mode=0o700)
    (old / "ydsgt.safetensors").write_bytes(b"x")
    s = open_store(old)
    assert (old / MARKER).is_file() and s.stored_ids() == {"ydsgt"}


def test_only_the_stores_own_temp_files_are_removed(tmp_path: Path) -> None:
    s = open_store(tmp_path / "store")
    assert s.directory is not None
    own = s.directory / ".tmp-ydsgt.safetensors.ab_c1234"
    own.write_bytes(b"killed mid-write")
    open_store(tmp_path / "store")
    assert not own.exists()
    # A name the store's writes cannot produce makes the folder foreign: refused, and nothing is deleted.
    stranger = s.directory / ".tmp-notes"
    stranger.write_bytes(b"someone else's")
    (s.directory / MARKER).unlink()
    with pytest.raises(StoreError):
        open_store(tmp_path / "store")
    assert stranger.read_bytes() == b"someone else's"


# ---------------------------------------------------------------- paths
@pytest.mark.parametrize("bad_id", ["", "../x", "/etc/passwd", "Ab", "1abc", "a" * 64, "a\x00b", "a b", "a.b"])
def test_bad_person_ids_are_refused(store: PersonStore, bad_id: str) -> None:
    with pytest.raises(StoreError, match="invalid person ID"):
        store.resolve(bad_id, None)


@pytest.mark.parametrize("path", ["../outside.safetensors", "/tmp/elsewhere.safetensors", "sub/../../x.safetensors"])
def test_paths_outside_the_store_are_refused_unless_allowed(store: PersonStore, path: str) -> None:
    with pytest.raises(StoreError, match="outside"):
        store.resolve("ydsgt", path)
    assert store.resolve("ydsgt", path, allow_external=True).is_absolute()


def test_symlink_escape_is_refused(store: PersonStore, tmp_path: Path) -> None:
    assert store.directory is not None
    (store.directory / "link").symlink_to(tmp_path)
    with pytest.raises(StoreError, match="outside"):
        store.resolve("ydsgt", "link/ydsgt.safetensors")


def test_a_person_can_only_name_their_own_file_inside_the_store(store: PersonStore) -> None:
    assert store.directory is not None
    assert store.resolve("ydsgt", "backup/ydsgt.safetensors") == store.directory / "backup" / "ydsgt.safetensors"
    with pytest.raises(StoreError, match="another person"):
        store.resolve("wqnhi", "bbaev.safetensors")
    assert store.resolve("wqnhi", "bbaev.safetensors", write=False).name == "bbaev.safetensors"  # read() checks
    for reserved in (".tmp-x.safetensors", ".hidden/ydsgt.safetensors"):
        with pytest.raises(StoreError, match="reserves"):
            store.resolve("ydsgt", reserved)
    with pytest.raises(StoreError, match="safetensors"):
        store.resolve("ydsgt", "ydsgt.pkl")
    with pytest.raises(StoreError, match="invalid path"):
        store.resolve("ydsgt", "a\x00b.safetensors")


def test_no_store_needs_an_explicit_path() -> None:
    with pytest.raises(StoreError, match="no memory store"):
        PersonStore(None).resolve("ydsgt", None)


# ---------------------------------------------------------------- reading
def test_a_saved_person_reads_back_exactly(store: PersonStore) -> None:
    p, sig = person("ydsgt")
    path = store.write(snapshot(p, sig))
    loaded = store.read(path, "ydsgt")
    assert loaded.person.person_id == "ydsgt" and loaded.person.frames_seen == p.frames_seen
    np.testing.assert_array_equal(loaded.signature, sig)
    a, _ = p.memory.state()
    b, _ = loaded.person.memory.state()
    assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert store.signatures().keys() == {"ydsgt"}
    np.testing.assert_array_equal(store.signatures()["ydsgt"], sig)


def test_a_file_of_another_person_is_refused_unless_imported(store: PersonStore) -> None:
    p, sig = person("hvrak")
    path = store.write(snapshot(p, sig))
    with pytest.raises(StoreError, match="'hvrak', not 'wqnhi'"):
        store.read(path, "wqnhi")
    assert store.read(path, None).person.person_id == "hvrak"


def test_a_copy_under_another_name_never_recognises_anyone(store: PersonStore) -> None:
    """A person's file copied under another ID is put aside when the store is opened: its signature is never
    enrolled, so the person's face cannot be given the copy's name (found by the adversarial run)."""
    import shutil

    p, sig = person("hvrak")
    path = store.write(snapshot(p, sig))
    shutil.copyfile(path, store.path_for("cmpbq"))
    assert store.signatures().keys() == {"hvrak"}
    assert not store.path_for("cmpbq").exists() and any("'hvrak', not 'cmpbq'" in m for _, m in store.errors)
    assert store.read(path, "hvrak").person.person_id == "hvrak", "the original is untouched"


def test_a_fifo_never_blocks_a_read(store: PersonStore) -> None:
    assert store.directory is not None
    fifo = store.directory / "fifoo.safetensors"
    os.mkfifo(fifo)
    done: list[BaseException] = []

    def read() -> None:
        try:
            store.read(fifo, "fifoo")
        except BaseException as exc:
            done.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "reading a FIFO must not block"
    assert isinstance(done[0], PersonFileError) and "not a regular file" in str(done[0])
    assert store.signatures() == {}
    assert (store.directory / "fifoo.safetensors.corrupt-0").exists(), "the FIFO is put aside at start"


def test_a_huge_sparse_file_is_refused_before_reading(store: PersonStore) -> None:
    assert store.directory is not None
    huge = store.directory / "hugee.safetensors"
    with huge.open("wb") as handle:
        handle.truncate(64 << 30)  # 64 GiB, sparse: costs nothing on disk
    with pytest.raises(PersonFileError, match="more than"):
        store.read(huge, "hugee")
    assert store.signatures() == {} and any("hugee" in m for _, m in store.errors)


def _rewrite_person_meta(data: bytes, change: dict[str, object]) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["person"])
    for key, value in change.items():
        target = meta
        *path, last = key.split("/")
        for part in path:
            target = target[part]
        target[last] = value
    header["__metadata__"]["person"] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


@pytest.mark.parametrize(("change", "reason"), [
    ({"memory/gwr.counters": json.dumps({"steps": 2**64 + 5, "labelled_steps": 0, "insertions": 0,
                                          "removals": 0})}, "counters"),
    ({"memory/gwr.config": None}, "corrupt"),
    ({"frames_seen": -1}, "frames_seen"),
    ({"last_seen": "soon"}, "frames_seen"),
    ({"person_id": "../../etc"}, "invalid person ID"),
    ({"mode": "nonsense"}, "unknown memory mode"),
    ({"encoder": "other"}, "encoder"),
    ({"memory/edits_done": 0.5}, "whole edit counts"),
])
def test_hostile_fields_are_refused_and_the_file_kept(store: PersonStore, change: dict[str, object],
                                                     reason: str) -> None:
    assert store.directory is not None
    p, sig = person("ydsgt")
    good = person_to_bytes(p, sig)
    bad = store.directory / "ydsgt.safetensors"
    data = _rewrite_person_meta(good, change)
    bad.write_bytes(data)
    with pytest.raises(PersonFileError, match=reason):
        store.read(bad, "ydsgt")
    assert bad.read_bytes() == data, "a refused file is never modified"


def test_foreign_labels_and_out_of_range_labels_are_refused(store: PersonStore) -> None:
    assert store.directory is not None
    p, sig = person("ydsgt")
    config = json.loads(p.memory.state()[1]["gwr.config"])
    config["label_names"] = ["x", "y"]
    bad = store.directory / "ydsgt.safetensors"
    bad.write_bytes(_rewrite_person_meta(person_to_bytes(p, sig), {"memory/gwr.config": json.dumps(config)}))
    with pytest.raises(PersonFileError, match="labels"):
        store.read(bad, "ydsgt")
    p.memory.net._labels[0] = (5.0, 3e38)  # type: ignore[attr-defined]
    bad.write_bytes(person_to_bytes(p, sig))
    with pytest.raises(PersonFileError, match=r"outside \[-1, 1\]"):
        store.read(bad, "ydsgt")


# ---------------------------------------------------------------- no memory lost
def test_an_evicted_person_whose_save_fails_stays_in_ram_and_is_saved_later(tmp_path: Path) -> None:
    s = open_store(tmp_path / "store", retry_period=0.0)
    p, sig = person("ydsgt")
    with failing_writes():
        s.keep(p, sig)
    assert s.unsaved == ["ydsgt"] and s.errors and "stays in RAM" in s.errors[-1][1]
    assert not s.has("ydsgt")
    s.retry()  # the disk has room again
    assert s.unsaved == [] and s.read(s.path_for("ydsgt"), "ydsgt").person.frames_seen == p.frames_seen


def test_a_kept_person_who_returns_comes_back_whole(tmp_path: Path) -> None:
    s = open_store(tmp_path / "store")
    p, sig = person("ydsgt")
    with failing_writes():
        s.keep(p, sig)
    back = s.reclaim("ydsgt")
    assert back is not None and back[0] is p and s.unsaved == []


def test_save_all_goes_on_after_a_failure_and_names_it(tmp_path: Path) -> None:
    s = open_store(tmp_path / "store")
    small, _ = person("small", steps=3)
    big, sig = person("bigger", steps=200)
    with failing_writes(limit=person_to_bytes(small, sig).__len__() + 100):
        report = s.save_all([snapshot(big, sig), snapshot(small, sig)])
    assert report.saved == ["small"] and list(report.failed) == ["bigger"]
    assert s.has("small") and not s.has("bigger")


def test_reset_deletes_the_file_and_refuses_late_writes(store: PersonStore) -> None:
    p, sig = person("ydsgt")
    snap = snapshot(p, sig)  # e.g. an autosave copy taken just before the reset
    store.write(snap)
    assert store.forget("ydsgt") and not store.has("ydsgt")
    with pytest.raises(StoreError, match="reset"):
        store.write(snap)
    assert store.save_all([snap]).saved == [] and not store.has("ydsgt")
    assert not store.forget("ydsgt")
