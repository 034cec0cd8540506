from __future__ import annotations

from django.urls import path

from workflows_app import views

# GET/PATCH/DELETE /api/endpoints/<slug> shares its path with the ComfyUI-Fast-API style POST, so it is
# routed in generations/urls.py (generations.endpoint_views.EndpointDetailFastApi).
urlpatterns = [
    path("api/workflows/", views.WorkflowListApi.as_view(), name="workflow-list"),
    path("api/workflows/<int:workflow_id>", views.WorkflowDetailApi.as_view(), name="workflow-detail"),
    path("api/endpoints/", views.EndpointListApi.as_view(), name="endpoint-list"),
]
