"""POST /sql: JSON and Arrow results, the engine's errors, confinement, auth."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest

import pixql
from tests.conftest import make_image_folder

ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture(scope="module")
def sql_ws(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sqlws") / "ws"
    make_image_folder(root / "shapes", per_class=3)
    with pixql.connect(root, progress=False) as db:
        db.sql("COPY images OPTIONS (if_exists='replace') FROM 'shapes/';"
               "BUILD MODEL px USING Pixels OPTIONS (image_size=8) AS SELECT * FROM images;"
               "CONVERT USING px AS SELECT * FROM images")
    db = pixql.connect(root, progress=False, confined=True)
    yield db
    db.close()


@pytest.fixture(scope="module")
def sql_base(start_server, sql_ws) -> str:
    return start_server(workspace=sql_ws, enable_sql=True)[0]


def post(base: str, query: str, **kw) -> httpx.Response:
    headers = kw.pop("headers", {})
    return httpx.post(f"{base}/sql", json={"query": query, **kw}, headers=headers, timeout=30)


def test_search_over_http_as_json(sql_base):
    r = post(sql_base, "SELECT image_path, search_result FROM (SEARCH IMAGE USING px OPTIONS "
             "(search_by='image', search_input='shapes/cross/001.png', emb_col='convert_result',"
             " top_k=3) AS SELECT * FROM images)")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["name"] for c in body["columns"]] == ["image_path", "search_result"]
    assert body["row_count"] == 3
    assert body["truncated"] is False
    assert body["rows"][0][0] == "shapes/cross/001.png"
    assert body["rows"][0][1] == pytest.approx(1.0, abs=1e-5)


def test_batch_search_by_stored_rows_over_http(sql_base):
    r = post(sql_base, "SELECT search_query, search_rank, image_path FROM (SEARCH IMAGE USING "
             "px OPTIONS (search_by='row', search_input=['shapes/cross/001.png', "
             "'shapes/circle/000.png'], emb_col='convert_result', top_k=2) "
             "AS SELECT * FROM images)")
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    assert [(q, k) for q, k, _ in rows] == [("shapes/cross/001.png", 1),
                                            ("shapes/cross/001.png", 2),
                                            ("shapes/circle/000.png", 1),
                                            ("shapes/circle/000.png", 2)]
    assert all(q != path for q, _, path in rows)  # exclude_self by default
    bad = post(sql_base, "SEARCH IMAGE USING px OPTIONS (search_by='row', search_input="
               "'nope.png', emb_col='convert_result') AS SELECT * FROM images")
    assert bad.status_code == 404
    assert "no row of images has image_path = 'nope.png'" in bad.json()["message"]


def test_embeddings_as_lists_or_base64(sql_base):
    q = "SELECT convert_result FROM images ORDER BY image_path LIMIT 2"
    as_list = post(sql_base, q).json()["rows"]
    as_b64 = post(sql_base, q, embeddings="base64").json()["rows"]
    assert len(as_list[0][0]) == 64
    decoded = np.frombuffer(base64.b64decode(as_b64[0][0]), dtype="<f4")
    assert np.allclose(decoded, as_list[0][0], atol=1e-7)


def test_arrow_stream_and_max_rows(sql_base, sql_ws):
    r = httpx.post(f"{sql_base}/sql", json={"query": "SELECT * FROM images", "max_rows": 5},
                   headers={"Accept": ARROW}, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(ARROW)
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.num_rows == 5
    assert r.headers["X-Row-Count"] == "5"
    assert r.headers["X-Truncated"] == "true"
    assert table.schema.field("convert_result").type == pa.list_(pa.float32(), 64)
    local = sql_ws.sql("SELECT * FROM images LIMIT 5").arrow()
    assert table.equals(local)


def test_large_result_streams_completely(sql_base):
    r = post(sql_base, "SELECT range AS i, 'x' || range AS s FROM range(20000)")
    body = r.json()
    assert body["row_count"] == 20000
    assert body["rows"][-1] == [19999, "x19999"]


def test_errors_carry_the_engines_message_and_position(sql_base):
    r = post(sql_base, "SELECT 1;\nSEARCH IMAGE USING px OPTIONS (top_k=) AS SELECT 1")
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "ParseError"
    assert body["line"] == 2
    assert "message" in body
    r = post(sql_base, "CONVERT USING nope AS SELECT * FROM images")
    assert r.status_code == 404
    assert "unknown model 'nope'" in r.json()["message"]
    r = post(sql_base, "SELECT * FROM no_such_table")
    assert r.status_code == 400
    assert "no_such_table" in r.json()["message"]
    r = httpx.post(f"{sql_base}/sql", json={"sql": "SELECT 1"}, timeout=10)
    assert r.status_code == 422
    assert "query" in r.json()["message"]


@pytest.mark.parametrize("stmt", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/proc/self/environ')",
    "ATTACH '/tmp/pixql-evil.duckdb' AS evil",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "COPY (SELECT 1) TO '/tmp/pixql-evil.csv'",
    "COPY t OPTIONS (if_exists='replace') FROM '/etc/passwd'",
    "SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='../../../etc/passwd', "
    "emb_col='convert_result') AS SELECT * FROM images",
])
def test_sql_cannot_reach_outside_the_workspace(sql_base, stmt):
    r = post(sql_base, stmt)
    assert 400 <= r.status_code < 500, r.text
    assert "message" in r.json()
    assert not Path("/tmp/pixql-evil.csv").exists()


def test_sql_route_is_off_unless_enabled(start_server, sql_ws):
    base, _ = start_server(workspace=sql_ws)
    assert httpx.post(f"{base}/sql", json={"query": "SELECT 1"}).status_code == 404


def test_sql_needs_a_key_when_keys_are_configured(start_server, sql_ws):
    base, _ = start_server(workspace=sql_ws, api_keys=["k-123"])
    assert httpx.post(f"{base}/sql", json={"query": "SELECT 1"}).status_code == 401
    ok = httpx.post(f"{base}/sql", json={"query": "SELECT 1 AS one"},
                    headers={"Authorization": "Bearer k-123"})
    assert ok.status_code == 200
    assert ok.json()["rows"] == [[1]]
