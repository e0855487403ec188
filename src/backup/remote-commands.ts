// The remote side of a backup, as shell text: every value is quoted with shellQuote, only the
// configured * and ? globs reach the shell unquoted (shellGlob).
import { shellGlob, shellQuote } from '../lib/shell.js';
import { onHost, type BackupConfig, type BackupItem } from './config.js';

export const COMPRESSOR_NAMES = ['zstd', 'gzip'] as const;
export type Compressor = (typeof COMPRESSOR_NAMES)[number];

export const COMPRESSORS: Record<
  Compressor,
  { command: string; extension: string; decompress: string }
> = {
  zstd: { command: 'zstd -q -c -T0', extension: 'tar.zst', decompress: 'zstd -dc' },
  gzip: { command: 'gzip -c', extension: 'tar.gz', decompress: 'gzip -dc' },
};

/** A path relative to the host root, as tar stores it (members never start with /). */
function memberOf(path: string): string {
  return path === '/' ? '.' : path.slice(1).replace(/\/$/, '');
}

/** tar --exclude patterns (anchored member names) for an item: each exclude under each path. */
export function excludePatterns(item: Pick<BackupItem, 'paths' | 'exclude'>): string[] {
  const out: string[] = [];
  for (const path of item.paths)
    for (const ex of item.exclude) out.push(`${memberOf(path)}/${ex.replace(/\/$/, '')}`);
  return out;
}

/** `bash -o pipefail -c '…'`: the login shell may be zsh; pipefail makes a failed tar fail the run. */
export function bashPipefail(script: string): string {
  return `bash -o pipefail -c ${shellQuote(script)}`;
}

/**
 * One remote command per item: an uncompressed tar (through the sudo read wrapper for root-owned
 * items) piped into the host's compressor. Members are relative to host-root.
 */
export function archiveCommand(
  config: Pick<BackupConfig, 'host-root' | 'read-wrapper'>,
  item: BackupItem,
  compressor: Compressor,
): string {
  const root = config['host-root'];
  const excludes = excludePatterns(item).map((p) => shellQuote(`--exclude=${p}`));
  let archiver: string;
  if (item.sudo) {
    const paths = item.paths.map((p) => shellGlob(onHost(config, p)));
    archiver = [
      'sudo -n',
      shellQuote(config['read-wrapper']),
      '-C',
      shellQuote(root),
      ...excludes,
      '--',
      ...paths,
    ].join(' ');
  } else {
    // Relative members, so globs expand from the root: cd there first.
    const members = item.paths.map((p) => shellGlob(memberOf(p)));
    archiver = [
      `cd -- ${shellQuote(root)} &&`,
      // The C locale: tar's "Total bytes written" line must not be translated (it is parsed).
      // Owner names are kept (no --numeric-owner): a rebuilt host may give the dev user
      // another uid, and RESTORE.sh then gives the files back by name.
      'LC_ALL=C tar --create --file=- --totals --anchored',
      ...excludes,
      '--',
      ...members,
    ].join(' ');
  }
  return bashPipefail(`${archiver} | ${COMPRESSORS[compressor].command}`);
}

/**
 * One probe for the whole plan: which compressor the host has, whether the sudo rule works, and
 * which configured paths (after glob expansion) exist. Output lines are tab-separated.
 */
export function probeCommand(config: BackupConfig): string {
  const lines = [
    'if command -v zstd >/dev/null 2>&1; then echo compressor zstd; else echo compressor gzip; fi',
  ];
  if (config.items.some((i) => i.sudo)) {
    lines.push(
      `if sudo -n -l ${shellQuote(config['read-wrapper'])} >/dev/null 2>&1; then echo sudo ok; else echo sudo missing; fi`,
    );
  }
  for (const item of config.items) {
    for (const path of item.paths) {
      lines.push(
        `for f in ${shellGlob(onHost(config, path))}; do if [ -e "$f" ] || [ -L "$f" ]; then s=present; else s=missing; fi; ` +
          `printf '%s\\t%s\\t%s\\n' "$s" ${shellQuote(item.id)} "$f"; done`,
      );
    }
  }
  return bashPipefail(lines.join('\n'));
}

/** What the probe's sudo line can say. */
const SUDO_ANSWERS = ['ok', 'missing'] as const;

export interface ProbeResult {
  compressor: Compressor;
  sudo: (typeof SUDO_ANSWERS)[number] | 'unused';
  /** Host paths that exist, by item id. */
  present: Map<string, string[]>;
  /** Host paths (or unmatched globs) that do not, by item id. */
  missing: Map<string, string[]>;
}

export function parseProbe(output: string): ProbeResult {
  const result: ProbeResult = {
    compressor: 'gzip',
    sudo: 'unused',
    present: new Map(),
    missing: new Map(),
  };
  for (const line of output.split('\n')) {
    // Found in the lists of known answers, so typed without a cast.
    const compressor = COMPRESSOR_NAMES.find((c) => line === `compressor ${c}`);
    const sudo = SUDO_ANSWERS.find((s) => line === `sudo ${s}`);
    if (compressor) result.compressor = compressor;
    else if (sudo) result.sudo = sudo;
    else {
      const [state, id, path] = line.split('\t');
      if ((state !== 'present' && state !== 'missing') || !id || path === undefined) continue;
      const map = state === 'present' ? result.present : result.missing;
      map.set(id, [...(map.get(id) ?? []), path]);
    }
  }
  return result;
}

/** GNU tar's --totals line: "Total bytes written: 10240 (10KiB, 9.8MiB/s)". */
export function parseTarTotals(stderr: string): number | undefined {
  const match = /Total bytes written: (\d+)/.exec(stderr);
  return match ? Number(match[1]) : undefined;
}

/**
 * tar exits 1 when a file changed while it was read: the archive is usable, so that alone is a
 * warning. Any other cause of exit 1 (sudo refused, cd failed, the compressor failed) is not.
 */
export function changedWhileReading(stderr: string): boolean {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^Total bytes written:/.test(l) && !/Removing leading/.test(l));
  return (
    lines.length > 0 &&
    lines.every((l) =>
      /file changed as we read it|file shrank by|file is unchanged; not dumped/.test(l),
    )
  );
}
