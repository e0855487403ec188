// The routes under /container-deployments/{name} (verda-api.md §2, §2.2, §3): the deployment
// itself, its status and replicas, its scaling, pause/resume/restart/purge-queue and its
// environment variables.
import { z } from 'zod';
import type { DeploymentStore } from './verda-deployments.js';
import type { Reply } from './verda-http.js';
import { replicaStatus, type EmulatedDeployment } from './verda-state.js';
import {
  requestObject,
  validateEnv,
  validatePatch,
  validateScaling,
  type ValidationContext,
} from './verda-validate.js';
import { envNamePattern, invalid, notFound, type ContainerSpec } from './verda-wire.js';

/** One request to an existing deployment. */
export interface DeploymentCall {
  dep: EmulatedDeployment;
  query: URLSearchParams;
  body: unknown;
  now: number;
  store: DeploymentStore;
  validation: ValidationContext;
}

type DeploymentHandler = (call: DeploymentCall) => Reply;

const ok = (body: unknown, status = 200): Reply => ({ status, body });
const noContent: Reply = { status: 204 };

/** DELETE ?timeout= is in ms, 0..300000 (§2); the emulator answers at once whatever it says. */
const maxDeleteTimeoutMs = 300_000;

const envVarNames = z.array(z.string().regex(envNamePattern));

const routes = new Map<string, DeploymentHandler>([
  ['GET ', ({ dep, store }) => ok(store.body(dep))],
  ['PATCH ', patchDeployment],
  ['DELETE ', deleteDeployment],
  ['GET status', getStatus],
  ['GET replicas', getReplicas],
  ['GET scaling', ({ dep }) => ok(dep.scaling)],
  ['PATCH scaling', patchScaling],
  ['POST pause', pause],
  ['POST resume', resume],
  ['POST restart', restart],
  ['POST purge-queue', purgeQueue],
  ['GET environment-variables', ({ dep }) => ok(dep.spec.containers.map(envEntry))],
  ['POST environment-variables', writeEnv('add')],
  ['PATCH environment-variables', writeEnv('update')],
  ['DELETE environment-variables', removeEnv],
]);

/** `sub` is the path segment after the name (undefined for the deployment itself). */
export function routeDeployment(method: string, sub: string | undefined, call: DeploymentCall) {
  const handler = routes.get(`${method} ${sub ?? ''}`);
  if (!handler)
    throw notFound(`no route ${method} /container-deployments/${call.dep.name}/${sub ?? ''}`);
  return handler(call);
}

function patchDeployment({ dep, body, now, store, validation }: DeploymentCall): Reply {
  const patch = validatePatch(body, dep.spec, validation);
  const imageChanged =
    patch.containers?.some((c, i) => c.image !== dep.spec.containers[i]?.image) ?? false;
  // A change to what runs rolls out new replicas; registry settings or scaling alone do not.
  const needsRollout =
    patch.containers !== undefined || patch.compute !== undefined || patch.is_spot !== undefined;
  dep.spec = { ...dep.spec, ...patch };
  if (imageChanged) dep.imageUpdatedAt = now;
  if (needsRollout) dep.restartRollout('update', now, imageChanged);
  return ok(store.body(dep));
}

/** Deletes are async (§2, gotcha 4): 202 now, `deleting` until the deployment is gone. */
function deleteDeployment({ dep, query, now }: DeploymentCall): Reply {
  const timeout = query.get('timeout');
  if (timeout !== null && !(/^\d+$/.test(timeout) && Number(timeout) <= maxDeleteTimeoutMs)) {
    throw invalid(`timeout must be an integer from 0 to ${maxDeleteTimeoutMs} (ms)`);
  }
  dep.deletingAt ??= now;
  return { status: 202 };
}

function getStatus({ dep, now }: DeploymentCall): Reply {
  dep.reconcile(now);
  return ok({ status: dep.status(now) });
}

function getReplicas({ dep, now }: DeploymentCall): Reply {
  dep.reconcile(now);
  const list = dep.replicas.map((r) => ({
    id: r.id,
    status: replicaStatus(r, now),
    started_at: new Date(r.startedAt).toISOString(),
  }));
  return ok({ list });
}

/** Partial scaling bodies are merged into the current options (GOit); the reply is all of them. */
function patchScaling({ dep, body, now }: DeploymentCall): Reply {
  // Settle the replicas under the old options before the new ones apply.
  dep.reconcile(now);
  dep.spec = { ...dep.spec, scaling: validateScaling(body, dep.scaling) };
  dep.reconcile(now);
  return ok(dep.scaling);
}

function pause({ dep, now }: DeploymentCall): Reply {
  dep.paused = true;
  dep.removeReplicas(
    dep.replicas.map((r) => r.id),
    now,
    'was stopped mid-job (deployment paused)',
  );
  return noContent;
}

function resume({ dep, now }: DeploymentCall): Reply {
  if (dep.paused) {
    dep.paused = false;
    dep.restartRollout('resume', now, false);
  }
  return noContent;
}

/** Unlike resume, a restart goes through initializing whether paused or not. */
function restart({ dep, now }: DeploymentCall): Reply {
  dep.paused = false;
  dep.restartRollout('resume', now, false);
  return noContent;
}

function purgeQueue({ dep, now }: DeploymentCall): Reply {
  dep.work.purge(now);
  dep.setQueueLength(0, now);
  dep.purges += 1;
  return noContent;
}

const envEntry = (c: ContainerSpec) => ({ container_name: c.name, env: c.env });

/** Env-var calls name their container (gotcha 5). */
function namedContainer(dep: EmulatedDeployment, name: unknown): ContainerSpec {
  const container = dep.spec.containers.find((c) => c.name === name);
  if (typeof name !== 'string' || !container)
    throw invalid(`container_name "${String(name)}" is not a container of ${dep.name}`);
  return container;
}

/** POST adds variables and PATCH updates them by name; each refuses the other's case. */
function writeEnv(mode: 'add' | 'update'): DeploymentHandler {
  return ({ dep, body, now, validation }) => {
    const request = requestObject(body);
    const container = namedContainer(dep, request.container_name);
    for (const variable of validateEnv(request.env, 'body.env', validation)) {
      const at = container.env.findIndex((e) => e.name === variable.name);
      if (mode === 'add' && at >= 0)
        throw invalid(`variable ${variable.name} already exists; use PATCH`);
      if (mode === 'update' && at < 0)
        throw invalid(`variable ${variable.name} does not exist; use POST`);
      if (at >= 0) container.env[at] = variable;
      else container.env.push(variable);
    }
    dep.restartRollout('update', now, false);
    // The documented variants (§2): POST answers an array, PATCH one object.
    return mode === 'add' ? ok([envEntry(container)], 201) : ok(envEntry(container));
  };
}

/** DELETE takes variable names in its JSON body and answers an array. */
function removeEnv({ dep, body, now }: DeploymentCall): Reply {
  const request = requestObject(body);
  const container = namedContainer(dep, request.container_name);
  const names = envVarNames.safeParse(request.env);
  if (!names.success) throw invalid('env must be an array of variable names');
  container.env = container.env.filter((e) => !names.data.includes(e.name));
  dep.restartRollout('update', now, false);
  return ok([envEntry(container)]);
}
