"""SIGKILL in the middle of BUILD (overwrite), CONVERT and COPY: nothing is lost.

A subprocess starts the statement and stalls at a known point; the test kills it with
SIGKILL, reopens the workspace and checks that the old model still loads and searches, the
table is unchanged, and the catalog agrees with the files on disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pixql

WORKER = Path(__file__).with_name("crash_worker.py")
SEARCH = ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='shapes/cross/001.png',"
          " emb_col='convert_result', top_k=3) AS SELECT * FROM images")


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    from tests.conftest import make_image_folder

    ws_dir = tmp_path / "ws"
    with pixql.connect(ws_dir, progress=False) as db:
        make_image_folder(db.root / "shapes", per_class=3)
        db.sql("COPY images OPTIONS (if_exists='replace') FROM 'shapes/';"
               "BUILD MODEL px USING Pixels OPTIONS (image_size=8) AS SELECT * FROM images;"
               "CONVERT USING px AS SELECT * FROM images")
    return ws_dir


def kill_mid_statement(ws_dir: Path, stage: str) -> None:
    marker = ws_dir.parent / f"{stage}.marker"
    env = {**os.environ, "PIXQL_PROGRESS": "0",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), *sys.path])}
    proc = subprocess.Popen([sys.executable, str(WORKER), str(ws_dir), stage, str(marker)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _out, err = proc.communicate()
            pytest.fail(f"worker ended before the stall point: {err.decode()[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def snapshot(db: pixql.Workspace) -> tuple:
    return (db.sql("SELECT name, version, checksum FROM (LIST MODEL)").fetchall(),
            db.sql("SELECT * FROM images ORDER BY image_path").fetchall())


def assert_consistent(db: pixql.Workspace) -> None:
    """The catalog and the files agree: every model's folder exists, nothing else does."""
    paths = {db.root / p for (p,) in db.sql("SELECT artifact_path FROM (LIST MODEL)").fetchall()}
    on_disk = {v for m in (db.root / "models").iterdir() for v in m.iterdir()}
    assert on_disk == paths
    assert not list((db.root / "models").glob(".tmp-*"))


@pytest.mark.parametrize("stage", ["build", "convert", "copy"])
def test_sigkill_mid_statement_loses_nothing(prepared: Path, stage: str) -> None:
    with pixql.connect(prepared, progress=False) as db:
        before = snapshot(db)
        top = db.sql(SEARCH).fetchall()
    kill_mid_statement(prepared, stage)
    with pixql.connect(prepared, progress=False) as db:
        if stage == "build":
            assert any("unfinished build" in r for r in db.repaired)
        assert snapshot(db) == before
        assert db.sql(SEARCH).fetchall() == top
        assert_consistent(db)


# ---------------------------------------------------------------- resumable CONVERT
@pytest.fixture
def many(tmp_path: Path) -> Path:
    """A workspace with table ``many``: 3,000 distinct small images, and model px."""
    from tests.conftest import make_image_folder

    ws_dir = tmp_path / "ws"
    with pixql.connect(ws_dir, progress=False) as db:
        make_image_folder(db.root / "many", per_class=750, size=8)
        db.sql("COPY many OPTIONS (if_exists='replace') FROM 'many/';"
               "BUILD MODEL px USING Pixels OPTIONS (image_size=8) AS SELECT * FROM many")
    return ws_dir


def test_sigkill_mid_convert_resumes_to_the_same_column(many: Path, tmp_path: Path) -> None:
    from tests.execution.crash_worker import RESUMABLE

    reference = tmp_path / "reference"
    shutil.copytree(many, reference)
    kill_mid_statement(many, "resume")  # killed while the third chunk is in flight
    column = "SELECT image_path, e FROM many ORDER BY image_path"
    with pixql.connect(many, progress=False) as db:
        kept = db.sql("SELECT count(e), count(e__pixql) FROM many").fetchone()
        assert kept == (1000, 1000)  # two whole chunks, nothing of the third
        out = db.sql(RESUMABLE)
        assert out.message.startswith("embedded 2000 rows and reused 1000")
        resumed = db.sql(column).fetchall()
    with pixql.connect(reference, progress=False) as db:
        assert db.sql(RESUMABLE).message.startswith("embedded 3000 rows and reused 0")
        assert db.sql(column).fetchall() == resumed
