// SSH to the GPU host with ssh2: pinned host keys only (no trust-on-first-use), keepalive on,
// and exec streams whose `done` promise fails loudly on every way a remote command can go wrong.
import { createHash, timingSafeEqual } from 'node:crypto';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import ssh2 from 'ssh2';
import type { ClientChannel, ConnectConfig } from 'ssh2';
import { InputError, OpsError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import { networkCause } from './retry.js';

const { Client, utils } = ssh2;

const PIN_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;
const STDERR_KEEP = 64 * 1024;
const STDERR_TAIL = 2000;

/** "SHA256:<unpadded base64>" of a raw public key blob, as `ssh-keygen -l` prints it. */
export function fingerprintSha256(keyBlob: Buffer): string {
  const digest = createHash('sha256').update(keyBlob).digest('base64');
  return `SHA256:${digest.replace(/=+$/, '')}`;
}

/** Validates pinned fingerprints (`SHA256:` + 43 base64 chars); at least one is required. */
export function parseFingerprints(input: string, values: string[]): string[] {
  const expected =
    'one or more host key fingerprints such as SHA256:<43 base64 characters> (ssh-keygen -lf <key>.pub)';
  if (values.length === 0) throw new InputError(input, '', expected);
  for (const value of values) {
    if (!PIN_RE.test(value)) throw new InputError(input, value, expected);
  }
  return [...new Set(values)];
}

function pinBytes(pin: string): Buffer {
  return Buffer.from(pin.slice('SHA256:'.length), 'base64');
}

const PRIVATE_KEY_EXPECTED =
  'an unencrypted OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY----- ..., the file ssh-keygen writes without .pub; ' +
  'a PEM -----BEGIN RSA PRIVATE KEY----- works too)';

/**
 * Checks that a private key (not a public key, not garbage) was given, before anything connects;
 * the error names the input and never repeats the value, which may be a secret of another kind.
 * Returns the key.
 */
export function checkPrivateKey(input: string, privateKey: string): string {
  const parsed = privateKey.trim() === '' ? new Error('empty') : utils.parseKey(privateKey);
  let why: string | undefined;
  if (parsed instanceof Error) {
    why = /encrypted|passphrase/i.test(parsed.message)
      ? 'this one needs a passphrase'
      : `this is not a key ssh2 can read: ${parsed.message.replace(/[\r\n]+/g, ' ').slice(0, 120)}`;
  } else if (!parsed.isPrivateKey()) {
    why = 'this is a public key';
  }
  if (why) throw new InputError(input, '<redacted>', `${PRIVATE_KEY_EXPECTED}; ${why}`);
  return privateKey;
}

export interface ConnectOptions {
  host: string;
  port: number;
  username: string;
  privateKey: string;
  fingerprints: string[];
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  readyTimeoutMs?: number;
  logger?: Logger;
}

export interface ExecOptions {
  /** Exit codes that count as success; default [0]. */
  allowedExitCodes?: number[];
}

export interface ExecResult {
  code: number | null;
  signal?: string;
}

export interface SshExec {
  /** The command's stdout; pipe it with backpressure. Destroyed with the error when `done` fails. */
  stdout: Readable;
  stderrText(): string;
  /** Resolves when the command exited with an allowed code; rejects on anything else. */
  done: Promise<ExecResult>;
}

export interface SshUpload {
  /**
   * The command's stdin, with backpressure (a write waits for the SSH window). `end()` sends EOF,
   * and the stream only finishes once the command exited with an allowed code, so a resolved
   * `pipeline(source, stdin)` means the remote side took every byte. Destroying it (e.g. a failed
   * source in a pipeline) also sends EOF: the command keeps what it received and `done` still
   * reports how it exited. Errored with the reason when `done` fails.
   */
  stdin: Writable;
  /** What the command printed on stdout (the last 64 KiB). */
  stdoutText(): string;
  stderrText(): string;
  /** Resolves when the command exited with an allowed code; rejects on anything else. */
  done: Promise<ExecResult>;
}

export interface SshConnection {
  readonly host: string;
  readonly port: number;
  /** The fingerprint the server presented (one of the pins). */
  readonly hostFingerprint: string;
  exec(command: string, opts?: ExecOptions): SshExec;
  /** Runs a command and streams data into its stdin (e.g. `cat >> file`). */
  writeTo(command: string, opts?: ExecOptions): SshUpload;
  run(
    command: string,
    opts?: ExecOptions,
  ): Promise<{ stdout: string; stderr: string; code: number }>;
  close(): Promise<void>;
}

function describeCommand(command: string): string {
  const oneLine = command.replace(/\s+/g, ' ');
  return oneLine.length > 160 ? `${oneLine.slice(0, 157)}...` : oneLine;
}

function tail(text: string): string {
  const t = text.trim();
  if (t === '') return '';
  return `; stderr: ${t.length > STDERR_TAIL ? `...${t.slice(-STDERR_TAIL)}` : t}`;
}

/**
 * Why an SSH connection failed, in words: "connection reset (ECONNRESET)", "the host closed the
 * connection before the SSH handshake", else ssh2's message.
 */
function sshCause(err: Error): string {
  const network = networkCause(err);
  if (network) return network;
  if (/lost before handshake/i.test(err.message))
    return 'the host closed the connection before the SSH handshake';
  return err.message.replace(/[\r\n]+/g, ' ');
}

/** Connects with pinned host keys; rejects with the presented and expected fingerprints on mismatch. */
export async function connectSsh(opts: ConnectOptions): Promise<SshConnection> {
  const logger = opts.logger ?? silentLogger;
  const where = `${opts.host}:${opts.port}`;
  const pins = parseFingerprints('host-key-fingerprints', opts.fingerprints);
  checkPrivateKey('ssh-private-key', opts.privateKey);

  const client = new Client();
  let presented: string | undefined;
  let connectionError: Error | undefined;
  let closed = false;
  let connected = false;
  let failConnect: (err: Error) => void = () => {};
  const onDrop = new Set<(reason: string) => void>();

  // One listener for the client's whole life, before anything can fail: ssh2 may emit several
  // errors for one broken link (a reset, then "Connection lost before handshake"), and an
  // 'error' with no listener crashes the process. The first error is the failure; later ones
  // only explain it further.
  client.on('error', (err: Error) => {
    if (connectionError) {
      logger.debug(`ssh: further error from ${where}: ${err.message}`);
      return;
    }
    connectionError = err;
    logger.debug(`ssh: connection error from ${where}: ${err.message}`);
    if (!connected) failConnect(err);
    for (const drop of onDrop) drop(`connection to ${where} failed: ${sshCause(err)}`);
  });
  client.on('close', () => {
    closed = true;
    if (!connected) failConnect(new Error('Connection lost before handshake'));
    for (const drop of onDrop)
      drop(
        `connection to ${where} closed${connectionError ? ` (${sshCause(connectionError)})` : ''}`,
      );
  });

  const config: ConnectConfig = {
    host: opts.host,
    port: opts.port,
    username: opts.username,
    privateKey: opts.privateKey,
    keepaliveInterval: opts.keepaliveIntervalMs ?? 10_000,
    keepaliveCountMax: opts.keepaliveCountMax ?? 3,
    readyTimeout: opts.readyTimeoutMs ?? 20_000,
    hostVerifier: (key: Buffer) => {
      presented = fingerprintSha256(key);
      const digest = createHash('sha256').update(key).digest();
      return pins.some((pin) => {
        const want = pinBytes(pin);
        return want.length === digest.length && timingSafeEqual(want, digest);
      });
    },
  };

  await new Promise<void>((resolve, reject) => {
    let settled = false;
    failConnect = (err: Error) => {
      if (settled) return;
      settled = true;
      // Nothing more can come of this connection; make sure its socket is gone.
      client.destroy();
      if (presented && /verification failed/i.test(err.message)) {
        reject(
          new OpsError(
            `SSH host key of ${where} is not pinned: the server presented ${presented}, expected ${pins.join(' or ')}. ` +
              'Refusing to connect (update host-key-fingerprints only if the host key really changed).',
          ),
        );
      } else {
        reject(
          new OpsError(`SSH connection to ${where} as ${opts.username} failed: ${sshCause(err)}`, {
            cause: err,
          }),
        );
      }
    };
    client.once('ready', () => {
      if (settled) return;
      settled = true;
      connected = true;
      resolve();
    });
    try {
      client.connect(config);
      // Without TCP_NODELAY, Nagle holds each small SSH message (channel open, exec request)
      // until the peer's delayed ACK: about 40 ms per step, 90 ms per command, 200 ms per
      // handshake (measured on loopback; more over a tailnet). Bulk data is unaffected.
      client.setNoDelay(true);
    } catch (err) {
      failConnect(err instanceof Error ? err : new Error(String(err)));
    }
  });
  logger.debug(`ssh: connected to ${where}, host key ${presented ?? '?'}`);

  /**
   * Starts a command and follows its channel to the end: `done` resolves only on an exit with an
   * allowed code, and rejects on any other code, a signal, or a dropped link. `onChannel` gets the
   * open channel; `onFail` runs (before `done` rejects) so callers can error their streams.
   */
  const startCommand = (
    command: string,
    execOpts: ExecOptions,
    onChannel: (channel: ClientChannel) => void,
    onFail: (err: Error) => void,
  ): { done: Promise<ExecResult>; stderrText: () => string } => {
    const allowed = execOpts.allowedExitCodes ?? [0];
    let stderr = '';
    const label = describeCommand(command);
    let settle!: { resolve: (r: ExecResult) => void; reject: (e: Error) => void };
    const done = new Promise<ExecResult>((resolve, reject) => (settle = { resolve, reject }));
    let finished = false;
    const finish = (err: Error | undefined, result?: ExecResult) => {
      if (finished) return;
      finished = true;
      onDrop.delete(drop);
      if (err) {
        onFail(err);
        settle.reject(err);
      } else {
        settle.resolve(result as ExecResult);
      }
    };
    const drop = (reason: string) =>
      finish(
        new OpsError(`remote command failed: ${reason} before it exited (${label})${tail(stderr)}`),
      );
    // Callers may await their stream or done first; neither must crash the process as unhandled.
    done.catch(() => {});
    const stderrText = () => stderr;

    if (closed) {
      drop(`connection to ${where} is closed`);
      return { done, stderrText };
    }
    onDrop.add(drop);
    client.exec(command, (err: Error | undefined, channel: ClientChannel) => {
      if (err) {
        finish(new OpsError(`could not start remote command (${label}): ${err.message}`));
        return;
      }
      let exit: ExecResult | undefined;
      let channelError: Error | undefined;
      // A channel (and its stderr) may error at any time, e.g. a write after the link broke: keep
      // the first as the reason and let 'close' report it; an unheard 'error' would crash.
      const onChannelError = (e: Error) => {
        channelError ??= e;
        logger.debug(`ssh: channel error on ${where} (${label}): ${e.message}`);
      };
      channel.on('error', onChannelError);
      channel.stderr.on('error', onChannelError);
      channel.stderr.on('data', (d: Buffer) => {
        stderr += d.toString('utf8');
        if (stderr.length > STDERR_KEEP) stderr = stderr.slice(-STDERR_KEEP);
      });
      channel.on('exit', (code: number | null, signal?: string) => {
        exit = signal ? { code: null, signal } : { code };
      });
      onChannel(channel);
      channel.on('close', () => {
        // Let a pending connection error land first: it explains a missing exit status best.
        setImmediate(() => {
          if (!exit) {
            drop(
              connectionError
                ? `connection to ${where} dropped (${sshCause(connectionError)})`
                : channelError
                  ? `the channel failed (${channelError.message})`
                  : 'the channel closed without an exit status',
            );
          } else if (exit.signal) {
            finish(
              new OpsError(
                `remote command killed by signal ${exit.signal} (${label})${tail(stderr)}`,
              ),
            );
          } else if (exit.code === null || !allowed.includes(exit.code)) {
            finish(
              new OpsError(
                `remote command exited with code ${exit.code} (${label})${tail(stderr)}`,
              ),
            );
          } else {
            finish(undefined, exit);
          }
        });
      });
    });
    return { done, stderrText };
  };

  const exec = (command: string, execOpts: ExecOptions = {}): SshExec => {
    const stdout = new PassThrough();
    stdout.on('error', () => {});
    const { done, stderrText } = startCommand(
      command,
      execOpts,
      (channel) => channel.pipe(stdout),
      (err) => stdout.destroy(err),
    );
    return { stdout, stderrText, done };
  };

  const writeTo = (command: string, execOpts: ExecOptions = {}): SshUpload => {
    let stdout = '';
    let channel: ClientChannel | undefined;
    let channelClosed = false;
    // Writes made before the channel opens wait here; a failure to open releases them too.
    let opened!: () => void;
    const open = new Promise<void>((resolve) => (opened = resolve));
    const endInput = () => {
      if (channel && !channelClosed && !channel.writableEnded) channel.end();
    };
    // A write the command can no longer take fails with why it ended.
    const refuse = (cb: (err?: Error | null) => void) =>
      void done.then(
        () =>
          cb(
            new OpsError(
              `remote command exited before reading all its input (${describeCommand(command)})`,
            ),
          ),
        (err: Error) => cb(err),
      );
    const stdin: Writable = new Writable({
      write(chunk: Buffer, _enc, cb) {
        void open.then(() => {
          const ch = channel;
          if (!ch || channelClosed) return refuse(cb);
          if (ch.write(chunk)) return cb();
          // Backpressure: the next chunk waits until the SSH window opens again.
          const onDrain = () => {
            ch.removeListener('close', onClose);
            cb();
          };
          const onClose = () => {
            ch.removeListener('drain', onDrain);
            refuse(cb);
          };
          ch.once('drain', onDrain);
          ch.once('close', onClose);
        });
      },
      final(cb) {
        void open.then(() => {
          endInput();
          done.then(
            () => cb(),
            (err: Error) => cb(err),
          );
        });
      },
      destroy(err, cb) {
        // EOF, not a hang-up: the command keeps what it received and exits on its own.
        void open.then(endInput);
        cb(err);
      },
    });
    stdin.on('error', () => {});
    const { done, stderrText } = startCommand(
      command,
      execOpts,
      (ch) => {
        channel = ch;
        ch.on('close', () => (channelClosed = true));
        ch.on('data', (d: Buffer) => {
          stdout += d.toString('utf8');
          if (stdout.length > STDERR_KEEP) stdout = stdout.slice(-STDERR_KEEP);
        });
        opened();
      },
      (err) => {
        opened();
        stdin.destroy(err);
      },
    );
    return { stdin, stdoutText: () => stdout, stderrText, done };
  };

  return {
    host: opts.host,
    port: opts.port,
    hostFingerprint: presented ?? '',
    exec,
    writeTo,
    async run(command, execOpts) {
      const handle = exec(command, execOpts);
      const chunks: Buffer[] = [];
      handle.stdout.on('data', (d: Buffer) => chunks.push(d));
      const [result] = await Promise.all([handle.done, finished(handle.stdout)]);
      return {
        stdout: Buffer.concat(chunks).toString('utf8'),
        stderr: handle.stderrText(),
        code: result.code ?? -1,
      };
    },
    async close() {
      if (closed) return;
      await new Promise<void>((resolve) => {
        client.once('close', () => resolve());
        client.end();
      });
    },
  };
}
