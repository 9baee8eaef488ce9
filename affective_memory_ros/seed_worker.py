"""The background worker that renders a newcomer's seeding edits, off the frame path.

Memories seeded from an encoder's edits (P-AffMem) need G/E passes over each
newcomer's face. On CPU they run in **a process of their own**, at a low
scheduling priority, with one math thread:

* A thread at the lowest priority (the first design) still shares the node's
  GIL. When the OS preempted it while it held the GIL, the node's frame and
  executor threads waited for a thread the OS would not run: a priority
  inversion. A quiet 2-core machine measured p99 541 ms (PK / personal) with
  newcomers through the node, while the same frames replayed in one process
  without ROS gave 39 ms (docs/pipeline.md).
* A process has its own interpreter, so the kernel's priorities are the only
  ones that count. Its niceness is ``NICENESS`` (10, a CFS weight of about a
  tenth of the frame path's), not 19: when the frame path keeps every core
  busy, seeding still advances instead of starving (at 19 a busy pipeline took
  30× longer to seed one person).

The worker is ``python -m affective_memory_ros.seed_worker``, started with
:mod:`subprocess` (not :mod:`multiprocessing`, which re-runs the caller's main
script in the child and pickles its messages). It builds its own copy of the
encoder from the same settings, ignores SIGINT (a Ctrl-C in a terminal reaches
the whole process group; the node shuts the worker down itself) and exits when
its parent goes (its stdin closes). Requests and replies are raw little-endian
float32 arrays behind fixed headers on its stdin and stdout (the worker moves
its own stdout to stderr, so nothing a library prints can corrupt them). It
costs one more copy of the model in RAM and a few seconds of start-up, which
run before the first newcomer is seen. A worker that dies (out of memory,
killed) fails the batch it held, and is started again at the next one; the
memory asks for those edits again.

On CUDA the edits are GPU kernels that release the GIL, so a thread at the
lowest priority does the work and the model is not held twice in GPU memory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO

import numpy as np

from .encoders.base import FaceEncoder

#: Niceness of the worker process (see the module's docstring).
NICENESS = 10
_HEADER = struct.Struct("<III")  # request: n, code dimension, 0; reply: status, n, dimension (or message bytes)
_OK, _FAILED = 0, 1


def _lowest_priority() -> None:
    """The calling thread (and the math threads it starts, which inherit it on Linux) runs at the lowest
    scheduling priority, so seeding yields the cores to the frame path."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def _leave_a_core() -> int | None:
    """The frame path's math threads leave one core to the worker process.

    PyTorch's CPU operators split each layer across its threads and wait for the
    slowest at the layer's end. With as many threads as cores, one of them shares
    a core with the busy worker, and every layer waits for the scheduler to give
    it back: measured in-process on 2 cores with the PK and newcomers, frame time
    max 114-219 ms with 2 threads against 31 ms with 1 (p50 15-16 ms both).
    """
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    before = torch.get_num_threads()
    if before > max(1, cores - 1):
        torch.set_num_threads(max(1, cores - 1))
        return before  # restored by SeedWorker.close
    return None


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size) if size else b""
    if len(data) != size:
        raise EOFError(f"the seeding worker's pipe closed ({len(data)} of {size} bytes)")
    return data


