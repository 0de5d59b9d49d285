"""Turning the images a caller passes into Roboflow's ``{"type": "base64", "value": ...}``.

Accepted, as in ``inference_sdk``: a file path (``str`` or ``os.PathLike``; the file's bytes
are sent unchanged), an ``http(s)://`` URL (downloaded here, by the client), a PIL image, a
numpy array, raw ``bytes``, or a base64 string (a ``data:image/...;base64,`` prefix is
allowed). PIL images and arrays are sent as lossless PNG.

One difference from ``inference_sdk``: numpy arrays are read as **RGB** (PIL's and
``np.asarray(img)``'s order), not OpenCV's BGR. Pass ``arr[..., ::-1]`` for a BGR array.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

#: most bytes downloaded for one URL image
MAX_URL_BYTES = 50 * 1024 * 1024
_DATA_URL = re.compile(r"^data:image/[A-Za-z0-9.+-]+;base64,", re.IGNORECASE)


def _from_path(path: str | os.PathLike[str], fetch: Callable[[str], bytes]) -> bytes:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"image file not found: {p}")
    return p.read_bytes()


def _from_string(text: str, fetch: Callable[[str], bytes]) -> bytes:
    """A URL, an existing file, or base64 image data (checked strictly)."""
    if text.startswith(("http://", "https://")):
        return fetch(text)
    if os.path.isfile(os.path.expanduser(text)):
        return _from_path(text, fetch)
    payload = _DATA_URL.sub("", text.strip(), count=1)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ValueError(
            f"image {shown!r} is neither an existing file, an http(s) URL nor base64 data"
        ) from None


def _from_pil(img: Any, fetch: Callable[[str], bytes]) -> bytes:
    buf = io.BytesIO()
    mode = img.mode if img.mode in ("RGB", "RGBA", "L", "LA") else "RGB"
    img.convert(mode).save(buf, "PNG")
    return buf.getvalue()


def _from_array(arr: Any, fetch: Callable[[str], bytes]) -> bytes:
    import numpy as np
    from PIL import Image

    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"an image array must be HxW, HxWx3 or HxWx4; got shape {a.shape}")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    return _from_pil(Image.fromarray(a), fetch)


def _from_bytes(data: Any, fetch: Callable[[str], bytes]) -> bytes:
    return bytes(data)


def _loader(item: Any) -> Callable[[Any, Callable[[str], bytes]], bytes] | None:
    """The loader for ``item``'s type (a registry lookup, with PIL/numpy found lazily)."""
    for kind, load in LOADERS.items():
        if isinstance(item, kind):
            return load
    module = type(item).__module__.split(".", 1)[0]
    if module == "PIL":
        return _from_pil
    if module == "numpy":
        return _from_array
    return None


#: Python type → loader (PIL images and numpy arrays are recognised by their module)
LOADERS: dict[type | tuple[type, ...], Callable[[Any, Callable[[str], bytes]], bytes]] = {
    (bytes, bytearray, memoryview): _from_bytes,
    str: _from_string,
    os.PathLike: _from_path,
}


def image_bytes(item: Any, fetch: Callable[[str], bytes]) -> bytes:
    """The encoded bytes of one image; ``fetch(url)`` downloads URLs."""
    load = _loader(item)
    if load is None:
        raise TypeError(
            f"cannot send a {type(item).__name__} as an image; pass a path, URL, PIL image, "
            "numpy array, bytes or base64 string")
    data = load(item, fetch)
    if not data:
        raise ValueError("empty image payload")
    return data


def encode_image(item: Any, fetch: Callable[[str], bytes]) -> dict[str, str]:
    """``{"type": "base64", "value": ...}`` for one image."""
    return {"type": "base64", "value": base64.b64encode(image_bytes(item, fetch)).decode()}


def encode_images(items: Any, fetch: Callable[[str], bytes]) -> Any:
    """Encode an image, a list of images, or a dict of named images (same shape back)."""
    if isinstance(items, dict):
        return {str(k): encode_image(v, fetch) for k, v in items.items()}
    if isinstance(items, (list, tuple)):
        return [encode_image(v, fetch) for v in items]
    return encode_image(items, fetch)
