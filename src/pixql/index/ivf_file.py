"""An IVF index over 8-bit codes written straight to its file, a block of rows at a time.

faiss builds an IVF index in memory: at 10M × 512 the lists of an ``IndexIVFScalarQuantizer``
hold 10M × (512 + 8) bytes, 5.2 GB, before a byte reaches disk. This module writes the same
file without ever holding the lists: it asks faiss for everything but the lists (the trained,
empty index serialised with its final ``ntotal``), then streams the rows twice:

1. **assign** — every row's list (the coarse quantizer's nearest centroid), kept as an int32
   per row (40 MB at 10M), which gives each list's size and so its place in the file;
2. **encode and place** — faiss encodes each block of rows as its lists store them
   (``encode_vectors``: residual codes), and each list's share of the block is written at
   the list's next free offset (``pwrite``, through the page cache, not a memory map).

Peak memory is one block of fp32 rows and its codes, whatever the table's size; the file is
then *memory-mapped* (``IO_FLAG_MMAP_IFC``), so a search pages in only the lists it probes.

The file is byte for byte what ``faiss.write_index`` writes after ``index.add`` of the same
rows in the same blocks (the tests check it): the serialised lists (``ArrayInvertedLists``,
fourcc ``ilar``) end the file — their sizes as a ``full`` vector, or ``sprs`` (list, size)
pairs when at most half the lists are used, then each used list's codes and then its ids
(the labels, 0, 1, ... in the order the rows were given). Should a faiss version serialise
differently, :func:`write` raises :class:`UnsupportedLayout` before writing anything and the
caller builds in memory instead.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from pixql.index.exact import gather

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

#: rows per block (fp32 block: BLOCK × d × 4 bytes)
BLOCK = 65536


class UnsupportedLayout(ValueError):
    """faiss serialises an IVF index differently from the layout this module writes."""


def _faiss() -> Any:
    import faiss

    return faiss


def write(path: Path, index: Any, units: np.ndarray, ids: np.ndarray,
          block: int = BLOCK) -> None:
    """Write ``index`` (a trained, empty ``IndexIVFScalarQuantizer``) holding the unit rows
    ``units[ids]`` (labels 0, 1, ...) to ``path``; ``index`` itself stays empty."""
    lists = assign(index, units, ids, block)
    sizes = np.bincount(lists, minlength=int(index.nlist)).astype(np.int64)
    head = header(index, len(ids), sizes)
    cs = int(index.code_size)
    start = _starts(len(head), sizes * (cs + 8))
    filled = np.zeros(len(sizes), dtype=np.int64)
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(len(head) + int(sizes.sum()) * (cs + 8))
        for s in range(0, len(ids), block):
            _place(fh.fileno(), index, units, ids, lists, s, min(s + block, len(ids)),
                   (start, sizes, filled, cs))


def _starts(first: int, lengths: np.ndarray) -> np.ndarray:
    """File offsets of the lists, laid end to end from ``first`` (codes, then ids, each)."""
    return first + np.concatenate([[0], np.cumsum(lengths)[:-1]])


def assign(index: Any, units: np.ndarray, ids: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """The list (nearest centroid) of each row ``units[ids]``, as faiss's ``add`` assigns."""
    lists = np.empty(len(ids), dtype=np.int32)
    for s in range(0, len(ids), block):
        x = gather(units, ids[s : s + block])  # read, not mapped (see exact.gather)
        lists[s : s + len(x)] = index.quantizer.assign(x, 1).reshape(-1)
    return lists


def _place(fd: int, index: Any, units: np.ndarray, ids: np.ndarray, lists: np.ndarray,
           s: int, e: int, layout: tuple[np.ndarray, np.ndarray, np.ndarray, int]) -> None:
    """Encode rows ``s:e`` and write each list's share at that list's next free slots."""
    faiss = _faiss()
    start, sizes, filled, cs = layout
    x = gather(units, ids[s:e])
    nos = lists[s:e].astype(np.int64)
    codes: np.ndarray = np.empty((e - s, cs), dtype=np.uint8)
    index.encode_vectors(e - s, faiss.swig_ptr(x), faiss.swig_ptr(nos), faiss.swig_ptr(codes))
    order = np.argsort(nos, kind="stable")  # rows of a list keep their order
    nos, codes, labels = nos[order], codes[order], (order + s).astype("<i8")
    cut = np.flatnonzero(np.diff(nos)) + 1
    for i0, i1 in zip(np.r_[0, cut], np.r_[cut, len(nos)], strict=True):
        no, at = int(nos[i0]), int(filled[nos[i0]])
        _pwrite(fd, codes[i0:i1].tobytes(), int(start[no]) + at * cs)
        _pwrite(fd, labels[i0:i1].tobytes(), int(start[no] + sizes[no] * cs) + at * 8)
        filled[no] += i1 - i0


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    """All of ``data`` at ``offset`` (a short write goes on where it stopped)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(f"could not write to the index file at byte {offset}")
        view, offset = view[n:], offset + n


def header(index: Any, ntotal: int, sizes: np.ndarray) -> bytes:
    """Everything of the file before the lists' data: faiss's serialisation of ``index``
    with ``ntotal`` rows, its (empty) lists' section replaced by one with ``sizes``."""
    faiss = _faiss()
    nlist, cs = int(index.nlist), int(index.code_size)
    if index.ntotal != 0 or not index.is_trained:
        raise UnsupportedLayout("the index must be trained and empty")
    empty = b"ilar" + struct.pack("<QQ", nlist, cs) + b"sprs" + struct.pack("<Q", 0)
    index.ntotal = ntotal
    try:
        blob = faiss.serialize_index(index).tobytes()
    finally:
        index.ntotal = 0
    if not blob.endswith(empty):
        raise UnsupportedLayout(f"faiss {faiss.__version__} does not end an empty IVF index "
                                "with an empty 'ilar' section")
    used = np.flatnonzero(sizes)
    if len(used) > nlist // 2:  # faiss's rule: a full size vector, else (list, size) pairs
        kind, vec = b"full", sizes
    else:
        kind, vec = b"sprs", np.stack([used, sizes[used]], axis=1).reshape(-1)
    return (blob[: -len(empty)] + b"ilar" + struct.pack("<QQ", nlist, cs) + kind
            + struct.pack("<Q", len(vec)) + np.asarray(vec, dtype="<u8").tobytes())


