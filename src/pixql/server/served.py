"""``pixql serve -w DIR``: listen, then announce in ``DIR/.pixql/server.json`` that this
process serves the workspace (see :mod:`pixql.client.record`); withdraw it on shutdown.

The socket is bound (and listening) before the record is written, so a client that reads the
record can connect at once, and port 0 records the port the OS picked. The record is removed
when uvicorn starts shutting down (uvicorn re-raises SIGTERM after a graceful shutdown,
which would skip a ``finally``), and again on the way out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from pixql.client.record import (
    ServerRecord,
    now_iso,
    record_path,
    remove_record,
    write_record,
)
from pixql.version import __version__

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi import FastAPI

log = logging.getLogger("pixql.server")

#: exit status when the app failed to start (uvicorn's)
STARTUP_FAILURE = 3
#: listen addresses that mean "every interface": clients on this machine use loopback
_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, as ``host`` resolves)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, host: str) -> str:
    """The URL clients on this machine use to reach ``sock``."""
    port = sock.getsockname()[1]
    name = _ANY.get(host, host)
    return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"


@contextlib.contextmanager
def announced(app: FastAPI, workspace: Any, sock: socket.socket) -> Iterator[ServerRecord]:
    """Write the workspace's server record for the duration of the block."""
    settings = app.state.settings
    record = ServerRecord(
        url=url_of(sock, settings.host), pid=os.getpid(), sql=settings.sql_enabled,
        auth=settings.auth_enabled, server_id=app.state.server_id, started=now_iso(),
        workspace=str(workspace.root), version=__version__)
    try:
        write_record(workspace.root, record)
    except OSError as e:  # a read-only folder: serve anyway, clients just cannot find us
        log.warning("cannot write %s (%s): clients will not find this server through the "
                    "workspace; give them its URL", record_path(workspace.root), e)
    try:
        yield record
    finally:
        remove_record(workspace.root, record.server_id)


def run(app: FastAPI, workspace: Any, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until interrupted; while it serves, the
    workspace (if any) carries the record."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            if workspace is not None:  # first: clients stop coming to a server going away
                remove_record(workspace.root, app.state.server_id)
            await super().shutdown(sockets)

    server = Server(uvicorn.Config(app, log_level="info"))
    with contextlib.ExitStack() as stack:
        if workspace is not None:
            stack.enter_context(announced(app, workspace, sock))
        # as uvicorn.run: Ctrl-C (which uvicorn re-raises after shutting down) is an exit
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
