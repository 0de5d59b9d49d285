"""Faults: missing or corrupt CLIP weights, a workspace model's folder deleted or corrupted
under a running server, a full disk while saving. Each is a clear error; the server stays up;
``/readiness`` tells the truth; nothing already saved is lost."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.server.conftest import VERSION

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from types import ModuleType

SEARCH = ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input="
          "'shapes/cross/001.png', emb_col='convert_result', top_k=3) AS SELECT * FROM images")
REBUILD = ("BUILD MODEL px USING Pixels OPTIONS (image_size=8, overwrite=True) "
           "AS SELECT * FROM images")


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# ---------------------------------------------------------------------- CLIP weights
def corrupt(folder: Path, how: str) -> None:
    weights, config = folder / "open_clip_model.safetensors", folder / "open_clip_config.json"
    if how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "garbage":
        weights.write_bytes(os.urandom(5000))
    elif how == "bad-config":
        config.write_text("{not json", encoding="utf-8")
    elif how == "wrong-architecture":
        cfg = json.loads(config.read_text(encoding="utf-8"))
        cfg["model_cfg"]["embed_dim"] = 16
        config.write_text(json.dumps(cfg), encoding="utf-8")
    elif how == "missing":
        weights.unlink()


@pytest.mark.parametrize(("how", "status", "words"), [
    ("truncated", 400, "cannot load CLIP weights"),
    ("garbage", 400, "cannot load CLIP weights"),
    ("bad-config", 400, "cannot load CLIP weights"),
    ("wrong-architecture", 400, "size mismatch"),
    ("missing", 404, "not found"),
])
def test_broken_clip_weights_are_a_clear_error(
    start_server: Callable[..., tuple[str, Any]], tiny_models_dir: Path, tmp_path: Path,
    how: str, status: int, words: str,
) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    corrupt(models / VERSION, how)
    base, _ = start_server(clip_models_dir=models, preload_models=[f"clip/{VERSION}"])
    with httpx.Client(base_url=base, timeout=30) as c:
        wait_for(lambda: "preloading failed" in c.get("/readiness").json().get("reason", ""))
        ready = c.get("/readiness")
        assert ready.status_code == 503
        assert words in ready.json()["reason"]
        r = c.post("/clip/embed_text", json={"text": "a cat"})
        assert r.status_code == status
        assert words in r.json()["message"]
        assert "download them again" in r.json()["message"] or status == 404
        assert c.get("/healthz").status_code == 200


def test_weights_deleted_under_a_running_server(
    start_server: Callable[..., tuple[str, Any]], tiny_models_dir: Path, tmp_path: Path
) -> None:
    """Loaded weights keep serving from memory; readiness says they are gone; once unloaded,
    the model cannot come back and says why."""
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    base, _ = start_server(clip_models_dir=models, preload_models=[f"clip/{VERSION}"])
    with httpx.Client(base_url=base, timeout=30) as c:
        wait_for(lambda: c.get("/readiness").status_code == 200)
        shutil.rmtree(models / VERSION)
        assert c.post("/clip/embed_text", json={"text": "x"}).status_code == 200
        assert "is gone" in c.get("/readiness").json()["reason"]
        assert c.post("/model/remove", json={"model_id": f"clip/{VERSION}"}).status_code == 200
        r = c.post("/clip/embed_text", json={"text": "x"})
        assert r.status_code == 404
        assert "not found" in r.json()["message"]
        ready = c.get("/readiness")
        assert ready.status_code == 503
        assert "not loaded" in ready.json()["reason"]
        assert c.get("/healthz").status_code == 200


# ---------------------------------------------------------------------- workspace models
@pytest.fixture
def sql_server(start_server: Callable[..., tuple[str, Any]], fuzz_engine: ModuleType,
               template: Path, tmp_path: Path) -> Iterator[tuple[httpx.Client, Any]]:
    """A client of a server with SQL on a fresh, confined copy of the fuzz template."""
    folder = tmp_path / "ws"
    shutil.copytree(template, folder, symlinks=True)
    ws = fuzz_engine.open_workspace(folder)
    base, _ = start_server(workspace=ws, enable_sql=True)
    with httpx.Client(base_url=base, timeout=60) as client:
        yield client, ws
    ws.close()


def sql(client: httpx.Client, query: str) -> httpx.Response:
    return client.post("/sql", json={"query": query})


@pytest.mark.parametrize(("damage", "words"), [
    (lambda v1: shutil.rmtree(v1), "are missing"),
    (lambda v1: (v1 / "config.json").write_text("{oops", encoding="utf-8"), "cannot read"),
    (lambda v1: (v1 / "config.json").unlink(), "cannot read"),
])
def test_workspace_model_damaged_under_a_running_server(
    sql_server: tuple[httpx.Client, Any], damage: Callable[[Path], Any], words: str
) -> None:
    client, ws = sql_server
    damage(ws.root / "models" / "px" / "v1")  # not loaded yet in this server
    r = sql(client, SEARCH)
    assert r.status_code == 400, r.text
    assert words in r.json()["message"], r.text
    assert "px" in r.json()["message"]
    assert client.get("/healthz").status_code == 200
    assert sql(client, "SELECT count(*) FROM images").json()["rows"] == [[9]]
    for statement in (REBUILD, "CONVERT USING px AS SELECT * FROM images", SEARCH):
        assert sql(client, statement).status_code == 200  # the way out the message names


# ---------------------------------------------------------------------- a full disk
def disk_full(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["pixql.execution.build.write_config",
                                   "pixql.catalog.artifacts.ArtifactStore.commit_dir",
                                   "pixql.models.pixels.Pixels.build"])
def test_disk_full_while_saving_a_model(sql_server: tuple[httpx.Client, Any], where: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    client, ws = sql_server
    before = [sql(client, q).json()["rows"] for q in (SEARCH, "SELECT * FROM (LIST MODEL)")]
    monkeypatch.setattr(where, disk_full)
    r = sql(client, REBUILD)
    assert r.status_code == 507, r.text
    assert "disk is full; nothing was changed" in r.json()["message"]
    assert client.get("/healthz").status_code == 200
    after = [sql(client, q).json()["rows"] for q in (SEARCH, "SELECT * FROM (LIST MODEL)")]
    assert after == before
    assert not list((ws.root / "models").glob(".tmp-*"))
    with pytest.raises(OSError, match="No space left") as info:  # the SQL face: the OSError
        ws.sql(REBUILD)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert sql(client, REBUILD).status_code == 200


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs root and mount; skipped elsewhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_duckdb_disk_full_is_507_and_recoverable(
    start_server: Callable[..., tuple[str, Any]], fuzz_engine: ModuleType, template: Path,
    tiny_disk: Path,
) -> None:
    folder = tiny_disk / "ws"
    shutil.copytree(template, folder, symlinks=True, ignore=shutil.ignore_patterns("weights"))
    ws = fuzz_engine.open_workspace(folder)
    base, _ = start_server(workspace=ws, enable_sql=True)
    fill = ("CREATE OR REPLACE TABLE big{} AS SELECT range AS i, md5(range::VARCHAR) "
            "FROM range(30000)")
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            statuses = [sql(c, fill.format(i)).status_code for i in range(4)]
            assert 507 in statuses, statuses
            assert 500 not in statuses, statuses
            assert sql(c, "SELECT count(*) FROM images").json()["rows"] == [[9]]
            assert sql(c, SEARCH).status_code == 200
            for i in range(4):
                sql(c, f"DROP TABLE IF EXISTS big{i}")
            assert sql(c, "CHECKPOINT").status_code == 200
            assert sql(c, "CONVERT USING px AS SELECT * FROM images").status_code == 200
    finally:
        ws.close()
