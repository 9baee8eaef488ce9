"""The package as colcon installs it: interfaces, layout, and the ROS-free core."""

from __future__ import annotations

import ast
import subprocess
import time
from pathlib import Path

import pytest

from conftest import HELPERS, REPO, python_command

CORE = REPO / "affective_memory_ros"


def test_core_never_imports_rclpy() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        if path.relative_to(CORE).parts[0] in ("ros", "bench"):
            continue  # the rclpy adapter, and measurement (the node's latency benchmark and soak start nodes)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "rclpy" or n.startswith("rclpy.") for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"the ROS-free core imports rclpy: {offenders}"


def test_installed_package_is_the_one_under_test() -> None:
    import affective_memory_ros

    # The generated interfaces only exist in the colcon install, not in the source tree.
    assert "install" in Path(affective_memory_ros.__file__).parts
    from affective_memory_ros.msg import ArousalValence, MemoryState, PersonMemory
    from affective_memory_ros.srv import LoadPerson, ResetPerson, SavePerson

    fields = ArousalValence.get_fields_and_field_types()
    assert fields["header"] == "std_msgs/Header" and fields["roi"] == "sensor_msgs/RegionOfInterest"
    for name in ("person_id", "arousal", "valence", "confidence", "encoder_arousal", "encoder_valence",
                 "expression", "expression_confidence", "seeding", "num_neurons"):
        assert name in fields
    assert MemoryState.get_fields_and_field_types()["persons"] == "sequence<affective_memory_ros/PersonMemory>"
    assert "last_seen" in PersonMemory.get_fields_and_field_types()
    for srv in (ResetPerson, SavePerson, LoadPerson):
        response = srv.Response.get_fields_and_field_types()
        assert response["success"] == "boolean" and response["message"] == "string"


