"""Run ``pixql serve`` (the CLI's main) with a statement that stalls at a known point, so
test_crash_server can SIGKILL the server process there.

Usage: serve_worker.py STAGE MARKER -- <pixql arguments>

STAGE is ``none`` (a plain server), ``convert-embed`` (CONVERT stalls computing a batch of
embeddings), ``convert-write`` (CONVERT stalls inside its write transaction, after the UPDATE,
before the commit) or ``build`` (BUILD MODEL stalls with half-written weights in its temp
folder).
MARKER is a file written when the stall point is reached.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def _stall(marker: Path) -> None:
    marker.write_text("stalled", encoding="utf-8")
    time.sleep(300)


def _stall_embedding(marker: Path) -> None:
    from pixql.models.pixels import PixelsEmbedder

    real = PixelsEmbedder.forward

    def forward(self: Any, batch: Any, modality: str) -> Any:
        if len(batch) > 1:  # a CONVERT's batch; SEARCH embeds its one input
            _stall(marker)
        return real(self, batch, modality)

    PixelsEmbedder.forward = forward  # type: ignore[method-assign]


def _stall_write(marker: Path) -> None:
    from pixql.catalog.store import Catalog

    real = Catalog.put_column

    def put_column(self: Any, rec: Any) -> None:
        real(self, rec)  # the UPDATE and the catalog row are written, not committed
        _stall(marker)

    Catalog.put_column = put_column  # type: ignore[method-assign]


def _stall_build(marker: Path) -> None:
    from pixql.models.pixels import Pixels

    def build(cls: Any, ctx: Any, options: Any) -> Any:
        (ctx.artifact_dir / "weights.bin").write_bytes(b"partial")
        _stall(marker)
        raise AssertionError("unreachable")

    Pixels.build = classmethod(build)  # type: ignore[method-assign, assignment]


STAGES: dict[str, Callable[[Path], None]] = {
    "none": lambda marker: None,
    "convert-embed": _stall_embedding,
    "convert-write": _stall_write,
    "build": _stall_build,
}


def main(argv: list[str]) -> int:
    stage, marker = argv[0], Path(argv[1])
    STAGES[stage](marker)
    from pixql.cli.main import main as pixql_main

    return pixql_main(argv[argv.index("--") + 1 :])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
