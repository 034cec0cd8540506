"""WebSocket routes of every app, gathered for comfyrouter.asgi."""

from __future__ import annotations

from generations.routing import websocket_urlpatterns as generations_routes

websocket_urlpatterns: list = [*generations_routes]
