"""The affective memory ROS 2 node: a thin rclpy adapter over :class:`AffectPipeline`.

Subscribes to a camera image topic (SensorDataQoS), always processes the newest
frame on a worker thread and drops stale ones, and publishes one
``ArousalValence`` per visible person per processed frame on ``/affect/av``,
the memory state at a fixed rate, and ``/diagnostics``. Services reset, save
and load a person's memory. Run it with ``ros2 launch affective_memory_ros
robot.launch.py``, ``ros2 run affective_memory_ros affective_memory_node``, or
the installed ``lib/affective_memory_ros/affective_memory_node --ros-args
--params-file config/affective_memory.yaml``.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image

from affective_memory_ros.msg import ArousalValence, MemoryState, PersonMemory
from affective_memory_ros.srv import LoadPerson, ResetPerson, SavePerson

from ..image_encoding import ImageEncodingError, fill_image
from ..memory import MemoryFileError
from ..pipeline import AffectPipeline, load_person_state, save_person_state
from ..store import MemoryStore, StoreError
from .conversion import choose_converter
from .parameters import declare_parameters, pipeline_config, validate_update


class AffectiveMemoryNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("affective_memory", **kwargs)
        declare_parameters(self)
        p = self.get_parameter
        self.store = MemoryStore(p("store_dir").value or None)
        self.pipeline = AffectPipeline(pipeline_config(self), on_evict=self._on_evict,
                                       on_new_person=self._from_store)
        self.allow_external_paths = bool(p("allow_external_paths").value)
        self._to_rgb, converter = choose_converter()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.av_pub = self.create_publisher(ArousalValence, p("av_topic").value, 10)
        self.state_pub = self.create_publisher(MemoryState, p("memory_state_topic").value, QoSProfile(depth=1))
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.debug_pub = self.create_publisher(Image, p("debug_image_topic").value, 1) \
            if p("publish_debug_image").value else None
        self.create_subscription(Image, p("image_topic").value, self._on_image, qos_profile_sensor_data)
        self.create_service(ResetPerson, "/affect/reset_person", self._reset)
        self.create_service(SavePerson, "/affect/save_person", self._save)
        self.create_service(LoadPerson, "/affect/load_person", self._load)
        self._state_timer = self.create_timer(1.0 / p("memory_state_rate").value, self._publish_state)
        self.create_timer(1.0, self._publish_diagnostics)
        if p("autosave_period").value > 0 and self.store.directory is not None:
            self.create_timer(float(p("autosave_period").value), self._autosave)

        # Newest-frame handoff: the subscription overwrites, the worker takes.
        self._latest: Image | None = None
        self._cv = threading.Condition()
        self._lock = threading.Lock()  # guards the pipeline between worker and services
        self._running = True
        self._received = self._processed = self._dropped = 0
        self._latencies: deque[float] = deque(maxlen=200)  # image stamp -> published, seconds
        self._rates: deque[float] = deque(maxlen=200)  # processing time per frame, seconds
        self._errors: dict[str, float] = {}
        self._worker = threading.Thread(target=self._work, name="affect-worker", daemon=True)
        self._worker.start()
        if self.store.directory is not None and p("load_on_start").value:
            loaded = self._load_all_from_store()
            self.get_logger().info(f"loaded {loaded} memories from {self.store.directory}")
        self.get_logger().info(
            f"affective memory node up: {p('image_topic').value} -> {p('av_topic').value}, "
            f"PK on {self.pipeline.pk.device}, detector {self.pipeline.config.detector}, images via {converter}")

    # -------------------------------------------------------------- frames
    def _on_image(self, msg: Image) -> None:
        with self._cv:
            if self._latest is not None:
                self._dropped += 1  # never queue: a newer frame replaces an unprocessed one
            self._latest = msg
            self._received += 1
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
                self._warn_once(f"bad image on {self.get_parameter('image_topic').value}: {exc}")
            except Exception as exc:  # keep serving good frames whatever one frame did
                self._warn_once(f"frame processing failed: {type(exc).__name__}: {exc}")

    def _process(self, msg: Image) -> None:
        started = time.perf_counter()
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
            out.pk_arousal, out.pk_valence = e.pk_arousal, e.pk_valence
            x1, y1, x2, y2 = np.clip(e.box, 0, [frame.shape[1], frame.shape[0]] * 2).astype(int).tolist()
            out.roi.x_offset, out.roi.y_offset = x1, y1
            out.roi.width, out.roi.height = max(x2 - x1, 0), max(y2 - y1, 0)
            out.seeding = e.seeding
            out.num_neurons = e.num_neurons
            self.av_pub.publish(out)
        if self.debug_pub is not None:
            from ..visualize import annotate_frame

            with self._lock:
                memories = {e.person_id: self.pipeline.persons[e.person_id].memory for e in estimates
                            if e.person_id in self.pipeline.persons}
                annotated = annotate_frame(frame, estimates, memories)
            self.debug_pub.publish(fill_image(Image(header=msg.header), annotated))
        now = self.get_clock().now().nanoseconds * 1e-9
        self._processed += 1
        self._latencies.append(max(now - stamp, 0.0) if stamp > 0 else 0.0)
        self._rates.append(time.perf_counter() - started)

    def _warn_once(self, text: str, period: float = 5.0) -> None:
        """Log each distinct problem at most once per ``period`` seconds."""
        key = text[:120]
        now = time.monotonic()
        if now - self._errors.get(key, -1e9) >= period:
            self._errors[key] = now
            if len(self._errors) > 256:
                self._errors.clear()
            self.get_logger().warning(text)

    # ------------------------------------------------------------ outputs
    def _publish_state(self) -> None:
        msg = MemoryState()
        msg.header.stamp = self.get_clock().now().to_msg()
        with self._lock:
            summaries = self.pipeline.summaries()
        for s in summaries:
            pm = PersonMemory()
            pm.person_id = s.person_id
            pm.num_neurons, pm.num_edges, pm.frames_learned = s.num_neurons, s.num_edges, s.frames_learned
            pm.seeding = s.seeding
            pm.last_seen.sec = int(s.last_seen)
            pm.last_seen.nanosec = int((s.last_seen % 1) * 1e9)
            pm.mean_arousal, pm.mean_valence = s.mean_arousal, s.mean_valence
            msg.persons.append(pm)
        self.state_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name="affective_memory: pipeline", hardware_id=str(self.pipeline.pk.device))
        lat = np.array(self._latencies) if self._latencies else np.zeros(1)
        proc = np.array(self._rates) if self._rates else np.zeros(1)
        values = {
            "frames_received": self._received, "frames_processed": self._processed, "frames_dropped": self._dropped,
            "processing_rate_hz": round(1.0 / proc.mean(), 2) if proc.mean() > 0 else 0.0,
            "latency_p50_ms": round(float(np.median(lat)) * 1e3, 1), "latency_p99_ms":
                round(float(np.percentile(lat, 99)) * 1e3, 1), "persons": len(self.pipeline.persons),
        }
        status.level = DiagnosticStatus.OK
        status.message = "processing" if self._processed else "waiting for images"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self.diag_pub.publish(msg)

    # ----------------------------------------------------------- services
    def _reset(self, req: ResetPerson.Request, res: ResetPerson.Response) -> ResetPerson.Response:
        try:
            with self._lock:
                known = self.pipeline.reset_person(req.person_id)
            res.success = known
            res.message = f"reset {req.person_id}" if known else f"unknown person {req.person_id!r}"
        except ValueError as exc:
            res.success, res.message = False, str(exc)
        return res

    def _save(self, req: SavePerson.Request, res: SavePerson.Response) -> SavePerson.Response:
        try:
            path = self.store.resolve(req.person_id, req.path or None, self.allow_external_paths)
            with self._lock:
                written = self.pipeline.save_person(req.person_id, path)
            res.success, res.path, res.message = True, str(written), f"saved {req.person_id} to {written}"
        except (ValueError, KeyError, StoreError, OSError) as exc:
            res.success, res.message = False, _reason(exc)
        return res

    def _load(self, req: LoadPerson.Request, res: LoadPerson.Response) -> LoadPerson.Response:
        try:
            path = self.store.resolve(req.person_id, req.path or None, self.allow_external_paths)
            with self._lock:
                state = self.pipeline.load_person(req.person_id, path)
            res.success, res.num_neurons = True, state.memory.num_neurons
            res.message = f"loaded {req.person_id} from {path} ({state.memory.num_neurons} neurons)"
        except FileNotFoundError:
            res.success, res.message = False, f"no saved memory for {req.person_id!r}"
        except (ValueError, KeyError, StoreError, MemoryFileError, OSError) as exc:
            res.success, res.message = False, _reason(exc)
        return res

    def _on_set_parameters(self, params: Sequence[Any]) -> SetParametersResult:
        reason = validate_update(params)
        return SetParametersResult(successful=reason is None, reason=reason or "")

    # ---------------------------------------------------------- persistence
    def _on_evict(self, person_id: str, state: Any) -> None:
        if self.store.directory is not None:
            save_person_state(person_id, state, self.store.path_for(person_id))

    def _from_store(self, person_id: str) -> Any:
        """A memory saved earlier (e.g. evicted from RAM) for a person seen again."""
        if self.store.directory is None:
            return None
        path = self.store.path_for(person_id)
        if not path.exists():
            return None
        try:
            return load_person_state(path, self.pipeline.memory_config.dim)
        except (ValueError, OSError) as exc:
            self._quarantine(path, exc)
            return None

    def _load_all_from_store(self) -> int:
        count = 0
        for person_id, path in self.store.saved():
            try:
                self.pipeline.load_person(person_id, path)
                count += 1
            except (ValueError, MemoryFileError, OSError) as exc:
                self._quarantine(path, exc)
        return count

    def _quarantine(self, path: Path, reason: Exception) -> None:
        """Keep an unreadable memory file aside (never overwritten, never deleted)."""
        aside = self.store.quarantine(path)
        self.get_logger().error(f"memory file {path} is unreadable ({reason}); kept aside as {aside}")

    def _autosave(self) -> None:
        try:
            self.save_all()
        except OSError as exc:
            self._warn_once(f"autosave failed: {exc}")

    def save_all(self) -> int:
        if self.store.directory is None:
            return 0
        with self._lock:
            items = list(self.pipeline.persons.items())
        for pid, state in items:
            save_person_state(pid, state, self.store.path_for(pid))
        return len(items)

    def shutdown(self) -> None:
        self._running = False
        with self._cv:
            self._cv.notify_all()
        self._worker.join(timeout=5.0)
        if self.get_parameter("save_on_shutdown").value:
            saved = self.save_all()
            if saved:
                self.get_logger().info(f"saved {saved} memories to {self.store.directory}")


def _reason(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    rclpy.init(args=list(argv) if argv is not None else sys.argv)
    # SIGTERM (systemd, docker, launch) shuts down like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node = None
    try:
        node = AffectiveMemoryNode()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # invalid parameters: refuse to start, say why
        print(f"affective_memory_node: {exc}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

