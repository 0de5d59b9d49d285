"""The docs' code blocks run as written; the generated reference pages are current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), flags=re.S)


def test_clip_tutorial_runs_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXQL_OFFLINE", "1")
    monkeypatch.setenv("PIXQL_CLIP_MODELS_DIR", "")  # restored after the tutorial sets it
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks("tutorial-clip.md")
    assert blocks
    for code in blocks:
        exec(compile(code, "tutorial-clip.md", "exec"), {"__name__": "__tutorial__"})


def test_generated_reference_pages_are_current():
    script = Path(__file__).resolve().parents[2] / "scripts" / "gen_docs.py"
    out = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                         encoding="utf-8", timeout=120)
    if out.returncode != 0:
        pytest.fail(out.stderr)
