// The R2 emulator's request log and its Class A / Class B counts. Every request is counted and
// logged before any rule or fault looks at it, so refused and faulted requests show too (R2 bills
// those as well).
import type { IncomingHttpHeaders } from 'node:http';
import type { FaultRule } from './r2-faults.js';
import type { Classified, S3Request } from './r2-rules.js';

export interface R2Counts {
  classA: number;
  classB: number;
  byOperation: Record<string, number>;
}

export interface R2RequestRecord {
  operation: string;
  method: string;
  bucket?: string;
  key?: string;
  partNumber?: number;
  /** The Range header of a GetObject (resumed downloads). */
  range?: string;
  status: number;
  fault?: FaultRule['action'];
  /** The Expect header, when the client asked for `100-continue` before sending the body. */
  expect?: string;
  /** Upload body bytes read through the payload check (signed or faulted uploads). */
  bodyBytes?: number;
  /** Body bytes a GetObject's reply carried to the client (a cut reply: what got through). */
  replyBytes?: number;
  /** Whether the request was signed in its URL (a presigned URL) rather than a header. */
  presigned?: boolean;
  /** The access key id of a correctly signed request. */
  accessKeyId?: string;
}

const noCounts = (): R2Counts => ({ classA: 0, classB: 0, byOperation: {} });

export class RequestLog {
  private tally = noCounts();
  private records: R2RequestRecord[] = [];

  /** Counts a request and starts its record (its status is filled in when the reply goes out). */
  add(c: Classified, req: S3Request, headers: IncomingHttpHeaders): R2RequestRecord {
    if (c.opClass === 'A') this.tally.classA++;
    if (c.opClass === 'B') this.tally.classB++;
    this.tally.byOperation[c.operation] = (this.tally.byOperation[c.operation] ?? 0) + 1;
    const record: R2RequestRecord = { operation: c.operation, method: req.method, status: 0 };
    if (req.bucket) record.bucket = req.bucket;
    if (req.key) record.key = req.key;
    if (c.operation === 'UploadPart') record.partNumber = Number(req.query.get('partNumber'));
    if (c.operation === 'GetObject' && typeof headers.range === 'string')
      record.range = headers.range;
    if (typeof headers.expect === 'string') record.expect = headers.expect;
    if (req.query.has('X-Amz-Signature')) record.presigned = true;
    this.records.push(record);
    return record;
  }

  /** Copies: a caller's later changes do not reach the log, nor the log's theirs. */
  counts(): R2Counts {
    return { ...this.tally, byOperation: { ...this.tally.byOperation } };
  }

  requests(): R2RequestRecord[] {
    return [...this.records];
  }

  reset(): void {
    this.tally = noCounts();
    this.records = [];
  }
}
