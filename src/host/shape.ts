// What the GPU host must be, as the seed's Phase 11 lists it: its user and login shell, the
// project, the two mounts and the symlinks into them, the VPS Redis, the ComfyUI address. One
// schema, the `host:` section of config/backup.yml: RESTORE.sh rebuilds towards it, verify-host
// checks against it. Every value reaches shell only through shellQuote.
import { z } from 'zod';
import { absolutePath } from '../lib/safe-path.js';

/** A Unix user or group name, as useradd takes it. */
export const UNIX_NAME_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
/** A Debian package name. */
const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]{1,62}$/;
/** host:port of a TCP service (the VPS Redis). */
const HOST_PORT_RE = /^(?<host>[A-Za-z0-9.-]{1,253}):(?<port>\d{1,5})$/;
/** A container name as docker ps prints it. */
const CONTAINER_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

const hostPort = z
  .string()
  .regex(HOST_PORT_RE, 'must be host:port, such as 100.99.216.71:6379')
  .refine((v) => Number(v.split(':')[1]) <= 65535, 'port must be at most 65535');

export const hostShapeSchema = z.strictObject({
  /** The dev user: created with the uid, gid and groups recorded at backup time when free. */
  user: z.string().regex(UNIX_NAME_RE, 'must be a Unix user name such as dev').default('dev'),
  /** The login shell's program name; RESTORE.sh installs it and sets it. */
  shell: z.enum(['zsh', 'bash']).default('zsh'),
  home: absolutePath('home').default('/home/dev'),
  /** The ComfyUI project (docker compose file inside) and its .env. */
  project: absolutePath('project').default('/home/dev/comfy-multi'),
  'env-file': absolutePath('env-file').default('/home/dev/comfy-multi/.env'),
  /** Where the shared filesystem (models) and the block device (scratch) are mounted. */
  mounts: z
    .strictObject({
      models: absolutePath('mounts.models').default('/mnt/models'),
      scratch: absolutePath('mounts.scratch').default('/mnt/scratch'),
    })
    .prefault({}),
  /** Symlink → target, the seed's data/models, data/outputs, data/inputs. */
  links: z.record(absolutePath('link'), absolutePath('link target')).default({}),
  /** Free space each mount must have, in MiB (verify-host). */
  'min-free-mib': z.number().int().nonnegative().default(1024),
  /** The VPS Redis the host's queue talks to (the seed's 100.99.216.71:6379). */
  redis: hostPort.optional(),
  /** The Tailscale IP the host must have; RESTORE.sh takes the backup's own. */
  'tailscale-ip': z.ipv4().optional(),
  /** oh-my-zsh theme that .zshrc must name (and that custom/themes must hold). */
  'zsh-theme': z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/)
    .default('bullet-train'),
  /** Containers that must be running (docker ps names). */
  containers: z.array(z.string().regex(CONTAINER_RE, 'must be a container name')).default([]),
  /** Where ComfyUI answers on the host. */
  'comfyui-url': z
    .url({ protocol: /^https?$/ })
    .refine((u) => !/[\s'"\\]/.test(u), 'must not contain quotes, backslashes or spaces')
    .default('http://127.0.0.1:8188'),
  /** A small ComfyUI workflow (API format, JSON) on the host that verify-host queues and waits for. */
  'test-workflow': absolutePath('test-workflow').optional(),
  'test-workflow-timeout-s': z.number().int().min(1).max(3600).default(300),
  /** Packages the packages step installs (docker and tailscale come on their own). */
  packages: z
    .array(z.string().regex(PACKAGE_RE, 'must be a Debian package name'))
    .default([
      'fail2ban',
      'ufw',
      'redis-tools',
      'zsh',
      'git',
      'curl',
      'wget',
      'age',
      'zstd',
      'python3-systemd',
    ]),
});

export type HostShape = z.output<typeof hostShapeSchema>;

/** The default shape: what an absent `host:` section means. */
export const DEFAULT_HOST_SHAPE: HostShape = hostShapeSchema.parse({});

export function redisAddress(shape: HostShape): { host: string; port: number } | undefined {
  const m = shape.redis ? HOST_PORT_RE.exec(shape.redis) : null;
  return m?.groups ? { host: m.groups.host ?? '', port: Number(m.groups.port) } : undefined;
}
