// RESTORE.sh, written next to each manifest: rebuilds a fresh Ubuntu 22.04/24.04 (or Debian 12)
// instance into the backed-up GPU host in named steps (restore-steps.ts), each checking first and
// changing only what differs. Before anything changes it checks the backup's signature (ssh-keygen
// -Y verify against an allowed signers file the admin gives it), that the signed manifest vouches
// for this very script, and every archive's sha256. Every value from the backup reaches the script
// through shellQuote (one line each, comments included): it is data, never code.
// Generated bash must stay shellcheck-clean (a test runs /usr/bin/shellcheck on it).
import { checkProgram, type CheckId } from '../host/checks.js';
import type { HostShape } from '../host/shape.js';
import type { CheckLevel } from '../host/verify-config.js';
import { shellQuote } from '../lib/shell.js';
import type { HostFacts } from './facts.js';
import type { ManifestItem } from './manifest.js';
import { RESTORE_STEPS, STEP_BASH } from './restore-steps.js';
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
  /** The host to rebuild into, and the checks its verify step runs. */
  shape: HostShape;
  checks: { id: CheckId; level: Exclude<CheckLevel, 'off'> }[];
  items: Pick<
    ManifestItem,
    'id' | 'description' | 'key' | 'sha256' | 'compression' | 'restoreTo' | 'afterRestore' | 'step'
  >[];
}

/** The usage text (usage() prints the comment block after line 1) and strict mode. */
const USAGE = `#!/usr/bin/env bash
# RESTORE.sh of one comfyume-ops backup: rebuilds a fresh Ubuntu 22.04/24.04 (or Debian 12)
# instance into the backed-up GPU host, as root, in named steps (the backup is set below).
#
# Usage: sudo bash RESTORE.sh --signers FILE --identity AGE_KEY_FILE [options]
#   --signers FILE           allowed signers (config/backup-signers of the comfyume-ops
#                            repository): the backup's signature must verify against one of them
#   --identity FILE          age identity (AGE-SECRET-KEY-1...) of one of the backup's recipients
#   --from DIR               manifest.json, its .sig and the archives already in DIR; otherwise
#                            fetched from R2 with the aws CLI (AWS_ACCESS_KEY_ID,
#                            AWS_SECRET_ACCESS_KEY, and R2_ENDPOINT if it differs)
#   --only STEP, --skip STEP run only / skip these steps (repeatable); --list-steps lists them
#   --item ITEM              restore only these items (repeatable); --list lists them
#   --dry-run                check everything and print what each step would change
#   --models-mount 'SOURCE FSTYPE [OPTIONS]'   the shared filesystem (or $MODELS_MOUNT)
#   --scratch-mount 'SOURCE FSTYPE [OPTIONS]'  the block device (or $SCRATCH_MOUNT)
#   --ohmyzsh-repo URL       where oh-my-zsh is cloned from when missing (default: GitHub)
#   --tailscale-auth-key-file FILE   a Tailscale auth key, only if the restored identity must log in again
#   --skip-check CHECK       leave one check of the verify step out (repeatable)
#   --root DIR               a drill: restore the items' files under DIR, no system step runs
#   --download-only          download and verify the backup, change nothing
#   --skip-after-restore     do not run the items' after-restore commands
#
# Each step checks first and changes only what differs, says what it changed and how long it
# took; a second run reports 0 changes. Nothing is changed before the signature and every
# archive's sha256 are checked (preflight).
set -euo pipefail`;

/**
 * RESTORE.sh for one backup. Its sections are constant bash; only backupValues and hostValues
 * put values from the backup in, each through shellQuote. A blank line separates the sections.
 */
export function restoreScript(input: RestoreScriptInput): string {
  return [
    USAGE,
    backupValues(input),
    hostValues(input),
    checkProgram({ shape: input.shape, tailscaleIp: input.facts.tailscaleIp || undefined }),
    ...STEP_BASH,
  ].join('\n\n');
}

function assoc(name: string, entries: [string, string][]): string {
  const body = entries.map(([k, v]) => `  [${shellQuote(k)}]=${shellQuote(v)}`).join('\n');
  return `declare -A ${name}=(\n${body}\n)`;
}

/** The after-restore table on one line: the drill compares every other line with its own. */
export const AFTER_RESTORE_LINE = /^declare -A AFTER_RESTORE=\(.*\)$/m;

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
    `STEPS=(${RESTORE_STEPS.join(' ')})`,
    `ITEMS=(${input.items.map((i) => shellQuote(i.id)).join(' ')})`,
    itemTables(input.items),
  ].join('\n');
}

/** The host the backup came from, as RESTORE.sh rebuilds it. */
function hostValues(input: RestoreScriptInput): string {
  const { shape, facts } = input;
  const user = facts.user?.name === shape.user ? facts.user : null;
  const groups = (user?.groups ?? ['docker']).filter((g) => g !== shape.user);
  return [
    `TAILSCALE_IP=${shellQuote(facts.tailscaleIp)}`,
    `DOCKER_PACKAGE=${shellQuote(facts.docker || 'docker.io')}`,
    `PACKAGES=(${shape.packages.map(shellQuote).join(' ')})`,
    `HOST_USER=${shellQuote(shape.user)}`,
    `USER_UID=${user ? user.uid : "''"}`,
    `USER_GID=${user ? user.gid : "''"}`,
    `USER_GROUPS=(${groups.map(shellQuote).join(' ')})`,
    `USER_SHELL=${shellQuote(shape.shell)}`,
    `USER_HOME=${shellQuote(shape.home)}`,
    `PROJECT=${shellQuote(shape.project)}`,
    `ENV_FILE=${shellQuote(shape['env-file'])}`,
    `MODELS_PATH=${shellQuote(shape.mounts.models)}`,
    `SCRATCH_PATH=${shellQuote(shape.mounts.scratch)}`,
    `VERIFY_CHECKS=(${input.checks.map((c) => c.id).join(' ')})`,
    `declare -A CHECK_LEVEL=(${input.checks.map((c) => `[${c.id}]=${c.level}`).join(' ')})`,
  ].join('\n');
}

/** One associative array per field, by item id. */
function itemTables(items: RestoreScriptInput['items']): string {
  // Each item's steps as one quoted string, run by bash -c only on a live restore.
  const afterRestore = items
    .filter((i) => i.afterRestore.length > 0)
    .map((i) => `[${shellQuote(i.id)}]=${shellQuote(i.afterRestore.join('\n'))}`)
    .join(' ');
  const table = (name: string, field: (i: RestoreScriptInput['items'][number]) => string) =>
    assoc(
      name,
      items.map((i) => [i.id, field(i)]),
    );
  return [
    table('KEY', (i) => i.key),
    table('SHA256', (i) => i.sha256),
    table('COMPRESSION', (i) => i.compression),
    table('RESTORE_TO', (i) => i.restoreTo),
    table('STEP_OF', (i) => i.step),
    '# shellcheck disable=SC2016 # descriptions are literal text',
    table('DESCRIPTION', (i) => i.description),
    `declare -A AFTER_RESTORE=(${afterRestore})`,
  ].join('\n');
}
