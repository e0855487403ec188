// RESTORE.sh, written next to each manifest: checks the backup's signature (ssh-keygen -Y verify
// against an allowed signers file the admin gives it) and that the signed manifest vouches for
// this very script, then downloads every archive (or takes them from a directory), verifies its
// sha256, decrypts it with an age identity and extracts it. Every value from the backup reaches
// the script through shellQuote (one line each, comments included): it is data, never code.
// Generated bash must stay shellcheck-clean (a test runs /usr/bin/shellcheck on it).
import { shellQuote } from '../lib/shell.js';
import type { HostFacts } from './facts.js';
import type { ManifestItem } from './manifest.js';
import { SIGNATURE_NAMESPACE, SIGNER_PRINCIPAL } from './signature.js';

export interface RestoreScriptInput {
  backupId: string;
  toolVersion: string;
  bucket: string;
  /** The manifest's key (its signature is that key + .sig). */
  manifestKey: string;
  endpoint: string;
  hostFingerprint: string;
  facts: HostFacts;
  items: Pick<
    ManifestItem,
    'id' | 'description' | 'key' | 'sha256' | 'compression' | 'restoreTo' | 'afterRestore'
  >[];
}

/** The usage text (usage() prints the script's lines 2-21, so it comes first) and strict mode. */
const USAGE = `#!/usr/bin/env bash
# RESTORE.sh of one comfyume-ops backup (its id, host and tool version are set below).
#
# Usage: RESTORE.sh --signers FILE --identity AGE_KEY_FILE [--root DIR] [--from DIR]
#                   [--only ITEM]... [--download-only] [--skip-after-restore] [--list]
#   --signers FILE        allowed signers (config/backup-signers of the comfyume-ops repository):
#                         the backup's signature must verify against one of its keys
#   --identity FILE       age identity (AGE-SECRET-KEY-1...) of one of the backup's recipients
#   --root DIR            restore under DIR instead of / (a drill); after-restore steps run only for /
#   --from DIR            manifest.json, its .sig and the archives already downloaded into DIR;
#                         otherwise they are fetched from R2 with the aws CLI (set
#                         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, and R2_ENDPOINT if it differs)
#   --only ITEM           restore only this item (repeatable); --list shows the items
#   --download-only       download and verify, extract nothing
#   --skip-after-restore  do not run the after-restore steps (service restarts)
#
# Before anything is decrypted: manifest.json's signature is checked (ssh-keygen -Y verify), the
# signed manifest must name this script's sha256, and every archive must match its sha256.
# Needs: bash, ssh-keygen, tar, sha256sum, age, zstd or gzip (and the aws CLI without --from).
set -euo pipefail`;

/** Options and their defaults, the helpers die, need and usage, and the arguments. */
const ARGUMENTS = `SIGNERS=''
IDENTITY=''
ROOT=/
FROM=''
ONLY=()
DOWNLOAD_ONLY=0
SKIP_AFTER=0

die() {
  printf 'RESTORE.sh: %s\\n' "$*" >&2
  exit 1
}
need() {
  command -v "$1" >/dev/null 2>&1 || die "needs $1 (apt-get install -y $2)"
}
usage() {
  sed -n '2,21p' "$0" | sed 's/^# \\{0,1\\}//'
  exit "$1"
}

while (($# > 0)); do
  case $1 in
    --signers) SIGNERS=\${2:?--signers needs a file}; shift 2 ;;
    --identity) IDENTITY=\${2:?--identity needs a file}; shift 2 ;;
    --root) ROOT=\${2:?--root needs a directory}; shift 2 ;;
    --from) FROM=\${2:?--from needs a directory}; shift 2 ;;
    --only) ONLY+=("\${2:?--only needs an item id}"); shift 2 ;;
    --download-only) DOWNLOAD_ONLY=1; shift ;;
    --skip-after-restore) SKIP_AFTER=1; shift ;;
    --list)
      for id in "\${ITEMS[@]}"; do printf '%-20s %s\\n' "$id" "\${DESCRIPTION[$id]}"; done
      exit 0
      ;;
    -h | --help) usage 0 ;;
    *) printf 'RESTORE.sh: unknown argument: %s\\n' "$1" >&2; usage 2 ;;
  esac
done`;

