"""The node's parameters: one table with defaults, descriptions and ranges.

Values come from ``config/affective_memory.yaml`` (or ``--ros-args -p``).
Ranges are enforced by rclpy at declaration and on every later set; choices
and cross-field rules by :func:`validate_update`. Parameters that shape the
pipeline are read-only after start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from ..memory import GWRConfig
from ..perception.detectors import DEFAULT_DETECTOR, DETECTORS
from ..pipeline import DEFAULT_DISTANCE_SCALE, PipelineConfig

# name: (default, description, range (lo, hi) or choices tuple or None, read_only)
PARAMETERS: dict[str, tuple[Any, str, Any, bool]] = {
    "image_topic": ("/camera/image_raw", "camera topic (sensor_msgs/Image)", None, True),
    "av_topic": ("/affect/av", "ArousalValence output topic", None, True),
    "memory_state_topic": ("/affect/memory_state", "MemoryState output topic", None, True),
    "debug_image_topic": ("/affect/debug_image", "annotated image topic", None, True),
    "publish_debug_image": (False, "publish the annotated debug image", None, True),
    "memory_state_rate": (1.0, "MemoryState publication rate (Hz)", (0.1, 50.0), True),
    "device": ("auto", "PK device", ("auto", "cpu", "cuda"), True),
    "precision": ("fp32", "PK precision on CUDA (fp16 = autocast)", ("fp32", "fp16"), True),
    "detector": (DEFAULT_DETECTOR, "face detector", DETECTORS, True),
    "pk_model": ("", "PK inference model file; empty = the shipped default", None, True),
    "init_frames": (25, "frames of a person's memory seeded from PK edits", (1, 10000), True),
    "edits_per_frame": (48, "PK edits per seeding frame", (1, 1024), True),
    "max_seed_edits": (96, "PK edits per frame across all seeding persons (bounds a frame's cost)", (1, 65536), True),
    "max_persons": (32, "memories kept in RAM; least recently seen are saved and evicted", (1, 4096), True),
    "reid_threshold": (0.45, "appearance similarity to give a returning person their ID", (0.0, 1.0), True),
    "activity_threshold": (0.4, "GWR insertion threshold t_a", (0.0, 1.0), True),
    "habituation_threshold": (0.2, "GWR habituation threshold t_h", (0.0, 2.0), True),
    "max_neurons": (2000, "neuron cap per memory", (2, 100000), True),
    "distance_scale": (DEFAULT_DISTANCE_SCALE, "activity distance scale sigma", (0.001, 1000.0), True),
    "store_dir": ("", "memory store folder; empty = no persistence", None, True),
    "load_on_start": (True, "reload the store's memories at start", None, True),
    "save_on_shutdown": (True, "save every memory to the store at shutdown", None, False),
    "autosave_period": (60.0, "seconds between saves of every memory to the store (0 = off)", (0.0, 86400.0), True),
    "allow_external_paths": (False, "let save/load use paths outside the store", None, True),
    "seed": (0, "seed for edit targets and person IDs", (0, 2**31 - 1), True),
}


def declare_parameters(node: Node) -> None:
    for name, (default, text, bounds, read_only) in PARAMETERS.items():
        desc = ParameterDescriptor(description=text, read_only=read_only)
        if isinstance(bounds, tuple) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds) \
                and not isinstance(default, str):
            if isinstance(default, float):
                desc.floating_point_range = [FloatingPointRange(from_value=float(bounds[0]),
                                                                to_value=float(bounds[1]), step=0.0)]
            else:
                desc.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
        elif isinstance(bounds, tuple):
            desc.additional_constraints = "one of: " + ", ".join(bounds)
        node.declare_parameter(name, default, desc)
        reason = validate_value(name, node.get_parameter(name).value)
        if reason:
            raise ValueError(f"parameter {name}: {reason}")


def validate_value(name: str, value: Any) -> str | None:
    default, _, bounds, _ = PARAMETERS[name]
    if isinstance(default, str) and isinstance(bounds, tuple) and value not in bounds:
        return f"{value!r} is not one of {', '.join(bounds)}"
    return None


def validate_update(params: Sequence[Any]) -> str | None:
    """Reason to refuse a runtime update, or None. rclpy already checks types and ranges."""
    for p in params:
        if p.name in PARAMETERS:
            reason = validate_value(p.name, p.value)
            if reason:
                return f"{p.name}: {reason}"
    return None


def memory_config(node: Node) -> GWRConfig:
    g = node.get_parameter
    return GWRConfig(activity_threshold=g("activity_threshold").value,
                     habituation_threshold=g("habituation_threshold").value, max_neurons=g("max_neurons").value,
                     distance_scale=g("distance_scale").value)


def pipeline_config(node: Node) -> PipelineConfig:
    g = node.get_parameter
    return PipelineConfig(detector=g("detector").value, device=g("device").value, precision=g("precision").value,
                          pk_model=g("pk_model").value or None, init_frames=g("init_frames").value,
                          edits_per_frame=g("edits_per_frame").value, max_seed_edits=g("max_seed_edits").value,
                          max_persons=g("max_persons").value,
                          reid_threshold=g("reid_threshold").value, memory=memory_config(node), seed=g("seed").value)
