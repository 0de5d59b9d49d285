"""``/model/registry`` and ``/model/add|remove|clear`` in Roboflow's ``ModelsDescriptions`` shape.

Model ids are ``clip/<clip_version_id>`` (e.g. ``clip/ViT-B-32``); other families are 400.
"""

from __future__ import annotations

from fastapi import APIRouter

from pixql.server.deps import ModelsDep
from pixql.server.schemas import AddModelRequest, ClearModelRequest, ModelsDescriptions

router = APIRouter(prefix="/model", tags=["models"])


@router.get("/registry", response_model=ModelsDescriptions, summary="Loaded models")
def registry(models: ModelsDep) -> ModelsDescriptions:
    """The models loaded in this server."""
    return models.describe()


@router.post("/add", response_model=ModelsDescriptions, summary="Load a model")
def add_model(payload: AddModelRequest, models: ModelsDep) -> ModelsDescriptions:
    """Load ``model_id`` now (400 unknown id, 404 no weights); list the loaded models."""
    models.add(payload.model_id)
    return models.describe()


@router.post("/remove", response_model=ModelsDescriptions, summary="Unload a model")
def remove_model(payload: ClearModelRequest, models: ModelsDep) -> ModelsDescriptions:
    """Unload ``model_id`` (no error if it was not loaded); list the loaded models."""
    models.remove(payload.model_id)
    return models.describe()


@router.post("/clear", response_model=ModelsDescriptions, summary="Unload every model")
def clear_models(models: ModelsDep) -> ModelsDescriptions:
    """Unload every model; list the (now empty) registry."""
    models.clear()
    return models.describe()
