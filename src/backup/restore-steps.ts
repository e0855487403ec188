// The steps of RESTORE.sh as constant bash: no value from the backup is in this text (they come
// in as the variables restore-script.ts sets). Every step checks first and changes only what
// differs, through `change`, which counts it, logs it, and under --dry-run only says it.
import { bashText } from '../lib/shell.js';

/** The rebuild's steps, in order; items name the step that restores them (config `step:`). */
export const RESTORE_STEPS = [
  'preflight',
  'packages',
  'tailscale',
  'security',
  'user',
  'project',
  'storage',
  'models',
  'services',
  'verify',
] as const;
export type RestoreStep = (typeof RESTORE_STEPS)[number];

/** The steps an item can be restored by. */
export const ITEM_STEPS = ['tailscale', 'security', 'user', 'project'] as const;
export type ItemStep = (typeof ITEM_STEPS)[number];

/** Options and their defaults, the helpers, and the arguments. */
const ARGUMENTS = bashText`SIGNERS=''
IDENTITY=''
ROOT=/
FROM=''
ONLY_STEPS=()
SKIP_STEPS=()
ONLY_ITEMS=()
SKIP_CHECKS=()
DRY_RUN=0
DOWNLOAD_ONLY=0
SKIP_AFTER=0
MODELS_MOUNT=$\{MODELS_MOUNT:-}
SCRATCH_MOUNT=$\{SCRATCH_MOUNT:-}
OHMYZSH_REPO=https://github.com/ohmyzsh/ohmyzsh.git
TS_AUTH_KEY_FILE=''
declare -A STEP_TITLE=(
  [preflight]='root, OS, free disk, identity, signature and every sha256 before any change'
  [packages]='fail2ban, ufw, zsh, docker, tailscale and the rest, when missing'
  [tailscale]='the backed-up identity, then tailscale up (SSH off), then the IP'
  [security]='SSH host keys, fail2ban with the sshd jail, UFW (SSH allowed before enabling)'
  [user]='the dev user, its shell, groups and home, oh-my-zsh'
  [project]='the ComfyUI project and its .env'
  [storage]='the models and scratch mounts (fstab, nofail) and the symlinks'
  [models]='the models on the models mount'
  [services]='docker compose up, Redis at the VPS'
  [verify]='the checklist, check by check'
)

die() {
  printf 'RESTORE.sh: %s\n' "$*" >&2
  exit 1
}
need() {
  command -v "$1" >/dev/null 2>&1 || die "needs $1 (apt-get install -y $2)"
}
usage() {
  awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"
  exit "$1"
}
contains() {
  local want=$1 x
  shift
  for x in "$@"; do [[ $x == "$want" ]] && return 0; done
  return 1
}

while (($# > 0)); do
  case $1 in
    --signers) SIGNERS=$\{2:?--signers needs a file}; shift 2 ;;
    --identity) IDENTITY=$\{2:?--identity needs a file}; shift 2 ;;
    --root) ROOT=$\{2:?--root needs a directory}; shift 2 ;;
    --from) FROM=$\{2:?--from needs a directory}; shift 2 ;;
    --only) ONLY_STEPS+=("$\{2:?--only needs a step}"); shift 2 ;;
    --skip) SKIP_STEPS+=("$\{2:?--skip needs a step}"); shift 2 ;;
    --item) ONLY_ITEMS+=("$\{2:?--item needs an item id}"); shift 2 ;;
    --skip-check) SKIP_CHECKS+=("$\{2:?--skip-check needs a check}"); shift 2 ;;
    --models-mount) MODELS_MOUNT=$\{2:?--models-mount needs 'SOURCE FSTYPE [OPTIONS]'}; shift 2 ;;
    --scratch-mount) SCRATCH_MOUNT=$\{2:?--scratch-mount needs 'SOURCE FSTYPE [OPTIONS]'}; shift 2 ;;
    --ohmyzsh-repo) OHMYZSH_REPO=$\{2:?--ohmyzsh-repo needs a git URL}; shift 2 ;;
    --tailscale-auth-key-file) TS_AUTH_KEY_FILE=$\{2:?--tailscale-auth-key-file needs a file}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --download-only) DOWNLOAD_ONLY=1; shift ;;
    --skip-after-restore) SKIP_AFTER=1; shift ;;
    --list)
      for id in "$\{ITEMS[@]}"; do printf '%-20s %-10s %s\n' "$id" "$\{STEP_OF[$id]}" "$\{DESCRIPTION[$id]}"; done
      exit 0
      ;;
    --list-steps)
      for s in "$\{STEPS[@]}"; do printf '%-10s %s\n' "$s" "$\{STEP_TITLE[$s]}"; done
      exit 0
      ;;
    -h | --help) usage 0 ;;
    *) printf 'RESTORE.sh: unknown argument: %s\n' "$1" >&2; usage 2 ;;
  esac
done`;

