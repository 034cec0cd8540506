from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from generations.openai import errors, views

urlpatterns = [
    path("images/generations", views.ImageGenerationApi.as_view(), name="openai-images-generations"),
    path("images/edits", views.ImageEditApi.as_view(), name="openai-images-edits"),
    path("models", views.ModelListApi.as_view(), name="openai-models"),
    path("models/<str:model>", views.ModelDetailApi.as_view(), name="openai-model"),
    re_path(r"^", csrf_exempt(errors.route_not_found)),
]
