#!/usr/bin/env bash
# Entrypoint of the ComfyUI worker image: validate the environment, check the models the workshop
# needs, render the model paths for ComfyUI, optionally warm the page cache with model files, then
# exec ComfyUI (or, with OUTPUT_BUCKET, the supervisor that runs it, copies each finished output to
# R2 and drains on SIGTERM: Verda scale-down sends SIGTERM, 30 s grace, then SIGKILL).
#
# Usage: entrypoint.sh [--print-command] [extra ComfyUI args...]
#        entrypoint.sh <command> [args...]      # any other command runs as given, after the checks
#
# Environment (defaults in brackets):
#   PORT [8188]                    port ComfyUI listens on (1-65535)
#   LISTEN [0.0.0.0]               address ComfyUI listens on
#   MODELS_DIR [/mnt/sfs/models]   models root on the shared filesystem (absolute path)
#   MODELS_LIST [models.json beside this script]  the models the workshop needs ({path, size,
#                                  sha256}, generated from config/models.yml); /ready checks them
#   REQUIRE_MODELS [false]         true: a missing MODELS_DIR, or a model of MODELS_LIST missing
#                                  or of the wrong size, stops the start (exit 64 / 66)
#   MODELS_SCAN_TIMEOUT [30]       seconds allowed for each look at the model files at start
#   EXTRA_MODEL_PATHS_CONFIG       use this extra_model_paths.yaml as is instead of rendering one
#   CPU_ONLY [false]               true: run ComfyUI with --cpu (smoke tests without a GPU)
#   WARMUP_FILES                   model files (relative to MODELS_DIR, comma or space separated)
#                                  read in the background to warm the page cache; /ready waits
#   OUTPUT_BUCKET                  R2 bucket for the outputs; set, the supervisor runs ComfyUI
#   OUTPUT_PREFIX [outputs]        key prefix: <prefix>/<prompt_id>/<file>
#   OUTPUT_REMOTE [r2]             rclone remote; its keys come as RCLONE_CONFIG_<REMOTE>_ACCESS_KEY_ID,
#                                  _SECRET_ACCESS_KEY and _ENDPOINT (environment only)
#   SHUTDOWN_GRACE_SECONDS [20]    after SIGTERM, how long running prompts get to finish
#   OUTPUT_POLL_SECONDS [1]        how often the supervisor looks for finished prompts
#   COMFYUI_DIR [/opt/ComfyUI]     ComfyUI checkout (main.py)
#   PYTHON [python3]               interpreter that runs main.py
#   WORKER_PYTHON [python3]        interpreter that runs the worker's helpers (worker.py)
#   WORKER_RUNTIME_DIR [/tmp/comfyui-worker]  the rendered config and the run-time state files
#   WORKER_TEMPLATE_DIR [the script's directory]  extra_model_paths.yaml, models.json, worker.py
#   DRY_RUN [false]                same as --print-command: print the command instead of running it
set -euo pipefail

readonly MODEL_FOLDERS=(checkpoints text_encoders latent_upscale_models loras)

log() { printf '[comfyui-worker] %s\n' "$*" >&2; }
warn() { printf '[comfyui-worker] warning: %s\n' "$*" >&2; }
die() {
  printf '[comfyui-worker] error: %s\n' "$*" >&2
  exit 64 # EX_USAGE: the configuration is wrong, restarting will not help
}
# fail CODE MESSAGE: an error with its own exit code.
fail() {
  local code=$1
  shift
  printf '[comfyui-worker] error: %s\n' "$*" >&2
  exit "$code"
}

# is_true NAME VALUE: true/false in the usual spellings; anything else is a configuration error.
is_true() {
  case "${2,,}" in
    1 | true | yes | on) return 0 ;;
    0 | false | no | off | '') return 1 ;;
    *) die "$1 must be true or false, got '$2'" ;;
  esac
}

