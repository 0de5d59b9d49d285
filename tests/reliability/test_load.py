"""Concurrency and load (small profile): clients mixing CLIP routes and SQL reads while
writers CONVERT, INSERT and UPDATE — zero errors, no row lost or duplicated; a write-write
conflict is a 409 with Retry-After, never a 500.

The full run is ``scripts/loadtest.py`` (20 clients x 200 requests x 3 rounds; figures in
docs/reliability.md); this runs the same code on 8 clients x 25 requests.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.reliability.conftest import load_script

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import ModuleType


@pytest.fixture(scope="module")
def loadtest() -> ModuleType:
    return load_script("loadtest")


def test_small_load_loses_nothing(loadtest: ModuleType, tmp_path: Path) -> None:
    with loadtest.local_server(tmp_path) as (base, pid):
        result = loadtest.run(base, pid, clients=8, requests=25, rounds=1)
    (figures,) = result["rounds"]
    assert figures["requests"] >= 200
    assert figures["first_errors"] == []
    assert figures["server_errors_5xx"] == 0
    assert figures["rows_lost"] == figures["rows_duplicated"] == figures["bad_reads"] == 0
    assert set(figures["writes"]) == {"convert", "insert", "update"}
    assert result["peak_rss_mb"] > 0
    assert figures["p99_ms"] >= figures["p50_ms"] > 0
    assert result["ok"]


def test_write_conflict_is_409_with_retry_after(
    start_server: Callable[..., tuple[str, Any]], fuzz_engine: ModuleType, template: Path,
    tmp_path: Path,
) -> None:
    """Another transaction holds changes to the same rows: DuckDB's conflict is a 409 that
    asks the client to retry, and the retry succeeds once the other side commits."""
    shutil.copytree(template, tmp_path / "ws", symlinks=True)
    ws = fuzz_engine.open_workspace(tmp_path / "ws")
    base, _ = start_server(workspace=ws, enable_sql=True)
    holder = ws.cursor()
    holder.begin()
    holder.execute("UPDATE captions SET caption = 'held'")
    try:
        update = {"query": "UPDATE captions SET caption = 'mine'"}
        r = httpx.post(f"{base}/sql", json=update, timeout=30)
        assert r.status_code == 409, r.text
        assert r.headers["Retry-After"] == "1"
        assert "retry" in r.json()["message"]
        assert r.json()["error"] == "TransactionException"
        holder.commit()
        assert httpx.post(f"{base}/sql", json=update, timeout=30).status_code == 200
    finally:
        ws.close()


RACE = """
import importlib, sys, threading, time
import pixql
from pixql.execution import engine

def slow_import(name, *args):
    module = importlib.import_module(name, *args)
    time.sleep(0.05)  # widen the window between the first import and the last
    return module

engine.importlib = type("SlowImportlib", (), {"import_module": staticmethod(slow_import)})
db = pixql.connect(sys.argv[1], progress=False)
errors = []

def first_statement(delay):
    time.sleep(delay)  # arrive while the first thread is loading the executors
    try:
        db.sql("LIST MODEL")
    except Exception as e:
        errors.append(repr(e))

threads = [threading.Thread(target=first_statement, args=(0.03 * i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors)
"""


def test_first_statements_on_many_threads_at_once(tmp_path: Path) -> None:
    """The executors load lazily; threads arriving while they load must wait for them (this
    was a 500 'no executor for Search' under load)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", RACE, str(tmp_path / "ws")],
                          capture_output=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
