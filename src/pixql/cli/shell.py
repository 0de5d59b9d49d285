"""``pixql shell``: a REPL with multi-line statements (ended by ``;``) and history."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pixql.errors import Error

if TYPE_CHECKING:  # pragma: no cover
    from pixql.connection import AnyWorkspace

PROMPT, CONTINUE = "pixql> ", "   ...> "
QUIT = {"\\q", "exit", "quit", ".quit", ".exit"}
HISTORY = Path.home() / ".pixql_history"


def _setup_history() -> None:
    try:
        import atexit
        import readline
    except ImportError:  # pragma: no cover - no readline on this platform
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(HISTORY)
    atexit.register(lambda: _save_history(readline))


def _save_history(readline: object) -> None:
    with contextlib.suppress(OSError):
        readline.write_history_file(HISTORY)  # type: ignore[attr-defined]


def complete_statement(buffer: str) -> bool:
    """Whether the buffer ends a statement (a ``;`` outside strings and comments)."""
    from pixql.errors import ParseError
    from pixql.sql import split_statements

    text = buffer.rstrip()
    if not text.endswith(";"):
        return False
    try:
        split_statements(text)
    except ParseError:
        return False  # e.g. an unterminated string: keep reading
    return True


def _read(prompt: str, interactive: bool) -> str | None:
    """One line of input, or None at end of input."""
    if interactive:
        try:
            return input(prompt)
        except EOFError:
            return None
    line = sys.stdin.readline()
    return None if line == "" else line.rstrip("\n")


def run_shell(ws: AnyWorkspace) -> int:
    """Read statements until EOF or ``\\q``; print each result or error."""
    from pixql.cli.render import emit_result

    interactive = sys.stdin.isatty()
    if interactive:
        _setup_history()
        via = f" (served by {ws.server})" if hasattr(ws, "server") else ""
        print(f"pixql shell on {ws.root}{via} — end statements with ';', \\q to quit")
    buffer = ""
    while True:
        line = _read(CONTINUE if buffer else PROMPT, interactive)
        if line is None or (not buffer and line.strip() in QUIT):
            break
        buffer += line + "\n"
        if complete_statement(buffer):
            _run(ws, buffer, emit_result)
            buffer = ""
    if buffer.strip():
        _run(ws, buffer, emit_result)
    return 0


def _run(ws: AnyWorkspace, text: str, emit: object) -> None:
    try:
        for result in ws.execute(text):
            emit(result, ws, show=None, max_rows=20)  # type: ignore[operator]
    except Error as e:
        print(f"error: {e}", file=sys.stderr)
    except Exception as e:  # noqa: BLE001 - DuckDB's own errors; keep the shell alive
        print(f"error: {e}", file=sys.stderr)
