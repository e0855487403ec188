// The management API router of the Verda emulator (verda-api.md §1, §2, §6): the token endpoint,
// then, with a valid access token, container deployments, the compute catalogue and the named
// resources. Unknown routes answer 404 not_found.
import type { OAuthTokens } from './verda-auth.js';
import { computeResources, containerTypes, type ComputeModel } from './verda-catalog.js';
import type { EmulatedClock } from './verda-clock.js';
import { routeDeployment } from './verda-deployment-routes.js';
import type { DeploymentStore } from './verda-deployments.js';
import { parseBody, type HostRequest, type Reply } from './verda-http.js';
import {
  isInstanceCollection,
  routeInstanceApi,
  type InstanceVariants,
} from './verda-instance-routes.js';
import type { InstanceStore } from './verda-instances.js';
import { isResourceKind, type NamedResources } from './verda-resources.js';
import { validateCreate, type ValidationContext } from './verda-validate.js';
import { invalid, notFound } from './verda-wire.js';

export interface ApiRouterOptions {
  clock: EmulatedClock;
  tokens: OAuthTokens;
  deployments: DeploymentStore;
  resources: NamedResources;
  catalog: ComputeModel[];
  validation: ValidationContext;
  /** POST /container-deployments answers 201 (GOmock) or 200 (PYt mocks). */
  createStatus: 200 | 201;
  /** The instance API (verda-instances-api.md), beside the containers one. */
  instances: InstanceStore;
  instanceVariants: InstanceVariants;
}

/** A parsed request past authentication, split into path segments. */
interface ApiCall {
  method: string;
  /** The first path segment: the resource collection. */
  collection: string | undefined;
  /** The second: a name within it. */
  name: string | undefined;
  /** The third: a sub-resource or action of that name. */
  sub: string | undefined;
  query: URLSearchParams;
  body: unknown;
  now: number;
}

export function apiRouter(opts: ApiRouterOptions): (request: HostRequest) => Reply {
  return (request) => {
    const { method, path } = request;
    // Parsed before anything else: a malformed body is a 400 even where a 401 would follow.
    const body = parseBody(request.rawBody, request.contentType);
    if (method === 'POST' && path === '/oauth2/token')
      return { status: 200, body: opts.tokens.grant(body) };
    opts.tokens.authenticate(request.authorization);
    const [collection, name, sub, deeper] = path.split('/').filter(Boolean);
    const now = opts.clock.now();
    const call: ApiCall = {
      method,
      collection,
      name,
      sub,
      query: request.query,
      body,
      now,
    };
    const reply = deeper === undefined ? routeCall(opts, call) : undefined;
    if (!reply) throw notFound(`no route ${method} ${path}`);
    return reply;
  };
}

/** The reply, or undefined when no route matches. */
function routeCall(opts: ApiRouterOptions, call: ApiCall): Reply | undefined {
  const { method, collection, name } = call;
  if (collection === 'container-deployments') {
    if (name === undefined) return deploymentCollection(opts, call);
    const dep = opts.deployments.get(name);
    const { query, body, now } = call;
    const { deployments: store, validation } = opts;
    return routeDeployment(method, call.sub, {
      dep,
      query,
      body,
      now,
      store,
      validation,
    });
  }
  if (collection === 'serverless-compute-resources' && method === 'GET' && name === undefined)
    return { status: 200, body: computeResources(opts.catalog) };
  if (collection === 'container-types' && method === 'GET' && name === undefined)
    return {
      status: 200,
      body: containerTypes(opts.catalog, currencyOf(call.query)),
    };
  if (isResourceKind(collection)) return opts.resources.route(collection, call);
  if (isInstanceCollection(collection))
    return routeInstanceApi(opts.instances, opts.instanceVariants, call);
  return undefined;
}

/** GET lists deployments (without status: gotcha 9); POST creates one. */
function deploymentCollection(opts: ApiRouterOptions, call: ApiCall): Reply | undefined {
  if (call.method === 'GET')
    return {
      status: 200,
      body: opts.deployments.all().map((d) => opts.deployments.body(d)),
    };
  if (call.method !== 'POST') return undefined;
  const spec = validateCreate(call.body, opts.validation);
  const dep = opts.deployments.create(spec, call.now);
  return { status: opts.createStatus, body: opts.deployments.body(dep) };
}

function currencyOf(query: URLSearchParams): 'usd' | 'eur' {
  const currency = (query.get('currency') ?? 'usd').toLowerCase();
  if (currency !== 'usd' && currency !== 'eur') throw invalid('currency must be usd or eur');
  return currency;
}
