"""Rebuilding the server's errors as the engine's exception types."""

from __future__ import annotations

import duckdb
import pytest

from pixql import errors
from pixql.client.errors import RemoteError, ServedWorkspaceError, rebuild
from pixql.client.http import ClientError

SERVER = "http://127.0.0.1:9001 (pid 42)"


def from_error(status: int, exc: errors.Error) -> BaseException:
    body = exc.to_dict()
    return rebuild(ClientError(status, body.pop("message"), body), SERVER)


@pytest.mark.parametrize("exc", [
    errors.ParseError("expected AS", line=2, col=7, source_line="BUILD MODEL x",
                      expected=["AS"]),
    errors.OptionError("unknown option 'x'", option="x", allowed=["a", "b"], line=1, col=3),
    errors.OptionError("bad value", option="top_k"),
    errors.NotFoundError("unknown model 'm'"),
    errors.ConflictError("model 'm' exists"),
    errors.ImageError("cannot read 2 images", paths=["a.png", "b.png"]),
    errors.InputError("bad field", field="image", status=413),
    errors.AccessError("outside the workspace"),
    errors.ModelError("cannot"),
])
def test_pixql_errors_come_back_as_themselves(exc):
    back = from_error(exc.http_status, exc)
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.to_dict() == exc.to_dict()  # type: ignore[attr-defined]


def test_duckdb_errors_come_back_as_duckdb_types():
    back = rebuild(ClientError(400, "Catalog Error: Table x does not exist",
                               {"error": "CatalogException"}), SERVER)
    assert isinstance(back, duckdb.CatalogException)
    assert str(back) == "Catalog Error: Table x does not exist"


@pytest.mark.parametrize(("status", "message", "details", "cls", "says"), [
    (None, "connection refused", {}, RemoteError, "cannot reach"),
    (401, "Unauthorized", {}, ServedWorkspaceError, "PIXQL_API_KEY"),
    (404, "this server has no /sql route", {}, ServedWorkspaceError, "--enable-sql"),
    (500, "Internal error.", {}, RemoteError, "HTTP 500"),
    (400, "odd", {"error": "NoSuchClass"}, RemoteError, "odd"),
])
def test_transport_errors_say_what_to_do(status, message, details, cls, says):
    back = rebuild(ClientError(status, message, details), SERVER)
    assert type(back) is cls
    assert says in str(back)
    assert SERVER in str(back)
