"""The PostgreSQL endpoint with real clients: psql, psycopg 3, psycopg2 + SQLAlchemy, pandas."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.server.served import BUILD, CONVERT, COPY, KEY, SEARCH, doc_blocks, served_workspace

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.server.served import Served

psycopg = pytest.importorskip("psycopg")
PSQL = shutil.which("psql")
needs_psql = pytest.mark.skipif(PSQL is None, reason="psql (Debian: postgresql-client) absent")


@pytest.fixture(scope="module")
def served(server_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_workspace(tmp_path_factory.mktemp("pg")) as s:
        for stmt in (COPY, BUILD, CONVERT):
            s.ws.sql(stmt)
        yield s


def dsn(served: Served, password: str = KEY, dbname: str = "pixql") -> str:
    return (f"host=127.0.0.1 port={served.pg.port} dbname={dbname} user=anyone "
            f"password={password}")


def psql(served: Served, *args: str, password: str = KEY) -> subprocess.CompletedProcess[str]:
    assert PSQL is not None
    env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10")
    return subprocess.run([PSQL, "-X", "-h", "127.0.0.1", "-p", str(served.pg.port),
                           "-U", "pixql", "-d", "pixql", "-A", "-F", "|", "-t", *args],
                          capture_output=True, encoding="utf-8", env=env, timeout=60, check=False)


@needs_psql
def test_psql_runs_ai_statements_like_the_embedded_engine(served):
    out = psql(served, "-c", f"SELECT image_path, search_result FROM ({SEARCH})")
    assert out.returncode == 0, out.stderr
    rows = [line.split("|") for line in out.stdout.splitlines() if line]
    expected = served.ws.sql(SEARCH).df()
    assert [r[0] for r in rows] == expected.image_path.tolist()
    assert [float(r[1]) for r in rows] == pytest.approx(expected.search_result.tolist())


@needs_psql
def test_psql_lists_tables_and_reports_errors(served):
    out = psql(served, "-c", r"\dt")
    assert out.returncode == 0, out.stderr
    assert "|photos|table|" in out.stdout
    assert "pixql_catalog" not in out.stdout  # pixql's bookkeeping is not listed
    bad = psql(served, "-c", "SELEC 1")
    assert bad.returncode != 0
    assert "SELEC" in bad.stderr


@needs_psql
def test_psql_wrong_password_and_database_are_refused(served):
    out = psql(served, "-c", "SELECT 1", password="wrong")
    assert out.returncode != 0
    assert "password authentication failed" in out.stderr
    other = subprocess.run([PSQL or "psql", "-h", "127.0.0.1", "-p", str(served.pg.port),
                            "-U", "pixql", "-d", "postgres", "-c", "SELECT 1"],
                           capture_output=True, encoding="utf-8", timeout=60, check=False,
                           env=dict(os.environ, PGPASSWORD=KEY))
    assert 'database "postgres" does not exist' in other.stderr


def test_psycopg_extended_protocol_parameters_and_embeddings(served):
    with psycopg.connect(dsn(served), autocommit=True) as conn:
        row = conn.execute("SELECT filename, convert_result FROM photos WHERE filename = %s",
                           ["p3.png"]).fetchone()
        expected = served.ws.sql("SELECT convert_result FROM photos "
                                 "WHERE filename = 'p3.png'").fetchone()[0]
        assert row[0] == "p3.png"
        assert row[1] == pytest.approx(list(expected))  # real[] arrives as floats
        assert conn.execute("SELECT %s::INTEGER + 1, %s", [41, None]).fetchone() == (42, None)


def test_psycopg_named_cursor_fetches_in_pieces(served):
    with psycopg.connect(dsn(served)) as conn, conn.cursor(name="pieces") as cur:
        cur.execute("SELECT filename FROM photos ORDER BY filename")
        assert cur.fetchmany(4) == [("p0.png",), ("p1.png",), ("p2.png",), ("p3.png",)]
        assert cur.fetchall() == [("p4.png",), ("p5.png",)]


def test_psycopg_write_and_failed_statement(served):
    with psycopg.connect(dsn(served), autocommit=True) as conn:
        conn.execute("CREATE OR REPLACE TABLE pg_notes (n INTEGER)")
        cur = conn.execute("INSERT INTO pg_notes VALUES (1), (2)")
        assert cur.rowcount == 2
        with pytest.raises(psycopg.errors.Error, match="no_such"):
            conn.execute("SELECT * FROM no_such_table")
        assert conn.execute("SELECT count(*) FROM pg_notes").fetchone() == (2,)


def test_psycopg_wrong_password_is_refused(served):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn(served, password="wrong"))


def test_sqlalchemy_psycopg2_stream_results_and_pandas(served):
    sa = pytest.importorskip("sqlalchemy")
    pd = pytest.importorskip("pandas")
    pytest.importorskip("psycopg2")
    engine = sa.create_engine(
        f"postgresql+psycopg2://pixql:{KEY}@/pixql?host={served.pg.socket_dir}")
    try:
        with engine.connect() as conn:
            streamed = conn.execution_options(stream_results=True)
            chunks = list(pd.read_sql_query(sa.text(f"SELECT * FROM ({SEARCH})"), streamed,
                                            chunksize=2))
        assert [len(c) for c in chunks] == [2, 1]
        frame = pd.concat(chunks, ignore_index=True)
        assert frame.image_path.tolist() == served.ws.sql(SEARCH).df().image_path.tolist()
        names = pd.read_sql("SELECT filename FROM photos ORDER BY 1", engine)
        assert names.filename.tolist() == [f"p{i}.png" for i in range(6)]
    finally:
        engine.dispose()


def test_docs_page_runs(served, tmp_path):
    for code in doc_blocks("postgresql.md"):
        exec(compile(served.substitute(code), "postgresql.md", "exec"),
             {"__name__": "__doc__"})
    if PSQL is not None:
        for script in doc_blocks("postgresql.md", "sh")[1:]:  # the first starts a server
            out = subprocess.run(["bash", "-e", "-c", served.substitute(script)],
                                 capture_output=True, encoding="utf-8", timeout=120, check=False,
                                 cwd=tmp_path)
            assert out.returncode == 0, out.stderr
            assert "photos/p2.png|1" in out.stdout.replace(" ", "")


def test_concurrent_connections_share_the_workspace(served):
    from concurrent.futures import ThreadPoolExecutor

    with psycopg.connect(dsn(served), autocommit=True) as conn:
        conn.execute("CREATE OR REPLACE TABLE hits (n INTEGER)")

    def work(n: int) -> tuple[int, ...]:
        with psycopg.connect(dsn(served), autocommit=True) as conn:
            conn.execute("INSERT INTO hits VALUES (%s)", [n])
            return conn.execute("SELECT count(*) FROM photos").fetchone()

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(work, range(8))) == [(6,)] * 8
    assert served.ws.sql("SELECT sum(n) FROM hits").fetchone() == (28,)
