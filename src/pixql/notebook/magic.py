"""The ``%pixql`` / ``%%pixql`` IPython magic (modelled on ThanoSQL's ``%%thanosql``).

Load it with ``%load_ext pixql``; ``%thanosql`` / ``%%thanosql`` are registered as aliases,
so ThanoSQL notebooks run unchanged (if ThanoSQL's own extension is loaded after pixql, its
``%thanosql`` replaces the alias: the later registration wins). Then::

    %pixql -w my-workspace                 # open (creating) a workspace; or %pixql connect DIR
    %pixql SELECT count(*) FROM images     # one statement; the result is a DataFrame

    %%pixql -o res
    COPY images OPTIONS (if_exists='replace') FROM 'shapes/';
    SELECT * FROM images LIMIT 5           -- ;-separated; the LAST result is shown

Options (before the statement): ``-w/--workspace DIR``, ``-o/--out VAR`` (store the
:class:`~pixql.execution.result.Result` in ``VAR``), ``-q/--quiet`` (show nothing),
``--thumbs`` (rows with an ``image_path`` column as a thumbnail table), ``--max-images N``
(pictures shown, default 100), ``-k/--api-key KEY``, ``-h/--help``. Line commands:
``connect [DIR]``, ``close``, ``workspace``, and ThanoSQL's two set-up lines
``API_TOKEN=KEY`` (the server's API key) and ``ws://host:port/...`` (connect to that server).

A workspace served by ``pixql serve`` is used through the server (``pixql.connect`` decides).

A result with rows is returned as a pandas DataFrame (so ``_`` holds it); PRINT IMAGE draws
its pictures in a grid; a statement without rows prints its message (``Success``). Errors
show pixql's message (with the caret of a syntax error) without a Python traceback, and
stop "Run All" like any failing cell; ``%tb`` shows the full traceback.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from pixql.errors import Error
from pixql.notebook.display import MAX_IMAGES

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from IPython.core.interactiveshell import InteractiveShell

    from pixql.connection import AnyWorkspace
    from pixql.execution.result import Result

USAGE = """\
%pixql [options] <statement>          run one statement
%%pixql [options]                     run the cell's ;-separated statements, show the last
%pixql connect [DIR|URL] | close | workspace
%pixql API_TOKEN=KEY | ws://host:port/...  (ThanoSQL's set-up lines: key, server)

options:
  -w, --workspace DIR   open the workspace DIR, or a server URL http://host:port
                        (default $PIXQL_WORKSPACE or ./pixql-workspace)
  -k, --api-key KEY     API key of the server (default $PIXQL_API_KEY)
  -o, --out VAR         store the last Result in the variable VAR
  -q, --quiet           show nothing (errors still show)
  --thumbs              show rows with an image_path column as a thumbnail table
  --max-images N        most pictures shown by PRINT IMAGE / --thumbs (default 100)
  -h, --help            this text"""


@dataclass
class MagicArgs:
    """The options of one magic call."""

    workspace: str | None = None
    out: str | None = None
    quiet: bool = False
    thumbs: bool = False
    max_images: int = MAX_IMAGES
    api_key: str | None = None
    help: bool = False


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _identifier(text: str) -> str:
    if not text.isidentifier():
        raise ValueError(text)
    return text


#: flag → (MagicArgs field, converter of its value; None for a switch)
FLAGS: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "-w": ("workspace", str), "--workspace": ("workspace", str),
    "-o": ("out", _identifier), "--out": ("out", _identifier),
    "-q": ("quiet", None), "--quiet": ("quiet", None),
    "--thumbs": ("thumbs", None),
    "--max-images": ("max_images", _positive_int),
    "-k": ("api_key", str), "--api-key": ("api_key", str),
    "-h": ("help", None), "--help": ("help", None),
}


_OPTION_LIKE = re.compile(r"-[A-Za-z]|--[A-Za-z][\w-]*")
#: ThanoSQL's set-up lines: ``%thanosql API_TOKEN=KEY``, ``%thanosql ws://host:port/ws/v1/query``
_API_TOKEN = re.compile(r"^API_TOKEN=(\S+)$")
_ENGINE_URL = re.compile(r"^(wss?)://([^/\s]+)(/\S*)?$", re.IGNORECASE)


def next_token(text: str) -> tuple[str, str]:
    """The first word of ``text`` (a quoted string loses its quotes) and the rest."""
    text = text.lstrip()
    if text[:1] in ("'", '"'):
        end = text.find(text[0], 1)
        if end < 0:
            raise UsageError(f"unterminated quote in: {text}")
        return text[1:end], text[end + 1:]
    parts = text.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1] if len(parts) > 1 else ""


def parse_args(line: str) -> tuple[MagicArgs, str]:
    """Leading options of a magic line, and the rest of the line (a statement or command).

    Options end at the first word that is not an option; a word shaped like an option
    (``-x``, ``--word``) that is not one of :data:`FLAGS` is an error.
    """
    args, rest = MagicArgs(), line
    while True:
        word, after = next_token(rest)
        if word not in FLAGS:
            if _OPTION_LIKE.fullmatch(word):
                raise UsageError(f"unknown option {word!r} of %pixql\n{USAGE}")
            return args, rest.strip()
        field, convert = FLAGS[word]
        if convert is None:
            setattr(args, field, True)
            rest = after
            continue
        value, rest = next_token(after)
        if not value:
            raise UsageError(f"option {word} needs a value\n{USAGE}")
        try:
            setattr(args, field, convert(value))
        except ValueError:
            raise UsageError(f"bad value {value!r} for option {word}\n{USAGE}") from None


class PixqlMagicError(Exception):
    """A statement failed: IPython shows only pixql's message, not a traceback."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error

    def _render_traceback_(self) -> list[str]:
        """IPython's hook: the lines shown instead of the traceback."""
        name = type(self.error).__name__
        lines = str(self.error).splitlines() or [name]
        return [f"\x1b[0;31m{name}\x1b[0m: {lines[0]}", *lines[1:]]


