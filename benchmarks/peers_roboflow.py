"""``pixql serve`` vs Roboflow's own inference server: the same ViT-B-16 weights, one run.

Both servers run on this machine, on 127.0.0.1, with their default settings, and load the
same weights (``_roboflow_model.py``: open_clip's ViT-B-16 architecture with random weights,
fixed seed — none can be downloaded here — as open_clip safetensors for pixql and as
Roboflow's ``visual.onnx`` / ``textual.onnx`` exported from them):

* **pixql** — ``pixql serve`` with its default CLIP backend (``auto``; the section says what
  it chose per tower, read from the server's log);
* **Roboflow** — ``inference-cpu`` (pinned in ``_roboflow_env.py``) in its own venv, made by
  this script, the app built as in Roboflow's CPU Docker image, ``OFFLINE_MODE=True``, its
  default CLIP path (``inference_models``' ``ClipOnnx`` on onnxruntime's CPU provider).

Measured, in one run: agreement of the embeddings (cosine per row between the servers, and
against pixql's torch fp32 model in this process, for the same images and texts), then
``/clip/embed_image`` and ``/clip/embed_text`` requests/s and p50 / p95 latency at
concurrency 1 and 8 through one httpx client (one item per request, the two servers
interleaved round by round), CPU seconds per request of each server, and each server's RSS
(after warm-up, and its peak). If the Roboflow venv cannot be made, the run stops with a
line saying why and writes nothing. Writes the ``peers_roboflow`` section of
``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/peers_roboflow.py                    # ~10-15 min on 2 cores
    .venv/bin/python benchmarks/peers_roboflow.py --scale 0.3 --no-write
    .venv/bin/python benchmarks/peers_roboflow.py --no-install      # skip unless the venv is ready
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _roboflow_env as rf
import _roboflow_model as weights
from _load import Run, drive, free_port, make_images, make_texts, merge, process_cpu
from _roboflow_report import ROUNDS, report
from common import CACHE, RESULTS, write_section

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

VERSION = weights.VERSION
SERVERS = ("pixql", "roboflow")
#: requests per server and (modality, concurrency) at --scale 1
COUNTS = {("image", 1): 18, ("image", 8): 48, ("text", 1): 48, ("text", 8): 96}
#: warm-up requests per server and modality (inputs of their own)
WARM = 8
#: agreement inputs
AGREE_TEXTS = ("a photo of a cat", "a black dog running on the beach at sunset",
               "a red car parked in front of a brick house", "x")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", default="1,8", help="comma-separated (1,8)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply the request counts")
    p.add_argument("--venv", type=Path, default=CACHE / "bench" / "roboflow-venv",
                   help="the Roboflow venv (made when missing)")
    p.add_argument("--no-install", action="store_true",
                   help="never create or fill the venv: skip Roboflow unless it is ready")
    p.add_argument("--workdir", type=Path, default=CACHE / "bench" / "roboflow")
    p.add_argument("--models-dir", type=Path, default=CACHE / "bench" / "clip-models" / "vitb16")
    p.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    return p.parse_args(argv)


# ---------------------------------------------------------------------- servers
@dataclass
class Server:
    """A server subprocess and what is known about it."""

    name: str
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.perf_counter)
    ready_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


@contextmanager
def launch(name: str, cmd: list[str], env: dict[str, str], cwd: Path, port: int,
           ready_path: str, log: Path, timeout: float = 1800) -> Iterator[Server]:
    """Start ``cmd``; yield once ``GET ready_path`` answers 200; stop it afterwards."""
    import httpx

    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    srv = Server(name, f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"the {name} server did not start:\n{tail}")
            try:
                if httpx.get(srv.base + ready_path, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        srv.ready_s = time.perf_counter() - srv.started
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


#: ``pixql serve`` with the backend choice logged (``pixql.models.clip.backends`` at INFO)
PIXQL_SERVE = ("import logging, sys; logging.basicConfig(level=logging.WARNING); "
               "logging.getLogger('pixql.models.clip.backends').setLevel(logging.INFO); "
               "from pixql.cli.main import main; sys.exit(main(sys.argv[1:]))")


def pixql_server(args: argparse.Namespace, stack: ExitStack) -> Server:
    """``pixql serve`` (this venv's pixql), the model preloaded, default settings."""
    env = {**os.environ, "PIXQL_CLIP_MODELS_DIR": str(args.models_dir),
           "CLIP_VERSION_ID": VERSION, "PIXQL_OFFLINE": "1",
           "PIXQL_PRELOAD_MODELS": f"clip/{VERSION}"}
    env.pop("PIXQL_CLIP_BACKEND", None)  # the default backend
    run = args.workdir / "pixql-run"
    run.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, "-c", PIXQL_SERVE, "serve", "--host", "127.0.0.1",
           "--port", str(port), "-w", str(run / "workspace")]
    return stack.enter_context(launch("pixql", cmd, env, run, port, "/readiness",
                                      args.workdir / "pixql-server.log"))


