"""``%pixql`` on a workspace that ``pixql serve`` serves (a real subprocess), the
``%thanosql`` aliases, and docs/clients/notebook.md run cell by cell."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from pixql.client.remote import RemoteWorkspace
from pixql.errors import ParseError
from pixql.notebook.magic import PixqlMagicError, get_workspace
from tests.client.served import pixql_serve
from tests.conftest import make_image_folder
from tests.notebook.conftest import Shell

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.client.served import Served

DOC = Path(__file__).resolve().parents[2] / "docs" / "clients" / "notebook.md"
KEY = "notebook-test-key"


def doc_blocks(kinds: str = "python|sql") -> list[tuple[str, str]]:
    return re.findall(rf"```({kinds})\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    ws = tmp_path_factory.mktemp("nb-served") / "my-workspace"
    make_image_folder(ws / "shapes", per_class=3)
    with pixql_serve(ws, "--api-key", KEY) as s:
        yield s


@pytest.fixture
def sh(ipython: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shell]:
    monkeypatch.delenv("PIXQL_API_KEY", raising=False)
    shell = Shell(ipython)
    yield shell
    shell.cell("%pixql close")
    get_magics_key_reset(ipython)


def get_magics_key_reset(ip: Any) -> None:
    from pixql.notebook.magic import get_magics

    get_magics(ip).api_key = None


def test_docs_cells_run_on_a_served_workspace(sh, tmp_path, monkeypatch):
    """The page's cells, in order, against `pixql serve` started as the page says."""
    (serve,) = [b for k, b in doc_blocks("bash")]
    args = shlex.split(serve)
    assert args[:2] == ["pixql", "-w"]
    assert args[3] == "serve"
    ws = tmp_path / args[2]
    make_image_folder(ws / "shapes", per_class=3)
    monkeypatch.chdir(tmp_path)
    with pixql_serve(ws, *args[4:]) as s:
        outputs = [sh.cell(code) for _, code in doc_blocks()]
        for out, (_, code) in zip(outputs, doc_blocks(), strict=True):
            assert out.error is None, (code, out.stdout)
        assert isinstance(get_workspace(sh.ip), RemoteWorkspace)
        assert f"served by {s.record.url} (pid {s.proc.pid})" in outputs[0].stdout
        grid = [o for o in outputs if o.images()]
        assert next(t for t, _ in grid[0].images()) == "shapes/circle/001.png"
        assert len(grid[0].images()) == 4
        counts = outputs[-2].value
        assert counts.to_dict("list") == {"label": ["circle", "cross", "square", "triangle"],
                                          "n": [3, 3, 3, 3]}
        assert outputs[-1].value.shape == (3, 2)


def test_magic_needs_the_key_and_says_so(sh, served):
    out = sh.cell(f"%pixql -w '{served.record.workspace}'")
    assert isinstance(out.error, PixqlMagicError)
    assert served.record.url in out.stdout
    assert "API key" in out.stdout
    assert "lock" not in out.stdout.lower()
    out = sh.cell(f"%pixql -k {KEY} -w '{served.record.workspace}'")
    assert out.error is None, out.stdout
    out = sh.cell("%pixql SELECT count(*) AS n FROM information_schema.tables")
    assert isinstance(out.value, pd.DataFrame)


def test_errors_keep_the_caret(sh, served):
    sh.cell(f"%pixql -k {KEY} -w '{served.record.workspace}'")
    out = sh.cell("%%pixql\nSELECT 1;\nBUILD MODEL USING Pixels AS SELECT 1")
    assert isinstance(out.error, PixqlMagicError)
    assert isinstance(out.error.error, ParseError)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("ParseError: line 2, column")
    assert lines[2].index("^") == lines[1].index("Pixels")


