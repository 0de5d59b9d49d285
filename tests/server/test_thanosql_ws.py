"""ThanoSQL's ``%%thanosql`` magic (real IPython shell, real SDK) against a live server."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.server.served import BUILD, CONVERT, COPY, KEY, SEARCH, doc_blocks, served_workspace

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.server.served import Served

pytest.importorskip("thanosql.magic.magic")
websocket = pytest.importorskip("websocket")
pytest.importorskip("sqlalchemy")


@pytest.fixture(scope="module")
def served(server_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_workspace(tmp_path_factory.mktemp("magic")) as s:
        yield s


@pytest.fixture(scope="module")
def shell(served: Served) -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "thanosql")
    ip.run_line_magic("thanosql", served.base.replace("http", "ws") + "/ws/v1/query")
    ip.run_line_magic("thanosql", f"API_TOKEN={KEY}")
    return ip


def cell(ip: Any, text: str) -> Any:
    return ip.run_cell_magic("thanosql", "", text)


def test_tutorial_cells_match_the_embedded_engine(shell, served, capsys):
    copied = cell(shell, COPY)  # pixql's statements answer rows, as embedded
    assert copied.to_dict("records") == served.ws.sql(
        "SELECT 'photos' AS \"table\", 6 AS \"rows\"").df().to_dict("records")
    assert "copied 6 rows" in capsys.readouterr().out  # the statement's message
    built = cell(shell, BUILD)
    assert built.model.tolist() == ["px"]
    converted = cell(shell, CONVERT)
    assert converted.columns.tolist()[-1] == "convert_result"
    found = cell(shell, SEARCH)
    expected = served.ws.sql(SEARCH).df()
    assert found.image_path.tolist() == expected.image_path.tolist()
    assert found.search_result.tolist() == pytest.approx(expected.search_result.tolist())
    assert list(found.convert_result[0]) == pytest.approx(list(expected.convert_result[0]))
    assert served.ws.sql("SELECT count(*) FROM information_schema.tables "
                         "WHERE table_schema = 'qm'").fetchone() == (0,)  # results dropped


def test_plain_sql_and_writes(shell, served, capsys):
    assert cell(shell, "CREATE OR REPLACE TABLE notes AS SELECT 1 AS n") is None
    assert "Success" in capsys.readouterr().out
    assert cell(shell, "SELECT n + 1 AS m FROM notes").m.tolist() == [2]


def test_print_image_shows_files_in_search_order(shell, served, capsys):
    cell(shell, SEARCH)  # ensures the model and embeddings exist (module order aside)
    capsys.readouterr()
    cell(shell, f"PRINT IMAGE AS (SELECT image_path, search_result FROM ({SEARCH}))")
    printed = [line for line in capsys.readouterr().out.splitlines() if line.endswith(".png")]
    expected = served.ws.sql(SEARCH).df().image_path.tolist()
    assert printed == [f"{served.ws.root}/{p}" for p in expected]


def test_errors_are_raised_with_position(shell):
    from thanosql.magic.exception import ThanoSQLInternalError

    with pytest.raises(ThanoSQLInternalError, match="SELEC"):
        cell(shell, "SELEC 1")


def _frames(url: str, query: str) -> list[dict[str, Any]]:
    ws = websocket.create_connection(url, timeout=30)
    try:
        ws.send(json.dumps({"query_string": query}))
        out = []
        while True:
            frame = json.loads(ws.recv())
            out.append(frame)
            if frame["output_type"] != "MESSAGE":
                return out
    finally:
        ws.close()


def test_result_frame_names_the_unix_socket(served):
    url = served.base.replace("http", "ws") + f"/ws/v1/query?api_token={KEY}"
    frames = _frames(url, "SELECT 1 AS one")
    data = frames[-1]["output_message"]["data"]
    assert data["response_type"] == "SELECT_DROP"
    assert data["workspace_db_info"]["host"] == str(served.pg.socket_dir)
    assert (served.pg.socket_dir / ".s.PGSQL.5432").exists()
    served.ws.sql(data["extra_query_string"])


def test_one_statement_per_cell(served):
    url = served.base.replace("http", "ws") + f"/ws/v1/query?api_token={KEY}"
    frames = _frames(url, "SELECT 1; SELECT 2")  # the magic refuses this itself, too
    assert frames[-1]["output_type"] == "ERROR"
    assert "exactly one statement" in frames[-1]["output_message"]


def test_wrong_token_is_an_error_frame(served):
    url = served.base.replace("http", "ws") + "/ws/v1/query?api_token=wrong"
    frames = _frames(url, "SELECT 1")
    assert frames[-1]["output_type"] == "ERROR"
    assert "API_TOKEN" in frames[-1]["output_message"]


def test_without_pg_endpoint_the_error_says_how_to_start_it(server_env, tmp_path):
    with served_workspace(tmp_path, pg=False) as s:
        url = s.base.replace("http", "ws") + f"/ws/v1/query?api_token={KEY}"
        frames = _frames(url, "CREATE TABLE never AS SELECT 1")
        assert frames[-1]["output_type"] == "ERROR"
        assert "--pg-port" in frames[-1]["output_message"]
        assert s.ws.sql("SELECT count(*) FROM information_schema.tables "
                        "WHERE table_name = 'never'").fetchone() == (0,)


def test_docs_page_runs(shell, served):
    blocks = doc_blocks("thanosql-magic.md")
    assert blocks
    scope: dict[str, object] = {"__name__": "__doc__"}
    for code in blocks:
        exec(compile(served.substitute(code), "thanosql-magic.md", "exec"), scope)
