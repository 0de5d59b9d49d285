"""Paths from requests cannot leave the workspace: SQL over HTTP (SEARCH inputs, CONVERT
columns, COPY sources, PRINT, CLIP weights, DuckDB's readers) and ``{"type": "file"}``
images refuse ``..``, absolute paths, ``~``, symlinks leading out and NUL bytes — unless the
server's ``allowed_dirs`` (``PIXQL_ALLOWED_DIRS``) names the folder."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi.testclient import TestClient

from pixql.server.app import serve
from pixql.server.settings import ServerSettings
from tests.reliability.images import encode, upright

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from types import ModuleType

SECRET = "hunter2"


@pytest.fixture(scope="module")
def layout(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/ws`` (a copy of the fuzz template) with symlinks into ``root/outside``."""
    root = tmp_path_factory.mktemp("paths")
    shutil.copytree(template, root / "ws", symlinks=True)
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(encode(upright(), "PNG"))
    (outside / "secret.csv").write_text(f"password\n{SECRET}\n", encoding="utf-8")
    (root / "ws" / "escape.png").symlink_to(outside / "secret.png")
    (root / "ws" / "escape_dir").symlink_to(outside)
    return root


@pytest.fixture(scope="module")
def http(start_server: Callable[..., tuple[str, Any]], fuzz_engine: ModuleType,
         layout: Path) -> Iterator[httpx.Client]:
    ws = fuzz_engine.open_workspace(layout / "ws")
    base, _ = start_server(workspace=ws, enable_sql=True, allow_file_input=True)
    with httpx.Client(base_url=base, timeout=60) as client:
        yield client
    ws.close()


def sql(client: httpx.Client | TestClient, query: str) -> httpx.Response:
    return client.post("/sql", json={"query": query})


def refused(r: httpx.Response) -> str:
    assert r.status_code in (400, 403), (r.status_code, r.text)
    assert SECRET not in r.text
    return str(r.json()["message"])


def search(path: str) -> str:
    quoted = path.replace("'", "''")
    return (f"SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='{quoted}', "
            "emb_col='convert_result', top_k=1) AS SELECT * FROM images")


def escapes(root: Path) -> list[str]:
    return ["../outside/secret.png", str(root / "outside" / "secret.png"), "escape.png",
            "escape_dir/secret.png", "shapes/../../outside/secret.png", "/etc/passwd",
            "/proc/self/environ", "~/secret.png", "link/secret.txt"]


def test_search_inputs_cannot_escape(http: httpx.Client, layout: Path) -> None:
    for path in [*escapes(layout), "~nosuchuser/x.png", "shapes/\x00.png"]:
        message = refused(sql(http, search(path)))
        assert "outside the workspace" in message or "NUL" in message or "home" in message


def test_convert_reads_no_path_outside(http: httpx.Client, layout: Path) -> None:
    values = ", ".join("('" + p.replace("'", "''") + "')" for p in escapes(layout))
    r = sql(http, f"CREATE OR REPLACE TABLE evil AS SELECT * FROM (VALUES {values}) t(image_path)")
    assert r.status_code == 200, r.text
    assert "outside the workspace" in refused(sql(http, "CONVERT USING px AS SELECT * FROM evil"))
    r = sql(http, "CONVERT USING px OPTIONS (on_error='null') AS SELECT * FROM evil")
    assert r.status_code == 200, r.text
    r = sql(http, "SELECT count(*) FROM evil WHERE convert_result IS NOT NULL")
    assert r.json()["rows"] == [[0]]


@pytest.mark.parametrize("statement", [
    "COPY t OPTIONS (if_exists='replace') FROM '{root}/outside/'",
    "COPY t OPTIONS (if_exists='replace') FROM '../outside/secret.csv'",
    "COPY t OPTIONS (if_exists='replace') FROM 'escape_dir/'",
    "COPY t OPTIONS (if_exists='replace') FROM '/etc/'",
    "PRINT IMAGE AS SELECT '{root}/outside/secret.png' AS image_path",
    "BUILD MODEL stolen USING CLIP OPTIONS (path='escape_dir')",
    "SELECT * FROM read_csv('{root}/outside/secret.csv')",
    "SELECT * FROM read_csv('{root}/ws/escape_dir/secret.csv')",
    "SELECT * FROM read_text('{root}/ws/escape.png')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_text('/etc/passwd')",
    "COPY (SELECT 1) TO '{root}/ws/escape_dir/dropped.csv'",
    "ATTACH '{root}/outside/other.duckdb' AS other",
])
def test_statements_cannot_touch_files_outside(http: httpx.Client, layout: Path,
                                               statement: str) -> None:
    message = refused(sql(http, statement.format(root=layout)))
    assert "outside the workspace" in message or "Permission Error" in message, message
    assert sorted(p.name for p in (layout / "outside").iterdir()) == ["secret.csv",
                                                                      "secret.png"]


