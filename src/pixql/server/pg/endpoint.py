"""Start and stop the PostgreSQL endpoint of ``pixql serve --pg-port PORT``.

It listens on TCP (``--pg-host``, loopback by default) and on a Unix socket,
``.s.PGSQL.5432`` in the folder ``<workspace>/.pixql/pg-<PORT>/``: libpq names that file
after the port it would use, and ThanoSQL's magic connects with a URL that names no port
(``postgresql://user:pw@/pixql?host=<folder>``), so libpq's default 5432 must find it.
A workspace path too long for a socket address falls back to a private temporary folder.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pixql.workspace import Workspace

log = logging.getLogger("pixql.server.pg")
#: the socket file name libpq looks for in a ``host=/folder`` when no port is given
SOCKET_NAME = ".s.PGSQL.5432"
#: longest Unix socket path (sun_path is 108 bytes on Linux, 104 on macOS)
MAX_SOCKET_PATH = 100


def socket_dir(root: Path, port: int) -> tuple[Path, bool]:
    """The folder for the Unix socket, and whether it is a temporary one."""
    folder = root / ".pixql" / f"pg-{port}"
    if len(str(folder / SOCKET_NAME).encode()) <= MAX_SOCKET_PATH:
        return folder, False
    return Path(tempfile.mkdtemp(prefix=f"pixql-pg-{port}-")), True


class PgEndpoint:
    """The running endpoint: ``host``, ``port`` (TCP) and ``socket_dir`` (Unix socket)."""

    def __init__(self, ws: Workspace, host: str, port: int, keys: list[str]) -> None:
        from pixql.server.pg.server import PgServer, PgUnixServer
        from pixql.server.pg.session import PgConnection

        conn = PgConnection(ws)
        secrets = [k.encode("utf-8") for k in keys]
        self.tcp = PgServer((host, port), conn, secrets)
        self.host, self.port = host, int(self.tcp.server_address[1])
        self.socket_dir, self._temporary = socket_dir(Path(ws.root), self.port)
        self.socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.socket_dir / SOCKET_NAME
        path.unlink(missing_ok=True)  # a dead server's socket
        self.unix = PgUnixServer(str(path), conn, secrets)
        self._threads = [
            threading.Thread(target=self.tcp.serve_forever, name="pixql-pg-tcp", daemon=True),
            threading.Thread(target=self.unix.serve_forever, name="pixql-pg-unix", daemon=True)]
        for t in self._threads:
            t.start()
        log.warning("PostgreSQL endpoint: psql -h %s -p %d -U pixql -d pixql (Unix socket "
                    "folder %s)", host, self.port, self.socket_dir)

    def stop(self) -> None:
        for server in (self.tcp, self.unix):
            server.shutdown()
            server.server_close()
        (self.socket_dir / SOCKET_NAME).unlink(missing_ok=True)
        if self._temporary:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def start_endpoint(app: Any) -> PgEndpoint | None:
    """Start the endpoint ``app``'s settings ask for (None: not asked, or no workspace)."""
    settings = app.state.settings
    ws = app.state.workspace
    if settings.pg_port is None:
        return None
    if ws is None or isinstance(ws, str):
        log.error("--pg-port needs a workspace (pixql -w DIR serve); PostgreSQL endpoint "
                  "not started")
        return None
    keys = [k.get_secret_value() for k in settings.api_keys]
    if not keys and settings.pg_host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the PostgreSQL endpoint listens on %s without API keys: anyone who "
                    "reaches it can run SQL (start the server with --api-key)",
                    settings.pg_host)
    return PgEndpoint(ws, settings.pg_host, settings.pg_port, keys)
