"""``serve()`` in a real process: uvicorn starts, answers, never logs an API key."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_healthy(proc: subprocess.Popen, base: str, timeout_s: float = 60) -> None:
    """Until ``base/healthz`` answers 200; fails with the server's output if it exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, proc.communicate()[0]
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)


def test_serve_runs_uvicorn_and_redacts_keys(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PIXQL_PORT": str(port), "PIXQL_API_KEYS": "very-secret-key"}
    code = f"from pixql.server.app import serve; serve(workspace_dir={str(tmp_path / 'ws')!r})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, encoding="utf-8")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, base)
        assert httpx.get(f"{base}/info").json()["name"] == "pixql"
        r = httpx.get(f"{base}/model/registry", params={"api_key": "very-secret-key"})
        assert r.status_code == 200
        assert httpx.get(f"{base}/model/registry", params={"api_key": "nope"}).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert "/model/registry?api_key=***" in output
    assert "very-secret-key" not in output
    assert (tmp_path / "ws" / "pixql.duckdb").exists()
