"""The import contracts of pyproject.toml (``[tool.importlinter]``): kept by the code as it
is, and broken as soon as one of the import cycles they guard against comes back.

Each case copies ``src/pixql`` to a temporary folder, adds one import to the copy (inside a
function, or under ``TYPE_CHECKING``: both must count) and runs ``lint-imports`` on it, one
contract at a time, asserting exactly which contracts break.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter.api import read_configuration

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LINT = [sys.executable, "-c",
        "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"]

IN_FUNCTION = "\n\ndef _injected() -> None:\n    {statement}  # noqa: F401\n"
TYPE_ONLY = "\n\nimport typing\n\nif typing.TYPE_CHECKING:\n    {statement}  # noqa: F401\n"


def contract_ids() -> list[str]:
    return [c["id"] for c in read_configuration(str(PYPROJECT))["contracts_options"]]


def broken_contracts(src: Path, cwd: Path) -> set[str]:
    """The ids of the contracts ``lint-imports`` reports broken for the package in ``src``."""
    broken = set()
    env = {**os.environ, "PYTHONPATH": str(src)}
    for cid in contract_ids():
        run = subprocess.run([*LINT, str(PYPROJECT), "--contract", cid, "--no-cache",
                              "--no-logo"], cwd=cwd, env=env, capture_output=True, encoding="utf-8",
                             timeout=120, check=False)
        assert run.returncode in (0, 1), run.stdout + run.stderr  # 1: broken; else: crashed
        if run.returncode:
            broken.add(cid)
    return broken


def test_the_contracts_are_the_three_expected() -> None:
    assert contract_ids() == ["layers", "root", "acyclic"]


def test_the_code_keeps_every_contract(tmp_path: Path) -> None:
    assert broken_contracts(ROOT / "src", tmp_path) == set()


@pytest.mark.parametrize(
    ("module", "template", "statement", "broken"),
    [
        pytest.param("execution/context.py", IN_FUNCTION, "from pixql.workspace import Workspace",
                     {"layers", "acyclic"}, id="execution-imports-workspace"),
        pytest.param("execution/engine.py", TYPE_ONLY, "from pixql.workspace import Workspace",
                     {"layers", "acyclic"}, id="type-checking-import-counts"),
        pytest.param("index/ann.py", TYPE_ONLY, "from pixql.execution.vectors import TableRef",
                     {"layers", "acyclic"}, id="index-imports-execution"),
        pytest.param("models/clip/embedder.py", TYPE_ONLY,
                     "from pixql.models.clip.backends import attach_backend",
                     {"acyclic"}, id="cycle-inside-models-clip"),
        # through the package, client reaches the notebook, a higher layer
        pytest.param("client/http.py", IN_FUNCTION, "from pixql import __version__",
                     {"root", "layers"}, id="client-imports-the-pixql-package"),
        pytest.param("notebook/magic.py", IN_FUNCTION, "import pixql",
                     {"root"}, id="notebook-imports-the-pixql-package"),
        pytest.param("catalog/store.py", IN_FUNCTION, "from pixql.models.base import Embedder",
                     {"layers"}, id="catalog-imports-models"),
    ],
)
def test_an_upward_import_breaks_the_contracts(tmp_path: Path, module: str, template: str,
                                               statement: str, broken: set[str]) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "pixql", src / "pixql",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = src / "pixql" / module
    target.write_text(target.read_text(encoding="utf-8") + template.format(statement=statement),
                      encoding="utf-8")
    assert broken_contracts(src, tmp_path) == broken


def test_a_module_without_a_layer_breaks_the_layers_contract(tmp_path: Path) -> None:
    """The layers contract is exhaustive: a new top-level module must be given a layer."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "pixql", src / "pixql",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (src / "pixql" / "unplaced.py").write_text('"""A module nobody gave a layer."""\n')
    assert broken_contracts(src, tmp_path) == {"layers"}
