# Source this file (bash) to use the project's venv and colcon install:
#   source scripts/env.sh
# It activates .venv, points ament at the venv prefix (the PyPI ROS wheels do not
# set AMENT_PREFIX_PATH themselves) and sources install/setup.bash when present.
# It does NOT set any DDS variables: every process that creates a ROS node sets
# its own (see affective_memory_ros.ros.dds_env and the test fixtures).
# The venv's activate and colcon's setup.bash read unset variables: relax -u here.
case $- in *u*) _amr_nounset=1; set +u ;; *) _amr_nounset=0 ;; esac
_amr_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_amr_venv="${AFFECTIVE_MEMORY_VENV:-$_amr_root/.venv}"
# shellcheck disable=SC1091
source "$_amr_venv/bin/activate"
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$VIRTUAL_ENV:"*) ;;
  *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
export AFFECTIVE_MEMORY_MEDIA="${AFFECTIVE_MEMORY_MEDIA:-$_amr_root/.cache/media}"
if [ "${1:-}" != "--no-install" ] && [ -f "$_amr_root/install/setup.bash" ]; then
  # shellcheck disable=SC1091
  source "$_amr_root/install/setup.bash"
fi
[ "$_amr_nounset" = 1 ] && set -u
unset _amr_root _amr_venv _amr_nounset
