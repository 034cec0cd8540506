"""WebSocket routes of every app, gathered for comfyrouter.asgi."""

websocket_urlpatterns: list = []