@pytest.mark.ros
def test_arousal_valence_crosses_processes(ros_env: dict[str, str], rclpy_context: object) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from affective_memory_ros.msg import ArousalValence

    received: list[ArousalValence] = []
    node = rclpy.create_node("av_test_listener", context=rclpy_context)
    node.create_subscription(ArousalValence, "/affect/av", received.append, 10)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    child = subprocess.Popen(python_command(HELPERS / "publish_av.py"), env=ros_env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while len(received) < 3 and time.monotonic() < deadline and child.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        child.terminate()
        out, _ = child.communicate(timeout=10)
        executor.shutdown()
        node.destroy_node()
    assert received, f"no ArousalValence arrived from the child process; its output:\n{out.decode()[-2000:]}"
    msg = received[-1]
    assert msg.person_id == "p_test" and msg.header.frame_id == "camera_optical"
    assert msg.arousal == pytest.approx(0.25) and msg.valence == pytest.approx(-0.5)
    assert msg.roi.width == 96 and msg.seeding and msg.num_neurons == 7


def test_cli_bench_memory_prints_json() -> None:
    import json
    import shutil

    exe = shutil.which("affective-memory")
    assert exe and "install" in Path(exe).parts, "the colcon install must put affective-memory on PATH"
    out = subprocess.run([exe, "bench-memory", "--sizes", "100,300", "--steps", "50"], check=True,
                         capture_output=True, text=True, timeout=120).stdout
    report = json.loads(out)
    assert set(report["scaling"]) == {"100", "300"}
    assert report["scaling"]["100"]["step_us_median"] > 0
    assert 0 < report["state_bytes_at_2000"] < 1_500_000


def test_cli_bench_perception_prints_json(media_dir: Path) -> None:
    import json
    import shutil

    exe = shutil.which("affective-memory")
    assert exe
    out = subprocess.run([exe, "bench-perception", "--frames", "12", "--device", "cpu",
                          "--video", str(media_dir / "single_face.mp4")],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    report = json.loads(out)
    full = report["results"]["blazeface_full@cpu"]
    assert full["faces_per_frame"] == 1.0 and full["total_ms_median"] > 0


#: The package's layers, lowest first: a module may import from its own layer and those below, never above.
#: An entry is a top-level module or subpackage, or a dotted module inside one (``pk.train``), which then
#: has its own place: a model's architecture and files (``pk``) sit below the encoders that load them, the
#: tools that train and measure it on face sets (``pk.train``, ``facesets``) above them.
LAYERS: list[tuple[str, ...]] = [
    ("atomic_io", "file_format", "metrics", "settings", "splits", "expressions", "image_encoding", "video"),
    ("memory", "perception", "pk", "facechannel"),
    ("encoders", "modes"),
    ("facesets", "pk.data", "pk.train", "pk.evaluate", "pk.recipe", "facechannel.train"),
    ("person", "seed_worker"),
    ("store",),
    ("pipeline", "recordings", "evaluation", "visualize"),
    ("cli", "ros", "bench"),
]
#: The training and measuring layer: the product (everything but cli and bench) never imports it.
TRAINING = LAYERS[3]


def _unit_of(module: str) -> str:
    """The LAYERS entry a module belongs to: the longest entry that is the module or a dotted prefix of it."""
    units = [u for names in LAYERS for u in names if module == u or module.startswith(u + ".")]
    if not units:
        raise AssertionError(f"module {module} is in no layer: add it to LAYERS")
    return max(units, key=len)


def _layer_of(module: str) -> int:
    unit = _unit_of(module)
    return next(i for i, names in enumerate(LAYERS) if unit in names)


def _package_imports() -> dict[str, set[str]]:
    """module (dotted, relative to the package) -> package modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in CORE.rglob("*.py"):
        rel = path.relative_to(CORE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        if not parts or parts[0] in ("msg", "srv"):
            continue
        name = ".".join(parts)
        package = parts[:-1] if rel.name != "__init__" else parts
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1] if node.level > 1 else package
                    target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                elif node.module and node.module.startswith("affective_memory_ros."):
                    target = node.module.removeprefix("affective_memory_ros.")
                else:
                    continue
                if target and target.split(".")[0] not in ("msg", "srv"):
                    found.add(target)
            elif isinstance(node, ast.Import):
                found |= {a.name.removeprefix("affective_memory_ros.") for a in node.names
                          if a.name.startswith("affective_memory_ros.")
                          and a.name.split(".")[1] not in ("msg", "srv")}
        graph[name] = found
    return graph


def test_no_module_imports_from_a_layer_above_it() -> None:
    offenders = [f"{m} -> {t}" for m, targets in _package_imports().items() for t in targets
                 if m and _layer_of(t) > _layer_of(m)]
    assert not offenders, offenders


def test_the_product_never_imports_measurement() -> None:
    offenders = [f"{m} -> {t}" for m, targets in _package_imports().items() for t in targets
                 if t.split(".")[0] == "bench" and m.split(".")[0] not in ("bench", "cli")]
    assert not offenders, offenders


def test_the_product_never_imports_training() -> None:
    offenders = [f"{m} -> {t}" for m, targets in _package_imports().items() for t in targets
                 if _unit_of(t) in TRAINING and m.split(".")[0] not in ("bench", "cli")
                 and _unit_of(m) not in TRAINING]
    assert not offenders, offenders


def test_layer_units_resolve_dotted_modules_first() -> None:
    assert _unit_of("pk.model") == "pk" and _layer_of("pk.model") == 1
    assert _unit_of("pk.train") == "pk.train" and _layer_of("pk.train") == 3
    assert _unit_of("facechannel.train") == "facechannel.train" and _unit_of("facechannel") == "facechannel"
    assert _layer_of("encoders.pk") == 2
    with pytest.raises(AssertionError, match="no layer"):
        _unit_of("pkx.train")


def test_no_import_cycles_between_subpackages() -> None:
    """Between the LAYERS units (subpackages, and the dotted modules that have a layer of their own)."""
    import graphlib

    edges: dict[str, set[str]] = {}
    for m, targets in _package_imports().items():
        unit = _unit_of(m)
        edges.setdefault(unit, set()).update(_unit_of(t) for t in targets if _unit_of(t) != unit)
    graphlib.TopologicalSorter(edges).prepare()  # raises CycleError on a cycle


# ------------------------------------------------------------------ package.xml
#: Top-level import -> the rosdep key that provides it on an apt ROS 2 install.
ROSDEP_KEY_OF = {
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "lifecycle_msgs": "lifecycle_msgs",
    "sensor_msgs": "sensor_msgs", "std_msgs": "std_msgs", "builtin_interfaces": "builtin_interfaces",
    "diagnostic_msgs": "diagnostic_msgs", "diagnostic_updater": "diagnostic_updater", "hri_msgs": "hri_msgs",
    "ament_index_python": "ament_index_python", "numpy": "python3-numpy", "cv2": "python3-opencv",
    "scipy": "python3-scipy", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib",
}
#: Imports without a rosdep key: pip-installed on a robot (requirements/robot.txt, nodeps.txt), by distribution.
PIP_ONLY = {"torch": "torch", "torchvision": "torchvision", "safetensors": "safetensors", "rosbags": "rosbags",
            "trackers": "trackers", "supervision": "supervision"}
#: Imports of optional or development-only code paths, not needed to run the node or the CLI on a robot.
OPTIONAL = {"cv_bridge",  # used when importable and correct (ros/conversion.py probes it)
            "ai_edge_litert",  # converting the BlazeFace .tflite files and the FER baseline (development)
            "threadpoolctl",  # benchmarks
            "launch", "launch_ros", "launch_testing"}  # the launch file and its test (declared separately)
#: Declared keys the code does not import itself, and why.
DECLARED_FOR = {"rosidl_default_runtime": "the generated interfaces", "builtin_interfaces": "msg/ (stamps)",
                "lifecycle_msgs": "rclpy.lifecycle (the managed node)", "launch": "launch/robot.launch.py",
                "launch_ros": "launch/robot.launch.py", "ros2launch": "ros2 launch",
                "python3-requests": "the tracker (pip --no-deps)", "python3-yaml": "the tracker (pip --no-deps)"}


def _package_xml() -> dict[str, set[str]]:
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / "package.xml").getroot()
    kinds: dict[str, set[str]] = {}
    for child in root:
        kinds.setdefault(child.tag, set()).add((child.text or "").strip())
    return kinds


def _third_party_imports() -> set[str]:
    import sys

    found = set()
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "affective_memory_ros"}


def test_package_xml_declares_what_the_code_imports_by_rosdep_key() -> None:
    xml = _package_xml()
    runtime = xml.get("depend", set()) | xml.get("exec_depend", set())
    imports = _third_party_imports()
    unknown = imports - set(ROSDEP_KEY_OF) - set(PIP_ONLY) - OPTIONAL
    assert not unknown, f"new imports: give each a rosdep key in package.xml or a pip line: {sorted(unknown)}"
    missing = {m: ROSDEP_KEY_OF[m] for m in imports & set(ROSDEP_KEY_OF) if ROSDEP_KEY_OF[m] not in runtime}
    assert not missing, f"imported but not declared in package.xml: {missing}"
    unused = runtime - {ROSDEP_KEY_OF[m] for m in imports if m in ROSDEP_KEY_OF} - set(DECLARED_FOR)
    assert not unused, f"declared in package.xml but never imported: {sorted(unused)}"
    assert not runtime & {"python3-torch", "python3-torchvision", "cv_bridge"}, "no key / not needed"


def test_pip_only_imports_are_in_the_robot_requirements_and_nothing_the_os_provides_is_pinned() -> None:
    import re

    robot = (REPO / "requirements" / "robot.txt").read_text() + (REPO / "requirements" / "nodeps.txt").read_text()
    names = {re.split(r"[=<>!~ ;\[]", line.strip(), maxsplit=1)[0].lower() for line in robot.splitlines()
             if line.strip() and not line.lstrip().startswith("#")}
    for module, dist in PIP_ONLY.items():
        assert dist.lower() in names, f"{module} ({dist}) has no rosdep key: it must be in requirements/robot.txt"
    provided_by_apt = {"numpy", "opencv-python", "opencv-python-headless", "scipy", "matplotlib", "tqdm", "pyyaml",
                       "requests", "pillow"}
    assert not names & provided_by_apt, f"apt provides these on a robot; never pin them: {names & provided_by_apt}"


def test_the_readme_install_block_is_what_the_ros_jazzy_workflow_runs() -> None:
    """The workflow runs the README's block itself (no copy that could drift); the block has what it needs."""
    import re

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Install on a robot with apt-installed ROS 2 Jazzy", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the section's first ```bash block is the install recipe"
    text = block.group(1)
    for needed in ("git clone <this repository> affective_memory_ros", "--system-site-packages",
                   "requirements/robot.txt", "-DPython3_EXECUTABLE=", "rosdep install"):
        assert needed in text, needed
    assert "--break-system-packages" not in text
    workflow = (REPO / ".github" / "workflows" / "ros.yml").read_text()
    assert "## Install on a robot with apt-installed ROS 2 Jazzy" in workflow and '"pytest<9"' in workflow
