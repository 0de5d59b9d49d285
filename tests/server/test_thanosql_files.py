"""ThanoSQL's file manager (``client.file``, ``/fm/api/v1/contents``) on the workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from tests.server.served import BUILD, CONVERT, COPY, KEY, SEARCH, served_workspace

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.server.served import Served

pytest.importorskip("thanosql")
from thanosql import ThanoSQL
from thanosql import _error as sdk_errors


@pytest.fixture(scope="module")
def served(server_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served_workspace(tmp_path_factory.mktemp("files"), pg=False) as s:
        yield s


@pytest.fixture(scope="module")
def client(served: Served) -> ThanoSQL:
    return ThanoSQL(api_token=KEY, engine_url=served.base)


def test_uploaded_file_can_be_searched(client, served, tmp_path):
    for stmt in (COPY, BUILD, CONVERT):
        client.query.execute(stmt)
    local = tmp_path / "query.png"
    local.write_bytes((served.ws.root / "photos" / "p4.png").read_bytes())
    content = client.file.create(path="uploads", file=str(local))
    assert content.content_info.path == "uploads/query.png"
    log = client.query.execute(SEARCH.replace("photos/p2.png", "uploads/query.png"))
    expected = served.ws.sql(SEARCH.replace("photos/p2.png", "uploads/query.png")).df()
    assert [r["image_path"] for r in log.records.data] == expected.image_path.tolist()
    assert log.records.data[0]["image_path"] == "photos/p4.png"
    listed = client.file.get("uploads").content_info.content
    assert [c["name"] for c in listed] == ["query.png"]
    client.file.delete("uploads/query.png")
    assert not (served.ws.root / "uploads" / "query.png").exists()


def test_folders_listing_and_download(client, served, tmp_path, monkeypatch):
    made = client.file.create(path="empty/inner")
    assert made.content_info.type == "directory"
    root = client.file.get()
    names = [c["name"] for c in root.content_info.content]
    assert {"photos", "empty", "pixql.duckdb"} <= set(names)
    assert not any(n.startswith(".") for n in names)
    monkeypatch.chdir(tmp_path)
    client.file.get("photos/p0.png", option="download")
    assert (tmp_path / "p0.png").read_bytes() == (served.ws.root / "photos/p0.png").read_bytes()
    client.file.delete("empty")
    assert not (served.ws.root / "empty").exists()


@pytest.mark.parametrize("path", ["pixql.duckdb", "models", ".pixql"])
def test_pixql_files_are_protected(client, path):
    with pytest.raises(sdk_errors.ThanoSQLPermissionError, match="belongs to pixql"):
        client.file.delete(path)


@pytest.mark.parametrize("path", ["..%2Foutside", "photos%2F..%2F..%2Foutside", "%2Fetc%2Fpasswd"])
def test_paths_outside_the_workspace_are_refused(served, path):
    r = httpx.get(f"{served.base}/fm/api/v1/contents/{path}",
                  headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code in (403, 404)
    assert "root:" not in r.text  # never the file itself


def test_mistakes_are_4xx(client, served):
    with pytest.raises(sdk_errors.ThanoSQLNotFoundError):
        client.file.get("no/such/file")
    with pytest.raises(sdk_errors.ThanoSQLValueError, match="folder"):
        client.file.get("photos", option="download")
    r = httpx.post(f"{served.base}/fm/api/v1/contents/photos/p0.png",
                   headers={"Authorization": f"Bearer {KEY}"},
                   files={"file": ("x.png", b"123")})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == r.json()["message"]
