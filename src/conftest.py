"""Doctests of ``src/`` (pytest runs them: ``--doctest-modules``, ``testpaths`` in
pyproject.toml): each runs in a fresh temporary folder, its current directory, so an example
such as ``pixql.connect("my-workspace")`` writes nothing in the checkout; ``tmp_path`` is
that folder too. (Not part of the installed package.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _doctest_in_tmp(request: pytest.FixtureRequest, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("PIXQL_PROGRESS", "0")
        namespace: dict[str, Any] = request.getfixturevalue("doctest_namespace")
        namespace["tmp_path"] = tmp_path
