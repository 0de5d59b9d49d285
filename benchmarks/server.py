"""Server throughput: HTTP ``/clip/embed_*`` vs the in-process embedder, batching on/off.

For ``embed_text`` and ``embed_image`` (one item per request) at concurrency 1, 8 and 32,
measured in one run on the same machine:

* **in-process** — ``embedder.embed([item])`` called directly from N threads (images are
  decoded from the same bytes the server receives);
* **server, batched** / **server, unbatched** — a uvicorn server in a subprocess
  (``batching`` on / off, cache off), driven by N client threads with httpx on loopback.

Then a workload with repeats (Zipf-distributed texts) through a server with and without
the embedding cache, and a micro-benchmark of the JSON encoding of embeddings. Requests/s,
p50 and p99 latency; the bounded request counts make it stop by itself. Writes the
``server`` section of ``benchmarks/RESULTS.md``.

The model is open_clip's ViT-B-32 architecture with random weights saved in the hub
layout (speed does not depend on the weights' values), or ``--model tiny``.

Run from the repository root::

    .venv/bin/python benchmarks/server.py                       # ViT-B-32, ~6-10 min on 2 cores
    .venv/bin/python benchmarks/server.py --model tiny --scale 0.5 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import Run, drive, free_port, make_images, make_texts, merge, process_cpu
from common import CACHE, RESULTS, machine, write_section

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

VERSION = "ViT-B-32"
#: requests per (mode, concurrency) at --scale 1: image, text
COUNTS = {"image": {1: 12, 8: 48, 32: 96}, "text": {1: 48, 8: 192, 32: 384}}
#: base URL → pid of the benchmark servers running now
PIDS: dict[str, int] = {}
#: rounds each configuration is split into (modes interleaved round by round)
ROUNDS = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["vitb32", "tiny"], default="vitb32")
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated (1,8,32)")
    p.add_argument("--modalities", default="text,image")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the request counts")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch threads of the batch workers and of the in-process run "
                        "(default: the server's default, usable cores - 1)")
    p.add_argument("--models-dir", type=Path, default=CACHE / "bench" / "clip-models")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    p.add_argument("--serve", help=argparse.SUPPRESS)  # internal: run a server (JSON args)
    return p.parse_args(argv)


# ---------------------------------------------------------------------- model + data
def ensure_model(kind: str, root: Path) -> Path:
    """A models folder holding ``ViT-B-32/`` (real architecture or tiny), made once."""
    root = root / kind
    folder = root / VERSION
    if (folder / "open_clip_config.json").is_file():
        return root
    if kind == "tiny":
        from pixql.testing.tiny_clip import make_tiny_clip

        make_tiny_clip(folder)
        return root
    import open_clip
    import torch
    from safetensors.torch import save_file

    from pixql.testing.tiny_clip import tiny_clip_config

    torch.manual_seed(0)
    model = open_clip.create_model(VERSION)  # random init: no download
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    config = {"model_cfg": open_clip.get_model_config(VERSION),
              "preprocess_cfg": tiny_clip_config()["preprocess_cfg"]}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    return root


# ---------------------------------------------------------------------- requests
def http_caller(client: Any, base: str, modality: str) -> Callable[[Any], None]:
    route = f"{base}/clip/embed_{modality}"

    def call(body: dict[str, Any]) -> None:
        r = client.post(route, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"{route}: {r.status_code} {r.text[:200]}")
    return call


def bodies(modality: str, items: Sequence[Any]) -> list[dict[str, Any]]:
    import base64

    if modality == "text":
        return [{"text": t} for t in items]
    return [{"image": {"type": "base64", "value": base64.b64encode(b).decode()}}
            for b in items]


# ---------------------------------------------------------------------- servers
@contextmanager
def server(models_dir: Path, **settings: Any) -> Iterator[str]:
    """A uvicorn server in a subprocess (this script with --serve); yields its base URL."""
    import httpx

    port = free_port()
    args = {"port": port, "preload_models": [f"clip/{VERSION}"], "max_texts": 64, **settings}
    env = {**os.environ, "PIXQL_CLIP_MODELS_DIR": str(models_dir),
           "CLIP_VERSION_ID": VERSION, "PIXQL_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, __file__, "--serve", json.dumps(args)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark server did not start")
            try:
                if httpx.get(f"{base}/readiness", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        PIDS[base] = proc.pid
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def serve(raw: str) -> None:
    """The --serve mode: run the app with uvicorn (warnings only)."""
    import uvicorn

    from pixql.server.app import create_app
    from pixql.server.settings import ServerSettings

    settings = ServerSettings.from_env(**json.loads(raw))
    uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.port,
                log_level="warning")


# ---------------------------------------------------------------------- measurements
def throughput(args: argparse.Namespace, models_dir: Path, embedder: Any) -> list[dict[str, Any]]:
    """Every (modality, concurrency) for in-process, batched and unbatched servers.

    The three modes run interleaved, in ``ROUNDS`` rounds of a third of the requests each,
    so that changes in the machine's load hit them alike.
    """
    import httpx

    from pixql.images import decode_image

    levels = [int(c) for c in args.concurrency.split(",")]
    modalities = args.modalities.split(",")
    need = {m: int(max(COUNTS[m][c] for c in levels) * args.scale) + 8 for m in modalities}
    data = {"text": make_texts(need.get("text", 0)), "image": make_images(need.get("image", 0))}
    direct = {"text": lambda t: embedder.embed([t], "text", normalize=False),
              "image": lambda b: embedder.embed([decode_image(b)], "image", normalize=False)}
    extra = {"torch_threads": args.torch_threads} if args.torch_threads else {}
    rows: list[dict[str, Any]] = []
    with server(models_dir, batching=True, embedding_cache_size=0, **extra) as on, \
            server(models_dir, batching=False, embedding_cache_size=0, **extra) as off, \
            httpx.Client(timeout=600, limits=httpx.Limits(max_connections=64)) as client:
        for m in modalities:
            callers = {
                "in-process": (direct[m], data[m], time.process_time),
                "server, batched": (http_caller(client, on, m), bodies(m, data[m]),
                                    process_cpu(PIDS[on])),
                "server, unbatched": (http_caller(client, off, m), bodies(m, data[m]),
                                      process_cpu(PIDS[off])),
            }
            for call, payloads, _ in callers.values():  # warm up
                drive(call, payloads[-8:], 8)
            for c in levels:
                n = max(c, int(COUNTS[m][c] * args.scale))
                runs: dict[str, list[Run]] = {mode: [] for mode in callers}
                for chunk in np.array_split(np.arange(n), ROUNDS):
                    for mode, (call, payloads, cpu) in callers.items():
                        runs[mode].append(drive(call, [payloads[i] for i in chunk], c, cpu))
                rows += [{"modality": m, "concurrency": c, "mode": mode, "run": merge(rs)}
                         for mode, rs in runs.items()]
                print(f"  embed_{m} c={c}: " + ", ".join(
                    f"{r['mode']} {r['run'].rps:.1f}/s" for r in rows[-3:]), flush=True)
        for b in client.get(f"{on}/stats").json()["batchers"]:
            print(f"  batched {b['modality']}: {b['forwards']} forwards, "
                  f"mean batch {b['mean_batch']:.1f}, largest {b['largest_batch']}")
    return rows


def cache_workload(args: argparse.Namespace, models_dir: Path) -> list[dict[str, Any]]:
    """Zipf-distributed texts (many repeats) at concurrency 8, cache on vs off (interleaved)."""
    import httpx

    n = max(8 * ROUNDS, int(384 * args.scale))
    pool = make_texts(200, seed=1)
    picks = np.minimum(np.random.default_rng(2).zipf(1.3, n) - 1, len(pool) - 1)
    payloads = bodies("text", [pool[i] for i in picks])
    sizes = (4096, 0)
    with server(models_dir, embedding_cache_size=sizes[0]) as on, \
            server(models_dir, embedding_cache_size=sizes[1]) as off, \
            httpx.Client(timeout=600) as client:
        callers = {size: http_caller(client, base, "text")
                   for size, base in zip(sizes, (on, off), strict=True)}
        runs: dict[int, list[Run]] = {size: [] for size in sizes}
        for chunk in np.array_split(np.arange(n), ROUNDS):
            for size, call in callers.items():
                runs[size].append(drive(call, [payloads[i] for i in chunk], 8))
        hit_rate = client.get(f"{on}/stats").json()["cache"]["hit_rate"]
    distinct = len(set(picks.tolist()))
    return [{"cache": size, "run": merge(runs[size]), "distinct": distinct,
             "hit_rate": hit_rate if size else 0.0} for size in sizes]


def json_encoding() -> list[tuple[int, float, float, int, int]]:
    """(rows, pydantic µs, orjson µs, pydantic bytes, orjson bytes) for 512-d rows."""
    import uuid

    from pydantic import TypeAdapter

    from pixql.server.routes.clip import encode_json
    from pixql.server.schemas import ClipEmbeddingResponse

    adapter = TypeAdapter(ClipEmbeddingResponse)

    def old(v: np.ndarray) -> bytes:  # what FastAPI did with the pydantic model
        r = ClipEmbeddingResponse(inference_id=str(uuid.uuid4()), time=0.1,
                                  embeddings=v.tolist())
        return adapter.dump_json(adapter.validate_python(r))

    def new(v: np.ndarray) -> bytes:
        return encode_json({"inference_id": str(uuid.uuid4()), "frame_id": None,
                            "time": 0.1, "embeddings": v})

    out = []
    for n in (1, 8, 64):
        v = (np.random.default_rng(n).standard_normal((n, 512)) * 0.05).astype(np.float32)
        timings = []
        for fn in (old, new):
            reps = max(20, 1000 // n)
            t = time.perf_counter()
            for _ in range(reps):
                fn(v)
            timings.append((time.perf_counter() - t) / reps * 1e6)
        out.append((n, timings[0], timings[1], len(old(v)), len(new(v))))
    return out


# ---------------------------------------------------------------------- report
def throughput_tables(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[str]:
    """Wall-clock throughput and latency, then requests per CPU second."""
    index = {(r["modality"], r["concurrency"], r["mode"]): r["run"] for r in rows}
    keys = [(m, int(c)) for m in args.modalities.split(",")
            for c in args.concurrency.split(",")]
    wall = ["| route | concurrency | in-process req/s | batched req/s (× in-proc) | "
            "unbatched req/s (× in-proc) | p50 / p99 ms in-proc | batched | unbatched |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    cpu = ["", "Requests per CPU second of the process doing the work (the server's; the "
           "client's CPU is not counted) — efficiency, whatever share of the machine each "
           "mode got:", "",
           "| route | concurrency | in-process | batched (× in-proc) | unbatched (× in-proc) |",
           "|---|---:|---:|---:|---:|"]
    for m, c in keys:
        ref, on, off = (index[(m, c, k)] for k in
                        ("in-process", "server, batched", "server, unbatched"))
        lat = [f"{r.ms(50):.0f} / {r.ms(99):.0f}" for r in (ref, on, off)]
        wall.append(f"| embed_{m} | {c} | {ref.rps:.1f} | {on.rps:.1f} ({on.rps / ref.rps:.2f}) "
                    f"| {off.rps:.1f} ({off.rps / ref.rps:.2f}) | {' | '.join(lat)} |")
        cpu.append(f"| embed_{m} | {c} | {ref.per_cpu:.2f} | {on.per_cpu:.2f} "
                   f"({on.per_cpu / ref.per_cpu:.2f}) | {off.per_cpu:.2f} "
                   f"({off.per_cpu / ref.per_cpu:.2f}) |")
    return wall + cpu


def report(args: argparse.Namespace, rows: list[dict[str, Any]],
           cache: list[dict[str, Any]], encoding: list[tuple[int, float, float, int, int]],
           threads: int, seconds: float) -> str:
    model = ("open_clip ViT-B-32 architecture, random weights (512-d, 224 px)"
             if args.model == "vitb32" else "tiny random CLIP (32-d, 32 px)")
    cmd = "python benchmarks/server.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "## Server throughput (`benchmarks/server.py`)", "",
        f"`{cmd.strip()}` — {model}; one item per request; cache off for the throughput "
        f"table; batch workers with {threads} torch thread(s), `max_batch` 32, "
        f"`batch_wait_ms` 3; in-process: `embed([item])` from N threads (torch's default "
        f"threads unless `--torch-threads`). Client: httpx threads in the benchmark "
        f"process, server: uvicorn in a subprocess, both on this machine. Wall time "
        f"{seconds / 60:.1f} min. Machine: {machine()}.", "",
    ]
    lines += throughput_tables(args, rows)
    lines += ["", "Cache, Zipf(1.3) texts over a pool of 200, concurrency 8, batching on:", "",
              "| embedding_cache_size | distinct texts | hit rate | req/s | p50 / p99 ms |",
              "|---:|---:|---:|---:|---:|"]
    for c in cache:
        r = c["run"]
        lines.append(f"| {c['cache']} | {c['distinct']} of {r.requests} | "
                     f"{c['hit_rate']:.0%} | {r.rps:.1f} | {r.ms(50):.0f} / {r.ms(99):.0f} |")
    lines += ["", "JSON encoding of a `/clip/embed_*` response (512-d float32 rows):", "",
              "| rows | pydantic (before) µs | orjson µs | bytes before | bytes now |",
              "|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {a:.0f} | {b:.0f} | {x} | {y} |" for n, a, b, x, y in encoding]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    started = time.perf_counter()
    models_dir = ensure_model(args.model, args.models_dir)
    os.environ["PIXQL_OFFLINE"] = "1"
    from pixql.models.clip import load_clip
    from pixql.server.service import resolve_torch_threads

    threads = resolve_torch_threads(args.torch_threads)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    embedder = load_clip(VERSION, models_dir=models_dir)
    rows = throughput(args, models_dir, embedder)
    cache = cache_workload(args, models_dir)
    encoding = json_encoding()
    text = report(args, rows, cache, encoding, threads, time.perf_counter() - started)
    print(text)
    if not args.no_write:
        write_section("server", text, RESULTS)
        print(f"wrote the 'server' section of {RESULTS}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
