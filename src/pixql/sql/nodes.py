"""Typed statement nodes produced by :mod:`pixql.sql.parser`.

Plain SQL is never regenerated: a :class:`Query` keeps the original text, and the only
rewrite the engine makes is to replace each embedded AI subquery (``FROM (SEARCH ...)``)
by a reference to its materialised result. Every node has ``.sql()``, a canonical text
that parses back to an equal node (the golden round-trip tests rely on it).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

_BARE_IDENT = re.compile(r"[^\W\d][\w$]*")
_LOWER = re.compile(r"[^A-Z]*")


def format_ident(name: str, *, keep_case: bool = False) -> str:
    """Render an identifier: bare when it reads back unchanged, else ``"double quoted"``.

    Unquoted identifiers are folded to lower case when parsed, so a name with an ASCII
    capital is quoted unless ``keep_case`` (model kinds, kept as written).
    """
    if _BARE_IDENT.fullmatch(name) and (keep_case or _LOWER.fullmatch(name)):
        return name
    return '"' + name.replace('"', '""') + '"'


def format_value(value: Any) -> str:
    """Render an OPTIONS value as a Python-like literal."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            raise ValueError("NaN cannot be written as an OPTIONS value")
        return "1e999" if value > 0 else "-1e999"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{format_value(k)}: {format_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    return repr(value)


def format_sql_string(value: str) -> str:
    """Render a SQL string literal (``''`` doubles a quote; backslashes are plain)."""
    return "'" + value.replace("'", "''") + "'"


def format_options(options: dict[str, Any], *, always: bool = False) -> str:
    """Render `` OPTIONS (k=v, ...)``; empty options render as nothing unless ``always``."""
    if not options and not always:
        return ""
    body = ", ".join(f"{k}={format_value(v)}" for k, v in options.items())
    return f" OPTIONS ({body})"


@dataclass(frozen=True)
class Position:
    """1-based line and column of a token in the original script."""

    line: int
    col: int


@dataclass
class Subquery:
    """An AI statement nested in a Query, at ``text[start:end]`` of that query.

    The slice is the AI statement itself, without the parentheses around it.
    """

    start: int
    end: int
    node: AiStatement


@dataclass(eq=False)
class Query:
    """A piece of plain SQL, kept as its original text, plus any nested AI subqueries.

    Two queries are equal when their plain-SQL parts (the text outside the subqueries)
    and their subquery nodes are equal, so a query re-parsed from :meth:`sql` (where the
    subqueries are written canonically) equals the original.
    """

    text: str
    subqueries: list[Subquery] = field(default_factory=list)

    def segments(self) -> list[str]:
        """The plain-SQL pieces of ``text`` around the subqueries (one more than them)."""
        out, last = [], 0
        for sub in self.subqueries:
            out.append(self.text[last : sub.start])
            last = sub.end
        out.append(self.text[last:])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Query):
            return NotImplemented
        nodes = [sub.node for sub in self.subqueries]
        return self.segments() == other.segments() and nodes == [
            sub.node for sub in other.subqueries
        ]

    __hash__ = None  # type: ignore[assignment]

    def sql(self) -> str:
        out, last = [], 0
        for sub in self.subqueries:
            out.append(self.text[last : sub.start])
            out.append(sub.node.sql())
            last = sub.end
        out.append(self.text[last:])
        return "".join(out).strip(" \t\n\r\f\v")


@dataclass
class Statement:
    """Base of every statement. ``text`` is the statement's original source text and
    ``pos`` where it starts in the script (for error messages)."""

    text: str = field(default="", compare=False, repr=False)
    pos: Position = field(default=Position(1, 1), compare=False, repr=False)

    def sql(self) -> str:  # pragma: no cover - every node overrides it
        """Canonical text; the base falls back to the statement as written."""
        return self.text.strip()


@dataclass
class Passthrough(Statement):
    """Any statement that is not an AI statement: sent to DuckDB as written."""

    query: Query = field(default_factory=lambda: Query(""))

    def sql(self) -> str:
        return self.query.sql()


