"""API keys: query, body and Bearer; 401 without a valid one; public routes; no key in logs."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from pixql.server.auth import RedactApiKeys, key_digest, key_matches, redact

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

KEYS = ["key-one", "key-two"]
TEXT = {"text": "a cat"}


@pytest.fixture(scope="module")
def secured(start_server: Callable[..., tuple[str, Any]]) -> Iterator[httpx.Client]:
    """A client of a server started with two API keys."""
    base, _ = start_server(api_keys=KEYS)
    with httpx.Client(base_url=base, timeout=30) as c:
        yield c


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert "API key" in r.json()["message"]
    assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "send",
    [
        lambda c, k: c.post("/clip/embed_text", json=TEXT, params={"api_key": k}),
        lambda c, k: c.post("/clip/embed_text", json={**TEXT, "api_key": k}),
        lambda c, k: c.post("/clip/embed_text", json=TEXT,
                            headers={"Authorization": f"Bearer {k}"}),
    ],
    ids=["query", "body", "bearer"],
)
@pytest.mark.parametrize("key", KEYS)
def test_a_valid_key_is_accepted_anywhere(
    secured: httpx.Client, send: Callable[[httpx.Client, str], httpx.Response], key: str
) -> None:
    r = send(secured, key)
    assert r.status_code == 200, r.text
    assert len(r.json()["embeddings"]) == 1


@pytest.mark.parametrize(
    "send",
    [
        lambda c: c.post("/clip/embed_text", json=TEXT),
        lambda c: c.post("/clip/embed_text", json=TEXT, params={"api_key": "wrong"}),
        lambda c: c.post("/clip/embed_text", json={**TEXT, "api_key": "key-one-"}),
        lambda c: c.post("/clip/embed_text", json={**TEXT, "api_key": 123}),
        lambda c: c.post("/clip/embed_text", json=TEXT, headers={"Authorization": "Bearer x"}),
        lambda c: c.post("/clip/embed_text", json=TEXT, headers={"Authorization": "key-one"}),
        lambda c: c.post("/clip/embed_text", content=b"{not json",
                         headers={"Content-Type": "application/json"}),
        lambda c: c.post("/clip/embed_text", json={}),
        lambda c: c.get("/model/registry"),
        lambda c: c.post("/model/clear"),
        lambda c: c.get("/no/such/route"),
    ],
)
def test_requests_without_a_valid_key_are_401(
    secured: httpx.Client, send: Callable[[httpx.Client], httpx.Response]
) -> None:
    assert_401(send(secured))


def test_query_key_takes_precedence_over_the_body(secured: httpx.Client) -> None:
    r = secured.post("/clip/embed_text", json={**TEXT, "api_key": "key-one"},
                     params={"api_key": "wrong"})
    assert_401(r)


@pytest.mark.parametrize("path", ["/", "/info", "/healthz", "/readiness", "/docs",
                                  "/openapi.json"])
def test_public_routes_need_no_key(secured: httpx.Client, path: str) -> None:
    assert secured.get(path).status_code == 200


def test_registry_with_a_key(secured: httpx.Client) -> None:
    r = secured.get("/model/registry", headers={"Authorization": "Bearer key-two"})
    assert r.status_code == 200
    assert "models" in r.json()


def test_a_server_without_keys_accepts_any_or_none(client: httpx.Client) -> None:
    assert client.post("/clip/embed_text", json=TEXT).status_code == 200
    assert client.post("/clip/embed_text", json={**TEXT, "api_key": "whatever"}).status_code == 200


def test_key_matching_is_exact() -> None:
    keys = [key_digest(k) for k in KEYS]
    assert key_matches("key-two", keys)
    assert not key_matches("key-tw", keys)
    assert not key_matches(None, keys)
    assert not key_matches("", keys)


def test_keys_are_redacted_from_access_logs() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "POST", "/clip/embed_text?x=1&api_key=key-one&y=2", "1.1", 200), None,
    )
    RedactApiKeys().filter(record)
    line = record.getMessage()
    assert "key-one" not in line
    assert "api_key=***&y=2" in line
    assert redact("?API_KEY=abc") == "?API_KEY=***"
