"""The stored values of a column kept in vector files, read back for a few rows.

The vector files (:mod:`pixql.index.vector_files`) hold *unit* rows, which are the stored
vectors only where normalising changed nothing, bit for bit (vectors already of norm 1
often, other vectors never). While the column is streamed into its files, every valid row
whose unit row differs from the stored one in any bit is also written, as stored, to
``raw.f32`` (the *exceptions*), with ``raw_pos.npy`` (its cache position, ascending) and
``raw_row.npy`` (its row in ``raw.f32``). :meth:`RawRows.take` then gives the stored vector
of any valid row — the exception when there is one, else the unit row — without asking
DuckDB, which is how a recognised SEARCH on a large table builds its winners' embedding
column (:mod:`pixql.execution.row_cache`). A column of unit vectors costs nothing extra;
one of unnormalised vectors costs a second fp32 copy on disk (never in memory: both files
are memory-mapped and unmapped after each read).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from pixql.index import store
from pixql.index.exact import gather

if TYPE_CHECKING:
    from pathlib import Path

RAW = "raw.f32"
POS = "raw_pos.npy"
ROW = "raw_row.npy"


def differing(raw: np.ndarray, units: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Indices of the valid rows whose unit row is not the stored row, bit for bit."""
    a = np.ascontiguousarray(raw, dtype=np.float32).view(np.uint32)
    b = np.ascontiguousarray(units, dtype=np.float32).view(np.uint32)
    return np.flatnonzero(valid & (a != b).any(axis=1))


class RawWriter:
    """Collects the exceptions while a column is written (positions in scan order)."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim = path, dim
        self._tmp = path / (RAW + ".tmp")
        self._fh = open(self._tmp, "wb")  # noqa: SIM115 - closed in finish/abort
        self._pos: list[np.ndarray] = []

    def write(self, start: int, raw: np.ndarray, units: np.ndarray, valid: np.ndarray) -> None:
        idx = differing(raw, units, valid)
        if len(idx):
            self._fh.write(np.ascontiguousarray(raw[idx], dtype=np.float32).data)
            self._pos.append(idx.astype(np.int64) + start)

    def abort(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def finish(self, order: np.ndarray | None) -> int:
        """Write the files (``order``: the permutation applied to the rows, if any);
        returns the number of exceptions."""
        self._fh.close()
        pos = np.concatenate(self._pos) if self._pos else np.zeros(0, np.int64)
        if order is not None:  # scan position → cache position
            inverse = np.empty(len(order), np.int64)
            inverse[order] = np.arange(len(order))
            pos = inverse[pos]
        row = np.argsort(pos, kind="stable").astype(np.int64)
        store.write_array(self.path / POS, pos[row])
        store.write_array(self.path / ROW, row)
        self._tmp.replace(self.path / RAW)
        return len(pos)


@dataclass(eq=False)
class RawRows:
    """The stored vectors of a column kept in vector files (see the module docstring)."""

    units: np.ndarray  # (n, d) unit rows, memory-mapped
    pos: np.ndarray  # (m,) cache positions of the exceptions, ascending
    row: np.ndarray  # (m,) their rows in ``data``
    data: np.ndarray  # (m, d) the exceptions as stored, memory-mapped
    # (n,) int32: the row in ``data`` of each cache position, -1 where none (built on first
    # use when there are exceptions: 4 bytes a row against a binary search per winner, ~25 µs
    # for ten winners right after a scan has flushed the CPU caches)
    _where: np.ndarray | None = field(default=None, repr=False)

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The stored vectors of the valid rows at ``positions``, (k, d) float32."""
        positions = np.asarray(positions, np.int64)
        out = gather(self.units, positions)  # read, not mapped (see exact.gather)
        if len(self.pos) and len(positions):
            at = self._rows_of()[positions]
            hit = at >= 0
            if hit.any():
                out[hit] = gather(self.data, at[hit].astype(np.int64))
        return out

    def _rows_of(self) -> np.ndarray:
        if self._where is None:
            where = np.full(len(self.units), -1, np.int32 if len(self.data) < 2**31 else np.int64)
            where[self.pos] = self.row
            self._where = where
        return self._where
