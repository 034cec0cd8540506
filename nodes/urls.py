from __future__ import annotations

from django.urls import path

from nodes import views

urlpatterns = [
    path("", views.NodeListApi.as_view(), name="node-list"),
    path("<int:node_id>", views.NodeDetailApi.as_view(), name="node-detail"),
    path("<int:node_id>/drain", views.NodeDrainApi.as_view(), name="node-drain"),
    path("<int:node_id>/resume", views.NodeResumeApi.as_view(), name="node-resume"),
    path("<int:node_id>/check", views.NodeCheckApi.as_view(), name="node-check"),
]
