// The model sync: inventory both sides once, decide per file (size, or sha256 when the vault
// knows it), move only what differs, and write models-manifest.json last. The library entry for
// the sync-models action, the CLI and backup-verda's with-models.
import type { S3Client } from '@aws-sdk/client-s3';
import { OpsError, errorMessage } from '../lib/errors.js';
import { formatBytes, formatDuration, formatRate } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import { BufferPool, Semaphore, forEachLimit } from '../lib/limits.js';
import { R2_MAX_PART, r2PartSize } from '../lib/r2.js';
import { R2Store } from '../lib/r2-store.js';
import {
  MANIFEST_NAME,
  listVault,
  readManifest,
  vaultKey,
  vaultUrl,
  writeManifest,
  type Vault,
  type VaultObject,
} from './bucket.js';
import type { ModelManifestConfig } from './config.js';
import { matcher } from './glob.js';
import { refuseUnsafePaths, unsafeModelPaths } from './model-path.js';
import { Progress } from './progress.js';
import { probeCurl } from './host-fetch.js';
import type { PartialFile } from './partial.js';
import { SshModelHost, type ModelFile, type ModelHost } from './host.js';
import { hostVaultFill, pullFile, streamFill, urlSource, vaultSource, type Fill } from './pull.js';
import { SHA256_META, pushFile } from './push.js';
import { countRequests, type RequestCounts } from './request-counts.js';

export type Compare = 'size' | 'sha256';
export type PullVia = 'runner' | 'host';

export interface SyncModelsOptions {
  direction: 'push' | 'pull';
  /** push: where models are read; pull: where they are written (a local dir or the SSH host). */
  host: ModelHost;
  client: S3Client;
  bucket: string;
  prefix: string;
  include: string[];
  /** Undefined: sha256 when the vault has a manifest, else size. */
  compare?: Compare;
  concurrency: number;
  /** Undefined: max(8 MiB, size/10000) per file (r2PartSize). */
  partSize?: number;
  delete: boolean;
  dryRun: boolean;
  /** config/models.yml: HuggingFace fallback and required models on pull. */
  models?: ModelManifestConfig;
  hfFallback: boolean;
  hfToken?: string;
  progressIntervalMs?: number;
  /**
   * pull to an SSH host: `runner` streams every byte through this process; `host` has the host
   * fetch each vault object itself with curl on a presigned URL (the HuggingFace fallback still
   * goes through this process). Default runner.
   */
  pullVia?: PullVia;
  /** Registers a value derived from a secret (a presigned URL) so that nothing prints it. */
  mask?: (secret: string) => void;
  /** One R2 request's longest silence (r2-timeout); the host's curl gives up after as long. */
  requestTimeoutMs?: number;
  /** Files over this are hashed before upload (CopyObject's limit, 5 GiB; lower in tests). */
  metadataCopyLimit?: number;
  /** Multipart uploads older than this are aborted (default one day). */
  staleUploadMs?: number;
  fetch?: typeof fetch;
}

export type FileAction =
  | 'uploaded'
  | 'downloaded'
  | 'skipped'
  | 'deleted'
  | 'would upload'
  | 'would download'
  | 'would delete';

export interface FileOutcome {
  path: string;
  action: FileAction;
  size: number;
  ms: number;
  note?: string;
}

export interface SyncReport {
  direction: 'push' | 'pull';
  compare: Compare;
  uploaded: number;
  downloaded: number;
  skipped: number;
  deleted: number;
  bytes: number;
  manifestKey: string;
  files: FileOutcome[];
  requests: RequestCounts;
  staleAborted: number;
}

const DAY = 86_400_000;

