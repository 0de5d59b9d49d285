"""The PostgreSQL endpoint: buenavista's wire-protocol handler, adapted to pixql.

buenavista (``buenavista.postgres``) reads and writes the protocol's messages (start-up,
simple and extended query, portals); this module changes what pixql needs different:

* authentication: md5 against the server's API keys (any user name; database ``pixql``);
  no keys, no password asked;
* results: PostgreSQL types from Arrow's (:mod:`pixql.server.pg.types`; embeddings are
  ``real[]``), in text format;
* errors: ``ErrorResponse`` with severity and SQLSTATE (drivers raise on those);
* simple queries holding several statements answer each one;
* a Unix-socket listener next to the TCP one (see :mod:`pixql.server.pg.endpoint`).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import socket
import socketserver
import struct
from collections.abc import Callable
from typing import Any

from buenavista.postgres import (
    BuenaVistaHandler,
    BuenaVistaServer,
    BVBuffer,
    BVContext,
    ServerResponse,
)

from pixql.errors import ProgrammingError
from pixql.server.pg.session import PgResult, PgSession

log = logging.getLogger("pixql.server.pg")
DATABASE = "pixql"


class PgFatal(Exception):
    """Ends the connection after an ErrorResponse (start-up and authentication)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def sqlstate(exc: BaseException) -> str:
    """A SQLSTATE for ``exc`` (drivers map some to exception classes)."""
    from pixql import errors

    table = ((PgFatal, ""), (errors.ParseError, "42601"), (errors.NotFoundError, "42P01"),
             (errors.ConflictError, "42P07"), (errors.AccessError, "42501"),
             (errors.Error, "22023"))
    for cls, code in table:
        if isinstance(exc, cls):
            return getattr(exc, "code", "") or code
    name = type(exc).__name__
    return {"CatalogException": "42P01", "ParserException": "42601",
            "ConversionException": "22P02", "ConstraintException": "23505",
            "TransactionException": "40001", "BinderException": "42703"}.get(name, "XX000")


