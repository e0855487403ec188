// Waiting for a deployment to serve: poll /status with backoff until healthy, then call the
// inference endpoint's health path with the inference key until it answers 200. Every change is
// kept in a timeline for the summary and for the error when the wait times out.
import { OpsError, errorMessage } from '../lib/errors.js';
import { formatDuration } from '../lib/format.js';
import type { Logger } from '../lib/logger.js';
import { sleep as realSleep } from '../lib/retry.js';
import type { Table } from '../lib/summary.js';
import type { VerdaClient } from './client.js';
import type { Replica } from './verda-types.js';

export interface TimelineEntry {
  /** Local ms since the command began. */
  atMs: number;
  /** The same on the API's clock (Date headers), when it sends them: emulated time in tests. */
  serverAtMs?: number;
  /** What was seen: a status, or `endpoint 503`, `endpoint 200`. */
  event: string;
  detail?: string;
}

export interface WaitOptions {
  client: VerdaClient;
  name: string;
  endpointUrl: string;
  healthPath: string;
  inferenceKey: string | undefined;
  logger: Logger;
  timeoutMs: number;
  /** First poll interval; it grows ×1.5 per poll up to 6× (default 5 s). */
  pollMs?: number;
  /** Also wait for the endpoint to answer 200 (start), not only for `healthy` (apply). */
  endpoint: boolean;
  /** Local time the command began; timeline offsets count from it. */
  startedAt: number;
  /** The API's clock when the command began (Date of its first answer), if known. */
  serverStartedAt?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface WaitResult {
  status: string;
  timeline: TimelineEntry[];
  /** Server clock (Date header) of the first 200 from the endpoint, else the local clock. */
  firstOkAt?: number;
  firstOkFromServerClock?: boolean;
}

const servingStatuses = new Set(['healthy']);
const failedStatuses = new Set(['deleting', 'terminating']);

/** Thrown when the wait runs out: carries the timeline and replicas for the summary. */
export class WaitTimeoutError extends OpsError {
  constructor(
    message: string,
    readonly status: string,
    readonly timeline: TimelineEntry[],
    readonly replicas: Replica[],
  ) {
    super(message);
    this.name = 'WaitTimeoutError';
  }
}

export async function waitUntilServing(o: WaitOptions): Promise<WaitResult> {
  const now = o.now ?? Date.now;
  const sleep = o.sleep ?? realSleep;
  const deadline = now() + o.timeoutMs;
  const basePoll = o.pollMs ?? 5_000;
  const seen = new Timeline(o, now);
  const timeline = seen.entries;
  let poll = basePoll;
  let status = 'unknown';

  while (now() < deadline) {
    status = await o.client.getStatus(o.name);
    seen.status(status);
    if (failedStatuses.has(status))
      throw new OpsError(`${o.name} is ${status}; it will not become healthy`);
    if (servingStatuses.has(status)) {
      if (!o.endpoint) return { status, timeline };
      const probe = await probeEndpoint(o);
      if (probe.date !== undefined) o.client.observeServerDate(probe.date);
      seen.probe(probe);
      if (probe.status === 200) {
        const result: WaitResult = {
          status,
          timeline,
          firstOkAt: probe.date ?? now(),
          firstOkFromServerClock: probe.date !== undefined,
        };
        return result;
      }
      if (probe.status === 401 || probe.status === 403) {
        throw new OpsError(
          `the endpoint refused the inference key (${probe.status}): check inference-api-key`,
        );
      }
    }
    await sleep(Math.max(0, Math.min(poll, deadline - now())));
    poll = Math.min(poll * 1.5, basePoll * 6);
  }
  throw await timedOut(o, status, timeline);
}

/**
 * What one wait saw, logged as it comes. Only changes are noted: a new status, or a new
 * endpoint answer while the status holds.
 */
class Timeline {
  readonly entries: TimelineEntry[] = [];
  private lastStatus: string | undefined;
  private lastProbe: string | undefined;

  constructor(
    private readonly o: WaitOptions,
    private readonly now: () => number,
  ) {}

  status(status: string): void {
    if (status === this.lastStatus) return;
    this.lastStatus = status;
    this.lastProbe = undefined;
    this.note(status);
  }

  probe(probe: Probe): void {
    const event = `endpoint ${probe.status}`;
    if (event === this.lastProbe) return;
    this.lastProbe = event;
    this.note(event, probe.detail);
  }

  private note(event: string, detail?: string): void {
    const { o } = this;
    const entry: TimelineEntry = { atMs: this.now() - o.startedAt, event };
    const serverNow = o.client.lastServerDate;
    if (o.serverStartedAt !== undefined && serverNow !== undefined) {
      entry.serverAtMs = serverNow - o.serverStartedAt;
    }
    if (detail !== undefined) entry.detail = detail;
    this.entries.push(entry);
    o.logger.info(
      `${formatDuration(entry.serverAtMs ?? entry.atMs)}: ${event}${detail ? ` (${detail})` : ''}`,
    );
  }
}

/** The error of a wait that ran out: the last status, the replicas and the whole timeline. */
async function timedOut(
  o: WaitOptions,
  status: string,
  timeline: TimelineEntry[],
): Promise<WaitTimeoutError> {
  let replicas: Replica[] = [];
  try {
    replicas = await o.client.getReplicas(o.name);
  } catch (err) {
    o.logger.warn(`could not list replicas: ${errorMessage(err)}`);
  }
  const lines = timeline.map(
    (t) => `  ${formatDuration(t.atMs)}: ${t.event}${t.detail ? ` (${t.detail})` : ''}`,
  );
  const replicaText = replicas.length
    ? replicas.map((r) => `${r.id} ${r.status}`).join(', ')
    : 'none';
  return new WaitTimeoutError(
    `${o.name} did not ${o.endpoint ? 'serve' : 'become healthy'} within ${formatDuration(o.timeoutMs)}; last status ${status}; replicas: ${replicaText}\nstatus timeline:\n${lines.join('\n')}`,
    status,
    timeline,
    replicas,
  );
}

interface Probe {
  status: number;
  date: number | undefined;
  detail?: string;
}

/** One GET of <endpoint><healthPath> with the inference key (never the OAuth token). */
async function probeEndpoint(o: WaitOptions): Promise<Probe> {
  try {
    const res = await fetch(`${o.endpointUrl.replace(/\/+$/, '')}${o.healthPath}`, {
      headers: o.inferenceKey ? { Authorization: `Bearer ${o.inferenceKey}` } : {},
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    const dateHeader = res.headers.get('date');
    const date = dateHeader ? Date.parse(dateHeader) : NaN;
    const probe: Probe = { status: res.status, date: Number.isNaN(date) ? undefined : date };
    if (!res.ok) probe.detail = text.slice(0, 120).replace(/\s+/g, ' ');
    return probe;
  } catch (err) {
    return { status: 0, date: undefined, detail: errorMessage(err) };
  }
}

export function timelineTable(timeline: TimelineEntry[]): Table {
  return {
    title: 'Timeline',
    headers: ['after (API clock)', 'after (runner)', 'seen', 'detail'],
    rows: timeline.map((t) => [
      t.serverAtMs === undefined ? '-' : formatDuration(t.serverAtMs),
      formatDuration(t.atMs),
      t.event,
      t.detail ?? '',
    ]),
  };
}
