"""``RemoteWorkspace`` against a live server: Results like the embedded engine's, the same
exception types and positions, 409 retries, several writers at once."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import duckdb
import httpx
import pyarrow as pa
import pytest

from pixql.client.errors import RemoteError, ServedWorkspaceError
from pixql.client.remote import RemoteWorkspace
from pixql.errors import ConflictError, NotFoundError, OptionError, ParseError
from pixql.execution.result import Result
from tests.client.conftest import KEY

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def remote(servers: dict[str, str]) -> Iterator[RemoteWorkspace]:
    with RemoteWorkspace(servers["open"]) as ws:
        yield ws


def test_execute_returns_one_result_per_statement(remote):
    results = remote.execute("CREATE OR REPLACE TABLE r1 AS SELECT 1 AS a; "
                             "SELECT count(*) AS n FROM images; LIST MODEL")
    assert [type(r) for r in results] == [Result] * 3
    assert results[0].fetchall() == [(1,)]  # DuckDB's Count, as locally
    assert results[1].fetchall() == [(12,)]
    assert results[1].statement == "SELECT count(*) AS n FROM images"
    assert "px" in str(results[2])


def test_results_keep_exact_types(remote, server_ws):
    res = remote.sql("SELECT image_path, convert_result FROM images ORDER BY image_path")
    local = server_ws.sql("SELECT image_path, convert_result FROM images ORDER BY image_path")
    assert res.arrow().schema == local.arrow().schema
    assert pa.types.is_fixed_size_list(res.arrow().schema.field("convert_result").type)
    assert res.arrow().equals(local.arrow())
    assert res.df()["convert_result"][0].dtype == local.df()["convert_result"][0].dtype
    assert str(res) == str(local)


def test_print_image_resolves_paths_in_the_workspace(remote, server_ws):
    res = remote.sql("PRINT IMAGE AS SELECT * FROM images ORDER BY image_path LIMIT 3")
    assert res.image_col == "image_path"
    assert res.images == [server_ws.root / p for p in res.df()["image_path"]]
    assert all(p.is_file() for p in res.images)
    assert res.message == "3 image(s)"


def test_root_and_resolve(remote, server_ws):
    assert remote.root == server_ws.root
    assert remote.resolve("a/b.png") == server_ws.root / "a" / "b.png"


def test_empty_script(remote):
    assert remote.execute("  ") == []
    assert remote.sql("").message == "no statement"
    assert remote.execute("-- only a comment") == []


def test_parse_error_is_rebuilt_with_its_position(remote):
    script = "SELECT 1;\nCONVERT USING px OPTIONS (x=1) FROM images"
    with pytest.raises(ParseError) as remote_error:
        remote.sql(script)
    from pixql.sql import parse_script

    with pytest.raises(ParseError) as local_error:
        parse_script(script)
    assert str(remote_error.value) == str(local_error.value)
    assert (remote_error.value.line, remote_error.value.col) == (
        local_error.value.line, local_error.value.col)
    assert remote_error.value.expected == local_error.value.expected


def test_option_and_catalog_errors_are_rebuilt(remote, server_ws):
    bad = "SEARCH IMAGE USING px OPTIONS (bogus=1) AS SELECT * FROM images"
    with pytest.raises(OptionError) as remote_error:
        remote.sql(bad)
    with pytest.raises(OptionError) as local_error:
        server_ws.sql(bad)
    assert str(remote_error.value) == str(local_error.value)
    assert remote_error.value.line == 1
    assert remote_error.value.option == "bogus"
    with pytest.raises(NotFoundError):
        remote.sql("CONVERT USING no_such_model AS SELECT * FROM images")
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        remote.sql("SELECT * FROM no_such_table")


def test_server_without_sql_says_how_to_enable_it(servers):
    with RemoteWorkspace(servers["nosql"]) as ws, \
            pytest.raises(ServedWorkspaceError, match="--enable-sql"):
        ws.sql("SELECT 1")


def test_key_is_required_and_taken_from_the_environment(servers, monkeypatch):
    with RemoteWorkspace(servers["secured"]) as ws, \
            pytest.raises(ServedWorkspaceError, match="PIXQL_API_KEY"):
        ws.sql("SELECT 1")
    with RemoteWorkspace(servers["secured"], api_key=KEY) as ws:
        assert ws.sql("SELECT 2 AS x").fetchall() == [(2,)]
    monkeypatch.setenv("PIXQL_API_KEY", KEY)
    with RemoteWorkspace(servers["secured"]) as ws:
        assert ws.sql("SELECT 3 AS x").fetchall() == [(3,)]


def test_unreachable_server_is_a_pixql_error():
    with RemoteWorkspace("http://127.0.0.1:9") as ws, \
            pytest.raises(RemoteError, match="cannot reach"):
        ws.sql("SELECT 1")


def test_concurrent_writers_all_succeed(servers):
    with RemoteWorkspace(servers["open"]) as ws:
        ws.sql("CREATE OR REPLACE TABLE counter AS SELECT 0 AS n")
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            with RemoteWorkspace(servers["open"]) as mine:
                for _ in range(5):
                    mine.sql("UPDATE counter SET n = n + 1")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with RemoteWorkspace(servers["open"]) as ws:
        assert ws.sql("SELECT n FROM counter").fetchall() == [(20,)]


# -- 409: retried with back-off while the wait is short ----------------------------------
def _arrow_body(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _transport(answers: list[tuple[int, dict[str, str]]], seen: list[Any]) -> Any:
    """Answers each request with the next status (409s carry a conflict body)."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, headers = answers.pop(0) if answers else (200, {})
        if status == 409:
            return httpx.Response(409, headers=headers, json={
                "message": "TransactionContext Error: Conflict on update",
                "error": "TransactionException"})
        return httpx.Response(200, headers={"content-type": "application/vnd.apache.arrow"
                                            ".stream"}, content=_arrow_body(pa.table({"a": [1]})))

    return httpx.MockTransport(handle)


