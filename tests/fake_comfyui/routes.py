"""ComfyUI's HTTP routes. Each is registered twice, bare and under /api (http/api_prefix_alias_check.json)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from . import files, objectinfo
from .runtime import Runtime
from .validation import Validator, no_prompt_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Canned 400 bodies for the `reject` fault, copied from http/post_prompt_validation_errors.json.
REJECT_BODIES: dict[str, dict[str, Any]] = {
    "no_prompt": {"error": no_prompt_error(), "node_errors": {}},
    "invalid_prompt": {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because node DoesNotExistNode does not exist.",
            "details": "Node ID '#2'",
            "extra_info": {},
        },
        "node_errors": {},
    },
    "prompt_no_outputs": {
        "error": {
            "type": "prompt_no_outputs",
            "message": "Prompt has no outputs",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {},
    },
    "prompt_outputs_failed_validation": {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            "1": {
                "errors": [
                    {
                        "type": "value_smaller_than_min",
                        "message": "Value 0 smaller than min of 1",
                        "details": "width",
                        "extra_info": {
                            "input_name": "width",
                            "input_config": ["INT", {"default": 512, "min": 1, "max": 16384, "step": 1}],
                            "received_value": 0,
                        },
                    }
                ],
                "dependent_outputs": ["2"],
                "class_type": "EmptyImage",
            }
        },
    },
}


def empty() -> web.Response:
    # Empty successes carry Content-Length 0 and no Content-Type (README §2.1).
    return web.Response(status=200)


class ComfyRoutes:
    """Handlers bound to one Runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def table(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/prompt", self.get_prompt),
            ("POST", "/prompt", self.post_prompt),
            ("GET", "/queue", self.get_queue),
            ("POST", "/queue", self.post_queue),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history_item),
            ("POST", "/history", self.post_history),
            ("GET", "/view", self.view),
            ("POST", "/upload/image", self.upload_image),
            ("POST", "/interrupt", self.post_interrupt),
            ("POST", "/free", self.post_free),
            ("GET", "/object_info", self.get_object_info),
            ("GET", "/object_info/{node_class}", self.get_object_info_class),
            ("GET", "/system_stats", self.static("system_stats")),
            ("GET", "/features", self.static("features")),
            ("GET", "/embeddings", self.static("embeddings")),
            ("GET", "/extensions", self.static("extensions")),
            ("GET", "/models", self.get_models),
            ("GET", "/models/{folder}", self.get_models_folder),
            ("GET", "/ws", self.websocket),
        ]

    async def view(self, request: web.Request) -> web.StreamResponse:
        return await files.view(self.rt, request)

    async def upload_image(self, request: web.Request) -> web.Response:
        return await files.upload_image(self.rt, request)

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        return await self.rt.hub.handle(request, self.rt.queue_info)

    def static(self, name: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(objectinfo.static_responses()[name])

        return handler

    async def get_prompt(self, request: web.Request) -> web.Response:
        return web.json_response(self.rt.queue_info())

    async def post_prompt(self, request: web.Request) -> web.Response:
        rt = self.rt
        body = await request.json()  # empty or malformed body -> aiohttp's plain 500 (misc_status_codes.json)
        number = rt.queue.next_number(body)
        with rt.stats.lock:
            rt.stats.last_prompt_body = body
        if fault := rt.take_fault("reject"):
            return self._rejected(
                fault.get("body") or REJECT_BODIES[fault.get("type", "prompt_outputs_failed_validation")]
            )
        if not isinstance(body, dict) or "prompt" not in body:
            return self._rejected({"error": no_prompt_error(), "node_errors": {}})
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        validator = Validator(prompt, rt.class_info, rt.input_exists)
        ok, error, good, node_errors = validator.run(body.get("partial_execution_targets"))
        extra = body.get("extra_data", {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        if not ok:
            return self._rejected({"error": error, "node_errors": node_errors})
        rt.queue.put((number, prompt_id, prompt, extra, good))
        with rt.stats.lock:
            rt.stats.prompts_received += 1
            rt.stats.received_prompts.append(body)
        # The response goes out before any WS frame about the job (timing_summary.json: WS before HTTP 0/200).
        response = web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})
        await response.prepare(request)
        await response.write_eof()
        rt.broadcast_status()
        rt.wakeup.set()
        return response

    def _rejected(self, body: dict[str, Any]) -> web.Response:
        with self.rt.stats.lock:
            self.rt.stats.prompts_rejected += 1
        return web.json_response(body, status=400)

    async def get_queue(self, request: web.Request) -> web.Response:
        running = [list(self.rt.queue.running)] if self.rt.queue.running else []
        pending = [list(item) for item in self.rt.queue.pending()]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.rt.queue.clear()
            self.rt.broadcast_status()
        for prompt_id in body.get("delete", []):
            # Only pending items are searched; no-op deletes broadcast nothing (ws/j_queue_ops).
            if self.rt.queue.delete(prompt_id):
                self.rt.broadcast_status()
        return empty()

    async def get_history(self, request: web.Request) -> web.Response:
        query = request.rel_url.query
        max_items = int(query["max_items"]) if "max_items" in query else None  # "abc" -> 500
        offset = int(query.get("offset", -1))
        return web.json_response(self.rt.history.page(max_items, offset))

    async def get_history_item(self, request: web.Request) -> web.Response:
        # Unknown, pending and running ids all answer 200 {} (http/get_history_while_running.json).
        prompt_id = request.match_info["prompt_id"]
        entry = self.rt.history.entries.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def post_history(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            self.rt.history.clear()
        for prompt_id in body.get("delete", []):
            self.rt.history.delete(prompt_id)
        return empty()

    async def post_interrupt(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = {}
        target = body.get("prompt_id") if isinstance(body, dict) else None
        # A targeted interrupt only hits the running prompt (ws/d2_targeted_interrupt).
        effective = self.rt.running_prompt_id is not None and target in (None, self.rt.running_prompt_id)
        if effective:
            self.rt.interrupted = True
        with self.rt.stats.lock:
            self.rt.stats.interrupts.append({"prompt_id": target, "effective": effective})
        return empty()

    async def post_free(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("free_memory"):
            self.rt.cache.clear()  # the next run re-executes everything (ws/k_after_free_same_prompt)
        with self.rt.stats.lock:
            self.rt.stats.frees += 1
        return empty()

    async def get_object_info(self, request: web.Request) -> web.Response:
        return web.json_response(objectinfo.full_object_info(self.rt.knobs.models, self.rt.dirs.input))

    async def get_object_info_class(self, request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        info = self.rt.class_info(name)
        return web.json_response({name: info} if info is not None else {})

    def _folders(self) -> list[str]:
        folders = list(objectinfo.static_responses()["model_folders"])
        return folders + [f for f in self.rt.knobs.models if f not in folders]

    async def get_models(self, request: web.Request) -> web.Response:
        return web.json_response(self._folders())

    async def get_models_folder(self, request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in self._folders():
            return web.Response(status=404)
        return web.json_response(sorted(self.rt.knobs.models.get(folder, [])))
