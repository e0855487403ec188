// An S3-compatible endpoint for benchmarks: it reads every body and drops it, and answers just
// enough like S3 for uploaders (multipart, PutObject, an empty bucket). It shows what a client
// costs by itself, without a storage server's own limits. It checks no signature, but its ETags
// are R2's (the MD5 of a body, the multipart ETag of the parts), which uploaders check.
// With { resumable: true } it also lists each multipart upload's parts until it is completed or
// aborted (ListMultipartUploads, ListParts): an uploader killed half-way can resume against it.
import { createHash, randomBytes } from 'node:crypto';
import { r2MultipartEtag } from './r2-rules.js';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface DiscardSink {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Requests answered, bytes of object data (PUT bodies) dropped, UploadPart requests stored. */
  stats(): { requests: number; bytes: number; parts: number };
  stop(): Promise<void>;
}

const XMLNS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"';

interface PendingUpload {
  key: string;
  initiated: Date;
  parts: Map<number, { size: number; etag: string }>;
}

const xmlEscape = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** ListParts pages of this many parts, as S3's default MaxParts. */
const PARTS_PAGE = 1000;

/** An upload's parts in part-number order. */
const sortedParts = (upload: PendingUpload | undefined) =>
  [...(upload?.parts ?? [])].sort(([a], [b]) => a - b);

function listUploadsXml(
  bucket: string,
  q: URLSearchParams,
  uploads: Map<string, PendingUpload>,
): string {
  const prefix = q.get('prefix') ?? '';
  const listed = [...uploads]
    .filter(([, u]) => u.key.startsWith(prefix))
    .map(
      ([id, u]) =>
        `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${id}</UploadId>` +
        `<Initiated>${u.initiated.toISOString()}</Initiated></Upload>`,
    );
  return `<ListMultipartUploadsResult ${XMLNS}><Bucket>${bucket}</Bucket><IsTruncated>false</IsTruncated>${listed.join('')}</ListMultipartUploadsResult>`;
}

/** ListParts, a page of PARTS_PAGE after part-number-marker. */
function listPartsXml(
  bucket: string,
  key: string,
  uploadId: string,
  q: URLSearchParams,
  uploads: Map<string, PendingUpload>,
): string {
  const marker = Number(q.get('part-number-marker') ?? 0);
  const parts = sortedParts(uploads.get(uploadId)).filter(([n]) => n > marker);
  const page = parts.slice(0, PARTS_PAGE);
  const truncated = parts.length > page.length;
  const last = page.at(-1)?.[0] ?? marker;
  return (
    `<ListPartsResult ${XMLNS}><Bucket>${bucket}</Bucket><Key>${xmlEscape(key)}</Key><UploadId>${uploadId}</UploadId>` +
    `<IsTruncated>${truncated}</IsTruncated>${truncated ? `<NextPartNumberMarker>${last}</NextPartNumberMarker>` : ''}` +
    page
      .map(
        ([n, p]) =>
          `<Part><PartNumber>${n}</PartNumber><ETag>"${p.etag}"</ETag><Size>${p.size}</Size></Part>`,
      )
      .join('') +
    '</ListPartsResult>'
  );
}

