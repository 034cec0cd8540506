from __future__ import annotations

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from generations import progress, services
from generations.endpoint_views import endpoint_job, invalid_inputs, run_body
from generations.models import Job
from generations.serializers import EndpointRunInput, JobDetail, job_json
from generations.signing import output_from_token
from workflows_app.models import Endpoint
from workflows_app.render import InputError


def visible_jobs(request: Request):
    """Staff see every job; everybody else only their own."""
    jobs = Job.objects.select_related("endpoint", "node").prefetch_related("outputs")
    return jobs if request.user.is_staff else jobs.filter(owner=request.user)


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
    def get(self, request: Request, job_id, index: int) -> FileResponse:
        job = get_object_or_404(visible_jobs(request), id=job_id)
        output = get_object_or_404(job.outputs, index=index)
        return FileResponse(output.file.open("rb"), content_type=output.content_type, filename=output.filename)


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
        endpoint = get_object_or_404(Endpoint.objects.enabled().select_related("version"), slug=slug)
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


def queue_full(exc: services.QueueFull) -> Response:
    body = {"detail": str(exc), "code": "queue_full"}
    return Response(body, status=429, headers={"Retry-After": str(exc.retry_after)})


def job_response(request: Request, job: Job, *, wait: float | bool, longest: int) -> Response:
    """200 with the finished job if it ends within `wait`, else 202 with where to follow it."""
    seconds = longest if wait is True else min(float(wait), longest)
    if seconds and not job.is_finished:
        progress.wait_finished(
            job.id, timeout=seconds, is_finished=lambda: Job.objects.finished().filter(id=job.id).exists()
        )
        job.refresh_from_db()
    body = job_json(job, request)
    response = Response(body, status=200 if job.is_finished else 202)
    response["Location"] = body["links"]["self"]
    return response


class SignedFileApi(APIView):
    """An output file behind a signed, expiring link (`response_format=url`, URL output mode)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={(200, "image/*"): bytes})
    def get(self, request: Request, token: str) -> FileResponse:
        output = output_from_token(token, max_age=settings.COMFYROUTER_SIGNED_URL_TTL)
        if output is None:
            raise Http404("This link is invalid or has expired.")
        return FileResponse(output.file.open("rb"), content_type=output.content_type, filename=output.filename)
