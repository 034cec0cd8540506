"""OpenAI image requests as jobs: pick the endpoint, map the parameters, queue, wait, answer."""

from __future__ import annotations

import base64
import io
import random
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from PIL import Image

from generations import progress, services
from generations.files import FileInputError, cached_file, node_filename, resolve_files
from generations.models import CachedFile, Job, JobOutput
from generations.openai import mapping
from generations.openai.errors import OpenAIError, bad_request, upstream_failure
from generations.serializers import signed_url
from workflows_app.models import Endpoint, runnable_endpoint
from workflows_app.objectinfo import object_info
from workflows_app.render import InputError
from workflows_app.services import endpoint_render, endpoint_values, version_graph, version_params

PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
OPENAI_MODEL = re.compile(r"^(dall-e-|gpt-image-|chatgpt-image-)")
GPT_IMAGE = re.compile(r"^(gpt-image-|chatgpt-image-)")


def request_model(slug: str | None, *, default: str) -> Endpoint:
    """The endpoint a request's `model` names; none, or one of OpenAI's own models, means `default`.

    Code written for OpenAI names dall-e-3 or gpt-image-1: it runs here unchanged, on the default
    endpoint, unless an endpoint carries that very slug.
    """
    if slug and OPENAI_MODEL.match(slug) and not Endpoint.objects.enabled().filter(slug=slug).exists():
        slug = None
    return find_model(slug or default)


def find_model(slug: str, *, image_model: bool = False) -> Endpoint:
    """The enabled endpoint a `model` names (one with a prompt, if `image_model`); 404 otherwise."""
    endpoint = runnable_endpoint(slug)
    if endpoint is None or (image_model and "prompt" not in endpoint_slots(endpoint)):
        message = f"The model '{slug}' does not exist or you do not have access to it."
        raise OpenAIError(404, message, param="model", code="model_not_found")
    return endpoint


def endpoint_slots(endpoint: Endpoint) -> dict[str, mapping.Slot]:
    graph = version_graph(endpoint.version_id)
    return mapping.endpoint_slots(graph, version_params(endpoint.version_id), object_info())


def image_models() -> list[Endpoint]:
    """Enabled endpoints the images API can drive: those with a prompt."""
    endpoints = Endpoint.objects.enabled().select_related("version").order_by("slug")
    return [endpoint for endpoint in endpoints if "prompt" in endpoint_slots(endpoint)]


def model_json(endpoint: Endpoint) -> dict[str, Any]:
    return {"id": endpoint.slug, "object": "model", "created": int(endpoint.created_at.timestamp()),
            "owned_by": "comfyrouter"}  # fmt: skip


def image_jobs_create(
    *, endpoint: Endpoint, fields: Mapping[str, Any], uploads: Mapping[str, UploadedFile], owner, api_key
) -> list[Job]:
    """Queue the jobs for one images request: n in one batch when the endpoint has a batch size."""
    slots = endpoint_slots(endpoint)
    request = mapping.ImageRequest(**{key: fields[key] for key in REQUEST_KEYS if key in fields})
    try:
        plans = mapping.plan(slots, request, defaults=endpoint.defaults or {}, rng=random.SystemRandom())
        extra = attach_files(slots, plans, uploads)
    except mapping.ParamError as exc:
        raise bad_request(str(exc), exc.param, "invalid_value") from None
    jobs: list[Job] = []
    try:
        for job_plan in plans:
            jobs.append(_job_create(endpoint, slots, job_plan, extra, owner=owner, api_key=api_key))
    except (services.QueueFull, OpenAIError) as exc:
        for job in jobs:
            services.job_cancel(job=job)
        if isinstance(exc, OpenAIError):
            raise
        raise OpenAIError(
            429, str(exc), code="queue_full", headers={"Retry-After": str(exc.retry_after)}
        ) from None
    return jobs


REQUEST_KEYS = ("prompt", "n", "size", "quality", "negative_prompt", "seed", "steps")


def attach_files(
    slots: Mapping[str, mapping.Slot], plans: list[mapping.JobPlan], uploads: Mapping[str, UploadedFile]
) -> list[CachedFile]:
    """Put each uploaded file into its slot; files for graph-fallback slots are stored here."""
    files = {name: (_read(upload, name), _name(upload)) for name, upload in uploads.items()}
    if "mask" in slots and "mask" not in files and "image" in files:
        files["mask"] = files["image"]  # as OpenAI: without a mask, the image's transparency is the mask
    entries: list[CachedFile] = []
    for name in ("image", "mask"):
        slot = slots.get(name)
        if name in files and slot is None:
            raise mapping.ParamError(name, f"This model takes no {name}.")
        if slot is None or (name not in files and not slot.field):
            continue
        if name not in files:
            raise mapping.ParamError("model", "This model edits images: use POST /v1/images/edits with an image.")
        data, filename = files[name]
        if slot.field:
            value = {"type": "file", "name": filename, "content": base64.b64encode(data).decode()}
            for job_plan in plans:
                job_plan.inputs[slot.field] = value
            continue
        entry = _cached(data, name, filename)
        entries.append(entry)
        for job_plan in plans:
            job_plan.writes[(slot.node_id, slot.widget)] = node_filename(entry)
    return entries


def _read(upload: UploadedFile, field: str) -> bytes:
    limit = settings.COMFYROUTER_MAX_DOWNLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        raise mapping.ParamError(field, f"The {field} file is larger than the {limit}-byte limit.")
    return upload.read()


