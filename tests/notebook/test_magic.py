"""``%pixql`` / ``%%pixql`` in a real IPython shell: the ThanoSQL tutorial cells, results as
DataFrames, PRINT IMAGE grids, options, and errors without tracebacks."""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from IPython.core.error import UsageError

from pixql.notebook.magic import PixqlMagicError, get_workspace
from tests.conftest import make_image_folder

if TYPE_CHECKING:
    from pathlib import Path

SEARCH = """SEARCH IMAGE USING my_image_search_model
OPTIONS (search_by='image', search_input='data/test/circle/001.png',
         emb_col='convert_result', result_col='search_result'{top_k})
AS SELECT * FROM mnist_test"""

TUTORIAL = [  # (cell, expected DataFrame shape, or None when the cell shows no frame)
    ("COPY mnist_train OPTIONS (if_exists='replace') FROM 'data/train/'", (1, 2)),
    ("COPY mnist_test OPTIONS (if_exists='replace') FROM 'data/test/'", (1, 2)),
    ("SELECT * FROM mnist_train LIMIT 5", (5, 3)),
    ("BUILD MODEL my_image_search_model USING Pixels\n"
     "OPTIONS (image_col='image_path', overwrite=True)\nAS SELECT * FROM mnist_train", None),
    ("CONVERT USING my_image_search_model\n"
     "OPTIONS (image_col='image_path', result_col='convert_result')\n"
     "AS SELECT * FROM mnist_test", (12, 4)),
    (SEARCH.format(top_k=""), (12, 5)),
]


@pytest.fixture
def tutorial_ws(shell):
    root = get_workspace(shell.ip).root
    make_image_folder(root / "data" / "train", per_class=5)
    make_image_folder(root / "data" / "test", per_class=3, size=32)
    return shell


def test_thanosql_tutorial_cells(tutorial_ws):
    shell = tutorial_ws
    for source, shape in TUTORIAL:
        out = shell.cell("%%pixql\n" + source)
        assert out.error is None, out.stdout
        assert isinstance(out.value, pd.DataFrame)
        assert shell.ns["_"] is out.value  # the returned frame is Out / _
        if shape is not None:
            assert out.value.shape == shape, source
    search = shell.ns["_"]
    assert list(search.columns) == ["image_path", "filename", "label", "convert_result",
                                    "search_result"]
    assert search["image_path"][0] == "data/test/circle/001.png"
    assert list(search["search_result"]) == sorted(search["search_result"], reverse=True)

    out = shell.cell("%%pixql\nPRINT IMAGE AS (\n  SELECT image_path, search_result FROM (\n"
                     + SEARCH.format(top_k=", top_k=4") + "))")
    assert out.error is None, out.stdout
    assert out.value is None
    assert len(out.html) == 1
    shown = out.images()
    assert [title for title, _ in shown] == list(search["image_path"][:4])  # similarity order
    captions = re.findall(r"search_result=([0-9.]+)", out.html[0])
    assert [float(c) for c in captions] == pytest.approx(list(search["search_result"][:4]),
                                                         abs=1e-6)
    from PIL import Image

    assert Image.open(io.BytesIO(shown[0][1])).size == (32, 32)  # small: not enlarged
    assert "image-rendering:pixelated" in out.html[0]
    assert "width:240px" in out.html[0]


def test_line_magic_out_variable_quiet_and_last_result(shell):
    out = shell.cell("x = %pixql SELECT 42 AS answer\nx")
    assert out.value["answer"].tolist() == [42]
    out = shell.cell("%%pixql -o res -q\nCREATE TABLE t AS SELECT range AS i FROM range(3);\n"
                     "SELECT i * 10 AS j FROM t ORDER BY i")
    assert out.value is None
    assert out.html == []
    assert "j" not in out.stdout
    res = shell.ns["res"]
    assert res.columns == ["j"]
    assert res.fetchall() == [(0,), (10,), (20,)]
    out = shell.cell("%%pixql --out res2\nSELECT 1 AS a; SELECT 'two' AS b")
    assert list(out.value.columns) == ["b"]
    assert shell.ns["res2"].fetchone() == ("two",)


def test_statement_without_rows_prints_its_message(shell):
    for ddl in ("CREATE TABLE empty_t (a INTEGER)", "SET threads = 2", "DROP TABLE empty_t"):
        out = shell.cell("%%pixql\n" + ddl)
        assert out.value is None, ddl
        assert out.stdout.strip() == "Success", ddl
    shell.cell("%pixql BUILD MODEL px USING Pixels AS SELECT 'x.png' AS image_path WHERE false")
    out = shell.cell("%pixql DELETE MODEL px")
    assert out.value is None
    assert out.stdout.strip() == "deleted model px"
    out = shell.cell("%pixql SELECT 1 AS a WHERE false")  # an empty result is still a frame
    assert isinstance(out.value, pd.DataFrame)
    assert list(out.value.columns) == ["a"]


