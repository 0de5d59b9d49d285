"""A real IPython shell (``InteractiveShell``, the base of Jupyter's kernel shell) with the
pixql extension loaded, and helpers to run cells and capture what they display."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

IMG = re.compile(r'<img src="data:image/png;base64,([^"]+)"[^>]*title="([^"]*)"')
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Cell:
    """What running one cell produced."""

    result: Any  # IPython's ExecutionResult
    stdout: str
    stderr: str
    html: list[str] = field(default_factory=list)

    @property
    def value(self) -> Any:
        return self.result.result

    @property
    def error(self) -> BaseException | None:
        return self.result.error_in_exec or self.result.error_before_exec

    def images(self) -> list[tuple[str, bytes]]:
        """(title, PNG bytes) of every inlined picture, in display order."""
        import base64

        return [(title, base64.b64decode(data))
                for block in self.html for data, title in IMG.findall(block)]


class Shell:
    """Runs cells in an IPython shell, capturing stdout, stderr and rich display output."""

    def __init__(self, ip: Any) -> None:
        self.ip = ip

    def cell(self, source: str) -> Cell:
        from IPython.utils.capture import capture_output

        with capture_output() as cap:
            result = self.ip.run_cell(source, store_history=True)
        html = [o.data["text/html"] for o in cap.outputs if "text/html" in o.data]
        return Cell(result, ANSI.sub("", cap.stdout), ANSI.sub("", cap.stderr), html)

    @property
    def ns(self) -> dict[str, Any]:
        return self.ip.user_ns  # type: ignore[no-any-return]


@pytest.fixture(scope="package")
def ipython(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One InteractiveShell for the package; IPython's global side effects are undone."""
    from traitlets.config import Config

    saved = (sys.modules.get("__main__"), sys.displayhook, sys.excepthook)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
        from IPython.core.interactiveshell import InteractiveShell

        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        ip = InteractiveShell.instance(config=config)
        ip.run_line_magic("load_ext", "pixql")
        try:
            yield ip
        finally:
            from pixql.notebook.magic import unload_ipython_extension

            unload_ipython_extension(ip)  # closes the workspace
            InteractiveShell.clear_instance()
            main, sys.displayhook, sys.excepthook = saved
            if main is not None:
                sys.modules["__main__"] = main


@pytest.fixture
def shell(ipython: Any, tmp_path: Path) -> Iterator[Shell]:
    """The shell, connected to a fresh workspace ``tmp_path/ws``."""
    sh = Shell(ipython)
    out = sh.cell(f"%pixql -w '{tmp_path / 'ws'}'")
    assert out.error is None, out.stdout
    yield sh
    sh.cell("%pixql close")
