"""``pixql.Client``: a Python client of a pixql server (``pixql serve``).

It speaks SQL over HTTP (``POST /sql``, as JSON or as an Arrow stream) and Roboflow's CLIP
routes with the same method names, arguments and return shapes as Roboflow's
``inference_sdk.InferenceHTTPClient``, so code written for one works with the other.

Examples:
    >>> import pixql
    >>> with pixql.Client("http://127.0.0.1:9001", api_key="secret") as c:   # doctest: +SKIP
    ...     df = c.sql("SELECT image_path, label FROM images LIMIT 5")
    ...     emb = c.get_clip_text_embeddings("a black cat")["embeddings"][0]
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, Literal

import httpx

from pixql.client.images import MAX_URL_BYTES, encode_image, encode_images
from pixql.client.tables import ARROW_STREAM, arrow_from_response, frame_from_json
from pixql.version import __version__

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_URL = "http://127.0.0.1:9001"
#: images sent in one /clip/embed_image request (the server's default cap is 8)
DEFAULT_BATCH = 8
CLIP_ARGUMENT_TYPES = ("image", "text")


class ClientError(Exception):
    """A request failed. ``status_code`` is the HTTP status (None when no response came),
    ``message`` the server's message, ``details`` the rest of its JSON error body (e.g.
    ``error``: the pixql error class, ``line``/``col`` of a SQL syntax error)."""

    def __init__(self, status_code: int | None, message: str,
                 details: dict[str, Any] | None = None, *,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.details = dict(details or {})
        #: seconds the server asked to wait before retrying (its Retry-After), if it said
        self.retry_after = retry_after

    @property
    def error(self) -> str | None:
        """The server's error class (``ParseError``, ``NotFoundError``...), if it said."""
        value = self.details.get("error")
        return str(value) if value is not None else None

    @property
    def line(self) -> int | None:
        """Line of a SQL error in the script (1-based), when the server gave one."""
        return self.details.get("line")

    @property
    def col(self) -> int | None:
        """Column of a SQL error in its line (1-based), when the server gave one."""
        return self.details.get("col")

    def __str__(self) -> str:
        status = f"HTTP {self.status_code}" if self.status_code is not None else "no response"
        kind = f" {self.error}" if self.error else ""
        return f"{status}{kind}: {self.message}"


class ServerUnreachableError(ClientError):
    """No response: the server is down, the address is wrong, or the request timed out."""


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):  # absent, or an HTTP date (pixql sends seconds)
        return None


def error_from_response(response: httpx.Response) -> ClientError:
    """A :class:`ClientError` from an error response (JSON ``{"message": ...}`` or text)."""
    error = _error_from_body(response)
    error.retry_after = _retry_after(response)
    return error


def _error_from_body(response: httpx.Response) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip() or response.reason_phrase
        return ClientError(response.status_code, text[:1000])
    message = body.get("message")
    if not isinstance(message, str):
        detail = body.get("detail")
        message = detail if isinstance(detail, str) else str(detail or response.reason_phrase)
    details = {k: v for k, v in body.items() if k != "message"}
    if response.status_code == 404 and response.request.url.path.endswith("/sql") \
            and "error" not in details:
        message = ("this server has no /sql route: start it with a workspace and SQL "
                   "enabled (pixql -w DIR serve --enable-sql)")
    return ClientError(response.status_code, message, details)