def _database_errors() -> tuple[type[BaseException], ...]:
    import duckdb

    return (Error, duckdb.Error)


@magics_class
class PixqlMagics(Magics):
    """``%pixql`` / ``%%pixql``: run pixql SQL against a workspace from a notebook."""

    def __init__(self, shell: InteractiveShell | None = None) -> None:
        super().__init__(shell)
        self._ws: AnyWorkspace | None = None
        self.api_key: str | None = None

    # -- the workspace --------------------------------------------------------------------
    @property
    def workspace(self) -> AnyWorkspace:
        """The open workspace (the default one is opened on first use)."""
        if self._ws is None:
            self.connect(None)
            assert self._ws is not None
            print(f"pixql: using workspace {self._ws.root} (change it with %pixql -w DIR)")
        return self._ws

    def connect(self, path: str | None) -> AnyWorkspace:
        """Open ``path`` (default ``$PIXQL_WORKSPACE`` or ``./pixql-workspace``), through
        its server when ``pixql serve`` serves it; or a server URL."""
        from pixql.connection import connect, is_url

        target = path if is_url(path) else os.path.abspath(os.path.expanduser(
            path or os.environ.get("PIXQL_WORKSPACE", "pixql-workspace")))
        assert target is not None
        if self._ws is not None and self._same(target):
            return self._ws
        self.close()
        try:
            self._ws = connect(target, api_key=self.api_key)
        except _database_errors() as e:
            raise PixqlMagicError(e) from e
        return self._ws

    def _same(self, target: str) -> bool:
        """Whether the open workspace is ``target`` (a folder or a server URL)."""
        url = getattr(self._ws, "url", None)
        if url is not None and getattr(self._ws, "record", None) is None:
            return bool(url == target.rstrip("/"))
        return str(getattr(self._ws, "root", "")) == os.path.realpath(target)

    def close(self) -> None:
        """Close the workspace (releasing the database file for other processes)."""
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    # -- line commands --------------------------------------------------------------------
    def _connect_and_say(self, path: str | None) -> None:
        self.connect(path)
        self._cmd_workspace("")

    def _setup_line(self, line: str) -> bool:
        """ThanoSQL's set-up lines: ``API_TOKEN=KEY`` and ``ws://host:port/...``."""
        token = _API_TOKEN.match(line)
        if token is not None:
            self.api_key = token.group(1)
            ws = self._ws
            if ws is not None and hasattr(ws, "server"):  # reconnect with the key
                target = str(getattr(ws, "url", "") if getattr(ws, "record", None) is None
                             else ws.root)
                self.close()
                self.connect(target)
            print("pixql: API key set")
            return True
        engine = _ENGINE_URL.match(line)
        if engine is not None:
            scheme = "https" if engine.group(1).lower() == "wss" else "http"
            self._connect_and_say(f"{scheme}://{engine.group(2)}")
            return True
        return False

    def _cmd_connect(self, rest: str) -> None:
        path, _ = next_token(rest)
        self._connect_and_say(path or None)

    def _cmd_close(self, rest: str) -> None:
        self.close()
        print("pixql: workspace closed")

    def _cmd_workspace(self, rest: str) -> None:
        if self._ws is None:
            print("pixql: no workspace open")
            return
        via = f" (served by {self._ws.server})" if hasattr(self._ws, "server") else ""
        print(f"pixql: workspace {self._ws.root}{via}")

    COMMANDS: ClassVar[dict[str, Callable[[PixqlMagics, str], None]]] = {
        "connect": _cmd_connect, "close": _cmd_close, "workspace": _cmd_workspace,
    }

    # -- the magic ------------------------------------------------------------------------
    @no_var_expand
    @line_cell_magic
    def pixql(self, line: str, cell: str | None = None) -> Any:
        """Run pixql SQL; see ``%pixql --help``."""
        args, rest = parse_args(line)
        if args.help:
            print(USAGE)
            return None
        if args.api_key:
            self.api_key = args.api_key
        if args.workspace:
            self._connect_and_say(args.workspace)
        if cell is None:
            if self._setup_line(rest.strip()):
                return None
            word, tail = next_token(rest)
            command = self.COMMANDS.get(word.lower())
            if command is not None:
                command(self, tail)
                return None
            script = rest
        elif rest:
            raise UsageError(f"unexpected text after the %%pixql options: {rest!r} "
                             "(put the statements in the cell body)")
        else:
            script = cell
        if not script.strip():
            if args.workspace:
                return None
            raise UsageError(f"nothing to run\n{USAGE}")
        return self.run(script, args)

    def run(self, script: str, args: MagicArgs) -> Any:
        """Run ``script``; store/show its last result as ``args`` say."""
        try:
            results = self.workspace.execute(script)
        except _database_errors() as e:
            raise PixqlMagicError(e) from e
        result = results[-1] if results else None
        if args.out:
            self.shell.user_ns[args.out] = result  # type: ignore[union-attr]
        if result is None or args.quiet:
            return None
        return show(result, self.workspace, thumbs=args.thumbs, max_images=args.max_images)


