"""The browser pages: a job's live page (by its unguessable id) and the operator dashboard (staff).

Access rule: whoever holds a job's id may watch it and fetch its images, as with the preview image
(`/preview/<id>`); the id is a random UUID, never listed to anyone but its owner and staff.
"""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from generations.models import Job, JobOutput


@require_GET
def job_page(request: HttpRequest, job_id) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("node", "endpoint").defer("inputs"), id=job_id)
    return render(request, "generations/job.html", {"job": job, "outputs": job.outputs.all()})


@require_GET
def job_output_file(request: HttpRequest, job_id, index: int) -> FileResponse:
    output = get_object_or_404(JobOutput, job_id=job_id, index=index)
    response = FileResponse(
        output.file.open("rb"),
        content_type=output.content_type,
        as_attachment="download" in request.GET,
        filename=output.filename,
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


@staff_member_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard.html")