/** What must hold before anything is fetched: known steps and items, tools, signers, root. */
const CHECKS = bashText`for s in "$\{ONLY_STEPS[@]}" "$\{SKIP_STEPS[@]}"; do
  contains "$s" "$\{STEPS[@]}" || die "unknown step: $s (see --list-steps)"
done
for c in "$\{SKIP_CHECKS[@]}"; do
  contains "$c" "$\{VERIFY_CHECKS[@]}" || die "unknown check: $c (the checks: $\{VERIFY_CHECKS[*]})"
done
if (($\{#ONLY_ITEMS[@]} == 0)); then ONLY_ITEMS=("$\{ITEMS[@]}"); fi
for id in "$\{ONLY_ITEMS[@]}"; do [[ -n $\{KEY[$id]+set} ]] || die "unknown item: $id (see --list)"; done
need sha256sum coreutils
need tar tar
need ssh-keygen openssh-client
[[ -n $SIGNERS ]] || die '--signers FILE is required (config/backup-signers of the comfyume-ops repository)'
[[ -r $SIGNERS ]] || die "cannot read the allowed signers file $SIGNERS"
SELF=$\{BASH_SOURCE[0]}
[[ -f $SELF ]] || die 'run RESTORE.sh from a file (bash RESTORE.sh ...), not from a pipe'
if ((DOWNLOAD_ONLY == 0)); then
  [[ -n $IDENTITY ]] || die '--identity AGE_KEY_FILE is required (or --download-only)'
  [[ -r $IDENTITY ]] || die "cannot read the identity file $IDENTITY"
fi
[[ $ROOT == /* ]] || die "--root must be an absolute path: $ROOT"
ROOT=$\{ROOT%/}
# A drill (--root) restores files only; a live restore (root /) rebuilds the host.
LIVE=0
[[ -z $ROOT ]] && LIVE=1
[[ -z $TS_AUTH_KEY_FILE || -r $TS_AUTH_KEY_FILE ]] || die "cannot read the Tailscale auth key file $TS_AUTH_KEY_FILE"`;

