// Workflow expressions (`${{ ... }}`) evaluated by GitHub's own evaluator (@actions/expressions,
// the one the Actions language services use), so a wiring test can ask "which environment does
// this job get for that command?" instead of matching the expression's text.
import { Evaluator, Lexer, Parser, data } from '@actions/expressions';

// Every context a workflow may name; one a test does not give is empty, as `inputs` is on a schedule.
const contextNames = [
  'github',
  'inputs',
  'vars',
  'secrets',
  'env',
  'needs',
  'steps',
  'matrix',
  'strategy',
  'job',
  'runner',
];

const whole = /^\$\{\{([\s\S]*)\}\}$/;
const embedded = /\$\{\{([\s\S]*?)\}\}/g;

function evaluateExpression(expression: string, given: Record<string, unknown>): unknown {
  const contexts = { ...Object.fromEntries(contextNames.map((n) => [n, {}])), ...given };
  const { tokens } = new Lexer(expression.trim()).lex();
  const parsed = new Parser(tokens, Object.keys(contexts), []).parse();
  const context = JSON.parse(JSON.stringify(contexts), data.reviver) as data.Dictionary;
  return JSON.parse(JSON.stringify(new Evaluator(parsed, context).evaluate(), data.replacer));
}

/**
 * The value of a workflow field as the runner computes it: a lone `${{ expr }}` keeps its type,
 * text with expressions inside becomes a string, plain text is returned as it is.
 */
export function evaluateField(value: string, contexts: Record<string, unknown>): unknown {
  const lone = whole.exec(value.trim());
  if (lone && !lone[1]!.includes('}}')) return evaluateExpression(lone[1]!, contexts);
  return value.replace(embedded, (_m, expr: string) => {
    const v = evaluateExpression(expr, contexts);
    return v === null || v === undefined
      ? ''
      : typeof v === 'object'
        ? JSON.stringify(v)
        : String(v);
  });
}
