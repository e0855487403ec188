// Placeholder: replaced once the sandbox services land.
export async function runSandbox(_flags: Record<string, string>): Promise<boolean> {
  process.stdout.write('sandbox: not wired yet\n');
  return false;
}
