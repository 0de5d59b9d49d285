"""pixql.connect, scripts, results, paths, persistence, light import."""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

import pixql
from pixql.errors import ParseError


def test_import_pixql_and_parse_stay_light():
    code = ("import sys, pixql, pixql.sql; pixql.sql.parse_script('SELECT 1; LIST MODEL');"
            "from pixql.models.registry import get_kind; get_kind('pixels');"
            "print(sorted(m for m in ('torch', 'fastapi', 'open_clip', 'torchvision') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8",
                         check=True)
    assert out.stdout.strip() == "[]"


def test_connect_creates_folder_and_database(tmp_path):
    db = pixql.connect(tmp_path / "new" / "ws")
    assert (tmp_path / "new" / "ws" / "pixql.duckdb").is_file()
    assert db.root == (tmp_path / "new" / "ws").resolve()
    db.close()


def test_connect_uses_env_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXQL_WORKSPACE", str(tmp_path / "envws"))
    with pixql.connect() as db:
        assert db.root == (tmp_path / "envws").resolve()


def test_script_runs_in_order_and_returns_last_result(ws):
    res = ws.sql("""
        CREATE TABLE t (i INTEGER, s VARCHAR);  -- a comment; with a semicolon
        INSERT INTO t VALUES (1, 'a;b'), (2, 'SEARCH IMAGE');
        SELECT * FROM t ORDER BY i;
    """)
    assert res.fetchall() == [(1, "a;b"), (2, "SEARCH IMAGE")]
    assert isinstance(res.df(), pd.DataFrame)
    assert list(res.df().columns) == ["i", "s"]
    assert isinstance(res.arrow(), pa.Table)
    text = str(res)
    assert "a;b" in text
    assert "[2 rows x 2 columns]" in text
    assert [len(r) for r in ws.execute("SELECT 1; SELECT 1 UNION ALL SELECT 2")] == [1, 2]
    ddl = ws.execute("CREATE TABLE u (i INTEGER); SET threads = 2; DROP TABLE u")
    assert [(r.message, r.columns) for r in ddl] == [("Success", [])] * 3


def test_parse_error_anywhere_runs_nothing(ws):
    with pytest.raises(ParseError) as e:
        ws.sql("CREATE TABLE t (i INTEGER);\nBUILD MODEL m USING Pixels OPTIONS (image_size=)")
    assert e.value.line == 2
    assert ws.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name='t'").fetchone() == (0,)


def test_relative_paths_resolve_against_workspace_root(ws, tmp_path):
    assert ws.resolve("a/b.png") == ws.root / "a/b.png"
    assert ws.resolve(str(tmp_path / "x.png")) == tmp_path / "x.png"
    assert ws.relativize(ws.root / "a" / "b.png") == "a/b.png"
    assert ws.relativize(tmp_path / "x.png") == str(tmp_path / "x.png")


def test_tables_and_models_persist_across_reopen(tmp_path):
    from tests.conftest import make_image_folder

    with pixql.connect(tmp_path / "ws", progress=False) as db:
        make_image_folder(db.root / "imgs", per_class=2)
        db.sql("COPY images OPTIONS (if_exists='replace') FROM 'imgs/';"
               "BUILD MODEL px USING Pixels AS SELECT * FROM images;"
               "CONVERT USING px AS SELECT * FROM images")
    with pixql.connect(tmp_path / "ws", progress=False) as db:
        res = db.sql("SEARCH IMAGE USING px OPTIONS (search_by='image', "
                     "search_input='imgs/square/001.png', emb_col='convert_result', top_k=1) "
                     "AS SELECT * FROM images")
        assert res.fetchone()[0] == "imgs/square/001.png"


def test_startup_removes_leftovers(tmp_path):
    with pixql.connect(tmp_path / "ws") as db:
        db.sql("BUILD MODEL px USING Pixels")
        (db.root / "models" / ".tmp-px-dead").mkdir()
        (db.root / "models" / "px" / "v999").mkdir()
    with pixql.connect(tmp_path / "ws") as db:
        assert sorted(db.repaired) == ["orphaned artifact models/px/v999",
                                       "unfinished build .tmp-px-dead"]
        assert len(db.sql("LIST MODEL")) == 1


def test_threads_get_their_own_cursor(ws):
    import threading

    seen = []
    t = threading.Thread(target=lambda: seen.append(ws.cursor()))
    t.start()
    t.join()
    assert seen[0] is not ws.cursor()
    assert ws.cursor() is ws.cursor()


def test_confined_workspace_keeps_sql_and_paths_inside(tmp_path):
    from pixql.errors import AccessError

    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "ok.csv").write_text("a\n1\n")
    (tmp_path / "ws" / "link").symlink_to(tmp_path)
    with pixql.connect(tmp_path / "ws", confined=True) as db:
        ok = db.root / "ok.csv"
        assert db.sql(f"SELECT * FROM read_csv('{ok}')").fetchall() == [(1,)]
        for stmt in (f"SELECT * FROM read_csv('{secret}')",
                     "SELECT * FROM read_csv('/etc/passwd')",
                     "SELECT * FROM read_csv('../secret.csv')",
                     "SELECT * FROM read_csv('ok.csv')",  # relative: resolved against cwd
                     f"ATTACH '{tmp_path / 'other.duckdb'}' AS o",
                     "INSTALL httpfs", "LOAD httpfs",
                     "SET enable_external_access = true",
                     f"COPY (SELECT 1) TO '{tmp_path / 'evil.csv'}'"):
            with pytest.raises(duckdb.Error, match=r"Permission|locked"):
                db.sql(stmt)
        for bad in ("../secret.csv", str(secret), "link/secret.csv"):
            with pytest.raises(AccessError, match="outside the workspace"):
                db.resolve(bad)
        with pytest.raises(AccessError):
            db.sql(f"COPY t OPTIONS (if_exists='replace') FROM '{secret}'")
        assert db.resolve("ok.csv") == db.root / "ok.csv"
