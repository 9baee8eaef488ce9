"""The node's parameters, generated from the settings' one declaration (:mod:`affective_memory_ros.settings`).

Each setting becomes a parameter with its description, its range (enforced by
rclpy at declaration and on every later set) and its choices (listed in the
descriptor and checked when the configs are built, in ``on_configure``).
Values come from ``config/affective_memory.yaml`` or ``--ros-args -p``.

The node is a lifecycle node that reads its settings in ``on_configure``, so a
setting that is not marked run-time may change only while the node is
unconfigured (then takes effect at the next configure);
:func:`refuse_while_configured` is the one check rclpy's descriptors cannot
make. Types and ranges are rclpy's to check (descriptors), never repeated here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node

from ..settings import coerce, infos
from .config import NODE_CONFIGS


def declare_parameters(node: Node) -> None:
    """Declare every setting; an out-of-range value from a parameter file raises rclpy's exception."""
    for config_type in NODE_CONFIGS:
        for info in infos(config_type):
            desc = ParameterDescriptor(description=info.help + ("" if info.runtime else
                                                                " (read in on_configure)"))
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


#: Settings that may change while the node is configured (read where they are used).
RUNTIME_SETTINGS: frozenset[str] = frozenset(i.name for ct in NODE_CONFIGS for i in infos(ct) if i.runtime)
SETTING_NAMES: frozenset[str] = frozenset(i.name for ct in NODE_CONFIGS for i in infos(ct))


def refuse_while_configured(is_unconfigured: Callable[[], bool],
                            current: Callable[[str], Any] | None = None) -> Callable[[list[Any]], SetParametersResult]:
    """A set-parameters callback: settings read in ``on_configure`` change only while the node is unconfigured,
    and a run-time change must leave its config valid as a whole (rules between settings, such as a warning
    threshold below its error threshold, hold at run time as at start). ``current(name)`` is a parameter's
    present value."""

    def check(parameters: list[Any]) -> SetParametersResult:
        if not is_unconfigured():
            fixed = [p.name for p in parameters if p.name in SETTING_NAMES and p.name not in RUNTIME_SETTINGS]
            if fixed:
                return SetParametersResult(successful=False, reason=(
                    f"{', '.join(fixed)} is read-only while the node is configured (it is read in on_configure): "
                    "deactivate and clean up the node, set it, then configure again"))
        if current is not None:
            new = {p.name: p.value for p in parameters if p.name in SETTING_NAMES}
            for config_type in NODE_CONFIGS:
                names = [i.name for i in infos(config_type)]
                if not new.keys() & set(names):
                    continue
                try:
                    config_type(**{i.name: coerce(i, new[i.name] if i.name in new else _value(current, i))
                                   for i in infos(config_type)})
                except (ValueError, TypeError) as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    return check


def _value(current: Callable[[str], Any], info: Any) -> Any:
    """A parameter's present value; its default while it is not declared yet (callbacks run at declaration)."""
    try:
        return current(info.name)
    except Exception:  # rclpy's ParameterNotDeclaredException
        return info.default


def read_configs(node: Node) -> tuple[Any, ...]:
    """The node's configs (NodeConfig, PipelineConfig, MemorySettings, StoreConfig) from its parameters.

    Raises ValueError naming every invalid setting (choices included).
    """
    out = []
    for config_type in NODE_CONFIGS:
        values = {i.name: coerce(i, node.get_parameter(i.name).value) for i in infos(config_type)}
        out.append(config_type(**values))
    return tuple(out)
