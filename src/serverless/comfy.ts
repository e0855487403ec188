// ComfyUI's own API through the deployment's endpoint, with the inference key (never the OAuth
// token): POST /prompt, GET /history/{id}, GET /view. The workflow file and every answer are
// untrusted: schema-checked, ids and file names checked before they go into a URL, server text
// cleaned before it is logged. Times are taken from the endpoint's Date headers when it sends
// them (the API's clock), else from the runner's.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { OpsError, errorMessage } from '../lib/errors.js';
import { formatDuration } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import { isConnectFailure, networkFailureReason, retry, sleep as realSleep } from '../lib/retry.js';
import { hasControlChars } from '../lib/safe-path.js';
import { parseWithSchema } from '../lib/schema.js';
import { readYamlFile } from '../lib/yaml-file.js';

/** A ComfyUI API-format workflow: node id → {class_type, inputs}. */
const workflowSchema = z
  .record(
    z.string().regex(/^[A-Za-z0-9_:.-]{1,64}$/, 'node ids: letters, digits, _ : . - (at most 64)'),
    z.looseObject({
      class_type: z.string().min(1).max(200),
      inputs: z.record(z.string(), z.unknown()),
    }),
  )
  .refine((w) => Object.keys(w).length > 0, 'a workflow with at least one node');
export type Workflow = z.infer<typeof workflowSchema>;

/** Reads a workflow (JSON, ComfyUI's "Save (API format)"); a bad one is a ConfigError naming it. */
export async function loadWorkflow(file: string): Promise<Workflow> {
  return parseWithSchema(workflowSchema, await readYamlFile(file), file);
}

/** The same workflow with its seeds moved by `offset`, so N copies are N distinct renders. */
export function withSeedOffset(workflow: Workflow, offset: number): Workflow {
  if (offset === 0) return workflow;
  const out: Workflow = {};
  for (const [id, node] of Object.entries(workflow)) {
    const inputs = { ...node.inputs };
    for (const key of ['seed', 'noise_seed'])
      if (typeof inputs[key] === 'number') inputs[key] = (inputs[key] as number) + offset;
    out[id] = { ...node, inputs };
  }
  return out;
}

const promptAnswer = z.looseObject({
  prompt_id: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/),
});

const fileRef = z.looseObject({
  // A bare file name: it goes into /view's query, never a path of ours, and into the log and the
  // summary: no control characters (a newline would start a runner command), no `|` (a table).
  filename: z
    .string()
    .regex(/^[^/\\|]{1,255}$/)
    .refine((v) => !hasControlChars(v), 'no control characters'),
  subfolder: z
    .string()
    .max(255)
    .regex(/^[^|]*$/)
    .refine((v) => !hasControlChars(v))
    .catch(''),
  type: z.string().max(20).catch('output'),
});
export type OutputRef = z.infer<typeof fileRef>;

const historyEntry = z.looseObject({
  outputs: z.record(z.string(), z.record(z.string(), z.unknown())).optional().catch(undefined),
  status: z
    .looseObject({
      status_str: z.string().optional(),
      completed: z.boolean().optional(),
      messages: z.array(z.tuple([z.string(), z.unknown()])).optional(),
    })
    .optional(),
});

export type JobState =
  | { state: 'pending' }
  | { state: 'success'; files: OutputRef[]; startedAt?: number; finishedAt?: number }
  | { state: 'error'; message: string };

/** An answer with the endpoint's clock. */
export interface Dated<T> {
  value: T;
  /** Epoch ms: the Date header, else the runner's clock. */
  at: number;
  fromServerClock: boolean;
}

export interface EndpointOptions {
  endpointUrl: string;
  inferenceKey: string;
  logger: Logger;
  /** Longest single HTTP exchange (default 30 s). */
  requestTimeoutMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  fetch?: typeof fetch;
}

