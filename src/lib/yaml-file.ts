import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { ConfigError, errorMessage } from './errors.js';

/**
 * Reads and parses a YAML config file; an unreadable file or invalid YAML is a ConfigError naming
 * the file, so every config loader reports the same way before its schema check.
 */
export async function readYamlFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    // fs errors name what went wrong in their code (ENOENT, EACCES); `instanceof` fails across realms.
    const code =
      typeof err === 'object' && err !== null && 'code' in err
        ? String(err.code)
        : errorMessage(err);
    throw new ConfigError(file, [`cannot be read: ${code}`]);
  }
  return parseYamlText(file, text);
}

/** YAML text of `file` (read elsewhere, e.g. from git): invalid YAML is a ConfigError naming it. */
export function parseYamlText(file: string, text: string): unknown {
  try {
    const data: unknown = parseYaml(text, { prettyErrors: true });
    return data;
  } catch (err) {
    throw new ConfigError(file, [`not valid YAML: ${errorMessage(err).split('\n')[0]}`]);
  }
}
