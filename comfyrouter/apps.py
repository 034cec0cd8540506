from django.apps import AppConfig


class ComfyRouterConfig(AppConfig):
    name = "comfyrouter"
    verbose_name = "ComfyRouter"
