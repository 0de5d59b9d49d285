"""docs/clients/python.md and docs/clients/cli.md run as written, against ``pixql serve``
started with the page's own command (the notebook page runs in tests/notebook)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.served import clean_env, pixql_serve
from tests.conftest import make_image_folder

DOCS = Path(__file__).resolve().parents[2] / "docs" / "clients"


def blocks(page: str, kind: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S)


def serve_args(page: str) -> tuple[str, list[str]]:
    """The workspace and the flags of the page's ``pixql -w DIR serve ...`` block."""
    serve = [b for b in blocks(page, "bash") if " serve" in b]
    assert len(serve) == 1, serve
    args = shlex.split(serve[0])
    assert args[:2] == ["pixql", "-w"]
    assert args[3] == "serve"
    return args[2], args[4:]


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIXQL_API_KEY", raising=False)
    monkeypatch.delenv("PIXQL_WORKSPACE", raising=False)


def test_python_page(tmp_path, monkeypatch, capsys):
    name, flags = serve_args("python.md")
    make_image_folder(tmp_path / name / "shapes", per_class=3)
    monkeypatch.chdir(tmp_path)
    with pixql_serve(tmp_path / name, *flags) as served:
        namespace: dict[str, object] = {"__name__": "__docs__"}
        for code in blocks("python.md", "python"):
            exec(compile(code, "docs/clients/python.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert f"RemoteWorkspace({served.record.url} (pid {served.proc.pid}))" in out
    documented = re.search(r"print\(e.line, e.col\)\s+# (\d+ \d+)",
                           (DOCS / "python.md").read_text(encoding="utf-8"))
    assert documented is not None
    assert documented.group(1) in out.splitlines()


def test_cli_page(tmp_path):
    name, flags = serve_args("cli.md")
    make_image_folder(tmp_path / name / "shapes", per_class=3)
    bin_dir = os.path.dirname(sys.executable)  # the venv's `pixql` script
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    with pixql_serve(tmp_path / name, *flags):
        outputs = []
        for code in blocks("cli.md", "bash"):
            if " serve" in code:
                continue
            out = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, env=env,
                                 capture_output=True, encoding="utf-8", timeout=300)
            assert out.returncode == 0, (code, out.stderr)
            assert "lock" not in out.stderr.lower()
            outputs.append(out.stdout)
    assert "wrote 4 image(s)" in outputs[0]
    assert (tmp_path / name / "print_image.png").is_file()
    assert "shapes/circle/001.png" in outputs[0]
    assert "circle   | 3" in outputs[1]
