#!/usr/bin/env python3
"""Load test of pixql's server on loopback: concurrent clients, busy writers, no loss.

Starts ``pixql serve`` in its own process (a tiny CLIP, SQL on a small workspace) unless
``--url`` names a running server. Each round, ``--clients`` threads send ``--requests``
requests each, mixing ``/clip/embed_text``, ``/clip/embed_image``, ``/clip/compare`` and SQL
reads (a count and a SEARCH), while three writers loop until the clients are done:

* ``CONVERT USING px`` over the table the readers read (readers must always see all 9 rows,
  each with an embedding);
* ``INSERT INTO events`` of a fresh id per request (at the end every acknowledged id must be
  there exactly once: nothing lost, nothing duplicated);
* ``UPDATE images SET convert_result = convert_result`` (collides with CONVERT: a write-write
  conflict must be a 409 with ``Retry-After``, retried by the writer, never a 500).

Printed and written (``--out``, JSON): requests, errors, conflicts retried, rows lost or
duplicated, p50/p99 latency per kind, the server's peak RSS and its RSS after each round
(memory must not grow from round to round). Exit status 1 on any error or lost row.

Usage:
    python scripts/loadtest.py [--clients 20] [--requests 200] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_engine

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CLIP_VERSION = "ViT-B-32"
ROWS = 9  # rows of the workspace's images table
#: request kind → weight in the mix
MIX = {"embed_text": 3, "embed_image": 3, "compare": 2, "sql_count": 2, "sql_search": 1}
READ = "SELECT count(*), count(DISTINCT image_path), count(convert_result) FROM images"
SEARCH = ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input="
          "'shapes/cross/001.png', emb_col='convert_result', top_k=3) AS SELECT * FROM images")
WORDS = ["a cat", "a dog on a chair", "circle", "square", "a black and white photo", "x"]


# ---------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_server(folder: Path) -> Iterator[tuple[str, int]]:
    """``pixql -w <ws> serve --enable-sql`` in a subprocess; yields (base URL, pid)."""
    from pixql.testing.tiny_clip import make_tiny_clip_models_dir

    models = make_tiny_clip_models_dir(folder / "clip-models", CLIP_VERSION)
    ws = fuzz_engine.build_template(folder / "ws", clip=False)
    with fuzz_engine.open_workspace(ws) as db:
        db.sql("CREATE TABLE events (id BIGINT)")
    port = free_port()
    env = {**os.environ, "PIXQL_CLIP_MODELS_DIR": str(models), "CLIP_VERSION_ID": CLIP_VERSION,
           "PIXQL_PROGRESS": "0", "PIXQL_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pixql.cli.main", "-w", str(ws), "serve", "--port", str(port),
           "--enable-sql"]
    log = open(folder / "server.log", "w+", encoding="utf-8")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base, proc)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.seek(0)
        problems = _problems(log.read())
        log.close()
        for text in problems[:3]:  # what went wrong inside the server
            print(text[-4000:], file=sys.stderr)


def _problems(log: str) -> list[str]:
    """The ERROR records (with their tracebacks) of a server log."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in log.splitlines():
        if line.startswith("INFO"):
            current = None
        elif line.startswith("ERROR") or (current is None and line.startswith("Traceback")):
            current = [line]
            found.append(current)
        elif current is not None:
            current.append(line)
    return ["\n".join(lines) for lines in found]


