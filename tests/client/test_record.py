"""The served-workspace record: atomic writes, reading, owner-only removal, staleness."""

from __future__ import annotations

import os
import subprocess
import sys

from pixql.client.record import (
    ServerRecord,
    live_record,
    pid_alive,
    read_record,
    record_path,
    remove_record,
    write_record,
)


def record(ws, **changes) -> ServerRecord:
    fields = {"url": "http://127.0.0.1:9", "pid": os.getpid(), "sql": True, "auth": False,
              "server_id": "one", "started": "2026-01-01T00:00:00+00:00",
              "workspace": str(ws)}
    return ServerRecord(**{**fields, **changes})


def test_write_then_read(tmp_path):
    rec = record(tmp_path)
    path = write_record(tmp_path, rec)
    assert path == record_path(tmp_path) == tmp_path / ".pixql" / "server.json"
    assert read_record(tmp_path) == rec
    assert os.listdir(path.parent) == ["server.json"]  # no temporary file left behind
    assert rec.describe() == f"http://127.0.0.1:9 (pid {os.getpid()})"


def test_unreadable_records_are_none(tmp_path):
    assert read_record(tmp_path) is None
    record_path(tmp_path).parent.mkdir()
    for text in ("{not json", "[1, 2]", '{"url": "x"}'):
        record_path(tmp_path).write_text(text)
        assert read_record(tmp_path) is None


def test_unknown_fields_are_ignored(tmp_path):
    write_record(tmp_path, record(tmp_path))
    text = record_path(tmp_path).read_text(encoding="utf-8").replace('"url"', '"future": 1, "url"')
    record_path(tmp_path).write_text(text)
    assert read_record(tmp_path) == record(tmp_path)


def test_only_the_owner_removes_the_record(tmp_path):
    write_record(tmp_path, record(tmp_path, server_id="newer"))
    remove_record(tmp_path, "older")
    assert read_record(tmp_path) is not None
    remove_record(tmp_path, "newer")
    assert read_record(tmp_path) is None
    remove_record(tmp_path, "newer")  # already gone: fine


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(0)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)


def test_stale_records_are_not_live(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    write_record(tmp_path, record(tmp_path, pid=proc.pid))  # the process is gone
    assert live_record(tmp_path) is None
    write_record(tmp_path, record(tmp_path))  # alive, but nothing answers at the URL
    assert live_record(tmp_path) is None
