"""Building, saving and loading the 8-bit codes of :mod:`pixql.index.compressed`.

:func:`build` codes a column's unit rows block by block in two passes (the per-dimension
range of the valid rows, then the codes and their measured decoding error), in shards of
consecutive rows; with a folder, each shard is written as soon as it is complete and the
codes are loaded back (:func:`load`), held in memory or — past
:func:`codes_memory_bytes` — memory-mapped shard by shard for each scan.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixql.index.compressed import SQ8Codes, _faiss
from pixql.index.exact import _threads

if TYPE_CHECKING:
    from collections.abc import Callable

#: rows coded per block while building (bounds temporaries: block × d × 4 bytes, a few)
CODE_BLOCK = 32768
#: shards are used from this many rows on (one per scoring thread, or more: see below)
SHARD_MIN_ROWS = 65536
#: at most this many code bytes per shard (bounds what a memory-mapped scan maps at once)
SHARD_MAX_BYTES = 512 << 20


def _new_index(d: int) -> Any:
    faiss = _faiss()
    index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit_uniform,
                                       faiss.METRIC_INNER_PRODUCT)
    index.sq.trained.resize(2)
    faiss.copy_array_to_vector(np.array([0.0, 1.0], np.float32), index.sq.trained)
    index.is_trained = True
    return index


def codes_memory_bytes() -> int:
    """Codes up to this size are held in memory, larger ones memory-mapped shard by shard
    for each scan (``PIXQL_CODES_MEMORY_MB``, default 2048)."""
    return int(float(os.environ.get("PIXQL_CODES_MEMORY_MB", "2048")) * 2**20)


def _range(read: Callable[[int, int], np.ndarray], n: int, d: int, valid: np.ndarray,
           known: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, span) per dimension over the valid rows (from ``known`` (min, max) if given)."""
    lo = np.full(d, np.inf, np.float32)
    hi = np.full(d, -np.inf, np.float32)
    if known is not None:
        lo, hi = known
    for s in range(0, n if known is None else 0, CODE_BLOCK):
        block, ok = read(s, min(n, s + CODE_BLOCK)), valid[s : s + CODE_BLOCK]
        if ok.any():
            rows = block if ok.all() else block[ok]
            np.minimum(lo, rows.min(axis=0), out=lo)
            np.maximum(hi, rows.max(axis=0), out=hi)
    lo_ok: np.ndarray = np.where(np.isfinite(lo), lo, 0.0).astype(np.float32)
    span = np.where(np.isfinite(hi) & (hi > lo_ok), hi - lo_ok, 1.0).astype(np.float32)
    return lo_ok, span


def _layout(n: int, d: int) -> tuple[list[int], list[int]]:
    """(starts, sizes) of the shards: one per scoring thread, more for big columns."""
    n_shards = 1 if n < SHARD_MIN_ROWS else \
        max(_threads(), math.ceil(n * d / SHARD_MAX_BYTES))
    per = math.ceil(n / n_shards / 8) * 8 if n else 0
    starts = [min(n, i * per) for i in range(n_shards)]
    sizes = [(starts[i + 1] if i + 1 < n_shards else n) - starts[i] for i in range(n_shards)]
    return starts, sizes


def build(read: Callable[[int, int], np.ndarray], n: int, d: int, valid: np.ndarray,
          folder: Path | None = None,
          value_range: tuple[np.ndarray, np.ndarray] | None = None) -> SQ8Codes:
    """Code ``n`` unit rows read block by block with ``read(start, stop)`` (two passes: the
    per-dimension range of the valid rows, then the codes and their measured error). With
    ``folder``, each shard is saved there as soon as it is complete and the codes are
    loaded back (:func:`load`): a column's codes are never all in memory at once unless
    they are to stay there. ``value_range``: the valid rows' (min, max) per dimension,
    when the caller already has them (saves the first pass). The measured error makes
    the codes' bound hold whatever range is used."""
    lo, span = _range(read, n, d, valid, value_range)
    starts, sizes = _layout(n, d)
    shards: list[Any] = [None] * len(starts)
    err = np.zeros(d, np.float32)
    for i, (st, size) in enumerate(zip(starts, sizes, strict=True)):
        index = _new_index(d)
        for s in range(st, st + size, CODE_BLOCK):
            e = min(st + size, s + CODE_BLOCK)
            part = np.ascontiguousarray((read(s, e) - lo) / span, dtype=np.float32)
            c = index.sa_encode(part)
            index.add_sa_codes(c)
            ok = valid[s:e]
            if ok.any():
                diff = np.abs(part[ok] - index.sa_decode(c[ok]))
                np.maximum(err, diff.max(axis=0), out=err)
        if folder is None:
            shards[i] = index
        else:
            _write_shard(index, folder, i)
    codes = SQ8Codes(lo, span, err, shards, starts, sizes)
    if folder is None:
        return codes
    _write_meta(codes, folder)
    loaded = load(folder, n, d)
    if loaded is None:  # pragma: no cover - just written
        raise OSError(f"codes written to {folder} cannot be read back")
    return loaded


