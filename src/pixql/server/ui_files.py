"""Files behind the search page: uploaded query images kept for one search, workspace
images confined to the workspace folder, and their thumbnails (used by
:mod:`pixql.server.routes.ui`)."""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

from pixql.errors import AccessError, ExecutionError, ImageError, NotFoundError
from pixql.workspace import Workspace

#: file suffixes ``/ui/image`` serves
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
#: workspace folder holding uploaded query images while they are searched with
UPLOAD_DIR = ".pixql-uploads"


def image_url(ws: Workspace, value: Any) -> str | None:
    """``/ui/image?path=...`` for a stored path inside the workspace, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        rel = ws.relativize(value)
    except (AccessError, OSError, ValueError):
        return None
    if Path(rel).is_absolute() or Path(rel).suffix.lower() not in IMAGE_SUFFIXES:
        return None
    return "/ui/image?path=" + quote(rel, safe="/")


@contextmanager
def uploaded_image(ws: Workspace, data: bytes, filename: str, max_pixels: int) -> Iterator[str]:
    """Check an uploaded image (decodable, under the pixel cap), keep it in the workspace's
    ``UPLOAD_DIR`` for the duration of the search; yield its workspace-relative path."""
    from PIL import Image

    from pixql.images import decode_image

    name = PurePosixPath(filename or "upload").name
    decode_image(data, max_pixels=max_pixels, name=name)  # refuse bad uploads before disk
    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format or "img"
    folder = Path(ws.root) / UPLOAD_DIR
    try:
        folder.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="query-", suffix="." + fmt.lower())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        raise ExecutionError(f"cannot keep the uploaded image in the workspace folder "
                             f"({e.strerror}); the server needs write access to it") from e
    try:
        yield f"{UPLOAD_DIR}/{Path(tmp).name}"
    finally:
        Path(tmp).unlink(missing_ok=True)


_DRIVE = re.compile(r"^[A-Za-z]:")


def confined_image_path(ws: Workspace, path: str) -> Path:
    """The real file behind a workspace-relative image path, or AccessError/NotFoundError.

    Refused: absolute paths, ``..`` parts, anything whose real path (symlinks followed) is
    outside the workspace folder, and files without an image suffix.
    """
    if (not path or "\0" in path or path.startswith(("/", "\\")) or _DRIVE.match(path)
            or PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute()):
        raise AccessError("only workspace-relative image paths are served", field="path")
    if ".." in re.split(r"[\\/]", path):
        raise AccessError("'..' is not allowed in image paths", field="path")
    root = Path(os.path.realpath(ws.root))
    real: Path | None
    try:
        real = Path(os.path.realpath(ws.resolve(path)))
    except AccessError:  # re-worded: the message must not show server paths
        real = None
    if real is None or (real != root and root not in real.parents):
        raise AccessError(f"{path!r} is outside the workspace", field="path")
    if real.suffix.lower() not in IMAGE_SUFFIXES:
        allowed = ", ".join(sorted(IMAGE_SUFFIXES))
        raise AccessError(f"{path!r} is not an image file; served suffixes: {allowed}",
                          field="path")
    if not real.is_file():
        raise NotFoundError(f"image not found in the workspace: {path}", field="path")
    return real


def thumbnail(real: Path, size: int, max_pixels: int, name: str) -> tuple[bytes, str]:
    """(encoded bytes, media type): at most ``size`` pixels a side; JPEG for lossy sources
    (JPEG, WebP) without alpha, else PNG (no compression noise on drawings and masks)."""
    from pixql.images import load_image

    try:
        img = load_image(real, max_pixels=max_pixels)
    except ImageError as e:  # re-worded: the message must not show server paths
        raise ImageError(f"{name}: not a decodable image, or over the pixel cap",
                         paths=[name]) from e
    lossy = real.suffix.lower() in (".jpg", ".jpeg", ".webp")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    if lossy and img.mode in ("RGB", "L", "CMYK", "YCbCr"):
        img.convert("RGB").save(buf, "JPEG", quality=85)
        return buf.getvalue(), "image/jpeg"
    img.convert("RGBA" if img.mode in ("RGBA", "LA", "P", "PA") else "RGB").save(buf, "PNG")
    return buf.getvalue(), "image/png"


