#!/usr/bin/env bash
# CPU smoke test of a built worker image, before it is pushed (the worker-image workflow runs it;
# it also runs on any machine with Docker):
#   comfyui-worker/smoke-test.sh comfyui-worker:smoke
# Passes when the container, with CPU_ONLY=true and an empty models tree mounted where the SFS
# goes: answers 200 {"status":"ok"} on /health, registers the SFS model folders, runs as non-root,
# turns Docker-healthy through its own HEALTHCHECK, has each custom node of custom-nodes.txt at its
# pinned commit, and stops on SIGTERM without being killed.
#   SMOKE_CUSTOM_NODES [custom-nodes.txt beside this script] the pinned list to check;
#   SMOKE_TIMEOUT [600] seconds to wait for /health; SMOKE_PORT [18188] host port;
#   SMOKE_POLL_SECONDS [5] pause between probes; SMOKE_STOP_SECONDS [30] SIGTERM grace (Verda's)
set -euo pipefail

image=${1:?usage: smoke-test.sh IMAGE}
timeout=${SMOKE_TIMEOUT:-600}
host_port=${SMOKE_PORT:-18188}
poll=${SMOKE_POLL_SECONDS:-5}
stop_grace=${SMOKE_STOP_SECONDS:-30}
node_list=${SMOKE_CUSTOM_NODES:-$(dirname -- "$(readlink -f -- "$0")")/custom-nodes.txt}
name="comfyui-worker-smoke-$$"
models=$(mktemp -d)
passed=false

say() { printf '[smoke] %s\n' "$*"; }
fail() {
  printf '[smoke] FAILED: %s\n' "$*" >&2
  exit 1
}
cleanup() {
  if [[ "$passed" != true ]]; then
    say "container logs:"
    docker logs "$name" 2>&1 | tail -n 200 || true
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$models"
}
trap cleanup EXIT

mkdir -p "$models"/{checkpoints,text_encoders,latent_upscale_models,loras}
chmod -R a+rX "$models"

say "starting $image (CPU_ONLY=true, models from $models at /mnt/sfs/models)"
docker run --detach --name "$name" \
  --env CPU_ONLY=true \
  --volume "$models:/mnt/sfs/models:ro" \
  --publish "127.0.0.1:$host_port:8188" \
  "$image" >/dev/null

health_url="http://127.0.0.1:$host_port/health"
deadline=$((SECONDS + timeout))
body=''
until body=$(curl --fail --silent --max-time 5 "$health_url"); do
  if [[ "$(docker inspect --format '{{.State.Running}}' "$name")" != true ]]; then
    fail "the container exited (code $(docker inspect --format '{{.State.ExitCode}}' "$name")) before /health answered"
  fi
  ((SECONDS < deadline)) || fail "/health did not answer 200 within ${timeout}s"
  sleep "$poll"
done
say "/health answered after ${SECONDS}s: $body"
[[ "$body" == *'"status": "ok"'* || "$body" == *'"status":"ok"'* ]] ||
  fail "/health body has no status ok: $body"

uid=$(docker exec "$name" id -u)
[[ "$uid" != 0 ]] || fail "the worker runs as root"
say "runs as uid $uid"

# Each pinned custom node is in the image at its commit (the installer's .comfyume-pin stamp).
[[ -f "$node_list" ]] || fail "custom-nodes list $node_list is missing"
nodes=0
while IFS= read -r line || [[ -n "$line" ]]; do
  line=${line%%#*}
  read -r url commit _ <<<"$line" || true
  [[ -n "${url:-}" ]] || continue
  node=${url%/}
  node=${node##*/}
  node=${node%.git}
  pin=$(docker exec "$name" cat "/opt/ComfyUI/custom_nodes/$node/.comfyume-pin" 2>/dev/null) ||
    fail "custom node $node ($url) is not in the image"
  [[ "$pin" == "$url $commit" ]] || fail "custom node $node is '$pin', expected '$url $commit'"
  nodes=$((nodes + 1))
done <"$node_list"
say "custom nodes at their pinned commits: $nodes"

docker logs "$name" 2>&1 | grep -q 'checkpoints /mnt/sfs/models/checkpoints' ||
  fail "ComfyUI did not register /mnt/sfs/models/checkpoints from extra_model_paths.yaml"
say "model folders registered from /mnt/sfs/models"

# The image's own HEALTHCHECK (interval 15 s) must agree with what we saw.
for _ in $(seq 1 12); do
  status=$(docker inspect --format '{{.State.Health.Status}}' "$name")
  [[ "$status" == healthy ]] && break
  sleep "$poll"
done
[[ "$status" == healthy ]] || fail "Docker health status is '$status', expected healthy"
say "Docker HEALTHCHECK: healthy"

# Verda scale-down sends SIGTERM and kills after 30 s; exit code 137 would mean SIGKILL.
docker stop --time "$stop_grace" "$name" >/dev/null
code=$(docker inspect --format '{{.State.ExitCode}}' "$name")
[[ "$code" != 137 ]] || fail "the worker ignored SIGTERM and was killed (exit 137)"
say "stopped on SIGTERM (exit $code)"

passed=true
say "passed"
