"""benchmarks/run_all.py: which benchmarks run, in fresh processes, one after another."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.benchmarks.modules import bench_module

if TYPE_CHECKING:
    from collections.abc import Iterator



@pytest.fixture
def run_all(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with bench_module("run_all") as module:
        yield module


def ran(run_all: Any, monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[int, list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(run_all.subprocess, "call", lambda cmd, cwd: calls.append(cmd) or 0)
    code = run_all.main(argv)
    return code, [Path(c[1]).stem for c in calls]


def test_long_benchmarks_need_long_or_only(run_all: Any, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    names = run_all.benchmarks()
    assert "peers" in names
    assert not {"run_all", "common"} & set(names)
    code, chosen = ran(run_all, monkeypatch, [])
    assert code == 0
    assert not {"peers", "peers_roboflow"} & set(chosen)
    assert "search" in chosen
    assert "peers: left out" in capsys.readouterr().out
    assert "peers" in ran(run_all, monkeypatch, ["--long"])[1]
    assert ran(run_all, monkeypatch, ["--only", "peers"])[1] == ["peers"]


def test_unknown_names_and_failures_are_reported(run_all: Any, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run_all.main(["--only", "nope"]) == 2
    assert "unknown benchmark(s): nope" in capsys.readouterr().err
    monkeypatch.setattr(run_all.subprocess, "call", lambda cmd, cwd: 3)
    assert run_all.main(["--only", "search", "knn"]) == 1
    assert "failed: search, knn" in capsys.readouterr().err
