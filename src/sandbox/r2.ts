// The R2 emulator: s3rver 3.7.1 in-process (the storage) behind a loopback proxy of our own that
// enforces what R2 enforces and s3rver does not (testing.md §2), verifies SigV4 credentials,
// counts Class A / Class B operations, answers ListParts / ListMultipartUploads / Abort (s3rver
// has none of them), and injects faults by rule. Upload bodies are checked against their signed
// SHA-256 on the way (r2-payload.ts). Bodies are streamed through; a CompleteMultipartUpload body
// (a small XML) and a signed PutObject body up to 256 MiB (so that a refused one leaves the old
// object untouched, as on R2; a larger refused one has already truncated it in s3rver) are read
// whole.
// The parts: r2-exchange.ts takes one request through the rules (r2-rules.ts, r2-payload.ts,
// sigv4.ts), r2-faults.ts the injected faults, r2-log.ts the request log and counts,
// r2-proxy.ts the forwarding to s3rver, r2-lists.ts the listings s3rver lacks, and
// s3rver-store.ts s3rver's files on disk. This file starts them and hands out the controls.
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';
import { boundPort } from './bound-port.js';
import { BucketLocks, serveR2Request, type R2Shared } from './r2-exchange.js';
import { FaultBook, type FaultRule } from './r2-faults.js';
import { RequestLog, type R2Counts, type R2RequestRecord } from './r2-log.js';
import type { LockRule } from './r2-rules.js';
import { S3rverStore } from './s3rver-store.js';

export type { FaultRule, R2Counts, R2RequestRecord };

export interface R2KeyPair {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface R2Emulator {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /**
   * A second key pair that may read, list and write but is refused DeleteObject, DeleteObjects
   * and AbortMultipartUpload (403 AccessDenied). It stands for "a token without delete rights" in
   * tests: real R2 tokens cannot be scoped like that (Object Read & Write includes deletes);
   * there, bucket lock rules (addLockRule) are what keep a leaked token from deleting.
   */
  noDeleteKey: R2KeyPair;
  /** s3rver's storage directory (tests may flip bytes in stored objects). */
  dir: string;
  createBucket(name: string): Promise<void>;
  /** Every request received (rejected and faulted ones included), by class and by operation. */
  counts(): R2Counts;
  requests(): R2RequestRecord[];
  resetCounts(): void;
  addFault(rule: FaultRule): void;
  clearFaults(): void;
  /** Bucket lock rules (every bucket): a delete or overwrite of a held object is refused. */
  addLockRule(rule: LockRule): void;
  clearLockRules(): void;
  /** Backdates an object (lock rules go by its age). */
  setObjectModified(bucket: string, key: string, when: Date): Promise<void>;
  /** Where s3rver keeps an object's bytes. */
  objectPath(bucket: string, key: string): string;
  /** Backdates a multipart upload (for stale-upload cleanup). */
  setUploadInitiated(bucket: string, uploadId: string, when: Date): Promise<void>;
  stop(): Promise<void>;
}

export interface R2EmulatorOptions {
  buckets?: string[];
  dir?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Bucket lock rules from the start (more with addLockRule). */
  lockRules?: LockRule[];
}

/** s3rver encrypts list continuation tokens with DES, which OpenSSL 3 only has in its legacy provider. */
function assertLegacyOpenssl(): void {
  try {
    createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
  } catch {
    throw new Error(
      'The R2 emulator needs Node started with --openssl-legacy-provider (s3rver uses DES for list ' +
        'continuation tokens; without it every truncated list page is a 500). Run through ' +
        '`npm test` / `npm run bench`, or set NODE_OPTIONS=--openssl-legacy-provider.',
    );
  }
}

export async function startR2Emulator(opts: R2EmulatorOptions = {}): Promise<R2Emulator> {
  assertLegacyOpenssl();
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'r2-emulator-')));
  const accessKeyId = opts.accessKeyId ?? `emu${randomBytes(8).toString('hex')}`;
  const secretAccessKey = opts.secretAccessKey ?? randomBytes(20).toString('hex');
  const noDeleteKey: R2KeyPair = {
    accessKeyId: `emunodelete${randomBytes(6).toString('hex')}`,
    secretAccessKey: randomBytes(20).toString('hex'),
  };
  const store = new S3rverStore(dir);

  const s3rver = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    vhostBuckets: false,
    configureBuckets: (opts.buckets ?? []).map((name) => ({ name })),
  });
  const { port: upstreamPort } = await s3rver.run();
  const shared: R2Shared = {
    store,
    upstream: { port: upstreamPort, agent: new http.Agent({ keepAlive: true, maxSockets: 64 }) },
    log: new RequestLog(),
    faults: new FaultBook(),
    locks: new BucketLocks(opts.lockRules ?? [], store),
    keys: { owner: { accessKeyId, secretAccessKey }, noDelete: noDeleteKey },
  };

  const server = http.createServer((req, res) => serveR2Request(shared, req, res));
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return {
    endpoint: `http://127.0.0.1:${boundPort(server)}`,
    accessKeyId,
    secretAccessKey,
    noDeleteKey,
    dir,
    async createBucket(name) {
      await s3rver.store.putBucket(name);
    },
    counts: () => shared.log.counts(),
    requests: () => shared.log.requests(),
    resetCounts: () => shared.log.reset(),
    addFault: (rule) => shared.faults.add(rule),
    clearFaults: () => shared.faults.clear(),
    addLockRule: (rule) => shared.locks.add(rule),
    clearLockRules: () => shared.locks.clear(),
    setObjectModified: (bucket, key, when) => store.setObjectModified(bucket, key, when),
    objectPath: (bucket, key) => store.objectPath(bucket, key),
    setUploadInitiated: (bucket, uploadId, when) =>
      store.setUploadInitiated(bucket, uploadId, when),
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      shared.upstream.agent.destroy();
      s3rver.httpServer?.closeAllConnections();
      await s3rver.close();
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
  };
}
