"""Running endpoints: the shared path from a caller's inputs to a queued job, and the ComfyUI-Fast-API route.

ComfyUI-Fast-API (github.com/IfnotFR/ComfyUI-Fast-API, since renamed ComfyUI-Connect) serves each
saved workflow at `POST /api/workflows/<name>`. Its body is the inputs themselves, by title tag
(`{"my sampler": {"seed": 1234}}`); a file is `{"type": "file", "content": <base64>, "name"}` or
`{"type": "file", "url", "name"}`. It answers synchronously with each output tag's images, base64
(`{"my awesome image": ["<base64>", ...]}`). Here the same call is `POST /api/endpoints/<slug>`: the
same body, the same answer in base64 output mode, signed expiring links in URL mode. A job that
outlives the endpoint's `max_wait` answers 202 with the job, as `/run` does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from comfyrouter.auth import api_key_of
from comfyrouter.prepared import Prepared
from generations import services
from generations.files import resolve_files
from generations.models import Job, JobOutput
from generations.serializers import job_json, job_url, outputs_by_name, signed_url
from workflows_app.models import Endpoint, runnable_endpoint
from workflows_app.render import InputError
from workflows_app.services import endpoint_render, endpoint_values, version_graph
from workflows_app.views import EndpointDetailApi

# The files a Fast-API answer carries (compiled once: comfyrouter.prepared).
OUTPUTS = Prepared(lambda job: JobOutput.objects.filter(job_id=job))


def endpoint_job(
    request: Request, endpoint: Endpoint, inputs: Any, *, priority: int = 0, webhook_url: str = ""
) -> Job:
    """Validate the inputs, store their files, render the prompt and queue a job; InputError or QueueFull."""
    params, values = endpoint_values(endpoint=endpoint, inputs=inputs)
    values, files = resolve_files(params, values, graph=version_graph(endpoint.version_id))
    prompt = endpoint_render(endpoint=endpoint, params=params, values=values)
    return services.job_create(
        prompt=prompt, inputs=values, files=files, endpoint=endpoint, owner=request.user,
        api_key=api_key_of(request),
        priority=priority, webhook_url=webhook_url,
        idempotency_key=request.headers.get("Idempotency-Key", "")[:200],
    )  # fmt: skip


def run_body(request: Request) -> Any:
    """The run body: JSON as sent, or a multipart form whose `inputs` field is JSON and whose files are inputs.

    Each uploaded file becomes the base64 file input of the same name, so one validation path serves all.
    """
    if not request.FILES:
        return request.data
    body: dict[str, Any] = {}
    for name in request.data:
        if name not in request.FILES:
            body[name] = _form_value(request.data[name])
    inputs = body.get("inputs", {})
    if isinstance(inputs, dict):
        for name, upload in request.FILES.items():
            content = base64.b64encode(upload.read()).decode()
            inputs[name] = {"type": "file", "name": upload.name or name, "content": content}
        body["inputs"] = inputs
    return body


def _form_value(raw: str) -> Any:
    # Form fields are text: `wait=true`, `priority=2` and `inputs={...}` carry JSON values.
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def invalid_inputs(exc: InputError) -> Response:
    return Response({"detail": "Invalid inputs.", "code": "invalid_inputs", "errors": exc.problems}, status=400)


def fastapi_inputs(body: Any) -> Any:
    """Fast-API's `{"type": "file", "url": ...}` is our plain URL string; everything else passes as it is."""
    if not isinstance(body, Mapping):
        return body
    if body.get("type") == "file" and "url" in body and "content" not in body:
        return body["url"]
    return {name: fastapi_inputs(value) for name, value in body.items()}


def fastapi_outputs(job: Job, request: Request) -> dict[str, list[str]]:
    """Each output name → its files, base64 or signed links as the endpoint's output mode says."""
    as_url = job.endpoint is None or job.endpoint.output_mode == Endpoint.OutputMode.URL
    return {
        name: [signed_url(output, request) if as_url else _base64(output) for output in outputs]
        for name, outputs in outputs_by_name(OUTPUTS.all(job=job.id)).items()
    }


def _base64(output: JobOutput) -> str:
    with output.file.open("rb") as handle:
        return base64.b64encode(handle.read()).decode()


class EndpointDetailFastApi(EndpointDetailApi):
    """GET/PATCH/DELETE an endpoint; POST runs it the ComfyUI-Fast-API way."""

    open_methods = (*SAFE_METHODS, "POST")

    @extend_schema(
        operation_id="endpoint_fastapi_run",
        request={"application/json": dict},
        responses={200: dict, 202: OpenApiResponse(description="Still running: the job, to follow.")},
    )
    def post(self, request: Request, slug: str) -> Response:
        """Run the endpoint with a ComfyUI-Fast-API body; answer {output name: [files]} when it ends in time."""
        endpoint = run_endpoint(slug)  # not get_endpoint(): a disabled endpoint runs for no one, staff included
        try:
            job = endpoint_job(request, endpoint, fastapi_inputs(request.data))
        except InputError as exc:
            return invalid_inputs(exc)
        except services.QueueFull as exc:
            return queue_full(exc)
        return fastapi_response(request, job, wait=endpoint.max_wait)


def run_endpoint(slug: str) -> Endpoint:
    """The endpoint a run request names; 404 unless it exists and is enabled."""
    if (endpoint := runnable_endpoint(slug)) is None:
        raise Http404(f"No enabled endpoint {slug!r}.")
    return endpoint


def queue_full(exc: services.QueueFull) -> Response:
    body = {"detail": str(exc), "code": "queue_full"}
    return Response(body, status=429, headers={"Retry-After": str(exc.retry_after)})


def fastapi_response(request: Request, job: Job, *, wait: int) -> Response:
    """The outputs when the job succeeds within `wait`; else 202 with the job, or its failure."""
    if services.job_wait_state(job, timeout=wait) == Job.State.SUCCEEDED:
        # The outputs are all the answer needs of the job. Location: the job, for its timings, node and files.
        return Response(fastapi_outputs(job, request), headers={"Location": job_url(job, request)})
    job = Job.objects.for_json().get(id=job.id)
    body = job_json(job, request)
    if not job.is_finished:
        return Response(body, status=202, headers={"Location": body["links"]["self"]})
    code, status = ("job_cancelled", 409) if job.state == Job.State.CANCELLED else ("job_failed", 502)
    return Response(
        {"detail": job.error or f"The job ended {job.state}.", "code": code, "job": body}, status=status
    )
