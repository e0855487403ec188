// The seed's Phase 11 verification checklist as one bash program, the single home of every
// check: verify-host runs it over SSH, RESTORE.sh's verify step runs the same text locally. It
// only reads: status commands, files, sockets. Each check prints one line
// `CHECK <id> <ok|fail> <what it found>` (tab-separated), parsed strictly by parseCheckLines.
// Values from the config reach the bash only through shellQuote.
import { z } from 'zod';
import { OpsError } from '../lib/errors.js';
import { hasControlChars } from '../lib/safe-path.js';
import { bashText, shellQuote } from '../lib/shell.js';
import { redisAddress, type HostShape } from './shape.js';

/** The checks, in the seed's order, with the line of the checklist each stands for. */
export const CHECKS = {
  tailscale: 'Tailscale up, SSH over Tailscale off',
  'tailscale-ip': 'Tailscale IP as backed up',
  ufw: 'UFW active, only SSH and Tailscale open',
  fail2ban: 'Fail2ban active with the sshd jail',
  shell: "The dev user's login shell",
  'oh-my-zsh': 'oh-my-zsh with the theme in .zshrc',
  mounts: 'Models and scratch mounted, with free space',
  links: 'Symlinks into the mounts',
  redis: 'Redis at the VPS answers PING',
  containers: 'Docker containers running',
  comfyui: 'ComfyUI answers on the host',
  'test-workflow': 'A test workflow runs (ComfyUI /prompt, /history)',
} as const;

export type CheckId = keyof typeof CHECKS;
export const CHECK_IDS = Object.keys(CHECKS) as CheckId[];

export interface CheckTarget {
  shape: HostShape;
  /** The Tailscale IP the host must have (the backup's, or the config's). */
  tailscaleIp: string | undefined;
}

/** What each check expects, in words, for the report. */
export function expectations(target: CheckTarget): Record<CheckId, string> {
  const { shape } = target;
  const links = Object.entries(shape.links).map(([l, t]) => `${l} -> ${t}`);
  return {
    tailscale: 'running, Tailscale SSH off',
    'tailscale-ip': target.tailscaleIp ?? '(not set)',
    ufw: 'active; deny incoming; allow SSH and Tailscale only',
    fail2ban: 'sshd jail running',
    shell: `${shape.user}: ${shape.shell}`,
    'oh-my-zsh': `~/.oh-my-zsh, ZSH_THEME="${shape['zsh-theme']}"`,
    mounts: `${shape.mounts.models}, ${shape.mounts.scratch}: mounted, ≥ ${shape['min-free-mib']} MiB free`,
    links: links.length ? links.join('; ') : '(none configured)',
    redis: shape.redis ? `${shape.redis}: PONG` : '(not set)',
    containers: shape.containers.length ? shape.containers.join(', ') : '(none configured)',
    comfyui: `${shape['comfyui-url']}/system_stats answers`,
    'test-workflow': shape['test-workflow']
      ? `${shape['test-workflow']} succeeds within ${shape['test-workflow-timeout-s']} s`
      : '(not set)',
  };
}

/** The values the check functions read, as bash assignments (every value quoted). */
function checkValues(target: CheckTarget): string {
  const { shape } = target;
  const redis = redisAddress(shape);
  const linkPairs = Object.entries(shape.links)
    .map(([l, t]) => `[${shellQuote(l)}]=${shellQuote(t)}`)
    .join(' ');
  return [
    `CK_USER=${shellQuote(shape.user)}`,
    `CK_SHELL=${shellQuote(shape.shell)}`,
    `CK_HOME=${shellQuote(shape.home)}`,
    `CK_THEME=${shellQuote(shape['zsh-theme'])}`,
    `CK_TAILSCALE_IP=${shellQuote(target.tailscaleIp ?? '')}`,
    `CK_MOUNTS=(${shellQuote(shape.mounts.models)} ${shellQuote(shape.mounts.scratch)})`,
    `CK_MIN_FREE_MIB=${shape['min-free-mib']}`,
    '# shellcheck disable=SC2016 # paths are literal text',
    `declare -A CK_LINKS=(${linkPairs})`,
    `CK_REDIS_HOST=${shellQuote(redis?.host ?? '')}`,
    `CK_REDIS_PORT=${redis?.port ?? 0}`,
    `CK_CONTAINERS=(${shape.containers.map(shellQuote).join(' ')})`,
    `CK_COMFYUI_URL=${shellQuote(shape['comfyui-url'])}`,
    `CK_TEST_WORKFLOW=${shellQuote(shape['test-workflow'] ?? '')}`,
    `CK_TEST_TIMEOUT_S=${shape['test-workflow-timeout-s']}`,
  ].join('\n');
}

