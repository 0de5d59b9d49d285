"""``Client.sql`` against a live server: DataFrames and Arrow tables equal to local results,
the engine's errors with their positions, API keys."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import pixql
from pixql.client.http import ClientError, ServerUnreachableError
from tests.client.conftest import KEY

SEARCH = ("SELECT image_path, label, search_result FROM (SEARCH IMAGE USING px OPTIONS "
          "(search_by='image', search_input='shapes/cross/001.png', emb_col='convert_result', "
          "result_col='search_result', top_k=4) AS SELECT * FROM images)")


def assert_same_frame(remote, local) -> None:
    assert list(remote.columns) == list(local.columns)
    assert len(remote) == len(local)
    for name in local.columns:
        for a, b in zip(remote[name], local[name], strict=True):
            if isinstance(b, np.ndarray):
                assert isinstance(a, np.ndarray)
                assert a.dtype == b.dtype == np.float32
                np.testing.assert_array_equal(a, b)
            else:
                assert a == b or (a != a and b != b), (name, a, b)


def test_search_result_equals_the_local_dataframe(client, server_ws):
    remote = client.sql(SEARCH)
    assert_same_frame(remote, server_ws.sql(SEARCH).df())
    assert remote["image_path"][0] == "shapes/cross/001.png"
    assert remote["search_result"][0] == pytest.approx(1.0, abs=1e-5)
    assert list(remote["search_result"]) == sorted(remote["search_result"], reverse=True)
    assert remote.attrs["pixql"]["row_count"] == 4
    assert remote.attrs["pixql"]["truncated"] is False


@pytest.mark.parametrize("embeddings", ["list", "base64"])
def test_embeddings_arrive_as_float32_arrays_either_way(client, server_ws, embeddings):
    q = "SELECT image_path, convert_result FROM images ORDER BY image_path"
    assert_same_frame(client.sql(q, embeddings=embeddings), server_ws.sql(q).df())


def test_arrow_result_equals_the_local_table(client, server_ws):
    q = "SELECT * FROM images ORDER BY image_path"
    table = client.sql(q, arrow=True)
    assert isinstance(table, pa.Table)
    assert table.equals(server_ws.sql(q).arrow())
    assert table.schema.field("convert_result").type == pa.list_(pa.float32(), 64)


def test_types_and_nulls_survive_json(client, server_ws):
    q = ("SELECT 1::BIGINT AS i, NULL::INTEGER AS n, 2.5::DOUBLE AS d, 'é' AS s, "
         "DATE '2024-02-29' AS day, TIMESTAMP '2024-02-29 12:30:00' AS ts, "
         "TRUE AS b, '\\x01\\x02'::BLOB AS raw, [1.5, 2.5]::FLOAT[2] AS v")
    remote = client.sql(q)
    local = server_ws.sql(q).df()
    assert_same_frame(remote.drop(columns=["n"]), local.drop(columns=["n"]))
    assert remote["n"].isna().all()
    assert local["n"].isna().all()
    assert str(remote["ts"].dtype).startswith("datetime64")


def test_max_rows_cuts_and_warns(client):
    with pytest.warns(UserWarning, match="cut to 3 rows"):
        df = client.sql("SELECT * FROM images", max_rows=3)
    assert len(df) == 3
    assert df.attrs["pixql"]["truncated"] is True
    assert client.sql("SELECT * FROM images", max_rows=3, arrow=True).num_rows == 3


def test_statement_without_rows_keeps_its_message(client):
    df = client.sql("CREATE OR REPLACE TEMP TABLE t AS SELECT 1 AS a; SELECT 42 AS answer")
    assert df["answer"].tolist() == [42]
    body = client.sql("LIST MODEL")
    assert "px" in set(body["name"])


def test_parse_error_carries_position_and_caret(client):
    with pytest.raises(ClientError) as info:
        client.sql("SELECT 1;\nSEARCH IMAGE USING px OPTIONS (top_k=) AS SELECT 1")
    err = info.value
    assert err.status_code == 400
    assert err.error == "ParseError"
    assert err.line == 2
    assert isinstance(err.col, int)
    assert err.col > 1
    assert "^" in err.message
    assert "line 2" in err.message
    assert str(err).startswith("HTTP 400 ParseError: line 2")


def test_engine_and_duckdb_errors(client):
    with pytest.raises(ClientError) as info:
        client.sql("CONVERT USING nope AS SELECT * FROM images")
    assert info.value.status_code == 404
    assert info.value.error == "NotFoundError"
    assert "unknown model 'nope'" in info.value.message
    with pytest.raises(ClientError) as info:
        client.sql("SELECT * FROM no_such_table")
    assert info.value.status_code == 400
    assert "no_such_table" in info.value.message


def test_api_key_is_sent_as_bearer(servers, monkeypatch):
    url = servers["secured"]
    with pixql.Client(url) as anonymous:
        with pytest.raises(ClientError) as info:
            anonymous.sql("SELECT 1")
        assert info.value.status_code == 401
        assert "API key" in info.value.message
        assert anonymous.health() == {"status": "healthy"}  # open route
    with pixql.Client(url, api_key=KEY) as c:
        assert c.sql("SELECT 1 AS one")["one"].tolist() == [1]
        assert KEY not in repr(c)
    monkeypatch.setenv("PIXQL_API_KEY", KEY)
    monkeypatch.setenv("PIXQL_URL", url)
    with pixql.Client() as from_env:
        assert from_env.url == url
        assert from_env.sql("SELECT 2 AS two", arrow=True).column("two").to_pylist() == [2]


def test_health_info_and_context_manager(base):
    with pixql.Client(base + "/") as c:
        assert c.url == base
        assert c.health() == {"status": "healthy"}
        info = c.info()
        assert info["name"] == "pixql"
        assert info["version"] == pixql.__version__
    with pytest.raises(RuntimeError):
        c.health()  # closed by the with block


def test_unreachable_server_is_a_clear_error():
    with (pixql.Client("http://127.0.0.1:9", timeout=2) as c,
          pytest.raises(ServerUnreachableError, match="cannot reach the pixql server")):
        c.sql("SELECT 1")


def test_server_without_sql_route_says_how_to_enable_it(servers):
    with (pixql.Client(servers["nosql"]) as c,
          pytest.raises(ClientError, match="--enable-sql") as info):
        c.sql("SELECT 1")
    assert info.value.status_code == 404
