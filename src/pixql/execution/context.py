"""What every statement executor gets: the workspace, a cursor, and query helpers."""

from __future__ import annotations

import itertools
import json
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb

from pixql.catalog.store import Catalog
from pixql.errors import NotFoundError, ProgrammingError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Iterator

    import pyarrow as pa

    from pixql.execution.result import Result
    from pixql.execution.workspace_api import WorkspaceAPI
    from pixql.sql.nodes import Query, Statement

_names = itertools.count()


def to_arrow(rel: Any) -> pa.Table:
    """A DuckDB relation as an Arrow table, on both DuckDB 1.x and 2.x."""
    fn = getattr(rel, "to_arrow_table", None) or rel.arrow
    table: pa.Table = fn()
    return table


def in_open_transaction(cur: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``cur`` is inside an explicit transaction. Autocommit gives every statement a
    new transaction id; an open transaction keeps one. (Trying BEGIN instead would abort the
    user's transaction when one is open.)"""
    first = cur.execute("SELECT txid_current()").fetchall()
    return cur.execute("SELECT txid_current()").fetchall() == first


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def require_select(query: Query) -> None:
    """Refuse an AS query that is not a single SELECT (``WITH``, ``VALUES``, ``FROM t``,
    ``SHOW``... are SELECTs) before anything runs: ``BUILD ... AS DELETE FROM t`` must not
    delete rows. Nested AI statements count as SELECTs."""
    text = "SELECT 1".join(query.segments())
    kinds = [s.type for s in duckdb.extract_statements(text)]
    if kinds != [duckdb.StatementType.SELECT]:
        got = ", ".join(k.name for k in kinds) or "nothing"
        raise ProgrammingError(f"the AS query must be one SELECT statement (or WITH / VALUES "
                               f"/ FROM ...), got {got}: {query.text.strip()[:80]!r}")


@dataclass
class ExecContext:
    """Per-statement state. Nested AI subqueries are materialised as Arrow tables registered
    on this cursor under unique names, and unregistered when the statement ends."""

    ws: WorkspaceAPI
    cur: duckdb.DuckDBPyConnection
    run: Callable[[ExecContext, Statement], Result]
    registered: list[str] = field(default_factory=list)

    #: True while a statement-wide transaction is open (nested writers then join it)
    in_transaction: bool = False

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.cur)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction around a write: its own, or the one already open (a statement-wide
        one, or one the user began with BEGIN), which then commits or rolls back as a whole."""
        if self.in_transaction or in_open_transaction(self.cur):
            yield  # the user's BEGIN (or ours) is open: join it
            return
        self.cur.begin()
        self.in_transaction = True
        try:
            yield
            self.cur.commit()
        except BaseException:
            self.cur.rollback()
            raise
        finally:
            self.in_transaction = False

    def register(self, table: pa.Table) -> str:
        name = f"__pixql_sub_{next(_names)}"
        self.cur.register(name, table)
        self.registered.append(name)
        return name

    def release(self) -> None:
        for name in self.registered:
            with suppress(duckdb.Error):  # already gone
                self.cur.unregister(name)
        self.registered.clear()

    def render(self, query: Query) -> str:
        """The query's SQL with each nested AI statement replaced by its materialised result."""
        out, last = [], 0
        for sub in query.subqueries:
            result = self.run(self, sub.node)
            name = self.register(result.table)
            out.append(query.text[last : sub.start])
            out.append(f"SELECT * FROM {quote_ident(name)}")
            last = sub.end
        out.append(query.text[last:])
        return "".join(out)

    def query_arrow(self, query: Query) -> pa.Table:
        """Run a (rendered) query and return its rows (it must be one SELECT)."""
        require_select(query)
        rel = self.cur.sql(self.render(query))
        if rel is None:
            raise NotFoundError("the AS query returned no rows table; it must be a SELECT")
        return to_arrow(rel)

    def base_table(self, query: Query) -> str | None:
        """The table a query reads when it is a single-table SELECT (else None)."""
        if query.subqueries:
            return None
        rows = self.cur.execute("SELECT json_serialize_sql(?)", [query.text]).fetchall()
        tree = json.loads(rows[0][0]) if rows else {}
        stmts = tree.get("statements") or []
        if tree.get("error") or len(stmts) != 1:
            return None
        node = stmts[0].get("node", {})
        src = node.get("from_table", {})
        if node.get("type") != "SELECT_NODE" or src.get("type") != "BASE_TABLE":
            return None
        if node.get("cte_map", {}).get("map"):
            return None
        name, schema = src.get("table_name"), src.get("schema_name") or None
        found = self.cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE lower(table_name) = lower(?) "
            "AND (? IS NULL OR lower(schema_name) = lower(?)) AND NOT temporary",
            [name, schema, schema],
        ).fetchall()
        if not found:
            return None
        return f"{schema}.{found[0][0]}" if schema else str(found[0][0])
