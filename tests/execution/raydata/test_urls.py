"""CONVERT of URL values with engine='ray' (issue 13): the workers fetch the images under
the driver's URL settings (SSRF rules included) and store the same column as a local
CONVERT; the per-node probe checks a sample of the URLs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pixql.errors import ImageError
from pixql.execution.raydata import worker
from pixql.remote.sources import UrlSettings
from tests.conftest import make_image_folder
from tests.remote.servers import serve_folder
from tests.remote.workspaces import open_ws, url_table

if TYPE_CHECKING:
    from pathlib import Path

RAY = "engine='ray', num_workers=2, cpus_per_worker=0.5"


def rows(ws: Any, col: str) -> list[tuple[Any, ...]]:
    return ws.sql(f"SELECT image_path, {col}, {col}__pixql FROM u ORDER BY image_path"
                  ).fetchall()


def test_ray_converts_urls_like_local(tmp_path: Path, ray_local: Any) -> None:
    root = tmp_path / "ws"
    ws = open_ws(root, url_allow_hosts=["127.0.0.1"])
    with serve_folder(root / "imgs") as base:
        url_table(ws, base, extra=(f"{base}/gone.png",))
        ws.sql("CONVERT USING q OPTIONS (result_col='e_local', on_error='null') "
               "AS SELECT * FROM u")
        res = ws.sql(f"CONVERT USING q OPTIONS (result_col='e_ray', on_error='null', {RAY}) "
                     "AS SELECT * FROM u")
        assert "computed by engine 'ray'" in res.message
        assert "1 rows could not be read and hold NULL" in res.message
        assert rows(ws, "e_ray") == rows(ws, "e_local")  # vectors, NULL, provenance
        with pytest.raises(ImageError, match=r"gone\.png: .*HTTP 404"):
            ws.sql(f"CONVERT USING q OPTIONS (result_col='e_fail', {RAY}) AS SELECT * FROM u")
        ws.close()


def test_probe_checks_url_samples(tmp_path: Path) -> None:
    """The node probe (run here as a plain function) reports a URL this node may not
    reach under the driver's settings, and accepts it once allow-listed."""
    pytest.importorskip("ray")
    make_image_folder(tmp_path / "imgs", per_class=1, shapes=("a",))
    with serve_folder(tmp_path / "imgs") as base:
        url = f"{base}/a/000.png"
        refused = worker.probe("", None, "q", [url], UrlSettings())
        allowed = worker.probe("", None, "q", [url], UrlSettings(url_allow_hosts=("127.0.0.1",)))
    assert refused["unreadable"] == [url]
    assert allowed["unreadable"] == []
