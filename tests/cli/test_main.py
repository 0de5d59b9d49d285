"""The pixql command: sql, shell, errors; the reference tutorial with USING Pixels."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

from tests.conftest import make_image_folder

if TYPE_CHECKING:
    from pathlib import Path

TUTORIAL = """
COPY mnist_test OPTIONS (if_exists='replace') FROM 'data/';
BUILD MODEL my_image_search_model USING Pixels
OPTIONS (image_col='image_path', overwrite=True)
AS SELECT * FROM mnist_test;
CONVERT USING my_image_search_model
OPTIONS (image_col='image_path', result_col='convert_result')
AS SELECT * FROM mnist_test;
SEARCH IMAGE USING my_image_search_model
OPTIONS (search_by='image', search_input='data/circle/002.png',
         emb_col='convert_result', result_col='search_result')
AS SELECT * FROM mnist_test
"""


def pixql(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIXQL_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "pixql.cli.main", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_sql_runs_the_tutorial_with_pixels(tmp_path):
    ws = tmp_path / "ws"
    make_image_folder(ws / "data", per_class=3)
    out = pixql("-w", str(ws), "sql", TUTORIAL, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split(" | ")[0].strip() == "image_path"
    assert lines[0].rstrip().endswith("search_result")
    assert "data/circle/002.png" in lines[2]
    assert "1.000000" in lines[2]
    assert "[12 rows x 5 columns]" in out.stdout


def test_sql_parse_error_reports_line_and_column(tmp_path):
    out = pixql("-w", str(tmp_path / "ws"), "sql",
                "SELECT 1;\nCONVERT USING m OPTIONS (x=1) FROM t", cwd=tmp_path)
    assert out.returncode == 1
    assert "line 2, column" in out.stderr
    assert "^" in out.stderr


def test_print_image_writes_a_contact_sheet(tmp_path):
    ws = tmp_path / "ws"
    make_image_folder(ws / "data", per_class=1)
    out = pixql("-w", str(ws), "sql",
                "COPY t OPTIONS (if_exists='replace') FROM 'data/'; PRINT IMAGE AS SELECT * FROM t",
                cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (ws / "print_image.png").is_file()
    assert "wrote 4 image(s)" in out.stdout


def test_shell_reads_multiline_statements_from_stdin(tmp_path):
    script = "CREATE TABLE t AS\n SELECT 41 + 1 AS answer;\nSELECT * FROM t;\nSELEC oops;\n"
    out = pixql("-w", str(tmp_path / "ws"), "shell", cwd=tmp_path, stdin=script)
    assert out.returncode == 0
    assert "42" in out.stdout
    assert "error:" in out.stderr


def test_workspace_from_environment(tmp_path):
    env_ws = tmp_path / "from-env"
    env = {**os.environ, "PIXQL_WORKSPACE": str(env_ws)}
    out = subprocess.run([sys.executable, "-m", "pixql.cli.main", "sql", "SELECT 1 AS one"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert (env_ws / "pixql.duckdb").is_file()


def test_demo_command_runs_end_to_end(tmp_path):
    out = pixql("demo", "--dir", str(tmp_path / "demo"), "--epochs", "1", "--seconds", "5",
                cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "demo" / "demo_results.png").is_file()
