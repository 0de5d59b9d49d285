"""The server under fuzzing (quick profile): schemathesis over its own OpenAPI, raw malformed
requests and generated SQL get no 5xx from a real uvicorn on loopback; hand-written cases get
the status they should.

The long run is ``scripts/fuzz_server.py`` (figures in docs/reliability.md); the generators
and the tally used here are that script's.
"""

from __future__ import annotations

import json
import random
import shutil
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.reliability.conftest import load_script

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from types import ModuleType

BODY_CAP = 256 * 1024  # fuzz_server.SETTINGS["max_body_bytes"]


@pytest.fixture(scope="module")
def fuzz_server() -> ModuleType:
    return load_script("fuzz_server")


@pytest.fixture(scope="module")
def servers(start_server: Callable[..., tuple[str, Any]], fuzz_server: ModuleType,
            fuzz_engine: ModuleType, template: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Any]]:
    """(open base URL, secured base URL, workspace): the script's settings, a fresh copy of
    the fuzz template."""
    folder = tmp_path_factory.mktemp("server-fuzz") / "ws"
    shutil.copytree(template, folder, symlinks=True)
    ws = fuzz_engine.open_workspace(folder)
    open_base, _ = start_server(workspace=ws, **fuzz_server.SETTINGS)
    secured, _ = start_server(workspace=ws, **fuzz_server.SETTINGS, api_keys=[fuzz_server.KEY])
    yield open_base, secured, ws
    ws.close()


def assert_clean(tally: Any, at_least: int) -> None:
    assert sum(tally.sent.values()) >= at_least, tally.summary()
    assert tally.server_errors == [], tally.server_errors[:5]


# ---------------------------------------------------------------------- generated requests
def test_schemathesis_finds_no_server_error(fuzz_server: ModuleType,
                                            servers: tuple[str, str, Any]) -> None:
    tally = fuzz_server.Tally()
    fuzz_server.schema_fuzz(servers[0], tally, examples=5, seed=0)
    assert_clean(tally, at_least=80)
    assert tally.broken_bodies == []
    assert {200, 400, 422} <= set(tally.statuses)  # it did reach the handlers


def test_raw_malformed_requests_get_no_server_error(fuzz_server: ModuleType,
                                                    servers: tuple[str, str, Any]) -> None:
    tally = fuzz_server.Tally()
    fuzz_server.raw_fuzz(servers[0], tally, n=120, rng=random.Random(0))
    fuzz_server.raw_fuzz(servers[1], tally, n=60, rng=random.Random(1), source="raw-secured")
    assert_clean(tally, at_least=180)
    assert {400, 413, 422, 401} <= set(tally.statuses)


def test_generated_sql_gets_no_server_error(fuzz_server: ModuleType,
                                            servers: tuple[str, str, Any]) -> None:
    tally = fuzz_server.Tally()  # with SELECTs of edge values of every DuckDB type
    fuzz_server.sql_fuzz(servers[0], tally, n=60, rng=random.Random(0))
    assert_clean(tally, at_least=50)
    assert tally.broken_bodies == []


# ---------------------------------------------------------------------- chosen requests
ROUTES = ["/clip/embed_image", "/clip/embed_text", "/clip/compare", "/model/add", "/sql"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 422),
    (b'{"query": "SELECT 1", ', 422),
    (b"", 422),
    (b"null", 422),
    (b"[]", 422),
    (b'"text"', 422),
    (b'{"text": "\xff\xfe"}', 400),  # not UTF-8
    (('{"text": ' + "[" * 50_000 + "]" * 50_000 + "}").encode(), 400),
    (b'{"x": "' + b"y" * (BODY_CAP + 1) + b'"}', 413),
])
def test_malformed_bodies(servers: tuple[str, str, Any], route: str, body: bytes,
                          status: int) -> None:
    r = httpx.post(servers[0] + route, content=body, timeout=30,
                   headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert isinstance(r.json()["message"], str)


@pytest.mark.parametrize(("route", "body", "status"), [
    ("/sql", {"query": 5}, 422),
    ("/sql", {"query": ""}, 422),
    ("/sql", {"query": "SELECT 1", "max_rows": -1}, 422),
    ("/sql", {"query": "SELECT 1", "embeddings": "hex"}, 422),
    ("/sql", {"query": "SELECT 1", "unknown": True}, 422),
    ("/sql", {"query": ";;;"}, 200),
    ("/sql", {"query": "SELECT 1", "max_rows": 0}, 200),
    ("/model/add", {"model_id": ["clip/ViT-B-32"]}, 422),
    ("/model/add", {"model_id": "clip/ViT-B-32", "unknown": 1}, 200),
    ("/clip/embed_text", {"text": "x", "unknown": {"a": [1]}}, 200),
    ("/clip/embed_text", {"text": "x", "normalize": "maybe"}, 422),
    ("/clip/embed_text", {"text": [[]]}, 422),
    ("/clip/embed_text", {"text": None}, 422),
    ("/clip/embed_image", {"image": {"type": 5, "value": "x"}}, 422),
    ("/clip/compare", {"subject": "a", "subject_type": "text", "prompt": {"k": 1}}, 422),
    ("/clip/compare", {"subject": "a", "subject_type": "text", "prompt": [[]]}, 422),
    ("/clip/compare", {"subject": "a", "subject_type": "text", "prompt": {}}, 400),
    ("/clip/embed_text", {"text": ["a"] * 1000}, 413),
    ("/sql", {"query": "SELECT 1;" * 30_000}, 413),
])
def test_wrong_types_unknown_fields_and_limits(servers: tuple[str, str, Any], route: str,
                                               body: Any, status: int) -> None:
    r = httpx.post(servers[0] + route, json=body, timeout=30)
    assert r.status_code == status, r.text


@pytest.mark.parametrize(("content_type", "status"), [(None, 200), ("text/plain", 422),
                                                     ("application/x-www-form-urlencoded", 422)])
def test_content_types(servers: tuple[str, str, Any], content_type: str | None,
                       status: int) -> None:
    """A JSON body without a Content-Type is parsed as JSON; other types are a 422."""
    headers = {"Content-Type": content_type} if content_type else {}
    request = httpx.Request("POST", servers[0] + "/clip/embed_text", headers=headers,
                            content=json.dumps({"text": "a"}).encode())
    assert request.headers.get("Content-Type") == content_type
    with httpx.Client(timeout=30) as client:
        r = client.send(request)
    assert r.status_code == status, r.text


# ---------------------------------------------------------------------- /sql edge cases
@pytest.mark.parametrize("value", ["'infinity'::DATE", "'10000-01-01'::TIMESTAMP"])
def test_sql_json_carries_out_of_range_dates(servers: tuple[str, str, Any], value: str) -> None:
    r = httpx.post(servers[0] + "/sql", json={"query": f"SELECT {value} AS d"}, timeout=30)
    assert r.status_code == 200
    assert r.json()["row_count"] == 1


def test_sql_request_leaves_no_transaction_open(servers: tuple[str, str, Any]) -> None:
    base, _, ws = servers
    r = httpx.post(base + "/sql", timeout=30,
                   json={"query": "BEGIN TRANSACTION; UPDATE captions SET caption = 'x'"})
    assert r.status_code == 200, r.text
    try:
        ws.cursor().execute("UPDATE captions SET caption = 'mine'")  # conflicts if still open
    finally:
        for _ in range(8):  # end the stray transaction wherever it is
            httpx.post(base + "/sql", json={"query": "ROLLBACK"}, timeout=30)
