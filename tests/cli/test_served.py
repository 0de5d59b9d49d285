"""``pixql sql`` / ``pixql shell`` on a workspace that ``pixql serve`` serves: they go through
the server (no lock error), with the same output as the embedded engine."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.client.served import SEARCH, TUTORIAL, clean_env, make_tutorial_data, pixql_serve

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.client.served import Served

KEY = "cli-test-key"


def pixql(*args: str, cwd: Path, stdin: str | None = None,
          **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pixql.cli.main", *args], cwd=cwd,
                          env=clean_env(**env), input=stdin, capture_output=True, encoding="utf-8",
                          timeout=180)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    ws = tmp_path_factory.mktemp("cli-served") / "ws"
    make_tutorial_data(ws)
    with pixql_serve(ws, "--api-key", KEY) as s:  # keys enable SQL over HTTP
        yield s


def test_sql_runs_the_tutorial_through_the_server(served, tmp_path):
    ws = served.record.workspace
    script = ";\n".join([*TUTORIAL, SEARCH])
    remote = pixql("-w", ws, "sql", "--api-key", KEY, "--all", script, cwd=tmp_path)
    assert remote.returncode == 0, remote.stderr
    local_ws = tmp_path / "local"
    make_tutorial_data(local_ws)
    local = pixql("-w", str(local_ws), "sql", "--all", script, cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    assert remote.stdout == local.stdout
    assert "lock" not in remote.stderr.lower()


def test_shell_uses_the_server_with_the_key_from_the_environment(served, tmp_path):
    ws = served.record.workspace
    script = "CREATE OR REPLACE TABLE answers AS\n SELECT 41 + 1 AS answer;\n" \
             "SELECT * FROM answers;\nSELEC oops;\n"
    out = pixql("-w", ws, "shell", cwd=tmp_path, stdin=script, PIXQL_API_KEY=KEY)
    assert out.returncode == 0
    assert "42" in out.stdout
    assert 'syntax error at or near "SELEC"' in out.stderr
    assert "lock" not in out.stderr.lower()


def test_errors_keep_line_and_column(served, tmp_path):
    out = pixql("-w", served.record.workspace, "sql", "--api-key", KEY,
                "SELECT 1;\nCONVERT USING m OPTIONS (x=1) FROM t", cwd=tmp_path)
    assert out.returncode == 1
    assert "line 2, column" in out.stderr
    assert "^" in out.stderr


def test_print_image_writes_a_contact_sheet(served, tmp_path):
    out = pixql("-w", served.record.workspace, "sql", "--api-key", KEY,
                "PRINT IMAGE AS SELECT * FROM mnist_train LIMIT 3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "wrote 3 image(s)" in out.stdout


def test_without_the_key_says_what_to_do(served, tmp_path):
    out = pixql("-w", served.record.workspace, "sql", "SELECT 1", cwd=tmp_path)
    assert out.returncode == 1
    assert served.record.url in out.stderr
    assert "--api-key" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_server_url_works_as_the_workspace(served, tmp_path):
    out = pixql("-w", served.record.url, "sql", "--api-key", KEY, "SELECT 6 * 7 AS answer",
                cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "42" in out.stdout
