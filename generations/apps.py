from django.apps import AppConfig


class GenerationsConfig(AppConfig):
    name = "generations"
    verbose_name = "Jobs and files"

    def ready(self) -> None:
        from generations import services
        from nodes.signals import node_ready

        # A node that can take jobs again gets them now, not at the next sweep.
        node_ready.connect(services.node_ready_dispatch, dispatch_uid="generations.node_ready_dispatch")