validate_port() {
  if [[ ! "$PORT" =~ ^[0-9]{1,5}$ ]] || ((10#$PORT < 1 || 10#$PORT > 65535)); then
    die "PORT must be a number from 1 to 65535, got '$PORT'"
  fi
  PORT=$((10#$PORT))
}

# validate_flags: every boolean is checked before anything is written or started.
validate_flags() {
  local name
  for name in DRY_RUN CPU_ONLY REQUIRE_MODELS; do
    is_true "$name" "${!name}" || true
  done
}

validate_scan_timeout() {
  [[ "$MODELS_SCAN_TIMEOUT" =~ ^[1-9][0-9]{0,3}$ ]] ||
    die "MODELS_SCAN_TIMEOUT must be a number of seconds from 1 to 9999, got '$MODELS_SCAN_TIMEOUT'"
}

validate_listen() {
  if [[ -z "$LISTEN" || "$LISTEN" =~ [[:space:]] ]]; then
    die "LISTEN must be an address without spaces, got '$LISTEN'"
  fi
}

# check_models: reports what the shared filesystem holds; a missing root is only fatal when
# REQUIRE_MODELS is set (ComfyUI itself starts fine with no models, e.g. in the smoke test).
check_models() {
  [[ "$MODELS_DIR" == /* ]] || die "MODELS_DIR must be an absolute path, got '$MODELS_DIR'"
  [[ "$MODELS_DIR" != *$'\n'* ]] || die "MODELS_DIR must not contain a newline"
  if [[ ! -d "$MODELS_DIR" ]]; then
    if is_true REQUIRE_MODELS "$REQUIRE_MODELS"; then
      die "MODELS_DIR $MODELS_DIR does not exist (is the shared filesystem mounted?)"
    fi
    warn "MODELS_DIR $MODELS_DIR does not exist (is the shared filesystem mounted?): ComfyUI starts with no models"
    return 0
  fi
  local folder count
  for folder in "${MODEL_FOLDERS[@]}"; do
    if [[ -d "$MODELS_DIR/$folder" ]]; then
      # A hung network mount must not hang the start: give up on the count, not on the start.
      if count=$(timeout -k 5 "$MODELS_SCAN_TIMEOUT" \
        find "$MODELS_DIR/$folder" -maxdepth 3 -type f -name '*.safetensors' | wc -l); then
        log "models: $folder/ has $count .safetensors file(s)"
      else
        warn "models: could not list $MODELS_DIR/$folder within ${MODELS_SCAN_TIMEOUT}s"
      fi
    else
      warn "models: $MODELS_DIR/$folder is missing"
    fi
  done
}

# check_required_models: each model of MODELS_LIST that is missing or has the wrong size is named;
# with REQUIRE_MODELS the start stops here (exit 66, EX_NOINPUT) with that list. The same check
# (comfyume_worker/models.py) answers /ready while ComfyUI runs.
check_required_models() {
  local output rc=0 kind path a b good=0 total=0 unchecked=0
  local problems=()
  output=$(timeout -k 5 "$MODELS_SCAN_TIMEOUT" "$WORKER_PYTHON" -B "$WORKER_TEMPLATE_DIR/worker.py" \
    check-models --list "$MODELS_LIST" --models-dir "$MODELS_DIR") || rc=$?
  case $rc in
    0 | 1 | 2) ;;
    124 | 137)
      is_true REQUIRE_MODELS "$REQUIRE_MODELS" &&
        fail 66 "could not check the models of $MODELS_LIST under $MODELS_DIR within ${MODELS_SCAN_TIMEOUT}s"
      warn "models: could not check the models of $MODELS_LIST within ${MODELS_SCAN_TIMEOUT}s"
      return 0
      ;;
    *) die "the model check ($WORKER_PYTHON $WORKER_TEMPLATE_DIR/worker.py) failed with exit $rc" ;;
  esac
  while IFS=$'\t' read -r kind path a b; do
    case $kind in
      error) die "$path" ;;
      missing)
        warn "model missing: $path ($a under $MODELS_DIR)"
        problems+=("$path (missing)")
        ;;
      wrong-size)
        warn "model wrong size: $path is $a bytes, expected $b"
        problems+=("$path ($a bytes, expected $b)")
        ;;
      summary) good=$path total=$a unchecked=$b ;;
    esac
  done <<<"$output"
  local note=''
  ((unchecked == 0)) || note=" ($unchecked without a recorded size: presence checked)"
  log "models: $good of $total required model(s) in place$note"
  if ((${#problems[@]} > 0)) && is_true REQUIRE_MODELS "$REQUIRE_MODELS"; then
    local joined
    joined=$(printf '%s, ' "${problems[@]}")
    fail 66 "REQUIRE_MODELS is set and ${#problems[@]} required model(s) are missing or wrong-sized: ${joined%, }"
  fi
}

# check_outputs: with OUTPUT_BUCKET the supervisor's settings are checked now, before anything runs.
check_outputs() {
  [[ -n "${OUTPUT_BUCKET:-}" ]] || return 0
  local problem
  problem=$("$WORKER_PYTHON" -B "$WORKER_TEMPLATE_DIR/worker.py" supervise --check-config 2>&1) ||
    die "$problem"
}

# yaml_quote VALUE: a single-quoted YAML scalar (quotes doubled), safe for any path.
yaml_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# model_paths_config: prints the path of the extra_model_paths.yaml ComfyUI will load, rendering
# the image's template with MODELS_DIR unless EXTRA_MODEL_PATHS_CONFIG names a file to use as is.
model_paths_config() {
  if [[ -n "${EXTRA_MODEL_PATHS_CONFIG:-}" ]]; then
    [[ -f "$EXTRA_MODEL_PATHS_CONFIG" ]] ||
      die "EXTRA_MODEL_PATHS_CONFIG $EXTRA_MODEL_PATHS_CONFIG is not a file"
    printf '%s\n' "$EXTRA_MODEL_PATHS_CONFIG"
    return 0
  fi
  local template="$WORKER_TEMPLATE_DIR/extra_model_paths.yaml"
  local target="$WORKER_RUNTIME_DIR/extra_model_paths.yaml"
  [[ -f "$template" ]] || die "template $template is missing from the image"
  mkdir -p "$WORKER_RUNTIME_DIR" || die "cannot create WORKER_RUNTIME_DIR $WORKER_RUNTIME_DIR"
  local text quoted placeholder="\${MODELS_DIR}"
  text=$(<"$template")
  quoted=$(yaml_quote "$MODELS_DIR")
  # Quoted replacement: bash 5.2 would otherwise expand '&' in the path to the matched text.
  printf '%s\n' "${text//"$placeholder"/"$quoted"}" >"$target" || die "cannot write $target"
  printf '%s\n' "$target"
}

# warm_up FILE...: reads the files once, in a detached low-priority process, so that the first
# prompt loads its models from the page cache instead of the network filesystem.
warm_up() {
  local files=() entry
  for entry in "$@"; do
    [[ -n "$entry" ]] || continue
    if [[ "$entry" == /* || "/$entry/" == */../* ]]; then
      warn "warm-up: skipping '$entry' (must be relative to MODELS_DIR, without ..)"
    elif [[ ! -f "$MODELS_DIR/$entry" ]]; then
      warn "warm-up: skipping '$entry' (no such file under $MODELS_DIR)"
    else
      files+=("$MODELS_DIR/$entry")
    fi
  done
  ((${#files[@]} > 0)) || return 0
  if is_true DRY_RUN "$DRY_RUN"; then
    log "warm-up: would read ${#files[@]} file(s)"
    return 0
  fi
  log "warm-up: reading ${#files[@]} file(s) in the background"
  # /ready answers 503 while this says running.
  local state="$WORKER_RUNTIME_DIR/warmup.state"
  printf 'running\n' >"$state" || die "cannot write $state"
  # Double fork: the reader is re-parented to PID 1 (tini), which reaps it, not to ComfyUI.
  (
    (
      started=$SECONDS bytes=0
      for file in "${files[@]}"; do
        read_bytes=$(nice -n 10 cat -- "$file" | wc -c) || {
          warn "warm-up: could not read $file"
          continue
        }
        bytes=$((bytes + read_bytes))
      done
      log "warm-up: read $bytes bytes from ${#files[@]} file(s) in $((SECONDS - started)) s"
      printf 'done %s\n' "$bytes" >"$state"
    ) </dev/null &
  )
}

main() {
  PORT=${PORT:-8188}
  LISTEN=${LISTEN:-0.0.0.0}
  MODELS_DIR=${MODELS_DIR:-/mnt/sfs/models}
  WORKER_PYTHON=${WORKER_PYTHON:-python3}
  REQUIRE_MODELS=${REQUIRE_MODELS:-false}
  MODELS_SCAN_TIMEOUT=${MODELS_SCAN_TIMEOUT:-30}
  CPU_ONLY=${CPU_ONLY:-false}
  COMFYUI_DIR=${COMFYUI_DIR:-/opt/ComfyUI}
  PYTHON=${PYTHON:-python3}
  WORKER_RUNTIME_DIR=${WORKER_RUNTIME_DIR:-/tmp/comfyui-worker}
  WORKER_TEMPLATE_DIR=${WORKER_TEMPLATE_DIR:-$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")}
  MODELS_LIST=${MODELS_LIST:-$WORKER_TEMPLATE_DIR/models.json}
  DRY_RUN=${DRY_RUN:-false}
  if [[ "${1:-}" == --print-command ]]; then
    DRY_RUN=true
    shift
  fi

  validate_port
  validate_listen
  validate_flags
  validate_scan_timeout
  check_outputs
  check_models
  check_required_models
  local config
  config=$(model_paths_config)
  log "model paths: $config (MODELS_DIR=$MODELS_DIR)"

  local command
  if [[ $# -gt 0 && "$1" != -* ]]; then
    command=("$@") # a command of its own (e.g. a shell, or a start command set by the platform)
  else
    [[ -f "$COMFYUI_DIR/main.py" ]] || is_true DRY_RUN "$DRY_RUN" ||
      die "COMFYUI_DIR $COMFYUI_DIR has no main.py"
    command=("$PYTHON" main.py --listen "$LISTEN" --port "$PORT"
      --extra-model-paths-config "$config")
    if is_true CPU_ONLY "$CPU_ONLY"; then command+=(--cpu); fi
    command+=("$@")
  fi

  if ! is_true DRY_RUN "$DRY_RUN"; then
    # State of an earlier run in the same container (a restart) must not leak into /ready.
    mkdir -p "$WORKER_RUNTIME_DIR" || die "cannot create WORKER_RUNTIME_DIR $WORKER_RUNTIME_DIR"
    rm -f -- "$WORKER_RUNTIME_DIR/draining" "$WORKER_RUNTIME_DIR/warmup.state"
  fi

  local warmup_list=()
  if [[ -n "${WARMUP_FILES:-}" ]]; then
    IFS=$', \t\n' read -r -d '' -a warmup_list <<<"$WARMUP_FILES" || true
    warm_up "${warmup_list[@]}"
  fi

  if [[ -n "${OUTPUT_BUCKET:-}" ]]; then
    # The supervisor keeps the PID (exec) and runs ComfyUI as its child.
    command=("$WORKER_PYTHON" -B "$WORKER_TEMPLATE_DIR/worker.py" supervise -- "${command[@]}")
  else
    log "outputs: OUTPUT_BUCKET is not set: outputs stay on this replica (lost on scale-down)"
  fi

  if is_true DRY_RUN "$DRY_RUN"; then
    printf 'cd %q && exec' "$COMFYUI_DIR"
    printf ' %q' "${command[@]}"
    printf '\n'
    return 0
  fi
  # For ComfyUI's comfyume_health node (/ready) and the supervisor.
  export MODELS_DIR MODELS_LIST WORKER_RUNTIME_DIR COMFYUME_WORKER_LIB="$WORKER_TEMPLATE_DIR"
  cd "$COMFYUI_DIR" || die "cannot enter COMFYUI_DIR $COMFYUI_DIR"
  log "exec: ${command[*]}"
  exec "${command[@]}"
}

main "$@"
