"""The management API as one ASGI app, assembled from its routers."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from tiffin import __version__
from tiffin.api.context import ApiContext
from tiffin.api.errors import install_error_handlers
from tiffin.api.routes import (
    clusters,
    deployments,
    identity,
    presigned,
    registry,
    secrets,
    tokens,
    websockets,
)
from tiffin.store.registry import Kind

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_api(context: ApiContext, lifespan: Lifespan | None = None) -> FastAPI:
    """The API app; `lifespan` runs alongside it (the runtime, in `tiffin up`)."""
    app = FastAPI(title="Tiffin", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.context = context
    install_error_handlers(app)
    for router in (
        identity.router,
        registry.build_router(Kind.BENTO),
        registry.build_router(Kind.MODEL),
        presigned.router,
        clusters.router,
        tokens.router,
        secrets.router,
        deployments.router,
        websockets.router,
    ):
        app.include_router(router)
    return app
