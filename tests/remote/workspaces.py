"""Workspaces whose images are also reachable by URL, for the URL tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pixql
from tests.conftest import make_image_folder

if TYPE_CHECKING:
    from pathlib import Path


def open_ws(root: Path, **url_settings: Any) -> Any:
    """A workspace with table t (4 images under imgs/, by path) and model q (Pixels)."""
    ws = pixql.connect(root, progress=False, url_settings=url_settings)
    if not (root / "imgs").exists():
        make_image_folder(root / "imgs", per_class=2, shapes=("a", "b"))
    if ws.catalog.find_model("q") is None:
        ws.sql("COPY t OPTIONS (if_exists='replace') FROM 'imgs/'")
        ws.sql("BUILD MODEL q USING Pixels OPTIONS (image_size=8) AS SELECT * FROM t")
    return ws


def url_table(ws: Any, base: str, extra: tuple[str, ...] = ()) -> None:
    """Table u: t's images by URL (``base`` + path under imgs/), plus ``extra`` URLs."""
    ws.sql(f"CREATE OR REPLACE TABLE u AS SELECT '{base}/' || substr(image_path, 6) AS "
           "image_path, label FROM t")
    for url in extra:
        ws.sql(f"INSERT INTO u VALUES ('{url}', 'x')")
