"""The search page's routes: ``GET /``, ``/ui/tables``, ``/ui/search`` and ``/ui/image``."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from PIL import Image

import pixql
from pixql.errors import CatalogError
from pixql.server.routes.ui import list_tables, search
from pixql.server.ui_files import UPLOAD_DIR
from tests.conftest import make_image_folder
from tests.server.conftest import VERSION

if TYPE_CHECKING:
    from pathlib import Path

QUERY = "shapes/cross/001.png"
ODD = 'odd "name" t'
KEY = "ui-key"


@pytest.fixture(scope="module")
def ui_ws(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path) -> Any:
    """shapes (4 × 3) with ``convert_result`` (Pixels) and ``clip_emb`` (tiny CLIP), a copy
    under an awkward name, a large photo and a file outside the workspace."""
    tmp = tmp_path_factory.mktemp("ui")
    root = tmp / "ws"
    make_image_folder(root / "shapes", per_class=3)
    Image.new("RGB", (300, 200), (200, 120, 40)).save(root / "photo.jpg")
    (root / "notes.txt").write_text("not an image", encoding="utf-8")
    Image.new("RGB", (8, 8)).save(tmp / "outside.png")
    os.symlink(tmp / "outside.png", root / "escape.png")
    os.symlink(root / "shapes" / "circle" / "000.png", root / "inside.png")
    odd = '"' + ODD.replace('"', '""') + '"'
    with pixql.connect(root, progress=False) as db:
        db.sql("COPY images OPTIONS (if_exists='replace') FROM 'shapes/';"
               "BUILD MODEL px USING Pixels OPTIONS (image_size=8) AS SELECT * FROM images;"
               "CONVERT USING px AS SELECT * FROM images;"
               f"BUILD MODEL c USING CLIP OPTIONS (path='{tiny_models_dir / VERSION}');"
               "CONVERT USING c OPTIONS (result_col='clip_emb') AS SELECT * FROM images;"
               f"CREATE TABLE {odd} AS SELECT image_path, label FROM images;"
               f"CONVERT USING px AS SELECT * FROM {odd}")
    ws = pixql.connect(root, progress=False, confined=True)
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def ui(start_server: Any, ui_ws: Any) -> httpx.Client:
    base, _ = start_server(workspace=ui_ws, max_body_bytes=50_000, max_image_pixels=100_000)
    with httpx.Client(base_url=base, timeout=30) as c:
        yield c


def png(path: Path) -> bytes:
    return path.read_bytes()


def post_search(ui: httpx.Client, *, image: bytes | None = None, text: str | None = None,
                table: str = "images", emb_col: str = "convert_result", top_k: int = 5,
                **kw: Any) -> httpx.Response:
    data = {"table": table, "emb_col": emb_col, "top_k": str(top_k)}
    if text is not None:
        data["text"] = text
    files = {"image": ("query.png", image, "image/png")} if image is not None else None
    return ui.post("/ui/search", data=data, files=files, **kw)


def sql_search(ws: Any, by: str, value: str, emb_col: str, model: str, k: int) -> list[tuple]:
    return ws.sql(f"SELECT image_path, search_result FROM (SEARCH IMAGE USING {model} OPTIONS "
                  f"(search_by='{by}', search_input='{value}', emb_col='{emb_col}', "
                  f"top_k={k}) AS SELECT * FROM images)").fetchall()


# ------------------------------------------------------------------------------ the page
def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_page_inlines_its_assets_under_a_strict_csp(ui: httpx.Client) -> None:
    r = ui.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html, csp = r.text, r.headers["content-security-policy"]
    assert "/docs" in html
    assert "pixql:" not in html
    assert pixql.__version__ in html
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert "/ui/search" in script
    assert ".tile" in style
    assert f"script-src '{_csp_hash(script)}'" in csp
    assert f"style-src '{_csp_hash(style)}'" in csp
    assert "default-src 'none'" in csp
    assert "connect-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"\son\w+=", html), "inline handlers would be blocked by the CSP"


def test_ui_routes_are_documented(ui: httpx.Client) -> None:
    paths = ui.get("/openapi.json").json()["paths"]
    assert {"/ui/tables", "/ui/search", "/ui/image"} <= set(paths)
    assert "/" not in paths


# ------------------------------------------------------------------------------ tables
def test_tables_list_columns_models_and_what_they_search_by(ui: httpx.Client) -> None:
    body = ui.get("/ui/tables").json()
    tables = {t["name"]: {c["name"]: c for c in t["columns"]} for t in body["tables"]}
    assert set(tables) == {"images", ODD}
    px, clip = tables["images"]["convert_result"], tables["images"]["clip_emb"]
    assert (px["model"], px["kind"], px["dim"], px["search_by"]) == ("px", "Pixels", 64,
                                                                      ["image"])
    assert (clip["model"], clip["kind"], clip["dim"]) == ("c", "CLIP", 32)
    assert clip["search_by"] == ["image", "text"]
    assert clip["problem"] is None
    assert px["source_column"] == "image_path"
    assert px["modality"] == "image"
    assert body["limits"] == {"max_upload_bytes": 50_000, "max_text_chars": 4096,
                              "max_top_k": 200}


def test_rebuilt_models_and_dropped_columns(image_ws: Any) -> None:
    image_ws.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=4) AS SELECT * FROM images;"
                 "CONVERT USING px AS SELECT * FROM images;"
                 "CONVERT USING px OPTIONS (result_col='gone') AS SELECT * FROM images;"
                 "ALTER TABLE images DROP COLUMN gone;"
                 "BUILD MODEL px USING Pixels OPTIONS (image_size=4, overwrite=True) "
                 "AS SELECT * FROM images")
    (table,) = list_tables(image_ws)
    (col,) = table.columns  # 'gone' was dropped: not listed
    assert col.name == "convert_result"
    assert col.search_by == []
    assert "rebuilt" in col.problem
    assert "re-run CONVERT USING px" in col.problem
    with pytest.raises(CatalogError, match="rebuilt"):
        search(image_ws, "images", "convert_result", "image", QUERY, 3)


def test_without_a_workspace(start_server: Any) -> None:
    base, _ = start_server()
    assert httpx.get(base + "/").status_code == 200
    r = httpx.get(base + "/ui/tables")
    assert r.status_code == 404
    assert "pixql -w DIR serve" in r.json()["message"]


# ------------------------------------------------------------------------------ search
def test_image_upload_ranks_exactly_like_sql(ui: httpx.Client, ui_ws: Any) -> None:
    r = post_search(ui, image=png(ui_ws.root / QUERY), top_k=6)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["table"], body["emb_col"], body["model"]) == ("images", "convert_result", "px")
    assert body["image_col"] == "image_path"
    assert body["columns"] == ["filename", "label"]
    got = [(x["path"], x["score"]) for x in body["results"]]
    want = sql_search(ui_ws, "image", QUERY, "convert_result", "px", 6)
    assert [p for p, _ in got] == [p for p, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)
    first = body["results"][0]
    assert first["rank"] == 1
    assert first["path"] == QUERY
    assert first["score"] == pytest.approx(1.0, abs=1e-5)
    assert first["values"] == {"filename": "001.png", "label": "cross"}
    assert first["image_url"] == f"/ui/image?path={QUERY}"
    thumb = ui.get(first["image_url"])
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/png"
    assert not list((ui_ws.root / UPLOAD_DIR).iterdir()), "uploads are removed after use"


def test_text_search_on_a_clip_column_matches_sql(ui: httpx.Client, ui_ws: Any) -> None:
    r = post_search(ui, text="  a white cross  ", emb_col="clip_emb", top_k=4)
    assert r.status_code == 200, r.text
    got = [(x["path"], x["score"]) for x in r.json()["results"]]
    want = sql_search(ui_ws, "text", "a white cross", "clip_emb", "c", 4)
    assert [p for p, _ in got] == [p for p, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)


def test_identifiers_are_quoted_not_spliced(ui: httpx.Client, ui_ws: Any) -> None:
    r = post_search(ui, image=png(ui_ws.root / QUERY), table=ODD, top_k=2)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["path"] == QUERY
    r = post_search(ui, text="x", table='images"; DROP TABLE images; --')
    assert r.status_code == 404
    assert "no table" in r.json()["message"]
    assert ui_ws.sql("SELECT count(*) FROM images").fetchone() == (12,)


@pytest.mark.parametrize(("form", "status", "needle"), [
    ({"text": "a cross"}, 400, "cannot embed text"),
    ({"table": "nope", "text": "x"}, 404, "tables: images"),
    ({"emb_col": "nope", "text": "x"}, 404, "convert_result"),
    ({}, 422, "either an image file or a text"),
    ({"text": "   "}, 422, "either an image file or a text"),
    ({"text": "x", "image": b"\x89PNG"}, 422, "not both"),
    ({"image": b"not an image at all"}, 400, "query.png: not a decodable image"),
    ({"text": "x", "top_k": 0}, 422, "top_k"),
    ({"text": "x", "top_k": 201}, 422, "top_k"),
    ({"text": "y" * 5000, "emb_col": "clip_emb"}, 413, "limit is 4096"),
])
def test_bad_searches_say_what_is_wrong(ui: httpx.Client, form: dict, status: int,
                                        needle: str) -> None:
    r = post_search(ui, **form)
    assert r.status_code == status, r.text
    assert needle in r.json()["message"]


def test_upload_caps(ui: httpx.Client) -> None:
    big = io.BytesIO()
    Image.new("RGB", (400, 400)).save(big, "PNG")  # 160,000 pixels > 100,000
    r = post_search(ui, image=big.getvalue())
    assert r.status_code == 400
    assert "over the cap of 100000" in r.json()["message"]
    r = post_search(ui, image=os.urandom(60_000))  # body over 50,000 bytes
    assert r.status_code == 413
    assert "limit is 50000 bytes" in r.json()["message"]


# ------------------------------------------------------------------------------ images
def test_thumbnails_are_capped_and_typed(ui: httpx.Client) -> None:
    r = ui.get("/ui/image", params={"path": "photo.jpg", "size": 128})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (128, 85)
    assert r.headers["cache-control"].startswith("private")
    assert Image.open(io.BytesIO(ui.get("/ui/image?path=photo.jpg").content)).size[0] == 256
    assert ui.get("/ui/image?path=inside.png").status_code == 200  # symlink within: fine
    for size in (8, 5000):
        assert ui.get("/ui/image", params={"path": "photo.jpg", "size": size}).status_code == 422


@pytest.mark.parametrize(("path", "status"), [
    ("../outside.png", 403),
    ("shapes/../../outside.png", 403),
    ("shapes/..\\..\\outside.png", 403),
    ("escape.png", 403),  # a symlink pointing outside
    ("/etc/hostname", 403),
    ("C:\\Windows\\win.ini", 403),
    ("pixql.duckdb", 403),
    ("notes.txt", 403),
    ("shapes/nope.png", 404),
    ("", 403),
])
def test_images_are_served_from_inside_the_workspace_only(ui: httpx.Client, ui_ws: Any,
                                                          path: str, status: int) -> None:
    r = ui.get("/ui/image", params={"path": path})
    assert r.status_code == status, r.text
    assert str(ui_ws.root) not in r.text  # no server paths in messages


def test_absolute_paths_inside_the_workspace_are_refused_too(ui: httpx.Client,
                                                             ui_ws: Any) -> None:
    r = ui.get("/ui/image", params={"path": str(ui_ws.root / QUERY)})
    assert r.status_code == 403
    assert "workspace-relative" in r.json()["message"]


# ------------------------------------------------------------------------------ auth
def test_with_keys_the_page_is_public_and_ui_routes_need_the_key(start_server: Any,
                                                                 ui_ws: Any) -> None:
    base, _ = start_server(workspace=ui_ws, api_keys=[KEY])
    assert httpx.get(base + "/").status_code == 200
    assert httpx.get(base + "/ui/tables").status_code == 401
    assert httpx.get(base + f"/ui/image?path={QUERY}").status_code == 401
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(base + "/ui/tables", headers=bearer).status_code == 200
    assert httpx.get(base + f"/ui/image?path={QUERY}&api_key={KEY}").status_code == 200
    with httpx.Client(base_url=base, timeout=30) as c:
        assert post_search(c, text="x", emb_col="clip_emb").status_code == 401
        assert post_search(c, text="x", emb_col="clip_emb", headers=bearer).status_code == 200
