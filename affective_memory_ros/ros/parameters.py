"""The node's parameters, generated from the settings' one declaration (:mod:`affective_memory_ros.settings`).

Each setting becomes a parameter with its description, its range (enforced by
rclpy at declaration and on every later set), its choices (listed in the
descriptor and checked when the configs are built) and ``read_only`` unless
the setting may change at run time. Values come from
``config/affective_memory.yaml`` or ``--ros-args -p``.
"""

from __future__ import annotations

from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from ..settings import coerce, infos
from .config import NODE_CONFIGS


def declare_parameters(node: Node) -> None:
    """Declare every setting; an out-of-range value from a parameter file raises rclpy's exception."""
    for config_type in NODE_CONFIGS:
        for info in infos(config_type):
            desc = ParameterDescriptor(description=info.help, read_only=not info.runtime)
            if info.range is not None:
                lo, hi = info.range
                if info.type is float:
                    desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
                else:
                    desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
            if info.choices is not None:
                desc.additional_constraints = "one of: " + ", ".join(info.choices) + (
                    "".join(f", {p}N" for p in info.prefix_choices))
            node.declare_parameter(info.name, info.default, desc)


def read_configs(node: Node) -> tuple[Any, ...]:
    """The node's configs (NodeConfig, PipelineConfig, MemorySettings, StoreConfig) from its parameters.

    Raises ValueError naming every invalid setting (choices included).
    """
    out = []
    for config_type in NODE_CONFIGS:
        values = {i.name: coerce(i, node.get_parameter(i.name).value) for i in infos(config_type)}
        out.append(config_type(**values))
    return tuple(out)
