from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from generations import pages

from .views import HealthApi, MeApi

handler400 = "comfyrouter.errors.handler400"
handler403 = "comfyrouter.errors.handler403"
handler404 = "comfyrouter.errors.handler404"
handler500 = "comfyrouter.errors.handler500"

urlpatterns = [
    path("health", HealthApi.as_view(), name="health"),
    path("admin/", admin.site.urls),
    path("api/me", MeApi.as_view(), name="me"),
    path("api/nodes/", include("nodes.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("v1/", include("generations.openai.urls")),
    path("", include("workflows_app.urls")),
    path("", include("generations.urls")),
    path("", pages.Dashboard.as_view(), name="dashboard"),
    path("jobs/<uuid:job_id>/", pages.JobPage.as_view(), name="job-page"),
    path("jobs/<uuid:job_id>/outputs/<int:index>", pages.JobOutputFile.as_view(), name="job-page-output"),
]
