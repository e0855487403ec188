// Secrets, file secrets and registry credentials in the Verda emulator (verda-api.md §2): only
// their names are kept, since a deployment only has to reference ones that exist.
import type { Reply } from './verda-http.js';
import { requestObject } from './verda-validate.js';
import { invalid, notFound } from './verda-wire.js';

const resourceKinds = ['secrets', 'file-secrets', 'container-registry-credentials'] as const;

/** The first path segment of each kind's routes. */
export type ResourceKind = (typeof resourceKinds)[number];

export function isResourceKind(segment: string | undefined): segment is ResourceKind {
  return resourceKinds.some((kind) => kind === segment);
}

export interface ResourceRequest {
  method: string;
  /** The path segment after the kind, if any. */
  name: string | undefined;
  body: unknown;
  now: number;
}

export class NamedResources {
  readonly secrets: Set<string>;
  readonly fileSecrets: Set<string>;
  readonly registryCredentials: Set<string>;

  constructor(existing: {
    secrets?: string[];
    fileSecrets?: string[];
    registryCredentials?: string[];
  }) {
    this.secrets = new Set(existing.secrets ?? []);
    this.fileSecrets = new Set(existing.fileSecrets ?? []);
    this.registryCredentials = new Set(existing.registryCredentials ?? []);
  }

  /** List (GET), create (POST) and delete (DELETE /{name}); no other route exists. */
  route(kind: ResourceKind, { method, name, body, now }: ResourceRequest): Reply {
    const names = this.namesOf(kind);
    if (name === undefined && method === 'GET') return { status: 200, body: this.list(kind, now) };
    if (name === undefined && method === 'POST') {
      const request = requestObject(body);
      if (typeof request.name !== 'string' || request.name === '')
        throw invalid('name is required');
      if (names.has(request.name)) throw invalid(`${request.name} already exists`);
      if (kind === 'secrets' && typeof request.value !== 'string')
        throw invalid('value is required');
      if (kind === 'container-registry-credentials' && typeof request.type !== 'string')
        throw invalid('type is required');
      names.add(request.name);
      return { status: 201, body: {} };
    }
    if (name !== undefined && method === 'DELETE') {
      if (!names.delete(name)) throw notFound(`${name} not found`);
      return { status: 200, body: {} };
    }
    throw notFound(`no route ${method} /${kind}`);
  }

  private namesOf(kind: ResourceKind): Set<string> {
    if (kind === 'secrets') return this.secrets;
    if (kind === 'file-secrets') return this.fileSecrets;
    return this.registryCredentials;
  }

  /** Creation times are not kept: every item reports `now`. */
  private list(kind: ResourceKind, now: number): Record<string, string>[] {
    const createdAt = new Date(now).toISOString();
    return [...this.namesOf(kind)].map((name) => {
      if (kind === 'container-registry-credentials') return { name, created_at: createdAt };
      const secretType = kind === 'secrets' ? 'generic' : 'file-secret';
      return { name, created_at: createdAt, secret_type: secretType };
    });
  }
}
