// The inference host of the Verda emulator, standing in for https://containers.datacrunch.io
// (verda-api.md §7): `/<deployment>/<path>` reaches an emulated ComfyUI only with the inference
// key (not an OAuth token), while the deployment is healthy. Its ComfyUI API (verda-comfy.ts)
// queues prompts for the replicas; the rest (health path, /system_stats, /) needs a ready replica.
// A request counts as traffic: at min 0 it asks for a replica, which serves after the cold start;
// until then the answer is 503 at once (the real endpoint would hold the request in its queue).
import { bearerToken } from './verda-auth.js';
import { comfyRoute } from './verda-comfy.js';
import type { EmulatedClock } from './verda-clock.js';
import type { DeploymentStore } from './verda-deployments.js';
import type { HostRequest, Reply } from './verda-http.js';
import type { EmulatedDeployment } from './verda-state.js';

export interface InferenceHostOptions {
  clock: EmulatedClock;
  deployments: DeploymentStore;
  inferenceKey: string;
}

/** Statuses in which a deployment serves: an update rolls out while the old replicas serve. */
const servingStatuses = new Set(['healthy', 'version_updating']);

const failure = (status: number, code: string, message: string): Reply => ({
  status,
  body: { code, message },
});

export function inferenceRouter(opts: InferenceHostOptions): (request: HostRequest) => Reply {
  return ({ path, authorization, method, query, rawBody }) => {
    const [, name = '', ...rest] = path.split('/');
    const dep = opts.deployments.find(name);
    if (!dep) return failure(404, 'not_found', `no deployment ${name}`);
    if (bearerToken(authorization) !== opts.inferenceKey)
      return failure(401, 'unauthorized_request', 'a valid inference API key is required');
    const now = opts.clock.now();
    const status = dep.status(now);
    if (!servingStatuses.has(status))
      return failure(503, 'service_unavailable', `deployment is ${status}`);
    dep.lastInferenceAt = now;
    const target = `/${rest.join('/')}`;
    const ready = dep.readyReplicas(now).length > 0;
    const comfy = comfyRoute(dep, { method, target, query, rawBody }, now);
    if (comfy) return comfy;
    if (!ready) return failure(503, 'service_unavailable', 'no replica is ready yet (cold start)');
    return emulatedComfyUi(dep, target);
  };
}

/** What the ComfyUI container answers: its health path, /system_stats and its page. */
function emulatedComfyUi(dep: EmulatedDeployment, target: string): Reply {
  const healthPath = dep.spec.containers[0]?.healthcheck?.path ?? '/health';
  if (target === healthPath) return { status: 200, body: 'OK', kind: 'text' };
  if (target === '/system_stats') {
    const devices = [{ name: dep.spec.compute.name }];
    return {
      status: 200,
      body: { system: { comfyui_version: 'emulated' }, devices },
    };
  }
  if (target === '/')
    return {
      status: 200,
      body: '<!doctype html><title>ComfyUI</title>',
      kind: 'html',
    };
  return { status: 404, body: '404: Not Found', kind: 'text' };
}
