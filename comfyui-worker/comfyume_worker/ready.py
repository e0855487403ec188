"""The /ready answer: 200 only when every model the workshop needs is on the shared filesystem
with the right size, no warm-up is still reading, and no shutdown is under way; otherwise 503
with a body that names what is missing. /health stays the liveness answer."""

import os

from . import models, state


def settings():
    """Where to look, from the environment the entrypoint exports to ComfyUI."""
    return {
        "models_list": os.environ.get("MODELS_LIST") or "/opt/comfyui-worker/models.json",
        "models_dir": os.environ.get("MODELS_DIR") or "/mnt/sfs/models",
        "runtime_dir": state.runtime_dir(),
    }


def report(models_list, models_dir, runtime_dir):
    """(http status, JSON body)."""
    if state.is_draining(runtime_dir):
        return 503, {"status": "draining", "reason": "the worker is shutting down (SIGTERM)"}
    try:
        entries = models.load_list(models_list)
    except models.ListError as err:
        return 503, {"status": "not-ready", "reason": str(err)}
    result = models.check(entries, models_dir)
    body = {"status": "ready", "models_dir": models_dir, **result}
    reasons = []
    if result["missing"]:
        reasons.append(
            "missing: " + ", ".join(m["path"] for m in result["missing"])
        )
    if result["wrong_size"]:
        reasons.append(
            "wrong size: "
            + ", ".join(
                f"{m['path']} ({m['actual']} bytes, expected {m['expected']})"
                for m in result["wrong_size"]
            )
        )
    warmup = state.warmup_state(runtime_dir)
    if warmup is not None:
        body["warm_up"] = warmup
    if warmup == "running":
        reasons.append("the model warm-up is still reading")
    if reasons:
        body["status"] = "not-ready"
        body["reason"] = "; ".join(reasons)
        return 503, body
    return 200, body
