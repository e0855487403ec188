#!/usr/bin/env bash
# Docker HEALTHCHECK of the ComfyUI worker: healthy when ComfyUI answers 200 on the health path
# (served by the comfyume_health custom node). Verda probes the same path from outside.
#   PORT [8188], HEALTH_PATH [/health], HEALTH_TIMEOUT [4] seconds
set -euo pipefail

port=${PORT:-8188}
path=${HEALTH_PATH:-/health}
[[ "$path" == /* ]] || path="/$path"
exec curl --fail --silent --show-error --max-time "${HEALTH_TIMEOUT:-4}" --output /dev/null \
  "http://127.0.0.1:${port}${path}"
