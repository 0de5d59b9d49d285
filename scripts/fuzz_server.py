#!/usr/bin/env python3
"""Fuzz pixql's HTTP server on loopback: no request may get a 5xx.

Three sources of requests, all sent to a real uvicorn server (started here with a tiny CLIP
and a confined workspace, or ``--url`` of one already running):

* **schemathesis** — for every operation of the server's own ``/openapi.json``, cases
  that fit the schema (positive) and cases that break it (negative);
* **raw** — hand-made malformed requests: broken and truncated JSON, wrong types, deep
  nesting, unknown fields, empty lists, odd content types, bodies over the cap;
* **sql** — the engine fuzzer's statements (``scripts/fuzz_engine.py``) through ``POST /sql``.

It prints the requests sent per source, the status codes seen and every 5xx (with the request
that caused it), and exits with status 1 when there was any.

Usage:
    python scripts/fuzz_server.py [--examples 100] [--raw 1000] [--sql 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_engine

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CLIP_VERSION = "ViT-B-32"
#: the API key of the second (secured) server
KEY = "fuzz-key-0123456789"
#: the server's caps while fuzzing (small, so the raw cases reach them quickly)
SETTINGS: dict[str, Any] = {
    "enable_sql": True,
    "allow_file_input": True,
    "max_body_bytes": 256 * 1024,
    "url_timeout_s": 0.5,
    "url_total_timeout_s": 2.0,
}


@dataclass
class Tally:
    """Requests sent and what came back, per source."""

    sent: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    broken_bodies: list[str] = field(default_factory=list)
    transport_errors: Counter = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)

    def record(self, source: str, response: httpx.Response | Any, what: str) -> None:
        """Count a response; a 5xx, or a 200 JSON body that does not parse, is an error."""
        status = response.status_code
        self.sent[source] += 1
        self.statuses[status] += 1
        if status >= 500:
            self.server_errors.append(f"[{source}] {status} for {what[:300]}")
        elif status == 200 and "json" in response.headers.get("content-type", ""):
            try:
                response.json()
            except ValueError:
                self.broken_bodies.append(f"[{source}] 200 with a broken JSON body for "
                                          f"{what[:300]}")

    def failed(self, source: str, exc: Exception, what: str) -> None:
        """A request that got no complete response: a connection cut mid-response is the
        server's fault (a broken body); anything else is counted as not sent."""
        name = type(exc).__name__
        if name in ("RemoteProtocolError", "ChunkedEncodingError"):
            self.sent[source] += 1
            self.broken_bodies.append(f"[{source}] response cut short ({exc}) for {what[:300]}")
        else:
            self.transport_errors[name] += 1

    def summary(self) -> str:
        per_source = ", ".join(f"{k} {v}" for k, v in sorted(self.sent.items()))
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        return (f"fuzz_server: {sum(self.sent.values())} requests ({per_source}); "
                f"{len(self.server_errors)} 5xx, {len(self.broken_bodies)} broken 200 responses"
                f"\n  status codes: {codes}")


# ---------------------------------------------------------------------- the server
def _run_uvicorn(app: Any) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


@contextmanager
def local_servers(folder: Path) -> Iterator[tuple[str, str]]:
    """Two uvicorn servers on 127.0.0.1 sharing a tiny CLIP and a confined fuzzing workspace:
    one open, one needing the API key :data:`KEY`. Yields their base URLs."""
    from pixql.server.app import create_app
    from pixql.server.settings import ServerSettings
    from pixql.testing.tiny_clip import make_tiny_clip_models_dir

    models = make_tiny_clip_models_dir(folder / "clip-models", CLIP_VERSION)
    os.environ.update({"PIXQL_CLIP_MODELS_DIR": str(models), "CLIP_VERSION_ID": CLIP_VERSION})
    template = fuzz_engine.build_template(folder / "ws", clip=True)
    workspace = fuzz_engine.open_workspace(template)
    running = [_run_uvicorn(create_app(ServerSettings.from_env(**settings), workspace=workspace))
               for settings in (SETTINGS, {**SETTINGS, "api_keys": [KEY]})]
    try:
        yield running[0][2], running[1][2]
    finally:
        for server, thread, _ in running:
            server.should_exit = True
            thread.join(timeout=10)
        workspace.close()


