"""A column's vectors on disk, beside its indexes: fp32 unit rows + 8-bit codes.

``<workspace>/indexes/<schema.table>/<column>/vectors/`` holds

* ``units.f32`` — the unit rows, raw float32, row-major (memory-mapped: SEARCH re-ranks by
  reading only the shortlist's rows, so the process never holds a second full fp32 copy);
* ``rowids.npy``, ``valid.npy``, ``status.npy`` — what each row is;
* ``raw.f32``, ``raw_pos.npy``, ``raw_row.npy`` — the stored vectors of the rows whose unit
  row differs from them (:mod:`pixql.index.raw_rows`);
* ``sq8.json`` + ``sq8.<i>.faiss`` — the codes (:mod:`pixql.index.compressed`);
* ``checksum.json`` — the rows' content hash, noted the first time an ANN index needed it
  (:func:`note_checksum`; believed only for the state the sidecar names);
* ``vectors.json`` — the sidecar, written last and removed first: the database state the
  files were made from (write stamp of the database file and its WAL, the table's size,
  column position and type, row count, provenance rule). A later session reuses the files
  only when that state is the one it sees, so nothing committed since can be missed; else
  they are rewritten from the table. CONVERT and COPY delete the folder
  (:func:`pixql.index.store.remove_saved`).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pixql.index import compressed, compressed_build, raw_rows, store
from pixql.index.exact import read_span, register_mapped

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: format of ``vectors.json`` (2: with the stored rows, :mod:`pixql.index.raw_rows`)
FORMAT = 2
SIDECAR = "vectors.json"
CHECKSUM = "checksum.json"
UNITS = "units.f32"


def folder(root: Path, table_key: str, column: str) -> Path:
    """Where the vector files of one column live."""
    return store.index_dir(root, table_key, column) / "vectors"


@dataclass
class SavedVectors:
    """What :func:`open_saved` finds (``units`` memory-mapped, read-only)."""

    units: np.ndarray
    rowids: np.ndarray
    valid: np.ndarray
    status: np.ndarray | None
    codes: compressed.SQ8Codes
    raw: raw_rows.RawRows
    checksum: str | None = None  # content_checksum of these rows, when noted beside them


def content_checksum(units: np.ndarray, rowids: np.ndarray, valid: np.ndarray) -> str:
    """SHA-1 of the shape, row ids, validity and unit rows (the rows in 64 MB parts, hashed
    in 2 threads; a memory-mapped column is read, not mapped): what ANN index files are tied
    to (:meth:`pixql.execution.vectors.ColumnVectors.checksum`)."""
    size, step = units.nbytes, 64 << 20

    def digest(start: int) -> bytes:
        return hashlib.sha1(read_span(units, start, min(size, start + step))).digest()

    with ThreadPoolExecutor(2) as pool:  # hashlib releases the GIL on big buffers
        digests = list(pool.map(digest, range(0, size, step)))
    h = hashlib.sha1(np.asarray(units.shape, np.int64).tobytes())
    h.update(np.ascontiguousarray(rowids, np.int64).tobytes())
    h.update(np.packbits(valid).tobytes())
    for d in digests:
        h.update(d)
    return h.hexdigest()


def note_checksum(path: Path, state: Any, checksum: str) -> None:
    """Note ``checksum`` of the files made from ``state`` in ``checksum.json`` beside them
    (best effort), so that a later session need not hash the rows again. A file of its own,
    never the sidecar: it is believed only while the sidecar names the same state, so a
    note racing a rewrite of the files can never vouch for other rows."""
    try:
        side = path / (CHECKSUM + ".tmp")
        side.write_text(json.dumps({"state": _jsonable(state), "checksum": checksum}),
                        encoding="utf-8")
        os.replace(side, path / CHECKSUM)
    except (OSError, ValueError):
        return


def _noted_checksum(path: Path, state: Any) -> str | None:
    try:
        meta = json.loads((path / CHECKSUM).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(meta, dict) and meta.get("state") == state \
        and isinstance(meta.get("checksum"), str)
    return str(meta["checksum"]) if ok else None


def _jsonable(state: Any) -> Any:
    return json.loads(json.dumps(state, default=str))


def open_saved(path: Path, state: Any, dim: int) -> SavedVectors | None:
    """The files in ``path`` when they were made from ``state`` (else None)."""
    try:
        meta = json.loads((path / SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT \
            or meta.get("state") != _jsonable(state) or meta.get("dim") != dim:
        return None
    n = int(meta.get("rows", -1))
    try:
        rowids = np.load(path / "rowids.npy")
        valid = np.load(path / "valid.npy")
        status = np.load(path / "status.npy") if meta.get("status") else None
        units = map_units(path / UNITS, n, dim)
        raw = open_raw(path, units)
    except (OSError, ValueError):
        return None
    codes = compressed_build.load(path, n, dim)
    if codes is None or len(rowids) != n or len(valid) != n \
            or (status is not None and len(status) != n):
        return None
    return SavedVectors(units, rowids, valid, status, codes, raw,
                        _noted_checksum(path, meta["state"]))


def open_raw(path: Path, units: np.ndarray) -> raw_rows.RawRows:
    """The stored rows saved beside ``units`` (ValueError: inconsistent)."""
    # plain arrays over the maps: a numpy.memmap wraps every result of an operation
    pos = np.asarray(np.load(path / raw_rows.POS, mmap_mode="r"))
    row = np.asarray(np.load(path / raw_rows.ROW, mmap_mode="r"))
    data = map_units(path / raw_rows.RAW, len(pos), units.shape[1])
    if len(row) != len(pos) or (len(pos) and not 0 <= int(pos[0]) <= int(pos[-1]) < len(units)):
        raise ValueError(f"{path / raw_rows.POS} does not fit {len(units)} rows")
    return raw_rows.RawRows(units, pos, row, data)


def map_units(file: Path, n: int, dim: int) -> np.ndarray:
    """``units.f32`` as a read-only (n, dim) float32 array over a memory map, read-ahead
    off (ValueError: wrong size)."""
    if os.path.getsize(file) != n * dim * 4:
        raise ValueError(f"{file} does not hold {n} × {dim} float32")
    if n == 0:
        return np.zeros((0, dim), np.float32)
    fd = os.open(file, os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, n * dim * 4, prot=mmap.PROT_READ)
    except BaseException:
        os.close(fd)
        raise
    # re-ranking reads scattered rows: no read-ahead (it would map ~100 kB around each)
    mm.madvise(mmap.MADV_RANDOM)
    rows = np.frombuffer(mm, dtype=np.float32).reshape(n, dim)
    register_mapped(mm, fd, rows)  # scattered rows are read with pread (exact.gather)
    return rows


class UnitsWriter:
    """Streams unit rows into ``units.f32`` (plain writes: the rows pass through the page
    cache, not through the process's memory), then codes them."""

    def __init__(self, path: Path, dim: int) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / SIDECAR).unlink(missing_ok=True)  # the old files are no longer vouched for
        self.path, self.dim, self.rows = path, dim, 0
        self.lo = np.full(dim, np.inf, np.float32)  # range of the valid rows, per dimension
        self.hi = np.full(dim, -np.inf, np.float32)
        self._tmp = path / (UNITS + ".tmp")
        self._fh = open(self._tmp, "wb")  # noqa: SIM115 - closed in finish/abort
        self._raw = raw_rows.RawWriter(path, dim)

    def write(self, block: np.ndarray, valid: np.ndarray, stored: np.ndarray) -> None:
        """Append the unit rows ``block`` of the rows ``stored`` (as the table holds them)."""
        self._raw.write(self.rows, stored, block, valid)
        self._fh.write(np.ascontiguousarray(block, dtype=np.float32).data)
        self.rows += len(block)
        if valid.any():
            rows = block if valid.all() else block[valid]
            np.minimum(self.lo, rows.min(axis=0), out=self.lo)
            np.maximum(self.hi, rows.max(axis=0), out=self.hi)

    def abort(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)
        self._raw.abort()

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the written file (a copy, read with plain I/O)."""
        return np.fromfile(self._tmp, dtype=np.float32, count=(stop - start) * self.dim,
                           offset=start * self.dim * 4).reshape(-1, self.dim)

    def finish(self, rowids: np.ndarray, valid: np.ndarray, status: np.ndarray | None,
               state: Any, order: np.ndarray | None = None) -> SavedVectors:
        """Code the rows, write the other files and the sidecar; ``order`` (a permutation)
        first rewrites the rows in that order."""
        self._fh.close()
        n = self.rows
        if order is not None:
            self._permute(order)
        read: Callable[[int, int], np.ndarray] = self.read
        codes = compressed_build.build(read, n, self.dim, valid, folder=self.path,
                                 value_range=(self.lo, self.hi))
        os.replace(self._tmp, self.path / UNITS)
        self._raw.finish(order)
        store.write_array(self.path / "rowids.npy", rowids)
        store.write_array(self.path / "valid.npy", valid)
        if status is not None:
            store.write_array(self.path / "status.npy", status)
        side = self.path / (SIDECAR + ".tmp")
        side.write_text(json.dumps({"format": FORMAT, "state": _jsonable(state), "dim": self.dim,
                                    "rows": n, "status": status is not None}), encoding="utf-8")
        os.replace(side, self.path / SIDECAR)
        units = map_units(self.path / UNITS, n, self.dim)
        return SavedVectors(units, rowids, valid, status, codes, open_raw(self.path, units))

    def _permute(self, order: np.ndarray) -> None:
        src = map_units(self._tmp, self.rows, self.dim)
        out = self._tmp.with_name(UNITS + ".sorted")
        with open(out, "wb") as fh:
            for s in range(0, len(order), compressed_build.CODE_BLOCK):
                fh.write(np.ascontiguousarray(src[order[s : s + compressed_build.CODE_BLOCK]]).data)
        del src
        os.replace(out, self._tmp)
