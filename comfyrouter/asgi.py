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
    from daphne import http_protocol  # noqa: E402
except ImportError:  # served by another ASGI server
    pass
else:

    class WebRequest(http_protocol.WebRequest):
        """Without Twisted's parse of form bodies into request.args, which Daphne never reads (the app gets
        the raw body and Django parses it). That parse checked the Content-Type of every POST with the
        stdlib e-mail parser, JSON included; kept a second copy of each upload in memory; and answered a
        multipart body it could not parse with a bare "400 Bad Request" of its own, not the API's JSON."""

        def __init__(self, *args, **kwargs) -> None:
            # Twisted ≥ 25.5 sets the instance's flag from this argument: a class attribute is overridden.
            super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)

    http_protocol.WebRequest = WebRequest  # the name Daphne's HTTPFactory builds each request from

application = ProtocolTypeRouter(
    {
        "http": StreamedBodyLimit(ASGIStaticFilesHandler(django_asgi_app)),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
