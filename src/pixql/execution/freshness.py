"""Which rows SEARCH may rank: those whose vector the searching model version made from the
row's present value (:mod:`pixql.catalog.provenance`). Stale and missing rows are left out,
counted, and the result says which CONVERT embeds them; when no selected row is current,
SEARCH fails with that advice instead of returning nothing."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pixql.catalog import provenance as prov
from pixql.errors import CatalogError

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pyarrow as pa

    from pixql.catalog.store import ColumnRecord, ModelRecord
    from pixql.execution.context import ExecContext

#: convert_type → the CONVERT option naming its source column
SOURCE_OPTION = {"image": "image_col", "text": "text_col", "video": "video_col"}
_names = itertools.count()


@dataclass(frozen=True)
class Freshness:
    """The provenance rule for one embedding column searched with one model version."""

    record: ColumnRecord
    model: str
    version: int
    has_companion: bool
    has_source: bool

    def status_sql(self) -> str:
        """SQL of each row's status code, on the table's (or a result's) own columns."""
        r = self.record
        return prov.status_sql(
            prov.quote(r.column_name),
            prov.quote(prov.companion(r.column_name)) if self.has_companion else None,
            prov.quote(r.source_column) if self.has_source else None,
            self.version, None if self.has_companion else int(r.model_version))

    def fix(self) -> str:
        """The CONVERT statement that embeds the stale and missing rows."""
        r = self.record
        opt = SOURCE_OPTION.get(r.modality, "image_col")
        kind = "" if r.modality == "image" else f"convert_type='{r.modality}', "
        return (f"CONVERT USING {self.model} OPTIONS ({kind}{opt}='{r.source_column}', "
                f"result_col='{r.column_name}') AS SELECT * FROM {r.table_name}")

    def note(self, counts: np.ndarray) -> str:
        """The message about the left-out rows, from the selected rows' status counts
        (:func:`status_counts`); CatalogError when rows were left out and none is current."""
        current, stale, missing = (int(counts[c]) for c in (prov.CURRENT, prov.STALE,
                                                             prov.MISSING))
        if current == 0 and stale + missing > 0:
            raise CatalogError(
                f"no selected row of {self.record.table_name}.{self.record.column_name} has "
                f"an embedding made by version {self.version} of model {self.model!r} (the "
                f"current one): {stale} stale, {missing} not embedded; re-run CONVERT to "
                f"embed them: {self.fix()}")
        return prov.left_out_message(stale, missing, self.fix())


def status_counts(status: np.ndarray) -> np.ndarray:
    """How many rows have each status code (indexed by code)."""
    return np.bincount(status.astype(np.int64), minlength=4)


def freshness(col: ColumnRecord | None, rec: ModelRecord,
              columns: Iterable[str]) -> Freshness | None:
    """The rule for ``col`` (the catalog row of the searched column) in a table or result
    with ``columns``; None when CONVERT did not make the column (every vector counts)."""
    if col is None:
        return None
    names = {c.lower() for c in columns}
    return Freshness(col, rec.name, int(rec.version),
                     prov.companion(col.column_name).lower() in names,
                     col.source_column.lower() in names)


def result_status(ctx: ExecContext, fr: Freshness, rows: pa.Table,
                  table_columns: Iterable[str]) -> np.ndarray | None:
    """Status codes of the rows of a general AS query result; None when its columns
    cannot tell (the provenance column is not selected) and no row of the table is stale
    (NULL vectors are never ranked anyway). CatalogError when they cannot tell and some
    rows of the table are stale."""
    comp = prov.companion(fr.record.column_name).lower()
    if comp not in {c.lower() for c in table_columns} or (fr.has_companion and fr.has_source):
        name = f"__pixql_status_{next(_names)}"
        ctx.cur.register(name, rows)
        try:
            got = ctx.cur.execute(f"SELECT ({fr.status_sql()})::TINYINT FROM "
                                  f"{prov.quote(name)}").fetchnumpy()
        finally:
            ctx.cur.unregister(name)
        return np.asarray(next(iter(got.values())), dtype=np.int8)
    table_rule = Freshness(fr.record, fr.model, fr.version, True, True)
    stale = ctx.cur.execute(
        f"SELECT count(*) FROM {_qualified(fr.record.table_name)} WHERE "
        f"({table_rule.status_sql()}) = {prov.STALE}").fetchall()[0][0]
    if stale:
        raise CatalogError(
            f"{stale} row(s) of {fr.record.table_name}.{fr.record.column_name} hold stale "
            f"embeddings and this AS query does not select their provenance column "
            f"{prov.companion(fr.record.column_name)!r}, so they cannot be told apart: "
            f"select it (SELECT * FROM ...), or run {fr.fix()}")
    return None


def _qualified(table: str) -> str:
    return ".".join(prov.quote(p) for p in table.split("."))
