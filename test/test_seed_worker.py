"""The seeding worker process (real PK weights): same edits as in-process, survives bad requests and its own
death, leaves nothing running when closed."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from affective_memory_ros.encoders import make_encoder
from affective_memory_ros.seed_worker import SeedWorker


@pytest.fixture(scope="module")
def encoder():  # type: ignore[no-untyped-def]
    return make_encoder("pk", None, "cpu")


def _batch(encoder, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, encoder.code_dim)).astype(np.float32),
            rng.uniform(-1, 1, size=(n, 2)).astype(np.float32))


def test_the_worker_process_edits_like_the_encoder_and_restarts_after_dying(encoder) -> None:  # type: ignore[no-untyped-def]
    import torch

    threads = torch.get_num_threads()
    worker = SeedWorker(encoder, None)
    assert worker.in_process, "on the CPU the edits run in a process of their own"
    try:
        codes, targets = _batch(encoder, 24)
        edited = worker.submit(codes, targets).result(timeout=120)
        np.testing.assert_allclose(edited, encoder.edit_and_encode(codes, targets), atol=1e-4)
        assert worker.submit(codes[:0], targets[:0]).result(timeout=60).shape == (0, encoder.code_dim)

        with pytest.raises(RuntimeError, match=r"seeding worker: .*shape"):  # a bad batch fails, not the worker
            worker.submit(np.zeros((3, 5), np.float32), np.zeros((3, 2), np.float32)).result(timeout=60)
        first = worker._proc
        assert first is not None and first.poll() is None
        os.kill(first.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches it too; the node stops it itself
        assert worker.submit(codes, targets).result(timeout=60).shape == edited.shape
        assert worker._proc is first and first.poll() is None, "SIGINT is ignored by the worker"

        first.kill()
        first.wait()
        again = worker.submit(codes, targets).result(timeout=120)  # a new worker process takes over
        np.testing.assert_allclose(again, edited, atol=1e-4)
        assert worker._proc is not None and worker._proc is not first
    finally:
        last = worker._proc
        worker.close()
    assert last is not None
    deadline = time.monotonic() + 10
    while last.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.poll() is not None, "closing stops the worker process"
    assert torch.get_num_threads() == threads, "and gives the frame path back the core it left the worker"
    with pytest.raises(RuntimeError):
        worker.submit(codes, targets).result(timeout=10)


def test_a_worker_dying_mid_batch_fails_that_batch_with_a_clear_error(encoder) -> None:  # type: ignore[no-untyped-def]
    worker = SeedWorker(encoder, None)
    try:
        codes, targets = _batch(encoder, 8)
        worker.submit(codes, targets).result(timeout=120)
        proc = worker._proc
        assert proc is not None
        big_codes, big_targets = _batch(encoder, 4096, seed=1)
        future = worker.submit(big_codes, big_targets)  # long enough to be killed while it works
        time.sleep(0.5)
        proc.kill()
        with pytest.raises(RuntimeError, match="seeding worker stopped"):
            future.result(timeout=120)
        assert worker.submit(codes, targets).result(timeout=120).shape == (8, encoder.code_dim)
    finally:
        worker.close()