def test_parse_error_shows_message_and_caret_but_no_traceback(shell):
    out = shell.cell("%%pixql\nSELECT 1;\nBUILD MODEL USING Pixels AS SELECT 1")
    assert isinstance(out.error, PixqlMagicError)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("ParseError: line 2, column")
    assert lines[1].strip() == "BUILD MODEL USING Pixels AS SELECT 1"
    assert lines[2].strip() == "^"
    assert lines[2].index("^") == lines[1].index("Pixels")
    assert "Traceback" not in out.stdout
    assert "File " not in out.stdout


def test_engine_and_duckdb_errors_are_short(shell):
    out = shell.cell("%pixql CONVERT USING nope AS SELECT 1")
    assert out.stdout.startswith("NotFoundError: unknown model 'nope'")
    out = shell.cell("%pixql SELECT * FROM no_such_table")
    assert out.stdout.startswith("CatalogException:")
    assert "no_such_table" in out.stdout
    assert "Traceback" not in out.stdout


@pytest.mark.parametrize(("source", "message"), [
    ("%pixql -x SELECT 1", "unknown option '-x'"),
    ("%pixql --max-images 0 SELECT 1", "bad value '0' for option --max-images"),
    ("%pixql -o 1abc SELECT 1", "bad value '1abc' for option -o"),
    ("%pixql -o", "option -o needs a value"),
    ("%%pixql SELECT 1\nSELECT 2", "unexpected text after the %%pixql options"),
    ("%%pixql\n  \n", "nothing to run"),
])
def test_usage_errors(shell, source, message):
    out = shell.cell(source)
    assert isinstance(out.error, UsageError)
    assert message in out.stderr + out.stdout


def test_help_connect_and_default_workspace(ipython, tmp_path, monkeypatch):
    from tests.notebook.conftest import Shell

    sh = Shell(ipython)
    assert "--max-images N" in sh.cell("%pixql --help").stdout
    sh.cell("%pixql close")
    assert "no workspace open" in sh.cell("%pixql workspace").stdout
    monkeypatch.setenv("PIXQL_WORKSPACE", str(tmp_path / "from-env"))
    out = sh.cell("%pixql SELECT 1 AS one")
    assert f"using workspace {tmp_path / 'from-env'}" in out.stdout
    assert (tmp_path / "from-env" / "pixql.duckdb").is_file()
    out = sh.cell(f"%pixql connect '{tmp_path / 'other dir'}'")
    assert f"workspace {tmp_path / 'other dir'}" in out.stdout
    assert get_workspace(ipython).root == tmp_path / "other dir"
    out = sh.cell(f"%pixql -w \"{tmp_path / 'third dir'}\" SELECT 3 AS three")
    assert out.value["three"].tolist() == [3]
    assert get_workspace(ipython).root == tmp_path / "third dir"
    sh.cell("%pixql close")


def test_thumbnail_table_and_image_cap(shell):
    root = get_workspace(shell.ip).root
    make_image_folder(root / "shapes", per_class=6)
    shell.cell("%pixql COPY images OPTIONS (if_exists='replace') FROM 'shapes/'")
    out = shell.cell("%%pixql --thumbs\nSELECT image_path, label FROM images "
                     "ORDER BY image_path LIMIT 3")
    assert out.value is None
    assert len(out.html) == 1
    assert "<table" in out.html[0]
    assert [t for t, _ in out.images()] == ["shapes/circle/000.png", "shapes/circle/001.png",
                                           "shapes/circle/002.png"]
    out = shell.cell("%%pixql --max-images 5\nPRINT IMAGE AS SELECT * FROM images")
    assert len(out.images()) == 5
    assert "showing the first 5 of 24 images" in out.html[0]


def test_missing_images_and_unsafe_text(shell):
    out = shell.cell("%%pixql\nPRINT IMAGE AS SELECT 'gone.png' AS image_path, "
                     "'<script>alert(1)</script>' AS label")
    assert out.error is None
    assert "image not found" in out.html[0]
    assert "<script>" not in out.html[0]
    assert "&lt;script&gt;" in out.html[0]


def test_load_ext_is_light_in_a_fresh_ipython(tmp_path: Path):
    """``%load_ext pixql`` in a separate ``ipython`` process imports neither torch nor
    fastapi; a line magic works there."""
    import subprocess
    import sys

    code = (f"%load_ext pixql\n%pixql -w '{tmp_path / 'ws'}'\n"
            "df = %pixql SELECT 6 * 7 AS answer\n"
            "import sys; print('RESULT', df['answer'][0], 'torch' in sys.modules, "
            "'fastapi' in sys.modules)")
    proc = subprocess.run(
        [sys.executable, "-m", "IPython", "--quick", "--no-banner", "--colors=nocolor",
         "-c", code], capture_output=True, encoding="utf-8", timeout=120,
        env={**__import__("os").environ, "IPYTHONDIR": str(tmp_path / "ipy")})
    assert "RESULT 42 False False" in proc.stdout, proc.stdout + proc.stderr
