"""Errors raised by the ComfyUI client, carrying ComfyUI's own messages and node ids."""

from __future__ import annotations

from typing import Any

import httpx

from nodes.comfy_events import ExecutionError, ExecutionInterrupted


class ComfyError(Exception):
    """Base of every error the ComfyUI client raises."""


class ComfyUnavailable(ComfyError):
    """The server is unreachable, dropped the connection or answered 5xx: try another node."""


class ComfyTimeout(ComfyUnavailable):
    """The server went silent for too long."""


class ComfyPromptLost(ComfyUnavailable):
    """The server no longer has the prompt in its queue or history (it restarted)."""


class ComfyFileTooLarge(ComfyError):
    """A file the server sent is bigger than the caller allows (the same file would be so on any node)."""


class ComfyRejected(ComfyError):
    """ComfyUI refused the request (4xx), with its `error` dict and `node_errors`."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 400,
        error_type: str = "",
        details: str = "",
        node_errors: dict[str, Any] | None = None,
        prompt_id: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        self.message = message
        self.error = error or {}
        self.status_code = status_code
        self.error_type = error_type
        self.details = details
        self.node_errors = node_errors or {}
        self.prompt_id = prompt_id
        super().__init__(self.describe())

    def describe(self) -> str:
        """One human line: ComfyUI's message, then each failing node's errors."""
        what = "prompt" if self.error_type or self.node_errors else "request"
        text = f"ComfyUI rejected the {what}: {self.message}"
        if self.details and not self.node_errors:
            text += f" ({self.details})"
        parts = [_describe_node(node_id, info) for node_id, info in self.node_errors.items()]
        return text + (" — " + "; ".join(parts) if parts else "")

    @property
    def node_ids(self) -> list[str]:
        """Ids of the nodes ComfyUI blamed."""
        return list(self.node_errors)


class ComfyUnauthorized(ComfyRejected):
    """401/403: the node (or its token proxy) wants a valid token; the node is misconfigured, not the job."""

    def describe(self) -> str:
        """The refusal, naming the server."""
        return self.message


class ComfyPartiallyRejected(ComfyRejected):
    """200 with node_errors: ComfyUI queued only the valid branch; the client withdrew it."""

    def __init__(self, prompt_id: str, node_errors: dict[str, Any]) -> None:
        super().__init__(
            "Some outputs failed validation",
            error_type="partial_node_errors",
            node_errors=node_errors,
            status_code=200,
            prompt_id=prompt_id,
        )


class ComfyExecutionFailed(ComfyError):
    """The prompt raised while running (`execution_error`)."""

    def __init__(self, event: ExecutionError) -> None:
        self.event = event
        self.prompt_id = event.prompt_id
        self.node_id = event.node_id
        self.node_type = event.node_type
        self.exception_type = event.exception_type
        self.message = event.exception_message.strip()
        super().__init__(
            f"ComfyUI failed at node {self.node_id} ({self.node_type}): {self.exception_type}: {self.message}"
        )


class ComfyInterrupted(ComfyError):
    """The prompt was interrupted (`execution_interrupted`)."""

    def __init__(self, event: ExecutionInterrupted) -> None:
        self.event = event
        self.prompt_id = event.prompt_id
        self.node_id = event.node_id
        self.node_type = event.node_type
        super().__init__(f"prompt {self.prompt_id} was interrupted at node {self.node_id} ({self.node_type})")


def rejection_from_response(response: httpx.Response, *, base_url: str) -> ComfyRejected:
    """Turn a 4xx answer into ComfyRejected / ComfyUnauthorized with ComfyUI's error body."""
    request = f"{response.request.method} {response.request.url.path}"
    if response.status_code in (401, 403):
        return ComfyUnauthorized(
            f"{base_url} refused {request} with {response.status_code}: missing or wrong token "
            f"(or an Origin header that does not match the host)",
            status_code=response.status_code,
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # Most 4xx bodies are empty (http/get_view_cases.json, http/post_upload_image_cases.json).
        message = str(error) if error else f"{response.status_code} {response.reason_phrase} for {request}"
        return ComfyRejected(message, status_code=response.status_code)
    return ComfyRejected(
        error.get("message", ""),
        status_code=response.status_code,
        error_type=error.get("type", ""),
        details=error.get("details", ""),
        node_errors=body.get("node_errors") or {},
        error=error,
    )


def _describe_node(node_id: str, info: dict[str, Any]) -> str:
    errors = info.get("errors") or []
    texts = [
        f"{e.get('message', '')}: {e['details']}" if e.get("details") else e.get("message", "") for e in errors
    ]
    return f"node {node_id} ({info.get('class_type', '?')}): " + "; ".join(texts)
