"""The API documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, with their scripts,
styles and icon served by this server: the pages work offline and load nothing from a CDN.

The assets ship in the ``fastapi-offline`` package (part of ``pixql[server]``); only its
static files are used. Every path here is public (see :data:`pixql.server.auth.PUBLIC_PATHS`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

from pixql.errors import MissingDependencyError, NotFoundError

#: where the assets are served
ASSETS_URL = "/docs/assets"
#: asset file → media type
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)


def assets_folder() -> Path:
    """The folder of the Swagger UI / ReDoc files (MissingDependencyError naming the extra)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the /docs pages need the package fastapi-offline: pip install 'pixql[server]'")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _openapi_url(request: Request) -> str:
    return request.scope.get("root_path", "") + (request.app.openapi_url or "/openapi.json")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request), title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None},  # no calls to validator.swagger.io
    )


@router.get(OAUTH2_REDIRECT_URL)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=_openapi_url(request), title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False,
    )


@router.get(ASSETS_URL + "/{name}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFoundError(f"no documentation asset {name!r}; there are: {', '.join(ASSETS)}")
    return FileResponse(assets_folder() / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "public, max-age=86400"})
