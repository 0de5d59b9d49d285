"""Statement dispatch: one executor per node type, looked up in :data:`EXECUTORS`."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pixql.execution.context import ExecContext, to_arrow
from pixql.execution.result import Result
from pixql.sql.nodes import Convert, Passthrough, Statement

if TYPE_CHECKING:  # pragma: no cover
    from pixql.execution.workspace_api import WorkspaceAPI

S = TypeVar("S", bound=Statement)
Executor = Callable[[ExecContext, Statement], Result]

#: node type → executor; filled by the @executes decorator in the executor modules
EXECUTORS: dict[type[Statement], Executor] = {}

_EXECUTOR_MODULES = (
    "pixql.execution.build",
    "pixql.execution.convert",
    "pixql.execution.search_rows",  # SEARCH (imports pixql.execution.search)
    "pixql.execution.model_statements",
    "pixql.execution.copy",
    "pixql.execution.printing",
)


def executes(node_type: type[S]) -> Callable[[Callable[[ExecContext, S], Result]],
                                               Callable[[ExecContext, S], Result]]:
    """Register the decorated function as the executor of ``node_type``."""

    def deco(fn: Callable[[ExecContext, S], Result]) -> Callable[[ExecContext, S], Result]:
        EXECUTORS[node_type] = fn  # type: ignore[assignment]
        return fn

    return deco


_LOAD_LOCK = threading.Lock()
_loaded = False


def _load_executors() -> None:
    """Import the executor modules once. Under a lock: a second thread must not look an
    executor up while the first is half-way through the imports (a 500 under load)."""
    global _loaded
    if _loaded:
        return
    with _LOAD_LOCK:
        if not _loaded:
            for mod in _EXECUTOR_MODULES:
                importlib.import_module(mod)
            _loaded = True


def run_node(ctx: ExecContext, node: Statement) -> Result:
    """Execute one statement node (also used for nested subqueries)."""
    _load_executors()
    try:
        executor = EXECUTORS[type(node)]
    except KeyError:  # pragma: no cover - every node type has an executor
        raise TypeError(f"no executor for {type(node).__name__}") from None
    result = executor(ctx, node)
    result.statement = node.text
    return result


def execute_statement(ws: WorkspaceAPI, node: Statement) -> Result:
    """Run one top-level statement on the calling thread's cursor."""
    ctx = ExecContext(ws=ws, cur=ws.cursor(), run=run_node)
    try:
        if not _has_nested(node):
            return run_node(ctx, node)
        with ctx.transaction():  # a nested CONVERT commits only if the whole statement does
            return run_node(ctx, node)
    finally:
        ctx.release()


def _has_nested(node: Statement) -> bool:
    """Whether the statement embeds a writing AI subquery (a CONVERT, at any depth), whose
    write must share the statement's fate. Nested SEARCH and LIST only read."""
    query = getattr(node, "query", None)
    subs = query.subqueries if query is not None else []
    return any(isinstance(s.node, Convert) or _has_nested(s.node) for s in subs)


@executes(Passthrough)
def run_passthrough(ctx: ExecContext, node: Passthrough) -> Result:
    """Plain DuckDB SQL: sent as written (nested AI subqueries materialised first)."""
    rel = ctx.cur.sql(ctx.render(node.query))
    if rel is None:
        return Result(message="Success")
    table = to_arrow(rel)
    if table.num_rows == 0 and table.column_names in (["Count"], ["Success"]):
        return Result(message="Success")  # DDL and settings: a status, not an empty table
    return Result(table=table)
