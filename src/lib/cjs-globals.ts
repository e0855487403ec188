// CommonJS dependencies bundled into an ESM action (ssh2's poly1305 loader) read the free
// variables __dirname / __filename, which ESM does not define. Import this module FIRST in an
// action's index.ts so they exist before any such dependency is evaluated.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const globals = globalThis as { __dirname?: string; __filename?: string };
globals.__filename ??= fileURLToPath(import.meta.url);
globals.__dirname ??= path.dirname(globals.__filename);
