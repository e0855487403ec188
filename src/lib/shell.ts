// Shell words for bash command lines, remote (over SSH) and local, and for generated scripts
// (RESTORE.sh): every value goes through here, comments included.

/** Quotes one shell word; safe words pass unchanged. The result never spans lines. */
export function shellQuote(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_./=:@%+,-]+$/.test(word)) return word;
  // A newline or another control character gets bash's $'...' with escapes, so a quoted word
  // stays on one line: a value can then end neither a comment nor a case branch.
  if (ASCII_CONTROL.test(word)) return ansiCQuote(word);
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

// Matching control characters is the point. Only ASCII ones: \xHH in $'...' is one byte.
// eslint-disable-next-line no-control-regex
const ASCII_CONTROL = /[\u0000-\u001f\u007f]/;

function ansiCQuote(word: string): string {
  // eslint-disable-next-line no-control-regex
  const escaped = word.replace(/[\u0000-\u001f\u007f\\']/g, (c) =>
    c === '\\' || c === "'" ? `\\${c}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
  return `$'${escaped}'`;
}

/**
 * Quotes a path but leaves `*` and `?` unquoted so the shell expands them
 * (e.g. /etc/ssh/ssh_host_*). Nothing else can reach the shell unquoted.
 */
export function shellGlob(path: string): string {
  return path
    .split(/([*?])/)
    .map((part) => (part === '*' || part === '?' ? part : part === '' ? '' : shellQuote(part)))
    .join('');
}

/** Free text as one shell comment line: the text is quoted, so it cannot end the comment. */
export function shellComment(text: string): string {
  return `# ${shellQuote(text)}`;
}

/**
 * Constant bash text written in a template literal: raw (backslashes stay as bash needs them),
 * with `$\{` standing for bash's `${` (a template literal would take `${` as its own). Takes no
 * substitutions: values go in through shellQuote, never into this text.
 */
export function bashText(strings: TemplateStringsArray): string {
  if (strings.length !== 1) throw new Error('bashText takes no substitutions');
  return (strings.raw[0] ?? '').replaceAll('$\\{', '${');
}