# -- files ----------------------------------------------------------------------------------
def _pinned(files: list[Path]) -> list[Path]:
    """Paths that name the files as they are now (``/proc/self/fd/N`` of a descriptor kept
    open until the returned list is garbage), so a shard mapped for a later scan is the
    one these codes were loaded with, even if a reload has replaced the file since."""
    proc = Path("/proc/self/fd")
    if not proc.is_dir():  # pragma: no cover - not Linux: the paths themselves
        return files
    fds = [os.open(f, os.O_RDONLY) for f in files]
    out = _FdPaths(proc / str(fd) for fd in fds)
    weakref.finalize(out, _close_all, fds)
    return out


class _FdPaths(list[Path]):
    """A list of paths that can carry a finalizer."""


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)



def _write_shard(index: Any, folder: Path, i: int) -> None:
    tmp = folder / f"sq8.{i}.faiss.tmp"
    _faiss().write_index(index, str(tmp))
    os.replace(tmp, folder / f"sq8.{i}.faiss")


def _write_meta(codes: SQ8Codes, folder: Path) -> None:
    meta = {"lo": codes.lo.tolist(), "span": codes.span.tolist(), "err": codes.err.tolist(),
            "starts": codes.starts, "sizes": codes.sizes,
            "shards": [f"sq8.{i}.faiss" for i in range(len(codes.starts))]}
    tmp = folder / "sq8.json.tmp"
    tmp.write_text(json.dumps(meta), encoding="utf-8")
    os.replace(tmp, folder / "sq8.json")


def save(codes: SQ8Codes, folder: Path) -> None:
    """Write the codes as ``sq8.json`` + ``sq8.<i>.faiss`` (each atomically)."""
    for i in range(len(codes.shards)):
        _write_shard(codes.shard(i), folder, i)
    _write_meta(codes, folder)


def load(folder: Path, n: int, d: int) -> SQ8Codes | None:
    """The codes saved in ``folder`` (None when missing, unreadable or not ``n × d``): in
    memory, or — past :func:`codes_memory_bytes` — mapped shard by shard for each scan."""
    faiss = _faiss()
    try:
        meta = json.loads((folder / "sq8.json").read_text(encoding="utf-8"))
        files = [folder / name for name in meta["shards"]]
        sizes = [int(x) for x in meta["sizes"]]
        mapped = n * d > codes_memory_bytes()
        if mapped:  # map the files as opened now, even after a reload replaces them
            files = _pinned(files)
        shards: list[Any] = [None if mapped else faiss.read_index(str(f)) for f in files]
        probe: list[Any] = \
            [faiss.read_index(str(files[0]), faiss.IO_FLAG_MMAP_IFC)] if mapped else shards
    except (OSError, ValueError, KeyError, RuntimeError, IndexError):
        return None
    codes = SQ8Codes(np.asarray(meta["lo"], np.float32), np.asarray(meta["span"], np.float32),
                     np.asarray(meta["err"], np.float32), shards, list(meta["starts"]), sizes,
                     files)
    sizes_ok = mapped or [int(s.ntotal) for s in shards] == sizes
    if codes.n != n or codes.d != d or any(s.d != d for s in probe) or not sizes_ok:
        return None
    if mapped and any(os.path.getsize(f) < size * d for f, size in zip(files, sizes,
                                                                       strict=True)):
        return None
    return codes
