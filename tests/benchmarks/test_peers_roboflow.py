"""benchmarks/peers_roboflow.py: its pure helpers, and the clean skip without a Roboflow venv
(nothing of Roboflow is installed by the test suite)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.benchmarks.modules import BENCH, bench_module

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path



@pytest.fixture
def bench() -> Iterator[Any]:
    with bench_module("peers_roboflow") as module:
        yield module


def test_pixql_backend_is_read_from_the_server_log(bench: Any) -> None:
    log = ("INFO:     Started server process [1]\n"
           "INFO:pixql.models.clip.backends:CLIP clip/ViT-B-16: backend "
           "auto(image=openvino-int8, text=onnx-int8)\n")
    assert bench.pixql_backend(log) == "auto(image=openvino-int8, text=onnx-int8)"
    assert bench.pixql_backend("INFO:x:CLIP m: backend torch\n") == "torch"
    assert bench.pixql_backend("nothing here").startswith("unknown")


def test_cosines_are_per_row_and_scale_free(bench: Any) -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    b = np.array([[3.0, 0.0], [-1.0, -1.0], [2.0, 0.0]])
    np.testing.assert_allclose(bench.cosines(a, b), [1.0, -1.0, 0.0], atol=1e-12)


def test_request_counts_give_every_round_a_full_wave(bench: Any) -> None:
    assert bench.request_count(8, 96, 1.0) == 96
    assert bench.request_count(8, 96, 0.01) == 8 * bench.ROUNDS
    assert bench.request_count(1, 18, 0.5) == 9


def test_agreement_table_flags_a_disagreement(bench: Any) -> None:
    table = importlib.import_module("_roboflow_report").agreement_table  # next to bench
    good = {"text": {"n": 4, "pixql vs roboflow": (0.999, 0.9995)}}
    assert table(good)[-1].startswith("Every pair agrees")
    bad = {"image": {"n": 8, "pixql vs roboflow": (0.95, 0.99)}}
    assert "Disagreement" in table(bad)[-1]
    assert "image pixql vs roboflow" in table(bad)[-1]


def test_every_run_gets_inputs_of_its_own(bench: Any) -> None:
    parts = bench.distinct_slices([3, 5, 2], start=8)
    assert parts == [range(8, 11), range(11, 16), range(16, 18)]


def test_bodies_are_roboflow_requests(bench: Any) -> None:
    assert bench.bodies_of("text", ["a cat"]) == [{"text": "a cat"}]
    (body,) = bench.bodies_of("image", [b"\xff\xd8jpeg"])
    assert body == {"image": {"type": "base64", "value": "/9hqcGVn"}}


def test_rss_of_this_process_is_positive_and_peak_not_below_current(bench: Any) -> None:
    now, peak = bench.rss_mb(os.getpid())
    assert 0 < now <= peak


def test_the_roboflow_lock_pins_every_package_exactly(bench: Any) -> None:
    pins = bench.rf.pinned()
    assert "inference-cpu==1.8.3" in pins
    assert all("==" in p and not p.startswith("-") for p in pins)
    assert len({p.split("==")[0].lower() for p in pins}) == len(pins)


def test_the_server_environment_is_offline_and_pixql_free(bench: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXQL_OFFLINE", "1")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = bench.rf.server_env(tmp_path)
    assert env["OFFLINE_MODE"] == "True"
    assert env["INFERENCE_HOME"] == env["MODEL_CACHE_DIR"] == str(tmp_path)
    assert not any(k.startswith("PIXQL_") or k == "PYTHONPATH" for k in env)
    cwd = bench.rf.server_cwd(tmp_path / "run")
    assert (cwd / "inference" / "landing" / "out" / "_next" / "static").is_dir()


def test_without_a_ready_venv_the_run_skips_cleanly(tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCH / "peers_roboflow.py"), "--no-install", "--no-write",
           "--venv", str(tmp_path / "no-venv"), "--workdir", str(tmp_path / "work"),
           "--models-dir", str(tmp_path / "models")]
    done = subprocess.run(cmd, capture_output=True, encoding="utf-8", timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "skipped — Roboflow's server is unavailable" in done.stdout
    assert "no ready Roboflow venv" in done.stdout
    assert not (tmp_path / "models").exists()  # nothing made for a skipped run