@dataclass
class AiStatement(Statement):
    """Base of pixql's own statements. ``option_pos`` maps option names to positions."""

    options: dict[str, Any] = field(default_factory=dict)
    option_pos: dict[str, Position] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class BuildModel(AiStatement):
    """``BUILD MODEL name USING Kind [OPTIONS (...)] [AS query]``."""

    name: str = ""
    kind: str = ""  # as written (e.g. 'SimCLR'); resolved case-insensitively in the registry
    query: Query | None = None

    def sql(self) -> str:
        tail = f" AS {self.query.sql()}" if self.query else ""
        name, kind = format_ident(self.name), format_ident(self.kind, keep_case=True)
        return f"BUILD MODEL {name} USING {kind}{format_options(self.options)}{tail}"


@dataclass
class GetModel(AiStatement):
    """``GET THANOSQL MODEL clip OPTIONS (model_name='x', overwrite=True)``."""

    source: str = ""  # e.g. 'clip'; 'dataset/<name>' for GET THANOSQL DATASET <name>

    def sql(self) -> str:
        what, name = "MODEL", self.source
        if name.startswith("dataset/"):
            what, name = "DATASET", name[len("dataset/") :]
        return f"GET THANOSQL {what} {format_ident(name)}{format_options(self.options)}"


@dataclass
class Convert(AiStatement):
    """``CONVERT USING model [OPTIONS (...)] AS query``."""

    model: str = ""
    query: Query = field(default_factory=lambda: Query(""))

    def sql(self) -> str:
        head = f"CONVERT USING {format_ident(self.model)}{format_options(self.options)}"
        return f"{head} AS {self.query.sql()}"


@dataclass
class Search(AiStatement):
    """``SEARCH {IMAGE|TEXT|VIDEO|AUDIO} USING model OPTIONS (...) AS query``."""

    target: str = "image"  # lower-case word after SEARCH
    model: str = ""
    query: Query = field(default_factory=lambda: Query(""))

    def sql(self) -> str:
        return (
            f"SEARCH {self.target.upper()} USING {format_ident(self.model)}"
            f"{format_options(self.options)} AS {self.query.sql()}"
        )


@dataclass
class ListModels(AiStatement):
    """``LIST MODEL`` / ``LIST MODELS`` / ``LIST THANOSQL MODEL`` / ``SHOW MODELS``."""

    def sql(self) -> str:
        return "LIST MODEL"


@dataclass
class DeleteModel(AiStatement):
    """``DELETE MODEL name`` / ``DROP MODEL [IF EXISTS] name``."""

    name: str = ""
    if_exists: bool = False

    def sql(self) -> str:
        name = format_ident(self.name)
        return f"DROP MODEL IF EXISTS {name}" if self.if_exists else f"DELETE MODEL {name}"


@dataclass
class CopyFrom(AiStatement):
    """``COPY table OPTIONS (if_exists=...) FROM 'file.csv' | 'file.parquet' | 'folder/'``.

    The path is a SQL string (``'it''s'``; backslashes are plain, for Windows paths).

    DuckDB's own COPY (no OPTIONS after the table name) is a Passthrough.
    """

    table: str = ""
    source: str = ""

    def sql(self) -> str:
        # OPTIONS is what tells this COPY from DuckDB's own, so it is always written.
        head = f"COPY {format_ident(self.table)}{format_options(self.options, always=True)}"
        return f"{head} FROM {format_sql_string(self.source)}"


@dataclass
class PrintImage(AiStatement):
    """``PRINT IMAGE [OPTIONS (image_col=...)] AS query`` (the query may be parenthesised).

    One pair of parentheses around the whole query is removed when parsing, so
    :meth:`sql` always writes one back: ``AS ((SELECT 1))`` keeps ``(SELECT 1)``.
    """

    target: str = "image"
    query: Query = field(default_factory=lambda: Query(""))

    def sql(self) -> str:
        head = f"PRINT {self.target.upper()}{format_options(self.options)}"
        return f"{head} AS ({self.query.sql()})"
