"""A PostgreSQL session on a real workspace: intercepted statements, cursors, command tags."""

from __future__ import annotations

import pytest

import pixql
from pixql.errors import NotFoundError, ProgrammingError
from pixql.server.pg.session import VERSION_TEXT, PgSession


@pytest.fixture
def session(tmp_path):
    ws = pixql.connect(str(tmp_path / "ws"), progress=False, confined=True)
    ws.sql("CREATE TABLE t AS SELECT range AS i FROM range(5)")
    yield PgSession(ws)
    ws.close()


def rows(result):
    return list(result.rows())


def test_cursor_declare_fetch_close(session):
    assert session.execute_sql('DECLARE "c 1" CURSOR WITHOUT HOLD FOR '
                               "SELECT i FROM t ORDER BY i").tag == "DECLARE CURSOR"
    first = session.execute_sql('FETCH FORWARD 2 FROM "c 1"')
    assert (first.tag, rows(first)) == ("FETCH 2", [["0"], ["1"]])
    assert rows(session.execute_sql('FETCH ALL IN "c 1"')) == [["2"], ["3"], ["4"]]
    assert session.execute_sql('FETCH 5 FROM "c 1"').tag == "FETCH 0"
    session.execute_sql('CLOSE "c 1"')
    with pytest.raises(NotFoundError, match="c 1"):
        session.execute_sql('FETCH 1 FROM "c 1"')


def test_transactions_are_accepted_and_tracked(session):
    assert session.execute_sql("BEGIN").tag == "BEGIN"
    assert session.in_transaction()
    session.execute_sql("SAVEPOINT sp")
    session.execute_sql("ROLLBACK TO SAVEPOINT sp")
    assert session.execute_sql("COMMIT").tag == "COMMIT"
    assert not session.in_transaction()


def test_show_set_and_version(session):
    assert rows(session.execute_sql("SHOW standard_conforming_strings")) == [["on"]]
    assert rows(session.execute_sql("SHOW TRANSACTION ISOLATION LEVEL")) == [["read committed"]]
    assert session.execute_sql("SET extra_float_digits = 3").tag == "SET"
    assert rows(session.execute_sql("select pg_catalog.version()")) == [[VERSION_TEXT]]
    with pytest.raises(ProgrammingError, match="no_such_setting"):
        session.execute_sql("SHOW no_such_setting")


@pytest.mark.parametrize(("sql", "tag", "has_rows"), [
    ("INSERT INTO t VALUES (9), (10)", "INSERT 0 2", False),
    ("UPDATE t SET i = i + 10 WHERE i > 2", "UPDATE 2", False),
    ("DELETE FROM t WHERE i < 2", "DELETE 2", False),
    ("CREATE TABLE u AS SELECT * FROM t", "SELECT 5", False),
    ("DROP TABLE IF EXISTS nothing", "DROP TABLE", False),
    ("SELECT count(*) AS \"Count\" FROM t", "SELECT 1", True),
])
def test_command_tags(session, sql, tag, has_rows):
    result = session.execute_sql(sql)
    assert (result.tag, result.has_results()) == (tag, has_rows)


def test_parameters_only_in_plain_sql(session):
    assert rows(session.execute_sql("SELECT i FROM t WHERE i = $1", [3])) == [["3"]]
    with pytest.raises(ProgrammingError, match="plain SQL"):
        session.execute_sql("LIST MODEL", [1])


def test_catalog_queries_psql_sends(session):
    result = session.execute_sql(
        "SELECT c.relname, pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c "
        "WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default")
    assert rows(result) == [["t", "pixql"]]


def test_describe_is_the_way_to_see_columns(session):
    result = session.execute_sql("DESCRIBE t")
    assert result.has_results()
    assert rows(result)[0][:2] == ["i", "BIGINT"]
