#!/usr/bin/python3
"""ComfyUI stand-in for comfyume-ops tests: the few endpoints a health check and a smoke prompt use.

GET /system_stats, POST /prompt, GET /history/<id>, GET /queue, GET / on 0.0.0.0:8188.
A prompt completes at once with no outputs.
"""
import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HISTORY = {}
LOCK = threading.Lock()
COUNTER = [0]


class Handler(BaseHTTPRequestHandler):
    server_version = "ComfyUI-standin/0"

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/system_stats":
            self.send_json(200, {
                "system": {
                    "os": "posix",
                    "comfyui_version": "standin",
                    "python_version": sys.version,
                    "embedded_python": False,
                },
                "devices": [],
            })
        elif path.startswith("/history/"):
            prompt_id = path[len("/history/"):]
            with LOCK:
                entry = HISTORY.get(prompt_id)
            self.send_json(200, {prompt_id: entry} if entry else {})
        elif path == "/history":
            with LOCK:
                self.send_json(200, dict(HISTORY))
        elif path == "/queue":
            self.send_json(200, {"queue_running": [], "queue_pending": []})
        elif path == "/":
            body = b"<!doctype html><title>ComfyUI stand-in</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path != "/prompt":
            self.send_json(404, {"error": "not found"})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.send_json(400, {"error": {"type": "invalid_json", "message": "body is not JSON"}})
            return
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, dict):
            self.send_json(400, {"error": {"type": "no_prompt", "message": "No prompt provided"},
                                 "node_errors": {}})
            return
        prompt_id = str(uuid.uuid4())
        with LOCK:
            COUNTER[0] += 1
            number = COUNTER[0]
            HISTORY[prompt_id] = {
                "prompt": [number, prompt_id, prompt, {}, []],
                "outputs": {},
                "status": {"status_str": "success", "completed": True, "messages": []},
            }
        self.send_json(200, {"prompt_id": prompt_id, "number": number, "node_errors": {}})


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8188), Handler).serve_forever()
