// Shell words for bash command lines, remote (over SSH) and local: every value goes through here.

/** Quotes one shell word; safe words pass unchanged. */
export function shellQuote(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_./=:@%+,-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
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
