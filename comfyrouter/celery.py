import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comfyrouter.settings")

app = Celery("comfyrouter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def reuse_database_connections(**kwargs: object) -> None:
    """Around each task, what Django does around each request: drop this thread's connection if it broke
    or outlived CONN_MAX_AGE, and health-check it before its next use; otherwise keep it (settings:
    CELERY_DB_REUSE_MAX stops Celery from closing it every time)."""
    from django.db import close_old_connections

    close_old_connections()
