from __future__ import annotations

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
from generations.models import Job
from generations.serializers import JobDetail, job_json


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
        return FileResponse(
            output.file.open("rb"), content_type=output.content_type, filename=output.filename
        )


class JobPreviewApi(APIView):
    """The newest latent preview of a job; no auth: the job id is an unguessable UUID."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={(200, "image/jpeg"): bytes}, parameters=[OpenApiParameter("job_id", str, "path")]
    )
    def get(self, request: Request, job_id) -> HttpResponse:
        image = progress.latest_preview(job_id)
        if image is None:
            raise Http404("No preview yet.")
        response = HttpResponse(image, content_type="image/jpeg")
        response["Cache-Control"] = "no-store"
        return response
