from django.urls import path, re_path

from generations.openai import views

urlpatterns = [
    path("images/generations", views.ImageGenerationApi.as_view(), name="openai-images-generations"),
    path("images/edits", views.ImageEditApi.as_view(), name="openai-images-edits"),
    path("models", views.ModelListApi.as_view(), name="openai-models"),
    path("models/<str:model>", views.ModelDetailApi.as_view(), name="openai-model"),
    re_path(r"^(?P<rest>.*)$", views.RouteNotFoundApi.as_view(), name="openai-not-found"),
]