/** Fetching, checking and unpacking archives; counting and logging changes. */
const HELPERS = bashText`WORK=$(mktemp -d)
trap 'rm -rf -- "$WORK"' EXIT
declare -A ARCHIVE=()
CHANGES=0

say() {
  printf '  %s\n' "$*"
}
# change WHAT COMMAND...: runs the command (under --dry-run only says it would) and counts it.
change() {
  local what=$1
  shift
  CHANGES=$((CHANGES + 1))
  if ((DRY_RUN)); then
    say "would: $what"
    return 0
  fi
  "$@" || die "failed: $what"
  say "changed: $what"
}

# The file of an object: from --from, or downloaded from R2 into the work directory.
object() {
  local key=$1 file
  if [[ -n $FROM ]]; then
    file=$FROM/$\{key##*/}
    [[ -f $file ]] || die "missing $file"
  else
    need aws awscli
    file=$WORK/$\{key##*/}
    aws s3 cp --only-show-errors --endpoint-url "$R2_ENDPOINT" "s3://$BUCKET/$key" "$file" >&2
  fi
  printf '%s\n' "$file"
}

# The signed manifest must be this backup's and must name this script's sha256.
verify_signature() {
  local manifest signature self said
  manifest=$(object "$MANIFEST_KEY")
  signature=$(object "$MANIFEST_KEY.sig")
  said=$(ssh-keygen -Y verify -f "$SIGNERS" -I "$SIGNER_PRINCIPAL" -n "$SIGNATURE_NAMESPACE" \
    -s "$signature" <"$manifest" 2>&1) ||
    die "the signature of $MANIFEST_KEY does not verify against $SIGNERS ($\{said//[$'\r\n']/ }): not restoring"
  grep -Fq "\"backupId\": \"$BACKUP_ID\"" -- "$manifest" || die "$MANIFEST_KEY is not backup $BACKUP_ID"
  self=$(sha256sum -- "$SELF" | cut -d ' ' -f 1)
  grep -Fq "\"sha256\": \"$self\"" -- "$manifest" ||
    die "the signed manifest does not name this RESTORE.sh (sha256 $self): it was changed"
  say "Signature of $MANIFEST_KEY verified; this RESTORE.sh is the one it names"
}

fetch() {
  local id=$1 file got
  file=$(object "$\{KEY[$id]}")
  got=$(sha256sum -- "$file" | cut -d ' ' -f 1)
  [[ $got == "$\{SHA256[$id]}" ]] || die "sha256 mismatch for $id: got $got, expected $\{SHA256[$id]} ($file)"
  ARCHIVE[$id]=$file
}

# The archive of an item as a tar stream.
unpack() {
  need age age
  age -d -i "$IDENTITY" -- "$\{ARCHIVE[$1]}" | case $\{COMPRESSION[$1]} in
    zstd) need zstd zstd; zstd -dc ;;
    gzip) gzip -dc ;;
    *) die "unknown compression: $\{COMPRESSION[$1]}" ;;
  esac
}

# Owners: by name on a live restore (the fresh host's ids may differ), by number in a drill.
tar_owners() {
  if ((LIVE)); then printf '%s\n' --same-owner; else printf '%s\n' --numeric-owner; fi
}

# age and the item's decompressor, before an archive is compared: a comparison that cannot
# decrypt must never read as "up to date".
can_unpack() {
  installed_for_step age age || return 1
  [[ $\{COMPRESSION[$1]} != zstd ]] || installed_for_step zstd zstd
}
# How many members differ between the archive and the tree (mtimes do not count).
differences() {
  local id=$1 dest=$2
  # Nothing there yet (a fresh root, every drill): everything differs, no need to decrypt twice.
  if [[ ! -d $dest || -z $(ls -A -- "$dest") ]]; then
    echo 1
    return
  fi
  { unpack "$id" | LC_ALL=C tar -d "$(tar_owners)" -f - -C "$dest" 2>&1 || true; } |
    grep -v -e ': Mod time differs$' -e '^tar: Exiting with failure status' -c || true
}

extract() {
  local id=$1 dest=$2
  mkdir -p -- "$dest"
  unpack "$id" | tar -x -p "$(tar_owners)" -f - -C "$dest"
}

after_restore() {
  if [[ -n $\{AFTER_RESTORE[$1]+set} ]] && ((LIVE && !SKIP_AFTER && !DRY_RUN)); then
    say "$1: after-restore commands"
    bash -euo pipefail -c "$\{AFTER_RESTORE[$1]}"
  fi
}

# Restores the selected items of one step; RESTORED lists the ones that changed anything.
RESTORED=()
restore_items() {
  local step=$1 id dest n
  for id in "$\{ONLY_ITEMS[@]}"; do
    [[ $\{STEP_OF[$id]} == "$step" ]] || continue
    can_unpack "$id" || return 0
    dest=$ROOT$\{RESTORE_TO[$id]}
    n=$(differences "$id" "$dest")
    if ((n == 0)); then
      say "$id: up to date"
      continue
    fi
    change "$id: $n difference(s), restored into $dest" extract "$id" "$dest"
    RESTORED+=("$id")
    after_restore "$id"
  done
}
restored() {
  local id
  for id in "$\{RESTORED[@]}"; do [[ $\{STEP_OF[$id]} == "$1" ]] && return 0; done
  return 1
}
# A step's tool: missing on a live run is an error; under --dry-run the packages step would
# install it, so the rest of the step is only announced.
installed_for_step() {
  command -v "$1" >/dev/null 2>&1 && return 0
  ((DRY_RUN)) || die "needs $1 (apt-get install -y $2; the packages step installs it)"
  say "would: the rest of this step, once the packages step installed $2"
  CHANGES=$((CHANGES + 1))
  return 1
}
installed() {
  [[ $(dpkg-query -W -f '$\{db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}
active() {
  systemctl is-active --quiet "$1"
}`;

