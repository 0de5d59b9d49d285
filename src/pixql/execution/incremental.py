"""Incremental, chunked CONVERT into a base table.

The AS query names the source values to embed; every row of the table holding one of them
gets its vector (a vector is a function of the model version and the source value, so rows
sharing a path share it). The work list — one line per distinct source value, with whether
all its rows are current (:mod:`pixql.catalog.provenance`) — is read from DuckDB one page
of values at a time, so neither the rows, nor the decoded images, nor the vectors of more
than one chunk are ever held at once. (A plain ``SELECT * FROM t [WHERE ...]`` is read
page by page straight from the table; any other AS query is evaluated once per page and
DuckDB holds its distinct source values while it runs.) Values are embedded in value order
(paths sort by folder).

Values that need embedding are gathered into chunks of ``chunk_size``; the compute engine
embeds them (the local one a chunk at a time, the ``ray`` one in one pipeline for the whole
statement), and each chunk is written (vectors + provenance) in one transaction of its own
as soon as all its vectors are back. A chunk is
either wholly committed or not at all, and every committed row is current by construction:
a crash loses at most the chunk in flight, and re-running the statement continues with the
rows still missing. Inside a transaction the user opened (or a statement with a nested
CONVERT) all chunks join that transaction, which commits or rolls back as one.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pixql.catalog import provenance as prov
from pixql.errors import Error, ExecutionError, ImageError
from pixql.execution.compute import Chunk
from pixql.execution.context import in_open_transaction, quote_ident, to_arrow
from pixql.execution.search_plan import plain_select
from pixql.progress import progress_bar
from pixql.remote.sources import is_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from pixql.catalog.store import ColumnRecord
    from pixql.execution.compute import ComputeEngine
    from pixql.execution.context import ExecContext
    from pixql.execution.embedding import Embedded
    from pixql.execution.options import ConvertOptions
    from pixql.remote.sources import UrlReader

#: distinct source values per page of the work list (each page is one query, held at once)
PAGE_VALUES = 65536
#: modalities whose values are files or URLs (changed contents are noticed by size and
#: mtime, or by a URL's size and version validators: pixql.remote.sources)
FILE_MODALITIES = frozenset({"image", "video", "audio"})
#: URL signatures of a chunk asked for at once (each is a HEAD / object-info request)
SIG_THREADS = 8
#: the file signature of a file that cannot be read
NO_FILE = (-1, -1)


def qualified(table: str) -> str:
    return ".".join(quote_ident(p) for p in table.split("."))


@dataclass
class Target:
    """Where a CONVERT stores: ``table.column``, made from ``source`` (a column of the
    table), recorded in the catalog as ``record``."""

    table: str
    record: ColumnRecord

    @property
    def column(self) -> str:
        return self.record.column_name

    @property
    def source(self) -> str:
        return self.record.source_column


@dataclass
class Tally:
    """Rows embedded, reused and failed (NULL) so far; chunks committed."""

    embedded: int = 0
    reused: int = 0
    failed: int = 0
    chunks: int = 0


def vectors_to_arrow(emb: Embedded) -> pa.Array:
    """(n, d) float32 + validity → Arrow FixedSizeList<float32>[d] with NULLs."""
    _n, d = emb.vectors.shape
    values = pa.array(emb.vectors.reshape(-1), type=pa.float32())
    mask = pa.array(~emb.valid) if not emb.valid.all() else None
    return pa.FixedSizeListArray.from_arrays(values, d, mask=mask)


def is_plain(ctx: ExecContext, text: str) -> bool:
    """Whether the AS query is a plain ``SELECT * FROM t [WHERE ...]`` (its rows then carry
    the table's own columns, provenance included, and it is read directly)."""

    rows = ctx.cur.execute("SELECT json_serialize_sql(?)", [text]).fetchall()
    tree = json.loads(rows[0][0]) if rows else {}
    stmts = tree.get("statements") or []
    if tree.get("error") or len(stmts) != 1:
        return False
    node = stmts[0].get("node") or {}
    return plain_select(node, node.get("from_table") or {})


@dataclass
class WorkList:
    """The SQL of the work list: one line per distinct source value the AS query selects,
    (k, rows, all current?, min/max file size, min/max file mtime), read one page of
    values at a time in value order (keyset pagination: no row ids, which DuckDB renumbers
    when it checkpoints between chunks)."""

    prefix: str  # WITH ... (non-plain AS queries)
    source: str  # FROM ... t [WHERE ...]
    where: str  # the selection (may be "true")
    head: str  # SELECT k, n, cur, sizes, mtimes
    key: str  # t.<source column>

    def bound(self) -> str:
        """The page's last value: the PAGE_VALUES-th smallest value above ``?``."""
        return (f"{self.prefix}SELECT max(k) FROM (SELECT {self.key} AS k FROM {self.source} "
                f"WHERE {self.where} AND {self.key} > ? ORDER BY 1 LIMIT {PAGE_VALUES})")

    def first_bound(self) -> str:
        return self.bound().replace(f"{self.key} > ?", f"{self.key} IS NOT NULL")

    def page(self, first: bool) -> str:
        low = f"{self.key} IS NOT NULL" if first else f"{self.key} > ?"
        return (f"{self.prefix}{self.head}FROM {self.source} WHERE {self.where} AND {low} "
                f"AND {self.key} <= ? GROUP BY 1 ORDER BY 1")

    def nulls(self) -> str:
        return (f"{self.prefix}{self.head}FROM {self.source} WHERE {self.where} AND "
                f"{self.key} IS NULL GROUP BY 1")


def work_list(target: Target, query_sql: str, plain: bool, columns: dict[str, str],
              version: int, legacy_version: int | None, refresh: str) -> WorkList:
    """The work list of the AS query ``query_sql`` (``plain``: see :func:`is_plain`; else
    the table's rows whose value the AS query returns)."""
    src = quote_ident(target.source)
    emb, comp = f"t.{quote_ident(target.column)}", prov.companion(target.column)
    has_comp = comp.lower() in columns
    if refresh == "all" or target.column.lower() not in columns:
        current = "false"
    elif has_comp:
        current = prov.made_by_sql(f"t.{quote_ident(comp)}", f"t.{src}", version)
    else:
        current = str(legacy_version == version).lower() + f" AND {emb} IS NOT NULL"
    p = f"t.{quote_ident(comp)}"
    sig = (f"min({p}.file_size), max({p}.file_size), min({p}.file_mtime_ns), "
           f"max({p}.file_mtime_ns)") if has_comp else "NULL, NULL, NULL, NULL"
    head = f"SELECT t.{src} AS k, count(*) AS n, bool_and({current}) AS cur, {sig} "
    if plain:
        return WorkList("", f"({query_sql}) t", "true", head, f"t.{src}")
    return WorkList(f"WITH __pixql_q AS ({query_sql}) ", f"{qualified(target.table)} t",
                    f"(t.{src} IN (SELECT {src} FROM __pixql_q) OR (t.{src} IS NULL AND "
                    f"EXISTS (SELECT 1 FROM __pixql_q WHERE {src} IS NULL)))", head, f"t.{src}")


def work_pages(ctx: ExecContext, work: WorkList) -> Iterator[pa.Table]:
    """The work list, a page of at most :data:`PAGE_VALUES` values at a time, NULL first.
    Each page is a query of its own on the statement's cursor, inside or outside a
    transaction; only the page is held (DuckDB finds its bound with a top-N sort). The
    local engine reads a page after the chunks before it were written, the ``ray`` engine
    all pages first: either is right, as a page holds only values above the ones whose
    chunks may have been written since."""
    yield to_arrow(ctx.cur.sql(work.nulls()))
    last = None
    while True:
        params: list[Any] = [] if last is None else [last]
        bound = ctx.cur.execute(work.first_bound() if last is None else work.bound(),
                                params).fetchall()[0][0]
        if bound is None:
            return
        yield to_arrow(ctx.cur.sql(work.page(last is None), params=[*params, bound]))
        last = bound


def file_sig(resolve: Callable[[str], Path], value: Any,
             urls: UrlReader | None = None) -> tuple[int, int]:
    """(size, mtime in ns) of the file ``value`` names — for a URL, (size, version token)
    from ``urls`` (:meth:`~pixql.remote.sources.UrlReader.signature`); :data:`NO_FILE`
    when unreadable."""
    if value is None:
        return NO_FILE
    if urls is not None and is_url(value):
        return urls.signature(value)
    try:
        st = os.stat(resolve(str(value)))
    except (OSError, Error, ValueError):
        return NO_FILE
    return st.st_size, st.st_mtime_ns


def chunk_sigs(ctx: ExecContext, keys: list[Any]) -> list[tuple[int, int]]:
    """The signatures of a chunk's values, taken before they are read; URLs are asked in
    :data:`SIG_THREADS` threads."""
    def sig(k: Any) -> tuple[int, int]:
        return file_sig(ctx.ws.resolve, k, ctx.ws.urls)

    if not any(is_url(k) for k in keys):
        return [sig(k) for k in keys]
    with ThreadPoolExecutor(SIG_THREADS, thread_name_prefix="pixql-sig") as pool:
        return list(pool.map(sig, keys))


def page_url_sigs(ctx: ExecContext, rows: list[tuple[Any, ...]]) -> dict[Any, tuple[int, int]]:
    """The present signatures of a page's embedded URL values (the ones
    :func:`needs_embedding` compares; :func:`chunk_sigs`, so in threads)."""
    keys = [r[0] for r in rows if r[2] and r[3] is not None and is_url(r[0])]
    return dict(zip(keys, chunk_sigs(ctx, keys), strict=True)) if keys else {}


def needs_embedding(row: tuple[Any, ...], files: bool, resolve: Callable[[str], Path],
                    known: dict[Any, tuple[int, int]] | None = None) -> bool:
    """Whether the rows of one work-list line need embedding: not all current, or (files)
    the file's size or mtime differ from what was read (NULL: a 0.1 vector, trusted). A
    URL's signature is looked up in ``known`` (:func:`page_url_sigs`)."""
    key, _n, current, size_lo, size_hi, mtime_lo, mtime_hi = row
    if not current:
        return True
    if not files or size_lo is None:
        return False
    if size_lo != size_hi or mtime_lo != mtime_hi:
        return True
    sig = known[key] if known and key in known else file_sig(resolve, key)
    return sig != (size_lo, mtime_lo)


class ChunkWriter:
    """Writes chunks of vectors with their provenance; the first write (or :meth:`finish`)
    also adds the columns, fills the provenance of a 0.1 column and records the column in
    the catalog, in the same transaction."""

    def __init__(self, ctx: ExecContext, target: Target, columns: dict[str, str],
                 legacy_version: int | None) -> None:
        self.ctx, self.target, self.columns = ctx, target, columns
        self.legacy_version = legacy_version
        self.prepared = False

    def write(self, keys: list[Any], emb: Embedded, sigs: list[tuple[int, int]] | None) -> None:
        n = len(keys)
        data = pa.table({
            "k": pa.array(keys),
            "e": vectors_to_arrow(emb),
            "size": pa.array([s[0] for s in sigs] if sigs else [None] * n, pa.int64()),
            "mtime": pa.array([s[1] for s in sigs] if sigs else [None] * n, pa.int64())})
        t = self.target
        tq, src = qualified(t.table), quote_ident(t.source)
        name = f"__pixql_chunk_{id(data)}"
        cur = self.ctx.cur
        with self.ctx.ws.write_lock, self.ctx.transaction():
            self._prepare()
            cur.register(name, data)
            try:
                cur.execute(
                    f"UPDATE {tq} SET {quote_ident(t.column)} = __pixql_s.e, "
                    f"{quote_ident(prov.companion(t.column))} = struct_pack(model_version := "
                    f"{int(t.record.model_version)}::BIGINT, source_hash := "
                    f"{prov.source_hash_sql(f'{tq}.{src}')}, file_size := __pixql_s.size, "
                    f"file_mtime_ns := __pixql_s.mtime) FROM {quote_ident(name)} __pixql_s "
                    f"WHERE {tq}.{src} IS NOT DISTINCT FROM __pixql_s.k")
            finally:
                cur.unregister(name)

    def finish(self) -> None:
        """Add the columns and record them when no chunk did."""
        if not self.prepared:
            with self.ctx.ws.write_lock, self.ctx.transaction():
                self._prepare()

    def _prepare(self) -> None:
        if self.prepared:
            return
        t, cur = self.target, self.ctx.cur
        self.columns = prov.table_columns(cur, t.table)  # as of this transaction
        tq, col = qualified(t.table), quote_ident(t.column)
        comp = prov.companion(t.column)
        kind = self.columns.get(t.column.lower())
        has_comp = comp.lower() in self.columns
        want = f"FLOAT[{t.record.dim}]"
        if kind is not None and kind != want:  # another dimension: the old vectors go
            cur.execute(f"ALTER TABLE {tq} DROP COLUMN {col}")
            if has_comp:
                cur.execute(f"ALTER TABLE {tq} DROP COLUMN {quote_ident(comp)}")
            kind, has_comp, self.legacy_version = None, False, None
        if kind is None:
            cur.execute(f"ALTER TABLE {tq} ADD COLUMN {col} {want}")
        if not has_comp:
            cur.execute(f"ALTER TABLE {tq} ADD COLUMN {quote_ident(comp)} "
                        f"{prov.PROVENANCE_TYPE}")
            if self.legacy_version is not None:  # a 0.1 column: one version
                cur.execute(
                    f"UPDATE {tq} SET {quote_ident(comp)} = struct_pack(model_version := "
                    f"{int(self.legacy_version)}::BIGINT, source_hash := "
                    f"{prov.source_hash_sql(quote_ident(t.source))}, file_size := NULL::BIGINT,"
                    f" file_mtime_ns := NULL::BIGINT) WHERE {col} IS NOT NULL")
        self.ctx.catalog.put_column(t.record)
        self.prepared = True


def convert_rows(ctx: ExecContext, query_sql: str, target: Target, engine: ComputeEngine,
                 opts: ConvertOptions, legacy_version: int | None,
                 columns: dict[str, str]) -> Tally:
    """Embed the missing and stale rows the AS query selects, chunk by chunk: ``engine``
    computes the chunks' vectors (:mod:`pixql.execution.compute`; the ``ray`` engine runs
    one pipeline over all of them), this process commits each chunk as it comes back."""
    tally = Tally()
    writer = ChunkWriter(ctx, target, columns, legacy_version)
    files = opts.convert_type in FILE_MODALITIES
    work = work_list(target, query_sql, is_plain(ctx, query_sql), columns,
                     target.record.model_version, legacy_version, opts.refresh)
    with progress_bar(total=None, desc=f"CONVERT {target.record.model_name}",
                      unit="row", enabled=ctx.ws.progress) as bar:
        results = engine.stream(_chunks(ctx, work, opts.chunk_size, files, tally, bar))
        try:
            while True:
                try:
                    done = next(results, None)
                except (ImageError, ExecutionError) as e:  # a bad value; failing workers
                    raise _kept(ctx, tally, e) from None
                if done is None:
                    break
                chunk, emb = done
                writer.write(chunk.keys, emb, chunk.sigs)
                _count(tally, chunk, emb)
                bar.update(sum(chunk.counts))
        finally:
            results.close()  # stops what is still in flight
    writer.finish()
    return tally


def _chunks(ctx: ExecContext, work: WorkList, size: int, files: bool, tally: Tally,
            bar: Any) -> Iterator[Chunk]:
    """The chunks of values to embed, read from the work list page by page (rows that
    are current are counted as reused); files' signatures are read before sending (a
    URL's page signature, taken to compare, is the one its chunk keeps)."""
    pending: dict[Any, int] = {}  # value → rows, for the chunk being gathered
    taken: dict[Any, tuple[int, int]] = {}  # value → signature, of pending URLs already asked

    def chunk() -> Chunk:
        keys = list(pending)
        if not files:
            return Chunk(keys, list(pending.values()), None)
        fresh = iter(chunk_sigs(ctx, [k for k in keys if k not in taken]))
        sigs = [taken[k] if k in taken else next(fresh) for k in keys]
        return Chunk(keys, list(pending.values()), sigs)

    for page in work_pages(ctx, work):
        rows = list(zip(*(c.to_pylist() for c in page.columns), strict=True))
        known = page_url_sigs(ctx, rows) if files else {}
        for row in rows:
            if row[0] not in pending and not needs_embedding(row, files, ctx.ws.resolve,
                                                            known):
                tally.reused += row[1]
                bar.update(row[1])
                continue
            if row[0] in known:
                taken[row[0]] = known[row[0]]
            pending[row[0]] = pending.get(row[0], 0) + row[1]
            if len(pending) >= size:
                yield chunk()
                pending, taken = {}, {}
    if pending:
        yield chunk()


def _kept(ctx: ExecContext, tally: Tally, e: ImageError | ExecutionError) -> Exception:
    """The error of a chunk that failed, saying what earlier chunks left behind."""
    if not tally.chunks or ctx.in_transaction:
        return e  # nothing committed, or the statement's transaction rolls it all back
    if in_open_transaction(ctx.cur):
        kept = (f"The {tally.embedded} row(s) embedded in earlier chunks are written in "
                "your open transaction: COMMIT keeps them, ROLLBACK drops them.")
    else:
        kept = (f"The {tally.embedded} row(s) embedded in earlier chunks were kept; "
                "re-running CONVERT continues from there.")
    msg = str(e).replace("Nothing was changed.", "Nothing of this chunk was written. " + kept)
    return (ImageError(msg, paths=e.paths) if isinstance(e, ImageError)
            else ExecutionError(msg))


def _count(tally: Tally, chunk: Chunk, emb: Embedded) -> None:
    tally.chunks += 1
    for n, ok in zip(chunk.counts, emb.valid.tolist(), strict=True):
        if ok:
            tally.embedded += n
        else:
            tally.failed += n