/** The check functions: constant bash, reading only the CK_ values. */
const CHECK_FUNCTIONS = bashText`# Root for the two status commands that need it: sudo -n when not root (see verify-host's README).
as_root() {
  if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi
}
found() {
  CK_FOUND=$*
  CK_FOUND=$\{CK_FOUND//[$'\t\r\n']/ }
}
check_tailscale() {
  if ! command -v tailscale >/dev/null 2>&1; then found 'tailscale is not installed'; return 1; fi
  if ! tailscale status >/dev/null 2>&1; then found 'not running (tailscale status failed)'; return 1; fi
  if grep -Eq '"RunSSH": *true' <<<"$(tailscale debug prefs 2>/dev/null)"; then
    found 'running, Tailscale SSH ON'
    return 1
  fi
  found 'running, Tailscale SSH off'
}
check_tailscale_ip() {
  local ip
  ip=$(tailscale ip -4 2>/dev/null | head -n 1) || true
  found "$\{ip:-no IPv4 address}"
  [[ -n $CK_TAILSCALE_IP && $ip == "$CK_TAILSCALE_IP" ]]
}
check_ufw() {
  local out rule bad=() ssh=0 tailnet=0
  if ! out=$(as_root ufw status verbose 2>&1); then found "ufw status failed: $out"; return 1; fi
  if ! grep -q '^Status: active' <<<"$out"; then found 'inactive'; return 1; fi
  if ! grep -q 'deny (incoming)' <<<"$out"; then found 'active, but incoming is not denied by default'; return 1; fi
  while IFS= read -r rule; do
    case $rule in
      22 | 22/tcp | OpenSSH) ssh=1 ;;
      'Anywhere on tailscale0' | 41641/udp) tailnet=1 ;;
      *) bad+=("$rule") ;;
    esac
  done < <(awk -F '  +' '$2 ~ /^ALLOW/ {sub(/ \(v6\)$/, "", $1); print $1}' <<<"$out" | sort -u)
  if (($\{#bad[@]})); then found "active, also open: $\{bad[*]}"; return 1; fi
  if ((!ssh)); then found 'active, SSH is not allowed'; return 1; fi
  if ((!tailnet)); then found 'active, Tailscale is not allowed'; return 1; fi
  found 'active; deny incoming; SSH and Tailscale allowed'
}
check_fail2ban() {
  local out
  if ! out=$(as_root fail2ban-client status sshd 2>&1); then found "sshd jail not running: $(tail -n 1 <<<"$out")"; return 1; fi
  found "sshd jail running, $(grep -o 'Currently banned:.*' <<<"$out" | tr -s ' \t' ' ')"
}
check_shell() {
  local shell
  shell=$(getent passwd "$CK_USER" | cut -d : -f 7) || true
  found "$CK_USER: $\{shell:-no such user}"
  [[ -n $shell && $\{shell##*/} == "$CK_SHELL" ]]
}
check_oh_my_zsh() {
  local theme
  if [[ ! -f $CK_HOME/.oh-my-zsh/oh-my-zsh.sh ]]; then found "no $CK_HOME/.oh-my-zsh/oh-my-zsh.sh"; return 1; fi
  theme=$(sed -n 's/^ZSH_THEME=["'"'"']\{0,1\}\([^"'"'"']*\).*/\1/p' "$CK_HOME/.zshrc" 2>/dev/null | tail -n 1) || true
  if [[ $theme != "$CK_THEME" ]]; then found "ZSH_THEME=$\{theme:-unset} in $CK_HOME/.zshrc"; return 1; fi
  if [[ ! -f $CK_HOME/.oh-my-zsh/custom/themes/$CK_THEME.zsh-theme && ! -f $CK_HOME/.oh-my-zsh/themes/$CK_THEME.zsh-theme ]]; then
    found "theme $CK_THEME named but its .zsh-theme file is missing"
    return 1
  fi
  found "installed, ZSH_THEME=$theme"
}
check_mounts() {
  local dir free source said=() ok=0
  for dir in "$\{CK_MOUNTS[@]}"; do
    if ! mountpoint -q -- "$dir" 2>/dev/null; then said+=("$dir not mounted"); ok=1; continue; fi
    source=$(findmnt -n -o SOURCE --mountpoint "$dir" 2>/dev/null | head -n 1) || true
    free=$(df -P -B1M -- "$dir" | awk 'NR == 2 {print $4}')
    said+=("$dir: $\{source:-?}, $\{free} MiB free")
    if ((free < CK_MIN_FREE_MIB)); then ok=1; fi
  done
  found "$(IFS=';'; printf '%s' "$\{said[*]}")"
  return "$ok"
}
check_links() {
  local link target said=() ok=0
  for link in "$\{!CK_LINKS[@]}"; do
    target=$(readlink -- "$link" 2>/dev/null) || target=''
    if [[ $target != "$\{CK_LINKS[$link]}" ]]; then
      said+=("$link -> $\{target:-not a link}")
      ok=1
    elif [[ ! -d $link ]]; then
      said+=("$link -> $target (target missing)")
      ok=1
    fi
  done
  if ((ok == 0)); then found "$\{#CK_LINKS[@]} link(s) in place"; else found "$(IFS=';'; printf '%s' "$\{said[*]}")"; fi
  return "$ok"
}
check_redis() {
  local reply
  if [[ -z $CK_REDIS_HOST ]]; then found 'no redis address configured'; return 1; fi
  if command -v redis-cli >/dev/null 2>&1; then
    reply=$(timeout 10 redis-cli -h "$CK_REDIS_HOST" -p "$CK_REDIS_PORT" ping 2>&1) || true
  else
    # shellcheck disable=SC2016 # the inner bash expands $1 and $2
    reply=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && head -c 7 <&3' _ "$CK_REDIS_HOST" "$CK_REDIS_PORT" 2>&1) || true
  fi
  reply=$\{reply//[+$'\r']/}
  found "$CK_REDIS_HOST:$CK_REDIS_PORT said $\{reply:-nothing}"
  [[ $reply == PONG ]]
}
check_containers() {
  local running name missing=()
  if ! running=$(docker ps --format '{{.Names}}' 2>&1); then found "docker ps failed: $running"; return 1; fi
  for name in "$\{CK_CONTAINERS[@]}"; do
    grep -Fxq -- "$name" <<<"$running" || missing+=("$name")
  done
  if (($\{#missing[@]})); then found "not running: $\{missing[*]}"; return 1; fi
  found "$(grep -c . <<<"$running") running: $(paste -sd ' ' <<<"$running")"
}
check_comfyui() {
  local out
  if ! out=$(curl -fsS --max-time 10 "$CK_COMFYUI_URL/system_stats" 2>&1); then found "no answer: $out"; return 1; fi
  found "answers: $(head -c 120 <<<"$out")"
}
# The seed's "test workflow runs": the workflow file on the host is queued with POST /prompt,
# then /history/<id> is polled until ComfyUI says success (or error, or the time is up).
check_test_workflow() {
  local reply id history waited=0
  if [[ -z $CK_TEST_WORKFLOW ]]; then found 'no host.test-workflow configured'; return 1; fi
  if [[ ! -r $CK_TEST_WORKFLOW ]]; then found "cannot read $CK_TEST_WORKFLOW"; return 1; fi
  if ! reply=$({ printf '{"client_id": "verify-host", "prompt": '; cat -- "$CK_TEST_WORKFLOW"; printf '}'; } |
    curl -fsS --max-time 30 -H 'Content-Type: application/json' --data-binary @- "$CK_COMFYUI_URL/prompt" 2>&1); then
    found "POST /prompt refused: $(head -c 200 <<<"$reply")"
    return 1
  fi
  id=$(grep -o '"prompt_id": *"[A-Za-z0-9-]*"' <<<"$reply" | grep -o '[A-Za-z0-9-]*"$' | tr -d '"') || true
  if [[ -z $id ]]; then found "no prompt_id in: $(head -c 200 <<<"$reply")"; return 1; fi
  while ((waited <= CK_TEST_TIMEOUT_S)); do
    history=$(curl -fsS --max-time 10 "$CK_COMFYUI_URL/history/$id" 2>/dev/null) || history=''
    if grep -q '"status_str": *"success"' <<<"$history"; then found "prompt $id succeeded after ~$waited s"; return 0; fi
    if grep -q '"status_str": *"error"' <<<"$history"; then found "prompt $id failed: $(head -c 200 <<<"$history")"; return 1; fi
    sleep 2
    waited=$((waited + 2))
  done
  found "prompt $id not done after $CK_TEST_TIMEOUT_S s"
  return 1
}
# Runs the named checks (all by default); one CHECK line each.
run_checks() {
  local id fn
  for id in "$@"; do
    fn=check_$\{id//-/_}
    CK_FOUND=''
    if "$fn"; then
      printf 'CHECK\t%s\tok\t%s\n' "$id" "$CK_FOUND"
    else
      printf 'CHECK\t%s\tfail\t%s\n' "$id" "$CK_FOUND"
    fi
  done
}`;