/** What an endpoint said, without the key: control characters out, at most 300 characters. */
export function cleanText(text: string): string {
  const printable = Array.from(text, (ch) => {
    const code = ch.charCodeAt(0);
    return code < 32 || code === 127 ? ' ' : ch;
  }).join('');
  return printable.replace(/ {2,}/g, ' ').trim().slice(0, 300);
}

class EndpointError extends OpsError {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'EndpointError';
  }
}

/**
 * A submit is sent again only when ComfyUI cannot have taken it: the gateway turned it away (429,
 * 502, 503: no replica yet) or no connection was made. After a reset, a timeout or a 504 the
 * prompt may be queued: sending it again would render it twice (and skew a load test's count).
 */
const submitAgain = (err: unknown) =>
  err instanceof EndpointError ? [429, 502, 503].includes(err.status) : isConnectFailure(err);

export class ComfyEndpoint {
  private readonly base: string;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly fetch: typeof fetch;

  constructor(private readonly o: EndpointOptions) {
    this.base = o.endpointUrl.replace(/\/+$/, '');
    this.now = o.now ?? Date.now;
    this.sleep = o.sleep ?? realSleep;
    this.fetch = o.fetch ?? fetch;
  }

  /**
   * Submits a workflow; answers that say it was not taken (a replica not up yet: 429, 502, 503)
   * and failed connections are retried until `deadlineMs`, nothing else (submitAgain). Returns
   * the prompt id and when the endpoint accepted it.
   */
  async submit(workflow: Workflow, deadlineMs: number): Promise<Dated<string>> {
    return retry(
      async () => {
        const res = await this.exchange('POST', '/prompt', {
          prompt: workflow,
          client_id: 'comfyume-ops',
        });
        if (res.status !== 200)
          throw new EndpointError(
            `POST /prompt answered ${res.status}: ${cleanText(res.bytes.toString())}`,
            res.status,
          );
        const answer = promptAnswer.safeParse(parseJson(res.bytes));
        if (!answer.success)
          throw new OpsError(
            `POST /prompt answered 200 without a usable prompt_id: ${cleanText(res.bytes.toString())}`,
          );
        return { value: answer.data.prompt_id, at: res.at, fromServerClock: res.fromServerClock };
      },
      {
        attempts: Infinity,
        deadlineMs,
        baseDelayMs: 1000,
        maxDelayMs: 10_000,
        retryable: submitAgain,
        sleep: this.sleep,
        now: this.now,
        onRetry: ({ err, delayMs }) =>
          this.o.logger.info(
            `${errorMessage(err)}; submitting again in ${formatDuration(delayMs)}`,
          ),
      },
    );
  }

  /** Where a prompt is: pending (queued or running), done with its files, or failed and why. */
  async state(promptId: string): Promise<Dated<JobState>> {
    const res = await this.exchange('GET', `/history/${encodeURIComponent(promptId)}`);
    if (res.status !== 200)
      throw new EndpointError(
        `GET /history/${promptId} answered ${res.status}: ${cleanText(res.bytes.toString())}`,
        res.status,
      );
    const body: unknown = parseJson(res.bytes);
    const entries = z.record(z.string(), z.unknown()).safeParse(body);
    if (!entries.success)
      throw new OpsError(`GET /history/${promptId} answered something other than an object`);
    const raw = entries.data[promptId];
    const dated = (value: JobState) => ({
      value,
      at: res.at,
      fromServerClock: res.fromServerClock,
    });
    if (raw === undefined) return dated({ state: 'pending' });
    const entry = historyEntry.safeParse(raw);
    if (!entry.success) throw new OpsError(`GET /history/${promptId}: the entry is not ComfyUI's`);
    return dated(jobState(entry.data));
  }