export async function syncModels(opts: SyncModelsOptions, logger: Logger): Promise<SyncReport> {
  const vault: Vault = {
    store: new R2Store({ client: opts.client, bucket: opts.bucket, logger }),
    prefix: opts.prefix,
  };
  const requests = countRequests(opts.client);
  try {
    const report =
      opts.direction === 'push'
        ? await push(opts, vault, logger)
        : await pull(opts, vault, logger, requests.add);
    return { ...report, requests: requests.counts() };
  } finally {
    requests.detach();
  }
}

/** The report as a run builds it; the request counts are added once it is over. */
type RunReport = Omit<SyncReport, 'requests'>;

/** What every step of one run shares. */
interface Run {
  opts: SyncModelsOptions;
  vault: Vault;
  logger: Logger;
  report: RunReport;
  /** pull-via host: the SSH target the vault objects are fetched on. */
  viaHost?: { host: SshModelHost; countGet: () => void };
}

/** A file's entry in models-manifest.json. */
interface Digest {
  size: number;
  sha256: string;
}

type Manifest = Map<string, Digest>;

type VaultListing = Awaited<ReturnType<typeof listVault>>;

function emptyReport(direction: 'push' | 'pull', compare: Compare, vault: Vault): RunReport {
  return {
    direction,
    compare,
    uploaded: 0,
    downloaded: 0,
    skipped: 0,
    deleted: 0,
    bytes: 0,
    manifestKey: vaultKey(vault, MANIFEST_NAME),
    files: [],
    staleAborted: 0,
  };
}

/** Compare as asked, else by sha256 when the vault has a manifest to compare against. */
function compareFor(opts: SyncModelsOptions, hasManifest: boolean): Compare {
  return opts.compare ?? (hasManifest ? 'sha256' : 'size');
}

function included<T extends { path: string }>(
  files: T[],
  include: string[],
  logger: Logger,
  where: string,
): T[] {
  const match = matcher(include);
  const out = files.filter((f) => match(f.path));
  if (out.length === 0)
    logger.warn(`include ${JSON.stringify(include.join(', '))} matched no file in ${where}`);
  return out;
}

// ---- push: host → vault ---------------------------------------------------------------------

async function push(opts: SyncModelsOptions, vault: Vault, logger: Logger): Promise<RunReport> {
  const { local, listing } = await pushInventory(opts, vault, logger);
  const compare = compareFor(opts, listing.hasManifest);
  const run: Run = { opts, vault, logger, report: emptyReport('push', compare, vault) };
  const remote = new Map(listing.objects.map((o) => [o.path, o]));
  // Read once, before any hashing: its sha256 spares a HEAD per file and it is rewritten last.
  const manifest =
    compare === 'sha256' && listing.hasManifest ? await readManifest(vault) : undefined;
  const { toUpload, localSha } = await decidePush(run, local, remote, manifest);
  if (!opts.dryRun) await prehashLarge(run, toUpload, localSha);
  const localPaths = new Set(local.map((f) => f.path));
  const toDelete = opts.delete
    ? listing.objects.filter((o) => !localPaths.has(o.path) && matcher(opts.include)(o.path))
    : [];

  if (opts.dryRun) return pushDryRun(run, toUpload, toDelete);

  const uploaded = await uploadAll(run, toUpload, localSha);
  await deleteFromVault(run, toDelete);
  if (uploaded.size > 0 || toDelete.length > 0) {
    const known = { manifest, hasManifest: listing.hasManifest };
    await writePushManifest(run, known, { remote, localSha, uploaded, toDelete });
  }
  return run.report;
}

/** The host's files (include applied, names checked) and one listing of the vault. */
async function pushInventory(
  opts: SyncModelsOptions,
  vault: Vault,
  logger: Logger,
): Promise<{ local: ModelFile[]; listing: VaultListing }> {
  return logger.group('Inventory', async () => {
    const local = included(await opts.host.list(), opts.include, logger, opts.host.label);
    // A key the vault may not hold would make every later pull fail: refuse it here.
    const unsafe = unsafeModelPaths(local.map((f) => f.path));
    refuseUnsafePaths(
      `${opts.host.label} has ${unsafe.length} file(s) whose names cannot be model paths`,
      unsafe,
      'rename them or leave them out with include',
    );
    const listing = await listVault(vault);
    logger.info(
      `${local.length} file(s) in ${opts.host.label}; ${listing.objects.length} object(s) in ${vaultUrl(vault)}`,
    );
    return { local, listing };
  });
}

