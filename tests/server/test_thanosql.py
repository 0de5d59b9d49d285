"""ThanoSQL's own SDK (PyPI ``thanosql``) against a live ``pixql serve``: REST routes."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from tests.server.served import BUILD, CONVERT, COPY, KEY, SEARCH, doc_blocks, served_workspace

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.server.served import Served

thanosql = pytest.importorskip("thanosql")
from thanosql import ThanoSQL  # noqa: E402
from thanosql import _error as sdk_errors  # noqa: E402
from thanosql.resources._table import TableObject  # noqa: E402


@pytest.fixture(scope="module")
def served(server_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_workspace(tmp_path_factory.mktemp("thanosql"), pg=False) as s:
        yield s


@pytest.fixture(scope="module")
def client(served: Served) -> ThanoSQL:
    return ThanoSQL(api_token=KEY, engine_url=served.base)


@pytest.fixture(scope="module")
def converted(client: ThanoSQL) -> None:
    for stmt in (COPY, BUILD, CONVERT):
        assert client.query.execute(stmt).state == "SUCCESS"


def test_tutorial_statements_match_the_embedded_engine(client, served, converted):
    log = client.query.execute(SEARCH)
    expected = served.ws.sql(SEARCH)
    df = log.records.to_df()
    assert log.statement_type == "SEARCH"
    assert log.total_records == len(expected) == 3
    assert df.image_path.tolist() == expected.df().image_path.tolist()
    assert df.image_path[0] == "photos/p2.png"
    assert df.search_result.tolist() == pytest.approx(expected.df().search_result.tolist())
    emb = np.frombuffer(base64.b64decode(df.convert_result[0]), dtype="<f4")
    assert emb.tolist() == pytest.approx(list(expected.df().convert_result[0]))


def test_plain_sql_and_max_results(client, converted):
    log = client.query.execute("SELECT filename FROM photos ORDER BY filename", max_results=2)
    assert log.total_records == 6
    assert [r["filename"] for r in log.records.data] == ["p0.png", "p1.png"]
    with pytest.raises(sdk_errors.ThanoSQLValueError):
        client.query.execute("SELECT 1", max_results=101)


def test_table_name_saves_and_overwrite_guards(client, served, converted):
    log = client.query.execute("SELECT filename FROM photos", table_name="names",
                               overwrite=True, max_results=0)
    assert (log.destination_table_name, log.destination_schema) == ("names", "public")
    assert log.records.data == []
    with pytest.raises(sdk_errors.ThanoSQLAlreadyExistsError, match="overwrite=True"):
        client.query.execute("DROP TABLE photos", table_name="names")
    assert served.ws.sql("SELECT count(*) FROM photos").fetchone() == (6,)  # nothing ran


def test_errors_carry_pixql_messages(client, served):
    with pytest.raises(sdk_errors.ThanoSQLValueError, match="SELEC"):
        client.query.execute("SELEC 1")
    with pytest.raises(sdk_errors.ThanoSQLPermissionError, match="API key"):
        ThanoSQL(api_token="wrong", engine_url=served.base).query.execute("SELECT 1")


@pytest.mark.parametrize("call", [
    lambda c: c.query.template.list(),
    lambda c: c.query.execute(template_name="x"),
    lambda c: c.schema.list(),
    lambda c: c.view.list(),
    lambda c: c.table.create("t", table=TableObject()),
    lambda c: c.table.update("photos", table=TableObject()),
    lambda c: c.table.upload("t", df=pd.DataFrame({"a": [1]})),
    lambda c: c.table.get("photos").insert([{"filename": "x"}]),
    lambda c: c.table.get("photos").get_records_as_csv(),
    lambda c: c.table.template.list(),
])
def test_features_pixql_does_not_offer_are_named(client, converted, call):
    with pytest.raises(sdk_errors.ThanoSQLNotFoundError, match="not offer"):
        call(client)


def test_tables_and_records(client, converted):
    names = [t.name for t in client.table.list()]
    assert "photos" in names
    assert not any(n in ("models", "embedding_columns") for n in names)
    table = client.table.get("photos")
    assert [c.name for c in table.columns] == ["image_path", "filename", "label",
                                               "convert_result"]
    page = table.get_records(offset=1, limit=2)
    assert page.total == 6
    assert len(page.data) == 2
    with pytest.raises(sdk_errors.ThanoSQLNotFoundError):
        client.table.get("nope")


def test_query_logs(client, converted):
    client.query.execute("SELECT 42 AS answer")
    logs = client.query.log.list(search="42 AS answer")
    assert logs["total"] >= 1
    assert logs["query_logs"][0].state == "SUCCESS"


def test_docs_page_runs(served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "query.png").write_bytes((served.ws.root / "photos" / "p1.png").read_bytes())
    blocks = doc_blocks("thanosql-sdk.md")
    assert blocks
    scope: dict[str, object] = {"__name__": "__doc__"}
    for code in blocks:
        exec(compile(served.substitute(code), "thanosql-sdk.md", "exec"), scope)
