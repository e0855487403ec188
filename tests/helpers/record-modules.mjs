// Preload (node --import) that records every module the process loads, one URL a line, in the
// file $RECORD_MODULES: ES modules as they are resolved (a module.register hook, which also sees
// the entry point), CommonJS ones from require.cache at exit. Child processes that inherit
// NODE_OPTIONS record into the same file.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';

const out = process.env.RECORD_MODULES;
if (out) {
  const hook = `
    import { appendFileSync } from 'node:fs';
    let out;
    export function initialize(data) { out = data.out; }
    export async function resolve(specifier, context, next) {
      const resolved = await next(specifier, context);
      appendFileSync(out, resolved.url + '\\n');
      return resolved;
    }`;
  register(`data:text/javascript,${encodeURIComponent(hook)}`, import.meta.url, {
    data: { out },
  });
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => {
    const files = Object.keys(cache).map((f) => `${pathToFileURL(f).href}\n`);
    appendFileSync(out, files.join(''));
  });
}
