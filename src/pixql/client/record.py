"""The served-workspace record: ``<workspace>/.pixql/server.json``.

``pixql serve -w DIR`` writes it (atomically: a temporary file renamed over it) once it
listens, and removes it on a clean shutdown. Clients (``pixql.connect(DIR)``, the CLI, the
notebook magic) read it to reach the server instead of opening the DuckDB file, which the
serving process holds locked. A record left behind by a server that died (its pid is gone,
or its URL does not answer as that server) is stale: :func:`live_record` ignores it.

The record is plain JSON::

    {"url": "http://127.0.0.1:9001", "pid": 4242, "sql": true, "auth": false,
     "server_id": "…", "started": "2026-12-04T17:45:36+00:00", "workspace": "/abs/ws",
     "version": "0.1.0"}

It lives with the clients (which read it); the server (a higher layer) writes it. It imports
nothing heavy (httpx only for the liveness probe, lazily).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RECORD_DIR = ".pixql"
RECORD_FILE = "server.json"
#: seconds a liveness probe of the recorded URL may take
PROBE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ServerRecord:
    """What a serving process says about itself."""

    url: str
    pid: int
    sql: bool
    auth: bool
    server_id: str
    started: str
    workspace: str
    version: str = ""

    def describe(self) -> str:
        """``'http://127.0.0.1:9001 (pid 4242)'``."""
        return f"{self.url} (pid {self.pid})"


def record_path(workspace: str | os.PathLike[str]) -> Path:
    """Where the record of ``workspace`` lives."""
    return Path(workspace) / RECORD_DIR / RECORD_FILE


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_record(workspace: str | os.PathLike[str], record: ServerRecord) -> Path:
    """Write the record atomically (readers never see half a file)."""
    path = record_path(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".server-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(record), f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def remove_record(workspace: str | os.PathLike[str], server_id: str) -> None:
    """Remove the record if it is still this server's (a newer server may own it)."""
    path = record_path(workspace)
    current = read_record(workspace)
    if current is not None and current.server_id == server_id:
        with contextlib.suppress(OSError):
            path.unlink()


def read_record(workspace: str | os.PathLike[str]) -> ServerRecord | None:
    """The record as written, or None when there is none or it cannot be read."""
    try:
        data = json.loads(record_path(workspace).read_text(encoding="utf-8"))
        fields = {k: data[k] for k in ServerRecord.__dataclass_fields__ if k in data}
        return ServerRecord(**fields)
    except (OSError, ValueError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def answers(record: ServerRecord, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the recorded URL answers as the recorded server (``GET /info``'s uuid)."""
    import httpx

    try:
        info: Any = httpx.get(f"{record.url}/info", timeout=timeout).json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(info, dict) and info.get("uuid") == record.server_id


def live_record(workspace: str | os.PathLike[str]) -> ServerRecord | None:
    """The record of a server that is serving ``workspace`` now; None when there is no
    record or it is stale (its process is gone, or its URL does not answer as it)."""
    record = read_record(workspace)
    if record is None or not pid_alive(record.pid):
        return None
    return record if answers(record) else None


__all__ = [
    "ServerRecord",
    "answers",
    "live_record",
    "pid_alive",
    "read_record",
    "record_path",
    "remove_record",
    "write_record",
]
