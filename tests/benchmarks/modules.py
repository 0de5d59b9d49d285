"""The benchmark scripts (``benchmarks/*.py``) imported as modules by their tests."""

from __future__ import annotations

import importlib
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@contextmanager
def bench_module(name: str) -> Iterator[ModuleType]:
    """``benchmarks/<name>.py`` as a module, with benchmarks/ on ``sys.path`` meanwhile
    (the scripts import their siblings, such as ``common``)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))