/** What must hold before anything is fetched: known items, tools, signers, identity, root. */
const CHECKS = `if ((\${#ONLY[@]} == 0)); then ONLY=("\${ITEMS[@]}"); fi
for id in "\${ONLY[@]}"; do [[ -n \${KEY[$id]+set} ]] || die "unknown item: $id (see --list)"; done
need sha256sum coreutils
need tar tar
need ssh-keygen openssh-client
[[ -n $SIGNERS ]] || die '--signers FILE is required (config/backup-signers of the comfyume-ops repository)'
[[ -r $SIGNERS ]] || die "cannot read the allowed signers file $SIGNERS"
SELF=\${BASH_SOURCE[0]}
[[ -f $SELF ]] || die 'run RESTORE.sh from a file (bash RESTORE.sh ...), not from a pipe'
if ((DOWNLOAD_ONLY == 0)); then
  [[ -n $IDENTITY ]] || die '--identity AGE_KEY_FILE is required (or --download-only)'
  [[ -r $IDENTITY ]] || die "cannot read the identity file $IDENTITY"
  need age age
fi
[[ $ROOT == /* ]] || die "--root must be an absolute path: $ROOT"
ROOT=\${ROOT%/}`;

/** The work directory and the steps: fetch an object, verify the signature, check, extract. */
const STEPS = `WORK=$(mktemp -d)
trap 'rm -rf -- "$WORK"' EXIT

# The file of an object: from --from, or downloaded from R2 into the work directory.
object() {
  local key=$1 file
  if [[ -n $FROM ]]; then
    file=$FROM/\${key##*/}
    [[ -f $file ]] || die "missing $file"
  else
    need aws awscli
    file=$WORK/\${key##*/}
    aws s3 cp --only-show-errors --endpoint-url "$R2_ENDPOINT" "s3://$BUCKET/$key" "$file" >&2
  fi
  printf '%s\\n' "$file"
}

# The signed manifest must be this backup's and must name this script's sha256.
verify_signature() {
  local manifest signature self said
  manifest=$(object "$MANIFEST_KEY")
  signature=$(object "$MANIFEST_KEY.sig")
  said=$(ssh-keygen -Y verify -f "$SIGNERS" -I "$SIGNER_PRINCIPAL" -n "$SIGNATURE_NAMESPACE" \\
    -s "$signature" <"$manifest" 2>&1) ||
    die "the signature of $MANIFEST_KEY does not verify against $SIGNERS (\${said//[$'\\r\\n']/ }): not restoring"
  grep -Fq "\\"backupId\\": \\"$BACKUP_ID\\"" -- "$manifest" || die "$MANIFEST_KEY is not backup $BACKUP_ID"
  self=$(sha256sum -- "$SELF" | cut -d ' ' -f 1)
  grep -Fq "\\"sha256\\": \\"$self\\"" -- "$manifest" ||
    die "the signed manifest does not name this RESTORE.sh (sha256 $self): it was changed"
  printf 'Signature of %s verified; this RESTORE.sh is the one it names\\n' "$MANIFEST_KEY"
}

fetch() {
  local id=$1 file
  file=$(object "\${KEY[$id]}")
  local got
  got=$(sha256sum -- "$file" | cut -d ' ' -f 1)
  [[ $got == "\${SHA256[$id]}" ]] || die "sha256 mismatch for $id: got $got, expected \${SHA256[$id]} ($file)"
  printf '%s\\n' "$file"
}

decompress() {
  case $1 in
    zstd) need zstd zstd; zstd -dc ;;
    gzip) gzip -dc ;;
    *) die "unknown compression: $1" ;;
  esac
}

after_restore() {
  if [[ -n \${AFTER_RESTORE[$1]+set} ]]; then
    printf '  %-20s after-restore steps\\n' "$1"
    bash -euo pipefail -c "\${AFTER_RESTORE[$1]}"
  fi
}`;