/**
 * Per file: upload unless the vault holds the same size (and, comparing sha256, the same hash:
 * the manifest's, else the object's metadata). Skips are reported here, in the host's order.
 */
async function decidePush(
  run: Run,
  local: ModelFile[],
  remote: Map<string, VaultObject>,
  manifest: Manifest | undefined,
): Promise<{ toUpload: ModelFile[]; localSha: Map<string, string> }> {
  const { opts, vault, logger, report } = run;
  const toUpload: ModelFile[] = [];
  const localSha = new Map<string, string>();
  const sameSize = local.filter((f) => remote.get(f.path)?.size === f.size);
  if (report.compare === 'sha256' && sameSize.length > 0) {
    const hashes = await logger.group(`Hashing ${sameSize.length} file(s) of equal size`, () =>
      opts.host.sha256(sameSize.map((f) => f.path)),
    );
    for (const [p, h] of hashes) localSha.set(p, h);
  }
  for (const f of local) {
    const r = remote.get(f.path);
    if (!r || r.size !== f.size) {
      toUpload.push(f);
      continue;
    }
    if (report.compare === 'sha256') {
      // One HEAD at a time, in order: only for files the manifest does not know.
      const theirs = manifest?.get(f.path)?.sha256 ?? (await headSha256(vault, f.path));
      if (theirs !== localSha.get(f.path)) {
        toUpload.push(f);
        continue;
      }
    }
    report.skipped++;
    report.files.push({
      path: f.path,
      action: 'skipped',
      size: f.size,
      ms: 0,
      note: report.compare === 'sha256' ? 'same sha256' : 'same size',
    });
  }
  return { toUpload, localSha };
}

/**
 * Objects over CopyObject's 5 GiB limit cannot get their sha256 by a copy after the upload:
 * hash them first (on the host, for SSH) so it goes into the multipart upload's metadata.
 */
async function prehashLarge(
  run: Run,
  toUpload: ModelFile[],
  localSha: Map<string, string>,
): Promise<void> {
  const { opts, logger } = run;
  const limit = opts.metadataCopyLimit ?? R2_MAX_PART;
  const prehash = toUpload.filter((f) => f.size > limit && !localSha.has(f.path));
  if (prehash.length === 0) return;
  const hashes = await logger.group(
    `Hashing ${prehash.length} file(s) over 5 GiB before upload`,
    () => opts.host.sha256(prehash.map((f) => f.path)),
  );
  for (const [p, h] of hashes) localSha.set(p, h);
}

function pushDryRun(run: Run, toUpload: ModelFile[], toDelete: VaultObject[]): RunReport {
  const { report } = run;
  for (const f of toUpload)
    report.files.push({ path: f.path, action: 'would upload', size: f.size, ms: 0 });
  for (const o of toDelete)
    report.files.push({ path: o.path, action: 'would delete', size: o.size, ms: 0 });
  run.logger.info(
    `dry run: ${toUpload.length} to upload, ${toDelete.length} to delete, ${report.skipped} in sync`,
  );
  return report;
}

/** What the uploads of one run share: resumable uploads, request slots, buffers, progress. */
interface UploadContext {
  resumable: Map<string, string>;
  localSha: Map<string, string>;
  slots: Semaphore;
  pool: BufferPool;
  progress: Progress;
  /** Filled as files complete: what the manifest records for them. */
  uploaded: Manifest;
}

/**
 * Pending uploads first (stale ones aborted, young ones resumed), then `concurrency` files at a
 * time. Nothing to upload: not even the listing of pending uploads.
 */
