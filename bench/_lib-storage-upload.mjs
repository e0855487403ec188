// The minimal lib-storage uploader the model benchmark compares against: every file under a
// directory, one after another, 16 MiB parts, 4 parts in flight, R2 client settings.
// Usage: node bench/_lib-storage-upload.mjs <dir> <endpoint> <bucket> <prefix>
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';

const [dir, endpoint, bucket, prefix] = process.argv.slice(2);
const client = new S3Client({
  endpoint,
  region: 'auto',
  forcePathStyle: true,
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
});
const files = (await readdir(dir, { recursive: true, withFileTypes: true }))
  .filter((e) => e.isFile())
  .map((e) => path.relative(dir, path.join(e.parentPath ?? e.path, e.name)));
for (const file of files) {
  await new Upload({
    client,
    params: {
      Bucket: bucket,
      Key: `${prefix}/${file}`,
      Body: createReadStream(path.join(dir, file)),
    },
    partSize: 16 * 2 ** 20,
    queueSize: 4,
  }).done();
}
client.destroy();
