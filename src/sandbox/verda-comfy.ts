// The ComfyUI API of the emulated workers, as reached through a deployment's endpoint:
// POST /prompt, GET /queue, GET /history[/{id}], GET /view. Shapes follow ComfyUI's server.py.
// Emulator liberties (documented in verda.ts): a prompt is accepted while the deployment serves
// even before a replica is ready (the endpoint's queue holds it), and /history answers from the
// deployment's record of every prompt (as if routed to the replica that ran it); /view serves a
// file only while the replica that wrote it is alive.
import { z } from 'zod';
import type { Reply } from './verda-http.js';
import type { EmulatedDeployment } from './verda-state.js';
import { isOutputNode, type ComfyPrompt, type Job } from './verda-work.js';

/** What the ComfyUI routes get of a request. */
export interface ComfyRequest {
  method: string;
  /** The path the container sees (after /<deployment>). */
  target: string;
  query: URLSearchParams;
  rawBody: string;
}

const promptBody = z.object({
  prompt: z.record(
    z.string(),
    z.object({ class_type: z.string().min(1), inputs: z.record(z.string(), z.unknown()) }),
  ),
  client_id: z.string().optional(),
});

/** ComfyUI's 400 body for a prompt it refuses. */
const refused = (type: string, message: string, details = ''): Reply => ({
  status: 400,
  body: { error: { type, message, details, extra_info: {} }, node_errors: {} },
});

/** The reply of a ComfyUI route, or undefined when the target is not one of them. */
export function comfyRoute(
  dep: EmulatedDeployment,
  req: ComfyRequest,
  now: number,
): Reply | undefined {
  const { method, target } = req;
  if (method === 'POST' && target === '/prompt') return submit(dep, req.rawBody, now);
  if (method !== 'GET') return undefined;
  if (target === '/queue') return { status: 200, body: queueBody(dep) };
  if (target === '/history') {
    const max = Number(req.query.get('max_items') ?? Infinity);
    const done = dep.work.jobs.filter(isFinished).slice(-Math.max(0, max) || undefined);
    return { status: 200, body: Object.fromEntries(done.map((j) => [j.id, historyEntry(j)])) };
  }
  const history = /^\/history\/([^/]+)$/.exec(target);
  if (history) {
    const job = dep.work.get(decodeURIComponent(history[1] ?? ''));
    // ComfyUI answers {} for a prompt that is queued, running or unknown.
    return { status: 200, body: job && isFinished(job) ? { [job.id]: historyEntry(job) } : {} };
  }
  if (target === '/view') return view(dep, req.query);
  return undefined;
}

function submit(dep: EmulatedDeployment, rawBody: string, now: number): Reply {
  let parsed: unknown;
  try {
    parsed = JSON.parse(rawBody);
  } catch {
    return refused('invalid_prompt', 'Invalid prompt', 'the body is not JSON');
  }
  const body = promptBody.safeParse(parsed);
  if (!body.success)
    return refused('invalid_prompt', 'Invalid prompt', body.error.issues[0]?.message ?? '');
  const prompt: ComfyPrompt = body.data.prompt;
  if (!Object.values(prompt).some((n) => isOutputNode(n.class_type)))
    return refused('prompt_no_outputs', 'Prompt has no outputs');
  const job = dep.work.submit(prompt, now);
  dep.reconcile(now); // the queue grew: scaling sees it now
  return { status: 200, body: { prompt_id: job.id, number: job.number, node_errors: {} } };
}

const isFinished = (job: Job) => job.status === 'success' || job.status === 'error';

/** A queue item as ComfyUI lists it: [number, prompt_id, prompt, extra_data, output nodes]. */
function queueItem(job: Job): unknown[] {
  const outputs = Object.entries(job.prompt)
    .filter(([, n]) => isOutputNode(n.class_type))
    .map(([id]) => id);
  return [job.number, job.id, job.prompt, {}, outputs];
}

function queueBody(dep: EmulatedDeployment): unknown {
  return {
    queue_running: dep.work.running().map(queueItem),
    queue_pending: dep.work.queued().map(queueItem),
  };
}

/** A finished prompt's history entry, with ComfyUI's status messages (timestamps in ms). */
function historyEntry(job: Job): unknown {
  const messages: [string, Record<string, unknown>][] = [];
  if (job.startedAt !== undefined)
    messages.push(['execution_start', { prompt_id: job.id, timestamp: job.startedAt }]);
  if (job.status === 'success') {
    messages.push(['execution_success', { prompt_id: job.id, timestamp: job.finishedAt }]);
  } else {
    const [nodeId, node] = Object.entries(job.prompt)[0] ?? ['?', { class_type: '?' }];
    messages.push([
      'execution_error',
      {
        prompt_id: job.id,
        node_id: nodeId,
        node_type: node.class_type,
        executed: [],
        exception_message: job.error ?? 'failed',
        exception_type: 'ReplicaLost',
        traceback: [],
        timestamp: job.finishedAt,
      },
    ]);
  }
  return {
    prompt: queueItem(job),
    outputs: job.outputs,
    status: {
      status_str: job.status === 'success' ? 'success' : 'error',
      completed: job.status === 'success',
      messages,
    },
    meta: {},
  };
}

/** An output file, from the live replica that wrote it. */
function view(dep: EmulatedDeployment, query: URLSearchParams): Reply {
  const filename = query.get('filename') ?? '';
  const type = query.get('type') ?? 'output';
  const subfolder = query.get('subfolder') ?? '';
  const holder =
    type === 'output' && subfolder === ''
      ? dep.replicas.find((r) => r.files.has(filename))
      : undefined;
  const bytes = holder?.files.get(filename);
  if (!bytes) return { status: 404, body: '404: Not Found', kind: 'text' };
  const contentType = filename.endsWith('.png')
    ? 'image/png'
    : filename.endsWith('.webp')
      ? 'image/webp'
      : 'video/mp4';
  return { status: 200, body: bytes, kind: 'binary', headers: { 'Content-Type': contentType } };
}
