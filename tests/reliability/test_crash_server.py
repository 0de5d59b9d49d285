"""SIGKILL the server (``pixql serve`` in its own process) while a ``POST /sql`` CONVERT or
BUILD is running, start it again: nothing is lost, nothing half-done shows, the start-up
check reports (and removes) the leftovers, and writes work again.

The engine-level kills (no server) are in tests/execution/test_crash_safety.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

import pixql

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

WORKER = Path(__file__).with_name("serve_worker.py")
KEY = "crash-test-key-77"
CONVERT = ("CONVERT USING px OPTIONS (result_col='convert_result', refresh='all') "
           "AS SELECT * FROM images")
BUILD = ("BUILD MODEL px USING Pixels OPTIONS (image_size=4, overwrite=True) "
         "AS SELECT * FROM images")
SEARCH = ("SELECT image_path, search_result FROM (SEARCH IMAGE USING px OPTIONS (search_by="
          "'image', search_input='shapes/cross/001.png', emb_col='convert_result', top_k=4) "
          "AS SELECT * FROM images)")
SNAPSHOT = ["SELECT name, version, checksum FROM (LIST MODEL) ORDER BY name",
            "SELECT image_path, label, convert_result FROM images ORDER BY image_path",
            "SELECT * FROM pixql_catalog.embedding_columns ORDER BY ALL", SEARCH]


@pytest.fixture(scope="module")
def px_template(fuzz_engine: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fuzz template without CLIP: images, Pixels ``px``, embeddings."""
    return fuzz_engine.build_template(tmp_path_factory.mktemp("crash") / "ws", clip=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(ws_dir: Path, stage: str = "none", marker: Path | None = None
           ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``pixql -w ws_dir serve`` (through serve_worker, stalling at ``stage``) on a free port;
    yields (base URL, process). Stopped with SIGINT on exit unless already dead."""
    port = free_port()
    env = {**os.environ, "PIXQL_PROGRESS": "0", "PIXQL_OFFLINE": "1"}
    cmd = [sys.executable, str(WORKER), stage, str(marker or ws_dir.parent / "unused"), "--",
           "-w", str(ws_dir), "serve", "--port", str(port), "--api-key", KEY]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            encoding="utf-8")
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.communicate()[0][-3000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("server did not start")
        time.sleep(0.1)
    try:
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def sql(base: str, query: str, timeout: float = 60) -> Any:
    r = httpx.post(f"{base}/sql", params={"api_key": KEY}, json={"query": query},
                   timeout=timeout)
    assert r.status_code == 200, r.text
    return r.json()["rows"]


def snapshot(base: str) -> list[Any]:
    return [sql(base, q) for q in SNAPSHOT]


def assert_consistent(ws_dir: Path) -> None:
    """The catalog and the model folders agree; no temp folder is left."""
    with pixql.connect(ws_dir, progress=False) as db:
        assert db.repaired == []
        paths = {db.root / p for (p,) in db.sql("SELECT artifact_path FROM (LIST MODEL)")
                 .fetchall()}
        on_disk = {v for m in (db.root / "models").iterdir() for v in m.iterdir()}
        assert on_disk == paths
        assert not list((db.root / "models").glob(".tmp-*"))


@pytest.mark.parametrize(("stage", "statement"), [
    ("convert-embed", CONVERT), ("convert-write", CONVERT), ("build", BUILD)])
def test_sigkill_server_mid_statement(px_template: Path, tmp_path: Path, stage: str,
                                      statement: str) -> None:
    ws_dir = tmp_path / "ws"
    shutil.copytree(px_template, ws_dir, symlinks=True)
    marker = tmp_path / "stalled"
    outcome: list[Any] = []
    with server(ws_dir, stage, marker) as (base, proc):
        before = snapshot(base)

        def send() -> None:
            try:
                outcome.append(sql(base, statement, timeout=300))
            except httpx.TransportError as e:
                outcome.append(e)

        client = threading.Thread(target=send, daemon=True)
        client.start()
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline, "never stalled"
            assert proc.poll() is None, "the server exited before it stalled"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        client.join(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert len(outcome) == 1
    assert isinstance(outcome[0], httpx.TransportError)

    with server(ws_dir) as (base, proc):
        assert snapshot(base) == before
        assert len(sql(base, CONVERT)) == 9  # writes work again
        assert len(sql(base, BUILD)) == 1
    output = proc.communicate()[0]
    if stage == "build":
        assert "start-up check removed unfinished build .tmp-px-" in output, output
    assert "api_key=***" in output
    assert KEY not in output
    assert_consistent(ws_dir)
