"""API keys: where a request may carry one, how it is checked, and keeping keys out of logs.

When the server has keys (``--api-key`` / ``PIXQL_API_KEYS``), every route except
:data:`PUBLIC_PATHS` needs one of them, sent (in this order of precedence, as Roboflow) as

* the query parameter ``?api_key=KEY``,
* the header ``Authorization: Bearer KEY``,
* the JSON body field ``"api_key": "KEY"`` (what ``inference_sdk`` sends).

The first key found is the one checked, against every configured key: the SHA-256 digests
of both are compared with :func:`hmac.compare_digest`, so the time a check takes depends on
neither the given key's length nor the configured one's (nothing to learn by timing it).
A request without a valid key gets 401 ``{"message": ...}``.
The check is an ASGI middleware so it runs before the body is validated (an unauthenticated
client learns nothing about the schema); the body it reads is replayed to the app.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Sequence
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pixql.server.errors import json_error, thanosql_shaped

#: routes open without a key (health checks, docs and the docs pages' own files)
PUBLIC_PATHS = frozenset(
    {"/", "/info", "/healthz", "/readiness", "/docs", "/docs/oauth2-redirect", "/redoc",
     "/openapi.json", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css",
     "/docs/assets/redoc.standalone.js", "/docs/assets/favicon.png"}
)
UNAUTHORIZED = (
    "Unauthorized: this server needs a valid API key, sent as ?api_key=KEY, as the header "
    "'Authorization: Bearer KEY' or as \"api_key\" in the JSON body."
)
_API_KEY_IN_TEXT = re.compile(r"(api_key=)[^&\s\"']*", re.IGNORECASE)


def _query_key(scope: Scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key")
    return values[0] if values else None


def _bearer_key(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _body_key(body: bytes) -> str | None:
    """The ``api_key`` field of a JSON object body; None for anything else, including a body
    nested too deeply to parse (the client is told 401, not a parser's 400)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    key = data.get("api_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) else None


def key_digest(key: str) -> bytes:
    """The fixed-length (32 bytes) form keys are compared in."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_matches(candidate: str | None, digests: Sequence[bytes]) -> bool:
    """Constant-time check of ``candidate`` against every configured key's digest: every
    comparison is of 32 bytes with 32 bytes, whatever the keys' lengths.

    Examples:
        >>> key_matches("s3cret", [key_digest("other"), key_digest("s3cret")])
        True
        >>> key_matches("s3cre", [key_digest("s3cret")]), key_matches(None, [])
        (False, False)
    """
    if candidate is None:
        return False
    given = key_digest(candidate)
    matched = False
    for digest in digests:
        matched |= hmac.compare_digest(given, digest)
    return matched


class ApiKeyMiddleware:
    """Refuse requests to protected routes that carry no valid key (401)."""

    def __init__(self, app: ASGIApp, *, keys: Sequence[str]) -> None:
        self.app = app
        self.digests = [key_digest(k) for k in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        candidate = _query_key(scope) or _bearer_key(scope)
        if candidate is None:
            body = await _read_body(receive)
            receive = _replay(body, receive)
            candidate = _body_key(body)
        if not key_matches(candidate, self.digests):
            response = thanosql_shaped(
                json_error(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}),
                scope["path"])
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class RedactApiKeys(logging.Filter):
    """Log filter replacing ``api_key=...`` in messages and arguments with ``api_key=***``.

    Attached to uvicorn's access logger: access lines include the query string.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact(text: str) -> str:
    """``'/clip/embed_text?api_key=s3cret'`` → ``'/clip/embed_text?api_key=***'``."""
    return _API_KEY_IN_TEXT.sub(r"\1***", text)


def install_log_redaction(names: Sequence[str] = ("uvicorn.access", "uvicorn.error")) -> None:
    """Attach :class:`RedactApiKeys` to the named loggers (once)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactApiKeys) for f in logger.filters):
            logger.addFilter(RedactApiKeys())
