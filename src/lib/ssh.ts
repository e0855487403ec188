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
/** An OpenSSH ed25519 key pair: `private` is a secret (mask it), `public` the authorized_keys line. */
export interface Ed25519KeyPair {
  private: string;
  public: string;
}

type Ed25519Generator = (comment: string) => Ed25519KeyPair;
const ssh2Ed25519: Ed25519Generator = (comment) =>
  ssh2.utils.generateKeyPairSync('ed25519', { comment });

/**
 * A new ed25519 key pair that OpenSSH and ssh2 both load. ssh2's generator strips leading zero
 * bytes from the public key (meaning to drop the DER bit string's padding byte), so about one key
 * in 256 comes out with a short public key that neither sshd nor ssh-keygen will load ("error in
 * libcrypto"); such a pair is made again.
 */
export function newEd25519KeyPair(comment: string, generate = ssh2Ed25519): Ed25519KeyPair {
  for (let attempt = 0; attempt < 16; attempt++) {
    const pair = generate(comment);
    const blob = Buffer.from(pair.public.split(' ')[1] ?? '', 'base64');
    // string "ssh-ed25519" (4 + 11 bytes), then string key: 4 + 32 bytes.
    const whole = blob.length === 51 && blob.readUInt32BE(15) === 32;
    if (whole && !(ssh2.utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new OpsError('could not generate a well-formed ed25519 key in 16 attempts');
}

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
  return SshSession.open(opts);
}

/** What a command's channel calls when it ends: with the error it failed with, or its exit. */
type Finish = (err: Error | undefined, result?: ExecResult) => void;

/**
 * One SSH connection and the commands on it. Every error of the client and of its channels is
 * heard for the connection's whole life: ssh2 may emit several errors for one broken link (a
 * reset, then "Connection lost before handshake"), and an 'error' with no listener crashes the
 * process. The first error is the failure; later ones only explain it further.
 */
class SshSession implements SshConnection {
  readonly host: string;
  readonly port: number;
  hostFingerprint = '';
  private readonly client = new Client();
  private readonly logger: Logger;
  private readonly where: string;
  private connectionError: Error | undefined;
  private closed = false;
  /** Each running command's way to fail when the link drops. */
  private readonly onDrop = new Set<(reason: string) => void>();

  private constructor(opts: ConnectOptions) {
    this.host = opts.host;
    this.port = opts.port;
    this.logger = opts.logger ?? silentLogger;
    this.where = `${opts.host}:${opts.port}`;
  }

  static async open(opts: ConnectOptions): Promise<SshSession> {
    const pins = parseFingerprints('host-key-fingerprints', opts.fingerprints);
    checkPrivateKey('ssh-private-key', opts.privateKey);
    const session = new SshSession(opts);
    await session.handshake(opts, pins);
    return session;
  }

  private handshake(opts: ConnectOptions, pins: string[]): Promise<void> {
    const { client, where, logger } = this;
    let presented: string | undefined;
    let connected = false;
    let failConnect: (err: Error) => void = () => {};
    // Listeners first, before anything can fail.
    client.on('error', (err: Error) => {
      if (this.connectionError) {
        logger.debug(`ssh: further error from ${where}: ${err.message}`);
        return;
      }
      this.connectionError = err;
      logger.debug(`ssh: connection error from ${where}: ${err.message}`);
      if (!connected) failConnect(err);
      for (const drop of this.onDrop) drop(`connection to ${where} failed: ${sshCause(err)}`);
    });
    client.on('close', () => {
      this.closed = true;
      if (!connected) failConnect(new Error('Connection lost before handshake'));
      const why = this.connectionError ? ` (${sshCause(this.connectionError)})` : '';
      for (const drop of this.onDrop) drop(`connection to ${where} closed${why}`);
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

    return new Promise<void>((resolve, reject) => {
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
          const message = `SSH connection to ${where} as ${opts.username} failed: ${sshCause(err)}`;
          reject(new OpsError(message, { cause: err }));
        }
      };
      client.once('ready', () => {
        if (settled) return;
        settled = true;
        connected = true;
        this.hostFingerprint = presented ?? '';
        logger.debug(`ssh: connected to ${where}, host key ${presented ?? '?'}`);
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
  }

  /**
   * Starts a command and follows its channel to the end: `done` resolves only on an exit with an
   * allowed code, and rejects on any other code, a signal, or a dropped link. `onChannel` gets the
   * open channel; `onFail` runs (before `done` rejects) so callers can error their streams.
   */
  private startCommand(
    command: string,
    execOpts: ExecOptions,
    onChannel: (channel: ClientChannel) => void,
    onFail: (err: Error) => void,
  ): { done: Promise<ExecResult>; stderrText: () => string } {
    const label = describeCommand(command);
    const stderr = { text: '' };
    let settle!: { resolve: (r: ExecResult) => void; reject: (e: Error) => void };
    const done = new Promise<ExecResult>((resolve, reject) => (settle = { resolve, reject }));
    let finished = false;
    const finish: Finish = (err, result) => {
      if (finished) return;
      finished = true;
      this.onDrop.delete(drop);
      if (err) {
        onFail(err);
        settle.reject(err);
      } else if (result) {
        settle.resolve(result);
      }
    };
    const drop = (reason: string) =>
      finish(
        new OpsError(
          `remote command failed: ${reason} before it exited (${label})${tail(stderr.text)}`,
        ),
      );
    // Callers may await their stream or done first; neither must crash the process as unhandled.
    done.catch(() => {});
    const stderrText = () => stderr.text;

    if (this.closed) {
      drop(`connection to ${this.where} is closed`);
      return { done, stderrText };
    }
    this.onDrop.add(drop);
    this.client.exec(command, (err: Error | undefined, channel: ClientChannel) => {
      if (err) {
        finish(new OpsError(`could not start remote command (${label}): ${err.message}`));
        return;
      }
      this.follow(channel, { label, stderr, allowed: execOpts.allowedExitCodes ?? [0] }, finish);
      onChannel(channel);
    });
    return { done, stderrText };
  }

  /** Watches an open channel to its close and tells `finish` how the command ended. */
  private follow(
    channel: ClientChannel,
    command: { label: string; stderr: { text: string }; allowed: number[] },
    finish: Finish,
  ): void {
    const { label, stderr, allowed } = command;
    let exit: ExecResult | undefined;
    let channelError: Error | undefined;
    // A channel (and its stderr) may error at any time, e.g. a write after the link broke: keep
    // the first as the reason and let 'close' report it; an unheard 'error' would crash.
    const onChannelError = (e: Error) => {
      channelError ??= e;
      this.logger.debug(`ssh: channel error on ${this.where} (${label}): ${e.message}`);
    };
    channel.on('error', onChannelError);
    channel.stderr.on('error', onChannelError);
    channel.stderr.on('data', (d: Buffer) => {
      stderr.text += d.toString('utf8');
      if (stderr.text.length > STDERR_KEEP) stderr.text = stderr.text.slice(-STDERR_KEEP);
    });
    channel.on('exit', (code: number | null, signal?: string) => {
      exit = signal ? { code: null, signal } : { code };
    });
    const failed = (what: string) =>
      finish(new OpsError(`remote command ${what} (${label})${tail(stderr.text)}`));
    channel.on('close', () => {
      // Let a pending connection error land first: it explains a missing exit status best.
      setImmediate(() => {
        if (!exit) {
          const why = this.connectionError
            ? `connection to ${this.where} dropped (${sshCause(this.connectionError)})`
            : channelError
              ? `the channel failed (${channelError.message})`
              : 'the channel closed without an exit status';
          failed(`failed: ${why} before it exited`);
        } else if (exit.signal) failed(`killed by signal ${exit.signal}`);
        else if (exit.code === null || !allowed.includes(exit.code))
          failed(`exited with code ${exit.code}`);
        else finish(undefined, exit);
      });
    });
  }

  exec(command: string, execOpts: ExecOptions = {}): SshExec {
    const stdout = new PassThrough();
    stdout.on('error', () => {});
    const { done, stderrText } = this.startCommand(
      command,
      execOpts,
      (channel) => channel.pipe(stdout),
      (err) => stdout.destroy(err),
    );
    return { stdout, stderrText, done };
  }

  writeTo(command: string, execOpts: ExecOptions = {}): SshUpload {
    const input = new ChannelInput(command);
    const { done, stderrText } = this.startCommand(
      command,
      execOpts,
      (ch) => input.attach(ch),
      (err) => input.fail(err),
    );
    input.done = done;
    return { stdin: input.stdin, stdoutText: () => input.stdout, stderrText, done };
  }

  async run(
    command: string,
    execOpts?: ExecOptions,
  ): Promise<{ stdout: string; stderr: string; code: number }> {
    const handle = this.exec(command, execOpts);
    const chunks: Buffer[] = [];
    handle.stdout.on('data', (d: Buffer) => chunks.push(d));
    const [result] = await Promise.all([handle.done, finished(handle.stdout)]);
    return {
      stdout: Buffer.concat(chunks).toString('utf8'),
      stderr: handle.stderrText(),
      code: result.code ?? -1,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      this.client.once('close', () => resolve());
      this.client.end();
    });
  }
}

/**
 * A command's stdin as a Writable with backpressure: writes made before the channel opens wait;
 * `end()` sends EOF and finishes only once the command exited well; a destroy also sends EOF (the
 * command keeps what it received).
 */
class ChannelInput {
  stdout = '';
  done: Promise<ExecResult> = new Promise(() => {});
  readonly stdin: Writable;
  private channel: ClientChannel | undefined;
  private channelClosed = false;
  private opened!: () => void;
  private readonly open = new Promise<void>((resolve) => (this.opened = resolve));

  constructor(private readonly command: string) {
    this.stdin = new Writable({
      write: (chunk: Buffer, _enc, cb) => void this.open.then(() => this.write(chunk, cb)),
      final: (cb) =>
        void this.open.then(() => {
          this.endInput();
          this.done.then(
            () => cb(),
            (err: Error) => cb(err),
          );
        }),
      // EOF, not a hang-up: the command keeps what it received and exits on its own.
      destroy: (err, cb) => {
        void this.open.then(() => this.endInput());
        cb(err);
      },
    });
    this.stdin.on('error', () => {});
  }

  attach(ch: ClientChannel): void {
    this.channel = ch;
    ch.on('close', () => (this.channelClosed = true));
    ch.on('data', (d: Buffer) => {
      this.stdout += d.toString('utf8');
      if (this.stdout.length > STDERR_KEEP) this.stdout = this.stdout.slice(-STDERR_KEEP);
    });
    this.opened();
  }

  /** The command failed (or never started): release waiting writes and error the stream. */
  fail(err: Error): void {
    this.opened();
    this.stdin.destroy(err);
  }

  private write(chunk: Buffer, cb: (err?: Error | null) => void): void {
    const ch = this.channel;
    if (!ch || this.channelClosed) return this.refuse(cb);
    if (ch.write(chunk)) return cb();
    // Backpressure: the next chunk waits until the SSH window opens again.
    const onDrain = () => {
      ch.removeListener('close', onClose);
      cb();
    };
    const onClose = () => {
      ch.removeListener('drain', onDrain);
      this.refuse(cb);
    };
    ch.once('drain', onDrain);
    ch.once('close', onClose);
  }

  private endInput(): void {
    const ch = this.channel;
    if (ch && !this.channelClosed && !ch.writableEnded) ch.end();
  }

  /** A write the command can no longer take fails with why it ended. */
  private refuse(cb: (err?: Error | null) => void): void {
    void this.done.then(
      () =>
        cb(
          new OpsError(
            `remote command exited before reading all its input (${describeCommand(this.command)})`,
          ),
        ),
      (err: Error) => cb(err),
    );
  }
}
