"""A URLconf for test_request_threads: views that report the thread and database connection they ran on."""

from __future__ import annotations

import threading

from django.db import connection
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.urls import path

release = threading.Event()


def where(request: HttpRequest) -> JsonResponse:
    connection.ensure_connection()
    return JsonResponse({"thread": threading.get_ident(), "db": id(connection.connection)})


def stuck(request: HttpRequest) -> JsonResponse:
    release.wait(10)  # a view still running when the next request comes
    return where(request)


def streamed(request: HttpRequest) -> StreamingHttpResponse:
    def parts():
        events.append("body read")
        yield b'{"streamed": true}'

    return StreamingHttpResponse(parts(), content_type="application/json")


events: list[str] = []  # what the streamed view's body and the request's signals did, in order

urlpatterns = [path("where", where), path("stuck", stuck), path("streamed", streamed)]
