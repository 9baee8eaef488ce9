"""The affective memory ROS 2 node: a thin rclpy adapter over :class:`AffectPipeline` and :class:`PersonStore`.

A managed (lifecycle) node (docs/ros.md):

* **unconfigured**: parameters are declared and the lifecycle services answer
  from the first moment; ``/diagnostics`` says the node's state;
* ``on_configure``: the settings are read and checked, the store opened, the
  models loaded; publishers and services are created;
* ``on_activate``: the camera subscription opens and frames are processed;
* ``on_deactivate``: the subscription closes, the worker stops;
* ``on_cleanup``: memories are saved, the models dropped (CUDA memory freed);
* ``autostart`` (default true) walks through configure and activate by
  itself, so ``ros2 run`` and the installed executable behave like a plain
  node; with ``autostart:=false`` a lifecycle manager drives it.

Every name is relative: ``image`` (or ``image/compressed`` with
``image_transport:=compressed``, resolved after remapping as image_transport
does) in; ``affect/av``, ``affect/in_view``, ``affect/memory_state``,
``affect/debug_image`` and the ``affect/*_person`` services out; REP-155
topics under ``humans/`` (:mod:`.hri`); ``/diagnostics`` through
diagnostic_updater (:mod:`.diagnostics`). A namespace moves them all.

The newest frame is processed on a worker thread and stale ones are dropped.
Executor callbacks never wait for that thread: frame callbacks only hand the
message over, timers that need the pipeline hand their job to the worker when
it is busy (:meth:`AffectiveMemoryNode._timer_job`), and callback groups keep
rclpy's executor from spinning on a busy group (docs/pipeline.md, latency).
Everything about files is the store's policy, shared with ``affective-memory
run``; file reads and writes never happen while the frame lock is held.
"""

from __future__ import annotations

import contextlib
import gc
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from rclpy.signals import uninstall_signal_handlers
from sensor_msgs.msg import CompressedImage, Image

from affective_memory_ros.msg import ArousalValence, MemoryState, PersonMemory, PersonsInView
from affective_memory_ros.srv import LoadPerson, ResetPerson, SavePerson

from ..image_encoding import ImageEncodingError, compressed_to_rgb, fill_image, image_to_rgb
from ..person import PersonFileError
from ..pipeline import AffectPipeline
from ..store import PersonStore, StoreError
from . import hri
from .conversion import choose_converter
from .diagnostics import ERROR, OK, WARN, FrameStats, Thresholds, frames_level, make_updater
from .parameters import declare_parameters, read_configs, refuse_while_configured

#: Latencies outside [0, this] seconds (stamps from another clock, replayed bags) are counted, not averaged.
MAX_PLAUSIBLE_LATENCY = 60.0
#: How long a service or shutdown waits for the frame lock or a file write before giving up with a message.
LOCK_TIMEOUT = 5.0
WRITE_TIMEOUT = 30.0
#: How long process exit waits for executor callbacks in flight (a service call, a timer) before it goes on.
CALLBACK_TIMEOUT = 5.0
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def take_all(subscription: Any) -> list[Any]:
    """Every message ``subscription`` holds now, oldest first, taken without an executor (serialized bytes
    for a ``raw`` subscription). rclpy's executors hand out one message per wait of a ready subscription."""
    taken = []
    with subscription.handle:
        while (item := subscription.handle.take_message(subscription.msg_type, subscription.raw)) is not None:
            taken.append(item[0])
    return taken


class ConfigurationError(Exception):
    """A setting or the environment makes the node unable to configure; the message is one line."""


class AffectiveMemoryNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("affective_memory", **kwargs)
        declare_parameters(self)
        self.add_on_set_parameters_callback(
            refuse_while_configured(self._unconfigured, lambda name: self.get_parameter(name).value))
        #: One line, set when the last configure failed (an invalid setting, an unusable store or model).
        self.startup_error: str | None = None
        self.exit_code = 0
        self.pipeline: AffectPipeline | None = None
        self.store: PersonStore | None = None
        self.cfg: Any = None
        self.allow_external_paths = False
        self.stats = FrameStats()
        self._state_lock = threading.RLock()  # one transition at a time; shutdown waits for a running one
        self._lock = threading.Lock()  # guards the pipeline between worker, services and timers
        self._cv = threading.Condition()  # newest-frame handoff: the subscription overwrites, the worker takes
        self._latest: Any = None
        #: Timer jobs that found the frame lock taken; the frame worker runs them after its frame (see _timer_job).
        self._deferred: dict[str, Callable[[], None]] = {}
        self._running = False
        self._worker: threading.Thread | None = None
        self._pubs: dict[str, Any] = {}
        self._own_services: list[Any] = []
        self._frame_subs: list[Any] = []
        self._camera: tuple[Any, SingleThreadedExecutor, Any] | None = None  # (node, executor, subscription)
        self._frames_executor: SingleThreadedExecutor | None = None  # spun by the frame worker only
        self._raw_frames: list[bytes] = []  # serialized images taken in one _take_frame
        self._frame_timers: list[Any] = []
        self._face_subs: dict[str, Any] = {}
        self._faces: hri.FaceImageCollector | None = None
        self._hri_msgs: Any = None
        self._hri_faces = hri.FaceRegistry()
        self._hri_pubs: dict[str, tuple[Any, Any]] = {}  # face -> (expression, roi) publishers
        self._input_faces: dict[str, str] = {}  # ROS4HRI input: upstream face -> person it was matched to
        self._hri_lock = threading.Lock()  # per-face publishers: worker (publishing) vs executor (retiring)
        self._warned: dict[str, float] = {}
        self._errors_logged = 0.0
        self.input_topic = ""
        # Callback groups. rclpy 7.1's MultiThreadedExecutor re-offers a ready entity whose mutually exclusive
        # group is busy in a tight loop that holds the GIL until the group is free (measured: the camera
        # subscription offered 2,800-4,300 times/s), and the frame worker then waits for the GIL after every
        # PyTorch call: 0.1-1.6 s stalls with newcomers (docs/pipeline.md). So nothing shares a mutually exclusive
        # group with a callback that can take long: ROS4HRI face images go to a reentrant group (their callbacks
        # only hand the image over; camera images never reach this executor, _open_camera), each timer has its
        # own group, and only the services share one.
        self._io_group = MutuallyExclusiveCallbackGroup()  # the services that read and write memories
        self._frames_group = ReentrantCallbackGroup()
        self.updater, updater_kind = make_updater(self, callback_group=MutuallyExclusiveCallbackGroup())
        self.updater.setHardwareID("none")
        scope = self.get_namespace().strip("/")
        prefix = f"{scope}/" if scope else ""
        self.updater.add(f"{prefix}frames", self._diagnose_frames)
        self.updater.add(f"{prefix}memory store", self._diagnose_store)
        self.get_logger().info(f"state unconfigured (diagnostics via {updater_kind})")

    def _unconfigured(self) -> bool:
        return self._state_machine.current_state[1] == "unconfigured"

    @property
    def state(self) -> str:
        return str(self._state_machine.current_state[1])

    # ------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._state_lock:
            self.startup_error = None
            try:
                self._configure()
            except ConfigurationError as exc:
                self.startup_error = str(exc)
            except (ValueError, StoreError, PersonFileError, FileNotFoundError, OSError) as exc:
                self.startup_error = (str(exc) if isinstance(exc, ValueError) and not isinstance(exc, StoreError)
                                      else f"{type(exc).__name__}: {exc}")
            except Exception:
                if self.context.ok():
                    raise
                self.startup_error = "shut down while configuring"
            if self.startup_error is not None or not self.context.ok():
                self._log_new_errors()  # e.g. files put aside while the models loaded
                self._release(save=False)
                if self.context.ok():
                    self.get_logger().error(f"configure failed: {self.startup_error}")
                return FAILURE
            return super().on_configure(state)

    def _configure(self) -> None:
        self.cfg, pipeline_cfg, memory_cfg, store_cfg = read_configs(self)
        c = self.cfg
        if c.input_mode == "ros4hri":
            self._hri_msgs, why = hri.hri_messages()
            if self._hri_msgs is None:
                raise ConfigurationError(f"input_mode ros4hri needs hri_msgs: {why}")
        # The store folder is checked before any model is loaded: a bad store_dir fails in a second.
        self.store = PersonStore(store_cfg.store_dir or None, background=True)
        self._log_new_errors()  # files put aside while the store was opened, before the models load
        self.allow_external_paths = store_cfg.allow_external_paths
        # Loading takes seconds: say so (the lifecycle state says "configuring" too, for a manager).
        self.get_logger().info(f"configuring: loading the {pipeline_cfg.encoder} encoder and the "
                               f"{pipeline_cfg.detector} detector")
        self.pipeline = AffectPipeline(pipeline_cfg, memory_cfg, self.store, background=True,
                                       load_from_store=store_cfg.load_on_start)
        self._log_new_errors()  # files put aside while the store's signatures were read
        # Python's full garbage collection walks every tracked object (~430k once torch, rclpy and the models
        # are loaded: ~190 ms on a 2-core CPU) while holding the GIL, so whichever thread triggers it stalls
        # the frame thread: 135-860 ms stalls with newcomers (docs/pipeline.md). What is loaded now lives as
        # long as the configuration; frozen, collections walk only what is newer. _release unfreezes.
        gc.collect()
        gc.freeze()
        if c.input_mode == "ros4hri" and not hri.pipeline_takes_faces(self.pipeline):
            raise ConfigurationError(
                "input_mode ros4hri is not available yet: it needs the pipeline entry "
                f"{hri.PIPELINE_FACES_API}, which this version of the pipeline does not have (docs/ros.md)")
        if not self.context.ok():
            raise ConfigurationError("shut down while configuring")
        self.updater.setHardwareID(str(self.pipeline.encoder.device))
        if c.input_mode == "camera":
            self._to_rgb, converter = choose_converter() if c.image_transport == "raw" else (
                lambda m: compressed_to_rgb(m, self.pipeline.config.max_frame_pixels), "cv2.imdecode (JPEG/PNG)")
            base = self.resolve_topic_name("image")  # remappings applied, as image_transport resolves it
            self.input_topic = base if c.image_transport == "raw" else f"{base}/compressed"
        else:
            converter = "ROS4HRI face images"
            self.input_topic = self.resolve_topic_name("humans/faces/tracked")
        self._pubs["av"] = self.create_lifecycle_publisher(ArousalValence, "affect/av", 10)
        self._pubs["in_view"] = self.create_lifecycle_publisher(PersonsInView, "affect/in_view", 10)
        self._pubs["state"] = self.create_lifecycle_publisher(MemoryState, "affect/memory_state", QoSProfile(depth=1))
        if c.publish_debug_image:
            self._pubs["debug"] = self.create_lifecycle_publisher(Image, "affect/debug_image", 1)
        self._setup_hri_output()
        self._own_services = [
            self.create_service(ResetPerson, "affect/reset_person", self._reset, callback_group=self._io_group),
            self.create_service(SavePerson, "affect/save_person", self._save, callback_group=self._io_group),
            self.create_service(LoadPerson, "affect/load_person", self._load, callback_group=self._io_group),
        ]
        if self.store.enabled:
            self.get_logger().info(
                f"memory store {self.store.directory}: {len(self.pipeline.gallery)} known persons"
                f"{'' if store_cfg.load_on_start else ' (load_on_start is false: not recognised)'}")
        self.get_logger().info(
            f"configured: {self.input_topic} -> {self.resolve_topic_name('affect/av')}, encoder "
            f"{pipeline_cfg.encoder} on {self.pipeline.encoder.device}, memory mode {memory_cfg.memory_mode}, "
            f"detector {pipeline_cfg.detector}, images via {converter}")

    def _setup_hri_output(self) -> None:
        if not self.cfg.ros4hri_output:
            self.get_logger().info("ROS4HRI output off (ros4hri_output is false)")
            return
        msgs, why = hri.hri_messages()
        if msgs is None:
            self.get_logger().info(f"ROS4HRI output off: {why}")
            return
        self._hri_msgs = msgs
        if self.cfg.input_mode == "camera":  # this node is the face detector: it owns the tracked list
            self._pubs["hri_tracked"] = self.create_lifecycle_publisher(msgs.IdsList, "humans/faces/tracked", 1)
        self._pubs["hri_matches"] = self.create_lifecycle_publisher(msgs.IdsMatch, "humans/candidate_matches", 10)
        self.get_logger().info(f"ROS4HRI output on: {self.resolve_topic_name('humans/faces')}/<face_id>/expression")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._state_lock:
            if self.pipeline is None:
                return FAILURE
            c = self.cfg
            self.stats = FrameStats()
            self._running = True
            if c.input_mode == "camera":
                self._open_camera(Image if c.image_transport == "raw" else CompressedImage)
            else:
                self._faces = hri.FaceImageCollector()
                self._frame_subs.append(self.create_subscription(self._hri_msgs.IdsList, "humans/faces/tracked",
                                                                 self._on_tracked_faces, 10,
                                                                 callback_group=MutuallyExclusiveCallbackGroup()))
            self._frame_timers.append(self.create_timer(1.0 / c.memory_state_rate,
                                                        lambda: self._timer_job(self._publish_state),
                                                        callback_group=MutuallyExclusiveCallbackGroup()))
            period = self.get_parameter("autosave_period").value
            if period > 0 and self.store is not None and self.store.enabled:
                self._frame_timers.append(self.create_timer(period, lambda: self._timer_job(self._autosave),
                                                            callback_group=MutuallyExclusiveCallbackGroup()))
            self._worker = threading.Thread(target=self._work, name="affect-worker", daemon=True)
            self._worker.start()
            result = super().on_activate(state)
            self.get_logger().info(f"active: listening on {self.input_topic}")
            return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._state_lock:
            self._stop_frames()
            return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._state_lock:
            self._release(save=True)
            return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._state_lock:
            self._stop_frames()
            self._release(save=True)
            return super().on_shutdown(state)

    def _stop_frames(self) -> None:
        """Close the input, stop the worker, retire every face; the node keeps its pipeline."""
        for sub in self._frame_subs + list(self._face_subs.values()):
            self.destroy_subscription(sub)
        for timer in self._frame_timers:
            self.destroy_timer(timer)
        self._frame_subs, self._frame_timers, self._face_subs = [], [], {}
        self._running = False
        with self._cv:
            self._latest = None
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        self._close_camera()
        with self._cv:
            self._deferred.clear()  # their timers are gone
        with self._hri_lock:
            self._retire_faces(self._hri_faces.clear() + list(self._input_faces.items()))
            self._input_faces.clear()
        tracked = self._pubs.get("hri_tracked")
        if tracked is not None and self.context.ok():
            tracked.publish(hri.ids_list_message(self._hri_msgs.IdsList, self._header_now(), []))

    def _release(self, save: bool) -> None:
        """Save what can be saved, drop the models (and their CUDA memory), remove publishers and services."""
        if self.pipeline is not None:
            self.pipeline.close()
            if save:
                self._save_all_at_exit()
        if self.store is not None:
            self.store.close()
        for srv in self._own_services:
            self.destroy_service(srv)
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._own_services, self._pubs = [], {}
        had_models = self.pipeline is not None
        self.pipeline = self.store = None
        if had_models:
            gc.unfreeze()  # the models (frozen at configure) can be collected again
            gc.collect()
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _save_all_at_exit(self) -> None:
        assert self.pipeline is not None and self.store is not None
        if not (self.store.enabled and self.get_parameter("save_on_shutdown").value):
            return
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

    def autostart(self) -> None:
        """Configure, then activate (the ``autostart`` setting); a failed configure ends the process (exit 2)."""
        try:
            if self.trigger_configure() != SUCCESS:
                if self.context.ok():
                    self.exit_code = 2
                    rclpy.try_shutdown(context=self.context)
                return
            if self.trigger_activate() != SUCCESS and self.context.ok():
                self.get_logger().error("activate failed")
        except Exception:
            if self.context.ok():
                raise  # a real bug: let the executor report it

    def finish(self) -> None:
        """Process exit: wait for a running transition, stop frames, save memories. Never raises."""
        if not self._state_lock.acquire(timeout=120):
            self.get_logger().error("a lifecycle transition did not finish; memories in RAM were not saved")
            return
        try:
            self._stop_frames()
            self._release(save=True)
            if self._frames_executor is not None:  # main() has uninstalled rclpy's signal handlers by now
                with contextlib.suppress(Exception):
                    self._frames_executor.shutdown(timeout_sec=0.0)
                self._frames_executor = None
        finally:
            self._state_lock.release()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self._lock.acquire(timeout=LOCK_TIMEOUT):
            raise TimeoutError("the frame worker is busy; try again")
        try:
            yield
        finally:
            self._lock.release()

    def _timer_job(self, job: Callable[[], None]) -> None:
        """Run a timer's ``job`` with the frame lock held, never waiting for it in an executor thread.

        When the frame worker holds the lock, the job goes to the worker, which runs it right after its frame.
        A timer that waited instead kept an executor thread (and its callback group) busy for a frame; rclpy
        7.1's MultiThreadedExecutor then re-offers every ready entity thousands of times a second while its
        threads are busy (measured: the camera subscription 2,800-4,300 times/s at 30 fps input), and that
        loop holds the GIL, so the frame worker, waiting for the GIL after each PyTorch call, stalled for
        0.1-1.6 s with newcomers (docs/pipeline.md).
        """
        if self._lock.acquire(blocking=False):
            try:
                job()
            finally:
                self._lock.release()
            return
        with self._cv:
            self._deferred[job.__name__] = job  # one pending run per job
            self._cv.notify()

    def _run_deferred(self) -> None:
        with self._cv:
            jobs, self._deferred = list(self._deferred.values()), {}
        for job in jobs:
            try:
                with self._lock:
                    job()
            except Exception as exc:
                self._warn_once(f"{job.__name__} failed: {type(exc).__name__}: {exc}")

    # -------------------------------------------------------------- frames
    def _open_camera(self, msg_type: Any) -> None:
        """The camera input, taken by the frame worker itself when it is ready for a frame (see _take_frame).

        A subscription in the node's executor takes every delivered image off DDS into a Python message
        (0.9 MB each at 30 fps) while the worker is busy with the previous one, and the two threads then trade
        the GIL after every PyTorch call: 100-300 ms stalls with newcomers (docs/pipeline.md). So the
        subscription lives in a hidden node of its own (``_<name>_frames``, same namespace, on the topic this
        node resolved with its remappings), outside the node's executor, and takes serialized bytes; the
        worker, when it has finished a frame, takes what DDS holds (the sensor-data depth, 5) and turns only
        the newest into a message.
        """
        node = rclpy.create_node(f"_{self.get_name()}_frames", namespace=self.get_namespace(),
                                 context=self.context, use_global_arguments=False, start_parameter_services=False,
                                 enable_rosout=False,
                                 parameter_overrides=[Parameter("start_type_description_service", value=False)])
        sub = node.create_subscription(msg_type, self.input_topic, self._on_raw_image, qos_profile_sensor_data,
                                       raw=True)
        if self._frames_executor is None:
            # One for the node's life, shut down only at process exit, after rclpy's signal handlers are gone:
            # rclpy's signal thread triggers every executor's SIGINT guard condition without a lock (main()).
            self._frames_executor = SingleThreadedExecutor(context=self.context)
        self._frames_executor.add_node(node)
        self._camera = (node, self._frames_executor, sub)

    def _close_camera(self) -> None:
        if self._camera is None:
            return
        node, executor, _ = self._camera
        self._camera = None
        with contextlib.suppress(Exception):
            executor.remove_node(node)
        with contextlib.suppress(Exception):
            node.destroy_node()

    def _on_raw_image(self, data: bytes) -> None:
        self._raw_frames.append(data)

    def _take_frame(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for an image, take every image DDS holds, keep the newest (in ``_latest``).

        Raises when the context is shut down meanwhile (the worker then stops).
        """
        camera = self._camera
        if camera is None:
            return
        _, executor, sub = camera
        executor.spin_once(timeout_sec=timeout)  # waits for the first image (or not), taken by _on_raw_image
        if self._raw_frames:
            # What else arrived while the last frame was processed (at most the QoS depth), taken directly:
            # rclpy's executor hands out at most one more message per wait (it reuses its wait's results).
            self._raw_frames.extend(take_all(sub))
        frames, self._raw_frames = self._raw_frames, []
        if not frames:
            return
        for _ in frames[:-1]:
            self.stats.on_received(replaced_unprocessed=True)
        try:
            msg = deserialize_message(frames[-1], sub.msg_type)
        except Exception as exc:  # never let one bad sample end the worker
            self.stats.on_received(replaced_unprocessed=False)
            self.stats.on_refused(f"undecodable message: {exc}")
            self._warn_once(f"bad message on {self.input_topic}: {type(exc).__name__}: {exc}")
            return
        self._on_image(msg)

    def _on_image(self, msg: Any) -> None:
        with self._cv:
            self.stats.on_received(replaced_unprocessed=self._latest is not None)  # never queue
            self._latest = msg
            self._cv.notify()

    def _on_tracked_faces(self, msg: Any) -> None:
        """ROS4HRI input: the upstream face list changed; follow each face's image topic."""
        assert self._faces is not None
        with self._cv:
            added, removed = self._faces.set_tracked(list(msg.ids))
        for face in removed:
            sub = self._face_subs.pop(face, None)
            if sub is not None:
                self.destroy_subscription(sub)
        with self._hri_lock:
            self._retire_faces([(f, self._input_faces.pop(f)) for f in removed if f in self._input_faces])
        kind = self.cfg.ros4hri_face_image
        for face in added:
            if face in self._face_subs:
                continue
            try:
                self._face_subs[face] = self.create_subscription(
                    Image, f"humans/faces/{face}/{kind}", lambda m, f=face: self._on_face_image(f, m),
                    qos_profile_sensor_data, callback_group=self._frames_group)
            except Exception as exc:  # an upstream ID that is no valid ROS name
                self._warn_once(f"cannot follow face {face!r}: {exc}")

    def _on_face_image(self, face: str, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg)
        except ImageEncodingError as exc:
            self.stats.on_refused(str(exc))
            self._warn_once(f"bad image of face {face}: {exc}")
            return
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._cv:
            assert self._faces is not None
            if self._faces.add_image(face, stamp, msg.header, rgb):
                self.stats.on_received(replaced_unprocessed=False)
                self._latest = self._faces
                self._cv.notify()

    def _work(self) -> None:
        while self._running:
            if self._camera is not None and self._latest is None and not self._deferred:
                try:
                    self._take_frame(0.1)  # timers' deferred jobs wait at most this long
                except Exception as exc:  # ExternalShutdownException, RCLError, a destroyed entity...
                    if not self._running or not self.context.ok():
                        return
                    self._warn_once(f"taking a frame failed: {type(exc).__name__}: {exc}")
                    time.sleep(0.1)
            with self._cv:
                while self._latest is None and not self._deferred and self._running and self._camera is None:
                    self._cv.wait(timeout=0.5)
                job, self._latest = self._latest, None
                if isinstance(job, hri.FaceImageCollector):
                    job = job.take()
            if self._deferred and self._running:
                self._run_deferred()
            if job is None:
                continue
            if not self._running:  # taken while the frames were being stopped: not published after stop
                return
            self.stats.working(True)
            try:
                if isinstance(job, hri.FaceBatch):
                    self._process_faces(job)
                else:
                    self._process(job)
            except ImageEncodingError as exc:
                self.stats.on_refused(str(exc))
                self._warn_once(f"bad image on {self.input_topic}: {exc}")
            except Exception as exc:
                if not self._running or not self.context.ok():
                    return
                self._warn_once(f"frame processing failed: {type(exc).__name__}: {exc}")
            finally:
                self.stats.working(False)

    def _process(self, msg: Any) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        limit = pipeline.config.max_frame_pixels
        if isinstance(msg, Image) and msg.width * msg.height > limit:  # before converting: never allocated
            raise ImageEncodingError(f"frame of {msg.width}x{msg.height} pixels is larger than max_frame_pixels="
                                     f"{limit}; refused")
        frame = self._to_rgb(msg)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:
            estimates = pipeline.process(frame, stamp)
            renamed = dict(getattr(pipeline.tracker, "renamed", {}) or {})
            planes = ({e.person_id: pipeline.persons[e.person_id].memory.plane() for e in estimates
                       if e.person_id in pipeline.persons} if "debug" in self._pubs else {})
        self._publish(msg.header, estimates, renamed, frame.shape[1], frame.shape[0], stamp)
        if "debug" in self._pubs:
            from ..visualize import annotate_frame

            self._pubs["debug"].publish(fill_image(Image(header=msg.header), annotate_frame(frame, estimates,
                                                                                             planes)))

    def _process_faces(self, batch: hri.FaceBatch) -> None:
        """ROS4HRI input: the upstream pipeline's faces, through the pipeline's faces entry."""
        pipeline = self.pipeline
        assert pipeline is not None
        with self._lock:
            estimates = pipeline.process_faces(batch.crops, batch.face_ids, batch.stamp)  # type: ignore[attr-defined]
        self._publish(batch.header, estimates, {}, 0, 0, batch.stamp, face_ids=batch.face_ids)

    def _publish(self, header: Any, estimates: list[Any], renamed: dict[str, str], width: int, height: int,
                 stamp: float, face_ids: list[str] | None = None) -> None:
        for e in estimates:
            out = ArousalValence()
            out.header = header
            out.person_id = e.person_id
            out.arousal, out.valence = e.arousal, e.valence
            out.confidence = e.confidence
            out.encoder_arousal, out.encoder_valence = e.encoder_arousal, e.encoder_valence
            out.expression, out.expression_confidence = e.expression, e.expression_confidence
            if width and height:
                x1, y1, x2, y2 = np.clip(e.box, 0, [width, height] * 2).astype(int).tolist()
                out.roi.x_offset, out.roi.y_offset = x1, y1
                out.roi.width, out.roi.height = max(x2 - x1, 0), max(y2 - y1, 0)
            out.seeding = e.seeding
            out.num_neurons = e.num_neurons
            self._pubs["av"].publish(out)
        self._pubs["in_view"].publish(PersonsInView(header=header, person_ids=[e.person_id for e in estimates]))
        if self._hri_msgs is not None and "hri_matches" in self._pubs:
            self._publish_hri(header, estimates, renamed, width, height, face_ids)
        now = self.get_clock().now().nanoseconds * 1e-9
        latency = now - stamp
        self.stats.on_processed(latency if 0.0 <= latency <= MAX_PLAUSIBLE_LATENCY else None, len(estimates))

    def _publish_hri(self, header: Any, estimates: list[Any], renamed: dict[str, str], width: int, height: int,
                     face_ids: list[str] | None) -> None:
        with self._hri_lock:
            self._publish_hri_locked(header, estimates, renamed, width, height, face_ids)

    def _publish_hri_locked(self, header: Any, estimates: list[Any], renamed: dict[str, str], width: int,
                            height: int, face_ids: list[str] | None) -> None:
        msgs = self._hri_msgs
        matches = self._pubs["hri_matches"]
        if face_ids is not None:  # ROS4HRI input: the upstream pipeline's face IDs
            pairs = list(zip(face_ids, estimates, strict=True))
            for face, e in pairs:
                if face not in self._hri_pubs:
                    self._open_face(face, with_roi=False)
                if self._input_faces.get(face) != e.person_id:
                    if face in self._input_faces:
                        matches.publish(hri.match_message(msgs.IdsMatch, face, self._input_faces[face], 0.0))
                    self._input_faces[face] = e.person_id
                    matches.publish(hri.match_message(msgs.IdsMatch, face, e.person_id, 1.0))
        else:
            update = self._hri_faces.update([e.person_id for e in estimates], renamed)
            for face, old, new in update.rebound:
                matches.publish(hri.match_message(msgs.IdsMatch, face, old, 0.0))
                matches.publish(hri.match_message(msgs.IdsMatch, face, new, 1.0))
            for face, pid in update.new:
                self._open_face(face, with_roi=True)
                matches.publish(hri.match_message(msgs.IdsMatch, face, pid, 1.0))
            self._retire_faces(update.gone)
            pairs = [(face, e) for (face, _), e in zip(update.in_view, estimates, strict=True)]
            self._pubs["hri_tracked"].publish(hri.ids_list_message(msgs.IdsList, header,
                                                                   [f for f, _ in update.tracked]))
        for face, e in pairs:
            expression_pub, roi_pub = self._hri_pubs[face]
            expression_pub.publish(hri.expression_message(msgs.Expression, header, e))
            if roi_pub is not None:
                roi_pub.publish(hri.roi_message(msgs.NormalizedRegionOfInterest2D, header, e.box, width, height))

    def _open_face(self, face: str, with_roi: bool) -> None:
        msgs = self._hri_msgs
        base = f"humans/faces/{face}"
        self._hri_pubs[face] = (self.create_publisher(msgs.Expression, f"{base}/expression", 1),
                                self.create_publisher(msgs.NormalizedRegionOfInterest2D, f"{base}/roi", 1)
                                if with_roi else None)

    def _retire_faces(self, gone: list[tuple[str, str]]) -> None:
        matches = self._pubs.get("hri_matches")
        for face, pid in gone:
            for pub in self._hri_pubs.pop(face, (None, None)):
                if pub is not None:
                    self.destroy_publisher(pub)
            if matches is not None and self.context.ok():
                matches.publish(hri.match_message(self._hri_msgs.IdsMatch, face, pid, 0.0))

    def _header_now(self) -> Any:
        from std_msgs.msg import Header

        return Header(stamp=self.get_clock().now().to_msg())

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
        """The memory-state message (a :meth:`_timer_job`: the frame lock is held)."""
        pipeline = self.pipeline
        if pipeline is None or "state" not in self._pubs:
            return
        msg = MemoryState()
        msg.header.stamp = self.get_clock().now().to_msg()
        for s in pipeline.summaries():
            pm = PersonMemory()
            pm.person_id = s.person_id
            pm.num_neurons, pm.num_edges = s.summary.num_neurons, s.summary.num_edges
            pm.frames_learned = s.summary.frames_learned
            pm.seeding = s.seeding
            pm.last_seen.sec = int(s.last_seen)
            pm.last_seen.nanosec = int((s.last_seen % 1) * 1e9)
            pm.mean_arousal, pm.mean_valence = s.summary.mean_arousal, s.summary.mean_valence
            msg.persons.append(pm)
        self._pubs["state"].publish(msg)

    def _diagnose_frames(self, stat: Any) -> Any:
        state = self.state
        r = self.stats.report()
        if state != "active":
            if self.startup_error:
                stat.summary(ERROR, f"{state}: configure failed: {self.startup_error}")
            else:
                stat.summary(OK, f"{state}" + (": loading models" if state == "configuring" else ""))
        else:
            p = self.get_parameter
            thresholds = Thresholds(p("diagnostics_drop_warn").value, p("diagnostics_drop_error").value,
                                    p("diagnostics_latency_warn").value, p("diagnostics_latency_error").value)
            worker = self._worker
            if worker is not None and not worker.is_alive():  # it alone takes the camera's images
                stat.summary(ERROR, "stalled: the frame worker has stopped (see the node's log)")
            else:
                stat.summary(*frames_level(r, thresholds))
        # Values are strings: diagnostic_updater's wrapper puts them into KeyValue as they are.
        stat.add("lifecycle_state", state)
        stat.add("input", self.input_topic)
        for key in ("received_rate_hz", "processed_rate_hz", "drop_ratio", "latency_p50_ms", "latency_p99_ms",
                    "in_view"):
            stat.add(key, str(getattr(r, key)))
        for key in ("received", "processed", "dropped", "refused"):
            stat.add(f"frames_{key}", str(getattr(r, key)))
        stat.add("stamps_out_of_range", str(r.stamps_out_of_range))
        stat.add("busy_s", str(r.busy_s))
        stat.add("window_s", str(r.window_s))
        return stat

    def _diagnose_store(self, stat: Any) -> Any:
        pipeline, store = self.pipeline, self.store
        if pipeline is None or store is None:
            stat.summary(OK, "no memories loaded (node not configured)")
            return stat
        self._log_new_errors()
        unsaved = store.unsaved
        recent_store_errors = [text for t, text in list(store.errors) if time.time() - t < 60]
        recent_errors = [text for t, text in list(pipeline.errors) if time.time() - t < 60]
        if unsaved or recent_store_errors:
            stat.summary(ERROR, f"{len(unsaved)} memories could not be saved and are kept in RAM: "
                                f"{recent_store_errors[-1] if recent_store_errors else ', '.join(unsaved)}")
        elif recent_errors:
            stat.summary(WARN, recent_errors[-1])
        else:
            stat.summary(OK, f"{len(pipeline.persons)} persons in RAM" +
                         (f", store {store.directory}" if store.enabled else ", no store"))
        stat.add("persons", str(len(pipeline.persons)))
        stat.add("unsaved_persons", str(len(unsaved)))
        stat.add("store_dir", str(store.directory) if store.enabled else "")
        return stat

    def _log_new_errors(self) -> None:
        """Store failures (a save that failed, a file put aside) and per-person failures, each logged once."""
        if self.store is None:
            return
        errors = [*list(self.store.errors), *(list(self.pipeline.errors) if self.pipeline is not None else [])]
        newest = self._errors_logged
        for t, text in sorted(errors):
            if t > self._errors_logged:
                self.get_logger().error(text)
                newest = max(newest, t)
        self._errors_logged = newest

    # ----------------------------------------------------------- services
    def _reset(self, req: ResetPerson.Request, res: ResetPerson.Response) -> ResetPerson.Response:
        pipeline = self.pipeline
        try:
            if pipeline is None:
                raise ValueError("the node is not configured")
            with self._locked():
                known = pipeline.reset_person(req.person_id)
            res.success = known
            res.message = (f"forgot {req.person_id}: memory, signature and file deleted" if known
                           else f"unknown person {req.person_id!r}")
        except (ValueError, TimeoutError, OSError) as exc:
            res.success, res.message = False, str(exc)
        return res

    def _save(self, req: SavePerson.Request, res: SavePerson.Response) -> SavePerson.Response:
        pipeline, store = self.pipeline, self.store
        try:
            if pipeline is None or store is None:
                raise ValueError("the node is not configured")
            path = store.resolve(req.person_id, req.path or None, self.allow_external_paths)
            with self._locked():
                snap = pipeline.snapshot(req.person_id)
            written = store.submit(store.write, snap, path).result(timeout=WRITE_TIMEOUT)
            res.success, res.path, res.message = True, str(written), f"saved {req.person_id} to {written}"
        except KeyError as exc:
            res.success, res.message = False, str(exc.args[0]) if exc.args else "unknown person"
        except (ValueError, OSError, TimeoutError) as exc:
            res.success, res.message = False, str(exc) or type(exc).__name__
        return res

    def _load(self, req: LoadPerson.Request, res: LoadPerson.Response) -> LoadPerson.Response:
        pipeline, store = self.pipeline, self.store
        try:
            if pipeline is None or store is None:
                raise ValueError("the node is not configured")
            path = store.resolve(req.person_id, req.path or None, self.allow_external_paths, write=False)
            # The file is read outside the frame lock: only a regular file, size-checked, never blocking.
            loaded = store.read(path, expected_id=None if req.import_memory else req.person_id)
            with self._locked():
                person = pipeline.install(req.person_id, loaded)
                neurons = person.memory.num_neurons
            res.success, res.num_neurons = True, neurons
            res.message = f"loaded {req.person_id} from {path} ({neurons} neurons)"
        except FileNotFoundError:
            res.success, res.message = False, f"no saved memory for {req.person_id!r}"
        except (ValueError, OSError, TimeoutError) as exc:  # PersonFileError and StoreError are ValueErrors
            res.success, res.message = False, str(exc) or type(exc).__name__
        return res

    # ---------------------------------------------------------- persistence
    def _autosave(self) -> None:
        """Changed memories are copied (a :meth:`_timer_job`: the frame lock is held) and written by the
        store's I/O thread."""
        pipeline, store = self.pipeline, self.store
        if pipeline is None or store is None:
            return
        store.submit(store.save_all, pipeline.snapshots(changed_only=True))
        store.retry()


def _wait_for_callbacks(executor: Executor, timeout: float) -> bool:
    """Let the executor start no more callbacks and wait up to ``timeout`` s for those running; True if none is.

    ``Executor.shutdown(timeout_sec)`` is meant to do this, but in rclpy 7.1 (Jazzy) it never waits (it re-reads
    the flag it has just set), so the MultiThreadedExecutor's thread pool is waited on here: callbacks queued but
    not started are cancelled, running ones finish.
    """
    pool = getattr(executor, "_executor", None)
    if pool is None:  # a single-threaded executor: its callbacks ran on the thread that is here now
        return True
    waiter = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True},
                              name="executor-drain", daemon=True)
    waiter.start()
    waiter.join(timeout)
    return not waiter.is_alive()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv) if argv is not None else sys.argv
    rclpy.init(args=args)
    # SIGTERM (systemd, docker, launch) shuts down like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node: AffectiveMemoryNode | None = None
    executor: MultiThreadedExecutor | None = None
    try:
        try:
            node = AffectiveMemoryNode()
        except rclpy.exceptions.InvalidParameterValueException as exc:  # a value outside its range
            print(f"affective_memory_node: {exc}", file=sys.stderr)
            return 2
        executor = MultiThreadedExecutor(num_threads=3)
        executor.add_node(node)
        if node.get_parameter("autostart").value:
            # From a timer, so the lifecycle services and /diagnostics answer while the models load.
            startup = node.create_timer(0.0, lambda: (node.destroy_timer(startup), node.autostart()),
                                        callback_group=MutuallyExclusiveCallbackGroup())
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except rclpy._rclpy_pybind11.RCLError:  # Ctrl-C while rclpy was still setting up: the context is gone
        if rclpy.ok():
            raise
    finally:
        # First stop rclpy's signal thread. On SIGINT it triggers the SIGINT guard condition of every executor,
        # reading their list without a lock; executor.shutdown() below unregisters and destroys this executor's
        # guard condition and frees that list. A Ctrl-C can bring this thread here (an idle node has nothing to
        # save) while the signal thread is still in that loop, which then triggers freed memory: SIGSEGV at exit.
        # Uninstalling the handlers joins the signal thread, so the guard condition is never in use once destroyed.
        uninstall_signal_handlers()
        # Then no callback may run while finish() stops the frames, saves and removes what the callbacks use.
        if executor is not None and not _wait_for_callbacks(executor, CALLBACK_TIMEOUT) and node is not None:
            node.get_logger().warning(f"callbacks still running after {CALLBACK_TIMEOUT:g} s; stopping anyway")
        if node is not None:
            node.finish()
            if node.exit_code == 2 and node.startup_error:
                print(f"affective_memory_node: {node.startup_error}", file=sys.stderr)
        if executor is not None:
            executor.shutdown(timeout_sec=0.0)  # the callbacks were waited for above
        if node is not None:
            with contextlib.suppress(Exception):
                node.destroy_node()
        rclpy.try_shutdown()
    return node.exit_code if node is not None else 0


if __name__ == "__main__":
    sys.exit(main())
