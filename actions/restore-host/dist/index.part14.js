import { createRequire as __WEBPACK_EXTERNAL_createRequire } from "module";
export const modules = {

4820:
/***/ ((__unused_webpack_module, __webpack_exports__, __nccwpck_require__) => {


// EXPORTS
__nccwpck_require__.d(__webpack_exports__, {
  e: () => (/* binding */ run)
});

// EXTERNAL MODULE: external "node:fs/promises"
var promises_ = __nccwpck_require__(1455);
;// CONCATENATED MODULE: ./src/lib/errors.ts
/** A bad action input or CLI flag: names the input, the value given and what is expected. */
class errors_InputError extends Error {
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
class errors_ConfigError extends Error {
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
    return err instanceof errors_InputError || err instanceof errors_ConfigError || err instanceof errors_OpsError;
}
function errors_errorMessage(err) {
    return err instanceof Error ? err.message : String(err);
}
/** Quotes a value for an error message; secrets must never be passed here (callers redact). */
function quote(value) {
    const shown = value.length > 120 ? `${value.slice(0, 117)}...` : value;
    return JSON.stringify(shown);
}

// EXTERNAL MODULE: external "node:crypto"
var external_node_crypto_ = __nccwpck_require__(7598);
;// CONCATENATED MODULE: ./src/lib/sshsig.ts
// OpenSSH signatures (PROTOCOL.sshsig), Ed25519 only: what `ssh-keygen -Y sign` writes and
// `ssh-keygen -Y verify` checks, so a person can check a backup by hand on any Ubuntu host.
// Verification needs node:crypto only (the drill bundles no SSH library); signing takes a signer
// that the caller makes from its private key (backup-verda: ssh2's key parser).


const MAGIC = Buffer.from('SSHSIG');
const HASH = 'sha512';
const KEY_TYPE = 'ssh-ed25519';
const ARMOR_BEGIN = '-----BEGIN SSH SIGNATURE-----';
const ARMOR_END = '-----END SSH SIGNATURE-----';
const sshString = (data) => {
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    const length = Buffer.alloc(4);
    length.writeUInt32BE(body.length);
    return Buffer.concat([length, body]);
};
/** The bytes the key signs: the preamble, namespace, hash name and the message's hash. */
function signedData(message, namespace) {
    const digest = createHash(HASH).update(message).digest();
    return Buffer.concat([
        MAGIC,
        sshString(namespace),
        sshString(''),
        sshString(HASH),
        sshString(digest),
    ]);
}
/** Signs `message` in `namespace`; returns the armored signature, as ssh-keygen -Y sign writes it. */
function signSshsig(message, namespace, signer) {
    const signature = signer.sign(signedData(message, namespace));
    const version = Buffer.alloc(4);
    version.writeUInt32BE(1);
    const blob = Buffer.concat([
        MAGIC,
        version,
        sshString(signer.publicKey),
        sshString(namespace),
        sshString(''),
        sshString(HASH),
        sshString(Buffer.concat([sshString(KEY_TYPE), sshString(signature)])),
    ]);
    const lines = blob.toString('base64').match(/.{1,70}/g) ?? [];
    return `${ARMOR_BEGIN}\n${lines.join('\n')}\n${ARMOR_END}\n`;
}
/** Reads SSH wire strings from a buffer; any overrun is a malformed signature. */
class Reader {
    buf;
    at = 0;
    constructor(buf) {
        this.buf = buf;
    }
    bytes(n) {
        if (this.at + n > this.buf.length)
            throw new Error('truncated');
        const out = this.buf.subarray(this.at, this.at + n);
        this.at += n;
        return out;
    }
    uint32() {
        return this.bytes(4).readUInt32BE(0);
    }
    string() {
        return this.bytes(this.uint32());
    }
    done() {
        return this.at === this.buf.length;
    }
}
function parseArmored(text) {
    const trimmed = text.trim();
    if (!trimmed.startsWith(ARMOR_BEGIN) || !trimmed.endsWith(ARMOR_END))
        throw new Error('armor');
    const body = trimmed.slice(ARMOR_BEGIN.length, -ARMOR_END.length).replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body))
        throw new Error('base64');
    const r = new Reader(Buffer.from(body, 'base64'));
    if (!r.bytes(6).equals(MAGIC) || r.uint32() !== 1)
        throw new Error('preamble');
    const publicKey = r.string();
    const namespace = r.string().toString();
    r.string(); // reserved
    const hash = r.string().toString();
    const sig = new Reader(r.string());
    if (!r.done())
        throw new Error('trailing data');
    const type = sig.string().toString();
    const signature = sig.string();
    if (type !== KEY_TYPE || signature.length !== 64 || !sig.done())
        throw new Error('signature');
    return { publicKey, namespace, hash, signature };
}
/** The raw 32-byte key of an ssh-ed25519 public key blob, or undefined. */
function ed25519Raw(blob) {
    try {
        const r = new Reader(blob);
        const type = r.string().toString();
        const raw = r.string();
        return type === KEY_TYPE && raw.length === 32 && r.done() ? raw : undefined;
    }
    catch {
        return undefined;
    }
}
/**
 * Checks an armored signature of `message`: well formed, in `namespace`, made by one of the
 * allowed keys for `principal`, and valid. Throws an OpsError naming `what` otherwise.
 */
function verifySshsig(opts) {
    let sig;
    try {
        sig = parseArmored(opts.signature);
    }
    catch {
        throw new errors_OpsError(`${opts.what}: the signature is not an SSH signature (ssh-keygen -Y sign)`);
    }
    if (sig.namespace !== opts.namespace || (sig.hash !== HASH && sig.hash !== 'sha256')) {
        throw new errors_OpsError(`${opts.what}: signed for namespace ${JSON.stringify(sig.namespace)} (${sig.hash}), expected ${opts.namespace}`);
    }
    const signer = opts.allowed.find((a) => a.publicKey.equals(sig.publicKey) &&
        a.principals.some((p) => p === opts.principal || p === '*') &&
        (a.namespaces === undefined || a.namespaces.includes(opts.namespace)));
    const raw = ed25519Raw(sig.publicKey);
    if (!signer || !raw) {
        throw new errors_OpsError(`${opts.what}: signed by a key that is not an allowed signer (${sshKeyText(sig.publicKey)})`);
    }
    const digest = (0,external_node_crypto_.createHash)(sig.hash).update(opts.message).digest();
    const data = Buffer.concat([
        MAGIC,
        sshString(opts.namespace),
        sshString(''),
        sshString(sig.hash),
        sshString(digest),
    ]);
    const key = (0,external_node_crypto_.createPublicKey)({
        key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
        format: 'jwk',
    });
    if (!(0,external_node_crypto_.verify)(null, data, key, sig.signature))
        throw new errors_OpsError(`${opts.what}: the signature does not match (changed after signing)`);
    return signer;
}
/** `ssh-ed25519 AAAA\u2026` of a key blob, shortened for messages. */
function sshKeyText(blob) {
    const text = `${KEY_TYPE} ${blob.toString('base64')}`;
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
/**
 * An allowed signers file: `principals [namespaces="a,b"] ssh-ed25519 AAAA\u2026 [comment]` per line,
 * `#` comments and blank lines skipped. Other options and key types are refused, not ignored.
 */
function parseAllowedSigners(text, file) {
    const problems = [];
    const out = [];
    text.split(/\r?\n/).forEach((line, i) => {
        const trimmed = line.trim();
        if (trimmed === '' || trimmed.startsWith('#'))
            return;
        const m = /^(\S+)\s+(?:namespaces="([^"]*)"\s+)?(ssh-[a-z0-9-]+)\s+([A-Za-z0-9+/]+={0,2})(?:\s.*)?$/.exec(trimmed);
        const blob = m?.[4] ? Buffer.from(m[4], 'base64') : undefined;
        if (!m || m[3] !== KEY_TYPE || !blob || !ed25519Raw(blob)) {
            problems.push(`line ${i + 1}: expected 'principal [namespaces="comfyume-backup"] ssh-ed25519 AAAA\u2026 [comment]'`);
            return;
        }
        out.push({
            principals: (m[1] ?? '').split(','),
            namespaces: m[2] === undefined ? undefined : m[2].split(','),
            publicKey: blob,
            text: `${KEY_TYPE} ${m[4]}`,
        });
    });
    if (problems.length > 0)
        throw new errors_ConfigError(file, problems);
    return out;
}
/** The public key blob of an `ssh-ed25519 AAAA\u2026` line. */
function publicKeyLine(blob, comment = '') {
    return `${KEY_TYPE} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}

;// CONCATENATED MODULE: ./src/backup/signature.ts
// Backups are signed: age gives confidentiality, not authenticity (anyone with the public
// recipient can write a backup that decrypts). backup-verda signs each manifest.json with an
// Ed25519 key held as a repository secret; the manifest holds the sha256 of every object and of
// RESTORE.sh, so the signature covers the whole backup. The drill and RESTORE.sh accept a backup
// only when manifest.json.sig verifies against config/backup-signers (an ssh-keygen allowed
// signers file): `ssh-keygen -Y verify -f config/backup-signers -I comfyume-backup
// -n comfyume-backup -s manifest.json.sig < manifest.json` checks it by hand.



/** The SSHSIG namespace and the principal of config/backup-signers. */
const SIGNATURE_NAMESPACE = 'comfyume-backup';
const SIGNER_PRINCIPAL = 'comfyume-backup';
const DEFAULT_SIGNERS_FILE = 'config/backup-signers';
/** Reads an allowed signers file; one without a key is an error that says how to add one. */
async function loadAllowedSigners(file) {
    let text;
    try {
        text = await (0,promises_.readFile)(file, 'utf8');
    }
    catch (err) {
        throw new errors_ConfigError(file, [`cannot be read: ${errnoCode(err) ?? String(err)}`]);
    }
    const signers = parseAllowedSigners(text, file).filter((s) => s.principals.some((p) => p === SIGNER_PRINCIPAL || p === '*'));
    if (signers.length === 0) {
        throw new errors_ConfigError(file, [
            `lists no key for ${SIGNER_PRINCIPAL}: add the public key of the backup signing key as a line '${SIGNER_PRINCIPAL} namespaces="${SIGNATURE_NAMESPACE}" ssh-ed25519 AAAA\u2026' (see SECURITY.md)`,
        ]);
    }
    return { text, signers };
}
/** The code of a failed read (ENOENT, EACCES), when the error has one. */
function errnoCode(err) {
    return err instanceof Error && 'code' in err && typeof err.code === 'string'
        ? err.code
        : undefined;
}
/** Checks manifest.json against its signature; throws naming the manifest's key otherwise. */
function verifyManifestSignature(manifest, signature, allowed, manifestKey) {
    const what = `${manifestKey}: not accepted`;
    if (signature === undefined) {
        throw new errors_OpsError(`${what}: it has no signature (${manifestKey}.sig); only a backup signed by backup-verda's signing key is restored`);
    }
    return verifySshsig({
        message: manifest,
        signature,
        namespace: SIGNATURE_NAMESPACE,
        principal: SIGNER_PRINCIPAL,
        allowed,
        what,
    });
}

// EXTERNAL MODULE: external "node:stream"
var external_node_stream_ = __nccwpck_require__(7075);
;// CONCATENATED MODULE: external "node:stream/promises"
const external_node_stream_promises_namespaceObject = __WEBPACK_EXTERNAL_createRequire(import.meta.url)("node:stream/promises");
;// CONCATENATED MODULE: ./node_modules/zod/v4/core/util.js

// functions
function assertEqual(val) {
    return val;
}
function assertNotEqual(val) {
    return val;
}
function toZod() {
    return (schema) => schema;
}
function assertIs(_arg) { }
function assertNever(_x) {
    throw new Error("Unexpected value in exhaustive check");
}
function assert(_) { }
function getEnumValues(entries) {
    const numericValues = Object.values(entries).filter((v) => typeof v === "number");
    const values = Object.entries(entries)
        .filter(([k, _]) => numericValues.indexOf(+k) === -1)
        .map(([_, v]) => v);
    return values;
}
function joinValues(array, separator = "|") {
    return array.map((val) => stringifyPrimitive(val)).join(separator);
}
function jsonStringifyReplacer(_, value) {
    if (typeof value === "bigint")
        return value.toString();
    return value;
}
// the accessor lives on a shared prototype: an own accessor makes every box a dictionary-mode object (~360 B and a slow load per read against ~100 B and an inlined getter here)
class Cached {
    constructor(getter) {
        this._getter = getter;
        this._value = undefined;
    }
    get value() {
        const getter = this._getter;
        if (getter !== undefined) {
            this._value = getter();
            this._getter = undefined;
        }
        return this._value;
    }
}
function cached(getter) {
    return new Cached(getter);
}
function nullish(input) {
    return input === null || input === undefined;
}
function cleanRegex(source) {
    const start = source.startsWith("^") ? 1 : 0;
    const end = source.endsWith("$") ? source.length - 1 : source.length;
    return source.slice(start, end);
}
function floatSafeRemainder(val, step) {
    const ratio = val / step;
    const roundedRatio = Math.round(ratio);
    // `val` and `step` each round to a double before the division rounds again, so a true decimal multiple's quotient can sit up to 1.5 of these scaled epsilons from the integer. A 1x tolerance therefore rejected 2.03 as a multiple of 0.07; 4x covers the worst case with margin.
    const tolerance = 4 * Number.EPSILON * Math.max(Math.abs(ratio), 1);
    if (Math.abs(ratio - roundedRatio) < tolerance)
        return 0;
    return ratio - roundedRatio;
}
const EVALUATING = /* @__PURE__*/ (/* unused pure expression or super */ null && (Symbol("evaluating")));
function defineLazy(object, key, getter) {
    let value = undefined;
    Object.defineProperty(object, key, {
        get() {
            if (value === EVALUATING) {
                // Circular reference detected, return undefined to break the cycle
                return undefined;
            }
            if (value === undefined) {
                value = EVALUATING;
                value = getter();
            }
            return value;
        },
        set(v) {
            Object.defineProperty(object, key, {
                value: v,
                // configurable: true,
            });
            // object[key] = v;
        },
        configurable: true,
    });
}
function objectClone(obj) {
    return Object.create(Object.getPrototypeOf(obj), Object.getOwnPropertyDescriptors(obj));
}
function util_assignProp(target, prop, value) {
    Object.defineProperty(target, prop, {
        value,
        writable: true,
        enumerable: true,
        configurable: true,
    });
}
/**
 * Whichever object a def's `shape` currently answers from: the one the caller passed until the first read, the frozen copy after it.
 *
 * Its keys and descriptors read without invoking anything, which is what lets a discriminated union check its discriminator, and the cycle walk read a shape, without resolving a getter that references the schema being constructed. A def that answers `shape` from an accessor of its own has none.
 */
function rawShape(def) {
    const desc = Object.getOwnPropertyDescriptor(def, "shape");
    return desc?.get ? desc.get.raw : desc?.value;
}
// where a builder reads its source's keys and descriptors, resolving only a shape a def answers for itself. A shape resolves by object spread, so only its enumerable keys are ever part of it.
function sourceShape(schema) {
    return rawShape(schema._zod.def) ?? schema._zod.def.shape;
}
// a key whose value is not settled yet, self-caching so every read after the first gets the same one
function deferProp(target, key, getter) {
    Object.defineProperty(target, key, {
        get() {
            const value = getter();
            util_assignProp(this, key, value);
            return value;
        },
        enumerable: true,
        configurable: true,
    });
}
// Writes a settled key. A plain assignment is much cheaper than `defineProperty` and produces the same descriptor, but it runs whatever setter already answers to the key \u2014 an accessor this shape deferred, or an inherited one, which `__proto__` has on every object and prototype pollution can add for any name.
function putProp(target, key, value) {
    if (key in target)
        util_assignProp(target, key, value);
    else
        target[key] = value;
}
/**
 * Copies `keys` of `source`'s shape onto `target`, each value passed through `wrap`.
 *
 * A key the source has resolved is copied through now, so the derived shape states it outright and nothing has to resolve it to learn what it holds. A key the source still defers stays deferred, and reads back through the source's own `shape`, so it resolves once and both shapes get that one schema.
 */
function mirrorShape(target, source, keys, wrap) {
    const raw = sourceShape(source);
    for (const key of keys) {
        const desc = Object.getOwnPropertyDescriptor(raw, key);
        if (!desc.enumerable)
            continue;
        if (desc.get) {
            deferProp(target, key, () => {
                const value = source._zod.def.shape[key];
                return wrap ? wrap(value, key) : value;
            });
        }
        else
            putProp(target, key, wrap ? wrap(desc.value, key) : desc.value);
    }
}
// same, for a plain shape a caller passed rather than a schema's
function mirrorProps(target, source) {
    for (const key of Reflect.ownKeys(source)) {
        const desc = Object.getOwnPropertyDescriptor(source, key);
        if (!desc.enumerable)
            continue;
        if (desc.get)
            deferProp(target, key, () => source[key]);
        else
            putProp(target, key, desc.value);
    }
}
function mergeDefs(...defs) {
    const mergedDescriptors = {};
    for (const def of defs) {
        const descriptors = Object.getOwnPropertyDescriptors(def);
        Object.assign(mergedDescriptors, descriptors);
    }
    return Object.defineProperties({}, mergedDescriptors);
}
function cloneDef(schema) {
    return mergeDefs(schema._zod.def);
}
function getElementAtPath(obj, path) {
    if (!path)
        return obj;
    return path.reduce((acc, key) => acc?.[key], obj);
}
function promiseAllObject(promisesObj) {
    const keys = Object.keys(promisesObj);
    const promises = keys.map((key) => promisesObj[key]);
    return Promise.all(promises).then((results) => {
        const resolvedObj = {};
        for (let i = 0; i < keys.length; i++) {
            resolvedObj[keys[i]] = results[i];
        }
        return resolvedObj;
    });
}
function randomString(length = 10) {
    const chars = "abcdefghijklmnopqrstuvwxyz";
    let str = "";
    for (let i = 0; i < length; i++) {
        str += chars[Math.floor(Math.random() * chars.length)];
    }
    return str;
}
function esc(str) {
    return JSON.stringify(str);
}
function slugify(input) {
    return input
        .toLowerCase()
        .trim()
        .replace(/[^\w\s-]/g, "")
        .replace(/[\s_-]+/g, "-")
        .replace(/^-+|-+$/g, "");
}
const captureStackTrace = ("captureStackTrace" in Error ? Error.captureStackTrace : (..._args) => { });
function util_isObject(data) {
    return typeof data === "object" && data !== null && !Array.isArray(data);
}
const util_allowsEval = /* @__PURE__*/ cached(() => {
    // Skip the probe under `jitless`: strict CSPs report the caught `new Function` as a `securitypolicyviolation` even though the throw is swallowed.
    if (globalConfig.jitless) {
        return false;
    }
    // @ts-ignore
    if (typeof navigator !== "undefined" && navigator?.userAgent?.includes("Cloudflare")) {
        return false;
    }
    try {
        const F = Function;
        new F("");
        return true;
    }
    catch (_) {
        return false;
    }
});
function isPlainObject(o) {
    if (util_isObject(o) === false)
        return false;
    // modified constructor
    const ctor = o.constructor;
    if (ctor === undefined)
        return true;
    if (typeof ctor !== "function")
        return true;
    // modified prototype
    const prot = ctor.prototype;
    if (util_isObject(prot) === false)
        return false;
    // ctor doesn't have static `isPrototypeOf`
    if (Object.prototype.hasOwnProperty.call(prot, "isPrototypeOf") === false) {
        return false;
    }
    return true;
}
function shallowClone(o) {
    if (isPlainObject(o))
        return { ...o };
    if (Array.isArray(o))
        return [...o];
    if (o instanceof Map)
        return new Map(o);
    if (o instanceof Set)
        return new Set(o);
    return o;
}
function numKeys(data) {
    let keyCount = 0;
    for (const key in data) {
        if (Object.prototype.hasOwnProperty.call(data, key)) {
            keyCount++;
        }
    }
    return keyCount;
}
const getParsedType = (data) => {
    const t = typeof data;
    switch (t) {
        case "undefined":
            return "undefined";
        case "string":
            return "string";
        case "number":
            return Number.isNaN(data) ? "nan" : "number";
        case "boolean":
            return "boolean";
        case "function":
            return "function";
        case "bigint":
            return "bigint";
        case "symbol":
            return "symbol";
        case "object":
            if (Array.isArray(data)) {
                return "array";
            }
            if (data === null) {
                return "null";
            }
            if (data.then && typeof data.then === "function" && data.catch && typeof data.catch === "function") {
                return "promise";
            }
            if (typeof Map !== "undefined" && data instanceof Map) {
                return "map";
            }
            if (typeof Set !== "undefined" && data instanceof Set) {
                return "set";
            }
            if (typeof Date !== "undefined" && data instanceof Date) {
                return "date";
            }
            // @ts-ignore
            if (typeof File !== "undefined" && data instanceof File) {
                return "file";
            }
            return "object";
        default:
            throw new Error(`Unknown data type: ${t}`);
    }
};
const propertyKeyTypes = /* @__PURE__*/ new Set(["string", "number", "symbol"]);
const primitiveTypes = /* @__PURE__*/ new Set([
    "string",
    "number",
    "bigint",
    "boolean",
    "symbol",
    "undefined",
]);
function escapeRegex(str) {
    return str.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
// zod-specific utils
function clone(inst, def, params) {
    const cl = new inst._zod.constr(def ?? inst._zod.def);
    if (!def || params?.parent)
        cl._zod.parent = inst;
    return cl;
}
function normalizeParams(_params) {
    const params = _params;
    if (!params)
        return {};
    if (typeof params === "string")
        return { error: () => params };
    if (params?.message !== undefined) {
        if (params?.error !== undefined)
            throw new Error("Cannot specify both `message` and `error` params");
        params.error = params.message;
    }
    delete params.message;
    if (typeof params.error === "string")
        return { ...params, error: () => params.error };
    return params;
}
function createTransparentProxy(getter) {
    let target;
    return new Proxy({}, {
        get(_, prop, receiver) {
            target ?? (target = getter());
            return Reflect.get(target, prop, receiver);
        },
        set(_, prop, value, receiver) {
            target ?? (target = getter());
            return Reflect.set(target, prop, value, receiver);
        },
        has(_, prop) {
            target ?? (target = getter());
            return Reflect.has(target, prop);
        },
        deleteProperty(_, prop) {
            target ?? (target = getter());
            return Reflect.deleteProperty(target, prop);
        },
        ownKeys(_) {
            target ?? (target = getter());
            return Reflect.ownKeys(target);
        },
        getOwnPropertyDescriptor(_, prop) {
            target ?? (target = getter());
            return Reflect.getOwnPropertyDescriptor(target, prop);
        },
        defineProperty(_, prop, descriptor) {
            target ?? (target = getter());
            return Reflect.defineProperty(target, prop, descriptor);
        },
    });
}
function stringifyPrimitive(value) {
    if (typeof value === "bigint")
        return value.toString() + "n";
    if (typeof value === "string")
        return `"${value}"`;
    return `${value}`;
}
function optionalKeys(shape) {
    return Object.keys(shape).filter((k) => {
        return shape[k]._zod.optin !== undefined && shape[k]._zod.optout === "optional";
    });
}
// Wrapped in a `@__PURE__` IIFE: esbuild never tree-shakes a top-level initializer that contains a member access on `Number`, so the bare object literal survived into every bundle.
const NUMBER_FORMAT_RANGES = /*@__PURE__*/ (() => ({
    safeint: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    int32: [-2147483648, 2147483647],
    uint32: [0, 4294967295],
    float32: [-3.4028234663852886e38, 3.4028234663852886e38],
    float64: [-Number.MAX_VALUE, Number.MAX_VALUE],
}))();
const BIGINT_FORMAT_RANGES = {
    int64: [/* @__PURE__*/ BigInt("-9223372036854775808"), /* @__PURE__*/ BigInt("9223372036854775807")],
    uint64: [/* @__PURE__*/ BigInt(0), /* @__PURE__*/ BigInt("18446744073709551615")],
};
function pick(schema, mask) {
    const currDef = schema._zod.def;
    const checks = currDef.checks;
    const hasChecks = checks && checks.length > 0;
    if (hasChecks) {
        throw new Error(".pick() cannot be used on object schemas containing refinements");
    }
    const newShape = {};
    mirrorShape(newShape, schema, maskedKeys(schema, mask));
    return clone(schema, mergeDefs(currDef, { shape: newShape, checks: [] }));
}
// the mask keys that select something, checked against the source's shape without resolving it
function maskedKeys(schema, mask) {
    const raw = sourceShape(schema);
    const keys = [];
    // `for...in` skips symbols, so a symbol in the mask would select nothing
    for (const key of Reflect.ownKeys(mask)) {
        if (!Object.getOwnPropertyDescriptor(raw, key)?.enumerable) {
            throw new Error(`Unrecognized key: "${String(key)}"`);
        }
        if (mask[key])
            keys.push(key);
    }
    return keys;
}
function omit(schema, mask) {
    const currDef = schema._zod.def;
    const checks = currDef.checks;
    const hasChecks = checks && checks.length > 0;
    if (hasChecks) {
        throw new Error(".omit() cannot be used on object schemas containing refinements");
    }
    const omitted = new Set(maskedKeys(schema, mask));
    const newShape = {};
    mirrorShape(newShape, schema, Reflect.ownKeys(sourceShape(schema)).filter((key) => !omitted.has(key)));
    return clone(schema, mergeDefs(currDef, { shape: newShape, checks: [] }));
}
function extend(schema, shape) {
    if (!isPlainObject(shape)) {
        throw new Error("Invalid input to extend: expected a plain object");
    }
    const checks = schema._zod.def.checks;
    const hasChecks = checks && checks.length > 0;
    if (hasChecks) {
        // Only throw if new shape overlaps with existing shape. Use getOwnPropertyDescriptor to check key existence without accessing values
        const existingShape = sourceShape(schema);
        for (const key of Reflect.ownKeys(shape)) {
            if (Object.getOwnPropertyDescriptor(existingShape, key) !== undefined) {
                throw new Error("Cannot overwrite keys on object schemas containing refinements. Use `.safeExtend()` instead.");
            }
        }
    }
    return clone(schema, mergeDefs(schema._zod.def, { shape: extended(schema, shape) }));
}
// the source's keys, then the caller's overlaid on top
function extended(schema, shape) {
    const newShape = {};
    mirrorShape(newShape, schema, Reflect.ownKeys(sourceShape(schema)));
    mirrorProps(newShape, shape);
    return newShape;
}
function safeExtend(schema, shape) {
    if (!isPlainObject(shape)) {
        throw new Error("Invalid input to safeExtend: expected a plain object");
    }
    return clone(schema, mergeDefs(schema._zod.def, { shape: extended(schema, shape) }));
}
function merge(a, b) {
    if (!b?._zod?.def) {
        throw new Error("Invalid input to merge: expected an object schema. To merge a plain shape, use `.extend()`.");
    }
    if (a._zod.def.checks?.length) {
        throw new Error(".merge() cannot be used on object schemas containing refinements. Use .safeExtend() instead.");
    }
    const newShape = {};
    mirrorShape(newShape, a, Reflect.ownKeys(sourceShape(a)));
    mirrorShape(newShape, b, Reflect.ownKeys(sourceShape(b)));
    const def = mergeDefs(a._zod.def, {
        shape: newShape,
        get catchall() {
            return b._zod.def.catchall;
        },
        checks: b._zod.def.checks ?? [],
    });
    return clone(a, def);
}
function partial(Class, schema, mask, name = "partial") {
    const currDef = schema._zod.def;
    const checks = currDef.checks;
    const hasChecks = checks && checks.length > 0;
    if (hasChecks) {
        throw new Error(`.${name}() cannot be used on object schemas containing refinements`);
    }
    const selected = mask ? new Set(maskedKeys(schema, mask)) : undefined;
    const newShape = {};
    mirrorShape(newShape, schema, Reflect.ownKeys(sourceShape(schema)), Class &&
        ((value, key) => (selected && !selected.has(key) ? value : new Class({ type: "optional", innerType: value }))));
    return clone(schema, mergeDefs(schema._zod.def, { shape: newShape, checks: [] }));
}
function required(Class, schema, mask) {
    const selected = mask ? new Set(maskedKeys(schema, mask)) : undefined;
    const newShape = {};
    mirrorShape(newShape, schema, Reflect.ownKeys(sourceShape(schema)), (value, key) => 
    // overwrite with non-optional
    selected && !selected.has(key) ? value : new Class({ type: "nonoptional", innerType: value }));
    return clone(schema, mergeDefs(schema._zod.def, { shape: newShape }));
}
// invalid_type | too_big | too_small | invalid_format | not_multiple_of | unrecognized_keys | invalid_union | invalid_key | invalid_element | invalid_value | custom
function aborted(x, startIndex = 0) {
    if (x.aborted === true)
        return true;
    for (let i = startIndex; i < x.issues.length; i++) {
        if (x.issues[i]?.continue !== true) {
            return true;
        }
    }
    return false;
}
// Checks for explicit abort (continue === false), as opposed to implicit abort (continue === undefined). Used to respect `abort: true` in .refine() even for checks that have a `when` function.
function explicitlyAborted(x, startIndex = 0) {
    if (x.aborted === true)
        return true;
    for (let i = startIndex; i < x.issues.length; i++) {
        if (x.issues[i]?.continue === false) {
            return true;
        }
    }
    return false;
}
function prefixIssues(path, issues) {
    return issues.map((iss) => {
        var _a;
        (_a = iss).path ?? (_a.path = []);
        iss.path.unshift(path);
        return iss;
    });
}
function unwrapMessage(message) {
    return typeof message === "string" ? message : message?.message;
}
/* A check holds no link back to the schema it is attached to \u2014 the same check instance is shared by every clone of that schema \u2014 so the owner is stamped onto the issues a check just raised, at the only point where both are in scope. Runs on the failure path only; `start` is the issue count from before the check ran. */
/** The leading size checks of `defChecks` that set an upper bound, each paired with it. */
function sizeCaps(defChecks) {
    const caps = [];
    for (const ch of defChecks ?? []) {
        const d = ch._zod.def;
        // a later check may rewrite the value
        if (!/_(length|size)$|_equals$/.test(d.check))
            break;
        const max = d.maximum ?? d.length ?? d.size;
        if (max >= 0)
            caps.push([max, ch]);
    }
    return caps;
}
function attachSchema(issues, start, inst) {
    var _a;
    for (let i = start; i < issues.length; i++) {
        (_a = issues[i]).schema ?? (_a.schema = inst);
    }
}
function finalizeIssue(iss, ctx, config) {
    var _a;
    // A schema that raised an issue itself owns it outright, and outranks any stamp an enclosing check left in `attachSchema`. String formats and z.custom() are schema and check at once, so when they act as a check they defer to that stamp instead.
    const traits = iss.inst?._zod?.traits;
    if (traits?.has("$ZodType")) {
        if (traits.has("$ZodCheck"))
            (_a = iss).schema ?? (_a.schema = iss.inst);
        else
            iss.schema = iss.inst;
    }
    // Decreasing specificity, first map to return a message wins. `inst` is whatever raised the issue, so a check's own map outranks the owning schema's.
    const schemaError = iss.schema !== iss.inst ? iss.schema?._zod.def?.error : undefined;
    const message = iss.message
        ? iss.message
        : (unwrapMessage(iss.inst?._zod.def?.error?.(iss)) ??
            unwrapMessage(schemaError?.(iss)) ??
            unwrapMessage(ctx?.error?.(iss)) ??
            unwrapMessage(config.customError?.(iss)) ??
            unwrapMessage(config.localeError?.(iss)) ??
            "Invalid input");
    // an explicit own-key copy beats object rest with excluded keys, which v8 routes through a generic runtime call; Object.keys rather than for-in so an issue pushed with a prototype does not leak inherited keys, and an own __proto__ key is dropped rather than assigned through the setter
    const full = {};
    for (const k of Object.keys(iss)) {
        if (k === "inst" || k === "schema" || k === "continue" || k === "input" || k === "__proto__")
            continue;
        full[k] = iss[k];
    }
    full.path ?? (full.path = []);
    full.message = message;
    if (ctx?.reportInput) {
        full.input = iss.input;
    }
    return full;
}
function getSizableOrigin(input) {
    if (input instanceof Set)
        return "set";
    if (input instanceof Map)
        return "map";
    // @ts-ignore
    if (input instanceof File)
        return "file";
    return "unknown";
}
const highSurrogate = /[\uD800-\uDBFF]/;
// Code points in `str`: a surrogate pair counts once, a lone surrogate as itself. Hand-rolled because the string iterator allocates and runs ~250x slower on this path; the regex probe exits ~50x quicker for a string with no astral characters.
function codePointLength(str) {
    const units = str.length;
    if (!highSurrogate.test(str))
        return units;
    let count = units;
    for (let i = 0; i < units - 1; i++) {
        if ((str.charCodeAt(i) & 0xfc00) === 0xd800 && (str.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
            count--;
            i++;
        }
    }
    return count;
}
function getLengthableOrigin(input) {
    if (Array.isArray(input))
        return "array";
    if (typeof input === "string")
        return "string";
    return "unknown";
}
function parsedType(data) {
    const t = typeof data;
    switch (t) {
        case "number": {
            return Number.isNaN(data) ? "nan" : "number";
        }
        case "object": {
            if (data === null) {
                return "null";
            }
            if (Array.isArray(data)) {
                return "array";
            }
            const obj = data;
            if (obj && Object.getPrototypeOf(obj) !== Object.prototype && "constructor" in obj && obj.constructor) {
                return obj.constructor.name;
            }
        }
    }
    return t;
}
function util_issue(...args) {
    const [iss, input, inst] = args;
    if (typeof iss === "string") {
        return {
            message: iss,
            code: "custom",
            input,
            inst,
        };
    }
    return { ...iss };
}
function cleanEnum(obj) {
    return Object.entries(obj)
        .filter(([k, _]) => {
        // return true if NaN, meaning it's not a number, thus a string key
        return Number.isNaN(Number.parseInt(k, 10));
    })
        .map((el) => el[1]);
}
// Codec utility functions
function base64ToUint8Array(base64) {
    const binaryString = atob(base64);
    const bytes = new Uint8Array(binaryString.length);
    for (let i = 0; i < binaryString.length; i++) {
        bytes[i] = binaryString.charCodeAt(i);
    }
    return bytes;
}
function uint8ArrayToBase64(bytes) {
    let binaryString = "";
    for (let i = 0; i < bytes.length; i++) {
        binaryString += String.fromCharCode(bytes[i]);
    }
    return btoa(binaryString);
}
function base64urlToUint8Array(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const padding = "=".repeat((4 - (base64.length % 4)) % 4);
    return base64ToUint8Array(base64 + padding);
}
function uint8ArrayToBase64url(bytes) {
    return uint8ArrayToBase64(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=/g, "");
}
function hexToUint8Array(hex) {
    const cleanHex = hex.replace(/^0x/, "");
    if (cleanHex.length % 2 !== 0) {
        throw new Error("Invalid hex string length");
    }
    const bytes = new Uint8Array(cleanHex.length / 2);
    for (let i = 0; i < cleanHex.length; i += 2) {
        bytes[i / 2] = Number.parseInt(cleanHex.slice(i, i + 2), 16);
    }
    return bytes;
}
function uint8ArrayToHex(bytes) {
    return Array.from(bytes)
        .map((b) => b.toString(16).padStart(2, "0"))
        .join("");
}
// instanceof
class Class {
    constructor(..._args) { }
}
//////////    PROTOTYPE INSTALLERS     //////////
//
// Members live on the prototype and materialize per instance on first read, which keeps own-property count under the step where V8 stops using inline slots. Changing anything here means re-measuring runtime, memory and bundle size together \u2014 see "The three axes" in AGENTS.md.
/**
 * Installs a trait's members on its prototype. Each value builds that member for the instance on first read; the built value shadows the accessor as an own property, so a detached `const { parse } = schema` keeps working.
 *
 * Call this from a `proto` initializer, which runs once per prototype \u2014 never per instance.
 */
function members(proto, table) {
    for (const key in table) {
        const desc = Object.getOwnPropertyDescriptor(table, key);
        // a getter installs as written, so it stays live: `description` reads through to the registry on every access. not enumerable: an object literal's is, and a prototype member never was
        if (desc.get)
            Object.defineProperty(proto, key, { ...desc, enumerable: false });
        // a method materializes bound on first read, which is what keeps a detached member working: `const opt = schema.optional; opt()`
        else
            defineBound(proto, key, desc.value);
    }
}
/** Shadows a prototype member with an own value, so a getter that builds from the instance runs once. */
function own(inst, key, value, enumerable = true) {
    Object.defineProperty(inst, key, { configurable: true, writable: true, enumerable, value });
    return value;
}
/** Like {@link own}, for a member that was never an own data property and has to stay out of `Object.keys`. */
function hide(inst, key, value) {
    return own(inst, key, value, false);
}
/** Adds members a table derives from the instance: each builds on first read and shadows as own data, and assignment shadows the same way, as when these were own properties. */
function derived(computes, table) {
    for (const key in computes) {
        const compute = computes[key];
        // an object literal's accessor is configurable and enumerable, and `members` copies the descriptor as written
        Object.defineProperty(table, key, {
            configurable: true,
            enumerable: true,
            get() {
                return own(this, key, compute(this));
            },
            set(value) {
                own(this, key, value);
            },
        });
    }
    return table;
}
function defineBound(proto, key, fn) {
    Object.defineProperty(proto, key, {
        configurable: true,
        get() {
            // vitest's spyOn calls a prototype getter bare to find the function it wraps, so a nullish receiver answers the raw method
            return this == null ? fn : own(this, key, fn.bind(this));
        },
        set(value) {
            own(this, key, value);
        },
    });
}
/** Returns the prototype to install on, or `undefined` if this group is already installed on it. */
function claim(inst, sentinel) {
    const proto = Object.getPrototypeOf(inst);
    // Runs on every construction, so `in` rather than the costlier `hasOwnProperty.call`. Sentinels are keys the group itself defines.
    return sentinel in proto ? undefined : proto;
}
// The internals whose init chain is installing. A second call for the same one is a derived constructor overriding its base, so it must not construct another schema in between or the override is dropped.
let installing;
// Set while a getter is running, so a value that resolved through a recursion break is not memoized. One shared descriptor shadows the key for the duration, which costs no per-key allocation.
let broke = false;
const breaker = {
    configurable: true,
    get() {
        broke = true;
        return undefined;
    },
};
/**
 * Installs a lazily-derived internal on the `_zod` prototype of `inst`'s
 * constructor, computed from the internals object itself and cached there on
 * first read. One accessor per constructor rather than one per instance.
 */
function defineLazyInternal(inst, key, compute) {
    const proto = Object.getPrototypeOf(inst._zod);
    if (key in proto && installing !== inst._zod) {
        // A repeat construction: everything is installed already. Cleared here so the reference is not held past the first construction of every type.
        installing = undefined;
        return;
    }
    installing = inst._zod;
    Object.defineProperty(proto, key, {
        configurable: true,
        get() {
            // Shadowed before computing so a re-entrant read from a recursive schema resolves to undefined instead of running the getter again.
            Object.defineProperty(this, key, breaker);
            const outer = broke;
            broke = false;
            try {
                const value = compute(this);
                // A result that resolved through a recursion break is recomputed once the graph is complete; everything else memoizes, undefined included.
                if (broke)
                    delete this[key];
                else
                    Object.defineProperty(this, key, { configurable: true, writable: true, value });
                broke = broke || outer;
                return value;
            }
            catch (err) {
                // A compute that threw memoizes nothing, so a later read runs it again and fails the same way. The shadow goes with it, since leaving it installed would answer undefined for every later read.
                delete this[key];
                broke = broke || outer;
                throw err;
            }
        },
        set(value) {
            Object.defineProperty(this, key, { configurable: true, writable: true, value });
        },
    });
}
/**
 * Installs `key` on `inst`'s prototype, computed by `make` on first read and cached there as an own
 * data property. One accessor per constructor rather than one per instance, because an own accessor
 * puts every instance after the first into v8 dictionary mode. The key doubles as the sentinel.
 */
function installLazyProp(inst, key, make, enumerable) {
    const proto = claim(inst, key);
    if (!proto)
        return;
    Object.defineProperty(proto, key, {
        configurable: true,
        get() {
            // Shadowed before computing, so a re-entrant read from a self-referential shape resolves to undefined instead of running the getter again. A data property rather than an accessor: an own accessor is the dictionary-mode transition this exists to avoid.
            const desc = { configurable: true, writable: true, enumerable, value: undefined };
            Object.defineProperty(this, key, desc);
            // a compute that throws leaves the shadow behind, so later reads answer undefined instead of re-throwing; `defineLazy` did the same, and `defineLazyInternal`'s delete-on-catch would cost bytes in every bundle for a case only a throwing user getter reaches
            desc.value = make(this);
            Object.defineProperty(this, key, desc);
            return desc.value;
        },
        set(value) {
            Object.defineProperty(this, key, { configurable: true, writable: true, enumerable, value });
        },
    });
}
/** Marks the thunk `_catch` synthesises for a constant catch value. `Function.length` cannot tell that thunk from a user callback \u2014 rest and defaulted parameters both report arity 0 \u2014 and a user callback reads `ctx.error`, whose issues only finalize correctly against the caller's per-parse error map. Provenance can say what arity cannot. A plain string key rather than `Symbol.for`, whose call at module scope no bundler can prove pure \u2014 the same shape that anchored `urlCanParse` into every build. */
const CONSTANT_CATCH = "~constantCatch";
/** Wraps a constant catch value in a thunk tagged with {@link CONSTANT_CATCH}. */
function constantCatch(value) {
    const fn = () => value;
    fn[CONSTANT_CATCH] = true;
    return fn;
}

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/core.js
var _a;

/** A special constant with type `never` */
const NEVER = /*@__PURE__*/ Object.freeze({
    status: "aborted",
});
/* Shared descriptor for installing `_zod`; defineProperty reads it
 * synchronously, so reusing one object avoids a per-instance allocation. */
const _zodDesc = { value: undefined, enumerable: false };
// null where suppressing the capture would be unrecoverable: `parse()` puts the frames back with `captureStackTrace`, so without it the throw would lose its stack. also latched to null once `stackTraceLimit` proves unassignable, which a realm can do at any point by hardening Error
let _E = "captureStackTrace" in Error ? Error : null;
// v8 captures a stack trace inside the Error constructor, which dominates a failed parse; costs only the frames, and parse() restores those. the constructor must RUN: Object.create is cheaper and passes instanceof, but Error.isError and util.types.isNativeError check an internal slot
function newError(Definition) {
    const E = _E;
    if (E) {
        const saved = E.stackTraceLimit;
        if (typeof saved === "number") {
            try {
                E.stackTraceLimit = 0;
            }
            catch {
                _E = null;
                return new Definition();
            }
            try {
                return new Definition();
            }
            finally {
                E.stackTraceLimit = saved;
            }
        }
    }
    return new Definition();
}
function $constructor(name, initializer, 
/** This trait's members, installed once on every prototype that composes it. They cannot be declared in the initializer above: that runs per instance, and the prototype is shared. */
proto, params) {
    // Prototype for this constructor's `_zod` internals. Lazily-derived fields (`values`, `pattern`, `optin`, \u2026) install here once rather than as an accessor on every instance.
    const zodProto = {};
    // Assigning the fields in the constructor body is what gives instances in-object slots; building the object literally and reparenting it costs a second allocation and a generic property copy.
    function Internals(def) {
        this.def = def;
        this.constr = _;
        this.traits = new Set();
    }
    Internals.prototype = zodProto;
    const protoMembers = proto;
    // One trait's members land on every prototype whose chain composes it, so the answer is per prototype rather than per trait.
    const initialized = protoMembers && new WeakSet();
    function init(inst, def) {
        if (!inst._zod) {
            _zodDesc.value = new Internals(def);
            try {
                Object.defineProperty(inst, "_zod", _zodDesc);
            }
            finally {
                // Cleared even on throw, so the shared descriptor never leaks one instance's internals into the next.
                _zodDesc.value = undefined;
            }
        }
        else if (inst._zod.traits.has(name)) {
            return;
        }
        inst._zod.traits.add(name);
        initializer(inst, def);
        if (initialized) {
            // `super(def)` from a user subclass gives `this` a prototype the subclass owns, and installing there would overwrite whatever the subclass declared. `constr` built the instance, so its prototype is the one below the subclass's that should carry the members. A receiver whose chain never reaches that prototype installs on its own, which for a plain object handed straight to `init` means `Object.prototype` \u2014 unchanged from before.
            const own = Object.getPrototypeOf(inst);
            const ctorProto = inst._zod.constr.prototype;
            let up = own;
            while (up && up !== ctorProto)
                up = Object.getPrototypeOf(up);
            const target = up ?? own;
            if (!initialized.has(target)) {
                initialized.add(target);
                members(target, protoMembers);
            }
        }
        // support prototype modifications; for-in avoids the array allocation of Object.keys on the (usually empty) prototype
        const proto = _.prototype;
        for (const k in proto) {
            if (!Object.prototype.hasOwnProperty.call(proto, k))
                continue;
            if (!(k in inst)) {
                inst[k] = proto[k].bind(inst);
            }
        }
    }
    // doesn't work if Parent has a constructor with arguments
    const Parent = params?.Parent ?? Object;
    class Definition extends Parent {
    }
    Object.defineProperty(Definition, "name", { value: name });
    function _(def) {
        const inst = params?.Parent ? newError(Definition) : this;
        init(inst, def);
        const deferred = inst._zod.deferred;
        if (deferred) {
            for (const fn of deferred) {
                fn();
            }
            // Released: initializers run once, and the list would otherwise be retained for the schema's lifetime.
            inst._zod.deferred = undefined;
        }
        // Global post-processor hook. Internal: installed by `import "zod/compile"` to enable AOT compilation for every constructed schema. Runs last, once the instance is fully built, because it hands the instance to compile(). The post-processor is expected to be reentrancy-guarded by its own implementation.
        const pp = globalThis.__zod_globalConfig?.postProcessor;
        if (pp)
            pp(inst);
        return inst;
    }
    Object.defineProperty(_, "init", { value: init });
    Object.defineProperty(_, Symbol.hasInstance, {
        value: (inst) => {
            if (params?.Parent && inst instanceof params.Parent)
                return true;
            return inst?._zod?.traits?.has(name);
        },
    });
    Object.defineProperty(_, "name", { value: name });
    return _;
}
//////////////////////////////   UTILITIES   ///////////////////////////////////////
const $brand = /*@__PURE__*/ (/* unused pure expression or super */ null && (Symbol("zod_brand")));
class $ZodAsyncError extends Error {
    constructor() {
        super(`Encountered Promise during synchronous parse. Use .parseAsync() instead.`);
    }
}
class $ZodEncodeError extends Error {
    constructor(name) {
        super(`Encountered unidirectional transform during encode: ${name}`);
        this.name = "ZodEncodeError";
    }
}
(_a = globalThis).__zod_globalConfig ?? (_a.__zod_globalConfig = {});
const globalConfig = globalThis.__zod_globalConfig;
function config(newConfig) {
    if (newConfig)
        Object.assign(globalConfig, newConfig);
    return globalConfig;
}

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/memoizer.js

class $ZodCyclicError extends Error {
    constructor() {
        super(`Cannot parse a reference cycle that closes through a transform`);
        this.name = "ZodCyclicError";
    }
}
/** Keyed off the context object every schema in one parse call already shares. */
const STATE = "~memo";
const NO_ISSUES = [];
// a value a cycle can close through
function isRef(value) {
    return value !== null && typeof value === "object";
}
// Receivers prefix paths in place, so the cache and every hand-out need their own copies.
function cloneIssues(issues) {
    return issues.map((iss) => (iss.path ? { ...iss, path: iss.path.slice() } : { ...iss }));
}
const recursive = /*@__PURE__*/ new WeakMap();
/** What the walk established, in order of certainty: ordered so the strongest answer among children wins. */
const NONE = 0;
const ASSUMED = 1;
const PROVEN = 2;
/** Whether this schema's subtree contains a cycle, so one parse can re-enter it. */
function isRecursive(inst, stack, resolve) {
    const cached = recursive.get(inst);
    if (cached !== undefined)
        return cached ? PROVEN : NONE;
    // Relative to the walk in progress, so not cached.
    if (stack.has(inst))
        return PROVEN;
    stack.add(inst);
    let result = NONE;
    const check = (child) => {
        if (result !== PROVEN && child?._zod) {
            const answer = isRecursive(child, stack, resolve);
            if (answer > result)
                result = answer;
        }
    };
    // `Reflect.ownKeys` rather than `Object.keys`, so a cycle through a declared symbol key is still seen
    const shape = (sh, spread) => {
        let answer = NONE;
        for (const key of Reflect.ownKeys(sh)) {
            const desc = Object.getOwnPropertyDescriptor(sh, key);
            // an object resolves its shape by spread, so a key it does not enumerate is never parsed; `z.properties` reads every own key and so keeps them all
            if (spread && !desc.enumerable)
                continue;
            // resolving runs user code, and a factory mints a fresh subtree per read, so an edge the walk can't follow counts as a cycle
            const child = desc.get ? ASSUMED : desc.value?._zod ? isRecursive(desc.value, stack, resolve) : NONE;
            if (child > answer)
                answer = child;
        }
        return answer;
    };
    const merge = (answer) => {
        if (answer > result)
            result = answer;
    };
    const def = inst._zod.def;
    const kind = def.type;
    switch (kind) {
        case "object": {
            const raw = rawShape(def);
            // a def with no raw shape answers `shape` from an accessor of its own, and running that can mint a whole fresh subtree
            merge(raw ? shape(raw, true) : ASSUMED);
            check(def.catchall);
            break;
        }
        case "array":
            check(def.element);
            break;
        case "tuple":
            for (const el of def.items)
                check(el);
            check(def.rest);
            break;
        case "record":
        case "map":
            check(def.keyType);
            check(def.valueType);
            break;
        case "set":
            check(def.valueType);
            break;
        case "union":
            for (const el of def.options)
                check(el);
            break;
        case "intersection":
            check(def.left);
            check(def.right);
            break;
        case "optional":
        case "nullable":
        case "default":
        case "prefault":
        case "catch":
        case "readonly":
        case "nonoptional":
        case "promise":
        case "success":
            check(def.innerType);
            break;
        case "pipe":
            check(def.in);
            check(def.out);
            break;
        case "function":
            check(def.input);
            check(def.output);
            break;
        // `$ZodLazy` caches its inner on the def, so a resolved edge is followed exactly
        case "lazy": {
            const inner = def._cachedInner ?? (resolve ? inst._zod.innerType : undefined);
            // walked with resolution off: one hop sees past the deferral, and a lazy that yields only another unresolved lazy is generative, so it stops there
            merge(inner ? isRecursive(inner, stack, false) : ASSUMED);
            break;
        }
        // a leaf by choice: `parts` are regex fragments, not data positions
        case "template_literal":
        // leaves
        case "string":
        case "number":
        case "int":
        case "boolean":
        case "bigint":
        case "symbol":
        case "undefined":
        case "null":
        case "void":
        case "never":
        case "any":
        case "unknown":
        case "date":
        case "nan":
        case "enum":
        case "literal":
        case "file":
        case "transform":
        case "custom":
            break;
        default: {
            // a new built-in kind becomes a compile error here
            kind;
            // a user-defined kind can still hold children, and only its author knows where, so fall back to scanning the def \u2014 skipping accessors, since reading one can run user code
            for (const key in def) {
                const desc = Object.getOwnPropertyDescriptor(def, key);
                if (!desc || desc.get)
                    continue;
                const value = desc.value;
                if (!value || typeof value !== "object")
                    continue;
                if (value._zod)
                    check(value);
                else if (Array.isArray(value))
                    for (const el of value)
                        check(el);
            }
        }
    }
    stack.delete(inst);
    return settle(inst, result);
}
/** An assumed answer must not outlive the resolution that settles it, so only a certain one is cached. */
function settle(inst, answer) {
    if (answer !== ASSUMED)
        recursive.set(inst, answer === PROVEN);
    return answer;
}
/**
 * Whether one parse can re-enter this schema, i.e. its subtree contains a cycle.
 * Exported for `z.compile`, which refuses to compile such a schema: cycle
 * breaking is driven from here off state keyed on the parse context, and a
 * generated fast path has no context to key on.
 */
function isRecursiveSchema(inst) {
    // z.compile never parses, so nothing would ever resolve a lazy for it; it runs once and already treats a throw here as recursive
    return isRecursive(inst, new Set(), true) !== NONE;
}
function bucketFor(state, inst) {
    let bucket = state.buckets.get(inst);
    if (!bucket) {
        bucket = new WeakMap();
        state.buckets.set(inst, bucket);
    }
    return bucket;
}
// Set immediately before delegating to core and cleared immediately after, so `alloc` registers only for a visit this module is driving.
let handoff;
// Allocated but unfinished entries. `alloc` and the matching pop both happen in the synchronous part of a parse, so they nest even when children are async, and one stack serves every schema.
const memoizer_open = [];
const memo = {
    alloc(_inst, payload, empty) {
        const bucket = handoff;
        if (!bucket)
            return empty;
        handoff = undefined;
        const entry = { value: empty, issues: null };
        bucket.set(payload.value, entry);
        memoizer_open.push(entry);
        return empty;
    },
    guard(inst) {
        var _a;
        (_a = inst._zod).deferred ?? (_a.deferred = []);
        inst._zod.deferred.push(() => {
            const base = inst._zod.parse;
            const wrapped = (payload, ctx) => {
                // The value is a placeholder a back-edge is still waiting on, so the cycle closes through this transform. Its output can't exist in time to bind.
                if (ctx.direction !== "backward" && isBackEdge(ctx, payload.value))
                    throw new $ZodCyclicError();
                return base(payload, ctx);
            };
            inst._zod.parse = wrapped;
            if (inst._zod.run === base)
                inst._zod.run = wrapped;
        });
    },
    attach(inst) {
        var _a;
        let isRecursiveInst;
        let rechecked = false;
        // a recursive schema is re-entered many times per parse and its bucket never changes
        let lastCtx;
        let lastBucket;
        // Wraps `parse` in a deferred so it sees the container's final parse. Core's own deferred copies `parse` into `run` when there are no checks, and it ran first, so `run` is patched to match; with checks, `run` reads `parse` dynamically.
        (_a = inst._zod).deferred ?? (_a.deferred = []);
        inst._zod.deferred.push(() => {
            const base = inst._zod.parse;
            const wrapped = (payload, ctx) => {
                if (isRecursiveInst === undefined) {
                    const walked = isRecursive(inst, new Set(), false);
                    if (walked === NONE) {
                        // Nothing here can ever fire, so take it back out.
                        inst._zod.parse = base;
                        if (inst._zod.run === wrapped)
                            inst._zod.run = base;
                        return base(payload, ctx);
                    }
                    // this parse resolves the deferred edges on its own path, so ask once more before latching
                    if (walked === PROVEN || rechecked)
                        isRecursiveInst = true;
                    else
                        rechecked = true;
                }
                const input = payload.value;
                if (!isRef(input))
                    return base(payload, ctx);
                let state = ctx[STATE];
                if (!state) {
                    state = { buckets: new WeakMap(), backEdges: undefined };
                    ctx[STATE] = state;
                }
                let bucket;
                if (lastCtx === ctx) {
                    bucket = lastBucket;
                }
                else {
                    bucket = bucketFor(state, inst);
                    lastCtx = ctx;
                    lastBucket = bucket;
                }
                const hit = bucket.get(input);
                if (hit) {
                    payload.value = hit.value;
                    if (hit.issues) {
                        if (hit.issues.length)
                            payload.issues.push(...cloneIssues(hit.issues));
                    }
                    else {
                        // Still being parsed: its own checks cover it, so skip them here.
                        payload.memo = true;
                        state.backEdges ?? (state.backEdges = new WeakSet());
                        state.backEdges.add(hit.value);
                    }
                    return payload;
                }
                handoff = bucket;
                const depth = memoizer_open.length;
                const result = base(payload, ctx);
                handoff = undefined;
                // A container that rejected its input outright allocated nothing.
                const entry = memoizer_open.length > depth ? memoizer_open.pop() : undefined;
                // Both paths written out so the sync one allocates no closure. It runs once per node, and capturing here cost more than everything else combined.
                if (result instanceof Promise) {
                    return result.then((r) => {
                        if (entry)
                            entry.issues = r.issues.length ? cloneIssues(r.issues) : NO_ISSUES;
                        return r;
                    });
                }
                if (entry)
                    entry.issues = result.issues.length ? cloneIssues(result.issues) : NO_ISSUES;
                return result;
            };
            inst._zod.parse = wrapped;
            if (inst._zod.run === base)
                inst._zod.run = wrapped;
        });
    },
};
/** The memoizer that gives containers cycle support. `zod` installs it by default; `zod/mini` opts in with `config({ memoizer: memoizer() })`. */
function memoizer() {
    return memo;
}
/** Whether this value is a node a back-edge resolved to before it finished. */
function isBackEdge(ctx, value) {
    const backEdges = ctx[STATE]?.backEdges;
    return backEdges !== undefined && isRef(value) && backEdges.has(value);
}

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/regexes.js

/**
 * @deprecated CUID v1 is deprecated by its authors due to information leakage
 * (timestamps embedded in the id). Use {@link cuid2} instead.
 * See https://github.com/paralleldrive/cuid.
 */
const cuid = /^[cC][0-9a-z]{6,}$/;
const cuid2 = /^[0-9a-z]+$/;
const ulid = /^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$/;
const xid = /^[0-9a-vA-V]{20}$/;
const ksuid = /^[A-Za-z0-9]{27}$/;
const nanoid = /^[a-zA-Z0-9_-]{21}$/;
function nanoidOfLength(length) {
    return new RegExp(`^[a-zA-Z0-9_-]{${length}}$`);
}
/** ISO 8601-1 duration regex. Does not support the 8601-2 extensions like negative durations or fractional/negative components. */
const duration = /^P(?:(\d+W)|(?!.*W)(?=\d|T\d)(\d+Y)?(\d+M)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+([.,]\d+)?S)?)?)$/;
/** Implements ISO 8601-2 extensions like explicit +- prefixes, mixing weeks with other units, and fractional/negative components. */
const extendedDuration = /^[-+]?P(?!$)(?:(?:[-+]?\d+Y)|(?:[-+]?\d+[.,]\d+Y$))?(?:(?:[-+]?\d+M)|(?:[-+]?\d+[.,]\d+M$))?(?:(?:[-+]?\d+W)|(?:[-+]?\d+[.,]\d+W$))?(?:(?:[-+]?\d+D)|(?:[-+]?\d+[.,]\d+D$))?(?:T(?=[\d+-])(?:(?:[-+]?\d+H)|(?:[-+]?\d+[.,]\d+H$))?(?:(?:[-+]?\d+M)|(?:[-+]?\d+[.,]\d+M$))?(?:[-+]?\d+(?:[.,]\d+)?S)?)??$/;
/** A regex for any UUID-like identifier: 8-4-4-4-12 hex pattern */
const guid = /^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$/;
/** Returns a regex for validating an RFC 9562/4122 UUID.
 *
 * @param version Optionally specify a version 1-8. If no version is specified, all versions are supported. */
const uuid = (version) => {
    if (!version)
        return /^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}|00000000-0000-0000-0000-000000000000|ffffffff-ffff-ffff-ffff-ffffffffffff)$/;
    return new RegExp(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-${version}[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12})$`);
};
const uuid4 = /*@__PURE__*/ (/* unused pure expression or super */ null && (uuid(4)));
const uuid6 = /*@__PURE__*/ (/* unused pure expression or super */ null && (uuid(6)));
const uuid7 = /*@__PURE__*/ (/* unused pure expression or super */ null && (uuid(7)));
/** Practical email validation */
const email = /^(?:[A-Za-z0-9_'+\-]+\.)*[A-Za-z0-9_'+\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$/;
/** Equivalent to the HTML5 input[type=email] validation implemented by browsers. Source: https://developer.mozilla.org/en-US/docs/Web/HTML/Element/input/email */
const html5Email = /^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;
/** The classic emailregex.com regex for RFC 5322-compliant emails */
const rfc5322Email = /^(([^<>()\[\]\\.,;:\s@"]+(\.[^<>()\[\]\\.,;:\s@"]+)*)|(".+"))@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}])|(([a-zA-Z\-0-9]+\.)+[a-zA-Z]{2,}))$/;
/** A loose regex that allows Unicode characters, enforces length limits, and that's about it. */
const unicodeEmail = /^[^\s@"]{1,64}@[^\s@]{1,255}$/u;
const idnEmail = (/* unused pure expression or super */ null && (unicodeEmail));
const browserEmail = /^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;
// from https://thekevinscott.com/emojis-in-javascript/#writing-a-regular-expression
// Single character class, not an alternation: the two properties overlap (U+1F9B0-U+1F9B3), so `(A|B)+` backtracks exponentially on a failed match. The leading lookahead then demands one anchor \u2014 a pictograph, a regional indicator, or the enclosing keycap \u2014 because `\p{Emoji_Component}` on its own covers ASCII digits, `#`, `*`, ZWJ, variation selectors and skin tone modifiers, none of which is an emoji without a base.
const _emoji = `^(?=[\\s\\S]*[\\p{Extended_Pictographic}\\p{Regional_Indicator}\\u20E3])[\\p{Extended_Pictographic}\\p{Emoji_Component}]+$`;
function emoji() {
    return new RegExp(_emoji, "u");
}
const ipv4 = /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])$/;
const ipv6 = /^(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:((:[0-9a-fA-F]{1,4}){1,6})|:((:[0-9a-fA-F]{1,4}){1,7}|:))$/;
const mac = (delimiter) => {
    const escapedDelim = util.escapeRegex(delimiter ?? ":");
    return new RegExp(`^(?:[0-9A-F]{2}${escapedDelim}){5}[0-9A-F]{2}$|^(?:[0-9a-f]{2}${escapedDelim}){5}[0-9a-f]{2}$`);
};
const cidrv4 = /^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])\/([0-9]|[1-2][0-9]|3[0-2])$/;
const cidrv6 = /^(([0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,7}:|([0-9a-fA-F]{1,4}:){1,6}:[0-9a-fA-F]{1,4}|([0-9a-fA-F]{1,4}:){1,5}(:[0-9a-fA-F]{1,4}){1,2}|([0-9a-fA-F]{1,4}:){1,4}(:[0-9a-fA-F]{1,4}){1,3}|([0-9a-fA-F]{1,4}:){1,3}(:[0-9a-fA-F]{1,4}){1,4}|([0-9a-fA-F]{1,4}:){1,2}(:[0-9a-fA-F]{1,4}){1,5}|[0-9a-fA-F]{1,4}:((:[0-9a-fA-F]{1,4}){1,6})|:((:[0-9a-fA-F]{1,4}){1,7}|:))\/(12[0-8]|1[01][0-9]|[1-9]?[0-9])$/;
// https://stackoverflow.com/questions/7860392/determine-if-string-is-in-base64-using-javascript
const base64 = /^$|^(?:[0-9a-zA-Z+/]{4})*(?:(?:[0-9a-zA-Z+/]{2}==)|(?:[0-9a-zA-Z+/]{3}=))?$/;
const base64url = /^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$/;
// based on https://stackoverflow.com/questions/106179/regular-expression-to-match-dns-hostname-or-ip-address
// export const hostname: RegExp = /^([a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+$/;
const hostname = /^(?=.{1,253}\.?$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[-0-9a-zA-Z]{0,61}[0-9a-zA-Z])?)*\.?$/;
const domain = /^(?=.{1,253}$)([a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$/;
const httpProtocol = /^https?$/;
// https://blog.stevenlevithan.com/archives/validate-phone-number#r4-3 (regex sans spaces) E.164: leading digit must be 1-9; total digits (excluding '+') between 7-15
const e164 = /^\+[1-9]\d{6,14}$/;
// Credit card shape: 12\u201319 digits, optionally separated by single spaces or single hyphens. ISO/IEC 7812 caps the PAN at 19 digits; 12 is the shortest issued length (Maestro).
const creditCard = /^\d(?:[ -]?\d){11,18}$/;
// ISO 4217 alpha codes from the SIX list, regenerated by scripts/update-iso-4217.ts
const currencyCode = /^(?:AED|AFN|ALL|AMD|AOA|ARS|AUD|AWG|AZN|BAM|BBD|BDT|BHD|BIF|BMD|BND|BOB|BOV|BRL|BSD|BTN|BWP|BYN|BZD|CAD|CDF|CHE|CHF|CHW|CLF|CLP|CNY|COP|COU|CRC|CUP|CVE|CZK|DJF|DKK|DOP|DZD|EGP|ERN|ETB|EUR|FJD|FKP|GBP|GEL|GHS|GIP|GMD|GNF|GTQ|GYD|HKD|HNL|HTG|HUF|IDR|ILS|INR|IQD|IRR|ISK|JMD|JOD|JPY|KES|KGS|KHR|KMF|KPW|KRW|KWD|KYD|KZT|LAK|LBP|LKR|LRD|LSL|LYD|MAD|MDL|MGA|MKD|MMK|MNT|MOP|MRU|MUR|MVR|MWK|MXN|MXV|MYR|MZN|NAD|NGN|NIO|NOK|NPR|NZD|OMR|PAB|PEN|PGK|PHP|PKR|PLN|PYG|QAR|RON|RSD|RUB|RWF|SAR|SBD|SCR|SDG|SEK|SGD|SHP|SLE|SOS|SRD|SSP|STN|SVC|SYP|SZL|THB|TJS|TMT|TND|TOP|TRY|TTD|TWD|TZS|UAH|UGX|USD|USN|UYI|UYU|UYW|UZS|VED|VES|VND|VUV|WST|XAD|XAF|XAG|XAU|XBA|XBB|XBC|XBD|XCD|XCG|XDR|XOF|XPD|XPF|XPT|XSU|XTS|XUA|XXX|YER|ZAR|ZMW|ZWG)$/;
// iban electronic format: 2-letter country, check digits 02-98 (the only values `98 - remainder` can produce), 11-30 bban characters
const iban = /^[A-Z]{2}(?!00|01|99)\d{2}[A-Z0-9]{11,30}$/;
const dateSource = `(?:(?:\\d\\d[2468][048]|\\d\\d[13579][26]|\\d\\d0[48]|[02468][048]00|[13579][26]00)-02-29|\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|(?:02)-(?:0[1-9]|1\\d|2[0-8])))`;
/** Anchors a pattern source. The interpolation lives here rather than at the call site because
 * esbuild will not drop a `@__PURE__` call whose own argument interpolates a variable, but it
 * will drop `anchor(dateSource)`. Keeping it inline pinned `date` into every bundle. */
function regexes_anchor(source) {
    return new RegExp(`^${source}$`);
}
const date = /*@__PURE__*/ regexes_anchor(dateSource);
function timeSource(args) {
    const hhmm = `(?:[01]\\d|2[0-3]):[0-5]\\d`;
    const regex = typeof args.precision === "number"
        ? args.precision === -1
            ? `${hhmm}`
            : args.precision === 0
                ? `${hhmm}:[0-5]\\d`
                : `${hhmm}:[0-5]\\d\\.\\d{${args.precision}}`
        : args.seconds
            ? `${hhmm}:[0-5]\\d(?:\\.\\d+)?`
            : `${hhmm}(?::[0-5]\\d(?:\\.\\d+)?)?`;
    return regex;
}
function time(args) {
    return new RegExp(`^${timeSource(args)}$`);
}
// Adapted from https://stackoverflow.com/a/3143231
function datetime(args) {
    const opts = ["Z"];
    // if (args.offset) opts.push(`([+-]\\d{2}:\\d{2})`);
    if (args.offset)
        opts.push(`([+-](?:[01]\\d|2[0-3]):[0-5]\\d)`);
    // RFC 3339 mandates seconds wherever the time carries a `Z` or an offset, so only the unqualified form `local` adds may omit them
    const qualified = `${timeSource({ precision: args.precision, seconds: true })}(?:${opts.join("|")})`;
    const timeRegex = args.local ? `${qualified}|${timeSource({ precision: args.precision })}` : qualified;
    return new RegExp(`^${dateSource}T(?:${timeRegex})$`);
}
// the unbounded form of `string()` as a literal, so every plain string shares one instance instead of building its own
const anyString = /^[\s\S]{0,}$/;
const string = (params) => {
    const regex = params ? `[\\s\\S]{${params?.minimum ?? 0},${params?.maximum ?? ""}}` : `[\\s\\S]*`;
    return new RegExp(`^${regex}$`);
};
const bigint = /^-?\d+n?$/;
const integer = /^-?\d+$/;
const number = /^-?\d+(?:\.\d+)?$/;
const regexes_boolean = /^(?:true|false)$/i;
const _null = /^null$/i;

const _undefined = /^undefined$/i;

// regex for string with no uppercase letters
const lowercase = /^[^A-Z]*$/;
// regex for string with no lowercase letters
const uppercase = /^[^a-z]*$/;
// regex for hexadecimal strings (any length)
const hex = /^[0-9a-fA-F]*$/;
// Hash regexes for different algorithms and encodings
// Helper function to create base64 regex with exact length and padding
function fixedBase64(bodyLength, padding) {
    return new RegExp(`^[A-Za-z0-9+/]{${bodyLength}}${padding}$`);
}
// Helper function to create base64url regex with exact length (no padding)
function fixedBase64url(length) {
    return new RegExp(`^[A-Za-z0-9_-]{${length}}$`);
}
// MD5 (16 bytes): base64 = 24 chars total (22 + "==")
const md5_hex = /^[0-9a-fA-F]{32}$/;
const md5_base64 = /*@__PURE__*/ (/* unused pure expression or super */ null && (fixedBase64(22, "==")));
const md5_base64url = /*@__PURE__*/ (/* unused pure expression or super */ null && (fixedBase64url(22)));
// SHA1 (20 bytes): base64 = 28 chars total (27 + "=")
const sha1_hex = /^[0-9a-fA-F]{40}$/;
const sha1_base64 = /*@__PURE__*/ (/* unused pure expression or super */ null && (fixedBase64(27, "=")));
const sha1_base64url = /*@__PURE__*/ (/* unused pure expression or super */ null && (fixedBase64url(27)));
// SHA256 (32 bytes): base64 = 44 chars total (43 + "=")
const sha256_hex = /^[0-9a-fA-F]{64}$/;
const sha256_base64 = /*@__PURE__*/ (/* unused pure expression or super */ null && (fixedBase64(43, "=")));
const sha256_base64url = /*@__PURE__*/ (/* unused pure expression or super */ null && (fixedBase64url(43)));
// SHA384 (48 bytes): base64 = 64 chars total (no padding)
const sha384_hex = /^[0-9a-fA-F]{96}$/;
const sha384_base64 = /*@__PURE__*/ (/* unused pure expression or super */ null && (fixedBase64(64, "")));
const sha384_base64url = /*@__PURE__*/ (/* unused pure expression or super */ null && (fixedBase64url(64)));
// SHA512 (64 bytes): base64 = 88 chars total (86 + "==")
const sha512_hex = /^[0-9a-fA-F]{128}$/;
const sha512_base64 = /*@__PURE__*/ (/* unused pure expression or super */ null && (fixedBase64(86, "==")));
const sha512_base64url = /*@__PURE__*/ (/* unused pure expression or super */ null && (fixedBase64url(86)));

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/checks.js
// import { $ZodType } from "./schemas.js";



const $ZodCheck = /*@__PURE__*/ $constructor("$ZodCheck", (inst, def) => {
    var _a;
    inst._zod ?? (inst._zod = {});
    inst._zod.def = def;
    (_a = inst._zod).onattach ?? (_a.onattach = []);
});
/** Default `when` for size-based checks: run only on non-nullish values with a `size`. */
const _whenHasSize = (payload) => {
    const val = payload.value;
    return !util.nullish(val) && val.size !== undefined;
};
/** Default `when` for length-based checks: run only on non-nullish values with a `length`. */
const _whenHasLength = (payload) => {
    const val = payload.value;
    return !nullish(val) && val.length !== undefined;
};
const numericOriginMap = {
    number: "number",
    bigint: "bigint",
    object: "date",
};
const $ZodCheckLessThan = /*@__PURE__*/ $constructor("$ZodCheckLessThan", (inst, def) => {
    $ZodCheck.init(inst, def);
    const origin = numericOriginMap[typeof def.value];
    inst._zod.check = (payload) => {
        if (def.inclusive ? payload.value <= def.value : payload.value < def.value) {
            return;
        }
        payload.issues.push({
            origin: numericOriginMap[typeof payload.value] ?? origin,
            code: "too_big",
            maximum: typeof def.value === "object" ? def.value.getTime() : def.value,
            input: payload.value,
            inclusive: def.inclusive,
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodCheckGreaterThan = /*@__PURE__*/ $constructor("$ZodCheckGreaterThan", (inst, def) => {
    $ZodCheck.init(inst, def);
    const origin = numericOriginMap[typeof def.value];
    inst._zod.check = (payload) => {
        if (def.inclusive ? payload.value >= def.value : payload.value > def.value) {
            return;
        }
        payload.issues.push({
            origin: numericOriginMap[typeof payload.value] ?? origin,
            code: "too_small",
            minimum: typeof def.value === "object" ? def.value.getTime() : def.value,
            input: payload.value,
            inclusive: def.inclusive,
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodCheckMultipleOf = 
/*@__PURE__*/ $constructor("$ZodCheckMultipleOf", (inst, def) => {
    $ZodCheck.init(inst, def);
    inst._zod.check = (payload) => {
        if (typeof payload.value !== typeof def.value)
            throw new Error("Cannot mix number and bigint in multiple_of check.");
        const isMultiple = typeof payload.value === "bigint"
            ? // `value % 0n` throws, and nothing is a multiple of zero \u2014 the number branch already fails this way via NaN
                def.value !== BigInt(0) && payload.value % def.value === BigInt(0)
            : floatSafeRemainder(payload.value, def.value) === 0;
        if (isMultiple)
            return;
        payload.issues.push({
            origin: typeof payload.value,
            code: "not_multiple_of",
            divisor: def.value,
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodCheckNumberFormat = /*@__PURE__*/ $constructor("$ZodCheckNumberFormat", (inst, def) => {
    $ZodCheck.init(inst, def); // no format checks
    def.format = def.format || "float64";
    const isInt = def.format?.includes("int");
    const origin = isInt ? "int" : "number";
    const [minimum, maximum] = NUMBER_FORMAT_RANGES[def.format];
    inst._zod.check = (payload) => {
        const input = payload.value;
        if (isInt) {
            if (!Number.isInteger(input)) {
                // invalid_format issue
                // payload.issues.push({
                //   expected: def.format,
                //   format: def.format,
                //   code: "invalid_format",
                //   input,
                //   inst,
                // });
                // invalid_type issue
                payload.issues.push({
                    expected: origin,
                    format: def.format,
                    code: "invalid_type",
                    continue: false,
                    input,
                    inst,
                });
                return;
                // not_multiple_of issue
                // payload.issues.push({
                //   code: "not_multiple_of",
                //   origin: "number",
                //   input,
                //   inst,
                //   divisor: 1,
                // });
            }
            if (!Number.isSafeInteger(input)) {
                if (input > 0) {
                    // too_big
                    payload.issues.push({
                        input,
                        code: "too_big",
                        maximum: Number.MAX_SAFE_INTEGER,
                        note: "Integers must be within the safe integer range.",
                        inst,
                        origin,
                        inclusive: true,
                        continue: !def.abort,
                    });
                }
                else {
                    // too_small
                    payload.issues.push({
                        input,
                        code: "too_small",
                        minimum: Number.MIN_SAFE_INTEGER,
                        note: "Integers must be within the safe integer range.",
                        inst,
                        origin,
                        inclusive: true,
                        continue: !def.abort,
                    });
                }
                return;
            }
        }
        if (input < minimum) {
            payload.issues.push({
                origin: "number",
                input,
                code: "too_small",
                minimum,
                inclusive: true,
                inst,
                continue: !def.abort,
            });
        }
        if (input > maximum) {
            payload.issues.push({
                origin: "number",
                input,
                code: "too_big",
                maximum,
                inclusive: true,
                inst,
                continue: !def.abort,
            });
        }
    };
});
const $ZodCheckBigIntFormat = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodCheckBigIntFormat", (inst, def) => {
    $ZodCheck.init(inst, def); // no format checks
    const [minimum, maximum] = util.BIGINT_FORMAT_RANGES[def.format];
    inst._zod.check = (payload) => {
        const input = payload.value;
        if (input < minimum) {
            payload.issues.push({
                origin: "bigint",
                input,
                code: "too_small",
                minimum: minimum,
                inclusive: true,
                inst,
                continue: !def.abort,
            });
        }
        if (input > maximum) {
            payload.issues.push({
                origin: "bigint",
                input,
                code: "too_big",
                maximum,
                inclusive: true,
                inst,
                continue: !def.abort,
            });
        }
    };
})));
const $ZodCheckMaxSize = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodCheckMaxSize", (inst, def) => {
    var _a;
    $ZodCheck.init(inst, def);
    (_a = inst._zod.def).when ?? (_a.when = _whenHasSize);
    inst._zod.check = (payload) => {
        const input = payload.value;
        const size = input.size;
        if (size <= def.maximum)
            return;
        payload.issues.push({
            origin: util.getSizableOrigin(input),
            code: "too_big",
            maximum: def.maximum,
            inclusive: true,
            input,
            inst,
            continue: !def.abort,
        });
    };
})));
const $ZodCheckMinSize = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodCheckMinSize", (inst, def) => {
    var _a;
    $ZodCheck.init(inst, def);
    (_a = inst._zod.def).when ?? (_a.when = _whenHasSize);
    inst._zod.check = (payload) => {
        const input = payload.value;
        const size = input.size;
        if (size >= def.minimum)
            return;
        payload.issues.push({
            origin: util.getSizableOrigin(input),
            code: "too_small",
            minimum: def.minimum,
            inclusive: true,
            input,
            inst,
            continue: !def.abort,
        });
    };
})));
const $ZodCheckSizeEquals = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodCheckSizeEquals", (inst, def) => {
    var _a;
    $ZodCheck.init(inst, def);
    (_a = inst._zod.def).when ?? (_a.when = _whenHasSize);
    inst._zod.check = (payload) => {
        const input = payload.value;
        const size = input.size;
        if (size === def.size)
            return;
        const tooBig = size > def.size;
        payload.issues.push({
            origin: util.getSizableOrigin(input),
            ...(tooBig ? { code: "too_big", maximum: def.size } : { code: "too_small", minimum: def.size }),
            inclusive: true,
            exact: true,
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
})));
const $ZodCheckMaxLength = /*@__PURE__*/ $constructor("$ZodCheckMaxLength", (inst, def) => {
    var _a;
    $ZodCheck.init(inst, def);
    (_a = inst._zod.def).when ?? (_a.when = _whenHasLength);
    inst._zod.check = (payload) => {
        const input = payload.value;
        const units = input.length;
        // Strings are measured in Unicode code points, not UTF-16 units. A code point is at most two units, so a string that already fits in units fits in code points; only an overflow has to be counted.
        const length = typeof input === "string" && units > def.maximum ? codePointLength(input) : units;
        if (length <= def.maximum)
            return;
        const origin = getLengthableOrigin(input);
        payload.issues.push({
            origin,
            code: "too_big",
            maximum: def.maximum,
            inclusive: true,
            input,
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodCheckMinLength = /*@__PURE__*/ $constructor("$ZodCheckMinLength", (inst, def) => {
    var _a;
    $ZodCheck.init(inst, def);
    (_a = inst._zod.def).when ?? (_a.when = _whenHasLength);
    inst._zod.check = (payload) => {
        const input = payload.value;
        const units = input.length;
        // A code point is one or two UTF-16 units, so fewer units than the floor can never reach it and twice the floor always clears it. Only in between is the exact count in doubt.
        const length = typeof input === "string" && units >= def.minimum && units < def.minimum * 2
            ? codePointLength(input)
            : units;
        if (length >= def.minimum)
            return;
        const origin = getLengthableOrigin(input);
        payload.issues.push({
            origin,
            code: "too_small",
            minimum: def.minimum,
            inclusive: true,
            input,
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodCheckLengthEquals = /*@__PURE__*/ $constructor("$ZodCheckLengthEquals", (inst, def) => {
    var _a;
    $ZodCheck.init(inst, def);
    (_a = inst._zod.def).when ?? (_a.when = _whenHasLength);
    inst._zod.check = (payload) => {
        const input = payload.value;
        const units = input.length;
        // A code point is one or two UTF-16 units, so outside `[length, length * 2]` units the target is missed either way \u2014 and missed in the same direction in both measures.
        const length = typeof input === "string" && units >= def.length && units <= def.length * 2
            ? codePointLength(input)
            : units;
        if (length === def.length)
            return;
        const origin = getLengthableOrigin(input);
        const tooBig = length > def.length;
        payload.issues.push({
            origin,
            ...(tooBig ? { code: "too_big", maximum: def.length } : { code: "too_small", minimum: def.length }),
            inclusive: true,
            exact: true,
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodCheckStringFormat = /*@__PURE__*/ $constructor("$ZodCheckStringFormat", (inst, def) => {
    var _a, _b;
    $ZodCheck.init(inst, def);
    if (def.pattern)
        (_a = inst._zod).check ?? (_a.check = (payload) => {
            def.pattern.lastIndex = 0;
            if (def.pattern.test(payload.value))
                return;
            payload.issues.push({
                origin: "string",
                code: "invalid_format",
                format: def.format,
                input: payload.value,
                ...(def.pattern ? { pattern: def.pattern.toString() } : {}),
                inst,
                continue: !def.abort,
            });
        });
    else
        (_b = inst._zod).check ?? (_b.check = () => { });
});
const $ZodCheckRegex = /*@__PURE__*/ $constructor("$ZodCheckRegex", (inst, def) => {
    $ZodCheckStringFormat.init(inst, def);
    inst._zod.check = (payload) => {
        def.pattern.lastIndex = 0;
        if (def.pattern.test(payload.value))
            return;
        payload.issues.push({
            origin: "string",
            code: "invalid_format",
            format: "regex",
            input: payload.value,
            pattern: def.pattern.toString(),
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodCheckLowerCase = /*@__PURE__*/ $constructor("$ZodCheckLowerCase", (inst, def) => {
    def.pattern ?? (def.pattern = lowercase);
    $ZodCheckStringFormat.init(inst, def);
});
const $ZodCheckUpperCase = /*@__PURE__*/ $constructor("$ZodCheckUpperCase", (inst, def) => {
    def.pattern ?? (def.pattern = uppercase);
    $ZodCheckStringFormat.init(inst, def);
});
const $ZodCheckIncludes = /*@__PURE__*/ $constructor("$ZodCheckIncludes", (inst, def) => {
    $ZodCheck.init(inst, def);
    const escapedRegex = escapeRegex(def.includes);
    // `String.prototype.includes(sub, position)` matches `sub` at `position`
    // OR LATER, so the pattern must allow at least `position` leading chars
    // (`{N,}`), not exactly `position` chars (`{N}`).
    const pattern = new RegExp(typeof def.position === "number" ? `^.{${def.position},}${escapedRegex}` : escapedRegex);
    def.pattern = pattern;
    inst._zod.check = (payload) => {
        if (payload.value.includes(def.includes, def.position))
            return;
        payload.issues.push({
            origin: "string",
            code: "invalid_format",
            format: "includes",
            includes: def.includes,
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodCheckStartsWith = /*@__PURE__*/ $constructor("$ZodCheckStartsWith", (inst, def) => {
    $ZodCheck.init(inst, def);
    const pattern = new RegExp(`^${escapeRegex(def.prefix)}.*`);
    def.pattern ?? (def.pattern = pattern);
    inst._zod.check = (payload) => {
        if (payload.value.startsWith(def.prefix))
            return;
        payload.issues.push({
            origin: "string",
            code: "invalid_format",
            format: "starts_with",
            prefix: def.prefix,
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodCheckEndsWith = /*@__PURE__*/ $constructor("$ZodCheckEndsWith", (inst, def) => {
    $ZodCheck.init(inst, def);
    const pattern = new RegExp(`.*${escapeRegex(def.suffix)}$`);
    def.pattern ?? (def.pattern = pattern);
    inst._zod.check = (payload) => {
        if (payload.value.endsWith(def.suffix))
            return;
        payload.issues.push({
            origin: "string",
            code: "invalid_format",
            format: "ends_with",
            suffix: def.suffix,
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
});
///////////////////////////////////
/////    $ZodCheckProperty    /////
///////////////////////////////////
function handleCheckPropertyResult(result, payload, property) {
    if (result.issues.length) {
        payload.issues.push(...prefixIssues(property, result.issues));
    }
}
const $ZodCheckProperty = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodCheckProperty", (inst, def) => {
    $ZodCheck.init(inst, def);
    inst._zod.check = (payload) => {
        const result = def.schema._zod.run({
            value: payload.value[def.property],
            issues: [],
        }, {});
        if (result instanceof Promise) {
            return result.then((result) => handleCheckPropertyResult(result, payload, def.property));
        }
        handleCheckPropertyResult(result, payload, def.property);
        return;
    };
})));
const $ZodCheckProperties = /*@__PURE__*/ $constructor("$ZodCheckProperties", (inst, def) => {
    $ZodCheck.init(inst, def);
    hide(inst, Symbol.iterator, function* () {
        yield inst;
    });
    // key and schema snapshotted together: reading one live and the other cached lets a later mutation of the caller's shape object pair a stale key with a missing schema
    let entries;
    inst._zod.check = (payload) => {
        // the base schema already typed the value, so only a nullish one is rejected here: the properties read on a primitive too, matching z.property() on a string's length
        if (payload.value == null) {
            payload.issues.push({ expected: "object", code: "invalid_type", input: payload.value, inst });
            return undefined;
        }
        entries ?? (entries = Reflect.ownKeys(def.shape).map((key) => [key, def.shape[key]]));
        const input = payload.value;
        let proms;
        for (const [key, schema] of entries) {
            const result = schema._zod.run({ value: input[key], issues: [] }, {});
            if (result instanceof Promise) {
                proms ?? (proms = []);
                proms.push(result.then((result) => handleCheckPropertyResult(result, payload, key)));
            }
            else {
                handleCheckPropertyResult(result, payload, key);
            }
        }
        if (proms)
            return Promise.all(proms).then(() => undefined);
        return undefined;
    };
});
const $ZodCheckMimeType = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodCheckMimeType", (inst, def) => {
    $ZodCheck.init(inst, def);
    const mimeSet = new Set(def.mime);
    inst._zod.check = (payload) => {
        if (mimeSet.has(payload.value.type))
            return;
        payload.issues.push({
            code: "invalid_value",
            values: def.mime,
            input: payload.value.type,
            inst,
            continue: !def.abort,
        });
    };
})));
const $ZodCheckOverwrite = /*@__PURE__*/ $constructor("$ZodCheckOverwrite", (inst, def) => {
    $ZodCheck.init(inst, def);
    inst._zod.check = (payload) => {
        payload.value = def.tx(payload.value);
    };
});

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/doc.js
class Doc {
    constructor(args = [], closed = {}) {
        this.content = [];
        this.indent = 0;
        this.args = args;
        this.closed = closed;
    }
    // the compiler catches a child's throw and keeps writing into this doc, so the indent has to unwind with it
    indented(fn) {
        this.indent += 1;
        try {
            fn(this);
        }
        finally {
            this.indent -= 1;
        }
    }
    write(arg) {
        if (typeof arg === "function") {
            arg(this, { execution: "sync" });
            arg(this, { execution: "async" });
            return;
        }
        const content = arg;
        const lines = content.split("\n").filter((x) => x);
        const minIndent = Math.min(...lines.map((x) => x.length - x.trimStart().length));
        const dedented = lines.map((x) => x.slice(minIndent)).map((x) => " ".repeat(this.indent * 2) + x);
        for (const line of dedented) {
            this.content.push(line);
        }
    }
    compile() {
        const F = Function;
        const content = this?.content ?? [``];
        const factory = new F(...Object.keys(this.closed), `return function (${this.args.join(", ")}) {\n${content.join("\n")}\n};`);
        return factory(...Object.values(this.closed));
    }
}

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/versions.js
const version = {
    major: 4,
    minor: 6,
    patch: 7,
};

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/schemas.js







const $ZodType = /*@__PURE__*/ $constructor("$ZodType", (inst, def) => {
    var _a;
    inst ?? (inst = {});
    inst._zod.def = def; // set _def property
    inst._zod.bag = inst._zod.bag || {}; // initialize _bag object
    inst._zod.version = version;
    const defChecks = inst._zod.def.checks;
    // if inst is itself a checks.$ZodCheck, run it as a check
    const checks = inst._zod.traits.has("$ZodCheck")
        ? [inst, ...(defChecks ?? [])]
        : defChecks?.length
            ? [...defChecks]
            : [];
    for (const ch of checks) {
        for (const fn of ch._zod.onattach) {
            fn(inst);
        }
    }
    if (checks.length === 0) {
        // deferred initializer inst._zod.parse is not yet defined
        (_a = inst._zod).deferred ?? (_a.deferred = []);
        inst._zod.deferred?.push(() => {
            inst._zod.run = inst._zod.parse;
        });
    }
    else {
        const runChecks = (payload, checks, ctx) => {
            if (payload.memo)
                return payload;
            let isAborted = aborted(payload);
            let asyncResult;
            for (const ch of checks) {
                if (ch._zod.def.when) {
                    if (explicitlyAborted(payload))
                        continue;
                    const shouldRun = ch._zod.def.when(payload);
                    if (!shouldRun)
                        continue;
                }
                else if (isAborted) {
                    continue;
                }
                const currLen = payload.issues.length;
                const _ = ch._zod.check(payload);
                if (_ instanceof Promise && ctx?.async === false) {
                    throw new $ZodAsyncError();
                }
                if (asyncResult || _ instanceof Promise) {
                    asyncResult = (asyncResult ?? Promise.resolve()).then(async () => {
                        await _;
                        const nextLen = payload.issues.length;
                        if (nextLen === currLen)
                            return;
                        attachSchema(payload.issues, currLen, inst);
                        if (!isAborted)
                            isAborted = aborted(payload, currLen);
                    });
                }
                else {
                    const nextLen = payload.issues.length;
                    if (nextLen === currLen)
                        continue;
                    attachSchema(payload.issues, currLen, inst);
                    if (!isAborted)
                        isAborted = aborted(payload, currLen);
                }
            }
            if (asyncResult) {
                return asyncResult.then(() => {
                    return payload;
                });
            }
            return payload;
        };
        const handleCanaryResult = (canary, payload, ctx) => {
            // abort if the canary is aborted
            if (aborted(canary)) {
                canary.aborted = true;
                return canary;
            }
            // run checks first, then
            const checkResult = runChecks(payload, checks, ctx);
            if (checkResult instanceof Promise) {
                if (ctx.async === false)
                    throw new $ZodAsyncError();
                return checkResult.then((checkResult) => inst._zod.parse(checkResult, ctx));
            }
            return inst._zod.parse(checkResult, ctx);
        };
        inst._zod.run = (payload, ctx) => {
            if (ctx.skipChecks) {
                return inst._zod.parse(payload, ctx);
            }
            if (ctx.direction === "backward") {
                // run canary initial pass (no checks)
                const canary = inst._zod.parse({ value: payload.value, issues: [] }, { ...ctx, skipChecks: true });
                if (canary instanceof Promise) {
                    return canary.then((canary) => {
                        return handleCanaryResult(canary, payload, ctx);
                    });
                }
                return handleCanaryResult(canary, payload, ctx);
            }
            // forward
            const result = inst._zod.parse(payload, ctx);
            if (result instanceof Promise) {
                if (ctx.async === false)
                    throw new $ZodAsyncError();
                return result.then((result) => runChecks(result, checks, ctx));
            }
            return runChecks(result, checks, ctx);
        };
    }
}, {
    // Wrappers extend this by installing a richer factory over it; reading it eagerly would defeat the laziness.
    get "~standard"() {
        return hide(this, "~standard", standardProps(this));
    },
    set "~standard"(value) {
        own(this, "~standard", value);
    },
});
/** The Standard Schema surface for `inst`. Shared so wrappers can extend it without forcing it. */
// a Standard Schema result only reports issues, so a failure finalizes them straight off the raw payload: no ZodError, and no lazy result to read through
const toStandardResult = (r, ctx) => r.issues.length ? { issues: r.issues.map((iss) => finalizeIssue(iss, ctx, config())) } : { value: r.value };
async function validateAsync(inst, value) {
    const ctx = { async: true };
    return toStandardResult((await inst._zod.run({ value, issues: [] }, ctx)), ctx);
}
function standardProps(inst) {
    return {
        validate: (value) => {
            const ctx = { async: false };
            try {
                const r = inst._zod.run({ value, issues: [] }, ctx);
                if (!(r instanceof Promise))
                    return toStandardResult(r, ctx);
            }
            catch (_) { }
            // async function so a synchronously throwing check rejects instead of escaping validate
            return validateAsync(inst, value);
        },
        vendor: "zod",
        version: 1,
    };
}

const $ZodString = /*@__PURE__*/ $constructor("$ZodString", (inst, def) => {
    $ZodType.init(inst, def);
    // a format's own pattern, else unbounded; a template literal derives the check-aware form itself
    inst._zod.pattern = def.pattern ?? anyString;
    inst._zod.parse = (payload, _) => {
        if (def.coerce)
            try {
                payload.value = String(payload.value);
            }
            catch (_) { }
        if (typeof payload.value === "string")
            return payload;
        payload.issues.push({
            expected: "string",
            code: "invalid_type",
            input: payload.value,
            inst,
        });
        return payload;
    };
});
const $ZodStringFormat = /*@__PURE__*/ $constructor("$ZodStringFormat", (inst, def) => {
    // check initialization must come first
    $ZodCheckStringFormat.init(inst, def);
    $ZodString.init(inst, def);
});
const $ZodGUID = /*@__PURE__*/ $constructor("$ZodGUID", (inst, def) => {
    def.pattern ?? (def.pattern = guid);
    $ZodStringFormat.init(inst, def);
});
const $ZodUUID = /*@__PURE__*/ $constructor("$ZodUUID", (inst, def) => {
    if (def.version) {
        const versionMap = {
            v1: 1,
            v2: 2,
            v3: 3,
            v4: 4,
            v5: 5,
            v6: 6,
            v7: 7,
            v8: 8,
        };
        const v = versionMap[def.version];
        if (v === undefined)
            throw new Error(`Invalid UUID version: "${def.version}"`);
        def.pattern ?? (def.pattern = uuid(v));
    }
    else
        def.pattern ?? (def.pattern = uuid());
    $ZodStringFormat.init(inst, def);
});
const $ZodEmail = /*@__PURE__*/ $constructor("$ZodEmail", (inst, def) => {
    def.pattern ?? (def.pattern = email);
    $ZodStringFormat.init(inst, def);
});
/** The `://` guard rejected the input before the URL constructor saw it. */
const URL_BAD_FORMAT = 1;
/** The URL parser rejected the input. */
const URL_UNPARSEABLE = 2;
function canParseURL(input) {
    try {
        if (typeof URL !== "undefined" && typeof URL.canParse === "function")
            return URL.canParse(input);
        new URL(input);
        return true;
    }
    catch {
        return false;
    }
}
function validateURL(trimmed, def) {
    if (!("normalize" in def) && !("hostname" in def) && !("protocol" in def)) {
        return canParseURL(trimmed) || URL_UNPARSEABLE;
    }
    return parseURLObject(trimmed, def);
}
/** Parses a URL while preserving the non-normalizing HTTP guard. */
function parseURLObject(trimmed, def) {
    // When normalize is off, require :// for http/https URLs. This prevents strings like "http:example.com" or "https:/path" from being silently accepted
    if (!def.normalize && def.protocol?.source === httpProtocol.source && !/^https?:\/\//i.test(trimmed)) {
        return URL_BAD_FORMAT;
    }
    try {
        if (typeof URL !== "undefined") {
            const URLStatic = URL;
            if (typeof URLStatic.parse === "function")
                return URLStatic.parse(trimmed) ?? URL_UNPARSEABLE;
        }
        // @ts-ignore
        return new URL(trimmed);
    }
    catch {
        return URL_UNPARSEABLE;
    }
}
const asciiTabOrNewline = /[\t\n\r]/g;
/** The URL parser deletes every ASCII tab, LF and CR from its input before it parses, so `new URL("https://exa\nmple.com")` reports on `example.com`. Applying the same deletion to the returned value closes the half of that divergence which can move the host; the parser's other rewrite, stripping C0 controls at the edges, cannot. */
function stripTabAndNewline(value) {
    return value.replace(asciiTabOrNewline, "");
}
function urlHostnameOk(url, hostname) {
    hostname.lastIndex = 0;
    return hostname.test(url.hostname);
}
function urlProtocolOk(url, protocol) {
    protocol.lastIndex = 0;
    return protocol.test(url.protocol.endsWith(":") ? url.protocol.slice(0, -1) : url.protocol);
}
const $ZodURL = /*@__PURE__*/ $constructor("$ZodURL", (inst, def) => {
    $ZodStringFormat.init(inst, def);
    inst._zod.check = (payload) => {
        try {
            // Trim whitespace from input
            const trimmed = payload.value.trim();
            const url = validateURL(trimmed, def);
            if (url === URL_BAD_FORMAT) {
                payload.issues.push({
                    code: "invalid_format",
                    format: "url",
                    note: "Invalid URL format",
                    input: payload.value,
                    inst,
                    continue: !def.abort,
                });
                return;
            }
            if (url === URL_UNPARSEABLE) {
                payload.issues.push({
                    code: "invalid_format",
                    format: "url",
                    input: payload.value,
                    inst,
                    continue: !def.abort,
                });
                return;
            }
            if (url === true) {
                payload.value = stripTabAndNewline(trimmed);
                return;
            }
            if (def.hostname && !urlHostnameOk(url, def.hostname)) {
                payload.issues.push({
                    code: "invalid_format",
                    format: "url",
                    note: "Invalid hostname",
                    pattern: def.hostname.source,
                    input: payload.value,
                    inst,
                    continue: !def.abort,
                });
            }
            if (def.protocol && !urlProtocolOk(url, def.protocol)) {
                payload.issues.push({
                    code: "invalid_format",
                    format: "url",
                    note: "Invalid protocol",
                    pattern: def.protocol.source,
                    input: payload.value,
                    inst,
                    continue: !def.abort,
                });
            }
            // Set the output value based on normalize flag
            payload.value = def.normalize ? url.href : stripTabAndNewline(trimmed);
            return;
        }
        catch (_) {
            payload.issues.push({
                code: "invalid_format",
                format: "url",
                input: payload.value,
                inst,
                continue: !def.abort,
            });
        }
    };
});
const $ZodEmoji = /*@__PURE__*/ $constructor("$ZodEmoji", (inst, def) => {
    def.pattern ?? (def.pattern = emoji());
    $ZodStringFormat.init(inst, def);
});
const $ZodNanoID = /*@__PURE__*/ $constructor("$ZodNanoID", (inst, def) => {
    if (def.length !== undefined && (!Number.isInteger(def.length) || def.length < 1))
        throw new Error(`Invalid nanoid length: ${def.length}`);
    def.pattern ?? (def.pattern = def.length === undefined ? nanoid : nanoidOfLength(def.length));
    $ZodStringFormat.init(inst, def);
});
/**
 * @deprecated CUID v1 is deprecated by its authors due to information leakage
 * (timestamps embedded in the id). Use {@link $ZodCUID2} instead.
 * See https://github.com/paralleldrive/cuid.
 */
const $ZodCUID = /*@__PURE__*/ $constructor("$ZodCUID", (inst, def) => {
    def.pattern ?? (def.pattern = cuid);
    $ZodStringFormat.init(inst, def);
});
const $ZodCUID2 = /*@__PURE__*/ $constructor("$ZodCUID2", (inst, def) => {
    def.pattern ?? (def.pattern = cuid2);
    $ZodStringFormat.init(inst, def);
});
const $ZodULID = /*@__PURE__*/ $constructor("$ZodULID", (inst, def) => {
    def.pattern ?? (def.pattern = ulid);
    $ZodStringFormat.init(inst, def);
});
const $ZodXID = /*@__PURE__*/ $constructor("$ZodXID", (inst, def) => {
    def.pattern ?? (def.pattern = xid);
    $ZodStringFormat.init(inst, def);
});
const $ZodKSUID = /*@__PURE__*/ $constructor("$ZodKSUID", (inst, def) => {
    def.pattern ?? (def.pattern = ksuid);
    $ZodStringFormat.init(inst, def);
});
const $ZodISODateTime = /*@__PURE__*/ $constructor("$ZodISODateTime", (inst, def) => {
    def.pattern ?? (def.pattern = datetime(def));
    $ZodStringFormat.init(inst, def);
});
const $ZodISODate = /*@__PURE__*/ $constructor("$ZodISODate", (inst, def) => {
    def.pattern ?? (def.pattern = date);
    $ZodStringFormat.init(inst, def);
});
const $ZodISOTime = /*@__PURE__*/ $constructor("$ZodISOTime", (inst, def) => {
    def.pattern ?? (def.pattern = time(def));
    $ZodStringFormat.init(inst, def);
});
const $ZodISODuration = /*@__PURE__*/ $constructor("$ZodISODuration", (inst, def) => {
    def.pattern ?? (def.pattern = duration);
    $ZodStringFormat.init(inst, def);
});
const $ZodIPv4 = /*@__PURE__*/ $constructor("$ZodIPv4", (inst, def) => {
    def.pattern ?? (def.pattern = ipv4);
    $ZodStringFormat.init(inst, def);
});
/** An IPv6 address is written with hex digits, colons and dots, and nothing else. The guard is what makes the check below an IPv6 check: `new URL("http://[...]")` parses an authority, not an address, so `@` and `\` re-delimit it and `"::@1\\"` validates against the host `0.0.0.1`. The URL parser also deletes ASCII tab, LF and CR rather than failing, which is how `"::1\n"` validated as `::1`. */
const ipv6Alphabet = /^[0-9a-fA-F:.]+$/;
function isValidIPv6(value) {
    if (!ipv6Alphabet.test(value))
        return false;
    return canParseURL(`http://[${value}]`);
}
const $ZodIPv6 = /*@__PURE__*/ $constructor("$ZodIPv6", (inst, def) => {
    def.pattern ?? (def.pattern = ipv6);
    $ZodStringFormat.init(inst, def);
    inst._zod.check = (payload) => {
        if (!isValidIPv6(payload.value)) {
            payload.issues.push({
                code: "invalid_format",
                format: "ipv6",
                input: payload.value,
                inst,
                continue: !def.abort,
            });
        }
    };
});
const $ZodMAC = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodMAC", (inst, def) => {
    def.pattern ?? (def.pattern = regexes.mac(def.delimiter));
    $ZodStringFormat.init(inst, def);
})));
const $ZodCIDRv4 = /*@__PURE__*/ $constructor("$ZodCIDRv4", (inst, def) => {
    def.pattern ?? (def.pattern = cidrv4);
    $ZodStringFormat.init(inst, def);
});
function isValidCIDRv6(value) {
    const parts = value.split("/");
    if (parts.length !== 2)
        return false;
    const [address, prefix] = parts;
    if (!prefix)
        return false;
    const prefixNum = Number(prefix);
    if (`${prefixNum}` !== prefix)
        return false;
    if (prefixNum < 0 || prefixNum > 128)
        return false;
    return isValidIPv6(address);
}
const $ZodCIDRv6 = /*@__PURE__*/ $constructor("$ZodCIDRv6", (inst, def) => {
    def.pattern ?? (def.pattern = cidrv6); // not used for validation
    $ZodStringFormat.init(inst, def);
    inst._zod.check = (payload) => {
        if (!isValidCIDRv6(payload.value)) {
            payload.issues.push({
                code: "invalid_format",
                format: "cidrv6",
                input: payload.value,
                inst,
                continue: !def.abort,
            });
        }
    };
});
//////////////////////////////   ZodBase64   //////////////////////////////
function isValidBase64(data) {
    if (data === "")
        return true;
    // atob ignores whitespace, so reject it up front.
    if (/\s/.test(data))
        return false;
    if (data.length % 4 !== 0)
        return false;
    try {
        // @ts-ignore
        atob(data);
        return true;
    }
    catch {
        return false;
    }
}
// lax on purpose: the quantified regexes.base64 overflows the regex stack on multi-MB input and its leading ^$| alternation leaks through template-literal composition; isValidBase64 enforces length and padding
const base64Charset = /^[0-9a-zA-Z+/]*={0,2}$/;
const $ZodBase64 = /*@__PURE__*/ $constructor("$ZodBase64", (inst, def) => {
    def.pattern ?? (def.pattern = base64Charset);
    $ZodStringFormat.init(inst, def);
    inst._zod.check = (payload) => {
        if (isValidBase64(payload.value))
            return;
        payload.issues.push({
            code: "invalid_format",
            format: "base64",
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
});
//////////////////////////////   ZodBase64URL   //////////////////////////////
// lax on purpose: the quantified regexes.base64url overflows the regex stack on multi-MB input; isValidBase64 enforces length on the padded string
const base64urlCharset = /^[A-Za-z0-9_-]*$/;
function isValidBase64URL(data) {
    if (!base64urlCharset.test(data))
        return false;
    const base64 = data.replace(/[-_]/g, (c) => (c === "-" ? "+" : "/"));
    const padded = base64.padEnd(Math.ceil(base64.length / 4) * 4, "=");
    return isValidBase64(padded);
}
const $ZodBase64URL = /*@__PURE__*/ $constructor("$ZodBase64URL", (inst, def) => {
    def.pattern ?? (def.pattern = base64urlCharset);
    $ZodStringFormat.init(inst, def);
    inst._zod.check = (payload) => {
        if (isValidBase64URL(payload.value))
            return;
        payload.issues.push({
            code: "invalid_format",
            format: "base64url",
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodE164 = /*@__PURE__*/ $constructor("$ZodE164", (inst, def) => {
    def.pattern ?? (def.pattern = e164);
    $ZodStringFormat.init(inst, def);
});
//////////////////////////////   ZodCreditCard   //////////////////////////////
const CC_SANITIZE = /[- ]/g;
/** Luhn checksum on a digit-only string. Adapted from valibot (MIT). */
function isLuhnAlgo(digits) {
    let length = digits.length;
    let bit = 1;
    let sum = 0;
    while (length) {
        const value = digits.charCodeAt(--length) - 48;
        bit ^= 1;
        sum += bit ? [0, 2, 4, 6, 8, 1, 3, 5, 7, 9][value] : value;
    }
    return sum % 10 === 0;
}
function isValidCreditCard(input) {
    if (!regexes.creditCard.test(input))
        return false;
    return isLuhnAlgo(input.replace(CC_SANITIZE, ""));
}
const $ZodCreditCard = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodCreditCard", (inst, def) => {
    // Shape only \u2014 the Luhn check below is not expressible as a pattern, so consumers of `pattern` (JSON Schema, template literals) get the length and separator rules alone.
    def.pattern ?? (def.pattern = regexes.creditCard);
    $ZodStringFormat.init(inst, def);
    inst._zod.check = (payload) => {
        if (isValidCreditCard(payload.value))
            return;
        payload.issues.push({
            code: "invalid_format",
            format: "credit_card",
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
})));
//////////////////////////////   ZodIBAN   //////////////////////////////
// iso 7064 mod 97-10 checksum without BigInt
function isIso7064Mod97(iban) {
    let remainder = 0;
    const len = iban.length;
    for (let i = 4; i < len; i++) {
        const code = iban.charCodeAt(i);
        remainder = (code >= 65 ? remainder * 100 + (code - 55) : remainder * 10 + (code - 48)) % 97;
    }
    for (let i = 0; i < 4; i++) {
        const code = iban.charCodeAt(i);
        remainder = (code >= 65 ? remainder * 100 + (code - 55) : remainder * 10 + (code - 48)) % 97;
    }
    return remainder === 1;
}
function isValidIBAN(input) {
    if (!regexes.iban.test(input))
        return false;
    return isIso7064Mod97(input);
}
const $ZodIBAN = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodIBAN", (inst, def) => {
    // shape only \u2014 checksum is not expressible as a pattern
    def.pattern ?? (def.pattern = regexes.iban);
    $ZodStringFormat.init(inst, def);
    inst._zod.check = (payload) => {
        if (isValidIBAN(payload.value))
            return;
        payload.issues.push({
            code: "invalid_format",
            format: "iban",
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
})));
//////////////////////////////   ZodJWT   //////////////////////////////
function isValidJWT(token, algorithm = null) {
    try {
        const tokensParts = token.split(".");
        if (tokensParts.length !== 3)
            return false;
        const [header] = tokensParts;
        if (!header)
            return false;
        // @ts-ignore
        const parsedHeader = JSON.parse(atob(header));
        if ("typ" in parsedHeader && parsedHeader?.typ !== "JWT")
            return false;
        if (!parsedHeader.alg)
            return false;
        if (algorithm && (!("alg" in parsedHeader) || parsedHeader.alg !== algorithm))
            return false;
        return true;
    }
    catch {
        return false;
    }
}
const $ZodJWT = /*@__PURE__*/ $constructor("$ZodJWT", (inst, def) => {
    $ZodStringFormat.init(inst, def);
    inst._zod.check = (payload) => {
        if (isValidJWT(payload.value, def.alg))
            return;
        payload.issues.push({
            code: "invalid_format",
            format: "jwt",
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
});
const $ZodCustomStringFormat = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodCustomStringFormat", (inst, def) => {
    $ZodStringFormat.init(inst, def);
    inst._zod.check = (payload) => {
        if (def.fn(payload.value))
            return;
        payload.issues.push({
            code: "invalid_format",
            format: def.format,
            input: payload.value,
            inst,
            continue: !def.abort,
        });
    };
})));
const $ZodNumber = /*@__PURE__*/ $constructor("$ZodNumber", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.pattern = number;
    inst._zod.parse = (payload, _ctx) => {
        if (def.coerce)
            try {
                payload.value = Number(payload.value);
            }
            catch (_) { }
        const input = payload.value;
        if (typeof input === "number" && !Number.isNaN(input) && Number.isFinite(input)) {
            return payload;
        }
        const received = typeof input === "number"
            ? Number.isNaN(input)
                ? "NaN"
                : !Number.isFinite(input)
                    ? String(input)
                    : undefined
            : undefined;
        payload.issues.push({
            expected: "number",
            code: "invalid_type",
            input,
            inst,
            ...(received ? { received } : {}),
        });
        return payload;
    };
});
const $ZodNumberFormat = /*@__PURE__*/ $constructor("$ZodNumberFormat", (inst, def) => {
    $ZodCheckNumberFormat.init(inst, def);
    $ZodNumber.init(inst, def); // no format checks
});
const $ZodBoolean = /*@__PURE__*/ $constructor("$ZodBoolean", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.pattern = regexes_boolean;
    inst._zod.parse = (payload, _ctx) => {
        if (def.coerce)
            try {
                payload.value = Boolean(payload.value);
            }
            catch (_) { }
        const input = payload.value;
        if (typeof input === "boolean")
            return payload;
        payload.issues.push({
            expected: "boolean",
            code: "invalid_type",
            input,
            inst,
        });
        return payload;
    };
});
const $ZodBigInt = /*@__PURE__*/ $constructor("$ZodBigInt", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.pattern = bigint;
    inst._zod.parse = (payload, _ctx) => {
        if (def.coerce)
            try {
                payload.value = BigInt(payload.value);
            }
            catch (_) { }
        if (typeof payload.value === "bigint")
            return payload;
        payload.issues.push({
            expected: "bigint",
            code: "invalid_type",
            input: payload.value,
            inst,
        });
        return payload;
    };
});
const $ZodBigIntFormat = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodBigIntFormat", (inst, def) => {
    checks.$ZodCheckBigIntFormat.init(inst, def);
    $ZodBigInt.init(inst, def); // no format checks
})));
const $ZodSymbol = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodSymbol", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload, _ctx) => {
        const input = payload.value;
        if (typeof input === "symbol")
            return payload;
        payload.issues.push({
            expected: "symbol",
            code: "invalid_type",
            input,
            inst,
        });
        return payload;
    };
})));
const $ZodUndefined = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodUndefined", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.pattern = regexes.undefined;
    inst._zod.values = new Set([undefined]);
    inst._zod.parse = (payload, _ctx) => {
        const input = payload.value;
        if (typeof input === "undefined")
            return payload;
        payload.issues.push({
            expected: "undefined",
            code: "invalid_type",
            input,
            inst,
        });
        return payload;
    };
})));
const $ZodNull = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodNull", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.pattern = regexes.null;
    inst._zod.values = new Set([null]);
    inst._zod.parse = (payload, _ctx) => {
        const input = payload.value;
        if (input === null)
            return payload;
        payload.issues.push({
            expected: "null",
            code: "invalid_type",
            input,
            inst,
        });
        return payload;
    };
})));
const $ZodAny = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodAny", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload) => payload;
})));
const $ZodUnknown = /*@__PURE__*/ $constructor("$ZodUnknown", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload) => payload;
});
const $ZodNever = /*@__PURE__*/ $constructor("$ZodNever", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload, _ctx) => {
        payload.issues.push({
            expected: "never",
            code: "invalid_type",
            input: payload.value,
            inst,
        });
        return payload;
    };
});
const $ZodVoid = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodVoid", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload, _ctx) => {
        const input = payload.value;
        if (typeof input === "undefined")
            return payload;
        payload.issues.push({
            expected: "void",
            code: "invalid_type",
            input,
            inst,
        });
        return payload;
    };
})));
const $ZodDate = /*@__PURE__*/ $constructor("$ZodDate", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload, _ctx) => {
        if (def.coerce) {
            try {
                payload.value = new Date(payload.value);
            }
            catch (_err) { }
        }
        const input = payload.value;
        const isDate = input instanceof Date;
        const isValidDate = isDate && !Number.isNaN(input.getTime());
        if (isValidDate)
            return payload;
        payload.issues.push({
            expected: "date",
            code: "invalid_type",
            input,
            ...(isDate ? { received: "Invalid Date" } : {}),
            inst,
        });
        return payload;
    };
});
// an oversized container fails its leading size checks before any element is parsed
function capSize(inst, size) {
    const caps = sizeCaps(inst._zod.def.checks);
    if (!caps.length)
        return;
    const cap = Math.min(...caps.map((c) => c[0]));
    const parse = inst._zod.parse;
    inst._zod.parse = (payload, ctx) => {
        const n = size(payload.value);
        if (n > cap && !ctx?.skipChecks && ctx?.direction !== "backward") {
            for (const [max, ch] of sizeCaps(inst._zod.def.checks)) {
                if (n > max && ch._zod.def.when(payload)) {
                    const start = payload.issues.length;
                    ch._zod.check(payload);
                    // the value is still the raw input, so no later check may read it
                    payload.issues[start].continue = false;
                    attachSchema(payload.issues, start, inst);
                    return payload;
                }
            }
        }
        return parse(payload, ctx);
    };
}
const arraySize = (input) => (Array.isArray(input) ? input.length : -1);
const mapSize = (input) => (input instanceof Map ? input.size : -1);
const setSize = (input) => (input instanceof Set ? input.size : -1);
function handleArrayResult(result, final, index) {
    if (result.issues.length) {
        final.issues.push(...prefixIssues(index, result.issues));
    }
    final.value[index] = result.value;
}
const $ZodArray = /*@__PURE__*/ $constructor("$ZodArray", (inst, def) => {
    $ZodType.init(inst, def);
    const memo = globalConfig.memoizer;
    memo?.attach(inst);
    inst._zod.parse = (payload, ctx) => {
        const input = payload.value;
        if (!Array.isArray(input)) {
            payload.issues.push({
                expected: "array",
                code: "invalid_type",
                input,
                inst,
            });
            return payload;
        }
        payload.value = memo ? memo.alloc(inst, payload, Array(input.length), ctx) : Array(input.length);
        const proms = [];
        const abortEarly = ctx?.abortEarly;
        for (let i = 0; i < input.length; i++) {
            const item = input[i];
            const result = def.element._zod.run({
                value: item,
                issues: [],
            }, ctx);
            if (result instanceof Promise) {
                proms.push(result.then((result) => handleArrayResult(result, payload, i)));
            }
            else {
                handleArrayResult(result, payload, i);
                // the element's payload is authoritative here, since handleArrayResult forwards every issue; an object's is not, because it drops a failed absent optional
                if (abortEarly && result.issues.length !== 0 && aborted(result))
                    break;
            }
        }
        if (proms.length) {
            return Promise.all(proms).then(() => payload);
        }
        return payload; //handleArrayResultsAsync(parseResults, final);
    };
    capSize(inst, arraySize);
});
function handlePropertyResult(result, final, key, input, optin, optout) {
    const isPresent = key in input;
    const isOptionalOut = optout === "optional";
    // The middle rung means "absence permitted, nothing supplied in its place", so an absent key contributes nothing \u2014 whatever the schema made of `undefined` is invented, not substituted. Only `optional` reaches this with a value: `defaulted` substitutes, and a schema that isn't optional-out has to keep the key.
    if (!isPresent && isOptionalOut && optin === "optional") {
        return;
    }
    if (result.issues.length) {
        // For optional-in/out schemas, ignore errors on absent keys.
        if (optin !== undefined && isOptionalOut && !isPresent) {
            return;
        }
        final.issues.push(...prefixIssues(key, result.issues));
    }
    if (!isPresent && optin === undefined) {
        if (!result.issues.length) {
            final.issues.push({
                code: "invalid_type",
                expected: "nonoptional",
                input: undefined,
                path: [key],
            });
        }
        return;
    }
    if (result.value === undefined) {
        if (isPresent || (optin === "defaulted" && !isOptionalOut)) {
            final.value[key] = undefined;
        }
    }
    else {
        final.value[key] = result.value;
    }
}
// one shared instance; a fresh [] per schema cost 56 bytes retained
const NO_SYMBOL_KEYS = [];
function normalizeDef(def) {
    const keys = Object.keys(def.shape);
    const ownSymbols = Object.getOwnPropertySymbols(def.shape);
    const symbolKeys = ownSymbols.length ? ownSymbols : NO_SYMBOL_KEYS;
    // aliases `keys` when there are no symbols, so a string-only shape keeps one array
    const allKeys = symbolKeys.length ? [...keys, ...symbolKeys] : keys;
    for (const k of allKeys) {
        if (!def.shape?.[k]?._zod?.traits?.has("$ZodType")) {
            throw new Error(`Invalid element at key "${String(k)}": expected a Zod schema`);
        }
    }
    const okeys = optionalKeys(def.shape);
    return {
        ...def,
        allKeys,
        symbolKeys,
        // string-only: handleCatchall matches it against `for...in`, which never yields a symbol
        keySet: new Set(keys),
        numKeys: keys.length,
        optionalKeys: new Set(okeys),
    };
}
function handleCatchall(proms, input, payload, ctx, def, inst, abortEarly) {
    const unrecognized = [];
    const keySet = def.keySet;
    const _catchall = def.catchall._zod;
    const t = _catchall.def.type;
    const optin = _catchall.optin;
    const optout = _catchall.optout;
    // starts at 0, not the current length: the shape phase already ran and may have aborted
    let seen = 0;
    for (const key in input) {
        if (abortEarly && payload.issues.length !== seen) {
            if (aborted(payload, seen))
                break;
            seen = payload.issues.length;
        }
        // Must precede the __proto__ branch: a declared key is not unrecognized, even though the shape loop deliberately strips __proto__ from the parsed output.
        if (keySet.has(key))
            continue;
        // Don't copy an undeclared __proto__ into the result; assignment to a plain {} would replace the result prototype. But in strict mode it is still an unknown key, so report it before skipping.
        if (key === "__proto__") {
            if (t === "never")
                unrecognized.push(key);
            continue;
        }
        if (t === "never") {
            unrecognized.push(key);
            continue;
        }
        const r = _catchall.run({ value: input[key], issues: [] }, ctx);
        if (r instanceof Promise) {
            proms.push(r.then((r) => handlePropertyResult(r, payload, key, input, optin, optout)));
        }
        else {
            handlePropertyResult(r, payload, key, input, optin, optout);
        }
    }
    if (unrecognized.length) {
        payload.issues.push({
            code: "unrecognized_keys",
            keys: unrecognized,
            input,
            inst,
            // Describes the shape of the input, not the validity of the parsed value, so it never aborts. The parse still fails; the schema's own checks just get to run first, and an enclosing intersection can reconcile the key against a sibling operand.
            continue: true,
        });
    }
    if (!proms.length)
        return payload;
    return Promise.all(proms).then(() => {
        return payload;
    });
}
const $ZodObject = /*@__PURE__*/ $constructor("$ZodObject", (inst, def) => {
    // requires cast because technically $ZodObject doesn't extend
    $ZodType.init(inst, def);
    const desc = Object.getOwnPropertyDescriptor(def, "shape");
    // a cloned def carries its source's accessor, which knows the shape it answers from; adopting that keeps the clone's keys readable without running it
    const sh = desc?.get ? desc.get.raw : (def.shape ?? {});
    if (sh) {
        // Freezes the shape on first read, so its getters resolve once and every later read sees the same schemas.
        const get = () => {
            const newSh = { ...sh };
            Object.defineProperty(def, "shape", { value: newSh });
            get.raw = newSh;
            return newSh;
        };
        get.raw = sh;
        Object.defineProperty(def, "shape", { get });
    }
    const _normalized = cached(() => normalizeDef(def));
    defineLazyInternal(inst, "propValues", (zod) => {
        const shape = zod.def.shape;
        const propValues = {};
        for (const key in shape) {
            const field = shape[key]._zod;
            if (field.values) {
                if (!Object.prototype.hasOwnProperty.call(propValues, key)) {
                    util_assignProp(propValues, key, new Set());
                }
                for (const v of field.values)
                    propValues[key].add(v);
                // An omittable slot reads back as undefined at a discriminator lookup, so it has to claim undefined: two options that can both omit the key are not discriminable on it.
                if (field.optin !== undefined)
                    propValues[key].add(undefined);
            }
        }
        return propValues;
    });
    const isObject = util_isObject;
    const catchall = def.catchall;
    let value;
    const memo = globalConfig.memoizer;
    memo?.attach(inst);
    inst._zod.parse = (payload, ctx) => {
        value ?? (value = _normalized.value);
        const input = payload.value;
        if (!isObject(input)) {
            payload.issues.push({
                expected: "object",
                code: "invalid_type",
                input,
                inst,
            });
            return payload;
        }
        payload.value = memo ? memo.alloc(inst, payload, {}, ctx) : {};
        const proms = [];
        const shape = value.shape;
        const abortEarly = ctx?.abortEarly;
        let seen = payload.issues.length;
        for (const key of value.allKeys) {
            if (abortEarly && payload.issues.length !== seen) {
                if (aborted(payload, seen))
                    break;
                seen = payload.issues.length;
            }
            if (key === "__proto__")
                continue;
            const el = shape[key];
            const optin = el._zod.optin;
            const optout = el._zod.optout;
            const r = el._zod.run({ value: input[key], issues: [] }, ctx);
            if (r instanceof Promise) {
                proms.push(r.then((r) => handlePropertyResult(r, payload, key, input, optin, optout)));
            }
            else {
                handlePropertyResult(r, payload, key, input, optin, optout);
            }
        }
        if (!catchall) {
            return proms.length ? Promise.all(proms).then(() => payload) : payload;
        }
        return handleCatchall(proms, input, payload, ctx, _normalized.value, inst, abortEarly === true);
    };
});
const $ZodObjectJIT = /*@__PURE__*/ $constructor("$ZodObjectJIT", (inst, def) => {
    // requires cast because technically $ZodObject doesn't extend
    $ZodObject.init(inst, def);
    const superParse = inst._zod.parse;
    const _normalized = cached(() => normalizeDef(def));
    const memo = globalConfig.memoizer;
    const generateFastpass = (shape) => {
        const normalized = _normalized.value;
        const syms = normalized.symbolKeys;
        // a symbol has no source literal, so it is read as `syms[i]` off the closed-over scope
        const doc = new Doc(["payload", "ctx"], { shape, inst, memo, syms });
        const parseStr = (k) => `shape[${k}]._zod.run({ value: input[${k}], issues: [] }, ctx)`;
        // prefixes in place, like util.prefixIssues. newResult must land before the early return: a catchall runs after this and would otherwise write onto the caller's input
        const prefixStr = (id, k) => `
          let ${id}_ab = false;
          for (let i = 0; i < ${id}.issues.length; i++) {
            const iss = ${id}.issues[i];
            iss.path = iss.path ? [${k}, ...iss.path] : [${k}];
            payload.issues.push(iss);
            if (iss.continue !== true) ${id}_ab = true;
          }
          if (${id}_ab && ctx && ctx.abortEarly) {
            payload.value = newResult;
            return payload;
          }`;
        doc.write(`const input = payload.value;`);
        const ids = Object.create(null);
        let counter = 0;
        for (const key of normalized.allKeys) {
            ids[key] = `key_${counter++}`;
        }
        // A: preserve key order {
        doc.write(memo ? `const newResult = memo.alloc(inst, payload, {}, ctx);` : `const newResult = {};`);
        for (const key of normalized.allKeys) {
            if (key === "__proto__")
                continue;
            const id = ids[key];
            const k = typeof key === "symbol" ? `syms[${syms.indexOf(key)}]` : esc(key);
            const isPresent = `${k} in input`;
            const schema = shape[key];
            const optin = schema?._zod?.optin;
            const isOptionalIn = optin !== undefined;
            const isOptionalOut = schema?._zod?.optout === "optional";
            doc.write(`const ${id} = ${parseStr(k)};`);
            if (isOptionalIn && isOptionalOut) {
                // For optional-in/out schemas, ignore errors on absent keys \u2014 and, like the interpreted path, drop the value produced alongside them. The middle rung goes further: it permits absence without supplying anything in its place, so an absent key contributes nothing at all.
                const assign = optin === "optional" ? `${id}_present` : `${id}.value !== undefined || ${id}_present`;
                doc.write(`
        const ${id}_present = ${isPresent};
        if (!${id}.issues.length || ${id}_present) {
          if (${id}.issues.length) {${prefixStr(id, k)}
          }

          if (${assign}) {
            newResult[${k}] = ${id}.value;
          }
        }

      `);
            }
            else if (!isOptionalIn) {
                doc.write(`
        const ${id}_present = ${isPresent};
        if (${id}.issues.length) {${prefixStr(id, k)}
        }
        if (!${id}_present && !${id}.issues.length) {
          payload.issues.push({
            code: "invalid_type",
            expected: "nonoptional",
            input: undefined,
            path: [${k}]
          });
          if (ctx && ctx.abortEarly) {
            payload.value = newResult;
            return payload;
          }
        }

        if (${id}_present) {
          newResult[${k}] = ${id}.value;
        }

      `);
            }
            else {
                doc.write(`
        if (${id}.issues.length) {${prefixStr(id, k)}
        }
      `);
                if (optin === "defaulted") {
                    doc.write(`newResult[${k}] = ${id}.value;`);
                }
                else {
                    doc.write(`
        if (${id}.value !== undefined || ${isPresent}) {
          newResult[${k}] = ${id}.value;
        }
      `);
                }
            }
        }
        doc.write(`payload.value = newResult;`);
        doc.write(`return payload;`);
        // closing `shape` in is what pays: turbofan specializes the parser against that one shape object, so every `shape[k]._zod.run` folds to a known callee. as a parameter it stays a generic load and measures 13% slower even with the forwarding frame gone
        return doc.compile();
    };
    let fastpass;
    const isObject = util_isObject;
    const jit = !globalConfig.jitless;
    const allowsEval = util_allowsEval;
    const fastEnabled = jit && allowsEval.value; // && !def.catchall;
    const catchall = def.catchall;
    let value;
    inst._zod.parse = (payload, ctx) => {
        value ?? (value = _normalized.value);
        const input = payload.value;
        if (!isObject(input)) {
            payload.issues.push({
                expected: "object",
                code: "invalid_type",
                input,
                inst,
            });
            return payload;
        }
        if (jit && fastEnabled && ctx?.async === false && ctx.jitless !== true) {
            // always synchronous
            if (!fastpass)
                fastpass = generateFastpass(def.shape);
            payload = fastpass(payload, ctx);
            if (!catchall)
                return payload;
            return handleCatchall([], input, payload, ctx, value, inst, ctx?.abortEarly === true);
        }
        return superParse(payload, ctx);
    };
});
function handleUnionResults(results, final, inst, ctx) {
    for (const result of results) {
        if (result.issues.length === 0) {
            final.value = result.value;
            return final;
        }
    }
    const nonaborted = results.filter((r) => !aborted(r));
    if (nonaborted.length === 1) {
        final.value = nonaborted[0].value;
        return nonaborted[0];
    }
    final.issues.push({
        code: "invalid_union",
        input: final.value,
        inst,
        errors: results.map((result) => result.issues.map((iss) => finalizeIssue(iss, ctx, config()))),
    });
    return final;
}
const $ZodUnion = /*@__PURE__*/ $constructor("$ZodUnion", (inst, def) => {
    $ZodType.init(inst, def);
    defineLazyInternal(inst, "optin", (zod) => zod.def.options.some((o) => o._zod.optin === "defaulted")
        ? "defaulted"
        : zod.def.options.some((o) => o._zod.optin !== undefined)
            ? "optional"
            : undefined);
    defineLazyInternal(inst, "optout", (zod) => zod.def.options.some((o) => o._zod.optout === "optional") ? "optional" : undefined);
    defineLazyInternal(inst, "values", (zod) => {
        if (zod.def.options.every((o) => o._zod.values)) {
            return new Set(zod.def.options.flatMap((option) => Array.from(option._zod.values)));
        }
        return undefined;
    });
    defineLazyInternal(inst, "pattern", (zod) => {
        if (zod.def.options.every((o) => o._zod.pattern)) {
            const patterns = zod.def.options.map((o) => o._zod.pattern);
            return new RegExp(`^(${patterns.map((p) => cleanRegex(p.source)).join("|")})$`);
        }
        return undefined;
    });
    const first = def.options.length === 1 ? def.options[0]._zod.run : null;
    inst._zod.parse = (payload, ctx) => {
        if (first) {
            return first(payload, ctx);
        }
        let async = false;
        const results = [];
        for (const option of def.options) {
            const result = option._zod.run({
                value: payload.value,
                issues: [],
            }, ctx);
            if (result instanceof Promise) {
                results.push(result);
                async = true;
            }
            else {
                if (result.issues.length === 0)
                    return result;
                results.push(result);
            }
        }
        if (!async)
            return handleUnionResults(results, payload, inst, ctx);
        return Promise.all(results).then((results) => {
            return handleUnionResults(results, payload, inst, ctx);
        });
    };
});
function handleExclusiveUnionResults(results, final, inst, ctx) {
    const matches = [];
    for (let i = 0; i < results.length; i++) {
        if (results[i].issues.length === 0)
            matches.push(i);
    }
    if (matches.length === 1) {
        final.value = results[matches[0]].value;
        return final;
    }
    if (matches.length === 0) {
        // No matches - same as regular union
        final.issues.push({
            code: "invalid_union",
            input: final.value,
            inst,
            errors: results.map((result) => result.issues.map((iss) => util.finalizeIssue(iss, ctx, core.config()))),
        });
    }
    else {
        // Multiple matches - exclusive union failure
        final.issues.push({
            code: "invalid_union",
            input: final.value,
            inst,
            errors: [],
            inclusive: false,
            matches,
        });
    }
    return final;
}
const $ZodXor = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodXor", (inst, def) => {
    $ZodUnion.init(inst, def);
    def.inclusive = false;
    const first = def.options.length === 1 ? def.options[0]._zod.run : null;
    inst._zod.parse = (payload, ctx) => {
        if (first) {
            return first(payload, ctx);
        }
        let async = false;
        const results = [];
        for (const option of def.options) {
            const result = option._zod.run({
                value: payload.value,
                issues: [],
            }, ctx);
            if (result instanceof Promise) {
                results.push(result);
                async = true;
            }
            else {
                results.push(result);
            }
        }
        if (!async)
            return handleExclusiveUnionResults(results, payload, inst, ctx);
        return Promise.all(results).then((results) => {
            return handleExclusiveUnionResults(results, payload, inst, ctx);
        });
    };
})));
/** Returns the option whose discriminator claims `value`, or throws if ambiguous. */
function getDiscriminatedOption(union, value) {
    const internals = union._zod;
    let map = internals.bag.optionsMap;
    if (!map) {
        map = discriminatorMap(internals.def);
        internals.bag.optionsMap = map;
    }
    const option = map.get(value);
    if (option === null)
        throw new Error(`Ambiguous discriminator value "${String(value)}"`);
    return option;
}
function discriminatorMap(def) {
    const map = new Map();
    for (const option of def.options) {
        const values = option._zod.propValues?.[def.discriminator];
        if (!values || values.size === 0)
            throw new Error(`Invalid discriminated union option at index "${def.options.indexOf(option)}"`);
        for (const value of values) {
            if (map.has(value)) {
                if (value !== undefined)
                    throw new Error(`Duplicate discriminator value "${String(value)}"`);
                // keep the collision marked so a later member cannot reclaim it
                map.set(value, null);
            }
            else {
                map.set(value, option);
            }
        }
    }
    return map;
}
const $ZodDiscriminatedUnion = 
/*@__PURE__*/
(/* unused pure expression or super */ null && (core.$constructor("$ZodDiscriminatedUnion", (inst, def) => {
    def.inclusive = false;
    $ZodUnion.init(inst, def);
    const _super = inst._zod.parse;
    util.defineLazyInternal(inst, "propValues", (zod) => {
        const propValues = {};
        let undefinedCount = 0;
        for (const option of zod.def.options) {
            const pv = option._zod.propValues;
            if (!pv || Object.keys(pv).length === 0)
                throw new Error(`Invalid discriminated union option at index "${zod.def.options.indexOf(option)}"`);
            if (pv[zod.def.discriminator]?.has(undefined))
                undefinedCount++;
            for (const [k, v] of Object.entries(pv)) {
                if (!Object.prototype.hasOwnProperty.call(propValues, k)) {
                    util.assignProp(propValues, k, new Set());
                }
                for (const val of v) {
                    propValues[k].add(val);
                }
            }
        }
        if (!zod.def.unionFallback && undefinedCount > 1)
            propValues[zod.def.discriminator]?.delete(undefined);
        return propValues;
    });
    // Checked now rather than in the lookup map below, so an option that lacks the discriminator fails at the `discriminatedUnion` call instead of on the first object parsed. Options whose shape cannot be enumerated without resolving it \u2014 pipes and lazies \u2014 are left to the map.
    def.options.forEach((option, i) => {
        const propShape = util.rawShape(option._zod.def);
        if (propShape && !Object.prototype.hasOwnProperty.call(propShape, def.discriminator)) {
            throw new Error(`Invalid discriminated union option at index "${i}"`);
        }
    });
    const disc = util.cached(() => discriminatorMap(def));
    inst._zod.parse = (payload, ctx) => {
        const input = payload.value;
        if (!util.isObject(input)) {
            payload.issues.push({
                code: "invalid_type",
                expected: "object",
                input,
                inst,
            });
            return payload;
        }
        const value = input?.[def.discriminator];
        const opt = disc.value.get(value);
        // forward metadata cannot choose an encoder for an absent tag
        if (opt && (value !== undefined || ctx.direction !== "backward")) {
            return opt._zod.run(payload, ctx);
        }
        // Fall back to union matching when the fast discriminator path fails:
        // - explicitly enabled via unionFallback, or
        // - during backward direction (encode), since codec-based discriminators have different values in forward vs backward directions
        if (def.unionFallback || ctx.direction === "backward") {
            return _super(payload, ctx);
        }
        // no matching discriminator
        payload.issues.push({
            code: "invalid_union",
            errors: [],
            note: "No matching discriminator",
            discriminator: def.discriminator,
            options: Array.from(disc.value.keys()).filter((value) => disc.value.get(value) !== null),
            input,
            path: [def.discriminator],
            inst,
        });
        return payload;
    };
})));
const $ZodIntersection = /*@__PURE__*/ $constructor("$ZodIntersection", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload, ctx) => {
        const input = payload.value;
        const left = def.left._zod.run({ value: input, issues: [] }, ctx);
        const right = def.right._zod.run({ value: input, issues: [] }, ctx);
        const async = left instanceof Promise || right instanceof Promise;
        if (async) {
            return Promise.all([left, right]).then(([left, right]) => {
                return handleIntersectionResults(payload, left, right);
            });
        }
        return handleIntersectionResults(payload, left, right);
    };
});
function mergeValues(a, b) {
    // const aType = parse.t(a);
    // const bType = parse.t(b);
    if (a === b) {
        return { valid: true, data: a };
    }
    if (a instanceof Date && b instanceof Date && +a === +b) {
        return { valid: true, data: a };
    }
    if (isPlainObject(a) && isPlainObject(b)) {
        const bKeys = Object.keys(b);
        const sharedKeys = Object.keys(a).filter((key) => bKeys.indexOf(key) !== -1);
        const newObj = { ...a, ...b };
        if (Object.prototype.hasOwnProperty.call(newObj, "__proto__"))
            delete newObj.__proto__;
        for (const key of sharedKeys) {
            if (key === "__proto__")
                continue;
            const sharedValue = mergeValues(a[key], b[key]);
            if (!sharedValue.valid) {
                return {
                    valid: false,
                    mergeErrorPath: [key, ...sharedValue.mergeErrorPath],
                };
            }
            newObj[key] = sharedValue.data;
        }
        return { valid: true, data: newObj };
    }
    if (Array.isArray(a) && Array.isArray(b)) {
        if (a.length !== b.length) {
            return { valid: false, mergeErrorPath: [] };
        }
        const newArray = [];
        for (let index = 0; index < a.length; index++) {
            const itemA = a[index];
            const itemB = b[index];
            const sharedValue = mergeValues(itemA, itemB);
            if (!sharedValue.valid) {
                return {
                    valid: false,
                    mergeErrorPath: [index, ...sharedValue.mergeErrorPath],
                };
            }
            newArray.push(sharedValue.data);
        }
        return { valid: true, data: newArray };
    }
    return { valid: false, mergeErrorPath: [] };
}
function handleIntersectionResults(result, left, right) {
    // Track which side(s) reject each key. A key rejection is reported only when BOTH sides reject it, so a key owned by one branch survives the other's key schema. strictObject reports these as unrecognized_keys; a record with an open key schema reports one invalid_key per key.
    const unrecKeys = new Map();
    let unrecIssue;
    const keyIssues = new Map();
    const collect = (iss, side) => {
        let keys;
        if (iss.code === "unrecognized_keys" && !iss.path?.length) {
            unrecIssue ?? (unrecIssue = iss);
            keys = iss.keys;
        }
        else if (iss.code === "invalid_key" && iss.origin === "record" && iss.path?.length === 1) {
            const k = String(iss.path[0]);
            if (!keyIssues.has(k))
                keyIssues.set(k, iss);
            keys = [k];
        }
        else {
            return false;
        }
        for (const k of keys) {
            if (!unrecKeys.has(k))
                unrecKeys.set(k, {});
            unrecKeys.get(k)[side] = true;
        }
        return true;
    };
    for (const iss of left.issues) {
        if (!collect(iss, "l"))
            result.issues.push(iss);
    }
    for (const iss of right.issues) {
        if (!collect(iss, "r"))
            result.issues.push(iss);
    }
    // Report only keys rejected by BOTH sides
    const bothKeys = [...unrecKeys].filter(([, f]) => f.l && f.r).map(([k]) => k);
    if (bothKeys.length) {
        const aggregated = unrecIssue ? bothKeys.filter((k) => unrecIssue.keys.includes(k)) : [];
        if (aggregated.length)
            result.issues.push({ ...unrecIssue, keys: aggregated });
        for (const k of bothKeys) {
            if (!aggregated.includes(k) && keyIssues.has(k))
                result.issues.push(keyIssues.get(k));
        }
    }
    const merged = mergeValues(left.value, right.value);
    if (!merged.valid) {
        if (aborted(result))
            return result;
        throw new Error(`Unmergable intersection. Error path: ` + `${JSON.stringify(merged.mergeErrorPath)}`);
    }
    result.value = merged.data;
    return result;
}
const $ZodTuple = /*@__PURE__*/ $constructor("$ZodTuple", (inst, def) => {
    $ZodType.init(inst, def);
    const items = def.items;
    const memo = globalConfig.memoizer;
    memo?.attach(inst);
    inst._zod.parse = (payload, ctx) => {
        const input = payload.value;
        if (!Array.isArray(input)) {
            payload.issues.push({
                input,
                inst,
                expected: "tuple",
                code: "invalid_type",
            });
            return payload;
        }
        payload.value = memo ? memo.alloc(inst, payload, [], ctx) : [];
        const proms = [];
        const optinStart = getTupleOptStart(items, "optin");
        const optoutStart = getTupleOptStart(items, "optout");
        if (!def.rest) {
            if (input.length < optinStart) {
                payload.issues.push({
                    code: "too_small",
                    minimum: optinStart,
                    inclusive: true,
                    input,
                    inst,
                    origin: "array",
                });
                return payload;
            }
            if (input.length > items.length) {
                payload.issues.push({
                    code: "too_big",
                    maximum: items.length,
                    inclusive: true,
                    input,
                    inst,
                    origin: "array",
                });
            }
        }
        // Run every item in parallel, collecting results into an indexed array. The post-processing in `handleTupleResults` walks them in order so it can decide whether an absent optional-output error can truncate the tail or must be reported to preserve required output.
        const itemResults = new Array(items.length);
        // only tracked when there is a rest loop to skip
        const abortEarly = def.rest ? ctx?.abortEarly : undefined;
        let itemAborted = false;
        for (let i = 0; i < items.length; i++) {
            const r = items[i]._zod.run({ value: input[i], issues: [] }, ctx);
            if (r instanceof Promise) {
                proms.push(r.then((rr) => {
                    itemResults[i] = rr;
                }));
            }
            else {
                itemResults[i] = r;
                if (abortEarly && !itemAborted && r.issues.length)
                    itemAborted = aborted(r);
            }
        }
        // sound because rest is non-empty exactly when every fixed index is present, the one case handleTupleResults cannot discard an item's issues
        if (def.rest && !itemAborted) {
            let i = items.length - 1;
            const rest = input.slice(items.length);
            let seen = payload.issues.length;
            for (const el of rest) {
                if (abortEarly && payload.issues.length !== seen) {
                    if (aborted(payload, seen))
                        break;
                    seen = payload.issues.length;
                }
                i++;
                const result = def.rest._zod.run({ value: el, issues: [] }, ctx);
                if (result instanceof Promise) {
                    proms.push(result.then((r) => handleTupleResult(r, payload, i)));
                }
                else {
                    handleTupleResult(result, payload, i);
                }
            }
        }
        if (proms.length) {
            return Promise.all(proms).then(() => handleTupleResults(itemResults, payload, items, input, optoutStart));
        }
        return handleTupleResults(itemResults, payload, items, input, optoutStart);
    };
});
function getTupleOptStart(items, key) {
    for (let i = items.length - 1; i >= 0; i--) {
        // optin is a three-rung ladder so any rung above `undefined` permits an absent slot; optout stays two-valued.
        const omittable = key === "optin" ? items[i]._zod.optin !== undefined : items[i]._zod.optout === "optional";
        if (!omittable)
            return i + 1;
    }
    return 0;
}
function handleTupleResult(result, final, index) {
    if (result.issues.length) {
        final.issues.push(...prefixIssues(index, result.issues));
    }
    final.value[index] = result.value;
}
function handleTupleResults(itemResults, final, items, input, optoutStart) {
    // Walk results in order. Mirror $ZodObject's swallow-on-absent-optional rule, but only after `optoutStart`: the first index where the output tuple tail can be absent.
    for (let i = 0; i < items.length; i++) {
        const r = itemResults[i];
        const isPresent = i < input.length;
        // The array analog of `handlePropertyResult`'s absent-key early return: the middle rung permits absence without supplying anything in its place, so the tail truncates here instead of materializing whatever the item made of `undefined`.
        if (!isPresent && i >= optoutStart && items[i]._zod.optin === "optional") {
            final.value.length = i;
            break;
        }
        if (r.issues.length) {
            if (!isPresent && i >= optoutStart) {
                final.value.length = i;
                break;
            }
            final.issues.push(...prefixIssues(i, r.issues));
        }
        final.value[i] = r.value;
    }
    // Drop trailing slots that produced `undefined` for absent input
    // (the array analog of an absent optional key on an object). The
    // `i >= input.length` floor is critical: an explicit `undefined`
    // *inside* the input must be preserved even when the schema is
    // optional-out (e.g. `z.string().or(z.undefined())` accepting an
    // explicit undefined value).
    for (let i = final.value.length - 1; i >= input.length; i--) {
        if (items[i]._zod.optout === "optional" && final.value[i] === undefined) {
            final.value.length = i;
        }
        else {
            break;
        }
    }
    return final;
}
const $ZodRecord = /*@__PURE__*/ $constructor("$ZodRecord", (inst, def) => {
    $ZodType.init(inst, def);
    const memo = globalConfig.memoizer;
    memo?.attach(inst);
    inst._zod.parse = (payload, ctx) => {
        const input = payload.value;
        if (!isPlainObject(input)) {
            payload.issues.push({
                expected: "record",
                code: "invalid_type",
                input,
                inst,
            });
            return payload;
        }
        // no guard in either loop below: a record's invalid_key aborts but an enclosing intersection can reconcile it, so a stopped loop hides keys the sibling does not own and the intersection then rejects nothing
        const proms = [];
        const values = def.keyType._zod.values;
        if (values && !def.partial) {
            payload.value = memo ? memo.alloc(inst, payload, {}, ctx) : {};
            const recordKeys = new Set();
            for (const key of values) {
                if (typeof key === "string" || typeof key === "number" || typeof key === "symbol") {
                    recordKeys.add(typeof key === "number" ? key.toString() : key);
                    // A declared __proto__ is stripped but is not an unrecognized key.
                    if (key === "__proto__")
                        continue;
                    const keyResult = def.keyType._zod.run({ value: key, issues: [] }, ctx);
                    if (keyResult instanceof Promise) {
                        throw new Error("Async schemas not supported in object keys currently");
                    }
                    if (keyResult.issues.length) {
                        payload.issues.push({
                            code: "invalid_key",
                            origin: "record",
                            issues: keyResult.issues.map((iss) => finalizeIssue(iss, ctx, config())),
                            input: key,
                            path: [key],
                            inst,
                        });
                        continue;
                    }
                    const outKey = keyResult.value;
                    if (outKey === "__proto__")
                        continue;
                    const result = def.valueType._zod.run({ value: input[key], issues: [] }, ctx);
                    if (result instanceof Promise) {
                        proms.push(result.then((result) => {
                            if (result.issues.length) {
                                payload.issues.push(...prefixIssues(key, result.issues));
                            }
                            payload.value[outKey] = result.value;
                        }));
                    }
                    else {
                        if (result.issues.length) {
                            payload.issues.push(...prefixIssues(key, result.issues));
                        }
                        payload.value[outKey] = result.value;
                    }
                }
            }
            let unrecognized;
            for (const key in input) {
                if (!recordKeys.has(key)) {
                    if (def.mode === "loose") {
                        // skip __proto__ so it can't replace the result prototype via the assignment setter on the plain {} we build into
                        if (key === "__proto__")
                            continue;
                        payload.value[key] = input[key];
                    }
                    else {
                        unrecognized = unrecognized ?? [];
                        unrecognized.push(key);
                    }
                }
            }
            if (unrecognized && unrecognized.length > 0) {
                payload.issues.push({
                    code: "unrecognized_keys",
                    input,
                    inst,
                    keys: unrecognized,
                    continue: true,
                });
            }
        }
        else {
            payload.value = memo ? memo.alloc(inst, payload, {}, ctx) : {};
            // An enumerable key schema declares which keys the record owns, so a key outside the set is unrecognized. A non-enumerable one (regex, refine) is a constraint every key must satisfy, so a failing key is invalid. Only the former is reconcilable against the other side of an intersection.
            let unrecognized;
            // Reflect.ownKeys for Symbol-key support; filter non-enumerable to match z.object()
            for (const key of Reflect.ownKeys(input)) {
                if (key === "__proto__")
                    continue;
                if (!Object.prototype.propertyIsEnumerable.call(input, key))
                    continue;
                let keyResult = def.keyType._zod.run({ value: key, issues: [] }, ctx);
                if (keyResult instanceof Promise) {
                    throw new Error("Async schemas not supported in object keys currently");
                }
                // Numeric string fallback: if key is a numeric string and failed, retry with Number(key). This handles z.number(), z.literal([1, 2, 3]), and unions containing numeric literals
                const checkNumericKey = typeof key === "string" && number.test(key) && keyResult.issues.length;
                if (checkNumericKey) {
                    const retryResult = def.keyType._zod.run({ value: Number(key), issues: [] }, ctx);
                    if (retryResult instanceof Promise) {
                        throw new Error("Async schemas not supported in object keys currently");
                    }
                    if (retryResult.issues.length === 0) {
                        keyResult = retryResult;
                    }
                }
                if (keyResult.issues.length) {
                    if (def.mode === "loose") {
                        // Pass through unchanged
                        payload.value[key] = input[key];
                    }
                    else if (values) {
                        unrecognized = unrecognized ?? [];
                        unrecognized.push(key);
                    }
                    else {
                        // Default "strict" behavior: error on invalid key
                        payload.issues.push({
                            code: "invalid_key",
                            origin: "record",
                            issues: keyResult.issues.map((iss) => finalizeIssue(iss, ctx, config())),
                            input: key,
                            path: [key],
                            inst,
                        });
                    }
                    continue;
                }
                // the guard above tests the raw input key, but the key schema can normalize an ordinary key into __proto__; re-check the key we actually write under
                const outKey = keyResult.value;
                if (outKey === "__proto__")
                    continue;
                const result = def.valueType._zod.run({ value: input[key], issues: [] }, ctx);
                if (result instanceof Promise) {
                    proms.push(result.then((result) => {
                        if (result.issues.length) {
                            payload.issues.push(...prefixIssues(key, result.issues));
                        }
                        payload.value[outKey] = result.value;
                    }));
                }
                else {
                    if (result.issues.length) {
                        payload.issues.push(...prefixIssues(key, result.issues));
                    }
                    payload.value[outKey] = result.value;
                }
            }
            if (unrecognized && unrecognized.length > 0) {
                payload.issues.push({
                    code: "unrecognized_keys",
                    input,
                    inst,
                    keys: unrecognized,
                    continue: true,
                });
            }
        }
        if (proms.length) {
            return Promise.all(proms).then(() => payload);
        }
        return payload;
    };
});
const $ZodMap = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodMap", (inst, def) => {
    $ZodType.init(inst, def);
    const memo = core.globalConfig.memoizer;
    memo?.attach(inst);
    inst._zod.parse = (payload, ctx) => {
        const input = payload.value;
        if (!(input instanceof Map)) {
            payload.issues.push({
                expected: "map",
                code: "invalid_type",
                input,
                inst,
            });
            return payload;
        }
        const proms = [];
        payload.value = memo ? memo.alloc(inst, payload, new Map(), ctx) : new Map();
        const abortEarly = ctx?.abortEarly;
        let seen = payload.issues.length;
        for (const [key, value] of input) {
            if (abortEarly && payload.issues.length !== seen) {
                if (util.aborted(payload, seen))
                    break;
                seen = payload.issues.length;
            }
            const keyResult = def.keyType._zod.run({ value: key, issues: [] }, ctx);
            const valueResult = def.valueType._zod.run({ value: value, issues: [] }, ctx);
            if (keyResult instanceof Promise || valueResult instanceof Promise) {
                proms.push(Promise.all([keyResult, valueResult]).then(([keyResult, valueResult]) => {
                    handleMapResult(keyResult, valueResult, payload, key, input, inst, ctx);
                }));
            }
            else {
                handleMapResult(keyResult, valueResult, payload, key, input, inst, ctx);
            }
        }
        if (proms.length)
            return Promise.all(proms).then(() => payload);
        return payload;
    };
    capSize(inst, mapSize);
})));
function handleMapResult(keyResult, valueResult, final, key, input, inst, ctx) {
    if (keyResult.issues.length) {
        if (util.propertyKeyTypes.has(typeof key)) {
            final.issues.push(...util.prefixIssues(key, keyResult.issues));
        }
        else {
            final.issues.push({
                code: "invalid_key",
                origin: "map",
                input,
                inst,
                issues: keyResult.issues.map((iss) => util.finalizeIssue(iss, ctx, core.config())),
            });
        }
    }
    if (valueResult.issues.length) {
        if (util.propertyKeyTypes.has(typeof key)) {
            final.issues.push(...util.prefixIssues(key, valueResult.issues));
        }
        else {
            final.issues.push({
                origin: "map",
                code: "invalid_element",
                input,
                inst,
                key: key,
                issues: valueResult.issues.map((iss) => util.finalizeIssue(iss, ctx, core.config())),
            });
        }
    }
    final.value.set(keyResult.value, valueResult.value);
}
const $ZodSet = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodSet", (inst, def) => {
    $ZodType.init(inst, def);
    const memo = core.globalConfig.memoizer;
    memo?.attach(inst);
    inst._zod.parse = (payload, ctx) => {
        const input = payload.value;
        if (!(input instanceof Set)) {
            payload.issues.push({
                input,
                inst,
                expected: "set",
                code: "invalid_type",
            });
            return payload;
        }
        const proms = [];
        payload.value = memo ? memo.alloc(inst, payload, new Set(), ctx) : new Set();
        const abortEarly = ctx?.abortEarly;
        let seen = payload.issues.length;
        for (const item of input) {
            if (abortEarly && payload.issues.length !== seen) {
                if (util.aborted(payload, seen))
                    break;
                seen = payload.issues.length;
            }
            const result = def.valueType._zod.run({ value: item, issues: [] }, ctx);
            if (result instanceof Promise) {
                proms.push(result.then((result) => handleSetResult(result, payload)));
            }
            else
                handleSetResult(result, payload);
        }
        if (proms.length)
            return Promise.all(proms).then(() => payload);
        return payload;
    };
    capSize(inst, setSize);
})));
function handleSetResult(result, final) {
    if (result.issues.length) {
        final.issues.push(...result.issues);
    }
    final.value.add(result.value);
}
const $ZodEnum = /*@__PURE__*/ $constructor("$ZodEnum", (inst, def) => {
    $ZodType.init(inst, def);
    const values = getEnumValues(def.entries);
    const valuesSet = new Set(values);
    inst._zod.values = valuesSet;
    defineLazyInternal(inst, "pattern", (zod) => {
        const patternValues = getEnumValues(zod.def.entries).filter((k) => propertyKeyTypes.has(typeof k));
        // unmatchable fallback, RE2-safe: an empty alternation would compile to /^()$/, which matches ""
        return new RegExp(patternValues.length ? `^(${patternValues.map((o) => escapeRegex(o.toString())).join("|")})$` : "^[^\\s\\S]$");
    });
    inst._zod.parse = (payload, _ctx) => {
        const input = payload.value;
        if (valuesSet.has(input)) {
            return payload;
        }
        payload.issues.push({
            code: "invalid_value",
            values,
            input,
            inst,
        });
        return payload;
    };
});
const $ZodLiteral = /*@__PURE__*/ $constructor("$ZodLiteral", (inst, def) => {
    $ZodType.init(inst, def);
    const values = new Set(def.values);
    inst._zod.values = values;
    defineLazyInternal(inst, "pattern", (zod) => {
        const vals = zod.def.values;
        // unmatchable fallback, RE2-safe: an empty alternation would compile to /^()$/, which matches ""
        return new RegExp(vals.length
            ? `^(${vals
                .map((o) => typeof o === "string" ? escapeRegex(o) : o ? escapeRegex(o.toString()) : String(o))
                .join("|")})$`
            : "^[^\\s\\S]$");
    });
    inst._zod.parse = (payload, _ctx) => {
        const input = payload.value;
        if (values.has(input)) {
            return payload;
        }
        payload.issues.push({
            code: "invalid_value",
            values: def.values,
            input,
            inst,
        });
        return payload;
    };
});
const $ZodFile = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodFile", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload, _ctx) => {
        const input = payload.value;
        // @ts-ignore
        if (input instanceof File)
            return payload;
        payload.issues.push({
            expected: "file",
            code: "invalid_type",
            input,
            inst,
        });
        return payload;
    };
})));
const $ZodTransform = /*@__PURE__*/ $constructor("$ZodTransform", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.optin = "optional";
    globalConfig.memoizer?.guard(inst);
    inst._zod.parse = (payload, ctx) => {
        if (ctx.direction === "backward") {
            throw new $ZodEncodeError(inst.constructor.name);
        }
        const _out = def.transform(payload.value, payload);
        if (ctx.async) {
            const output = _out instanceof Promise ? _out : Promise.resolve(_out);
            return output.then((output) => {
                payload.value = output;
                return payload;
            });
        }
        if (_out instanceof Promise) {
            throw new $ZodAsyncError();
        }
        payload.value = _out;
        return payload;
    };
});
function handleOptionalResult(payload, result) {
    // A substituting schema that still failed has no usable answer; yield undefined. Its issues are simply dropped: it ran on a payload of its own, so there is no shared array to truncate and nothing of the caller's to lose with it.
    payload.value = result.issues.length ? undefined : result.value;
    return payload;
}
const $ZodOptional = /*@__PURE__*/ $constructor("$ZodOptional", (inst, def) => {
    $ZodType.init(inst, def);
    // .optional() propagates absence rather than substituting for it, so a defaulted inner keeps its rung.
    defineLazyInternal(inst, "optin", (zod) => zod.def.innerType._zod.optin === "defaulted" ? "defaulted" : "optional");
    inst._zod.optout = "optional";
    defineLazyInternal(inst, "values", (zod) => {
        const values = zod.def.innerType._zod.values;
        return values ? new Set([...values, undefined]) : undefined;
    });
    defineLazyInternal(inst, "pattern", (zod) => {
        const pattern = zod.def.innerType._zod.pattern;
        return pattern ? new RegExp(`^(${cleanRegex(pattern.source)})?$`) : undefined;
    });
    inst._zod.parse = (payload, ctx) => {
        if (payload.value === undefined) {
            // Only the top rung substitutes a value for absence; everything else leaves it intact, which is what .optional() means.
            if (def.innerType._zod.optin !== "defaulted")
                return payload;
            // Its own payload, for the same reason $ZodCatch gets one: a pipe forwards an unrecognized key through the caller's issues array, and this must not read that as the substituting schema failing and drop it.
            const result = def.innerType._zod.run({ value: payload.value, issues: [] }, ctx);
            if (result instanceof Promise)
                return result.then((result) => handleOptionalResult(payload, result));
            return handleOptionalResult(payload, result);
        }
        return def.innerType._zod.run(payload, ctx);
    };
});
const $ZodExactOptional = /*@__PURE__*/ $constructor("$ZodExactOptional", (inst, def) => {
    // Call parent init - inherits optin/optout = "optional"
    $ZodOptional.init(inst, def);
    // Override values/pattern to NOT add undefined
    defineLazyInternal(inst, "values", (zod) => zod.def.innerType._zod.values);
    defineLazyInternal(inst, "pattern", (zod) => zod.def.innerType._zod.pattern);
    // Override parse to just delegate (no undefined handling)
    inst._zod.parse = (payload, ctx) => {
        return def.innerType._zod.run(payload, ctx);
    };
});
const $ZodNullable = /*@__PURE__*/ $constructor("$ZodNullable", (inst, def) => {
    $ZodType.init(inst, def);
    defineLazyInternal(inst, "optin", (zod) => zod.def.innerType._zod.optin);
    defineLazyInternal(inst, "optout", (zod) => zod.def.innerType._zod.optout);
    defineLazyInternal(inst, "pattern", (zod) => {
        const pattern = zod.def.innerType._zod.pattern;
        return pattern ? new RegExp(`^(${cleanRegex(pattern.source)}|null)$`) : undefined;
    });
    defineLazyInternal(inst, "values", (zod) => {
        return zod.def.innerType._zod.values ? new Set([...zod.def.innerType._zod.values, null]) : undefined;
    });
    inst._zod.parse = (payload, ctx) => {
        // Forward direction (decode): allow null to pass through
        if (payload.value === null)
            return payload;
        return def.innerType._zod.run(payload, ctx);
    };
});
const $ZodDefault = /*@__PURE__*/ $constructor("$ZodDefault", (inst, def) => {
    $ZodType.init(inst, def);
    // inst._zod.qin = "true";
    inst._zod.optin = "defaulted";
    defineLazyInternal(inst, "values", (zod) => zod.def.innerType._zod.values);
    inst._zod.parse = (payload, ctx) => {
        if (ctx.direction === "backward") {
            return def.innerType._zod.run(payload, ctx);
        }
        // Forward direction (decode): apply defaults for undefined input
        if (payload.value === undefined) {
            payload.value = def.defaultValue;
            /**
             * $ZodDefault returns the default value immediately in forward direction.
             * It doesn't pass the default value into the validator ("prefault"). There's no reason to pass the default value through validation. The validity of the default is enforced by TypeScript statically. Otherwise, it's the responsibility of the user to ensure the default is valid. In the case of pipes with divergent in/out types, you can specify the default on the `in` schema of your ZodPipe to set a "prefault" for the pipe.   */
            return payload;
        }
        // Forward direction: continue with default handling
        const result = def.innerType._zod.run(payload, ctx);
        if (result instanceof Promise) {
            return result.then((result) => handleDefaultResult(result, def));
        }
        return handleDefaultResult(result, def);
    };
});
function handleDefaultResult(payload, def) {
    if (payload.value === undefined) {
        payload.value = def.defaultValue;
    }
    return payload;
}
const $ZodPrefault = /*@__PURE__*/ $constructor("$ZodPrefault", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.optin = "defaulted";
    defineLazyInternal(inst, "values", (zod) => zod.def.innerType._zod.values);
    inst._zod.parse = (payload, ctx) => {
        if (ctx.direction === "backward") {
            return def.innerType._zod.run(payload, ctx);
        }
        // Forward direction (decode): apply prefault for undefined input
        if (payload.value === undefined) {
            payload.value = def.defaultValue;
        }
        return def.innerType._zod.run(payload, ctx);
    };
});
const $ZodNonOptional = /*@__PURE__*/ $constructor("$ZodNonOptional", (inst, def) => {
    $ZodType.init(inst, def);
    defineLazyInternal(inst, "values", (zod) => {
        const v = zod.def.innerType._zod.values;
        return v ? new Set([...v].filter((x) => x !== undefined)) : undefined;
    });
    inst._zod.parse = (payload, ctx) => {
        const result = def.innerType._zod.run(payload, ctx);
        if (result instanceof Promise) {
            return result.then((result) => handleNonOptionalResult(result, inst));
        }
        return handleNonOptionalResult(result, inst);
    };
});
function handleNonOptionalResult(payload, inst) {
    if (!payload.issues.length && payload.value === undefined) {
        payload.issues.push({
            code: "invalid_type",
            expected: "nonoptional",
            input: payload.value,
            inst,
        });
    }
    return payload;
}
const $ZodSuccess = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodSuccess", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload, ctx) => {
        if (ctx.direction === "backward") {
            throw new core.$ZodEncodeError("ZodSuccess");
        }
        const result = def.innerType._zod.run(payload, ctx);
        if (result instanceof Promise) {
            return result.then((result) => {
                payload.value = result.issues.length === 0;
                return payload;
            });
        }
        payload.value = result.issues.length === 0;
        return payload;
    };
})));
function handleCatchResult(payload, result, def, ctx) {
    if (!result.issues.length) {
        payload.value = result.value;
        // The value carries up, so the flag describing it has to carry with it: a back-edge into a node still being parsed must not be frozen by an enclosing readonly, and its checks belong to the node itself. Guarded so the ordinary case adds no own property.
        if (result.memo)
            payload.memo = true;
        return payload;
    }
    // Spread the inner's own payload, not ours: `value` has to stay the input the catch was handed, and the inner ran on a payload of its own so its issues are already private to this call.
    payload.value = def.catchValue({
        ...result,
        value: payload.value,
        error: {
            issues: result.issues.map((iss) => finalizeIssue(iss, ctx, config())),
        },
        input: payload.value,
    });
    return payload;
}
const $ZodCatch = /*@__PURE__*/ $constructor("$ZodCatch", (inst, def) => {
    $ZodType.init(inst, def);
    defineLazyInternal(inst, "optin", (zod) => zod.def.innerType._zod.optin === "defaulted" ? "defaulted" : "optional");
    defineLazyInternal(inst, "optout", (zod) => zod.def.innerType._zod.optout);
    defineLazyInternal(inst, "values", (zod) => zod.def.innerType._zod.values);
    inst._zod.parse = (payload, ctx) => {
        if (ctx.direction === "backward") {
            return def.innerType._zod.run(payload, ctx);
        }
        // Forward direction (decode): apply catch logic
        const result = def.innerType._zod.run({ value: payload.value, issues: [] }, ctx);
        if (result instanceof Promise) {
            return result.then((result) => handleCatchResult(payload, result, def, ctx));
        }
        return handleCatchResult(payload, result, def, ctx);
    };
});
const $ZodNaN = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodNaN", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload, _ctx) => {
        if (typeof payload.value !== "number" || !Number.isNaN(payload.value)) {
            payload.issues.push({
                input: payload.value,
                inst,
                expected: "nan",
                code: "invalid_type",
            });
            return payload;
        }
        return payload;
    };
})));
const $ZodPipe = /*@__PURE__*/ $constructor("$ZodPipe", (inst, def) => {
    $ZodType.init(inst, def);
    defineLazyInternal(inst, "values", (zod) => zod.def.in._zod.values);
    defineLazyInternal(inst, "optin", (zod) => zod.def.in._zod.optin);
    defineLazyInternal(inst, "optout", (zod) => zod.def.out._zod.optout);
    defineLazyInternal(inst, "propValues", (zod) => zod.def.in._zod.propValues);
    inst._zod.parse = (payload, ctx) => {
        if (ctx.direction === "backward") {
            const right = def.out._zod.run(payload, ctx);
            if (right instanceof Promise) {
                return right.then((right) => handlePipeResult(right, def.in, ctx));
            }
            return handlePipeResult(right, def.in, ctx);
        }
        const left = def.in._zod.run(payload, ctx);
        if (left instanceof Promise) {
            return left.then((left) => handlePipeResult(left, def.out, ctx));
        }
        return handlePipeResult(left, def.out, ctx);
    };
});
function handlePipeResult(left, next, ctx) {
    // Any issue stops the pipe, so a failing refinement never feeds its transform. An unrecognized key is the exception: it describes the input's extra properties, not the value being piped, and an enclosing intersection may yet reconcile it.
    if (left.issues.some((iss) => iss.code !== "unrecognized_keys")) {
        // prevent further checks
        left.aborted = true;
        return left;
    }
    return next._zod.run({ value: left.value, issues: left.issues }, ctx);
}
const $ZodCodec = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodCodec", (inst, def) => {
    $ZodType.init(inst, def);
    util.defineLazyInternal(inst, "values", (zod) => zod.def.in._zod.values);
    util.defineLazyInternal(inst, "optin", (zod) => zod.def.in._zod.optin);
    util.defineLazyInternal(inst, "optout", (zod) => zod.def.out._zod.optout);
    util.defineLazyInternal(inst, "propValues", (zod) => zod.def.in._zod.propValues);
    inst._zod.parse = (payload, ctx) => {
        const direction = ctx.direction || "forward";
        if (direction === "forward") {
            const left = def.in._zod.run(payload, ctx);
            if (left instanceof Promise) {
                return left.then((left) => handleCodecAResult(left, def, ctx));
            }
            return handleCodecAResult(left, def, ctx);
        }
        else {
            const right = def.out._zod.run(payload, ctx);
            if (right instanceof Promise) {
                return right.then((right) => handleCodecAResult(right, def, ctx));
            }
            return handleCodecAResult(right, def, ctx);
        }
    };
})));
function handleCodecAResult(result, def, ctx) {
    if (result.issues.length) {
        // prevent further checks
        result.aborted = true;
        return result;
    }
    const direction = ctx.direction || "forward";
    if (direction === "forward") {
        const transformed = def.transform(result.value, result);
        if (transformed instanceof Promise) {
            return transformed.then((value) => handleCodecTxResult(result, value, def.out, ctx));
        }
        return handleCodecTxResult(result, transformed, def.out, ctx);
    }
    else {
        const transformed = def.reverseTransform(result.value, result);
        if (transformed instanceof Promise) {
            return transformed.then((value) => handleCodecTxResult(result, value, def.in, ctx));
        }
        return handleCodecTxResult(result, transformed, def.in, ctx);
    }
}
function handleCodecTxResult(left, value, nextSchema, ctx) {
    // Check if transform added any issues
    if (left.issues.length) {
        left.aborted = true;
        return left;
    }
    return nextSchema._zod.run({ value, issues: left.issues }, ctx);
}
const $ZodPreprocess = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodPreprocess", (inst, def) => {
    $ZodPipe.init(inst, def);
})));
const $ZodReadonly = /*@__PURE__*/ $constructor("$ZodReadonly", (inst, def) => {
    $ZodType.init(inst, def);
    defineLazyInternal(inst, "propValues", (zod) => zod.def.innerType._zod.propValues);
    defineLazyInternal(inst, "values", (zod) => zod.def.innerType._zod.values);
    defineLazyInternal(inst, "optin", (zod) => zod.def.innerType?._zod?.optin);
    defineLazyInternal(inst, "optout", (zod) => zod.def.innerType?._zod?.optout);
    inst._zod.parse = (payload, ctx) => {
        if (ctx.direction === "backward") {
            return def.innerType._zod.run(payload, ctx);
        }
        const result = def.innerType._zod.run(payload, ctx);
        if (result instanceof Promise) {
            return result.then(handleReadonlyResult);
        }
        return handleReadonlyResult(result);
    };
});
function handleReadonlyResult(payload) {
    // A repeat visit hands back a node that is still being built; freezing it here would make the rest of its keys fail to assign.
    if (!payload.memo)
        payload.value = Object.freeze(payload.value);
    return payload;
}
// a leaf's pattern source with its own checks folded in: the last pattern-carrying check wins, else length bounds narrow the catch-all, else an integer format narrows the number form. the fold lives here instead of on `_zod.pattern` so a bundle without template literals never pays for it
function leafPattern(schema) {
    const def = schema._zod.def;
    let pattern = def.pattern;
    let isInt = !!def.format?.includes("int");
    let minimum;
    let maximum;
    for (const ch of def.checks ?? []) {
        const d = ch._zod.def;
        if (d.pattern)
            pattern = d.pattern;
        isInt || (isInt = !!d.format?.includes("int"));
        const lo = d.minimum ?? d.length;
        const hi = d.maximum ?? d.length;
        if (lo !== undefined && (minimum === undefined || lo > minimum))
            minimum = lo;
        if (hi !== undefined && (maximum === undefined || hi < maximum))
            maximum = hi;
    }
    if (pattern)
        return pattern.source;
    // an empty range matches nothing at runtime, and `{8,5}` is not a legal quantifier
    if (minimum !== undefined && maximum !== undefined && minimum > maximum)
        return "(?!)";
    if (minimum !== undefined || maximum !== undefined)
        return regexes.string({ minimum, maximum }).source;
    const own = schema._zod.pattern;
    return (isInt && own === regexes.number ? regexes.integer : own)?.source;
}
// a part's pattern source. a wrapper's pattern embeds its inner pattern's source verbatim, so the folded form is substituted in place without knowing the wrapper's own composition; a union's options are joined the way the union builds its own pattern
function partPattern(schema) {
    const def = schema._zod.def;
    const own = schema._zod.pattern?.source;
    // lazy resolves its inner on the internals, not the def
    const inner = def.innerType ?? schema._zod.innerType;
    if (inner) {
        const before = inner._zod.pattern?.source;
        const after = partPattern(inner);
        if (own && before && after && after !== before) {
            return own.replace(util.cleanRegex(before), () => util.cleanRegex(after));
        }
        return own;
    }
    if (def.options) {
        const sources = def.options.map(partPattern);
        if (sources.every(Boolean))
            return `^(${sources.map((s) => util.cleanRegex(s)).join("|")})$`;
    }
    return leafPattern(schema);
}
const $ZodTemplateLiteral = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodTemplateLiteral", (inst, def) => {
    $ZodType.init(inst, def);
    const regexParts = [];
    for (const part of def.parts) {
        if (typeof part === "object" && part !== null) {
            // is Zod schema
            const source = partPattern(part);
            if (!source) {
                throw new Error(`Invalid template literal part, no pattern found: ${[...part._zod.traits].shift()}`);
            }
            regexParts.push(util.cleanRegex(source));
        }
        else if (part === null || util.primitiveTypes.has(typeof part)) {
            regexParts.push(util.escapeRegex(`${part}`));
        }
        else {
            throw new Error(`Invalid template literal part: ${part}`);
        }
    }
    inst._zod.pattern = new RegExp(`^${regexParts.join("")}$`);
    inst._zod.parse = (payload, _ctx) => {
        if (typeof payload.value !== "string") {
            payload.issues.push({
                input: payload.value,
                inst,
                expected: "string",
                code: "invalid_type",
            });
            return payload;
        }
        inst._zod.pattern.lastIndex = 0;
        if (!inst._zod.pattern.test(payload.value)) {
            payload.issues.push({
                input: payload.value,
                inst,
                code: "invalid_format",
                format: def.format ?? "template_literal",
                pattern: inst._zod.pattern.source,
            });
            return payload;
        }
        return payload;
    };
})));
const $ZodFunction = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodFunction", (inst, def) => {
    $ZodType.init(inst, def);
    // Defined, not assigned: the classic prototype exposes `_def` as a getter with no setter.
    Object.defineProperty(inst, "_def", { value: def });
    inst._zod.def = def;
    inst.implement = (func) => {
        if (typeof func !== "function") {
            throw new Error("implement() must be called with a function");
        }
        // Defined inline so the closure stays anonymous: binding it to a `const` first names it, which costs 256 bytes per implemented function.
        return Object.defineProperty(function (...args) {
            const parsedArgs = inst._def.input ? parse(inst._def.input, args) : args;
            const result = Reflect.apply(func, this, parsedArgs);
            if (inst._def.output) {
                return parse(inst._def.output, result);
            }
            return result;
        }, "_zod", { value: inst._zod, enumerable: false });
    };
    inst.implementAsync = (func) => {
        if (typeof func !== "function") {
            throw new Error("implementAsync() must be called with a function");
        }
        return Object.defineProperty(async function (...args) {
            const parsedArgs = inst._def.input ? await parseAsync(inst._def.input, args) : args;
            const result = await Reflect.apply(func, this, parsedArgs);
            if (inst._def.output) {
                return await parseAsync(inst._def.output, result);
            }
            return result;
        }, "_zod", { value: inst._zod, enumerable: false });
    };
    inst._zod.parse = (payload, _ctx) => {
        if (typeof payload.value !== "function") {
            payload.issues.push({
                code: "invalid_type",
                expected: "function",
                input: payload.value,
                inst,
            });
            return payload;
        }
        // Check if output is a promise type to determine if we should use async implementation
        const hasPromiseOutput = inst._def.output && inst._def.output._zod.def.type === "promise";
        if (hasPromiseOutput) {
            payload.value = inst.implementAsync(payload.value);
        }
        else {
            payload.value = inst.implement(payload.value);
        }
        return payload;
    };
    inst.input = (...args) => {
        const F = inst.constructor;
        if (Array.isArray(args[0])) {
            return new F({
                type: "function",
                input: new $ZodTuple({
                    type: "tuple",
                    items: args[0],
                    rest: args[1],
                }),
                output: inst._def.output,
            });
        }
        return new F({
            type: "function",
            input: args[0],
            output: inst._def.output,
        });
    };
    inst.output = (output) => {
        const F = inst.constructor;
        return new F({
            type: "function",
            input: inst._def.input,
            output,
        });
    };
    return inst;
})));
const $ZodPromise = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodPromise", (inst, def) => {
    $ZodType.init(inst, def);
    inst._zod.parse = (payload, ctx) => {
        return Promise.resolve(payload.value).then((inner) => def.innerType._zod.run({ value: inner, issues: [] }, ctx));
    };
})));
const $ZodLazy = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("$ZodLazy", (inst, def) => {
    $ZodType.init(inst, def);
    // Cache the resolved inner type on the shared `def` so all clones of this lazy (e.g. via `.describe()`/`.meta()`) share the same inner instance, preserving identity for cycle detection on recursive schemas.
    util.defineLazy(inst._zod, "innerType", () => {
        const d = def;
        if (!d._cachedInner)
            d._cachedInner = def.getter();
        return d._cachedInner;
    });
    util.defineLazyInternal(inst, "pattern", (zod) => zod.innerType?._zod?.pattern);
    util.defineLazyInternal(inst, "propValues", (zod) => zod.innerType?._zod?.propValues);
    util.defineLazyInternal(inst, "optin", (zod) => zod.innerType?._zod?.optin ?? undefined);
    util.defineLazyInternal(inst, "optout", (zod) => zod.innerType?._zod?.optout ?? undefined);
    inst._zod.parse = (payload, ctx) => {
        const inner = inst._zod.innerType;
        return inner._zod.run(payload, ctx);
    };
})));
const $ZodCustom = /*@__PURE__*/ $constructor("$ZodCustom", (inst, def) => {
    $ZodCheck.init(inst, def);
    $ZodType.init(inst, def);
    inst._zod.parse = (payload, _) => {
        return payload;
    };
    inst._zod.check = (payload) => {
        const input = payload.value;
        const r = def.fn(input);
        if (r instanceof Promise) {
            return r.then((r) => handleRefineResult(r, payload, input, inst));
        }
        handleRefineResult(r, payload, input, inst);
        return;
    };
});
function handleRefineResult(result, payload, input, inst) {
    if (!result) {
        const _iss = {
            code: "custom",
            input,
            inst, // incorporates params.error into issue reporting
            path: [...(inst._zod.def.path ?? [])], // incorporates params.error into issue reporting
            continue: !inst._zod.def.abort,
            // params: inst._zod.def.params,
        };
        if (inst._zod.def.params)
            _iss.params = inst._zod.def.params;
        payload.issues.push(util_issue(_iss));
    }
}

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/registries.js
var registries_a;
const $output = /*@__PURE__*/ (/* unused pure expression or super */ null && (Symbol("ZodOutput")));
const $input = /*@__PURE__*/ (/* unused pure expression or super */ null && (Symbol("ZodInput")));
class $ZodRegistry {
    constructor() {
        this._map = new WeakMap();
        this._idmap = new Map();
    }
    add(schema, ..._meta) {
        const meta = _meta[0];
        this._map.set(schema, meta);
        if (meta && typeof meta === "object" && "id" in meta) {
            this._idmap.set(meta.id, schema);
        }
        return this;
    }
    clear() {
        this._map = new WeakMap();
        this._idmap = new Map();
        return this;
    }
    remove(schema) {
        const meta = this._map.get(schema);
        if (meta && typeof meta === "object" && "id" in meta) {
            this._idmap.delete(meta.id);
        }
        this._map.delete(schema);
        return this;
    }
    get(schema) {
        // return this._map.get(schema) as any;
        // inherit metadata
        const p = schema._zod.parent;
        if (p) {
            const pm = { ...(this.get(p) ?? {}) };
            delete pm.id; // do not inherit id
            const f = { ...pm, ...this._map.get(schema) };
            return Object.keys(f).length ? f : undefined;
        }
        return this._map.get(schema);
    }
    has(schema) {
        return this._map.has(schema);
    }
}
// registries
function registry() {
    return new $ZodRegistry();
}
(registries_a = globalThis).__zod_globalRegistry ?? (registries_a.__zod_globalRegistry = registry());
const globalRegistry = globalThis.__zod_globalRegistry;

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/api.js




function snapshotChecks(def) {
    if (def.checks)
        def.checks = [...def.checks];
    return def;
}
// @__NO_SIDE_EFFECTS__
function _string(Class, params) {
    return new Class(snapshotChecks({ type: "string", ...normalizeParams(params) }));
}
// @__NO_SIDE_EFFECTS__
function _coercedString(Class, params) {
    return new Class(snapshotChecks({ type: "string", coerce: true, ...util.normalizeParams(params) }));
}
// @__NO_SIDE_EFFECTS__
function _email(Class, params) {
    return new Class({
        type: "string",
        format: "email",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _guid(Class, params) {
    return new Class({
        type: "string",
        format: "guid",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _uuid(Class, params) {
    return new Class({
        type: "string",
        format: "uuid",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _uuidv4(Class, params) {
    return new Class({
        type: "string",
        format: "uuid",
        check: "string_format",
        abort: false,
        version: "v4",
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _uuidv6(Class, params) {
    return new Class({
        type: "string",
        format: "uuid",
        check: "string_format",
        abort: false,
        version: "v6",
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _uuidv7(Class, params) {
    return new Class({
        type: "string",
        format: "uuid",
        check: "string_format",
        abort: false,
        version: "v7",
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _url(Class, params) {
    return new Class({
        type: "string",
        format: "url",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function api_emoji(Class, params) {
    return new Class({
        type: "string",
        format: "emoji",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _nanoid(Class, params) {
    return new Class({
        type: "string",
        format: "nanoid",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
/**
 * @deprecated CUID v1 is deprecated by its authors due to information leakage
 * (timestamps embedded in the id). Use {@link _cuid2} instead.
 * See https://github.com/paralleldrive/cuid.
 */
// @__NO_SIDE_EFFECTS__
function _cuid(Class, params) {
    return new Class({
        type: "string",
        format: "cuid",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _cuid2(Class, params) {
    return new Class({
        type: "string",
        format: "cuid2",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _ulid(Class, params) {
    return new Class({
        type: "string",
        format: "ulid",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _xid(Class, params) {
    return new Class({
        type: "string",
        format: "xid",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _ksuid(Class, params) {
    return new Class({
        type: "string",
        format: "ksuid",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _ipv4(Class, params) {
    return new Class({
        type: "string",
        format: "ipv4",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _ipv6(Class, params) {
    return new Class({
        type: "string",
        format: "ipv6",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _mac(Class, params) {
    return new Class({
        type: "string",
        format: "mac",
        check: "string_format",
        abort: false,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _cidrv4(Class, params) {
    return new Class({
        type: "string",
        format: "cidrv4",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _cidrv6(Class, params) {
    return new Class({
        type: "string",
        format: "cidrv6",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _base64(Class, params) {
    return new Class({
        type: "string",
        format: "base64",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _base64url(Class, params) {
    return new Class({
        type: "string",
        format: "base64url",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _e164(Class, params) {
    return new Class({
        type: "string",
        format: "e164",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _creditCard(Class, params) {
    return new Class({
        type: "string",
        format: "credit_card",
        check: "string_format",
        abort: false,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _iban(Class, params) {
    return new Class({
        type: "string",
        format: "iban",
        check: "string_format",
        abort: false,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _jwt(Class, params) {
    return new Class({
        type: "string",
        format: "jwt",
        check: "string_format",
        abort: false,
        ...normalizeParams(params),
    });
}
const TimePrecision = {
    Any: null,
    Minute: -1,
    Second: 0,
    Millisecond: 3,
    Microsecond: 6,
};
// @__NO_SIDE_EFFECTS__
function _isoDateTime(Class, params) {
    return new Class({
        type: "string",
        format: "datetime",
        check: "string_format",
        offset: false,
        local: false,
        precision: null,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _isoDate(Class, params) {
    return new Class({
        type: "string",
        format: "date",
        check: "string_format",
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _isoTime(Class, params) {
    return new Class({
        type: "string",
        format: "time",
        check: "string_format",
        precision: null,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _isoDuration(Class, params) {
    return new Class({
        type: "string",
        format: "duration",
        check: "string_format",
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _number(Class, params) {
    return new Class(snapshotChecks({ type: "number", checks: [], ...normalizeParams(params) }));
}
// @__NO_SIDE_EFFECTS__
function _coercedNumber(Class, params) {
    return new Class(snapshotChecks({ type: "number", coerce: true, checks: [], ...util.normalizeParams(params) }));
}
// @__NO_SIDE_EFFECTS__
function _int(Class, params) {
    return new Class({
        type: "number",
        check: "number_format",
        abort: false,
        format: "safeint",
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _float32(Class, params) {
    return new Class({
        type: "number",
        check: "number_format",
        abort: false,
        format: "float32",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _float64(Class, params) {
    return new Class({
        type: "number",
        check: "number_format",
        abort: false,
        format: "float64",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _int32(Class, params) {
    return new Class({
        type: "number",
        check: "number_format",
        abort: false,
        format: "int32",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _uint32(Class, params) {
    return new Class({
        type: "number",
        check: "number_format",
        abort: false,
        format: "uint32",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _boolean(Class, params) {
    return new Class({
        type: "boolean",
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _coercedBoolean(Class, params) {
    return new Class({
        type: "boolean",
        coerce: true,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _bigint(Class, params) {
    return new Class({
        type: "bigint",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _coercedBigint(Class, params) {
    return new Class({
        type: "bigint",
        coerce: true,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _int64(Class, params) {
    return new Class({
        type: "bigint",
        check: "bigint_format",
        abort: false,
        format: "int64",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _uint64(Class, params) {
    return new Class({
        type: "bigint",
        check: "bigint_format",
        abort: false,
        format: "uint64",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _symbol(Class, params) {
    return new Class({
        type: "symbol",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function api_undefined(Class, params) {
    return new Class({
        type: "undefined",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function api_null(Class, params) {
    return new Class({
        type: "null",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _any(Class) {
    return new Class({
        type: "any",
    });
}
// @__NO_SIDE_EFFECTS__
function _unknown(Class) {
    return new Class({
        type: "unknown",
    });
}
// @__NO_SIDE_EFFECTS__
function _never(Class, params) {
    return new Class({
        type: "never",
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _void(Class, params) {
    return new Class({
        type: "void",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _date(Class, params) {
    return new Class({
        type: "date",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _coercedDate(Class, params) {
    return new Class({
        type: "date",
        coerce: true,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _nan(Class, params) {
    return new Class({
        type: "nan",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _lt(value, params) {
    return new $ZodCheckLessThan({
        check: "less_than",
        ...normalizeParams(params),
        value,
        inclusive: false,
    });
}
// @__NO_SIDE_EFFECTS__
function _lte(value, params) {
    return new $ZodCheckLessThan({
        check: "less_than",
        ...normalizeParams(params),
        value,
        inclusive: true,
    });
}

// @__NO_SIDE_EFFECTS__
function _gt(value, params) {
    return new $ZodCheckGreaterThan({
        check: "greater_than",
        ...normalizeParams(params),
        value,
        inclusive: false,
    });
}
// @__NO_SIDE_EFFECTS__
function _gte(value, params) {
    return new $ZodCheckGreaterThan({
        check: "greater_than",
        ...normalizeParams(params),
        value,
        inclusive: true,
    });
}

// @__NO_SIDE_EFFECTS__
function _positive(params) {
    return _gt(0, params);
}
// negative
// @__NO_SIDE_EFFECTS__
function _negative(params) {
    return _lt(0, params);
}
// nonpositive
// @__NO_SIDE_EFFECTS__
function _nonpositive(params) {
    return _lte(0, params);
}
// nonnegative
// @__NO_SIDE_EFFECTS__
function _nonnegative(params) {
    return _gte(0, params);
}
// @__NO_SIDE_EFFECTS__
function _multipleOf(value, params) {
    return new $ZodCheckMultipleOf({
        check: "multiple_of",
        ...normalizeParams(params),
        value,
    });
}
// @__NO_SIDE_EFFECTS__
function _maxSize(maximum, params) {
    return new checks.$ZodCheckMaxSize({
        check: "max_size",
        ...util.normalizeParams(params),
        maximum,
    });
}
// @__NO_SIDE_EFFECTS__
function _minSize(minimum, params) {
    return new checks.$ZodCheckMinSize({
        check: "min_size",
        ...util.normalizeParams(params),
        minimum,
    });
}
// @__NO_SIDE_EFFECTS__
function _size(size, params) {
    return new checks.$ZodCheckSizeEquals({
        check: "size_equals",
        ...util.normalizeParams(params),
        size,
    });
}
// @__NO_SIDE_EFFECTS__
function _maxLength(maximum, params) {
    const ch = new $ZodCheckMaxLength({
        check: "max_length",
        ...normalizeParams(params),
        maximum,
    });
    return ch;
}
// @__NO_SIDE_EFFECTS__
function _minLength(minimum, params) {
    return new $ZodCheckMinLength({
        check: "min_length",
        ...normalizeParams(params),
        minimum,
    });
}
// @__NO_SIDE_EFFECTS__
function _length(length, params) {
    return new $ZodCheckLengthEquals({
        check: "length_equals",
        ...normalizeParams(params),
        length,
    });
}
// @__NO_SIDE_EFFECTS__
function _regex(pattern, params) {
    return new $ZodCheckRegex({
        check: "string_format",
        format: "regex",
        ...normalizeParams(params),
        pattern,
    });
}
// @__NO_SIDE_EFFECTS__
function _lowercase(params) {
    return new $ZodCheckLowerCase({
        check: "string_format",
        format: "lowercase",
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _uppercase(params) {
    return new $ZodCheckUpperCase({
        check: "string_format",
        format: "uppercase",
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _includes(includes, params) {
    return new $ZodCheckIncludes({
        check: "string_format",
        format: "includes",
        ...normalizeParams(params),
        includes,
    });
}
// @__NO_SIDE_EFFECTS__
function _startsWith(prefix, params) {
    return new $ZodCheckStartsWith({
        check: "string_format",
        format: "starts_with",
        ...normalizeParams(params),
        prefix,
    });
}
// @__NO_SIDE_EFFECTS__
function _endsWith(suffix, params) {
    return new $ZodCheckEndsWith({
        check: "string_format",
        format: "ends_with",
        ...normalizeParams(params),
        suffix,
    });
}
// @__NO_SIDE_EFFECTS__
function _property(property, schema, params) {
    return new checks.$ZodCheckProperty({
        check: "property",
        property,
        schema,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _properties(shape, params) {
    return new $ZodCheckProperties({
        check: "properties",
        shape,
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _mime(types, params) {
    return new checks.$ZodCheckMimeType({
        check: "mime_type",
        mime: types,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _overwrite(tx) {
    return new $ZodCheckOverwrite({
        check: "overwrite",
        tx,
    });
}
// normalize
// @__NO_SIDE_EFFECTS__
function _normalize(form) {
    return _overwrite((input) => input.normalize(form));
}
// trim
// @__NO_SIDE_EFFECTS__
function _trim() {
    return _overwrite((input) => input.trim());
}
// toLowerCase
// @__NO_SIDE_EFFECTS__
function _toLowerCase() {
    return _overwrite((input) => input.toLowerCase());
}
// toUpperCase
// @__NO_SIDE_EFFECTS__
function _toUpperCase() {
    return _overwrite((input) => input.toUpperCase());
}
// slugify
// @__NO_SIDE_EFFECTS__
function _slugify() {
    return _overwrite((input) => slugify(input));
}
// @__NO_SIDE_EFFECTS__
function _array(Class, element, params) {
    return new Class({
        type: "array",
        element,
        // get element() {
        //   return element;
        // },
        ...normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _union(Class, options, params) {
    return new Class({
        type: "union",
        options,
        ...util.normalizeParams(params),
    });
}
function _xor(Class, options, params) {
    return new Class({
        type: "union",
        options,
        inclusive: false,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _discriminatedUnion(Class, discriminator, options, params) {
    return new Class({
        type: "union",
        options: options,
        discriminator,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _intersection(Class, left, right) {
    return new Class({
        type: "intersection",
        left,
        right,
    });
}
// export function _tuple(
//   Class: util.SchemaClass<schemas.$ZodTuple>,
//   items: [],
//   params?: string | $ZodTupleParams
// ): schemas.$ZodTuple<[], null>;
// @__NO_SIDE_EFFECTS__
function _tuple(Class, items, _paramsOrRest, _params) {
    const hasRest = _paramsOrRest instanceof schemas.$ZodType;
    const params = hasRest ? _params : _paramsOrRest;
    const rest = hasRest ? _paramsOrRest : null;
    return new Class({
        type: "tuple",
        items,
        rest,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _record(Class, keyType, valueType, params) {
    return new Class({
        type: "record",
        keyType,
        valueType,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _map(Class, keyType, valueType, params) {
    return new Class({
        type: "map",
        keyType,
        valueType,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _set(Class, valueType, params) {
    return new Class({
        type: "set",
        valueType,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _enum(Class, values, params) {
    const entries = Array.isArray(values) ? Object.fromEntries(values.map((v) => [v, v])) : values;
    // if (Array.isArray(values)) {
    //   for (const value of values) {
    //     entries[value] = value;
    //   }
    // } else {
    //   Object.assign(entries, values);
    // }
    // const entries: util.EnumLike = {};
    // for (const val of values) {
    //   entries[val] = val;
    // }
    return new Class({
        type: "enum",
        entries,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
/** @deprecated This API has been merged into `z.enum()`. Use `z.enum()` instead.
 *
 * ```ts
 * enum Colors { red, green, blue }
 * z.enum(Colors);
 * ```
 */
function _nativeEnum(Class, entries, params) {
    return new Class({
        type: "enum",
        entries,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _literal(Class, value, params) {
    return new Class({
        type: "literal",
        values: Array.isArray(value) ? value : [value],
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _file(Class, params) {
    return new Class({
        type: "file",
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _transform(Class, fn) {
    return new Class({
        type: "transform",
        transform: fn,
    });
}
// @__NO_SIDE_EFFECTS__
function _optional(Class, innerType) {
    return new Class({
        type: "optional",
        innerType,
    });
}
// @__NO_SIDE_EFFECTS__
function _nullable(Class, innerType) {
    return new Class({
        type: "nullable",
        innerType,
    });
}
// @__NO_SIDE_EFFECTS__
function _default(Class, innerType, defaultValue) {
    return new Class({
        type: "default",
        innerType,
        get defaultValue() {
            return typeof defaultValue === "function" ? defaultValue() : util.shallowClone(defaultValue);
        },
    });
}
// @__NO_SIDE_EFFECTS__
function _nonoptional(Class, innerType, params) {
    return new Class({
        type: "nonoptional",
        innerType,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _success(Class, innerType) {
    return new Class({
        type: "success",
        innerType,
    });
}
// @__NO_SIDE_EFFECTS__
function _catch(Class, innerType, catchValue) {
    return new Class({
        type: "catch",
        innerType,
        catchValue: (typeof catchValue === "function" ? catchValue : util.constantCatch(catchValue)),
    });
}
// @__NO_SIDE_EFFECTS__
function _pipe(Class, in_, out) {
    return new Class({
        type: "pipe",
        in: in_,
        out,
    });
}
// @__NO_SIDE_EFFECTS__
function _readonly(Class, innerType) {
    return new Class({
        type: "readonly",
        innerType,
    });
}
// @__NO_SIDE_EFFECTS__
function _templateLiteral(Class, parts, params) {
    return new Class({
        type: "template_literal",
        parts,
        ...util.normalizeParams(params),
    });
}
// @__NO_SIDE_EFFECTS__
function _lazy(Class, getter) {
    return new Class({
        type: "lazy",
        getter,
    });
}
// @__NO_SIDE_EFFECTS__
function _promise(Class, innerType) {
    return new Class({
        type: "promise",
        innerType,
    });
}
// @__NO_SIDE_EFFECTS__
function _custom(Class, fn, _params) {
    const norm = util.normalizeParams(_params);
    norm.abort ?? (norm.abort = true); // default to abort:false
    const schema = new Class({
        type: "custom",
        check: "custom",
        fn: fn,
        ...norm,
    });
    return schema;
}
// same as _custom but defaults to abort:false
// @__NO_SIDE_EFFECTS__
function _refine(Class, fn, _params) {
    const schema = new Class({
        type: "custom",
        check: "custom",
        fn: fn,
        ...normalizeParams(_params),
    });
    return schema;
}
// @__NO_SIDE_EFFECTS__
function _superRefine(fn, params) {
    const ch = _check((payload) => {
        payload.addIssue = (issue) => {
            if (typeof issue === "string") {
                payload.issues.push(util_issue(issue, payload.value, ch._zod.def));
            }
            else {
                // for Zod 3 backwards compatibility
                const _issue = issue;
                if (_issue.fatal)
                    _issue.continue = false;
                _issue.code ?? (_issue.code = "custom");
                if (!("input" in _issue))
                    _issue.input = payload.value;
                _issue.inst ?? (_issue.inst = ch);
                _issue.continue ?? (_issue.continue = !ch._zod.def.abort); // abort is always undefined, so this is always true...
                payload.issues.push(util_issue(_issue));
            }
        };
        return fn(payload.value, payload);
    }, params);
    return ch;
}
// @__NO_SIDE_EFFECTS__
function _check(fn, params) {
    const ch = new $ZodCheck({
        check: "custom",
        ...normalizeParams(params),
    });
    ch._zod.check = fn;
    return ch;
}
// @__NO_SIDE_EFFECTS__
function describe(description) {
    const ch = new $ZodCheck({ check: "describe" });
    ch._zod.onattach = [
        (inst) => {
            const existing = globalRegistry.get(inst) ?? {};
            globalRegistry.add(inst, { ...existing, description });
        },
    ];
    ch._zod.check = () => { }; // no-op check
    return ch;
}
// @__NO_SIDE_EFFECTS__
function meta(metadata) {
    const ch = new $ZodCheck({ check: "meta" });
    ch._zod.onattach = [
        (inst) => {
            const existing = globalRegistry.get(inst) ?? {};
            globalRegistry.add(inst, { ...existing, ...metadata });
        },
    ];
    ch._zod.check = () => { }; // no-op check
    return ch;
}
// @__NO_SIDE_EFFECTS__
function _stringbool(Classes, _params) {
    const params = util.normalizeParams(_params);
    let truthyArray = params.truthy ?? ["true", "1", "yes", "on", "y", "enabled"];
    let falsyArray = params.falsy ?? ["false", "0", "no", "off", "n", "disabled"];
    if (params.case !== "sensitive") {
        truthyArray = truthyArray.map((v) => (typeof v === "string" ? v.toLowerCase() : v));
        falsyArray = falsyArray.map((v) => (typeof v === "string" ? v.toLowerCase() : v));
    }
    const truthySet = new Set(truthyArray);
    const falsySet = new Set(falsyArray);
    const _Codec = Classes.Codec ?? schemas.$ZodCodec;
    const _Boolean = Classes.Boolean ?? schemas.$ZodBoolean;
    const _String = Classes.String ?? schemas.$ZodString;
    const stringSchema = new _String({ type: "string", error: params.error });
    const booleanSchema = new _Boolean({ type: "boolean", error: params.error });
    const codec = new _Codec({
        type: "pipe",
        in: stringSchema,
        out: booleanSchema,
        transform: ((input, payload) => {
            let data = input;
            if (params.case !== "sensitive")
                data = data.toLowerCase();
            if (truthySet.has(data)) {
                return true;
            }
            else if (falsySet.has(data)) {
                return false;
            }
            else {
                payload.issues.push({
                    code: "invalid_value",
                    expected: "stringbool",
                    values: [...truthySet, ...falsySet],
                    input: payload.value,
                    inst: codec,
                    continue: false,
                });
                return {};
            }
        }),
        reverseTransform: ((input, _payload) => {
            if (input === true) {
                return truthyArray[0] || "true";
            }
            else {
                return falsyArray[0] || "false";
            }
        }),
        error: params.error,
    });
    codec._zod.bag.truthy = truthyArray;
    codec._zod.bag.falsy = falsyArray;
    codec._zod.bag.case = params.case ?? "insensitive";
    return codec;
}
// @__NO_SIDE_EFFECTS__
function _stringFormat(Class, format, fnOrRegex, _params = {}) {
    const params = util.normalizeParams(_params);
    const def = {
        check: "string_format",
        type: "string",
        format,
        fn: typeof fnOrRegex === "function" ? fnOrRegex : (val) => fnOrRegex.test(val),
        ...params,
    };
    if (fnOrRegex instanceof RegExp) {
        def.pattern = fnOrRegex;
    }
    const inst = new Class(def);
    return inst;
}

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/to-json-schema.js


function assignProps(target, ...sources) {
    for (const source of sources) {
        for (const key of Reflect.ownKeys(source)) {
            if (Object.prototype.propertyIsEnumerable.call(source, key)) {
                util_assignProp(target, key, source[key]);
            }
        }
    }
    return target;
}
// function initializeContext<T extends schemas.$ZodType>(inputs: JSONSchemaGeneratorParams<T>): ToJSONSchemaContext<T> {
//   return {
//     processor: inputs.processor,
//     metadataRegistry: inputs.metadata ?? globalRegistry,
//     target: inputs.target ?? "draft-2020-12",
//     unrepresentable: inputs.unrepresentable ?? "throw",
//   };
// }
function to_json_schema_initializeContext(params) {
    // Normalize target: convert old non-hyphenated versions to hyphenated versions
    let target = params?.target ?? "draft-2020-12";
    if (target === "draft-4")
        target = "draft-04";
    if (target === "draft-7")
        target = "draft-07";
    return {
        processors: params.processors ?? {},
        metadataRegistry: params?.metadata ?? globalRegistry,
        target,
        unrepresentable: params?.unrepresentable ?? "throw",
        override: params?.override ?? (() => { }),
        io: params?.io ?? "output",
        counter: 0,
        seen: new Map(),
        sharedDefsExtractedFor: undefined,
        sharedEmitDoneFor: undefined,
        cycles: params?.cycles ?? "ref",
        reused: params?.reused ?? "inline",
        intersections: [],
        deferred: [],
        external: params?.external ?? undefined,
    };
}
/**
 * Applies the `unrepresentable` setting at a site that has no JSON Schema equivalent. Throws
 * `message` unless the setting (or the handler's return value) says otherwise. Returns `true` if a
 * custom JSON Schema was written into `json`, in which case the caller must not write its own.
 */
function handleUnrepresentable(schema, ctx, json, params, message) {
    const result = typeof ctx.unrepresentable === "function"
        ? ctx.unrepresentable({ zodSchema: schema, path: params.path, message })
        : ctx.unrepresentable;
    if (result === "any")
        return false;
    if (result === undefined || result === "throw")
        throw new Error(message);
    Object.assign(json, result);
    return true;
}
// never rename this back to `process`: bundler polyfills inject a top-level `const process` that a lexical declaration of the same name collides with (#6397)
function to_json_schema_processSchema(schema, ctx, _params = { path: [], schemaPath: [] }) {
    var _a;
    const def = schema._zod.def;
    // check for schema in seens
    const seen = ctx.seen.get(schema);
    if (seen) {
        seen.count++;
        // check if cycle
        const isCycle = _params.schemaPath.includes(schema);
        if (isCycle) {
            seen.cycle = _params.path;
        }
        return seen.schema;
    }
    // initialize
    const result = { schema: {}, count: 1, cycle: undefined, path: _params.path };
    ctx.seen.set(schema, result);
    ctx.sharedDefsExtractedFor = undefined;
    ctx.sharedEmitDoneFor = undefined;
    // custom method overrides default behavior
    const overrideSchema = schema._zod.toJSONSchema?.();
    if (overrideSchema) {
        result.schema = overrideSchema;
    }
    else {
        const params = {
            ..._params,
            schemaPath: [..._params.schemaPath, schema],
            path: _params.path,
        };
        if (schema._zod.processJSONSchema) {
            schema._zod.processJSONSchema(ctx, result.schema, params);
        }
        else {
            const _json = result.schema;
            const processor = ctx.processors[def.type];
            if (!processor) {
                throw new Error(`[toJSONSchema]: Non-representable type encountered: ${def.type}`);
            }
            processor(schema, ctx, _json, params);
        }
        const parent = schema._zod.parent;
        if (parent) {
            // Also set ref if processor didn't (for inheritance)
            if (!result.ref)
                result.ref = parent;
            to_json_schema_processSchema(parent, ctx, params);
            ctx.seen.get(parent).isParent = true;
        }
    }
    // metadata
    const meta = ctx.metadataRegistry.get(schema);
    if (meta)
        assignProps(result.schema, meta);
    if (ctx.io === "input" && isTransforming(schema)) {
        // examples/defaults only apply to output type of pipe
        delete result.schema.examples;
        delete result.schema.default;
    }
    // set prefault as default
    if (ctx.io === "input" && "_prefault" in result.schema)
        (_a = result.schema).default ?? (_a.default = result.schema._prefault);
    delete result.schema._prefault;
    // pulling fresh from ctx.seen in case it was overwritten
    const _result = ctx.seen.get(schema);
    return _result.schema;
}
/** @deprecated Renamed to `processSchema`. An export alias declares no binding, so it is safe to keep. */

// Escape a reference token for use in a JSON Pointer fragment (RFC 6901): `~` becomes `~0` and `/` becomes `~1`. The `~` replacement must run first.
function encodeJSONPointerSegment(segment) {
    return segment.replace(/~/g, "~0").replace(/\//g, "~1");
}
function to_json_schema_extractDefs(ctx, schema
// params: EmitParams
) {
    // iterate over seen map;
    const root = ctx.seen.get(schema);
    if (!root)
        throw new Error("Unprocessed schema. This is a bug in Zod.");
    // With `external` set, every registered schema resolves through the external branch of `makeURI`, so the root branch below produces the same ref the external branch would \u2014 this pass is identical whichever schema it is called with, and only needs to run once.
    if (ctx.external && ctx.sharedDefsExtractedFor === ctx.external)
        return;
    // Track ids to detect duplicates across different schemas
    const idToSchema = new Map();
    for (const entry of ctx.seen.entries()) {
        const id = ctx.metadataRegistry.get(entry[0])?.id;
        if (id) {
            const existing = idToSchema.get(id);
            if (existing && existing !== entry[0]) {
                throw new Error(`Duplicate schema id "${id}" detected during JSON Schema conversion. Two different schemas cannot share the same id when converted together.`);
            }
            idToSchema.set(id, entry[0]);
        }
    }
    // returns a ref to the schema defId will be empty if the ref points to an external schema (or #)
    const makeURI = (entry) => {
        // comparing the seen objects because sometimes multiple schemas map to the same seen object. e.g. lazy
        // external is configured
        const defsSegment = ctx.target === "draft-2020-12" ? "$defs" : "definitions";
        if (ctx.external) {
            const externalId = ctx.external.registry.get(entry[0])?.id; // ?? "__shared";// `__schema${ctx.counter++}`;
            // check if schema is in the external registry
            const uriGenerator = ctx.external.uri ?? ((id) => id);
            if (externalId) {
                return { ref: uriGenerator(externalId) };
            }
            // otherwise, add to __shared
            const id = entry[1].defId ?? entry[1].schema.id ?? `schema${ctx.counter++}`;
            entry[1].defId = id; // set defId so it will be reused if needed
            return { defId: id, ref: `${uriGenerator("__shared")}#/${defsSegment}/${encodeJSONPointerSegment(id)}` };
        }
        const uriPrefix = `#`;
        const defUriPrefix = `${uriPrefix}/${defsSegment}/`;
        // an id-less root has nowhere to be extracted to, so it stays inline and self-references as `#`
        if (entry[1] === root && !entry[1].schema.id) {
            return { ref: uriPrefix };
        }
        // self-contained schema
        const defId = entry[1].schema.id ?? `__schema${ctx.counter++}`;
        return { defId, ref: defUriPrefix + encodeJSONPointerSegment(defId) };
    };
    // stored cached version in `def` property remove all properties, set $ref
    const extractToDef = (entry) => {
        // if the schema is already a reference, do not extract it
        if (entry[1].schema.$ref) {
            return;
        }
        const seen = entry[1];
        const { ref, defId } = makeURI(entry);
        seen.def = { ...seen.schema };
        // defId won't be set if the schema is a reference to an external schema or if the schema is the root schema
        if (defId)
            seen.defId = defId;
        // wipe away all properties except $ref
        const schema = seen.schema;
        for (const key in schema) {
            delete schema[key];
        }
        schema.$ref = ref;
    };
    // throw on cycles
    // break cycles
    if (ctx.cycles === "throw") {
        for (const entry of ctx.seen.entries()) {
            const seen = entry[1];
            if (seen.cycle) {
                throw new Error("Cycle detected: " +
                    `#/${seen.cycle?.join("/")}/<root>` +
                    '\n\nSet the `cycles` parameter to `"ref"` to resolve cyclical schemas with defs.');
            }
        }
    }
    // extract schemas into $defs
    for (const entry of ctx.seen.entries()) {
        const seen = entry[1];
        // convert root schema to # $ref
        if (schema === entry[0]) {
            extractToDef(entry); // this has special handling for the root schema
            continue;
        }
        // extract schemas that are in the external registry
        if (ctx.external) {
            const ext = ctx.external.registry.get(entry[0])?.id;
            if (schema !== entry[0] && ext) {
                extractToDef(entry);
                continue;
            }
        }
        // extract schemas with `id` meta
        const id = ctx.metadataRegistry.get(entry[0])?.id;
        if (id) {
            extractToDef(entry);
            continue;
        }
        // break cycles
        if (seen.cycle) {
            // any
            extractToDef(entry);
            continue;
        }
        // extract reused schemas
        if (seen.count > 1) {
            if (ctx.reused === "ref") {
                extractToDef(entry);
            }
        }
    }
    if (ctx.external)
        ctx.sharedDefsExtractedFor = ctx.external;
}
/** Rewrites `anyOf: [{type: "a"}, {type: "b"}]` to `type: ["a", "b"]`, which every JSON Schema draft treats as equivalent and most consumers render far better for the nullable case. Only branches that are a bare type assertion qualify \u2014 anything carrying a constraint, `$ref`, `const` or metadata is left alone. Runs after `flattenRef`, so a branch an override decorated or `$defs` extraction turned into a `$ref` is no longer bare and correctly stays in `anyOf`. `oneOf` is excluded: `integer` and `number` overlap, so "exactly one" and "at least one" are not the same there. OpenAPI 3.0 is excluded: its `type` must be a single string. */
function compactTypeUnion(schema) {
    const options = schema.anyOf;
    if (!Array.isArray(options) || options.length === 0 || schema.type !== undefined)
        return;
    const types = [];
    for (const option of options) {
        if (!option || typeof option !== "object")
            return;
        // A branch that is itself a compactible union folds into this one \u2014 nested `anyOf` and a flat `type` array say the same thing. Compacting it first also makes the result independent of the order this pass walks the seen map in.
        compactTypeUnion(option);
        const keys = Object.keys(option);
        if (keys.length !== 1 || keys[0] !== "type")
            return;
        const type = option.type;
        for (const member of Array.isArray(type) ? type : [type]) {
            if (typeof member !== "string")
                return;
            if (!types.includes(member))
                types.push(member);
        }
    }
    delete schema.anyOf;
    // A `type` array must be non-empty and unique (metaschema); a single member is spelled as a bare string.
    schema.type = types.length === 1 ? types[0] : types;
}
/** Keywords `foldIntersection` knows how to combine. Anything else \u2014 `$ref`, `patternProperties`,
 * an annotation like `description` \u2014 makes a member unfoldable, so a constraint this does not
 * understand leaves the `allOf` alone instead of being silently dropped or misattributed. */
const FOLDABLE_KEYS = new Set(["type", "properties", "required", "additionalProperties"]);
const UNION_KEYS = ["oneOf", "anyOf"];
/** A member's constraint on a key it does not declare itself. A `catchall` states one; `false`, an absent `additionalProperties`, and the empty schema a loose object emits state nothing. */
function undeclaredConstraint(member) {
    const extra = member.additionalProperties;
    if (extra === undefined || extra === false || typeof extra !== "object" || extra === null)
        return null;
    return Object.keys(extra).length ? extra : null;
}
/** Combines object members into the single object they describe together, or returns `null` if any of them carries a keyword outside {@link FOLDABLE_KEYS}. */
function foldObjects(members) {
    const objects = [];
    for (const member of members) {
        // A boolean subschema is legal JSON Schema and carries no keywords to fold.
        if (typeof member !== "object" || member.type !== "object")
            return null;
        for (const key in member) {
            if (!FOLDABLE_KEYS.has(key))
                return null;
        }
        objects.push(member);
    }
    const properties = {};
    const required = new Set();
    for (const object of objects) {
        for (const key in object.properties) {
            // `in` would report a `__proto__` key as already present via the prototype chain and skip it.
            if (Object.prototype.hasOwnProperty.call(properties, key))
                continue;
            // Every member constrains this key: the ones that declare it say how, and a `catchall` member constrains it too even though it does not name it. The key has to satisfy all of them, which is the same intersection one level down.
            const parts = [];
            for (const other of objects) {
                const part = other.properties?.[key] ?? undeclaredConstraint(other);
                if (part === null || part === undefined)
                    continue;
                if (!parts.some((seen) => JSON.stringify(seen) === JSON.stringify(part)))
                    parts.push(part);
            }
            const merged = parts.length === 1
                ? parts[0]
                : (foldObjects(parts) ?? { allOf: parts });
            util_assignProp(properties, key, merged);
        }
        for (const key of object.required ?? [])
            required.add(key);
    }
    const folded = { type: "object", properties };
    if (required.size)
        folded.required = [...required];
    // A key no member declares is rejected only when every member rejects it, so the fold is closed only when every member is. Otherwise it carries whatever the `catchall` members demand of such a key.
    if (objects.every((object) => object.additionalProperties === false)) {
        folded.additionalProperties = false;
    }
    else {
        const constraints = [];
        for (const object of objects) {
            const constraint = undeclaredConstraint(object);
            if (constraint && !constraints.some((seen) => JSON.stringify(seen) === JSON.stringify(constraint)))
                constraints.push(constraint);
        }
        if (constraints.length === 1)
            folded.additionalProperties = constraints[0];
        else if (constraints.length > 1)
            folded.additionalProperties = { allOf: constraints };
    }
    return folded;
}
/** `additionalProperties` in an `allOf` member sees only that member's own `properties`, so two
 * closed object members reject each other's keys and the schema validates nothing. Zod's parser
 * pools the key sets instead \u2014 `handleIntersectionResults` reports a key as unrecognized only when
 * *every* side rejects it \u2014 so the emitted schema has to pool them too, and folding the members
 * into one object is the encoding that says so on every target.
 *
 * This runs from `finalize`, after `extractDefs`, which is what keeps it clear of the `$ref`
 * machinery: a member extracted into `$defs` is already a `$ref` by now and declines to fold, so it
 * keeps its reference and its own closedness rather than being inlined as a stale copy. */
function foldIntersection(json) {
    const allOf = json.allOf;
    if (!Array.isArray(allOf) || allOf.length < 2)
        return;
    // An `override` runs before this pass and may have written object keywords onto the intersection itself. Those are deliberate, so decline rather than overwrite them.
    for (const key of FOLDABLE_KEYS)
        if (key in json)
            return;
    // An intersection distributes over a union: `A & (X | Y)` is `(A & X) | (A & Y)`. Only the first union is distributed over; a second one stays among the members every branch folds against, where it fails the object check and declines the whole intersection rather than multiplying out.
    const unions = allOf.filter((m) => UNION_KEYS.some((k) => Array.isArray(m[k])));
    let folded = null;
    if (!unions.length) {
        folded = foldObjects(allOf);
    }
    else {
        const union = unions[0];
        const keyword = UNION_KEYS.find((k) => Array.isArray(union[k]));
        if (Object.keys(union).length !== 1)
            return;
        const rest = allOf.filter((m) => m !== union);
        const branches = union[keyword].map((branch) => foldObjects([...rest, branch]));
        if (branches.some((b) => !b))
            return;
        folded = { [keyword]: branches };
    }
    if (!folded)
        return;
    delete json.allOf;
    assignProps(json, folded);
}
function to_json_schema_finalize(ctx, schema) {
    const root = ctx.seen.get(schema);
    if (!root)
        throw new Error("Unprocessed schema. This is a bug in Zod.");
    // flatten refs - inherit properties from parent schemas
    const flattenRef = (zodSchema) => {
        const seen = ctx.seen.get(zodSchema);
        // already processed
        if (seen.ref === null)
            return;
        const schema = seen.def ?? seen.schema;
        const _cached = { ...schema };
        const ref = seen.ref;
        seen.ref = null; // prevent infinite recursion
        if (ref) {
            flattenRef(ref);
            const refSeen = ctx.seen.get(ref);
            const refSchema = refSeen.schema;
            // merge referenced schema into current
            if (refSchema.$ref && (ctx.target === "draft-07" || ctx.target === "draft-04" || ctx.target === "openapi-3.0")) {
                // older drafts can't combine $ref with other properties
                schema.allOf = schema.allOf ?? [];
                schema.allOf.push(refSchema);
            }
            else {
                assignProps(schema, refSchema);
            }
            // restore child's own properties (child wins)
            assignProps(schema, _cached);
            const isParentRef = zodSchema._zod.parent === ref;
            // For parent chain, child is a refinement - remove parent-only properties
            if (isParentRef) {
                for (const key in schema) {
                    if (key === "$ref" || key === "allOf")
                        continue;
                    if (!(key in _cached)) {
                        delete schema[key];
                    }
                }
            }
            // When ref was extracted to $defs, remove properties that match the definition
            if (refSchema.$ref && refSeen.def) {
                for (const key in schema) {
                    if (key === "$ref" || key === "allOf")
                        continue;
                    if (key in refSeen.def && JSON.stringify(schema[key]) === JSON.stringify(refSeen.def[key])) {
                        delete schema[key];
                    }
                }
            }
        }
        // If parent was extracted (has $ref), propagate $ref to this schema. This handles cases like: readonly().meta({id}).describe() where processor sets ref to innerType but parent should be referenced
        const parent = zodSchema._zod.parent;
        if (parent && parent !== ref) {
            // Ensure parent is processed first so its def has inherited properties
            flattenRef(parent);
            const parentSeen = ctx.seen.get(parent);
            if (parentSeen?.schema.$ref) {
                schema.$ref = parentSeen.schema.$ref;
                // De-duplicate with parent's definition
                if (parentSeen.def) {
                    for (const key in schema) {
                        if (key === "$ref" || key === "allOf")
                            continue;
                        if (key in parentSeen.def && JSON.stringify(schema[key]) === JSON.stringify(parentSeen.def[key])) {
                            delete schema[key];
                        }
                    }
                }
            }
        }
        // execute overrides
        ctx.override({
            zodSchema: zodSchema,
            jsonSchema: schema,
            path: seen.path ?? [],
        });
    };
    // Flattening walks the whole map and clears each `ref` as it goes, so a second call over the same map is a no-op scan. Skip it outright once it has run for a registry conversion.
    if (!ctx.external || ctx.sharedEmitDoneFor !== ctx.external) {
        for (const entry of [...ctx.seen.entries()].reverse()) {
            flattenRef(entry[0]);
        }
        if (ctx.target !== "openapi-3.0") {
            for (const entry of ctx.seen.entries()) {
                compactTypeUnion(entry[1].def ?? entry[1].schema);
            }
        }
        for (const rewrite of ctx.deferred)
            rewrite();
        // After flattening, every member that was extracted is a `$ref`, so the fold sees the final shape. A schema that inherits an intersection \u2014 through `z.lazy`, or any `ref` chain \u2014 holds the same `allOf` array, so fold by array identity to catch every copy.
        if (ctx.intersections.length) {
            const carriers = new Map();
            for (const seen of ctx.seen.values()) {
                for (const json of [seen.schema, seen.def]) {
                    const allOf = json?.allOf;
                    if (!Array.isArray(allOf))
                        continue;
                    const existing = carriers.get(allOf);
                    if (existing)
                        existing.push(json);
                    else
                        carriers.set(allOf, [json]);
                }
            }
            for (const allOf of ctx.intersections) {
                for (const json of carriers.get(allOf) ?? [])
                    foldIntersection(json);
            }
        }
    }
    const result = {};
    if (ctx.target === "draft-2020-12") {
        result.$schema = "https://json-schema.org/draft/2020-12/schema";
    }
    else if (ctx.target === "draft-07") {
        result.$schema = "http://json-schema.org/draft-07/schema#";
    }
    else if (ctx.target === "draft-04") {
        result.$schema = "http://json-schema.org/draft-04/schema#";
    }
    else if (ctx.target === "openapi-3.0") {
        // OpenAPI 3.0 schema objects should not include a $schema property
    }
    else {
        // Arbitrary string values are allowed but won't have a $schema property set
    }
    if (ctx.external?.uri) {
        const id = ctx.external.registry.get(schema)?.id;
        if (!id)
            throw new Error("Schema is missing an `id` property");
        result.$id = ctx.external.uri(id);
    }
    // when the root was extracted into $defs, `root.schema` is the `$ref` wrapper and `root.def` is the body that now lives under $defs
    assignProps(result, root.defId ? root.schema : (root.def ?? root.schema));
    // The `id` in `.meta()` is a Zod-specific registration tag used to extract schemas into $defs \u2014 it is not user-facing JSON Schema metadata. Strip it from the output body where it would otherwise leak. The id is preserved implicitly via the $defs key (and via $ref paths).
    const rootMetaId = ctx.metadataRegistry.get(schema)?.id;
    if (rootMetaId !== undefined && result.id === rootMetaId)
        delete result.id;
    // build defs object. With `external`, `defs` is the shared object every schema writes into, so the same entries are reassigned on every call. Without it, `defs` is fresh per call and must be rebuilt.
    const defs = ctx.external?.defs ?? {};
    if (!ctx.external || ctx.sharedEmitDoneFor !== ctx.external) {
        for (const entry of ctx.seen.entries()) {
            const seen = entry[1];
            if (seen.def && seen.defId) {
                if (seen.def.id === seen.defId)
                    delete seen.def.id;
                util_assignProp(defs, seen.defId, seen.def);
            }
        }
    }
    if (ctx.external)
        ctx.sharedEmitDoneFor = ctx.external;
    // set definitions in result
    if (ctx.external) {
    }
    else {
        if (Object.keys(defs).length > 0) {
            if (ctx.target === "draft-2020-12") {
                result.$defs = defs;
            }
            else {
                result.definitions = defs;
            }
        }
    }
    try {
        // this "finalizes" this schema and ensures all cycles are removed each call to finalize() is functionally independent though the seen map is shared
        const finalized = JSON.parse(JSON.stringify(result));
        Object.defineProperty(finalized, "~standard", {
            value: {
                ...schema["~standard"],
                jsonSchema: {
                    input: createStandardJSONSchemaMethod(schema, "input", ctx.processors),
                    output: createStandardJSONSchemaMethod(schema, "output", ctx.processors),
                },
            },
            enumerable: false,
            writable: false,
        });
        return finalized;
    }
    catch (_err) {
        throw new Error("Error converting schema to JSON.");
    }
}
function isTransforming(_schema, _ctx) {
    const ctx = _ctx ?? { seen: new Set() };
    if (ctx.seen.has(_schema))
        return false;
    ctx.seen.add(_schema);
    const def = _schema._zod.def;
    if (def.type === "transform")
        return true;
    if (def.type === "array")
        return isTransforming(def.element, ctx);
    if (def.type === "set")
        return isTransforming(def.valueType, ctx);
    if (def.type === "lazy")
        return isTransforming(def.getter(), ctx);
    if (def.type === "promise" ||
        def.type === "optional" ||
        def.type === "nonoptional" ||
        def.type === "nullable" ||
        def.type === "readonly" ||
        def.type === "default" ||
        def.type === "prefault" ||
        def.type === "catch") {
        return isTransforming(def.innerType, ctx);
    }
    if (def.type === "intersection") {
        return isTransforming(def.left, ctx) || isTransforming(def.right, ctx);
    }
    if (def.type === "record" || def.type === "map") {
        return isTransforming(def.keyType, ctx) || isTransforming(def.valueType, ctx);
    }
    if (def.type === "pipe") {
        if (_schema._zod.traits.has("$ZodCodec"))
            return true;
        return isTransforming(def.in, ctx) || isTransforming(def.out, ctx);
    }
    if (def.type === "object") {
        for (const key in def.shape) {
            if (isTransforming(def.shape[key], ctx))
                return true;
        }
        return false;
    }
    if (def.type === "union") {
        for (const option of def.options) {
            if (isTransforming(option, ctx))
                return true;
        }
        return false;
    }
    if (def.type === "tuple") {
        for (const item of def.items) {
            if (isTransforming(item, ctx))
                return true;
        }
        if (def.rest && isTransforming(def.rest, ctx))
            return true;
        return false;
    }
    return false;
}
/**
 * Creates a toJSONSchema method for a schema instance.
 * This encapsulates the logic of initializing context, processing, extracting defs, and finalizing.
 */
const createToJSONSchemaMethod = (schema, processors = {}) => (params) => {
    const ctx = to_json_schema_initializeContext({ ...params, processors });
    to_json_schema_processSchema(schema, ctx);
    to_json_schema_extractDefs(ctx, schema);
    return to_json_schema_finalize(ctx, schema);
};
const createStandardJSONSchemaMethod = (schema, io, processors = {}) => (params) => {
    const { libraryOptions, target } = params ?? {};
    const ctx = to_json_schema_initializeContext({ ...(libraryOptions ?? {}), target, io, processors });
    to_json_schema_processSchema(schema, ctx);
    to_json_schema_extractDefs(ctx, schema);
    return to_json_schema_finalize(ctx, schema);
};

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/json-schema-processors.js




const narrowMin = (agg, key, value) => {
    if (agg[key] === undefined || value > agg[key])
        agg[key] = value;
};
const narrowMax = (agg, key, value) => {
    if (agg[key] === undefined || value < agg[key])
        agg[key] = value;
};
const narrowBoth = (agg, value) => {
    narrowMin(agg, "minimum", value);
    narrowMax(agg, "maximum", value);
};
const addDivisor = (agg, value) => {
    agg.multipleOf ?? (agg.multipleOf = []);
    if (!agg.multipleOf.includes(value))
        agg.multipleOf.push(value);
};
const addPattern = (agg, pattern) => {
    agg.patterns ?? (agg.patterns = new Set());
    agg.patterns.add(pattern);
};
const intersectMime = (agg, mime) => {
    agg.mime = agg.mime ? agg.mime.filter((m) => mime.includes(m)) : [...mime];
};
// last-wins, matching the bag's historical write order; the flag keeps an integer format from being lost to a later float one
const setFormat = (agg, format) => {
    agg.format = format;
    if (format.includes("int"))
        agg.isInt = true;
};
const minContributor = (agg, def) => narrowMin(agg, "minimum", def.minimum);
const maxContributor = (agg, def) => narrowMax(agg, "maximum", def.maximum);
const formatContributor = (ranges) => (agg, def) => {
    setFormat(agg, def.format);
    const [minimum, maximum] = ranges[def.format];
    narrowMin(agg, "minimum", minimum);
    narrowMax(agg, "maximum", maximum);
};
const contributors = {
    greater_than: (agg, def) => narrowMin(agg, def.inclusive ? "minimum" : "exclusiveMinimum", def.value),
    less_than: (agg, def) => narrowMax(agg, def.inclusive ? "maximum" : "exclusiveMaximum", def.value),
    multiple_of: (agg, def) => addDivisor(agg, def.value),
    number_format: formatContributor(NUMBER_FORMAT_RANGES),
    bigint_format: formatContributor(BIGINT_FORMAT_RANGES),
    min_length: minContributor,
    max_length: maxContributor,
    length_equals: (agg, def) => narrowBoth(agg, def.length),
    min_size: minContributor,
    max_size: maxContributor,
    size_equals: (agg, def) => narrowBoth(agg, def.size),
    string_format: (agg, def) => {
        setFormat(agg, def.format);
        if (def.pattern)
            addPattern(agg, def.pattern);
        if (def.format === "base64" || def.format === "base64url")
            agg.contentEncoding = def.format;
        if (def.local || def.precision === -1)
            agg.laxFormat = true;
    },
    mime_type: (agg, def) => intersectMime(agg, def.mime),
};
function aggregateChecks(schema) {
    const agg = {};
    const def = schema._zod.def;
    // a format schema is its own first check, same rule as $ZodType init
    const list = schema._zod.traits.has("$ZodCheck")
        ? [schema, ...(def.checks ?? [])]
        : (def.checks ?? []);
    for (const ch of list)
        contributors[ch._zod.def.check]?.(agg, ch._zod.def);
    // reconcile with the bag so third-party onattach contributions still land; first-party residue is never tighter than the fold, so merging it back is idempotent for one and additive for the other
    const bag = schema._zod.bag;
    if (bag.minimum !== undefined)
        narrowMin(agg, "minimum", bag.minimum);
    if (bag.exclusiveMinimum !== undefined)
        narrowMin(agg, "exclusiveMinimum", bag.exclusiveMinimum);
    if (bag.maximum !== undefined)
        narrowMax(agg, "maximum", bag.maximum);
    if (bag.exclusiveMaximum !== undefined)
        narrowMax(agg, "exclusiveMaximum", bag.exclusiveMaximum);
    if (bag.multipleOf !== undefined)
        addDivisor(agg, bag.multipleOf);
    if (bag.format !== undefined) {
        agg.format ?? (agg.format = bag.format);
        if (bag.format.includes("int"))
            agg.isInt = true;
    }
    if (bag.mime)
        intersectMime(agg, bag.mime);
    for (const pattern of bag.patterns ?? [])
        addPattern(agg, pattern);
    return agg;
}
const formatMap = {
    guid: "uuid",
    url: "uri",
    datetime: "date-time",
    json_string: "json-string",
    regex: "", // do not set
};
// ==================== SIMPLE TYPE PROCESSORS ====================
// the runtime patterns are lax so parse paths never overflow the regex stack; the emitted schema swaps in the exact block forms, which zod itself never executes
const exactPatterns = new Map([
    [base64Charset, base64],
    [base64urlCharset, base64url],
]);
const exactPattern = (p) => exactPatterns.get(p) ?? p;
const stringProcessor = (schema, ctx, _json, _params) => {
    const json = _json;
    json.type = "string";
    const { minimum, maximum, format, patterns, contentEncoding, laxFormat } = aggregateChecks(schema);
    if (typeof minimum === "number")
        json.minLength = minimum;
    if (typeof maximum === "number")
        json.maxLength = maximum;
    // custom pattern overrides format
    if (format) {
        json.format = formatMap[format] ?? format;
        if (json.format === "")
            delete json.format; // empty format is not valid
        // `z.iso.time()` is never full-time, and `laxFormat` carries the datetime shapes that also accept what their keyword forbids
        if (format === "time" || laxFormat) {
            delete json.format;
        }
    }
    if (contentEncoding)
        json.contentEncoding = contentEncoding;
    if (patterns && patterns.size > 0) {
        const patternList = [...patterns].map(exactPattern);
        if (patternList.length === 1)
            json.pattern = patternList[0].source;
        else if (patternList.length > 1) {
            json.allOf = [
                ...patternList.map((regex) => ({
                    ...(ctx.target === "draft-07" || ctx.target === "draft-04" || ctx.target === "openapi-3.0"
                        ? { type: "string" }
                        : {}),
                    pattern: regex.source,
                })),
            ];
        }
    }
};
const numberProcessor = (schema, ctx, _json, params) => {
    const json = _json;
    const { minimum, maximum, multipleOf, exclusiveMaximum, exclusiveMinimum, isInt } = aggregateChecks(schema);
    json.type = isInt ? "integer" : "number";
    // when both minimum and exclusiveMinimum exist, pick the more restrictive one
    const exMin = typeof exclusiveMinimum === "number" && exclusiveMinimum >= (minimum ?? Number.NEGATIVE_INFINITY);
    const exMax = typeof exclusiveMaximum === "number" && exclusiveMaximum <= (maximum ?? Number.POSITIVE_INFINITY);
    const legacy = ctx.target === "draft-04" || ctx.target === "openapi-3.0";
    if (exMin) {
        if (legacy) {
            json.minimum = exclusiveMinimum;
            json.exclusiveMinimum = true;
        }
        else {
            json.exclusiveMinimum = exclusiveMinimum;
        }
    }
    else if (typeof minimum === "number") {
        json.minimum = minimum;
    }
    if (exMax) {
        if (legacy) {
            json.maximum = exclusiveMaximum;
            json.exclusiveMaximum = true;
        }
        else {
            json.exclusiveMaximum = exclusiveMaximum;
        }
    }
    else if (typeof maximum === "number") {
        json.maximum = maximum;
    }
    if (multipleOf) {
        // JSON Schema requires a divisor strictly greater than zero, and a non-finite one does not survive JSON at all. A negative divisor accepts exactly what its absolute value accepts, so it still maps; zero, NaN and Infinity have no keyword form.
        const divisors = new Set();
        for (const divisor of multipleOf) {
            if (Number.isFinite(divisor) && divisor !== 0)
                divisors.add(Math.abs(divisor));
            else
                handleUnrepresentable(schema, ctx, json, params, `A multipleOf divisor of ${divisor} cannot be represented in JSON Schema`);
        }
        // chained divisors are a conjunction the keyword cannot carry alone, so extras ride an allOf, same as stacked patterns
        const [first, ...rest] = divisors;
        if (first !== undefined)
            json.multipleOf = first;
        if (rest.length)
            json.allOf = [...(json.allOf ?? []), ...rest.map((m) => ({ multipleOf: m }))];
    }
};
const booleanProcessor = (_schema, _ctx, json, _params) => {
    json.type = "boolean";
};
const bigintProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "BigInt cannot be represented in JSON Schema");
};
const symbolProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "Symbols cannot be represented in JSON Schema");
};
const nullProcessor = (_schema, ctx, json, _params) => {
    if (ctx.target === "openapi-3.0") {
        json.type = "string";
        json.nullable = true;
        json.enum = [null];
    }
    else {
        json.type = "null";
    }
};
const undefinedProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "Undefined cannot be represented in JSON Schema");
};
const voidProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "Void cannot be represented in JSON Schema");
};
const neverProcessor = (_schema, _ctx, json, _params) => {
    json.not = {};
};
const anyProcessor = (_schema, _ctx, _json, _params) => {
    // empty schema accepts anything
};
const unknownProcessor = (_schema, _ctx, _json, _params) => {
    // empty schema accepts anything
};
const dateProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "Date cannot be represented in JSON Schema");
};
const enumProcessor = (schema, _ctx, json, _params) => {
    const def = schema._zod.def;
    const values = getEnumValues(def.entries);
    // an empty enum accepts nothing, same as z.never()
    if (values.length === 0) {
        json.not = {};
        return;
    }
    // Number enums can have both string and number values
    if (values.every((v) => typeof v === "number"))
        json.type = "number";
    if (values.every((v) => typeof v === "string"))
        json.type = "string";
    json.enum = values;
};
const literalProcessor = (schema, ctx, json, params) => {
    const def = schema._zod.def;
    // a literal with no values accepts nothing, same as z.never()
    if (def.values.length === 0) {
        json.not = {};
        return;
    }
    const vals = [];
    for (const val of def.values) {
        if (val === undefined) {
            // a custom schema replaces the whole literal, so there is nothing left to accumulate
            if (handleUnrepresentable(schema, ctx, json, params, "Literal `undefined` cannot be represented in JSON Schema"))
                return;
            // otherwise do not add to vals
        }
        else if (typeof val === "bigint") {
            if (handleUnrepresentable(schema, ctx, json, params, "BigInt literals cannot be represented in JSON Schema"))
                return;
            vals.push(Number(val));
        }
        else {
            vals.push(val);
        }
    }
    if (vals.length === 0) {
        // do nothing (an undefined literal was stripped)
    }
    else if (vals.length === 1) {
        const val = vals[0];
        json.type = val === null ? "null" : typeof val;
        if (ctx.target === "draft-04" || ctx.target === "openapi-3.0") {
            json.enum = [val];
        }
        else {
            json.const = val;
        }
    }
    else {
        if (vals.every((v) => typeof v === "number"))
            json.type = "number";
        if (vals.every((v) => typeof v === "string"))
            json.type = "string";
        if (vals.every((v) => typeof v === "boolean"))
            json.type = "boolean";
        if (vals.every((v) => v === null))
            json.type = "null";
        json.enum = vals;
    }
};
const nanProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "NaN cannot be represented in JSON Schema");
};
const templateLiteralProcessor = (schema, _ctx, json, _params) => {
    const _json = json;
    const pattern = schema._zod.pattern;
    if (!pattern)
        throw new Error("Pattern not found in template literal");
    _json.type = "string";
    _json.pattern = pattern.source;
};
const fileProcessor = (schema, _ctx, json, _params) => {
    const _json = json;
    _json.type = "string";
    _json.format = "binary";
    _json.contentEncoding = "binary";
    const { minimum, maximum, mime } = aggregateChecks(schema);
    if (minimum !== undefined)
        _json.minLength = minimum;
    if (maximum !== undefined)
        _json.maxLength = maximum;
    if (!mime)
        return;
    // an empty intersection means the mime checks share no value, so nothing passes at runtime; `anyOf` must be non-empty, so the false schema is `not: {}`
    if (mime.length === 0)
        _json.not = {};
    else if (mime.length === 1)
        _json.contentMediaType = mime[0];
    // only contentMediaType differs, so the shared props stay at the root
    else
        _json.anyOf = mime.map((m) => ({ contentMediaType: m }));
};
const successProcessor = (_schema, _ctx, json, _params) => {
    json.type = "boolean";
};
const customProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "Custom types cannot be represented in JSON Schema");
};
const functionProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "Function types cannot be represented in JSON Schema");
};
const transformProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "Transforms cannot be represented in JSON Schema");
};
const mapProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "Map cannot be represented in JSON Schema");
};
const setProcessor = (schema, ctx, json, params) => {
    handleUnrepresentable(schema, ctx, json, params, "Set cannot be represented in JSON Schema");
};
// ==================== COMPOSITE TYPE PROCESSORS ====================
const arrayProcessor = (schema, ctx, _json, params) => {
    const json = _json;
    const def = schema._zod.def;
    const { minimum, maximum } = aggregateChecks(schema);
    if (typeof minimum === "number")
        json.minItems = minimum;
    if (typeof maximum === "number")
        json.maxItems = maximum;
    json.type = "array";
    json.items = to_json_schema_processSchema(def.element, ctx, {
        ...params,
        path: [...params.path, "items"],
    });
};
// Transform and catch set `optin = "optional"` at runtime so the parser lets them observe an
// absent key, but their declared input type stays required. An input JSON Schema describes the
// declared type, so resolve past them to the schema that actually carries the optionality.
// Used by both `objectProcessor` (for `required`) and `tupleProcessor` (for `minItems`); see
// wiki/optionality.md, "The JSON Schema emitter reads the *static* value".
function inputOptin(schema) {
    const def = schema._zod.def;
    if (def.type === "pipe" && def.in._zod.traits.has("$ZodTransform")) {
        return inputOptin(def.out);
    }
    if (def.type === "catch") {
        return inputOptin(def.innerType);
    }
    return schema._zod.optin;
}
const objectProcessor = (schema, ctx, _json, params) => {
    const json = _json;
    const def = schema._zod.def;
    const shape = def.shape;
    // dropping it while still emitting `additionalProperties: false` would emit a schema that rejects data this one requires
    const symbolKeys = Object.getOwnPropertySymbols(shape);
    if (symbolKeys.length &&
        handleUnrepresentable(schema, ctx, json, params, "Symbol keys cannot be represented in JSON Schema")) {
        return;
    }
    json.type = "object";
    json.properties = {};
    for (const key in shape) {
        // assignProp so a __proto__ key becomes an own property instead of hitting the inherited setter on the plain {} we build into
        util_assignProp(json.properties, key, to_json_schema_processSchema(shape[key], ctx, {
            ...params,
            path: [...params.path, "properties", key],
        }));
    }
    // required keys
    const requiredKeys = [];
    for (const key of Object.keys(shape)) {
        const field = def.shape[key];
        if (ctx.io === "input" ? inputOptin(field) === undefined : field._zod.optout === undefined) {
            requiredKeys.push(key);
        }
    }
    if (requiredKeys.length > 0) {
        json.required = requiredKeys;
    }
    // catchall
    if (def.catchall?._zod.def.type === "never") {
        // strict
        json.additionalProperties = false;
    }
    else if (!def.catchall) {
        // regular
        if (ctx.io === "output")
            json.additionalProperties = false;
    }
    else if (def.catchall) {
        json.additionalProperties = to_json_schema_processSchema(def.catchall, ctx, {
            ...params,
            path: [...params.path, "additionalProperties"],
        });
    }
};
const unionProcessor = (schema, ctx, json, params) => {
    const def = schema._zod.def;
    // Exclusive unions (inclusive === false) use oneOf (exactly one match) instead of anyOf (one or more matches). This includes both z.xor() and discriminated unions
    const isExclusive = def.inclusive === false;
    const options = def.options.map((x, i) => to_json_schema_processSchema(x, ctx, {
        ...params,
        path: [...params.path, isExclusive ? "oneOf" : "anyOf", i],
    }));
    if (isExclusive) {
        json.oneOf = options;
    }
    else {
        json.anyOf = options;
    }
};
const intersectionProcessor = (schema, ctx, json, params) => {
    const def = schema._zod.def;
    const a = to_json_schema_processSchema(def.left, ctx, {
        ...params,
        path: [...params.path, "allOf", 0],
    });
    const b = to_json_schema_processSchema(def.right, ctx, {
        ...params,
        path: [...params.path, "allOf", 1],
    });
    const isSimpleIntersection = (val) => "allOf" in val && Object.keys(val).length === 1;
    const allOf = [
        ...(isSimpleIntersection(a) ? a.allOf : [a]),
        ...(isSimpleIntersection(b) ? b.allOf : [b]),
    ];
    json.allOf = allOf;
    // Recorded innermost first, so a nested intersection has already folded by the time this one is considered. The array is the handle rather than the schema, because a wrapper that inherits this schema shares the same array; `finalize` folds every object holding it. See `foldIntersection`.
    ctx.intersections.push(allOf);
};
const tupleProcessor = (schema, ctx, _json, params) => {
    const json = _json;
    const def = schema._zod.def;
    json.type = "array";
    const prefixPath = ctx.target === "draft-2020-12" ? "prefixItems" : "items";
    const restPath = ctx.target === "draft-2020-12" ? "items" : ctx.target === "openapi-3.0" ? "items" : "additionalItems";
    const prefixItems = def.items.map((x, i) => to_json_schema_processSchema(x, ctx, {
        ...params,
        path: [...params.path, prefixPath, i],
    }));
    const rest = def.rest
        ? to_json_schema_processSchema(def.rest, ctx, {
            ...params,
            path: [...params.path, restPath, ...(ctx.target === "openapi-3.0" ? [def.items.length] : [])],
        })
        : null;
    let minItems = def.items.length;
    while (minItems > 0) {
        const item = def.items[minItems - 1];
        const optional = ctx.io === "input" ? inputOptin(item) !== undefined : item._zod.optout === "optional";
        if (!optional)
            break;
        minItems--;
    }
    const maxItems = def.items.length;
    const isClosed = !def.rest;
    if (ctx.target === "draft-2020-12") {
        json.prefixItems = prefixItems;
        if (isClosed) {
            json.items = false;
        }
        else if (rest) {
            json.items = rest;
        }
        if (minItems > 0)
            json.minItems = minItems;
        if (isClosed)
            json.maxItems = maxItems;
    }
    else if (ctx.target === "openapi-3.0") {
        json.items = {
            anyOf: prefixItems,
        };
        if (rest) {
            json.items.anyOf.push(rest);
        }
        if (minItems > 0)
            json.minItems = minItems;
        if (isClosed)
            json.maxItems = maxItems;
    }
    else {
        json.items = prefixItems;
        if (isClosed) {
            json.additionalItems = false;
        }
        else if (rest) {
            json.additionalItems = rest;
        }
        if (minItems > 0)
            json.minItems = minItems;
        if (isClosed)
            json.maxItems = maxItems;
    }
    // explicit user-defined length checks take precedence
    const { minimum, maximum } = aggregateChecks(schema);
    if (typeof minimum === "number")
        json.minItems = minimum;
    if (typeof maximum === "number")
        json.maxItems = maximum;
};
/** JSON object keys are always strings, so a numeric record key schema is re-expressed over the
 * numeric-string form the record parser matches. Deferred to `finalize`, after the flatten: a key
 * behind a wrapper only carries its own `type` before then, and a union key only has its branches.
 *
 * A numeric bound cannot apply to a property name, so `minimum` and its siblings are dropped rather
 * than carried over: keeping them beside `type: "string"` reproduces the match-nothing schema this
 * exists to fix. A key that carries one therefore emits wider than the record parses \u2014 `z.record(z.number().min(5), V)`
 * accepts `"3"` \u2014 which is the deliberate trade, since throwing on it would reject an ordinary schema
 * outright. */
function stringifyKeyNames(bySchema, json, visited) {
    // an extracted key that rewrites cannot go on sharing its definition \u2014 the string form a key position needs is not the number form every other reference wants \u2014 so it inlines. One that does not rewrite keeps the `$ref`.
    if (json.$ref) {
        // a recursive key holds its own reference inside its definition, so a node already on the path is left alone rather than resolved again
        if (visited.has(json))
            return json;
        visited.add(json);
        const def = bySchema.get(json)?.def;
        if (!def)
            return json;
        const inlined = stringifyKeyNames(bySchema, def, visited);
        return inlined === def ? json : inlined;
    }
    for (const keyword of ["anyOf", "oneOf"]) {
        const branches = json[keyword];
        if (!Array.isArray(branches))
            continue;
        const mapped = branches.map((branch) => stringifyKeyNames(bySchema, branch, visited));
        // rebuilding regardless would detach a key that had nothing to re-express, dropping its `$ref` and leaking the internal `id`
        if (mapped.some((branch, i) => branch !== branches[i]))
            json = { ...json, [keyword]: mapped };
    }
    // a member that already admits a string leaves the key unconstrained, so the node's own type re-expresses only when every member is numeric
    const types = Array.isArray(json.type) ? json.type : [json.type];
    const numericType = !types.includes("string") && types.some((t) => t === "number" || t === "integer");
    // a heterogeneous key carries no type at all, so its numeric members are caught here instead
    const values = json.enum ?? (json.const !== undefined ? [json.const] : undefined);
    if (!numericType && !values?.some((v) => typeof v === "number"))
        return json;
    const { minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, format, id, ...rest } = json;
    if (rest.enum)
        rest.enum = rest.enum.map((v) => (typeof v === "number" ? String(v) : v));
    else if (typeof rest.const === "number")
        rest.const = String(rest.const);
    // a heterogeneous key keeps its absent type: the stringified members already say what a key may be
    if (!numericType)
        return rest;
    rest.type = "string";
    if (!values)
        rest.pattern = (types.includes("number") ? number : integer).source;
    return rest;
}
/** Every record of one conversion, so the carriers are found in a single pass rather than once per record. */
const pendingRecords = new WeakMap();
function rewriteKeyNames(ctx) {
    // an extracted key is resolved by the object `extractToDef` left in its place, so the map is built once rather than searched per reference. `_zod.toJSONSchema` can hand the same object to two schemas, so the first entry carrying a body wins, as a search would have found it.
    const bySchema = new Map();
    for (const entry of ctx.seen.values()) {
        if (entry.def && !bySchema.has(entry.schema))
            bySchema.set(entry.schema, entry);
    }
    const rewrites = new Map();
    for (const record of pendingRecords.get(ctx) ?? []) {
        const seen = ctx.seen.get(record);
        const names = (seen?.def ?? seen?.schema)?.propertyNames;
        if (!names || names === true || rewrites.has(names))
            continue;
        const rewritten = stringifyKeyNames(bySchema, names, new Set());
        if (rewritten !== names)
            rewrites.set(names, rewritten);
    }
    if (!rewrites.size)
        return;
    // the flatten has already copied each record's own properties onto every wrapper by reference, and an extracted body is another such copy, so every carrier holding a rewritten key is updated together
    for (const entry of ctx.seen.values()) {
        for (const carrier of [entry.schema, entry.def]) {
            const rewritten = carrier && rewrites.get(carrier.propertyNames);
            if (rewritten)
                carrier.propertyNames = rewritten;
        }
    }
}
const recordProcessor = (schema, ctx, _json, params) => {
    const json = _json;
    const def = schema._zod.def;
    json.type = "object";
    // For looseRecord with regex patterns, use patternProperties. This correctly represents "only validate keys matching the pattern" semantics and composes well with allOf (intersections)
    const keyType = def.keyType;
    const patterns = aggregateChecks(keyType).patterns;
    if (def.mode === "loose" && patterns && patterns.size > 0) {
        // Use patternProperties for looseRecord with regex patterns
        const valueSchema = to_json_schema_processSchema(def.valueType, ctx, {
            ...params,
            path: [...params.path, "patternProperties", "*"],
        });
        json.patternProperties = {};
        for (const pattern of patterns) {
            util_assignProp(json.patternProperties, exactPattern(pattern).source, valueSchema);
        }
    }
    else {
        // Default behavior: use propertyNames + additionalProperties
        if (ctx.target === "draft-07" || ctx.target === "draft-2020-12") {
            json.propertyNames = to_json_schema_processSchema(def.keyType, ctx, {
                ...params,
                path: [...params.path, "propertyNames"],
            });
            let pending = pendingRecords.get(ctx);
            if (!pending) {
                pending = [];
                pendingRecords.set(ctx, pending);
                ctx.deferred.push(() => rewriteKeyNames(ctx));
            }
            pending.push(schema);
        }
        json.additionalProperties = to_json_schema_processSchema(def.valueType, ctx, {
            ...params,
            path: [...params.path, "additionalProperties"],
        });
    }
    // Add required for keys with discrete values (enum, literal, etc.)
    const keyValues = keyType._zod.values;
    // Every key shares one value schema, so an optional-in value makes the whole key set omittable on input. Output keeps them: the exhaustive branch assigns every key, even one whose value came back undefined.
    const omittableOnInput = ctx.io === "input" && inputOptin(def.valueType) !== undefined;
    if (keyValues && !def.partial && !omittableOnInput) {
        const validKeyValues = [...keyValues].filter((v) => typeof v === "string" || typeof v === "number");
        if (validKeyValues.length > 0) {
            json.required = validKeyValues.map(String);
        }
    }
};
const nullableProcessor = (schema, ctx, json, params) => {
    const def = schema._zod.def;
    const inner = to_json_schema_processSchema(def.innerType, ctx, params);
    const seen = ctx.seen.get(schema);
    if (ctx.target === "openapi-3.0") {
        seen.ref = def.innerType;
        json.nullable = true;
    }
    else {
        json.anyOf = [inner, { type: "null" }];
    }
};
const nonoptionalProcessor = (schema, ctx, _json, params) => {
    const def = schema._zod.def;
    to_json_schema_processSchema(def.innerType, ctx, params);
    const seen = ctx.seen.get(schema);
    seen.ref = def.innerType;
};
/** Round-trips a default value through JSON so the emitted schema is guaranteed to be valid JSON.
 * A BigInt has no reliable encoding, so it goes through `unrepresentable` like any other
 * unrepresentable value. Returns a sentinel when the caller must not write a default of its own. */
const UNREPRESENTABLE_DEFAULT = Symbol();
function serializeDefaultValue(value, schema, ctx, json, params) {
    let unrepresentable = false;
    const serialized = JSON.stringify(value, (_, val) => {
        if (typeof val !== "bigint")
            return val;
        unrepresentable = true;
        return null;
    });
    if (!unrepresentable)
        return JSON.parse(serialized);
    handleUnrepresentable(schema, ctx, json, params, "BigInt defaults cannot be represented in JSON Schema");
    return UNREPRESENTABLE_DEFAULT;
}
const defaultProcessor = (schema, ctx, json, params) => {
    const def = schema._zod.def;
    to_json_schema_processSchema(def.innerType, ctx, params);
    const seen = ctx.seen.get(schema);
    seen.ref = def.innerType;
    const value = serializeDefaultValue(def.defaultValue, schema, ctx, json, params);
    if (value !== UNREPRESENTABLE_DEFAULT)
        json.default = value;
};
const prefaultProcessor = (schema, ctx, json, params) => {
    const def = schema._zod.def;
    to_json_schema_processSchema(def.innerType, ctx, params);
    const seen = ctx.seen.get(schema);
    seen.ref = def.innerType;
    if (ctx.io !== "input")
        return;
    const value = serializeDefaultValue(def.defaultValue, schema, ctx, json, params);
    if (value !== UNREPRESENTABLE_DEFAULT)
        json._prefault = value;
};
const catchProcessor = (schema, ctx, json, params) => {
    const def = schema._zod.def;
    to_json_schema_processSchema(def.innerType, ctx, params);
    const seen = ctx.seen.get(schema);
    seen.ref = def.innerType;
    let catchValue;
    try {
        catchValue = def.catchValue(undefined);
    }
    catch {
        handleUnrepresentable(schema, ctx, json, params, "Dynamic catch values are not supported in JSON Schema");
        return;
    }
    json.default = catchValue;
};
const pipeProcessor = (schema, ctx, _json, params) => {
    const def = schema._zod.def;
    const inIsTransform = def.in._zod.traits.has("$ZodTransform");
    const innerType = ctx.io === "input" ? (inIsTransform ? def.out : def.in) : def.out;
    to_json_schema_processSchema(innerType, ctx, params);
    const seen = ctx.seen.get(schema);
    seen.ref = innerType;
};
const readonlyProcessor = (schema, ctx, json, params) => {
    const def = schema._zod.def;
    to_json_schema_processSchema(def.innerType, ctx, params);
    const seen = ctx.seen.get(schema);
    seen.ref = def.innerType;
    json.readOnly = true;
};
const promiseProcessor = (schema, ctx, _json, params) => {
    const def = schema._zod.def;
    to_json_schema_processSchema(def.innerType, ctx, params);
    const seen = ctx.seen.get(schema);
    seen.ref = def.innerType;
};
const optionalProcessor = (schema, ctx, _json, params) => {
    const def = schema._zod.def;
    to_json_schema_processSchema(def.innerType, ctx, params);
    const seen = ctx.seen.get(schema);
    seen.ref = def.innerType;
};
const lazyProcessor = (schema, ctx, _json, params) => {
    const innerType = schema._zod.innerType;
    to_json_schema_processSchema(innerType, ctx, params);
    const seen = ctx.seen.get(schema);
    seen.ref = innerType;
};
// ==================== ALL PROCESSORS ====================
const allProcessors = {
    string: stringProcessor,
    number: numberProcessor,
    boolean: booleanProcessor,
    bigint: bigintProcessor,
    symbol: symbolProcessor,
    null: nullProcessor,
    undefined: undefinedProcessor,
    void: voidProcessor,
    never: neverProcessor,
    any: anyProcessor,
    unknown: unknownProcessor,
    date: dateProcessor,
    enum: enumProcessor,
    literal: literalProcessor,
    nan: nanProcessor,
    template_literal: templateLiteralProcessor,
    file: fileProcessor,
    success: successProcessor,
    custom: customProcessor,
    function: functionProcessor,
    transform: transformProcessor,
    map: mapProcessor,
    set: setProcessor,
    array: arrayProcessor,
    object: objectProcessor,
    union: unionProcessor,
    intersection: intersectionProcessor,
    tuple: tupleProcessor,
    record: recordProcessor,
    nullable: nullableProcessor,
    nonoptional: nonoptionalProcessor,
    default: defaultProcessor,
    prefault: prefaultProcessor,
    catch: catchProcessor,
    pipe: pipeProcessor,
    readonly: readonlyProcessor,
    promise: promiseProcessor,
    optional: optionalProcessor,
    lazy: lazyProcessor,
};
function toJSONSchema(input, params) {
    if ("_idmap" in input) {
        // Registry case
        const registry = input;
        const ctx = initializeContext({ ...params, processors: allProcessors });
        const defs = {};
        // First pass: process all schemas to build the seen map
        for (const entry of registry._idmap.entries()) {
            const [_, schema] = entry;
            processSchema(schema, ctx);
        }
        const schemas = {};
        const external = {
            registry,
            uri: params?.uri,
            defs,
        };
        // Update the context with external configuration
        ctx.external = external;
        // Second pass: emit each schema
        for (const entry of registry._idmap.entries()) {
            const [key, schema] = entry;
            extractDefs(ctx, schema);
            assignProp(schemas, key, finalize(ctx, schema));
        }
        if (Object.keys(defs).length > 0) {
            const defsSegment = ctx.target === "draft-2020-12" ? "$defs" : "definitions";
            schemas.__shared = {
                [defsSegment]: defs,
            };
        }
        return { schemas };
    }
    // Single schema case
    const ctx = initializeContext({ ...params, processors: allProcessors });
    processSchema(input, ctx);
    extractDefs(ctx, input);
    return finalize(ctx, input);
}

;// CONCATENATED MODULE: ./node_modules/zod/v4/locales/en.js

const error = () => {
    const Sizable = {
        string: { unit: "characters", verb: "to have" },
        file: { unit: "bytes", verb: "to have" },
        array: { unit: "items", verb: "to have" },
        set: { unit: "items", verb: "to have" },
        map: { unit: "entries", verb: "to have" },
    };
    function getSizing(origin) {
        return Sizable[origin] ?? null;
    }
    const FormatDictionary = {
        regex: "input",
        email: "email address",
        url: "URL",
        emoji: "emoji",
        uuid: "UUID",
        uuidv4: "UUIDv4",
        uuidv6: "UUIDv6",
        nanoid: "nanoid",
        guid: "GUID",
        cuid: "cuid",
        cuid2: "cuid2",
        ulid: "ULID",
        xid: "XID",
        ksuid: "KSUID",
        datetime: "ISO datetime",
        date: "ISO date",
        time: "ISO time",
        duration: "ISO duration",
        ipv4: "IPv4 address",
        ipv6: "IPv6 address",
        mac: "MAC address",
        cidrv4: "IPv4 range",
        cidrv6: "IPv6 range",
        base64: "base64-encoded string",
        base64url: "base64url-encoded string",
        json_string: "JSON string",
        e164: "E.164 number",
        currency_code: "currency code",
        credit_card: "credit card number",
        iban: "IBAN",
        jwt: "JWT",
        template_literal: "input",
    };
    // type names: missing keys = do not translate (use raw value via ?? fallback)
    const TypeDictionary = {
        // Compatibility: "nan" -> "NaN" for display
        nan: "NaN",
        // All other type names omitted - they fall back to raw values via ?? operator
    };
    function getTypeName(type, input) {
        if (type === "number" && typeof input === "number" && !Number.isFinite(input)) {
            return String(input);
        }
        return TypeDictionary[type] ?? type;
    }
    return (issue) => {
        switch (issue.code) {
            case "invalid_type": {
                const expected = getTypeName(issue.expected);
                const receivedType = parsedType(issue.input);
                const received = getTypeName(receivedType, issue.input);
                return `Invalid input: expected ${expected}, received ${received}`;
            }
            case "invalid_value":
                if (issue.values.length === 1)
                    return `Invalid input: expected ${stringifyPrimitive(issue.values[0])}`;
                return `Invalid option: expected one of ${joinValues(issue.values, "|")}`;
            case "too_big": {
                const adj = issue.exact ? "exactly " : issue.inclusive ? "<=" : "<";
                const sizing = getSizing(issue.origin);
                if (sizing)
                    return `Too big: expected ${issue.origin ?? "value"} to have ${adj}${issue.maximum.toString()} ${sizing.unit ?? "elements"}`;
                return `Too big: expected ${issue.origin ?? "value"} to be ${adj}${issue.maximum.toString()}`;
            }
            case "too_small": {
                const adj = issue.exact ? "exactly " : issue.inclusive ? ">=" : ">";
                const sizing = getSizing(issue.origin);
                if (sizing) {
                    return `Too small: expected ${issue.origin} to have ${adj}${issue.minimum.toString()} ${sizing.unit}`;
                }
                return `Too small: expected ${issue.origin} to be ${adj}${issue.minimum.toString()}`;
            }
            case "invalid_format": {
                const _issue = issue;
                if (_issue.format === "starts_with") {
                    return `Invalid string: must start with "${_issue.prefix}"`;
                }
                if (_issue.format === "ends_with")
                    return `Invalid string: must end with "${_issue.suffix}"`;
                if (_issue.format === "includes")
                    return `Invalid string: must include "${_issue.includes}"`;
                if (_issue.format === "regex")
                    return `Invalid string: must match pattern ${_issue.pattern}`;
                return `Invalid ${FormatDictionary[_issue.format] ?? issue.format}`;
            }
            case "not_multiple_of":
                return `Invalid number: must be a multiple of ${issue.divisor}`;
            case "unrecognized_keys":
                return `Unrecognized key${issue.keys.length > 1 ? "s" : ""}: ${joinValues(issue.keys, ", ")}`;
            case "invalid_key":
                return `Invalid key in ${issue.origin}`;
            case "invalid_union":
                if (issue.options && Array.isArray(issue.options) && issue.options.length > 0) {
                    const opts = issue.options.map((o) => `'${o}'`).join(" | ");
                    return `Invalid discriminator value. Expected ${opts}`;
                }
                if (issue.inclusive === false) {
                    return "Invalid input: more than one option matched";
                }
                return "Invalid input";
            case "invalid_element":
                return `Invalid value in ${issue.origin}`;
            default:
                return `Invalid input`;
        }
    };
};
/* harmony default export */ function en() {
    return {
        localeError: error(),
    };
}

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/errors.js


/* Computing the message eagerly is expensive (pretty-printed JSON of all
 * issues), so defer it until first read. The accessor functions and
 * descriptors are shared across instances to keep error construction
 * cheap; the computed message is cached on the internals object. The
 * setter preserves plain assignment semantics for consumers that
 * overwrite `message`. */
function _getMessage() {
    const internals = this._zod;
    internals.message ?? (internals.message = JSON.stringify(internals.def, jsonStringifyReplacer, 2));
    return internals.message;
}
function _setMessage(value) {
    this._zod.message = value;
}
const _messageDesc = {
    get: _getMessage,
    set: _setMessage,
    enumerable: true,
    configurable: true,
};
const _issuesDesc = { value: undefined, enumerable: false };
/* Prototypes that already carry the lazy `toString`. Seeded with the
 * intrinsics so that `init` on a foreign object \u2014 it accepts any object \u2014
 * can never install an accessor onto a prototype we do not own. */
const _installedToString = /* @__PURE__ */ new WeakSet([Object.prototype, Error.prototype]);
const initializer = (inst, def) => {
    inst.name = "$ZodError";
    // `_zod` is already non-enumerable: $constructor's init defined it with this same descriptor
    _issuesDesc.value = def;
    Object.defineProperty(inst, "issues", _issuesDesc);
    // Clear the shared slot; a retained `value` pins the last error's issues.
    _issuesDesc.value = undefined;
    Object.defineProperty(inst, "message", _messageDesc);
    /* `toString` lives as a non-enumerable lazy getter on the shared
     * prototype; on first access it caches a per-instance closure so
     * detached usage still works. */
    const proto = Object.getPrototypeOf(inst);
    if (!_installedToString.has(proto)) {
        _installedToString.add(proto);
        Object.defineProperty(proto, "toString", {
            configurable: true,
            enumerable: false,
            get() {
                const value = () => this.message;
                Object.defineProperty(this, "toString", { value, configurable: true, writable: true });
                return value;
            },
            set(value) {
                Object.defineProperty(this, "toString", { value, configurable: true, writable: true });
            },
        });
    }
};
const $ZodError = $constructor("$ZodError", initializer);
const $ZodRealError = $constructor("$ZodError", initializer, undefined, {
    Parent: Error,
});
/** Get-or-create `obj[key]` as an own data property. A path segment naming an inherited member
 * ("toString", "constructor") would otherwise read through to the prototype, and assigning
 * "__proto__" would hit the setter instead of creating a key. */
function node(obj, key, make) {
    if (!Object.prototype.hasOwnProperty.call(obj, key)) {
        if (key === "__proto__") {
            Object.defineProperty(obj, key, { value: make(), writable: true, enumerable: true, configurable: true });
        }
        else {
            obj[key] = make();
        }
    }
    return obj[key];
}
function flattenError(error, mapper = (issue) => issue.message) {
    const fieldErrors = {};
    const formErrors = [];
    for (const sub of error.issues) {
        if (sub.path.length > 0) {
            node(fieldErrors, sub.path[0], () => []).push(mapper(sub));
        }
        else {
            formErrors.push(mapper(sub));
        }
    }
    return { formErrors, fieldErrors };
}
function formatError(error, mapper = (issue) => issue.message) {
    const fieldErrors = { _errors: [] };
    const processError = (error, path = []) => {
        for (const issue of error.issues) {
            if (issue.code === "invalid_union" && issue.errors.length) {
                issue.errors.map((issues) => processError({ issues }, [...path, ...issue.path]));
            }
            else if (issue.code === "invalid_key") {
                processError({ issues: issue.issues }, [...path, ...issue.path]);
            }
            else if (issue.code === "invalid_element") {
                processError({ issues: issue.issues }, [...path, ...issue.path]);
            }
            else {
                const fullpath = [...path, ...issue.path];
                if (fullpath.length === 0) {
                    fieldErrors._errors.push(mapper(issue));
                }
                else {
                    let curr = fieldErrors;
                    let i = 0;
                    while (i < fullpath.length) {
                        const el = fullpath[i];
                        const terminal = i === fullpath.length - 1;
                        // `_errors` is reserved by this legacy format, so merge a matching path segment into the current node instead of treating its array as a child.
                        if (el === "_errors") {
                            if (terminal)
                                curr._errors.push(mapper(issue));
                            i++;
                            continue;
                        }
                        // A path element may collide with an inherited property name such as
                        // "__proto__" or "constructor". Truthiness checks read the prototype
                        // (so no node is created, then ._errors.push throws), and bracket
                        // assignment of "__proto__" hits the setter instead of creating an
                        // own key. Guard the read with hasOwnProperty and create the node
                        // with defineProperty so any path element becomes a real own key.
                        if (!Object.prototype.hasOwnProperty.call(curr, el)) {
                            Object.defineProperty(curr, el, {
                                value: { _errors: [] },
                                enumerable: true,
                                writable: true,
                                configurable: true,
                            });
                        }
                        const node = curr[el];
                        if (terminal) {
                            node._errors.push(mapper(issue));
                        }
                        curr = node;
                        i++;
                    }
                }
            }
        }
    };
    processError(error);
    return fieldErrors;
}
function treeifyError(error, mapper = (issue) => issue.message) {
    const result = { errors: [] };
    const processError = (error, path = []) => {
        var _a;
        for (const issue of error.issues) {
            if (issue.code === "invalid_union" && issue.errors.length) {
                // regular union error
                issue.errors.map((issues) => processError({ issues }, [...path, ...issue.path]));
            }
            else if (issue.code === "invalid_key") {
                processError({ issues: issue.issues }, [...path, ...issue.path]);
            }
            else if (issue.code === "invalid_element") {
                processError({ issues: issue.issues }, [...path, ...issue.path]);
            }
            else {
                const fullpath = [...path, ...issue.path];
                if (fullpath.length === 0) {
                    result.errors.push(mapper(issue));
                    continue;
                }
                let curr = result;
                let i = 0;
                while (i < fullpath.length) {
                    const el = fullpath[i];
                    const terminal = i === fullpath.length - 1;
                    if (typeof el === "string") {
                        curr.properties ?? (curr.properties = {});
                        // el may collide with an inherited property name ("__proto__",
                        // "constructor", ...); ??= reads the prototype so the node is never
                        // created and curr.errors.push throws. Guard with hasOwnProperty and
                        // create the node with defineProperty so "__proto__" becomes a real
                        // own key rather than invoking the prototype setter.
                        if (!Object.prototype.hasOwnProperty.call(curr.properties, el)) {
                            Object.defineProperty(curr.properties, el, {
                                value: { errors: [] },
                                enumerable: true,
                                writable: true,
                                configurable: true,
                            });
                        }
                        curr = curr.properties[el];
                    }
                    else {
                        curr.items ?? (curr.items = []);
                        (_a = curr.items)[el] ?? (_a[el] = { errors: [] });
                        curr = curr.items[el];
                    }
                    if (terminal) {
                        curr.errors.push(mapper(issue));
                    }
                    i++;
                }
            }
        }
    };
    processError(error);
    return result;
}
/** Format a ZodError as a human-readable string in the following form.
 *
 * From
 *
 * ```ts
 * ZodError {
 *   issues: [
 *     {
 *       expected: 'string',
 *       code: 'invalid_type',
 *       path: [ 'username' ],
 *       message: 'Invalid input: expected string'
 *     },
 *     {
 *       expected: 'number',
 *       code: 'invalid_type',
 *       path: [ 'favoriteNumbers', 1 ],
 *       message: 'Invalid input: expected number'
 *     }
 *   ];
 * }
 * ```
 *
 * to
 *
 * ```
 * username
 *   \u2716 Expected number, received string at "username
 * favoriteNumbers[0]
 *   \u2716 Invalid input: expected number
 * ```
 */
function toDotPath(_path) {
    const segs = [];
    const path = _path.map((seg) => (typeof seg === "object" ? seg.key : seg));
    for (const seg of path) {
        if (typeof seg === "number")
            segs.push(`[${seg}]`);
        else if (typeof seg === "symbol")
            segs.push(`[${JSON.stringify(String(seg))}]`);
        else if (/[^\w$]/.test(seg))
            segs.push(`[${JSON.stringify(seg)}]`);
        else {
            if (segs.length)
                segs.push(".");
            segs.push(seg);
        }
    }
    return segs.join("");
}
function prettifyError(error) {
    const lines = [];
    // sort by path length
    const issues = [...error.issues].sort((a, b) => (a.path ?? []).length - (b.path ?? []).length);
    // Process each issue
    for (const issue of issues) {
        lines.push(`\u2716 ${issue.message}`);
        if (issue.path?.length)
            lines.push(`  \u2192 at ${toDotPath(issue.path)}`);
    }
    // Convert Map to formatted string
    return lines.join("\n");
}

;// CONCATENATED MODULE: ./node_modules/zod/v4/core/parse.js



// Always both keys, so the `_params` read site in `_parse` sees one object shape rather than two.
function finalizeParams(callee, params) {
    return { callee: params?.callee ?? callee, Err: params?.Err };
}
const _parse = (_Err) => {
    const fn = (schema, value, _ctx, _params) => {
        const ctx = _ctx ? { ..._ctx, async: false } : { async: false };
        const result = schema._zod.run({ value, issues: [] }, ctx);
        if (result instanceof Promise) {
            throw new $ZodAsyncError();
        }
        if (result.issues.length) {
            const e = new (_params?.Err ?? _Err)(result.issues.map((iss) => finalizeIssue(iss, ctx, config())));
            captureStackTrace(e, _params?.callee ?? fn);
            throw e;
        }
        return result.value;
    };
    return fn;
};
const parse_parse = /* @__PURE__*/ _parse($ZodRealError);
const _parseAsync = (_Err) => {
    const fn = async (schema, value, _ctx, params) => {
        const ctx = _ctx ? { ..._ctx, async: true } : { async: true };
        let result = schema._zod.run({ value, issues: [] }, ctx);
        if (result instanceof Promise)
            result = await result;
        if (result.issues.length) {
            const e = new (params?.Err ?? _Err)(result.issues.map((iss) => finalizeIssue(iss, ctx, config())));
            captureStackTrace(e, params?.callee ?? fn);
            throw e;
        }
        return result.value;
    };
    return fn;
};
const parse_parseAsync = /* @__PURE__*/ _parseAsync($ZodRealError);
const _safeParse = (_Err) => (schema, value, _ctx) => {
    const ctx = _ctx ? { ..._ctx, async: false } : { async: false };
    const result = schema._zod.run({ value, issues: [] }, ctx);
    if (result instanceof Promise) {
        throw new $ZodAsyncError();
    }
    return result.issues.length ? failure(_Err, result.issues, ctx) : { success: true, data: result.value };
};
const safeParse = /* @__PURE__*/ _safeParse($ZodRealError);
// the error is built on the first read of `error`: finalizing the issues and constructing the instance is most of a failing parse, and a caller that only branches on `success` never pays it. a getter in the literal keeps this small; the alternative, one shared accessor descriptor plus a hidden state slot, reads ~15% faster but costs ~75 B gzipped in every bundle
function failure(Err, issues, ctx) {
    let error;
    return {
        success: false,
        get error() {
            if (!error) {
                error = new Err(issues.map((iss) => finalizeIssue(iss, ctx, config())));
                // finalizeIssue drops `input`, so the built error holds nothing; keeping the raw issues past this point pins the parsed value for the life of the result
                issues = undefined;
                ctx = undefined;
            }
            return error;
        },
        set error(e) {
            error = e;
            // a replacement makes the getter's branch unreachable, so the captures have to go here too
            issues = undefined;
            ctx = undefined;
        },
    };
}
const _safeParseAsync = (_Err) => async (schema, value, _ctx) => {
    const ctx = _ctx ? { ..._ctx, async: true } : { async: true };
    let result = schema._zod.run({ value, issues: [] }, ctx);
    if (result instanceof Promise)
        result = await result;
    return result.issues.length ? failure(_Err, result.issues, ctx) : { success: true, data: result.value };
};
const safeParseAsync = /* @__PURE__*/ _safeParseAsync($ZodRealError);
// registry mirrors of the compiler's sentinels, so this module never imports the compiler
const COMPILE_INVALID = /* @__PURE__ */ Symbol.for("zod.compile.invalid");
const COMPILE_FALLBACK = /* @__PURE__ */ Symbol.for("zod.compile.fallback");
// Deliberately tiny, because v8 will not inline a body carrying the fallback's object literals and throw. Everything that is not the compiled happy path lives in validateFallback, and that split is worth ~35% on a compiled schema.
const validate = ((schema, value, _ctx) => {
    const validator = schema._zod.bag.validator;
    if (validator !== undefined) {
        if (validator(value) !== COMPILE_INVALID)
            return true;
        // a definite sentinel means the runtime would reject, so skip the re-parse; a ctx can still change the answer
        if (validator.definite === true && _ctx === undefined)
            return false;
    }
    return validateFallback(schema, value, _ctx);
});
function validateFallback(schema, value, _ctx) {
    const ctx = _ctx
        ? { ..._ctx, async: false, abortEarly: true }
        : { async: false, abortEarly: true };
    const fallbackRun = schema._zod.bag.fallbackRun;
    let result;
    if (fallbackRun) {
        // skip nested fast paths on the fallback, so user callbacks keep the at-most-twice bound
        ctx[COMPILE_FALLBACK] = true;
        result = fallbackRun({ value, issues: [] }, ctx);
    }
    else {
        result = schema._zod.run({ value, issues: [] }, ctx);
    }
    if (result instanceof Promise) {
        throw new $ZodAsyncError();
    }
    return result.issues.length === 0;
}
// no fast path: the compiler keeps async parses on the runtime, because a promise-returning callback that is not declared async compiles to a throw
const parse_validateAsync = async (schema, value, _ctx) => {
    const ctx = _ctx
        ? { ..._ctx, async: true, abortEarly: true }
        : { async: true, abortEarly: true };
    let result = schema._zod.run({ value, issues: [] }, ctx);
    if (result instanceof Promise)
        result = await result;
    return result.issues.length === 0;
};
const _encode = (_Err) => {
    const parse = _parse(_Err);
    const fn = (schema, value, _ctx, _params) => {
        const ctx = _ctx ? { ..._ctx, direction: "backward" } : { direction: "backward" };
        return parse(schema, value, ctx, finalizeParams(fn, _params));
    };
    return fn;
};
const encode = /* @__PURE__*/ _encode($ZodRealError);
const _decode = (_Err) => {
    const parse = _parse(_Err);
    const fn = (schema, value, _ctx, _params) => {
        return parse(schema, value, _ctx, finalizeParams(fn, _params));
    };
    return fn;
};
const decode = /* @__PURE__*/ _decode($ZodRealError);
const _encodeAsync = (_Err) => {
    const parseAsync = _parseAsync(_Err);
    const fn = async (schema, value, _ctx, _params) => {
        const ctx = _ctx ? { ..._ctx, direction: "backward" } : { direction: "backward" };
        return (await parseAsync(schema, value, ctx, finalizeParams(fn, _params)));
    };
    return fn;
};
const encodeAsync = /* @__PURE__*/ _encodeAsync($ZodRealError);
const _decodeAsync = (_Err) => {
    const parseAsync = _parseAsync(_Err);
    const fn = async (schema, value, _ctx, _params) => {
        return await parseAsync(schema, value, _ctx, finalizeParams(fn, _params));
    };
    return fn;
};
const decodeAsync = /* @__PURE__*/ _decodeAsync($ZodRealError);
const _safeEncode = (_Err) => (schema, value, _ctx) => {
    const ctx = _ctx ? { ..._ctx, direction: "backward" } : { direction: "backward" };
    return _safeParse(_Err)(schema, value, ctx);
};
const safeEncode = /* @__PURE__*/ _safeEncode($ZodRealError);
const _safeDecode = (_Err) => (schema, value, _ctx) => {
    return _safeParse(_Err)(schema, value, _ctx);
};
const safeDecode = /* @__PURE__*/ _safeDecode($ZodRealError);
const _safeEncodeAsync = (_Err) => async (schema, value, _ctx) => {
    const ctx = _ctx ? { ..._ctx, direction: "backward" } : { direction: "backward" };
    return _safeParseAsync(_Err)(schema, value, ctx);
};
const safeEncodeAsync = /* @__PURE__*/ _safeEncodeAsync($ZodRealError);
const _safeDecodeAsync = (_Err) => async (schema, value, _ctx) => {
    return _safeParseAsync(_Err)(schema, value, _ctx);
};
const safeDecodeAsync = /* @__PURE__*/ _safeDecodeAsync($ZodRealError);

;// CONCATENATED MODULE: ./node_modules/zod/v4/classic/errors.js



/* Prototypes that already carry the lazy helper methods. Seeded with the
 * intrinsics so that `init` on a foreign object \u2014 it accepts any object \u2014
 * can never install an accessor onto a prototype we do not own. */
const _installedErrorProtos = /* @__PURE__ */ new WeakSet([Object.prototype, Error.prototype]);
/* Helper methods live as non-enumerable lazy getters on the shared
 * prototype instead of own properties on every instance. On first
 * access the getter allocates the per-instance closure and caches it
 * as a non-enumerable own property, so detached usage still works and
 * the allocation only happens for methods actually touched. */
function _lazyMethod(proto, key, make) {
    Object.defineProperty(proto, key, {
        configurable: true,
        enumerable: false,
        get() {
            const value = make(this);
            Object.defineProperty(this, key, { value, configurable: true, writable: true });
            return value;
        },
        set(value) {
            Object.defineProperty(this, key, { value, configurable: true, writable: true });
        },
    });
}
const errors_initializer = (inst, issues) => {
    $ZodError.init(inst, issues);
    inst.name = "ZodError";
    const proto = Object.getPrototypeOf(inst);
    if (_installedErrorProtos.has(proto))
        return;
    _installedErrorProtos.add(proto);
    _lazyMethod(proto, "format", (self) => (mapper) => formatError(self, mapper));
    _lazyMethod(proto, "flatten", (self) => (mapper) => flattenError(self, mapper));
    _lazyMethod(proto, "addIssue", (self) => (issue) => {
        self.issues.push(issue);
        self.message = JSON.stringify(self.issues, jsonStringifyReplacer, 2);
    });
    _lazyMethod(proto, "addIssues", (self) => (issues) => {
        self.issues.push(...issues);
        self.message = JSON.stringify(self.issues, jsonStringifyReplacer, 2);
    });
    Object.defineProperty(proto, "isEmpty", {
        configurable: true,
        enumerable: false,
        get() {
            return this.issues.length === 0;
        },
    });
};
const ZodError = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodError", errors_initializer)));
const ZodRealError = /*@__PURE__*/ $constructor("ZodError", errors_initializer, undefined, {
    Parent: Error,
});
// /** @deprecated Use `z.core.$ZodErrorMapCtx` instead. */
// export type ErrorMapCtx = core.$ZodErrorMapCtx;

;// CONCATENATED MODULE: ./node_modules/zod/v4/classic/parse.js


const classic_parse_parse = /* @__PURE__ */ _parse(ZodRealError);
const classic_parse_parseAsync = /* @__PURE__ */ _parseAsync(ZodRealError);
const parse_safeParse = /* @__PURE__ */ _safeParse(ZodRealError);
const parse_safeParseAsync = /* @__PURE__ */ _safeParseAsync(ZodRealError);

// Codec functions
const parse_encode = /* @__PURE__ */ _encode(ZodRealError);
const parse_decode = /* @__PURE__ */ _decode(ZodRealError);
const parse_encodeAsync = /* @__PURE__ */ _encodeAsync(ZodRealError);
const parse_decodeAsync = /* @__PURE__ */ _decodeAsync(ZodRealError);
const parse_safeEncode = /* @__PURE__ */ _safeEncode(ZodRealError);
const parse_safeDecode = /* @__PURE__ */ _safeDecode(ZodRealError);
const parse_safeEncodeAsync = /* @__PURE__ */ _safeEncodeAsync(ZodRealError);
const parse_safeDecodeAsync = /* @__PURE__ */ _safeDecodeAsync(ZodRealError);

;// CONCATENATED MODULE: ./node_modules/zod/v4/classic/schemas.js








// Register English as the default locale on first ZodType construction. Hooked into the `ZodType` `$constructor` (rather than a top-level `config(en())` in `external.ts`) so bundlers honoring `sideEffects: false` can't tree-shake it out \u2014 see #5953, #5725. An explicit `z.config(z.locales.xx())` call wins regardless of order, since this only sets the default when none is present.
function _ensureDefaultLocale() {
    if (!globalConfig.localeError)
        config(en());
}
// the default memoizer is read by the core container init, which runs before `ZodType.init`, so each container calls this first
function _ensureDefaultMemoizer() {
    if (!globalConfig.memoizer)
        config({ memoizer: memoizer() });
}
const ZodType = /*@__PURE__*/ $constructor("ZodType", (inst, def) => {
    _ensureDefaultLocale();
    $ZodType.init(inst, def);
    inst.def = def;
    inst.type = def.type;
    return inst;
}, {
    check(...chks) {
        const def = this.def;
        return this.clone(mergeDefs(def, {
            checks: [
                ...(def.checks ?? []),
                ...chks.map((ch) => typeof ch === "function" ? { _zod: { check: ch, def: { check: "custom" }, onattach: [] } } : ch),
            ],
        }), { parent: true });
    },
    with(...chks) {
        return this.check(...chks);
    },
    clone(def, params) {
        return clone(this, def, params);
    },
    brand() {
        return this;
    },
    register(reg, meta) {
        reg.add(this, meta);
        return this;
    },
    refine(check, params) {
        return this.check(refine(check, params));
    },
    superRefine(refinement, params) {
        return this.check(superRefine(refinement, params));
    },
    overwrite(fn) {
        return this.check(_overwrite(fn));
    },
    optional() {
        return optional(this);
    },
    exactOptional() {
        return exactOptional(this);
    },
    nullable() {
        return nullable(this);
    },
    nullish() {
        return optional(nullable(this));
    },
    nonoptional(params) {
        return nonoptional(this, params);
    },
    array() {
        return array(this);
    },
    or(arg) {
        return union([this, arg]);
    },
    and(arg) {
        return intersection(this, arg);
    },
    transform(tx) {
        return pipe(this, transform(tx));
    },
    default(d) {
        return schemas_default(this, d);
    },
    prefault(d) {
        return prefault(this, d);
    },
    catch(params) {
        return schemas_catch(this, params);
    },
    pipe(target) {
        return pipe(this, target);
    },
    readonly() {
        return readonly(this);
    },
    describe(description) {
        const cl = this.clone();
        globalRegistry.add(cl, { description });
        return cl;
    },
    meta(...args) {
        // overloaded: meta() returns the registered metadata, meta(data) returns a clone with `data` registered. The mapped type picks up the second overload, so we accept variadic any-args and return `any` to satisfy both at runtime.
        if (args.length === 0)
            return globalRegistry.get(this);
        const cl = this.clone();
        globalRegistry.add(cl, args[0]);
        return cl;
    },
    isOptional() {
        return this.safeParse(undefined).success;
    },
    isNullable() {
        return this.safeParse(null).success;
    },
    apply(fn, ...args) {
        return args.length === 0 ? fn(this) : fn(this, ...args);
    },
    // Overrides core's `~standard` to add `jsonSchema`. Must stay a prototype entry: redefining it per instance demotes instances to dictionary mode.
    get "~standard"() {
        return hide(this, "~standard", {
            ...standardProps(this),
            jsonSchema: {
                input: createStandardJSONSchemaMethod(this, "input"),
                output: createStandardJSONSchemaMethod(this, "output"),
            },
        });
    },
    set "~standard"(value) {
        own(this, "~standard", value);
    },
    parse: function _parse(data, params) {
        return classic_parse_parse(this, data, params, { callee: _parse });
    },
    parseAsync: async function _parseAsync(data, params) {
        return await classic_parse_parseAsync(this, data, params, { callee: _parseAsync });
    },
    safeParse(data, params) {
        return parse_safeParse(this, data, params);
    },
    async safeParseAsync(data, params) {
        return parse_safeParseAsync(this, data, params);
    },
    // `spa` is an alias: same function object as `safeParseAsync`, as before.
    get spa() {
        return this?.safeParseAsync;
    },
    set spa(value) {
        own(this, "spa", value);
    },
    validate(data, params) {
        return validate(this, data, params);
    },
    validateAsync(data, params) {
        return parse_validateAsync(this, data, params);
    },
    encode: function _encode(data, params) {
        return parse_encode(this, data, params, { callee: _encode });
    },
    decode: function _decode(data, params) {
        return parse_decode(this, data, params, { callee: _decode });
    },
    encodeAsync: async function _encodeAsync(data, params) {
        return await parse_encodeAsync(this, data, params, { callee: _encodeAsync });
    },
    decodeAsync: async function _decodeAsync(data, params) {
        return await parse_decodeAsync(this, data, params, { callee: _decodeAsync });
    },
    safeEncode(data, params) {
        return parse_safeEncode(this, data, params);
    },
    safeDecode(data, params) {
        return parse_safeDecode(this, data, params);
    },
    async safeEncodeAsync(data, params) {
        return parse_safeEncodeAsync(this, data, params);
    },
    async safeDecodeAsync(data, params) {
        return parse_safeDecodeAsync(this, data, params);
    },
    toJSONSchema(params) {
        return createToJSONSchemaMethod(this, {})(params);
    },
    // Reads through to the registry on every access, so it must not cache.
    get description() {
        return globalRegistry.get(this)?.description;
    },
    // No setter: `schema._def = x` throws, as it did when `_def` was a non-writable own property.
    get _def() {
        return this._zod.def;
    },
});
/** @internal */
const _ZodString = /*@__PURE__*/ $constructor("_ZodString", (inst, def) => {
    $ZodString.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => stringProcessor(inst, ctx, json, params);
}, 
/*@__PURE__*/ derived({
    format: (inst) => aggregateChecks(inst).format ?? null,
    minLength: (inst) => aggregateChecks(inst).minimum ?? null,
    maxLength: (inst) => aggregateChecks(inst).maximum ?? null,
}, {
    regex(...args) {
        return this.check(_regex(...args));
    },
    includes(...args) {
        return this.check(_includes(...args));
    },
    startsWith(...args) {
        return this.check(_startsWith(...args));
    },
    endsWith(...args) {
        return this.check(_endsWith(...args));
    },
    min(...args) {
        return this.check(_minLength(...args));
    },
    max(...args) {
        return this.check(_maxLength(...args));
    },
    length(...args) {
        return this.check(_length(...args));
    },
    nonempty(...args) {
        return this.check(_minLength(1, ...args));
    },
    lowercase(params) {
        return this.check(_lowercase(params));
    },
    uppercase(params) {
        return this.check(_uppercase(params));
    },
    trim() {
        return this.check(_trim());
    },
    normalize(...args) {
        return this.check(_normalize(...args));
    },
    toLowerCase() {
        return this.check(_toLowerCase());
    },
    toUpperCase() {
        return this.check(_toUpperCase());
    },
    slugify() {
        return this.check(_slugify());
    },
}));
const ZodString = /*@__PURE__*/ $constructor("ZodString", (inst, def) => {
    $ZodString.init(inst, def);
    _ZodString.init(inst, def);
}, {
    email(params) {
        return this.check(_email(ZodEmail, params));
    },
    url(params) {
        return this.check(_url(ZodURL, params));
    },
    jwt(params) {
        return this.check(_jwt(ZodJWT, params));
    },
    emoji(params) {
        return this.check(api_emoji(ZodEmoji, params));
    },
    guid(params) {
        return this.check(_guid(ZodGUID, params));
    },
    uuid(params) {
        return this.check(_uuid(ZodUUID, params));
    },
    uuidv4(params) {
        return this.check(_uuidv4(ZodUUID, params));
    },
    uuidv6(params) {
        return this.check(_uuidv6(ZodUUID, params));
    },
    uuidv7(params) {
        return this.check(_uuidv7(ZodUUID, params));
    },
    nanoid(params) {
        return this.check(_nanoid(ZodNanoID, params));
    },
    cuid(params) {
        return this.check(_cuid(ZodCUID, params));
    },
    cuid2(params) {
        return this.check(_cuid2(ZodCUID2, params));
    },
    ulid(params) {
        return this.check(_ulid(ZodULID, params));
    },
    base64(params) {
        return this.check(_base64(ZodBase64, params));
    },
    base64url(params) {
        return this.check(_base64url(ZodBase64URL, params));
    },
    xid(params) {
        return this.check(_xid(ZodXID, params));
    },
    ksuid(params) {
        return this.check(_ksuid(ZodKSUID, params));
    },
    ipv4(params) {
        return this.check(_ipv4(ZodIPv4, params));
    },
    ipv6(params) {
        return this.check(_ipv6(ZodIPv6, params));
    },
    cidrv4(params) {
        return this.check(_cidrv4(ZodCIDRv4, params));
    },
    cidrv6(params) {
        return this.check(_cidrv6(ZodCIDRv6, params));
    },
    e164(params) {
        return this.check(_e164(ZodE164, params));
    },
    datetime(params) {
        return this.check(_isoDateTime(ZodISODateTime, params));
    },
    date(params) {
        return this.check(_isoDate(schemas_ZodISODate, params));
    },
    time(params) {
        return this.check(_isoTime(schemas_ZodISOTime, params));
    },
    duration(params) {
        return this.check(_isoDuration(schemas_ZodISODuration, params));
    },
});
function schemas_string(params) {
    return _string(ZodString, params);
}
const ZodStringFormat = /*@__PURE__*/ $constructor("ZodStringFormat", (inst, def) => {
    $ZodStringFormat.init(inst, def);
    _ZodString.init(inst, def);
});
const ZodISODateTime = /*@__PURE__*/ $constructor("ZodISODateTime", (inst, def) => {
    $ZodISODateTime.init(inst, def);
    ZodStringFormat.init(inst, def);
});
const schemas_ZodISODate = /*@__PURE__*/ $constructor("ZodISODate", (inst, def) => {
    $ZodISODate.init(inst, def);
    ZodStringFormat.init(inst, def);
});
const schemas_ZodISOTime = /*@__PURE__*/ $constructor("ZodISOTime", (inst, def) => {
    $ZodISOTime.init(inst, def);
    ZodStringFormat.init(inst, def);
});
const schemas_ZodISODuration = /*@__PURE__*/ $constructor("ZodISODuration", (inst, def) => {
    $ZodISODuration.init(inst, def);
    ZodStringFormat.init(inst, def);
});
const ZodEmail = /*@__PURE__*/ $constructor("ZodEmail", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodEmail.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_email(params) {
    return core._email(ZodEmail, params);
}
const ZodGUID = /*@__PURE__*/ $constructor("ZodGUID", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodGUID.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_guid(params) {
    return core._guid(ZodGUID, params);
}
const ZodUUID = /*@__PURE__*/ $constructor("ZodUUID", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodUUID.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_uuid(params) {
    return core._uuid(ZodUUID, params);
}
function uuidv4(params) {
    return core._uuidv4(ZodUUID, params);
}
// ZodUUIDv6
function uuidv6(params) {
    return core._uuidv6(ZodUUID, params);
}
// ZodUUIDv7
function uuidv7(params) {
    return core._uuidv7(ZodUUID, params);
}
const ZodURL = /*@__PURE__*/ $constructor("ZodURL", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodURL.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function url(params) {
    return _url(ZodURL, params);
}
function httpUrl(params) {
    return core._url(ZodURL, {
        protocol: regexes.httpProtocol,
        hostname: regexes.domain,
        ...util.normalizeParams(params),
    });
}
const ZodEmoji = /*@__PURE__*/ $constructor("ZodEmoji", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodEmoji.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_emoji(params) {
    return core._emoji(ZodEmoji, params);
}
const ZodNanoID = /*@__PURE__*/ $constructor("ZodNanoID", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodNanoID.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_nanoid(params) {
    return core._nanoid(ZodNanoID, params);
}
/**
 * @deprecated CUID v1 is deprecated by its authors due to information leakage
 * (timestamps embedded in the id). Use {@link ZodCUID2} instead.
 * See https://github.com/paralleldrive/cuid.
 */
const ZodCUID = /*@__PURE__*/ $constructor("ZodCUID", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodCUID.init(inst, def);
    ZodStringFormat.init(inst, def);
});
/**
 * Validates a CUID v1 string.
 *
 * @deprecated CUID v1 is deprecated by its authors due to information leakage
 * (timestamps embedded in the id). Use {@link cuid2 | `z.cuid2()`} instead.
 * See https://github.com/paralleldrive/cuid.
 */
function schemas_cuid(params) {
    return core._cuid(ZodCUID, params);
}
const ZodCUID2 = /*@__PURE__*/ $constructor("ZodCUID2", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodCUID2.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_cuid2(params) {
    return core._cuid2(ZodCUID2, params);
}
const ZodULID = /*@__PURE__*/ $constructor("ZodULID", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodULID.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_ulid(params) {
    return core._ulid(ZodULID, params);
}
const ZodXID = /*@__PURE__*/ $constructor("ZodXID", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodXID.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_xid(params) {
    return core._xid(ZodXID, params);
}
const ZodKSUID = /*@__PURE__*/ $constructor("ZodKSUID", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodKSUID.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_ksuid(params) {
    return core._ksuid(ZodKSUID, params);
}
const ZodIPv4 = /*@__PURE__*/ $constructor("ZodIPv4", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodIPv4.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_ipv4(params) {
    return _ipv4(ZodIPv4, params);
}
const ZodMAC = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodMAC", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    core.$ZodMAC.init(inst, def);
    ZodStringFormat.init(inst, def);
})));
function schemas_mac(params) {
    return core._mac(ZodMAC, params);
}
const ZodIPv6 = /*@__PURE__*/ $constructor("ZodIPv6", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodIPv6.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_ipv6(params) {
    return core._ipv6(ZodIPv6, params);
}
const ZodCIDRv4 = /*@__PURE__*/ $constructor("ZodCIDRv4", (inst, def) => {
    $ZodCIDRv4.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_cidrv4(params) {
    return core._cidrv4(ZodCIDRv4, params);
}
const ZodCIDRv6 = /*@__PURE__*/ $constructor("ZodCIDRv6", (inst, def) => {
    $ZodCIDRv6.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_cidrv6(params) {
    return core._cidrv6(ZodCIDRv6, params);
}
const ZodBase64 = /*@__PURE__*/ $constructor("ZodBase64", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodBase64.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_base64(params) {
    return core._base64(ZodBase64, params);
}
const ZodBase64URL = /*@__PURE__*/ $constructor("ZodBase64URL", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodBase64URL.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_base64url(params) {
    return core._base64url(ZodBase64URL, params);
}
const ZodE164 = /*@__PURE__*/ $constructor("ZodE164", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodE164.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function schemas_e164(params) {
    return core._e164(ZodE164, params);
}
const ZodCreditCard = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodCreditCard", (inst, def) => {
    core.$ZodCreditCard.init(inst, def);
    ZodStringFormat.init(inst, def);
})));
function schemas_creditCard(params) {
    return core._creditCard(ZodCreditCard, params);
}
const ZodIBAN = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodIBAN", (inst, def) => {
    core.$ZodIBAN.init(inst, def);
    ZodStringFormat.init(inst, def);
})));
function schemas_iban(params) {
    return core._iban(ZodIBAN, params);
}
const ZodJWT = /*@__PURE__*/ $constructor("ZodJWT", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    $ZodJWT.init(inst, def);
    ZodStringFormat.init(inst, def);
});
function jwt(params) {
    return core._jwt(ZodJWT, params);
}
const ZodCustomStringFormat = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodCustomStringFormat", (inst, def) => {
    // ZodStringFormat.init(inst, def);
    core.$ZodCustomStringFormat.init(inst, def);
    ZodStringFormat.init(inst, def);
})));
function stringFormat(format, fnOrRegex, _params = {}) {
    return core._stringFormat(ZodCustomStringFormat, format, fnOrRegex, _params);
}
function schemas_hostname(_params) {
    return core._stringFormat(ZodCustomStringFormat, "hostname", regexes.hostname, _params);
}
function schemas_hex(_params) {
    return core._stringFormat(ZodCustomStringFormat, "hex", regexes.hex, _params);
}
function schemas_currencyCode(_params) {
    return core._stringFormat(ZodCustomStringFormat, "currency_code", regexes.currencyCode, _params);
}
function hash(alg, params) {
    const enc = params?.enc ?? "hex";
    const format = `${alg}_${enc}`;
    const regex = core.regexes[format];
    if (!regex)
        throw new Error(`Unrecognized hash format: ${format}`);
    return core._stringFormat(ZodCustomStringFormat, format, regex, params);
}
const ZodNumber = /*@__PURE__*/ $constructor("ZodNumber", (inst, def) => {
    $ZodNumber.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => numberProcessor(inst, ctx, json, params);
    inst.isFinite = true;
}, 
/*@__PURE__*/ derived({
    minValue: (inst) => {
        const { minimum, exclusiveMinimum } = aggregateChecks(inst);
        return Math.max(minimum ?? Number.NEGATIVE_INFINITY, exclusiveMinimum ?? Number.NEGATIVE_INFINITY);
    },
    maxValue: (inst) => {
        const { maximum, exclusiveMaximum } = aggregateChecks(inst);
        return Math.min(maximum ?? Number.POSITIVE_INFINITY, exclusiveMaximum ?? Number.POSITIVE_INFINITY);
    },
    isInt: (inst) => {
        const { isInt, multipleOf } = aggregateChecks(inst);
        return !!isInt || !!multipleOf?.some(Number.isSafeInteger);
    },
    format: (inst) => aggregateChecks(inst).format ?? null,
}, {
    gt(value, params) {
        return this.check(_gt(value, params));
    },
    gte(value, params) {
        return this.check(_gte(value, params));
    },
    min(value, params) {
        return this.check(_gte(value, params));
    },
    lt(value, params) {
        return this.check(_lt(value, params));
    },
    lte(value, params) {
        return this.check(_lte(value, params));
    },
    max(value, params) {
        return this.check(_lte(value, params));
    },
    int(params) {
        return this.check(schemas_int(params));
    },
    safe(params) {
        return this.check(schemas_int(params));
    },
    positive(params) {
        return this.check(_gt(0, params));
    },
    nonnegative(params) {
        return this.check(_gte(0, params));
    },
    negative(params) {
        return this.check(_lt(0, params));
    },
    nonpositive(params) {
        return this.check(_lte(0, params));
    },
    multipleOf(value, params) {
        return this.check(_multipleOf(value, params));
    },
    step(value, params) {
        return this.check(_multipleOf(value, params));
    },
    finite() {
        return this;
    },
}));
function schemas_number(params) {
    return _number(ZodNumber, params);
}
const ZodNumberFormat = /*@__PURE__*/ $constructor("ZodNumberFormat", (inst, def) => {
    $ZodNumberFormat.init(inst, def);
    ZodNumber.init(inst, def);
});
function schemas_int(params) {
    return _int(ZodNumberFormat, params);
}
function float32(params) {
    return core._float32(ZodNumberFormat, params);
}
function float64(params) {
    return core._float64(ZodNumberFormat, params);
}
function int32(params) {
    return core._int32(ZodNumberFormat, params);
}
function uint32(params) {
    return core._uint32(ZodNumberFormat, params);
}
const ZodBoolean = /*@__PURE__*/ $constructor("ZodBoolean", (inst, def) => {
    $ZodBoolean.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => booleanProcessor(inst, ctx, json, params);
});
function schemas_boolean(params) {
    return _boolean(ZodBoolean, params);
}
const ZodBigInt = /*@__PURE__*/ $constructor("ZodBigInt", (inst, def) => {
    $ZodBigInt.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => bigintProcessor(inst, ctx, json, params);
}, 
/*@__PURE__*/ derived({
    minValue: (inst) => aggregateChecks(inst).minimum ?? null,
    maxValue: (inst) => aggregateChecks(inst).maximum ?? null,
    format: (inst) => aggregateChecks(inst).format ?? null,
}, {
    gte(value, params) {
        return this.check(_gte(value, params));
    },
    min(value, params) {
        return this.check(_gte(value, params));
    },
    gt(value, params) {
        return this.check(_gt(value, params));
    },
    lt(value, params) {
        return this.check(_lt(value, params));
    },
    lte(value, params) {
        return this.check(_lte(value, params));
    },
    max(value, params) {
        return this.check(_lte(value, params));
    },
    positive(params) {
        return this.check(_gt(BigInt(0), params));
    },
    negative(params) {
        return this.check(_lt(BigInt(0), params));
    },
    nonpositive(params) {
        return this.check(_lte(BigInt(0), params));
    },
    nonnegative(params) {
        return this.check(_gte(BigInt(0), params));
    },
    multipleOf(value, params) {
        return this.check(_multipleOf(value, params));
    },
}));
function schemas_bigint(params) {
    return core._bigint(ZodBigInt, params);
}
const ZodBigIntFormat = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodBigIntFormat", (inst, def) => {
    core.$ZodBigIntFormat.init(inst, def);
    ZodBigInt.init(inst, def);
})));
function int64(params) {
    return core._int64(ZodBigIntFormat, params);
}
function uint64(params) {
    return core._uint64(ZodBigIntFormat, params);
}
const ZodSymbol = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodSymbol", (inst, def) => {
    core.$ZodSymbol.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.symbolProcessor(inst, ctx, json, params);
})));
function symbol(params) {
    return core._symbol(ZodSymbol, params);
}
const ZodUndefined = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodUndefined", (inst, def) => {
    core.$ZodUndefined.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.undefinedProcessor(inst, ctx, json, params);
})));
function schemas_undefined(params) {
    return core._undefined(ZodUndefined, params);
}

const ZodNull = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodNull", (inst, def) => {
    core.$ZodNull.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.nullProcessor(inst, ctx, json, params);
})));
function schemas_null(params) {
    return core._null(ZodNull, params);
}

const ZodAny = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodAny", (inst, def) => {
    core.$ZodAny.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.anyProcessor(inst, ctx, json, params);
})));
function any() {
    return core._any(ZodAny);
}
const ZodUnknown = /*@__PURE__*/ $constructor("ZodUnknown", (inst, def) => {
    $ZodUnknown.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => unknownProcessor(inst, ctx, json, params);
});
function unknown() {
    return _unknown(ZodUnknown);
}
const ZodNever = /*@__PURE__*/ $constructor("ZodNever", (inst, def) => {
    $ZodNever.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => neverProcessor(inst, ctx, json, params);
});
function never(params) {
    return _never(ZodNever, params);
}
const ZodVoid = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodVoid", (inst, def) => {
    core.$ZodVoid.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.voidProcessor(inst, ctx, json, params);
})));
function schemas_void(params) {
    return core._void(ZodVoid, params);
}

const ZodDate = /*@__PURE__*/ $constructor("ZodDate", (inst, def) => {
    $ZodDate.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => dateProcessor(inst, ctx, json, params);
    inst.min = (value, params) => inst.check(_gte(value, params));
    inst.max = (value, params) => inst.check(_lte(value, params));
}, 
/*@__PURE__*/ derived({
    minDate: (inst) => {
        const { minimum } = aggregateChecks(inst);
        return minimum ? new Date(minimum) : null;
    },
    maxDate: (inst) => {
        const { maximum } = aggregateChecks(inst);
        return maximum ? new Date(maximum) : null;
    },
}, {}));
function schemas_date(params) {
    return core._date(ZodDate, params);
}
const ZodArray = /*@__PURE__*/ $constructor("ZodArray", (inst, def) => {
    _ensureDefaultMemoizer();
    $ZodArray.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => arrayProcessor(inst, ctx, json, params);
    inst.element = def.element;
}, {
    min(n, params) {
        return this.check(_minLength(n, params));
    },
    nonempty(params) {
        return this.check(_minLength(1, params));
    },
    max(n, params) {
        return this.check(_maxLength(n, params));
    },
    length(n, params) {
        return this.check(_length(n, params));
    },
    unwrap() {
        return this.element;
    },
});
function array(element, params) {
    return _array(ZodArray, element, params);
}
// .keyof
function keyof(schema) {
    const shape = schema._zod.def.shape;
    return schemas_enum(Object.keys(shape));
}
const ZodObject = /*@__PURE__*/ $constructor("ZodObject", (inst, def) => {
    _ensureDefaultMemoizer();
    $ZodObjectJIT.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => objectProcessor(inst, ctx, json, params);
    installLazyProp(inst, "shape", (self) => self._zod.def.shape, false);
}, {
    keyof() {
        return schemas_enum(Object.keys(this._zod.def.shape));
    },
    catchall(catchall) {
        // `mergeDefs` rather than a spread: spreading reads `shape`, and resolving it can mint a whole fresh subtree
        return this.clone(mergeDefs(this._zod.def, { catchall: catchall }));
    },
    passthrough() {
        return this.clone(mergeDefs(this._zod.def, { catchall: unknown() }));
    },
    loose() {
        return this.clone(mergeDefs(this._zod.def, { catchall: unknown() }));
    },
    strict() {
        return this.clone(mergeDefs(this._zod.def, { catchall: never() }));
    },
    strip() {
        return this.clone(mergeDefs(this._zod.def, { catchall: undefined }));
    },
    extend(incoming) {
        return extend(this, incoming);
    },
    safeExtend(incoming) {
        return safeExtend(this, incoming);
    },
    merge(other) {
        return merge(this, other);
    },
    pick(mask) {
        return pick(this, mask);
    },
    omit(mask) {
        return omit(this, mask);
    },
    partial(...args) {
        return partial(ZodOptional, this, args[0]);
    },
    exactPartial(...args) {
        return partial(ZodExactOptional, this, args[0], "exactPartial");
    },
    required(...args) {
        return required(ZodNonOptional, this, args[0]);
    },
});
function object(shape, params) {
    const def = {
        type: "object",
        shape: shape ?? {},
        ...util.normalizeParams(params),
    };
    return new ZodObject(def);
}
// strictObject
function strictObject(shape, params) {
    return new ZodObject({
        type: "object",
        shape,
        catchall: never(),
        ...normalizeParams(params),
    });
}
// looseObject
function looseObject(shape, params) {
    return new ZodObject({
        type: "object",
        shape,
        catchall: unknown(),
        ...util.normalizeParams(params),
    });
}
const ZodUnion = /*@__PURE__*/ $constructor("ZodUnion", (inst, def) => {
    $ZodUnion.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => unionProcessor(inst, ctx, json, params);
    inst.options = def.options;
});
function union(options, params) {
    return new ZodUnion({
        type: "union",
        options: options,
        ...normalizeParams(params),
    });
}
const ZodXor = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodXor", (inst, def) => {
    ZodUnion.init(inst, def);
    core.$ZodXor.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.unionProcessor(inst, ctx, json, params);
    inst.options = def.options;
})));
/** Creates an exclusive union (XOR) where exactly one option must match.
 * Unlike regular unions that succeed when any option matches, xor fails if
 * zero or more than one option matches the input. */
function xor(options, params) {
    return new ZodXor({
        type: "union",
        options: options,
        inclusive: false,
        ...util.normalizeParams(params),
    });
}
const ZodDiscriminatedUnion = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodDiscriminatedUnion", (inst, def) => {
    ZodUnion.init(inst, def);
    core.$ZodDiscriminatedUnion.init(inst, def);
})));
function discriminatedUnion(discriminator, options, params) {
    // const [options, params] = args;
    return new ZodDiscriminatedUnion({
        type: "union",
        options: options,
        discriminator,
        ...util.normalizeParams(params),
    });
}
const ZodIntersection = /*@__PURE__*/ $constructor("ZodIntersection", (inst, def) => {
    $ZodIntersection.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => intersectionProcessor(inst, ctx, json, params);
});
function intersection(left, right) {
    return new ZodIntersection({
        type: "intersection",
        left: left,
        right: right,
    });
}
const ZodTuple = /*@__PURE__*/ $constructor("ZodTuple", (inst, def) => {
    _ensureDefaultMemoizer();
    $ZodTuple.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => tupleProcessor(inst, ctx, json, params);
}, {
    rest(rest) {
        return this.clone({
            ...this._zod.def,
            rest: rest,
        });
    },
    partial() {
        const def = this._zod.def;
        // a refinement was authored against the full arity; partialing would run it on a shorter array
        if (def.checks?.length)
            throw new Error(".partial() cannot be used on tuple schemas containing refinements");
        return this.clone({
            ...def,
            items: def.items.map((item) => new ZodOptional({ type: "optional", innerType: item })),
        });
    },
});
function tuple(items, _paramsOrRest, _params) {
    const hasRest = _paramsOrRest instanceof $ZodType;
    const params = hasRest ? _params : _paramsOrRest;
    const rest = hasRest ? _paramsOrRest : null;
    return new ZodTuple({
        type: "tuple",
        items: items,
        rest,
        ...normalizeParams(params),
    });
}
const ZodRecord = /*@__PURE__*/ $constructor("ZodRecord", (inst, def) => {
    _ensureDefaultMemoizer();
    $ZodRecord.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => recordProcessor(inst, ctx, json, params);
    inst.keyType = def.keyType;
    inst.valueType = def.valueType;
});
function record(keyType, valueType, params) {
    // v3-compat: z.record(valueType, params?) \u2014 defaults keyType to z.string()
    if (!valueType || !valueType._zod) {
        return new ZodRecord({
            type: "record",
            keyType: schemas_string(),
            valueType: keyType,
            ...normalizeParams(valueType),
        });
    }
    return new ZodRecord({
        type: "record",
        keyType,
        valueType: valueType,
        ...normalizeParams(params),
    });
}
// type alksjf = core.output<core.$ZodRecordKey>;
function partialRecord(keyType, valueType, params) {
    return new ZodRecord({
        type: "record",
        keyType,
        valueType: valueType,
        ...util.normalizeParams(params),
        partial: true,
    });
}
function looseRecord(keyType, valueType, params) {
    return new ZodRecord({
        type: "record",
        keyType,
        valueType: valueType,
        mode: "loose",
        ...util.normalizeParams(params),
    });
}
const ZodMap = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodMap", (inst, def) => {
    _ensureDefaultMemoizer();
    core.$ZodMap.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.mapProcessor(inst, ctx, json, params);
    inst.keyType = def.keyType;
    inst.valueType = def.valueType;
    inst.min = (...args) => inst.check(core._minSize(...args));
    inst.nonempty = (params) => inst.check(core._minSize(1, params));
    inst.max = (...args) => inst.check(core._maxSize(...args));
    inst.size = (...args) => inst.check(core._size(...args));
})));
function map(keyType, valueType, params) {
    return new ZodMap({
        type: "map",
        keyType: keyType,
        valueType: valueType,
        ...util.normalizeParams(params),
    });
}
const ZodSet = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodSet", (inst, def) => {
    _ensureDefaultMemoizer();
    core.$ZodSet.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.setProcessor(inst, ctx, json, params);
    inst.min = (...args) => inst.check(core._minSize(...args));
    inst.nonempty = (params) => inst.check(core._minSize(1, params));
    inst.max = (...args) => inst.check(core._maxSize(...args));
    inst.size = (...args) => inst.check(core._size(...args));
})));
function set(valueType, params) {
    return new ZodSet({
        type: "set",
        valueType: valueType,
        ...util.normalizeParams(params),
    });
}
const ZodEnum = /*@__PURE__*/ $constructor("ZodEnum", (inst, def) => {
    $ZodEnum.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => enumProcessor(inst, ctx, json, params);
    inst.enum = def.entries;
    // reuse the parsed value set so a numeric TS enum's reverse-mapping keys stay out
    inst.options = [...inst._zod.values];
    const keys = new Set(Object.keys(def.entries));
    inst.extract = (values, params) => {
        const newEntries = {};
        for (const value of values) {
            if (keys.has(value)) {
                newEntries[value] = def.entries[value];
            }
            else
                throw new Error(`Key ${value} not found in enum`);
        }
        return new ZodEnum({
            ...def,
            checks: [],
            ...normalizeParams(params),
            entries: newEntries,
        });
    };
    inst.exclude = (values, params) => {
        const newEntries = { ...def.entries };
        for (const value of values) {
            if (keys.has(value)) {
                delete newEntries[value];
            }
            else
                throw new Error(`Key ${value} not found in enum`);
        }
        return new ZodEnum({
            ...def,
            checks: [],
            ...normalizeParams(params),
            entries: newEntries,
        });
    };
});
function schemas_enum(values, params) {
    const entries = Array.isArray(values) ? Object.fromEntries(values.map((v) => [v, v])) : values;
    return new ZodEnum({
        type: "enum",
        entries,
        ...normalizeParams(params),
    });
}

/** @deprecated This API has been merged into `z.enum()`. Use `z.enum()` instead.
 *
 * ```ts
 * enum Colors { red, green, blue }
 * z.enum(Colors);
 * ```
 */
function nativeEnum(entries, params) {
    return new ZodEnum({
        type: "enum",
        entries,
        ...util.normalizeParams(params),
    });
}
const ZodLiteral = /*@__PURE__*/ $constructor("ZodLiteral", (inst, def) => {
    $ZodLiteral.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => literalProcessor(inst, ctx, json, params);
    inst.values = new Set(def.values);
    Object.defineProperty(inst, "value", {
        get() {
            if (def.values.length > 1) {
                throw new Error("This schema contains multiple valid literal values. Use `.values` instead.");
            }
            return def.values[0];
        },
    });
});
function literal(value, params) {
    return new ZodLiteral({
        type: "literal",
        values: Array.isArray(value) ? value : [value],
        ...normalizeParams(params),
    });
}
const ZodFile = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodFile", (inst, def) => {
    core.$ZodFile.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.fileProcessor(inst, ctx, json, params);
    inst.min = (size, params) => inst.check(core._minSize(size, params));
    inst.max = (size, params) => inst.check(core._maxSize(size, params));
    inst.mime = (types, params) => inst.check(core._mime(Array.isArray(types) ? types : [types], params));
})));
function file(params) {
    return core._file(ZodFile, params);
}
const ZodTransform = /*@__PURE__*/ $constructor("ZodTransform", (inst, def) => {
    _ensureDefaultMemoizer();
    $ZodTransform.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => transformProcessor(inst, ctx, json, params);
    inst._zod.parse = (payload, _ctx) => {
        if (_ctx.direction === "backward") {
            throw new $ZodEncodeError(inst.constructor.name);
        }
        payload.addIssue = (issue) => {
            if (typeof issue === "string") {
                payload.issues.push(util_issue(issue, payload.value, def));
            }
            else {
                // for Zod 3 backwards compatibility
                const _issue = issue;
                if (_issue.fatal)
                    _issue.continue = false;
                _issue.code ?? (_issue.code = "custom");
                if (!("input" in _issue))
                    _issue.input = payload.value;
                _issue.inst ?? (_issue.inst = inst);
                // _issue.continue ??= true;
                payload.issues.push(util_issue(_issue));
            }
        };
        const output = def.transform(payload.value, payload);
        if (output instanceof Promise) {
            return output.then((output) => {
                payload.value = output;
                return payload;
            });
        }
        payload.value = output;
        return payload;
    };
});
function transform(fn) {
    return new ZodTransform({
        type: "transform",
        transform: fn,
    });
}
const ZodOptional = /*@__PURE__*/ $constructor("ZodOptional", (inst, def) => {
    $ZodOptional.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => optionalProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.innerType;
});
function optional(innerType) {
    return new ZodOptional({
        type: "optional",
        innerType: innerType,
    });
}
const ZodExactOptional = /*@__PURE__*/ $constructor("ZodExactOptional", (inst, def) => {
    $ZodExactOptional.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => optionalProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.innerType;
});
function exactOptional(innerType) {
    return new ZodExactOptional({
        type: "optional",
        innerType: innerType,
    });
}
const ZodNullable = /*@__PURE__*/ $constructor("ZodNullable", (inst, def) => {
    $ZodNullable.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => nullableProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.innerType;
});
function nullable(innerType) {
    return new ZodNullable({
        type: "nullable",
        innerType: innerType,
    });
}
// nullish
function schemas_nullish(innerType) {
    return optional(nullable(innerType));
}
const ZodDefault = /*@__PURE__*/ $constructor("ZodDefault", (inst, def) => {
    $ZodDefault.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => defaultProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.innerType;
    inst.removeDefault = inst.unwrap;
});
function schemas_default(innerType, defaultValue) {
    return new ZodDefault({
        type: "default",
        innerType: innerType,
        get defaultValue() {
            return typeof defaultValue === "function" ? defaultValue() : shallowClone(defaultValue);
        },
    });
}
const ZodPrefault = /*@__PURE__*/ $constructor("ZodPrefault", (inst, def) => {
    $ZodPrefault.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => prefaultProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.innerType;
});
function prefault(innerType, defaultValue) {
    return new ZodPrefault({
        type: "prefault",
        innerType: innerType,
        get defaultValue() {
            return typeof defaultValue === "function" ? defaultValue() : shallowClone(defaultValue);
        },
    });
}
const ZodNonOptional = /*@__PURE__*/ $constructor("ZodNonOptional", (inst, def) => {
    $ZodNonOptional.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => nonoptionalProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.innerType;
});
function nonoptional(innerType, params) {
    return new ZodNonOptional({
        type: "nonoptional",
        innerType: innerType,
        ...normalizeParams(params),
    });
}
const ZodSuccess = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodSuccess", (inst, def) => {
    core.$ZodSuccess.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.successProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.innerType;
})));
function success(innerType) {
    return new ZodSuccess({
        type: "success",
        innerType: innerType,
    });
}
const ZodCatch = /*@__PURE__*/ $constructor("ZodCatch", (inst, def) => {
    $ZodCatch.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => catchProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.innerType;
    inst.removeCatch = inst.unwrap;
});
function schemas_catch(innerType, catchValue) {
    return new ZodCatch({
        type: "catch",
        innerType: innerType,
        catchValue: (typeof catchValue === "function" ? catchValue : constantCatch(catchValue)),
    });
}

const ZodNaN = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodNaN", (inst, def) => {
    core.$ZodNaN.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.nanProcessor(inst, ctx, json, params);
})));
function nan(params) {
    return core._nan(ZodNaN, params);
}
const ZodPipe = /*@__PURE__*/ $constructor("ZodPipe", (inst, def) => {
    $ZodPipe.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => pipeProcessor(inst, ctx, json, params);
    inst.in = def.in;
    inst.out = def.out;
});
function pipe(in_, out) {
    return new ZodPipe({
        type: "pipe",
        in: in_,
        out: out,
        // ...util.normalizeParams(params),
    });
}
const ZodCodec = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodCodec", (inst, def) => {
    ZodPipe.init(inst, def);
    core.$ZodCodec.init(inst, def);
})));
function codec(in_, out, params) {
    return new ZodCodec({
        type: "pipe",
        in: in_,
        out: out,
        transform: params.decode,
        reverseTransform: params.encode,
    });
}
function invertCodec(codec) {
    const def = codec._zod.def;
    return new ZodCodec({
        type: "pipe",
        in: def.out,
        out: def.in,
        transform: def.reverseTransform,
        reverseTransform: def.transform,
    });
}
const ZodPreprocess = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodPreprocess", (inst, def) => {
    ZodPipe.init(inst, def);
    core.$ZodPreprocess.init(inst, def);
})));
const ZodReadonly = /*@__PURE__*/ $constructor("ZodReadonly", (inst, def) => {
    $ZodReadonly.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => readonlyProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.innerType;
});
function readonly(innerType) {
    return new ZodReadonly({
        type: "readonly",
        innerType: innerType,
    });
}
const ZodTemplateLiteral = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodTemplateLiteral", (inst, def) => {
    core.$ZodTemplateLiteral.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.templateLiteralProcessor(inst, ctx, json, params);
})));
function templateLiteral(parts, params) {
    return new ZodTemplateLiteral({
        type: "template_literal",
        parts,
        ...util.normalizeParams(params),
    });
}
const ZodLazy = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodLazy", (inst, def) => {
    core.$ZodLazy.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.lazyProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.getter();
})));
function lazy(getter) {
    return new ZodLazy({
        type: "lazy",
        getter: getter,
    });
}
const ZodPromise = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodPromise", (inst, def) => {
    core.$ZodPromise.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.promiseProcessor(inst, ctx, json, params);
    inst.unwrap = () => inst._zod.def.innerType;
})));
function promise(innerType) {
    return new ZodPromise({
        type: "promise",
        innerType: innerType,
    });
}
const ZodFunction = /*@__PURE__*/ (/* unused pure expression or super */ null && (core.$constructor("ZodFunction", (inst, def) => {
    core.$ZodFunction.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => processors.functionProcessor(inst, ctx, json, params);
})));
function _function(params) {
    return new ZodFunction({
        type: "function",
        input: Array.isArray(params?.input) ? tuple(params?.input) : (params?.input ?? array(unknown())),
        output: params?.output ?? unknown(),
    });
}

const ZodCustom = /*@__PURE__*/ $constructor("ZodCustom", (inst, def) => {
    $ZodCustom.init(inst, def);
    ZodType.init(inst, def);
    inst._zod.processJSONSchema = (ctx, json, params) => customProcessor(inst, ctx, json, params);
});
// custom checks
function check(fn) {
    const ch = new core.$ZodCheck({
        check: "custom",
        // ...util.normalizeParams(params),
    });
    ch._zod.check = fn;
    return ch;
}
function custom(fn, _params) {
    return core._custom(ZodCustom, fn ?? (() => true), _params);
}
function refine(fn, _params = {}) {
    return _refine(ZodCustom, fn, _params);
}
// superRefine
function superRefine(fn, params) {
    return _superRefine(fn, params);
}
// Re-export describe and meta from core
const schemas_describe = describe;
const schemas_meta = meta;
const ZodInstanceOf = /*@__PURE__*/ $constructor("ZodInstanceOf", (inst, def) => {
    ZodCustom.init(inst, def);
}, {
    properties(shape, params) {
        // asserts in place, so the narrowed output type is truthful without a wrapper
        return this.check(_properties(shape, params));
    },
});
function _instanceof(cls, params = {}) {
    const inst = new ZodInstanceOf({
        type: "custom",
        check: "custom",
        fn: (data) => data instanceof cls,
        abort: true,
        ...util.normalizeParams(params),
    });
    inst._zod.bag.Class = cls;
    // Override check to emit invalid_type instead of custom
    inst._zod.check = (payload) => {
        if (!(payload.value instanceof cls)) {
            payload.issues.push({
                code: "invalid_type",
                expected: cls.name,
                input: payload.value,
                inst,
                path: [...(inst._zod.def.path ?? [])],
            });
        }
    };
    return inst;
}

// stringbool
const stringbool = (...args) => core._stringbool({
    Codec: ZodCodec,
    Boolean: ZodBoolean,
    String: ZodString,
}, ...args);
function json(params) {
    const jsonSchema = lazy(() => {
        return union([schemas_string(params), schemas_number(), schemas_boolean(), schemas_null(), array(jsonSchema), record(schemas_string(), jsonSchema)]);
    });
    return jsonSchema;
}
// preprocess
function preprocess(fn, schema) {
    return new ZodPreprocess({
        type: "pipe",
        in: transform(fn),
        out: schema,
    });
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

// EXTERNAL MODULE: ./node_modules/@aws-sdk/client-s3/dist-cjs/index.js
var dist_cjs = __nccwpck_require__(3711);
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

;// CONCATENATED MODULE: ./src/lib/r2.ts


const R2_MIN_PART = (/* unused pure expression or super */ null && (5 * 2 ** 20));
const R2_MAX_PART = (/* unused pure expression or super */ null && (5 * 2 ** 30));
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
            throw new errors_InputError('r2-endpoint', opts.endpoint, 'an http(s) URL such as https://<account-id>.r2.cloudflarestorage.com');
        }
        if (url.protocol !== 'https:' && url.protocol !== 'http:') {
            throw new errors_InputError('r2-endpoint', opts.endpoint, 'an http(s) URL');
        }
        return opts.endpoint.replace(/\/+$/, '');
    }
    if (opts.accountId) {
        if (!/^[0-9a-f]{32}$/.test(opts.accountId)) {
            throw new errors_InputError('r2-account-id', opts.accountId, 'a 32-character hex Cloudflare account id');
        }
        return `https://${opts.accountId}.r2.cloudflarestorage.com`;
    }
    throw new errors_InputError('r2-endpoint', '', 'an R2 endpoint URL, or r2-account-id');
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
const R2_AUTO_MIN_PART = (/* unused pure expression or super */ null && (8 * 2 ** 20));
/** R2 part size for a file: max(8 MiB, ceil(size / 10000)) rounded up to a whole MiB. */
function r2PartSize(size) {
    const mib = 2 ** 20;
    const wanted = Math.max(R2_AUTO_MIN_PART, Math.ceil(size / R2_MAX_PARTS));
    return Math.ceil(wanted / mib) * mib;
}
/** S3/R2 bucket names: 3\u201363 lowercase letters, digits and hyphens, starting and ending alnum. */
function validateBucketName(input, bucket) {
    if (!/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket)) {
        throw new errors_InputError(input, bucket, 'an R2 bucket name: 3-63 lowercase letters, digits and hyphens');
    }
    return bucket;
}
/** Dollar cost of a number of Class A and Class B operations. */
function r2RequestCost(classA, classB) {
    return (classA * R2_CLASS_A_PER_MILLION + classB * R2_CLASS_B_PER_MILLION) / 1e6;
}

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
    const message = errors_errorMessage(err).replace(/\.+$/, '');
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
                onRetry: ({ err, attempt, delayMs }) => this.logger.warn(`R2 ${what}: attempt ${attempt} failed (${errors_errorMessage(err)}); retrying in ${delayMs} ms`),
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
            this.logger.warn(`could not abort the multipart upload of ${key} (${errors_errorMessage(err)}); it will be cleaned up later`);
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

;// CONCATENATED MODULE: ./src/lib/shell.ts
// Shell words for bash command lines, remote (over SSH) and local, and for generated scripts
// (RESTORE.sh): every value goes through here, comments included.
/** Quotes one shell word; safe words pass unchanged. The result never spans lines. */
function shell_shellQuote(word) {
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
function shell_shellGlob(path) {
    return path
        .split(/([*?])/)
        .map((part) => (part === '*' || part === '?' ? part : part === '' ? '' : shell_shellQuote(part)))
        .join('');
}
/** Free text as one shell comment line: the text is quoted, so it cannot end the comment. */
function shellComment(text) {
    return `# ${shell_shellQuote(text)}`;
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

// EXTERNAL MODULE: ./node_modules/ssh2/lib/index.js
var lib = __nccwpck_require__(5472);
var lib_default = /*#__PURE__*/__nccwpck_require__.n(lib);
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
        throw new errors_InputError(input, '', expected);
    for (const value of values) {
        if (!PIN_RE.test(value))
            throw new errors_InputError(input, value, expected);
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
        throw new errors_InputError(input, '<redacted>', `${PRIVATE_KEY_EXPECTED}; ${why}`);
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
        const [result] = await Promise.all([handle.done, (0,external_node_stream_promises_namespaceObject.finished)(handle.stdout)]);
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

;// CONCATENATED MODULE: ./node_modules/zod/v4/classic/iso.js



function iso_datetime(params) {
    return _isoDateTime(ZodISODateTime, params);
}
function iso_date(params) {
    return core._isoDate(ZodISODate, params);
}
function iso_time(params) {
    return core._isoTime(ZodISOTime, params);
}
function iso_duration(params) {
    return core._isoDuration(ZodISODuration, params);
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
function schema_parseWithSchema(schema, data, file) {
    const result = schema.safeParse(data);
    if (result.success)
        return result.data;
    throw new ConfigError(file, schemaProblems(result.error));
}

// EXTERNAL MODULE: external "node:path"
var external_node_path_ = __nccwpck_require__(6760);
var external_node_path_default = /*#__PURE__*/__nccwpck_require__.n(external_node_path_);
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
function resolveInside(root, rel, what = 'path', p = path) {
    const reason = unsafePathReason(rel);
    const base = p.resolve(root);
    const full = p.resolve(base, rel);
    if (reason !== undefined || !full.startsWith(base === p.sep ? base : `${base}${p.sep}`)) {
        throw new OpsError(`${what} ${JSON.stringify(rel)} is refused: ${reason ?? `it resolves outside ${root}`}; expected ${SAFE_PATH_EXPECTED}`);
    }
    return full;
}
/** An absolute path without '.', '..', empty segments or control characters. */
function absolutePath(what, opts = {}) {
    return schemas_string().superRefine((value, ctx) => {
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

// EXTERNAL MODULE: ./node_modules/yaml/dist/index.js
var dist = __nccwpck_require__(8815);
;// CONCATENATED MODULE: ./src/lib/yaml-file.ts



/**
 * Reads and parses a YAML config file; an unreadable file or invalid YAML is a ConfigError naming
 * the file, so every config loader reports the same way before its schema check.
 */
async function yaml_file_readYamlFile(file) {
    let text;
    try {
        text = await readFile(file, 'utf8');
    }
    catch (err) {
        // fs errors name what went wrong in their code (ENOENT, EACCES); `instanceof` fails across realms.
        const code = typeof err === 'object' && err !== null && 'code' in err
            ? String(err.code)
            : errorMessage(err);
        throw new ConfigError(file, [`cannot be read: ${code}`]);
    }
    return yaml_file_parseYamlText(file, text);
}
/** YAML text of `file` (read elsewhere, e.g. from git): invalid YAML is a ConfigError naming it. */
function yaml_file_parseYamlText(file, text) {
    try {
        const data = parseYaml(text, { prettyErrors: true });
        return data;
    }
    catch (err) {
        throw new ConfigError(file, [`not valid YAML: ${errorMessage(err).split('\n')[0]}`]);
    }
}

;// CONCATENATED MODULE: ./src/host/shape.ts
// What the GPU host must be, as the seed's Phase 11 lists it: its user and login shell, the
// project, the two mounts and the symlinks into them, the VPS Redis, the ComfyUI address. One
// schema, the `host:` section of config/backup.yml: RESTORE.sh rebuilds towards it, verify-host
// checks against it. Every value reaches shell only through shellQuote.


/** A Unix user or group name, as useradd takes it. */
const UNIX_NAME_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
/** A Debian package name. */
const PACKAGE_RE = /^[a-z0-9][a-z0-9+.-]{1,62}$/;
/** host:port of a TCP service (the VPS Redis). */
const HOST_PORT_RE = /^(?<host>[A-Za-z0-9.-]{1,253}):(?<port>\d{1,5})$/;
/** A container name as docker ps prints it. */
const CONTAINER_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
const hostPort = schemas_string()
    .regex(HOST_PORT_RE, 'must be host:port, such as 100.99.216.71:6379')
    .refine((v) => Number(v.split(':')[1]) <= 65535, 'port must be at most 65535');
const hostShapeSchema = strictObject({
    /** The dev user: created with the uid, gid and groups recorded at backup time when free. */
    user: schemas_string().regex(UNIX_NAME_RE, 'must be a Unix user name such as dev').default('dev'),
    /** The login shell's program name; RESTORE.sh installs it and sets it. */
    shell: schemas_enum(['zsh', 'bash']).default('zsh'),
    home: absolutePath('home').default('/home/dev'),
    /** The ComfyUI project (docker compose file inside) and its .env. */
    project: absolutePath('project').default('/home/dev/comfy-multi'),
    'env-file': absolutePath('env-file').default('/home/dev/comfy-multi/.env'),
    /** Where the shared filesystem (models) and the block device (scratch) are mounted. */
    mounts: strictObject({
        models: absolutePath('mounts.models').default('/mnt/models'),
        scratch: absolutePath('mounts.scratch').default('/mnt/scratch'),
    })
        .prefault({}),
    /** Symlink \u2192 target, the seed's data/models, data/outputs, data/inputs. */
    links: record(absolutePath('link'), absolutePath('link target')).default({}),
    /** Free space each mount must have, in MiB (verify-host). */
    'min-free-mib': schemas_number().int().nonnegative().default(1024),
    /** The VPS Redis the host's queue talks to (the seed's 100.99.216.71:6379). */
    redis: hostPort.optional(),
    /** The Tailscale IP the host must have; RESTORE.sh takes the backup's own. */
    'tailscale-ip': schemas_ipv4().optional(),
    /** oh-my-zsh theme that .zshrc must name (and that custom/themes must hold). */
    'zsh-theme': schemas_string()
        .regex(/^[A-Za-z0-9_.-]{1,64}$/)
        .default('bullet-train'),
    /** Containers that must be running (docker ps names). */
    containers: array(schemas_string().regex(CONTAINER_RE, 'must be a container name')).default([]),
    /** Where ComfyUI answers on the host. */
    'comfyui-url': url({ protocol: /^https?$/ })
        .refine((u) => !/[\s'"\\]/.test(u), 'must not contain quotes, backslashes or spaces')
        .default('http://127.0.0.1:8188'),
    /** A small ComfyUI workflow (API format, JSON) on the host that verify-host queues and waits for. */
    'test-workflow': absolutePath('test-workflow').optional(),
    'test-workflow-timeout-s': schemas_number().int().min(1).max(3600).default(300),
    /** Packages the packages step installs (docker and tailscale come on their own). */
    packages: array(schemas_string().regex(PACKAGE_RE, 'must be a Debian package name'))
        .default([
        'fail2ban',
        'ufw',
        'redis-tools',
        'zsh',
        'git',
        'curl',
        'wget',
        'age',
        'zstd',
        'python3-systemd',
    ]),
});
/** The default shape: what an absent `host:` section means. */
const DEFAULT_HOST_SHAPE = hostShapeSchema.parse({});
function shape_redisAddress(shape) {
    const m = shape.redis ? HOST_PORT_RE.exec(shape.redis) : null;
    return m?.groups ? { host: m.groups.host ?? '', port: Number(m.groups.port) } : undefined;
}

;// CONCATENATED MODULE: ./src/backup/restore-steps.ts
// The steps of RESTORE.sh as constant bash: no value from the backup is in this text (they come
// in as the variables restore-script.ts sets). Every step checks first and changes only what
// differs, through `change`, which counts it, logs it, and under --dry-run only says it.

/** The rebuild's steps, in order; items name the step that restores them (config `step:`). */
const RESTORE_STEPS = [
    'preflight',
    'packages',
    'tailscale',
    'security',
    'user',
    'project',
    'storage',
    'models',
    'services',
    'verify',
];
/** The steps an item can be restored by. */
const ITEM_STEPS = ['tailscale', 'security', 'user', 'project'];
/** Options and their defaults, the helpers, and the arguments. */
const ARGUMENTS = bashText `SIGNERS=''
IDENTITY=''
ROOT=/
FROM=''
ONLY_STEPS=()
SKIP_STEPS=()
ONLY_ITEMS=()
SKIP_CHECKS=()
DRY_RUN=0
DOWNLOAD_ONLY=0
SKIP_AFTER=0
MODELS_MOUNT=$\{MODELS_MOUNT:-}
SCRATCH_MOUNT=$\{SCRATCH_MOUNT:-}
OHMYZSH_REPO=https://github.com/ohmyzsh/ohmyzsh.git
TS_AUTH_KEY_FILE=''
declare -A STEP_TITLE=(
  [preflight]='root, OS, free disk, identity, signature and every sha256 before any change'
  [packages]='fail2ban, ufw, zsh, docker, tailscale and the rest, when missing'
  [tailscale]='the backed-up identity, then tailscale up (SSH off), then the IP'
  [security]='SSH host keys, fail2ban with the sshd jail, UFW (SSH allowed before enabling)'
  [user]='the dev user, its shell, groups and home, oh-my-zsh'
  [project]='the ComfyUI project and its .env'
  [storage]='the models and scratch mounts (fstab, nofail) and the symlinks'
  [models]='the models on the models mount'
  [services]='docker compose up, Redis at the VPS'
  [verify]='the checklist, check by check'
)

die() {
  printf 'RESTORE.sh: %s\n' "$*" >&2
  exit 1
}
need() {
  command -v "$1" >/dev/null 2>&1 || die "needs $1 (apt-get install -y $2)"
}
usage() {
  awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"
  exit "$1"
}
contains() {
  local want=$1 x
  shift
  for x in "$@"; do [[ $x == "$want" ]] && return 0; done
  return 1
}

while (($# > 0)); do
  case $1 in
    --signers) SIGNERS=$\{2:?--signers needs a file}; shift 2 ;;
    --identity) IDENTITY=$\{2:?--identity needs a file}; shift 2 ;;
    --root) ROOT=$\{2:?--root needs a directory}; shift 2 ;;
    --from) FROM=$\{2:?--from needs a directory}; shift 2 ;;
    --only) ONLY_STEPS+=("$\{2:?--only needs a step}"); shift 2 ;;
    --skip) SKIP_STEPS+=("$\{2:?--skip needs a step}"); shift 2 ;;
    --item) ONLY_ITEMS+=("$\{2:?--item needs an item id}"); shift 2 ;;
    --skip-check) SKIP_CHECKS+=("$\{2:?--skip-check needs a check}"); shift 2 ;;
    --models-mount) MODELS_MOUNT=$\{2:?--models-mount needs 'SOURCE FSTYPE [OPTIONS]'}; shift 2 ;;
    --scratch-mount) SCRATCH_MOUNT=$\{2:?--scratch-mount needs 'SOURCE FSTYPE [OPTIONS]'}; shift 2 ;;
    --ohmyzsh-repo) OHMYZSH_REPO=$\{2:?--ohmyzsh-repo needs a git URL}; shift 2 ;;
    --tailscale-auth-key-file) TS_AUTH_KEY_FILE=$\{2:?--tailscale-auth-key-file needs a file}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --download-only) DOWNLOAD_ONLY=1; shift ;;
    --skip-after-restore) SKIP_AFTER=1; shift ;;
    --list)
      for id in "$\{ITEMS[@]}"; do printf '%-20s %-10s %s\n' "$id" "$\{STEP_OF[$id]}" "$\{DESCRIPTION[$id]}"; done
      exit 0
      ;;
    --list-steps)
      for s in "$\{STEPS[@]}"; do printf '%-10s %s\n' "$s" "$\{STEP_TITLE[$s]}"; done
      exit 0
      ;;
    -h | --help) usage 0 ;;
    *) printf 'RESTORE.sh: unknown argument: %s\n' "$1" >&2; usage 2 ;;
  esac
done`;
/** What must hold before anything is fetched: known steps and items, tools, signers, root. */
const CHECKS = bashText `for s in "$\{ONLY_STEPS[@]}" "$\{SKIP_STEPS[@]}"; do
  contains "$s" "$\{STEPS[@]}" || die "unknown step: $s (see --list-steps)"
done
for c in "$\{SKIP_CHECKS[@]}"; do
  contains "$c" "$\{VERIFY_CHECKS[@]}" || die "unknown check: $c (the checks: $\{VERIFY_CHECKS[*]})"
done
if (($\{#ONLY_ITEMS[@]} == 0)); then ONLY_ITEMS=("$\{ITEMS[@]}"); fi
for id in "$\{ONLY_ITEMS[@]}"; do [[ -n $\{KEY[$id]+set} ]] || die "unknown item: $id (see --list)"; done
need sha256sum coreutils
need tar tar
need ssh-keygen openssh-client
[[ -n $SIGNERS ]] || die '--signers FILE is required (config/backup-signers of the comfyume-ops repository)'
[[ -r $SIGNERS ]] || die "cannot read the allowed signers file $SIGNERS"
SELF=$\{BASH_SOURCE[0]}
[[ -f $SELF ]] || die 'run RESTORE.sh from a file (bash RESTORE.sh ...), not from a pipe'
if ((DOWNLOAD_ONLY == 0)); then
  [[ -n $IDENTITY ]] || die '--identity AGE_KEY_FILE is required (or --download-only)'
  [[ -r $IDENTITY ]] || die "cannot read the identity file $IDENTITY"
fi
[[ $ROOT == /* ]] || die "--root must be an absolute path: $ROOT"
ROOT=$\{ROOT%/}
# A drill (--root) restores files only; a live restore (root /) rebuilds the host.
LIVE=0
[[ -z $ROOT ]] && LIVE=1
[[ -z $TS_AUTH_KEY_FILE || -r $TS_AUTH_KEY_FILE ]] || die "cannot read the Tailscale auth key file $TS_AUTH_KEY_FILE"`;
/** Fetching, checking and unpacking archives; counting and logging changes. */
const HELPERS = bashText `WORK=$(mktemp -d)
trap 'rm -rf -- "$WORK"' EXIT
declare -A ARCHIVE=()
CHANGES=0

say() {
  printf '  %s\n' "$*"
}
# change WHAT COMMAND...: runs the command (under --dry-run only says it would) and counts it.
change() {
  local what=$1
  shift
  CHANGES=$((CHANGES + 1))
  if ((DRY_RUN)); then
    say "would: $what"
    return 0
  fi
  "$@" || die "failed: $what"
  say "changed: $what"
}

# The file of an object: from --from, or downloaded from R2 into the work directory.
object() {
  local key=$1 file
  if [[ -n $FROM ]]; then
    file=$FROM/$\{key##*/}
    [[ -f $file ]] || die "missing $file"
  else
    need aws awscli
    file=$WORK/$\{key##*/}
    aws s3 cp --only-show-errors --endpoint-url "$R2_ENDPOINT" "s3://$BUCKET/$key" "$file" >&2
  fi
  printf '%s\n' "$file"
}

# The signed manifest must be this backup's and must name this script's sha256.
verify_signature() {
  local manifest signature self said
  manifest=$(object "$MANIFEST_KEY")
  signature=$(object "$MANIFEST_KEY.sig")
  said=$(ssh-keygen -Y verify -f "$SIGNERS" -I "$SIGNER_PRINCIPAL" -n "$SIGNATURE_NAMESPACE" \
    -s "$signature" <"$manifest" 2>&1) ||
    die "the signature of $MANIFEST_KEY does not verify against $SIGNERS ($\{said//[$'\r\n']/ }): not restoring"
  grep -Fq "\"backupId\": \"$BACKUP_ID\"" -- "$manifest" || die "$MANIFEST_KEY is not backup $BACKUP_ID"
  self=$(sha256sum -- "$SELF" | cut -d ' ' -f 1)
  grep -Fq "\"sha256\": \"$self\"" -- "$manifest" ||
    die "the signed manifest does not name this RESTORE.sh (sha256 $self): it was changed"
  say "Signature of $MANIFEST_KEY verified; this RESTORE.sh is the one it names"
}

fetch() {
  local id=$1 file got
  file=$(object "$\{KEY[$id]}")
  got=$(sha256sum -- "$file" | cut -d ' ' -f 1)
  [[ $got == "$\{SHA256[$id]}" ]] || die "sha256 mismatch for $id: got $got, expected $\{SHA256[$id]} ($file)"
  ARCHIVE[$id]=$file
}

# The archive of an item as a tar stream.
unpack() {
  need age age
  age -d -i "$IDENTITY" -- "$\{ARCHIVE[$1]}" | case $\{COMPRESSION[$1]} in
    zstd) need zstd zstd; zstd -dc ;;
    gzip) gzip -dc ;;
    *) die "unknown compression: $\{COMPRESSION[$1]}" ;;
  esac
}

# Owners: by name on a live restore (the fresh host's ids may differ), by number in a drill.
tar_owners() {
  if ((LIVE)); then printf '%s\n' --same-owner; else printf '%s\n' --numeric-owner; fi
}

# age and the item's decompressor, before an archive is compared: a comparison that cannot
# decrypt must never read as "up to date".
can_unpack() {
  installed_for_step age age || return 1
  [[ $\{COMPRESSION[$1]} != zstd ]] || installed_for_step zstd zstd
}
# How many members differ between the archive and the tree (mtimes do not count).
differences() {
  local id=$1 dest=$2
  # Nothing there yet (a fresh root, every drill): everything differs, no need to decrypt twice.
  if [[ ! -d $dest || -z $(ls -A -- "$dest") ]]; then
    echo 1
    return
  fi
  { unpack "$id" | LC_ALL=C tar -d "$(tar_owners)" -f - -C "$dest" 2>&1 || true; } |
    grep -v -e ': Mod time differs$' -e '^tar: Exiting with failure status' -c || true
}

extract() {
  local id=$1 dest=$2
  mkdir -p -- "$dest"
  unpack "$id" | tar -x -p "$(tar_owners)" -f - -C "$dest"
}

after_restore() {
  if [[ -n $\{AFTER_RESTORE[$1]+set} ]] && ((LIVE && !SKIP_AFTER && !DRY_RUN)); then
    say "$1: after-restore commands"
    bash -euo pipefail -c "$\{AFTER_RESTORE[$1]}"
  fi
}

# Restores the selected items of one step; RESTORED lists the ones that changed anything.
RESTORED=()
restore_items() {
  local step=$1 id dest n
  for id in "$\{ONLY_ITEMS[@]}"; do
    [[ $\{STEP_OF[$id]} == "$step" ]] || continue
    can_unpack "$id" || return 0
    dest=$ROOT$\{RESTORE_TO[$id]}
    n=$(differences "$id" "$dest")
    if ((n == 0)); then
      say "$id: up to date"
      continue
    fi
    change "$id: $n difference(s), restored into $dest" extract "$id" "$dest"
    RESTORED+=("$id")
    after_restore "$id"
  done
}
restored() {
  local id
  for id in "$\{RESTORED[@]}"; do [[ $\{STEP_OF[$id]} == "$1" ]] && return 0; done
  return 1
}
# A step's tool: missing on a live run is an error; under --dry-run the packages step would
# install it, so the rest of the step is only announced.
installed_for_step() {
  command -v "$1" >/dev/null 2>&1 && return 0
  ((DRY_RUN)) || die "needs $1 (apt-get install -y $2; the packages step installs it)"
  say "would: the rest of this step, once the packages step installed $2"
  CHANGES=$((CHANGES + 1))
  return 1
}
installed() {
  [[ $(dpkg-query -W -f '$\{db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}
active() {
  systemctl is-active --quiet "$1"
}`;
const PREFLIGHT = bashText `step_preflight() {
  local avail id
  if ((LIVE)); then
    ((EUID == 0)) || die 'run as root: sudo bash RESTORE.sh ...'
    # shellcheck disable=SC1091
    (. /etc/os-release && printf '  OS: %s\n' "$PRETTY_NAME") || die 'no /etc/os-release: not Ubuntu or Debian'
    # shellcheck disable=SC1091
    case $(. /etc/os-release && printf '%s %s' "$ID" "$VERSION_ID") in
      'ubuntu 22.04' | 'ubuntu 24.04' | 'debian 12') ;;
      *) die "this host is $(. /etc/os-release && printf '%s' "$PRETTY_NAME"): RESTORE.sh rebuilds Ubuntu 22.04/24.04 or Debian 12" ;;
    esac
    avail=$(df -P -B1M / | awk 'NR == 2 {print $4}')
    ((avail >= 2048)) || die "only $avail MiB free on /: the rebuild needs 2048 MiB"
    say "root, $avail MiB free on /"
  fi
  verify_signature
  for id in "$\{ONLY_ITEMS[@]}"; do fetch "$id"; done
  say "$\{#ONLY_ITEMS[@]} archive(s): sha256 verified"
}`;
const PACKAGES = bashText `apt_updated=0
apt_update() {
  ((apt_updated)) && return 0
  apt_updated=1
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$APT_LOG" 2>&1 || { tail -n 20 "$APT_LOG" >&2; return 1; }
}
candidate() {
  # Here-strings, not pipes into grep -q: under pipefail an early grep exit fails the writer.
  grep -q 'Candidate: [0-9]' <<<"$(apt-cache policy "$1" 2>/dev/null)"
}
# Tailscale and docker-ce come from their vendors' apt repositories when the sources lack them.
# vendor_repo NAME KEY_URL KEYRING_FILE SOURCE_LINE (@ID@ and @CODENAME@ from /etc/os-release).
vendor_repo() {
  local name=$1 key=$2 keyring=$3 list=$4 id codename
  # shellcheck disable=SC1091
  id=$(. /etc/os-release && printf '%s' "$ID")
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && printf '%s' "$VERSION_CODENAME")
  key=$\{key//@ID@/$id}
  list=$\{list//@ID@/$id}
  list=$\{list//@CODENAME@/$codename}
  curl -fsSL --retry 3 "$\{key//@CODENAME@/$codename}" -o "$keyring"
  printf '%s\n' "$list" >"/etc/apt/sources.list.d/$name.list"
  apt_updated=0
}
# The distribution's packages first (curl among them), then the vendors'.
step_packages() {
  local pkg distro=() vendor=()
  for pkg in "$\{PACKAGES[@]}" "$DOCKER_PACKAGE"; do
    installed "$pkg" || distro+=("$pkg")
  done
  if [[ $DOCKER_PACKAGE == docker-ce ]] && contains docker-ce "$\{distro[@]}"; then
    distro=("$\{distro[@]/docker-ce/}")
    vendor+=(docker-ce docker-compose-plugin)
  fi
  installed tailscale || vendor+=(tailscale)
  if (($\{#distro[@]} + $\{#vendor[@]} == 0)) && ! compose_missing; then
    say "all $(($\{#PACKAGES[@]} + 2)) packages installed"
    return
  fi
  ((apt_updated)) || change 'apt-get update' apt_update
  # docker.io's compose v2 is a package of its own on Ubuntu (docker-compose-v2).
  if compose_missing; then distro+=(docker-compose-v2); fi
  read -r -a distro <<<"$\{distro[*]}"
  if (($\{#distro[@]})); then change "install $\{distro[*]}" apt_install "$\{distro[@]}"; fi
  if contains tailscale "$\{vendor[@]}" && ! candidate tailscale; then
    change 'add the Tailscale apt repository' vendor_repo tailscale \
      'https://pkgs.tailscale.com/stable/@ID@/@CODENAME@.noarmor.gpg' /usr/share/keyrings/tailscale.gpg \
      'deb [signed-by=/usr/share/keyrings/tailscale.gpg] https://pkgs.tailscale.com/stable/@ID@ @CODENAME@ main'
  fi
  if contains docker-ce "$\{vendor[@]}" && ! candidate docker-ce; then
    change 'add the Docker apt repository' vendor_repo docker \
      'https://download.docker.com/linux/@ID@/gpg' /usr/share/keyrings/docker.asc \
      'deb [signed-by=/usr/share/keyrings/docker.asc] https://download.docker.com/linux/@ID@ @CODENAME@ stable'
  fi
  if (($\{#vendor[@]})); then
    ((apt_updated)) || change 'apt-get update' apt_update
    change "install $\{vendor[*]}" apt_install "$\{vendor[@]}"
  fi
}
compose_missing() {
  [[ $DOCKER_PACKAGE == docker.io ]] && ! installed docker-compose-v2 && candidate docker-compose-v2
}
# apt's own output goes to a log; its tail is shown when it fails.
APT_LOG=/var/log/comfyume-restore-apt.log
apt_install() {
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$APT_LOG" 2>&1; then
    tail -n 20 "$APT_LOG" >&2
    return 1
  fi
}`;
const TAILSCALE = bashText `tailscale_ssh_on() {
  grep -Eq '"RunSSH": *true' <<<"$(tailscale debug prefs 2>/dev/null)"
}
tailscale_up() {
  local args=(up --ssh=false)
  [[ -n $TS_AUTH_KEY_FILE ]] && args+=(--auth-key "file:$TS_AUTH_KEY_FILE")
  tailscale "$\{args[@]}"
}
step_tailscale() {
  local ip id dest
  installed_for_step tailscale tailscale || return 0
  # tailscaled rewrites its state as it runs, so the files are not compared: the identity is in
  # place when tailscaled runs with the backed-up IP. Otherwise it goes in BEFORE tailscaled
  # runs with it (a fresh package install may have started it with a new identity: stop first).
  ip=$(tailscale ip -4 2>/dev/null | head -n 1) || ip=''
  if active tailscaled && [[ -n $TAILSCALE_IP && $ip == "$TAILSCALE_IP" ]]; then
    say "identity in place: tailscaled runs as $ip"
  else
    for id in "$\{ONLY_ITEMS[@]}"; do
      [[ $\{STEP_OF[$id]} == tailscale ]] || continue
      can_unpack "$id" || return 0
      dest=$\{RESTORE_TO[$id]}
      if active tailscaled; then change "stop tailscaled (it runs as $\{ip:-a new node}, not $\{TAILSCALE_IP:-the backup})" systemctl stop tailscaled; fi
      change "$id: restored into $dest" extract "$id" "$dest"
      RESTORED+=("$id")
    done
  fi
  if ! systemctl is-enabled --quiet tailscaled 2>/dev/null; then change 'enable tailscaled' systemctl enable tailscaled; fi
  if ! active tailscaled; then change 'start tailscaled with the restored identity' systemctl start tailscaled; fi
  if ((DRY_RUN)); then return; fi
  # A restored identity comes up with the seed's prefs re-asserted: Tailscale SSH off.
  if restored tailscale || ! tailscale status >/dev/null 2>&1 || tailscale_ssh_on; then
    change 'tailscale up --ssh=false (Tailscale SSH off)' tailscale_up
  fi
  ip=$(tailscale ip -4 | head -n 1)
  if [[ -z $TAILSCALE_IP ]]; then
    say "Tailscale IP $ip (the backup recorded none to compare)"
  elif [[ $ip != "$TAILSCALE_IP" ]]; then
    die "tailscale ip -4 is $ip, not the backed-up $TAILSCALE_IP: the restored identity did not come up"
  else
    say "Tailscale IP $ip, as backed up"
  fi
}`;
const SECURITY = bashText `ssh_unit() {
  if systemctl cat ssh.service >/dev/null 2>&1; then echo ssh; else echo sshd; fi
}
ufw_has() {
  grep -Fxq -- "$1" <<<"$(ufw show added 2>/dev/null)"
}
ufw_enable() {
  ufw --force enable >/dev/null
}
write_file() {
  printf '%s' "$2" >"$1"
}
step_security() {
  local jail='' f2b_changed=0
  restore_items security
  if restored security && contains ssh-host-keys "$\{RESTORED[@]}"; then
    change 'restart ssh with the restored host keys' systemctl restart "$(ssh_unit)"
  fi
  # fail2ban: on a host without /var/log/auth.log (no rsyslog) the sshd jail reads the journal.
  installed_for_step fail2ban-client fail2ban || return 0
  if [[ ! -e /var/log/auth.log ]]; then
    jail=$'[sshd]\nenabled = true\nbackend = systemd\n'
    if [[ $(cat /etc/fail2ban/jail.d/zz-comfyume-sshd.local 2>/dev/null) != "$\{jail%$'\n'}" ]]; then
      change 'fail2ban sshd jail reads the journal (no /var/log/auth.log)' write_file /etc/fail2ban/jail.d/zz-comfyume-sshd.local "$jail"
      f2b_changed=1
    fi
  fi
  if ! systemctl is-enabled --quiet fail2ban 2>/dev/null; then change 'enable fail2ban' systemctl enable fail2ban; fi
  if ! active fail2ban; then
    change 'start fail2ban' systemctl start fail2ban
  elif ((f2b_changed)) || contains fail2ban "$\{RESTORED[@]}"; then
    change 'restart fail2ban with the restored config' systemctl restart fail2ban
  fi
  # UFW: SSH is allowed before UFW is enabled, so the admin is never locked out.
  installed_for_step ufw ufw || return 0
  if ! grep -q '^DEFAULT_INPUT_POLICY="DROP"' /etc/default/ufw; then
    change 'ufw default deny incoming' ufw default deny incoming
  fi
  if ! ufw_has 'ufw allow 22/tcp' && ! ufw_has 'ufw allow OpenSSH' && ! ufw_has 'ufw allow 22'; then
    change 'ufw allow 22/tcp (SSH)' ufw allow 22/tcp
  fi
  if ! ufw_has 'ufw allow in on tailscale0'; then change 'ufw allow in on tailscale0' ufw allow in on tailscale0; fi
  if ! ufw_has 'ufw allow 41641/udp'; then change 'ufw allow 41641/udp (Tailscale)' ufw allow 41641/udp; fi
  if ! grep -q '^Status: active' <<<"$(ufw status)"; then
    change 'enable UFW' ufw_enable
  elif contains ufw "$\{RESTORED[@]}"; then
    change 'reload UFW with the restored rules' ufw reload
  fi
  if ((!DRY_RUN)); then
    fail2ban-client status sshd >/dev/null 2>&1 || die 'fail2ban has no running sshd jail'
    say 'fail2ban: sshd jail running; ufw: active'
  fi
}`;
const USER = bashText `install_ohmyzsh() {
  local tmp
  tmp=$(mktemp -d "$WORK/ohmyzsh.XXXXXX")
  git clone -q --depth 1 "$OHMYZSH_REPO" "$tmp/ohmyzsh"
  mkdir -p -- "$USER_HOME/.oh-my-zsh"
  # Never over what is restored (custom/ themes and plugins).
  cp -a -n -- "$tmp/ohmyzsh/." "$USER_HOME/.oh-my-zsh/"
  chown -R "$HOST_USER:" -- "$USER_HOME/.oh-my-zsh"
}
step_user() {
  local shell_path now group uid_args=()
  installed_for_step "$USER_SHELL" "$USER_SHELL" || return 0
  shell_path=$(command -v "$USER_SHELL")
  if ! getent group "$HOST_USER" >/dev/null; then
    if [[ -n $USER_GID ]] && ! getent group "$USER_GID" >/dev/null; then
      change "create group $HOST_USER (gid $USER_GID, as backed up)" groupadd -g "$USER_GID" "$HOST_USER"
    else
      change "create group $HOST_USER (gid $\{USER_GID:-unknown} is taken here: a new gid)" groupadd "$HOST_USER"
    fi
  fi
  if ! getent passwd "$HOST_USER" >/dev/null; then
    if [[ -n $USER_UID ]] && ! getent passwd "$USER_UID" >/dev/null; then
      uid_args=(-u "$USER_UID")
    else
      say "uid $\{USER_UID:-unknown} is taken here: $HOST_USER gets a new uid, files follow by name"
    fi
    change "create user $HOST_USER" useradd -m -d "$USER_HOME" -g "$HOST_USER" -s "$shell_path" "$\{uid_args[@]}" "$HOST_USER"
  fi
  # Under --dry-run the user may not exist yet: its shell and groups are then only announced.
  now=$(getent passwd "$HOST_USER" | cut -d : -f 7) || now=''
  if [[ $now != "$shell_path" ]]; then
    change "login shell of $HOST_USER: $\{now:-none} -> $shell_path" usermod -s "$shell_path" "$HOST_USER"
  fi
  for group in "$\{USER_GROUPS[@]}"; do
    if ! getent group "$group" >/dev/null; then
      say "group $group does not exist here: $HOST_USER is not added to it"
    elif ! grep -Fxq -- "$group" <<<"$(id -nG "$HOST_USER" | tr ' ' '\n')"; then
      change "add $HOST_USER to group $group" usermod -aG "$group" "$HOST_USER"
    fi
  done
  if [[ ! -f $USER_HOME/.oh-my-zsh/oh-my-zsh.sh ]]; then
    installed_for_step git git || return 0
    change "install oh-my-zsh from $OHMYZSH_REPO" install_ohmyzsh
  fi
  restore_items user
}`;
const PROJECT = bashText `step_project() {
  restore_items project
  [[ -e $ENV_FILE ]] || { ((DRY_RUN)) || die "$ENV_FILE is missing after the project was restored"; return; }
  if [[ $(stat -c '%a' -- "$ENV_FILE") != 600 ]]; then change "chmod 600 $ENV_FILE" chmod 600 -- "$ENV_FILE"; fi
  if [[ $(stat -c '%U' -- "$ENV_FILE") != "$HOST_USER" ]]; then change "chown $HOST_USER $ENV_FILE" chown "$HOST_USER:" -- "$ENV_FILE"; fi
}`;
const STORAGE = bashText `append_fstab() {
  printf '%s\n' "$1" >>/etc/fstab
}
# ensure_mount NAME PATH 'SOURCE FSTYPE [OPTIONS]': an fstab entry (nofail) and the mount.
ensure_mount() {
  local name=$1 dir=$2 spec=$3 source fstype options
  read -r source fstype options <<<"$spec"
  if [[ -n $spec && -z $fstype ]]; then die "--$name-mount needs 'SOURCE FSTYPE [OPTIONS]', got: $spec"; fi
  if [[ -n $spec ]] && ! awk -v d="$dir" '$1 !~ /^#/ && $2 == d {found = 1} END {exit !found}' /etc/fstab; then
    options=$\{options:-defaults}
    [[ ,$options, == *,nofail,* ]] || options+=,nofail
    change "fstab: $source on $dir ($fstype, $options)" append_fstab "$source $dir $fstype $options 0 2"
  fi
  if [[ ! -d $dir ]]; then change "mkdir $dir" mkdir -p -- "$dir"; fi
  if mountpoint -q -- "$dir"; then
    say "$dir: mounted ($(findmnt -n -o SOURCE --mountpoint "$dir" | head -n 1))"
  elif [[ -z $spec ]] && ! awk -v d="$dir" '$1 !~ /^#/ && $2 == d {found = 1} END {exit !found}' /etc/fstab; then
    die "$dir is not mounted and no --$name-mount 'SOURCE FSTYPE [OPTIONS]' was given (or set $\{name^^}_MOUNT)"
  else
    change "mount $dir" mount -- "$dir"
  fi
}
ensure_link() {
  local link=$1 target=$2
  if [[ ! -d $target ]]; then
    change "mkdir $target (owned by $HOST_USER)" install -d -o "$HOST_USER" -g "$HOST_USER" -- "$target"
  fi
  if [[ -L $link && $(readlink -- "$link") == "$target" ]]; then return; fi
  if [[ -d $link && ! -L $link ]]; then
    [[ -z $(ls -A -- "$link") ]] || die "$link is a directory with files in it: move them to $target, then run again"
    change "remove the empty directory $link" rmdir -- "$link"
  fi
  change "link $link -> $target" ln -sfn -- "$target" "$link"
  ((DRY_RUN)) || chown -h "$HOST_USER:" -- "$link"
}
step_storage() {
  local link
  ensure_mount models "$MODELS_PATH" "$MODELS_MOUNT"
  ensure_mount scratch "$SCRATCH_PATH" "$SCRATCH_MOUNT"
  for link in "$\{!CK_LINKS[@]}"; do ensure_link "$link" "$\{CK_LINKS[$link]}"; done
}`;
const MODELS = bashText `step_models() {
  local n
  # The models come from R2 with sha256 checks (HuggingFace as the fallback) through comfyume-ops
  # on the runner, over SSH: sync-models --direction pull. This step only reports what is here.
  if [[ ! -d $MODELS_PATH ]]; then
    say "no $MODELS_PATH yet (the storage step mounts it)"
    return
  fi
  n=$(find "$MODELS_PATH" -type f \( -name '*.safetensors' -o -name '*.ckpt' -o -name '*.pt' -o -name '*.pth' -o -name '*.bin' -o -name '*.gguf' \) 2>/dev/null | wc -l) || true
  say "$n model file(s) on $MODELS_PATH"
  if ((n == 0)); then
    say "pull them from the runner: comfyume-ops sync-models --direction pull --target ssh://<user>@<this host>$MODELS_PATH (sha256-checked), or the Sync models workflow"
  fi
}`;
const SERVICES = bashText `compose_up() {
  docker compose --project-directory "$PROJECT" up -d 2>&1 | sed 's/^/    /'
}
step_services() {
  local missing=() name running
  installed_for_step docker "$DOCKER_PACKAGE" || return 0
  if [[ ! -f $PROJECT/docker-compose.yml && ! -f $PROJECT/compose.yaml && ! -f $PROJECT/compose.yml ]]; then
    say "no compose file in $PROJECT: nothing to start"
    return
  fi
  running=$(docker ps --format '{{.Names}}' 2>/dev/null) || running=''
  for name in "$\{CK_CONTAINERS[@]}"; do grep -Fxq -- "$name" <<<"$running" || missing+=("$name"); done
  if (($\{#CK_CONTAINERS[@]} == 0)) || (($\{#missing[@]} > 0)); then
    change "docker compose up -d in $PROJECT$\{missing[*]:+ (not running: $\{missing[*]})}" compose_up
  else
    say "$\{#CK_CONTAINERS[@]} container(s) running"
  fi
  if ((!DRY_RUN)) && [[ -n $CK_REDIS_HOST ]]; then
    CK_FOUND=''
    if check_redis; then say "Redis: $CK_FOUND"; else say "WARNING: Redis: $CK_FOUND"; fi
  fi
}`;
const VERIFY = bashText `step_verify() {
  local id failed=() line status
  if ((DRY_RUN)); then say 'would run the checks'; return; fi
  for id in "$\{VERIFY_CHECKS[@]}"; do
    contains "$id" "$\{SKIP_CHECKS[@]}" && { printf '  -     %-13s skipped (--skip-check)\n' "$id"; continue; }
    line=$(run_checks "$id")
    IFS=$'\t' read -r _ _ status CK_FOUND <<<"$line"
    if [[ $status == ok ]]; then
      printf '  ok    %-13s %s\n' "$id" "$CK_FOUND"
    else
      printf '  FAIL  %-13s %s (%s)\n' "$id" "$CK_FOUND" "$\{CHECK_LEVEL[$id]}"
      [[ $\{CHECK_LEVEL[$id]} == required ]] && failed+=("$id")
    fi
  done
  (($\{#failed[@]} == 0)) || die "required check(s) failed: $\{failed[*]}"
}`;
/** The steps in order, timed, with their changes; a drill runs preflight and the item steps. */
const RUN = bashText `wanted() {
  local step=$1
  (($\{#ONLY_STEPS[@]} == 0)) || contains "$step" "$\{ONLY_STEPS[@]}" || return 1
  ! contains "$step" "$\{SKIP_STEPS[@]}"
}
now_ms() {
  date +%s%3N
}
TOTAL=0
declare -A STEP_SUMMARY=()
started=$(now_ms)
printf 'RESTORE.sh: Restoring backup %s (%d item(s)) into %s%s\n' "$BACKUP_ID" "$\{#ONLY_ITEMS[@]}" "$\{ROOT:-/}" "$( ((DRY_RUN)) && printf ' (dry run)')"
for step in "$\{STEPS[@]}"; do
  if [[ $step != preflight ]] && ! wanted "$step"; then continue; fi
  if ((DOWNLOAD_ONLY)) && [[ $step != preflight ]]; then continue; fi
  if ((!LIVE)) && [[ $step != preflight && $step != tailscale && $step != security && $step != user && $step != project ]]; then continue; fi
  printf '== %s: %s\n' "$step" "$\{STEP_TITLE[$step]}"
  CHANGES=0
  t0=$(now_ms)
  if ((LIVE)) || [[ $step == preflight ]]; then "step_$step"; else restore_items "$step"; fi
  ms=$(($(now_ms) - t0))
  TOTAL=$((TOTAL + CHANGES))
  STEP_SUMMARY[$step]="$CHANGES $ms"
  printf '== %s: %d change(s), %d.%03d s\n' "$step" "$CHANGES" $((ms / 1000)) $((ms % 1000))
done
ms=$(($(now_ms) - started))
printf 'RESTORE.sh: done, %d change(s)%s in %d.%03d s (the restore time)\n' "$TOTAL" "$( ((DRY_RUN)) && printf ' that would be made')" $((ms / 1000)) $((ms % 1000))
for step in "$\{STEPS[@]}"; do
  [[ -n $\{STEP_SUMMARY[$step]+set} ]] || continue
  read -r c m <<<"$\{STEP_SUMMARY[$step]}"
  printf 'STEP\t%s\t%s\t%s\n' "$step" "$c" "$m"
done
`;
/** Every section after the values, in order. */
const STEP_BASH = [
    ARGUMENTS,
    CHECKS,
    HELPERS,
    PREFLIGHT,
    PACKAGES,
    TAILSCALE,
    SECURITY,
    USER,
    PROJECT,
    STORAGE,
    MODELS,
    SERVICES,
    VERIFY,
    RUN,
];

;// CONCATENATED MODULE: ./src/backup/config.ts
// config/backup.yml: what to take from the GPU host. Validated strictly (unknown keys, relative
// or '..' paths and duplicate ids are errors) before any connection is opened.






/** Item and disk ids: what the config allows, and what a manifest may name. */
const ITEM_ID_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** An exclude pattern, relative to each of the item's paths (e.g. .cache, comfy-multi/data/models). */
const excludePattern = schemas_string().superRefine((value, ctx) => {
    const bad = value === '' || value.startsWith('/')
        ? 'must be relative to the item path (no leading /)'
        : hasControlChars(value)
            ? 'must not contain control characters'
            : value.split('/').some((s) => s === '..' || s === '.')
                ? "must not contain '.' or '..' segments"
                : undefined;
    if (bad)
        ctx.addIssue({ code: 'custom', message: `exclude ${JSON.stringify(value)} ${bad}` });
});
const itemSchema = strictObject({
    id: schemas_string().regex(ITEM_ID_RE, 'id must be 1-63 lowercase letters, digits and hyphens'),
    description: schemas_string().default(''),
    paths: array(absolutePath('path', { glob: true })).min(1, 'paths needs at least one path'),
    exclude: array(excludePattern).default([]),
    /** A missing required item fails the backup; a missing optional one is a warning. */
    required: schemas_boolean().default(true),
    /** Root-owned: read through `sudo -n <read-wrapper>`. */
    sudo: schemas_boolean().default(false),
    /** Where RESTORE.sh extracts the archive (members are paths relative to the host root). */
    'restore-to': absolutePath('restore-to').default('/'),
    /** The RESTORE.sh step that restores this item (the step then does what the item needs). */
    step: schemas_enum(ITEM_STEPS).default('project'),
    /** Commands RESTORE.sh runs after extracting this item onto a live system (root '/'). */
    'after-restore': array(schemas_string().min(1)).default([]),
});
const configSchema = strictObject({
    version: literal(1),
    /** The host's "/" as seen over SSH; tests point it at the fixture tree. */
    'host-root': absolutePath('host-root').default('/'),
    /** The root-owned wrapper run through `sudo -n` for sudo items (scripts/host/comfyume-read). */
    'read-wrapper': absolutePath('read-wrapper').default('/usr/local/sbin/comfyume-read'),
    /** Directories whose disk usage is recorded (df), by name. */
    'disk-facts': record(schemas_string().regex(ITEM_ID_RE), absolutePath('disk-facts path'))
        .default({}),
    /** Where the model vault lives on the host (with-models). */
    'models-dir': absolutePath('models-dir').optional(),
    items: array(itemSchema).min(1, 'items needs at least one item'),
    /** What RESTORE.sh rebuilds the host into and verify-host checks (src/host/shape.ts). */
    host: hostShapeSchema.prefault({}),
})
    .superRefine((config, ctx) => {
    const seen = new Set();
    config.items.forEach((item, index) => {
        if (seen.has(item.id)) {
            ctx.addIssue({
                code: 'custom',
                path: ['items', index, 'id'],
                message: `duplicate item id ${JSON.stringify(item.id)}`,
            });
        }
        seen.add(item.id);
    });
});
/** Validates parsed YAML; every problem is listed with its field path. */
function parseBackupConfig(file, data) {
    return parseWithSchema(configSchema, data, file);
}
function parseBackupConfigText(file, text) {
    return parseBackupConfig(file, parseYamlText(file, text));
}
async function loadBackupConfig(file) {
    return parseBackupConfig(file, await readYamlFile(file));
}
/** A host path as seen on the host: the configured path under host-root. */
function config_onHost(config, path) {
    const root = config['host-root'];
    return root === '/' ? path : `${root.replace(/\/$/, '')}${path}`;
}

;// CONCATENATED MODULE: ./src/backup/remote-commands.ts
// The remote side of a backup, as shell text: every value is quoted with shellQuote, only the
// configured * and ? globs reach the shell unquoted (shellGlob).


const COMPRESSOR_NAMES = ['zstd', 'gzip'];
const COMPRESSORS = {
    zstd: { command: 'zstd -q -c -T0', extension: 'tar.zst', decompress: 'zstd -dc' },
    gzip: { command: 'gzip -c', extension: 'tar.gz', decompress: 'gzip -dc' },
};
/** A path relative to the host root, as tar stores it (members never start with /). */
function memberOf(path) {
    return path === '/' ? '.' : path.slice(1).replace(/\/$/, '');
}
/** tar --exclude patterns (anchored member names) for an item: each exclude under each path. */
function excludePatterns(item) {
    const out = [];
    for (const path of item.paths)
        for (const ex of item.exclude)
            out.push(`${memberOf(path)}/${ex.replace(/\/$/, '')}`);
    return out;
}
/** `bash -o pipefail -c '\u2026'`: the login shell may be zsh; pipefail makes a failed tar fail the run. */
function remote_commands_bashPipefail(script) {
    return `bash -o pipefail -c ${shellQuote(script)}`;
}
/**
 * One remote command per item: an uncompressed tar (through the sudo read wrapper for root-owned
 * items) piped into the host's compressor. Members are relative to host-root.
 */
function archiveCommand(config, item, compressor) {
    const root = config['host-root'];
    const excludes = excludePatterns(item).map((p) => shellQuote(`--exclude=${p}`));
    let archiver;
    if (item.sudo) {
        const paths = item.paths.map((p) => shellGlob(onHost(config, p)));
        archiver = [
            'sudo -n',
            shellQuote(config['read-wrapper']),
            '-C',
            shellQuote(root),
            ...excludes,
            '--',
            ...paths,
        ].join(' ');
    }
    else {
        // Relative members, so globs expand from the root: cd there first.
        const members = item.paths.map((p) => shellGlob(memberOf(p)));
        archiver = [
            `cd -- ${shellQuote(root)} &&`,
            // The C locale: tar's "Total bytes written" line must not be translated (it is parsed).
            // Owner names are kept (no --numeric-owner): a rebuilt host may give the dev user
            // another uid, and RESTORE.sh then gives the files back by name.
            'LC_ALL=C tar --create --file=- --totals --anchored',
            ...excludes,
            '--',
            ...members,
        ].join(' ');
    }
    return remote_commands_bashPipefail(`${archiver} | ${COMPRESSORS[compressor].command}`);
}
/**
 * One probe for the whole plan: which compressor the host has, whether the sudo rule works, and
 * which configured paths (after glob expansion) exist. Output lines are tab-separated.
 */
function probeCommand(config) {
    const lines = [
        'if command -v zstd >/dev/null 2>&1; then echo compressor zstd; else echo compressor gzip; fi',
    ];
    if (config.items.some((i) => i.sudo)) {
        lines.push(`if sudo -n -l ${shellQuote(config['read-wrapper'])} >/dev/null 2>&1; then echo sudo ok; else echo sudo missing; fi`);
    }
    for (const item of config.items) {
        for (const path of item.paths) {
            lines.push(`for f in ${shellGlob(onHost(config, path))}; do if [ -e "$f" ] || [ -L "$f" ]; then s=present; else s=missing; fi; ` +
                `printf '%s\\t%s\\t%s\\n' "$s" ${shellQuote(item.id)} "$f"; done`);
        }
    }
    return remote_commands_bashPipefail(lines.join('\n'));
}
/** What the probe's sudo line can say. */
const SUDO_ANSWERS = (/* unused pure expression or super */ null && (['ok', 'missing']));
function parseProbe(output) {
    const result = {
        compressor: 'gzip',
        sudo: 'unused',
        present: new Map(),
        missing: new Map(),
    };
    for (const line of output.split('\n')) {
        // Found in the lists of known answers, so typed without a cast.
        const compressor = COMPRESSOR_NAMES.find((c) => line === `compressor ${c}`);
        const sudo = SUDO_ANSWERS.find((s) => line === `sudo ${s}`);
        if (compressor)
            result.compressor = compressor;
        else if (sudo)
            result.sudo = sudo;
        else {
            const [state, id, path] = line.split('\t');
            if ((state !== 'present' && state !== 'missing') || !id || path === undefined)
                continue;
            const map = state === 'present' ? result.present : result.missing;
            map.set(id, [...(map.get(id) ?? []), path]);
        }
    }
    return result;
}
/** GNU tar's --totals line: "Total bytes written: 10240 (10KiB, 9.8MiB/s)". */
function parseTarTotals(stderr) {
    const match = /Total bytes written: (\d+)/.exec(stderr);
    return match ? Number(match[1]) : undefined;
}
/**
 * tar exits 1 when a file changed while it was read: the archive is usable, so that alone is a
 * warning. Any other cause of exit 1 (sudo refused, cd failed, the compressor failed) is not.
 */
function changedWhileReading(stderr) {
    const lines = stderr
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !/^Total bytes written:/.test(l) && !/Removing leading/.test(l));
    return (lines.length > 0 &&
        lines.every((l) => /file changed as we read it|file shrank by|file is unchanged; not dumped/.test(l)));
}

;// CONCATENATED MODULE: ./src/backup/facts.ts
// Facts recorded with each backup: tailscale ip -4, hostname, OS release, kernel and the disk
// usage of the configured mounts. Each is best-effort; a missing fact is a warning, not a failure.






/** Free text from the host (an OS name, a mount point): printable, one line, bounded. */
const hostText = (max) => schemas_string()
    .max(max)
    .refine((text) => !hasControlChars(text), 'must not contain control characters');
const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const KERNEL_RE = /^[A-Za-z0-9._+~-]{1,100}$/;
const UNIX_NAME = schemas_string().regex(/^[a-z_][a-z0-9_-]{0,31}$/);
/** The dev user as `getent passwd` and `id -Gn` told it at backup time (RESTORE.sh recreates it). */
const userFactSchema = strictObject({
    name: UNIX_NAME,
    uid: schemas_number()
        .int()
        .min(0)
        .max(2 ** 31 - 2),
    gid: schemas_number()
        .int()
        .min(0)
        .max(2 ** 31 - 2),
    groups: array(UNIX_NAME).max(64),
    home: absolutePath('user home'),
    shell: absolutePath('user shell'),
});
/** Which docker package the host had: RESTORE.sh installs the same one. */
const DOCKER_PACKAGES = ['docker.io', 'docker-ce'];
const diskFactSchema = strictObject({
    path: absolutePath('disk path'),
    filesystem: hostText(256),
    sizeBytes: schemas_number().int().nonnegative(),
    usedBytes: schemas_number().int().nonnegative(),
    availableBytes: schemas_number().int().nonnegative(),
    mountedOn: hostText(1024),
});
/** What the host said about itself; each value is checked, an odd one is recorded as ''. */
const hostFactsSchema = strictObject({
    tailscaleIp: union([literal(''), schemas_ipv4()]),
    hostname: union([literal(''), schemas_string().regex(HOSTNAME_RE)]),
    os: hostText(200),
    kernel: union([literal(''), schemas_string().regex(KERNEL_RE)]),
    disks: record(schemas_string().regex(ITEM_ID_RE), diskFactSchema),
    /** Absent in backups made before the rebuild recorded them. */
    user: userFactSchema.nullable().default(null),
    docker: union([literal(''), schemas_enum(DOCKER_PACKAGES)]).default(''),
});
function factsCommand(config) {
    const user = shellQuote(config.host.user);
    const lines = [
        `printf 'user\\t%s\\n' "$(getent passwd ${user})"`,
        `printf 'groups\\t%s\\n' "$(id -Gn ${user} 2>/dev/null)"`,
        `printf 'docker\\t%s\\n' "$(dpkg-query -W -f '\${db:Status-Status} \${Package}\\n' ${DOCKER_PACKAGES.join(' ')} 2>/dev/null | awk '$1 == "installed" {print $2; exit}')"`,
        `printf 'tailscale-ip\\t%s\\n' "$(tailscale ip -4 2>/dev/null | head -n 1)"`,
        `printf 'hostname\\t%s\\n' "$(hostname 2>/dev/null)"`,
        `printf 'os\\t%s\\n' "$( (. /etc/os-release && printf '%s' "$PRETTY_NAME") 2>/dev/null)"`,
        `printf 'kernel\\t%s\\n' "$(uname -r)"`,
    ];
    for (const [name, path] of Object.entries(config['disk-facts'])) {
        lines.push(`printf 'disk\\t%s\\t%s\\t%s\\n' ${shellQuote(name)} ${shellQuote(path)} "$(df -P -B1 -- ${shellQuote(onHost(config, path))} 2>/dev/null | tail -n 1)"`);
    }
    // Facts are best-effort: never let one failed probe fail the script.
    return bashPipefail(`${lines.join('\n')}\nexit 0`);
}
/**
 * Parses what the facts command printed. The host is not trusted: a value that is not of its
 * kind (a hostname with a newline, df output that is no number) is dropped and reported missing,
 * and only the disks of the config are taken, with the config's path.
 */
function parseFacts(output, diskFacts = {}) {
    const facts = {
        tailscaleIp: '',
        hostname: '',
        os: '',
        kernel: '',
        disks: {},
        user: null,
        docker: '',
    };
    let passwd = '';
    let groups = '';
    const missing = [];
    const invalid = new Set();
    const fields = hostFactsSchema.shape;
    const take = (field, value) => {
        const parsed = fields[field].safeParse(value);
        if (parsed.success)
            facts[field] = parsed.data;
        else {
            invalid.add(field);
            missing.push(`${field} from the host is not valid: ${JSON.stringify(value.slice(0, 80))}`);
        }
    };
    for (const line of output.split('\n')) {
        const [kind, a = '', , c = ''] = line.split('\t');
        if (kind === 'tailscale-ip')
            take('tailscaleIp', a.trim());
        else if (kind === 'hostname')
            take('hostname', a.trim());
        else if (kind === 'os')
            take('os', a.trim());
        else if (kind === 'kernel')
            take('kernel', a.trim());
        else if (kind === 'user')
            passwd = a.trim();
        else if (kind === 'groups')
            groups = a.trim();
        else if (kind === 'docker') {
            const docker = fields.docker.safeParse(a.trim());
            if (docker.success)
                facts.docker = docker.data;
        }
        else if (kind === 'disk' && Object.hasOwn(diskFacts, a)) {
            const f = c.trim().split(/\s+/);
            const disk = diskFactSchema.safeParse({
                path: diskFacts[a],
                filesystem: f[0] ?? '',
                sizeBytes: Number(f[1]),
                usedBytes: Number(f[2]),
                availableBytes: Number(f[3]),
                mountedOn: f.slice(5).join(' '),
            });
            facts.disks[a] =
                f.length >= 6 && disk.success
                    ? disk.data
                    : {
                        path: diskFacts[a] ?? '/',
                        filesystem: '',
                        sizeBytes: 0,
                        usedBytes: 0,
                        availableBytes: 0,
                        mountedOn: '',
                    };
        }
    }
    facts.user = parseUser(passwd, groups);
    if (!facts.user)
        missing.push(`getent passwd of the host user gave no valid entry`);
    if (!facts.tailscaleIp && !invalid.has('tailscaleIp'))
        missing.push('tailscale ip -4 gave no IPv4 address');
    if (!facts.hostname && !invalid.has('hostname'))
        missing.push('hostname is empty');
    for (const [name, disk] of Object.entries(facts.disks)) {
        if (!disk.filesystem)
            missing.push(`df of ${name} (${disk.path}) failed`);
    }
    return { facts, missing };
}
/** `name:x:uid:gid:gecos:home:shell` and `id -Gn`, checked; undefined fields make it null. */
function parseUser(passwd, groups) {
    const f = passwd.split(':');
    if (f.length !== 7)
        return null;
    const user = userFactSchema.safeParse({
        name: f[0],
        uid: Number(f[2]),
        gid: Number(f[3]),
        groups: groups.split(/\s+/).filter(Boolean),
        home: f[5],
        shell: f[6],
    });
    return user.success ? user.data : null;
}

;// CONCATENATED MODULE: ./src/host/checks.ts
// The seed's Phase 11 verification checklist as one bash program, the single home of every
// check: verify-host runs it over SSH, RESTORE.sh's verify step runs the same text locally. It
// only reads: status commands, files, sockets. Each check prints one line
// `CHECK <id> <ok|fail> <what it found>` (tab-separated), parsed strictly by parseCheckLines.
// Values from the config reach the bash only through shellQuote.





/** The checks, in the seed's order, with the line of the checklist each stands for. */
const checks_CHECKS = {
    tailscale: 'Tailscale up, SSH over Tailscale off',
    'tailscale-ip': 'Tailscale IP as backed up',
    ufw: 'UFW active, only SSH and Tailscale open',
    fail2ban: 'Fail2ban active with the sshd jail',
    shell: "The dev user's login shell",
    'oh-my-zsh': 'oh-my-zsh with the theme in .zshrc',
    mounts: 'Models and scratch mounted, with free space',
    links: 'Symlinks into the mounts',
    redis: 'Redis at the VPS answers PING',
    containers: 'Docker containers running',
    comfyui: 'ComfyUI answers on the host',
    'test-workflow': 'A test workflow runs (ComfyUI /prompt, /history)',
};
const CHECK_IDS = Object.keys(checks_CHECKS);
/** What each check expects, in words, for the report. */
function expectations(target) {
    const { shape } = target;
    const links = Object.entries(shape.links).map(([l, t]) => `${l} -> ${t}`);
    return {
        tailscale: 'running, Tailscale SSH off',
        'tailscale-ip': target.tailscaleIp ?? '(not set)',
        ufw: 'active; deny incoming; allow SSH and Tailscale only',
        fail2ban: 'sshd jail running',
        shell: `${shape.user}: ${shape.shell}`,
        'oh-my-zsh': `~/.oh-my-zsh, ZSH_THEME="${shape['zsh-theme']}"`,
        mounts: `${shape.mounts.models}, ${shape.mounts.scratch}: mounted, \u2265 ${shape['min-free-mib']} MiB free`,
        links: links.length ? links.join('; ') : '(none configured)',
        redis: shape.redis ? `${shape.redis}: PONG` : '(not set)',
        containers: shape.containers.length ? shape.containers.join(', ') : '(none configured)',
        comfyui: `${shape['comfyui-url']}/system_stats answers`,
        'test-workflow': shape['test-workflow']
            ? `${shape['test-workflow']} succeeds within ${shape['test-workflow-timeout-s']} s`
            : '(not set)',
    };
}
/** The values the check functions read, as bash assignments (every value quoted). */
function checkValues(target) {
    const { shape } = target;
    const redis = redisAddress(shape);
    const linkPairs = Object.entries(shape.links)
        .map(([l, t]) => `[${shellQuote(l)}]=${shellQuote(t)}`)
        .join(' ');
    return [
        `CK_USER=${shellQuote(shape.user)}`,
        `CK_SHELL=${shellQuote(shape.shell)}`,
        `CK_HOME=${shellQuote(shape.home)}`,
        `CK_THEME=${shellQuote(shape['zsh-theme'])}`,
        `CK_TAILSCALE_IP=${shellQuote(target.tailscaleIp ?? '')}`,
        `CK_MOUNTS=(${shellQuote(shape.mounts.models)} ${shellQuote(shape.mounts.scratch)})`,
        `CK_MIN_FREE_MIB=${shape['min-free-mib']}`,
        '# shellcheck disable=SC2016 # paths are literal text',
        `declare -A CK_LINKS=(${linkPairs})`,
        `CK_REDIS_HOST=${shellQuote(redis?.host ?? '')}`,
        `CK_REDIS_PORT=${redis?.port ?? 0}`,
        `CK_CONTAINERS=(${shape.containers.map(shellQuote).join(' ')})`,
        `CK_COMFYUI_URL=${shellQuote(shape['comfyui-url'])}`,
        `CK_TEST_WORKFLOW=${shellQuote(shape['test-workflow'] ?? '')}`,
        `CK_TEST_TIMEOUT_S=${shape['test-workflow-timeout-s']}`,
    ].join('\n');
}
/** The check functions: constant bash, reading only the CK_ values. */
const CHECK_FUNCTIONS = bashText `# Root for the two status commands that need it: sudo -n when not root (see verify-host's README).
as_root() {
  if ((EUID == 0)); then "$@"; else sudo -n "$@"; fi
}
found() {
  CK_FOUND=$*
  CK_FOUND=$\{CK_FOUND//[$'\t\r\n']/ }
}
check_tailscale() {
  if ! command -v tailscale >/dev/null 2>&1; then found 'tailscale is not installed'; return 1; fi
  if ! tailscale status >/dev/null 2>&1; then found 'not running (tailscale status failed)'; return 1; fi
  if grep -Eq '"RunSSH": *true' <<<"$(tailscale debug prefs 2>/dev/null)"; then
    found 'running, Tailscale SSH ON'
    return 1
  fi
  found 'running, Tailscale SSH off'
}
check_tailscale_ip() {
  local ip
  ip=$(tailscale ip -4 2>/dev/null | head -n 1) || true
  found "$\{ip:-no IPv4 address}"
  [[ -n $CK_TAILSCALE_IP && $ip == "$CK_TAILSCALE_IP" ]]
}
check_ufw() {
  local out rule bad=() ssh=0 tailnet=0
  if ! out=$(as_root ufw status verbose 2>&1); then found "ufw status failed: $out"; return 1; fi
  if ! grep -q '^Status: active' <<<"$out"; then found 'inactive'; return 1; fi
  if ! grep -q 'deny (incoming)' <<<"$out"; then found 'active, but incoming is not denied by default'; return 1; fi
  while IFS= read -r rule; do
    case $rule in
      22 | 22/tcp | OpenSSH) ssh=1 ;;
      'Anywhere on tailscale0' | 41641/udp) tailnet=1 ;;
      *) bad+=("$rule") ;;
    esac
  done < <(awk -F '  +' '$2 ~ /^ALLOW/ {sub(/ \(v6\)$/, "", $1); print $1}' <<<"$out" | sort -u)
  if (($\{#bad[@]})); then found "active, also open: $\{bad[*]}"; return 1; fi
  if ((!ssh)); then found 'active, SSH is not allowed'; return 1; fi
  if ((!tailnet)); then found 'active, Tailscale is not allowed'; return 1; fi
  found 'active; deny incoming; SSH and Tailscale allowed'
}
check_fail2ban() {
  local out
  if ! out=$(as_root fail2ban-client status sshd 2>&1); then found "sshd jail not running: $(tail -n 1 <<<"$out")"; return 1; fi
  found "sshd jail running, $(grep -o 'Currently banned:.*' <<<"$out" | tr -s ' \t' ' ')"
}
check_shell() {
  local shell
  shell=$(getent passwd "$CK_USER" | cut -d : -f 7) || true
  found "$CK_USER: $\{shell:-no such user}"
  [[ -n $shell && $\{shell##*/} == "$CK_SHELL" ]]
}
check_oh_my_zsh() {
  local theme
  if [[ ! -f $CK_HOME/.oh-my-zsh/oh-my-zsh.sh ]]; then found "no $CK_HOME/.oh-my-zsh/oh-my-zsh.sh"; return 1; fi
  theme=$(sed -n 's/^ZSH_THEME=["'"'"']\{0,1\}\([^"'"'"']*\).*/\1/p' "$CK_HOME/.zshrc" 2>/dev/null | tail -n 1) || true
  if [[ $theme != "$CK_THEME" ]]; then found "ZSH_THEME=$\{theme:-unset} in $CK_HOME/.zshrc"; return 1; fi
  if [[ ! -f $CK_HOME/.oh-my-zsh/custom/themes/$CK_THEME.zsh-theme && ! -f $CK_HOME/.oh-my-zsh/themes/$CK_THEME.zsh-theme ]]; then
    found "theme $CK_THEME named but its .zsh-theme file is missing"
    return 1
  fi
  found "installed, ZSH_THEME=$theme"
}
check_mounts() {
  local dir free source said=() ok=0
  for dir in "$\{CK_MOUNTS[@]}"; do
    if ! mountpoint -q -- "$dir" 2>/dev/null; then said+=("$dir not mounted"); ok=1; continue; fi
    source=$(findmnt -n -o SOURCE --mountpoint "$dir" 2>/dev/null | head -n 1) || true
    free=$(df -P -B1M -- "$dir" | awk 'NR == 2 {print $4}')
    said+=("$dir: $\{source:-?}, $\{free} MiB free")
    if ((free < CK_MIN_FREE_MIB)); then ok=1; fi
  done
  found "$(IFS=';'; printf '%s' "$\{said[*]}")"
  return "$ok"
}
check_links() {
  local link target said=() ok=0
  for link in "$\{!CK_LINKS[@]}"; do
    target=$(readlink -- "$link" 2>/dev/null) || target=''
    if [[ $target != "$\{CK_LINKS[$link]}" ]]; then
      said+=("$link -> $\{target:-not a link}")
      ok=1
    elif [[ ! -d $link ]]; then
      said+=("$link -> $target (target missing)")
      ok=1
    fi
  done
  if ((ok == 0)); then found "$\{#CK_LINKS[@]} link(s) in place"; else found "$(IFS=';'; printf '%s' "$\{said[*]}")"; fi
  return "$ok"
}
check_redis() {
  local reply
  if [[ -z $CK_REDIS_HOST ]]; then found 'no redis address configured'; return 1; fi
  if command -v redis-cli >/dev/null 2>&1; then
    reply=$(timeout 10 redis-cli -h "$CK_REDIS_HOST" -p "$CK_REDIS_PORT" ping 2>&1) || true
  else
    # shellcheck disable=SC2016 # the inner bash expands $1 and $2
    reply=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "PING\r\n" >&3 && head -c 7 <&3' _ "$CK_REDIS_HOST" "$CK_REDIS_PORT" 2>&1) || true
  fi
  reply=$\{reply//[+$'\r']/}
  found "$CK_REDIS_HOST:$CK_REDIS_PORT said $\{reply:-nothing}"
  [[ $reply == PONG ]]
}
check_containers() {
  local running name missing=()
  if ! running=$(docker ps --format '{{.Names}}' 2>&1); then found "docker ps failed: $running"; return 1; fi
  for name in "$\{CK_CONTAINERS[@]}"; do
    grep -Fxq -- "$name" <<<"$running" || missing+=("$name")
  done
  if (($\{#missing[@]})); then found "not running: $\{missing[*]}"; return 1; fi
  found "$(grep -c . <<<"$running") running: $(paste -sd ' ' <<<"$running")"
}
check_comfyui() {
  local out
  if ! out=$(curl -fsS --max-time 10 "$CK_COMFYUI_URL/system_stats" 2>&1); then found "no answer: $out"; return 1; fi
  found "answers: $(head -c 120 <<<"$out")"
}
# The seed's "test workflow runs": the workflow file on the host is queued with POST /prompt,
# then /history/<id> is polled until ComfyUI says success (or error, or the time is up).
check_test_workflow() {
  local reply id history waited=0
  if [[ -z $CK_TEST_WORKFLOW ]]; then found 'no host.test-workflow configured'; return 1; fi
  if [[ ! -r $CK_TEST_WORKFLOW ]]; then found "cannot read $CK_TEST_WORKFLOW"; return 1; fi
  if ! reply=$({ printf '{"client_id": "verify-host", "prompt": '; cat -- "$CK_TEST_WORKFLOW"; printf '}'; } |
    curl -fsS --max-time 30 -H 'Content-Type: application/json' --data-binary @- "$CK_COMFYUI_URL/prompt" 2>&1); then
    found "POST /prompt refused: $(head -c 200 <<<"$reply")"
    return 1
  fi
  id=$(grep -o '"prompt_id": *"[A-Za-z0-9-]*"' <<<"$reply" | grep -o '[A-Za-z0-9-]*"$' | tr -d '"') || true
  if [[ -z $id ]]; then found "no prompt_id in: $(head -c 200 <<<"$reply")"; return 1; fi
  while ((waited <= CK_TEST_TIMEOUT_S)); do
    history=$(curl -fsS --max-time 10 "$CK_COMFYUI_URL/history/$id" 2>/dev/null) || history=''
    if grep -q '"status_str": *"success"' <<<"$history"; then found "prompt $id succeeded after ~$waited s"; return 0; fi
    if grep -q '"status_str": *"error"' <<<"$history"; then found "prompt $id failed: $(head -c 200 <<<"$history")"; return 1; fi
    sleep 2
    waited=$((waited + 2))
  done
  found "prompt $id not done after $CK_TEST_TIMEOUT_S s"
  return 1
}
# Runs the named checks (all by default); one CHECK line each.
run_checks() {
  local id fn
  for id in "$@"; do
    fn=check_$\{id//-/_}
    CK_FOUND=''
    if "$fn"; then
      printf 'CHECK\t%s\tok\t%s\n' "$id" "$CK_FOUND"
    else
      printf 'CHECK\t%s\tfail\t%s\n' "$id" "$CK_FOUND"
    fi
  done
}`;
/** The checks as bash: values, then functions; `run_checks id\u2026` prints the CHECK lines. */
function checkProgram(target) {
    return `${checkValues(target)}\n${CHECK_FUNCTIONS}`;
}
/** A whole script for `bash -s` over SSH: runs the given checks (never fails itself). */
function checkScript(target, ids) {
    return `set -uo pipefail\n${checkProgram(target)}\nrun_checks ${ids.join(' ')}\nexit 0\n`;
}
const foundText = schemas_string()
    .max(2000)
    .refine((t) => !hasControlChars(t), 'must not contain control characters');
/**
 * The CHECK lines a host printed. The host is not trusted: an unknown id, a status other than
 * ok/fail, a check asked for but not answered or answered twice is an error naming it.
 */
function parseCheckLines(output, asked) {
    const results = new Map();
    for (const line of output.split('\n')) {
        if (!line.startsWith('CHECK\t'))
            continue;
        const [, id = '', status = '', ...rest] = line.split('\t');
        const found = foundText.safeParse(rest.join(' ').trim().slice(0, 500));
        if (!asked.includes(id))
            throw new OpsError(`the host answered a check that was not asked: ${JSON.stringify(id)}`);
        if (status !== 'ok' && status !== 'fail')
            throw new OpsError(`the host answered check ${id} with ${JSON.stringify(status)}`);
        if (results.has(id))
            throw new OpsError(`the host answered check ${id} twice`);
        results.set(id, {
            id: id,
            ok: status === 'ok',
            found: found.success ? found.data : '(unreadable answer)',
        });
    }
    const unanswered = asked.filter((id) => !results.has(id));
    if (unanswered.length > 0)
        throw new OpsError(`the host did not answer check(s) ${unanswered.join(', ')}`);
    return asked.map((id) => results.get(id));
}

;// CONCATENATED MODULE: ./src/backup/manifest.ts
// Where a backup lives in the bucket and what its manifest.json records. The manifest is written
// last: a backup exists exactly when its manifest does.










const MANIFEST_FORMAT = 'comfyume-ops/backup-manifest/1';
const TOOL_NAME = 'comfyume-ops backup-verda';
/** Backup ids are UTC timestamps, sortable as text: 20261128T021500Z. */
function backupIdFor(date) {
    return date
        .toISOString()
        .replace(/[-:]/g, '')
        .replace(/\.\d{3}Z$/, 'Z');
}
const ID_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
function parseBackupId(id) {
    const m = ID_RE.exec(id);
    if (!m)
        return undefined;
    const [, y, mo, d, h, mi, s] = m.map(Number);
    const date = new Date(Date.UTC(y ?? 0, (mo ?? 1) - 1, d, h, mi, s));
    return backupIdFor(date) === id ? date : undefined;
}
const backupKeys = (prefix, id) => ({
    dir: `${prefix}/${id}/`,
    manifest: `${prefix}/${id}/manifest.json`,
    signature: `${prefix}/${id}/manifest.json.sig`,
    restoreScript: `${prefix}/${id}/RESTORE.sh`,
    item: (itemId, extension) => `${prefix}/${id}/${itemId}.${extension}.age`,
});
const latestKey = (prefix) => `${prefix}/latest.json`;
const SHA256_HEX = schemas_string().regex(/^[0-9a-f]{64}$/, 'must be a sha256 in hex');
const bytes = schemas_number().int().nonnegative();
/** `SHA256:` and 43 base64 characters, as ssh-keygen -l prints a host key. */
const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;
const SEMVER_RE = /^\d{1,5}\.\d{1,5}\.\d{1,5}(?:-[0-9A-Za-z.-]{1,40})?$/;
const USER_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/;
const HOST_RE = /^[A-Za-z0-9.:_-]{1,253}$/;
/** age recipients: X25519 (age1 + bech32) or an SSH public key, one line each. */
const RECIPIENT_RE = /^(?:age1[02-9ac-hj-np-z]{58}|(?:ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]+={0,2})$/;
const manifestItemSchema = strictObject({
    id: schemas_string().regex(ITEM_ID_RE, 'must be an item id as in config/backup.yml'),
    description: hostText(500),
    // Checked as the config checks them: they become paths on the machine restoring.
    paths: array(absolutePath('path', { glob: true })).min(1),
    /** Host paths that were absent (optional items, or globs that matched nothing). */
    missingPaths: array(absolutePath('missing path', { glob: true })),
    required: schemas_boolean(),
    sudo: schemas_boolean(),
    restoreTo: absolutePath('restoreTo'),
    /** The RESTORE.sh step that restores it (backups before steps: project). */
    step: schemas_enum(ITEM_STEPS).default('project'),
    /** As the config said at backup time; a restore runs its own config's, never these. */
    afterRestore: array(hostText(1000)),
    key: schemas_string(),
    compression: schemas_enum(COMPRESSOR_NAMES),
    /** Uncompressed tar bytes (GNU tar --totals), when tar reported them. */
    tarBytes: bytes.nullable(),
    /** Compressed bytes received from the host. */
    archiveBytes: bytes,
    /** Encrypted bytes stored in R2, and their sha256. */
    storedBytes: bytes,
    sha256: SHA256_HEX,
    seconds: schemas_number().nonnegative(),
});
const manifestFields = strictObject({
    format: literal(MANIFEST_FORMAT),
    backupId: schemas_string().regex(ID_RE, 'must be a backup id such as 20261128T021500Z'),
    tool: strictObject({
        name: literal(TOOL_NAME),
        version: schemas_string().regex(SEMVER_RE, 'must be a version such as 0.1.0'),
    }),
    startedAt: iso_datetime(),
    finishedAt: iso_datetime(),
    host: strictObject({
        address: schemas_string().regex(HOST_RE, 'must be a host name or address'),
        port: schemas_number().int().min(1).max(65535),
        user: schemas_string().regex(USER_RE, 'must be a user name'),
        fingerprint: schemas_string().regex(FINGERPRINT_RE, 'must be SHA256:<43 base64 characters>'),
        hostRoot: absolutePath('host.hostRoot'),
    }),
    facts: hostFactsSchema,
    encryption: strictObject({
        format: literal('age'),
        recipients: array(schemas_string().regex(RECIPIENT_RE, 'must be an age recipient')).min(1),
    }),
    items: array(manifestItemSchema),
    /** The host RESTORE.sh rebuilds and the checks of its verify step, as configured at backup time. */
    rebuild: strictObject({
        host: hostShapeSchema,
        checks: array(strictObject({
            id: schemas_enum(CHECK_IDS),
            level: schemas_enum(['required', 'optional']),
        })),
    })
        .prefault({ host: {}, checks: [] }),
    skipped: array(strictObject({ id: schemas_string().regex(ITEM_ID_RE), reason: hostText(2000) })),
    restoreScript: strictObject({ key: schemas_string(), sha256: SHA256_HEX, bytes }),
});
/**
 * The manifest entry of one backed-up item: the config's item, the paths its plan took and
 * missed, and what was stored. The only place an item is built; the key order is the manifest's.
 */
function manifestItem(item, planned, stored) {
    return {
        id: item.id,
        description: item.description,
        paths: planned.paths,
        missingPaths: planned.missing,
        required: item.required,
        sudo: item.sudo,
        restoreTo: item['restore-to'],
        step: item.step,
        afterRestore: item['after-restore'],
        key: stored.key,
        compression: stored.compression,
        tarBytes: stored.tarBytes,
        archiveBytes: stored.archiveBytes,
        storedBytes: stored.stored.size,
        sha256: stored.stored.sha256,
        seconds: Math.round(stored.ms) / 1000,
    };
}
/**
 * The manifest of backup `backupId` under `prefix`, whole: every object it names is this backup's
 * own (`<prefix>/<id>/<item>.<ext>.age`, `<prefix>/<id>/RESTORE.sh`), ids are unique, and the id
 * is the start time.
 */
function manifestSchema(prefix) {
    return manifestFields.superRefine((m, ctx) => {
        const keys = backupKeys(prefix, m.backupId);
        const issue = (path, message) => ctx.addIssue({ code: 'custom', path, message });
        if (backupIdFor(new Date(m.startedAt)) !== m.backupId)
            issue(['startedAt'], `must be the time backup id ${m.backupId} names`);
        if (Date.parse(m.finishedAt) < Date.parse(m.startedAt))
            issue(['finishedAt'], 'must not be before startedAt');
        if (m.restoreScript.key !== keys.restoreScript)
            issue(['restoreScript', 'key'], `must be ${keys.restoreScript}`);
        const seen = new Set();
        m.items.forEach((item, i) => {
            const expected = keys.item(item.id, COMPRESSORS[item.compression].extension);
            if (item.key !== expected)
                issue(['items', i, 'key'], `must be ${expected}`);
            if (seen.has(item.id))
                issue(['items', i, 'id'], `duplicate item id ${item.id}`);
            seen.add(item.id);
        });
    });
}
const latestSchema = strictObject({
    backupId: schemas_string().regex(ID_RE),
    manifestKey: schemas_string(),
    finishedAt: iso_datetime(),
});
/** A stored manifest, checked; the error names the key and the first field that is wrong. */
function parseManifest(text, key, prefix) {
    let json;
    try {
        json = JSON.parse(text);
    }
    catch {
        throw new errors_OpsError(`${key} is not JSON`);
    }
    const parsed = manifestSchema(prefix).safeParse(json);
    if (!parsed.success)
        throw new errors_OpsError(`${key} is not a ${MANIFEST_FORMAT} manifest: ${schemaProblems(parsed.error)[0]}`);
    if (key !== backupKeys(prefix, parsed.data.backupId).manifest)
        throw new errors_OpsError(`${key} names backup ${parsed.data.backupId}: not its own manifest`);
    return parsed.data;
}
/** latest.json, when it is well formed and names a manifest of its own prefix. */
function parseLatest(text, prefix) {
    try {
        const parsed = latestSchema.safeParse(JSON.parse(text));
        if (!parsed.success)
            return undefined;
        return parsed.data.manifestKey === backupKeys(prefix, parsed.data.backupId).manifest
            ? parsed.data
            : undefined;
    }
    catch {
        return undefined;
    }
}

;// CONCATENATED MODULE: ./src/backup/signed-backup.ts
// Which backup a restore takes, and the proof that it is one: latest.json's or one by id, its
// manifest.json verified against config/backup-signers BEFORE it is even parsed, then parsed
// strictly. The drill and restore-host both select a backup this way.



/** The manifest and its signature, verified before the manifest is even parsed. */
async function readSignedManifest(store, select, where) {
    let key;
    if (select.backupId) {
        key = backupKeys(store.prefix, select.backupId).manifest;
    }
    else {
        const latest = await store.latest();
        if (!latest)
            throw new errors_OpsError(`no backup to ${select.purpose}: ${where}/latest.json is missing or unreadable`);
        key = latest.manifestKey;
    }
    const [text, signature] = await Promise.all([store.getText(key), store.getText(`${key}.sig`)]);
    if (text === undefined) {
        throw select.backupId
            ? new errors_InputError(select.input, select.backupId, `a backup under ${where} (it has no manifest.json)`)
            : new errors_OpsError(`latest.json names ${key}, which does not exist`);
    }
    verifyManifestSignature(Buffer.from(text), signature, select.signers, key);
    return { manifest: parseManifest(text, key, store.prefix), text, signature: signature ?? '' };
}
/** One of the identities must be the secret key of a recipient the backup was encrypted to. */
function checkIdentities(manifest, identities) {
    const recipients = manifest.encryption.recipients;
    if (!identities.some((i) => recipients.includes(i.recipient))) {
        throw new errors_InputError('age-identity', `<keys of ${identities.map((i) => i.recipient).join(', ')}>`, `the secret key of one of backup ${manifest.backupId}'s recipients: ${recipients.join(', ')}`);
    }
}

;// CONCATENATED MODULE: ./src/backup/store.ts
// The backups in the bucket: list them (a backup exists when its manifest does), read and move
// the latest pointer, write small objects, delete backups and leftovers.



/** The backups under one prefix of the bucket, on the one R2 store. */
class BackupStore {
    r2;
    prefix;
    constructor(r2, prefix) {
        this.r2 = r2;
        this.prefix = prefix;
    }
    static open(where, logger) {
        const { client, bucket, prefix, retry } = where;
        return new BackupStore(new R2Store({ client, bucket, logger, ...(retry ? { retry } : {}) }), prefix);
    }
    /** Every key under the prefix (paged, 1,000 a page). */
    listKeys(under = `${this.prefix}/`) {
        return this.r2.listKeys(under);
    }
    /** Backups by id (ids that are not timestamps are ignored: never ours to delete). */
    async listBackups() {
        const byId = new Map();
        for (const key of await this.listKeys()) {
            const [id, ...rest] = key.slice(this.prefix.length + 1).split('/');
            const time = id ? parseBackupId(id) : undefined;
            if (!id || !time || rest.length === 0)
                continue;
            const entry = byId.get(id) ?? { id, time, complete: false, keys: [] };
            entry.keys.push(key);
            if (rest.join('/') === 'manifest.json')
                entry.complete = true;
            byId.set(id, entry);
        }
        return [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
    }
    getText(key) {
        return this.r2.getText(key);
    }
    async latest() {
        const text = await this.getText(latestKey(this.prefix));
        return text === undefined ? undefined : parseLatest(text, this.prefix);
    }
    /** Writes a small object; `ifAbsent` refuses to overwrite (R2 answers 412). Returns its sha256. */
    async putSmall(key, body, contentType, ifAbsent = false) {
        await this.r2.put(key, body, { contentType, ifAbsent });
        return (0,external_node_crypto_.createHash)('sha256').update(body, 'utf8').digest('hex');
    }
    /** The sha256 and size of an object, read through (and written to `file` when given). */
    sha256Of(key, file) {
        return this.r2.sha256Of(key, file);
    }
    tryDelete(key) {
        return this.r2.tryDelete(key);
    }
    /**
     * Deletes a backup, its manifest first: once that is gone it no longer counts as a backup, and
     * its other objects are leftovers that a later run removes. A refused manifest stops there, so
     * no manifest ever names objects that are gone (an interrupted run leaves the same two states).
     * Other refusals are collected and the rest still deleted.
     */
    async deleteBackup(backup) {
        const manifest = backup.keys.filter((k) => k.endsWith('/manifest.json'));
        const result = { deleted: [], refused: [] };
        for (const key of [...manifest, ...backup.keys.filter((k) => !manifest.includes(k))]) {
            const refused = await this.tryDelete(key);
            if (refused)
                result.refused.push(refused);
            else
                result.deleted.push(key);
            if (refused && manifest.includes(key))
                break;
        }
        return result;
    }
    /** Aborts multipart uploads under the prefix started before `olderThan` (crashed runs). */
    async abortStaleUploads(olderThan) {
        const stale = (await this.r2.listUploads(`${this.prefix}/`)).filter((u) => u.initiated < olderThan);
        let aborted = 0;
        for (const u of stale)
            if (await this.r2.abortUpload(u))
                aborted++;
        return aborted;
    }
}

;// CONCATENATED MODULE: ./src/host/restore-host.ts
// restore-host: a backup restored onto a (fresh) host over SSH, the runbook's "copy the backup to
// the instance and run RESTORE.sh" as one step. On the runner the backup is selected and its
// manifest's signature verified (as the drill does); then RESTORE.sh, the manifest and its .sig
// and every item object are streamed from R2 over SSH into the work directory on the host (never
// onto the runner's disk), each stream's sha256 checked against the signed manifest on the way;
// only then is the age identity written there (0600) and RESTORE.sh run with --from, its output
// logged line by line. The identity always goes again, and the copied backup unless it is kept:
// a remote `trap` when RESTORE.sh ends (also when it fails), and a cleanup command on a new
// connection afterwards (also when the first one dropped), which fails loudly if it is still
// there.















/** A marker in the work directory: an existing directory without it is not ours to replace. */
const MARKER = '.comfyume-restore-host';
const IDENTITY = 'identity';
async function restoreHost(opts) {
    const { logger } = opts;
    const store = BackupStore.open({ client: opts.client, bucket: opts.bucket, prefix: opts.prefix, ...retryOf(opts) }, logger);
    const where = `s3://${opts.bucket}/${opts.prefix}`;
    const signed = await readSignedManifest(store, {
        ...(opts.backupId ? { backupId: opts.backupId } : {}),
        signers: opts.signers,
        input: 'backup',
        purpose: 'restore',
    }, where);
    const { manifest } = signed;
    checkIdentities(manifest, opts.identities);
    logger.info(`backup ${manifest.backupId} (finished ${manifest.finishedAt}, ${manifest.items.length} item(s)): signature verified`);
    // A wrong pin fails here, before anything is written on the host.
    const conn = await connectSsh({ ...opts.ssh, logger });
    const host = `${opts.ssh.username}@${conn.host}:${conn.port}`;
    logger.info(`connected to ${host} (host key ${conn.hostFingerprint})`);
    let remote;
    let outcome;
    let failure;
    const onAbort = () => void conn.close();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
        remote = await Remote.open(conn, opts.workDir);
        const r = remote;
        const copied = await logger.group(`Copy backup ${manifest.backupId} to ${host}:${opts.workDir}`, () => copyBackup(r, store, signed, opts));
        if (opts.signal?.aborted)
            throw new errors_OpsError('restore-host was cancelled');
        outcome = await logger.group(`RESTORE.sh on ${host}${opts.dryRun ? ' (dry run)' : ''}`, () => runRestore(r, opts, copied));
    }
    catch (err) {
        failure = opts.signal?.aborted ? new errors_OpsError('restore-host was cancelled') : err;
    }
    finally {
        opts.signal?.removeEventListener('abort', onAbort);
    }
    // The host's keys as it serves them now (the security step restores the backup's and restarts
    // sshd), read on the connection that is still pinned to the old ones.
    const served = remote && !remote.dropped ? await readHostKeys(conn).catch(() => []) : [];
    await conn.close().catch(() => undefined);
    const sudo = remote?.sudo;
    const cleanup = sudo === undefined
        ? undefined
        : await logger
            .group(`Remove the identity from ${host}`, () => cleanUp(opts, sudo, served, manifest))
            .catch((err) => (err instanceof Error ? err : new Error(String(err))));
    if (cleanup instanceof Error) {
        const message = `the age identity may still be on ${host} in ${opts.workDir}/${IDENTITY}: remove it by hand (rm -rf ${shell_shellQuote(opts.workDir)}). Cleanup failed: ${errors_errorMessage(cleanup)}`;
        if (failure !== undefined) {
            logger.error(message);
            throw failure;
        }
        throw new errors_OpsError(message);
    }
    if (failure !== undefined)
        throw failure;
    if (!outcome)
        throw new errors_OpsError('RESTORE.sh did not run');
    const dryRun = opts.dryRun ?? false;
    return {
        backupId: manifest.backupId,
        dryRun,
        ...outcome.parsed,
        copiedBytes: outcome.copied.bytes,
        copySeconds: outcome.copied.seconds,
        hostKeyFingerprints: dryRun ? [] : (cleanup?.fingerprints ?? []),
    };
}
const retryOf = (opts) => (opts.retry ? { retry: opts.retry } : {});
/** Commands on the host as root: directly when the user is root, else through `sudo -n`. */
class Remote {
    conn;
    workDir;
    sudo;
    dropped = false;
    constructor(conn, workDir, sudo) {
        this.conn = conn;
        this.workDir = workDir;
        this.sudo = sudo;
    }
    /** Checks root (or sudo -n) and makes the work directory, empty, 0700, with its marker. */
    static async open(conn, workDir) {
        const who = await conn.run('id -u; sudo -n true >/dev/null 2>&1 && echo sudo || echo no', {
            allowedExitCodes: [0],
        });
        const [uid, canSudo] = who.stdout.trim().split('\n');
        if (uid !== '0' && canSudo !== 'sudo')
            throw new errors_OpsError(`RESTORE.sh must run as root on ${conn.host}: the SSH user is not root (uid ${uid ?? '?'}) and 'sudo -n' is refused; use root or give the user passwordless sudo`);
        const remote = new Remote(conn, workDir, uid !== '0');
        const made = await conn.run(remote.command(PREPARE, [workDir, MARKER]), {
            allowedExitCodes: [0, 3],
        });
        if (made.code === 3)
            throw new errors_OpsError(`work-dir ${workDir} on ${conn.host} exists, is not empty and was not made by restore-host: choose another work-dir or remove it`);
        return remote;
    }
    command(script, args) {
        return asRoot(this.sudo, script, args);
    }
    /**
     * Writes `data`, or a stream through `through` (a hash on the way), to a file in the work
     * directory, mode 0600. A failed source errors the whole pipeline (not only its own stream).
     */
    async write(name, data, through) {
        const upload = this.conn.writeTo(this.command(WRITE, [`${this.workDir}/${name}`]));
        try {
            if (Buffer.isBuffer(data))
                upload.stdin.end(data);
            else if (through)
                await (0,external_node_stream_promises_namespaceObject.pipeline)(data, through, upload.stdin);
            else
                await (0,external_node_stream_promises_namespaceObject.pipeline)(data, upload.stdin);
        }
        catch (err) {
            // The remote `cat` got EOF: wait until it exited, so a retry does not overlap it.
            await upload.done.catch(() => undefined);
            throw err;
        }
        await upload.done;
    }
}
/** `bash -c SCRIPT` as root with its arguments quoted; the script is constant text. */
function asRoot(sudo, script, args) {
    return `${sudo ? 'sudo -n ' : ''}bash -c ${shell_shellQuote(script)} restore-host ${args.map(shell_shellQuote).join(' ')}`;
}
const PREPARE = bashText `set -eu
work=$1 marker=$2
if [ -e "$work" ] && [ ! -e "$work/$marker" ] && [ -n "$(ls -A -- "$work" 2>/dev/null)" ]; then exit 3; fi
rm -rf -- "$work"
umask 077
mkdir -p -- "$work/backup"
chmod 700 -- "$work"
: >"$work/$marker"`;
const WRITE = bashText `umask 077
cat >"$1"`;
/** RESTORE.sh, run so that the identity goes whatever happens; its stderr joins its stdout. */
const restore_host_RUN = bashText `work=$1 keep=$2 identity=$3
shift 3
cleanup() {
  rm -f -- "$work/$identity"
  if [ "$keep" != 1 ]; then rm -rf -- "$work"; fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE
cd -- "$work" || exit 1
bash "$work/RESTORE.sh" --signers "$work/signers" --identity "$work/$identity" --from "$work/backup" "$@" </dev/null 2>&1`;
/** The same, from the runner afterwards; prints what is left (nothing, or the kept backup). */
const CLEANUP = bashText `work=$1 keep=$2 identity=$3
rm -f -- "$work/$identity"
if [ "$keep" != 1 ]; then rm -rf -- "$work"; fi
if [ -e "$work/$identity" ]; then echo identity; fi
if [ -e "$work" ]; then echo work; fi
exit 0`;
/**
 * RESTORE.sh and every item from R2 to the host, through a sha256 on the runner (a mismatch
 * fails before RESTORE.sh runs anything); the manifest and its .sig as verified; the signers.
 */
async function copyBackup(remote, store, signed, opts) {
    const { manifest } = signed;
    const started = Date.now();
    let bytes = 0;
    const keys = backupKeys(store.prefix, manifest.backupId);
    await remote.write(`backup/${baseName(keys.manifest)}`, Buffer.from(signed.text));
    await remote.write(`backup/${baseName(keys.signature)}`, Buffer.from(signed.signature));
    await remote.write('signers', Buffer.from(opts.signersText));
    const objects = [
        { what: 'RESTORE.sh', name: 'RESTORE.sh', ...manifest.restoreScript },
        ...manifest.items.map((i) => ({
            what: i.id,
            name: `backup/${baseName(i.key)}`,
            key: i.key,
            sha256: i.sha256,
            bytes: i.storedBytes,
        })),
    ];
    for (const object of objects) {
        bytes += await streamObject(remote, store, object, opts);
        if (opts.signal?.aborted)
            break;
    }
    const seconds = (Date.now() - started) / 1000;
    opts.logger.info(`copied ${objects.length} object(s), ${bytes} bytes, to ${remote.workDir} in ${seconds.toFixed(1)} s`);
    return { bytes, seconds };
}
const baseName = (key) => key.slice(key.lastIndexOf('/') + 1);
/** One object from R2 into a file on the host, hashed on the way; retried from its start. */
async function streamObject(remote, store, object, opts) {
    let got = { sha256: '', bytes: 0 };
    await retry(async () => {
        const { body } = await store.r2.openRead(object.key);
        const hash = (0,external_node_crypto_.createHash)('sha256');
        let n = 0;
        const hashing = new external_node_stream_.Transform({
            transform(chunk, _enc, cb) {
                hash.update(chunk);
                n += chunk.length;
                cb(null, chunk);
            },
        });
        await remote.write(object.name, body, hashing);
        got = { sha256: hash.digest('hex'), bytes: n };
    }, {
        ...R2_RETRY,
        ...opts.retry,
        // A failed read from R2 is sent again from the start (`cat >` truncates); an SSH failure
        // (an OpsError) is not retried.
        retryable: (err) => !(err instanceof errors_OpsError) &&
            (isRetryableS3Error(err) ||
                /premature|aborted|terminated|socket|ECONNRESET/i.test(errors_errorMessage(err))),
        onRetry: ({ err, attempt }) => opts.logger.warn(`${object.what}: copy attempt ${attempt} failed (${errors_errorMessage(err)}); sending it again`),
    }).catch((err) => {
        throw err instanceof errors_OpsError
            ? err
            : new errors_OpsError(`R2 read of ${object.key} failed: ${errors_errorMessage(err)}`);
    });
    if (got.sha256 !== object.sha256)
        throw new errors_OpsError(`${object.what} (${object.key}) does not match the signed manifest: sha256 ${got.sha256}, recorded ${object.sha256}; nothing was restored`);
    opts.logger.info(`${object.what}: ${got.bytes} bytes copied, sha256 matches the manifest`);
    return got.bytes;
}
/** Writes the identity, runs RESTORE.sh (output line by line to the log), parses its result. */
async function runRestore(remote, opts, copied) {
    const { logger } = opts;
    await remote.write(IDENTITY, Buffer.from(`${opts.identities.map((i) => i.identity).join('\n')}\n`));
    const args = [remote.workDir, opts.keepBackup ? '1' : '0', IDENTITY, ...restoreArgs(opts)];
    logger.info(`running RESTORE.sh ${restoreArgs(opts).join(' ')}`.trimEnd());
    const exec = remote.conn.exec(remote.command(restore_host_RUN, args), {
        allowedExitCodes: Array.from({ length: 256 }, (_, i) => i),
    });
    const lines = [];
    let pending = '';
    const take = (line) => {
        lines.push(line);
        logger.info(line);
    };
    exec.stdout.setEncoding('utf8');
    exec.stdout.on('data', (text) => {
        const parts = (pending + text).split('\n');
        pending = parts.pop() ?? '';
        for (const line of parts)
            take(line);
    });
    let code;
    try {
        code = (await exec.done).code;
    }
    catch (err) {
        remote.dropped = true;
        if (pending)
            take(pending);
        const step = failedStep(lines);
        // The command's text (the wrapper script) says nothing to the reader: only why it ended.
        const why = errors_errorMessage(err).replace(/ \((?:sudo -n )?bash -c [\s\S]*$/, '');
        throw new errors_OpsError(`RESTORE.sh did not finish${step ? ` (in step ${step})` : ''}: ${why}${tailOf(lines)}`);
    }
    if (pending)
        take(pending);
    if (code !== 0) {
        const step = failedStep(lines);
        throw new errors_OpsError(`RESTORE.sh failed${step ? ` in step ${step}` : ' before its first step'} (exit code ${code})${tailOf(lines)}`);
    }
    return { copied, parsed: parseRestoreOutput(lines) };
}
function restoreArgs(opts) {
    const args = [];
    if (opts.modelsMount)
        args.push('--models-mount', opts.modelsMount);
    if (opts.scratchMount)
        args.push('--scratch-mount', opts.scratchMount);
    if (opts.ohmyzshRepo)
        args.push('--ohmyzsh-repo', opts.ohmyzshRepo);
    for (const step of opts.onlySteps ?? [])
        args.push('--only', step);
    for (const step of opts.skipSteps ?? [])
        args.push('--skip', step);
    if (opts.dryRun)
        args.push('--dry-run');
    return args;
}
const STEP_START = /^== (\w+): /;
const STEP_END = /^== (\w+): \d+ change\(s\), \d+\.\d{3} s$/;
/** The step RESTORE.sh began ("== step: title") and did not end ("== step: N change(s), ..."). */
function failedStep(lines) {
    let current;
    for (const line of lines) {
        const end = STEP_END.exec(line);
        if (end) {
            if (end[1] === current)
                current = undefined;
            continue;
        }
        const start = STEP_START.exec(line);
        if (start)
            current = start[1];
    }
    return current;
}
const TAIL_LINES = 12;
const tailOf = (lines) => {
    const tail = lines.filter((l) => l.trim() !== '').slice(-TAIL_LINES);
    return tail.length > 0 ? `; its last lines:\n${tail.join('\n')}` : '; it printed nothing';
};
const digits = schemas_string()
    .regex(/^\d{1,12}$/)
    .transform(Number);
const stepLineSchema = tuple([literal('STEP'), schemas_enum(RESTORE_STEPS), digits, digits]);
const DONE_RE = /^RESTORE\.sh: done, (\d+) change\(s\)(?: that would be made)? in (\d+)\.(\d{3}) s(?: \(the restore time\))?$/;
/**
 * RESTORE.sh's result, strictly: every `STEP\t<step>\t<changes>\t<ms>` line well formed, each
 * step once and in RESTORE.sh's order, and the done line's total equal to their sum.
 */
function parseRestoreOutput(lines) {
    const steps = [];
    let done;
    for (const line of lines) {
        if (line.startsWith('STEP')) {
            const parsed = stepLineSchema.safeParse(line.split('\t'));
            if (!parsed.success)
                throw new errors_OpsError(`RESTORE.sh printed ${JSON.stringify(line.slice(0, 200))}: expected STEP<tab><one of ${RESTORE_STEPS.join(', ')}><tab><changes><tab><milliseconds>`);
            const [, step, changes, ms] = parsed.data;
            const last = steps[steps.length - 1];
            if (last && RESTORE_STEPS.indexOf(step) <= RESTORE_STEPS.indexOf(last.step))
                throw new errors_OpsError(`RESTORE.sh reported step ${step} after ${last.step}: out of order`);
            steps.push({ step, changes, seconds: ms / 1000 });
            continue;
        }
        const m = DONE_RE.exec(line);
        if (m)
            done = { changes: Number(m[1]), seconds: Number(m[2]) + Number(m[3]) / 1000 };
    }
    if (!done)
        throw new errors_OpsError('RESTORE.sh exited 0 without its "RESTORE.sh: done, ..." line');
    if (steps.length === 0)
        throw new errors_OpsError('RESTORE.sh exited 0 without a STEP line');
    const sum = steps.reduce((n, s) => n + s.changes, 0);
    if (sum !== done.changes)
        throw new errors_OpsError(`RESTORE.sh reported ${done.changes} change(s) in total but ${sum} in its STEP lines`);
    return { steps, changes: done.changes, restoreSeconds: done.seconds };
}
const HOST_KEY_LINE = schemas_string()
    .regex(/^(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) [A-Za-z0-9+/]{40,1000}={0,2}(?: .{0,200})?$/);
/** The fingerprints of the host keys in /etc/ssh, read on the host; odd lines are ignored. */
async function readHostKeys(conn) {
    const { stdout } = await conn.run('cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null; exit 0');
    return [
        ...new Set(stdout
            .split('\n')
            .slice(0, 20)
            .filter((line) => HOST_KEY_LINE.safeParse(line.trim()).success)
            .map((line) => fingerprintSha256(Buffer.from(line.trim().split(' ')[1] ?? '', 'base64')))),
    ];
}
/**
 * The cleanup command on a new connection, pinned to the given keys or those the host served
 * after the restore (or, when the first connection dropped and they could not be read, the key
 * the backup was taken through). Returns the served keys, the one presented among them.
 */
async function cleanUp(opts, sudo, served, manifest) {
    const pins = [...new Set([...opts.ssh.fingerprints, ...served, manifest.host.fingerprint])];
    const conn = await connectSsh({ ...opts.ssh, fingerprints: pins, logger: opts.logger });
    try {
        const keep = opts.keepBackup ? '1' : '0';
        const command = asRoot(sudo, CLEANUP, [opts.workDir, keep, IDENTITY]);
        const left = (await conn.run(command)).stdout.split('\n');
        if (left.includes('identity'))
            throw new errors_OpsError(`${opts.workDir}/${IDENTITY} is still there after rm`);
        if (!opts.keepBackup && left.includes('work'))
            throw new errors_OpsError(`${opts.workDir} is still there after rm -rf`);
        opts.logger.info(`removed the identity${opts.keepBackup ? ` (the backup is kept in ${opts.workDir})` : ` and ${opts.workDir}`} from the host`);
        if (served.length > 0 && !served.includes(conn.hostFingerprint))
            throw new errors_OpsError(`after the restore ${conn.host} presents host key ${conn.hostFingerprint}, which is not one of its keys in /etc/ssh (${served.join(', ')})`);
        return { fingerprints: served.length > 0 ? served : [conn.hostFingerprint] };
    }
    finally {
        await conn.close().catch(() => undefined);
    }
}
/** The job summary: one row per step with its changes and seconds, then the total. */
function restoreHostReport(result, opts) {
    const verb = result.dryRun ? 'would change' : 'changed';
    return [
        `## ${result.dryRun ? 'Restore dry run' : 'Restore'} of backup ${result.backupId} onto ${opts.host}: ${result.changes} change(s)${result.dryRun ? ' that would be made' : ''} in ${result.restoreSeconds.toFixed(1)} s`,
        {
            title: 'RESTORE.sh steps',
            headers: ['Step', `Changes (${verb})`, 'Seconds'],
            rows: [
                ...result.steps.map((s) => [s.step, String(s.changes), s.seconds.toFixed(1)]),
                ['**total**', `**${result.changes}**`, `**${result.restoreSeconds.toFixed(1)}**`],
            ],
        },
        factsTable('Restore', [
            ['backup id', result.backupId],
            [
                'copied to the host',
                `${formatBytes(result.copiedBytes)} in ${result.copySeconds.toFixed(1)} s (sha256 checked against the signed manifest)`,
            ],
            ['host keys after the restore', result.hostKeyFingerprints.join(', ') || '- (dry run)'],
        ]),
    ];
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
        port.fail(errors_errorMessage(err));
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
        throw new errors_InputError('r2-timeout', inputs.raw('r2-timeout'), 'a duration of at least 1s');
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
        throw new errors_InputError(input, value, expected);
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

;// CONCATENATED MODULE: ./src/lib/age-stream.ts
// age encryption of a Node stream. X25519 recipients (age1...) are encrypted natively (OpenSSL's
// X25519, HKDF and ChaCha20-Poly1305 through node:crypto, ~10× the pure-JS speed); other
// recipient types (post-quantum hybrid, tags) go through the age-encryption package (typage),
// which is loaded only for them (about 6 MiB of RSS a nightly run with X25519 keys does not pay).
// Either way the output is a standard age v1 file: `age -d -i key` decrypts it (tests check).



const EXPECTED = 'age public keys (age1...), one per line';
const CHUNK = 64 * 1024;
const loadAge = () => __nccwpck_require__.e(/* import() */ 855).then(__nccwpck_require__.bind(__nccwpck_require__, 855));
/**
 * Validates recipients: X25519 keys by their bech32 checksum and length, any other kind by
 * age-encryption's own parser. A pasted secret key is never echoed.
 */
async function parseRecipients(input, values) {
    if (values.length === 0)
        throw new InputError(input, '', EXPECTED);
    for (const value of values) {
        if (/^AGE-SECRET-KEY-/i.test(value)) {
            throw new InputError(input, '<redacted>', `${EXPECTED}: this is a secret identity, give its public key (age-keygen -y)`);
        }
        // bech32 is one case; age refuses upper and mixed case, so a key that age would not take
        // never reaches a backup.
        if (/^age1/i.test(value) && value !== value.toLowerCase()) {
            throw new InputError(input, value, `${EXPECTED}: age1 recipients are all lower case (age refuses upper and mixed case)`);
        }
        const key = x25519RecipientKey(value);
        if (key) {
            if (isLowOrderX25519(key)) {
                throw new InputError(input, value, `${EXPECTED}: this is a low-order X25519 point, which any reader could decrypt (age refuses it); give the key age-keygen -y prints`);
            }
            continue;
        }
        try {
            new (await loadAge()).Encrypter().addRecipient(value);
        }
        catch (err) {
            throw new InputError(input, value, `${EXPECTED} (${err.message})`);
        }
    }
    return [...new Set(values)];
}
/**
 * age identities (secret keys) from an input: one per line, `#` comment and blank lines skipped,
 * so a whole key file can be pasted. Returns each with its public recipient. Never echoes a key.
 */
async function parseIdentities(input, text) {
    const expected = 'age secret keys (AGE-SECRET-KEY-1...), one per line, as age-keygen writes them';
    const lines = text
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('#'));
    if (lines.length === 0)
        throw new errors_InputError(input, '', expected);
    const { identityToRecipient } = await loadAge();
    const out = [];
    for (const [i, identity] of lines.entries()) {
        if (/^age1/i.test(identity))
            throw new errors_InputError(input, identity, `${expected}: this is a public key (a recipient)`);
        try {
            if (!/^AGE-SECRET-KEY-/.test(identity))
                throw new Error('not an age secret key');
            out.push({ identity, recipient: await identityToRecipient(identity) });
        }
        catch {
            throw new errors_InputError(input, `<line ${i + 1} redacted>`, expected);
        }
    }
    return out;
}
const BECH32 = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
function bech32Polymod(values) {
    const gen = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let chk = 1;
    for (const v of values) {
        const top = chk >>> 25;
        chk = ((chk & 0x1ffffff) << 5) ^ v;
        for (let i = 0; i < 5; i++)
            if ((top >>> i) & 1)
                chk ^= gen[i] ?? 0;
    }
    return chk >>> 0;
}
/**
 * The 32-byte X25519 public key of an `age1...` recipient, or undefined for other types. Lower
 * case only, as age takes it (parseRecipients refuses upper and mixed case with its own error).
 */
function x25519RecipientKey(recipient) {
    if (!/^age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}$/.test(recipient))
        return undefined;
    const data = [...recipient.slice(4)].map((c) => BECH32.indexOf(c));
    const hrp = [...'age'].map((c) => c.charCodeAt(0));
    const expanded = [...hrp.map((c) => c >> 5), 0, ...hrp.map((c) => c & 31)];
    if (bech32Polymod([...expanded, ...data]) !== 1)
        return undefined;
    let acc = 0;
    let bits = 0;
    const out = [];
    for (const v of data.slice(0, -6)) {
        acc = (acc << 5) | v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out.push((acc >> bits) & 0xff);
        }
    }
    return out.length === 32 ? Buffer.from(out) : undefined;
}
const x25519PublicKey = (raw) => createPublicKey({
    key: { kty: 'OKP', crv: 'X25519', x: raw.toString('base64url') },
    format: 'jwk',
});
/**
 * A small-order point (the all-zero key, 1, the two points of order 8, p-1, and their
 * non-canonical encodings): X25519 with it is all zeros whatever the scalar. OpenSSL refuses to
 * derive from it; a build that does not gives zeros. Either way it is refused.
 */
function isLowOrderX25519(raw) {
    const publicKey = x25519PublicKey(raw);
    const { privateKey } = generateKeyPairSync('x25519');
    try {
        return diffieHellman({ privateKey, publicKey }).every((b) => b === 0);
    }
    catch {
        return true;
    }
}
const b64 = (data) => data.toString('base64').replace(/=+$/, '');
const hkdf = (ikm, salt, info) => Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));
function sealChaCha(key, nonce, plaintext) {
    const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}
/** A stanza body: base64 without padding, wrapped at 64 columns, last line always shorter. */
function wrapBody(body) {
    const text = b64(body);
    const lines = [];
    for (let i = 0; i <= text.length; i += 64)
        lines.push(text.slice(i, i + 64));
    return lines.join('\n');
}
function x25519Stanza(fileKey, recipient) {
    const rawPublic = (key) => Buffer.from(key.export({ format: 'jwk' }).x, 'base64url');
    const ephemeral = generateKeyPairSync('x25519');
    const share = rawPublic(ephemeral.publicKey);
    const shared = diffieHellman({
        privateKey: ephemeral.privateKey,
        publicKey: x25519PublicKey(recipient),
    });
    if (shared.every((b) => b === 0))
        throw new Error('age recipient is a low-order X25519 point');
    const wrapKey = hkdf(shared, Buffer.concat([share, recipient]), 'age-encryption.org/v1/X25519');
    const body = sealChaCha(wrapKey, Buffer.alloc(12), fileKey);
    return `-> X25519 ${b64(share)}\n${wrapBody(body)}\n`;
}
/** age's STREAM: 64 KiB chunks, nonce = 11-byte counter + last-chunk flag. */
class StreamEncryptor extends external_node_stream_.Transform {
    key;
    buffer = Buffer.allocUnsafe(CHUNK);
    filled = 0;
    counter = 0n;
    constructor(key, prefix) {
        super();
        this.key = key;
        this.push(prefix); // header and payload nonce come first
    }
    /** Pushes one sealed chunk as ciphertext then tag (not joined: one 64 KiB copy less each). */
    seal(plaintext, last) {
        const nonce = Buffer.alloc(12);
        nonce.writeBigUInt64BE(this.counter & 0xffffffffffffffffn, 3);
        nonce[11] = last ? 1 : 0;
        this.counter++;
        const cipher = (0,external_node_crypto_.createCipheriv)('chacha20-poly1305', this.key, nonce, { authTagLength: 16 });
        this.push(cipher.update(plaintext));
        cipher.final();
        this.push(cipher.getAuthTag());
    }
    _transform(chunk, _enc, done) {
        let data = chunk;
        while (data.length > 0) {
            // A full buffer is sealed as non-final only once more data arrives.
            if (this.filled === CHUNK) {
                this.seal(this.buffer, false);
                this.filled = 0;
            }
            const n = Math.min(CHUNK - this.filled, data.length);
            data.copy(this.buffer, this.filled, 0, n);
            this.filled += n;
            data = data.subarray(n);
        }
        done();
    }
    _flush(done) {
        this.seal(this.buffer.subarray(0, this.filled), true);
        done();
    }
}
/** Native age encryption to X25519 recipients: header, payload nonce, STREAM. */
function encryptX25519Stream(recipients, source) {
    const fileKey = randomBytes(16);
    let header = 'age-encryption.org/v1\n';
    for (const r of recipients)
        header += x25519Stanza(fileKey, r);
    header += '---';
    const mac = createHmac('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
        .update(header)
        .digest();
    const nonce = randomBytes(16);
    const prefix = Buffer.concat([Buffer.from(`${header} ${b64(mac)}\n`), nonce]);
    const encryptor = new StreamEncryptor(hkdf(fileKey, nonce, 'payload'), prefix);
    pipeline(source, encryptor, () => { });
    return encryptor;
}
/** Encrypts `source` to every recipient; errors of the source surface on the returned stream. */
async function encryptStream(recipients, source) {
    const keys = recipients.map(x25519RecipientKey);
    if (keys.every((k) => k !== undefined))
        return encryptX25519Stream(keys, source);
    const encrypter = new (await loadAge()).Encrypter();
    for (const r of recipients)
        encrypter.addRecipient(r);
    const web = Readable.toWeb(source);
    const encrypted = await encrypter.encrypt(web);
    return Readable.fromWeb(encrypted);
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
            throw new errors_InputError(name, value, expected);
        return value;
    }
    /** A required input whose value is a secret: the error never repeats what was given. */
    secret(name, expected = 'a non-empty secret') {
        const value = this.raw(name);
        if (value === '')
            throw new errors_InputError(name, '', expected);
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
            throw new errors_InputError(name, value, expected);
        const n = Number(value);
        if (!Number.isSafeInteger(n) || n < min || n > max)
            throw new errors_InputError(name, value, expected);
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
            throw new errors_InputError(name, value, `a number from ${min} to ${max}`);
        }
        return n;
    }
    oneOf(name, allowed, fallback) {
        const value = this.raw(name);
        if (value === '' && fallback !== undefined)
            return fallback;
        const known = allowed.find((a) => a === value);
        if (known === undefined)
            throw new errors_InputError(name, value, `one of ${allowed.join(', ')}`);
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
        throw new errors_InputError(name, value, 'true or false');
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
            throw new errors_InputError(name, value, `a duration such as 90s, 15m or 1h30m, at most ${MAX_DURATION_TEXT} (${MAX_DURATION_MS} ms)`);
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
            throw new errors_InputError(name, value, expected);
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

;// CONCATENATED MODULE: ./src/actions/shared/ssh-inputs.ts
// The GPU host as an action names it: host, port, user, ssh-private-key, host-key-fingerprints.
// Checked before anything connects; the key is refused when it is not a private key.


const ssh_inputs_HOST_RE = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$/;
const ssh_inputs_USER_RE = /^[a-z_][a-z0-9_.-]{0,31}$/i;
/** `prefix` names another host's inputs (deploy-serverless: `vps-host`, `vps-user`, ...). */
function parseSshTarget(inputs, prefix = '') {
    const n = (name) => `${prefix}${name}`;
    const host = inputs.required(n('host'), 'the host name or address');
    if (!ssh_inputs_HOST_RE.test(host))
        throw new errors_InputError(n('host'), host, 'a host name or IP address');
    const port = inputs.int(n('port'), { min: 1, max: 65535, default: 22 });
    const username = inputs.required(n('user'), 'the SSH user on the host');
    if (!ssh_inputs_USER_RE.test(username))
        throw new errors_InputError(n('user'), username, 'a Unix user name');
    const privateKey = checkPrivateKey(n('ssh-private-key'), inputs.secret(n('ssh-private-key'), 'the private key of the SSH user (OpenSSH format)'));
    const fingerprints = parseFingerprints(n('host-key-fingerprints'), inputs.list(n('host-key-fingerprints')));
    return { host, port, username, privateKey, fingerprints };
}

;// CONCATENATED MODULE: ./src/actions/restore-host/inputs.ts











/** The secret inputs, masked before anything else happens. */
const SECRET_INPUTS = [
    { name: 'age-identity', lines: /^AGE-SECRET-KEY-/i },
    'r2-access-key-id',
    'r2-secret-access-key',
    'ssh-private-key',
];
const DEFAULT_WORK_DIR = '/root/comfyume-restore';
// Two levels at least: the directory is replaced and removed as root.
const WORK_DIR_RE = /^(?:\/[A-Za-z0-9._-]+){2,}$/;
const MOUNT_RE = /^[^\s-]\S* \S+(?: \S+)?$/;
const GIT_URL_RE = /^(?:(?:https?|ssh|git|file):\/\/|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:)\S+$/;
function steps(inputs, name) {
    return inputs.list(name).map((step) => {
        const known = RESTORE_STEPS.find((s) => s === step);
        if (!known)
            throw new errors_InputError(name, step, `steps of RESTORE.sh, comma separated: ${RESTORE_STEPS.join(', ')}`);
        return known;
    });
}
function mount(inputs, name) {
    const value = inputs.optional(name);
    if (value !== undefined &&
        (!MOUNT_RE.test(value) || value.length > 1000 || hasControlChars(value)))
        throw new errors_InputError(name, value, "'SOURCE FSTYPE [OPTIONS]' as fstab has it, e.g. '/dev/vdb ext4' or 'nfs.verda:/share nfs rw'");
    return value;
}
/** Every input checked before any request or connection (each error names the input and value). */
async function parseRestoreHostInputs(source, cwd = process.cwd()) {
    const inputs = new Inputs(source);
    const bucket = validateBucketName('bucket', inputs.required('bucket', 'an R2 bucket name'));
    const prefix = parsePrefix('prefix', inputs.raw('prefix') || 'backups/verda');
    const access = parseR2Access(inputs);
    const backup = inputs.raw('backup') || 'latest';
    if (backup !== 'latest' && !parseBackupId(backup))
        throw new errors_InputError('backup', backup, "'latest' or a backup id such as 20261128T021500Z");
    const identities = await parseIdentities('age-identity', inputs.raw('age-identity'));
    const ssh = parseSshTarget(inputs);
    const workDir = inputs.raw('work-dir') || DEFAULT_WORK_DIR;
    if (!WORK_DIR_RE.test(workDir) || workDir.split('/').some((p) => p === '.' || p === '..'))
        throw new errors_InputError('work-dir', workDir, 'an absolute directory at least two levels deep, such as /root/comfyume-restore (letters, digits, . _ -)');
    const onlySteps = steps(inputs, 'only-steps');
    const skipSteps = steps(inputs, 'skip-steps');
    const ohmyzshRepo = inputs.optional('ohmyzsh-repo');
    if (ohmyzshRepo !== undefined && !GIT_URL_RE.test(ohmyzshRepo))
        throw new errors_InputError('ohmyzsh-repo', ohmyzshRepo, 'a git URL such as https://github.com/ohmyzsh/ohmyzsh.git');
    return {
        bucket,
        prefix,
        ...access,
        backupId: backup === 'latest' ? undefined : backup,
        identities,
        signersFile: external_node_path_default().resolve(cwd, inputs.raw('signers') || DEFAULT_SIGNERS_FILE),
        ssh,
        workDir,
        keepBackup: inputs.boolean('keep-backup', false),
        modelsMount: mount(inputs, 'models-mount'),
        scratchMount: mount(inputs, 'scratch-mount'),
        onlySteps,
        skipSteps,
        ohmyzshRepo,
        dryRun: inputs.boolean('dry-run', false),
    };
}

;// CONCATENATED MODULE: ./src/actions/restore-host/main.ts





async function run(port) {
    await runAction(port, async () => {
        maskSecretInputs(port, SECRET_INPUTS);
        const inputs = await parseRestoreHostInputs(port.input);
        const { text: signersText, signers } = await loadAllowedSigners(inputs.signersFile);
        const client = actionR2Client(inputs);
        // A cancelled run (the runner sends SIGINT, then SIGTERM) still removes the identity.
        const cancel = new AbortController();
        for (const signal of ['SIGINT', 'SIGTERM'])
            process.once(signal, () => cancel.abort());
        const result = await restoreHost({
            client,
            bucket: inputs.bucket,
            prefix: inputs.prefix,
            ...(inputs.backupId ? { backupId: inputs.backupId } : {}),
            identities: inputs.identities,
            signers,
            signersText,
            ssh: inputs.ssh,
            workDir: inputs.workDir,
            keepBackup: inputs.keepBackup,
            ...(inputs.modelsMount ? { modelsMount: inputs.modelsMount } : {}),
            ...(inputs.scratchMount ? { scratchMount: inputs.scratchMount } : {}),
            onlySteps: inputs.onlySteps,
            skipSteps: inputs.skipSteps,
            ...(inputs.ohmyzshRepo ? { ohmyzshRepo: inputs.ohmyzshRepo } : {}),
            dryRun: inputs.dryRun,
            signal: cancel.signal,
            logger: port.logger,
        });
        setOutputs(port, {
            'backup-id': result.backupId,
            changes: result.changes,
            'restore-seconds': result.restoreSeconds.toFixed(1),
            steps: JSON.stringify(result.steps),
            'restored-host-key-fingerprints': result.hostKeyFingerprints.join(','),
        });
        await writeSummary(port, restoreHostReport(result, { host: inputs.ssh.host }));
    });
}


/***/ })

};
