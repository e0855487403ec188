// The worker's list of the models the workshop needs (comfyui-worker/models.json, baked into the
// image): the required models of config/models.yml with the size and sha256 each is known by.
// models.yml may leave both empty; the vault's models-manifest.json (written by every push)
// records them, so a downloaded copy of it fills the gaps. The worker's /ready route and its
// start-up check compare the shared filesystem with this list (comfyui-worker/comfyume_worker).
import { OpsError } from '../lib/errors.js';
import type { ModelManifestConfig } from './config.js';

export interface WorkerModel {
  path: string;
  /** Bytes; null when neither models.yml nor the manifest knows it (presence is checked then). */
  size: number | null;
  sha256: string | null;
}

export interface WorkerModelList {
  version: 1;
  source: string;
  models: WorkerModel[];
}

type Known = Map<string, { size: number; sha256: string }>;

/** One value from models.yml or the manifest; both given and different is an error. */
function agreed<T extends number | string>(
  path: string,
  field: string,
  fromConfig: T | undefined,
  fromManifest: T | undefined,
  configFile: string,
): T | null {
  if (fromConfig !== undefined && fromManifest !== undefined && fromConfig !== fromManifest) {
    throw new OpsError(
      `model ${path}: ${configFile} says ${field} ${String(fromConfig)} but the models manifest says ${String(fromManifest)}; ` +
        `expected them to agree (fix ${configFile}, or push the model again)`,
    );
  }
  return fromConfig ?? fromManifest ?? null;
}

export function workerModelList(config: ModelManifestConfig, manifest?: Known): WorkerModelList {
  const models = config.models
    .filter((m) => m.required)
    .map((m): WorkerModel => {
      const known = manifest?.get(m.path);
      return {
        path: m.path,
        size: agreed(m.path, 'size', m.size, known?.size, config.file),
        sha256: agreed(m.path, 'sha256', m.sha256, known?.sha256, config.file),
      };
    });
  return { version: 1, source: config.file, models };
}

export const renderWorkerModelList = (list: WorkerModelList): string =>
  `${JSON.stringify(list, null, 2)}\n`;
