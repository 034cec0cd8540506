"""The OpenAI images API under /v1: thin views over `images` (jobs) and `streaming` (SSE)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from comfyrouter.auth import api_key_of
from generations.openai import errors, images
from generations.openai.serializers import (
    DEFAULT_EDIT_MODEL,
    DEFAULT_GENERATION_MODEL,
    DEFAULT_INPAINT_MODEL,
    ImageEditInput,
    ImageGenerationInput,
    request_fields,
)
from generations.openai.streaming import StreamSpec, stream_response
from workflows_app.models import Endpoint

# The SDK's stream events know low, medium, high and auto; the DALL·E names map onto them.
EVENT_QUALITY = {"standard": "medium", "hd": "high"}


class OpenAIApi(APIView):
    """A /v1 view: every error, DRF's and Django's included, in OpenAI's shape."""

    def get_exception_handler(self):
        return errors.exception_handler

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        if errors.from_exception(exc) is None:
            return errors.unexpected(exc)
        response = super().handle_exception(exc)
        if auth_header := getattr(exc, "auth_header", None):
            response["WWW-Authenticate"] = auth_header
        return response


class ImageGenerationApi(OpenAIApi):
    """OpenAI's `images.generate`: a prompt to images on an endpoint (the `model`)."""

    @extend_schema(request=ImageGenerationInput, responses={200: dict})
    def post(self, request: Request) -> HttpResponseBase:
        fields = request_fields(request.data, ImageGenerationInput)
        endpoint = images.request_model(fields.get("model"), default=DEFAULT_GENERATION_MODEL)
        return images_answer(request, endpoint, fields, uploads={}, kind="image_generation")


class ImageEditApi(OpenAIApi):
    """OpenAI's `images.edit`: an image, and optionally a mask, to images (img2img or inpainting)."""

    @extend_schema(request=ImageEditInput, responses={200: dict})
    def post(self, request: Request) -> HttpResponseBase:
        form = request.POST  # parses the body first: a malformed one is refused as such
        if not (request.content_type or "").startswith("multipart/form-data"):
            raise errors.bad_request("Send image edits as multipart/form-data with an image file.", "image")
        uploads = edit_uploads(request)
        fields = request_fields(form, ImageEditInput)
        default = DEFAULT_INPAINT_MODEL if "mask" in uploads else DEFAULT_EDIT_MODEL
        endpoint = images.request_model(fields.get("model"), default=default)
        return images_answer(request, endpoint, fields, uploads=uploads, kind="image_edit")


def edit_uploads(request: Request) -> dict[str, Any]:
    for name in ("image", "image[]", "mask"):
        if name in request.POST:
            raise errors.bad_request(f"'{name}' must be a file upload, not a form field.", name.rstrip("[]"))
    sent = request.FILES.getlist("image") + request.FILES.getlist("image[]")
    if not sent:
        raise errors.bad_request("An image file is required.", "image", "missing_required_parameter")
    if len(sent) > 1:
        raise errors.bad_request(f"This server's models take one image; {len(sent)} were sent.", "image")
    mask = request.FILES.get("mask")
    return {"image": sent[0], **({"mask": mask} if mask is not None else {})}


def images_answer(request: Request, endpoint: Endpoint, fields: dict, *, uploads: dict, kind: str):
    """Queue the request's jobs; stream their events, or wait for them and answer with the images."""
    fields["response_format"] = images.response_format(fields, endpoint)
    jobs = images.image_jobs_create(
        endpoint=endpoint, fields=fields, uploads=uploads, owner=request.user, api_key=api_key_of(request)
    )
    if fields["stream"]:
        spec = StreamSpec(kind, fields["partial_images"], fields["output_format"], fields["output_compression"],
                          EVENT_QUALITY.get(fields["quality"], fields["quality"]), fields["background"],
                          float(endpoint.max_wait))  # fmt: skip
        return stream_response([job.id for job in jobs], spec)
    jobs = images.wait_jobs(jobs, timeout=endpoint.max_wait)
    return Response(images.images_response(jobs, fields, request))


class RouteNotFoundApi(OpenAIApi):
    """Any other /v1 path: OpenAI's 404, after authentication like every route."""

    @extend_schema(exclude=True)
    def get(self, request: Request, rest: str = "") -> Response:
        raise errors.OpenAIError(404, f"Invalid URL ({request.method} {request.path})", code="unknown_url")

    post = put = patch = delete = get


class ModelListApi(OpenAIApi):
    """The endpoints usable as image models."""

    @extend_schema(responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": [images.model_json(e) for e in images.image_models()]})


class ModelDetailApi(OpenAIApi):
    """One image model."""

    @extend_schema(responses={200: dict})
    def get(self, request: Request, model: str) -> Response:
        endpoint = images.find_model(model, image_model=True)
        return Response(images.model_json(endpoint))
