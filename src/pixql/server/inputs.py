"""Turn request values into what the embedder takes: images → PIL, texts → checked strings.

Image declarations (``{"type": ..., "value": ...}``) are dispatched through
:data:`ImageLoader.loaders`. Every failure is an :class:`~pixql.errors.ImageError` (HTTP 400)
whose message starts like Roboflow's: ``Could not load input image. Cause: <name>: <why>``.

* ``base64`` — optional ``data:image/<fmt>;base64,`` prefix; whitespace and missing padding
  tolerated; URL-safe alphabet accepted.
* ``url`` — fetched by :mod:`pixql.remote.http` (SSRF-guarded, capped).
* ``file`` — refused unless ``allow_file_input``; then only files inside the workspace.
* ``numpy`` — always refused: it would mean ``pickle.loads`` on request data.

A bare string where an image is expected (``/clip/compare`` with an image ``subject_type`` /
``prompt_type``) is a URL when it starts with ``http://`` or ``https://``, else base64.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pixql.errors import ImageError, InputError
from pixql.images import decode_image, load_image, map_ordered
from pixql.remote.http import fetch_url
from pixql.remote.sources import UrlSettings
from pixql.server.schemas import ImageInput
from pixql.server.settings import ServerSettings, url_settings

PREFIX = "Could not load input image. Cause: "
_DATA_URI = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
#: images of one request decoded (and downloaded) at once
DECODE_THREADS = 4


def _b64decode(text: str) -> bytes:
    text = _WHITESPACE.sub("", _DATA_URI.sub("", text, count=1))
    text += "=" * (-len(text) % 4)
    altchars = b"-_" if ("-" in text or "_" in text) else None
    return base64.b64decode(text, altchars=altchars, validate=True)


class ImageLoader:
    """Decodes the images of a request under the server's settings.

    Args:
        settings: caps and switches (pixels, URL policy, file input).
        workspace_root: the only folder ``{"type": "file"}`` images may come from.
    """

    def __init__(self, settings: ServerSettings, workspace_root: Path | None = None) -> None:
        self.settings = settings
        self.workspace_root = workspace_root.resolve() if workspace_root else None
        self.policy = UrlSettings(**url_settings(settings)).policy()
        #: image ``type`` → loader(value, name) returning a PIL image
        self.loaders: dict[str, Callable[[Any, str], Any]] = {
            "base64": self._from_base64,
            "url": self._from_url,
            "file": self._from_file,
            "numpy": self._refuse_numpy,
        }

    # ------------------------------------------------------------------ public
    def load(self, item: ImageInput | str, name: str) -> Any:
        """One image declaration (or a bare URL/base64 string) → PIL image."""
        try:
            if isinstance(item, str):
                kind = "url" if item.lower().startswith(("http://", "https://")) else "base64"
                return self.loaders[kind](item, name)
            kind = item.type.strip().lower()
            loader = self.loaders.get(kind)
            if loader is None:
                allowed = ", ".join(sorted(k for k in self.loaders if k != "numpy"))
                raise ImageError(
                    f"{name}: image declaration contains not recognised image type "
                    f"{item.type!r}; allowed types: {allowed}"
                )
            return loader(item.value, name)
        except ImageError as e:
            if str(e).startswith(PREFIX):
                raise
            raise ImageError(PREFIX + str(e), paths=e.paths or [name]) from e

    def load_all(self, items: Sequence[ImageInput | str], names: Sequence[str]) -> list[Any]:
        """Several images, decoded (and downloaded) concurrently, in order."""
        pairs = list(zip(items, names, strict=True))
        workers = min(DECODE_THREADS, len(pairs))
        out: list[Any] = []
        for chunk in map_ordered(lambda p: self.load(*p), pairs, workers=workers,
                                 chunk=max(1, len(pairs))):
            out.extend(chunk)
        return out

    # ------------------------------------------------------------------ loaders
    def _decode(self, data: bytes, name: str) -> Any:
        return decode_image(data, max_pixels=self.settings.max_image_pixels, name=name)

    def _from_base64(self, value: Any, name: str) -> Any:
        text = _string_value(value, name, "base64")
        try:
            data = _b64decode(text)
        except (binascii.Error, ValueError) as e:
            raise ImageError(f"{name}: malformed base64 input image ({e})") from e
        return self._decode(data, name)

    def _from_url(self, value: Any, name: str) -> Any:
        if not self.settings.allow_url_input:
            raise ImageError(f"{name}: providing images via URL is disabled on this server")
        url = _string_value(value, name, "url")
        try:
            data = fetch_url(url, self.policy)
        except ImageError as e:
            raise ImageError(f"{name}: {e}") from e
        return self._decode(data, name)

    def _from_file(self, value: Any, name: str) -> Any:
        if not self.settings.allow_file_input:
            raise ImageError(
                f"{name}: loading images from the server's filesystem is disabled "
                "(send the image as base64 or url)"
            )
        if self.workspace_root is None:
            raise ImageError(f"{name}: file images need a workspace (pixql serve -w DIR)")
        try:
            raw = Path(_string_value(value, name, "file")).expanduser()
            path = (raw if raw.is_absolute() else self.workspace_root / raw).resolve()
        except (RuntimeError, ValueError, OSError) as e:  # '~nobody/x', NUL bytes, ...
            raise ImageError(f"{name}: not a usable file path ({e})") from e
        roots = [self.workspace_root, *(Path(d).resolve() for d in self.settings.allowed_dirs)]
        if not any(path.is_relative_to(root) for root in roots):
            raise ImageError(f"{name}: file images must lie inside the workspace folder "
                             "(or a folder in allowed_dirs)")
        return load_image(path, max_pixels=self.settings.max_image_pixels)

    def _refuse_numpy(self, value: Any, name: str) -> Any:
        raise ImageError(
            f"{name}: NumPy image type is not supported: it would unpickle request data; "
            "send the image as base64 (PNG/JPEG bytes) instead"
        )


def _string_value(value: Any, name: str, kind: str) -> str:
    if not isinstance(value, str):
        got = "nothing" if value is None else type(value).__name__
        raise ImageError(f"{name}: a {kind} image needs a string value, got {got}")
    if not value.strip():
        raise ImageError(f"{name}: empty image payload")
    return value


def check_texts(
    texts: Sequence[str], *, field: str, max_chars: int, names: Sequence[str]
) -> None:
    """Refuse over-long texts before tokenizing (InputError, 400)."""
    for text, name in zip(texts, names, strict=True):
        if len(text) > max_chars:
            raise InputError(
                f"{name} is {len(text)} characters long; the limit is {max_chars}", field=field
            )


@runtime_checkable
class TokenLimited(Protocol):
    """A text model with a context length (CLIP's :class:`ClipEmbedder`)."""

    model_id: str

    @property
    def max_text_tokens(self) -> int:
        """Tokens a text may take, start and end tokens included."""

    def text_token_count(self, text: str) -> int:
        """Tokens ``text`` needs, start and end tokens included."""


def check_token_counts(embedder: object, texts: Sequence[str], names: Sequence[str]) -> None:
    """With ``truncate=false``: refuse texts over the model's context length (a model
    without one takes any text)."""
    if not isinstance(embedder, TokenLimited):
        return
    limit = int(embedder.max_text_tokens)
    for text, name in zip(texts, names, strict=True):
        count = int(embedder.text_token_count(text))
        if count > limit:
            raise InputError(
                f"{name} needs {count} tokens; {embedder.model_id} takes at most {limit} "
                "(send truncate=true to truncate it)",
                field=name.split("[", 1)[0],
            )


def check_count(items: Sequence[Any], *, field: str, limit: int, what: str) -> None:
    """Refuse empty and over-long lists (InputError: 400 for empty, 413 over the limit)."""
    if not items:
        raise InputError(f"{field} must not be empty: send at least one {what[:-1]}", field=field)
    if len(items) > limit:
        raise InputError(
            f"too many {what} in {field}: {len(items)}, the limit is {limit} per request",
            field=field,
            status=413,
        )
