import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comfyrouter.settings")
# Initialise Django before importing anything that touches models (consumers, routing).
django.setup(set_prefix=False)

from .handlers import PooledASGIHandler  # noqa: E402

django_asgi_app = PooledASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from .middleware import StreamedBodyLimit  # noqa: E402
from .routing import websocket_urlpatterns  # noqa: E402

try:
    from daphne.http_protocol import WebRequest  # noqa: E402
except ImportError:  # served by another ASGI server
    pass
else:
    # Twisted parses the Content-Type of every POST with the stdlib email parser (1.5 ms of CPU) and a
    # multipart body in full, to fill request.args, which Daphne never reads: the app gets the raw body.
    WebRequest._parsePOSTFormSubmission = False

application = ProtocolTypeRouter(
    {
        "http": StreamedBodyLimit(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
