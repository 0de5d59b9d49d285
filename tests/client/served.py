"""``pixql serve`` as a real subprocess on 127.0.0.1 (any free port), for the tests of served
workspaces: the CLI, ``pixql.connect``, the notebook magic and the docs use it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pixql.client.record import ServerRecord, live_record, read_record

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: statements of the tutorial, with the Pixels model (fast, deterministic)
TUTORIAL = [
    "COPY mnist_train OPTIONS (if_exists='replace') FROM 'data/train/'",
    "COPY mnist_test OPTIONS (if_exists='replace') FROM 'data/test/'",
    "BUILD MODEL my_image_search_model USING Pixels\n"
    "OPTIONS (image_col='image_path', overwrite=True)\nAS SELECT * FROM mnist_train",
    "CONVERT USING my_image_search_model\n"
    "OPTIONS (image_col='image_path', result_col='convert_result')\nAS SELECT * FROM mnist_test",
]
SEARCH = ("SELECT image_path, label, search_result FROM (SEARCH IMAGE USING my_image_search_model"
          "\nOPTIONS (search_by='image', search_input='data/test/circle/001.png',"
          "\n         emb_col='convert_result', result_col='search_result', top_k=5)"
          "\nAS SELECT * FROM mnist_test) ORDER BY search_result DESC, image_path")


def make_tutorial_data(root: Path) -> None:
    """``root/data/train`` and ``root/data/test``: small generated shape folders."""
    from tests.conftest import make_image_folder

    make_image_folder(root / "data" / "train", per_class=4)
    make_image_folder(root / "data" / "test", per_class=3, size=32)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: no keys or URLs leaking in from the caller."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PIXQL_API_KEYS", "PIXQL_API_KEY", "PIXQL_URL", "PIXQL_WORKSPACE")}
    env["PIXQL_PROGRESS"] = "0"
    env.update(extra)
    return env


@dataclass
class Served:
    """A running ``pixql serve`` and its record."""

    proc: subprocess.Popen[bytes]
    record: ServerRecord
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


@contextmanager
def pixql_serve(ws: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 90) -> Iterator[Served]:
    """Run ``pixql -w WS serve --port 0 ARGS`` until the block ends (SIGTERM)."""
    ws.mkdir(parents=True, exist_ok=True)
    log = ws.parent / f"serve-{ws.name}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pixql.cli.main", "-w", str(ws), "serve", "--port", "0",
             *args], stdout=out, stderr=subprocess.STDOUT, env=env or clean_env())
    served = None
    try:
        deadline = time.monotonic() + timeout
        while served is None:
            record = read_record(ws)
            if record is not None and record.pid == proc.pid and live_record(ws):
                served = Served(proc, record, log)
            elif proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pixql serve did not start:\n{log.read_text(encoding='utf-8')}")
            else:
                time.sleep(0.1)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
