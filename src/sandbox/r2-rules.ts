// What R2 does that s3rver does not: operation names and billing classes, the limits R2 enforces
// (with R2's error codes and texts), and S3-shaped XML errors. Pure functions, no I/O.
// The numbers are R2's documented limits, written here on their own: an emulator that imported
// the client's constants could not catch a mistake in them.
import { createHash } from 'node:crypto';

const MiB = 1024 * 1024;
/** Parts: 5 MiB to 5 GiB, all equal but the last, at most 10,000 (R2's multipart limits). */
export const R2_MIN_PART = 5 * MiB;
export const R2_MAX_PART = 5 * 1024 * MiB;
export const R2_MAX_PARTS = 10_000;
/** User metadata on an object: at most 8,192 bytes. */
export const R2_METADATA_LIMIT = 8192;
/** ListObjectsV2, ListParts, ListMultipartUploads: at most 1,000 entries a page. */
export const R2_LIST_PAGE = 1000;

/**
 * R2's ETag of an object completed from parts (as S3's): the MD5 of the parts' binary MD5s,
 * then "-<part count>".
 */
export function r2MultipartEtag(partEtags: string[]): string {
  const md5 = createHash('md5');
  for (const etag of partEtags) md5.update(Buffer.from(etag.replace(/"/g, ''), 'hex'));
  return `${md5.digest('hex')}-${partEtags.length}`;
}

export type OperationClass = 'A' | 'B' | 'free';

export interface S3Request {
  method: string;
  bucket: string | undefined;
  key: string | undefined;
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
}

export interface Classified {
  operation: string;
  opClass: OperationClass;
}

/** Names an S3 request the way R2's pricing page does and gives its billing class. */
export function classifyRequest(
  req: Pick<S3Request, 'method' | 'bucket' | 'key' | 'query' | 'headers'>,
): Classified {
  const q = req.query;
  const copy = req.headers['x-amz-copy-source'] !== undefined;
  const op = ((): string => {
    if (!req.bucket) return req.method === 'GET' ? 'ListBuckets' : `${req.method}Service`;
    if (!req.key) {
      switch (req.method) {
        case 'GET':
          if (q.has('uploads')) return 'ListMultipartUploads';
          if (q.has('location')) return 'GetBucketLocation';
          return q.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects';
        case 'HEAD':
          return 'HeadBucket';
        case 'PUT':
          return 'CreateBucket';
        case 'DELETE':
          return 'DeleteBucket';
        case 'POST':
          return q.has('delete') ? 'DeleteObjects' : 'PostObject';
      }
      return `${req.method}Bucket`;
    }
    switch (req.method) {
      case 'GET':
        return q.has('uploadId') ? 'ListParts' : 'GetObject';
      case 'HEAD':
        return 'HeadObject';
      case 'PUT':
        if (q.has('uploadId')) return copy ? 'UploadPartCopy' : 'UploadPart';
        return copy ? 'CopyObject' : 'PutObject';
      case 'POST':
        if (q.has('uploads')) return 'CreateMultipartUpload';
        if (q.has('uploadId')) return 'CompleteMultipartUpload';
        return 'PostObject';
      case 'DELETE':
        return q.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
    }
    return `${req.method}Object`;
  })();
  return { operation: op, opClass: operationClass(op) };
}

const classB = new Set(['GetObject', 'HeadObject', 'HeadBucket', 'GetBucketLocation']);
const free = new Set(['DeleteObject', 'DeleteObjects', 'DeleteBucket', 'AbortMultipartUpload']);

export function operationClass(operation: string): OperationClass {
  if (classB.has(operation)) return 'B';
  if (free.has(operation)) return 'free';
  return 'A';
}

/** An S3 error response: status, code, message, as R2 would send it. */
export class S3ErrorReply {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly message: string,
  ) {}

  xml(resource = ''): string {
    return (
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
      `<Error><Code>${this.code}</Code><Message>${escapeXml(this.message)}</Message>` +
      (resource ? `<Resource>${escapeXml(resource)}</Resource>` : '') +
      '</Error>'
    );
  }
}

export function escapeXml(text: string): string {
  return text.replace(
    /[<>&"']/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c,
  );
}

const header = (h: S3Request['headers'], name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
};

/**
 * Header-level rules R2 applies before reading a body: no flexible checksums, no aws-chunked
 * framing, Content-Length required on uploads, part numbers and sizes in range, metadata size.
 */
export function checkRequestHeaders(req: S3Request, operation: string): S3ErrorReply | undefined {
  return framingProblem(req) ?? uploadProblem(req, operation) ?? metadataProblem(req, operation);
}

/** R2 supports neither flexible checksums nor aws-chunked (STREAMING-*) bodies. */
function framingProblem(req: S3Request): S3ErrorReply | undefined {
  for (const name of Object.keys(req.headers)) {
    if (
      name.startsWith('x-amz-checksum-') ||
      name === 'x-amz-sdk-checksum-algorithm' ||
      name === 'x-amz-trailer'
    ) {
      return new S3ErrorReply(
        501,
        'NotImplemented',
        `Header '${name}' with value '${header(req.headers, name) ?? ''}' not implemented`,
      );
    }
  }
  const sha = header(req.headers, 'x-amz-content-sha256') ?? '';
  const encoding = header(req.headers, 'content-encoding') ?? '';
  if (sha.startsWith('STREAMING-') || /aws-chunked/i.test(encoding)) {
    return new S3ErrorReply(
      501,
      'NotImplemented',
      'STREAMING-* payloads and aws-chunked content encoding are not supported; send Content-Length and a plain body',
    );
  }
  return undefined;
}

/** Uploads need a Content-Length; a part needs a number in range and at most R2_MAX_PART bytes. */
function uploadProblem(req: S3Request, operation: string): S3ErrorReply | undefined {
  const isUpload = operation === 'PutObject' || operation === 'UploadPart';
  const length = header(req.headers, 'content-length');
  if (isUpload && length === undefined) {
    return new S3ErrorReply(
      411,
      'MissingContentLength',
      'You must provide the Content-Length HTTP header.',
    );
  }
  if (operation !== 'UploadPart') return undefined;
  const n = Number(req.query.get('partNumber'));
  if (!Number.isInteger(n) || n < 1 || n > R2_MAX_PARTS) {
    return new S3ErrorReply(
      400,
      'InvalidArgument',
      `Part number must be an integer between 1 and ${R2_MAX_PARTS}, inclusive`,
    );
  }
  if (Number(length) > R2_MAX_PART) {
    return new S3ErrorReply(
      400,
      'EntityTooLarge',
      'Your proposed upload exceeds the maximum allowed object size.',
    );
  }
  return undefined;
}

/** The operations that set an object's user metadata. */
const SETS_METADATA = new Set(['PutObject', 'CreateMultipartUpload', 'CopyObject']);

function metadataProblem(req: S3Request, operation: string): S3ErrorReply | undefined {
  if (!SETS_METADATA.has(operation) || metadataSize(req.headers) <= R2_METADATA_LIMIT)
    return undefined;
  return new S3ErrorReply(
    400,
    'MetadataTooLarge',
    'Your metadata headers exceed the maximum allowed metadata size.',
  );
}

/** Bytes of user metadata as R2 counts them: names (without x-amz-meta-) plus values. */
export function metadataSize(headers: S3Request['headers']): number {
  let total = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith('x-amz-meta-') || value === undefined) continue;
    const text = Array.isArray(value) ? value.join(',') : value;
    total += Buffer.byteLength(name.slice('x-amz-meta-'.length)) + Buffer.byteLength(text);
  }
  return total;
}

export interface CompletedPart {
  partNumber: number;
  etag: string;
}

export interface StoredPart {
  partNumber: number;
  size: number;
  etag: string;
}

/** Parses the part list of a CompleteMultipartUpload body. */
export function parseCompleteBody(xml: string): CompletedPart[] | S3ErrorReply {
  const parts: CompletedPart[] = [];
  for (const m of xml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)) {
    const body = m[1] ?? '';
    const n = /<PartNumber>\s*(\d+)\s*<\/PartNumber>/.exec(body)?.[1];
    const etag = /<ETag>([\s\S]*?)<\/ETag>/.exec(body)?.[1];
    if (!n || etag === undefined) break;
    parts.push({ partNumber: Number(n), etag: etag.replace(/&quot;|&#34;|&#x22;|"/gi, '').trim() });
  }
  if (parts.length === 0) {
    return new S3ErrorReply(
      400,
      'MalformedXML',
      'The XML you provided was not well-formed or did not validate against our published schema.',
    );
  }
  return parts;
}

/** R2's checks at CompleteMultipartUpload: order, existence, ETags, count, and part sizes. */
export function checkCompletedParts(
  parts: CompletedPart[],
  stored: Map<number, StoredPart>,
): S3ErrorReply | undefined {
  if (parts.length > R2_MAX_PARTS) {
    return new S3ErrorReply(
      400,
      'InvalidArgument',
      `Part count ${parts.length} exceeds the limit of ${R2_MAX_PARTS} parts.`,
    );
  }
  let previous = 0;
  for (const p of parts) {
    if (p.partNumber <= previous) {
      return new S3ErrorReply(
        400,
        'InvalidPartOrder',
        'The list of parts was not in ascending order. The parts list must be specified in order by part number.',
      );
    }
    previous = p.partNumber;
    const s = stored.get(p.partNumber);
    if (!s || s.etag !== p.etag) {
      return new S3ErrorReply(
        400,
        'InvalidPart',
        "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.",
      );
    }
  }
  const sizes = parts.map((p) => stored.get(p.partNumber)?.size ?? 0);
  const first = sizes[0] ?? 0;
  for (let i = 0; i < sizes.length - 1; i++) {
    if ((sizes[i] ?? 0) < R2_MIN_PART) {
      return new S3ErrorReply(
        400,
        'EntityTooSmall',
        'Your proposed upload is smaller than the minimum allowed object size.',
      );
    }
    if (sizes[i] !== first) {
      return new S3ErrorReply(
        400,
        'InvalidPart',
        'All non-trailing parts must have the same length.',
      );
    }
  }
  if ((sizes[sizes.length - 1] ?? 0) > first && sizes.length > 1) {
    return new S3ErrorReply(
      400,
      'InvalidPart',
      'All non-trailing parts must have the same length.',
    );
  }
  return undefined;
}

export const preconditionFailed = (): S3ErrorReply =>
  new S3ErrorReply(
    412,
    'PreconditionFailed',
    'At least one of the pre-conditions you specified did not hold',
  );

/**
 * An R2 bucket lock rule of the Age kind (r2/buckets/bucket-locks): objects under `prefix` (''
 * is the whole bucket) cannot be deleted or overwritten until they are `maxAgeSeconds` old
 * (Infinity: the Indefinite kind). New keys can always be created.
 */
export interface LockRule {
  id?: string;
  prefix: string;
  maxAgeSeconds: number;
}

/** The operations a lock rule refuses on an existing object (new keys are not refused). */
export const LOCKED_OPERATIONS = new Set([
  'DeleteObject',
  'DeleteObjects',
  'PutObject',
  'CopyObject',
  'CompleteMultipartUpload',
]);

/** The operations a key without delete rights is refused (the no-delete credential). */
export const DELETE_OPERATIONS = new Set(['DeleteObject', 'DeleteObjects', 'AbortMultipartUpload']);

/** The rule that holds an object stored at `lastModified`, or none. The longest rule wins, as on R2. */
export function lockingRule(
  rules: readonly LockRule[],
  key: string,
  lastModified: Date,
  now: Date,
): LockRule | undefined {
  const ageSeconds = (now.getTime() - lastModified.getTime()) / 1000;
  return rules
    .filter((r) => key.startsWith(r.prefix) && ageSeconds < r.maxAgeSeconds)
    .sort((a, b) => b.maxAgeSeconds - a.maxAgeSeconds)[0];
}

/** R2's reply to a change of a locked object (error code 10069 in R2's error-code reference). */
export const objectLocked = (): S3ErrorReply =>
  new S3ErrorReply(
    403,
    'ObjectLockedByBucketPolicy',
    'Object is protected by a bucket lock rule and cannot be modified or deleted.',
  );

/** R2's reply when the token lacks the permission (10003). */
export const accessDenied = (): S3ErrorReply =>
  new S3ErrorReply(403, 'AccessDenied', 'Access Denied');

/** The keys of a DeleteObjects body (<Delete><Object><Key>…</Key></Object>…</Delete>). */
export function parseDeleteBody(xml: string): string[] {
  return [...xml.matchAll(/<Key>([\s\S]*?)<\/Key>/g)].map((m) =>
    (m[1] ?? '').replace(
      /&(lt|gt|amp|quot|apos);/g,
      (_, e: string) => ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" })[e] ?? '',
    ),
  );
}
