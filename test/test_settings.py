"""Every setting is declared once: the parameter file, the README's table and the CLI agree with the declarations."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from affective_memory_ros.ros.config import NODE_CONFIGS, NodeConfig
from affective_memory_ros.settings import add_arguments, from_arguments, infos, markdown_table

from conftest import REPO


def _yaml_parameters() -> dict[str, object]:
    import yaml

    data = yaml.safe_load((REPO / "config" / "affective_memory.yaml").read_text())
    return data["/**"]["ros__parameters"]


def test_the_parameter_file_holds_every_setting_at_its_declared_default() -> None:
    declared = {i.name: i.default for ct in NODE_CONFIGS for i in infos(ct)}
    shipped = _yaml_parameters()
    assert set(shipped) == set(declared), (set(shipped) ^ set(declared))
    for name, default in declared.items():
        assert shipped[name] == default and type(shipped[name]) is type(default), (name, shipped[name], default)


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text()
    assert markdown_table(NODE_CONFIGS) in readme, "regenerate the README's parameter table: " \
        "python -c 'from affective_memory_ros.settings import markdown_table; " \
        "from affective_memory_ros.ros.config import NODE_CONFIGS; print(markdown_table(NODE_CONFIGS))'"


def test_the_cli_offers_every_setting_but_the_nodes_own() -> None:
    from affective_memory_ros.cli import build_parser

    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    flags = {a.dest for a in run._actions}
    for ct in NODE_CONFIGS:
        for info in infos(ct):
            assert (info.name in flags) == info.cli, info.name
    assert not any(i.cli for i in infos(NodeConfig)), "topics and rates are the node's alone"


def test_flags_round_trip_into_validated_configs() -> None:
    from affective_memory_ros.modes import MemorySettings
    from affective_memory_ros.pipeline import PipelineConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser, PipelineConfig, MemorySettings)
    args = parser.parse_args(["--max-seed-edits", "7", "--reid-threshold", "0.9", "--device", "cuda:1"])
    assert from_arguments(PipelineConfig, args) == PipelineConfig(max_seed_edits=7, reid_threshold=0.9, device="cuda:1")
    with pytest.raises(ValueError, match="max_seed_edits"):
        from_arguments(PipelineConfig, parser.parse_args(["--max-seed-edits", "0"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--detector", "nonsense"])


def test_ranges_and_choices_are_checked_once_for_everyone() -> None:
    from affective_memory_ros.pipeline import PipelineConfig

    with pytest.raises(ValueError) as err:
        PipelineConfig(max_persons=0, reid_threshold=2.0, precision="fp8")
    text = str(err.value)
    assert "max_persons=0 must be in [1, 4096]" in text and "reid_threshold" in text and "fp8" in text
    with pytest.raises(ValueError, match="must be of type int"):
        PipelineConfig(max_persons=2.5)  # type: ignore[arg-type]


def test_the_yaml_in_the_package_share_is_the_source_one() -> None:
    from ament_index_python.packages import get_package_share_directory

    installed = Path(get_package_share_directory("affective_memory_ros")) / "config" / "affective_memory.yaml"
    assert installed.read_text() == (REPO / "config" / "affective_memory.yaml").read_text()
