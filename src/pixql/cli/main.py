"""The ``pixql`` command: ``sql``, ``shell``, ``demo`` and ``serve``.

Options common to every subcommand (``-w DIR``) are accepted before and after the
subcommand's name: ``pixql -w DIR serve`` and ``pixql serve -w DIR`` are the same command
(given twice, the one after the name wins).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pixql.errors import DiskFullError, Error
from pixql.version import __version__

Handler = Callable[[argparse.Namespace], int]


def _workspace(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The workspace (or server URL) of -w: through its server when one serves it."""
    from pixql.connection import connect

    compute = {k: v for k in ("engine", "ray_address")
               if (v := getattr(args, k, None)) is not None}
    return connect(args.workspace, api_key=getattr(args, "api_key", None), **compute)


def cmd_sql(args: argparse.Namespace) -> int:
    """Run a query (or a script file with -f) and print the result as a table."""
    from pixql.cli.render import emit_result

    text = Path(args.file).read_text(encoding="utf-8") if args.file else args.query
    if not text:
        print("error: give a QUERY or -f FILE", file=sys.stderr)
        return 2
    with _workspace(args) as ws:
        for result in ws.execute(text) if args.all else [ws.sql(text)]:
            emit_result(result, ws, show=args.show, max_rows=args.max_rows)
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    from pixql.cli.shell import run_shell

    with _workspace(args) as ws:
        return run_shell(ws)


def cmd_demo(args: argparse.Namespace) -> int:
    from pixql.demo import run_demo

    workdir = Path(args.dir or args.workspace or "demo-workspace")
    kwargs = {k: v for k, v in (("max_epochs", args.epochs), ("time_budget", args.seconds))
              if v is not None}
    run_demo(workdir, show=True, **kwargs)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pixql.server.app import serve
    from pixql.server.settings import ServerSettings

    overrides = {"host": args.host, "port": args.port, "pg_port": args.pg_port,
                 "pg_host": args.pg_host}
    if args.api_key:
        overrides["api_keys"] = args.api_key
    if args.enable_sql:
        overrides["enable_sql"] = True
    if args.allow_dir:
        overrides["allowed_dirs"] = args.allow_dir
    settings = ServerSettings.from_env(**overrides)
    serve(settings, args.workspace)
    return 0


COMMANDS: dict[str, Handler] = {
    "sql": cmd_sql, "shell": cmd_shell, "demo": cmd_demo, "serve": cmd_serve,
}


WORKSPACE_HELP = ("workspace folder, or a server URL http://host:port (default: "
                  "$PIXQL_WORKSPACE or ./pixql-workspace)")


def _common_options() -> argparse.ArgumentParser:
    """The options every subcommand also takes after its name. Their default is SUPPRESS so
    that an option given before the name is not reset when it is absent after it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-w", "--workspace", default=argparse.SUPPRESS, help=WORKSPACE_HELP)
    return common


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pixql", description="Search images with SQL.")
    p.add_argument("--version", action="version", version=f"pixql {__version__}")
    p.add_argument("-w", "--workspace", default=os.environ.get("PIXQL_WORKSPACE"),
                   help=WORKSPACE_HELP)
    _add_commands(p.add_subparsers(dest="command", required=True), [_common_options()])
    return p


def _add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    q = sub.add_parser("sql", parents=parents, help="run SQL and print the result")
    q.add_argument("query", nargs="?", help="one or more ;-separated statements")
    q.add_argument("-f", "--file", help="read the statements from a file")
    q.add_argument("--all", action="store_true", help="print every statement's result")
    q.add_argument("--show", metavar="PNG", help="write a contact sheet of the result's images")
    q.add_argument("--max-rows", type=int, default=20, help="rows to print (default 20)")
    sh = sub.add_parser("shell", parents=parents,
                        help="interactive SQL shell (multi-line, history)")
    for cmd in (q, sh):
        cmd.add_argument("--api-key", default=None,
                         help="API key of the server serving the workspace (default: "
                              "$PIXQL_API_KEY)")
        cmd.add_argument("--engine", choices=["local", "ray"], default=None,
                         help="who computes CONVERT's vectors when its OPTIONS do not say "
                              "(default: $PIXQL_ENGINE or local; docs/scale-out.md)")
        cmd.add_argument("--ray-address", default=None, metavar="ADDR",
                         help="the Ray cluster of engine='ray' ('auto', host:port; default: "
                              "$PIXQL_RAY_ADDRESS or a local Ray)")
    d = sub.add_parser("demo", parents=parents,
                       help="build, convert and search a small digits table")
    d.add_argument("--dir", help="demo workspace folder (default ./demo-workspace)")
    d.add_argument("--epochs", type=int, default=None, help="SimCLR epochs (default 60)")
    d.add_argument("--seconds", type=float, default=None,
                   help="SimCLR training time budget in seconds (default 90)")
    s = sub.add_parser("serve", parents=parents,
                       help="run the HTTP server (CLIP API, SQL over HTTP)")
    s.add_argument("--host", default=None, help="default: $PIXQL_HOST or 127.0.0.1")
    s.add_argument("--port", type=int, default=None, help="default: $PIXQL_PORT or 9001")
    s.add_argument("--api-key", action="append", help="require this API key (repeatable)")
    s.add_argument("--enable-sql", action="store_true", help="enable POST /sql")
    s.add_argument("--allow-dir", action="append", metavar="DIR",
                   help="a folder outside the workspace that SQL over HTTP and file images may "
                        "use too (repeatable; replaces $PIXQL_ALLOWED_DIRS)")
    s.add_argument("--pg-port", type=int, default=None,
                   help="also serve the workspace over the PostgreSQL protocol on this port")
    s.add_argument("--pg-host", default=None, help="PostgreSQL interface (default 127.0.0.1)")


def _target(args: argparse.Namespace) -> Path:
    """The folder the command writes to (named in a full-disk message)."""
    from pixql.workspace import DEFAULT_DIR

    folder = getattr(args, "dir", None) or args.workspace or (
        "demo-workspace" if args.command == "demo" else DEFAULT_DIR)
    return Path(folder).expanduser().absolute()


def _reported(e: BaseException, args: argparse.Namespace) -> str | None:
    """The one-line message for an error the CLI reports (None: a bug, let it raise):
    pixql's errors, a full disk (an OSError or DuckDB's message), DuckDB's errors."""
    full = DiskFullError.from_exception(e, _target(args))
    if full is not None:
        return str(full)
    if isinstance(e, Error) or type(e).__module__.startswith(("duckdb", "_duckdb")):
        return str(e)  # DuckDB errors carry their own position
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = _reported(e, args)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