export async function startDiscardSink(opts: { resumable?: boolean } = {}): Promise<DiscardSink> {
  let requests = 0;
  let bytes = 0;
  let partsStored = 0;
  // Sizes only (no bytes): uploaders such as rclone HEAD what they just wrote.
  const objects = new Map<string, { size: number; etag: string }>();
  /** Open multipart uploads: each part's size and MD5 by part number (a resent part replaces). */
  const uploads = new Map<string, PendingUpload>();

  const server = http.createServer((req, res) => {
    requests++;
    const url = new URL(req.url ?? '/', 'http://sink');
    const [bucket = '', ...rest] = url.pathname.split('/').slice(1);
    const key = decodeURIComponent(rest.join('/'));
    const q = url.searchParams;
    let size = 0;
    const uploadId = q.get('uploadId');
    const partNumber = Number(q.get('partNumber') ?? 0);
    const md5 = createHash('md5');
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      md5.update(chunk);
    });
    // A body cut off (the uploader killed) never reaches 'end': that part is not stored.
    req.on('end', () => {
      if (req.method === 'PUT') bytes += size;
      const xml = (status: number, body: string): void => {
        const text = `<?xml version="1.0" encoding="UTF-8"?>\n${body}`;
        res.writeHead(status, {
          'content-type': 'application/xml',
          'content-length': Buffer.byteLength(text),
        });
        res.end(text);
      };
      const etagHex = md5.digest('hex');
      let etag = `"${etagHex}"`;
      const objectKey = `${bucket}/${key}`;
      // As R2 does: a body that does not match its Content-MD5 is refused and not stored.
      const sentMd5 = req.headers['content-md5'];
      if (req.method === 'PUT' && typeof sentMd5 === 'string') {
        if (Buffer.from(sentMd5, 'base64').toString('hex') !== etagHex) {
          return xml(
            400,
            '<Error><Code>BadDigest</Code><Message>The Content-MD5 you specified did not match what we received.</Message></Error>',
          );
        }
      }
      if (req.method === 'PUT' && uploadId) {
        uploads.get(uploadId)?.parts.set(partNumber, { size, etag: etagHex });
        partsStored++;
      } else if (req.method === 'PUT' && !req.headers['x-amz-copy-source'])
        objects.set(objectKey, { size, etag });
      if (req.method === 'POST' && uploadId) {
        const parts = sortedParts(uploads.get(uploadId)).map(([, p]) => p);
        etag = `"${r2MultipartEtag(parts.map((p) => p.etag))}"`;
        objects.set(objectKey, { size: parts.reduce((n, p) => n + p.size, 0), etag });
      }
      if ((req.method === 'POST' || req.method === 'DELETE') && uploadId) uploads.delete(uploadId);
      switch (req.method) {
        case 'PUT':
          if (req.headers['x-amz-copy-source']) {
            return xml(
              200,
              `<CopyObjectResult ${XMLNS}><ETag>${etag}</ETag><LastModified>${new Date().toISOString()}</LastModified></CopyObjectResult>`,
            );
          }
          res.writeHead(200, { etag, 'content-length': 0 }).end();
          return;
        case 'POST':
          if (q.has('uploads')) {
            const id = randomBytes(16).toString('hex');
            uploads.set(id, { key, initiated: new Date(), parts: new Map() });
            return xml(
              200,
              `<InitiateMultipartUploadResult ${XMLNS}><Bucket>${bucket}</Bucket><Key>${key}</Key>` +
                `<UploadId>${id}</UploadId></InitiateMultipartUploadResult>`,
            );
          }
          return xml(
            200,
            `<CompleteMultipartUploadResult ${XMLNS}><Bucket>${bucket}</Bucket><Key>${key}</Key>` +
              `<ETag>${etag}</ETag></CompleteMultipartUploadResult>`,
          );
        case 'DELETE':
          objects.delete(objectKey);
          res.writeHead(204).end();
          return;
        case 'HEAD': {
          const o = objects.get(objectKey);
          if (!o) return void res.writeHead(404).end();
          res
            .writeHead(200, {
              'content-length': o.size,
              etag: o.etag,
              'last-modified': new Date().toUTCString(),
            })
            .end();
          return;
        }
        case 'GET':
          // Open uploads and their parts are listed only by a resumable sink: a plain one makes an
          // interrupted uploader start again, as a bucket that lost them would.
          if (!key && q.has('uploads'))
            return xml(200, listUploadsXml(bucket, q, opts.resumable ? uploads : new Map()));
          if (!key) {
            return xml(
              200,
              `<ListBucketResult ${XMLNS}><Name>${bucket}</Name><Prefix>${q.get('prefix') ?? ''}</Prefix>` +
                '<KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>',
            );
          }
          if (uploadId)
            return xml(
              200,
              listPartsXml(bucket, key, uploadId, q, opts.resumable ? uploads : new Map()),
            );
          return xml(
            404,
            '<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>',
          );
      }
      res.writeHead(405).end();
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    accessKeyId: 'discard',
    secretAccessKey: 'discard-sink-secret',
    stats: () => ({ requests, bytes, parts: partsStored }),
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
