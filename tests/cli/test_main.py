"""The pixql command: sql, shell, errors; the reference tutorial with USING Pixels."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest

from pixql.cli.main import build_parser, main
from tests.conftest import make_image_folder
from tests.server.test_serve import free_port, wait_until_healthy

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
                          input=stdin, capture_output=True, encoding="utf-8", timeout=120)


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
                         cwd=tmp_path, env=env, capture_output=True, encoding="utf-8", timeout=60)
    assert out.returncode == 0
    assert (env_ws / "pixql.duckdb").is_file()


def test_demo_command_runs_end_to_end(tmp_path):
    out = pixql("demo", "--dir", str(tmp_path / "demo"), "--epochs", "1", "--seconds", "5",
                cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "demo" / "demo_results.png").is_file()


# ---------------------------------------------------------------------- where options go
@pytest.mark.parametrize("command", [["sql", "SELECT 1"], ["shell"], ["demo"], ["serve"]])
def test_workspace_option_goes_before_or_after_the_command(command):
    parser = build_parser()
    before = parser.parse_args(["-w", "A", *command])
    after = parser.parse_args([command[0], "-w", "B", *command[1:]])
    both = parser.parse_args(["-w", "A", command[0], "--workspace", "B", *command[1:]])
    neither = parser.parse_args(command)
    assert (before.workspace, after.workspace, both.workspace) == ("A", "B", "B")
    assert neither.workspace == os.environ.get("PIXQL_WORKSPACE")


def test_sql_and_shell_take_the_workspace_after_the_command(tmp_path):
    ws = tmp_path / "ws"
    out = pixql("sql", "-w", str(ws), "CREATE TABLE t AS SELECT 42 AS answer", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    out = pixql("shell", "--workspace", str(ws), cwd=tmp_path, stdin="SELECT * FROM t;\n")
    assert out.returncode == 0, out.stderr
    assert "42" in out.stdout
    assert not (tmp_path / "pixql-workspace").exists()


def test_serve_takes_the_workspace_and_allowed_dirs_after_the_command(tmp_path):
    """``pixql serve -w WS --allow-dir DIR``: SQL over HTTP runs in WS and may read DIR (and
    only the folders named: $PIXQL_ALLOWED_DIRS is replaced, not extended)."""
    ws, shared, other = tmp_path / "ws", tmp_path / "shared", tmp_path / "from-env"
    for folder in (shared, other):
        folder.mkdir()
        (folder / "a.csv").write_text("x\n7\n", encoding="utf-8")
    port = free_port()
    env = {**os.environ, "PIXQL_PROGRESS": "0", "PIXQL_ALLOWED_DIRS": str(other)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixql.cli.main", "serve", "-w", str(ws), "--port", str(port),
         "--enable-sql", "--allow-dir", str(shared)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, encoding="utf-8")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, base)
        r = httpx.post(f"{base}/sql", json={"query": f"SELECT x FROM read_csv('{shared}/a.csv')"})
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == [[7]]
        r = httpx.post(f"{base}/sql", json={"query": f"SELECT x FROM read_csv('{other}/a.csv')"})
        assert r.status_code == 400, r.text
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert (ws / "pixql.duckdb").is_file()


# ---------------------------------------------------------------------- a full disk
@pytest.mark.parametrize(("where", "error"), [
    ("pixql.execution.build.write_config", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
    ("pixql.catalog.artifacts.ArtifactStore.commit_dir",
     OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))),
])
def test_a_full_disk_during_build_is_a_clear_message(tmp_path, monkeypatch, capsys, where,
                                                     error):
    ws = tmp_path / "ws"
    make_image_folder(ws / "data", per_class=1)
    assert main(["-w", str(ws), "sql", "COPY t OPTIONS (if_exists='replace') FROM 'data/'"]) == 0

    def disk_full(*args, **kwargs):
        raise error

    monkeypatch.setattr(where, disk_full)
    capsys.readouterr()
    code = main(["sql", "-w", str(ws), "BUILD MODEL px USING Pixels AS SELECT * FROM t"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"error: the disk holding {ws} is full ({error.strerror}); "
                          "nothing was changed."), err
    assert "Free some space there" in err
    assert "Traceback" not in err
    monkeypatch.undo()
    assert main(["-w", str(ws), "sql", "SELECT count(*) AS n FROM (LIST MODEL)"]) == 0
    assert capsys.readouterr().out.splitlines()[2].strip() == "0"


def test_engine_flag_picks_the_compute_engine(tmp_path, monkeypatch, capsys):
    """--engine ray reaches CONVERT (here: Ray is made unimportable, so the message that
    names the extra proves it was asked for); --engine local runs here."""
    ws = tmp_path / "ws"
    make_image_folder(ws / "data", per_class=1)
    setup = ("COPY t OPTIONS (if_exists='replace') FROM 'data/'; "
             "BUILD MODEL m USING Pixels AS SELECT * FROM t")
    assert main(["-w", str(ws), "sql", setup]) == 0
    convert = "CONVERT USING m OPTIONS (result_col='e') AS SELECT * FROM t"
    monkeypatch.setitem(sys.modules, "ray", None)
    capsys.readouterr()
    assert main(["-w", str(ws), "sql", "--engine", "ray", convert]) == 1
    assert "pip install 'pixql[ray]'" in capsys.readouterr().err
    monkeypatch.setenv("PIXQL_ENGINE", "ray")
    assert main(["-w", str(ws), "sql", "--engine", "local", convert]) == 0
