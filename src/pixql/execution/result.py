"""Statement results: an Arrow table with pandas/tuple views and a readable text rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    from pathlib import Path

MAX_ROWS_SHOWN = 20
MAX_CELL = 40


class LazyRows(Protocol):
    """Rows a result fetches only when they are read (CONVERT's table, which may hold
    millions of rows): the column names, the row count and the first rows are cheap."""

    def columns(self) -> list[str]: ...

    def count(self) -> int: ...

    def head(self, n: int) -> pa.Table: ...

    def all(self) -> pa.Table: ...


@dataclass
class Result:
    """The result of one statement.

    ``table`` holds the rows (an empty table for statements without rows); ``message`` a
    short status for statements like COPY; ``images`` the resolved image paths of a PRINT
    IMAGE, in row order, with ``image_col`` naming the column they came from. With
    ``lazy``, the rows are fetched on first access of ``table`` (printing the result
    fetches only its first rows and the count).
    """

    _table: pa.Table | None = field(default=None, repr=False)
    message: str = ""
    statement: str = ""
    images: list[Path] | None = None
    image_col: str | None = None
    lazy: LazyRows | None = field(default=None, repr=False)

    def __init__(self, table: pa.Table | None = None, message: str = "", statement: str = "",
                 images: list[Path] | None = None, image_col: str | None = None,
                 lazy: LazyRows | None = None) -> None:
        self._table = table if table is not None or lazy is not None else pa.table({})
        self.message, self.statement = message, statement
        self.images, self.image_col, self.lazy = images, image_col, lazy

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            assert self.lazy is not None
            self._table = self.lazy.all()
        return self._table

    @table.setter
    def table(self, value: pa.Table) -> None:
        self._table = value

    @property
    def columns(self) -> list[str]:
        if self._table is None and self.lazy is not None:
            return self.lazy.columns()
        return list(self.table.column_names)

    def arrow(self) -> pa.Table:
        return self.table

    def df(self) -> Any:
        """A pandas DataFrame (index 0..n-1); embedding columns hold numpy float32 arrays."""
        return self.table.to_pandas()

    def fetchall(self) -> list[tuple[Any, ...]]:
        cols = [c.to_pylist() for c in self.table.columns]
        return list(zip(*cols, strict=True)) if cols else []

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchall()
        return rows[0] if rows else None

    def __len__(self) -> int:
        if self._table is None and self.lazy is not None:
            return self.lazy.count()
        return int(self.table.num_rows)

    def __repr__(self) -> str:
        return self.render()

    __str__ = __repr__

    def _repr_html_(self) -> str:  # pragma: no cover - exercised in notebooks
        if not self.table.num_columns:
            return f"<pre>{self.message or 'Success'}</pre>"
        html: str = self.df().to_html(max_rows=MAX_ROWS_SHOWN * 3)
        return html

    def render(self, max_rows: int = MAX_ROWS_SHOWN) -> str:
        """A plain-text table (embeddings abbreviated), plus the row count."""
        if not self.columns:
            return self.message or "Success"
        n = len(self)
        head = self.lazy.head(max_rows) if self._table is None and self.lazy is not None \
            else self.table.slice(0, max_rows)
        header = self.columns
        cols = [c.to_pylist() for c in head.columns]
        rows = [[_cell(v) for v in row] for row in zip(*cols, strict=True)]
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

        def line(cells: list[str]) -> str:
            return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))

        out = [line(header), "-+-".join("-" * w for w in widths)]
        out += [line(r) for r in rows]
        if n > max_rows:
            out.append(f"... ({n - max_rows} more rows)")
        out.append(f"[{n} rows x {len(header)} columns]")
        if self.message:
            out.append(self.message)
        return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6f}"
    if (isinstance(value, (list, tuple)) and len(value) > 4
            and all(isinstance(v, (int, float)) or v is None for v in value)):
        first = ", ".join(_cell(v)[:7] for v in value[:3])
        return f"[{first}, … ({len(value)})]"
    text = str(value).replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
