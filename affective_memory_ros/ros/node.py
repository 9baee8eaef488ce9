"""The affective memory ROS 2 node: a thin rclpy adapter over :class:`AffectPipeline` and :class:`PersonStore`.

Subscribes to a camera image topic (SensorDataQoS), always processes the newest
frame on a worker thread and drops stale ones, and publishes one
``ArousalValence`` per visible person per processed frame, the memory state at
a fixed rate, and ``/diagnostics``. Services reset, save and load a person's
memory. Everything about files (what is saved when, retries, quarantine) is
the store's policy, shared with ``affective-memory run``; file reads and
writes never happen while the frame lock is held. Run it with
``ros2 launch affective_memory_ros robot.launch.py``, ``ros2 run
affective_memory_ros affective_memory_node``, or the installed
``lib/affective_memory_ros/affective_memory_node --ros-args --params-file
config/affective_memory.yaml``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image

from affective_memory_ros.msg import ArousalValence, MemoryState, PersonMemory
from affective_memory_ros.srv import LoadPerson, ResetPerson, SavePerson

from ..image_encoding import ImageEncodingError, fill_image
from ..person import PersonFileError
from ..pipeline import AffectPipeline
from ..store import PersonStore, StoreError
from .conversion import choose_converter
from .parameters import declare_parameters, read_configs

#: Latencies outside [0, this] seconds (stamps from another clock, replayed bags) are counted, not averaged.
MAX_PLAUSIBLE_LATENCY = 60.0
#: How long a service or shutdown waits for the frame lock or a file write before giving up with a message.
LOCK_TIMEOUT = 5.0
WRITE_TIMEOUT = 30.0


class AffectiveMemoryNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("affective_memory", **kwargs)
        declare_parameters(self)
        self.cfg, pipeline_cfg, memory_cfg, store_cfg = read_configs(self)
        # The store folder is checked before any model is loaded: a bad store_dir fails in a second.
        self.store = PersonStore(store_cfg.store_dir or None, background=True)
        self.allow_external_paths = store_cfg.allow_external_paths
        self.pipeline = AffectPipeline(pipeline_cfg, memory_cfg, self.store, background=True,
                                       load_from_store=store_cfg.load_on_start)
        self._to_rgb, converter = choose_converter()
        c = self.cfg

        self.av_pub = self.create_publisher(ArousalValence, c.av_topic, 10)
        self.state_pub = self.create_publisher(MemoryState, c.memory_state_topic, QoSProfile(depth=1))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.debug_pub = self.create_publisher(Image, c.debug_image_topic, 1) if c.publish_debug_image else None
        self.create_subscription(Image, c.image_topic, self._on_image, qos_profile_sensor_data)
        self.create_service(ResetPerson, "/affect/reset_person", self._reset)
        self.create_service(SavePerson, "/affect/save_person", self._save)
        self.create_service(LoadPerson, "/affect/load_person", self._load)
        self.create_timer(1.0 / c.memory_state_rate, self._publish_state)
        self.create_timer(1.0, self._publish_diagnostics)
        if store_cfg.autosave_period > 0 and self.store.enabled:
            self.create_timer(store_cfg.autosave_period, self._autosave)

        # Newest-frame handoff: the subscription overwrites, the worker takes.
        self._latest: Image | None = None
        self._cv = threading.Condition()
        self._lock = threading.Lock()  # guards the pipeline between worker, services and timers
        self._running = True
        self._received = self._processed = self._dropped = self._stamps_off = 0
        self._received_times: deque[float] = deque(maxlen=600)  # monotonic arrival times
        self._processed_times: deque[float] = deque(maxlen=600)
        self._latencies: deque[float] = deque(maxlen=200)  # image stamp -> published, seconds
        self._warned: dict[str, float] = {}
        self._errors_logged = 0.0  # time of the newest store/pipeline error already logged
        self._log_new_errors()  # files put aside at start
        self._worker = threading.Thread(target=self._work, name="affect-worker", daemon=True)
        self._worker.start()
        if self.store.enabled:
            self.get_logger().info(
                f"memory store {self.store.directory}: {len(self.pipeline.gallery)} known persons"
                f"{'' if store_cfg.load_on_start else ' (load_on_start is false: not recognised)'}")
        self.get_logger().info(
            f"affective memory node up: {c.image_topic} -> {c.av_topic}, encoder {pipeline_cfg.encoder} on "
            f"{self.pipeline.encoder.device}, memory mode {memory_cfg.memory_mode}, detector {pipeline_cfg.detector}, "
            f"images via {converter}")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self._lock.acquire(timeout=LOCK_TIMEOUT):
            raise TimeoutError("the frame worker is busy; try again")
        try:
            yield
        finally:
            self._lock.release()

    # -------------------------------------------------------------- frames
    def _on_image(self, msg: Image) -> None:
        with self._cv:
            if self._latest is not None:
                self._dropped += 1  # never queue: a newer frame replaces an unprocessed one
            self._latest = msg
            self._received += 1
            self._received_times.append(time.monotonic())
            self._cv.notify()

    def _work(self) -> None:
        while self._running:
            with self._cv:
                while self._latest is None and self._running:
                    self._cv.wait(timeout=0.5)
                msg, self._latest = self._latest, None
            if msg is None:
                continue
            try:
                self._process(msg)
            except ImageEncodingError as exc:
                self._warn_once(f"bad image on {self.cfg.image_topic}: {exc}")
            except Exception as exc:
                self._warn_once(f"frame processing failed: {type(exc).__name__}: {exc}")

    def _process(self, msg: Image) -> None:
        limit = self.pipeline.config.max_frame_pixels
        if msg.width * msg.height > limit:  # before converting: a huge frame is never allocated
            raise ImageEncodingError(f"frame of {msg.width}x{msg.height} pixels is larger than max_frame_pixels="
                                     f"{limit}; refused")
        frame = self._to_rgb(msg)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:
            estimates = self.pipeline.process(frame, stamp)
        for e in estimates:
            out = ArousalValence()
            out.header = msg.header
            out.person_id = e.person_id
            out.arousal, out.valence = e.arousal, e.valence
            out.confidence = e.confidence
            out.encoder_arousal, out.encoder_valence = e.encoder_arousal, e.encoder_valence
            out.expression, out.expression_confidence = e.expression, e.expression_confidence
            x1, y1, x2, y2 = np.clip(e.box, 0, [frame.shape[1], frame.shape[0]] * 2).astype(int).tolist()
            out.roi.x_offset, out.roi.y_offset = x1, y1
            out.roi.width, out.roi.height = max(x2 - x1, 0), max(y2 - y1, 0)
            out.seeding = e.seeding
            out.num_neurons = e.num_neurons
            self.av_pub.publish(out)
        if self.debug_pub is not None:
            from ..visualize import annotate_frame

            with self._lock:
                planes = {e.person_id: self.pipeline.persons[e.person_id].memory.plane() for e in estimates
                          if e.person_id in self.pipeline.persons}
            self.debug_pub.publish(fill_image(Image(header=msg.header), annotate_frame(frame, estimates, planes)))
        now = self.get_clock().now().nanoseconds * 1e-9
        self._processed += 1
        self._processed_times.append(time.monotonic())
        latency = now - stamp
        if 0.0 <= latency <= MAX_PLAUSIBLE_LATENCY:
            self._latencies.append(latency)
        else:
            self._stamps_off += 1

    def _warn_once(self, text: str, period: float = 5.0) -> None:
        """Log each distinct problem at most once per ``period`` seconds."""
        key = text[:120]
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= period:
            self._warned[key] = now
            if len(self._warned) > 256:
                self._warned.clear()
            self.get_logger().warning(text)

    # ------------------------------------------------------------ outputs
    def _publish_state(self) -> None:
        msg = MemoryState()
        msg.header.stamp = self.get_clock().now().to_msg()
        try:
            with self._locked():
                summaries = self.pipeline.summaries()
        except TimeoutError:
            return
        for s in summaries:
            pm = PersonMemory()
            pm.person_id = s.person_id
            pm.num_neurons, pm.num_edges = s.summary.num_neurons, s.summary.num_edges
            pm.frames_learned = s.summary.frames_learned
            pm.seeding = s.seeding
            pm.last_seen.sec = int(s.last_seen)
            pm.last_seen.nanosec = int((s.last_seen % 1) * 1e9)
            pm.mean_arousal, pm.mean_valence = s.summary.mean_arousal, s.summary.mean_valence
            msg.persons.append(pm)
        self.state_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name="affective_memory: pipeline", hardware_id=str(self.pipeline.encoder.device))
        now = time.monotonic()
        window = 10.0

        def rate(times: deque[float]) -> float:
            recent = [t for t in list(times) if now - t <= window]
            return round(len(recent) / window, 2)

        self._log_new_errors()
        lat = np.array(self._latencies) if self._latencies else np.zeros(1)
        unsaved = self.store.unsaved
        recent_store_errors = [text for t, text in list(self.store.errors) if time.time() - t < 60]
        recent_errors = [text for t, text in list(self.pipeline.errors) if time.time() - t < 60]
        values = {
            "frames_received": self._received, "frames_processed": self._processed, "frames_dropped": self._dropped,
            "received_rate_hz": rate(self._received_times), "processed_rate_hz": rate(self._processed_times),
            "latency_p50_ms": round(float(np.median(lat)) * 1e3, 1),
            "latency_p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 1),
            "stamps_out_of_range": self._stamps_off, "persons": len(self.pipeline.persons),
            "unsaved_persons": len(unsaved),
        }
        if unsaved or recent_store_errors:
            status.level = DiagnosticStatus.ERROR
            status.message = (f"{len(unsaved)} memories could not be saved and are kept in RAM: "
                              f"{recent_store_errors[-1] if recent_store_errors else ', '.join(unsaved)}")
        elif recent_errors:
            status.level = DiagnosticStatus.WARN
            status.message = recent_errors[-1]
        else:
            status.level = DiagnosticStatus.OK
            status.message = "processing" if self._processed else "waiting for images"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self.diag_pub.publish(msg)

    def _log_new_errors(self) -> None:
        """Store failures (a save that failed, a file put aside) and per-person failures, each logged once."""
        newest = self._errors_logged
        for t, text in sorted([*list(self.store.errors), *list(self.pipeline.errors)]):
            if t > self._errors_logged:
                self.get_logger().error(text)
                newest = max(newest, t)
        self._errors_logged = newest

    # ----------------------------------------------------------- services
    def _reset(self, req: ResetPerson.Request, res: ResetPerson.Response) -> ResetPerson.Response:
        try:
            with self._locked():
                known = self.pipeline.reset_person(req.person_id)
            res.success = known
            res.message = (f"forgot {req.person_id}: memory, signature and file deleted" if known
                           else f"unknown person {req.person_id!r}")
        except (ValueError, TimeoutError, OSError) as exc:
            res.success, res.message = False, str(exc)
        return res

    def _save(self, req: SavePerson.Request, res: SavePerson.Response) -> SavePerson.Response:
        try:
            path = self.store.resolve(req.person_id, req.path or None, self.allow_external_paths)
            with self._locked():
                snap = self.pipeline.snapshot(req.person_id)
            written = self.store.submit(self.store.write, snap, path).result(timeout=WRITE_TIMEOUT)
            res.success, res.path, res.message = True, str(written), f"saved {req.person_id} to {written}"
        except KeyError as exc:
            res.success, res.message = False, str(exc.args[0]) if exc.args else "unknown person"
        except (ValueError, OSError, TimeoutError) as exc:
            res.success, res.message = False, str(exc) or type(exc).__name__
        return res

    def _load(self, req: LoadPerson.Request, res: LoadPerson.Response) -> LoadPerson.Response:
        try:
            path = self.store.resolve(req.person_id, req.path or None, self.allow_external_paths, write=False)
            # The file is read outside the frame lock: only a regular file, size-checked, never blocking.
            loaded = self.store.read(path, expected_id=None if req.import_memory else req.person_id)
            with self._locked():
                person = self.pipeline.install(req.person_id, loaded)
                neurons = person.memory.summary().num_neurons
            res.success, res.num_neurons = True, neurons
            res.message = f"loaded {req.person_id} from {path} ({neurons} neurons)"
        except FileNotFoundError:
            res.success, res.message = False, f"no saved memory for {req.person_id!r}"
        except (ValueError, OSError, TimeoutError) as exc:  # PersonFileError and StoreError are ValueErrors
            res.success, res.message = False, str(exc) or type(exc).__name__
        return res

    # ---------------------------------------------------------- persistence
    def _autosave(self) -> None:
        """Changed memories are copied under the lock and written by the store's I/O thread."""
        try:
            with self._locked():
                snaps = self.pipeline.snapshots(changed_only=True)
        except TimeoutError:
            return
        self.store.submit(self.store.save_all, snaps)
        self.store.retry()

    def shutdown(self) -> None:
        """Stop the worker, then save every memory it can (each failure is named); never raises."""
        self._running = False
        with self._cv:
            self._cv.notify_all()
        self._worker.join(timeout=5.0)
        self.pipeline.close()
        if self.store.enabled and self.get_parameter("save_on_shutdown").value:
            try:
                with self._locked():
                    snaps = self.pipeline.snapshots(changed_only=True)
            except TimeoutError:
                snaps = []
                self.get_logger().error("the frame worker did not stop; memories in RAM were not saved")
            report = self.store.save_all(snaps)
            if report.saved:
                self.get_logger().info(f"saved {len(report.saved)} memories to {self.store.directory}")
            for pid, reason in report.failed.items():
                self.get_logger().error(f"could not save {pid}'s memory at shutdown: {reason}")
        self.store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv) if argv is not None else sys.argv
    rclpy.init(args=args)
    # SIGTERM (systemd, docker, launch) shuts down like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node = None
    try:
        try:
            node = AffectiveMemoryNode()
        except (ValueError, StoreError, PersonFileError, FileNotFoundError, OSError) as exc:
            # A configuration error: one line with the reason, exit code 2.
            print(f"affective_memory_node: {type(exc).__name__}: {exc}" if not isinstance(exc, ValueError)
                  else f"affective_memory_node: {exc}", file=sys.stderr)
            return 2
        except rclpy.exceptions.InvalidParameterValueException as exc:
            print(f"affective_memory_node: {exc}", file=sys.stderr)
            return 2
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except rclpy._rclpy_pybind11.RCLError:  # Ctrl-C while the node was being built: the context is gone
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
