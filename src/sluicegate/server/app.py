"""Build the ASGI app for a config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opentelemetry.sdk.trace.export import SpanExporter
from starlette.applications import Starlette
from starlette.middleware import Middleware

from sluicegate.config.schema import Config
from sluicegate.server.errors import EXCEPTION_HANDLERS
from sluicegate.server.gateway import Gateway, MasterKey, resolve_master_key
from sluicegate.server.middleware import RequestIdMiddleware
from sluicegate.server.routes import ROUTES

__all__ = ["create_app"]


def create_app(
    config: Config,
    master_key: MasterKey | None = None,
    *,
    span_exporter: SpanExporter | None = None,
) -> Starlette:
    """``span_exporter`` turns tracing on and receives each span as it ends, instead of
    the exporter the ``OTEL_*`` environment names (for tests and embedding)."""
    gw = Gateway(config, master_key or resolve_master_key(config), span_exporter)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.close()

    app = Starlette(
        routes=ROUTES,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app
