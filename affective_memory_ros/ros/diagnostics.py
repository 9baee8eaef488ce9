"""``/diagnostics`` through ``diagnostic_updater``, with real rates and WARN/ERROR levels.

* :func:`make_updater`: ``diagnostic_updater.Updater`` where the package is
  installed (apt: ``ros-jazzy-diagnostic-updater``, the package.xml's
  dependency). The PyPI ROS wheels have no diagnostic_updater, so there a
  small stand-in with the same interface and the same output is used:
  ``add(name, fn)``, ``setHardwareID``, ``force_update``, the
  ``diagnostic_updater.period`` parameter, one ``DiagnosticArray`` per
  period on ``/diagnostics``, each status named ``"<node name>: <task>"``.
* :class:`FrameStats`: what the frame path counts (received, processed,
  dropped, refused, latencies), thread-safe, and rates over a sliding window
  of real time: frames per second received and processed, not 1 / the mean
  processing time.
* :func:`frames_level`: the level rules, pure so they are tested on numbers:
  ERROR when frames arrive but none is processed (stalled), or when the drop
  ratio or the p99 latency pass their error thresholds; WARN at the warn
  thresholds or when images are refused; OK otherwise. The thresholds are
  parameters (``diagnostics_*``), like the processing-time levels of
  ROS4HRI's face detector.

``/diagnostics`` is an absolute name on purpose (the aggregator listens
there); in a namespace the task names carry it, so two instances never share
a status name.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
#: Seconds over which rates, drop ratios and latency percentiles are computed.
WINDOW = 10.0


class StatusWrapper(DiagnosticStatus):
    """The part of ``diagnostic_updater.DiagnosticStatusWrapper`` the node uses (summary, add)."""

    def summary(self, level: Any, message: str) -> None:
        self.level = level
        self.message = str(message)

    def add(self, key: str, value: Any) -> None:
        self.values.append(KeyValue(key=str(key), value=str(value)))


class FallbackUpdater:
    """``diagnostic_updater.Updater``'s interface and output, for installs without diagnostic_updater."""

    def __init__(self, node: Any, period: float = 1.0, **timer_kwargs: Any) -> None:
        self.node = node
        self.publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 1)
        self.period = node.declare_parameter("diagnostic_updater.period", period).value
        self.timer = node.create_timer(self.period, self.update, **timer_kwargs)
        self.tasks: list[tuple[str, Callable[[Any], Any]]] = []
        self.hwid = ""
        self._lock = threading.Lock()

    def add(self, name: str, fn: Callable[[Any], Any]) -> None:
        with self._lock:
            self.tasks.append((name, fn))
        stat = StatusWrapper(name=name, hardware_id=self.hwid)
        stat.summary(OK, "Node starting up")
        self.publish([stat])

    def setHardwareID(self, hwid: str) -> None:  # noqa: N802 - diagnostic_updater's name
        self.hwid = hwid

    def update(self) -> None:
        statuses = []
        with self._lock:
            for name, fn in self.tasks:
                stat = StatusWrapper(name=name, hardware_id=self.hwid, level=ERROR, message="No message was set")
                statuses.append(fn(stat))
        self.publish(statuses)

    force_update = update

    def publish(self, statuses: list[DiagnosticStatus]) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        for s in statuses:
            msg.status.append(DiagnosticStatus(level=s.level, name=f"{self.node.get_name()}: {s.name}",
                                               message=s.message, hardware_id=s.hardware_id, values=list(s.values)))
        self.publisher.publish(msg)


def make_updater(node: Any, **timer_kwargs: Any) -> tuple[Any, str]:
    """(updater, which): diagnostic_updater's Updater where installed, else the stand-in (its timer created
    with ``timer_kwargs``, e.g. a callback group; diagnostic_updater's own timer is in the node's default group)."""
    try:
        from diagnostic_updater import Updater
    except ImportError:
        return FallbackUpdater(node, **timer_kwargs), "built-in (diagnostic_updater is not installed)"
    return Updater(node), "diagnostic_updater"


# ------------------------------------------------------------------ counting
class RateMeter:
    """Events per second over the last ``window`` seconds, from samples of a cumulative count.

    Exact at any rate (no per-event storage): the rate is the count's change
    between the oldest sample in the window and the newest, over their time.
    """

    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, count: int) -> None:
        self._samples.append((now, count))
        # Keep the newest sample at or before the window's start, so a full window is always spanned.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, c0), (t1, c1) = self._samples[0], self._samples[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0

    def change(self) -> int:
        """How many events the window holds."""
        return self._samples[-1][1] - self._samples[0][1] if len(self._samples) >= 2 else 0