#: mapped IVF files smaller than this are left to faiss's page faults (likely all cached)
PREFETCH_MIN_BYTES = 64 * 2**20
_MADV_DONTNEED = 4  # Linux
#: a page fault maps the cached pages around it too, in aligned windows of this size (Linux's
#: default ``fault_around_bytes``): what is unmapped after a search is widened to them
FAULT_AROUND = 64 * 1024


class MappedLists:
    """The lists of an IVF file faiss memory-mapped (``IO_FLAG_MMAP_IFC``), located in the
    file and in memory (the whole file is one mapping: the lists end it, see above).

    A cold list faults in page by page as faiss scans it: at 10M × 512, 16 lists of 1.6 MB
    took ~300 ms. :meth:`probe` asks the kernel for every list a query will scan at once
    (``posix_fadvise(WILLNEED)``, reads in parallel: 12 ms); :meth:`release` unmaps them
    after the search (``madvise(MADV_DONTNEED)``; they stay in the page cache), so the
    searching process's resident memory does not grow towards the whole file."""

    def __init__(self, path: Path, index: Any) -> None:
        faiss = _faiss()
        inv = faiss.extract_index_ivf(index).invlists
        self.nprobe_max = nlist = int(index.nlist)
        cs = int(index.code_size)
        sizes = np.array([inv.list_size(i) for i in range(nlist)], dtype=np.int64)
        self.lengths = sizes * (cs + 8)
        start = os.path.getsize(path) - int(self.lengths.sum())
        self.offsets = _starts(start, self.lengths)
        used = np.flatnonzero(sizes)
        self.base = _address(faiss, inv.get_codes(int(used[0]))) - int(self.offsets[used[0]]) \
            if len(used) else 0
        for i in used[:: max(1, len(used) // 16)]:  # the mapping is the file: check some
            if _address(faiss, inv.get_ids(int(i))) != self.base + self.offsets[i] + sizes[i] * cs:
                raise UnsupportedLayout("faiss's mapping of the lists is not the file's layout")
        page = mmap.PAGESIZE
        if self.base % page:  # the mapping starts at the file's first byte, page-aligned
            raise UnsupportedLayout("faiss's mapping does not start at the file's start")
        self.end = self.base + -(-os.path.getsize(path) // page) * page
        self.fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)
        # unmapping needs the mapping to be exactly the file's, as the process's maps say
        self._madvise = _libc_madvise() if _maps_file(self.base, self.end, path) else None

    @classmethod
    def of(cls, path: Path, index: Any) -> MappedLists | None:
        """The lists of the IVF ``index`` mapped from ``path``; None when there is nothing
        to gain (a small file, no ``posix_fadvise``) or the layout is not the known one."""
        if not hasattr(os, "posix_fadvise") or not hasattr(index, "nlist"):
            return None
        try:
            if os.path.getsize(path) < PREFETCH_MIN_BYTES:
                return None
            return cls(path, index)
        except (OSError, UnsupportedLayout, RuntimeError):
            return None

    def probe(self, quantizer: Any, q: np.ndarray, nprobe: int) -> np.ndarray:
        """Ask the kernel to read the lists a search of ``q`` with ``nprobe`` will scan."""
        lists = quantizer.assign(q.reshape(1, -1), min(nprobe, self.nprobe_max)).reshape(-1)
        lists = lists[lists >= 0]
        for i in lists.tolist():
            if self.lengths[i]:
                os.posix_fadvise(self.fd, int(self.offsets[i]), int(self.lengths[i]),
                                 os.POSIX_FADV_WILLNEED)
        return lists

    def release(self, lists: np.ndarray) -> None:
        """Unmap the pages of ``lists`` from this process (a later search faults them in
        again from the page cache, or from disk)."""
        if self._madvise is None or not self.base:
            return
        step = max(mmap.PAGESIZE, FAULT_AROUND)
        for i in lists.tolist():
            if self.lengths[i]:
                lo = (self.base + int(self.offsets[i])) // step * step
                hi = -(-(self.base + int(self.offsets[i] + self.lengths[i])) // step) * step
                # never beyond the file's own mapping (DONTNEED would zero anonymous memory)
                lo, hi = max(lo, self.base), min(hi, self.end)
                self._madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), _MADV_DONTNEED)


def _maps_file(start: int, end: int, path: Path) -> bool:
    """Whether this process maps ``path`` from its first byte at ``start``..``end``."""
    want = os.path.realpath(path)
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split(maxsplit=5)
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if lo == start and len(parts) == 6 and parts[5].strip() == want:
                    return hi >= end and int(parts[2], 16) == 0
    except (OSError, ValueError):
        pass
    return False


def _address(faiss: Any, pointer: Any) -> int:
    return int(faiss.rev_swig_ptr(pointer, 1).__array_interface__["data"][0])


def _libc_madvise() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # pragma: no cover - not a C library we know
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return fn