/** The restore itself: the signature first, then item by item. */
const RESTORE = `verify_signature
printf 'Restoring backup %s (%d item(s)) into %s\\n' "$BACKUP_ID" "\${#ONLY[@]}" "\${ROOT:-/}"
for id in "\${ONLY[@]}"; do
  file=$(fetch "$id")
  printf '  %-20s sha256 ok\\n' "$id"
  ((DOWNLOAD_ONLY)) && continue
  dest=$ROOT\${RESTORE_TO[$id]}
  mkdir -p -- "$dest"
  age -d -i "$IDENTITY" -- "$file" | decompress "\${COMPRESSION[$id]}" | tar -x -p --numeric-owner -f - -C "$dest"
  printf '  %-20s restored to %s\\n' "$id" "$dest"
  if [[ -z $ROOT && $SKIP_AFTER == 0 ]]; then after_restore "$id"; fi
done
printf 'Done. Next: mount the block storage for models, then pull models with sync-models.\\n'
`;

function assoc(name: string, entries: [string, string][]): string {
  const body = entries.map(([k, v]) => `  [${shellQuote(k)}]=${shellQuote(v)}`).join('\n');
  return `declare -A ${name}=(\n${body}\n)`;
}

/** The after-restore table on one line: the drill compares every other line with its own. */
export const AFTER_RESTORE_LINE = /^declare -A AFTER_RESTORE=\(.*\)$/m;

/**
 * RESTORE.sh for one backup. Its sections are constant bash; only backupValues puts values from
 * the backup in, each through shellQuote. A blank line separates the sections.
 */
export function restoreScript(input: RestoreScriptInput): string {
  return [USAGE, backupValues(input), ARGUMENTS, CHECKS, STEPS, RESTORE].join('\n\n');
}

/** The backup's id, host, bucket and keys, and the per-item tables. */
function backupValues(input: RestoreScriptInput): string {
  return [
    `# ${shellQuote(`Backup ${input.backupId} of ${input.facts.hostname || 'the GPU host'}, written by comfyume-ops ${input.toolVersion}`)}`,
    `# ${shellQuote(`Host key ${input.hostFingerprint}; Tailscale IP ${input.facts.tailscaleIp || 'unknown'}`)}`,
    `BACKUP_ID=${shellQuote(input.backupId)}`,
    `BUCKET=${shellQuote(input.bucket)}`,
    `MANIFEST_KEY=${shellQuote(input.manifestKey)}`,
    `SIGNATURE_NAMESPACE=${shellQuote(SIGNATURE_NAMESPACE)}`,
    `SIGNER_PRINCIPAL=${shellQuote(SIGNER_PRINCIPAL)}`,
    `R2_ENDPOINT=\${R2_ENDPOINT:-${shellQuote(input.endpoint)}}`,
    `ITEMS=(${input.items.map((i) => shellQuote(i.id)).join(' ')})`,
    itemTables(input.items),
  ].join('\n');
}

/** One associative array per field, by item id. */
function itemTables(items: RestoreScriptInput['items']): string {
  // Each item's steps as one quoted string, run by bash -c only on a live restore.
  const afterRestore = items
    .filter((i) => i.afterRestore.length > 0)
    .map((i) => `[${shellQuote(i.id)}]=${shellQuote(i.afterRestore.join('\n'))}`)
    .join(' ');
  return [
    assoc(
      'KEY',
      items.map((i) => [i.id, i.key]),
    ),
    assoc(
      'SHA256',
      items.map((i) => [i.id, i.sha256]),
    ),
    assoc(
      'COMPRESSION',
      items.map((i) => [i.id, i.compression]),
    ),
    assoc(
      'RESTORE_TO',
      items.map((i) => [i.id, i.restoreTo]),
    ),
    '# shellcheck disable=SC2016 # descriptions are literal text',
    assoc(
      'DESCRIPTION',
      items.map((i) => [i.id, i.description]),
    ),
    `declare -A AFTER_RESTORE=(${afterRestore})`,
  ].join('\n');
}
