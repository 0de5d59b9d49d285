"""``/info``, ``/healthz`` and ``/readiness`` (open without an API key).

``GET /`` (the search page, also what Roboflow's clients poll for 200) is in
:mod:`pixql.server.routes.ui`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pixql.server.deps import ModelsDep
from pixql.server.schemas import HealthResponse, InfoResponse
from pixql.version import __version__

router = APIRouter(tags=["health"])

@router.get("/info", response_model=InfoResponse, summary="Server name, version and id")
async def info(request: Request) -> InfoResponse:
    """``{"name": "pixql", "version": ..., "uuid": <this server process>}``."""
    return InfoResponse(name="pixql", version=__version__, uuid=request.app.state.server_id)


@router.get(
    "/healthz", response_model=HealthResponse, response_model_exclude_none=True,
    summary="Liveness",
)
async def healthz() -> HealthResponse:
    """``{"status": "healthy"}`` while the process serves requests."""
    return HealthResponse(status="healthy")


@router.get(
    "/readiness",
    response_model=HealthResponse,
    response_model_exclude_none=True,
    responses={503: {"model": HealthResponse, "description": "models not (or no longer) ready"}},
    summary="Readiness",
)
def readiness(models: ModelsDep) -> HealthResponse | JSONResponse:
    """200 once the preloaded models are loaded and their weights still on disk, else 503."""
    reason = models.readiness()
    if reason is None:
        return HealthResponse(status="ready")
    return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
