"""One harness for every process that starts the node: the demo, the benchmarks, the soak and the tests.

* :func:`dds_environment`: DDS stays on this machine (localhost-only discovery)
  with a domain ID of the caller's own, so parallel runs never see each other
  or another robot. Every process that creates a ROS node sets it.
* :func:`node_command`: the installed node executable with the package's
  parameter file, ``-p`` overrides, the camera remapped onto the node's
  ``image`` input, and a namespace.
* :func:`stop_node`: SIGINT (a clean shutdown that saves memories), then kill
  if it hangs.
* :func:`media_dir`: the real media fetched at set-up (``scripts/fetch_media.sh``).

Free of rclpy, so a test's process can set the environment before rclpy is imported.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any


def dds_environment(domain_id: int | None = None) -> dict[str, str]:
    """Localhost-only DDS with a domain ID of this process's own (1..100, clear of ephemeral ports).

    ``ROS_LOCALHOST_ONLY`` is deprecated in Jazzy and only adds warnings; the
    discovery range is what keeps DDS here.
    """
    return {
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(domain_id if domain_id is not None else 1 + os.getpid() % 100),
    }


def node_command(params_file: str | None = None, *overrides: str, camera: str | None = None,
                 namespace: str | None = None, ros_args: tuple[str, ...] = ()) -> list[str]:
    """The installed node executable with the package's parameter file, ``-p`` overrides, the ``camera`` topic
    remapped onto the node's relative ``image`` input (``-r image:=camera``), a ``namespace`` and extra ROS args.

    The node has no topic parameters (names are remapped, docs/ros.md); an ``image_topic:=T`` override, the
    old parameter, is turned into ``camera=T`` so that older callers keep working.
    """
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    exe = Path(get_package_prefix("affective_memory_ros")) / "lib" / "affective_memory_ros" / "affective_memory_node"
    params = params_file or str(Path(get_package_share_directory("affective_memory_ros")) / "config" /
                                "affective_memory.yaml")
    cmd = [str(exe), "--ros-args", "--params-file", params]
    for o in overrides:
        if o.startswith("image_topic:="):
            camera = o.split(":=", 1)[1]
            continue
        cmd += ["-p", o]
    if camera:
        cmd += ["-r", f"image:={camera}"]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    return cmd + list(ros_args)


def stop_node(proc: subprocess.Popen[Any], timeout: float = 20.0) -> int:
    """SIGINT (a clean shutdown that saves memories), then kill if it hangs; returns the exit code."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def media_dir() -> Path:
    """The real media fetched at set-up time from registry packages."""
    return Path(os.environ.get("AFFECTIVE_MEMORY_MEDIA", ".cache/media"))