def roboflow_server(args: argparse.Namespace, stack: ExitStack, python: Path) -> Server:
    """Roboflow's server; ready when ``/info`` answers, then warmed by one request (its CLIP
    model loads on first use: the load time is its ``X-Model-Load-Time`` header)."""
    import httpx

    home = args.workdir / "home"
    rf.register(python, args.workdir / "onnx", home)
    port = free_port()
    srv = stack.enter_context(launch(
        "roboflow", rf.server_command(python, port), rf.server_env(home),
        rf.server_cwd(args.workdir / "roboflow-run"), port, "/info",
        args.workdir / "roboflow-server.log"))
    r = httpx.post(f"{srv.base}/clip/embed_text", json={"text": "warm up"}, timeout=600)
    r.raise_for_status()
    srv.ready_s = time.perf_counter() - srv.started
    srv.notes["load_s"] = float(r.headers.get("x-model-load-time") or "nan")
    resolved = r.json().get("resolved_model") or {}
    srv.notes["backend"] = (f"{r.headers.get('x-inference-engine', '?')}: "
                            f"{resolved.get('backend', '?')} {resolved.get('quantization', '')}"
                            f" (package {resolved.get('model_package_id', '?')})")
    return srv


def pixql_backend(log_text: str) -> str:
    """What ``auto`` chose, from the server's log (``... backend auto(image=..., text=...)``)."""
    found = re.findall(r"backend (auto\([^)]*\)|[\w-]+)", log_text)
    return found[-1] if found else "unknown (not in the server log)"


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB of ``pid`` plus its descendants (Linux /proc)."""
    now = peak = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        fields = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M))
        now += int(fields.get("VmRSS", 0)) / 1024
        peak += int(fields.get("VmHWM", 0)) / 1024
    return now, peak


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *descendants(k)]
    return out


# ---------------------------------------------------------------------- agreement
def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, d) arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def embeddings(client: Any, base: str, modality: str, payloads: list[Any]) -> np.ndarray:
    """One request per item (Roboflow's default adapter stacks image lists into one)."""
    rows = []
    for body in bodies_of(modality, payloads):
        r = client.post(f"{base}/clip/embed_{modality}", json=body)
        r.raise_for_status()
        rows.append(r.json()["embeddings"][0])
    return np.asarray(rows, np.float32)


def bodies_of(modality: str, items: list[Any]) -> list[dict[str, Any]]:
    if modality == "text":
        return [{"text": t} for t in items]
    return [{"image": {"type": "base64", "value": base64.b64encode(b).decode()}}
            for b in items]


def agreement(client: Any, servers: dict[str, Server], models_dir: Path) -> dict[str, Any]:
    """Cosines per modality: pixql vs Roboflow, and each vs pixql's torch fp32 in process."""
    from pixql.images import decode_image
    from pixql.models.clip import load_clip

    images = make_images(4, seed=7) + photo_jpegs()
    inputs = {"image": images, "text": list(AGREE_TEXTS)}
    ref = load_clip(VERSION, models_dir=models_dir, backend="torch")
    out: dict[str, Any] = {}
    for modality, items in inputs.items():
        got = {n: embeddings(client, s.base, modality, items) for n, s in servers.items()}
        local = [decode_image(b) for b in items] if modality == "image" else items
        torch_rows = ref.embed(local, modality, normalize=False)
        pairs = {"pixql vs roboflow": (got["pixql"], got["roboflow"]),
                 "pixql torch fp32 vs roboflow": (torch_rows, got["roboflow"]),
                 "pixql torch fp32 vs pixql served": (torch_rows, got["pixql"])}
        out[modality] = {k: (float(c.min()), float(c.mean())) for k, (a, b) in pairs.items()
                         for c in [cosines(a, b)]}
        out[modality]["n"] = len(items)
    del ref
    from pixql.models.clip.loader import clear_cache

    clear_cache()
    return out


def photo_jpegs() -> list[bytes]:
    """pixql's generated photo-like images as JPEGs (4)."""
    import io

    from pixql.models.clip.calibration import photo_like_images

    out = []
    for img in photo_like_images(4, size=300, seed=3):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


# ---------------------------------------------------------------------- throughput
def request_count(concurrency: int, base: int, scale: float) -> int:
    """Requests per server for one row: ``base`` × ``scale``, at least ``concurrency`` per
    round."""
    return max(concurrency * ROUNDS, int(base * scale))


def distinct_slices(counts: list[int], start: int = 0) -> list[range]:
    """Consecutive index ranges of ``counts`` items after ``start``: every request of a run
    carries an input no earlier request had (pixql's embedding cache never hits)."""
    out = []
    for n in counts:
        out.append(range(start, start + n))
        start += n
    return out


def timed_caller(client: Any, base: str, modality: str,
                 times: list[float]) -> Callable[[Any], None]:
    """POST one body; keep the server's own ``time`` field (seconds it says it spent)."""
    route = f"{base}/clip/embed_{modality}"

    def call(body: dict[str, Any]) -> None:
        r = client.post(route, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"{route}: {r.status_code} {r.text[:200]}")
        times.append(float(r.json().get("time") or "nan"))
    return call


def throughput(client: Any, servers: dict[str, Server], levels: list[int],
               scale: float) -> list[dict[str, Any]]:
    """Every (modality, concurrency): the servers interleaved in ``ROUNDS`` rounds."""
    counts = {k: request_count(k[1], n, scale) for k, n in COUNTS.items() if k[1] in levels}
    rows: list[dict[str, Any]] = []
    for modality, make in (("text", make_texts), ("image", make_images)):
        parts = distinct_slices([counts[(modality, c)] for c in levels], start=WARM)
        payloads = bodies_of(modality, make(parts[-1].stop))
        for _, s in servers.items():  # warm up
            drive(timed_caller(client, s.base, modality, []), payloads[:WARM], 8)
        for c, part in zip(levels, parts, strict=True):
            times: dict[str, list[float]] = {name: [] for name in servers}
            calls = {name: (timed_caller(client, s.base, modality, times[name]),
                            process_cpu(s.proc.pid)) for name, s in servers.items()}
            runs: dict[str, list[Run]] = {name: [] for name in calls}
            for chunk in np.array_split(np.arange(part.start, part.stop), ROUNDS):
                for name, (call, cpu) in calls.items():
                    runs[name].append(drive(call, [payloads[i] for i in chunk], c, cpu))
            for name, rs in runs.items():
                rows.append({"modality": modality, "concurrency": c, "server": name,
                             "run": merge(rs), "server_ms": float(np.median(times[name])) * 1e3})
            print(f"  embed_{modality} c={c}: " + ", ".join(
                f"{r['server']} {r['run'].rps:.2f}/s" for r in rows[-len(calls):]), flush=True)
    return rows


# ---------------------------------------------------------------------- main
def prepare(args: argparse.Namespace) -> Path | None:
    """The Roboflow venv, then the weights and ONNX files; None (and a line why) if
    Roboflow is unavailable."""
    try:
        python = rf.ensure_venv(args.venv, install=not args.no_install)
    except rf.RoboflowUnavailable as e:
        print(f"peers_roboflow: skipped — Roboflow's server is unavailable: {e}")
        return None
    weights.ensure_weights(args.models_dir)
    weights.ensure_onnx(args.models_dir, args.workdir / "onnx")
    return python


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    args.workdir.mkdir(parents=True, exist_ok=True)
    python = prepare(args)
    if python is None:
        return 0
    import httpx

    levels = [int(c) for c in args.concurrency.split(",")]
    with ExitStack() as stack:
        servers = {"pixql": pixql_server(args, stack),
                   "roboflow": roboflow_server(args, stack, python)}
        servers["pixql"].notes["backend"] = pixql_backend(servers["pixql"].log.read_text())
        client = stack.enter_context(httpx.Client(
            timeout=600, limits=httpx.Limits(max_connections=64)))
        agree = agreement(client, servers, args.models_dir)
        print(json.dumps(agree, indent=1))
        for s in servers.values():
            s.notes["rss_warm"] = rss_mb(s.proc.pid)
        rows = throughput(client, servers, levels, args.scale)
        for s in servers.values():
            s.notes["rss_end"] = rss_mb(s.proc.pid)
        servers["pixql"].notes["cache"] = client.get(
            f"{servers['pixql'].base}/stats").json()["cache"]
    text = report(args, servers, agree, rows, time.perf_counter() - started)
    print(text)
    if not args.no_write:
        write_section("peers_roboflow", text, RESULTS)
        print(f"wrote the 'peers_roboflow' section of {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