const PREFLIGHT = bashText`step_preflight() {
  local avail id
  if ((LIVE)); then
    ((EUID == 0)) || die 'run as root: sudo bash RESTORE.sh ...'
    # shellcheck disable=SC1091
    (. /etc/os-release && printf '  OS: %s\n' "$PRETTY_NAME") || die 'no /etc/os-release: not Ubuntu or Debian'
    # shellcheck disable=SC1091
    case $(. /etc/os-release && printf '%s %s' "$ID" "$VERSION_ID") in
      'ubuntu 22.04' | 'ubuntu 24.04' | 'debian 12') ;;
      *) die "this host is $(. /etc/os-release && printf '%s' "$PRETTY_NAME"): RESTORE.sh rebuilds Ubuntu 22.04/24.04 or Debian 12" ;;
    esac
    avail=$(df -P -B1M / | awk 'NR == 2 {print $4}')
    ((avail >= 2048)) || die "only $avail MiB free on /: the rebuild needs 2048 MiB"
    say "root, $avail MiB free on /"
  fi
  verify_signature
  for id in "$\{ONLY_ITEMS[@]}"; do fetch "$id"; done
  say "$\{#ONLY_ITEMS[@]} archive(s): sha256 verified"
}`;

const PACKAGES = bashText`apt_updated=0
apt_update() {
  ((apt_updated)) && return 0
  apt_updated=1
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$APT_LOG" 2>&1 || { tail -n 20 "$APT_LOG" >&2; return 1; }
}
candidate() {
  # Here-strings, not pipes into grep -q: under pipefail an early grep exit fails the writer.
  grep -q 'Candidate: [0-9]' <<<"$(apt-cache policy "$1" 2>/dev/null)"
}
# Tailscale and docker-ce come from their vendors' apt repositories when the sources lack them.
# vendor_repo NAME KEY_URL KEYRING_FILE SOURCE_LINE (@ID@ and @CODENAME@ from /etc/os-release).
vendor_repo() {
  local name=$1 key=$2 keyring=$3 list=$4 id codename
  # shellcheck disable=SC1091
  id=$(. /etc/os-release && printf '%s' "$ID")
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && printf '%s' "$VERSION_CODENAME")
  key=$\{key//@ID@/$id}
  list=$\{list//@ID@/$id}
  list=$\{list//@CODENAME@/$codename}
  curl -fsSL --retry 3 "$\{key//@CODENAME@/$codename}" -o "$keyring"
  printf '%s\n' "$list" >"/etc/apt/sources.list.d/$name.list"
  apt_updated=0
}
# The distribution's packages first (curl among them), then the vendors'.
step_packages() {
  local pkg distro=() vendor=()
  for pkg in "$\{PACKAGES[@]}" "$DOCKER_PACKAGE"; do
    installed "$pkg" || distro+=("$pkg")
  done
  if [[ $DOCKER_PACKAGE == docker-ce ]] && contains docker-ce "$\{distro[@]}"; then
    distro=("$\{distro[@]/docker-ce/}")
    vendor+=(docker-ce docker-compose-plugin)
  fi
  installed tailscale || vendor+=(tailscale)
  if (($\{#distro[@]} + $\{#vendor[@]} == 0)) && ! compose_missing; then
    say "all $(($\{#PACKAGES[@]} + 2)) packages installed"
    return
  fi
  ((apt_updated)) || change 'apt-get update' apt_update
  # docker.io's compose v2 is a package of its own on Ubuntu (docker-compose-v2).
  if compose_missing; then distro+=(docker-compose-v2); fi
  read -r -a distro <<<"$\{distro[*]}"
  if (($\{#distro[@]})); then change "install $\{distro[*]}" apt_install "$\{distro[@]}"; fi
  if contains tailscale "$\{vendor[@]}" && ! candidate tailscale; then
    change 'add the Tailscale apt repository' vendor_repo tailscale \
      'https://pkgs.tailscale.com/stable/@ID@/@CODENAME@.noarmor.gpg' /usr/share/keyrings/tailscale.gpg \
      'deb [signed-by=/usr/share/keyrings/tailscale.gpg] https://pkgs.tailscale.com/stable/@ID@ @CODENAME@ main'
  fi
  if contains docker-ce "$\{vendor[@]}" && ! candidate docker-ce; then
    change 'add the Docker apt repository' vendor_repo docker \
      'https://download.docker.com/linux/@ID@/gpg' /usr/share/keyrings/docker.asc \
      'deb [signed-by=/usr/share/keyrings/docker.asc] https://download.docker.com/linux/@ID@ @CODENAME@ stable'
  fi
  if (($\{#vendor[@]})); then
    ((apt_updated)) || change 'apt-get update' apt_update
    change "install $\{vendor[*]}" apt_install "$\{vendor[@]}"
  fi
}
compose_missing() {
  [[ $DOCKER_PACKAGE == docker.io ]] && ! installed docker-compose-v2 && candidate docker-compose-v2
}
# apt's own output goes to a log; its tail is shown when it fails.
APT_LOG=/var/log/comfyume-restore-apt.log
apt_install() {
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$APT_LOG" 2>&1; then
    tail -n 20 "$APT_LOG" >&2
    return 1
  fi
}`;

