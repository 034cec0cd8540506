from django.urls import path

from generations import endpoint_views, views

urlpatterns = [
    path("api/jobs/", views.JobListApi.as_view(), name="job-list"),
    path("api/jobs/<uuid:job_id>", views.JobDetailApi.as_view(), name="job-detail"),
    path("api/jobs/<uuid:job_id>/cancel", views.JobCancelApi.as_view(), name="job-cancel"),
    path("api/jobs/<uuid:job_id>/outputs/<int:index>", views.JobOutputApi.as_view(), name="job-output"),
    path("api/endpoints/<slug:slug>/run", views.EndpointRunApi.as_view(), name="endpoint-run"),
    path("api/endpoints/<slug:slug>", endpoint_views.EndpointDetailFastApi.as_view(), name="endpoint-detail"),
    path("files/<str:token>", views.SignedFileApi.as_view(), name="signed-file"),
    path("preview/<uuid:job_id>", views.JobPreviewApi.as_view(), name="job-preview"),
]
