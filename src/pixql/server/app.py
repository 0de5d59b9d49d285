"""The FastAPI app factory and ``serve()`` (what ``pixql serve`` runs).

:func:`create_app` builds an independent app from :class:`ServerSettings` (no module-level
app or settings): state lives on ``app.state`` (``settings``, ``models``, ``images``,
``workspace``, ``server_id``) and reaches routes through :mod:`pixql.server.deps`. Its
lifespan preloads ``preload_models`` in a background thread, so ``/readiness`` can say 503
while they load.

Middleware, outermost first: metrics → CORS (when ``cors_origins``) → internal-error catch-all →
body size cap → API keys (when ``api_keys``) → routes.

Examples:
    >>> from pixql.server.app import create_app
    >>> from pixql.server.settings import ServerSettings
    >>> app = create_app(ServerSettings(api_keys=["secret"]))
    >>> sorted(p for p in app.openapi()["paths"] if p.startswith("/clip"))
    ['/clip/compare', '/clip/embed_image', '/clip/embed_text']
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI

from pixql.errors import MissingDependencyError
from pixql.server.auth import ApiKeyMiddleware, install_log_redaction
from pixql.server.errors import InternalErrorMiddleware, install_error_handlers
from pixql.server.inputs import ImageLoader
from pixql.server.manager import ClipModels
from pixql.server.metrics import install_metrics
from pixql.server.middleware import BodyLimitMiddleware
from pixql.server.settings import ServerSettings, url_settings
from pixql.version import __version__
from pixql.workspace import Workspace

log = logging.getLogger("pixql.server")

#: routers every app mounts (module path of a module defining ``router``)
ROUTERS = (
    "pixql.server.routes.health",
    "pixql.server.routes.models",
    "pixql.server.routes.clip",
    "pixql.server.routes.ui",
    "pixql.server.routes.docs",  # /docs and /redoc with local assets (no CDN)
)
#: (settings property, router module) pairs: the router is mounted when the property is true
OPTIONAL_ROUTERS = (
    ("sql_enabled", "pixql.server.routes.sql"),
    ("sql_enabled", "pixql.server.routes.thanosql_files"),
    ("sql_enabled", "pixql.server.routes.thanosql_ws"),
    ("sql_enabled", "pixql.server.routes.thanosql"),  # last: its /api/v1/* catch-all
)

DESCRIPTION = """pixql's HTTP API, wire-compatible with Roboflow Inference Server's CLIP
routes (`inference_sdk.InferenceHTTPClient` works unchanged). Embeddings are raw CLIP
projections unless `normalize` is true; similarities are cosine."""


def _router(module: str) -> APIRouter:
    try:
        return importlib.import_module(module).router
    except ModuleNotFoundError as e:
        raise MissingDependencyError(f"server routes {module} are not available ({e})") from e


def _workspace_root(workspace: Workspace | str | os.PathLike[str] | None) -> Path | None:
    if workspace is None:
        return None
    if isinstance(workspace, str | os.PathLike):  # a folder (note: Path has its own .root)
        return Path(workspace)
    return Path(workspace.root)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start-up: redact keys in logs, preload models (background); shutdown: nothing held."""
    install_log_redaction()
    models: ClipModels = app.state.models
    if models.settings.preload_models:
        threading.Thread(target=models.preload, name="pixql-preload", daemon=True).start()
    else:
        models.mark_preloaded()
    log.info("pixql server settings: %s", app.state.settings.public_dict())
    from pixql.server.pg.endpoint import start_endpoint

    app.state.pg = start_endpoint(app) if app.state.settings.pg_port is not None else None
    yield
    if app.state.pg is not None:
        app.state.pg.stop()
    models.close()


def create_app(
    settings: ServerSettings | None = None,
    *,
    workspace: Workspace | str | os.PathLike[str] | None = None,
) -> FastAPI:
    """Build the server app.

    Args:
        settings: the configuration (default: :meth:`ServerSettings.from_env`).
        workspace: a :class:`pixql.Workspace` (or its folder) for routes that need one
            (``{"type": "file"}`` images, SQL); available as ``app.state.workspace``.

    Returns:
        A FastAPI app; run it with uvicorn, or :func:`serve`.
    """
    settings = settings if settings is not None else ServerSettings.from_env()
    app = FastAPI(
        title="pixql",
        version=__version__,
        description=DESCRIPTION,
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
        lifespan=lifespan,
        docs_url=None,  # served by pixql.server.routes.docs, assets included
        redoc_url=None,
        strict_content_type=False,  # a body sent without Content-Type is parsed as JSON
    )
    app.state.settings = settings
    app.state.workspace = workspace
    app.state.pg = None  # the PostgreSQL endpoint (--pg-port), started by the lifespan
    app.state.server_id = str(uuid.uuid4())
    app.state.models = ClipModels(settings)
    app.state.images = ImageLoader(settings, _workspace_root(workspace))
    install_error_handlers(app)
    for module in ROUTERS:
        app.include_router(_router(module))
    for flag, module in OPTIONAL_ROUTERS:
        if getattr(settings, flag):
            app.include_router(_router(module))
    _add_middleware(app, settings)
    install_metrics(app)  # GET /metrics; its middleware is the outermost (sees every answer)
    return app


def _add_middleware(app: FastAPI, settings: ServerSettings) -> None:
    """Add middleware innermost first (Starlette wraps each new one around the previous)."""
    if settings.auth_enabled:
        keys = [k.get_secret_value() for k in settings.api_keys]
        app.add_middleware(ApiKeyMiddleware, keys=keys)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(InternalErrorMiddleware)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
            allow_headers=["*"],
        )


def report_repairs(workspace: Workspace) -> None:
    """Log (as warnings, so they show without logging set up) what the workspace's start-up
    check removed: unfinished builds and orphaned model versions left by a crash."""
    for item in getattr(workspace, "repaired", []):
        log.warning("workspace %s: start-up check removed %s", workspace.root, item)


def serve(
    settings: ServerSettings | None = None, workspace_dir: str | Path | None = None
) -> None:
    """Run the server with uvicorn until interrupted (what ``pixql serve`` calls).

    Args:
        settings: host, port, keys, limits (default: from the environment).
        workspace_dir: a workspace folder to open (confined: SQL over HTTP reads and
            writes files inside it, and inside ``settings.allowed_dirs``, only), or None.
            While serving, ``DIR/.pixql/server.json`` tells clients to come here.
    """
    from pixql.server.served import bind, run

    settings = settings if settings is not None else ServerSettings.from_env()
    workspace = None
    if workspace_dir is not None:
        from pixql.connection import ensure_not_served, open_workspace, workspace_root

        root = workspace_root(workspace_dir)
        ensure_not_served(root)  # a second server on the same workspace: say who serves it
        # confined: SQL over HTTP may touch files inside the workspace (and allowed_dirs) only
        workspace = open_workspace(root, progress=False, confined=True,
                                   allowed_dirs=settings.allowed_dirs,
                                   url_settings=url_settings(settings))
        report_repairs(workspace)
    install_log_redaction()
    app = create_app(settings, workspace=workspace)
    sock = bind(settings.host, settings.port)
    try:
        run(app, workspace, sock)  # with DIR/.pixql/server.json while serving
    finally:
        sock.close()
        if workspace is not None:
            workspace.close()
