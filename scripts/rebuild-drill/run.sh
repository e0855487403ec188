#!/usr/bin/env bash
# The weekly rebuild drill on a GitHub-hosted runner: a fresh Ubuntu 24.04 container booted with
# systemd is rebuilt by the backup's own RESTORE.sh from the backup the restore drill has just
# verified (restore-drill keep-backup-dir), then verify-host checks it from outside.
# The restored Tailscale identity never comes online (the tailscale step is skipped: the real
# host may be alive), nor do the services (no GPU, no docker daemon in the container), and the
# checks of those are left out (config/verify-drill.yml).
#
# Usage: run.sh KEEP_DIR IDENTITY_FILE
# Writes to $GITHUB_OUTPUT: address (the container's), ssh-key (a throwaway key for its root,
# masked), restore-seconds; and the steps table to $GITHUB_STEP_SUMMARY.
set -euo pipefail
keep=${1:?usage: run.sh KEEP_DIR IDENTITY_FILE}
identity=${2:?usage: run.sh KEEP_DIR IDENTITY_FILE}
here=$(cd "$(dirname "$0")" && pwd)
work=${RUNNER_TEMP:-/tmp}/rebuild-drill
out=${GITHUB_OUTPUT:-/dev/null}
summary=${GITHUB_STEP_SUMMARY:-/dev/null}
name=comfyume-fresh-host
image=comfyume-rebuild-drill
mkdir -p "$work"

docker build -q -t "$image" "$here" >/dev/null
docker rm -f "$name" >/dev/null 2>&1 || true
docker run -d --name "$name" --hostname gpu-rebuild-drill --privileged --cgroupns=host \
  -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock "$image" >/dev/null

state=''
for _ in $(seq 90); do
  state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
  [[ $state == running || $state == degraded ]] && break
  sleep 1
done
[[ $state == running || $state == degraded ]] || {
  echo "the fresh host did not boot (systemd: ${state:-no answer})" >&2
  exit 1
}

docker exec "$name" mkdir -p /root/restore/backup
docker cp "$keep/." "$name:/root/restore/backup/"
docker cp "$identity" "$name:/root/restore/identity"
docker exec "$name" chmod 600 /root/restore/identity

# A throwaway key for verify-host's root login; the container is removed after the job.
rm -f "$work/ssh-key" "$work/ssh-key.pub"
ssh-keygen -q -t ed25519 -N '' -C rebuild-drill -f "$work/ssh-key"
docker exec -i "$name" sh -c 'install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys' <"$work/ssh-key.pub"

set +e
docker exec "$name" bash /root/restore/backup/RESTORE.sh \
  --signers /root/restore/backup/backup-signers --identity /root/restore/identity \
  --from /root/restore/backup --skip tailscale --skip services \
  --skip-check tailscale --skip-check tailscale-ip --skip-check redis \
  --skip-check containers --skip-check comfyui --skip-check test-workflow \
  --models-mount 'tmpfs tmpfs size=2g' --scratch-mount 'tmpfs tmpfs size=2g' 2>&1 | tee "$work/restore.log"
rc=${PIPESTATUS[0]}
set -e
docker exec "$name" rm -f /root/restore/identity

{
  echo '### Rebuild drill: RESTORE.sh on a fresh Ubuntu 24.04 container'
  echo
  echo '| step | changes | seconds |'
  echo '| --- | --- | --- |'
  awk -F '\t' '$1 == "STEP" {printf "| %s | %s | %.1f |\n", $2, $3, $4 / 1000}' "$work/restore.log"
  echo
  grep -E '^RESTORE\.sh: done' "$work/restore.log" || echo "RESTORE.sh failed (exit $rc)"
} >>"$summary"
((rc == 0)) || exit "$rc"

address=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$name")
total_ms=$(awk -F '\t' '$1 == "STEP" {ms += $4} END {print ms + 0}' "$work/restore.log")
while IFS= read -r line; do echo "::add-mask::$line"; done <"$work/ssh-key"
{
  echo "address=$address"
  echo "restore-seconds=$((total_ms / 1000))"
  echo 'ssh-key<<COMFYUME_KEY_END'
  cat "$work/ssh-key"
  echo 'COMFYUME_KEY_END'
} >>"$out"