const TAILSCALE = bashText`tailscale_ssh_on() {
  grep -Eq '"RunSSH": *true' <<<"$(tailscale debug prefs 2>/dev/null)"
}
tailscale_up() {
  local args=(up --ssh=false)
  [[ -n $TS_AUTH_KEY_FILE ]] && args+=(--auth-key "file:$TS_AUTH_KEY_FILE")
  tailscale "$\{args[@]}"
}
step_tailscale() {
  local ip id dest
  installed_for_step tailscale tailscale || return 0
  # tailscaled rewrites its state as it runs, so the files are not compared: the identity is in
  # place when tailscaled runs with the backed-up IP. Otherwise it goes in BEFORE tailscaled
  # runs with it (a fresh package install may have started it with a new identity: stop first).
  ip=$(tailscale ip -4 2>/dev/null | head -n 1) || ip=''
  if active tailscaled && [[ -n $TAILSCALE_IP && $ip == "$TAILSCALE_IP" ]]; then
    say "identity in place: tailscaled runs as $ip"
  else
    for id in "$\{ONLY_ITEMS[@]}"; do
      [[ $\{STEP_OF[$id]} == tailscale ]] || continue
      can_unpack "$id" || return 0
      dest=$\{RESTORE_TO[$id]}
      if active tailscaled; then change "stop tailscaled (it runs as $\{ip:-a new node}, not $\{TAILSCALE_IP:-the backup})" systemctl stop tailscaled; fi
      change "$id: restored into $dest" extract "$id" "$dest"
      RESTORED+=("$id")
    done
  fi
  if ! systemctl is-enabled --quiet tailscaled 2>/dev/null; then change 'enable tailscaled' systemctl enable tailscaled; fi
  if ! active tailscaled; then change 'start tailscaled with the restored identity' systemctl start tailscaled; fi
  if ((DRY_RUN)); then return; fi
  # A restored identity comes up with the seed's prefs re-asserted: Tailscale SSH off.
  if restored tailscale || ! tailscale status >/dev/null 2>&1 || tailscale_ssh_on; then
    change 'tailscale up --ssh=false (Tailscale SSH off)' tailscale_up
  fi
  ip=$(tailscale ip -4 | head -n 1)
  if [[ -z $TAILSCALE_IP ]]; then
    say "Tailscale IP $ip (the backup recorded none to compare)"
  elif [[ $ip != "$TAILSCALE_IP" ]]; then
    die "tailscale ip -4 is $ip, not the backed-up $TAILSCALE_IP: the restored identity did not come up"
  else
    say "Tailscale IP $ip, as backed up"
  fi
}`;

const SECURITY = bashText`ssh_unit() {
  if systemctl cat ssh.service >/dev/null 2>&1; then echo ssh; else echo sshd; fi
}
ufw_has() {
  grep -Fxq -- "$1" <<<"$(ufw show added 2>/dev/null)"
}
ufw_enable() {
  ufw --force enable >/dev/null
}
write_file() {
  printf '%s' "$2" >"$1"
}
step_security() {
  local jail='' f2b_changed=0
  restore_items security
  if restored security && contains ssh-host-keys "$\{RESTORED[@]}"; then
    change 'restart ssh with the restored host keys' systemctl restart "$(ssh_unit)"
  fi
  # fail2ban: on a host without /var/log/auth.log (no rsyslog) the sshd jail reads the journal.
  installed_for_step fail2ban-client fail2ban || return 0
  if [[ ! -e /var/log/auth.log ]]; then
    jail=$'[sshd]\nenabled = true\nbackend = systemd\n'
    if [[ $(cat /etc/fail2ban/jail.d/zz-comfyume-sshd.local 2>/dev/null) != "$\{jail%$'\n'}" ]]; then
      change 'fail2ban sshd jail reads the journal (no /var/log/auth.log)' write_file /etc/fail2ban/jail.d/zz-comfyume-sshd.local "$jail"
      f2b_changed=1
    fi
  fi
  if ! systemctl is-enabled --quiet fail2ban 2>/dev/null; then change 'enable fail2ban' systemctl enable fail2ban; fi
  if ! active fail2ban; then
    change 'start fail2ban' systemctl start fail2ban
  elif ((f2b_changed)) || contains fail2ban "$\{RESTORED[@]}"; then
    change 'restart fail2ban with the restored config' systemctl restart fail2ban
  fi
  # UFW: SSH is allowed before UFW is enabled, so the admin is never locked out.
  installed_for_step ufw ufw || return 0
  if ! grep -q '^DEFAULT_INPUT_POLICY="DROP"' /etc/default/ufw; then
    change 'ufw default deny incoming' ufw default deny incoming
  fi
  if ! ufw_has 'ufw allow 22/tcp' && ! ufw_has 'ufw allow OpenSSH' && ! ufw_has 'ufw allow 22'; then
    change 'ufw allow 22/tcp (SSH)' ufw allow 22/tcp
  fi
  if ! ufw_has 'ufw allow in on tailscale0'; then change 'ufw allow in on tailscale0' ufw allow in on tailscale0; fi
  if ! ufw_has 'ufw allow 41641/udp'; then change 'ufw allow 41641/udp (Tailscale)' ufw allow 41641/udp; fi
  if ! grep -q '^Status: active' <<<"$(ufw status)"; then
    change 'enable UFW' ufw_enable
  elif contains ufw "$\{RESTORED[@]}"; then
    change 'reload UFW with the restored rules' ufw reload
  fi
  if ((!DRY_RUN)); then
    fail2ban-client status sshd >/dev/null 2>&1 || die 'fail2ban has no running sshd jail'
    say 'fail2ban: sshd jail running; ufw: active'
  fi
}`;

