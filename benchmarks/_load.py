"""Load generation shared by the server benchmarks (``server.py``, ``peers_roboflow.py``):
distinct inputs, a threaded driver that records latencies and CPU, and a free loopback port."""

from __future__ import annotations

import io
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


def make_texts(n: int, seed: int = 0) -> list[str]:
    """Distinct captions of 4-20 words."""
    words = [
        "a", "photo", "of", "the", "small", "large", "red", "blue", "green", "dog", "cat", "car",
        "tree", "house", "on", "in", "with", "under", "near", "sunny", "rainy", "street", "beach",
        "mountain", "river", "old", "new", "happy",
    ]
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, rng.integers(4, 21))) + f" #{i}" for i in range(n)]


def make_images(n: int, seed: int = 0) -> list[bytes]:
    """Distinct 320x240 JPEGs (noise over gradients): realistic decode + resize cost."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, 320, dtype=np.float32)[None, :, None]
    out = []
    for _ in range(n):
        arr = base * rng.random(3) + rng.normal(0, 40, (240, 320, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


@dataclass
class Run:
    """One measured configuration."""

    requests: int
    seconds: float
    latencies: np.ndarray
    #: CPU seconds of the process doing the work (the server, or this one in-process)
    cpu: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def per_cpu(self) -> float:
        """Requests per CPU second: efficiency, whatever share of the machine it got."""
        return self.requests / self.cpu if self.cpu else float("nan")

    def ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000)


def drive(call: Callable[[Any], None], payloads: Sequence[Any], concurrency: int,
          cpu: Callable[[], float] = time.process_time) -> Run:
    """``call`` every payload from ``concurrency`` threads; wall time, latencies, CPU."""
    latencies = np.zeros(len(payloads))

    def one(i: int) -> None:
        t = time.perf_counter()
        call(payloads[i])
        latencies[i] = time.perf_counter() - t

    with ThreadPoolExecutor(concurrency) as pool:
        started, cpu_started = time.perf_counter(), cpu()
        list(pool.map(one, range(len(payloads))))
        return Run(len(payloads), time.perf_counter() - started, latencies,
                   cpu() - cpu_started)


def process_cpu(pid: int) -> Callable[[], float]:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick
    return read


def merge(runs: Sequence[Run]) -> Run:
    """Several rounds of one configuration as one run."""
    return Run(sum(r.requests for r in runs), sum(r.seconds for r in runs),
               np.concatenate([r.latencies for r in runs]), sum(r.cpu for r in runs))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