class PixqlHandler(BuenaVistaHandler):
    """One client connection (one thread)."""

    server: PgServer

    # -- start-up and authentication -------------------------------------------------------
    def send_auth_request(self, ctx: BVContext) -> None:
        database = ctx.params.get("database") or ctx.params.get("user")
        if database != DATABASE:
            raise PgFatal(f'database "{database}" does not exist: pixql serves one database, '
                          f'named "{DATABASE}"', "3D000")
        if not self.server.keys:
            self.send_authentication_ok()
            self.handle_post_auth(ctx)
        else:
            self.send_authentication_md5(ctx)

    def handle_md5_password(self, ctx: BVContext, payload: bytes) -> None:
        given = payload.decode("utf-8", "replace").rstrip("\x00").encode()
        user = ctx.params.get("user", "").encode()
        ok = False
        for key in self.server.keys:
            inner = hashlib.md5(key + user).hexdigest().encode()
            expected = b"md5" + hashlib.md5(inner + ctx.salt).hexdigest().encode()
            ok |= hmac.compare_digest(given, expected)
        if not ok:
            raise PgFatal(f'password authentication failed for user "{user.decode()}": the '
                          f"password is one of the server's API keys", "28P01")
        self.send_authentication_ok()
        self.handle_post_auth(ctx)

    # -- queries ---------------------------------------------------------------------------
    def handle_query(self, ctx: BVContext, payload: bytes) -> None:
        text = payload.decode("utf-8").rstrip("\x00")
        try:
            statements = split_statements(text)
            if not statements:
                self.wfile.write(struct.pack("!ci", ServerResponse.EMPTY_QUERY_RESPONSE, 4))
            for sql in statements:
                result = ctx.session.execute_sql(sql)
                self.send_notices(ctx.session)
                if result.has_results():
                    self.send_row_description(result)
                    count = self.send_data_rows(result)
                    tag = result.tag if result.tag.startswith(("FETCH", "SHOW")) else \
                        f"SELECT {count}"
                    self.send_command_complete(f"{tag}\x00")
                else:
                    self.send_command_complete(f"{result.status()}\x00")
        except Exception as e:  # noqa: BLE001 - any failure is the statement's answer
            self.send_error(e, ctx)
        ctx.has_error = False
        self.send_ready_for_query(ctx)

    def handle_bind(self, ctx: BVContext, payload: bytes) -> None:
        """Bind: parameters become the Python values their type OIDs say (text format, or
        binary for numbers, booleans, text and bytea; untyped ones stay text)."""
        try:
            self._bind(ctx, payload)
        except Exception as e:  # noqa: BLE001 - reported; the client resyncs with Sync
            self.send_error(e, ctx)

    def _bind(self, ctx: BVContext, payload: bytes) -> None:
        buf = BVBuffer(io.BytesIO(payload))
        portal, stmt = _cstring(buf), _cstring(buf)
        formats = [buf.read_int16() for _ in range(buf.read_int16())]
        count = buf.read_int16()
        oids = ctx.stmts[stmt][1]
        params: list[Any] = []
        for i in range(count):
            size = buf.read_int32()
            raw = None if size < 0 else buf.read_bytes(size)
            fmt = formats[i] if len(formats) > 1 else (formats[0] if formats else 0)
            oid = oids[i] if i < len(oids) else 0
            if raw is None:
                params.append(None)
            elif fmt == 0:
                params.append(_param(raw.decode("utf-8"), oid))
            else:
                params.append(_binary_param(raw, oid, i + 1))
        results = [buf.read_int16() for _ in range(buf.read_int16())]
        ctx.add_portal(portal, stmt, params, results)
        self.send_bind_complete()

    def handle_describe(self, ctx: BVContext, payload: bytes) -> None:
        if payload[:1] == b"S":  # never run a statement just to describe it
            stmt = payload[1:-1].decode("utf-8")
            self.send_paramter_description(ctx.stmts[stmt][1])
            self.wfile.write(struct.pack("!ci", ServerResponse.NO_DATA, 4))
            return
        portal = payload[1:-1].decode("utf-8")
        cursor = ctx.session.cursors.get(portal)
        if cursor is not None:  # psycopg describes a named cursor's portal
            if cursor.has_results():
                self.send_row_description(cursor)
            return
        super().handle_describe(ctx, payload)
        if ctx.result_cache.get(portal) is not None and \
                not ctx.result_cache[portal].has_results() and not ctx.has_error:
            self.wfile.write(struct.pack("!ci", ServerResponse.NO_DATA, 4))

    def handle_execute(self, ctx: BVContext, payload: bytes) -> None:
        portal = bytes(payload[: payload.index(b"\x00")]).decode("utf-8")
        cursor = ctx.session.cursors.get(portal)
        if cursor is not None and not ctx.has_error:
            limit = struct.unpack("!i", payload[len(portal) + 1: len(portal) + 5])[0]
            count = self.send_data_rows(cursor, limit)
            if limit and count >= limit:
                self.send_portal_suspend()
            else:
                self.send_command_complete(f"SELECT {count}\x00")
            return
        super().handle_execute(ctx, payload)

    # -- results and errors ----------------------------------------------------------------
    def send_row_description(self, query_result: Any) -> None:
        result: PgResult = query_result
        if result.result_format and any(result.result_format):
            raise PgFatal("pixql sends results in text format only; ask for text results",
                          "0A000")
        buf = BVBuffer()
        for name, oid in result.columns():
            buf.write_string(name)
            buf.write_bytes(struct.pack("!ihihih", 0, 0, oid, -1, -1, 0))
        out = buf.get_value()
        self.wfile.write(struct.pack("!cih", ServerResponse.ROW_DESCRIPTION, len(out) + 6,
                                     result.column_count()) + out)

    def send_data_rows(self, query_result: Any, limit: int = 0) -> int:
        result: PgResult = query_result
        count = 0
        width = result.column_count()
        chunks: list[bytes] = []
        for row in result.rows():
            buf = bytearray()
            for v in row:
                if v is None:
                    buf += struct.pack("!i", -1)
                else:
                    data = v.encode("utf-8")
                    buf += struct.pack("!i", len(data)) + data
            chunks.append(struct.pack("!cih", ServerResponse.DATA_ROW, len(buf) + 6, width)
                          + bytes(buf))
            count += 1
            if len(chunks) >= 256:
                self.wfile.write(b"".join(chunks))
                chunks.clear()
            if 0 < limit <= count:
                break
        self.wfile.write(b"".join(chunks))
        return count

    def send_notices(self, session: PgSession) -> None:
        for message in session.notices:
            self.wfile.write(_response(ServerResponse.NOTICE_RESPONSE, "NOTICE", "00000",
                                       message))
        session.notices.clear()

    def send_error(self, exception: Any, ctx: BVContext | None = None) -> None:
        fatal = isinstance(exception, PgFatal)
        if not fatal and not isinstance(exception, Exception):
            exception = Exception(str(exception))
        self.wfile.write(_response(ServerResponse.ERROR_RESPONSE,
                                   "FATAL" if fatal else "ERROR", sqlstate(exception),
                                   str(exception)))
        if ctx is not None:
            ctx.mark_error()


