"""The compute engine seam of CONVERT (issue 13): which engine a statement gets, from its
OPTIONS, the workspace, the environment; the Ray engine's own tests are in raydata/."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import pytest

import pixql
from pixql.errors import MissingDependencyError, OptionError
from pixql.execution.compute import ENGINES
from tests.conftest import make_image_folder

if TYPE_CHECKING:
    from pathlib import Path

CONVERT = "CONVERT USING m OPTIONS (result_col='e'{extra}) AS SELECT * FROM t"


def _ws(tmp_path: Path, **kwargs: Any) -> Any:
    db = pixql.connect(tmp_path / "ws", progress=False, **kwargs)
    make_image_folder(db.root / "imgs", per_class=1)
    db.sql("COPY t OPTIONS (if_exists='replace') FROM 'imgs/'")
    db.sql("BUILD MODEL m USING Pixels OPTIONS (image_size=4)")
    return db


def test_workspace_default_then_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # engine='ray' then names the extra
    db = _ws(tmp_path, engine="ray")
    with pytest.raises(MissingDependencyError, match=r"pixql\[ray\]"):
        db.sql(CONVERT.format(extra=""))
    assert "engine" not in db.sql(CONVERT.format(extra=", engine='local'")).message
    db.close()


def test_environment_default_and_unknown_engine(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    db = _ws(tmp_path)
    monkeypatch.setenv("PIXQL_ENGINE", "spark")
    with pytest.raises(OptionError, match=r"engine 'spark' .*PIXQL_ENGINE.*engines: local, ray"):
        db.sql(CONVERT.format(extra=""))
    monkeypatch.setenv("PIXQL_ENGINE", "local")
    assert db.sql(CONVERT.format(extra="")).message.startswith("embedded 4 rows")
    db.close()


def test_unknown_engine_in_options_lists_the_engines(tmp_path: Path) -> None:
    db = _ws(tmp_path)
    with pytest.raises(OptionError, match="engine"):
        db.sql(CONVERT.format(extra=", engine='spark'"))
    assert set(ENGINES) == {"local", "ray"}
    db.close()
