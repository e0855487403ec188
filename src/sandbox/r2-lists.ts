// The multipart listings s3rver does not answer (ListParts, ListMultipartUploads), built from its
// on-disk state with R2's page size.
import { R2_LIST_PAGE, S3ErrorReply, escapeXml } from './r2-rules.js';
import type { S3rverStore } from './s3rver-store.js';

export const noSuchUpload = (): S3ErrorReply =>
  new S3ErrorReply(
    404,
    'NoSuchUpload',
    'The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.',
  );

/** The multipart upload a request names. */
export interface UploadTarget {
  bucket: string;
  key: string;
  uploadId: string;
}

const iso = (d: Date): string => d.toISOString();

/** ListParts' XML, or NoSuchUpload when the upload is not there under that key. */
export async function listParts(
  store: S3rverStore,
  { bucket, key, uploadId }: UploadTarget,
  query: URLSearchParams,
): Promise<string | S3ErrorReply> {
  const upload = await store.upload(bucket, uploadId);
  if (!upload || upload.key !== key) return noSuchUpload();
  const marker = Number(query.get('part-number-marker') ?? 0);
  const max = Math.min(R2_LIST_PAGE, Number(query.get('max-parts') ?? R2_LIST_PAGE));
  const all = [...(await store.parts(bucket, uploadId)).values()]
    .filter((p) => p.partNumber > marker)
    .sort((a, b) => a.partNumber - b.partNumber);
  const page = all.slice(0, max);
  const truncated = all.length > page.length;
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    `<Bucket>${escapeXml(bucket)}</Bucket><Key>${escapeXml(key)}</Key><UploadId>${uploadId}</UploadId>` +
    `<PartNumberMarker>${marker}</PartNumberMarker>` +
    `<NextPartNumberMarker>${page.at(-1)?.partNumber ?? marker}</NextPartNumberMarker>` +
    `<MaxParts>${max}</MaxParts><IsTruncated>${truncated}</IsTruncated>` +
    page
      .map(
        (p) =>
          `<Part><PartNumber>${p.partNumber}</PartNumber><LastModified>${iso(p.lastModified)}</LastModified>` +
          `<ETag>"${p.etag}"</ETag><Size>${p.size}</Size></Part>`,
      )
      .join('') +
    '</ListPartsResult>'
  );
}

/** ListMultipartUploads' XML for a bucket. */
export async function listUploads(
  store: S3rverStore,
  bucket: string,
  query: URLSearchParams,
): Promise<string> {
  const prefix = query.get('prefix') ?? '';
  const keyMarker = query.get('key-marker') ?? '';
  const max = Math.min(R2_LIST_PAGE, Number(query.get('max-uploads') ?? R2_LIST_PAGE));
  const all = (await store.uploads(bucket)).filter(
    (u) => u.key.startsWith(prefix) && u.key > keyMarker,
  );
  const page = all.slice(0, max);
  const truncated = all.length > page.length;
  const last = page.at(-1);
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    `<Bucket>${escapeXml(bucket)}</Bucket><KeyMarker>${escapeXml(keyMarker)}</KeyMarker><UploadIdMarker></UploadIdMarker>` +
    `<NextKeyMarker>${escapeXml(truncated && last ? last.key : '')}</NextKeyMarker>` +
    `<NextUploadIdMarker>${truncated && last ? last.uploadId : ''}</NextUploadIdMarker>` +
    `<Prefix>${escapeXml(prefix)}</Prefix><MaxUploads>${max}</MaxUploads><IsTruncated>${truncated}</IsTruncated>` +
    page
      .map(
        (u) =>
          `<Upload><Key>${escapeXml(u.key)}</Key><UploadId>${u.uploadId}</UploadId>` +
          `<Initiated>${iso(u.initiated)}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`,
      )
      .join('') +
    '</ListMultipartUploadsResult>'
  );
}