const USER = bashText`install_ohmyzsh() {
  local tmp
  tmp=$(mktemp -d "$WORK/ohmyzsh.XXXXXX")
  git clone -q --depth 1 "$OHMYZSH_REPO" "$tmp/ohmyzsh"
  mkdir -p -- "$USER_HOME/.oh-my-zsh"
  # Never over what is restored (custom/ themes and plugins).
  cp -a -n -- "$tmp/ohmyzsh/." "$USER_HOME/.oh-my-zsh/"
  chown -R "$HOST_USER:" -- "$USER_HOME/.oh-my-zsh"
}
step_user() {
  local shell_path now group uid_args=()
  installed_for_step "$USER_SHELL" "$USER_SHELL" || return 0
  shell_path=$(command -v "$USER_SHELL")
  if ! getent group "$HOST_USER" >/dev/null; then
    if [[ -n $USER_GID ]] && ! getent group "$USER_GID" >/dev/null; then
      change "create group $HOST_USER (gid $USER_GID, as backed up)" groupadd -g "$USER_GID" "$HOST_USER"
    else
      change "create group $HOST_USER (gid $\{USER_GID:-unknown} is taken here: a new gid)" groupadd "$HOST_USER"
    fi
  fi
  if ! getent passwd "$HOST_USER" >/dev/null; then
    if [[ -n $USER_UID ]] && ! getent passwd "$USER_UID" >/dev/null; then
      uid_args=(-u "$USER_UID")
    else
      say "uid $\{USER_UID:-unknown} is taken here: $HOST_USER gets a new uid, files follow by name"
    fi
    change "create user $HOST_USER" useradd -m -d "$USER_HOME" -g "$HOST_USER" -s "$shell_path" "$\{uid_args[@]}" "$HOST_USER"
  fi
  # Under --dry-run the user may not exist yet: its shell and groups are then only announced.
  now=$(getent passwd "$HOST_USER" | cut -d : -f 7) || now=''
  if [[ $now != "$shell_path" ]]; then
    change "login shell of $HOST_USER: $\{now:-none} -> $shell_path" usermod -s "$shell_path" "$HOST_USER"
  fi
  for group in "$\{USER_GROUPS[@]}"; do
    if ! getent group "$group" >/dev/null; then
      say "group $group does not exist here: $HOST_USER is not added to it"
    elif ! grep -Fxq -- "$group" <<<"$(id -nG "$HOST_USER" | tr ' ' '\n')"; then
      change "add $HOST_USER to group $group" usermod -aG "$group" "$HOST_USER"
    fi
  done
  if [[ ! -f $USER_HOME/.oh-my-zsh/oh-my-zsh.sh ]]; then
    installed_for_step git git || return 0
    change "install oh-my-zsh from $OHMYZSH_REPO" install_ohmyzsh
  fi
  restore_items user
}`;

