// The compute catalogue the emulator serves: /serverless-compute-resources and /container-types.
// Prices mirror verda-api.md §6 (the CLI's 2026-08-11 production capture, USD per hour, size 1;
// size N = N x). As in production, some prices come back as strings.

export interface ComputeModel {
  /** compute.name as deployments send it (== container-types `model`). */
  name: string;
  sizes: number[];
  /** USD per hour for size 1: on-demand and spot. */
  usd: number;
  spotUsd: number;
  gpuMemoryGb: number;
  /** Serve this model's prices as strings (a documented variant). */
  pricesAsStrings: boolean;
  cpu: boolean;
  available: boolean;
}

const gpuSizes = [1, 2, 4, 8];

export const defaultCatalog: ComputeModel[] = [
  gpu('B300', { usd: 8.25, spotUsd: 4.13, gpuMemoryGb: 288, pricesAsStrings: true }),
  gpu('B200', { usd: 6.72, spotUsd: 3.36, gpuMemoryGb: 180 }),
  gpu('H200', { usd: 4.4, spotUsd: 2.2, gpuMemoryGb: 141, pricesAsStrings: true }),
  gpu('H100', { usd: 3.58, spotUsd: 1.79, gpuMemoryGb: 80 }),
  gpu('RTX PRO 6000', { usd: 2.08, spotUsd: 1.04, gpuMemoryGb: 96, pricesAsStrings: true }),
  gpu('L40S', { usd: 1.51, spotUsd: 0.75, gpuMemoryGb: 48 }),
  // Listed by /serverless-compute-resources but without a price row (as captured).
  gpu('A100 80GB', { usd: NaN, spotUsd: NaN, gpuMemoryGb: 80 }),
  {
    name: 'CPU Node',
    sizes: [8, 16, 32],
    usd: 0.06 / 8,
    spotUsd: 0.03 / 8,
    gpuMemoryGb: 0,
    pricesAsStrings: false,
    cpu: true,
    available: true,
  },
];

type GpuFacts = Pick<ComputeModel, 'usd' | 'spotUsd' | 'gpuMemoryGb'> &
  Partial<Pick<ComputeModel, 'pricesAsStrings'>>;

function gpu(name: string, facts: GpuFacts): ComputeModel {
  return {
    name,
    sizes: gpuSizes,
    pricesAsStrings: false,
    ...facts,
    cpu: false,
    available: true,
  };
}

export function findCompute(
  catalog: ComputeModel[],
  name: string,
  size: number,
): ComputeModel | undefined {
  return catalog.find((m) => m.name === name && m.sizes.includes(size));
}

/** GET /serverless-compute-resources: a flat list (PY >= 1.21). */
export function computeResources(catalog: ComputeModel[]): unknown[] {
  return catalog.flatMap((m) =>
    m.sizes.map((size) => ({ name: m.name, size, is_available: m.available })),
  );
}

/** EUR per USD used for ?currency=eur (the capture has USD only; an approximation). */
const eurPerUsd = 0.86;

/** GET /container-types?currency=usd|eur: one row per priced model and size. */
export function containerTypes(catalog: ComputeModel[], currency: 'usd' | 'eur'): unknown[] {
  const rate = currency === 'eur' ? eurPerUsd : 1;
  return catalog
    .filter((m) => Number.isFinite(m.usd))
    .flatMap((m) =>
      m.sizes.map((size) => {
        const price = (perOne: number) => {
          const value = Math.round(perOne * size * rate * 100) / 100;
          return m.pricesAsStrings ? value.toFixed(2) : value;
        };
        const slug = m.name.replace(/\s+/g, '').toUpperCase();
        return {
          id: `ct-${slug.toLowerCase()}-${size}`,
          model: m.name,
          name: m.cpu ? `${m.name} ${size} vCPU` : `${size}x ${m.name}`,
          instance_type: m.cpu ? `CPU.${size}V` : `${size}${slug}.${m.gpuMemoryGb}S`,
          cpu: {
            description: `${size * (m.cpu ? 1 : 22)} CPU`,
            number_of_cores: m.cpu ? size : size * 22,
          },
          gpu: { description: m.cpu ? '' : `${size}x ${m.name}`, number_of_gpus: m.cpu ? 0 : size },
          gpu_memory: {
            description: `${m.gpuMemoryGb * size} GB`,
            size_in_gigabytes: m.gpuMemoryGb * size,
          },
          memory: {
            description: `${size * (m.cpu ? 4 : 180)} GB`,
            size_in_gigabytes: size * (m.cpu ? 4 : 180),
          },
          serverless_price: price(m.usd),
          serverless_spot_price: price(m.spotUsd),
          currency,
          manufacturer: m.cpu ? 'AMD' : 'NVIDIA',
        };
      }),
    );
}