def _name(upload: UploadedFile) -> str:
    return (upload.name or "upload").replace("/", "_").replace("\\", "_")[:200]


def _cached(data: bytes, field: str, name: str) -> CachedFile:
    try:
        return cached_file(data=data, field=field, name=name)
    except FileInputError as exc:
        raise mapping.ParamError(field, f"Invalid {field} file: {exc.reason}.") from None


def _job_create(endpoint, slots, job_plan: mapping.JobPlan, extra: list[CachedFile], *, owner, api_key) -> Job:
    try:
        params, values = endpoint_values(endpoint=endpoint, inputs=job_plan.inputs)
        values, files = resolve_files(params, values, graph=version_graph(endpoint.version_id))
        prompt = endpoint_render(endpoint=endpoint, params=params, values=values)
    except InputError as exc:
        first = exc.problems[0]
        message = "; ".join(f"{p['field'] or 'body'} {p['rule']}" for p in exc.problems)
        raise bad_request(
            f"Invalid value: {message}.", mapping.param_of(first["field"], slots), "invalid_value"
        ) from None
    prompt = mapping.write(prompt, job_plan.writes)
    return services.job_create(
        prompt=prompt, inputs=values, files=[*files, *extra], endpoint=endpoint, owner=owner, api_key=api_key,
        source=Job.Source.OPENAI,
    )  # fmt: skip


def wait_jobs(jobs: Iterable[Job], *, timeout: float) -> list[Job]:
    """Block until every job ends; an upstream failure or a timeout is raised as an OpenAI 5xx."""
    jobs = list(jobs)
    deadline = time.monotonic() + timeout
    for job in jobs:
        finished = Job.objects.finished().filter(id=job.id)
        progress.wait_finished(job.id, timeout=max(0.0, deadline - time.monotonic()), is_finished=finished.exists)
        job.refresh_from_db()
    if unfinished := [job for job in jobs if not job.is_finished]:
        for job in unfinished:
            services.job_cancel(job=job)
        raise upstream_failure(503, f"The job did not finish within {timeout:g} s; it was cancelled.", "timeout")
    for job in jobs:
        raise_failure(job)
    return jobs


def raise_failure(job: Job) -> None:
    """An OpenAI error saying why a finished job produced no image; nothing for a success."""
    if job.state == Job.State.SUCCEEDED:
        return
    if job.state == Job.State.CANCELLED:
        raise upstream_failure(500, f"Job {job.id} was cancelled: {job.error}", "job_cancelled")
    if job.attempts == 0:
        # Failed before any node ran it: no node has its models, or none took it in time.
        raise upstream_failure(503, f"No node could run job {job.id}: {job.error}", "no_node_available")
    where = f" (node {job.error_node})" if job.error_node else ""
    raise upstream_failure(500, f"Job {job.id} failed on ComfyUI{where}: {job.error}", "job_failed")


def job_images(job: Job) -> list[JobOutput]:
    """The images a job saved (SaveImage outputs), or every image when it only previewed."""
    images = [output for output in job.outputs.all() if output.content_type.startswith("image/")]
    saved = [output for output in images if output.kind == "output"]
    return saved or images


def encode(data: bytes, output_format: str, compression: int) -> bytes:
    """The image in the format asked for: unchanged when it already is, else converted by Pillow."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == PIL_FORMATS[output_format]:
            return data
        converted = image.convert("RGB" if output_format == "jpeg" else "RGBA")
        buffer = io.BytesIO()
        options = {} if output_format == "png" else {"quality": max(1, compression)}
        converted.save(buffer, format=PIL_FORMATS[output_format], **options)
        return buffer.getvalue()


def image_item(output: JobOutput, fields: Mapping[str, Any], request) -> dict[str, Any]:
    if fields["response_format"] == "url":
        return {"url": signed_url(output, request)}
    with output.file.open("rb") as fh:
        data = encode(fh.read(), fields["output_format"], fields["output_compression"])
    return {"b64_json": base64.b64encode(data).decode()}


def images_response(jobs: list[Job], fields: Mapping[str, Any], request) -> dict[str, Any]:
    """The body the SDK parses as `ImagesResponse`."""
    outputs = [output for job in jobs for output in job_images(job)]
    if not outputs:
        raise upstream_failure(500, "The workflow ran but saved no image.", "no_output")
    body: dict[str, Any] = {"created": int(time.time()), "data": [image_item(o, fields, request) for o in outputs]}
    body["output_format"] = fields["output_format"]
    if outputs[0].width and outputs[0].height:
        body["size"] = f"{outputs[0].width}x{outputs[0].height}"
    return body


def response_format(fields: Mapping[str, Any], endpoint: Endpoint) -> str:
    """The format asked for, else what the named OpenAI model or the endpoint's output mode answers."""
    if fields["stream"]:
        return "b64_json"  # stream events always carry the image itself
    by_mode = "url" if endpoint.output_mode == Endpoint.OutputMode.URL else "b64_json"
    # GPT image models only ever answer b64_json: code written for them reads nothing else.
    by_model = "b64_json" if GPT_IMAGE.match(fields.get("model") or "") else by_mode
    chosen = fields.get("response_format") or by_model
    if chosen == "url" and fields["output_format"] != "png":
        raise bad_request("output_format jpeg and webp need response_format b64_json.", "output_format")
    return chosen
