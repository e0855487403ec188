// The endpoint handed to the queue-manager on the VPS: its `.env` line replaced atomically over
// SSH (pinned host key), the other lines byte for byte as they were, then the queue-manager
// restarted so it reads the new value. `start` hands on the URL once a job rendered; `stop` and
// `delete` hand on the empty value (down). The URL comes from the Verda API: it is checked here
// before it is written into any file or variable.
import { createHash } from 'node:crypto';
import { InputError, OpsError, errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { bashText, shellQuote } from '../lib/shell.js';
import { connectSsh, type ConnectOptions, type SshConnection } from '../lib/ssh.js';

/**
 * The value that marks the workshop down: empty. Every reader treats an empty endpoint as "no
 * endpoint" without knowing a convention (a sentinel such as `down` would be sent jobs by a
 * reader that only checks for non-empty), and `vars.X` of a deleted GitHub variable reads empty.
 */
export const ENDPOINT_DOWN = '';

// The endpoint's rule has one home, where the API's answer is read (normalize.ts).
export { checkEndpointUrl } from './normalize.js';

const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function checkEnvKey(input: string, key: string): string {
  if (!ENV_KEY_RE.test(key) || key.length > 100)
    throw new InputError(
      input,
      key,
      'a variable name of letters, digits and _ (e.g. WORKSHOP_ENDPOINT)',
    );
  return key;
}

export interface EnvEdit {
  content: Buffer;
  /** How many `KEY=` lines were replaced (0: the line was appended). */
  replaced: number;
  changed: boolean;
}

/**
 * Sets `key=value` in a dotenv file's bytes: every `KEY=` line (also `export KEY=`, spaces
 * around `=`) becomes `[export ]KEY=value`, keeping its own line ending; without one the line is
 * appended. Every other byte stays as it was (latin1 maps bytes one to one).
 */
export function setEnvLine(original: Buffer, key: string, value: string): EnvEdit {
  const text = original.toString('latin1');
  const lines = text.split('\n');
  const match = new RegExp(`^([ \\t]*)(export[ \\t]+)?${key}[ \\t]*=`);
  let replaced = 0;
  const out = lines.map((line) => {
    const m = match.exec(line);
    if (!m) return line;
    replaced++;
    return `${m[1] ?? ''}${m[2] ?? ''}${key}=${value}${line.endsWith('\r') ? '\r' : ''}`;
  });
  let result = out.join('\n');
  if (replaced === 0) {
    const sep = text === '' || text.endsWith('\n') ? '' : '\n';
    result = `${text}${sep}${key}=${value}\n`;
  }
  const content = Buffer.from(result, 'latin1');
  return { content, replaced, changed: !content.equals(original) };
}

/** How the queue-manager is restarted after its .env changed. */
export type RestartSpec =
  { kind: 'systemd'; unit: string } | { kind: 'compose'; projectDir: string; service: string };

const UNIT_RE = /^[A-Za-z0-9][A-Za-z0-9@_.:-]{0,250}$/;
const SERVICE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const DIR_RE = /^\/[A-Za-z0-9._/-]*$/;
const RESTART_EXPECTED =
  'systemd:<unit> (e.g. systemd:queue-manager.service) or compose:<absolute project dir>:<service> (e.g. compose:/home/dev/comfy-multi:queue-manager)';

export function parseRestart(input: string, value: string): RestartSpec {
  if (value.startsWith('systemd:')) {
    const unit = value.slice('systemd:'.length);
    if (UNIT_RE.test(unit)) return { kind: 'systemd', unit };
  } else if (value.startsWith('compose:')) {
    const rest = value.slice('compose:'.length);
    const at = rest.lastIndexOf(':');
    const projectDir = rest.slice(0, at);
    const service = rest.slice(at + 1);
    const dirOk = DIR_RE.test(projectDir) && !projectDir.split('/').includes('..');
    if (at > 0 && dirOk && SERVICE_RE.test(service))
      return { kind: 'compose', projectDir, service };
  }
  throw new InputError(input, value, RESTART_EXPECTED);
}

export function describeRestart(r: RestartSpec): string {
  return r.kind === 'systemd'
    ? `systemctl restart ${r.unit}`
    : `docker compose --project-directory ${r.projectDir} up -d --no-deps --force-recreate ${r.service}`;
}

/** The remote command of a restart; values only as quoted words. */
function restartCommand(r: RestartSpec): string {
  if (r.kind === 'compose') {
    // `up --force-recreate`, not `restart`: a restarted container keeps its old environment.
    return `docker compose --project-directory ${shellQuote(r.projectDir)} up -d --no-deps --force-recreate ${shellQuote(r.service)}`;
  }
  // Root restarts the unit itself; anyone else through `sudo -n` (a NOPASSWD rule for exactly
  // this command, see the README), which fails at once instead of asking for a password.
  return `bash -c ${shellQuote(RESTART_SYSTEMD)} _ ${shellQuote(r.unit)}`;
}

const RESTART_SYSTEMD = bashText`set -eu
if [ "$(id -u)" = 0 ]; then systemctl restart "$1"; else sudo -n systemctl restart "$1"; fi`;

// Reads the file as it is (following a symlink to the file the service reads).
const READ_SCRIPT = bashText`set -eu
f=$(readlink -f -- "$1") || { echo "cannot resolve $1" >&2; exit 3; }
[ -f "$f" ] || { echo "$1 does not exist (or is not a file)" >&2; exit 3; }
cat -- "$f"`;

// stdin -> a temp file in the same directory (same filesystem: rename is atomic), mode and
// owner of the original, flushed, then renamed over it only if the original is still the file
// that was read (its sha256). Prints the sha256 of what is now in place.
const WRITE_SCRIPT = bashText`set -euo pipefail
f=$(readlink -f -- "$1"); expected=$2
dir=$(dirname -- "$f"); base=$(basename -- "$f")
tmp=$(mktemp -- "$dir/.$base.XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chmod --reference="$f" -- "$tmp"
if [ "$(stat -c %u:%g -- "$f")" != "$(stat -c %u:%g -- "$tmp")" ]; then
  chown --reference="$f" -- "$tmp" || { echo "cannot give the new file the owner of $f" >&2; exit 5; }
fi
actual=$(sha256sum -- "$f" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then echo "$f changed while it was being edited: not replaced" >&2; exit 4; fi
sync -- "$tmp" 2>/dev/null || sync
mv -f -- "$tmp" "$f"
trap - EXIT
sha256sum -- "$f" | cut -d' ' -f1`;

export interface VpsTarget extends Omit<ConnectOptions, 'logger'> {
  envFile: string;
  key: string;
  restart: RestartSpec;
}

export interface VpsHandoff {
  host: string;
  envFile: string;
  line: string;
  replaced: number;
  changed: boolean;
  sha256Before: string;
  sha256After: string;
  /** What was restarted. */
  restarted?: string;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function readRemote(conn: SshConnection, file: string): Promise<Buffer> {
  const exec = conn.exec(`bash -c ${shellQuote(READ_SCRIPT)} _ ${shellQuote(file)}`);
  const chunks: Buffer[] = [];
  exec.stdout.on('data', (d: Buffer) => chunks.push(d));
  await exec.done;
  return Buffer.concat(chunks);
}

async function writeRemote(
  conn: SshConnection,
  file: string,
  before: string,
  content: Buffer,
): Promise<string> {
  const up = conn.writeTo(
    `bash -c ${shellQuote(WRITE_SCRIPT)} _ ${shellQuote(file)} ${shellQuote(before)}`,
  );
  up.stdin.end(content);
  await up.done;
  return up.stdoutText().trim();
}

/**
 * Sets `key=value` in the VPS's env file (not written when it already holds exactly that line)
 * and restarts the queue-manager.
 */
export async function handOffToVps(
  target: VpsTarget,
  value: string,
  logger: Logger,
): Promise<VpsHandoff> {
  const { envFile, key, restart, ...ssh } = target;
  const where = `${ssh.username}@${ssh.host}:${envFile}`;
  let conn: SshConnection | undefined;
  try {
    conn = await connectSsh({ ...ssh, logger });
    const original = await readRemote(conn, envFile);
    const edit = setEnvLine(original, key, value);
    const out: VpsHandoff = {
      host: ssh.host,
      envFile,
      line: `${key}=${value}`,
      replaced: edit.replaced,
      changed: edit.changed,
      sha256Before: sha256(original),
      sha256After: sha256(edit.content),
    };
    if (!edit.changed) {
      logger.info(`${where} already has ${out.line}: not written`);
    } else {
      const inPlace = await writeRemote(conn, envFile, out.sha256Before, edit.content);
      if (inPlace !== out.sha256After) {
        throw new OpsError(
          `${where}: after the rename the file has sha256 ${inPlace || '(none)'}, not the ${out.sha256After} that was sent`,
        );
      }
      logger.info(
        `${where}: ${out.line} (${edit.replaced ? `replaced ${edit.replaced} line(s)` : 'appended'})`,
      );
    }
    // Restarted even when the file was already right: a run whose restart failed left the
    // service on the old value, and the file alone cannot tell.
    try {
      await conn.run(restartCommand(restart));
    } catch (err) {
      throw new OpsError(
        `${where}: ${edit.changed ? 'the line was written' : 'the line was already there'}, but restarting the queue-manager (${describeRestart(restart)}) failed: ${errorMessage(err)}`,
      );
    }
    out.restarted = describeRestart(restart);
    logger.info(`${ssh.host}: ${out.restarted}`);
    return out;
  } catch (err) {
    if (err instanceof OpsError && err.message.startsWith(where)) throw err;
    throw new OpsError(`handing the endpoint to ${where} failed: ${errorMessage(err)}`);
  } finally {
    await conn?.close();
  }
}