@pytest.mark.parametrize("name", ["../../planted", "{root}/planted", "..\\..\\planted"])
def test_model_names_cannot_place_files_outside(http: httpx.Client, layout: Path,
                                                name: str) -> None:
    """A model name names a folder: a quoted name with a path in it used to put the model's
    files outside the workspace (and DELETE MODEL would remove them there)."""
    quoted = '"' + name.format(root=layout) + '"'
    for statement in (f"BUILD MODEL {quoted} USING Pixels",
                      f"GET THANOSQL MODEL clip OPTIONS (model_name='{name.format(root=layout)}',"
                      " path='weights/tiny-clip')"):
        assert "cannot be used" in refused(sql(http, statement))
    assert not list(layout.rglob("planted*"))
    assert not (layout.parent / "planted").exists()


@pytest.mark.parametrize("value", ["escape_dir/secret.png", "~/x.png", "../outside/secret.png"])
def test_file_images_cannot_escape(http: httpx.Client, value: str) -> None:
    r = http.post("/clip/embed_image", json={"image": {"type": "file", "value": value}})
    assert r.status_code == 400
    assert "inside the workspace" in r.json()["message"]


@pytest.mark.parametrize("path", ["../outside/secret.png", "escape.png", "escape_dir/secret.png",
                                  "/etc/passwd", "~/secret.png", "~nosuchuser/x.png",
                                  "shapes/\x00.png", "shapes/../../outside/secret.png",
                                  "link/secret.txt", "pixql.duckdb"])
def test_search_page_thumbnails_cannot_escape(http: httpx.Client, path: str) -> None:
    r = http.get("/ui/image", params={"path": path})
    assert r.status_code in (400, 403, 404), (path, r.status_code)
    assert r.headers["content-type"].startswith("application/json")
    assert http.get("/ui/image", params={"path": "shapes/circle/000.png"}).status_code == 200


@pytest.mark.parametrize("value", ["~nosuchuser/x.png", "pics/\x00.png"])
def test_odd_file_image_paths_are_400(http: httpx.Client, value: str) -> None:
    r = http.post("/clip/embed_image", json={"image": {"type": "file", "value": value}})
    assert r.status_code == 400, r.text


# ---------------------------------------------------------------------- allowed_dirs
def serve_and_check(ws_dir: Path, settings: ServerSettings,
                    check: Callable[[TestClient], None], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run :func:`serve` with its uvicorn runner replaced by ``check`` on a test client."""
    from pixql.server import served

    ran: list[bool] = []

    def fake_run(app: Any, workspace: Any, sock: Any) -> None:
        with TestClient(app) as client:
            check(client)
        ran.append(True)

    monkeypatch.setattr(served, "run", fake_run)
    serve(settings, ws_dir)
    assert ran


def test_allowed_dirs_open_a_folder_to_sql_over_http(
    layout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws_dir = tmp_path / "ws"
    shutil.copytree(layout / "ws", ws_dir, symlinks=True)
    outside = layout / "outside"
    env = {"PIXQL_ALLOWED_DIRS": f"{outside}:{(ws_dir / 'weights').resolve()}"}

    def allowed(client: TestClient) -> None:
        for path in (str(outside / "secret.png"), "escape.png", "escape_dir/secret.png"):
            r = sql(client, search(path))
            assert r.status_code == 200, r.text
        r = sql(client, f"SELECT * FROM read_csv('{outside}/secret.csv')")
        assert r.status_code == 200
        assert r.json()["rows"] == [[SECRET]]
        refused(sql(client, search("/etc/passwd")))
        refused(sql(client, "SELECT * FROM read_text('/etc/passwd')"))

    def default(client: TestClient) -> None:
        assert sql(client, search(str(outside / "secret.png"))).status_code == 403
        refused(sql(client, f"SELECT * FROM read_csv('{outside}/secret.csv')"))

    with_dirs = ServerSettings.from_env(env, enable_sql=True)
    assert with_dirs.allowed_dirs == [outside, (ws_dir / "weights").resolve()]
    serve_and_check(ws_dir, with_dirs, allowed, monkeypatch)
    serve_and_check(ws_dir, ServerSettings.from_env({}, enable_sql=True), default, monkeypatch)


def test_allowed_dirs_open_a_folder_to_file_images(
    start_server: Callable[..., tuple[str, Any]], layout: Path
) -> None:
    outside = layout / "outside"
    base, _ = start_server(workspace=layout / "ws", allow_file_input=True,
                           allowed_dirs=[outside])
    r = httpx.post(f"{base}/clip/embed_image", timeout=60,
                   json={"image": {"type": "file", "value": str(outside / "secret.png")}})
    assert r.status_code == 200, r.text
