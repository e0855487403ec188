// Fault injection for the Verda emulator: rules that match requests by host, method, path and
// position (the n-th matching request, for `times` requests), deployment-level faults, and the
// replies the injected HTTP faults answer with.
import type { Reply } from './verda-http.js';

export interface RequestMatch {
  /** Which server: the management API (default) or the inference endpoint. */
  host?: 'api' | 'inference';
  method?: string;
  /** The path after /v1 (api) or after /<deployment> (inference), without the query. */
  path?: string | RegExp;
  /** The first matching request that fails, 1-based (default 1). */
  nth?: number;
  /** How many matching requests in a row fail from the n-th on (default 1; Infinity = all). */
  times?: number;
}

export type VerdaFault =
  /** Answer with this status and a {code, message} body instead of handling the request. */
  | (RequestMatch & { kind: 'http'; status: number; retryAfterSeconds?: number })
  /** Handle the request (a create still creates) and then answer with this status (504). */
  | (RequestMatch & { kind: 'http-after-handling'; status: number })
  /** The caller's access token is revoked (the request answers 401); refresh still works. */
  | (RequestMatch & { kind: 'revoke-token' })
  /** The caller's access token expires now, early (the request answers 401). */
  | (RequestMatch & { kind: 'expire-token' })
  /** The connection is destroyed without an answer. */
  | (RequestMatch & { kind: 'reset' })
  /** Deployments (all, or the one named) stick in this status after initializing. */
  | { kind: 'stuck'; deployment?: string; status?: string };

export type RequestFault = Exclude<VerdaFault, { kind: 'stuck' }>;

interface ActiveRule {
  fault: RequestFault;
  matched: number;
}

export class FaultTable {
  private rules: ActiveRule[] = [];
  private stuck: { deployment?: string; status: string }[] = [];

  add(fault: VerdaFault): void {
    if (fault.kind === 'stuck') {
      const rule: { deployment?: string; status: string } = {
        status: fault.status ?? 'image_pulling',
      };
      if (fault.deployment !== undefined) rule.deployment = fault.deployment;
      this.stuck.push(rule);
    } else {
      this.rules.push({ fault, matched: 0 });
    }
  }

  clear(): void {
    this.rules = [];
    this.stuck = [];
  }

  /** The fault this request meets, if any; counts the request against every matching rule. */
  match(host: 'api' | 'inference', method: string, path: string): RequestFault | undefined {
    let hit: RequestFault | undefined;
    for (const rule of this.rules) {
      const f = rule.fault;
      if ((f.host ?? 'api') !== host) continue;
      if (f.method && f.method.toUpperCase() !== method) continue;
      if (
        f.path !== undefined &&
        !(typeof f.path === 'string' ? f.path === path : f.path.test(path))
      )
        continue;
      rule.matched += 1;
      const first = f.nth ?? 1;
      const last = first + (f.times ?? 1) - 1;
      if (!hit && rule.matched >= first && rule.matched <= last) hit = f;
    }
    return hit;
  }

  stuckStatus(deployment: string): string | undefined {
    return this.stuck.find((s) => s.deployment === undefined || s.deployment === deployment)
      ?.status;
  }
}

/** The error code of an injected status: §5's codes, and `rate_limited` (none is documented). */
function injectedCode(status: number): string {
  if (status === 429) return 'rate_limited';
  if (status === 503) return 'service_unavailable';
  if (status >= 500) return 'server_error';
  return 'invalid_request';
}

/** The reply of an `http` fault, with Retry-After when the rule gives one. */
export function injectedReply(fault: { status: number; retryAfterSeconds?: number }): Reply {
  return {
    status: fault.status,
    body: { code: injectedCode(fault.status), message: `injected fault: ${fault.status}` },
    headers:
      fault.retryAfterSeconds === undefined
        ? {}
        : { 'Retry-After': String(fault.retryAfterSeconds) },
  };
}

/** The reply of an `http-after-handling` fault: the work is done, the answer is a gateway's. */
export function afterHandlingReply(status: number): Reply {
  return {
    status,
    body: {
      code: 'server_error',
      message: 'gateway timeout (injected after the request was handled)',
    },
  };
}
