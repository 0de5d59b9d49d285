"""Run in a subprocess by test_crash_safety: start a statement and stall half-way so the test
can SIGKILL the process at a known point. Usage: crash_worker.py WS_DIR STAGE MARKER."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pixql
from pixql.models import registry
from pixql.models.pixels import Pixels, PixelsEmbedder


def _stall(marker: Path) -> None:
    marker.write_text("ready")
    time.sleep(120)


class StallingBuild(Pixels):
    """A Pixels build that writes half its weights, then stalls."""

    @classmethod
    def build(cls, ctx, options):  # type: ignore[no-untyped-def]
        (ctx.artifact_dir / "weights.bin").write_bytes(b"partial")
        _stall(MARKER)
        raise AssertionError("unreachable")


class StallingEmbedder(PixelsEmbedder):
    def forward(self, batch, modality):  # type: ignore[no-untyped-def]
        _stall(MARKER)
        return super().forward(batch, modality)


class StallingLaterEmbedder(PixelsEmbedder):
    """Stalls when the third chunk starts (forwards 1-4 are chunks 1-2 at batch_size 250,
    chunk_size 500): two chunks are committed, the third is in flight."""

    calls = 0

    def forward(self, batch, modality):  # type: ignore[no-untyped-def]
        StallingLaterEmbedder.calls += 1
        if StallingLaterEmbedder.calls == 5:
            _stall(MARKER)
        return super().forward(batch, modality)


RESUMABLE = ("CONVERT USING px OPTIONS (result_col='e', chunk_size=500, batch_size=250) "
             "AS SELECT * FROM many")


def main(ws_dir: str, stage: str) -> None:
    db = pixql.connect(ws_dir, progress=False)
    if stage == "build":
        registry._KINDS["pixels"] = StallingBuild
        db.sql("BUILD MODEL px USING Pixels OPTIONS (image_size=4, overwrite=True) "
               "AS SELECT * FROM images")
    elif stage == "convert":
        db._embedders["px"] = (db.catalog.get_model("px").version, StallingEmbedder(8))
        db.sql("CONVERT USING px OPTIONS (result_col='convert_result', refresh='all') "
               "AS SELECT * FROM images")
    elif stage == "resume":
        rec = db.catalog.get_model("px")
        db._embedders["px"] = (rec.version, StallingLaterEmbedder(rec.config["image_size"]))
        db.sql(RESUMABLE)
    elif stage == "copy":
        import pixql.execution.copy as copy_mod

        real = copy_mod._write

        def stalled_write(ctx, table, data, if_exists):  # type: ignore[no-untyped-def]
            ctx.cur.begin()
            ctx.cur.execute(f"DELETE FROM {table}")
            _stall(MARKER)
            real(ctx, table, data, if_exists)

        copy_mod._write = stalled_write
        db.sql("COPY images OPTIONS (if_exists='append') FROM 'shapes/'")


if __name__ == "__main__":
    MARKER = Path(sys.argv[3])
    main(sys.argv[1], sys.argv[2])
