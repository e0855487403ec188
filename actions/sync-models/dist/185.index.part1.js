export const modules = {

7185:
/***/ ((__unused_webpack_module, __webpack_exports__, __webpack_require__) => {


// EXPORTS
__webpack_require__.d(__webpack_exports__, {
  run: () => (/* binding */ run)
});

// EXTERNAL MODULE: external "node:fs/promises"
var promises_ = __webpack_require__(1455);
// EXTERNAL MODULE: external "node:crypto"
var external_node_crypto_ = __webpack_require__(7598);
// EXTERNAL MODULE: external "node:stream"
var external_node_stream_ = __webpack_require__(7075);
// EXTERNAL MODULE: external "node:stream/promises"
var external_node_stream_promises_ = __webpack_require__(6466);
// EXTERNAL MODULE: ./node_modules/ssh2/lib/index.js
var lib = __webpack_require__(5472);
var lib_default = /*#__PURE__*/__webpack_require__.n(lib);
;// CONCATENATED MODULE: ./src/lib/errors.ts
/** A bad action input or CLI flag: names the input, the value given and what is expected. */
class InputError extends Error {
    input;
    value;
    expected;
    constructor(input, value, expected) {
        super(`Input '${input}' is invalid: got ${quote(value)}; expected ${expected}.`);
        this.input = input;
        this.value = value;
        this.expected = expected;
        this.name = 'InputError';
    }
}
/** A config file that does not match its schema: names the file, the field path and the problem. */
class ConfigError extends Error {
    file;
    problems;
    constructor(file, problems) {
        super(`Config ${file} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
        this.file = file;
        this.problems = problems;
        this.name = 'ConfigError';
    }
}
/** A failure the user must act on, reported as its message alone (no stack trace). */
class errors_OpsError extends Error {
    constructor(message, options) {
        super(message, options);
        this.name = 'OpsError';
    }
}
/** Errors whose message is the whole story; anything else is a bug and keeps its stack. */
function isExpectedError(err) {
    return err instanceof InputError || err instanceof ConfigError || err instanceof errors_OpsError;
}
function errorMessage(err) {
    return err instanceof Error ? err.message : String(err);
}
/** Quotes a value for an error message; secrets must never be passed here (callers redact). */
function quote(value) {
    const shown = value.length > 120 ? `${value.slice(0, 117)}...` : value;
    return JSON.stringify(shown);
}

;// CONCATENATED MODULE: ./src/lib/logger.ts
function consoleLogger(options = {}) {
    const write = options.write ?? ((line) => process.stderr.write(`${line}\n`));
    return {
        debug: (m) => {
            if (options.debug)
                write(`debug: ${m}`);
        },
        info: (m) => write(m),
        warn: (m) => write(`warning: ${m}`),
        error: (m) => write(`error: ${m}`),
        group: async (title, fn) => {
            write(`== ${title}`);
            return fn();
        },
    };
}
function memoryLogger() {
    const lines = [];
    return {
        lines,
        debug: (message) => lines.push({ level: 'debug', message }),
        info: (message) => lines.push({ level: 'info', message }),
        warn: (message) => lines.push({ level: 'warn', message }),
        error: (message) => lines.push({ level: 'error', message }),
        group: async (title, fn) => {
            lines.push({ level: 'group', message: title });
            return fn();
        },
        warnings: () => lines.filter((l) => l.level === 'warn').map((l) => l.message),
    };
}
const silentLogger = {
    debug: () => { },
    info: () => { },
    warn: () => { },
    error: () => { },
    group: async (_title, fn) => fn(),
};

;// CONCATENATED MODULE: ./src/lib/retry.ts
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** Exponential backoff with jitter, capped, honouring Retry-After. */
function backoffDelay(attempt, opts = {}) {
    const { baseDelayMs = 500, maxDelayMs = 30_000, jitter = 0.5, random = Math.random } = opts;
    const exp = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
    return Math.max(0, Math.round(exp * (1 - jitter + 2 * jitter * random())));
}
/**
 * Runs fn until it succeeds, the error is not retryable, attempts run out, or the next attempt
 * would start past the deadline; the last error is thrown as it was.
 */
async function retry(fn, opts = {}) {
    const { attempts = 5, retryable = () => false, retryAfterMs, onRetry, deadlineMs, attemptTimeoutMs, sleep: wait = sleep, now = Date.now, } = opts;
    const deadline = deadlineMs === undefined ? Infinity : now() + deadlineMs;
    for (let attempt = 1;; attempt++) {
        const left = Math.max(0, deadline - now());
        const timeoutMs = Math.min(left, attemptTimeoutMs ?? Infinity);
        try {
            return await fn(attempt, { timeoutMs: Number.isFinite(timeoutMs) ? timeoutMs : undefined });
        }
        catch (err) {
            if (attempt >= attempts || !retryable(err, attempt))
                throw err;
            const requested = retryAfterMs?.(err);
            const delayMs = Math.max(backoffDelay(attempt, opts), requested ?? 0);
            // An attempt that would start at or past the deadline could only time out: stop here.
            if (now() + delayMs >= deadline)
                throw err;
            onRetry?.({ err, attempt, delayMs });
            await wait(delayMs);
        }
    }
}
/** Parses a Retry-After header (seconds or an HTTP date) into milliseconds from now. */
function parseRetryAfter(value, now = Date.now()) {
    if (!value)
        return undefined;
    const trimmed = value.trim();
    if (/^\d+(\.\d+)?$/.test(trimmed))
        return Math.round(Number(trimmed) * 1000);
    const date = Date.parse(trimmed);
    return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
/** HTTP statuses that are safe to retry for idempotent requests. */
function isRetryableStatus(status) {
    return status === 408 || status === 429 || status >= 500;
}
const transientCodes = new Set([
    'ECONNRESET',
    'ECONNREFUSED',
    'EPIPE',
    'ETIMEDOUT',
    'EAI_AGAIN',
    'UND_ERR_SOCKET',
    'UND_ERR_CONNECT_TIMEOUT',
    'UND_ERR_HEADERS_TIMEOUT',
    'UND_ERR_BODY_TIMEOUT',
]);
const causeTexts = {
    ECONNREFUSED: 'connection refused',
    ECONNRESET: 'connection reset',
    EPIPE: 'connection closed while sending',
    ETIMEDOUT: 'connection timed out',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
    ENOTFOUND: 'DNS lookup failed: no such host',
    EAI_AGAIN: 'DNS lookup failed (temporary resolver failure)',
    EAI_FAIL: 'DNS lookup failed',
    UND_ERR_SOCKET: 'connection closed by the server',
    UND_ERR_CONNECT_TIMEOUT: 'timed out connecting',
    UND_ERR_HEADERS_TIMEOUT: 'timed out waiting for the answer',
    UND_ERR_BODY_TIMEOUT: 'timed out reading the answer',
};
// OpenSSL and Node TLS codes: certificate problems and handshakes that are not TLS at all.
const isTlsCode = (code) => /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH)/.test(code) ||
    code === 'EPROTO';
/** The error and each cause under it, outermost first. */
function* causeChain(err) {
    for (let e = err; e !== null && typeof e === 'object'; e = e.cause)
        yield e;
}
/**
 * Why a request never got an answer, in words with the errno code, e.g. "connection refused
 * (ECONNREFUSED)" or "DNS lookup failed: no such host (ENOTFOUND)"; undefined when the error is
 * not a network failure. undici's `fetch failed` keeps the real error in `cause`.
 */
function networkCause(err) {
    for (const { code, name, message } of causeChain(err)) {
        if (name === 'TimeoutError')
            return 'timed out';
        if (typeof code !== 'string')
            continue;
        const text = causeTexts[code];
        if (text)
            return `${text} (${code})`;
        if (isTlsCode(code)) {
            // Certificate errors read well ("self-signed certificate"); OpenSSL's record dumps do not.
            const short = typeof message === 'string' && message.length <= 80 && message !== code;
            return `TLS error${short ? `: ${message}` : ''} (${code})`;
        }
    }
    return undefined;
}
/** networkCause, else the innermost cause's message ("fetch failed" says nothing by itself). */
function networkFailureReason(err) {
    const cause = networkCause(err);
    if (cause)
        return cause;
    let innermost = err;
    while (innermost instanceof Error && innermost.cause instanceof Error)
        innermost = innermost.cause;
    return innermost instanceof Error ? innermost.message : String(innermost);
}
/**
 * A failure before the request could reach the server (refused, no connection in time, a
 * resolver hiccup): a retry of a request that is not safe to repeat (a job submitted) is safe
 * after this, unlike after a reset or a timeout, when the server may have taken it.
 */
function isConnectFailure(err) {
    for (const { code } of causeChain(err))
        if (code === 'ECONNREFUSED' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'EAI_AGAIN')
            return true;
    return false;
}
/** A network-level failure (reset, refused, timeout) that a retry may cure. */
function isTransientNetworkError(err) {
    for (const { code, name } of causeChain(err)) {
        if (typeof code === 'string' && transientCodes.has(code))
            return true;
        if (name === 'TimeoutError')
            return true;
    }
    return false;
}

;// CONCATENATED MODULE: ./src/lib/ssh.ts
// SSH to the GPU host with ssh2: pinned host keys only (no trust-on-first-use), keepalive on,
// and exec streams whose `done` promise fails loudly on every way a remote command can go wrong.







const { Client, utils } = (lib_default());
const PIN_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;
const STDERR_KEEP = 64 * 1024;
const STDERR_TAIL = 2000;
/** "SHA256:<unpadded base64>" of a raw public key blob, as `ssh-keygen -l` prints it. */
function fingerprintSha256(keyBlob) {
    const digest = (0,external_node_crypto_.createHash)('sha256').update(keyBlob).digest('base64');
    return `SHA256:${digest.replace(/=+$/, '')}`;
}
const ssh2Ed25519 = (comment) => ssh2.utils.generateKeyPairSync('ed25519', { comment });
/**
 * A new ed25519 key pair that OpenSSH and ssh2 both load. ssh2's generator strips leading zero
 * bytes from the public key (meaning to drop the DER bit string's padding byte), so about one key
 * in 256 comes out with a short public key that neither sshd nor ssh-keygen will load ("error in
 * libcrypto"); such a pair is made again.
 */
function newEd25519KeyPair(comment, generate = ssh2Ed25519) {
    for (let attempt = 0; attempt < 16; attempt++) {
        const pair = generate(comment);
        const blob = Buffer.from(pair.public.split(' ')[1] ?? '', 'base64');
        // string "ssh-ed25519" (4 + 11 bytes), then string key: 4 + 32 bytes.
        const whole = blob.length === 51 && blob.readUInt32BE(15) === 32;
        if (whole && !(ssh2.utils.parseKey(pair.private) instanceof Error))
            return pair;
    }
    throw new OpsError('could not generate a well-formed ed25519 key in 16 attempts');
}
function parseFingerprints(input, values) {
    const expected = 'one or more host key fingerprints such as SHA256:<43 base64 characters> (ssh-keygen -lf <key>.pub)';
    if (values.length === 0)
        throw new InputError(input, '', expected);
    for (const value of values) {
        if (!PIN_RE.test(value))
            throw new InputError(input, value, expected);
    }
    return [...new Set(values)];
}
function pinBytes(pin) {
    return Buffer.from(pin.slice('SHA256:'.length), 'base64');
}
const PRIVATE_KEY_EXPECTED = 'an unencrypted OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY----- ..., the file ssh-keygen writes without .pub; ' +
    'a PEM -----BEGIN RSA PRIVATE KEY----- works too)';
/**
 * Checks that a private key (not a public key, not garbage) was given, before anything connects;
 * the error names the input and never repeats the value, which may be a secret of another kind.
 * Returns the key.
 */
function checkPrivateKey(input, privateKey) {
    const parsed = privateKey.trim() === '' ? new Error('empty') : utils.parseKey(privateKey);
    let why;
    if (parsed instanceof Error) {
        why = /encrypted|passphrase/i.test(parsed.message)
            ? 'this one needs a passphrase'
            : `this is not a key ssh2 can read: ${parsed.message.replace(/[\r\n]+/g, ' ').slice(0, 120)}`;
    }
    else if (!parsed.isPrivateKey()) {
        why = 'this is a public key';
    }
    if (why)
        throw new InputError(input, '<redacted>', `${PRIVATE_KEY_EXPECTED}; ${why}`);
    return privateKey;
}
function describeCommand(command) {
    const oneLine = command.replace(/\s+/g, ' ');
    return oneLine.length > 160 ? `${oneLine.slice(0, 157)}...` : oneLine;
}
function tail(text) {
    const t = text.trim();
    if (t === '')
        return '';
    return `; stderr: ${t.length > STDERR_TAIL ? `...${t.slice(-STDERR_TAIL)}` : t}`;
}
/**
 * Why an SSH connection failed, in words: "connection reset (ECONNRESET)", "the host closed the
 * connection before the SSH handshake", else ssh2's message.
 */
function sshCause(err) {
    const network = networkCause(err);
    if (network)
        return network;
    if (/lost before handshake/i.test(err.message))
        return 'the host closed the connection before the SSH handshake';
    return err.message.replace(/[\r\n]+/g, ' ');
}
/** Connects with pinned host keys; rejects with the presented and expected fingerprints on mismatch. */
async function connectSsh(opts) {
    return SshSession.open(opts);
}
/**
 * One SSH connection and the commands on it. Every error of the client and of its channels is
 * heard for the connection's whole life: ssh2 may emit several errors for one broken link (a
 * reset, then "Connection lost before handshake"), and an 'error' with no listener crashes the
 * process. The first error is the failure; later ones only explain it further.
 */
class SshSession {
    host;
    port;
    hostFingerprint = '';
    client = new Client();
    logger;
    where;
    connectionError;
    closed = false;
    /** Each running command's way to fail when the link drops. */
    onDrop = new Set();
    constructor(opts) {
        this.host = opts.host;
        this.port = opts.port;
        this.logger = opts.logger ?? silentLogger;
        this.where = `${opts.host}:${opts.port}`;
    }
    static async open(opts) {
        const pins = parseFingerprints('host-key-fingerprints', opts.fingerprints);
        checkPrivateKey('ssh-private-key', opts.privateKey);
        const session = new SshSession(opts);
        await session.handshake(opts, pins);
        return session;
    }
    handshake(opts, pins) {
        const { client, where, logger } = this;
        let presented;
        let connected = false;
        let failConnect = () => { };
        // Listeners first, before anything can fail.
        client.on('error', (err) => {
            if (this.connectionError) {
                logger.debug(`ssh: further error from ${where}: ${err.message}`);
                return;
            }
            this.connectionError = err;
            logger.debug(`ssh: connection error from ${where}: ${err.message}`);
            if (!connected)
                failConnect(err);
            for (const drop of this.onDrop)
                drop(`connection to ${where} failed: ${sshCause(err)}`);
        });
        client.on('close', () => {
            this.closed = true;
            if (!connected)
                failConnect(new Error('Connection lost before handshake'));
            const why = this.connectionError ? ` (${sshCause(this.connectionError)})` : '';
            for (const drop of this.onDrop)
                drop(`connection to ${where} closed${why}`);
        });
        const config = {
            host: opts.host,
            port: opts.port,
            username: opts.username,
            privateKey: opts.privateKey,
            keepaliveInterval: opts.keepaliveIntervalMs ?? 10_000,
            keepaliveCountMax: opts.keepaliveCountMax ?? 3,
            readyTimeout: opts.readyTimeoutMs ?? 20_000,
            hostVerifier: (key) => {
                presented = fingerprintSha256(key);
                const digest = (0,external_node_crypto_.createHash)('sha256').update(key).digest();
                return pins.some((pin) => {
                    const want = pinBytes(pin);
                    return want.length === digest.length && (0,external_node_crypto_.timingSafeEqual)(want, digest);
                });
            },
        };
        return new Promise((resolve, reject) => {
            let settled = false;
            failConnect = (err) => {
                if (settled)
                    return;
                settled = true;
                // Nothing more can come of this connection; make sure its socket is gone.
                client.destroy();
                if (presented && /verification failed/i.test(err.message)) {
                    reject(new errors_OpsError(`SSH host key of ${where} is not pinned: the server presented ${presented}, expected ${pins.join(' or ')}. ` +
                        'Refusing to connect (update host-key-fingerprints only if the host key really changed).'));
                }
                else {
                    const message = `SSH connection to ${where} as ${opts.username} failed: ${sshCause(err)}`;
                    reject(new errors_OpsError(message, { cause: err }));
                }
            };
            client.once('ready', () => {
                if (settled)
                    return;
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
            }
            catch (err) {
                failConnect(err instanceof Error ? err : new Error(String(err)));
            }
        });
    }
    /**
     * Starts a command and follows its channel to the end: `done` resolves only on an exit with an
     * allowed code, and rejects on any other code, a signal, or a dropped link. `onChannel` gets the
     * open channel; `onFail` runs (before `done` rejects) so callers can error their streams.
     */
    startCommand(command, execOpts, onChannel, onFail) {
        const label = describeCommand(command);
        const stderr = { text: '' };
        let settle;
        const done = new Promise((resolve, reject) => (settle = { resolve, reject }));
        let finished = false;
        const finish = (err, result) => {
            if (finished)
                return;
            finished = true;
            this.onDrop.delete(drop);
            if (err) {
                onFail(err);
                settle.reject(err);
            }
            else if (result) {
                settle.resolve(result);
            }
        };
        const drop = (reason) => finish(new errors_OpsError(`remote command failed: ${reason} before it exited (${label})${tail(stderr.text)}`));
        // Callers may await their stream or done first; neither must crash the process as unhandled.
        done.catch(() => { });
        const stderrText = () => stderr.text;
        if (this.closed) {
            drop(`connection to ${this.where} is closed`);
            return { done, stderrText };
        }
        this.onDrop.add(drop);
        this.client.exec(command, (err, channel) => {
            if (err) {
                finish(new errors_OpsError(`could not start remote command (${label}): ${err.message}`));
                return;
            }
            this.follow(channel, { label, stderr, allowed: execOpts.allowedExitCodes ?? [0] }, finish);
            onChannel(channel);
        });
        return { done, stderrText };
    }
    /** Watches an open channel to its close and tells `finish` how the command ended. */
    follow(channel, command, finish) {
        const { label, stderr, allowed } = command;
        let exit;
        let channelError;
        // A channel (and its stderr) may error at any time, e.g. a write after the link broke: keep
        // the first as the reason and let 'close' report it; an unheard 'error' would crash.
        const onChannelError = (e) => {
            channelError ??= e;
            this.logger.debug(`ssh: channel error on ${this.where} (${label}): ${e.message}`);
        };
        channel.on('error', onChannelError);
        channel.stderr.on('error', onChannelError);
        channel.stderr.on('data', (d) => {
            stderr.text += d.toString('utf8');
            if (stderr.text.length > STDERR_KEEP)
                stderr.text = stderr.text.slice(-STDERR_KEEP);
        });
        channel.on('exit', (code, signal) => {
            exit = signal ? { code: null, signal } : { code };
        });
        const failed = (what) => finish(new errors_OpsError(`remote command ${what} (${label})${tail(stderr.text)}`));
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
                }
                else if (exit.signal)
                    failed(`killed by signal ${exit.signal}`);
                else if (exit.code === null || !allowed.includes(exit.code))
                    failed(`exited with code ${exit.code}`);
                else
                    finish(undefined, exit);
            });
        });
    }
    exec(command, execOpts = {}) {
        const stdout = new external_node_stream_.PassThrough();
        stdout.on('error', () => { });
        const { done, stderrText } = this.startCommand(command, execOpts, (channel) => channel.pipe(stdout), (err) => stdout.destroy(err));
        return { stdout, stderrText, done };
    }
    writeTo(command, execOpts = {}) {
        const input = new ChannelInput(command);
        const { done, stderrText } = this.startCommand(command, execOpts, (ch) => input.attach(ch), (err) => input.fail(err));
        input.done = done;
        return { stdin: input.stdin, stdoutText: () => input.stdout, stderrText, done };
    }
    async run(command, execOpts) {
        const handle = this.exec(command, execOpts);
        const chunks = [];
        handle.stdout.on('data', (d) => chunks.push(d));
        const [result] = await Promise.all([handle.done, (0,external_node_stream_promises_.finished)(handle.stdout)]);
        return {
            stdout: Buffer.concat(chunks).toString('utf8'),
            stderr: handle.stderrText(),
            code: result.code ?? -1,
        };
    }
    async close() {
        if (this.closed)
            return;
        await new Promise((resolve) => {
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
    command;
    stdout = '';
    done = new Promise(() => { });
    stdin;
    channel;
    channelClosed = false;
    opened;
    open = new Promise((resolve) => (this.opened = resolve));
    constructor(command) {
        this.command = command;
        this.stdin = new external_node_stream_.Writable({
            write: (chunk, _enc, cb) => void this.open.then(() => this.write(chunk, cb)),
            final: (cb) => void this.open.then(() => {
                this.endInput();
                this.done.then(() => cb(), (err) => cb(err));
            }),
            // EOF, not a hang-up: the command keeps what it received and exits on its own.
            destroy: (err, cb) => {
                void this.open.then(() => this.endInput());
                cb(err);
            },
        });
        this.stdin.on('error', () => { });
    }
    attach(ch) {
        this.channel = ch;
        ch.on('close', () => (this.channelClosed = true));
        ch.on('data', (d) => {
            this.stdout += d.toString('utf8');
            if (this.stdout.length > STDERR_KEEP)
                this.stdout = this.stdout.slice(-STDERR_KEEP);
        });
        this.opened();
    }
    /** The command failed (or never started): release waiting writes and error the stream. */
    fail(err) {
        this.opened();
        this.stdin.destroy(err);
    }
    write(chunk, cb) {
        const ch = this.channel;
        if (!ch || this.channelClosed)
            return this.refuse(cb);
        if (ch.write(chunk))
            return cb();
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
    endInput() {
        const ch = this.channel;
        if (ch && !this.channelClosed && !ch.writableEnded)
            ch.end();
    }
    /** A write the command can no longer take fails with why it ended. */
    refuse(cb) {
        void this.done.then(() => cb(new errors_OpsError(`remote command exited before reading all its input (${describeCommand(this.command)})`)), (err) => cb(err));
    }
}

// EXTERNAL MODULE: ./node_modules/zod/v4/classic/schemas.js + 11 modules
var schemas = __webpack_require__(2857);
// EXTERNAL MODULE: external "node:path"
var external_node_path_ = __webpack_require__(6760);
var external_node_path_default = /*#__PURE__*/__webpack_require__.n(external_node_path_);
;// CONCATENATED MODULE: ./src/lib/safe-path.ts
// Relative paths that come from untrusted places (bucket keys, a bucket's manifest, config files)
// and are joined onto a local or remote directory. Only a plain relative path is accepted: one that
// cannot name anything outside its root, whatever the OS or shell does with it.



/** What a safe relative path is, for error messages. */
const SAFE_PATH_EXPECTED = "a relative path of '/'-separated names, without '.', '..' or empty segments, '\\' or control characters";
// C0 controls (NUL, newline, ...), DEL and C1 controls: matching them is the point.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** Whether text holds a control character: none belongs in a path, a name or a one-line value. */
const hasControlChars = (value) => CONTROL.test(value);
/** Why `value` is not a safe relative path, or undefined when it is one. */
function unsafePathReason(value) {
    if (value === '')
        return 'it is empty';
    if (value.startsWith('/'))
        return 'it is absolute';
    if (CONTROL.test(value))
        return 'it contains a control character';
    if (value.includes('\\'))
        return "it contains '\\'";
    const segments = value.split('/');
    if (segments.includes('..'))
        return "it has a '..' segment";
    if (segments.includes('.'))
        return "it has a '.' segment";
    if (segments.includes(''))
        return 'it has an empty segment';
    return undefined;
}
/**
 * `root` joined with the checked relative path `rel`; throws an OpsError naming `what` and the
 * value when `rel` is unsafe or would resolve outside `root`. `p` is path.posix for remote hosts.
 */
function resolveInside(root, rel, what = 'path', p = (external_node_path_default())) {
    const reason = unsafePathReason(rel);
    const base = p.resolve(root);
    const full = p.resolve(base, rel);
    if (reason !== undefined || !full.startsWith(base === p.sep ? base : `${base}${p.sep}`)) {
        throw new errors_OpsError(`${what} ${JSON.stringify(rel)} is refused: ${reason ?? `it resolves outside ${root}`}; expected ${SAFE_PATH_EXPECTED}`);
    }
    return full;
}
/** An absolute path without '.', '..', empty segments or control characters. */
function absolutePath(what, opts = {}) {
    return z.string().superRefine((value, ctx) => {
        const problem = pathProblem(value, opts.glob ?? false);
        if (problem)
            ctx.addIssue({ code: 'custom', message: `${what} ${JSON.stringify(value)} ${problem}` });
    });
}
function pathProblem(value, glob) {
    if (!value.startsWith('/'))
        return 'must be absolute (start with /)';
    if (hasControlChars(value))
        return 'must not contain control characters';
    const segments = value === '/' ? [] : value.slice(1).replace(/\/$/, '').split('/');
    if (segments.some((s) => s === '..'))
        return "must not contain '..'";
    if (segments.some((s) => s === '.' || s === ''))
        return "must not contain '.' or empty segments";
    const globbed = segments.findIndex((s) => /[*?]/.test(s));
    if (/[[\]{}]/.test(value))
        return 'must not contain [ ] { } (only * and ? globs are supported)';
    if (globbed >= 0 && (!glob || globbed !== segments.length - 1)) {
        return glob ? 'may use * or ? only in its last segment' : 'must not contain * or ?';
    }
    return undefined;
}

;// CONCATENATED MODULE: ./src/lib/schema.ts

function issuePath(path) {
    if (path.length === 0)
        return '(top level)';
    return path
        .map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`))
        .join('');
}
/** One line per problem of a failed parse; unknown keys are named. */
function schemaProblems(error) {
    return error.issues.map((issue) => {
        const keys = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : '';
        const named = keys && !issue.message.includes(keys) ? `: ${keys}` : '';
        return `${issuePath(issue.path)}: ${issue.message}${named}`;
    });
}
/** Data checked by a schema, or a ConfigError naming the file and every problem. */
function parseWithSchema(schema, data, file) {
    const result = schema.safeParse(data);
    if (result.success)
        return result.data;
    throw new ConfigError(file, schemaProblems(result.error));
}

// EXTERNAL MODULE: ./node_modules/yaml/dist/index.js
var dist = __webpack_require__(8815);
;// CONCATENATED MODULE: ./src/lib/yaml-file.ts



/**
 * Reads and parses a YAML config file; an unreadable file or invalid YAML is a ConfigError naming
 * the file, so every config loader reports the same way before its schema check.
 */
async function readYamlFile(file) {
    let text;
    try {
        text = await (0,promises_.readFile)(file, 'utf8');
    }
    catch (err) {
        // fs errors name what went wrong in their code (ENOENT, EACCES); `instanceof` fails across realms.
        const code = typeof err === 'object' && err !== null && 'code' in err
            ? String(err.code)
            : errorMessage(err);
        throw new ConfigError(file, [`cannot be read: ${code}`]);
    }
    return parseYamlText(file, text);
}
/** YAML text of `file` (read elsewhere, e.g. from git): invalid YAML is a ConfigError naming it. */
function parseYamlText(file, text) {
    try {
        const data = (0,dist/* parse */.qg)(text, { prettyErrors: true });
        return data;
    }
    catch (err) {
        throw new ConfigError(file, [`not valid YAML: ${errorMessage(err).split('\n')[0]}`]);
    }
}

;// CONCATENATED MODULE: ./src/models/model-path.ts
// The one rule for a model's path under the models directory, wherever the path comes from: a
// bucket key, models-manifest.json, config/models.yml or the host's own listing (on push).


const PARTIAL_SUFFIX = '.partial';
/** Why `rel` cannot be a model path, or undefined when it can. */
function modelPathProblem(rel) {
    return (unsafePathReason(rel) ??
        (rel.endsWith(PARTIAL_SUFFIX)
            ? `it ends in '${PARTIAL_SUFFIX}' (the name of a download in progress)`
            : undefined));
}
/** `"path" (why)` for every path that cannot be a model path. */
function unsafeModelPaths(paths) {
    const out = [];
    for (const p of paths) {
        const problem = modelPathProblem(p);
        if (problem)
            out.push(`${JSON.stringify(p)} (${problem})`);
    }
    return out;
}
/** Throws one error naming the refused paths (from unsafeModelPaths or alike), if there are any. */
function refuseUnsafePaths(what, refused, remedy) {
    if (refused.length === 0)
        return;
    const shown = refused.slice(0, 10).join(', ') + (refused.length > 10 ? ', ...' : '');
    throw new errors_OpsError(`${what}: ${shown}; expected ${SAFE_PATH_EXPECTED}. Nothing was written; ${remedy}.`);
}

;// CONCATENATED MODULE: ./src/models/config.ts
// config/models.yml: the models a host needs, with their HuggingFace source URLs (the seed's
// Option B). Validated with zod before anything connects; duplicate paths are an error.






// Joined onto the models directory (local or on the host) and used as a bucket key.
const relativePath = schemas/* string */.YjP().superRefine((value, ctx) => {
    const problem = modelPathProblem(value);
    if (problem)
        ctx.addIssue({
            code: 'custom',
            message: `path ${JSON.stringify(value)} is refused: ${problem}; expected ${SAFE_PATH_EXPECTED} under the models directory`,
        });
});
const modelSchema = schemas/* strictObject */.rej({
    path: relativePath,
    size: schemas/* number */.aig().int().nonnegative().nullish(),
    sha256: schemas/* string */.YjP()
        .regex(/^([0-9a-f]{64})?$/, 'sha256 must be 64 lowercase hex characters or empty')
        .nullish(),
    url: schemas/* url */.OZ5({ protocol: /^https?$/, error: 'url must be an http(s) URL' }).nullish(),
    required: schemas/* boolean */.zMY().default(true),
});
const fileSchema = schemas/* strictObject */.rej({ models: schemas/* array */.YOg(modelSchema) });
/** Validates parsed YAML; `file` names the source in errors. */
function parseModelsConfig(file, data) {
    const parsed = parseWithSchema(fileSchema, data, file);
    const seen = new Map();
    const problems = [];
    const models = parsed.models.map((m, i) => {
        const first = seen.get(m.path);
        if (first !== undefined) {
            problems.push(`models[${i}].path: duplicate path ${JSON.stringify(m.path)} (also models[${first}])`);
        }
        seen.set(m.path, i);
        return {
            path: m.path,
            required: m.required,
            ...(m.size != null ? { size: m.size } : {}),
            ...(m.sha256 ? { sha256: m.sha256 } : {}),
            ...(m.url ? { url: m.url } : {}),
        };
    });
    if (problems.length)
        throw new ConfigError(file, problems);
    return { file, models };
}
async function loadModelsConfig(file) {
    return parseModelsConfig(file, await readYamlFile(file));
}

;// CONCATENATED MODULE: ./src/lib/shell.ts
// Shell words for bash command lines, remote (over SSH) and local, and for generated scripts
// (RESTORE.sh): every value goes through here, comments included.
/** Quotes one shell word; safe words pass unchanged. The result never spans lines. */
function shellQuote(word) {
    if (word !== '' && /^[A-Za-z0-9_./=:@%+,-]+$/.test(word))
        return word;
    // A newline or another control character gets bash's $'...' with escapes, so a quoted word
    // stays on one line: a value can then end neither a comment nor a case branch.
    if (ASCII_CONTROL.test(word))
        return ansiCQuote(word);
    return `'${word.replace(/'/g, `'\\''`)}'`;
}
// Matching control characters is the point. Only ASCII ones: \xHH in $'...' is one byte.
// eslint-disable-next-line no-control-regex
const ASCII_CONTROL = /[\u0000-\u001f\u007f]/;
function ansiCQuote(word) {
    // eslint-disable-next-line no-control-regex
    const escaped = word.replace(/[\u0000-\u001f\u007f\\']/g, (c) => c === '\\' || c === "'" ? `\\${c}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
    return `$'${escaped}'`;
}
/**
 * Quotes a path but leaves `*` and `?` unquoted so the shell expands them
 * (e.g. /etc/ssh/ssh_host_*). Nothing else can reach the shell unquoted.
 */
function shellGlob(path) {
    return path
        .split(/([*?])/)
        .map((part) => (part === '*' || part === '?' ? part : part === '' ? '' : shellQuote(part)))
        .join('');
}
/** Free text as one shell comment line: the text is quoted, so it cannot end the comment. */
function shellComment(text) {
    return `# ${shellQuote(text)}`;
}
/**
 * Constant bash text written in a template literal: raw (backslashes stay as bash needs them),
 * with `$\{` standing for bash's `${` (a template literal would take `${` as its own). Takes no
 * substitutions: values go in through shellQuote, never into this text.
 */
function bashText(strings) {
    if (strings.length !== 1)
        throw new Error('bashText takes no substitutions');
    return (strings.raw[0] ?? '').replaceAll('$\\{', '${');
}

// EXTERNAL MODULE: external "node:fs"
var external_node_fs_ = __webpack_require__(3024);
// EXTERNAL MODULE: ./node_modules/@aws-sdk/client-s3/dist-cjs/index.js
var dist_cjs = __webpack_require__(3711);
// EXTERNAL MODULE: ./node_modules/@aws-sdk/s3-request-presigner/dist-cjs/index.js
var s3_request_presigner_dist_cjs = __webpack_require__(8505);
;// CONCATENATED MODULE: ./src/models/host-fetch.ts
// pull-via host: the GPU host fetches each vault object from R2 itself, with curl and a presigned
// GET, instead of every byte going R2 -> runner -> SSH -> host. The runner only signs (SigV4 query
// auth, one URL per attempt, valid an hour) and checks what landed; the partial, the resume, the
// size and sha256 check and the rename stay those of every pull (partial.ts, pull.ts).
// A presigned URL is a bearer credential derived from the R2 secret: it is masked as soon as it
// exists, reaches curl on its stdin (`--config -`), never an argv on the host (`ps` shows argvs to
// every user there), and no message built here ever holds it.





/** How long one presigned GET stays valid; each attempt signs a new one. */
const PRESIGN_EXPIRY_S = 3600;
/** curl's --connect-timeout: R2 answers a TCP/TLS handshake in well under a second. */
const CURL_CONNECT_TIMEOUT_S = 30;
/** A failure a later attempt may cure (a cut connection, a 5xx): the partial keeps what came. */
class TransientHostGetError extends Error {
    constructor(message) {
        super(message);
        this.name = 'TransientHostGetError';
    }
}
/**
 * Signs one GET of `key` (SigV4 in the query, no request sent). `mask` gets the URL and its
 * signature before anything else can see them.
 */
async function presignGet(store, key, mask) {
    const url = await (0,s3_request_presigner_dist_cjs/* getSignedUrl */.A)(store.client, new dist_cjs/* GetObjectCommand */.jLs({ Bucket: store.bucket, Key: key }), { expiresIn: PRESIGN_EXPIRY_S });
    mask(url);
    const signature = new URL(url).searchParams.get('X-Amz-Signature');
    if (signature)
        mask(signature);
    return url;
}
/** curl's config text for one URL (read from stdin): a quoted `url = "..."` line. */
function curlConfig(url) {
    if (/[\r\n\0]/.test(url))
        throw new errors_OpsError('a presigned URL held a line break');
    return `url = "${url.replace(/[\\"]/g, (c) => `\\${c}`)}"\n`;
}
const MARKER = 'comfyume-curl';
/**
 * The host's side of one attempt: curl appends the body from `$2` on to the partial `$1` (a Range
 * when `$2` > 0) while sha256sum hashes the kept prefix and every new byte, so the partial is never
 * read a second time. pipefail: a failed curl or tee fails the whole command. curl's own retry is
 * off (our policy decides, resuming from what the partial holds); `--fail` turns an HTTP error into
 * exit 22, and the status and byte count go to stderr behind a marker.
 */
const FETCH_SCRIPT = bashText `set -o pipefail
p=$1 off=$2 proto=$3 connect=$4 stall=$5
range=()
if [ "$off" -gt 0 ]; then range=(--continue-at "$off"); fi
fetch() {
  curl --config - --silent --show-error --fail --proto "=$proto" --connect-timeout "$connect" \
    --speed-limit 1 --speed-time "$stall" "$\{range[@]}" \
    --write-out '%{stderr}comfyume-curl %{http_code} %{size_download}\n'
}
if [ "$off" -gt 0 ]; then
  { head -c "$off" -- "$p" && fetch | tee -a -- "$p"; } | sha256sum
else
  fetch | tee -- "$p" | sha256sum
fi`;
/** The remote command of one attempt; only paths and numbers in it, never the URL. */
function fetchCommand(partial, offset, get) {
    const proto = new URL(get.url).protocol === 'http:' ? 'http' : 'https';
    const args = [partial, offset, proto, CURL_CONNECT_TIMEOUT_S, Math.max(1, get.stallSeconds)];
    return `bash -c ${shellQuote(FETCH_SCRIPT)} host-fetch ${args.map((a) => shellQuote(String(a))).join(' ')}`;
}
/** The command that answers whether the host has curl (exit 0) or not (exit 1). */
const CURL_PROBE = 'command -v curl >/dev/null 2>&1';
/** Fails with what to do when the host has no curl on its PATH. */
async function probeCurl(conn) {
    const { code } = await conn.run(CURL_PROBE, { allowedExitCodes: [0, 1, 127] });
    if (code !== 0)
        throw new errors_OpsError(`pull-via: host needs curl on ${conn.host}, and there is none on its PATH: install curl there ` +
            '(apt-get install -y curl) or use pull-via: runner');
}
/** curl exit codes of a transfer cut or refused on the way, worth another attempt (resumed). */
const TRANSIENT_CURL = new Set([5, 6, 7, 16, 18, 28, 35, 52, 55, 56, 92]);
const CURL_WORDS = {
    5: 'could not resolve the proxy',
    6: 'could not resolve the host',
    7: 'could not connect',
    16: 'HTTP/2 error',
    18: 'the connection closed before the whole body came',
    23: 'writing the body failed',
    28: 'no byte came within the timeout (r2-timeout)',
    33: 'R2 ignored the byte range (cannot resume)',
    35: 'TLS handshake failed',
    52: 'empty reply',
    55: 'sending the request failed',
    56: 'the connection failed while receiving',
    60: 'the TLS certificate was not trusted',
    92: 'HTTP/2 stream error',
};
/** Anything URL-like in text from the host goes before it can reach a message. */
function redactUrls(text) {
    return text
        .replace(/[a-z][a-z0-9+.-]*:\/\/[^\s"']+/gi, '<url>')
        .replace(/X-Amz-[A-Za-z-]+=[^\s&"']*/g, 'X-Amz-<redacted>');
}
/**
 * What one attempt's exit code, stdout (sha256sum) and stderr (curl's marker) mean: the result,
 * or an error naming the file and the HTTP status. A failure worth another attempt is a
 * TransientHostGetError; anything else is an OpsError (not retried).
 */
function readAttempt(what, exit, stdout, stderr) {
    const marker = [...stderr.matchAll(new RegExp(`^${MARKER} (\\d{3}) (\\d+)`, 'gm'))].at(-1);
    const status = Number(marker?.[1] ?? 0);
    const bytes = Number(marker?.[2] ?? 0);
    const said = redactUrls(stderr
        .split('\n')
        .filter((l) => l.trim() !== '' && !l.startsWith(MARKER))
        .join('; ')).slice(-400);
    const on = `on ${what.host}`;
    if (exit === 0) {
        const sha256 = /^([0-9a-f]{64})\b/.exec(stdout.trim())?.[1];
        if (!sha256 || !marker)
            throw new errors_OpsError(`${what.path}: the download ${on} printed no sha256 or no curl report (${JSON.stringify(stdout.trim().slice(0, 200))})`);
        return { size: what.offset + bytes, sha256, bytes };
    }
    if (exit === 22 && status >= 400) {
        const why = status === 403
            ? ' (Forbidden: the presigned URL expired or its signature was refused, or the key may not read this object)'
            : status === 404
                ? ' (Not Found: the object is gone from the bucket)'
                : '';
        const message = `${what.path}: R2 answered HTTP ${status} to the host's GET ${on}${why}`;
        if (isRetryableStatus(status))
            throw new TransientHostGetError(message);
        throw new errors_OpsError(message);
    }
    const words = CURL_WORDS[exit] ?? (exit === 127 ? 'curl was not found' : undefined);
    const message = `${what.path}: the download ${on} failed${words ? `: ${words}` : ''} ` +
        `(exit ${exit}${status ? `, HTTP ${status}` : ''})${said ? `: ${said}` : ''}`;
    if (TRANSIENT_CURL.has(exit))
        throw new TransientHostGetError(message);
    throw new errors_OpsError(message);
}

;// CONCATENATED MODULE: ./src/models/partial.ts
// Where a download lands before it is trusted: `<file>.partial` beside the final path, appended
// to (resume), measured and hashed where it lives, then renamed into place in one step. One
// implementation for a local directory, one for the GPU host over SSH.










/**
 * Feeds a local file to a hash; returns its length. One buffer is read into again and again: a
 * read stream's fresh 1 MiB chunk per read piled up dead (tens of MiB of RSS while a 26 GiB file
 * was hashed) until a scavenge freed them.
 */
async function hashFile(file, sha) {
    const buf = Buffer.allocUnsafeSlow(2 ** 20);
    const fh = await (0,promises_.open)(file, 'r');
    try {
        let n = 0;
        for (;;) {
            const { bytesRead } = await fh.read(buf, 0, buf.length, null);
            if (bytesRead === 0)
                return n;
            sha.update(buf.subarray(0, bytesRead));
            n += bytesRead;
        }
    }
    finally {
        await fh.close();
    }
}
/** A partial in a local directory. Hashes while writing, so the file is not read a second time. */
class LocalPartialFile {
    final;
    partial;
    /** A hash of exactly the partial's bytes, kept while this process wrote them. */
    running;
    constructor(dir, rel) {
        this.final = resolveInside(dir, rel, 'model path');
        this.partial = `${this.final}.partial`;
    }
    async size() {
        await (0,promises_.mkdir)(external_node_path_default().dirname(this.final), { recursive: true });
        try {
            return (await (0,promises_.stat)(this.partial)).size;
        }
        catch {
            return 0;
        }
    }
    async write(body, fromStart) {
        // The kept prefix is hashed first (a reset costs only this re-read), then every new byte.
        const sha = (0,external_node_crypto_.createHash)('sha256');
        const running = { sha, size: fromStart ? 0 : await hashFile(this.partial, sha).catch(() => 0) };
        this.running = undefined;
        const tap = new external_node_stream_.Transform({
            transform(chunk, _enc, cb) {
                sha.update(chunk);
                running.size += chunk.length;
                cb(null, chunk);
            },
        });
        try {
            await (0,external_node_stream_promises_.pipeline)(body, tap, (0,external_node_fs_.createWriteStream)(this.partial, { flags: fromStart ? 'w' : 'a' }));
        }
        finally {
            this.running = running;
        }
    }
    async digest() {
        const size = (await (0,promises_.stat)(this.partial)).size;
        if (this.running?.size === size)
            return { size, sha256: this.running.sha.digest('hex') };
        const sha = (0,external_node_crypto_.createHash)('sha256');
        await hashFile(this.partial, sha);
        return { size, sha256: sha.digest('hex') };
    }
    async discard() {
        this.running = undefined;
        await (0,promises_.rm)(this.partial, { force: true });
    }
    async commit() {
        await (0,promises_.rename)(this.partial, this.final);
    }
}
/**
 * A partial on the GPU host: bytes go into the partial over the SSH connection, the host measures
 * (`stat`) and hashes it, and `mv -f -T` puts it in place. A write from the first byte is hashed
 * on the host as it is written (`tee` into `sha256sum`, on another core), so the file is not read
 * a second time; after an append (a resume) the whole partial is hashed once it is complete.
 */
class SshPartialFile {
    conn;
    final;
    partial;
    /** Size and sha256 of exactly the bytes the last write from the start put into the partial. */
    written;
    constructor(conn, dir, rel) {
        this.conn = conn;
        this.final = resolveInside(dir, rel, 'model path', (external_node_path_default()).posix);
        this.partial = `${this.final}.partial`;
    }
    async size() {
        const p = shellQuote(this.partial);
        const { stdout } = await this.conn.run(`mkdir -p -- ${shellQuote(external_node_path_default().posix.dirname(this.final))} && ` +
            `if [ -e ${p} ]; then stat -c %s -- ${p}; else echo 0; fi`);
        return this.parseSize(stdout);
    }
    async write(body, fromStart) {
        this.written = undefined;
        const p = shellQuote(this.partial);
        // pipefail: a failed write (tee) fails the command even though sha256sum succeeded.
        const command = fromStart
            ? `bash -o pipefail -c ${shellQuote('tee -- "$1" | sha256sum')} tee-sha256 ${p}`
            : `cat >> ${p}`;
        const upload = this.conn.writeTo(command);
        let size = 0;
        const count = new external_node_stream_.Transform({
            transform(chunk, _enc, cb) {
                size += chunk.length;
                cb(null, chunk);
            },
        });
        try {
            await (0,external_node_stream_promises_.pipeline)(body, count, upload.stdin);
        }
        catch (err) {
            // The remote side got EOF: wait until it has exited, so no later append overlaps it.
            await upload.done.catch(() => undefined);
            throw err;
        }
        await upload.done;
        if (fromStart)
            this.written = { size, sha256: this.hashOf(upload.stdoutText()) };
    }
    /**
     * pull-via host: the host itself GETs the bytes from `offset` on into the partial (curl, URL on
     * its stdin), hashing the kept prefix and the new bytes as they are written. Returns the bytes
     * added; fails as host-fetch.ts's readAttempt says (a TransientHostGetError may be retried).
     */
    async fetch(get, offset, path) {
        this.written = undefined;
        const upload = this.conn.writeTo(fetchCommand(this.partial, offset, get), {
            allowedExitCodes: Array.from({ length: 256 }, (_, i) => i),
        });
        upload.stdin.end(curlConfig(get.url));
        const { code } = await upload.done;
        const got = readAttempt({ path, host: this.conn.host, offset }, code ?? -1, upload.stdoutText(), upload.stderrText());
        this.written = { size: got.size, sha256: got.sha256 };
        return got.bytes;
    }
    async digest() {
        const p = shellQuote(this.partial);
        if (this.written) {
            // The hash taken while writing counts only if the partial is still exactly those bytes' size.
            const size = this.parseSize((await this.conn.run(`stat -c %s -- ${p}`)).stdout);
            if (size === this.written.size)
                return { size, sha256: this.written.sha256 };
        }
        const { stdout } = await this.conn.run(`stat -c %s -- ${p} && sha256sum < ${p}`);
        const [sizeLine = '', hashLine = ''] = stdout.split('\n');
        return { size: this.parseSize(sizeLine), sha256: this.hashOf(hashLine) };
    }
    hashOf(text) {
        const sha256 = /^([0-9a-f]{64})\b/.exec(text.trim())?.[1];
        if (!sha256)
            throw new errors_OpsError(`sha256sum on ${this.conn.host} printed ${JSON.stringify(text.trim())}`);
        return sha256;
    }
    async discard() {
        this.written = undefined;
        await this.conn.run(`rm -f -- ${shellQuote(this.partial)}`);
    }
    async commit() {
        // -T: never move the file INTO a directory that happens to sit at the final path.
        await this.conn.run(`mv -f -T -- ${shellQuote(this.partial)} ${shellQuote(this.final)}`);
    }
    parseSize(text) {
        const n = Number(text.trim());
        if (!Number.isSafeInteger(n) || n < 0 || text.trim() === '')
            throw new errors_OpsError(`stat of ${this.partial} on ${this.conn.host} printed ${JSON.stringify(text)}`);
        return n;
    }
}

;// CONCATENATED MODULE: ./src/models/host.ts
// Where model files live: a local directory, or a directory on the GPU host over a pinned SSH
// connection. Listing is one call (a directory walk, or one remote `find -printf`); reads are
// sequential streams; hashing on the remote side is one `sha256sum` call for many files; pull
// writes through a PartialFile (`<file>.partial`, renamed into place once verified).







class LocalModelHost {
    dir;
    label;
    constructor(dir) {
        this.dir = dir;
        this.label = dir;
    }
    async list() {
        const out = [];
        const walk = async (rel) => {
            let entries;
            try {
                entries = await (0,promises_.readdir)(external_node_path_default().join(this.dir, rel), { withFileTypes: true });
            }
            catch (err) {
                if (rel === '')
                    throw new errors_OpsError(`cannot read the models directory ${this.dir}: ${errorMessage(err)}`);
                throw err;
            }
            for (const e of entries) {
                const child = rel ? `${rel}/${e.name}` : e.name;
                if (e.isDirectory())
                    await walk(child);
                else if (e.isFile() && !e.name.endsWith('.partial')) {
                    out.push({ path: child, size: (await (0,promises_.stat)(external_node_path_default().join(this.dir, child))).size });
                }
            }
        };
        await walk('');
        return out.sort((a, b) => (a.path < b.path ? -1 : 1));
    }
    async reader(file) {
        const fh = await (0,promises_.open)(this.at(file), 'r');
        let position = 0;
        return {
            async read(buf, length) {
                let got = 0;
                while (got < length) {
                    const { bytesRead } = await fh.read(buf, got, length - got, position);
                    if (bytesRead === 0)
                        break;
                    got += bytesRead;
                    position += bytesRead;
                }
                return got;
            },
            close: () => fh.close(),
        };
    }
    async prepare() {
        await (0,promises_.mkdir)(this.dir, { recursive: true });
    }
    partial(file) {
        return new LocalPartialFile(this.dir, file);
    }
    async remove(file) {
        await (0,promises_.rm)(this.at(file), { force: true });
    }
    async sha256(files) {
        const out = new Map();
        for (const f of files) {
            const sha = (0,external_node_crypto_.createHash)('sha256');
            await hashFile(this.at(f), sha);
            out.set(f, sha.digest('hex'));
        }
        return out;
    }
    /** A model's path in this directory; never outside it. */
    at(file) {
        return resolveInside(this.dir, file, 'model path');
    }
}
/** Model files on the GPU host, read over an open pinned SSH connection. */
class SshModelHost {
    conn;
    dir;
    label;
    constructor(conn, dir) {
        this.conn = conn;
        this.dir = dir;
        this.label = `${conn.host}:${dir}`;
    }
    async list() {
        // One command for the whole tree: size and relative path, NUL-terminated (any file name).
        const { stdout } = await this.conn.run(`find ${shellQuote(this.dir)} -type f -printf '%s %P\\0'`);
        return stdout
            .split('\0')
            .filter((l) => l !== '')
            .map((line) => {
            const sp = line.indexOf(' ');
            return { path: line.slice(sp + 1), size: Number(line.slice(0, sp)) };
        })
            .filter((f) => !f.path.endsWith('.partial'))
            .sort((a, b) => (a.path < b.path ? -1 : 1));
    }
    async reader(file) {
        const exec = this.conn.exec(`cat -- ${shellQuote(this.at(file))}`);
        return streamReader(exec.stdout, () => exec.done.then(() => undefined));
    }
    async sha256(files) {
        const out = new Map();
        if (files.length === 0)
            return out;
        for (const f of files)
            this.at(f);
        const cmd = `cd ${shellQuote(this.dir)} && sha256sum -- ${files.map(shellQuote).join(' ')}`;
        const { stdout } = await this.conn.run(cmd);
        for (const line of stdout.split('\n')) {
            const m = /^\\?([0-9a-f]{64}) [ *](.+)$/.exec(line);
            if (m?.[1] && m[2])
                out.set(m[2], m[1]);
        }
        return out;
    }
    async prepare() {
        await this.conn.run(`mkdir -p -- ${shellQuote(this.dir)}`);
    }
    partial(file) {
        return new SshPartialFile(this.conn, this.dir, file);
    }
    async remove(file) {
        await this.conn.run(`rm -f -- ${shellQuote(this.at(file))}`);
    }
    /** A model's path in this directory on the host; never outside it. */
    at(file) {
        return resolveInside(this.dir, file, 'model path', (external_node_path_default()).posix);
    }
}
/** A SequentialReader over a stream; `finish` reports how the producer ended (e.g. exit status). */
function streamReader(stream, finish) {
    const it = stream[Symbol.asyncIterator]();
    let left;
    let ended = false;
    return {
        async read(buf, length) {
            let got = 0;
            while (got < length) {
                if (!left || left.length === 0) {
                    if (ended)
                        break;
                    const next = await it.next();
                    if (next.done) {
                        ended = true;
                        await finish();
                        break;
                    }
                    left = next.value;
                }
                const n = Math.min(length - got, left.length);
                left.copy(buf, got, 0, n);
                left = left.subarray(n);
                got += n;
            }
            return got;
        },
        async close() {
            if (!ended)
                stream.destroy();
        },
    };
}

;// CONCATENATED MODULE: ./src/lib/format.ts
const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
function formatBytes(bytes) {
    let value = bytes;
    let unit = 0;
    while (Math.abs(value) >= 1024 && unit < units.length - 1) {
        value /= 1024;
        unit++;
    }
    return unit === 0
        ? `${bytes} B`
        : `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}
function formatDuration(ms) {
    if (ms < 1000)
        return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60)
        return `${s.toFixed(s >= 10 ? 0 : 1)} s`;
    const m = Math.floor(s / 60);
    const rest = Math.round(s - m * 60);
    if (m < 60)
        return `${m} m ${rest} s`;
    return `${Math.floor(m / 60)} h ${m % 60} m`;
}
function formatRate(bytes, ms) {
    if (ms <= 0)
        return '-';
    return `${(bytes / 2 ** 20 / (ms / 1000)).toFixed(1)} MiB/s`;
}
function formatUsd(amount) {
    return amount < 0.01 && amount > 0 ? `$${amount.toFixed(4)}` : `$${amount.toFixed(2)}`;
}

;// CONCATENATED MODULE: ./src/lib/summary.ts
function escapeCell(cell) {
    return cell.replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>');
}
function tableToMarkdown(table) {
    const lines = [];
    if (table.title)
        lines.push(`### ${table.title}`, '');
    lines.push(`| ${table.headers.map(escapeCell).join(' | ')} |`);
    lines.push(`| ${table.headers.map(() => '---').join(' | ')} |`);
    for (const row of table.rows)
        lines.push(`| ${row.map(escapeCell).join(' | ')} |`);
    return `${lines.join('\n')}\n`;
}
function tableToText(table) {
    const widths = table.headers.map((h, i) => Math.max(h.length, ...table.rows.map((r) => (r[i] ?? '').length)));
    const line = (cells) => cells
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd();
    const out = table.title ? [table.title] : [];
    out.push(line(table.headers), line(widths.map((w) => '-'.repeat(w))));
    for (const row of table.rows)
        out.push(line(row));
    return `${out.join('\n')}\n`;
}
/** Key/value facts (backup id, endpoint, cost) as a two-column table. */
function factsTable(title, facts) {
    return { title, headers: ['', ''], rows: facts.map(([k, v]) => [`**${k}**`, v]) };
}

;// CONCATENATED MODULE: ./src/models/summary.ts
// The job summary of a model sync: one row per file and the R2 request cost of the run.


function syncTables(r) {
    const files = {
        title: `Model sync (${r.direction})`,
        headers: ['File', 'Action', 'Size', 'Time', 'Rate', 'Note'],
        rows: r.files.map((f) => [
            f.path,
            f.action,
            formatBytes(f.size),
            f.ms > 0 ? formatDuration(f.ms) : '-',
            f.ms > 0 ? formatRate(f.size, f.ms) : '-',
            f.note ?? '',
        ]),
    };
    const ops = Object.entries(r.requests.byOperation)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([op, n]) => `${op} ${n}`)
        .join(', ');
    const facts = factsTable('R2 requests of this run', [
        ['Compared by', r.compare],
        [
            'Uploaded / downloaded / skipped / deleted',
            `${r.uploaded} / ${r.downloaded} / ${r.skipped} / ${r.deleted}`,
        ],
        ['Bytes moved', formatBytes(r.bytes)],
        ['Class A requests', String(r.requests.classA)],
        ['Class B requests', String(r.requests.classB)],
        ['By operation', ops || 'none'],
        ['Request cost', formatUsd(r.requests.cost)],
        ...staleRow(r),
    ]);
    return [files, facts];
}
/** Shown only when a run aborted stale multipart uploads. */
function staleRow(r) {
    return r.staleAborted > 0 ? [['Stale uploads aborted', String(r.staleAborted)]] : [];
}

;// CONCATENATED MODULE: ./src/lib/limits.ts
// Bounded concurrency and bounded memory for transfers: a semaphore of in-flight requests, a loop
// with a width, and one pool of part buffers, so memory is about partSize × concurrency whatever
// the sizes moved.
class Semaphore {
    size;
    waiting = [];
    free;
    constructor(size) {
        this.size = size;
        this.free = size;
    }
    async acquire() {
        if (this.free > 0)
            this.free--;
        else
            await new Promise((resolve) => this.waiting.push(resolve));
        let released = false;
        return () => {
            if (released)
                return;
            released = true;
            const next = this.waiting.shift();
            if (next)
                next();
            else
                this.free++;
        };
    }
}
/**
 * Part buffers reused by size; at most `keep` idle buffers of each size are retained. Big blocks
 * that are freed and allocated again cost RSS: after glibc frees one mmap'ed block it raises its
 * mmap threshold, and the next part buffers land in its heap among small buffers, which it can
 * seldom give back. `reserve` allocates the buffers a run will hold at once, before anything else
 * can have raised that threshold.
 */
class BufferPool {
    keep;
    idle = new Map();
    reserved = new Set();
    constructor(keep = Infinity) {
        this.keep = keep;
    }
    /** Allocates `count` idle buffers of `size` now; once per size (later calls do nothing). */
    reserve(size, count) {
        if (this.reserved.has(size))
            return;
        this.reserved.add(size);
        const list = this.idle.get(size) ?? [];
        while (list.length < Math.min(count, this.keep))
            list.push(Buffer.allocUnsafeSlow(size));
        this.idle.set(size, list);
    }
    get(size) {
        return this.idle.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
    }
    put(buf) {
        const list = this.idle.get(buf.length) ?? [];
        if (list.length < this.keep)
            list.push(buf);
        this.idle.set(buf.length, list);
    }
}
/**
 * Runs fn over items with at most `limit` running at once. The first failure stops new items from
 * starting and is thrown once the running ones settled.
 */
async function forEachLimit(items, limit, fn) {
    let next = 0;
    let failure;
    const worker = async () => {
        while (next < items.length && failure === undefined) {
            const index = next++;
            try {
                await fn(items[index], index);
            }
            catch (err) {
                failure ??= { err };
            }
        }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
    if (failure !== undefined)
        throw failure.err;
}

;// CONCATENATED MODULE: ./src/lib/r2.ts


const R2_MIN_PART = 5 * 2 ** 20;
const R2_MAX_PART = 5 * 2 ** 30;
const R2_MAX_PARTS = 10_000;
const R2_METADATA_LIMIT = 8192;
const R2_LIST_PAGE = 1000;
/** Dollars per million operations (Class A: PUT, UploadPart, List\u2026; Class B: GET, HEAD). */
const R2_CLASS_A_PER_MILLION = 4.5;
const R2_CLASS_B_PER_MILLION = 0.36;
function r2Endpoint(opts) {
    if (opts.endpoint) {
        let url;
        try {
            url = new URL(opts.endpoint);
        }
        catch {
            throw new InputError('r2-endpoint', opts.endpoint, 'an http(s) URL such as https://<account-id>.r2.cloudflarestorage.com');
        }
        if (url.protocol !== 'https:' && url.protocol !== 'http:') {
            throw new InputError('r2-endpoint', opts.endpoint, 'an http(s) URL');
        }
        return opts.endpoint.replace(/\/+$/, '');
    }
    if (opts.accountId) {
        if (!/^[0-9a-f]{32}$/.test(opts.accountId)) {
            throw new InputError('r2-account-id', opts.accountId, 'a 32-character hex Cloudflare account id');
        }
        return `https://${opts.accountId}.r2.cloudflarestorage.com`;
    }
    throw new InputError('r2-endpoint', '', 'an R2 endpoint URL, or r2-account-id');
}
/**
 * An S3 client with the settings R2 needs: region auto, path-style, and checksums only when
 * required (R2 rejects aws-chunked bodies; s3rver silently stores them corrupted).
 */
function createR2Client(opts) {
    return new dist_cjs/* S3Client */.YxF({
        endpoint: r2Endpoint(opts),
        region: 'auto',
        forcePathStyle: true,
        credentials: { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey },
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        // No `Expect: 100-continue` before bodies over 2 MiB: it costs every part a round trip to R2
        // waiting for "100 Continue"; a refused request (bad credentials) just wastes one body.
        expectContinueHeader: false,
        maxAttempts: opts.maxAttempts ?? 3,
        // throwOnRequestTimeout: without it smithy only logs a warning and the request hangs on.
        ...(opts.requestTimeoutMs
            ? { requestHandler: { requestTimeout: opts.requestTimeoutMs, throwOnRequestTimeout: true } }
            : {}),
    });
}
/**
 * The smallest part size of a file's upload when 10,000 parts leave room: concurrency × part size
 * is the memory a push holds in part buffers (4 × 8 MiB), and 8 MiB parts cost one Class A request
 * per 8 MiB ($0.0006 per GiB) while still filling a connection between two requests.
 */
const R2_AUTO_MIN_PART = 8 * 2 ** 20;
/** R2 part size for a file: max(8 MiB, ceil(size / 10000)) rounded up to a whole MiB. */
function r2PartSize(size) {
    const mib = 2 ** 20;
    const wanted = Math.max(R2_AUTO_MIN_PART, Math.ceil(size / R2_MAX_PARTS));
    return Math.ceil(wanted / mib) * mib;
}
/** S3/R2 bucket names: 3\u201363 lowercase letters, digits and hyphens, starting and ending alnum. */
function validateBucketName(input, bucket) {
    if (!/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket)) {
        throw new InputError(input, bucket, 'an R2 bucket name: 3-63 lowercase letters, digits and hyphens');
    }
    return bucket;
}
/** Dollar cost of a number of Class A and Class B operations. */
function r2RequestCost(classA, classB) {
    return (classA * R2_CLASS_A_PER_MILLION + classB * R2_CLASS_B_PER_MILLION) / 1e6;
}

;// CONCATENATED MODULE: ./src/lib/r2-store.ts
// The one way to R2. Every request of the backup, the model vault and the drill goes through
// R2Store.request, which applies once what used to be spelled out per module: the retry policy
// (which failures are worth another attempt, how many, how long to wait), the wording of a failure
// ("R2 <request> <key> failed: <why> (HTTP n)"), and a retry logged as a warning. The request
// timeout is the client's (createR2Client, from r2-timeout); the SDK itself makes one attempt.







/** The retry policy of every R2 request: 5 attempts, backoff from 500 ms, jittered. */
const R2_RETRY = {
    attempts: 5,
    baseDelayMs: 500,
    maxDelayMs: 30_000,
};
const TRANSIENT_S3_ERRORS = new Set([
    'SlowDown',
    'InternalError',
    'ServiceUnavailable',
    'RequestTimeout',
    // A body damaged on the way (Content-MD5 or SigV4 payload hash mismatch): send it again.
    'XAmzContentSHA256Mismatch',
    'BadDigest',
]);
const fieldsOf = (err) => err !== null && typeof err === 'object' ? err : {};
const statusOf = (err) => fieldsOf(err).$metadata?.httpStatusCode;
const nameOf = (err) => fieldsOf(err).name ?? fieldsOf(err).Code ?? '';
/** Whether an S3/R2 request failure may succeed when sent again. */
function isRetryableS3Error(err) {
    if (TRANSIENT_S3_ERRORS.has(nameOf(err)))
        return true;
    const status = statusOf(err);
    if (typeof status === 'number')
        return isRetryableStatus(status);
    return isTransientNetworkError(err);
}
/** "R2 PutObject a/b failed: <message> (HTTP 500)": which request, on what, and why. */
function describeS3Failure(what, err) {
    if (err instanceof errors_OpsError)
        return err;
    const status = statusOf(err);
    const message = errorMessage(err).replace(/\.+$/, '');
    // "connect ECONNREFUSED 127.0.0.1:9000" names the peer; the cause in words says what went wrong.
    const cause = networkCause(err);
    const why = cause && !message.includes(cause) ? ` (${cause})` : '';
    return new errors_OpsError(`R2 ${what} failed: ${message}${why}${status ? ` (HTTP ${status})` : ''}`, {
        cause: err,
    });
}
/** The error R2 (and S3) give for a key that does not exist. */
const isNotFound = (err) => nameOf(err) === 'NoSuchKey' || nameOf(err) === 'NotFound' || statusOf(err) === 404;
const unquote = (etag) => (etag ?? '').replace(/"/g, '');
/** The MD5 in hex: R2's ETag of a part, or of an object written by one PutObject, of these bytes. */
const md5Hex = (bytes) => (0,external_node_crypto_.createHash)('md5').update(bytes).digest('hex');
/**
 * R2 stored other bytes than we sent when its ETag is not the one they give: an error naming the
 * request, the key, the ETag expected and the one found.
 */
function checkEtag(what, found, expected, of) {
    if (found === undefined || found === '')
        throw new errors_OpsError(`R2 gave no ETag for ${what}`);
    const etag = unquote(found);
    if (etag !== expected) {
        throw new errors_OpsError(`R2 ${what}: ETag ${etag}, expected ${expected} (${of}); R2 holds other bytes than were sent`);
    }
    return etag;
}
/** The ETag R2 (like S3) gives an object completed from parts with these ETags. */
function multipartEtag(partEtags) {
    const md5 = (0,external_node_crypto_.createHash)('md5');
    for (const etag of partEtags)
        md5.update(Buffer.from(unquote(etag), 'hex'));
    return `${md5.digest('hex')}-${partEtags.length}`;
}
/**
 * How every body goes to R2: with its Content-MD5 (the command's ContentMD5), and UNSIGNED-PAYLOAD
 * in the signature (this middleware). The one MD5 the store computes of a body makes R2 refuse it
 * when damaged on the way (BadDigest, sent again) and, as the ETag R2 answers, proves what it
 * stored; a SigV4 payload hash would only repeat the first proof with a second pass over every
 * byte (the SDK's SHA-256).
 */
function unsignedPayload(cmd) {
    cmd.middlewareStack.add((next) => async (args) => {
        const req = args.request;
        if (req.headers)
            req.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
    }, { step: 'build', name: 'comfyumeUnsignedPayload' });
    return cmd;
}
class R2Store {
    client;
    bucket;
    logger;
    retryOpts;
    constructor(opts) {
        this.client = opts.client;
        this.bucket = opts.bucket;
        this.logger = opts.logger ?? silentLogger;
        this.retryOpts = { ...R2_RETRY, retryable: isRetryableS3Error, ...opts.retry };
    }
    /**
     * One R2 request under the policy: retried while the failure is transient, then thrown as an
     * OpsError naming the request. A missing key (404) is thrown as it came: callers ask for it.
     */
    async request(what, fn) {
        try {
            return await retry(fn, {
                ...this.retryOpts,
                onRetry: ({ err, attempt, delayMs }) => this.logger.warn(`R2 ${what}: attempt ${attempt} failed (${errorMessage(err)}); retrying in ${delayMs} ms`),
            });
        }
        catch (err) {
            if (isNotFound(err))
                throw err;
            throw describeS3Failure(what, err);
        }
    }
    /** Every object under a prefix, ListObjectsV2 pages of 1,000. */
    async list(prefix) {
        const objects = [];
        let token;
        do {
            const page = await this.request(`ListObjectsV2 ${this.bucket}/${prefix}`, () => this.client.send(new dist_cjs/* ListObjectsV2Command */.u6x({
                Bucket: this.bucket,
                Prefix: prefix,
                MaxKeys: R2_LIST_PAGE,
                ContinuationToken: token,
            })));
            for (const o of page.Contents ?? [])
                if (o.Key)
                    objects.push({ key: o.Key, size: o.Size ?? 0 });
            token = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (token);
        return objects;
    }
    async listKeys(prefix) {
        return (await this.list(prefix)).map((o) => o.key);
    }
    /** The object's size, ETag and metadata; undefined when there is none. */
    async head(key) {
        try {
            const out = await this.request(`HeadObject ${key}`, () => this.client.send(new dist_cjs/* HeadObjectCommand */.l81({ Bucket: this.bucket, Key: key })));
            return {
                size: out.ContentLength ?? 0,
                etag: unquote(out.ETag),
                metadata: out.Metadata ?? {},
            };
        }
        catch (err) {
            if (isNotFound(err))
                return undefined;
            throw err;
        }
    }
    /** A small object as text; undefined when there is none. */
    async getText(key) {
        try {
            return await this.request(`GetObject ${key}`, async () => {
                const res = await this.client.send(new dist_cjs/* GetObjectCommand */.jLs({ Bucket: this.bucket, Key: key }));
                return (await res.Body?.transformToString('utf8')) ?? '';
            });
        }
        catch (err) {
            if (isNotFound(err))
                return undefined;
            throw err;
        }
    }
    /**
     * One GetObject from `offset` on, not retried: the caller resumes from what it has. Returns the
     * body, the first byte it holds (0 when the server ignored the range) and the metadata.
     */
    async openRead(key, offset = 0) {
        const out = await this.client.send(new dist_cjs/* GetObjectCommand */.jLs({
            Bucket: this.bucket,
            Key: key,
            ...(offset > 0 ? { Range: `bytes=${offset}-` } : {}),
        }));
        const range = /^bytes (\d+)-/.exec(out.ContentRange ?? '');
        return {
            body: out.Body,
            start: range ? Number(range[1]) : 0,
            metadata: out.Metadata ?? {},
        };
    }
    /**
     * Streams an object through sha256 (read-back verification; R2 egress is free), and into
     * `file` when given (a retried download starts the file again).
     */
    async sha256Of(key, file) {
        return this.request(`${file ? 'download' : 'read-back'} of ${key}`, async () => {
            const res = await this.client.send(new dist_cjs/* GetObjectCommand */.jLs({ Bucket: this.bucket, Key: key }));
            const out = file ? await (0,promises_.open)(file, 'w', 0o600) : undefined;
            try {
                const hash = (0,external_node_crypto_.createHash)('sha256');
                let bytes = 0;
                for await (const chunk of res.Body) {
                    hash.update(chunk);
                    bytes += chunk.length;
                    if (out)
                        await out.write(chunk);
                }
                return { sha256: hash.digest('hex'), bytes };
            }
            finally {
                await out?.close();
            }
        });
    }
    /**
     * Writes one object from memory; returns its ETag, which R2 must have answered as the MD5 of
     * the bytes sent (else it stored something else, and this throws). The caller hashes the body
     * if it needs a sha256: the model vault already did as it read the file.
     */
    async put(key, body, opts) {
        const data = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
        const md5 = md5Hex(data);
        const out = await this.request(`PutObject ${key}`, () => {
            const cmd = new dist_cjs/* PutObjectCommand */.wKZ({
                Bucket: this.bucket,
                Key: key,
                Body: data,
                ContentLength: data.length,
                ContentType: opts.contentType,
                ContentMD5: Buffer.from(md5, 'hex').toString('base64'),
                ...(opts.metadata ? { Metadata: opts.metadata } : {}),
                ...(opts.ifAbsent ? { IfNoneMatch: '*' } : {}),
            });
            return this.client.send(unsignedPayload(cmd));
        });
        const etag = checkEtag(`PutObject ${key}`, out.ETag, md5, `the MD5 of the ${data.length} bytes sent`);
        return { etag };
    }
    /** Rewrites an object's metadata in place (server-side copy; R2 copies at most 5 GiB). */
    async replaceMetadata(key, contentType, metadata) {
        const source = `${this.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
        await this.request(`CopyObject ${key} (metadata)`, () => this.client.send(new dist_cjs/* CopyObjectCommand */.s9Z({
            Bucket: this.bucket,
            Key: key,
            CopySource: source,
            MetadataDirective: 'REPLACE',
            ContentType: contentType,
            Metadata: metadata,
        })));
    }
    async delete(key) {
        await this.request(`DeleteObject ${key}`, () => this.client.send(new dist_cjs/* DeleteObjectCommand */.k4j({ Bucket: this.bucket, Key: key })));
    }
    /** Deletes a key; a 403 (a lock rule, a token without delete rights) is returned, not thrown. */
    async tryDelete(key) {
        try {
            await this.delete(key);
            return undefined;
        }
        catch (err) {
            const cause = fieldsOf(err).cause ?? err;
            if (statusOf(cause) !== 403)
                throw err;
            return { key, code: nameOf(cause) || 'AccessDenied' };
        }
    }
    async createUpload(key, contentType, metadata) {
        const out = await this.request(`CreateMultipartUpload ${key}`, () => this.client.send(new dist_cjs/* CreateMultipartUploadCommand */.nG4({
            Bucket: this.bucket,
            Key: key,
            ContentType: contentType,
            ...(metadata ? { Metadata: metadata } : {}),
        })));
        if (!out.UploadId)
            throw new errors_OpsError(`R2 gave no UploadId for ${key}`);
        return { key, uploadId: out.UploadId };
    }
    /**
     * Sends one part; returns its ETag as R2 gave it (quoted). Its Content-MD5 makes R2 refuse a part
     * damaged on the way, and it is sent again; the ETag R2 answers must also be the MD5 of the bytes
     * sent, which proves that these bytes are the part R2 holds. Else the upload fails, naming the
     * part.
     */
    async uploadPart({ key, uploadId }, partNumber, body) {
        const md5 = md5Hex(body);
        const out = await this.request(`UploadPart ${key} part ${partNumber}`, () => {
            const cmd = new dist_cjs/* UploadPartCommand */.iVK({
                Bucket: this.bucket,
                Key: key,
                UploadId: uploadId,
                PartNumber: partNumber,
                Body: body,
                ContentLength: body.length,
                ContentMD5: Buffer.from(md5, 'hex').toString('base64'),
            });
            return this.client.send(unsignedPayload(cmd));
        });
        checkEtag(`UploadPart ${key} part ${partNumber}`, out.ETag, md5, `the MD5 of the ${body.length} bytes sent`);
        return `"${md5}"`;
    }
    /**
     * Completes an upload, surviving a lost reply. When R2 completed it but the reply never arrived
     * (a cut connection, a request timeout on a big object), the next attempt, ours or the SDK's,
     * finds no upload: 404 NoSuchUpload. The object is then already there, and it is accepted only
     * when it carries this upload's multipart ETag (the MD5 of the parts' binary MD5s, then
     * "-<part count>"), which only these parts produce. The ETag R2 answers must be that one too:
     * it proves R2 assembled exactly these parts, in this order, none missing. Returns it.
     */
    async completeUpload({ key, uploadId }, parts) {
        const expected = multipartEtag(parts.map((p) => p.ETag));
        const found = await this.request(`CompleteMultipartUpload ${key}`, async () => {
            try {
                const out = await this.client.send(new dist_cjs/* CompleteMultipartUploadCommand */.Gym({
                    Bucket: this.bucket,
                    Key: key,
                    UploadId: uploadId,
                    MultipartUpload: { Parts: parts },
                }));
                return out.ETag;
            }
            catch (err) {
                if (nameOf(err) !== 'NoSuchUpload')
                    throw err;
                // No object: the upload really is gone. Any other HEAD failure is thrown as it is, so a
                // retryable one (5xx, a reset) has the whole attempt made again.
                const head = await this.client
                    .send(new dist_cjs/* HeadObjectCommand */.l81({ Bucket: this.bucket, Key: key }))
                    .catch((headErr) => {
                    if (nameOf(headErr) === 'NotFound')
                        return undefined;
                    throw headErr;
                });
                if (unquote(head?.ETag) !== expected)
                    throw err;
                this.logger.warn(`R2 ${key}: an earlier CompleteMultipartUpload had already stored it (its reply was lost); the object has this upload's multipart ETag`);
                return head?.ETag;
            }
        });
        return checkEtag(`CompleteMultipartUpload ${key}`, found, expected, `the multipart ETag of the ${parts.length} part(s) sent`);
    }
    /**
     * One HeadObject (Class B): the object under `key` must now be the one just written, with its
     * size and ETag; else this throws naming the key, what was expected and what R2 holds.
     */
    async confirmStored(key, expected) {
        const head = await this.head(key);
        if (head?.size === expected.size && head.etag === expected.etag)
            return;
        const found = head ? `${head.size} bytes, ETag ${head.etag}` : 'no object';
        throw new errors_OpsError(`R2 HeadObject ${key} after upload: ${found}, expected ${expected.size} bytes, ETag ${expected.etag}`);
    }
    /**
     * Best-effort abort (retried): false when it failed, which is reported as a warning, never
     * thrown over the error that made the caller abort. An upload already gone (completed, with an
     * ETag that did not prove it) has nothing left to abort.
     */
    async abortUpload({ key, uploadId }) {
        try {
            await this.request(`AbortMultipartUpload ${key}`, () => this.client.send(new dist_cjs/* AbortMultipartUploadCommand */.tfP({ Bucket: this.bucket, Key: key, UploadId: uploadId })));
            return true;
        }
        catch (err) {
            if (nameOf(err) === 'NoSuchUpload')
                return true;
            this.logger.warn(`could not abort the multipart upload of ${key} (${errorMessage(err)}); it will be cleaned up later`);
            return false;
        }
    }
    /** The parts an upload already holds, by part number. */
    async listParts({ key, uploadId }) {
        const out = new Map();
        let marker;
        for (;;) {
            const page = await this.request(`ListParts ${key}`, () => this.client.send(new dist_cjs/* ListPartsCommand */.m9c({
                Bucket: this.bucket,
                Key: key,
                UploadId: uploadId,
                PartNumberMarker: marker,
            })));
            for (const p of page.Parts ?? [])
                if (p.PartNumber)
                    out.set(p.PartNumber, { size: p.Size ?? 0, etag: unquote(p.ETag) });
            if (!page.IsTruncated || !page.NextPartNumberMarker)
                return out;
            marker = String(page.NextPartNumberMarker);
        }
    }
    /** Multipart uploads under a prefix that were started and never completed or aborted. */
    async listUploads(prefix) {
        const out = [];
        let keyMarker;
        let uploadIdMarker;
        for (;;) {
            const page = await this.request(`ListMultipartUploads ${this.bucket}/${prefix}`, () => this.client.send(new dist_cjs/* ListMultipartUploadsCommand */.mo2({
                Bucket: this.bucket,
                Prefix: prefix,
                KeyMarker: keyMarker,
                UploadIdMarker: uploadIdMarker,
            })));
            for (const u of page.Uploads ?? [])
                if (u.Key && u.UploadId)
                    out.push({ key: u.Key, uploadId: u.UploadId, initiated: u.Initiated ?? new Date(0) });
            if (!page.IsTruncated)
                return out;
            keyMarker = page.NextKeyMarker;
            uploadIdMarker = page.NextUploadIdMarker;
        }
    }
}

// EXTERNAL MODULE: ./node_modules/zod/v4/classic/iso.js
var iso = __webpack_require__(4377);
;// CONCATENATED MODULE: ./src/models/bucket.ts
// The vault side: one listing of the prefix (ListObjectsV2 pages of 1,000, never a HEAD per
// file), the models-manifest.json written last by every push, and pending multipart uploads.





const MANIFEST_NAME = 'models-manifest.json';
/** r2://bucket/prefix, for messages. */
const vaultUrl = (v, rel = '') => `r2://${v.store.bucket}/${v.prefix}${rel}`;
const vaultKey = (v, rel) => `${v.prefix}${rel}`;
const normalizePrefix = (prefix) => {
    const p = prefix.replace(/^\/+|\/+$/g, '');
    return p ? `${p}/` : '';
};
/**
 * Every object under the prefix; the manifest itself is returned apart. The listing is untrusted:
 * a key that is not a safe model path under the prefix fails the whole listing (nothing has been
 * written yet), so no caller ever joins one onto a directory.
 */
async function listVault(v) {
    const objects = [];
    const refused = [];
    let hasManifest = false;
    for (const o of await v.store.list(v.prefix)) {
        const { key, size } = o;
        const rel = key.startsWith(v.prefix) ? key.slice(v.prefix.length) : undefined;
        if (rel === MANIFEST_NAME) {
            hasManifest = true;
            continue;
        }
        // A console's empty "folder" object (`checkpoints/`): nothing to sync.
        if (rel === '' || (rel?.endsWith('/') && size === 0 && !unsafePathReason(rel.slice(0, -1))))
            continue;
        const problem = rel === undefined
            ? `it is not under the prefix ${JSON.stringify(v.prefix)}`
            : (modelPathProblem(rel) ??
                (Number.isSafeInteger(size) && size >= 0 ? undefined : `its size ${size} is invalid`));
        if (problem)
            refused.push(`${JSON.stringify(key)} (${problem})`);
        else if (rel !== undefined)
            objects.push({ path: rel, size });
    }
    refuseUnsafePaths(`bucket ${v.store.bucket} lists ${refused.length} key(s) that are not safe model paths under ${JSON.stringify(v.prefix)}`, refused, 'remove or rename them in the bucket');
    return { objects, hasManifest };
}
const modelPath = schemas/* string */.YjP().superRefine((value, ctx) => {
    const problem = modelPathProblem(value);
    if (problem)
        ctx.addIssue({ code: 'custom', message: `path ${JSON.stringify(value)}: ${problem}` });
});
/** models-manifest.json, as every push writes it; anything else in the file is refused. */
const manifestSchema = schemas/* strictObject */.rej({
    version: schemas/* literal */.euz(1),
    updated: iso/* datetime */.w$(),
    files: schemas/* array */.YOg(schemas/* strictObject */.rej({
        path: modelPath,
        size: schemas/* number */.aig().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
        sha256: schemas/* string */.YjP().regex(/^[0-9a-f]{64}$/, 'sha256 must be 64 lowercase hex characters'),
    }))
        .superRefine((files, ctx) => {
        const seen = new Set();
        files.forEach((f, i) => {
            if (seen.has(f.path))
                ctx.addIssue({
                    code: 'custom',
                    path: [i, 'path'],
                    message: `duplicate path ${JSON.stringify(f.path)}`,
                });
            seen.add(f.path);
        });
    }),
});
async function readManifest(v) {
    const key = vaultKey(v, MANIFEST_NAME);
    const text = (await v.store.getText(key)) ?? '';
    return parseManifestText(text, `${key} in bucket ${v.store.bucket}`);
}
/** A models-manifest.json's text (from the bucket or a downloaded copy); `where` names it in errors. */
function parseManifestText(text, where) {
    const invalid = (why) => new errors_OpsError(`${where} is not a valid models manifest: ${why}`);
    let data;
    try {
        data = JSON.parse(text);
    }
    catch (err) {
        throw invalid(errorMessage(err));
    }
    const parsed = manifestSchema.safeParse(data);
    if (!parsed.success) {
        const issues = schemaProblems(parsed.error);
        throw invalid(issues.slice(0, 10).join('; ') + (issues.length > 10 ? '; ...' : ''));
    }
    return new Map(parsed.data.files.map((f) => [f.path, { size: f.size, sha256: f.sha256 }]));
}
async function writeManifest(v, files) {
    const key = vaultKey(v, MANIFEST_NAME);
    const body = {
        version: 1,
        updated: new Date().toISOString(),
        files: [...files].sort(([a], [b]) => (a < b ? -1 : 1)).map(([path, f]) => ({ path, ...f })),
    };
    const text = `${JSON.stringify(body, null, 2)}\n`;
    await v.store.put(key, text, { contentType: 'application/json' });
    return key;
}

// EXTERNAL MODULE: ./node_modules/picomatch/index.js
var picomatch = __webpack_require__(4006);
var picomatch_default = /*#__PURE__*/__webpack_require__.n(picomatch);
;// CONCATENATED MODULE: ./src/models/glob.ts
// Include patterns for model files, matched by picomatch (brace sets, classes, extglobs: what
// "glob" promises). A pattern without a slash matches the file name at any depth, as before
// (`*.safetensors` = `**/*.safetensors`); dotfiles match too (a model may be named .x).

function matcher(patterns) {
    const tests = patterns.map((p) => picomatch_default()(p.replace(/^\.\//, ''), { basename: !p.includes('/'), dot: true }));
    return (path) => tests.some((test) => test(path));
}

;// CONCATENATED MODULE: ./src/models/progress.ts
// Progress lines: one at each file's start and end (logged by the caller) and, while transfers
// run, one per active file every interval (10 s by default): bytes, MiB/s and ETA.

class Progress {
    logger;
    intervalMs;
    now;
    active = new Set();
    timer;
    constructor(logger, intervalMs = 10_000, now = Date.now) {
        this.logger = logger;
        this.intervalMs = intervalMs;
        this.now = now;
    }
    /** Tracks one transfer; call the returned `add` with each chunk's size and `end` when done. */
    begin(path, size) {
        const entry = { path, size, done: 0, started: this.now() };
        this.active.add(entry);
        this.timer ??= setInterval(() => this.report(), this.intervalMs).unref();
        return {
            add: (n) => (entry.done += n),
            end: () => {
                this.active.delete(entry);
                if (this.active.size === 0 && this.timer) {
                    clearInterval(this.timer);
                    this.timer = undefined;
                }
                return this.now() - entry.started;
            },
        };
    }
    report() {
        for (const a of this.active)
            this.logger.info(progressLine(a.path, a.done, a.size, this.now() - a.started));
    }
}
function progressLine(path, done, size, elapsedMs) {
    const pct = size > 0 ? Math.floor((done / size) * 100) : 100;
    const rate = elapsedMs > 0 ? done / (elapsedMs / 1000) : 0;
    const eta = rate > 0 ? formatDuration(((size - done) / rate) * 1000) : '?';
    return `${path}: ${formatBytes(done)} / ${formatBytes(size)} (${pct}%), ${formatRate(done, elapsedMs)}, ETA ${eta}`;
}

// EXTERNAL MODULE: external "node:v8"
var external_node_v8_ = __webpack_require__(8877);
// EXTERNAL MODULE: external "node:vm"
var external_node_vm_ = __webpack_require__(714);
;// CONCATENATED MODULE: ./src/lib/young-gc.ts
// Stream chunks freed as they die. Each chunk of a backup's stream is a Buffer of its own (the
// socket's read, the ssh2 packet, the age chunk), dead as soon as the next stage copied it, but
// its memory goes back to malloc only when a scavenge finds its JS object dead. V8 scavenges for
// them only once 32 MiB of young Buffers piled up (twice its default semi-space, whatever the heap
// flags say); the young JS objects of a stream never fill the semi-space first. So each backup
// carried a pile of up to ~32 MiB of dead chunks in malloc's heap, and that heap's high-water mark
// (plus the holes the pile leaves) set the peak RSS. A minor GC every few MiB streamed keeps the
// pile small; a scavenge of a young generation holding few live objects takes well under 1 ms.
//
// Parts sent free their garbage late too: each part's request objects (SDK middleware, headers,
// promises) live as long as the request, survive a few scavenges and are promoted, and die in the
// old generation, which V8 collects only once it has grown to its limit. Over a long transfer the
// old space and the malloc'ed memory it holds crept up (+10 MiB over a 4 GiB push, a spike at the
// end). A full GC every FULL_GC_EVERY bytes of parts keeps them flat; with 15-20 MB live it takes
// a few ms, about 1 % of the time of moving 256 MiB.


/** Bytes streamed between two minor GCs; the dead chunks stay about 3× this (three per byte). */
const YOUNG_GC_EVERY = (/* unused pure expression or super */ null && (2 * 2 ** 20));
/** Bytes of parts sent between two full GCs. */
const FULL_GC_EVERY = 256 * 2 ** 20;
let gc;
let streamed = 0;
let sent = 0;
/** The engine's gc(): global when node runs with --expose-gc, else taken from a fresh context. */
function engineGc() {
    if (gc !== undefined)
        return gc;
    gc = null;
    try {
        const global = Reflect.get(globalThis, 'gc');
        if (typeof global === 'function')
            gc = global;
        else {
            (0,external_node_v8_.setFlagsFromString)('--expose-gc');
            gc = (0,external_node_vm_.runInNewContext)('gc');
        }
    }
    catch {
        // Without it the engine's own trigger still frees the chunks, only later.
    }
    return gc;
}
/** Bytes that passed through a stream; a minor GC after every YOUNG_GC_EVERY of all streams. */
function streamedBytes(n) {
    streamed += n;
    if (streamed < YOUNG_GC_EVERY)
        return;
    streamed = 0;
    const fn = engineGc();
    if (typeof fn === 'function')
        Reflect.apply(fn, undefined, [{ type: 'minor' }]);
}
/** Bytes of a part stored in R2; a full GC after every FULL_GC_EVERY of all uploads. */
function partBytesSent(n) {
    sent += n;
    if (sent < FULL_GC_EVERY)
        return;
    sent = 0;
    const fn = engineGc();
    if (typeof fn === 'function')
        Reflect.apply(fn, undefined, []);
}

;// CONCATENATED MODULE: ./src/lib/r2-multipart.ts
// The one multipart uploader: parts read in order from a source into pooled buffers, sent a few
// at a time through the R2 store (each part retried there on its own), and a part R2 already holds
// with the same size and MD5 (an interrupted upload being resumed) not sent again. The backup's
// archive streams and the model vault's files both send their parts through sendParts.




const r2_multipart_md5Hex = (b) => (0,external_node_crypto_.createHash)('md5').update(b).digest('hex');
/**
 * Sends every part of the source. On the first failure no further part starts, the ones in
 * flight finish, their buffers go back to the pool, and the failure is thrown (the upload is left
 * for the caller to abort or, for a resumable one, to resume).
 */
async function sendParts(o) {
    const parts = [];
    const inFlight = new Set();
    let failure;
    let reused = 0;
    let bytesSent = 0;
    let first = o.first;
    const read = async () => {
        if (first) {
            const taken = first;
            first = undefined;
            return taken;
        }
        const buf = o.pool.get(o.partSize);
        try {
            return { buf, length: await o.source.next(buf) };
        }
        catch (err) {
            o.pool.put(buf);
            throw err;
        }
    };
    try {
        for (let n = 1; failure === undefined; n++) {
            let release = o.readAhead ? undefined : await o.slots.acquire();
            let part;
            try {
                part = await read();
            }
            catch (err) {
                release?.();
                throw err;
            }
            const { buf, length } = part;
            if (length === 0) {
                o.pool.put(buf);
                release?.();
                break;
            }
            const done = () => {
                o.pool.put(buf);
                release?.();
            };
            if (n > R2_MAX_PARTS) {
                done();
                throw new errors_OpsError(`${o.upload.key} exceeds ${R2_MAX_PARTS} parts of ${o.partSize} bytes (R2's limit); a larger part size is needed`);
            }
            const body = buf.subarray(0, length);
            const have = o.stored?.get(n);
            if (have && have.size === length && have.etag === r2_multipart_md5Hex(body)) {
                parts.push({ PartNumber: n, ETag: `"${have.etag}"` });
                reused++;
                o.onPart?.(length, true);
                done();
                continue;
            }
            release ??= await o.slots.acquire();
            // A part that failed while this one waited for its slot: send nothing more.
            if (failure) {
                done();
                break;
            }
            const partNumber = n;
            const p = o.store
                .uploadPart(o.upload, partNumber, body)
                .then((etag) => {
                parts.push({ PartNumber: partNumber, ETag: etag });
                bytesSent += length;
                o.onPart?.(length, false);
                partBytesSent(length);
            })
                .catch((err) => {
                failure ??= { err };
            })
                .finally(() => {
                done();
                inFlight.delete(p);
            });
            inFlight.add(p);
            if (length < o.partSize)
                break;
        }
    }
    finally {
        await Promise.allSettled(inFlight);
    }
    if (failure)
        throw failure.err;
    return { parts: parts.sort((a, b) => a.PartNumber - b.PartNumber), reused, bytesSent };
}

;// CONCATENATED MODULE: ./src/models/push.ts
// Uploads one model file to the vault: sha256 over every byte as it is read, R2-correct multipart
// through the one uploader (src/lib/r2-multipart.ts: equal parts but the last, at most 10,000,
// in flight in parallel, pooled buffers), and resume of an interrupted upload from the parts R2
// already holds (checked by MD5, not trusted by number). Parts are sent with UNSIGNED-PAYLOAD so
// the SDK does not hash every byte a second time for the signature.




const SHA256_META = 'sha256';
const CONTENT_TYPE = 'application/octet-stream';
async function pushFile(o) {
    const input = new HashingReader(o.reader, o.key);
    if (o.size <= o.partSize)
        return putWhole(o, input);
    const partCount = Math.ceil(o.size / o.partSize);
    if (partCount > R2_MAX_PARTS)
        throw new errors_OpsError(`${o.key}: ${partCount} parts of ${o.partSize} bytes exceed R2's ${R2_MAX_PARTS}`);
    const { upload, stored, resumed } = await openUpload(o, partCount);
    // A slot is taken before each read: the run's slots bound the buffers of every file at once.
    // The parts stay in R2 after a failure: the next run resumes from them (stale uploads are
    // aborted after a day).
    const sent = await sendParts({
        store: o.vault.store,
        upload,
        partSize: o.partSize,
        source: new FileParts(input, o.size, o.partSize),
        pool: o.pool,
        slots: o.slots,
        readAhead: false,
        stored,
        onPart: (bytes) => o.onBytes(bytes),
    });
    const sha256 = input.digest();
    if (o.knownSha256 && o.knownSha256 !== sha256) {
        await o.vault.store.abortUpload(upload);
        throw new errors_OpsError(`${o.key}: the file changed while it was uploaded (sha256 ${sha256}, hashed before as ${o.knownSha256}); nothing was stored, run again`);
    }
    await o.vault.store.completeUpload(upload, sent.parts);
    // A resumed upload was created by an earlier run, which may not have known the sha256.
    if (!o.knownSha256 || resumed)
        await setSha256Metadata(o, sha256);
    return { sha256, parts: partCount, partsReused: sent.reused, bytesSent: sent.bytesSent };
}
/** Reads exact lengths of the file and hashes every byte as it goes by, in file order. */
class HashingReader {
    reader;
    key;
    sha = (0,external_node_crypto_.createHash)('sha256');
    constructor(reader, key) {
        this.reader = reader;
        this.key = key;
    }
    async readExactly(buf, length) {
        const n = await this.reader.read(buf, length);
        if (n !== length)
            throw new errors_OpsError(`${this.key}: the file shrank while it was read (got ${n} of ${length} bytes); run again`);
        this.sha.update(buf.subarray(0, length));
    }
    /** The sha256 of everything read; once every byte went through. */
    digest() {
        return this.sha.digest('hex');
    }
}
/** A file of known size as parts: exact lengths, read and hashed in order. */
class FileParts {
    input;
    size;
    partSize;
    offset = 0;
    constructor(input, size, partSize) {
        this.input = input;
        this.size = size;
        this.partSize = partSize;
    }
    async next(buf) {
        const length = Math.min(this.partSize, this.size - this.offset);
        if (length <= 0)
            return 0;
        await this.input.readExactly(buf, length);
        this.offset += length;
        return length;
    }
}
/** A file of one part: one PUT, its sha256 already in the metadata. */
async function putWhole(o, input) {
    const buf = o.pool.get(o.partSize);
    try {
        await input.readExactly(buf, o.size);
        const body = buf.subarray(0, o.size);
        const sha256 = input.digest();
        const release = await o.slots.acquire();
        try {
            await o.vault.store.put(o.key, body, {
                contentType: CONTENT_TYPE,
                metadata: { [SHA256_META]: sha256 },
            });
        }
        finally {
            release();
        }
        o.onBytes(o.size);
        return { sha256, parts: 1, partsReused: 0, bytesSent: o.size };
    }
    finally {
        o.pool.put(buf);
    }
}
/**
 * The interrupted upload when its parts have this run's part size (the last one may be
 * shorter); otherwise it is aborted and a new upload is created.
 */
async function openUpload(o, partCount) {
    const { store } = o.vault;
    if (o.resumeUploadId) {
        const interrupted = { key: o.key, uploadId: o.resumeUploadId };
        const stored = await store.listParts(interrupted);
        if (![...stored].some(([n, p]) => n < partCount && p.size !== o.partSize)) {
            if (stored.size > 0) {
                o.logger.info(`${o.key}: resuming an interrupted upload, ${stored.size} of ${partCount} parts already in R2`);
            }
            return { upload: interrupted, stored, resumed: true };
        }
        o.logger.info(`${o.key}: the interrupted upload used another part size; starting over`);
        await store.abortUpload(interrupted);
    }
    const upload = await store.createUpload(o.key, CONTENT_TYPE, o.knownSha256 ? { [SHA256_META]: o.knownSha256 } : undefined);
    return { upload, stored: new Map(), resumed: false };
}
/**
 * The sha256 is only known once every byte went through, after the multipart upload was created:
 * a copy onto itself writes it into the metadata (server-side, no bytes re-sent). R2's CopyObject
 * stops at 5 GiB, so sync hashes bigger files before their upload (knownSha256) instead.
 */
async function setSha256Metadata(o, sha256) {
    if (o.size > R2_MAX_PART) {
        o.logger.debug(`${o.key}: resumed upload over 5 GiB, sha256 kept in the manifest only`);
        return;
    }
    await o.vault.store.replaceMetadata(o.key, CONTENT_TYPE, { [SHA256_META]: sha256 });
}

;// CONCATENATED MODULE: ./src/models/pull.ts
// Downloads one model to `<path>.partial` beside its final place (a local directory, or the GPU
// host over SSH), resuming with an HTTP Range from what an earlier run left, and renaming it into
// place only when the size and sha256 of the bytes where they landed agree. A bad download is
// deleted, never renamed.







/** Passes a body through, reporting each chunk (errors and backpressure go through unchanged). */
async function* counted(stream, onBytes) {
    for await (const chunk of stream) {
        onBytes(chunk.length);
        yield chunk;
    }
}
/** The bytes come through this process: a body from `source`, streamed onto the partial. */
function streamFill(partial, source, onBytes) {
    return async (offset) => {
        const body = await source(offset);
        // A server that ignored the Range sends the whole file: start over from its first byte.
        await partial.write(external_node_stream_.Readable.from(counted(body.stream, onBytes)), body.start !== offset);
        return body.sha256 ? { sha256: body.sha256 } : {};
    };
}
async function pullFile(o) {
    const partial = o.partial;
    let resumedFrom = -1;
    let stated;
    // Each attempt appends from what the partial holds: a reset costs only what was in flight.
    const attempt = async () => {
        let have = await partial.size();
        if (o.size !== undefined && have > o.size) {
            await partial.discard();
            have = 0;
        }
        if (resumedFrom < 0)
            resumedFrom = have;
        if (o.size !== undefined && have === o.size)
            return;
        stated ??= (await o.fill(have)).sha256;
    };
    // R2's policy for the vault and the URL alike: each attempt resumes where the last one stopped.
    await retry(attempt, {
        ...R2_RETRY,
        retryable: (err) => err instanceof TransientHostGetError ||
            (!(err instanceof errors_OpsError) &&
                (isRetryableS3Error(err) ||
                    /premature|aborted|terminated|socket|ECONNRESET/i.test(errorMessage(err)))),
        onRetry: ({ err, attempt: n }) => o.logger.warn(`${o.path}: download attempt ${n} failed (${errorMessage(err)}); resuming`),
    });
    // Measured and hashed where the bytes landed: what is checked is what gets renamed.
    const got = await partial.digest();
    const expected = o.expectedSha256 ?? stated;
    const refuse = async (why) => {
        await partial.discard();
        throw new errors_OpsError(`${o.path} from ${o.origin} refused: ${why}; nothing was put in place (the partial file was deleted)`);
    };
    if (o.size !== undefined && got.size !== o.size)
        await refuse(`${got.size} bytes instead of ${o.size}`);
    if (expected && expected !== got.sha256)
        await refuse(`sha256 ${got.sha256} does not match the expected ${expected}`);
    await partial.commit();
    return {
        sha256: got.sha256,
        size: got.size,
        resumedFrom: Math.max(0, resumedFrom),
        verified: expected !== undefined,
    };
}
/** Reads an object from the vault from `offset` on (HTTP Range). */
function vaultSource(vault, rel) {
    const key = vaultKey(vault, rel);
    return async (offset) => {
        const { body, start, metadata } = await vault.store.openRead(key, offset);
        const sha256 = metadata[SHA256_META];
        return { stream: body, start, ...(sha256 ? { sha256 } : {}) };
    };
}
/**
 * pull-via host: the GPU host GETs the object from the vault itself, on a URL signed anew for
 * each attempt (an hour's validity never runs out under a retry), from `offset` on.
 */
function hostVaultFill(vault, rel, partial, o) {
    const key = vaultKey(vault, rel);
    let asked = !o.wantStatedSha256;
    return async (offset) => {
        let sha256;
        if (!asked) {
            asked = true;
            sha256 = (await vault.store.head(key))?.metadata[SHA256_META];
        }
        const url = await presignGet(vault.store, key, o.mask);
        o.onGet();
        o.onBytes(await partial.fetch({ url, stallSeconds: o.stallSeconds }, offset, rel));
        return sha256 ? { sha256 } : {};
    };
}
/** Reads a file from an http(s) URL (the HuggingFace fallback), with a token when given. */
function urlSource(url, token, fetchImpl = fetch) {
    return async (offset) => {
        const headers = {};
        if (offset > 0)
            headers.range = `bytes=${offset}-`;
        if (token)
            headers.authorization = `Bearer ${token}`;
        // No answer at all: say from where and why (undici's "fetch failed" keeps both in its cause);
        // a plain Error keeps it retryable when the cause is transient.
        const res = await fetchImpl(url, { headers, redirect: 'follow' }).catch((err) => {
            throw new Error(`GET ${url} got no answer: ${networkFailureReason(err)}`, { cause: err });
        });
        if (!res.ok || !res.body) {
            throw new errors_OpsError(`GET ${url} answered HTTP ${res.status}${res.status === 401 || res.status === 403 ? ' (a gated model needs hf-token)' : ''}`);
        }
        const range = res.status === 206 ? /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '') : null;
        return {
            stream: external_node_stream_.Readable.fromWeb(res.body),
            start: range ? Number(range[1]) : 0,
        };
    };
}

;// CONCATENATED MODULE: ./src/models/request-counts.ts

const CLASS_B = new Set(['GetObject', 'HeadObject', 'HeadBucket']);
const FREE = new Set(['DeleteObject', 'DeleteObjects', 'AbortMultipartUpload']);
function countRequests(client) {
    const byOperation = {};
    const name = `comfyumeRequestCounter${Math.random().toString(36).slice(2)}`;
    client.middlewareStack.add((next, context) => async (args) => {
        const op = String(context.commandName ?? 'Unknown').replace(/Command$/, '');
        byOperation[op] = (byOperation[op] ?? 0) + 1;
        return next(args);
    }, 
    // After the retry middleware (finalizeRequest): one count per attempt on the wire.
    { step: 'deserialize', name });
    return {
        counts: () => {
            let classA = 0;
            let classB = 0;
            let free = 0;
            for (const [op, n] of Object.entries(byOperation)) {
                if (CLASS_B.has(op))
                    classB += n;
                else if (FREE.has(op))
                    free += n;
                else
                    classA += n;
            }
            return {
                classA,
                classB,
                free,
                byOperation: { ...byOperation },
                cost: r2RequestCost(classA, classB),
            };
        },
        add: (op) => {
            byOperation[op] = (byOperation[op] ?? 0) + 1;
        },
        detach: () => {
            client.middlewareStack.remove(name);
        },
    };
}

;// CONCATENATED MODULE: ./src/models/sync.ts














const DAY = 86_400_000;
async function syncModels(opts, logger) {
    const vault = {
        store: new R2Store({ client: opts.client, bucket: opts.bucket, logger }),
        prefix: opts.prefix,
    };
    const requests = countRequests(opts.client);
    try {
        const report = opts.direction === 'push'
            ? await push(opts, vault, logger)
            : await pull(opts, vault, logger, requests.add);
        return { ...report, requests: requests.counts() };
    }
    finally {
        requests.detach();
    }
}
function emptyReport(direction, compare, vault) {
    return {
        direction,
        compare,
        uploaded: 0,
        downloaded: 0,
        skipped: 0,
        deleted: 0,
        bytes: 0,
        manifestKey: vaultKey(vault, MANIFEST_NAME),
        files: [],
        staleAborted: 0,
    };
}
/** Compare as asked, else by sha256 when the vault has a manifest to compare against. */
function compareFor(opts, hasManifest) {
    return opts.compare ?? (hasManifest ? 'sha256' : 'size');
}
function included(files, include, logger, where) {
    const match = matcher(include);
    const out = files.filter((f) => match(f.path));
    if (out.length === 0)
        logger.warn(`include ${JSON.stringify(include.join(', '))} matched no file in ${where}`);
    return out;
}
// ---- push: host \u2192 vault ---------------------------------------------------------------------
async function push(opts, vault, logger) {
    const { local, listing } = await pushInventory(opts, vault, logger);
    const compare = compareFor(opts, listing.hasManifest);
    const run = { opts, vault, logger, report: emptyReport('push', compare, vault) };
    const remote = new Map(listing.objects.map((o) => [o.path, o]));
    // Read once, before any hashing: its sha256 spares a HEAD per file and it is rewritten last.
    const manifest = compare === 'sha256' && listing.hasManifest ? await readManifest(vault) : undefined;
    const { toUpload, localSha } = await decidePush(run, local, remote, manifest);
    if (!opts.dryRun)
        await prehashLarge(run, toUpload, localSha);
    const localPaths = new Set(local.map((f) => f.path));
    const toDelete = opts.delete
        ? listing.objects.filter((o) => !localPaths.has(o.path) && matcher(opts.include)(o.path))
        : [];
    if (opts.dryRun)
        return pushDryRun(run, toUpload, toDelete);
    const uploaded = await uploadAll(run, toUpload, localSha);
    await deleteFromVault(run, toDelete);
    if (uploaded.size > 0 || toDelete.length > 0) {
        const known = { manifest, hasManifest: listing.hasManifest };
        await writePushManifest(run, known, { remote, localSha, uploaded, toDelete });
    }
    return run.report;
}
/** The host's files (include applied, names checked) and one listing of the vault. */
async function pushInventory(opts, vault, logger) {
    return logger.group('Inventory', async () => {
        const local = included(await opts.host.list(), opts.include, logger, opts.host.label);
        // A key the vault may not hold would make every later pull fail: refuse it here.
        const unsafe = unsafeModelPaths(local.map((f) => f.path));
        refuseUnsafePaths(`${opts.host.label} has ${unsafe.length} file(s) whose names cannot be model paths`, unsafe, 'rename them or leave them out with include');
        const listing = await listVault(vault);
        logger.info(`${local.length} file(s) in ${opts.host.label}; ${listing.objects.length} object(s) in ${vaultUrl(vault)}`);
        return { local, listing };
    });
}
/**
 * Per file: upload unless the vault holds the same size (and, comparing sha256, the same hash:
 * the manifest's, else the object's metadata). Skips are reported here, in the host's order.
 */
async function decidePush(run, local, remote, manifest) {
    const { opts, vault, logger, report } = run;
    const toUpload = [];
    const localSha = new Map();
    const sameSize = local.filter((f) => remote.get(f.path)?.size === f.size);
    if (report.compare === 'sha256' && sameSize.length > 0) {
        const hashes = await logger.group(`Hashing ${sameSize.length} file(s) of equal size`, () => opts.host.sha256(sameSize.map((f) => f.path)));
        for (const [p, h] of hashes)
            localSha.set(p, h);
    }
    for (const f of local) {
        const r = remote.get(f.path);
        if (!r || r.size !== f.size) {
            toUpload.push(f);
            continue;
        }
        if (report.compare === 'sha256') {
            // One HEAD at a time, in order: only for files the manifest does not know.
            const theirs = manifest?.get(f.path)?.sha256 ?? (await headSha256(vault, f.path));
            if (theirs !== localSha.get(f.path)) {
                toUpload.push(f);
                continue;
            }
        }
        report.skipped++;
        report.files.push({
            path: f.path,
            action: 'skipped',
            size: f.size,
            ms: 0,
            note: report.compare === 'sha256' ? 'same sha256' : 'same size',
        });
    }
    return { toUpload, localSha };
}
/**
 * Objects over CopyObject's 5 GiB limit cannot get their sha256 by a copy after the upload:
 * hash them first (on the host, for SSH) so it goes into the multipart upload's metadata.
 */
async function prehashLarge(run, toUpload, localSha) {
    const { opts, logger } = run;
    const limit = opts.metadataCopyLimit ?? R2_MAX_PART;
    const prehash = toUpload.filter((f) => f.size > limit && !localSha.has(f.path));
    if (prehash.length === 0)
        return;
    const hashes = await logger.group(`Hashing ${prehash.length} file(s) over 5 GiB before upload`, () => opts.host.sha256(prehash.map((f) => f.path)));
    for (const [p, h] of hashes)
        localSha.set(p, h);
}
function pushDryRun(run, toUpload, toDelete) {
    const { report } = run;
    for (const f of toUpload)
        report.files.push({ path: f.path, action: 'would upload', size: f.size, ms: 0 });
    for (const o of toDelete)
        report.files.push({ path: o.path, action: 'would delete', size: o.size, ms: 0 });
    run.logger.info(`dry run: ${toUpload.length} to upload, ${toDelete.length} to delete, ${report.skipped} in sync`);
    return report;
}
/**
 * Pending uploads first (stale ones aborted, young ones resumed), then `concurrency` files at a
 * time. Nothing to upload: not even the listing of pending uploads.
 */
async function uploadAll(run, toUpload, localSha) {
    const { opts, vault, logger } = run;
    if (toUpload.length === 0)
        return new Map();
    const ctx = {
        resumable: await cleanPendingUploads(vault, opts.staleUploadMs ?? DAY, logger, run.report),
        localSha,
        slots: new Semaphore(opts.concurrency),
        pool: new BufferPool(opts.concurrency),
        progress: new Progress(logger, opts.progressIntervalMs),
        uploaded: new Map(),
    };
    await logger.group(`Uploading ${toUpload.length} file(s)`, () => forEachLimit(toUpload, opts.concurrency, (f) => uploadOne(run, ctx, f)));
    return ctx.uploaded;
}
async function uploadOne(run, ctx, f) {
    const { opts, vault, logger, report } = run;
    const key = vaultKey(vault, f.path);
    const partSize = opts.partSize ?? r2PartSize(f.size);
    logger.info(`${f.path}: upload start (${formatBytes(f.size)})`);
    const track = ctx.progress.begin(f.path, f.size);
    const reader = await opts.host.reader(f.path);
    try {
        const resumeUploadId = ctx.resumable.get(key);
        const knownSha256 = ctx.localSha.get(f.path);
        const r = await pushFile({
            vault,
            key,
            size: f.size,
            partSize,
            reader,
            slots: ctx.slots,
            pool: ctx.pool,
            onBytes: track.add,
            logger,
            ...(resumeUploadId ? { resumeUploadId } : {}),
            ...(knownSha256 ? { knownSha256 } : {}),
        });
        const ms = track.end();
        ctx.uploaded.set(f.path, { size: f.size, sha256: r.sha256 });
        report.uploaded++;
        report.bytes += r.bytesSent;
        const note = r.partsReused > 0
            ? `resumed: ${r.partsReused} of ${r.parts} parts already in R2`
            : `${r.parts} part(s)`;
        report.files.push({ path: f.path, action: 'uploaded', size: f.size, ms, note });
        logger.info(`${f.path}: uploaded ${formatBytes(f.size)} in ${formatDuration(ms)} (${formatRate(f.size, ms)}), sha256 ${r.sha256}; ${note}`);
    }
    catch (err) {
        track.end();
        throw new errors_OpsError(`${f.path}: upload failed: ${errorMessage(err)}`, { cause: err });
    }
    finally {
        await reader.close();
    }
}
async function deleteFromVault(run, toDelete) {
    for (const o of toDelete) {
        await run.vault.store.delete(vaultKey(run.vault, o.path));
        run.report.deleted++;
        run.report.files.push({ path: o.path, action: 'deleted', size: o.size, ms: 0 });
    }
}
/**
 * The manifest goes last: it only ever names objects that are complete in the vault. It records
 * hashes learnt this run for objects already there and the uploads, and drops the deletes and
 * anything no longer in the vault. Read now unless the comparison already read it.
 */
async function writePushManifest(run, known, changes) {
    const { remote, localSha, uploaded, toDelete } = changes;
    const manifest = known.manifest ?? (known.hasManifest ? await readManifest(run.vault) : new Map());
    for (const [p, f] of localSha)
        if (!uploaded.has(p) && remote.has(p))
            manifest.set(p, { size: remote.get(p)?.size ?? 0, sha256: f });
    for (const [p, f] of uploaded)
        manifest.set(p, f);
    for (const o of toDelete)
        manifest.delete(o.path);
    for (const p of [...manifest.keys()])
        if (!remote.has(p) && !uploaded.has(p))
            manifest.delete(p);
    run.report.manifestKey = await writeManifest(run.vault, manifest);
}
async function headSha256(vault, rel) {
    const head = await vault.store.head(vaultKey(vault, rel));
    return head?.metadata[SHA256_META];
}
/** Aborts multipart uploads older than staleMs; returns the newest young upload per key to resume. */
async function cleanPendingUploads(vault, staleMs, logger, report) {
    const resumable = new Map();
    const now = Date.now();
    for (const u of await vault.store.listUploads(vault.prefix)) {
        if (now - u.initiated.getTime() > staleMs) {
            logger.info(`aborting a stale multipart upload of ${u.key} from ${u.initiated.toISOString()}`);
            if (await vault.store.abortUpload(u))
                report.staleAborted++;
        }
        else if ((resumable.get(u.key)?.at ?? -1) < u.initiated.getTime()) {
            resumable.set(u.key, { id: u.uploadId, at: u.initiated.getTime() });
        }
    }
    return new Map([...resumable].map(([k, v]) => [k, v.id]));
}
async function pull(opts, vault, logger, countRequest) {
    const viaHost = opts.pullVia === 'host' ? hostTarget(opts.host) : undefined;
    const { local, listing, manifest } = await pullInventory(opts, vault, logger);
    const compare = compareFor(opts, listing.hasManifest);
    const run = {
        opts,
        vault,
        logger,
        report: emptyReport('pull', compare, vault),
        ...(viaHost ? { viaHost: { host: viaHost, countGet: () => countRequest('GetObject') } } : {}),
    };
    const sides = {
        remote: included(listing.objects, opts.include, logger, `${vaultUrl(vault)}`),
        inVault: new Set(listing.objects.map((o) => o.path)),
        localBy: new Map(local.map((f) => [f.path, f])),
        manifest,
    };
    const jobs = await decideFromVault(run, sides);
    jobs.push(...decideFallbacks(run, sides));
    const wanted = new Set([
        ...sides.remote.map((o) => o.path),
        ...(opts.models?.models ?? []).map((m) => m.path),
    ]);
    const toDelete = opts.delete
        ? local.filter((f) => !wanted.has(f.path) && matcher(opts.include)(f.path))
        : [];
    if (opts.dryRun)
        return pullDryRun(run, jobs, toDelete);
    // Once, before any download: a host without curl fails here, not on each file.
    if (viaHost && jobs.some((j) => j.from === 'r2'))
        await probeCurl(viaHost.conn);
    await downloadAll(run, jobs);
    await removeFromHost(run, toDelete);
    return run.report;
}
/** pull-via host needs the GPU host over SSH: the only place with a curl of its own to run. */
function hostTarget(host) {
    if (host instanceof SshModelHost)
        return host;
    throw new errors_OpsError(`pull-via: host fetches on the GPU host over SSH, and ${host.label} is a local directory: use pull-via: runner`);
}
/**
 * Every path of the plan (bucket keys, models-manifest.json, config/models.yml) is checked
 * before the host is touched at all, not even by a mkdir of the models directory.
 */
async function pullInventory(opts, vault, logger) {
    const host = opts.host;
    return logger.group('Inventory', async () => {
        const listing = await listVault(vault);
        const manifest = listing.hasManifest ? await readManifest(vault) : new Map();
        const unsafe = unsafeModelPaths((opts.models?.models ?? []).map((x) => x.path));
        refuseUnsafePaths(`${opts.models?.file ?? 'the models config'} names ${unsafe.length} model path(s) that are not safe`, unsafe, 'fix them');
        await host.prepare();
        const local = await host.list();
        logger.info(`${local.length} file(s) in ${host.label}; ${listing.objects.length} object(s) in ${vaultUrl(vault)}`);
        return { local, listing, manifest };
    });
}
/** Per vault object: skip it when the host holds the same size (and sha256, when known). */
async function decideFromVault(run, sides) {
    const { opts, report } = run;
    const { remote, localBy, manifest } = sides;
    const compare = report.compare;
    const jobs = [];
    const sameSize = remote.filter((o) => localBy.get(o.path)?.size === o.size);
    const localSha = compare === 'sha256' && sameSize.length > 0
        ? await opts.host.sha256(sameSize.map((o) => o.path))
        : new Map();
    for (const o of remote) {
        const mine = localBy.get(o.path);
        const theirs = manifest.get(o.path)?.sha256;
        const inSync = mine?.size === o.size && (compare === 'size' || !theirs || localSha.get(o.path) === theirs);
        const sha256 = theirs ?? opts.models?.models.find((m) => m.path === o.path)?.sha256;
        if (inSync) {
            report.skipped++;
            report.files.push({
                path: o.path,
                action: 'skipped',
                size: o.size,
                ms: 0,
                note: compare === 'sha256' && theirs ? 'same sha256' : 'same size',
            });
        }
        else
            jobs.push({ path: o.path, size: o.size, from: 'r2', ...(sha256 ? { sha256 } : {}) });
    }
    return jobs;
}
/** Models the host needs that the vault does not have: HuggingFace (Option B), or fail if required. */
function decideFallbacks(run, sides) {
    const { opts, logger } = run;
    const { inVault, localBy, manifest } = sides;
    const jobs = [];
    const missing = [];
    for (const m of opts.models?.models ?? []) {
        if (inVault.has(m.path))
            continue;
        const mine = localBy.get(m.path);
        if (mine && (m.size === undefined || m.size === mine.size))
            continue;
        if (opts.hfFallback && m.url) {
            const sha256 = m.sha256 ?? manifest.get(m.path)?.sha256;
            jobs.push({
                path: m.path,
                from: 'hf',
                url: m.url,
                ...(m.size !== undefined ? { size: m.size } : {}),
                ...(sha256 ? { sha256 } : {}),
            });
        }
        else if (m.required)
            missing.push(m.path);
        else
            logger.warn(`${m.path} is in neither the vault nor on this host (optional, skipped)`);
    }
    if (missing.length > 0) {
        throw new errors_OpsError(`required model(s) missing from R2 and without a HuggingFace fallback${opts.hfFallback ? '' : ' (hf-fallback is off)'}: ${missing.join(', ')}`);
    }
    return jobs;
}
function pullDryRun(run, jobs, toDelete) {
    const { report } = run;
    for (const j of jobs)
        report.files.push({
            path: j.path,
            action: 'would download',
            size: j.size ?? 0,
            ms: 0,
            note: j.from === 'hf' ? `from ${j.url}` : 'from R2',
        });
    for (const f of toDelete)
        report.files.push({ path: f.path, action: 'would delete', size: f.size, ms: 0 });
    return report;
}
async function downloadAll(run, jobs) {
    const progress = new Progress(run.logger, run.opts.progressIntervalMs);
    await run.logger.group(`Downloading ${jobs.length} file(s)`, () => forEachLimit(jobs, run.opts.concurrency, (j) => downloadOne(run, progress, j)));
}
async function downloadOne(run, progress, j) {
    const { vault, logger, report } = run;
    const origin = j.from === 'hf' ? (j.url ?? '') : vaultUrl(vault, j.path);
    logger.info(`${j.path}: download start from ${origin}${j.size !== undefined ? ` (${formatBytes(j.size)})` : ''}`);
    const track = progress.begin(j.path, j.size ?? 0);
    try {
        const r = await pullFile({
            ...fillFor(run, j, track.add),
            path: j.path,
            origin,
            logger,
            ...(j.size !== undefined ? { size: j.size } : {}),
            ...(j.sha256 ? { expectedSha256: j.sha256 } : {}),
        });
        const ms = track.end();
        if (!r.verified)
            logger.warn(`${j.path}: no sha256 known to check it against (recorded after download: ${r.sha256})`);
        report.downloaded++;
        report.bytes += r.size - r.resumedFrom;
        const note = [
            j.from === 'hf' ? 'HuggingFace fallback' : run.viaHost ? 'from R2 by the host' : 'from R2',
            r.verified ? 'sha256 verified' : 'sha256 unknown',
            r.resumedFrom > 0 ? `resumed at ${formatBytes(r.resumedFrom)}` : '',
        ]
            .filter(Boolean)
            .join(', ');
        report.files.push({ path: j.path, action: 'downloaded', size: r.size, ms, note });
        logger.info(`${j.path}: downloaded ${formatBytes(r.size)} in ${formatDuration(ms)} (${formatRate(r.size, ms)}); ${note}`);
    }
    catch (err) {
        track.end();
        throw err instanceof errors_OpsError
            ? err
            : new errors_OpsError(`${j.path}: download failed: ${errorMessage(err)}`, { cause: err });
    }
}
/**
 * Where one file's bytes land and how they get there: through this process, or fetched by the
 * host. One partial for both (it keeps the hash taken while writing).
 */
function fillFor(run, j, onBytes) {
    const { opts, vault, viaHost } = run;
    if (j.from === 'r2' && viaHost) {
        const partial = viaHost.host.partial(j.path);
        const fill = hostVaultFill(vault, j.path, partial, {
            mask: opts.mask ?? (() => { }),
            stallSeconds: Math.ceil((opts.requestTimeoutMs ?? 120_000) / 1000),
            wantStatedSha256: j.sha256 === undefined,
            onBytes,
            onGet: viaHost.countGet,
        });
        return { partial, fill };
    }
    const partial = opts.host.partial(j.path);
    const source = j.from === 'hf' ? urlSource(j.url ?? '', opts.hfToken, opts.fetch) : vaultSource(vault, j.path);
    return { partial, fill: streamFill(partial, source, onBytes) };
}
async function removeFromHost(run, toDelete) {
    for (const f of toDelete) {
        await run.opts.host.remove(f.path);
        run.report.deleted++;
        run.report.files.push({ path: f.path, action: 'deleted', size: f.size, ms: 0 });
    }
}

;// CONCATENATED MODULE: ./src/actions/shared/port.ts
// The one seam between an action's main and where it runs. A main takes an ActionPort and never
// reaches @actions/core itself: the Actions runtime (runtime.ts) wraps @actions/core, the CLI
// (src/cli/terminal-port.ts) prints to a terminal or as JSON. Both run the same main, so the CLI
// and the sandbox run exactly the workflow's code path from the main down (as actions/cache
// injects its state provider).


/** Masks a secret, and each line of a multi-line one (private keys) as the runner does. */
function maskSecret(port, value) {
    if (!value)
        return;
    port.mask(value);
    for (const line of value.split(/\r?\n/))
        if (line.trim().length >= 4)
            port.mask(line.trim());
}
/**
 * Masks every secret input an action declares, before anything else can print one; returns the
 * masked values (for text that leaves the runner's masking, such as an issue body).
 */
function maskSecretInputs(port, secrets) {
    const values = secrets.flatMap((secret) => typeof secret === 'string'
        ? [port.input(secret)]
        : port
            .input(secret.name)
            .split(/\r?\n/)
            .map((line) => line.trim())
            .filter((line) => secret.lines.test(line)));
    const given = values.filter((v) => v !== '');
    for (const value of given)
        maskSecret(port, value);
    return given;
}
function setOutputs(port, outputs) {
    for (const [name, value] of Object.entries(outputs))
        port.setOutput(name, String(value));
}
async function writeSummary(port, parts) {
    // Each part ends with an empty line, so a table never runs into the text before it.
    const blocks = parts.map((part) => typeof part === 'string' ? `${part}\n` : tableToMarkdown(part));
    await port.summary(blocks.map((block) => `${block}\n`).join(''));
}
/**
 * Runs an action's main and turns any failure into `fail`: expected errors (bad input, config,
 * an operational failure) show their message alone; anything else also logs its stack at debug
 * level so a bug report has it without flooding the user.
 */
async function runAction(port, main) {
    try {
        await main();
    }
    catch (err) {
        if (!isExpectedError(err) && err instanceof Error && err.stack)
            port.logger.debug(err.stack);
        port.fail(errorMessage(err));
    }
}

;// CONCATENATED MODULE: ./src/actions/shared/r2-inputs.ts
// The R2 inputs every action shares (where R2 is, the key pair, key prefixes) and its client.


/** r2-endpoint (or r2-account-id), r2-access-key-id, r2-secret-access-key and r2-timeout. */
function parseR2Access(inputs) {
    const endpointInput = inputs.optional('r2-endpoint');
    const accountId = inputs.optional('r2-account-id');
    const r2TimeoutMs = inputs.duration('r2-timeout', '2m');
    if (r2TimeoutMs < 1000)
        throw new InputError('r2-timeout', inputs.raw('r2-timeout'), 'a duration of at least 1s');
    return {
        r2TimeoutMs,
        endpoint: r2Endpoint({
            ...(endpointInput ? { endpoint: endpointInput } : {}),
            ...(accountId ? { accountId } : {}),
        }),
        accessKeyId: inputs.secret('r2-access-key-id', 'the R2 access key id'),
        secretAccessKey: inputs.secret('r2-secret-access-key', 'the R2 secret access key'),
    };
}
const PREFIX_RE = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
/** A key prefix such as backups/verda: no leading or trailing '/', no '.' or '..' parts. */
function parsePrefix(input, value) {
    const expected = "a key prefix such as backups/verda (letters, digits, . _ - and '/' between parts; no leading or trailing '/', no '..')";
    if (!PREFIX_RE.test(value) || value.split('/').some((s) => s === '.' || s === '..')) {
        throw new InputError(input, value, expected);
    }
    return value;
}
/** An action's R2 client: our own retry (logged, per request) replaces the SDK's silent one. */
function actionR2Client(access) {
    const { endpoint, accessKeyId, secretAccessKey, r2TimeoutMs } = access;
    return createR2Client({
        endpoint,
        accessKeyId,
        secretAccessKey,
        maxAttempts: 1,
        requestTimeoutMs: r2TimeoutMs,
    });
}

;// CONCATENATED MODULE: ./src/lib/inputs.ts

function inputsFromRecord(record) {
    return (name) => (record[name] ?? '').trim();
}
/** Reads typed inputs from a source; every bad value throws an InputError naming the input. */
class Inputs {
    source;
    constructor(source) {
        this.source = source;
    }
    raw(name) {
        return this.source(name).trim();
    }
    required(name, expected = 'a non-empty value') {
        const value = this.raw(name);
        if (value === '')
            throw new InputError(name, value, expected);
        return value;
    }
    /** A required input whose value is a secret: the error never repeats what was given. */
    secret(name, expected = 'a non-empty secret') {
        const value = this.raw(name);
        if (value === '')
            throw new InputError(name, '', expected);
        return value;
    }
    optional(name) {
        const value = this.raw(name);
        return value === '' ? undefined : value;
    }
    int(name, opts = {}) {
        const value = this.raw(name);
        const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = opts;
        if (value === '' && opts.default !== undefined)
            return opts.default;
        const expected = `an integer from ${min} to ${max}`;
        if (!/^[+-]?\d+$/.test(value))
            throw new InputError(name, value, expected);
        const n = Number(value);
        if (!Number.isSafeInteger(n) || n < min || n > max)
            throw new InputError(name, value, expected);
        return n;
    }
    optionalInt(name, opts = {}) {
        return this.raw(name) === '' ? undefined : this.int(name, opts);
    }
    number(name, opts = {}) {
        const value = this.raw(name);
        if (value === '' && opts.default !== undefined)
            return opts.default;
        const { min = -Infinity, max = Infinity } = opts;
        const n = Number(value);
        if (value === '' || !Number.isFinite(n) || n < min || n > max) {
            throw new InputError(name, value, `a number from ${min} to ${max}`);
        }
        return n;
    }
    oneOf(name, allowed, fallback) {
        const value = this.raw(name);
        if (value === '' && fallback !== undefined)
            return fallback;
        const known = allowed.find((a) => a === value);
        if (known === undefined)
            throw new InputError(name, value, `one of ${allowed.join(', ')}`);
        return known;
    }
    /** YAML 1.2 core booleans, like core.getBooleanInput. */
    boolean(name, fallback = false) {
        const value = this.raw(name);
        if (value === '')
            return fallback;
        if (['true', 'True', 'TRUE'].includes(value))
            return true;
        if (['false', 'False', 'FALSE'].includes(value))
            return false;
        throw new InputError(name, value, 'true or false');
    }
    /** One item per line (commas also separate); blank lines and # comments dropped. */
    list(name) {
        return splitList(this.raw(name));
    }
    /**
     * A duration such as 90s, 15m, 1h30m or a plain number of seconds; returns milliseconds, at
     * most MAX_DURATION_MS (Node's timers overflow above it and fire at once).
     */
    duration(name, fallback) {
        const value = this.raw(name) || fallback || '';
        const ms = parseDuration(value);
        if (ms === undefined || ms > MAX_DURATION_MS)
            throw new InputError(name, value, `a duration such as 90s, 15m or 1h30m, at most ${MAX_DURATION_TEXT} (${MAX_DURATION_MS} ms)`);
        return ms;
    }
    /** A size such as 16MiB, 1.5GiB, 5MB or a plain number of bytes; 'auto' gives undefined. */
    size(name, opts = {}) {
        const value = this.raw(name);
        if (opts.allowAuto && (value === '' || value === 'auto'))
            return undefined;
        const bytes = parseSize(value);
        const { min = 0, max = Number.MAX_SAFE_INTEGER } = opts;
        const range = `from ${formatSizeLimit(min)} to ${formatSizeLimit(max)}`;
        const expected = `a size such as 16MiB or 1GiB ${range}${opts.allowAuto ? ", or 'auto'" : ''}`;
        if (bytes === undefined || bytes < min || bytes > max)
            throw new InputError(name, value, expected);
        return bytes;
    }
}
function splitList(value) {
    return value
        .split(/[\n,]/)
        .map((line) => line.replace(/(^|\s)#.*$/, '').trim())
        .filter((line) => line !== '');
}
/** The longest timer Node can set (2^31-1 ms, about 24.8 days); a longer one fires at once. */
const MAX_DURATION_MS = 2 ** 31 - 1;
const MAX_DURATION_TEXT = '24d20h31m23s';
const durationUnits = {
    ms: 1,
    s: 1000,
    m: 60_000,
    h: 3_600_000,
    d: 86_400_000,
};
function parseDuration(value) {
    const text = value.trim();
    if (/^\d+(\.\d+)?$/.test(text))
        return Math.round(Number(text) * 1000);
    const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
    let total = 0;
    let consumed = 0;
    for (let match = re.exec(text); match; match = re.exec(text)) {
        total += Number(match[1]) * (durationUnits[match[2] ?? ''] ?? NaN);
        consumed = re.lastIndex;
    }
    if (text === '' || consumed !== text.length || !Number.isFinite(total))
        return undefined;
    return Math.round(total);
}
const sizeUnits = {
    '': 1,
    b: 1,
    k: 1e3,
    kb: 1e3,
    kib: 2 ** 10,
    m: 1e6,
    mb: 1e6,
    mib: 2 ** 20,
    g: 1e9,
    gb: 1e9,
    gib: 2 ** 30,
    t: 1e12,
    tb: 1e12,
    tib: 2 ** 40,
};
function parseSize(value) {
    const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
    if (!match)
        return undefined;
    const unit = sizeUnits[(match[2] ?? '').toLowerCase()];
    if (unit === undefined)
        return undefined;
    return Math.round(Number(match[1]) * unit);
}
function formatSizeLimit(bytes) {
    if (bytes >= 2 ** 30 && bytes % 2 ** 30 === 0)
        return `${bytes / 2 ** 30}GiB`;
    if (bytes >= 2 ** 20 && bytes % 2 ** 20 === 0)
        return `${bytes / 2 ** 20}MiB`;
    return `${bytes} bytes`;
}

;// CONCATENATED MODULE: ./src/models/location.ts
// A model directory: a local path, or ssh://user@host:port/absolute/path on the GPU host.

const SSH_EXPECTED = 'ssh://user@host:port/absolute/path (port optional, default 22) or a local directory';
function parseLocation(input, value) {
    if (!value.includes('://')) {
        if (value.trim() === '')
            throw new InputError(input, value, 'a local directory or ' + SSH_EXPECTED);
        return { kind: 'local', dir: value };
    }
    const m = /^ssh:\/\/([A-Za-z_][A-Za-z0-9_.-]*)@(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?(\/[^\0\n]*)$/.exec(value);
    const port = Number(m?.[3] ?? 22);
    if (!m || port < 1 || port > 65535 || (m[4] ?? '').split('/').includes('..'))
        throw new InputError(input, value, SSH_EXPECTED);
    return {
        kind: 'ssh',
        user: m[1] ?? '',
        host: (m[2] ?? '').replace(/^\[|\]$/g, ''),
        port,
        dir: (m[4] ?? '/').replace(/(.)\/+$/, '$1'),
    };
}

;// CONCATENATED MODULE: ./src/actions/sync-models/inputs.ts







const DEFAULT_MANIFEST = 'config/models.yml';
/** The secret inputs, masked before anything else happens. */
const SECRET_INPUTS = [
    'r2-access-key-id',
    'r2-secret-access-key',
    'ssh-private-key',
    'hf-token',
];
/** Every input checked before anything connects; each bad value names the input. */
function parseSyncInputs(source) {
    const inputs = new Inputs(source);
    const direction = inputs.oneOf('direction', ['push', 'pull']);
    const where = direction === 'push' ? 'source' : 'target';
    const location = parseLocation(where, inputs.required(where, `the models directory to ${direction === 'push' ? 'read' : 'write'}: a local directory or ssh://user@host:port/path`));
    const ssh = location.kind === 'ssh'
        ? {
            // A public key or garbage is refused here, before the bucket or the host is contacted.
            privateKey: checkPrivateKey('ssh-private-key', inputs.secret('ssh-private-key', `a private key for ${where} ${inputs.raw(where)}`)),
            fingerprints: parseFingerprints('host-key-fingerprints', inputs.list('host-key-fingerprints')),
        }
        : undefined;
    const compare = inputs.raw('compare') === '' ? undefined : inputs.oneOf('compare', ['size', 'sha256']);
    const partSize = inputs.size('part-size', {
        min: R2_MIN_PART,
        max: R2_MAX_PART,
        allowAuto: true,
    });
    const include = inputs.list('include');
    const manifestRaw = inputs.raw('manifest');
    const hfToken = inputs.optional('hf-token');
    return {
        direction,
        location,
        pullVia: parsePullVia(inputs, direction, location),
        ...(ssh ? { ssh } : {}),
        bucket: validateBucketName('bucket', inputs.required('bucket', 'an R2 bucket name')),
        // Checked like every other action's prefix; the vault keys are `<prefix>/<model path>`.
        prefix: normalizePrefix(parsePrefix('prefix', inputs.raw('prefix') || 'models')),
        ...parseR2Access(inputs),
        include: include.length > 0 ? include : ['**/*.safetensors'],
        ...(compare ? { compare } : {}),
        // Over SSH each file in flight is one channel, and sshd allows 10 per connection by default.
        concurrency: inputs.int('concurrency', { min: 1, max: ssh ? 8 : 64, default: 4 }),
        ...(partSize !== undefined ? { partSize } : {}),
        delete: inputs.boolean('delete', false),
        dryRun: inputs.boolean('dry-run', false),
        manifest: manifestRaw || DEFAULT_MANIFEST,
        manifestIsDefault: manifestRaw === '' || manifestRaw === DEFAULT_MANIFEST,
        // The fallback only ever fetches (pull); its default is action.yml's.
        hfFallback: direction === 'pull' && inputs.boolean('hf-fallback', true),
        ...(hfToken ? { hfToken } : {}),
    };
}
/** pull-via host only means something for a pull onto the GPU host over SSH. */
function parsePullVia(inputs, direction, location) {
    const pullVia = inputs.oneOf('pull-via', ['runner', 'host'], 'runner');
    if (pullVia === 'host' && (direction !== 'pull' || location.kind !== 'ssh'))
        throw new InputError('pull-via', pullVia, direction !== 'pull'
            ? 'runner for direction: push (host only applies to a pull)'
            : `runner for a local target (${location.kind === 'local' ? location.dir : ''}): host means the GPU host fetches from R2 itself, which needs target: ssh://user@host:port/path`);
    return pullVia;
}

;// CONCATENATED MODULE: ./src/actions/sync-models/main.ts









async function loadManifest(inputs, logger) {
    const exists = await (0,promises_.access)(inputs.manifest).then(() => true, () => false);
    // The default manifest is optional (a checkout may not have it); a named one must exist.
    if (!exists && inputs.manifestIsDefault) {
        logger.info(`no ${inputs.manifest} here: no HuggingFace fallback or required-model check`);
        return undefined;
    }
    return loadModelsConfig(inputs.manifest);
}
async function run(port) {
    await runAction(port, async () => {
        maskSecretInputs(port, SECRET_INPUTS);
        const inputs = parseSyncInputs(port.input);
        const models = await loadManifest(inputs, port.logger);
        const client = actionR2Client(inputs);
        let conn;
        try {
            let host;
            if (inputs.location.kind === 'ssh' && inputs.ssh) {
                const loc = inputs.location;
                conn = await connectSsh({
                    host: loc.host,
                    port: loc.port,
                    username: loc.user,
                    privateKey: inputs.ssh.privateKey,
                    fingerprints: inputs.ssh.fingerprints,
                    logger: port.logger,
                });
                host = new SshModelHost(conn, loc.dir);
            }
            else {
                host = new LocalModelHost(inputs.location.dir);
            }
            const report = await syncModels({
                direction: inputs.direction,
                host,
                client,
                bucket: inputs.bucket,
                prefix: inputs.prefix,
                include: inputs.include,
                concurrency: inputs.concurrency,
                delete: inputs.delete,
                dryRun: inputs.dryRun,
                hfFallback: inputs.hfFallback,
                pullVia: inputs.pullVia,
                // A presigned URL is derived from the R2 secret: masked like the secret itself.
                mask: (secret) => maskSecret(port, secret),
                requestTimeoutMs: inputs.r2TimeoutMs,
                ...(inputs.compare ? { compare: inputs.compare } : {}),
                ...(inputs.partSize ? { partSize: inputs.partSize } : {}),
                ...(models ? { models } : {}),
                ...(inputs.hfToken ? { hfToken: inputs.hfToken } : {}),
                ...(process.env.SYNC_MODELS_PROGRESS_MS
                    ? { progressIntervalMs: Number(process.env.SYNC_MODELS_PROGRESS_MS) }
                    : {}),
            }, port.logger);
            setOutputs(port, {
                uploaded: report.uploaded,
                downloaded: report.downloaded,
                skipped: report.skipped,
                bytes: report.bytes,
                'manifest-key': report.manifestKey,
            });
            await writeSummary(port, syncTables(report));
            port.logger.info(`sync-models ${report.direction}: ${report.uploaded} uploaded, ${report.downloaded} downloaded, ${report.skipped} skipped, ` +
                `${report.requests.classA} Class A + ${report.requests.classB} Class B requests`);
        }
        finally {
            client.destroy();
            await conn?.close();
        }
    });
}


/***/ })

};
