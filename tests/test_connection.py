"""``pixql.connect``: through ``pixql serve`` when it serves the workspace (a real
subprocess), locally otherwise; clear errors instead of DuckDB's lock error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import numpy as np
import pytest

import pixql
from pixql.client.errors import ServedWorkspaceError
from pixql.client.record import ServerRecord, live_record, read_record, record_path, write_record
from pixql.client.remote import RemoteWorkspace
from pixql.connection import WorkspaceLockedError
from pixql.workspace import Workspace
from tests.client.served import SEARCH, TUTORIAL, clean_env, make_tutorial_data, pixql_serve

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.client.served import Served

KEY = "connection-test-key"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    ws = tmp_path_factory.mktemp("served") / "ws"
    make_tutorial_data(ws)
    with pixql_serve(ws, "--enable-sql") as s:
        yield s


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIXQL_API_KEY", raising=False)


def _run(db: pixql.Workspace | RemoteWorkspace) -> tuple[list[str], object]:
    messages = [db.sql(s).message for s in TUTORIAL]
    return messages, db.sql(SEARCH).df()


def test_tutorial_through_the_server_matches_the_embedded_engine(served, tmp_path):
    local_root = tmp_path / "local"
    make_tutorial_data(local_root)
    with pixql.connect(local_root, progress=False) as local:
        assert isinstance(local, Workspace)
        local_messages, local_frame = _run(local)
    with pixql.connect(served.record.workspace) as db:
        assert isinstance(db, RemoteWorkspace)
        assert db.record == served.record
        messages, frame = _run(db)
    assert messages == local_messages
    assert list(frame.columns) == list(local_frame.columns)
    assert sorted(frame["image_path"]) == sorted(local_frame["image_path"])
    assert np.allclose(sorted(frame["search_result"]), sorted(local_frame["search_result"]))


def test_url_connects_explicitly(served):
    with pixql.connect(served.record.url) as db:
        assert isinstance(db, RemoteWorkspace)
        assert db.sql("SELECT 40 + 2 AS answer").fetchall() == [(42,)]
        assert str(db.root) == served.record.workspace


def test_record_says_who_serves(served):
    record = served.record
    assert record.pid == served.proc.pid
    assert record.sql is True
    assert record.auth is False
    assert record.url.startswith("http://127.0.0.1:")
    data = json.loads(record_path(record.workspace).read_text(encoding="utf-8"))
    assert set(data) >= {"url", "pid", "sql", "started", "workspace"}


def test_serving_twice_is_refused(served):
    out = subprocess.run(
        [sys.executable, "-m", "pixql.cli.main", "-w", served.record.workspace, "serve",
         "--port", "0"], env=clean_env(), capture_output=True, encoding="utf-8", timeout=120)
    assert out.returncode == 1
    assert f"already served by pixql at {served.record.url} (pid {served.proc.pid})" in out.stderr


def test_server_without_sql_names_itself_and_the_fix(tmp_path):
    ws = tmp_path / "ws"
    with pixql_serve(ws) as s:
        with pytest.raises(ServedWorkspaceError) as err:
            pixql.connect(ws)
        text = str(err.value)
        assert s.record.url in text
        assert f"pid {s.proc.pid}" in text
        assert "--enable-sql" in text
        assert "lock" not in text.lower()


def test_server_with_keys_needs_one(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    with pixql_serve(ws, "--api-key", KEY):
        with pytest.raises(ServedWorkspaceError, match="API key"):
            pixql.connect(ws)
        with pixql.connect(ws, api_key=KEY) as db:
            assert db.sql("SELECT 1 AS one").fetchall() == [(1,)]
        monkeypatch.setenv("PIXQL_API_KEY", KEY)
        with pixql.connect(ws) as db:
            assert db.sql("SELECT 2 AS two").fetchall() == [(2,)]


def test_clean_shutdown_removes_the_record(tmp_path):
    ws = tmp_path / "ws"
    with pixql_serve(ws, "--enable-sql") as s:
        s.stop(signal.SIGTERM)
        assert s.proc.returncode is not None
    assert read_record(ws) is None
    with pixql.connect(ws) as db:
        assert isinstance(db, Workspace)


def test_record_of_a_killed_server_is_ignored(tmp_path):
    ws = tmp_path / "ws"
    with pixql_serve(ws, "--enable-sql") as s:
        s.stop(signal.SIGKILL)
    assert read_record(ws) is not None  # left behind
    assert live_record(ws) is None
    with pixql.connect(ws) as db:
        assert isinstance(db, Workspace)
        assert db.sql("SELECT 1 AS one").fetchall() == [(1,)]


def test_record_whose_url_does_not_answer_is_ignored(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    write_record(ws, ServerRecord(url="http://127.0.0.1:9", pid=os.getpid(), sql=True,
                                  auth=False, server_id="gone", started="", workspace=str(ws)))
    assert live_record(ws) is None
    with pixql.connect(ws) as db:
        assert isinstance(db, Workspace)


HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("locked", flush=True)
    time.sleep(120)
""")


def test_lock_held_by_another_process_is_a_clear_error(tmp_path):
    ws = tmp_path / "ws"
    pixql.connect(ws).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws / "pixql.duckdb")],
                              stdout=subprocess.PIPE, encoding="utf-8")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkspaceLockedError) as err:
            pixql.connect(ws)
        text = str(err.value)
        assert f"process {holder.pid}" in text
        assert "Could not set lock" not in text
        assert "serve --enable-sql" in text
    finally:
        holder.kill()
        holder.wait()
