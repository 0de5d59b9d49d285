"""The magic in a real Jupyter kernel (skipped unless ipykernel and jupyter_client are
installed): progress bars while CONVERT runs, PRINT IMAGE's HTML, errors without tracebacks."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import make_image_folder

if TYPE_CHECKING:
    from pathlib import Path

pytest.importorskip("ipykernel")
manager = pytest.importorskip("jupyter_client.manager")

WIDGET = "application/vnd.jupyter.widget-view+json"


def run(kc: Any, code: str) -> list[tuple[str, dict[str, Any]]]:
    """Execute ``code``; its iopub messages (type, content) until the kernel is idle."""
    msg_id = kc.execute(code)
    out = []
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return out
        out.append((msg["msg_type"], msg["content"]))


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("PIXQL_PROGRESS", "CI")}
    env["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipy"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    km, kc = manager.start_new_kernel(kernel_name="python3", env=env)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_progress_images_and_errors_in_a_kernel(kernel: Any, tmp_path: Path) -> None:
    make_image_folder(tmp_path / "ws" / "shapes", per_class=25)
    for code in ("%load_ext pixql", f"%pixql -w '{tmp_path / 'ws'}'",
                 "%pixql COPY images OPTIONS (if_exists='replace') FROM 'shapes/'",
                 "%pixql BUILD MODEL px USING Pixels AS SELECT * FROM images"):
        assert not [c for t, c in run(kernel, code) if t == "error"], code
    msgs = run(kernel, "%%pixql\nCONVERT USING px OPTIONS (batch_size=8) AS SELECT * FROM images")
    widgets = [c for t, c in msgs if t == "display_data" and WIDGET in c["data"]]
    text_bars = [c for t, c in msgs if t == "stream" and "CONVERT px" in c["text"]]
    assert widgets or text_bars  # a tqdm bar: a widget with ipywidgets, else text
    assert [t for t, _ in msgs].count("execute_result") == 1

    msgs = run(kernel, "%%pixql\nPRINT IMAGE AS (SELECT image_path, search_result FROM ("
                       "SEARCH IMAGE USING px OPTIONS (search_by='image', search_input="
                       "'shapes/cross/003.png', emb_col='convert_result', top_k=4) "
                       "AS SELECT * FROM images))")
    html = [c["data"]["text/html"] for t, c in msgs if t == "display_data"]
    assert len(html) == 1
    assert html[0].count("<img ") == 4
    assert html[0].index("shapes/cross/003.png") < html[0].index("search_result=")

    errors = [c for t, c in run(kernel, "%%pixql\nSELECT 1;\nBUILD MODEL USING x") if t == "error"]
    assert len(errors) == 1
    assert len(errors[0]["traceback"]) == 3
    assert "line 2, column" in errors[0]["traceback"][0]