def _wait_healthy(base: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not start")


class MemorySampler(threading.Thread):
    """Samples a process's resident memory (Linux ``/proc``) until stopped."""

    def __init__(self, pid: int | None, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak = pid, every, 0
        self.done = threading.Event()

    def rss(self) -> int:
        """Current RSS in bytes (0 when it cannot be read)."""
        if self.pid is None:
            return 0
        try:
            text = Path(f"/proc/{self.pid}/status").read_text(encoding="ascii")
        except OSError:
            return 0
        line = next((x for x in text.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
        return int(line.split()[1]) * 1024

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.every)


# ---------------------------------------------------------------------- requests
@dataclass
class Tally:
    """What one round saw."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    conflicts: int = 0
    bad_reads: list[str] = field(default_factory=list)
    writes: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, r: httpx.Response | None, why: str = "") -> None:
        with self.lock:
            self.latencies[kind].append(seconds)
            self.statuses[r.status_code if r is not None else "transport"] += 1
            if r is None or r.status_code != 200:
                detail = why or (r.text[:200] if r is not None else "")
                self.errors.append(f"{kind}: {r.status_code if r else 'transport'} {detail}")


def _png(rng: random.Random) -> str:
    """A small random-colour PNG, base64."""
    import io

    from PIL import Image

    img = Image.new("RGB", (rng.randint(16, 96), rng.randint(16, 96)),
                    tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def request_for(kind: str, rng: random.Random, images: list[str]) -> tuple[str, dict[str, Any]]:
    """(route, JSON body) of one request of ``kind``."""
    image = {"type": "base64", "value": rng.choice(images)}
    bodies: dict[str, Callable[[], tuple[str, dict[str, Any]]]] = {
        "embed_text": lambda: ("/clip/embed_text", {"text": rng.sample(WORDS, 2)}),
        "embed_image": lambda: ("/clip/embed_image", {"image": [image]}),
        "compare": lambda: ("/clip/compare", {"subject": image, "prompt": rng.sample(WORDS, 3)}),
        "sql_count": lambda: ("/sql", {"query": READ}),
        "sql_search": lambda: ("/sql", {"query": SEARCH}),
    }
    return bodies[kind]()


def client(base: str, n: int, seed: int, images: list[str], tally: Tally) -> None:
    """One client: ``n`` requests of the mix, one at a time."""
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    with httpx.Client(base_url=base, timeout=120) as http:
        for _ in range(n):
            kind = rng.choices(kinds, weights)[0]
            route, body = request_for(kind, rng, images)
            started = time.perf_counter()
            try:
                r: httpx.Response | None = http.post(route, json=body)
            except httpx.TransportError as e:
                r = None
                tally.record(kind, time.perf_counter() - started, None, repr(e))
                continue
            tally.record(kind, time.perf_counter() - started, r)
            if kind == "sql_count" and r.status_code == 200 and r.json()["rows"] != [[ROWS] * 3]:
                tally.bad_reads.append(f"read {r.json()['rows']} during the writes")


def write(http: httpx.Client, query: str, tally: Tally, kind: str) -> bool:
    """One write, retried after each 409 (as its Retry-After asks, capped at 0.2 s)."""
    for _ in range(50):
        started = time.perf_counter()
        r = http.post("/sql", json={"query": query})
        if r.status_code == 409 and "Retry-After" in r.headers:
            with tally.lock:
                tally.conflicts += 1
            time.sleep(min(float(r.headers["Retry-After"]), 0.2))
            continue
        tally.record(kind, time.perf_counter() - started, r)
        return r.status_code == 200
    tally.errors.append(f"{kind}: still conflicting after 50 tries")
    return False


def writer(base: str, stop: threading.Event, tally: Tally, kind: str,
           query: Callable[[int], str], acked: list[int]) -> None:
    """Loop one kind of write until ``stop``; ``acked`` gets the numbers that succeeded."""
    with httpx.Client(base_url=base, timeout=120) as http:
        i = 0
        while not stop.is_set():
            i += 1
            if write(http, query(i), tally, kind):
                acked.append(i)
                with tally.lock:
                    tally.writes[kind] += 1


# ---------------------------------------------------------------------- rounds
def run_round(base: str, *, clients: int, requests: int, seed: int, offset: int) -> dict[str, Any]:
    """One round of load; its figures (integrity checked after the writers stop)."""
    tally, stop = Tally(), threading.Event()
    rng = random.Random(seed)
    images = [_png(rng) for _ in range(8)]
    event_ids: list[int] = []
    writers = [
        threading.Thread(target=writer, args=(
            base, stop, tally, "convert",
            lambda i: "CONVERT USING px AS SELECT * FROM images", [])),
        threading.Thread(target=writer, args=(
            base, stop, tally, "insert",
            lambda i: f"INSERT INTO events VALUES ({offset + i})", event_ids)),
        threading.Thread(target=writer, args=(
            base, stop, tally, "update",
            lambda i: "UPDATE images SET convert_result = convert_result", [])),
    ]
    readers = [threading.Thread(target=client, args=(base, requests, seed * 1000 + c, images,
                                                     tally)) for c in range(clients)]
    started = time.perf_counter()
    for t in writers + readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    for t in writers:
        t.join()
    seconds = time.perf_counter() - started
    lost, duplicated = check_events(base, [offset + i for i in event_ids], offset)
    return figures(tally, seconds, lost, duplicated)


def check_events(base: str, acked: list[int], offset: int) -> tuple[int, int]:
    """(acknowledged ids missing, ids stored more than once) among this round's events."""
    r = httpx.post(f"{base}/sql", timeout=60, json={
        "query": f"SELECT id, count(*) FROM events WHERE id > {offset} GROUP BY id"})
    stored = dict(map(tuple, r.json()["rows"]))
    lost = len(set(acked) - set(stored))
    duplicated = sum(1 for n in stored.values() if n > 1) + len(set(stored) - set(acked))
    return lost, duplicated


def figures(tally: Tally, seconds: float, lost: int, duplicated: int) -> dict[str, Any]:
    every = [x for v in tally.latencies.values() for x in v]
    per_kind = {k: {"n": len(v), "p50_ms": round(1000 * float(np.percentile(v, 50)), 1),
                    "p99_ms": round(1000 * float(np.percentile(v, 99)), 1)}
                for k, v in sorted(tally.latencies.items())}
    return {
        "requests": len(every), "seconds": round(seconds, 1),
        "requests_per_s": round(len(every) / seconds, 1),
        "errors": len(tally.errors), "first_errors": tally.errors[:5],
        "server_errors_5xx": sum(v for k, v in tally.statuses.items()
                                 if isinstance(k, int) and k >= 500),
        "conflicts_retried": tally.conflicts, "writes": dict(tally.writes),
        "bad_reads": len(tally.bad_reads), "rows_lost": lost, "rows_duplicated": duplicated,
        "p50_ms": round(1000 * float(np.percentile(every, 50)), 1),
        "p99_ms": round(1000 * float(np.percentile(every, 99)), 1), "per_kind": per_kind,
    }


def run(base: str, pid: int | None, *, clients: int, requests: int, rounds: int,
        seed: int = 0) -> dict[str, Any]:
    """Every round against ``base`` (``pid``: the server process, for memory)."""
    warm = httpx.post(f"{base}/clip/embed_text", json={"text": "warm up"}, timeout=300)
    warm.raise_for_status()  # the model loads once, before anything is timed
    sampler = MemorySampler(pid)
    sampler.start()
    out: dict[str, Any] = {"clients": clients, "requests_per_client": requests, "rounds": []}
    for n in range(rounds):
        result = run_round(base, clients=clients, requests=requests, seed=seed + n,
                           offset=n * 10_000_000)
        result["rss_after_mb"] = round(sampler.rss() / 2**20, 1)
        out["rounds"].append(result)
    sampler.done.set()
    sampler.join()
    after = [r["rss_after_mb"] for r in out["rounds"]]
    out["peak_rss_mb"] = round(sampler.peak / 2**20, 1)
    out["rss_growth_mb"] = round(after[-1] - after[0], 1) if len(after) > 1 else 0.0
    out["ok"] = all(r["errors"] == 0 and r["rows_lost"] == 0 and r["rows_duplicated"] == 0
                    and r["bad_reads"] == 0 for r in out["rounds"])
    return out


def summary(result: dict[str, Any]) -> str:
    lines = [f"loadtest: {result['clients']} clients x {result['requests_per_client']} "
             f"requests, {len(result['rounds'])} round(s); peak server RSS "
             f"{result['peak_rss_mb']} MB, RSS growth first->last round "
             f"{result['rss_growth_mb']} MB"]
    for i, r in enumerate(result["rounds"], 1):
        lines.append(
            f"  round {i}: {r['requests']} requests in {r['seconds']}s ({r['requests_per_s']}/s)"
            f", {r['errors']} errors, {r['server_errors_5xx']} 5xx, {r['conflicts_retried']} "
            f"conflicts retried (409), writes {r['writes']}, {r['rows_lost']} rows lost, "
            f"{r['rows_duplicated']} duplicated, {r['bad_reads']} bad reads; p50 "
            f"{r['p50_ms']} ms, p99 {r['p99_ms']} ms; RSS after {r['rss_after_mb']} MB")
        for kind, k in r["per_kind"].items():
            lines.append(f"      {kind:<11} n={k['n']:<5} p50 {k['p50_ms']} ms  p99 "
                         f"{k['p99_ms']} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200, help="requests per client")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="loadtest.json", help="JSON figures (default "
                                                                "loadtest.json)")
    parser.add_argument("--url", help="load this running server instead (its workspace needs "
                                      "the fuzz template's tables and an events table)")
    parser.add_argument("--pid", type=int, help="with --url: the server's pid, for memory")
    args = parser.parse_args(argv)
    counts = {"clients": args.clients, "requests": args.requests, "rounds": args.rounds,
              "seed": args.seed}
    if args.url:
        result = run(args.url.rstrip("/"), args.pid, **counts)
    else:
        with (tempfile.TemporaryDirectory(prefix="pixql-load-") as tmp,
              local_server(Path(tmp)) as (base, pid)):
            result = run(base, pid, **counts)
    print(summary(result))
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"  figures written to {args.out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
