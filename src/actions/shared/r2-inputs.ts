// The R2 inputs every action shares (where R2 is, the key pair, key prefixes) and its client.
import { InputError } from '../../lib/errors.js';
import type { Inputs } from '../../lib/inputs.js';
import type { S3Client } from '@aws-sdk/client-s3';
import { createR2Client, r2Endpoint } from '../../lib/r2.js';

export interface R2Access {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** r2-timeout: one request's longest wait, then it is cut and retried. */
  r2TimeoutMs: number;
}

/** r2-endpoint (or r2-account-id), r2-access-key-id, r2-secret-access-key and r2-timeout. */
export function parseR2Access(inputs: Inputs): R2Access {
  const endpointInput = inputs.optional('r2-endpoint');
  const accountId = inputs.optional('r2-account-id');
  const r2TimeoutMs = inputs.duration('r2-timeout', '2m');
  if (r2TimeoutMs < 1000)
    throw new InputError('r2-timeout', inputs.raw('r2-timeout'), 'a duration of at least 1s');
  return {
    r2TimeoutMs,
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

/** An action's R2 client: our own retry (logged, per request) replaces the SDK's silent one. */
export function actionR2Client(access: R2Access): S3Client {
  const { endpoint, accessKeyId, secretAccessKey, r2TimeoutMs } = access;
  return createR2Client({
    endpoint,
    accessKeyId,
    secretAccessKey,
    maxAttempts: 1,
    requestTimeoutMs: r2TimeoutMs,
  });
}