#: DuckDB's answers to statements without rows (CREATE → Count, SET/DROP → Success)
STATUS_COLUMNS = (["Success"], ["Count"])


def status_only(result: Result) -> bool:
    """Whether ``result`` carries a status rather than rows (shown as its message)."""
    if not result.table.num_columns:
        return True
    return result.table.num_rows == 0 and result.columns in STATUS_COLUMNS


def show(result: Result, ws: AnyWorkspace, *, thumbs: bool = False,
         max_images: int = MAX_IMAGES) -> Any:
    """Display ``result`` in the notebook: a picture grid (PRINT IMAGE), a thumbnail table
    (``thumbs``), or the message of a statement without rows; else return its DataFrame."""
    from IPython.display import HTML, display

    from pixql.notebook.display import image_grid, thumbnail_table

    if result.images is not None:
        display(HTML(image_grid(result, ws, max_images=max_images)))
        return None
    if status_only(result):
        print(result.message or "Success")
        return None
    if thumbs:
        display(HTML(thumbnail_table(result, ws, max_rows=max_images)))
        return None
    return result.df()


def get_magics(shell: InteractiveShell | None = None) -> PixqlMagics:
    """The :class:`PixqlMagics` registered in ``shell`` (default: the running one)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        raise RuntimeError("not running inside IPython")
    magics = shell.magics_manager.registry.get("PixqlMagics")
    if magics is None:
        raise RuntimeError("the pixql extension is not loaded: run %load_ext pixql")
    return magics


def get_workspace(shell: InteractiveShell | None = None) -> AnyWorkspace:
    """The workspace ``%pixql`` uses, e.g. ``db = get_workspace(); db.sql(...)``."""
    return get_magics(shell).workspace


#: other names of ``%pixql`` / ``%%pixql`` (ThanoSQL notebooks run unchanged)
ALIASES = ("thanosql",)


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext pixql``: register the magics, and ``%thanosql`` / ``%%thanosql`` as
    aliases (a ThanoSQL extension loaded later takes those names back: the last one wins)."""
    magics = PixqlMagics(ipython)
    ipython.register_magics(magics)
    for name in ALIASES:
        ipython.register_magic_function(magics.pixql, "line_cell", name)  # type: ignore[misc,arg-type]


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """``%unload_ext pixql``: close the workspace (the magic itself stays registered)."""
    magics = ipython.magics_manager.registry.get("PixqlMagics")
    if isinstance(magics, PixqlMagics):
        magics.close()


__all__ = [
    "MagicArgs",
    "PixqlMagicError",
    "PixqlMagics",
    "get_workspace",
    "load_ipython_extension",
    "parse_args",
    "show",
    "unload_ipython_extension",
]
