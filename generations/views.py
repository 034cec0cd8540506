from __future__ import annotations

from django.conf import settings
from django.db.models import Q
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import content_disposition_header
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generations import progress, services
from generations.endpoint_views import endpoint_job, invalid_inputs, queue_full, run_body, run_endpoint
from generations.models import Job, JobOutput
from generations.serializers import EndpointRunInput, JobDetail, job_json
from generations.signing import output_from_token
from workflows_app.render import InputError


def visible_to(request: Request, path: str = "") -> Q:
    """Staff see every job; everybody else only their own. `path` leads from the model to its job."""
    return Q() if request.user.is_staff else Q(**{f"{path}owner": request.user})


def visible_jobs(request: Request):
    return Job.objects.for_json().prefetch_related("outputs").filter(visible_to(request))


class JobFilter(serializers.Serializer):
    state = serializers.ChoiceField(choices=Job.State.choices, required=False)
    endpoint = serializers.SlugField(required=False)
    since = serializers.DateTimeField(required=False)


class JobListApi(ListAPIView):
    serializer_class = JobDetail

    @extend_schema(parameters=[JobFilter])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = JobFilter(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        jobs = visible_jobs(self.request).order_by("-created_at")
        filters = params.validated_data
        if "state" in filters:
            jobs = jobs.filter(state=filters["state"])
        if "endpoint" in filters:
            jobs = jobs.filter(endpoint__slug=filters["endpoint"])
        if "since" in filters:
            jobs = jobs.filter(created_at__gte=filters["since"])
        return jobs


class JobDetailApi(APIView):
    @extend_schema(responses=JobDetail)
    def get(self, request: Request, job_id) -> Response:
        job = get_object_or_404(visible_jobs(request), id=job_id)
        return Response(job_json(job, request))


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobDetail)
    def post(self, request: Request, job_id) -> Response:
        job = get_object_or_404(visible_jobs(request), id=job_id)
        if job.is_finished:
            return Response(
                {"detail": f"Job {job.id} already ended ({job.state}).", "code": "job_finished"}, status=409
            )
        job = services.job_cancel(job=job)
        return Response(job_json(job, request), status=202 if not job.is_finished else 200)


class JobOutputApi(APIView):
    @extend_schema(responses={(200, "image/*"): bytes})
    def get(self, request: Request, job_id, index: int) -> HttpResponse:
        outputs = JobOutput.objects.filter(visible_to(request, "job__"), job_id=job_id, index=index)
        return file_response(get_object_or_404(outputs))


# Smaller files are answered in one piece: an ASGI server streams a FileResponse chunk by chunk, each
# read a hop to a thread, which costs more than the read for a typical image.
STREAM_FROM_BYTES = 1 << 20


def file_response(output: JobOutput, *, download: bool = False) -> HttpResponse:
    """An output file, inline or as a download, under the name ComfyUI gave it."""
    if output.size > STREAM_FROM_BYTES:
        return FileResponse(
            output.file.open("rb"),
            content_type=output.content_type,
            as_attachment=download,
            filename=output.filename,
        )
    with output.file.open("rb") as handle:
        response = HttpResponse(handle.read(), content_type=output.content_type)
    response["Content-Disposition"] = content_disposition_header(download, output.filename)
    return response


class JobPreviewApi(APIView):
    """The newest latent preview of a job; no auth: the job id is an unguessable UUID."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "image/jpeg"): bytes}, parameters=[OpenApiParameter("job_id", str, "path")])
    def get(self, request: Request, job_id) -> HttpResponse:
        image = progress.latest_preview(job_id)
        if image is None:
            raise Http404("No preview yet.")
        response = HttpResponse(image, content_type="image/jpeg")
        response["Cache-Control"] = "no-store"
        return response


class EndpointRunApi(APIView):
    """Queue a job on an endpoint; with `wait`, answer with the outputs if it ends in time."""

    @extend_schema(request=EndpointRunInput, responses={200: JobDetail, 202: JobDetail})
    def post(self, request: Request, slug: str) -> Response:
        endpoint = run_endpoint(slug)
        run = EndpointRunInput(data=run_body(request))
        run.is_valid(raise_exception=True)
        data = run.validated_data
        try:
            job = endpoint_job(
                request, endpoint, data["inputs"], priority=data["priority"], webhook_url=data["webhook_url"]
            )
        except InputError as exc:
            return invalid_inputs(exc)
        except services.QueueFull as exc:
            return queue_full(exc)
        return job_response(request, job, wait=data["wait"], longest=endpoint.max_wait)


def job_response(request: Request, job: Job, *, wait: float | bool, longest: int) -> Response:
    """200 with the finished job if it ends within `wait`, else 202 with where to follow it."""
    seconds = longest if wait is True else min(float(wait), longest)
    job = services.job_wait(job, timeout=seconds)
    body = job_json(job, request)
    response = Response(body, status=200 if job.is_finished else 202)
    response["Location"] = body["links"]["self"]
    return response


class SignedFileApi(APIView):
    """An output file behind a signed, expiring link (`response_format=url`, URL output mode)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "image/*"): bytes})
    def get(self, request: Request, token: str) -> HttpResponse:
        output = output_from_token(token, max_age=settings.COMFYROUTER_SIGNED_URL_TTL)
        if output is None:
            raise Http404("This link is invalid or has expired.")
        return file_response(output)
