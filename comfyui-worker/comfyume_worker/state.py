"""Run-time state shared through files in WORKER_RUNTIME_DIR: the entrypoint, the supervisor and
the /ready route are separate processes (ComfyUI runs the route), and a file is the one thing all
three can see without a socket of their own."""

import os

DRAINING = "draining"
WARMUP = "warmup.state"


def runtime_dir():
    return os.environ.get("WORKER_RUNTIME_DIR") or "/tmp/comfyui-worker"


def is_draining(directory=None):
    return os.path.exists(os.path.join(directory or runtime_dir(), DRAINING))


def mark_draining(directory=None):
    path = os.path.join(directory or runtime_dir(), DRAINING)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("SIGTERM received: no new work\n")


def warmup_state(directory=None):
    """'running', 'done', or None when no warm-up was asked for."""
    try:
        with open(os.path.join(directory or runtime_dir(), WARMUP), encoding="utf-8") as handle:
            words = handle.read().split()
    except OSError:
        return None
    return words[0] if words and words[0] in ("running", "done") else None
