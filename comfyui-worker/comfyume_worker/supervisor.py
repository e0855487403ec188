"""Runs ComfyUI and keeps its outputs: every finished prompt's files are copied to R2 with rclone
(key <prefix>/<prompt_id>/<file>, then a COMPLETE.json with each file's size and sha256), and on
SIGTERM the worker drains instead of dying mid-render.

Why a supervisor process (and not a custom node or a shell loop): it must outlive ComfyUI's own
reaction to SIGTERM (Python's default is to die at once, taking the running job with it), so it
runs ComfyUI in a session of its own, out of reach of tini's process-group signal, and decides
when ComfyUI stops. It watches ComfyUI through its public API (/queue, /history), so it works
with any ComfyUI release and the same code runs against the test stand-in.

On SIGTERM: a marker in WORKER_RUNTIME_DIR turns /ready to 503 and makes the comfyume_health node
refuse new POST /prompt; the running and queued prompts get SHUTDOWN_GRACE_SECONDS to finish;
their outputs are uploaded; a prompt still unfinished at the deadline is reported (a log line
naming it and <prefix>/<prompt_id>/INCOMPLETE.json in R2), and the exit code is then 75.

R2 credentials reach rclone only through its RCLONE_CONFIG_<REMOTE>_* environment variables:
never on a command line, never in a log line (rclone's messages are redacted before logging).
"""

import datetime
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from . import models, state

EX_USAGE = 64  # the configuration is wrong: restarting will not help
EX_INCOMPLETE = 75  # a prompt or an upload did not finish: reported, not dropped

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_PROMPT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASS", re.IGNORECASE)
MAX_BODY = 16 * 1024 * 1024
HISTORY_ITEMS = 64


def log(message):
    print(f"[comfyui-worker] {message}", file=sys.stderr, flush=True)


class ConfigError(Exception):
    pass


def _number(env, name, default, low, high, integer):
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw, 10) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} of seconds from {low} to {high}, got '{raw}'")
    return value


def config_from_env(env):
    """The supervisor's settings; ConfigError names the variable, the value and what is expected."""
    bucket = env.get("OUTPUT_BUCKET", "")
    if not _BUCKET.match(bucket):
        raise ConfigError(
            f"OUTPUT_BUCKET must be a bucket name (3-63 of a-z, 0-9, '.', '-'), got '{bucket}'"
        )
    prefix = env.get("OUTPUT_PREFIX", "outputs").strip("/")
    reason = models.unsafe_path_reason(prefix) if prefix else None
    if reason:
        raise ConfigError(
            f"OUTPUT_PREFIX {json.dumps(prefix)} is refused: {reason}; "
            f"expected {models.SAFE_PATH_EXPECTED}"
        )
    remote = env.get("OUTPUT_REMOTE", "r2")
    if not _REMOTE.match(remote):
        raise ConfigError(
            f"OUTPUT_REMOTE must be an rclone remote name (a letter, then letters, digits, '_'), got '{remote}'"
        )
    var = f"RCLONE_CONFIG_{remote.upper()}_"
    unset = [var + k for k in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "ENDPOINT") if not env.get(var + k)]
    if unset:
        raise ConfigError(
            f"OUTPUT_BUCKET is set but the R2 remote '{remote}' is not configured: set {', '.join(unset)} "
            "(from secrets; they are read by rclone from the environment only)"
        )
    port = env.get("PORT", "8188")
    listen = env.get("LISTEN", "0.0.0.0")
    host = listen if re.match(r"^\d+\.\d+\.\d+\.\d+$", listen) and listen != "0.0.0.0" else "127.0.0.1"
    comfyui_dir = env.get("COMFYUI_DIR") or "/opt/ComfyUI"
    return {
        "bucket": bucket,
        "prefix": prefix,
        "remote": remote,
        "remote_var": var,
        "url": f"http://{host}:{port}",
        "output_dir": env.get("OUTPUT_DIR") or os.path.join(comfyui_dir, "output"),
        "grace": _number(env, "SHUTDOWN_GRACE_SECONDS", 20, 0, 3600, True),
        "poll": _number(env, "OUTPUT_POLL_SECONDS", 1.0, 0.05, 60, False),
        "child_stop": _number(env, "CHILD_STOP_SECONDS", 5, 1, 60, True),
        "rclone": env.get("RCLONE") or "rclone",
        "runtime_dir": env.get("WORKER_RUNTIME_DIR") or "/tmp/comfyui-worker",
    }


