export const modules = {

3480:
/***/ ((__unused_webpack_module, __webpack_exports__, __webpack_require__) => {


// EXPORTS
__webpack_require__.d(__webpack_exports__, {
  run: () => (/* binding */ run)
});

// EXTERNAL MODULE: ./node_modules/zod/v4/classic/schemas.js + 11 modules
var schemas = __webpack_require__(2857);
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

;// CONCATENATED MODULE: ./src/lib/schema.ts

function issuePath(path) {
    if (path.length === 0)
        return '(top level)';
    return path
        .map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`))
        .join('');
}
/** One line per problem of a failed parse; unknown keys are named. */
function schema_schemaProblems(error) {
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
    throw new errors_ConfigError(file, schema_schemaProblems(result.error));
}

// EXTERNAL MODULE: external "node:fs/promises"
var promises_ = __webpack_require__(1455);
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
            : errors_errorMessage(err);
        throw new errors_ConfigError(file, [`cannot be read: ${code}`]);
    }
    return yaml_file_parseYamlText(file, text);
}
/** YAML text of `file` (read elsewhere, e.g. from git): invalid YAML is a ConfigError naming it. */
function yaml_file_parseYamlText(file, text) {
    try {
        const data = (0,dist/* parse */.qg)(text, { prettyErrors: true });
        return data;
    }
    catch (err) {
        throw new errors_ConfigError(file, [`not valid YAML: ${errors_errorMessage(err).split('\n')[0]}`]);
    }
}

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
function safe_path_resolveInside(root, rel, what = 'path', p = (external_node_path_default())) {
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
    return schemas/* string */.YjP().superRefine((value, ctx) => {
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
const hostPort = schemas/* string */.YjP()
    .regex(HOST_PORT_RE, 'must be host:port, such as 100.99.216.71:6379')
    .refine((v) => Number(v.split(':')[1]) <= 65535, 'port must be at most 65535');
const hostShapeSchema = schemas/* strictObject */.rej({
    /** The dev user: created with the uid, gid and groups recorded at backup time when free. */
    user: schemas/* string */.YjP().regex(UNIX_NAME_RE, 'must be a Unix user name such as dev').default('dev'),
    /** The login shell's program name; RESTORE.sh installs it and sets it. */
    shell: schemas/* enum */.k5n(['zsh', 'bash']).default('zsh'),
    home: absolutePath('home').default('/home/dev'),
    /** The ComfyUI project (docker compose file inside) and its .env. */
    project: absolutePath('project').default('/home/dev/comfy-multi'),
    'env-file': absolutePath('env-file').default('/home/dev/comfy-multi/.env'),
    /** Where the shared filesystem (models) and the block device (scratch) are mounted. */
    mounts: schemas/* strictObject */.rej({
        models: absolutePath('mounts.models').default('/mnt/models'),
        scratch: absolutePath('mounts.scratch').default('/mnt/scratch'),
    })
        .prefault({}),
    /** Symlink \u2192 target, the seed's data/models, data/outputs, data/inputs. */
    links: schemas/* record */.g1P(absolutePath('link'), absolutePath('link target')).default({}),
    /** Free space each mount must have, in MiB (verify-host). */
    'min-free-mib': schemas/* number */.aig().int().nonnegative().default(1024),
    /** The VPS Redis the host's queue talks to (the seed's 100.99.216.71:6379). */
    redis: hostPort.optional(),
    /** The Tailscale IP the host must have; RESTORE.sh takes the backup's own. */
    'tailscale-ip': schemas/* ipv4 */.uXy().optional(),
    /** oh-my-zsh theme that .zshrc must name (and that custom/themes must hold). */
    'zsh-theme': schemas/* string */.YjP()
        .regex(/^[A-Za-z0-9_.-]{1,64}$/)
        .default('bullet-train'),
    /** Containers that must be running (docker ps names). */
    containers: schemas/* array */.YOg(schemas/* string */.YjP().regex(CONTAINER_RE, 'must be a container name')).default([]),
    /** Where ComfyUI answers on the host. */
    'comfyui-url': schemas/* url */.OZ5({ protocol: /^https?$/ })
        .refine((u) => !/[\s'"\\]/.test(u), 'must not contain quotes, backslashes or spaces')
        .default('http://127.0.0.1:8188'),
    /** A small ComfyUI workflow (API format, JSON) on the host that verify-host queues and waits for. */
    'test-workflow': absolutePath('test-workflow').optional(),
    'test-workflow-timeout-s': schemas/* number */.aig().int().min(1).max(3600).default(300),
    /** Packages the packages step installs (docker and tailscale come on their own). */
    packages: schemas/* array */.YOg(schemas/* string */.YjP().regex(PACKAGE_RE, 'must be a Debian package name'))
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
function redisAddress(shape) {
    const m = shape.redis ? HOST_PORT_RE.exec(shape.redis) : null;
    return m?.groups ? { host: m.groups.host ?? '', port: Number(m.groups.port) } : undefined;
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
const excludePattern = schemas/* string */.YjP().superRefine((value, ctx) => {
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
const itemSchema = schemas/* strictObject */.rej({
    id: schemas/* string */.YjP().regex(ITEM_ID_RE, 'id must be 1-63 lowercase letters, digits and hyphens'),
    description: schemas/* string */.YjP().default(''),
    paths: schemas/* array */.YOg(absolutePath('path', { glob: true })).min(1, 'paths needs at least one path'),
    exclude: schemas/* array */.YOg(excludePattern).default([]),
    /** A missing required item fails the backup; a missing optional one is a warning. */
    required: schemas/* boolean */.zMY().default(true),
    /** Root-owned: read through `sudo -n <read-wrapper>`. */
    sudo: schemas/* boolean */.zMY().default(false),
    /** Where RESTORE.sh extracts the archive (members are paths relative to the host root). */
    'restore-to': absolutePath('restore-to').default('/'),
    /** The RESTORE.sh step that restores this item (the step then does what the item needs). */
    step: schemas/* enum */.k5n(ITEM_STEPS).default('project'),
    /** Commands RESTORE.sh runs after extracting this item onto a live system (root '/'). */
    'after-restore': schemas/* array */.YOg(schemas/* string */.YjP().min(1)).default([]),
});
const configSchema = schemas/* strictObject */.rej({
    version: schemas/* literal */.euz(1),
    /** The host's "/" as seen over SSH; tests point it at the fixture tree. */
    'host-root': absolutePath('host-root').default('/'),
    /** The root-owned wrapper run through `sudo -n` for sudo items (scripts/host/comfyume-read). */
    'read-wrapper': absolutePath('read-wrapper').default('/usr/local/sbin/comfyume-read'),
    /** Directories whose disk usage is recorded (df), by name. */
    'disk-facts': schemas/* record */.g1P(schemas/* string */.YjP().regex(ITEM_ID_RE), absolutePath('disk-facts path'))
        .default({}),
    /** Where the model vault lives on the host (with-models). */
    'models-dir': absolutePath('models-dir').optional(),
    items: schemas/* array */.YOg(itemSchema).min(1, 'items needs at least one item'),
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
function onHost(config, path) {
    const root = config['host-root'];
    return root === '/' ? path : `${root.replace(/\/$/, '')}${path}`;
}

// EXTERNAL MODULE: external "node:fs"
var external_node_fs_ = __webpack_require__(3024);
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
const foundText = schemas/* string */.YjP()
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

;// CONCATENATED MODULE: ./src/host/verify-config.ts
// config/verify.yml: which checks of the seed's checklist must pass (required) and which are only
// reported (optional), and which are not run (off). A check it does not name is required.





const level = schemas/* enum */.k5n(['required', 'optional', 'off']);
const verifyConfigSchema = schemas/* strictObject */.rej({
    version: schemas/* literal */.euz(1),
    checks: schemas/* partialRecord */.jgl(schemas/* enum */.k5n(CHECK_IDS), level).default({}),
});
function planChecks(levels) {
    const checks = [];
    for (const id of CHECK_IDS) {
        const l = levels[id] ?? 'required';
        if (l !== 'off')
            checks.push({ id, level: l });
    }
    return { checks };
}
function parseVerifyConfig(file, data) {
    return planChecks(parseWithSchema(verifyConfigSchema, data, file).checks);
}
async function loadVerifyConfig(file) {
    return parseVerifyConfig(file, await readYamlFile(file));
}
/** The plan of config/verify.yml, or every check required when there is no such file. */
async function loadVerifyConfigIfPresent(file) {
    return (0,external_node_fs_.existsSync)(file) ? loadVerifyConfig(file) : planChecks({});
}

;// CONCATENATED MODULE: ./src/lib/format.ts
const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
function format_formatBytes(bytes) {
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
function format_formatDuration(ms) {
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
function summary_factsTable(title, facts) {
    return { title, headers: ['', ''], rows: facts.map(([k, v]) => [`**${k}**`, v]) };
}

;// CONCATENATED MODULE: ./src/backup/report.ts
// Job summaries: a backup's items, facts and retention decisions; a restore drill's results.


function backupReport(result, opts) {
    const parts = [];
    parts.push(result.dryRun
        ? `## Backup dry run: nothing was uploaded or deleted`
        : `## Backup ${result.backupId}: ${result.items.length} item(s), ${format_formatBytes(result.bytes)} stored`);
    parts.push(itemsTable(result));
    const disks = Object.entries(result.facts.disks).map(([name, d]) => [
        `disk ${name}`,
        d.filesystem
            ? `${format_formatBytes(d.usedBytes)} used of ${format_formatBytes(d.sizeBytes)} (${d.path})`
            : `unavailable (${d.path})`,
    ]);
    parts.push(summary_factsTable('Backup', [
        ['backup id', result.backupId],
        ['manifest', result.dryRun ? '-' : `s3://${opts.bucket}/${result.manifestKey}`],
        ['previous latest', result.previousLatest?.backupId ?? '-'],
        ['host key', result.hostFingerprint],
        ['hostname', result.facts.hostname || '-'],
        ['os', result.facts.os || '-'],
        ['tailscale ip', result.facts.tailscaleIp || '-'],
        ['compression', result.compressor],
        ...disks,
    ]));
    if (result.skipped.length > 0) {
        parts.push({
            title: 'Skipped',
            headers: ['Item', 'Why'],
            rows: result.skipped.map((s) => [s.id, s.reason]),
        });
    }
    if (result.retentionSkipped)
        parts.push('**Retention**: not applied by this run (it runs as its own job, `mode: retention`).');
    else
        parts.push(...retentionTables(result, result.dryRun));
    if (result.warnings.length > 0)
        parts.push(`**Warnings**\n\n${result.warnings.map((w) => `- ${w}`).join('\n')}`);
    return parts;
}
/** A dry run's plan per item, or what each item stored. */
function itemsTable(result) {
    if (result.dryRun) {
        return {
            title: 'Plan',
            headers: ['Item', 'Action', 'Paths', 'Missing on the host'],
            rows: result.plan.map((p) => [p.id, p.action, p.paths.join(' '), p.missing.join(' ') || '-']),
        };
    }
    return {
        title: 'Items',
        headers: ['Item', 'Size (tar)', 'Compressed', 'Stored (age)', 'sha256', 'Time'],
        rows: result.items.map((i) => [
            i.id,
            i.tarBytes === null ? '?' : format_formatBytes(i.tarBytes),
            format_formatBytes(i.archiveBytes),
            format_formatBytes(i.storedBytes),
            `\`${i.sha256.slice(0, 12)}\``,
            format_formatDuration(i.seconds * 1000),
        ]),
    };
}
/** The job summary of a restore drill: per item what was restored and how it compared. */
function drillReport(result, opts) {
    const total = result.downloadSeconds + result.restoreSeconds;
    return [
        `## Restore drill of backup ${result.backupId}: ${result.items.length} item(s) restored, equal to their archives`,
        {
            title: 'Items',
            headers: [
                'Item',
                'Stored (age)',
                'sha256',
                'Restored by RESTORE.sh',
                'Compared with the archive',
            ],
            rows: result.items.map((i) => [
                i.id,
                formatBytes(i.storedBytes),
                'matches the manifest',
                `${i.members} member(s)`,
                i.ownershipIgnored
                    ? `equal (owners not compared for ${i.ownershipIgnored}: not root)`
                    : 'equal',
            ]),
        },
        factsTable('Drill', [
            ['backup', `s3://${opts.bucket}/${opts.prefix}/${result.backupId}/`],
            ['finished', result.finishedAt],
            [
                'age',
                `${result.ageHours.toFixed(1)} h${result.stale ? ` \u2014 STALE (max-age ${opts.maxAge})` : ''}`,
            ],
            [
                'download',
                `${formatBytes(result.downloadedBytes)} in ${formatDuration(result.downloadSeconds * 1000)}`,
            ],
            ['RESTORE.sh', formatDuration(result.restoreSeconds * 1000)],
            ['comparison', formatDuration(result.checkSeconds * 1000)],
            ['time to restore (download + RESTORE.sh)', formatDuration(total * 1000)],
        ]),
    ];
}
/** The retention decisions, and what R2 refused to delete (bucket lock rules). */
function retentionTables(result, dryRun) {
    const refused = new Map(result.refused.map((b) => [b.id, b]));
    const tables = [
        {
            title: dryRun ? 'Retention (what a real run would decide)' : 'Retention',
            headers: ['Backup', 'Decision', 'Why'],
            rows: result.retention.map((d) => [
                d.id,
                d.keep
                    ? 'keep'
                    : result.deleted.includes(d.id)
                        ? 'deleted'
                        : refused.has(d.id)
                            ? refused.get(d.id)?.intact
                                ? 'kept: R2 refused the delete (locked)'
                                : 'partly deleted: its manifest is gone (locked objects remain)'
                            : 'delete',
                d.reasons.join(', '),
            ]),
        },
    ];
    if (result.refused.length > 0) {
        tables.push({
            title: 'Refused by R2 (a bucket lock rule, or a token without delete rights)',
            headers: ['Backup', 'Object', 'R2 said', 'State'],
            rows: result.refused.flatMap((b) => b.refused.map((r) => [
                b.id,
                r.key,
                r.code,
                b.intact ? 'whole backup kept' : 'no manifest: a later run removes it',
            ])),
        });
    }
    return tables;
}
/** The job summary of a retention-only run (mode: retention). */
function retentionReport(result, opts) {
    const parts = [
        result.dryRun
            ? '## Retention dry run: nothing was deleted'
            : `## Retention: ${result.deleted.length} backup(s) deleted, ${result.refused.length} refused by R2`,
        summary_factsTable('Retention', [
            ['bucket', `s3://${opts.bucket}/${opts.prefix}/`],
            ['latest (always kept)', result.latest?.backupId ?? '-'],
            ['stale multipart uploads aborted', String(result.aborted)],
        ]),
        ...retentionTables(result, result.dryRun),
    ];
    if (result.warnings.length > 0)
        parts.push(`**Warnings**\n\n${result.warnings.map((w) => `- ${w}`).join('\n')}`);
    return parts;
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

// EXTERNAL MODULE: external "node:crypto"
var external_node_crypto_ = __webpack_require__(7598);
// EXTERNAL MODULE: external "node:stream"
var external_node_stream_ = __webpack_require__(7075);
// EXTERNAL MODULE: external "node:stream/promises"
var external_node_stream_promises_ = __webpack_require__(6466);
// EXTERNAL MODULE: ./node_modules/ssh2/lib/index.js
var lib = __webpack_require__(5472);
var lib_default = /*#__PURE__*/__webpack_require__.n(lib);
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
    const digest = (0,external_node_crypto_.createHash)(HASH).update(message).digest();
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
function sshsig_verifySshsig(opts) {
    let sig;
    try {
        sig = parseArmored(opts.signature);
    }
    catch {
        throw new OpsError(`${opts.what}: the signature is not an SSH signature (ssh-keygen -Y sign)`);
    }
    if (sig.namespace !== opts.namespace || (sig.hash !== HASH && sig.hash !== 'sha256')) {
        throw new OpsError(`${opts.what}: signed for namespace ${JSON.stringify(sig.namespace)} (${sig.hash}), expected ${opts.namespace}`);
    }
    const signer = opts.allowed.find((a) => a.publicKey.equals(sig.publicKey) &&
        a.principals.some((p) => p === opts.principal || p === '*') &&
        (a.namespaces === undefined || a.namespaces.includes(opts.namespace)));
    const raw = ed25519Raw(sig.publicKey);
    if (!signer || !raw) {
        throw new OpsError(`${opts.what}: signed by a key that is not an allowed signer (${sshKeyText(sig.publicKey)})`);
    }
    const digest = createHash(sig.hash).update(opts.message).digest();
    const data = Buffer.concat([
        MAGIC,
        sshString(opts.namespace),
        sshString(''),
        sshString(sig.hash),
        sshString(digest),
    ]);
    const key = createPublicKey({
        key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') },
        format: 'jwk',
    });
    if (!verify(null, data, key, sig.signature))
        throw new OpsError(`${opts.what}: the signature does not match (changed after signing)`);
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
function sshsig_parseAllowedSigners(text, file) {
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
        throw new ConfigError(file, problems);
    return out;
}
/** The public key blob of an `ssh-ed25519 AAAA\u2026` line. */
function publicKeyLine(blob, comment = '') {
    return `${KEY_TYPE} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}

;// CONCATENATED MODULE: ./src/backup/remote-commands.ts
// The remote side of a backup, as shell text: every value is quoted with shellQuote, only the
// configured * and ? globs reach the shell unquoted (shellGlob).


const COMPRESSOR_NAMES = ['zstd', 'gzip'];
const remote_commands_COMPRESSORS = {
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
function bashPipefail(script) {
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
    return bashPipefail(`${archiver} | ${remote_commands_COMPRESSORS[compressor].command}`);
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
    return bashPipefail(lines.join('\n'));
}
/** What the probe's sudo line can say. */
const SUDO_ANSWERS = ['ok', 'missing'];
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
const hostText = (max) => schemas/* string */.YjP()
    .max(max)
    .refine((text) => !hasControlChars(text), 'must not contain control characters');
const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const KERNEL_RE = /^[A-Za-z0-9._+~-]{1,100}$/;
const UNIX_NAME = schemas/* string */.YjP().regex(/^[a-z_][a-z0-9_-]{0,31}$/);
/** The dev user as `getent passwd` and `id -Gn` told it at backup time (RESTORE.sh recreates it). */
const userFactSchema = schemas/* strictObject */.rej({
    name: UNIX_NAME,
    uid: schemas/* number */.aig()
        .int()
        .min(0)
        .max(2 ** 31 - 2),
    gid: schemas/* number */.aig()
        .int()
        .min(0)
        .max(2 ** 31 - 2),
    groups: schemas/* array */.YOg(UNIX_NAME).max(64),
    home: absolutePath('user home'),
    shell: absolutePath('user shell'),
});
/** Which docker package the host had: RESTORE.sh installs the same one. */
const DOCKER_PACKAGES = ['docker.io', 'docker-ce'];
const diskFactSchema = schemas/* strictObject */.rej({
    path: absolutePath('disk path'),
    filesystem: hostText(256),
    sizeBytes: schemas/* number */.aig().int().nonnegative(),
    usedBytes: schemas/* number */.aig().int().nonnegative(),
    availableBytes: schemas/* number */.aig().int().nonnegative(),
    mountedOn: hostText(1024),
});
/** What the host said about itself; each value is checked, an odd one is recorded as ''. */
const hostFactsSchema = schemas/* strictObject */.rej({
    tailscaleIp: schemas/* union */.KCZ([schemas/* literal */.euz(''), schemas/* ipv4 */.uXy()]),
    hostname: schemas/* union */.KCZ([schemas/* literal */.euz(''), schemas/* string */.YjP().regex(HOSTNAME_RE)]),
    os: hostText(200),
    kernel: schemas/* union */.KCZ([schemas/* literal */.euz(''), schemas/* string */.YjP().regex(KERNEL_RE)]),
    disks: schemas/* record */.g1P(schemas/* string */.YjP().regex(ITEM_ID_RE), diskFactSchema),
    /** Absent in backups made before the rebuild recorded them. */
    user: userFactSchema.nullable().default(null),
    docker: schemas/* union */.KCZ([schemas/* literal */.euz(''), schemas/* enum */.k5n(DOCKER_PACKAGES)]).default(''),
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

// EXTERNAL MODULE: ./node_modules/zod/v4/classic/iso.js
var iso = __webpack_require__(4377);
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
const SHA256_HEX = schemas/* string */.YjP().regex(/^[0-9a-f]{64}$/, 'must be a sha256 in hex');
const bytes = schemas/* number */.aig().int().nonnegative();
/** `SHA256:` and 43 base64 characters, as ssh-keygen -l prints a host key. */
const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}$/;
const SEMVER_RE = /^\d{1,5}\.\d{1,5}\.\d{1,5}(?:-[0-9A-Za-z.-]{1,40})?$/;
const USER_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/;
const HOST_RE = /^[A-Za-z0-9.:_-]{1,253}$/;
/** age recipients: X25519 (age1 + bech32) or an SSH public key, one line each. */
const RECIPIENT_RE = /^(?:age1[02-9ac-hj-np-z]{58}|(?:ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]+={0,2})$/;
const manifestItemSchema = schemas/* strictObject */.rej({
    id: schemas/* string */.YjP().regex(ITEM_ID_RE, 'must be an item id as in config/backup.yml'),
    description: hostText(500),
    // Checked as the config checks them: they become paths on the machine restoring.
    paths: schemas/* array */.YOg(absolutePath('path', { glob: true })).min(1),
    /** Host paths that were absent (optional items, or globs that matched nothing). */
    missingPaths: schemas/* array */.YOg(absolutePath('missing path', { glob: true })),
    required: schemas/* boolean */.zMY(),
    sudo: schemas/* boolean */.zMY(),
    restoreTo: absolutePath('restoreTo'),
    /** The RESTORE.sh step that restores it (backups before steps: project). */
    step: schemas/* enum */.k5n(ITEM_STEPS).default('project'),
    /** As the config said at backup time; a restore runs its own config's, never these. */
    afterRestore: schemas/* array */.YOg(hostText(1000)),
    key: schemas/* string */.YjP(),
    compression: schemas/* enum */.k5n(COMPRESSOR_NAMES),
    /** Uncompressed tar bytes (GNU tar --totals), when tar reported them. */
    tarBytes: bytes.nullable(),
    /** Compressed bytes received from the host. */
    archiveBytes: bytes,
    /** Encrypted bytes stored in R2, and their sha256. */
    storedBytes: bytes,
    sha256: SHA256_HEX,
    seconds: schemas/* number */.aig().nonnegative(),
});
const manifestFields = schemas/* strictObject */.rej({
    format: schemas/* literal */.euz(MANIFEST_FORMAT),
    backupId: schemas/* string */.YjP().regex(ID_RE, 'must be a backup id such as 20261128T021500Z'),
    tool: schemas/* strictObject */.rej({
        name: schemas/* literal */.euz(TOOL_NAME),
        version: schemas/* string */.YjP().regex(SEMVER_RE, 'must be a version such as 0.1.0'),
    }),
    startedAt: iso/* datetime */.w$(),
    finishedAt: iso/* datetime */.w$(),
    host: schemas/* strictObject */.rej({
        address: schemas/* string */.YjP().regex(HOST_RE, 'must be a host name or address'),
        port: schemas/* number */.aig().int().min(1).max(65535),
        user: schemas/* string */.YjP().regex(USER_RE, 'must be a user name'),
        fingerprint: schemas/* string */.YjP().regex(FINGERPRINT_RE, 'must be SHA256:<43 base64 characters>'),
        hostRoot: absolutePath('host.hostRoot'),
    }),
    facts: hostFactsSchema,
    encryption: schemas/* strictObject */.rej({
        format: schemas/* literal */.euz('age'),
        recipients: schemas/* array */.YOg(schemas/* string */.YjP().regex(RECIPIENT_RE, 'must be an age recipient')).min(1),
    }),
    items: schemas/* array */.YOg(manifestItemSchema),
    /** The host RESTORE.sh rebuilds and the checks of its verify step, as configured at backup time. */
    rebuild: schemas/* strictObject */.rej({
        host: hostShapeSchema,
        checks: schemas/* array */.YOg(schemas/* strictObject */.rej({
            id: schemas/* enum */.k5n(CHECK_IDS),
            level: schemas/* enum */.k5n(['required', 'optional']),
        })),
    })
        .prefault({ host: {}, checks: [] }),
    skipped: schemas/* array */.YOg(schemas/* strictObject */.rej({ id: schemas/* string */.YjP().regex(ITEM_ID_RE), reason: hostText(2000) })),
    restoreScript: schemas/* strictObject */.rej({ key: schemas/* string */.YjP(), sha256: SHA256_HEX, bytes }),
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
const latestSchema = schemas/* strictObject */.rej({
    backupId: schemas/* string */.YjP().regex(ID_RE),
    manifestKey: schemas/* string */.YjP(),
    finishedAt: iso/* datetime */.w$(),
});
/** A stored manifest, checked; the error names the key and the first field that is wrong. */
function parseManifest(text, key, prefix) {
    let json;
    try {
        json = JSON.parse(text);
    }
    catch {
        throw new OpsError(`${key} is not JSON`);
    }
    const parsed = manifestSchema(prefix).safeParse(json);
    if (!parsed.success)
        throw new OpsError(`${key} is not a ${MANIFEST_FORMAT} manifest: ${schemaProblems(parsed.error)[0]}`);
    if (key !== backupKeys(prefix, parsed.data.backupId).manifest)
        throw new OpsError(`${key} names backup ${parsed.data.backupId}: not its own manifest`);
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

// EXTERNAL MODULE: ./node_modules/@aws-sdk/client-s3/dist-cjs/index.js
var dist_cjs = __webpack_require__(3711);
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
        throw new errors_InputError(input, bucket, 'an R2 bucket name: 3-63 lowercase letters, digits and hyphens');
    }
    return bucket;
}
/** Dollar cost of a number of Class A and Class B operations. */
function r2RequestCost(classA, classB) {
    return (classA * R2_CLASS_A_PER_MILLION + classB * R2_CLASS_B_PER_MILLION) / 1e6;
}

;// CONCATENATED MODULE: ./src/backup/part-size.ts
// Part sizes of the multipart uploads: each item's from its size in the last backup (so it stays
// well under R2's 10,000 parts), and the warning while an item still has room to spare.





/** The largest part-size the action takes (memory is about four parts). */
const MAX_PART_MIB = 256;
/** Whole MiB per part that keep an archive of `bytes` under half of R2's parts if it doubles. */
const roomyPartMib = (bytes) => Math.ceil((bytes * 4) / R2_MAX_PARTS / 2 ** 20);
/**
 * A part size for an archive last stored at `bytes`: it stays under half of R2's 10,000 parts
 * even if the item doubles (at least 5 MiB, at most MAX_PART_MIB, in whole MiB).
 */
function partSizeForSize(bytes) {
    return Math.min(MAX_PART_MIB, Math.max(R2_MIN_PART / 2 ** 20, roomyPartMib(bytes))) * 2 ** 20;
}
/** Part size by item id: the one given, else from the item's stored size in the last backup. */
async function partSizes(store, previous, given, logger) {
    if (given !== undefined)
        return () => given;
    const stored = new Map();
    if (previous) {
        try {
            const text = await store.getText(previous.manifestKey);
            const parsed = previousSizesSchema.safeParse(text === undefined ? {} : JSON.parse(text));
            for (const item of parsed.success ? parsed.data.items : [])
                stored.set(item.id, item.storedBytes);
        }
        catch (err) {
            logger.debug(`part sizes: last manifest unreadable (${errors_errorMessage(err)}); 5 MiB parts`);
        }
    }
    return (itemId) => partSizeForSize(stored.get(itemId) ?? 0);
}
// Only the sizes are read from the last manifest (for part sizes): anything else may differ.
const previousSizesSchema = schemas/* object */.Ikc({
    items: schemas/* array */.YOg(manifestItemSchema.pick({ id: true, storedBytes: true }).loose()),
});
/**
 * A warning while an item still fits R2's 10,000 parts with room to spare, never after. `auto`:
 * the part size came from the last backup, and the next run sizes it from this one by itself.
 */
function partsWarning(itemId, stored, partSize, auto = false) {
    if (stored.parts <= R2_MAX_PARTS / 2)
        return undefined;
    const suggested = roomyPartMib(stored.size);
    if (auto && suggested <= MAX_PART_MIB) {
        return (`item ${itemId} took ${stored.parts} of R2's ${R2_MAX_PARTS} parts (${format_formatBytes(stored.size)}; ` +
            `it more than doubled since the last backup): the next run uses ${suggested}MiB parts`);
    }
    if (suggested > MAX_PART_MIB) {
        return (`item ${itemId} took ${stored.parts} of R2's ${R2_MAX_PARTS} parts (${format_formatBytes(stored.size)}): ` +
            `even ${MAX_PART_MIB}MiB parts leave little room; split the item into smaller ones`);
    }
    return (`item ${itemId} took ${stored.parts} of R2's ${R2_MAX_PARTS} parts (${format_formatBytes(stored.size)} in ` +
        `${format_formatBytes(partSize)} parts): set part-size to ${suggested}MiB before it grows past ` +
        `${format_formatBytes(partSize * R2_MAX_PARTS)}, where the backup would fail`);
}

;// CONCATENATED MODULE: ./src/backup/plan.ts
// What a backup takes from the host: per configured item, the paths the probe found (the rest
// is missing) and whether the item is backed up or skipped. The manifest item is built from the
// config item and this plan (manifestItem in manifest.ts), so both say the same paths.

/** Decides what to take per item from the probe; a missing required path fails here. */
function planItems(config, probe) {
    const problems = [];
    const plan = config.items.map((item) => {
        const missing = probe.missing.get(item.id) ?? [];
        const present = item.paths.filter((p) => !missing.includes(onHost(config, p)));
        if (missing.length > 0 && item.required)
            problems.push(`required item ${item.id} is missing ${missing.join(', ')}`);
        return { id: item.id, paths: present, missing, action: present.length > 0 ? 'backup' : 'skip' };
    });
    const sudoUsed = config.items.some((i) => i.sudo && plan.find((p) => p.id === i.id)?.action === 'backup');
    if (sudoUsed && probe.sudo === 'missing') {
        problems.push(`the SSH user may not run 'sudo -n ${config['read-wrapper']}' on the host (root-owned items need it; see the sudoers line in actions/backup-verda/README.md)`);
    }
    return { plan, problems };
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
        text = await readFile(file, 'utf8');
    }
    catch (err) {
        throw new ConfigError(file, [`cannot be read: ${errnoCode(err) ?? String(err)}`]);
    }
    const signers = parseAllowedSigners(text, file).filter((s) => s.principals.some((p) => p === SIGNER_PRINCIPAL || p === '*'));
    if (signers.length === 0) {
        throw new ConfigError(file, [
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
        throw new OpsError(`${what}: it has no signature (${manifestKey}.sig); only a backup signed by backup-verda's signing key is restored`);
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

;// CONCATENATED MODULE: ./src/backup/restore-script.ts
// RESTORE.sh, written next to each manifest: rebuilds a fresh Ubuntu 22.04/24.04 (or Debian 12)
// instance into the backed-up GPU host in named steps (restore-steps.ts), each checking first and
// changing only what differs. Before anything changes it checks the backup's signature (ssh-keygen
// -Y verify against an allowed signers file the admin gives it), that the signed manifest vouches
// for this very script, and every archive's sha256. Every value from the backup reaches the script
// through shellQuote (one line each, comments included): it is data, never code.
// Generated bash must stay shellcheck-clean (a test runs /usr/bin/shellcheck on it).




/** The usage text (usage() prints the comment block after line 1) and strict mode. */
const USAGE = `#!/usr/bin/env bash
# RESTORE.sh of one comfyume-ops backup: rebuilds a fresh Ubuntu 22.04/24.04 (or Debian 12)
# instance into the backed-up GPU host, as root, in named steps (the backup is set below).
#
# Usage: sudo bash RESTORE.sh --signers FILE --identity AGE_KEY_FILE [options]
#   --signers FILE           allowed signers (config/backup-signers of the comfyume-ops
#                            repository): the backup's signature must verify against one of them
#   --identity FILE          age identity (AGE-SECRET-KEY-1...) of one of the backup's recipients
#   --from DIR               manifest.json, its .sig and the archives already in DIR; otherwise
#                            fetched from R2 with the aws CLI (AWS_ACCESS_KEY_ID,
#                            AWS_SECRET_ACCESS_KEY, and R2_ENDPOINT if it differs)
#   --only STEP, --skip STEP run only / skip these steps (repeatable); --list-steps lists them
#   --item ITEM              restore only these items (repeatable); --list lists them
#   --dry-run                check everything and print what each step would change
#   --models-mount 'SOURCE FSTYPE [OPTIONS]'   the shared filesystem (or $MODELS_MOUNT)
#   --scratch-mount 'SOURCE FSTYPE [OPTIONS]'  the block device (or $SCRATCH_MOUNT)
#   --ohmyzsh-repo URL       where oh-my-zsh is cloned from when missing (default: GitHub)
#   --tailscale-auth-key-file FILE   a Tailscale auth key, only if the restored identity must log in again
#   --skip-check CHECK       leave one check of the verify step out (repeatable)
#   --root DIR               a drill: restore the items' files under DIR, no system step runs
#   --download-only          download and verify the backup, change nothing
#   --skip-after-restore     do not run the items' after-restore commands
#
# Each step checks first and changes only what differs, says what it changed and how long it
# took; a second run reports 0 changes. Nothing is changed before the signature and every
# archive's sha256 are checked (preflight).
set -euo pipefail`;
/**
 * RESTORE.sh for one backup. Its sections are constant bash; only backupValues and hostValues
 * put values from the backup in, each through shellQuote. A blank line separates the sections.
 */
function restoreScript(input) {
    return [
        USAGE,
        backupValues(input),
        hostValues(input),
        checkProgram({ shape: input.shape, tailscaleIp: input.facts.tailscaleIp || undefined }),
        ...STEP_BASH,
    ].join('\n\n');
}
function assoc(name, entries) {
    const body = entries.map(([k, v]) => `  [${shellQuote(k)}]=${shellQuote(v)}`).join('\n');
    return `declare -A ${name}=(\n${body}\n)`;
}
/** The after-restore table on one line: the drill compares every other line with its own. */
const AFTER_RESTORE_LINE = /^declare -A AFTER_RESTORE=\(.*\)$/m;
/** The backup's id, host, bucket and keys, and the per-item tables. */
function backupValues(input) {
    return [
        `# ${shellQuote(`Backup ${input.backupId} of ${input.facts.hostname || 'the GPU host'}, written by comfyume-ops ${input.toolVersion}`)}`,
        `# ${shellQuote(`Host key ${input.hostFingerprint}; Tailscale IP ${input.facts.tailscaleIp || 'unknown'}`)}`,
        `BACKUP_ID=${shellQuote(input.backupId)}`,
        `BUCKET=${shellQuote(input.bucket)}`,
        `MANIFEST_KEY=${shellQuote(input.manifestKey)}`,
        `SIGNATURE_NAMESPACE=${shellQuote(SIGNATURE_NAMESPACE)}`,
        `SIGNER_PRINCIPAL=${shellQuote(SIGNER_PRINCIPAL)}`,
        `R2_ENDPOINT=\${R2_ENDPOINT:-${shellQuote(input.endpoint)}}`,
        `STEPS=(${RESTORE_STEPS.join(' ')})`,
        `ITEMS=(${input.items.map((i) => shellQuote(i.id)).join(' ')})`,
        itemTables(input.items),
    ].join('\n');
}
/** The host the backup came from, as RESTORE.sh rebuilds it. */
function hostValues(input) {
    const { shape, facts } = input;
    const user = facts.user?.name === shape.user ? facts.user : null;
    const groups = (user?.groups ?? ['docker']).filter((g) => g !== shape.user);
    return [
        `TAILSCALE_IP=${shellQuote(facts.tailscaleIp)}`,
        `DOCKER_PACKAGE=${shellQuote(facts.docker || 'docker.io')}`,
        `PACKAGES=(${shape.packages.map(shellQuote).join(' ')})`,
        `HOST_USER=${shellQuote(shape.user)}`,
        `USER_UID=${user ? user.uid : "''"}`,
        `USER_GID=${user ? user.gid : "''"}`,
        `USER_GROUPS=(${groups.map(shellQuote).join(' ')})`,
        `USER_SHELL=${shellQuote(shape.shell)}`,
        `USER_HOME=${shellQuote(shape.home)}`,
        `PROJECT=${shellQuote(shape.project)}`,
        `ENV_FILE=${shellQuote(shape['env-file'])}`,
        `MODELS_PATH=${shellQuote(shape.mounts.models)}`,
        `SCRATCH_PATH=${shellQuote(shape.mounts.scratch)}`,
        `VERIFY_CHECKS=(${input.checks.map((c) => c.id).join(' ')})`,
        `declare -A CHECK_LEVEL=(${input.checks.map((c) => `[${c.id}]=${c.level}`).join(' ')})`,
    ].join('\n');
}
/** One associative array per field, by item id. */
function itemTables(items) {
    // Each item's steps as one quoted string, run by bash -c only on a live restore.
    const afterRestore = items
        .filter((i) => i.afterRestore.length > 0)
        .map((i) => `[${shellQuote(i.id)}]=${shellQuote(i.afterRestore.join('\n'))}`)
        .join(' ');
    const table = (name, field) => assoc(name, items.map((i) => [i.id, field(i)]));
    return [
        table('KEY', (i) => i.key),
        table('SHA256', (i) => i.sha256),
        table('COMPRESSION', (i) => i.compression),
        table('RESTORE_TO', (i) => i.restoreTo),
        table('STEP_OF', (i) => i.step),
        '# shellcheck disable=SC2016 # descriptions are literal text',
        table('DESCRIPTION', (i) => i.description),
        `declare -A AFTER_RESTORE=(${afterRestore})`,
    ].join('\n');
}

;// CONCATENATED MODULE: ./src/backup/retention.ts
// Retention: keep the newest backup of each of the last N days, weeks and months that have
// backups (like restic's --keep-daily/weekly/monthly, so a week of failed nights never wipes
// the history), delete the rest. The backup just written is always kept.

const RULES = ['daily', 'weekly', 'monthly'];
const EXPECTED = 'comma-separated daily=N,weekly=N,monthly=N (each at most once, N from 0 to 1000), e.g. daily=7,weekly=4,monthly=6';
function parseRetention(input, value) {
    const policy = { daily: 0, weekly: 0, monthly: 0 };
    const seen = new Set();
    const parts = value.split(',').map((p) => p.trim());
    if (value.trim() === '' || parts.some((p) => p === ''))
        throw new errors_InputError(input, value, EXPECTED);
    for (const part of parts) {
        const m = /^(daily|weekly|monthly)\s*=\s*(\d{1,4})$/.exec(part);
        const rule = RULES.find((r) => r === m?.[1]);
        const n = Number(m?.[2]);
        if (!rule || seen.has(rule) || n > 1000)
            throw new errors_InputError(input, value, EXPECTED);
        seen.add(rule);
        policy[rule] = n;
    }
    return policy;
}
function formatRetention(p) {
    return RULES.map((r) => `${r}=${p[r]}`).join(',');
}
/** ISO 8601 week of a UTC date, e.g. 2026-W48. */
function isoWeek(date) {
    const d = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
    const day = d.getUTCDay() || 7;
    d.setUTCDate(d.getUTCDate() + 4 - day);
    const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
    const week = Math.ceil(((d.getTime() - yearStart) / 86_400_000 + 1) / 7);
    return `${d.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}
const bucketOf = {
    daily: (d) => d.toISOString().slice(0, 10),
    weekly: isoWeek,
    monthly: (d) => d.toISOString().slice(0, 7),
};
/** Decides for every backup (id + time); newest first in the result. `justWritten` is kept. */
function applyRetention(backups, policy, justWritten, keptBecause = 'just written') {
    const sorted = [...backups].sort((a, b) => b.time.getTime() - a.time.getTime() || b.id.localeCompare(a.id));
    const reasons = new Map(sorted.map((b) => [b.id, []]));
    for (const rule of RULES) {
        const buckets = new Set();
        for (const backup of sorted) {
            if (buckets.size >= policy[rule])
                break;
            const bucket = bucketOf[rule](backup.time);
            if (buckets.has(bucket))
                continue;
            buckets.add(bucket);
            reasons.get(backup.id)?.push(`${rule} ${bucket}`);
        }
    }
    if (justWritten !== undefined)
        reasons.get(justWritten)?.unshift(keptBecause);
    return sorted.map((b) => {
        const why = reasons.get(b.id) ?? [];
        return { id: b.id, keep: why.length > 0, reasons: why.length > 0 ? why : ['expired'] };
    });
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

;// CONCATENATED MODULE: ./src/backup/run-retention.ts


const DEFAULT_STALE_AFTER_MS = 86_400_000;
/** Applies the policy to the bucket. Throws when R2 cannot be listed or answers other than 403. */
async function pruneBackups(store, opts) {
    const { logger } = opts;
    const result = { retention: [], deleted: [], refused: [], aborted: 0 };
    const backups = await store.listBackups();
    result.retention = applyRetention(backups.filter((b) => b.complete), opts.policy, opts.keep?.id, opts.keep?.reason);
    const remove = async (backup) => {
        const { refused } = await store.deleteBackup(backup);
        if (refused.length === 0)
            result.deleted.push(backup.id);
        else
            result.refused.push({
                id: backup.id,
                refused,
                intact: backup.complete && refused.some((r) => r.key.endsWith('/manifest.json')),
            });
    };
    for (const decision of result.retention) {
        logger.info(`${decision.id}: ${decision.keep ? 'keep' : 'delete'} (${decision.reasons.join(', ')})`);
        const backup = backups.find((b) => b.id === decision.id);
        if (!decision.keep && backup && !opts.dryRun)
            await remove(backup);
    }
    const staleBefore = new Date(opts.now.getTime() - (opts.staleAfterMs ?? DEFAULT_STALE_AFTER_MS));
    for (const leftover of backups.filter((b) => !b.complete && b.id !== opts.keep?.id && b.time < staleBefore)) {
        logger.info(`${leftover.id}: incomplete (no manifest) and stale; ${opts.dryRun ? 'would remove' : 'removing'} ${leftover.keys.length} object(s)`);
        if (!opts.dryRun)
            await remove(leftover);
    }
    if (!opts.dryRun) {
        result.aborted = await store.abortStaleUploads(staleBefore);
        if (result.aborted > 0)
            logger.info(`aborted ${result.aborted} stale multipart upload(s)`);
    }
    if (result.refused.length > 0)
        opts.warn(refusedWarning(result.refused));
    return result;
}
/** One warning for every refused delete: which backup, which keys, and what state it is in. */
function refusedWarning(refused) {
    const keys = refused.reduce((n, b) => n + b.refused.length, 0);
    const codes = [...new Set(refused.flatMap((b) => b.refused.map((r) => r.code)))].join(', ');
    const each = refused.map((b) => {
        const names = b.refused.map((r) => r.key.split('/').pop() ?? r.key).join(', ');
        return b.intact
            ? `${b.id} (${names}: kept whole)`
            : `${b.id} (${names}: its manifest is gone, a later run removes the rest)`;
    });
    return (`retention: R2 refused to delete ${keys} object(s) of ${refused.length} backup(s) (${codes}: ` +
        `a bucket lock rule holds them, or this token may not delete): ${each.join('; ')}. ` +
        'A later retention run deletes them once their lock has expired.');
}
/**
 * Retention as its own job: no SSH and nothing written, only list, read latest.json and delete.
 * The backup latest.json names is always kept.
 */
async function runRetention(opts) {
    const { logger } = opts;
    const store = BackupStore.open(opts, logger);
    const warnings = [];
    const warn = (message) => {
        warnings.push(message);
        logger.warn(message);
    };
    const latest = await logger.group('Read the current backups', async () => {
        const pointer = await store.latest();
        logger.info(pointer ? `latest backup: ${pointer.backupId}` : 'no latest.json under this prefix');
        return pointer;
    });
    const result = await logger.group(opts.dryRun ? 'Retention (dry run: nothing is deleted)' : 'Retention', () => pruneBackups(store, {
        policy: opts.retention,
        ...(latest ? { keep: { id: latest.backupId, reason: 'latest.json' } } : {}),
        ...(opts.staleAfterMs !== undefined ? { staleAfterMs: opts.staleAfterMs } : {}),
        now: (opts.now ?? (() => new Date()))(),
        dryRun: opts.dryRun,
        logger,
        warn,
    }));
    return { ...result, dryRun: opts.dryRun, latest, warnings };
}

;// CONCATENATED MODULE: ./src/backup/version.ts
/** The tool version recorded in manifests; a unit test keeps it equal to package.json's. */
const TOOL_VERSION = '0.1.0';

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

;// CONCATENATED MODULE: ./src/lib/age-stream.ts
// age encryption of a Node stream. X25519 recipients (age1...) are encrypted natively (OpenSSL's
// X25519, HKDF and ChaCha20-Poly1305 through node:crypto, ~10× the pure-JS speed); other
// recipient types (post-quantum hybrid, tags) go through the age-encryption package (typage),
// which is loaded only for them (about 6 MiB of RSS a nightly run with X25519 keys does not pay).
// Either way the output is a standard age v1 file: `age -d -i key` decrypts it (tests check).



const age_stream_EXPECTED = 'age public keys (age1...), one per line';
const CHUNK = 64 * 1024;
const loadAge = () => __webpack_require__.e(/* import() */ 855).then(__webpack_require__.bind(__webpack_require__, 855));
/**
 * Validates recipients: X25519 keys by their bech32 checksum and length, any other kind by
 * age-encryption's own parser. A pasted secret key is never echoed.
 */
async function parseRecipients(input, values) {
    if (values.length === 0)
        throw new errors_InputError(input, '', age_stream_EXPECTED);
    for (const value of values) {
        if (/^AGE-SECRET-KEY-/i.test(value)) {
            throw new errors_InputError(input, '<redacted>', `${age_stream_EXPECTED}: this is a secret identity, give its public key (age-keygen -y)`);
        }
        // bech32 is one case; age refuses upper and mixed case, so a key that age would not take
        // never reaches a backup.
        if (/^age1/i.test(value) && value !== value.toLowerCase()) {
            throw new errors_InputError(input, value, `${age_stream_EXPECTED}: age1 recipients are all lower case (age refuses upper and mixed case)`);
        }
        const key = x25519RecipientKey(value);
        if (key) {
            if (isLowOrderX25519(key)) {
                throw new errors_InputError(input, value, `${age_stream_EXPECTED}: this is a low-order X25519 point, which any reader could decrypt (age refuses it); give the key age-keygen -y prints`);
            }
            continue;
        }
        try {
            new (await loadAge()).Encrypter().addRecipient(value);
        }
        catch (err) {
            throw new errors_InputError(input, value, `${age_stream_EXPECTED} (${err.message})`);
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
        throw new InputError(input, '', expected);
    const { identityToRecipient } = await loadAge();
    const out = [];
    for (const [i, identity] of lines.entries()) {
        if (/^age1/i.test(identity))
            throw new InputError(input, identity, `${expected}: this is a public key (a recipient)`);
        try {
            if (!/^AGE-SECRET-KEY-/.test(identity))
                throw new Error('not an age secret key');
            out.push({ identity, recipient: await identityToRecipient(identity) });
        }
        catch {
            throw new InputError(input, `<line ${i + 1} redacted>`, expected);
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
const x25519PublicKey = (raw) => (0,external_node_crypto_.createPublicKey)({
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
    const { privateKey } = (0,external_node_crypto_.generateKeyPairSync)('x25519');
    try {
        return (0,external_node_crypto_.diffieHellman)({ privateKey, publicKey }).every((b) => b === 0);
    }
    catch {
        return true;
    }
}
const b64 = (data) => data.toString('base64').replace(/=+$/, '');
const hkdf = (ikm, salt, info) => Buffer.from((0,external_node_crypto_.hkdfSync)('sha256', ikm, salt, info, 32));
function sealChaCha(key, nonce, plaintext) {
    const cipher = (0,external_node_crypto_.createCipheriv)('chacha20-poly1305', key, nonce, { authTagLength: 16 });
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
    const ephemeral = (0,external_node_crypto_.generateKeyPairSync)('x25519');
    const share = rawPublic(ephemeral.publicKey);
    const shared = (0,external_node_crypto_.diffieHellman)({
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
    const fileKey = (0,external_node_crypto_.randomBytes)(16);
    let header = 'age-encryption.org/v1\n';
    for (const r of recipients)
        header += x25519Stanza(fileKey, r);
    header += '---';
    const mac = (0,external_node_crypto_.createHmac)('sha256', hkdf(fileKey, Buffer.alloc(0), 'header'))
        .update(header)
        .digest();
    const nonce = (0,external_node_crypto_.randomBytes)(16);
    const prefix = Buffer.concat([Buffer.from(`${header} ${b64(mac)}\n`), nonce]);
    const encryptor = new StreamEncryptor(hkdf(fileKey, nonce, 'payload'), prefix);
    (0,external_node_stream_.pipeline)(source, encryptor, () => { });
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
    const web = external_node_stream_.Readable.toWeb(source);
    const encrypted = await encrypter.encrypt(web);
    return external_node_stream_.Readable.fromWeb(encrypted);
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
const YOUNG_GC_EVERY = 2 * 2 ** 20;
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

;// CONCATENATED MODULE: ./src/lib/r2-stream-upload.ts
// Uploads a stream of unknown length to R2 with bounded memory: equal parts (R2 rejects unequal
// ones) buffered one at a time, a few in flight, each retried on its own; a small stream becomes
// one PutObject. Every request body goes with its Content-MD5, so R2 refuses a part damaged in
// transit and it is sent again. What R2 then holds is proved without reading it back (the store
// checks each answer): every part's ETag is the MD5 of the bytes sent, the Complete's ETag is the
// multipart ETag of those parts (assembled exactly from them, in order), a PutObject's is the
// body's MD5, and one HeadObject gives the size and ETag sent. Any failure aborts the multipart
// upload, so nothing half-written is left behind.







/** A stream cut into parts of one size, hashed and counted as it goes by. */
class StreamParts {
    size = 0;
    sha = (0,external_node_crypto_.createHash)('sha256');
    chunks;
    pending = Buffer.alloc(0);
    ended = false;
    constructor(body) {
        this.chunks = body[Symbol.asyncIterator]();
    }
    async next(buf) {
        let filled = 0;
        while (filled < buf.length) {
            if (this.pending.length === 0) {
                if (this.ended)
                    break;
                const chunk = await this.chunks.next();
                if (chunk.done) {
                    this.ended = true;
                    break;
                }
                const data = Buffer.isBuffer(chunk.value)
                    ? chunk.value
                    : Buffer.from(chunk.value.buffer, chunk.value.byteOffset, chunk.value.byteLength);
                this.sha.update(data);
                this.size += data.length;
                this.pending = data;
                // Its chunks (and the SSH and age chunks before them) are dead once copied: freed early.
                streamedBytes(data.length);
            }
            const n = Math.min(buf.length - filled, this.pending.length);
            this.pending.copy(buf, filled, 0, n);
            filled += n;
            this.pending = this.pending.subarray(n);
        }
        return filled;
    }
    digest() {
        return this.sha.digest('hex');
    }
}
async function uploadStream(opts) {
    const { store, key } = opts;
    const partSize = opts.partSize ?? R2_MIN_PART;
    if (partSize < R2_MIN_PART)
        throw new errors_OpsError(`part size ${partSize} is below R2's 5 MiB minimum`);
    const pool = opts.pool ?? new BufferPool();
    const contentType = opts.contentType ?? 'application/octet-stream';
    const source = new StreamParts(opts.body);
    let upload;
    try {
        // The first part decides: a stream shorter than one part is one PutObject.
        const buf = pool.get(partSize);
        let length;
        try {
            length = await source.next(buf);
        }
        catch (err) {
            pool.put(buf);
            throw err;
        }
        if (length < partSize) {
            let etag;
            try {
                // Made visible only after beforeComplete agreed.
                await opts.beforeComplete?.();
                ({ etag } = await store.put(key, buf.subarray(0, length), { contentType }));
            }
            finally {
                pool.put(buf);
            }
            await store.confirmStored(key, { size: source.size, etag });
            return { key, size: source.size, sha256: source.digest(), parts: 1 };
        }
        upload = await store.createUpload(key, contentType).catch((err) => {
            pool.put(buf);
            throw err;
        });
        // One part filling while the others are in flight: the stream keeps flowing.
        const sent = await sendParts({
            store,
            upload,
            partSize,
            source,
            pool,
            slots: new Semaphore(Math.max(1, opts.concurrency ?? 2)),
            readAhead: true,
            first: { buf, length },
        });
        await opts.beforeComplete?.();
        const etag = await store.completeUpload(upload, sent.parts);
        upload = undefined;
        await store.confirmStored(key, { size: source.size, etag });
        return { key, size: source.size, sha256: source.digest(), parts: sent.parts.length };
    }
    catch (err) {
        if (upload !== undefined)
            await store.abortUpload(upload);
        throw describeS3Failure(`upload of ${key}`, err);
    }
}

;// CONCATENATED MODULE: ./src/backup/archive-stream.ts
// One item's journey: remote tar | compressor \u2192 SSH channel \u2192 age encryption \u2192 sha256 \u2192 R2
// multipart, in one stream with backpressure end to end (no temp files). The object becomes
// visible only after the remote command exited cleanly; otherwise the upload is aborted.





function stderrTail(text) {
    const lines = text
        .trim()
        .split('\n')
        .filter((l) => !/^Total bytes written:/.test(l));
    return lines.slice(-5).join(' | ');
}
async function streamItem(opts) {
    const started = Date.now();
    // Exit 1 is judged below (tar's "file changed as we read it" is fine, sudo's refusal is not).
    const exec = opts.conn.exec(opts.command, { allowedExitCodes: [0, 1] });
    let archiveBytes = 0;
    const counter = new external_node_stream_.PassThrough({
        transform(chunk, _enc, cb) {
            archiveBytes += chunk.length;
            cb(null, chunk);
        },
    });
    // pipeline() carries a failed SSH stream (drop, signal, bad exit) into the encryption and upload.
    (0,external_node_stream_.pipeline)(exec.stdout, counter, () => { });
    const encrypted = await encryptStream(opts.recipients, counter);
    let warning;
    const upload = uploadStream({
        store: opts.store,
        key: opts.key,
        body: encrypted,
        contentType: 'application/octet-stream',
        partSize: opts.partSize,
        ...(opts.pool ? { pool: opts.pool } : {}),
        ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
        beforeComplete: async () => {
            const result = await exec.done;
            if (result.code === 1) {
                const stderr = exec.stderrText();
                if (!changedWhileReading(stderr)) {
                    throw new errors_OpsError(`item ${opts.itemId}: the remote archive command exited with code 1: ${stderrTail(stderr) || 'no message'}`);
                }
                warning = `item ${opts.itemId}: files changed while they were read (tar exit 1), archive kept: ${stderrTail(stderr)}`;
            }
            if (archiveBytes === 0)
                throw new errors_OpsError(`item ${opts.itemId}: the host sent an empty archive`);
        },
    });
    let stored;
    try {
        stored = await upload;
    }
    catch (err) {
        // Stop reading; closing the connection afterwards ends the remote command.
        encrypted.destroy();
        counter.destroy();
        throw err;
    }
    return {
        stored,
        archiveBytes,
        tarBytes: parseTarTotals(exec.stderrText()) ?? null,
        ...(warning ? { warning } : {}),
        ms: Date.now() - started,
    };
}

;// CONCATENATED MODULE: ./src/backup/write-items.ts
// The items of one backup into the bucket: each planned item streamed (remote tar \u2192 age \u2192 R2
// multipart), proved stored by R2's answers (r2-stream-upload.ts), read back too with
// verify: read-back, and recorded as its manifest item, a few items at a time.






/** Streams every planned item into the bucket, a few at a time; the first failure stops new ones. */
async function writeItems(run) {
    const { config, logger } = run.opts;
    const todo = config.items.flatMap((item) => {
        const planned = run.plan.find((p) => p.id === item.id);
        return planned && planned.action !== 'skip' ? [{ item, planned }] : [];
    });
    // Items run a few at a time: one item's stalls (remote tar start-up, the last parts, the
    // read-back) overlap another's streaming. Parts in flight per item drop to one then, so the
    // part buffers stay at 2 per item (RSS), taken from one pool for the whole run.
    const width = Math.max(1, Math.min(run.opts.itemConcurrency ?? 2, todo.length));
    const partConcurrency = run.opts.concurrency ?? (width > 1 ? 1 : undefined);
    const streams = { ...run, width, partConcurrency, pool: new BufferPool() };
    const items = new Array(todo.length);
    await forEachLimit(todo, width, async ({ item, planned }, index) => {
        items[index] =
            width === 1
                ? await logger.group(`Back up ${item.id}`, () => writeItem(streams, item, planned))
                : (logger.info(`Back up ${item.id}`), await writeItem(streams, item, planned));
    });
    return items;
}
/** One item: streamed, its parts judged, read back, and recorded as its manifest item. */
async function writeItem(streams, item, planned) {
    const { opts, compressor, warn } = streams;
    const key = streams.keys.item(item.id, remote_commands_COMPRESSORS[compressor].extension);
    streams.written.push(key);
    const result = await streamItem({
        conn: streams.conn,
        itemId: item.id,
        // Only the paths the probe found: tar would fail on a missing one.
        command: archiveCommand(opts.config, { ...item, paths: planned.paths }, compressor),
        recipients: opts.recipients,
        store: streams.store.r2,
        key,
        partSize: reservePartSize(streams, item.id),
        pool: streams.pool,
        ...(streams.partConcurrency !== undefined ? { concurrency: streams.partConcurrency } : {}),
    });
    if (result.warning)
        warn(result.warning);
    const partWarning = partsWarning(item.id, result.stored, streams.partSizeFor(item.id), opts.partSize === undefined);
    if (partWarning)
        warn(partWarning);
    if (opts.verifyReadBack ?? false)
        await checkReadBack(streams.store, item.id, key, result.stored);
    opts.logger.info(`${item.id}: ${result.tarBytes ?? '?'} tar bytes \u2192 ${result.archiveBytes} compressed \u2192 ${result.stored.size} stored, sha256 ${result.stored.sha256.slice(0, 12)} in ${(result.ms / 1000).toFixed(1)} s`);
    return manifestItem(item, planned, { key, compression: compressor, ...result });
}
/** An item's part size, its buffers reserved in the run's pool before its stream starts. */
function reservePartSize(streams, itemId) {
    const size = streams.partSizeFor(itemId);
    // As many as the items streaming at once can hold: one filling and the rest in flight each.
    streams.pool.reserve(size, streams.width * ((streams.partConcurrency ?? 2) + 1));
    return size;
}
/** The object R2 holds must be the bytes uploaded: its sha256 and size, read back. */
async function checkReadBack(store, itemId, key, stored) {
    const back = await store.sha256Of(key);
    if (back.sha256 !== stored.sha256 || back.bytes !== stored.size) {
        throw new errors_OpsError(`item ${itemId}: read-back of ${key} gives sha256 ${back.sha256} (${back.bytes} bytes), uploaded ${stored.sha256} (${stored.size} bytes)`);
    }
}

;// CONCATENATED MODULE: ./src/backup/run-backup.ts
















// The part sizes and the plan have modules of their own; the action and the tests take them here.


async function runBackup(opts) {
    const run = startRun(opts);
    // The SSH handshake (a few round trips over the tailnet) runs while R2 answers.
    const connecting = connectSsh({ ...opts.ssh, logger: opts.logger });
    connecting.catch(() => undefined); // handled below; a refused pin must not be "unhandled" first
    let bucket;
    try {
        bucket = await readBucket(run);
    }
    catch (err) {
        await connecting.then((c) => c.close()).catch(() => undefined);
        throw err;
    }
    const conn = await connected(opts, connecting);
    try {
        const host = await checkHost(run, conn, bucket);
        if (opts.dryRun)
            return await dryRun(run, host);
        const items = await writeBackup(run, conn, bucket, host);
        await moveLatest(run, bucket);
        const pruned = await retentionAfterBackup(run, bucket.backupId);
        if (opts.afterBackup)
            await opts.afterBackup(conn);
        const bytes = items.reduce((n, i) => n + i.storedBytes, 0);
        return { ...host, dryRun: false, bytes, items, ...pruned, warnings: run.warnings };
    }
    finally {
        await conn.close();
    }
}
/** The run's clock, store and warnings (each is logged and kept for the summary). */
function startRun(opts) {
    const warnings = [];
    const warn = (message) => {
        warnings.push(message);
        opts.logger.warn(message);
    };
    const now = opts.now ?? (() => new Date());
    return { opts, store: BackupStore.open(opts, opts.logger), now, warnings, warn };
}
/** A start time whose backup id has no objects yet (ids have one-second resolution). */
async function freeBackupTime(store, prefix, now) {
    let started = now();
    for (let tries = 0; (await store.listKeys(backupKeys(prefix, backupIdFor(started)).dir)).length > 0; tries++) {
        if (tries >= 3)
            throw new errors_OpsError(`backup id ${backupIdFor(started)} is already in use under ${prefix}`);
        await sleep(1000 - (started.getTime() % 1000) + 5);
        started = now();
    }
    return started;
}
/** While SSH connects: a free backup id, the latest backup, the part sizes from its manifest. */
async function readBucket(run) {
    const { opts, store } = run;
    const { logger } = opts;
    const started = await freeBackupTime(store, opts.prefix, run.now);
    const previousLatest = await logger.group('Read the current backups', async () => {
        const latest = await store.latest();
        logger.info(latest ? `latest backup: ${latest.backupId}` : 'no backup yet under this prefix');
        return latest;
    });
    // A dry run uploads nothing: no need to read the last manifest for part sizes.
    const partSizeFor = await partSizes(store, opts.dryRun ? undefined : previousLatest, opts.partSize, logger);
    const backupId = backupIdFor(started);
    const keys = backupKeys(opts.prefix, backupId);
    return { started, backupId, keys, previousLatest, partSizeFor };
}
/** The connection started before R2 was read, once its pinned host key was accepted. */
function connected(opts, connecting) {
    return opts.logger.group(`Connect to ${opts.ssh.host}:${opts.ssh.port}`, async () => {
        const c = await connecting;
        opts.logger.info(`connected as ${opts.ssh.username}; host key ${c.hostFingerprint} is pinned`);
        return c;
    });
}
/** Probes the host and records its facts, then plans: a required item missing stops here. */
async function checkHost(run, conn, bucket) {
    const { config, logger } = run.opts;
    // Both read-only commands share the connection at once (one round trip less), then report.
    const [probeOut, factsOut] = await Promise.all([
        conn.run(probeCommand(config)),
        conn.run(factsCommand(config)),
    ]);
    const probe = await logger.group('Check the host', async () => {
        const p = parseProbe(probeOut.stdout);
        logger.info(`compression on the host: ${p.compressor}`);
        return p;
    });
    const { plan, problems } = planItems(config, probe);
    if (problems.length > 0) {
        throw new errors_OpsError(`backup ${bucket.backupId} cannot start: ${problems.join('; ')}`);
    }
    const skipped = skippedItems(plan, run.warn);
    const facts = await recordFacts(run, factsOut.stdout);
    return {
        backupId: bucket.backupId,
        manifestKey: bucket.keys.manifest,
        skipped,
        plan,
        facts,
        compressor: probe.compressor,
        hostFingerprint: conn.hostFingerprint,
        previousLatest: bucket.previousLatest,
    };
}
/** Optional items missing on the host, in whole (skipped) or in part: a warning each. */
function skippedItems(plan, warn) {
    const skipped = [];
    for (const p of plan) {
        if (p.missing.length === 0)
            continue;
        if (p.action === 'skip') {
            skipped.push({ id: p.id, reason: `missing on the host: ${p.missing.join(', ')}` });
            warn(`optional item ${p.id} is missing on the host (${p.missing.join(', ')}); skipped`);
        }
        else {
            warn(`optional item ${p.id}: ${p.missing.join(', ')} missing on the host; the rest is backed up`);
        }
    }
    return skipped;
}
function recordFacts(run, output) {
    const { config, logger } = run.opts;
    return logger.group('Record host facts', async () => {
        const parsed = parseFacts(output, config['disk-facts']);
        for (const m of parsed.missing)
            run.warn(`host fact unavailable: ${m}`);
        logger.info(`hostname ${parsed.facts.hostname}, ${parsed.facts.os}, tailscale ${parsed.facts.tailscaleIp || '-'}`);
        return parsed.facts;
    });
}
/** The dry run: what retention would decide and what each item would take; nothing written. */
async function dryRun(run, host) {
    const { opts, store } = run;
    const { logger } = opts;
    const retentionSkipped = opts.skipRetention ?? false;
    const { retention } = retentionSkipped
        ? { retention: [] }
        : await logger.group('Retention (dry run: nothing is deleted)', () => pruneBackups(store, {
            policy: opts.retention,
            now: run.now(),
            dryRun: true,
            logger,
            warn: run.warn,
        }));
    for (const p of host.plan)
        logger.info(`would back up ${p.id}: ${p.action === 'backup' ? p.paths.join(' ') : 'skip'}`);
    return {
        ...host,
        dryRun: true,
        bytes: 0,
        items: [],
        retentionSkipped,
        retention,
        deleted: [],
        refused: [],
        warnings: run.warnings,
    };
}
/**
 * Writes the backup: its items, RESTORE.sh, then the signed manifest last. After a failure what
 * it wrote is removed, and the error says what is left and that latest.json is untouched.
 */
async function writeBackup(run, conn, bucket, host) {
    const { opts, store } = run;
    const { keys } = bucket;
    const written = [];
    try {
        const items = await writeItems({
            opts,
            store,
            conn,
            compressor: host.compressor,
            plan: host.plan,
            keys,
            written,
            warn: run.warn,
            partSizeFor: bucket.partSizeFor,
        });
        const finishedAt = run.now().toISOString();
        const script = restoreScript({
            backupId: bucket.backupId,
            toolVersion: TOOL_VERSION,
            bucket: opts.bucket,
            manifestKey: keys.manifest,
            endpoint: opts.endpoint,
            hostFingerprint: host.hostFingerprint,
            facts: host.facts,
            ...rebuildOf(opts),
            items,
        });
        written.push(keys.restoreScript);
        const scriptSha = await store.putSmall(keys.restoreScript, script, 'text/x-shellscript');
        const restore = {
            key: keys.restoreScript,
            sha256: scriptSha,
            bytes: Buffer.byteLength(script),
        };
        const manifest = manifestOf(run.opts, bucket, host, {
            finishedAt,
            items,
            restoreScript: restore,
        });
        await writeSignedManifest(run, keys, manifest, written);
        return items;
    }
    catch (err) {
        throw await writeFailure(run, bucket, written, err);
    }
}
/** The host RESTORE.sh rebuilds into, and the checks of its verify step. */
function rebuildOf(opts) {
    return { shape: opts.config.host, checks: opts.checks ?? planChecks({}).checks };
}
/** The manifest of the backup just written (its items and RESTORE.sh are in the bucket). */
function manifestOf(opts, bucket, host, written) {
    return {
        format: MANIFEST_FORMAT,
        backupId: bucket.backupId,
        tool: { name: TOOL_NAME, version: TOOL_VERSION },
        startedAt: bucket.started.toISOString(),
        finishedAt: written.finishedAt,
        host: {
            address: opts.ssh.host,
            port: opts.ssh.port,
            user: opts.ssh.username,
            fingerprint: host.hostFingerprint,
            hostRoot: opts.config['host-root'],
        },
        facts: host.facts,
        encryption: { format: 'age', recipients: opts.recipients },
        items: written.items,
        rebuild: { host: opts.config.host, checks: rebuildOf(opts).checks },
        skipped: host.skipped,
        restoreScript: written.restoreScript,
    };
}
function writeSignedManifest(run, keys, manifest, written) {
    const { opts, store } = run;
    return opts.logger.group('Sign and write the manifest (last)', async () => {
        // The signature goes first: a manifest never exists without it.
        const text = `${JSON.stringify(manifest, null, 2)}\n`;
        const signature = signSshsig(Buffer.from(text), SIGNATURE_NAMESPACE, opts.signer);
        written.push(keys.signature);
        await store.putSmall(keys.signature, signature, 'text/plain');
        written.push(keys.manifest);
        await store.putSmall(keys.manifest, text, 'application/json', true);
        opts.logger.info(`manifest ${keys.manifest}, signed by ${fingerprintSha256(opts.signer.publicKey)}`);
    });
}
/** The error of a failed write, once what it wrote is removed (or reported where R2 refused). */
async function writeFailure(run, bucket, written, err) {
    const leftovers = await cleanup(run.store, written, run.warn);
    const { previousLatest } = bucket;
    const latest = previousLatest
        ? `latest.json still names ${previousLatest.backupId}`
        : 'no latest.json was written';
    const removed = leftovers.length === 0
        ? 'What it uploaded was removed'
        : `${leftovers.length} object(s) it uploaded could not be removed (see the warning; no manifest, so they are no backup)`;
    return new errors_OpsError(`backup ${bucket.backupId} failed: ${errors_errorMessage(err)}. ${removed}; ${latest}.`, { cause: err });
}
/**
 * Removes what a failed run wrote. What R2 refuses or fails to delete (a token without delete
 * rights gets 403) is listed in one warning and returned: it has no manifest, so it is no
 * backup, and retention removes it once it is stale.
 */
async function cleanup(store, written, warn) {
    const leftovers = [];
    for (const key of [...written].reverse()) {
        try {
            const refused = await store.tryDelete(key);
            if (refused)
                leftovers.push({ key, why: refused.code });
        }
        catch (err) {
            leftovers.push({ key, why: errors_errorMessage(err) });
        }
    }
    if (leftovers.length > 0) {
        warn(`could not remove ${leftovers.length} object(s) this failed run wrote: ` +
            `${leftovers.map((l) => `${l.key} (${l.why})`).join(', ')}. They have no manifest, so ` +
            'they are no backup; retention (mode: retention) removes them once they are stale (24 h).');
    }
    return leftovers.map((l) => l.key);
}
/** latest.json moves to the new backup only once its signed manifest is written. */
async function moveLatest(run, bucket) {
    const pointer = {
        backupId: bucket.backupId,
        manifestKey: bucket.keys.manifest,
        finishedAt: run.now().toISOString(),
    };
    await run.store.putSmall(latestKey(run.opts.prefix), `${JSON.stringify(pointer, null, 2)}\n`, 'application/json');
    run.opts.logger.info(`latest.json \u2192 ${bucket.backupId}`);
}
/** Retention at the end of a backup, unless it runs as its own job (skipRetention). */
async function retentionAfterBackup(run, backupId) {
    const { logger } = run.opts;
    if (run.opts.skipRetention ?? false) {
        logger.info('retention skipped: it runs as its own job (mode: retention)');
        return { retentionSkipped: true, retention: [], deleted: [], refused: [] };
    }
    // Only these three reach the result (not the count of multipart uploads aborted).
    const { retention, deleted, refused } = await logger.group('Retention', () => pruneAfterBackup(run, backupId));
    return { retentionSkipped: false, retention, deleted, refused };
}
/** Retention's failure after a backup is a warning: the new backup is complete. */
async function pruneAfterBackup(run, backupId) {
    const { opts } = run;
    try {
        return await pruneBackups(run.store, {
            policy: opts.retention,
            keep: { id: backupId, reason: 'just written' },
            ...(opts.staleAfterMs !== undefined ? { staleAfterMs: opts.staleAfterMs } : {}),
            now: run.now(),
            logger: opts.logger,
            warn: run.warn,
        });
    }
    catch (err) {
        run.warn(`retention did not finish (${errors_errorMessage(err)}); the new backup is complete and kept`);
        return { retention: [], deleted: [], refused: [] };
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

;// CONCATENATED MODULE: ./src/backup/alert.ts
const ALERT_ISSUE_TITLE = 'Nightly backup failing';

;// CONCATENATED MODULE: ./src/actions/shared/alert.ts

function runUrl(env = process.env) {
    const server = env.GITHUB_SERVER_URL ?? 'https://github.com';
    const repo = env.GITHUB_REPOSITORY ?? '';
    return env.GITHUB_RUN_ID
        ? `${server}/${repo}/actions/runs/${env.GITHUB_RUN_ID}`
        : '(run link unavailable)';
}
function githubAlerts(opts) {
    const repository = opts.repository ?? process.env.GITHUB_REPOSITORY ?? '';
    const [owner, repo] = repository.split('/');
    if (!owner || !repo)
        throw new Error(`GITHUB_REPOSITORY is not owner/name: ${JSON.stringify(repository)}`);
    const apiUrl = opts.apiUrl ?? process.env.GITHUB_API_URL;
    const title = opts.title ?? ALERT_ISSUE_TITLE;
    const what = opts.what ?? 'The nightly backup';
    const subject = opts.subject ?? 'Backup';
    // Loaded only when an alert is actually sent: Octokit costs ~26 MiB of memory at import.
    let client;
    const octokitClient = () => (client ??= Promise.all(/* import() */[__webpack_require__.e(119), __webpack_require__.e(413)]).then(__webpack_require__.bind(__webpack_require__, 2413)).then((github) => github.getOctokit(opts.token, apiUrl ? { baseUrl: apiUrl } : {})));
    const openIssue = async (octokit) => {
        const issues = await octokit.paginate(octokit.rest.issues.listForRepo, {
            owner,
            repo,
            state: 'open',
            per_page: 100,
        });
        return issues.find((i) => !i.pull_request && i.title === title)?.number;
    };
    return {
        async failed(message, link) {
            const body = opts.redact(`${what} failed.\n\n\`\`\`\n${message}\n\`\`\`\n\nRun: ${link}`);
            const octokit = await octokitClient();
            const existing = await openIssue(octokit);
            if (existing === undefined) {
                await octokit.rest.issues.create({ owner, repo, title, body });
            }
            else {
                await octokit.rest.issues.createComment({ owner, repo, issue_number: existing, body });
            }
        },
        async recovered(backupId, link) {
            const octokit = await octokitClient();
            const existing = await openIssue(octokit);
            if (existing === undefined)
                return;
            await octokit.rest.issues.createComment({
                owner,
                repo,
                issue_number: existing,
                body: `${subject} ${backupId} succeeded; closing. Run: ${link}`,
            });
            await octokit.rest.issues.update({
                owner,
                repo,
                issue_number: existing,
                state: 'closed',
                state_reason: 'completed',
            });
        },
    };
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

;// CONCATENATED MODULE: ./src/backup/signing-key.ts
// The backup signing key (backup-verda's `signing-key` input). Apart from signature.ts so that
// the restore drill, which only verifies, does not bundle ssh2's key parser.


/**
 * The signer of an OpenSSH Ed25519 private key (ssh-keygen -t ed25519), as given in the
 * `signing-key` input. The key is never echoed. ssh2 parses the OpenSSH format.
 */
function parseSigningKey(input, text) {
    const expected = "an unencrypted OpenSSH Ed25519 private key (ssh-keygen -t ed25519 -N '' -f backup-signing)";
    const key = text.trim() === '' ? undefined : lib_default().utils.parseKey(text.trim());
    if (!key || key instanceof Error || Array.isArray(key))
        throw new errors_InputError(input, '<redacted>', expected);
    if (!key.isPrivateKey())
        throw new errors_InputError(input, '<redacted>', `${expected}: this is a public key`);
    if (key.type !== 'ssh-ed25519')
        throw new errors_InputError(input, '<redacted>', `${expected}: this is a ${key.type} key`);
    return { publicKey: key.getPublicSSH(), sign: (data) => key.sign(data) };
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

;// CONCATENATED MODULE: ./src/actions/backup-verda/inputs.ts










function parseMode(source) {
    return new Inputs(source).oneOf('mode', ['backup', 'retention'], 'backup');
}
/** The secret inputs, to mask before anything else happens. */
const SECRET_INPUTS = [
    'ssh-private-key',
    'signing-key',
    'r2-access-key-id',
    'r2-secret-access-key',
    'github-token',
];
function parseBucketInputs(inputs) {
    const bucket = validateBucketName('bucket', inputs.required('bucket', 'an R2 bucket name'));
    const prefix = parsePrefix('prefix', inputs.required('prefix', 'a key prefix such as backups/verda'));
    const access = parseR2Access(inputs);
    const retention = parseRetention('retention', inputs.raw('retention') || 'daily=7,weekly=4,monthly=6');
    const dryRun = inputs.boolean('dry-run', false);
    return { bucket, prefix, ...access, retention, dryRun };
}
/**
 * mode: retention \u2014 the bucket inputs only. The job holds neither the SSH key nor the signing
 * key (given ones are refused, not ignored), and it must apply retention.
 */
function parseRetentionInputs(source) {
    const inputs = new Inputs(source);
    for (const secret of ['ssh-private-key', 'signing-key']) {
        if (inputs.raw(secret) !== '')
            throw new errors_InputError(secret, '', 'empty in mode retention (that job needs no such key)');
    }
    if (inputs.boolean('with-models', false))
        throw new errors_InputError('with-models', inputs.raw('with-models'), 'false in mode retention');
    if (!inputs.boolean('apply-retention', true))
        throw new errors_InputError('apply-retention', inputs.raw('apply-retention'), 'true in mode retention (that mode only applies retention)');
    return parseBucketInputs(inputs);
}
/** Every input checked before any connection or request (each error names input and value). */
async function parseBackupInputs(source, cwd = process.cwd()) {
    const inputs = new Inputs(source);
    const ssh = parseSshTarget(inputs);
    const configFile = external_node_path_default().resolve(cwd, inputs.required('config', 'the path of the backup config (config/backup.yml)'));
    const bucketInputs = parseBucketInputs(inputs);
    const recipients = await parseRecipients('age-recipients', inputs.list('age-recipients'));
    const signer = parseSigningKey('signing-key', inputs.secret('signing-key', 'the backup signing key (an OpenSSH Ed25519 private key)'));
    const skipRetention = !inputs.boolean('apply-retention', true);
    const withModels = inputs.boolean('with-models', false);
    const modelsBucket = validateBucketName('models-bucket', inputs.optional('models-bucket') ?? bucketInputs.bucket);
    const modelsPrefix = parsePrefix('models-prefix', inputs.raw('models-prefix') || 'models');
    const verify = inputs.oneOf('verify', ['read-back', 'in-transit'], 'in-transit');
    // Memory is about 4 parts (2 items, each one part filling and one uploading): cap it.
    const partSize = inputs.size('part-size', {
        min: R2_MIN_PART,
        max: MAX_PART_MIB * 2 ** 20,
        allowAuto: true,
    });
    return {
        ssh,
        configFile,
        verifyConfigFile: external_node_path_default().resolve(cwd, inputs.raw('verify-config') || 'config/verify.yml'),
        ...bucketInputs,
        recipients,
        signer,
        skipRetention,
        withModels,
        modelsBucket,
        modelsPrefix,
        verify,
        partSize,
        githubToken: inputs.optional('github-token'),
    };
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
const bucket_manifestSchema = schemas/* strictObject */.rej({
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
        throw invalid(errors_errorMessage(err));
    }
    const parsed = bucket_manifestSchema.safeParse(data);
    if (!parsed.success) {
        const issues = schema_schemaProblems(parsed.error);
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
async function partial_hashFile(file, sha) {
    const buf = Buffer.allocUnsafeSlow(2 ** 20);
    const fh = await open(file, 'r');
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
class partial_LocalPartialFile {
    final;
    partial;
    /** A hash of exactly the partial's bytes, kept while this process wrote them. */
    running;
    constructor(dir, rel) {
        this.final = resolveInside(dir, rel, 'model path');
        this.partial = `${this.final}.partial`;
    }
    async size() {
        await mkdir(path.dirname(this.final), { recursive: true });
        try {
            return (await stat(this.partial)).size;
        }
        catch {
            return 0;
        }
    }
    async write(body, fromStart) {
        // The kept prefix is hashed first (a reset costs only this re-read), then every new byte.
        const sha = createHash('sha256');
        const running = { sha, size: fromStart ? 0 : await partial_hashFile(this.partial, sha).catch(() => 0) };
        this.running = undefined;
        const tap = new Transform({
            transform(chunk, _enc, cb) {
                sha.update(chunk);
                running.size += chunk.length;
                cb(null, chunk);
            },
        });
        try {
            await pipeline(body, tap, createWriteStream(this.partial, { flags: fromStart ? 'w' : 'a' }));
        }
        finally {
            this.running = running;
        }
    }
    async digest() {
        const size = (await stat(this.partial)).size;
        if (this.running?.size === size)
            return { size, sha256: this.running.sha.digest('hex') };
        const sha = createHash('sha256');
        await partial_hashFile(this.partial, sha);
        return { size, sha256: sha.digest('hex') };
    }
    async discard() {
        this.running = undefined;
        await rm(this.partial, { force: true });
    }
    async commit() {
        await rename(this.partial, this.final);
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
        this.final = safe_path_resolveInside(dir, rel, 'model path', (external_node_path_default()).posix);
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
                entries = await readdir(path.join(this.dir, rel), { withFileTypes: true });
            }
            catch (err) {
                if (rel === '')
                    throw new OpsError(`cannot read the models directory ${this.dir}: ${errorMessage(err)}`);
                throw err;
            }
            for (const e of entries) {
                const child = rel ? `${rel}/${e.name}` : e.name;
                if (e.isDirectory())
                    await walk(child);
                else if (e.isFile() && !e.name.endsWith('.partial')) {
                    out.push({ path: child, size: (await stat(path.join(this.dir, child))).size });
                }
            }
        };
        await walk('');
        return out.sort((a, b) => (a.path < b.path ? -1 : 1));
    }
    async reader(file) {
        const fh = await open(this.at(file), 'r');
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
        await mkdir(this.dir, { recursive: true });
    }
    partial(file) {
        return new LocalPartialFile(this.dir, file);
    }
    async remove(file) {
        await rm(this.at(file), { force: true });
    }
    async sha256(files) {
        const out = new Map();
        for (const f of files) {
            const sha = createHash('sha256');
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
        return safe_path_resolveInside(this.dir, file, 'model path', (external_node_path_default()).posix);
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
    const eta = rate > 0 ? format_formatDuration(((size - done) / rate) * 1000) : '?';
    return `${path}: ${format_formatBytes(done)} / ${format_formatBytes(size)} (${pct}%), ${formatRate(done, elapsedMs)}, ETA ${eta}`;
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
                    /premature|aborted|terminated|socket|ECONNRESET/i.test(errors_errorMessage(err)))),
        onRetry: ({ err, attempt: n }) => o.logger.warn(`${o.path}: download attempt ${n} failed (${errors_errorMessage(err)}); resuming`),
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
    logger.info(`${f.path}: upload start (${format_formatBytes(f.size)})`);
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
        logger.info(`${f.path}: uploaded ${format_formatBytes(f.size)} in ${format_formatDuration(ms)} (${formatRate(f.size, ms)}), sha256 ${r.sha256}; ${note}`);
    }
    catch (err) {
        track.end();
        throw new errors_OpsError(`${f.path}: upload failed: ${errors_errorMessage(err)}`, { cause: err });
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
    logger.info(`${j.path}: download start from ${origin}${j.size !== undefined ? ` (${format_formatBytes(j.size)})` : ''}`);
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
            r.resumedFrom > 0 ? `resumed at ${format_formatBytes(r.resumedFrom)}` : '',
        ]
            .filter(Boolean)
            .join(', ');
        report.files.push({ path: j.path, action: 'downloaded', size: r.size, ms, note });
        logger.info(`${j.path}: downloaded ${format_formatBytes(r.size)} in ${format_formatDuration(ms)} (${formatRate(r.size, ms)}); ${note}`);
    }
    catch (err) {
        track.end();
        throw err instanceof errors_OpsError
            ? err
            : new errors_OpsError(`${j.path}: download failed: ${errors_errorMessage(err)}`, { cause: err });
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

;// CONCATENATED MODULE: ./src/actions/backup-verda/with-models.ts





/** Checks the config up front (before any connection) and returns the post-backup hook. */
function modelSync(config, configFile, vault, logger) {
    const dir = config['models-dir'];
    if (!dir) {
        throw new errors_ConfigError(configFile, [
            'models-dir: required when with-models is true (where the .safetensors live on the host)',
        ]);
    }
    let report;
    return {
        report: () => report,
        afterBackup: async (conn) => {
            report = await logger.group(`Sync the model vault (s3://${vault.bucket}/${vault.prefix})`, () => syncModels({
                direction: 'push',
                host: new SshModelHost(conn, onHost(config, dir)),
                client: vault.client,
                bucket: vault.bucket,
                prefix: normalizePrefix(vault.prefix),
                include: ['**/*.safetensors'],
                concurrency: 2,
                delete: false,
                dryRun: false,
                hfFallback: false,
            }, logger));
            logger.info(`model vault: ${report.uploaded} uploaded, ${report.skipped} unchanged, ${report.bytes} bytes`);
        },
    };
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
            format_formatBytes(f.size),
            f.ms > 0 ? format_formatDuration(f.ms) : '-',
            f.ms > 0 ? formatRate(f.size, f.ms) : '-',
            f.note ?? '',
        ]),
    };
    const ops = Object.entries(r.requests.byOperation)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([op, n]) => `${op} ${n}`)
        .join(', ');
    const facts = summary_factsTable('R2 requests of this run', [
        ['Compared by', r.compare],
        [
            'Uploaded / downloaded / skipped / deleted',
            `${r.uploaded} / ${r.downloaded} / ${r.skipped} / ${r.deleted}`,
        ],
        ['Bytes moved', format_formatBytes(r.bytes)],
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

;// CONCATENATED MODULE: ./src/actions/backup-verda/main.ts












async function run(port) {
    await runAction(port, async () => {
        const secrets = maskSecretInputs(port, SECRET_INPUTS);
        const redact = (text) => secrets.reduce((t, s) => t.split(s).join('***'), text);
        if (parseMode(port.input) === 'retention')
            return retentionOnly(port);
        const inputs = await parseBackupInputs(port.input);
        const config = await loadBackupConfig(inputs.configFile);
        const checks = (await loadVerifyConfigIfPresent(inputs.verifyConfigFile)).checks;
        const alerts = inputs.githubToken
            ? githubAlerts({ token: inputs.githubToken, redact })
            : undefined;
        const logger = port.logger;
        const client = actionR2Client(inputs);
        const models = inputs.withModels && !inputs.dryRun
            ? modelSync(config, inputs.configFile, { client, bucket: inputs.modelsBucket, prefix: inputs.modelsPrefix }, logger)
            : undefined;
        let result;
        try {
            result = await runBackup({
                ssh: inputs.ssh,
                config,
                checks,
                client,
                bucket: inputs.bucket,
                prefix: inputs.prefix,
                endpoint: inputs.endpoint,
                recipients: inputs.recipients,
                signer: inputs.signer,
                retention: inputs.retention,
                skipRetention: inputs.skipRetention,
                dryRun: inputs.dryRun,
                verifyReadBack: inputs.verify === 'read-back',
                ...(inputs.partSize !== undefined ? { partSize: inputs.partSize } : {}),
                logger,
                ...(models ? { afterBackup: models.afterBackup } : {}),
            });
        }
        catch (err) {
            if (alerts && !inputs.dryRun) {
                await alerts.failed(redact(errors_errorMessage(err)), runUrl()).catch((alertErr) => {
                    logger.warn(`could not open the alert issue: ${redact(errors_errorMessage(alertErr))}`);
                });
            }
            throw err;
        }
        setOutputs(port, {
            'backup-id': result.backupId,
            'manifest-key': result.dryRun ? '' : result.manifestKey,
            bytes: result.bytes,
            items: result.dryRun
                ? result.plan.filter((p) => p.action === 'backup').length
                : result.items.length,
            'tailscale-ip': result.facts.tailscaleIp,
            'deleted-backups': result.deleted.length,
            'refused-backups': result.refused.length,
        });
        const modelReport = models?.report();
        await writeSummary(port, [
            ...backupReport(result, { bucket: inputs.bucket, prefix: inputs.prefix }),
            ...(modelReport ? syncTables(modelReport) : []),
        ]);
        if (alerts && !result.dryRun) {
            await alerts.recovered(result.backupId, runUrl()).catch((err) => {
                logger.warn(`could not close the alert issue: ${redact(errors_errorMessage(err))}`);
            });
        }
    });
}
/** mode: retention \u2014 its own job with its own credential: no SSH, nothing written, no alert. */
async function retentionOnly(port) {
    const inputs = parseRetentionInputs(port.input);
    const result = await runRetention({
        client: actionR2Client(inputs),
        bucket: inputs.bucket,
        prefix: inputs.prefix,
        retention: inputs.retention,
        dryRun: inputs.dryRun,
        logger: port.logger,
    });
    setOutputs(port, {
        'deleted-backups': result.deleted.length,
        'refused-backups': result.refused.length,
    });
    await writeSummary(port, retentionReport(result, { bucket: inputs.bucket, prefix: inputs.prefix }));
}


/***/ })

};
