// Include patterns for model files, matched by picomatch (brace sets, classes, extglobs: what
// "glob" promises). A pattern without a slash matches the file name at any depth, as before
// (`*.safetensors` = `**/*.safetensors`); dotfiles match too (a model may be named .x).
import picomatch from 'picomatch';

export function matcher(patterns: string[]): (path: string) => boolean {
  const tests = patterns.map((p) =>
    picomatch(p.replace(/^\.\//, ''), { basename: !p.includes('/'), dot: true }),
  );
  return (path) => tests.some((test) => test(path));
}
