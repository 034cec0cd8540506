"""The browser pages: a job's live page (by its unguessable id) and the operator dashboard (staff).

Access rule: whoever holds a job's id may watch it and fetch its images, as with the preview image
(`/preview/<id>`); the id is a random UUID, never listed to anyone but its owner and staff.
"""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.decorators import method_decorator
from django.views import View

from generations.models import Job, JobOutput
from generations.views import file_response


class JobPage(View):
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, job_id) -> HttpResponse:
        job = get_object_or_404(Job.objects.select_related("node", "endpoint").defer("inputs"), id=job_id)
        return render(request, "generations/job.html", {"job": job, "outputs": job.outputs.all()})


class JobOutputFile(View):
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, job_id, index: int) -> HttpResponse:
        output = get_object_or_404(JobOutput, job_id=job_id, index=index)
        response = file_response(output, download="download" in request.GET)
        response["Cache-Control"] = "private, max-age=3600"
        return response


@method_decorator(staff_member_required, name="dispatch")
class Dashboard(View):
    """Staff only: anyone else is sent to the admin login, whatever the method."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "dashboard.html")