async function uploadAll(
  run: Run,
  toUpload: ModelFile[],
  localSha: Map<string, string>,
): Promise<Manifest> {
  const { opts, vault, logger } = run;
  if (toUpload.length === 0) return new Map();
  const ctx: UploadContext = {
    resumable: await cleanPendingUploads(vault, opts.staleUploadMs ?? DAY, logger, run.report),
    localSha,
    slots: new Semaphore(opts.concurrency),
    pool: new BufferPool(opts.concurrency),
    progress: new Progress(logger, opts.progressIntervalMs),
    uploaded: new Map(),
  };
  await logger.group(`Uploading ${toUpload.length} file(s)`, () =>
    forEachLimit(toUpload, opts.concurrency, (f) => uploadOne(run, ctx, f)),
  );
  return ctx.uploaded;
}

async function uploadOne(run: Run, ctx: UploadContext, f: ModelFile): Promise<void> {
  const { opts, vault, logger, report } = run;
  const key = vaultKey(vault, f.path);
  const partSize = opts.partSize ?? r2PartSize(f.size);
  logger.info(`${f.path}: upload start (${formatBytes(f.size)})`);
  const track = ctx.progress.begin(f.path, f.size);
  const reader = await opts.host.reader(f.path);
  try {
    const resumeUploadId = ctx.resumable.get(key);
    const knownSha256 = ctx.localSha.get(f.path);
    const r = await pushFile({
      vault,
      key,
      size: f.size,
      partSize,
      reader,
      slots: ctx.slots,
      pool: ctx.pool,
      onBytes: track.add,
      logger,
      ...(resumeUploadId ? { resumeUploadId } : {}),
      ...(knownSha256 ? { knownSha256 } : {}),
    });
    const ms = track.end();
    ctx.uploaded.set(f.path, { size: f.size, sha256: r.sha256 });
    report.uploaded++;
    report.bytes += r.bytesSent;
    const note =
      r.partsReused > 0
        ? `resumed: ${r.partsReused} of ${r.parts} parts already in R2`
        : `${r.parts} part(s)`;
    report.files.push({ path: f.path, action: 'uploaded', size: f.size, ms, note });
    logger.info(
      `${f.path}: uploaded ${formatBytes(f.size)} in ${formatDuration(ms)} (${formatRate(f.size, ms)}), sha256 ${r.sha256}; ${note}`,
    );
  } catch (err) {
    track.end();
    throw new OpsError(`${f.path}: upload failed: ${errorMessage(err)}`, { cause: err });
  } finally {
    await reader.close();
  }
}

async function deleteFromVault(run: Run, toDelete: VaultObject[]): Promise<void> {
  for (const o of toDelete) {
    await run.vault.store.delete(vaultKey(run.vault, o.path));
    run.report.deleted++;
    run.report.files.push({ path: o.path, action: 'deleted', size: o.size, ms: 0 });
  }
}

/**
 * The manifest goes last: it only ever names objects that are complete in the vault. It records
 * hashes learnt this run for objects already there and the uploads, and drops the deletes and
 * anything no longer in the vault. Read now unless the comparison already read it.
 */
async function writePushManifest(
  run: Run,
  known: { manifest: Manifest | undefined; hasManifest: boolean },
  changes: {
    remote: Map<string, VaultObject>;
    localSha: Map<string, string>;
    uploaded: Manifest;
    toDelete: VaultObject[];
  },
): Promise<void> {
  const { remote, localSha, uploaded, toDelete } = changes;
  const manifest: Manifest =
    known.manifest ?? (known.hasManifest ? await readManifest(run.vault) : new Map());
  for (const [p, f] of localSha)
    if (!uploaded.has(p) && remote.has(p))
      manifest.set(p, { size: remote.get(p)?.size ?? 0, sha256: f });
  for (const [p, f] of uploaded) manifest.set(p, f);
  for (const o of toDelete) manifest.delete(o.path);
  for (const p of [...manifest.keys()]) if (!remote.has(p) && !uploaded.has(p)) manifest.delete(p);
  run.report.manifestKey = await writeManifest(run.vault, manifest);
}

