// Counts the R2 requests a run sends (every HTTP attempt, retries included) by operation and
// billing class, so the summary can state what the run cost.
import type { S3Client } from '@aws-sdk/client-s3';
import { r2RequestCost } from '../lib/r2.js';

export interface RequestCounts {
  classA: number;
  classB: number;
  free: number;
  byOperation: Record<string, number>;
  /** Dollars at R2's Class A / Class B prices. */
  cost: number;
}

const CLASS_B = new Set(['GetObject', 'HeadObject', 'HeadBucket']);
const FREE = new Set(['DeleteObject', 'DeleteObjects', 'AbortMultipartUpload']);

export function countRequests(client: S3Client): {
  counts: () => RequestCounts;
  /** One request sent by someone else on our signature (the GPU host's GET on a presigned URL). */
  add: (operation: string) => void;
  detach: () => void;
} {
  const byOperation: Record<string, number> = {};
  const name = `comfyumeRequestCounter${Math.random().toString(36).slice(2)}`;
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const op = String(context.commandName ?? 'Unknown').replace(/Command$/, '');
      byOperation[op] = (byOperation[op] ?? 0) + 1;
      return next(args);
    },
    // After the retry middleware (finalizeRequest): one count per attempt on the wire.
    { step: 'deserialize', name },
  );
  return {
    counts: () => {
      let classA = 0;
      let classB = 0;
      let free = 0;
      for (const [op, n] of Object.entries(byOperation)) {
        if (CLASS_B.has(op)) classB += n;
        else if (FREE.has(op)) free += n;
        else classA += n;
      }
      return {
        classA,
        classB,
        free,
        byOperation: { ...byOperation },
        cost: r2RequestCost(classA, classB),
      };
    },
    add: (op) => {
      byOperation[op] = (byOperation[op] ?? 0) + 1;
    },
    detach: () => {
      client.middlewareStack.remove(name);
    },
  };
}
