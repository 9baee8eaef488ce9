#!/usr/bin/env bash
# The README's test command: set up everything (idempotent), then lint and run
# every test against the colcon-installed package. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
cd "$ROOT"
echo "[test] ruff check" >&2
ruff check .
echo "[test] pytest" >&2
# Plain `pytest` (not `python -m pytest`) so the installed package, which holds
# the generated msg/srv modules, is imported rather than the source tree.
exec pytest test "$@"