async function headSha256(vault: Vault, rel: string): Promise<string | undefined> {
  const head = await vault.store.head(vaultKey(vault, rel));
  return head?.metadata[SHA256_META];
}

/** Aborts multipart uploads older than staleMs; returns the newest young upload per key to resume. */
async function cleanPendingUploads(
  vault: Vault,
  staleMs: number,
  logger: Logger,
  report: RunReport,
): Promise<Map<string, string>> {
  const resumable = new Map<string, { id: string; at: number }>();
  const now = Date.now();
  for (const u of await vault.store.listUploads(vault.prefix)) {
    if (now - u.initiated.getTime() > staleMs) {
      logger.info(
        `aborting a stale multipart upload of ${u.key} from ${u.initiated.toISOString()}`,
      );
      if (await vault.store.abortUpload(u)) report.staleAborted++;
    } else if ((resumable.get(u.key)?.at ?? -1) < u.initiated.getTime()) {
      resumable.set(u.key, { id: u.uploadId, at: u.initiated.getTime() });
    }
  }
  return new Map([...resumable].map(([k, v]) => [k, v.id]));
}

// ---- pull: vault (or HuggingFace) → host ----------------------------------------------------

/** One file to fetch: from the vault, or from its HuggingFace URL (Option B). */
interface PullJob {
  path: string;
  size?: number;
  sha256?: string;
  from: 'r2' | 'hf';
  url?: string;
}

/** Both sides as the pull decides on them. */
interface PullSides {
  /** Vault objects the include matches. */
  remote: VaultObject[];
  /** Every vault object, include or not: a model listed there is not fetched from HuggingFace. */
  inVault: Set<string>;
  localBy: Map<string, ModelFile>;
  manifest: Manifest;
}

async function pull(
  opts: SyncModelsOptions,
  vault: Vault,
  logger: Logger,
  countRequest: (operation: string) => void,
): Promise<RunReport> {
  const viaHost = opts.pullVia === 'host' ? hostTarget(opts.host) : undefined;
  const { local, listing, manifest } = await pullInventory(opts, vault, logger);
  const compare = compareFor(opts, listing.hasManifest);
  const run: Run = {
    opts,
    vault,
    logger,
    report: emptyReport('pull', compare, vault),
    ...(viaHost ? { viaHost: { host: viaHost, countGet: () => countRequest('GetObject') } } : {}),
  };
  const sides: PullSides = {
    remote: included(listing.objects, opts.include, logger, `${vaultUrl(vault)}`),
    inVault: new Set(listing.objects.map((o) => o.path)),
    localBy: new Map(local.map((f) => [f.path, f])),
    manifest,
  };
  const jobs = await decideFromVault(run, sides);
  jobs.push(...decideFallbacks(run, sides));
  const wanted = new Set([
    ...sides.remote.map((o) => o.path),
    ...(opts.models?.models ?? []).map((m) => m.path),
  ]);
  const toDelete = opts.delete
    ? local.filter((f) => !wanted.has(f.path) && matcher(opts.include)(f.path))
    : [];

  if (opts.dryRun) return pullDryRun(run, jobs, toDelete);

  // Once, before any download: a host without curl fails here, not on each file.
  if (viaHost && jobs.some((j) => j.from === 'r2')) await probeCurl(viaHost.conn);
  await downloadAll(run, jobs);
  await removeFromHost(run, toDelete);
  return run.report;
}

/** pull-via host needs the GPU host over SSH: the only place with a curl of its own to run. */
function hostTarget(host: ModelHost): SshModelHost {
  if (host instanceof SshModelHost) return host;
  throw new OpsError(
    `pull-via: host fetches on the GPU host over SSH, and ${host.label} is a local directory: use pull-via: runner`,
  );
}

