// The R2 inputs every action shares: where R2 is, the key pair, and key prefixes.
import { InputError } from '../../lib/errors.js';
import type { Inputs } from '../../lib/inputs.js';
import { r2Endpoint } from '../../lib/r2.js';

export interface R2Access {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** r2-endpoint (or r2-account-id), r2-access-key-id and r2-secret-access-key. */
export function parseR2Access(inputs: Inputs): R2Access {
  const endpointInput = inputs.optional('r2-endpoint');
  const accountId = inputs.optional('r2-account-id');
  return {
    endpoint: r2Endpoint({
      ...(endpointInput ? { endpoint: endpointInput } : {}),
      ...(accountId ? { accountId } : {}),
    }),
    accessKeyId: inputs.secret('r2-access-key-id', 'the R2 access key id'),
    secretAccessKey: inputs.secret('r2-secret-access-key', 'the R2 secret access key'),
  };
}

const PREFIX_RE = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/** A key prefix such as backups/verda: no leading or trailing '/', no '.' or '..' parts. */
export function parsePrefix(input: string, value: string): string {
  const expected =
    "a key prefix such as backups/verda (letters, digits, . _ - and '/' between parts; no leading or trailing '/', no '..')";
  if (!PREFIX_RE.test(value) || value.split('/').some((s) => s === '.' || s === '..')) {
    throw new InputError(input, value, expected);
  }
  return value;
}
