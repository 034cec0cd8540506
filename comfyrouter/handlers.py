"""Django's ASGI handler with request threads that are reused, not created for every request, and
one hop from the event loop to that thread per request.

Django runs a request's sync code (middleware, views, signals) on one thread of its own: stock
`ASGIHandler` makes a new single-thread executor per request, and a second thread to join it. Each
request so paid for two thread starts and, worse, a new database connection (connections are
per thread), so CONN_MAX_AGE could never keep one. Here a request borrows an idle one-thread
executor and gives it back when done: the thread, and the connection Django keeps on it, live on.

Every view and middleware here is sync, so the middleware chain is built sync, as under WSGI, and
runs on the request thread in one call. Stock ASGI builds it async: sync middleware then run in the
thread, hop back to the event loop to resolve the URL, and hop to the thread again for the view.

A request makes one hop to its thread, not three: request_started's receivers, the view and (for a response
whose body is already made) its close run there in one call. Stock ASGI hops for each, and runs a task that
waits for the client to leave, to cancel the view: a sync view cannot be cancelled, and Daphne drops what is
sent to a client that left.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import connections
from django.http import FileResponse, HttpResponse
from django.urls import set_script_prefix

# Idle threads kept for the next requests, each with its database connection; a burst beyond this starts
# threads that close their connection and end after it.
MAX_IDLE_THREADS = 8


class PooledASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.load_middleware(is_async=False)
        self.idle: list[ThreadPoolExecutor] = []

    async def handle(self, scope, receive, send) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        try:
            response = await sync_to_async(self.serve, thread_sensitive=True)(scope, body_file)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:  # its body is read from its iterator while sending: closed only now
                    await sync_to_async(response.close, thread_sensitive=True)()
        finally:
            body_file.close()

    def serve(self, scope, body_file) -> HttpResponse:
        """On the request's thread: the request's start, its response, and its end unless the body streams."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # as stock ASGI: the server chunks
        if not response.streaming:
            response.close()  # request_finished; the body is kept
        return response

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        thread = self.idle.pop() if self.idle else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        try:
            # handle() returns once the request's sync calls have: even when the client left early, its
            # request_finished handlers queue on this thread behind the view.
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            if len(self.idle) < MAX_IDLE_THREADS:
                self.idle.append(thread)
            else:
                retire(thread, wait=False)

    def retire_idle(self) -> None:
        """End the idle threads now, closing their database connections (a clean shutdown; tests)."""
        while self.idle:
            retire(self.idle.pop(), wait=True)


def retire(thread: ThreadPoolExecutor, *, wait: bool) -> None:
    thread.submit(connections.close_all)  # connections are per thread: only it can close its own
    thread.shutdown(wait=wait)
