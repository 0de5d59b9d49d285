"""The driver of a Ray CONVERT killed (SIGKILL) mid-statement (issue 13): the chunks it
committed survive, a re-run embeds only the rest, and the column is a local CONVERT's, with
no row lost or duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pixql
import pixql.testing.faulty  # registers TestPixels
from tests.conftest import make_image_folder

if TYPE_CHECKING:
    from pathlib import Path

#: the driver: CONVERT on the test's Ray, logging each chunk once it is committed
CHILD = """
import sys
import pixql
import pixql.testing.faulty
from pixql.execution import incremental

path, log, address = sys.argv[1:4]
real = incremental.ChunkWriter.write

def write(writer, keys, emb, sigs):
    real(writer, keys, emb, sigs)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"{len(keys)}\\n")

incremental.ChunkWriter.write = write
db = pixql.connect(path, progress=False)
db.sql("CONVERT USING slow OPTIONS (result_col='e', chunk_size=4, batch_size=2, "
       f"engine='ray', ray_address='{address}', num_workers=2, cpus_per_worker=0.5) "
       "AS SELECT * FROM t")
"""
ROWS = 24


def _committed_chunks(log: Path, proc: subprocess.Popen[bytes], limit_s: float) -> int:
    """Wait until the driver logged a committed chunk; how many it logged."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(encoding="utf-8").count("\n"):
            return log.read_text(encoding="utf-8").count("\n")
        if proc.poll() is not None:
            break
        time.sleep(0.01)  # polling the log, not synchronising by sleep
    _out, err = proc.communicate(timeout=30) if proc.poll() is not None else (b"", b"")
    raise AssertionError(f"the driver committed no chunk (exit {proc.poll()}): "
                         f"{err.decode(errors='replace')[-2000:]}")


def test_killed_driver_keeps_committed_chunks_and_a_rerun_finishes(
        tmp_path: Path, ray_local: Any) -> None:
    path, log = tmp_path / "w", tmp_path / "committed.log"
    db = pixql.connect(path, progress=False)
    make_image_folder(path / "imgs", per_class=ROWS // 2, shapes=("a", "b"))
    db.sql("COPY t OPTIONS (if_exists='replace') FROM 'imgs/'")
    db.sql("BUILD MODEL slow USING TestPixels OPTIONS (image_size=8, sleep_ms=400)")
    db.close()  # the driver opens the file

    address = ray_local.get_runtime_context().gcs_address
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(log), address],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        logged = _committed_chunks(log, proc, limit_s=120)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL  # killed mid-statement, not finished

    db = pixql.connect(path, progress=False)
    try:
        kept = db.sql("SELECT count(e) FROM t").fetchone()[0]
        assert 4 * logged <= kept < ROWS  # whole chunks, and not all of them
        assert kept % 4 == 0
        res = db.sql("CONVERT USING slow OPTIONS (result_col='e', batch_size=8, "
                     "engine='ray', num_workers=2, cpus_per_worker=0.5) AS SELECT * FROM t")
        assert res.message.startswith(f"embedded {ROWS - kept} rows and reused {kept}")
        db.sql("CONVERT USING slow OPTIONS (result_col='e_local', batch_size=32) "
               "AS SELECT * FROM t")
        got = db.sql("SELECT count(*), count(DISTINCT image_path), count(e), "
                     "count(*) FILTER (WHERE e = e_local AND e__pixql = e_local__pixql) "
                     "FROM t").fetchone()
        assert got == (ROWS, ROWS, ROWS, ROWS)
    finally:
        db.close()
