// What the bytes cost per stage inside the action: one extra run with `node --cpu-prof`, its
// samples sorted into stages by the nearest frame that names one (the bundle keeps function
// names: ncc does not minify). Self time is counted, so a stage is what its own code and the
// native calls under it cost, never twice.
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { tableToMarkdown } from '../src/lib/summary.js';

interface Frame {
  functionName: string;
  url: string;
}
interface ProfileNode {
  id: number;
  callFrame: Frame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/**
 * A stage and how to know its frames: from a sample's own frame up, the first frame some stage
 * matches decides. `below` is the frame it was reached from (undefined for the sample's own).
 */
export interface Stage {
  name: string;
  match: (f: Frame, below: Frame | undefined) => boolean;
}

export const named =
  (...names: string[]) =>
  (f: Frame): boolean =>
    names.includes(f.functionName);

/** A frame that called a hash's update directly (the hash, not what the caller also did). */
export const hashedIn =
  (...names: string[]) =>
  (f: Frame, below: Frame | undefined): boolean =>
    names.includes(f.functionName) &&
    below?.functionName === 'update' &&
    below.url.includes('crypto/hash');

/** Stages every action shares; an area adds its own in front. */
export const COMMON_STAGES: Stage[] = [
  { name: 'garbage collection', match: named('(garbage collector)') },
  { name: 'idle (waiting on the peer or the disk)', match: named('(idle)') },
  {
    name: 'startup (module compile and load)',
    match: (f) =>
      ['compileSourceTextModule', 'compileForInternalLoader', 'compileFunction'].includes(
        f.functionName,
      ) || f.functionName === 'wrapSafe',
  },
  {
    name: 'socket writes and reads (kernel copies)',
    match: named('writev', 'writeBuffer', 'writeUtf8String', 'onStreamRead'),
  },
];

/** Self milliseconds by stage; what no stage names is "other JavaScript". */
export function stageCosts(profile: CpuProfile, stages: Stage[]): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stageOf = (id: number): string => {
    let below: Frame | undefined;
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (!frame) break;
      const hit = stages.find((s) => s.match(frame, below));
      if (hit) return hit.name;
      below = frame;
    }
    return 'other JavaScript';
  };
  const costs = new Map<string, number>();
  profile.samples.forEach((id, i) => {
    const stage = stageOf(id);
    costs.set(stage, (costs.get(stage) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000);
  });
  return costs;
}

/**
 * Runs `run(nodeArgs)` once with a CPU profile written to `dir`, and returns the stage table
 * (milliseconds and shares of the busy time).
 */
export async function profiledStages(
  dir: string,
  stages: Stage[],
  run: (nodeArgs: string[]) => Promise<unknown>,
): Promise<string> {
  // BENCH_PROFILE_DIR keeps the profile for a closer look (e.g. Chrome DevTools).
  dir = process.env.BENCH_PROFILE_DIR ?? dir;
  await rm(dir, { recursive: true, force: true });
  await run(['--cpu-prof', `--cpu-prof-dir=${dir}`]);
  const file = (await readdir(dir)).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no CPU profile in ${dir}`);
  const profile = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as CpuProfile;
  const costs = stageCosts(profile, [...stages, ...COMMON_STAGES]);
  const idle = 'idle (waiting on the peer or the disk)';
  const busy = [...costs].filter(([s]) => s !== idle).reduce((a, [, ms]) => a + ms, 0);
  const rows = [...costs]
    .sort((a, b) => b[1] - a[1])
    .map(([stage, ms]) => [
      stage,
      ms.toFixed(0),
      stage === idle ? '—' : `${((100 * ms) / busy).toFixed(0)} %`,
    ]);
  return tableToMarkdown({ headers: ['stage', 'CPU ms', 'share of busy time'], rows });
}
