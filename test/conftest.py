"""Shared fixtures. Importing this module pins DDS to this machine.

Every process that creates a ROS node must keep DDS discovery on localhost and
use a domain ID of its own, so parallel test runs (and other robots on the
network) never see each other. The test process sets this before rclpy is
imported anywhere, and child processes inherit it through :func:`ros_env`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "helpers"

from affective_memory_ros.ros.harness import dds_environment  # noqa: E402 - rclpy-free: sets nothing itself

DDS_ENV = dds_environment()
os.environ.update(DDS_ENV)


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """Environment for child processes that create ROS nodes."""
    env = dict(os.environ)
    env.update(DDS_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """Real media fetched at set-up time from registry packages (scripts/fetch_media.sh)."""
    from affective_memory_ros.ros.harness import media_dir as configured

    path = configured() if "AFFECTIVE_MEMORY_MEDIA" in os.environ else REPO / ".cache" / "media"
    if not (path / ".complete").exists():
        pytest.fail(f"test media missing in {path}: run scripts/setup.sh")
    return path


@pytest.fixture()
def rclpy_context() -> Iterator[object]:
    """An initialised rclpy context for the test process, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


def python_command(script: Path, *args: str) -> list[str]:
    return [sys.executable, str(script), *args]
