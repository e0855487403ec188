// The instance catalogue the Verda emulator serves (verda-instances-api.md §6): instance types with
// prices (per instance, USD per hour; some served as strings, as the API may), locations, OS
// images and volume types. The contract has no real price capture, so these are mock values, but
// the seed's own figures are kept: 1V100.6V at $0.14/h and 1H100.80S.22V at $4/h.

export interface InstanceTypeModel {
  instanceType: string;
  /** The GPU model ("V100") or "CPU". */
  model: string;
  gpus: number;
  gpuMemoryGb: number;
  cores: number;
  memoryGb: number;
  /** USD per hour, the whole instance: on-demand and spot. */
  usd: number;
  spotUsd: number;
  /** Serve this type's prices as strings ("4.00"), a documented variant (gotcha 9). */
  pricesAsStrings: boolean;
  /** Image types this instance type boots. */
  images: readonly string[];
}

export interface LocationModel {
  code: string;
  name: string;
  country_code: string;
}

export interface ImageModel {
  image_type: string;
  name: string;
  details: string[];
  /** Whether GPU or CPU instance types boot it. */
  forGpu: boolean;
  os: string;
}

export interface VolumeTypeModel {
  type: string;
  /** USD per GB and month. */
  pricePerMonthPerGb: number;
  isSharedFs: boolean;
}

export const gpuImages = ['ubuntu-24.04-cuda-12.8-open-docker', 'ubuntu-22.04-cuda-12.0-docker'];
const cpuImages = ['ubuntu-22.04'];

export const defaultImages: ImageModel[] = [
  {
    image_type: 'ubuntu-24.04-cuda-12.8-open-docker',
    name: 'Ubuntu 24.04 + CUDA 12.8 Open + Docker',
    details: ['Ubuntu 24.04', 'CUDA 12.8', 'Docker'],
    forGpu: true,
    os: 'Ubuntu 24.04',
  },
  {
    image_type: 'ubuntu-22.04-cuda-12.0-docker',
    name: 'Ubuntu 22.04 + CUDA 12.0 + Docker',
    details: ['Ubuntu 22.04', 'CUDA 12.0', 'Docker'],
    forGpu: true,
    os: 'Ubuntu 22.04',
  },
  {
    image_type: 'ubuntu-22.04',
    name: 'Ubuntu 22.04',
    details: ['Ubuntu 22.04'],
    forGpu: false,
    os: 'Ubuntu 22.04',
  },
];

export const defaultInstanceTypes: InstanceTypeModel[] = [
  gpuType('1V100.6V', 'V100', 1, 16, 6, 23, 0.14, 0.05),
  gpuType('8V100.48V', 'V100', 8, 16, 48, 179, 1.12, 0.4),
  gpuType('1A100.22V', 'A100', 1, 80, 22, 120, 1.29, 0.65, true),
  gpuType('1H100.80S.22V', 'H100', 1, 80, 22, 187, 4.0, 2.0, true),
  {
    instanceType: 'CPU.4V.16G',
    model: 'CPU',
    gpus: 0,
    gpuMemoryGb: 0,
    cores: 4,
    memoryGb: 16,
    usd: 0.03,
    spotUsd: 0.01,
    pricesAsStrings: false,
    images: cpuImages,
  },
];

export const defaultLocations: LocationModel[] = [
  { code: 'FIN-01', name: 'Finland 1', country_code: 'FI' },
  { code: 'FIN-02', name: 'Finland 2', country_code: 'FI' },
  { code: 'FIN-03', name: 'Finland 3', country_code: 'FI' },
  { code: 'ICE-01', name: 'Iceland 1', country_code: 'IS' },
];

export const defaultVolumeTypes: VolumeTypeModel[] = [
  { type: 'NVMe', pricePerMonthPerGb: 0.2, isSharedFs: false },
  { type: 'HDD', pricePerMonthPerGb: 0.05, isSharedFs: false },
  { type: 'NVMe_Shared', pricePerMonthPerGb: 0.15, isSharedFs: true },
];

export interface InstanceCatalog {
  types: InstanceTypeModel[];
  locations: LocationModel[];
  images: ImageModel[];
  volumeTypes: VolumeTypeModel[];
}

export const defaultInstanceCatalog: InstanceCatalog = {
  types: defaultInstanceTypes,
  locations: defaultLocations,
  images: defaultImages,
  volumeTypes: defaultVolumeTypes,
};

