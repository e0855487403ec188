// A bucket writer's S3 endpoint: serves exactly the keys it is given, byte for byte, where s3rver
// (and R2) would normalise or refuse them — `..` segments, a leading '/', '\', and control
// characters escaped as XML character references (`&#10;`, `&#0;`, which the SDK's parser
// decodes). ListObjectsV2 lists every object whatever the requested prefix; GetObject (with a
// `bytes=N-` Range) and HeadObject serve them; anything else is answered 501. Every request is
// recorded, so a test can show that nothing was fetched or written.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HostileObject {
  key: string;
  body: Buffer;
  /** x-amz-meta-* headers (e.g. sha256). */
  metadata?: Record<string, string>;
}

export interface HostileRequest {
  method: string;
  operation: 'ListObjectsV2' | 'GetObject' | 'HeadObject' | 'other';
  key?: string;
}

export interface HostileS3 {
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  setObjects(objects: HostileObject[]): void;
  requests(): HostileRequest[];
  resetRequests(): void;
  stop(): Promise<void>;
}

/** XML text: markup characters escaped, control characters as numeric character references. */
function xmlText(value: string): string {
  // eslint-disable-next-line no-control-regex
  return value.replace(/[&<>"']|[\u0000-\u001f\u007f-\u009f]/g, (c) =>
    /[&<>"']/.test(c)
      ? `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' }[c]};`
      : `&#${c.charCodeAt(0)};`,
  );
}

const s3Error = (code: string, message: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;

export async function startHostileS3(opts: { bucket: string }): Promise<HostileS3> {
  let objects: HostileObject[] = [];
  let seen: HostileRequest[] = [];
  const server = http.createServer((req, res) => {
    // req.url is the raw request target: nothing here resolves `..` or decodes it twice.
    const url = new URL(req.url ?? '/', 'http://fake');
    const rawPath = (req.url ?? '/').split('?')[0] ?? '/';
    const bucketPath = `/${opts.bucket}`;
    const rest = rawPath.startsWith(`${bucketPath}/`) ? rawPath.slice(bucketPath.length + 1) : '';
    const key = rest === '' ? undefined : decodeURIComponent(rest);
    req.resume();
    if (req.method === 'GET' && key === undefined && url.searchParams.get('list-type') === '2') {
      seen.push({ method: 'GET', operation: 'ListObjectsV2' });
      const contents = objects
        .map(
          (o) =>
            `<Contents><Key>${xmlText(o.key)}</Key><LastModified>2025-01-01T00:00:00.000Z</LastModified>` +
            `<ETag>&quot;0&quot;</ETag><Size>${o.body.length}</Size><StorageClass>STANDARD</StorageClass></Contents>`,
        )
        .join('');
      res
        .writeHead(200, { 'content-type': 'application/xml' })
        .end(
          `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
            `<Name>${xmlText(opts.bucket)}</Name><Prefix>${xmlText(url.searchParams.get('prefix') ?? '')}</Prefix>` +
            `<KeyCount>${objects.length}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>${contents}</ListBucketResult>`,
        );
      return;
    }
    if ((req.method === 'GET' || req.method === 'HEAD') && key !== undefined) {
      const operation = req.method === 'GET' ? 'GetObject' : 'HeadObject';
      seen.push({ method: req.method, operation, key });
      const o = objects.find((x) => x.key === key);
      if (!o) {
        res.writeHead(404, { 'content-type': 'application/xml' });
        res.end(req.method === 'GET' ? s3Error('NoSuchKey', 'no such key') : undefined);
        return;
      }
      const meta = Object.fromEntries(
        Object.entries(o.metadata ?? {}).map(([k, v]) => [`x-amz-meta-${k}`, v]),
      );
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      const body = o.body.subarray(start);
      res.writeHead(start > 0 ? 206 : 200, {
        'content-length': body.length,
        'content-type': 'application/octet-stream',
        etag: '"0"',
        'last-modified': 'Wed, 01 Jan 2025 00:00:00 GMT',
        ...(start > 0
          ? { 'content-range': `bytes ${start}-${o.body.length - 1}/${o.body.length}` }
          : {}),
        ...meta,
      });
      res.end(req.method === 'GET' ? body : undefined);
      return;
    }
    seen.push({ method: req.method ?? '', operation: 'other', ...(key ? { key } : {}) });
    res
      .writeHead(501, { 'content-type': 'application/xml' })
      .end(s3Error('NotImplemented', 'not served by this fake'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket: opts.bucket,
    accessKeyId: 'HOSTILEKEYID0000',
    secretAccessKey: 'hostile-secret-access-key-0123456789',
    setObjects(list) {
      objects = list;
    },
    requests: () => [...seen],
    resetRequests() {
      seen = [];
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
