"""Settings that only the node has (lifecycle, input, ROS4HRI, rates, diagnostics), declared once like every
other setting.

Topic and service names are not settings: they are relative ROS names
(``image``, ``affect/av``, ``affect/reset_person``, ``humans/faces/...``),
moved by ``--ros-args -r __ns:=/robot1`` and changed by remapping
(``-r image:=/camera/color/image_raw``), as ROS nodes do (docs/ros.md).

Kept free of rclpy so the README's parameter table can be generated anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..modes import MemorySettings
from ..pipeline import PipelineConfig
from ..settings import check, setting
from ..store import StoreConfig


@dataclass(frozen=True)
class NodeConfig:
    autostart: bool = setting(True, "configure and activate the (lifecycle) node at start; false: wait for a "
                                    "lifecycle manager's configure and activate", cli=False)
    input_mode: str = setting("camera", "camera: faces from the node's own detector on `image`; ros4hri: faces "
                                        "from a ROS4HRI pipeline (humans/faces/tracked and each face's image)",
                              choices=("camera", "ros4hri"), cli=False)
    image_transport: str = setting("raw", "camera input: raw = sensor_msgs/Image on `image`, compressed = "
                                          "sensor_msgs/CompressedImage (JPEG/PNG) on `image/compressed`",
                                   choices=("raw", "compressed"), cli=False)
    ros4hri_face_image: str = setting("aligned", "ros4hri input: which image of each face to read, "
                                                 "humans/faces/FACE_ID/aligned or .../cropped",
                                      choices=("aligned", "cropped"), cli=False)
    ros4hri_output: bool = setting(True, "publish REP-155 topics (humans/faces/tracked, humans/faces/<id>/roi and "
                                         "/expression, humans/candidate_matches) when hri_msgs is installed",
                                   cli=False)
    publish_debug_image: bool = setting(False, "publish the annotated debug image", cli=False)
    memory_state_rate: float = setting(1.0, "MemoryState publication rate (Hz)", range=(0.1, 50.0), cli=False)
    diagnostics_drop_warn: float = setting(0.5, "diagnostics WARN when this share of received frames is dropped "
                                                "(last 10 s)", range=(0.0, 1.0), runtime=True, cli=False)
    diagnostics_drop_error: float = setting(0.9, "diagnostics ERROR when this share of received frames is dropped "
                                                 "(last 10 s)", range=(0.0, 1.0), runtime=True, cli=False)
    diagnostics_latency_warn: float = setting(0.5, "diagnostics WARN when the p99 latency, image stamp to "
                                                   "published estimate, exceeds this (s)", range=(0.0, 3600.0),
                                              runtime=True, cli=False)
    diagnostics_latency_error: float = setting(2.0, "diagnostics ERROR when the p99 latency exceeds this (s)",
                                               range=(0.0, 3600.0), runtime=True, cli=False)

    def __post_init__(self) -> None:
        check(self)
        if self.diagnostics_drop_error < self.diagnostics_drop_warn:
            raise ValueError(f"invalid NodeConfig: diagnostics_drop_error={self.diagnostics_drop_error} must be at "
                             f"least diagnostics_drop_warn={self.diagnostics_drop_warn}")
        if self.diagnostics_latency_error < self.diagnostics_latency_warn:
            raise ValueError(f"invalid NodeConfig: diagnostics_latency_error={self.diagnostics_latency_error} must "
                             f"be at least diagnostics_latency_warn={self.diagnostics_latency_warn}")


#: Every config the node reads its parameters into, in the README table's order.
NODE_CONFIGS: tuple[type, ...] = (NodeConfig, PipelineConfig, MemorySettings, StoreConfig)