def rclone_env(env, cfg):
    """The environment rclone runs with: the remote's keys as given, R2 defaults for the rest."""
    out = dict(env)
    for key, value in (
        ("TYPE", "s3"),
        ("PROVIDER", "Cloudflare"),
        ("REGION", "auto"),
        # The token may write objects without being allowed to create buckets.
        ("NO_CHECK_BUCKET", "true"),
    ):
        out.setdefault(cfg["remote_var"] + key, value)
    return out


def secret_values(env):
    return [
        v for k, v in env.items()
        if k.startswith("RCLONE_CONFIG_") and _SECRET_NAME.search(k[len("RCLONE_CONFIG_"):]) and len(v) >= 4
    ]


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_of(path):
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _shown(value):
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text[:80])


def parse_queue(data):
    """{prompt_id: 'running' | 'queued'} from GET /queue, or None when the shape is not ComfyUI's."""
    if not isinstance(data, dict):
        return None
    found = {}
    for kind, key in (("running", "queue_running"), ("queued", "queue_pending")):
        items = data.get(key, [])
        if not isinstance(items, list):
            return None
        for item in items:
            if isinstance(item, list) and len(item) > 1 and isinstance(item[1], str):
                found.setdefault(item[1], kind)
    return found


def output_files(entry):
    """[(relative path, None) | (None, problem)] for the outputs of one /history entry."""
    files = []
    outputs = entry.get("outputs") if isinstance(entry, dict) else None
    if not isinstance(outputs, dict):
        return files
    for node in outputs.values():
        if not isinstance(node, dict):
            continue
        for items in node.values():
            if not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
                    continue
                if item.get("type", "output") != "output":
                    continue  # previews (temp) are not results
                subfolder = item.get("subfolder") or ""
                if not isinstance(subfolder, str):
                    files.append((None, f"output subfolder {_shown(subfolder)} is not a string"))
                    continue
                rel = f"{subfolder.strip('/')}/{item['filename']}" if subfolder.strip("/") else item["filename"]
                reason = models.unsafe_path_reason(rel)
                if reason:
                    files.append((None, f"output {_shown(rel)} is refused: {reason}"))
                elif rel not in [f for f, _ in files]:
                    files.append((rel, None))
    return files