def test_a_short_conflict_is_retried():
    seen: list[Any] = []
    answers = [(409, {"Retry-After": "0"}), (409, {"Retry-After": "0"})]
    with RemoteWorkspace("http://pixql.test", transport=_transport(answers, seen)) as ws:
        assert ws.sql("UPDATE t SET a = 1").fetchall() == [(1,)]
    assert len(seen) == 3


def test_a_long_conflict_or_a_script_is_not_retried():
    seen: list[Any] = []
    answers = [(409, {"Retry-After": "60"})]
    with RemoteWorkspace("http://pixql.test", transport=_transport(answers, seen)) as ws, \
            pytest.raises(duckdb.TransactionException, match="Conflict"):
        ws.sql("UPDATE t SET a = 1")
    answers = [(409, {"Retry-After": "0"})]
    with RemoteWorkspace("http://pixql.test", transport=_transport(answers, seen)) as ws, \
            pytest.raises(duckdb.TransactionException):
        ws.sql("INSERT INTO t VALUES (1); UPDATE t SET a = 1")
    assert len(seen) == 2


def test_a_name_conflict_is_not_retried(servers):
    with RemoteWorkspace(servers["open"]) as ws, \
            pytest.raises(ConflictError, match="already exists"):
        ws.sql("BUILD MODEL px USING Pixels AS SELECT * FROM images")


def test_retries_stop_at_the_budget():
    seen: list[Any] = []
    answers = [(409, {"Retry-After": "0"})] * 50
    with RemoteWorkspace("http://pixql.test", transport=_transport(answers, seen),
                         retry_budget_s=0.3) as ws, pytest.raises(duckdb.TransactionException):
        ws.sql("UPDATE t SET a = 1")
    assert 1 < len(seen) < 50
