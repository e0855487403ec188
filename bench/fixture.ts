// The ~500 MiB host fixture the backup and restore benchmarks share: four items, half
// incompressible model-like bytes, half log text that zstd shrinks about 10:1.
import { createHash, createCipheriv } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

const MiB = 2 ** 20;

export interface Item {
  id: string;
  path: string;
  size: number;
  compressible: boolean;
}

export function items(scale: number): Item[] {
  const quarter = Math.round((125 * MiB) / scale);
  return [
    { id: 'models-a', path: '/srv/bench/models-a', size: quarter, compressible: false },
    { id: 'models-b', path: '/srv/bench/models-b', size: quarter, compressible: false },
    { id: 'logs', path: '/srv/bench/logs', size: quarter, compressible: true },
    { id: 'code', path: '/srv/bench/code', size: quarter, compressible: true },
  ];
}

/** Four files per item: AES-CTR keystream (incompressible) or log-like lines (~4:1 with zstd). */
export async function writeFixture(hostRoot: string, list: Item[]): Promise<void> {
  for (const item of list) {
    const dir = path.join(hostRoot, item.path);
    await mkdir(dir, { recursive: true });
    const cipher = createCipheriv(
      'aes-128-ctr',
      createHash('sha256').update(item.id).digest().subarray(0, 16),
      Buffer.alloc(16),
    );
    for (let f = 0; f < 4; f++) {
      const out = createWriteStream(
        path.join(dir, `part-${f}.${item.compressible ? 'log' : 'bin'}`),
      );
      let left = item.size / 4;
      let line = 0;
      while (left > 0) {
        let chunk: Buffer;
        if (item.compressible) {
          const noise = cipher.update(Buffer.alloc(12)).toString('hex');
          const lines: string[] = [];
          for (let i = 0; i < 2000; i++, line++) {
            lines.push(
              `2026-11-28T02:${String(line % 60).padStart(2, '0')}:00Z worker=${line % 40} prompt_id=${noise.slice(line % 16, (line % 16) + 8)} step=${line % 30}/30 it/s=${(line % 97) / 10}\n`,
            );
          }
          chunk = Buffer.from(lines.join(''));
        } else {
          chunk = cipher.update(Buffer.alloc(MiB));
        }
        chunk = chunk.subarray(0, Math.min(chunk.length, left));
        left -= chunk.length;
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      }
      await new Promise<void>((r) => out.end(() => r()));
    }
  }
  await chmod(path.join(hostRoot, 'srv'), 0o755);
}

/** A backup config (config/backup.yml's format) with one item per fixture item. */
export async function writeBackupConfig(
  file: string,
  hostRoot: string,
  list: Item[],
): Promise<void> {
  await writeFile(
    file,
    [
      'version: 1',
      `host-root: ${hostRoot}`,
      'items:',
      ...list.map((i) => `  - id: ${i.id}\n    paths: [${i.path}]`),
      '',
    ].join('\n'),
  );
}
