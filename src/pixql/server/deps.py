"""Dependencies injected into routes: what ``create_app`` put on ``app.state``.

Routes declare ``settings: SettingsDep``, ``models: ModelsDep``, ``images: ImagesDep`` or
``workspace: WorkspaceDep`` instead of reaching for globals, so every app built by
:func:`pixql.server.app.create_app` is independent (tests run several side by side).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pixql.server.inputs import ImageLoader
from pixql.server.manager import ClipModels
from pixql.server.settings import ServerSettings
from pixql.workspace import Workspace


async def get_settings(request: Request) -> ServerSettings:
    """The app's :class:`ServerSettings`."""
    return request.app.state.settings


async def get_models(request: Request) -> ClipModels:
    """The app's model registry."""
    return request.app.state.models


async def get_images(request: Request) -> ImageLoader:
    """The app's image loader (caps, URL policy, file-input rules)."""
    return request.app.state.images


async def get_workspace(request: Request) -> Workspace | None:
    """The workspace the server was started with (``None`` without ``-w``, or when only
    its folder was given, which serves file inputs but not SQL)."""
    ws = request.app.state.workspace
    return ws if isinstance(ws, Workspace) else None


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
ModelsDep = Annotated[ClipModels, Depends(get_models)]
ImagesDep = Annotated[ImageLoader, Depends(get_images)]
WorkspaceDep = Annotated[Workspace | None, Depends(get_workspace)]