class Client:
    """A connection to a pixql server.

    Args:
        url: the server's base URL (default ``$PIXQL_URL`` or ``http://127.0.0.1:9001``).
        api_key: sent as ``Authorization: Bearer KEY`` (default ``$PIXQL_API_KEY``; none).
        timeout: seconds to wait for a connection and for each read.
        max_batch_size: images per ``/clip/embed_image`` request.
        transport: an httpx transport (tests, proxies); default a normal connection pool.
    """

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 timeout: float = 60.0, max_batch_size: int = DEFAULT_BATCH,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or os.environ.get("PIXQL_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("PIXQL_API_KEY")
        headers = {"User-Agent": f"pixql-client/{__version__}"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.timeout = timeout
        self.max_batch_size = max(1, int(max_batch_size))
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout,
                                  transport=transport)

    def __repr__(self) -> str:
        auth = "with key" if "authorization" in self._http.headers else "no key"
        return f"pixql.Client({self.url!r}, {auth})"

    # -- plumbing -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def request(self, method: str, path: str, *, json: Any = None,
                headers: dict[str, str] | None = None,
                timeout: Any = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:
        """Send one request; ClientError on an error status, ServerUnreachableError when no
        response comes. ``timeout``: this request's (default the client's)."""
        try:
            response = self._http.request(method, path, json=json, headers=headers,
                                          timeout=timeout)
        except httpx.TimeoutException as e:
            raise ServerUnreachableError(
                None, f"{method} {self.url}{path} timed out after {self.timeout} s ({e})") from e
        except httpx.TransportError as e:
            raise ServerUnreachableError(
                None, f"cannot reach the pixql server at {self.url} ({e})") from e
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def _post(self, path: str, payload: dict[str, Any]) -> Any:
        return self.request("POST", path, json=payload).json()

    def _fetch(self, url: str) -> bytes:
        """Download an image URL (without this client's API key), up to MAX_URL_BYTES."""
        try:
            with httpx.stream("GET", url, follow_redirects=True, timeout=self.timeout) as r:
                r.raise_for_status()
                chunks, size = [], 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > MAX_URL_BYTES:
                        raise ValueError(f"image at {url} is over {MAX_URL_BYTES} bytes")
                    chunks.append(chunk)
        except httpx.HTTPError as e:
            raise ClientError(getattr(getattr(e, "response", None), "status_code", None),
                              f"cannot download image {url}: {e}") from e
        return b"".join(chunks)

    # -- server ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "healthy"}``."""
        return self.request("GET", "/healthz").json()

    def info(self) -> dict[str, Any]:
        """``GET /info``: ``{"name": "pixql", "version": ..., "uuid": ...}``."""
        return self.request("GET", "/info").json()

    # -- SQL ------------------------------------------------------------------------------
    def sql(self, query: str, *, arrow: bool = False, max_rows: int | None = None,
            embeddings: Literal["list", "base64"] = "base64") -> Any:
        """Run a script of ``;``-separated statements on the server; return the last result.

        Args:
            query: the SQL (pixql's dialect, as ``pixql sql`` runs it).
            arrow: return a ``pyarrow.Table`` (sent as an Arrow IPC stream: exact types)
                instead of a pandas DataFrame.
            max_rows: ask the server for at most this many rows (a warning says when the
                result was cut).
            embeddings: how embedding columns travel in JSON (``base64``: compact and exact;
                ``list``: JSON numbers). Either way they arrive as float32 numpy arrays.

        Returns:
            A DataFrame like ``Workspace.sql(...).df()``; ``df.attrs["pixql"]`` holds the
            server's ``message``, ``row_count``, ``truncated`` and ``time``. Or an Arrow
            table when ``arrow`` is true.

        Raises:
            ClientError: the statement failed; ``.message`` is the engine's message (with the
            caret of a syntax error), ``.error`` its class, ``.line``/``.col`` the position.
        """
        payload: dict[str, Any] = {"query": query, "embeddings": embeddings,
                                   "max_rows": max_rows}
        if arrow:
            response = self.request("POST", "/sql", json=payload,
                                    headers={"Accept": ARROW_STREAM})
            return arrow_from_response(response)
        body = self.request("POST", "/sql", json=payload).json()
        if body.get("truncated"):
            warnings.warn(f"the result was cut to {body.get('row_count')} rows (max_rows)",
                          stacklevel=2)
        return frame_from_json(body)

    # -- CLIP (Roboflow's InferenceHTTPClient methods) ------------------------------------
    @staticmethod
    def _version(clip_version: str | None) -> dict[str, Any]:
        return {} if clip_version is None else {"clip_version_id": clip_version}

    def _batches(self, items: list[Any]) -> Iterator[list[Any]]:
        for i in range(0, len(items), self.max_batch_size):
            yield items[i: i + self.max_batch_size]

    def get_clip_image_embeddings(self, inference_input: Any,
                                  clip_version: str | None = None) -> dict[str, Any] | list[
                                      dict[str, Any]]:
        """CLIP embeddings of one image (→ a dict) or a list of images (→ one dict each;
        a 1-element list gives a dict, as Roboflow's client does).

        Each dict is the server's ``{"inference_id", "frame_id", "time", "embeddings"}``
        with ``embeddings`` holding one row. Images: paths, URLs, PIL images, numpy arrays
        (RGB), bytes or base64 strings.
        """
        if not isinstance(inference_input, list):
            return self._post("/clip/embed_image", {"image": encode_image(
                inference_input, self._fetch), **self._version(clip_version)})
        out: list[dict[str, Any]] = []
        for batch in self._batches(inference_input):
            body = self._post("/clip/embed_image", {"image": encode_images(batch, self._fetch),
                                                    **self._version(clip_version)})
            rest = {k: v for k, v in body.items() if k != "embeddings"}
            out.extend({**rest, "embeddings": [row]} for row in body["embeddings"])
        return out[0] if len(out) == 1 else out

    def get_clip_text_embeddings(self, text: str | list[str],
                                 clip_version: str | None = None) -> dict[str, Any]:
        """CLIP embeddings of a text or a list of texts: the server's JSON, one
        ``embeddings`` row per text."""
        return self._post("/clip/embed_text",
                          {"text": text, **self._version(clip_version)})

    def clip_compare(self, subject: Any, prompt: Any, subject_type: str = "image",
                     prompt_type: str = "text",
                     clip_version: str | None = None) -> dict[str, Any]:
        """Cosine similarity of ``subject`` with each prompt: the server's JSON, whose
        ``similarity`` is a list (a prompt or a list of them) or a dict (a dict of named
        prompts, same keys)."""
        if subject_type not in CLIP_ARGUMENT_TYPES or prompt_type not in CLIP_ARGUMENT_TYPES:
            raise ValueError(f"subject_type and prompt_type must be one of "
                             f"{CLIP_ARGUMENT_TYPES}; got {subject_type!r}, {prompt_type!r}")
        payload: dict[str, Any] = {"subject_type": subject_type, "prompt_type": prompt_type,
                                   **self._version(clip_version)}
        payload["subject"] = (encode_image(subject, self._fetch) if subject_type == "image"
                              else subject)
        payload["prompt"] = (encode_images(prompt, self._fetch) if prompt_type == "image"
                             else prompt)
        return self._post("/clip/compare", payload)


__all__ = ["Client", "ClientError", "ServerUnreachableError"]
