"""One source of truth for every user setting.

Each setting is declared once, as a field of a typed, frozen config dataclass
(``PipelineConfig``, ``StoreConfig``, the node's ``NodeConfig``) with
:func:`setting`: default, range or choices, help, and whether it may change at
run time. Everything else is generated from those declarations:

* the ROS parameter descriptors (``ros/parameters.py``),
* the ``affective-memory`` CLI flags (:func:`add_arguments`, :func:`from_arguments`),
* the README's parameter table (:func:`markdown_table`; a test compares it),
* the checks of ``config/affective_memory.yaml`` (a test compares it).

Validation is generic too (:func:`check`): a config refuses a value outside
its range or choices with one line per problem, so the node, the CLI and the
library all say the same thing.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class SettingInfo:
    name: str
    default: Any
    help: str
    range: tuple[float, float] | None
    choices: tuple[str, ...] | None
    runtime: bool
    #: False for settings that only the node has (topics, rates); the CLI does not offer them.
    cli: bool
    #: Extra choices a value may take beyond ``choices`` by prefix (``cuda:1`` for ``cuda``).
    prefix_choices: tuple[str, ...]

    @property
    def type(self) -> type:
        return type(self.default)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        expected = self.type
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            return f"{self.name}={value!r} must be of type {expected.__name__}"
        if self.range is not None:
            lo, hi = self.range
            if (isinstance(value, float) and not math.isfinite(value)) or not lo <= value <= hi:
                return f"{self.name}={value!r} must be in [{_fmt(lo)}, {_fmt(hi)}]"
        if self.choices is not None and value not in self.choices \
                and not any(value.startswith(p) for p in self.prefix_choices):
            return f"{self.name}={value!r} must be one of {', '.join(self.choices)}"
        return None


def setting(default: T, help: str, *, range: tuple[float, float] | None = None,
            choices: Iterable[str] | None = None, runtime: bool = False, cli: bool = True,
            prefix_choices: Iterable[str] = ()) -> T:
    """Declare one setting as a dataclass field (use as the field's default)."""
    meta = {"help": help, "range": range, "choices": tuple(choices) if choices is not None else None,
            "runtime": runtime, "cli": cli, "prefix_choices": tuple(prefix_choices)}
    return dataclasses.field(default=default, metadata={"setting": meta})  # type: ignore[return-value]


def infos(config_type: type) -> list[SettingInfo]:
    """The settings a config dataclass declares, in declaration order."""
    out = []
    for f in dataclasses.fields(config_type):
        meta = f.metadata.get("setting")
        if meta is not None:
            out.append(SettingInfo(f.name, f.default, **meta))
    return out


def check(config: Any) -> None:
    """Raise ValueError naming every setting of ``config`` whose value is out of range or not a choice."""
    problems = [p for info in infos(type(config)) if (p := info.problem(getattr(config, info.name)))]
    if problems:
        raise ValueError(f"invalid {type(config).__name__}: " + "; ".join(problems))


def coerce(info: SettingInfo, value: Any) -> Any:
    """Ints given for float settings become floats (ROS YAML and CLI write ``2`` for ``2.0``)."""
    if info.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# ------------------------------------------------------------------ the CLI side
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, *config_types: type, skip: Iterable[str] = ()) -> None:
    """One ``--flag`` per CLI setting of ``config_types``, defaults and help from the declarations."""
    skipped = set(skip)
    for config_type in config_types:
        group = parser.add_argument_group(config_type.__name__)
        for info in infos(config_type):
            if not info.cli or info.name in skipped:
                continue
            text = info.help + (f" (default: {_fmt(info.default)}" + (
                f"; range [{_fmt(info.range[0])}, {_fmt(info.range[1])}])" if info.range else ")"))
            if info.type is bool:
                group.add_argument(_flag(info.name), dest=info.name, default=info.default,
                                   action=argparse.BooleanOptionalAction, help=info.help)
            else:
                group.add_argument(_flag(info.name), dest=info.name, default=info.default, type=info.type,
                                   choices=None if info.prefix_choices else info.choices,
                                   metavar=None if info.choices and not info.prefix_choices else info.name.upper(),
                                   help=text)


def from_arguments(config_type: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build a config from parsed CLI arguments (settings the CLI does not offer keep their defaults)."""
    values = {info.name: getattr(args, info.name) for info in infos(config_type)
              if info.cli and hasattr(args, info.name)}
    values.update(overrides)
    return config_type(**values)


# ------------------------------------------------------------------ docs
def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if value == "" else value
    if isinstance(value, float):
        return repr(value)
    return str(value)


def markdown_table(config_types: Iterable[type]) -> str:
    """The README's parameter table, generated from the declarations."""
    rows = ["| parameter | default | range / choices | run time | meaning |", "|---|---|---|---|---|"]
    for config_type in config_types:
        for info in infos(config_type):
            limits = (f"[{_fmt(info.range[0])}, {_fmt(info.range[1])}]" if info.range else
                      " / ".join(info.choices) if info.choices else "")
            rows.append(f"| `{info.name}` | `{_fmt(info.default)}` | {limits} | {'yes' if info.runtime else 'no'} | "
                        f"{info.help} |")
    return "\n".join(rows) + "\n"


def yaml_defaults(config_types: Iterable[type]) -> Iterator[tuple[str, Any]]:
    """(name, default) of every setting, for comparing with the shipped parameter file."""
    for config_type in config_types:
        for info in infos(config_type):
            yield info.name, info.default