function gpuType(
  instanceType: string,
  model: string,
  gpus: number,
  gpuMemoryGb: number,
  cores: number,
  memoryGb: number,
  usd: number,
  spotUsd: number,
  pricesAsStrings = false,
): InstanceTypeModel {
  return {
    instanceType,
    model,
    gpus,
    gpuMemoryGb,
    cores,
    memoryGb,
    usd,
    spotUsd,
    pricesAsStrings,
    images: gpuImages,
  };
}

/** EUR per USD for ?currency=eur (an approximation, as in verda-catalog.ts). */
const eurPerUsd = 0.86;

/** A price as this type serves it: a number, or a string with two decimals. */
export function priceValue(t: InstanceTypeModel, usd: number, currency: 'usd' | 'eur' = 'usd') {
  const value = Math.round(usd * (currency === 'eur' ? eurPerUsd : 1) * 100) / 100;
  return t.pricesAsStrings ? value.toFixed(2) : value;
}

/** The hardware parts an Instance and an InstanceType share. */
export function hardware(t: InstanceTypeModel) {
  return {
    cpu: { description: `${t.cores} CPU`, number_of_cores: t.cores },
    gpu: {
      description: t.gpus ? `${t.gpus}x ${t.model}` : '',
      number_of_gpus: t.gpus,
    },
    memory: { description: `${t.memoryGb} GB RAM`, size_in_gigabytes: t.memoryGb },
    gpu_memory: {
      description: t.gpus ? `${t.gpus * t.gpuMemoryGb} GB GPU RAM` : '',
      size_in_gigabytes: t.gpus * t.gpuMemoryGb,
    },
    storage: { description: 'dynamic' },
  };
}

/** GET /instance-types[/{type}] row. */
export function instanceTypeBody(t: InstanceTypeModel, currency: 'usd' | 'eur') {
  return {
    id: `it-${t.instanceType.toLowerCase().replace(/\./g, '-')}`,
    instance_type: t.instanceType,
    model: t.model,
    name: t.gpus ? `${t.model}` : 'CPU Node',
    display_name: t.gpus ? `${t.gpus}x ${t.model}` : `CPU ${t.cores} vCPU`,
    description: t.gpus ? `${t.gpus}x ${t.model} ${t.gpuMemoryGb}GB` : `${t.cores} vCPU`,
    manufacturer: t.gpus ? 'NVIDIA' : 'AMD',
    ...hardware(t),
    price_per_hour: priceValue(t, t.usd, currency),
    spot_price: priceValue(t, t.spotUsd, currency),
    dynamic_price: priceValue(t, t.usd, currency),
    max_dynamic_price: priceValue(t, t.usd * 1.5, currency),
    serverless_price: null,
    serverless_spot_price: null,
    currency,
    best_for: t.gpus ? ['inference', 'fine-tuning'] : ['cpu workloads'],
    p2p: t.gpus > 1 ? '300 GB/s' : null,
    supported_os: [...t.images],
  };
}

/** The CLI's formula: ceil(price_per_month_per_gb x size / 730 x 10^4) / 10^4 USD per hour. */
export function volumeHourlyUsd(v: VolumeTypeModel, sizeGb: number): number {
  return Math.ceil(((v.pricePerMonthPerGb * sizeGb) / 730) * 1e4) / 1e4;
}

/** GET /volume-types row (`monthly_per_gb` is the old alias, kept too). */
export function volumeTypeBody(v: VolumeTypeModel) {
  return {
    type: v.type,
    price: {
      price_per_month_per_gb: v.pricePerMonthPerGb,
      monthly_per_gb: v.pricePerMonthPerGb,
      currency: 'usd',
    },
    is_shared_fs: v.isSharedFs,
    burst_bandwidth: null,
    continuous_bandwidth: null,
    internal_network_speed: null,
    iops: null,
  };
}

/** GET /images row. */
export function imageBody(image: ImageModel, index: number) {
  return {
    id: `img-${String(index + 1).padStart(4, '0')}-${image.image_type}`,
    image_type: image.image_type,
    name: image.name,
    details: image.details,
    is_default: index === 0,
    is_cluster: false,
    category: image.forGpu ? 'gpu' : 'cpu',
  };
}
