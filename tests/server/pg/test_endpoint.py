"""Starting and stopping the endpoint; where its Unix socket goes; the serve flags."""

from __future__ import annotations

from types import SimpleNamespace

import psycopg
import pytest

import pixql
from pixql.cli.main import build_parser
from pixql.server.pg.endpoint import SOCKET_NAME, PgEndpoint, socket_dir, start_endpoint
from pixql.server.settings import ServerSettings


def test_socket_folder_is_in_the_workspace_named_after_the_port(tmp_path):
    folder, temporary = socket_dir(tmp_path, 6543)
    assert (folder, temporary) == (tmp_path / ".pixql" / "pg-6543", False)


def test_too_long_a_path_falls_back_to_a_temporary_folder(tmp_path):
    deep = tmp_path / ("x" * 120)
    folder, temporary = socket_dir(deep, 6543)
    assert temporary
    assert len(str(folder / SOCKET_NAME)) < 108
    folder.rmdir()


def test_unix_socket_serves_and_stop_removes_it(tmp_path):
    ws = pixql.connect(str(tmp_path / "ws"), progress=False, confined=True)
    try:
        pg = PgEndpoint(ws, "127.0.0.1", 0, [])
        try:
            assert (pg.socket_dir / SOCKET_NAME).is_socket()
            with psycopg.connect(host=str(pg.socket_dir), dbname="pixql", user="me") as conn:
                assert conn.execute("SELECT 40 + 2").fetchone() == (42,)
        finally:
            pg.stop()
        assert not (pg.socket_dir / SOCKET_NAME).exists()
    finally:
        ws.close()


def test_not_started_without_port_or_workspace():
    off = SimpleNamespace(state=SimpleNamespace(settings=ServerSettings(), workspace="ws"))
    assert start_endpoint(off) is None
    no_ws = SimpleNamespace(state=SimpleNamespace(settings=ServerSettings(pg_port=0),
                                                  workspace=None))
    assert start_endpoint(no_ws) is None


def test_serve_flags_and_sql_implied():
    args = build_parser().parse_args(["serve", "--pg-port", "5433", "--pg-host", "0.0.0.0"])
    assert (args.pg_port, args.pg_host) == (5433, "0.0.0.0")
    assert ServerSettings(pg_port=5433).sql_enabled
    assert not ServerSettings().sql_enabled
    with pytest.raises(ValueError, match="pg_port"):
        ServerSettings(pg_port=70000)