const PROJECT = bashText`step_project() {
  restore_items project
  [[ -e $ENV_FILE ]] || { ((DRY_RUN)) || die "$ENV_FILE is missing after the project was restored"; return; }
  if [[ $(stat -c '%a' -- "$ENV_FILE") != 600 ]]; then change "chmod 600 $ENV_FILE" chmod 600 -- "$ENV_FILE"; fi
  if [[ $(stat -c '%U' -- "$ENV_FILE") != "$HOST_USER" ]]; then change "chown $HOST_USER $ENV_FILE" chown "$HOST_USER:" -- "$ENV_FILE"; fi
}`;

const STORAGE = bashText`append_fstab() {
  printf '%s\n' "$1" >>/etc/fstab
}
# ensure_mount NAME PATH 'SOURCE FSTYPE [OPTIONS]': an fstab entry (nofail) and the mount.
ensure_mount() {
  local name=$1 dir=$2 spec=$3 source fstype options
  read -r source fstype options <<<"$spec"
  if [[ -n $spec && -z $fstype ]]; then die "--$name-mount needs 'SOURCE FSTYPE [OPTIONS]', got: $spec"; fi
  if [[ -n $spec ]] && ! awk -v d="$dir" '$1 !~ /^#/ && $2 == d {found = 1} END {exit !found}' /etc/fstab; then
    options=$\{options:-defaults}
    [[ ,$options, == *,nofail,* ]] || options+=,nofail
    change "fstab: $source on $dir ($fstype, $options)" append_fstab "$source $dir $fstype $options 0 2"
  fi
  if [[ ! -d $dir ]]; then change "mkdir $dir" mkdir -p -- "$dir"; fi
  if mountpoint -q -- "$dir"; then
    say "$dir: mounted ($(findmnt -n -o SOURCE --mountpoint "$dir" | head -n 1))"
  elif [[ -z $spec ]] && ! awk -v d="$dir" '$1 !~ /^#/ && $2 == d {found = 1} END {exit !found}' /etc/fstab; then
    die "$dir is not mounted and no --$name-mount 'SOURCE FSTYPE [OPTIONS]' was given (or set $\{name^^}_MOUNT)"
  else
    change "mount $dir" mount -- "$dir"
  fi
}
ensure_link() {
  local link=$1 target=$2
  if [[ ! -d $target ]]; then
    change "mkdir $target (owned by $HOST_USER)" install -d -o "$HOST_USER" -g "$HOST_USER" -- "$target"
  fi
  if [[ -L $link && $(readlink -- "$link") == "$target" ]]; then return; fi
  if [[ -d $link && ! -L $link ]]; then
    [[ -z $(ls -A -- "$link") ]] || die "$link is a directory with files in it: move them to $target, then run again"
    change "remove the empty directory $link" rmdir -- "$link"
  fi
  change "link $link -> $target" ln -sfn -- "$target" "$link"
  ((DRY_RUN)) || chown -h "$HOST_USER:" -- "$link"
}
step_storage() {
  local link
  ensure_mount models "$MODELS_PATH" "$MODELS_MOUNT"
  ensure_mount scratch "$SCRATCH_PATH" "$SCRATCH_MOUNT"
  for link in "$\{!CK_LINKS[@]}"; do ensure_link "$link" "$\{CK_LINKS[$link]}"; done
}`;

const MODELS = bashText`step_models() {
  local n
  # The models come from R2 with sha256 checks (HuggingFace as the fallback) through comfyume-ops
  # on the runner, over SSH: sync-models --direction pull. This step only reports what is here.
  if [[ ! -d $MODELS_PATH ]]; then
    say "no $MODELS_PATH yet (the storage step mounts it)"
    return
  fi
  n=$(find "$MODELS_PATH" -type f \( -name '*.safetensors' -o -name '*.ckpt' -o -name '*.pt' -o -name '*.pth' -o -name '*.bin' -o -name '*.gguf' \) 2>/dev/null | wc -l) || true
  say "$n model file(s) on $MODELS_PATH"
  if ((n == 0)); then
    say "pull them from the runner: comfyume-ops sync-models --direction pull --target ssh://<user>@<this host>$MODELS_PATH (sha256-checked), or the Sync models workflow"
  fi
}`;