# ---------------------------------------------------------------------- schemathesis
def schema_fuzz(base: str, tally: Tally, *, examples: int, seed: int) -> None:
    """``examples`` positive and negative cases per operation of ``/openapi.json``."""
    import hypothesis
    import requests
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    session = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis.seed(seed)
            @settings(max_examples=examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), phases=[
                          hypothesis.Phase.explicit, hypothesis.Phase.generate])
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                try:
                    response = case.call(base_url=base, session=session, timeout=30)
                except (requests.RequestException, ValueError) as e:
                    tally.failed("schemathesis", e, f"{case.method} {case.path} {case.body!r}")
                    return
                tally.record("schemathesis", response, f"{case.method} {case.path} {case.body!r}")

            try:
                run()
            except hypothesis.errors.Unsatisfiable:  # e.g. no invalid input for GET /info
                tally.skipped.append(f"{operation.label} ({mode.value})")


# ---------------------------------------------------------------------- raw requests
B64_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAE"
           "lFTkSuQmCC")
ROUTES = ["/clip/embed_image", "/clip/embed_text", "/clip/compare", "/model/add",
          "/model/remove", "/model/clear", "/sql"]
GOOD_BODIES: dict[str, dict[str, Any]] = {
    "/clip/embed_image": {"image": {"type": "base64", "value": B64_PNG}},
    "/clip/embed_text": {"text": ["a cat", "a dog"]},
    "/clip/compare": {"subject": "a cat", "subject_type": "text", "prompt": ["x", "y"]},
    "/model/add": {"model_id": f"clip/{CLIP_VERSION}"},
    "/model/remove": {"model_id": "clip/RN50"},
    "/model/clear": {},
    "/sql": {"query": "SELECT count(*) FROM images"},
}
ODD_VALUES: list[Any] = [
    None, True, 0, -1, 1e308, "", "x" * 5000, [], [[]], {}, {"type": None}, [None],
    {"type": "base64", "value": "!!"}, {"type": "url", "value": "http://169.254.169.254/"},
    {"type": "file", "value": "../../etc/passwd"}, {"type": "numpy", "value": "gASV"},
    "data:image/png;base64," + B64_PNG, "\x00", "é" * 10, [B64_PNG] * 20, {"a": {"b": {}}},
]


def _deep(depth: int) -> str:
    return '{"text": ' + "[" * depth + '"x"' + "]" * depth + "}"


