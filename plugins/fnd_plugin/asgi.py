"""An ASGI app that is built on its first request, so loading the plugin stays cheap."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

ASGIApp = Callable[[dict, Callable, Callable], Awaitable[None]]


class LazyApp:
    """Forwards every ASGI call to ``factory()``'s app, made once, on the first call.

    Airflow imports plugins in the scheduler, the DAG processor and every task; only the API
    server ever serves a request, so only it pays for FastAPI, Jinja and fnd's queries.
    """

    def __init__(self, factory: Callable[[], ASGIApp]) -> None:
        self._factory = factory
        self._app: ASGIApp | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        await self.app(scope, receive, send)
