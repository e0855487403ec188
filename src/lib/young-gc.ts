// Stream chunks freed as they die. Each chunk of a backup's stream is a Buffer of its own (the
// socket's read, the ssh2 packet, the age chunk), dead as soon as the next stage copied it, but
// its memory goes back to malloc only when a scavenge finds its JS object dead. V8 scavenges for
// them only once 32 MiB of young Buffers piled up (twice its default semi-space, whatever the heap
// flags say); the young JS objects of a stream never fill the semi-space first. So each backup
// carried a pile of up to ~32 MiB of dead chunks in malloc's heap, and that heap's high-water mark
// (plus the holes the pile leaves) set the peak RSS. A minor GC every few MiB streamed keeps the
// pile small; a scavenge of a young generation holding few live objects takes well under 1 ms.
//
// Parts sent free their garbage late too: each part's request objects (SDK middleware, headers,
// promises) live as long as the request, survive a few scavenges and are promoted, and die in the
// old generation, which V8 collects only once it has grown to its limit. Over a long transfer the
// old space and the malloc'ed memory it holds crept up (+10 MiB over a 4 GiB push, a spike at the
// end). A full GC every FULL_GC_EVERY bytes of parts keeps them flat; with 15-20 MB live it takes
// a few ms, about 1 % of the time of moving 256 MiB.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Bytes streamed between two minor GCs; the dead chunks stay about 3× this (three per byte). */
export const YOUNG_GC_EVERY = 2 * 2 ** 20;

/** Bytes of parts sent between two full GCs. */
export const FULL_GC_EVERY = 256 * 2 ** 20;

let gc: unknown;
let streamed = 0;
let sent = 0;

/** The engine's gc(): global when node runs with --expose-gc, else taken from a fresh context. */
function engineGc(): unknown {
  if (gc !== undefined) return gc;
  gc = null;
  try {
    const global: unknown = Reflect.get(globalThis, 'gc');
    if (typeof global === 'function') gc = global;
    else {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc');
    }
  } catch {
    // Without it the engine's own trigger still frees the chunks, only later.
  }
  return gc;
}

/** Bytes that passed through a stream; a minor GC after every YOUNG_GC_EVERY of all streams. */
export function streamedBytes(n: number): void {
  streamed += n;
  if (streamed < YOUNG_GC_EVERY) return;
  streamed = 0;
  const fn = engineGc();
  if (typeof fn === 'function') Reflect.apply(fn, undefined, [{ type: 'minor' }]);
}

/** Bytes of a part stored in R2; a full GC after every FULL_GC_EVERY of all uploads. */
export function partBytesSent(n: number): void {
  sent += n;
  if (sent < FULL_GC_EVERY) return;
  sent = 0;
  const fn = engineGc();
  if (typeof fn === 'function') Reflect.apply(fn, undefined, []);
}
