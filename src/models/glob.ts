// Include patterns for model files: `**` crosses directories, `*` and `?` stay within one.
// A pattern without a slash matches the file name at any depth (like `**/<pattern>`).
export function globToRegExp(pattern: string): RegExp {
  const p = pattern.includes('/') ? pattern.replace(/^\.?\//, '') : `**/${pattern}`;
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i] ?? '';
    if (c === '*' && p[i + 1] === '*') {
      const slash = p[i + 2] === '/';
      re += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function matcher(patterns: string[]): (path: string) => boolean {
  const res = patterns.map(globToRegExp);
  return (path) => res.some((re) => re.test(path));
}