def test_thanosql_setup_lines(sh, served):
    port = served.record.url.rsplit(":", 1)[1]
    out = sh.cell(f"%thanosql API_TOKEN={KEY}")
    assert out.error is None, out.stdout
    out = sh.cell(f"%thanosql ws://127.0.0.1:{port}/ws/v1/query")
    assert out.error is None, out.stdout
    ws = get_workspace(sh.ip)
    assert isinstance(ws, RemoteWorkspace)
    assert ws.url == served.record.url
    out = sh.cell("%%thanosql\nSELECT 6 * 7 AS answer")
    assert out.value.to_dict("list") == {"answer": [42]}


def test_thanosql_aliases_work_locally_too(sh, tmp_path):
    assert sh.cell(f"%pixql -w '{tmp_path / 'ws'}'").error is None
    out = sh.cell("%%thanosql\nCREATE TABLE t AS SELECT 1 AS a;\nSELECT a + 1 AS b FROM t")
    assert out.value.to_dict("list") == {"b": [2]}
    out = sh.cell("%thanosql SELECT count(*) AS n FROM t")
    assert out.value.to_dict("list") == {"n": [1]}


def test_a_later_thanosql_extension_takes_the_name(ipython):
    """ThanoSQL's own extension loaded after pixql owns %thanosql (the last one wins)."""
    from pixql.notebook.magic import load_ipython_extension

    seen: list[str] = []
    ipython.register_magic_function(lambda line, cell=None: seen.append(line), "line_cell",
                                    "thanosql")
    ipython.run_line_magic("thanosql", "hello")
    assert seen == ["hello"]
    load_ipython_extension(ipython)  # pixql again: its alias is back
    assert ipython.find_line_magic("thanosql").__self__.__class__.__name__ == "PixqlMagics"


SECOND = [
    "BUILD MODEL second USING Pixels OPTIONS (image_size=8) AS SELECT * FROM mnist_train",
    "CONVERT USING second OPTIONS (result_col='second_result') AS SELECT * FROM mnist_test",
]


def test_every_client_at_once(sh, tmp_path):
    """A notebook, pixql.connect, `pixql sql` and `pixql shell` share one served workspace
    (all connected at the same time) and get what the embedded engine gives."""
    import subprocess
    import sys

    import numpy as np

    import pixql
    from tests.client.served import SEARCH, TUTORIAL, clean_env, make_tutorial_data

    search2 = SEARCH.replace("my_image_search_model", "second").replace(
        "emb_col='convert_result'", "emb_col='second_result'")
    local_ws = tmp_path / "local"
    make_tutorial_data(local_ws)
    with pixql.connect(local_ws, progress=False) as local:
        for statement in TUTORIAL + SECOND:
            local.sql(statement)
        expected = [local.sql(SEARCH), local.sql(search2)]
    ws = tmp_path / "ws"
    make_tutorial_data(ws)
    with pixql_serve(ws, "--enable-sql"):
        for statement in TUTORIAL:  # the notebook builds the first model
            out = sh.cell(f"%%pixql -w '{ws}'\n{statement}")
            assert out.error is None, out.stdout
        with pixql.connect(ws) as db:  # a script builds the second, the notebook still open
            assert isinstance(db, RemoteWorkspace)
            for statement in SECOND:
                db.sql(statement)
            cli = [subprocess.run(
                [sys.executable, "-m", "pixql.cli.main", "-w", str(ws), *args],
                input=stdin, env=clean_env(), capture_output=True, encoding="utf-8", timeout=180)
                for args, stdin in ((["sql", SEARCH], None), (["shell"], search2 + ";\n"))]
            frames = [db.sql(SEARCH).df(), sh.cell(f"%%pixql\n{search2}").value]
    for out, want in zip(cli, expected, strict=True):
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""
        assert want.render() in out.stdout
    for frame, want in zip(frames, expected, strict=True):
        local_frame = want.df()
        assert list(frame.columns) == list(local_frame.columns)
        assert list(frame["image_path"]) == list(local_frame["image_path"])
        assert np.allclose(frame["search_result"], local_frame["search_result"])
