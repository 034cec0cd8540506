"""Django's ASGI handler with request threads that are reused, not created for every request.

Django runs a request's sync code (middleware, views, signals) on one thread of its own: stock
`ASGIHandler` makes a new single-thread executor per request, and a second thread to join it. Each
request so paid for two thread starts and, worse, a new database connection (connections are
per thread), so CONN_MAX_AGE could never keep one. Here a request borrows an idle one-thread
executor and gives it back when done: the thread, and the connection Django keeps on it, live on.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

# Idle threads kept for the next requests, each with its database connection; a burst beyond this starts
# threads that close their connection and end after it.
MAX_IDLE_THREADS = 8


class PooledASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.idle: list[ThreadPoolExecutor] = []

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
