import { InputError } from '../../lib/errors.js';
import { Inputs, type InputSource } from '../../lib/inputs.js';
import { R2_MAX_PART, R2_MIN_PART, validateBucketName } from '../../lib/r2.js';
import { checkPrivateKey, parseFingerprints } from '../../lib/ssh.js';
import { normalizePrefix } from '../../models/bucket.js';
import { parseLocation, type ModelLocation } from '../../models/location.js';
import type { PullVia, SyncModelsOptions } from '../../models/sync.js';
import { parsePrefix, parseR2Access, type R2Access } from '../shared/r2-inputs.js';

/** The library's options that come straight from inputs, plus where and how to connect. */
export interface SyncInputs
  extends
    R2Access,
    Pick<
      SyncModelsOptions,
      | 'direction'
      | 'bucket'
      | 'prefix'
      | 'include'
      | 'compare'
      | 'concurrency'
      | 'partSize'
      | 'delete'
      | 'dryRun'
      | 'hfFallback'
      | 'hfToken'
    > {
  location: ModelLocation;
  /** pull onto an ssh:// target: through the runner (default), or fetched by the host itself. */
  pullVia: PullVia;
  ssh?: { privateKey: string; fingerprints: string[] };
  manifest: string;
  manifestIsDefault: boolean;
}

export const DEFAULT_MANIFEST = 'config/models.yml';

/** The secret inputs, masked before anything else happens. */
export const SECRET_INPUTS = [
  'r2-access-key-id',
  'r2-secret-access-key',
  'ssh-private-key',
  'hf-token',
] as const;

/** Every input checked before anything connects; each bad value names the input. */
export function parseSyncInputs(source: InputSource): SyncInputs {
  const inputs = new Inputs(source);
  const direction = inputs.oneOf('direction', ['push', 'pull'] as const);
  const where = direction === 'push' ? 'source' : 'target';
  const location = parseLocation(
    where,
    inputs.required(
      where,
      `the models directory to ${direction === 'push' ? 'read' : 'write'}: a local directory or ssh://user@host:port/path`,
    ),
  );
  const ssh =
    location.kind === 'ssh'
      ? {
          // A public key or garbage is refused here, before the bucket or the host is contacted.
          privateKey: checkPrivateKey(
            'ssh-private-key',
            inputs.secret('ssh-private-key', `a private key for ${where} ${inputs.raw(where)}`),
          ),
          fingerprints: parseFingerprints(
            'host-key-fingerprints',
            inputs.list('host-key-fingerprints'),
          ),
        }
      : undefined;
  const compare =
    inputs.raw('compare') === '' ? undefined : inputs.oneOf('compare', ['size', 'sha256'] as const);
  const partSize = inputs.size('part-size', {
    min: R2_MIN_PART,
    max: R2_MAX_PART,
    allowAuto: true,
  });
  const include = inputs.list('include');
  const manifestRaw = inputs.raw('manifest');
  const hfToken = inputs.optional('hf-token');
  return {
    direction,
    location,
    pullVia: parsePullVia(inputs, direction, location),
    ...(ssh ? { ssh } : {}),
    bucket: validateBucketName('bucket', inputs.required('bucket', 'an R2 bucket name')),
    // Checked like every other action's prefix; the vault keys are `<prefix>/<model path>`.
    prefix: normalizePrefix(parsePrefix('prefix', inputs.raw('prefix') || 'models')),
    ...parseR2Access(inputs),
    include: include.length > 0 ? include : ['**/*.safetensors'],
    ...(compare ? { compare } : {}),
    // Over SSH each file in flight is one channel, and sshd allows 10 per connection by default.
    concurrency: inputs.int('concurrency', { min: 1, max: ssh ? 8 : 64, default: 4 }),
    ...(partSize !== undefined ? { partSize } : {}),
    delete: inputs.boolean('delete', false),
    dryRun: inputs.boolean('dry-run', false),
    manifest: manifestRaw || DEFAULT_MANIFEST,
    manifestIsDefault: manifestRaw === '' || manifestRaw === DEFAULT_MANIFEST,
    // The fallback only ever fetches (pull); its default is action.yml's.
    hfFallback: direction === 'pull' && inputs.boolean('hf-fallback', true),
    ...(hfToken ? { hfToken } : {}),
  };
}

/** pull-via host only means something for a pull onto the GPU host over SSH. */
function parsePullVia(
  inputs: Inputs,
  direction: 'push' | 'pull',
  location: ModelLocation,
): PullVia {
  const pullVia = inputs.oneOf('pull-via', ['runner', 'host'] as const, 'runner');
  if (pullVia === 'host' && (direction !== 'pull' || location.kind !== 'ssh'))
    throw new InputError(
      'pull-via',
      pullVia,
      direction !== 'pull'
        ? 'runner for direction: push (host only applies to a pull)'
        : `runner for a local target (${location.kind === 'local' ? location.dir : ''}): host means the GPU host fetches from R2 itself, which needs target: ssh://user@host:port/path`,
    );
  return pullVia;
}
