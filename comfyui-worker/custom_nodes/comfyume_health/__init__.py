"""GET /health and GET /ready for the ComfyUI worker; it defines no nodes.

/health is liveness: 200 {"status": "ok"} as soon as the server is up (Verda counts JSON status
ok|ready|healthy|running|up as healthy), plus the queue length so an operator can see a busy
replica. ComfyUI has no health route of its own.

/ready is readiness: 200 {"status": "ready"} only when the models the workshop needs are on the
shared filesystem with the right sizes and no warm-up is still reading them; 503 with a body that
names the missing or wrong-sized models otherwise, and 503 {"status": "draining"} once the worker
got SIGTERM. While draining, a new POST /prompt is refused with 503 (the running job finishes).
The checks live in comfyume_worker (standard library only, shared with the entrypoint), found
through COMFYUME_WORKER_LIB, which the entrypoint exports.
"""

import asyncio
import os
import sys

from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

READY_TIMEOUT_SECONDS = 10

_lib = os.environ.get("COMFYUME_WORKER_LIB") or "/opt/comfyui-worker"
if _lib not in sys.path:
    sys.path.append(_lib)
try:
    from comfyume_worker import ready as _ready
    from comfyume_worker import state as _state

    _import_error = None
except Exception as err:  # noqa: BLE001 - /health must load even if the helpers do not
    _ready = _state = None
    _import_error = f"comfyume_worker could not be loaded from {_lib}: {err}"


def queue_remaining(server):
    """Prompts queued or running, or None when this ComfyUI cannot tell."""
    try:
        return int(server.prompt_queue.get_tasks_remaining())
    except Exception:  # noqa: BLE001 - the probe must answer even if the queue API changes
        return None


@PromptServer.instance.routes.get("/health")
async def health(_request):
    return web.json_response(
        {"status": "ok", "queue_remaining": queue_remaining(PromptServer.instance)}
    )


@PromptServer.instance.routes.get("/ready")
async def ready(_request):
    if _ready is None:
        return web.json_response({"status": "not-ready", "reason": _import_error}, status=503)
    where = _ready.settings()
    # Off the event loop and bounded: a hung network mount must not stall ComfyUI itself.
    loop = asyncio.get_running_loop()
    try:
        status, body = await asyncio.wait_for(
            loop.run_in_executor(
                None, _ready.report, where["models_list"], where["models_dir"], where["runtime_dir"]
            ),
            READY_TIMEOUT_SECONDS,
        )
    except asyncio.TimeoutError:
        status, body = 503, {
            "status": "not-ready",
            "reason": f"checking the models under {where['models_dir']} took over {READY_TIMEOUT_SECONDS} s",
        }
    body["queue_remaining"] = queue_remaining(PromptServer.instance)
    return web.json_response(body, status=status)


@web.middleware
async def refuse_new_prompts_while_draining(request, handler):
    if request.method == "POST" and request.path == "/prompt" and _state and _state.is_draining():
        return web.json_response(
            {
                "error": {
                    "type": "worker_draining",
                    "message": "this worker is shutting down (SIGTERM): submit the prompt again",
                }
            },
            status=503,
        )
    return await handler(request)


# Custom nodes load before the server starts, while aiohttp still accepts middlewares.
try:
    PromptServer.instance.app.middlewares.append(refuse_new_prompts_while_draining)
except Exception as err:  # noqa: BLE001 - readiness still goes 503 on SIGTERM without it
    print(f"[comfyume_health] could not add the draining middleware: {err}", file=sys.stderr)