/**
 * Every path of the plan (bucket keys, models-manifest.json, config/models.yml) is checked
 * before the host is touched at all, not even by a mkdir of the models directory.
 */
async function pullInventory(
  opts: SyncModelsOptions,
  vault: Vault,
  logger: Logger,
): Promise<{ local: ModelFile[]; listing: VaultListing; manifest: Manifest }> {
  const host = opts.host;
  return logger.group('Inventory', async () => {
    const listing = await listVault(vault);
    const manifest: Manifest = listing.hasManifest ? await readManifest(vault) : new Map();
    const unsafe = unsafeModelPaths((opts.models?.models ?? []).map((x) => x.path));
    refuseUnsafePaths(
      `${opts.models?.file ?? 'the models config'} names ${unsafe.length} model path(s) that are not safe`,
      unsafe,
      'fix them',
    );
    await host.prepare();
    const local = await host.list();
    logger.info(
      `${local.length} file(s) in ${host.label}; ${listing.objects.length} object(s) in ${vaultUrl(vault)}`,
    );
    return { local, listing, manifest };
  });
}

/** Per vault object: skip it when the host holds the same size (and sha256, when known). */
async function decideFromVault(run: Run, sides: PullSides): Promise<PullJob[]> {
  const { opts, report } = run;
  const { remote, localBy, manifest } = sides;
  const compare = report.compare;
  const jobs: PullJob[] = [];
  const sameSize = remote.filter((o) => localBy.get(o.path)?.size === o.size);
  const localSha =
    compare === 'sha256' && sameSize.length > 0
      ? await opts.host.sha256(sameSize.map((o) => o.path))
      : new Map<string, string>();
  for (const o of remote) {
    const mine = localBy.get(o.path);
    const theirs = manifest.get(o.path)?.sha256;
    const inSync =
      mine?.size === o.size && (compare === 'size' || !theirs || localSha.get(o.path) === theirs);
    const sha256 = theirs ?? opts.models?.models.find((m) => m.path === o.path)?.sha256;
    if (inSync) {
      report.skipped++;
      report.files.push({
        path: o.path,
        action: 'skipped',
        size: o.size,
        ms: 0,
        note: compare === 'sha256' && theirs ? 'same sha256' : 'same size',
      });
    } else jobs.push({ path: o.path, size: o.size, from: 'r2', ...(sha256 ? { sha256 } : {}) });
  }
  return jobs;
}

/** Models the host needs that the vault does not have: HuggingFace (Option B), or fail if required. */
function decideFallbacks(run: Run, sides: PullSides): PullJob[] {
  const { opts, logger } = run;
  const { inVault, localBy, manifest } = sides;
  const jobs: PullJob[] = [];
  const missing: string[] = [];
  for (const m of opts.models?.models ?? []) {
    if (inVault.has(m.path)) continue;
    const mine = localBy.get(m.path);
    if (mine && (m.size === undefined || m.size === mine.size)) continue;
    if (opts.hfFallback && m.url) {
      const sha256 = m.sha256 ?? manifest.get(m.path)?.sha256;
      jobs.push({
        path: m.path,
        from: 'hf',
        url: m.url,
        ...(m.size !== undefined ? { size: m.size } : {}),
        ...(sha256 ? { sha256 } : {}),
      });
    } else if (m.required) missing.push(m.path);
    else logger.warn(`${m.path} is in neither the vault nor on this host (optional, skipped)`);
  }
  if (missing.length > 0) {
    throw new OpsError(
      `required model(s) missing from R2 and without a HuggingFace fallback${opts.hfFallback ? '' : ' (hf-fallback is off)'}: ${missing.join(', ')}`,
    );
  }
  return jobs;
}

