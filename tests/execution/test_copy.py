"""ThanoSQL's COPY ... OPTIONS (if_exists=...) FROM csv / parquet / folder; DuckDB's COPY."""

from __future__ import annotations

import pytest

from pixql.errors import ConflictError, NotFoundError, OptionError
from tests.conftest import make_image_folder


def test_copy_folder_gives_one_row_per_image_with_labels(ws):
    make_image_folder(ws.root / "data", per_class=2)
    res = ws.sql("COPY imgs OPTIONS (if_exists='replace') FROM 'data/'")
    assert res.fetchone() == ("imgs", 8)
    rows = ws.sql("SELECT * FROM imgs ORDER BY image_path LIMIT 2").fetchall()
    assert rows == [("data/circle/000.png", "000.png", "circle"),
                    ("data/circle/001.png", "001.png", "circle")]


def test_copy_folder_with_digit_classes_gives_integer_labels(ws, tmp_path):
    outside = tmp_path / "outside"
    make_image_folder(outside, per_class=1, shapes=("3", "8"))
    ws.sql(f"COPY d OPTIONS (if_exists='replace') FROM '{outside}'")
    labels = ws.sql("SELECT DISTINCT typeof(label) FROM d").fetchall()
    assert labels == [("BIGINT",)]
    # outside the workspace: absolute paths
    assert ws.sql("SELECT image_path FROM d LIMIT 1").fetchone()[0].startswith(str(outside))


def test_copy_csv_with_paths_relative_to_the_csv(ws, tmp_path):
    data = tmp_path / "mnist"
    make_image_folder(data / "train", per_class=1)
    (data / "train.csv").write_text(
        "filepath,label\ntrain/circle/000.png,0\ntrain/cross/000.png,1\n")
    ws.sql(f"COPY t OPTIONS (if_exists='replace', resolve_paths='filepath') "
           f"FROM '{data / 'train.csv'}'")
    paths = [r[0] for r in ws.sql("SELECT filepath FROM t").fetchall()]
    assert paths == [str(data / "train/circle/000.png"), str(data / "train/cross/000.png")]


def test_copy_if_exists_fail_replace_append(ws):
    (ws.root / "a.csv").write_text("x,y\n1,a\n2,b\n")
    ws.sql("COPY t OPTIONS (if_exists='fail') FROM 'a.csv'")
    with pytest.raises(ConflictError, match="if_exists='replace'"):
        ws.sql("COPY t OPTIONS (if_exists='fail') FROM 'a.csv'")
    ws.sql("COPY t OPTIONS (if_exists='append') FROM 'a.csv'")
    assert ws.sql("SELECT count(*) FROM t").fetchone() == (4,)
    ws.sql("COPY t OPTIONS (overwrite=True) FROM 'a.csv'")  # legacy spelling
    assert ws.sql("SELECT count(*) FROM t").fetchone() == (2,)


def test_copy_parquet_and_duckdb_copy_passthrough(ws):
    ws.sql("CREATE TABLE src AS SELECT range AS i FROM range(5)")
    target = ws.root / "src.parquet"
    ws.sql(f"COPY src TO '{target}' (FORMAT parquet)")  # DuckDB's own COPY
    ws.sql("COPY back OPTIONS (if_exists='replace') FROM 'src.parquet'")
    # DuckDB's file readers look in the workspace for relative paths too (not in the cwd)
    assert ws.sql("SELECT count(*) FROM read_parquet('src.parquet')").fetchone() == (5,)
    assert ws.sql("SELECT sum(i) FROM back").fetchone() == (10,)


def test_copy_errors(ws):
    with pytest.raises(NotFoundError, match="not found"):
        ws.sql("COPY t OPTIONS (if_exists='replace') FROM 'nope.csv'")
    with pytest.raises(OptionError, match="if_exists='sometimes' is invalid"):
        ws.sql("COPY t OPTIONS (if_exists='sometimes') FROM 'x.csv'")
    (ws.root / "a.csv").write_text("x\n1\n")
    with pytest.raises(NotFoundError, match="resolve_paths: no column 'p'"):
        ws.sql("COPY t OPTIONS (if_exists='replace', resolve_paths='p') FROM 'a.csv'")
    assert ws.sql("SELECT count(*) FROM duckdb_tables() WHERE table_name = 't'").fetchone() == (0,)