class Supervisor:
    def __init__(self, cfg, command, env):
        self.cfg = cfg
        self.command = command
        self.env = rclone_env(env, cfg)
        self.secrets = secret_values(self.env)
        self.child = None
        self.terminating = False
        self.signal_name = "SIGTERM"
        self.inflight = {}  # prompt id -> running | queued, from the last good /queue
        self.done = set()  # prompt ids whose outputs and COMPLETE.json are in R2
        self.failed = {}  # prompt id -> (why the upload failed, next attempt time, attempts)
        self.api_ok = None  # last /queue or /history outcome, to log only changes
        self.skipped_ids = set()

    # ---- plumbing -------------------------------------------------------------------------
    def redact(self, text):
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def key(self, prompt_id, name):
        return "/".join(p for p in (self.cfg["prefix"], prompt_id, name) if p)

    def target(self, key):
        return f"{self.cfg['remote']}:{self.cfg['bucket']}/{key}"

    def rclone(self, args, data=None):
        """None on success, else rclone's last message lines (redacted)."""
        command = [self.cfg["rclone"], *args, "--retries", "3", "--low-level-retries", "3",
                   "--contimeout", "10s", "--timeout", "60s"]
        try:
            done = subprocess.run(command, input=data, env=self.env, capture_output=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            return self.redact(f"rclone could not run: {err}")
        if done.returncode == 0:
            return None
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        return self.redact(f"rclone exit {done.returncode}: {' | '.join(lines) or 'no message'}")

    def get_json(self, path):
        try:
            with urllib.request.urlopen(self.cfg["url"] + path, timeout=5) as res:
                data = json.loads(res.read(MAX_BODY + 1)[:MAX_BODY])
        except (OSError, ValueError) as err:
            # Quiet until ComfyUI has answered once (it is still starting), then once per outage.
            if self.api_ok:
                log(f"outputs: ComfyUI did not answer GET {path}: {err}")
            if self.api_ok is not None:
                self.api_ok = False
            return None
        if self.api_ok is False:
            log(f"outputs: ComfyUI answers again (GET {path})")
        self.api_ok = True
        return data

    # ---- one look at ComfyUI ----------------------------------------------------------------
    def tick(self):
        queue = self.get_json("/queue")
        if queue is not None:
            parsed = parse_queue(queue)
            if parsed is None:
                log("outputs: GET /queue answered something that is not ComfyUI's queue; ignored")
            else:
                self.inflight = {p: k for p, k in parsed.items() if self.valid_id(p)}
        history = self.get_json(f"/history?max_items={HISTORY_ITEMS}")
        if isinstance(history, dict):
            now = time.monotonic()
            for prompt_id, entry in history.items():
                if prompt_id in self.done or not self.valid_id(prompt_id):
                    continue
                failure = self.failed.get(prompt_id)
                if failure and failure[1] > now and not self.terminating:
                    continue
                self.keep(prompt_id, entry)

    def valid_id(self, prompt_id):
        if _PROMPT_ID.match(prompt_id):
            return True
        if prompt_id not in self.skipped_ids:
            self.skipped_ids.add(prompt_id)
            log(f"outputs: prompt id {_shown(prompt_id)} is not a safe key segment "
                "(letters, digits, '.', '_', '-'); its outputs are not copied")
        return False

    def keep(self, prompt_id, entry):
        """Copies one finished prompt's outputs, then its COMPLETE.json; retried later on failure."""
        root = os.path.realpath(self.cfg["output_dir"])
        uploaded, problems, errors = [], [], []
        for rel, problem in output_files(entry):
            if problem:
                problems.append(problem)
                continue
            local = os.path.realpath(os.path.join(root, rel))
            if not local.startswith(root + os.sep) or not os.path.isfile(local):
                problems.append(f"output {_shown(rel)} is not a file under the output directory")
                continue
            sha256, size = sha256_of(local)
            key = self.key(prompt_id, rel)
            error = self.rclone(["copyto", local, self.target(key)])
            if error:
                errors.append(f"{rel}: {error}")
            else:
                uploaded.append({"key": key, "size": size, "sha256": sha256})
        status = entry.get("status") if isinstance(entry, dict) else None
        status_str = status.get("status_str") if isinstance(status, dict) else None
        if not errors:
            marker = {
                "prompt_id": prompt_id,
                "status": status_str if isinstance(status_str, str) else "unknown",
                "files": uploaded,
                "problems": problems,
                "worker": socket.gethostname(),
                "uploaded_at": now_iso(),
            }
            key = self.key(prompt_id, "COMPLETE.json")
            error = self.rclone(["rcat", self.target(key)], json.dumps(marker, indent=2).encode())
            if error:
                errors.append(f"COMPLETE.json: {error}")
        if errors:
            attempts = self.failed.get(prompt_id, (None, 0, 0))[2] + 1
            self.failed[prompt_id] = ("; ".join(errors), time.monotonic() + min(60, 2**attempts), attempts)
            log(f"outputs: prompt {prompt_id}: upload failed (attempt {attempts}, retried): {'; '.join(errors)}")
            return
        self.failed.pop(prompt_id, None)
        self.done.add(prompt_id)
        total = sum(f["size"] for f in uploaded)
        log(f"outputs: prompt {prompt_id}: {len(uploaded)} file(s), {total} bytes copied to "
            f"{self.cfg['bucket']}/{self.key(prompt_id, '')}/"
            + (f"; {len(problems)} problem(s): {'; '.join(problems)}" if problems else ""))

    def report_incomplete(self, prompt_id, kind, reason):
        key = self.key(prompt_id, "INCOMPLETE.json")
        marker = {
            "prompt_id": prompt_id,
            "state": kind,
            "reason": reason,
            "grace_seconds": self.cfg["grace"],
            "worker": socket.gethostname(),
            "reported_at": now_iso(),
        }
        error = self.rclone(["rcat", self.target(key)], json.dumps(marker, indent=2).encode())
        where = f"marker {self.cfg['bucket']}/{key}" if not error else f"its marker could not be written ({error})"
        log(f"error: prompt {prompt_id} ({kind}) did not finish: {reason}; {where}")

    # ---- the process --------------------------------------------------------------------
    def on_signal(self, signum, _frame):
        if not self.terminating:
            self.terminating = True
            self.signal_name = signal.Signals(signum).name

    def sleep(self, seconds, wake_on_signal):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (wake_on_signal and self.terminating):
            time.sleep(min(0.05, max(0, end - time.monotonic())))

    def start_child(self):
        def own_session_and_die_with_parent():
            # Out of tini's process group (tini -g would hand ComfyUI the SIGTERM directly);
            # and if the supervisor is SIGKILLed, ComfyUI goes with it instead of lingering.
            try:
                import ctypes

                ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            except Exception:  # noqa: BLE001 - only a safety net
                pass

        self.child = subprocess.Popen(
            self.command, start_new_session=True, preexec_fn=own_session_and_die_with_parent
        )

    def stop_child(self):
        if self.child.poll() is not None:
            return
        try:
            os.killpg(self.child.pid, signal.SIGTERM)
            self.child.wait(timeout=self.cfg["child_stop"])
        except subprocess.TimeoutExpired:
            os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait()
        except ProcessLookupError:
            self.child.wait()

    def unfinished(self):
        return {p: k for p, k in self.inflight.items() if p not in self.done and p not in self.failed}

    def drain(self):
        grace = self.cfg["grace"]
        state.mark_draining(self.cfg["runtime_dir"])
        self.tick()
        log(f"{self.signal_name}: draining: /ready answers 503 and new prompts are refused; "
            f"{len(self.unfinished())} prompt(s) running or queued get {grace} s to finish")
        deadline = time.monotonic() + grace
        child_code = None
        while self.unfinished() and time.monotonic() < deadline:
            self.sleep(min(self.cfg["poll"], max(0, deadline - time.monotonic())), False)
            child_code = self.child.poll()
            if child_code is not None:
                break
            self.tick()
        if child_code is None and self.child.poll() is None:
            self.tick()  # a prompt that finished at the deadline is kept, not reported
        if child_code is not None:
            code = self.finish_with(lambda kind: f"ComfyUI exited (code {child_code}) while it was {kind}")
        else:
            code = self.finish_with(
                lambda kind: f"it was still {kind} {grace} s after {self.signal_name} (SHUTDOWN_GRACE_SECONDS)"
            )
        self.stop_child()
        log(f"shutdown: done (exit {code})")
        return code

    def finish_with(self, reason):
        """Reports each prompt that did not finish (reason(kind) says why) and each whose outputs
        could not be uploaded; the exit code."""
        unfinished = self.unfinished()
        for prompt_id, kind in sorted(unfinished.items()):
            self.report_incomplete(prompt_id, kind, reason(kind))
        for prompt_id, (why, _next, attempts) in sorted(self.failed.items()):
            self.report_incomplete(
                prompt_id, "finished", f"its outputs could not be copied to R2 after {attempts} attempt(s): {why}"
            )
        return EX_INCOMPLETE if unfinished or self.failed else 0

    def run(self):
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        self.start_child()
        log(f"outputs: each finished prompt goes to {self.cfg['bucket']}/{self.key('<prompt_id>', '<file>')} "
            f"through rclone remote '{self.cfg['remote']}'; ComfyUI runs as pid {self.child.pid}")
        while True:
            if self.terminating:
                return self.drain()
            code = self.child.poll()
            if code is not None:
                log(f"error: ComfyUI exited by itself (code {code})")
                result = self.finish_with(lambda kind: f"ComfyUI exited (code {code}) while it was {kind}")
                return result or (code if code >= 0 else 1)
            self.tick()
            self.sleep(self.cfg["poll"], True)


def main(argv, env=None):
    env = dict(os.environ if env is None else env)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        log("error: usage: python3 -m comfyume_worker.supervisor -- COMMAND [ARGS...]")
        return EX_USAGE
    try:
        cfg = config_from_env(env)
    except ConfigError as err:
        log(f"error: {err}")
        return EX_USAGE
    return Supervisor(cfg, argv, env).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