class SeedWorker:
    """Runs ``encoder.edit_and_encode`` in the background: in a worker process on CPU, a thread on CUDA.

    ``weights`` is the file ``encoder`` was built from (None: its shipped default),
    so that the worker process builds the same encoder. One batch is in flight at a
    time (the pipeline asks for no more).
    """

    def __init__(self, encoder: FaceEncoder, weights: str | None) -> None:
        self.encoder = encoder
        self.in_process = encoder.device.type == "cpu"
        self._command = [sys.executable, "-m", __name__, "--encoder", encoder.name,
                         "--precision", encoder.precision, *(["--weights", weights] if weights else [])]
        self._proc: subprocess.Popen[bytes] | None = None
        self._greeted: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._closed = False
        # The pool's thread only waits on the pipe in process mode; on CUDA it does the edits itself.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="affect-seed",
                                        initializer=None if self.in_process else _lowest_priority)
        self._left_a_core = False
        self._threads_before: int | None = None  # the frame path's math threads before it left a core
        if self.in_process:
            self._pool.submit(self._started)  # load the worker's model now, not at the first newcomer

    def submit(self, codes: np.ndarray, targets: np.ndarray) -> Future[np.ndarray]:
        """Codes of the faces ``codes[i]`` edited to ``targets[i]``, when ready."""
        if self.in_process and not self._left_a_core:  # from the first batch on; a node without newcomers keeps all
            self._threads_before = _leave_a_core()
            self._left_a_core = True
        work = self._edit_in_worker if self.in_process else self.encoder.edit_and_encode
        return self._pool.submit(work, np.ascontiguousarray(codes, "<f4"), np.ascontiguousarray(targets, "<f4"))

    def _started(self) -> subprocess.Popen[bytes]:
        """The running worker process, started (and its model loaded) if there is none. Runs on the pool's
        one thread only; the lock keeps :meth:`close` from missing a process started meanwhile."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the seeding worker is closed")
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            proc = self._proc
        if self._greeted is not proc:  # wait for the worker's hello: its model is loaded
            try:
                status, _, dim = _HEADER.unpack(_read_exact(proc.stdout, _HEADER.size))  # type: ignore[arg-type]
                if status != _OK or dim != self.encoder.code_dim:
                    raise RuntimeError(f"the seeding worker built a different encoder (codes of {dim}, "
                                       f"not {self.encoder.code_dim})")
            except BaseException:
                self._stop()  # never left half-greeted: the next batch starts a new worker and reads its hello
                raise
            self._greeted = proc
        return proc

    def _edit_in_worker(self, codes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        try:
            proc = self._started()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(_HEADER.pack(len(codes), codes.shape[1], 0) + codes.tobytes() + targets.tobytes())
            proc.stdin.flush()
            status, n, size = _HEADER.unpack(_read_exact(proc.stdout, _HEADER.size))
            if status == _FAILED:
                raise RuntimeError(f"seeding worker: {_read_exact(proc.stdout, size).decode(errors='replace')}")
            return np.frombuffer(_read_exact(proc.stdout, n * size * 4), "<f4").reshape(n, size).copy()
        except (OSError, EOFError) as exc:  # the worker died: the next batch starts a new one
            self._stop()
            raise RuntimeError(f"the seeding worker stopped ({exc}); it restarts at the next batch") from exc

    def _stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()  # type: ignore[union-attr]

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._stop()
        if self._threads_before is not None:  # the worker is gone: the frame path may use every core again
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None


def _serve(argv: list[str] | None = None) -> int:
    """The worker process: read requests on stdin, answer on stdout, until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, 0, NICENESS)
    requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the replies
    import torch

    from .encoders import make_encoder

    torch.set_num_threads(1)
    encoder = make_encoder(args.encoder, args.weights, "cpu", args.precision)
    replies.write(_HEADER.pack(_OK, 0, encoder.code_dim))
    replies.flush()
    try:
        while True:
            head = requests.read(_HEADER.size)
            if len(head) < _HEADER.size:
                return 0  # the parent closed the pipe (or went)
            n, dim, _ = _HEADER.unpack(head)
            codes = np.frombuffer(_read_exact(requests, n * dim * 4), "<f4").reshape(n, dim).copy()
            targets = np.frombuffer(_read_exact(requests, n * 2 * 4), "<f4").reshape(n, 2).copy()
            try:
                out = np.ascontiguousarray(encoder.edit_and_encode(codes, targets), "<f4")
                reply = _HEADER.pack(_OK, len(out), out.shape[1] if out.ndim == 2 else 0) + out.tobytes()
            except Exception as exc:  # a bad request fails that batch, not the worker
                message = f"{type(exc).__name__}: {exc}".encode()
                reply = _HEADER.pack(_FAILED, 0, len(message)) + message
            replies.write(reply)
            replies.flush()
    except (BrokenPipeError, EOFError):
        return 0  # the parent went mid-request: nothing to answer, nothing to report


if __name__ == "__main__":
    sys.exit(_serve())
