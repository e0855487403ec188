// The secret-leak check: a secret (or any line of a multi-line secret, like a private key) must
// not appear in anything a run prints or writes. Masked output (***) is what we expect instead.

/** The pieces of a secret that would betray it: the whole value and each substantial line. */
export function secretNeedles(secret: string): string[] {
  const needles = new Set<string>();
  if (secret.length >= 4) needles.add(secret);
  for (const line of secret.split(/\r?\n/)) {
    const trimmed = line.trim();
    // PEM armour lines are public boilerplate, not key material.
    if (trimmed.length >= 8 && !/^-----(BEGIN|END) /.test(trimmed)) needles.add(trimmed);
  }
  return [...needles];
}

/** Returns one description per leak found: which secret piece, in which channel. */
export function findLeaks(secrets: string[], channels: Record<string, string>): string[] {
  const leaks: string[] = [];
  secrets.forEach((secret, index) => {
    for (const needle of secretNeedles(secret)) {
      for (const [channel, text] of Object.entries(channels)) {
        if (text.includes(needle)) leaks.push(`secret #${index + 1} appears in ${channel}`);
      }
    }
  });
  return [...new Set(leaks)];
}
