"""GET /health for the ComfyUI worker: Verda's probe and the image's HEALTHCHECK call it.

ComfyUI has no health route of its own. This answers 200 with {"status": "ok"} once the server
is up (Verda counts JSON status ok|ready|healthy|running|up as healthy), plus the queue length so
an operator can see a busy replica. It defines no nodes.
"""

from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}


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
