"""``pixql serve``'s socket and the URL it records."""

from __future__ import annotations

import socket

import pytest

from pixql.server.served import bind, url_of


def test_bind_any_free_port_and_record_loopback():
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0
        assert url_of(sock, "127.0.0.1") == f"http://127.0.0.1:{port}"
        assert url_of(sock, "0.0.0.0") == f"http://127.0.0.1:{port}"
        assert url_of(sock, "::") == f"http://[::1]:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # listening before uvicorn runs: a client reading the record can connect
    finally:
        sock.close()


def test_a_port_already_listened_on_is_an_error():
    first = bind("127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match="in use"):
            bind("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()