/** The checks as bash: values, then functions; `run_checks id…` prints the CHECK lines. */
export function checkProgram(target: CheckTarget): string {
  return `${checkValues(target)}\n${CHECK_FUNCTIONS}`;
}

/** A whole script for `bash -s` over SSH: runs the given checks (never fails itself). */
export function checkScript(target: CheckTarget, ids: CheckId[]): string {
  return `set -uo pipefail\n${checkProgram(target)}\nrun_checks ${ids.join(' ')}\nexit 0\n`;
}

export interface CheckResult {
  id: CheckId;
  ok: boolean;
  found: string;
}

const foundText = z
  .string()
  .max(2000)
  .refine((t) => !hasControlChars(t), 'must not contain control characters');

/**
 * The CHECK lines a host printed. The host is not trusted: an unknown id, a status other than
 * ok/fail, a check asked for but not answered or answered twice is an error naming it.
 */
export function parseCheckLines(output: string, asked: CheckId[]): CheckResult[] {
  const results = new Map<CheckId, CheckResult>();
  for (const line of output.split('\n')) {
    if (!line.startsWith('CHECK\t')) continue;
    const [, id = '', status = '', ...rest] = line.split('\t');
    const found = foundText.safeParse(rest.join(' ').trim().slice(0, 500));
    if (!asked.includes(id as CheckId))
      throw new OpsError(`the host answered a check that was not asked: ${JSON.stringify(id)}`);
    if (status !== 'ok' && status !== 'fail')
      throw new OpsError(`the host answered check ${id} with ${JSON.stringify(status)}`);
    if (results.has(id as CheckId)) throw new OpsError(`the host answered check ${id} twice`);
    results.set(id as CheckId, {
      id: id as CheckId,
      ok: status === 'ok',
      found: found.success ? found.data : '(unreadable answer)',
    });
  }
  const unanswered = asked.filter((id) => !results.has(id));
  if (unanswered.length > 0)
    throw new OpsError(`the host did not answer check(s) ${unanswered.join(', ')}`);
  return asked.map((id) => results.get(id) as CheckResult);
}