const SERVICES = bashText`compose_up() {
  docker compose --project-directory "$PROJECT" up -d 2>&1 | sed 's/^/    /'
}
step_services() {
  local missing=() name running
  installed_for_step docker "$DOCKER_PACKAGE" || return 0
  if [[ ! -f $PROJECT/docker-compose.yml && ! -f $PROJECT/compose.yaml && ! -f $PROJECT/compose.yml ]]; then
    say "no compose file in $PROJECT: nothing to start"
    return
  fi
  running=$(docker ps --format '{{.Names}}' 2>/dev/null) || running=''
  for name in "$\{CK_CONTAINERS[@]}"; do grep -Fxq -- "$name" <<<"$running" || missing+=("$name"); done
  if (($\{#CK_CONTAINERS[@]} == 0)) || (($\{#missing[@]} > 0)); then
    change "docker compose up -d in $PROJECT$\{missing[*]:+ (not running: $\{missing[*]})}" compose_up
  else
    say "$\{#CK_CONTAINERS[@]} container(s) running"
  fi
  if ((!DRY_RUN)) && [[ -n $CK_REDIS_HOST ]]; then
    CK_FOUND=''
    if check_redis; then say "Redis: $CK_FOUND"; else say "WARNING: Redis: $CK_FOUND"; fi
  fi
}`;

const VERIFY = bashText`step_verify() {
  local id failed=() line status
  if ((DRY_RUN)); then say 'would run the checks'; return; fi
  for id in "$\{VERIFY_CHECKS[@]}"; do
    contains "$id" "$\{SKIP_CHECKS[@]}" && { printf '  -     %-13s skipped (--skip-check)\n' "$id"; continue; }
    line=$(run_checks "$id")
    IFS=$'\t' read -r _ _ status CK_FOUND <<<"$line"
    if [[ $status == ok ]]; then
      printf '  ok    %-13s %s\n' "$id" "$CK_FOUND"
    else
      printf '  FAIL  %-13s %s (%s)\n' "$id" "$CK_FOUND" "$\{CHECK_LEVEL[$id]}"
      [[ $\{CHECK_LEVEL[$id]} == required ]] && failed+=("$id")
    fi
  done
  (($\{#failed[@]} == 0)) || die "required check(s) failed: $\{failed[*]}"
}`;

/** The steps in order, timed, with their changes; a drill runs preflight and the item steps. */
const RUN = bashText`wanted() {
  local step=$1
  (($\{#ONLY_STEPS[@]} == 0)) || contains "$step" "$\{ONLY_STEPS[@]}" || return 1
  ! contains "$step" "$\{SKIP_STEPS[@]}"
}
now_ms() {
  date +%s%3N
}
TOTAL=0
declare -A STEP_SUMMARY=()
started=$(now_ms)
printf 'RESTORE.sh: Restoring backup %s (%d item(s)) into %s%s\n' "$BACKUP_ID" "$\{#ONLY_ITEMS[@]}" "$\{ROOT:-/}" "$( ((DRY_RUN)) && printf ' (dry run)')"
for step in "$\{STEPS[@]}"; do
  if [[ $step != preflight ]] && ! wanted "$step"; then continue; fi
  if ((DOWNLOAD_ONLY)) && [[ $step != preflight ]]; then continue; fi
  if ((!LIVE)) && [[ $step != preflight && $step != tailscale && $step != security && $step != user && $step != project ]]; then continue; fi
  printf '== %s: %s\n' "$step" "$\{STEP_TITLE[$step]}"
  CHANGES=0
  t0=$(now_ms)
  if ((LIVE)) || [[ $step == preflight ]]; then "step_$step"; else restore_items "$step"; fi
  ms=$(($(now_ms) - t0))
  TOTAL=$((TOTAL + CHANGES))
  STEP_SUMMARY[$step]="$CHANGES $ms"
  printf '== %s: %d change(s), %d.%03d s\n' "$step" "$CHANGES" $((ms / 1000)) $((ms % 1000))
done
ms=$(($(now_ms) - started))
printf 'RESTORE.sh: done, %d change(s)%s in %d.%03d s (the restore time)\n' "$TOTAL" "$( ((DRY_RUN)) && printf ' that would be made')" $((ms / 1000)) $((ms % 1000))
for step in "$\{STEPS[@]}"; do
  [[ -n $\{STEP_SUMMARY[$step]+set} ]] || continue
  read -r c m <<<"$\{STEP_SUMMARY[$step]}"
  printf 'STEP\t%s\t%s\t%s\n' "$step" "$c" "$m"
done
`;

/** Every section after the values, in order. */
export const STEP_BASH: readonly string[] = [
  ARGUMENTS,
  CHECKS,
  HELPERS,
  PREFLIGHT,
  PACKAGES,
  TAILSCALE,
  SECURITY,
  USER,
  PROJECT,
  STORAGE,
  MODELS,
  SERVICES,
  VERIFY,
  RUN,
];
