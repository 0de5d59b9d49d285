"""One seam from a stored value to a model's raw input, keyed by modality.

CONVERT (a column of paths or texts), SEARCH (``search_input``) and the HTTP routes (images
already decoded from a request, or texts) all turn a value into what
:meth:`~pixql.models.base.Embedder.preprocess` takes through :func:`raw_input`:

======== ======================================= =====================================
modality value                                   raw input
======== ======================================= =====================================
image    a path, a URL (``http(s)://``,          a PIL image (decoded by
         ``s3://``, ``gs://``) or a PIL image    ``open_image``)
text     any value                               ``str(value)``
video    a path                                  the resolved path as ``str`` (must exist)
audio    a path                                  the resolved path as ``str`` (must exist)
======== ======================================= =====================================

This module is in the models layer: it knows nothing of workspaces or servers. Callers pass
``resolve`` (a stored path → an absolute :class:`~pathlib.Path`, checked against the
caller's rules), ``urls`` (the :class:`~pixql.remote.sources.UrlReader` of URL values,
with the caller's SSRF rules and storage settings; default: the environment's) and, for
images from elsewhere than files, ``open_image``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixql.errors import ImageError
from pixql.remote.sources import default_reader, is_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from pixql.models.base import Embedder
    from pixql.remote.sources import UrlReader


def _plain_path(value: str) -> Path:
    return Path(value)


@dataclass(frozen=True)
class InputSource:
    """How values become raw inputs: ``resolve`` maps a stored path to a file,
    ``open_image`` decodes an image value (default: :func:`pixql.images.load_image` of
    the resolved path, or of the bytes ``urls`` reads for a URL)."""

    resolve: Callable[[str], Path] = _plain_path
    open_image: Callable[[Any], Any] | None = None
    urls: UrlReader | None = None


def _image(value: Any, src: InputSource) -> Any:
    if src.open_image is not None:
        return src.open_image(value)
    if not isinstance(value, (str, Path)):  # already decoded (a PIL image)
        return value
    from pixql.images import decode_image, load_image

    if is_url(value):
        assert isinstance(value, str)
        data = (src.urls or default_reader()).read(value)
        return decode_image(data, name=value)
    return load_image(src.resolve(str(value)))


def _text(value: Any, src: InputSource) -> Any:
    return str(value)


def _media_file(kind: str) -> Callable[[Any, InputSource], Any]:
    def prepare(value: Any, src: InputSource) -> Any:
        if is_url(value):
            raise ImageError(f"{value}: {kind} values must be files; only images are read "
                             "from URLs", paths=[str(value)])
        path = src.resolve(str(value))
        if not path.is_file():
            raise ImageError(f"{kind} file not found: {path}", paths=[str(path)])
        return str(path)

    return prepare


#: modality → value-to-raw-input function
PREPARERS: dict[str, Callable[[Any, InputSource], Any]] = {
    "image": _image,
    "text": _text,
    "video": _media_file("video"),
    "audio": _media_file("audio"),
}


def raw_input(value: Any, modality: str, source: InputSource | None = None) -> Any:
    """The raw model input of ``value`` (see the table above); ImageError names a bad
    value; ValueError for an unknown modality."""
    try:
        prepare = PREPARERS[modality]
    except KeyError:
        raise ValueError(f"unknown modality {modality!r}; known: "
                         f"{', '.join(PREPARERS)}") from None
    if value is None:
        raise ImageError("NULL value") if modality == "image" else ValueError("NULL value")
    return prepare(value, source or InputSource())


def model_input(embedder: Embedder, value: Any, modality: str,
                source: InputSource | None = None) -> Any:
    """``embedder.preprocess`` of :func:`raw_input`: what the embedder's forward takes."""
    return embedder.preprocess(raw_input(value, modality, source), modality)
