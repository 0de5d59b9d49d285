"""The ``peers_roboflow`` section of RESULTS.md (tables of ``peers_roboflow.py``)."""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, Any

import _roboflow_env as rf
import _roboflow_model as weights
from common import machine

if TYPE_CHECKING:
    import argparse

#: rounds each row is split into (the two servers interleaved round by round)
ROUNDS = 3
#: least per-row cosine at which the servers count as computing the same embeddings
MIN_COSINE = 0.99


def throughput_table(rows: list[dict[str, Any]]) -> list[str]:
    index = {(r["modality"], r["concurrency"], r["server"]): r["run"] for r in rows}
    keys = sorted({(r["modality"], r["concurrency"]) for r in rows},
                  key=lambda k: (k[0] != "text", k[1]))
    own = {(r["modality"], r["concurrency"], r["server"]): r["server_ms"] for r in rows}
    lines = ["| route | concurrency | pixql req/s | Roboflow req/s | pixql ÷ Roboflow | "
             "p50 / p95 ms pixql | p50 / p95 ms Roboflow | server's own `time` p50 ms "
             "pixql / Roboflow | server CPU s per request pixql / Roboflow |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, c in keys:
        px, ro = index[(m, c, "pixql")], index[(m, c, "roboflow")]
        lines.append(
            f"| embed_{m} | {c} | {px.rps:.2f} | {ro.rps:.2f} | **{px.rps / ro.rps:.2f}** | "
            f"{px.ms(50):.0f} / {px.ms(95):.0f} | {ro.ms(50):.0f} / {ro.ms(95):.0f} | "
            f"{own[(m, c, 'pixql')]:.0f} / {own[(m, c, 'roboflow')]:.0f} | "
            f"{1 / px.per_cpu:.3f} / {1 / ro.per_cpu:.3f} |")
    return lines


def agreement_table(agree: dict[str, Any]) -> list[str]:
    lines = ["| modality | inputs | pair | min cosine | mean cosine |", "|---|---:|---|---:|---:|"]
    for modality, pairs in agree.items():
        for pair, value in pairs.items():
            if pair != "n":
                lines.append(f"| {modality} | {pairs['n']} | {pair} | {value[0]:.5f} | "
                             f"{value[1]:.5f} |")
    low = [f"{m} {pair}" for m, pairs in agree.items() for pair, v in pairs.items()
           if pair != "n" and v[0] < MIN_COSINE]
    lines += ["", f"**Disagreement: min cosine below {MIN_COSINE} for {', '.join(low)}.**"
              if low else f"Every pair agrees (min cosine ≥ {MIN_COSINE})."]
    return lines


def report(args: argparse.Namespace, servers: dict[str, Any], agree: dict[str, Any],
           rows: list[dict[str, Any]], seconds: float) -> str:
    cmd = "python benchmarks/peers_roboflow.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    px, ro = servers["pixql"], servers["roboflow"]
    lines = [
        "## pixql serve vs Roboflow's inference server, same ViT-B-16 weights "
        "(`benchmarks/peers_roboflow.py`)", "",
        f"`{cmd.strip()}` — open_clip ViT-B-16 (QuickGELU) with random weights (seed "
        f"{weights.SEED}), the same weights for both: open_clip safetensors for pixql, "
        f"`visual.onnx` / `textual.onnx` exported from them (fp32, opset {weights.OPSET}) "
        f"for Roboflow. Both servers on 127.0.0.1 with default settings; one item per "
        f"request; one httpx client (threads) in the benchmark process; the two servers "
        f"interleaved in {ROUNDS} rounds per row. Wall time {seconds / 60:.1f} min. "
        f"Machine: {machine()}.", "",
        f"* pixql: `pixql serve`, backend `auto` → **{px.notes['backend']}**; ready "
        f"(model preloaded) {px.ready_s:.0f} s after start; its embedding cache (on by "
        f"default) had {px.notes['cache']['hits']} hits and {px.notes['cache']['misses']} "
        f"misses in the run: every request carries an input of its own.",
        f"* Roboflow: `{rf.REQUIREMENTS[0]}` (pins in `benchmarks/_roboflow_env.py`), own "
        f"venv, `OFFLINE_MODE=True`, app as in its CPU Docker image, uvicorn 1 worker; "
        f"CLIP → **{ro.notes['backend']}**; model load on first request "
        f"{ro.notes['load_s']:.1f} s.", "",
        "Embedding agreement (same inputs, cosine per row; images: 4 noise JPEGs 320×240 "
        "+ 4 photo-like JPEGs 300×300):", "",
        *agreement_table(agree), "",
        "Throughput and latency:", "",
        *throughput_table(rows), "",
        "Memory (RSS of the server process and its children, MB):", "",
        "| server | after warm-up | peak (VmHWM) at the end |", "|---|---:|---:|",
        *[f"| {s.name} | {s.notes['rss_warm'][0]:.0f} | {s.notes['rss_end'][1]:.0f} |"
          for s in servers.values()],
    ]
    return "\n".join(lines) + "\n"