@dataclass(frozen=True)
class FrameReport:
    received: int
    processed: int
    dropped: int
    refused: int
    stamps_out_of_range: int
    received_rate_hz: float
    processed_rate_hz: float
    received_in_window: int
    processed_in_window: int
    refused_in_window: int
    drop_ratio: float  # of the frames received in the window, the share dropped unprocessed
    latency_p50_ms: float
    latency_p99_ms: float
    in_view: int
    last_refusal: str
    window_s: float
    #: Seconds the frame worker has spent on the frame it is processing now (0 when it waits for one).
    busy_s: float = 0.0


class FrameStats:
    """Counters of the frame path; :meth:`report` samples them (call it once per diagnostics period)."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = self.refused = self.stamps_out_of_range = 0
        self.in_view = 0
        self.last_refusal = ""
        self._busy_since: float | None = None
        self._latencies: deque[tuple[float, float]] = deque(maxlen=2000)  # (when, seconds)
        self._meters = {k: RateMeter(window) for k in ("received", "processed", "dropped", "refused")}

    def on_received(self, replaced_unprocessed: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(replaced_unprocessed)

    def working(self, active: bool) -> None:
        """The worker starts (True) or ends (False) a frame. The node's worker takes images only when it is
        ready for one, so a worker stuck on a frame takes none: "received" cannot show it, this does."""
        with self._lock:
            self._busy_since = self.clock() if active else None

    def on_refused(self, reason: str) -> None:
        with self._lock:
            self.refused += 1
            self.last_refusal = reason

    def on_processed(self, latency: float | None, in_view: int) -> None:
        """``latency``: seconds from the image stamp to publication; None when the stamp is from another clock."""
        with self._lock:
            self.processed += 1
            self.in_view = in_view
            if latency is None:
                self.stamps_out_of_range += 1
            else:
                self._latencies.append((self.clock(), latency))

    def report(self) -> FrameReport:
        with self._lock:
            now = self.clock()
            for key, meter in self._meters.items():
                meter.sample(now, getattr(self, key))
            recent = sorted(v for t, v in self._latencies if now - t <= self.window)
            received_w, dropped_w = self._meters["received"].change(), self._meters["dropped"].change()
            return FrameReport(
                self.received, self.processed, self.dropped, self.refused, self.stamps_out_of_range,
                round(self._meters["received"].rate(), 2), round(self._meters["processed"].rate(), 2),
                received_w, self._meters["processed"].change(), self._meters["refused"].change(),
                round(dropped_w / received_w, 3) if received_w else 0.0,
                round(_percentile(recent, 50) * 1e3, 1), round(_percentile(recent, 99) * 1e3, 1),
                self.in_view, self.last_refusal, self.window,
                round(now - self._busy_since, 2) if self._busy_since is not None else 0.0)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


@dataclass(frozen=True)
class Thresholds:
    drop_warn: float = 0.5
    drop_error: float = 0.9
    latency_warn: float = 0.5  # seconds, p99
    latency_error: float = 2.0


def frames_level(r: FrameReport, t: Thresholds) -> tuple[Any, str]:
    """(level, message) of the frame path from a report."""
    refused_in_window = r.refused_in_window
    if r.busy_s >= r.window_s:
        return ERROR, f"stalled: one frame has been processing for {r.busy_s:.0f} s"
    if r.received_in_window > refused_in_window and r.processed_in_window == 0:
        return ERROR, (f"stalled: {r.received_in_window} frames arrived in the last {r.window_s:g} s and none was "
                       "processed")
    if r.received_in_window == 0 and refused_in_window == 0:
        return OK, "waiting for images" if r.received == 0 else f"no images in the last {r.window_s:g} s"
    level, problems = OK, []
    p99 = r.latency_p99_ms / 1e3
    if r.drop_ratio >= t.drop_error or p99 >= t.latency_error:
        level = ERROR
    elif r.drop_ratio >= t.drop_warn or p99 >= t.latency_warn or refused_in_window:
        level = WARN
    if r.drop_ratio >= t.drop_warn:
        problems.append(f"dropping {r.drop_ratio:.0%} of frames (processing {r.processed_rate_hz:.1f} of "
                        f"{r.received_rate_hz:.1f} frames/s)")
    if p99 >= t.latency_warn:
        problems.append(f"p99 latency {r.latency_p99_ms:.0f} ms")
    if refused_in_window:
        problems.append(f"{refused_in_window} images refused: {r.last_refusal}")
    if problems:
        return level, "; ".join(problems)
    return OK, f"processing {r.processed_rate_hz:.1f} of {r.received_rate_hz:.1f} frames/s"
