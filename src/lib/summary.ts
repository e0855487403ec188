/** A table for a job summary or a terminal, kept as data so both renderings come from one place. */
export interface Table {
  title?: string;
  headers: string[];
  rows: string[][];
}

function escapeCell(cell: string): string {
  return cell.replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>');
}

export function tableToMarkdown(table: Table): string {
  const lines: string[] = [];
  if (table.title) lines.push(`### ${table.title}`, '');
  lines.push(`| ${table.headers.map(escapeCell).join(' | ')} |`);
  lines.push(`| ${table.headers.map(() => '---').join(' | ')} |`);
  for (const row of table.rows) lines.push(`| ${row.map(escapeCell).join(' | ')} |`);
  return `${lines.join('\n')}\n`;
}

export function tableToText(table: Table): string {
  const widths = table.headers.map((h, i) =>
    Math.max(h.length, ...table.rows.map((r) => (r[i] ?? '').length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  const out = table.title ? [table.title] : [];
  out.push(line(table.headers), line(widths.map((w) => '-'.repeat(w))));
  for (const row of table.rows) out.push(line(row));
  return `${out.join('\n')}\n`;
}

/** Key/value facts (backup id, endpoint, cost) as a two-column table. */
export function factsTable(title: string, facts: [string, string][]): Table {
  return { title, headers: ['', ''], rows: facts.map(([k, v]) => [`**${k}**`, v]) };
}
