// A young generation that keeps its first size. V8 doubles the new space (up to 2 × 16 MiB
// semi-spaces) whenever many young objects survive a scavenge, as they do while a bundle's
// modules are evaluated and while a transfer's requests are in flight, and it keeps that size for
// the rest of the run. A transfer's young objects are few and short-lived, so scavenging a small
// new space often costs little; the grown one cost 8 MiB of peak RSS in a model push.
// Import this module FIRST in an action's index.ts, and load the rest of the action after it
// (a dynamic import): the flag then holds from the first module compiled. V8 reads this flag
// each time it would grow the new space, so setting it after start-up takes effect (measured on
// Node 24: new space 2 MiB for the whole run instead of 8-32 MiB).
import { setFlagsFromString } from 'node:v8';

export const YOUNG_GENERATION_FLAGS = ['--semi-space-growth-factor=1'];

for (const flag of YOUNG_GENERATION_FLAGS) setFlagsFromString(flag);
