// Facts recorded with each backup: tailscale ip -4, hostname, OS release, kernel and the disk
// usage of the configured mounts. Each is best-effort; a missing fact is a warning, not a failure.
import { z } from 'zod';
import { hasControlChars } from '../lib/safe-path.js';
import { shellQuote } from '../lib/shell.js';
import { absolutePath } from '../lib/safe-path.js';
import { ITEM_ID_RE, onHost, type BackupConfig } from './config.js';
import { bashPipefail } from './remote-commands.js';

/** Free text from the host (an OS name, a mount point): printable, one line, bounded. */
export const hostText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((text) => !hasControlChars(text), 'must not contain control characters');

const HOSTNAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const KERNEL_RE = /^[A-Za-z0-9._+~-]{1,100}$/;

const UNIX_NAME = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/);

/** The dev user as `getent passwd` and `id -Gn` told it at backup time (RESTORE.sh recreates it). */
const userFactSchema = z.strictObject({
  name: UNIX_NAME,
  uid: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 2),
  gid: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 2),
  groups: z.array(UNIX_NAME).max(64),
  home: absolutePath('user home'),
  shell: absolutePath('user shell'),
});

/** Which docker package the host had: RESTORE.sh installs the same one. */
export const DOCKER_PACKAGES = ['docker.io', 'docker-ce'] as const;

const diskFactSchema = z.strictObject({
  path: absolutePath('disk path'),
  filesystem: hostText(256),
  sizeBytes: z.number().int().nonnegative(),
  usedBytes: z.number().int().nonnegative(),
  availableBytes: z.number().int().nonnegative(),
  mountedOn: hostText(1024),
});

/** What the host said about itself; each value is checked, an odd one is recorded as ''. */
export const hostFactsSchema = z.strictObject({
  tailscaleIp: z.union([z.literal(''), z.ipv4()]),
  hostname: z.union([z.literal(''), z.string().regex(HOSTNAME_RE)]),
  os: hostText(200),
  kernel: z.union([z.literal(''), z.string().regex(KERNEL_RE)]),
  disks: z.record(z.string().regex(ITEM_ID_RE), diskFactSchema),
  /** Absent in backups made before the rebuild recorded them. */
  user: userFactSchema.nullable().default(null),
  docker: z.union([z.literal(''), z.enum(DOCKER_PACKAGES)]).default(''),
});

export type UserFact = z.infer<typeof userFactSchema>;
export type DiskFact = z.infer<typeof diskFactSchema>;
export type HostFacts = z.infer<typeof hostFactsSchema>;

export function factsCommand(
  config: Pick<BackupConfig, 'disk-facts' | 'host-root' | 'host'>,
): string {
  const user = shellQuote(config.host.user);
  const lines = [
    `printf 'user\\t%s\\n' "$(getent passwd ${user})"`,
    `printf 'groups\\t%s\\n' "$(id -Gn ${user} 2>/dev/null)"`,
    `printf 'docker\\t%s\\n' "$(dpkg-query -W -f '\${db:Status-Status} \${Package}\\n' ${DOCKER_PACKAGES.join(' ')} 2>/dev/null | awk '$1 == "installed" {print $2; exit}')"`,
    `printf 'tailscale-ip\\t%s\\n' "$(tailscale ip -4 2>/dev/null | head -n 1)"`,
    `printf 'hostname\\t%s\\n' "$(hostname 2>/dev/null)"`,
    `printf 'os\\t%s\\n' "$( (. /etc/os-release && printf '%s' "$PRETTY_NAME") 2>/dev/null)"`,
    `printf 'kernel\\t%s\\n' "$(uname -r)"`,
  ];
  for (const [name, path] of Object.entries(config['disk-facts'])) {
    lines.push(
      `printf 'disk\\t%s\\t%s\\t%s\\n' ${shellQuote(name)} ${shellQuote(path)} "$(df -P -B1 -- ${shellQuote(onHost(config, path))} 2>/dev/null | tail -n 1)"`,
    );
  }
  // Facts are best-effort: never let one failed probe fail the script.
  return bashPipefail(`${lines.join('\n')}\nexit 0`);
}

/**
 * Parses what the facts command printed. The host is not trusted: a value that is not of its
 * kind (a hostname with a newline, df output that is no number) is dropped and reported missing,
 * and only the disks of the config are taken, with the config's path.
 */
export function parseFacts(
  output: string,
  diskFacts: Record<string, string> = {},
): { facts: HostFacts; missing: string[] } {
  const facts: HostFacts = {
    tailscaleIp: '',
    hostname: '',
    os: '',
    kernel: '',
    disks: {},
    user: null,
    docker: '',
  };
  let passwd = '';
  let groups = '';
  const missing: string[] = [];
  const invalid = new Set<string>();
  const fields = hostFactsSchema.shape;
  const take = (field: 'tailscaleIp' | 'hostname' | 'os' | 'kernel', value: string) => {
    const parsed = fields[field].safeParse(value);
    if (parsed.success) facts[field] = parsed.data;
    else {
      invalid.add(field);
      missing.push(`${field} from the host is not valid: ${JSON.stringify(value.slice(0, 80))}`);
    }
  };
  for (const line of output.split('\n')) {
    const [kind, a = '', , c = ''] = line.split('\t');
    if (kind === 'tailscale-ip') take('tailscaleIp', a.trim());
    else if (kind === 'hostname') take('hostname', a.trim());
    else if (kind === 'os') take('os', a.trim());
    else if (kind === 'kernel') take('kernel', a.trim());
    else if (kind === 'user') passwd = a.trim();
    else if (kind === 'groups') groups = a.trim();
    else if (kind === 'docker') {
      const docker = fields.docker.safeParse(a.trim());
      if (docker.success) facts.docker = docker.data;
    } else if (kind === 'disk' && Object.hasOwn(diskFacts, a)) {
      const f = c.trim().split(/\s+/);
      const disk = diskFactSchema.safeParse({
        path: diskFacts[a],
        filesystem: f[0] ?? '',
        sizeBytes: Number(f[1]),
        usedBytes: Number(f[2]),
        availableBytes: Number(f[3]),
        mountedOn: f.slice(5).join(' '),
      });
      facts.disks[a] =
        f.length >= 6 && disk.success
          ? disk.data
          : {
              path: diskFacts[a] ?? '/',
              filesystem: '',
              sizeBytes: 0,
              usedBytes: 0,
              availableBytes: 0,
              mountedOn: '',
            };
    }
  }
  facts.user = parseUser(passwd, groups);
  if (!facts.user) missing.push(`getent passwd of the host user gave no valid entry`);
  if (!facts.tailscaleIp && !invalid.has('tailscaleIp'))
    missing.push('tailscale ip -4 gave no IPv4 address');
  if (!facts.hostname && !invalid.has('hostname')) missing.push('hostname is empty');
  for (const [name, disk] of Object.entries(facts.disks)) {
    if (!disk.filesystem) missing.push(`df of ${name} (${disk.path}) failed`);
  }
  return { facts, missing };
}

/** `name:x:uid:gid:gecos:home:shell` and `id -Gn`, checked; undefined fields make it null. */
function parseUser(passwd: string, groups: string): UserFact | null {
  const f = passwd.split(':');
  if (f.length !== 7) return null;
  const user = userFactSchema.safeParse({
    name: f[0],
    uid: Number(f[2]),
    gid: Number(f[3]),
    groups: groups.split(/\s+/).filter(Boolean),
    home: f[5],
    shell: f[6],
  });
  return user.success ? user.data : null;
}
