"""API keys on every route: with keys configured only health, info, the landing page and the
API docs are open — every other route (found by walking the app, so new routes are covered
automatically) answers 401 without a valid key, whatever the path spelling or method; keys are
compared in constant time and never logged nor echoed.

The basics (key in query/body/Bearer, precedence, redaction of access logs) are in
tests/server/test_auth.py.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from pixql.server import auth
from pixql.server.auth import PUBLIC_PATHS, key_digest, key_matches

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from types import ModuleType

KEYS = ["first-key-0001", "second-key-0002"]
#: the open routes, by policy (a change here must be deliberate)
POLICY_PUBLIC = {"/", "/info", "/healthz", "/readiness", "/docs", "/docs/oauth2-redirect",
                 "/redoc", "/openapi.json", "/docs/assets/swagger-ui-bundle.js",
                 "/docs/assets/swagger-ui.css", "/docs/assets/redoc.standalone.js",
                 "/docs/assets/favicon.png"}


def routes(app: Any) -> list[tuple[str, str]]:
    """(path, method) of every route of ``app``, included routers too."""
    found: list[tuple[str, str]] = []

    def walk(items: list[Any]) -> None:
        for route in items:
            inner = getattr(route, "original_router", None) or getattr(route, "router", None)
            if getattr(route, "methods", None):
                found.extend((route.path, m) for m in sorted(route.methods) if m != "HEAD")
            elif inner is not None and hasattr(inner, "routes"):
                walk(list(inner.routes))
            elif getattr(route, "path", None):  # a mount (static files...)
                found.append((route.path.rstrip("/") + "/x", "GET"))

    walk(list(app.routes))
    return sorted(set(found))


@pytest.fixture(scope="module")
def secured(start_server: Callable[..., tuple[str, Any]], fuzz_engine: ModuleType,
            template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    folder = tmp_path_factory.mktemp("auth") / "ws"
    shutil.copytree(template, folder, symlinks=True)
    ws = fuzz_engine.open_workspace(folder)
    yield start_server(workspace=ws, api_keys=KEYS)
    ws.close()


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_the_open_routes_are_the_policys() -> None:
    assert set(PUBLIC_PATHS) == POLICY_PUBLIC


def test_every_other_route_needs_a_key(secured: tuple[str, Any]) -> None:
    base, app = secured
    protected = [(p, m) for p, m in routes(app) if p not in PUBLIC_PATHS]
    assert {"/sql", "/model/add", "/model/clear", "/clip/embed_image"} <= {p for p, _ in protected}
    with httpx.Client(base_url=base, timeout=30) as c:
        for path, method in protected:
            for attempt in ({}, {"params": {"api_key": "wrong"}},
                            {"headers": {"Authorization": f"Bearer {KEYS[0]}x"}}):
                r = c.request(method, concrete(path), json={"api_key": KEYS[0][:-1]}, **attempt)
                assert r.status_code == 401, (method, path, attempt, r.text)
            ok = c.request(method, concrete(path), params={"api_key": KEYS[1]}, json={})
            assert ok.status_code != 401, (method, path)


def test_open_routes_need_no_key(secured: tuple[str, Any]) -> None:
    base, _ = secured
    with httpx.Client(base_url=base, timeout=30) as c:
        for path in sorted(POLICY_PUBLIC - {"/docs/oauth2-redirect"}):
            assert c.get(path).status_code == 200, path


@pytest.mark.parametrize("spelling", [
    "/sql/", "//sql", "/SQL", "/%73ql", "/healthz/../sql", "/docs/../sql", "/sql?x=/healthz",
    "/sql#/healthz", "/./sql", "/readiness%2f..%2fsql", "/info/../model/clear",
])
def test_path_spellings_do_not_bypass_the_check(secured: tuple[str, Any], spelling: str) -> None:
    base, _ = secured
    with httpx.Client(base_url=base, timeout=30) as c:
        request = c.build_request("POST", base, json={"query": "DROP TABLE images"})
        request.url = httpx.URL(base + spelling) if "%" not in spelling else request.url.copy_with(
            raw_path=spelling.encode())
        r = c.send(request)
        assert r.status_code in (401, 404, 405, 307), (spelling, r.status_code, r.text)
        ok = c.post("/sql", params={"api_key": KEYS[0]}, json={"query": "SELECT count(*) FROM "
                                                                         "images"})
        assert ok.status_code == 200
        assert ok.json()["rows"] == [[9]]


@pytest.mark.parametrize("method", ["OPTIONS", "HEAD", "PUT", "DELETE"])
def test_other_methods_reach_no_handler(secured: tuple[str, Any], method: str) -> None:
    base, _ = secured
    r = httpx.request(method, f"{base}/sql", json={"query": "DROP TABLE images"}, timeout=30)
    assert r.status_code in (401, 405), r.text
    ok = httpx.post(f"{base}/sql", params={"api_key": KEYS[0]}, timeout=30,
                    json={"query": "SELECT count(*) FROM images"})
    assert ok.json()["rows"] == [[9]]


@pytest.mark.parametrize("body", [
    '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "[" * 100_000 + "]" * 100_000,
    '{"a": ' * 50_000 + "1" + "}" * 50_000,
])
def test_deeply_nested_body_without_a_key_is_401(secured: tuple[str, Any], body: str) -> None:
    """The key lookup parses the body: a body nested too deeply to parse carries no key, so
    the answer is the same 401 as any keyless request (not a parser's 400, nor a 500)."""
    base, _ = secured
    r = httpx.post(f"{base}/clip/embed_text", content=body, timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 401, r.text
    assert r.json()["message"] == auth.UNAUTHORIZED


# ---------------------------------------------------------------------- constant time
def test_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured key is compared with hmac.compare_digest, matching or not (no early
    exit that would tell which key, or how many, a guess got right), always as two SHA-256
    digests of 32 bytes: the time taken tells nothing about the keys' lengths either."""
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    digests = [key_digest(k) for k in [*KEYS, "a-much-longer-third-key-0003"]]
    for candidate, expected in ((KEYS[0], True), ("nope", False), (KEYS[1], True),
                                ("x" * 10_000, False), ("", False)):
        calls.clear()
        assert key_matches(candidate, digests) is expected
        assert [b for _, b in calls] == digests
        assert all(a == hashlib.sha256(candidate.encode()).digest() for a, _ in calls)
        assert {(len(a), len(b)) for a, b in calls} == {(32, 32)}


# ---------------------------------------------------------------------- keys not logged
@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger (uvicorn's do not propagate: a handler is added)."""
    names = ("uvicorn", "uvicorn.access", "uvicorn.error", "pixql", "pixql.server", "")
    for name in names:
        logging.getLogger(name).addHandler(caplog.handler)
    with caplog.at_level(logging.DEBUG):
        yield caplog
    for name in names:
        logging.getLogger(name).removeHandler(caplog.handler)


def test_keys_are_never_logged_nor_echoed(secured: tuple[str, Any],
                                          all_logs: pytest.LogCaptureFixture) -> None:
    base, _app = secured
    bodies: list[str] = []
    with httpx.Client(base_url=base, timeout=30) as c:
        for key in [*KEYS, "wrong-" + KEYS[0]]:
            for r in (
                c.post("/clip/embed_text", params={"api_key": key}, json={"text": "x"}),
                c.post("/clip/embed_text", json={"api_key": key, "text": 5}),  # 422
                c.post("/clip/embed_text", json={"api_key": key}),  # 422 echoing the body
                c.post("/sql", headers={"Authorization": f"Bearer {key}"},
                       json={"query": "SELECT * FROM nope"}),
                c.post("/sql", json={"api_key": key, "query": "SEARCH IMAGE USING x"}),
                c.get("/model/registry", params={"api_key": key}),
            ):
                bodies.append(r.text)
    server_side = [r for r in all_logs.records  # not the test's own httpx client
                   if r.name.split(".")[0] in ("uvicorn", "pixql", "fastapi", "starlette", "root")]
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in server_side)
    for key in KEYS:
        assert key not in text
        assert all(key not in body for body in bodies)
    assert "***" in "".join(bodies)  # the 422 echo was masked, not dropped


def test_sql_takes_the_key_in_the_body(secured: tuple[str, Any]) -> None:
    base, _ = secured
    r = httpx.post(f"{base}/sql", json={"api_key": KEYS[0], "query": "SELECT 1 AS one"},
                   timeout=30)
    assert r.status_code == 200, r.text
