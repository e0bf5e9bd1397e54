"""The management API as one ASGI app, assembled from its routers."""

from fastapi import FastAPI

from tiffin import __version__
from tiffin.api.context import ApiContext
from tiffin.api.errors import install_error_handlers
from tiffin.api.routes import clusters, deployments, identity, presigned, registry, secrets, tokens
from tiffin.store.registry import Kind


def create_api(context: ApiContext) -> FastAPI:
    app = FastAPI(title="Tiffin", version=__version__, docs_url=None, redoc_url=None)
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
    ):
        app.include_router(router)
    return app
