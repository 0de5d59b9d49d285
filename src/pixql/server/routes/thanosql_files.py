"""ThanoSQL's file manager (``client.file``) on the served workspace's folder.

``/fm/api/v1/contents/{path}``: ``GET`` describes a file or lists a folder (``?option=download``
sends the file), ``POST`` uploads a multipart ``file`` into the folder ``path`` (or creates the
folder when no file is sent), ``DELETE`` removes a file or folder. Paths are relative to the
workspace root, so an uploaded ``uploads/cat.png`` is what ``search_input='uploads/cat.png'``
names. pixql's own files (``pixql.duckdb``, ``models/``, ``indexes/``, hidden entries) cannot
be written or deleted, and nothing outside the workspace can be reached.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from pixql.errors import AccessError, NotFoundError, ProgrammingError
from pixql.server.routes.thanosql import workspace_of
from pixql.server.thanosql_schemas import Content, ContentInfo

router = APIRouter(tags=["thanosql"])

PREFIX = "/fm/api/v1/contents"
#: top-level entries of a workspace that belong to pixql
PROTECTED = ("pixql.duckdb", "models", "indexes")


def _root(request: Request) -> Path:
    return Path(workspace_of(request).root)


def locate(root: Path, rel: str, *, writing: bool = False) -> Path:
    """``rel`` inside ``root`` (symlinks resolved); refuses escapes and, when ``writing``,
    pixql's own files."""
    rel = rel.strip("/")
    target = Path(os.path.realpath(root / rel))
    if target != root and root not in target.parents:
        raise AccessError(f"path {rel!r} is outside the workspace; file paths are relative to "
                          f"the workspace root")
    if writing:
        first = target.relative_to(root).parts[:1]
        if not first or first[0].startswith((".", *PROTECTED)):
            raise AccessError(f"path {rel or '/'!r} belongs to pixql (its database, models "
                              f"and indexes) and cannot be changed through the file API")
    return target


def info(root: Path, path: Path, *, listing: bool = False) -> ContentInfo:
    st = path.stat()
    is_dir = path.is_dir()
    content: Any = None
    if listing and is_dir:
        content = [info(root, p).model_dump(mode="json")
                   for p in sorted(path.iterdir()) if not p.name.startswith(".")]
    stamp = datetime.fromtimestamp(st.st_mtime, timezone.utc)
    rel = path.relative_to(root).as_posix()
    return ContentInfo(
        name=path.name if path != root else "", path="" if rel == "." else rel,
        type="directory" if is_dir else "file", format="json" if listing and is_dir else None,
        size=None if is_dir else st.st_size, writable=os.access(path, os.W_OK),
        content=content, created_at=datetime.fromtimestamp(st.st_ctime, timezone.utc),
        updated_at=stamp)


@router.get(PREFIX + "/{path:path}", response_model=Content)
async def get_content(request: Request, path: str = "", option: str | None = None) -> Any:
    """Describe a file, list a folder, or (``option=download``) send a file."""
    root = _root(request)
    target = locate(root, path)
    if not target.exists():
        raise NotFoundError(f"no file or folder {path!r} in the workspace")
    if option == "download":
        if target.is_dir():
            raise ProgrammingError(f"{path!r} is a folder; only files can be downloaded")
        return FileResponse(target, filename=target.name)
    if option is not None:
        raise ProgrammingError(f"option={option!r} is not known; use option=download or none")
    return Content(content_info=info(root, target, listing=True), root=str(root))


@router.post(PREFIX + "/{path:path}", response_model=Content)
async def create_content(request: Request, path: str = "",
                         file: Annotated[UploadFile | None, File()] = None) -> Content:
    """Upload ``file`` into the folder ``path`` (created if missing), replacing a file of
    the same name; without a file, create the folder ``path``."""
    root = _root(request)
    folder = locate(root, path, writing=True)
    if folder.exists() and not folder.is_dir():
        raise ProgrammingError(f"{path!r} is a file; upload into a folder path")
    if file is None:
        folder.mkdir(parents=True, exist_ok=True)
        return Content(content_info=info(root, folder), root=str(root))
    name = os.path.basename(file.filename or "")
    if not name or name.startswith("."):
        raise ProgrammingError(f"upload file name {file.filename!r} is not allowed")
    target = locate(root, f"{path.strip('/')}/{name}", writing=True)
    data = await file.read()
    await run_in_threadpool(_write_atomic, target, data)
    return Content(content_info=info(root, target), root=str(root))


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@router.delete(PREFIX + "/{path:path}", status_code=204)
async def delete_content(request: Request, path: str) -> Response:
    """Remove a file, or a folder with everything in it."""
    root = _root(request)
    target = locate(root, path, writing=True)
    if not target.exists():
        raise NotFoundError(f"no file or folder {path!r} in the workspace")
    if target.is_dir():
        await run_in_threadpool(shutil.rmtree, target)
    else:
        target.unlink()
    return Response(status_code=204)