  /** Fetches an output file; a missing one is an error naming it. */
  async view(file: OutputRef): Promise<Dated<{ bytes: number; sha256: string }>> {
    const query = new URLSearchParams({
      filename: file.filename,
      subfolder: file.subfolder,
      type: file.type,
    });
    const res = await this.exchange('GET', `/view?${query.toString()}`);
    if (res.status !== 200 || res.bytes.length === 0)
      throw new EndpointError(
        `GET /view of ${file.filename} answered ${res.status} with ${res.bytes.length} bytes: the output is not there`,
        res.status,
      );
    const sha256 = createHash('sha256').update(res.bytes).digest('hex');
    return {
      value: { bytes: res.bytes.length, sha256 },
      at: res.at,
      fromServerClock: res.fromServerClock,
    };
  }

  /** GET of the health path: its status (0 when there was no answer). */
  async probe(healthPath: string): Promise<Dated<number>> {
    try {
      const res = await this.exchange('GET', healthPath);
      return { value: res.status, at: res.at, fromServerClock: res.fromServerClock };
    } catch {
      return { value: 0, at: this.now(), fromServerClock: false };
    }
  }

  private async exchange(
    method: string,
    target: string,
    body?: unknown,
  ): Promise<{ status: number; bytes: Buffer; at: number; fromServerClock: boolean }> {
    const label = `${method} ${target.replace(/\?.*$/, '')}`;
    try {
      const res = await this.fetch(`${this.base}${target}`, {
        method,
        headers: {
          Authorization: `Bearer ${this.o.inferenceKey}`,
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.o.requestTimeoutMs ?? 30_000),
      });
      const bytes = Buffer.from(await res.arrayBuffer());
      const date = Date.parse(res.headers.get('date') ?? '');
      const fromServerClock = !Number.isNaN(date);
      return {
        status: res.status,
        bytes,
        at: fromServerClock ? date : this.now(),
        fromServerClock,
      };
    } catch (err) {
      throw new OpsError(
        `endpoint ${label} got no answer from ${this.base}: ${networkFailureReason(err)}`,
        { cause: err },
      );
    }
  }
}

function parseJson(bytes: Buffer): unknown {
  try {
    const parsed: unknown = JSON.parse(bytes.toString('utf8'));
    return parsed;
  } catch {
    return undefined;
  }
}

const fileList = z.array(z.unknown());

/** A history entry as a state: its files (every list of file refs under an output node). */
function jobState(entry: z.infer<typeof historyEntry>): JobState {
  const messages = entry.status?.messages ?? [];
  const stamp = (kind: string): number | undefined => {
    const data = messages.find(([k]) => k === kind)?.[1];
    const t = z.looseObject({ timestamp: z.number() }).safeParse(data);
    return t.success ? t.data.timestamp : undefined;
  };
  if (entry.status?.status_str === 'error') {
    const data = messages.find(([k]) => k === 'execution_error')?.[1];
    const error = z
      .looseObject({ exception_message: z.string().optional(), node_type: z.string().optional() })
      .safeParse(data);
    const message = error.success
      ? `${error.data.node_type ? `${cleanText(error.data.node_type)}: ` : ''}${cleanText(error.data.exception_message ?? 'failed')}`
      : 'failed without an execution_error message';
    return { state: 'error', message };
  }
  if (
    entry.status !== undefined &&
    entry.status.completed === false &&
    entry.status.status_str !== 'success'
  )
    return { state: 'pending' };
  const files: OutputRef[] = [];
  for (const node of Object.values(entry.outputs ?? {}))
    for (const list of Object.values(node)) {
      const items = fileList.safeParse(list);
      if (!items.success) continue;
      for (const item of items.data) {
        const ref = fileRef.safeParse(item);
        if (ref.success) files.push(ref.data);
      }
    }
  const done: JobState = { state: 'success', files };
  const startedAt = stamp('execution_start');
  const finishedAt = stamp('execution_success');
  if (startedAt !== undefined) done.startedAt = startedAt;
  if (finishedAt !== undefined) done.finishedAt = finishedAt;
  return done;
}