function pullDryRun(run: Run, jobs: PullJob[], toDelete: ModelFile[]): RunReport {
  const { report } = run;
  for (const j of jobs)
    report.files.push({
      path: j.path,
      action: 'would download',
      size: j.size ?? 0,
      ms: 0,
      note: j.from === 'hf' ? `from ${j.url}` : 'from R2',
    });
  for (const f of toDelete)
    report.files.push({ path: f.path, action: 'would delete', size: f.size, ms: 0 });
  return report;
}

async function downloadAll(run: Run, jobs: PullJob[]): Promise<void> {
  const progress = new Progress(run.logger, run.opts.progressIntervalMs);
  await run.logger.group(`Downloading ${jobs.length} file(s)`, () =>
    forEachLimit(jobs, run.opts.concurrency, (j) => downloadOne(run, progress, j)),
  );
}

async function downloadOne(run: Run, progress: Progress, j: PullJob): Promise<void> {
  const { vault, logger, report } = run;
  const origin = j.from === 'hf' ? (j.url ?? '') : vaultUrl(vault, j.path);
  logger.info(
    `${j.path}: download start from ${origin}${j.size !== undefined ? ` (${formatBytes(j.size)})` : ''}`,
  );
  const track = progress.begin(j.path, j.size ?? 0);
  try {
    const r = await pullFile({
      ...fillFor(run, j, track.add),
      path: j.path,
      origin,
      logger,
      ...(j.size !== undefined ? { size: j.size } : {}),
      ...(j.sha256 ? { expectedSha256: j.sha256 } : {}),
    });
    const ms = track.end();
    if (!r.verified)
      logger.warn(
        `${j.path}: no sha256 known to check it against (recorded after download: ${r.sha256})`,
      );
    report.downloaded++;
    report.bytes += r.size - r.resumedFrom;
    const note = [
      j.from === 'hf' ? 'HuggingFace fallback' : run.viaHost ? 'from R2 by the host' : 'from R2',
      r.verified ? 'sha256 verified' : 'sha256 unknown',
      r.resumedFrom > 0 ? `resumed at ${formatBytes(r.resumedFrom)}` : '',
    ]
      .filter(Boolean)
      .join(', ');
    report.files.push({ path: j.path, action: 'downloaded', size: r.size, ms, note });
    logger.info(
      `${j.path}: downloaded ${formatBytes(r.size)} in ${formatDuration(ms)} (${formatRate(r.size, ms)}); ${note}`,
    );
  } catch (err) {
    track.end();
    throw err instanceof OpsError
      ? err
      : new OpsError(`${j.path}: download failed: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Where one file's bytes land and how they get there: through this process, or fetched by the
 * host. One partial for both (it keeps the hash taken while writing).
 */
function fillFor(
  run: Run,
  j: PullJob,
  onBytes: (n: number) => void,
): { partial: PartialFile; fill: Fill } {
  const { opts, vault, viaHost } = run;
  if (j.from === 'r2' && viaHost) {
    const partial = viaHost.host.partial(j.path);
    const fill = hostVaultFill(vault, j.path, partial, {
      mask: opts.mask ?? (() => {}),
      stallSeconds: Math.ceil((opts.requestTimeoutMs ?? 120_000) / 1000),
      wantStatedSha256: j.sha256 === undefined,
      onBytes,
      onGet: viaHost.countGet,
    });
    return { partial, fill };
  }
  const partial = opts.host.partial(j.path);
  const source =
    j.from === 'hf' ? urlSource(j.url ?? '', opts.hfToken, opts.fetch) : vaultSource(vault, j.path);
  return { partial, fill: streamFill(partial, source, onBytes) };
}

async function removeFromHost(run: Run, toDelete: ModelFile[]): Promise<void> {
  for (const f of toDelete) {
    await run.opts.host.remove(f.path);
    run.report.deleted++;
    run.report.files.push({ path: f.path, action: 'deleted', size: f.size, ms: 0 });
  }
}
