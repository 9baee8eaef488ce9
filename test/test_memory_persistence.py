"""Saving and loading one affective memory: exact round trips, and refusal of bad files."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as st_save

from affective_memory_ros.atomic_io import TEMP_PREFIX
from affective_memory_ros.memory import (
    FORMAT_VERSION,
    GrowingWhenRequired,
    GWRConfig,
    MemoryFileError,
    load_memory,
    save_memory,
)
from affective_memory_ros.memory.persistence import memory_to_bytes


@pytest.fixture()
def trained() -> GrowingWhenRequired:
    rng = np.random.default_rng(7)
    net = GrowingWhenRequired(GWRConfig(dim=8, distance_scale=0.5, habituation_threshold=0.5, max_age=30))
    net.learn_batch(rng.normal(size=(400, 8)).astype(np.float32), rng.uniform(-1, 1, (400, 2)).astype(np.float32))
    net.learn_batch(rng.normal(size=(100, 8)).astype(np.float32))
    assert len(net) > 10 and net.num_edges > 10
    return net


def test_round_trip_is_exact(trained: GrowingWhenRequired, tmp_path: Path) -> None:
    path = save_memory(trained, tmp_path / "p_anna.safetensors", extra={"person_id": "p_anna"})
    loaded, extra = load_memory(path)
    assert extra == {"person_id": "p_anna"}
    assert loaded.config == trained.config and loaded.counters() == trained.counters()
    for key, value in trained.state_arrays().items():
        assert value.tobytes() == loaded.state_arrays()[key].tobytes(), key
    # ...and it goes on learning exactly as the original would.
    xs = np.random.default_rng(8).normal(size=(50, 8)).astype(np.float32)
    trained.learn_batch(xs)
    loaded.learn_batch(xs)
    for key, value in trained.state_arrays().items():
        assert value.tobytes() == loaded.state_arrays()[key].tobytes(), key
    assert trained.recall(xs[0]) .neuron == loaded.recall(xs[0]).neuron


def test_save_is_atomic_and_leaves_no_temp_files(trained: GrowingWhenRequired, tmp_path: Path) -> None:
    target = tmp_path / "store" / "p_anna.safetensors"
    save_memory(trained, target)
    first = target.read_bytes()
    trained.learn(np.ones(8, np.float32) * 5)
    save_memory(trained, target)
    assert target.read_bytes() != first
    assert [p.name for p in target.parent.iterdir()] == ["p_anna.safetensors"]
    assert not any(p.name.startswith(TEMP_PREFIX) for p in target.parent.iterdir())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _rewrite_metadata(data: bytes, **changes: str) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"].update(changes)
    raw = json.dumps(header).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def _bad_files(good: bytes, trained: GrowingWhenRequired) -> dict[str, bytes]:
    arrays = trained.state_arrays()
    asym = dict(arrays)
    asym["neighbors"] = arrays["neighbors"].copy()
    row = int(np.flatnonzero((asym["neighbors"] >= 0).any(axis=1))[0])
    asym["neighbors"][row, np.flatnonzero(asym["neighbors"][row] >= 0)[0]] = -1
    nan = dict(arrays)
    nan["weights"] = arrays["weights"].copy()
    nan["weights"][0, 0] = np.nan
    meta = {"format": "affective_memory_ros.gwr", "format_version": "1", "config": trained.config.to_json(),
            "counters": json.dumps(trained.counters()), "extra": "{}"}
    return {
        "empty": b"",
        "truncated header": good[:5],
        "truncated payload": good[: len(good) - 17],
        "corrupt header": good[:8] + b"\xff" * 20 + good[28:],
        "random bytes": os.urandom(len(good)),
        "foreign safetensors": st_save({"w": np.zeros(3, np.float32)}, metadata={"format": "pt"}),
        "no metadata": st_save({"w": np.zeros(3, np.float32)}),
        "future version": _rewrite_metadata(good, format_version=str(FORMAT_VERSION + 1)),
        "bad config": _rewrite_metadata(good, config='{"dim": -3}'),
        "asymmetric edges": st_save(asym, metadata=meta),
        "nan weights": st_save(nan, metadata=meta),
        "missing array": st_save({k: v for k, v in arrays.items() if k != "labels"}, metadata=meta),
    }


@pytest.mark.parametrize("kind", ["empty", "truncated header", "truncated payload", "corrupt header", "random bytes",
                                  "foreign safetensors", "no metadata", "future version", "bad config",
                                  "asymmetric edges", "nan weights", "missing array"])
def test_bad_files_are_refused_and_left_alone(kind: str, trained: GrowingWhenRequired, tmp_path: Path) -> None:
    data = _bad_files(memory_to_bytes(trained), trained)[kind]
    path = _write(tmp_path / "bad.safetensors", data)
    with pytest.raises(MemoryFileError, match=r"bad\.safetensors") as err:
        load_memory(path)
    assert str(err.value).strip()
    if kind == "future version":
        assert "newer" in str(err.value)
    assert path.read_bytes() == data, "a refused file must not be modified"


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_memory(tmp_path / "nobody.safetensors")
