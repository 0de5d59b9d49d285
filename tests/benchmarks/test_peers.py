"""benchmarks/peers.py runs end to end on a tiny set and skips a peer that is not installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.benchmarks.modules import BENCH, bench_module

if TYPE_CHECKING:
    from collections.abc import Iterator



@pytest.fixture
def peers() -> Iterator[object]:
    with bench_module("peers") as module:
        yield module


def test_tiny_run_through_pixql_and_numpy(tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCH / "peers.py"), "--rows", "2000", "--dim", "32",
           "--data", "clustered", "--queries", "12", "--systems", "numpy", "pixql",
           "--workdir", str(tmp_path), "--no-write"]
    done = subprocess.run(cmd, capture_output=True, encoding="utf-8", timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "results.json").read_text(encoding="utf-8")
    results = json.loads(text)["clustered 2000x32"]
    exact = results["pixql"]["search"]["methods"]["SEARCH exact"]
    # exact SEARCH, and a WHERE filter never shortens the answer
    assert exact["kind"] == "exact"
    assert exact["rows_min"] == 10
    assert exact["filtered"]["rows_min"] == 10
    assert exact["recall"] >= 0.99
    assert results["numpy"]["build"]["rss_peak_mb"] > 0
    assert "## pixql vs peers" in done.stdout
    assert not (tmp_path / "art" / "clustered_2000x32").exists()  # removed without --keep


def test_missing_peer_is_skipped_with_a_clear_line(peers: object,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    systems = peers.SYSTEMS  # type: ignore[attr-defined]
    monkeypatch.setattr(systems["usearch"], "modules", ("no_such_module_for_peers",))
    args = peers.parse_args([])  # type: ignore[attr-defined]
    got = peers.run_system(args, "usearch", Path("unused"), 1000)  # type: ignore[attr-defined]
    assert got == {"skipped": "not installed: no_such_module_for_peers "
                              "(pip install 'pixql[bench]')"}