def _response(kind: bytes, severity: str, code: str, message: str) -> bytes:
    fields = b"".join(tag + value.encode("utf-8") + b"\x00" for tag, value in (
        (b"S", severity), (b"V", severity), (b"C", code), (b"M", message)))
    body = fields + b"\x00"
    return kind + struct.pack("!i", len(body) + 4) + body


#: text parameter formats pixql converts: type OID → parser (others stay text)
_TEXT: dict[int, Callable[[str], Any]] = {
    16: lambda v: v.lower() in ("t", "true", "1", "on", "yes"),
    20: int, 21: int, 23: int, 26: int, 700: float, 701: float}


def _param(value: Any, oid: int) -> Any:
    """A text-format parameter as the Python value its type OID says."""
    if not isinstance(value, str):
        return value
    convert = _TEXT.get(oid)
    return convert(value) if convert else value


#: binary parameter formats pixql reads: type OID → decoder
_BINARY: dict[int, Any] = {
    16: lambda b: b != b"\x00", 17: bytes, 20: lambda b: struct.unpack("!q", b)[0],
    21: lambda b: struct.unpack("!h", b)[0], 23: lambda b: struct.unpack("!i", b)[0],
    26: lambda b: struct.unpack("!I", b)[0], 700: lambda b: struct.unpack("!f", b)[0],
    701: lambda b: struct.unpack("!d", b)[0], 25: lambda b: b.decode("utf-8"),
    1043: lambda b: b.decode("utf-8"), 0: lambda b: b.decode("utf-8"),
}


def _binary_param(raw: bytes, oid: int, number: int) -> Any:
    decode = _BINARY.get(oid)
    if decode is None:
        raise ProgrammingError(f"parameter ${number} (type OID {oid}) was sent in binary "
                               f"format, which pixql reads for numbers, booleans, text and "
                               f"bytea only; send it in text format")
    return decode(raw)


def _cstring(buf: BVBuffer) -> str:
    out = bytearray()
    while (b := buf.read_byte()) not in (b"\x00", b""):
        out += b
    return out.decode("utf-8")


def split_statements(text: str) -> list[str]:
    """The statements of a simple query (pixql's parser; DuckDB-only syntax it cannot split
    is run as one statement)."""
    from pixql.errors import ParseError
    from pixql.sql import parse_script

    try:
        return [node.text for node in parse_script(text)]
    except ParseError:
        return [text] if text.strip().strip(";").strip() else []


class PgServer(BuenaVistaServer):
    """buenavista's threaded TCP server with pixql's handler and key check."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], conn: Any, keys: list[bytes]) -> None:
        socketserver.ThreadingTCPServer.__init__(self, address, PixqlHandler)
        self.conn, self.rewriter = conn, None
        self.extensions: dict[str, Any] = {}
        self.ctxts: dict[int, Any] = {}
        self.keys = keys
        self.auth = None

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return True  # bound to loopback unless --pg-host; passwords are the API keys

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("PostgreSQL connection from %s ended with an error", client_address,
                  exc_info=True)


class PgUnixServer(socketserver.ThreadingUnixStreamServer):
    """The same handler on a Unix socket (libpq's ``host=/folder``)."""

    daemon_threads = True

    def __init__(self, path: str, conn: Any, keys: list[bytes]) -> None:
        super().__init__(path, PixqlHandler)
        self.conn, self.rewriter = conn, None
        self.extensions: dict[str, Any] = {}
        self.ctxts: dict[int, Any] = {}
        self.keys = keys
        self.auth = None

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        return _UnixConnection(sock), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("PostgreSQL Unix-socket connection ended with an error", exc_info=True)


class _UnixConnection:
    """A Unix socket that ignores TCP options (buenavista sets TCP_NODELAY on every one)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def setsockopt(self, level: int, *args: Any) -> None:
        if level != socket.IPPROTO_TCP:
            self._sock.setsockopt(level, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
