// The test harness itself: the leak check must catch a leaked secret and its key lines.
import { describe, expect, it } from '@jest/globals';
import { parseOutputFile } from '../helpers/run-action.js';
import { findLeaks, secretNeedles } from '../helpers/secrets.js';

const key =
  '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\nAAAAC3NzaC1lZDI1NTE5AAAAIGx\n-----END OPENSSH PRIVATE KEY-----';

describe('secret-leak check', () => {
  it('finds a whole secret or one line of a private key, in any channel', () => {
    expect(findLeaks(['s3cr3t-value'], { stdout: 'x s3cr3t-value y', summary: '' })).toEqual([
      'secret #1 appears in stdout',
    ]);
    expect(findLeaks([key], { GITHUB_STEP_SUMMARY: 'AAAAC3NzaC1lZDI1NTE5AAAAIGx' })).toEqual([
      'secret #1 appears in GITHUB_STEP_SUMMARY',
    ]);
    expect(
      findLeaks(['s3cr3t-value', key], { stdout: '*** and -----BEGIN OPENSSH PRIVATE KEY-----' }),
    ).toEqual([]);
  });
  it('ignores PEM armour lines', () => {
    expect(secretNeedles(key)).not.toContain('-----BEGIN OPENSSH PRIVATE KEY-----');
  });
});

describe('GITHUB_OUTPUT parsing', () => {
  it('reads name=value and heredoc entries', () => {
    expect(
      parseOutputFile('a=1\nb<<ghadelimiter_x\nline1\nline2\nghadelimiter_x\nc=x=y\n'),
    ).toEqual({
      a: '1',
      b: 'line1\nline2',
      c: 'x=y',
    });
  });
});