def raw_case(rng: random.Random) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path, headers, body) of one malformed or borderline request."""
    path = rng.choice(ROUTES)
    good = dict(GOOD_BODIES[path])
    json_type = {"Content-Type": "application/json"}
    kind = rng.randrange(9)
    if kind == 0:  # a field replaced by an odd value
        key = rng.choice(list(good) or ["x"])
        good[key] = rng.choice(ODD_VALUES)
        return "POST", path, json_type, json.dumps(good).encode()
    if kind == 1:  # an unknown field
        good[rng.choice(["extra", "api_key", "normalize", "max_rows", "__proto__"])] = rng.choice(
            ODD_VALUES)
        return "POST", path, json_type, json.dumps(good).encode()
    if kind == 2:  # truncated JSON
        text = json.dumps(good).encode()
        return "POST", path, json_type, text[: rng.randrange(len(text) + 1)]
    if kind == 3:  # random bytes
        return "POST", path, json_type, rng.randbytes(rng.randrange(0, 300))
    if kind == 4:  # deep nesting
        return "POST", path, json_type, _deep(rng.choice([10, 100, 1000, 5000, 50_000])).encode()
    if kind == 5:  # odd content types
        ctype = rng.choice(["text/plain", "application/x-www-form-urlencoded",
                            "multipart/form-data; boundary=x", "application/json; charset=latin-1",
                            "image/png", ""])
        return "POST", path, {"Content-Type": ctype}, json.dumps(good).encode()
    if kind == 6:  # over the body cap
        size = SETTINGS["max_body_bytes"] + rng.randrange(1, 10_000)
        return "POST", path, json_type, b'{"text": "' + b"x" * size + b'"}'
    if kind == 7:  # wrong method
        return rng.choice(["GET", "PUT", "DELETE", "PATCH"]), path, json_type, b"{}"
    return "POST", path, json_type, json.dumps(rng.choice(ODD_VALUES)).encode()


def raw_fuzz(base: str, tally: Tally, *, n: int, rng: random.Random,
             source: str = "raw") -> None:
    """Send ``n`` :func:`raw_case` requests."""
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(n):
            method, path, headers, body = raw_case(rng)
            try:
                r = client.request(method, path, headers=headers, content=body)
            except httpx.TransportError as e:
                tally.failed(source, e, f"{method} {path} {body[:200]!r}")
                continue
            tally.record(source, r, f"{method} {path} {body[:200]!r}")


# ---------------------------------------------------------------------- SQL
#: values of every DuckDB type family, at the edges of their ranges (JSON must carry them)
EDGE_VALUES = [
    "'infinity'::DATE", "'-infinity'::TIMESTAMP", "'294247-01-10'::TIMESTAMP",
    "'10000-01-01'::DATE", "'5877642-06-25 (BC)'::DATE", "'infinity'::TIMESTAMPTZ",
    "'nan'::DOUBLE", "'-inf'::FLOAT", "1::BIGNUM", "'101'::BIT", "union_value(k := 1)",
    "MAP {'a': [1, NULL]}", "'12:00:00+02'::TIMETZ", "INTERVAL 100000 YEAR", "'\\x00'::BLOB",
    "170141183460469231731687303715884105727::HUGEINT", "[1, 2]::INT[2]", "gen_random_uuid()",
    "'x'::ENUM('x', 'y')", "{'a': {'b': [1.5e308, -0.0]}}", "NULL", "chr(0)",
    "123456789012345678.1234567890::DECIMAL(38, 10)", "TIMESTAMP_NS '2262-04-11 23:47:16'",
]


def edge_select(rng: random.Random) -> str:
    """A SELECT of a few edge values (the JSON encoder must carry every type)."""
    values = rng.sample(EDGE_VALUES, rng.randint(1, 4))
    return "SELECT " + ", ".join(f"{v} AS c{i}" for i, v in enumerate(values))


def sql_fuzz(base: str, tally: Tally, *, n: int, rng: random.Random,
             edges: bool = True) -> None:
    """Send ``n`` generated statements (fuzz_engine's generators, and edge values unless
    ``edges`` is false) to ``/sql``."""
    generators: list[Callable[[random.Random], str]] = list(fuzz_engine.GENERATORS)
    if edges:
        generators.append(edge_select)
    with httpx.Client(base_url=base, timeout=60) as client:
        for _ in range(n):
            text = rng.choice(generators)(rng) or " "
            try:
                r = client.post("/sql", json={"query": text, "max_rows": 50})
            except httpx.TransportError as e:
                tally.failed("sql", e, f"POST /sql {text!r}")
                continue
            tally.record("sql", r, f"POST /sql {text!r}")


# ---------------------------------------------------------------------- main
def run_all(bases: tuple[str, str], *, examples: int, raw: int, sql: int, seed: int) -> Tally:
    """Every source against the open server, raw requests against the secured one too."""
    tally = Tally()
    started = time.perf_counter()
    schema_fuzz(bases[0], tally, examples=examples, seed=seed)
    raw_fuzz(bases[0], tally, n=raw, rng=random.Random(seed))
    raw_fuzz(bases[1], tally, n=raw // 2, rng=random.Random(seed + 2), source="raw-secured")
    sql_fuzz(bases[0], tally, n=sql, rng=random.Random(seed + 1))
    tally.sent["seconds"] = round(time.perf_counter() - started)
    return tally


def main(argv: list[str] | None = None) -> int:
    """Fuzz a local (or ``--url``) server; 0 when no request got a 5xx."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100,
                        help="schemathesis cases per operation and mode (default 100)")
    parser.add_argument("--raw", type=int, default=1000, help="raw malformed requests")
    parser.add_argument("--sql", type=int, default=1000, help="generated statements to /sql")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--url", help="fuzz this running server instead of a local one")
    parser.add_argument("--secured-url", help="with --url: a server that needs --key")
    args = parser.parse_args(argv)
    counts = {"examples": args.examples, "raw": args.raw, "sql": args.sql, "seed": args.seed}
    if args.url:
        bases = (args.url.rstrip("/"), (args.secured_url or args.url).rstrip("/"))
        tally = run_all(bases, **counts)
    else:
        with (tempfile.TemporaryDirectory(prefix="pixql-fuzz-server-") as tmp,
              local_servers(Path(tmp)) as bases):
            tally = run_all(bases, **counts)
    seconds = tally.sent.pop("seconds")
    for line in tally.server_errors[:10] + tally.broken_bodies[:5]:
        print(line, file=sys.stderr)
    print(tally.summary() + f"\n  ({seconds}s, seed {args.seed})")
    if tally.skipped:
        print(f"  no cases could be generated for: {', '.join(tally.skipped)}")
    if tally.transport_errors:
        print(f"  not sent (client-side errors): {dict(tally.transport_errors)}")
    return 1 if tally.server_errors or tally.broken_bodies else 0


if __name__ == "__main__":
    sys.exit(main())
