"""An IVF index over 8-bit codes streamed to its file: the bytes faiss would write, built
a block at a time, memory-mapped, and a fallback when faiss's layout is not the one known."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from pixql.index import ann, compressed_build, ivf_file, store
from pixql.index.exact import query_unit, unit_rows
from tests.index.test_ann import TABLE, clustered, column

if TYPE_CHECKING:
    from pathlib import Path

faiss = pytest.importorskip("faiss")


def trained(x: np.ndarray, nlist: int) -> Any:
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(x.shape[1]), x.shape[1], nlist,
                                          faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.train(x)
    return index


def faiss_bytes(index: Any, rows: np.ndarray, block: int) -> bytes:
    """What faiss itself writes after adding ``rows`` block by block."""
    full = faiss.clone_index(index)
    for s in range(0, len(rows), block):
        full.add(rows[s : s + block])
    return bytes(faiss.serialize_index(full).tobytes())


@pytest.mark.parametrize(("nlist", "layout"), [(40, b"full"), (400, b"sprs")])
def test_the_file_is_byte_for_byte_what_faiss_writes(tmp_path: Path, nlist: int,
                                                     layout: bytes) -> None:
    """Dense lists (a size per list) and sparse ones ((list, size) pairs: 150 rows fill at
    most 150 of 400 lists); several blocks; a subset of the rows."""
    x = clustered(n=3000)
    valid = np.ones(len(x), dtype=bool)
    valid[::7] = False
    units = unit_rows(x, valid)
    ids = np.flatnonzero(valid)
    index = trained(units[ids], nlist)
    if layout == b"sprs":
        ids = ids[:150]
    ivf_file.write(tmp_path / "ivf.faiss", index, units, ids, block=500)
    got = (tmp_path / "ivf.faiss").read_bytes()
    assert got == faiss_bytes(index, np.ascontiguousarray(units[ids]), 500)
    assert layout in got
    assert index.ntotal == 0  # the trained index given stays empty
    back = faiss.read_index(str(tmp_path / "ivf.faiss"), faiss.IO_FLAG_MMAP_IFC)
    assert back.ntotal == len(ids)


def test_a_layout_it_does_not_know_is_refused_before_writing(tmp_path: Path) -> None:
    x = unit_rows(clustered(n=500), np.ones(500, dtype=bool))
    index = trained(x, 8)
    index.add(x[:10])  # not empty: its lists section is not the empty one
    with pytest.raises(ivf_file.UnsupportedLayout, match="empty"):
        ivf_file.write(tmp_path / "ivf.faiss", index, x, np.arange(500))
    assert not (tmp_path / "ivf.faiss").exists()


def coded() -> Any:
    vecs = column(clustered())
    vecs.codes = compressed_build.build(lambda s, e: vecs.units[s:e], len(vecs.units),
                                        vecs.units.shape[1], vecs.valid)
    return vecs


def test_an_ivf_index_over_codes_is_built_on_disk_and_mapped(tmp_path: Path) -> None:
    """The lists never live in memory: the index SEARCH gets views its saved file, and it
    answers as an index built in memory over the same rows does."""
    ws = SimpleNamespace(root=tmp_path)
    vecs = coded()
    got = ann.get_index(ws, TABLE, "e", vecs, "ivf")
    assert got.mapped
    assert not got.loaded  # built by this call
    assert got.build_seconds > 0
    folder = store.index_dir(tmp_path / "indexes", TABLE.key, "e")
    meta = store.read_sidecar(folder, "ivf")
    assert meta is not None
    assert meta["build_seconds"] == pytest.approx(got.build_seconds)
    assert meta["checksum"] == vecs.checksum()
    assert np.array_equal(np.load(folder / "ivf.labels.npy"), vecs.rowids[got.ids])
    # created as other files are (the umask decides), not owner-only like a mkstemp file
    mode = (folder / "ivf.faiss").stat().st_mode & 0o777
    assert mode == (folder / "ivf.labels.npy").stat().st_mode & 0o777
    memory = ann.build_index("ivf", vecs.units, vecs.valid, sq8=True)
    for seed in range(5):
        q = query_unit(clustered(seed=20 + seed, n=1)[0]).reshape(1, -1)
        assert np.array_equal(got.index.search(q, 10), memory.index.search(q, 10))


def test_a_layout_faiss_changed_falls_back_to_building_in_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> bytes:
        raise ivf_file.UnsupportedLayout("changed")

    monkeypatch.setattr(ivf_file, "header", refuse)
    vecs = coded()
    got = ann.get_index(SimpleNamespace(root=tmp_path), TABLE, "e", vecs, "ivf")
    assert not got.mapped
    assert got.index.ntotal == vecs.n_valid
    folder = store.index_dir(tmp_path / "indexes", TABLE.key, "e")
    assert store.read_sidecar(folder, "ivf") is not None  # saved the usual way
    assert not list(folder.glob("*.tmp"))


def _mapped_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (Linux ``/proc/self/smaps``)."""
    total, inside = 0, False
    with open("/proc/self/smaps", encoding="utf-8") as fh:
        for line in fh:
            first = line.split(maxsplit=1)[0]
            if "-" in first and ":" not in first:  # a mapping's header line
                inside = line.rstrip().endswith(str(path))
            elif inside and first == "Rss:":
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not hasattr(__import__("os"), "posix_fadvise"), reason="Linux only")
def test_a_large_mapped_ivf_file_reads_its_lists_ahead_and_unmaps_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every list a query will scan is asked for at once, and unmapped after the search
    (lists of ~30 kB here: the process keeps no more than the pages at their edges); the
    answers are those of the index without it."""
    import os

    monkeypatch.setattr(ivf_file, "PREFETCH_MIN_BYTES", 0)
    rng = np.random.default_rng(0)
    vecs = column(rng.standard_normal((200_000, 64), dtype=np.float32))
    vecs.codes = compressed_build.build(lambda s, e: vecs.units[s:e], len(vecs.units), 64,
                                        vecs.valid)
    built = ann.get_index(SimpleNamespace(root=tmp_path), TABLE, "e", vecs, "ivf")
    lists = built.lists
    assert lists is not None
    path = store.index_dir(tmp_path / "indexes", TABLE.key, "e") / "ivf.faiss"
    asked: list[tuple[int, int]] = []
    real = os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, off, n, advice: (
        asked.append((off, n)), real(fd, off, n, advice))[1])
    plain = ann.build_index("ivf", vecs.units, vecs.valid, sq8=True)
    built.index.quantizer.assign(rng.standard_normal((1, 64), dtype=np.float32), 1)
    before = _mapped_kb(path)  # the header and the centroids
    for _ in range(5):
        q = query_unit(rng.standard_normal(64).astype(np.float32))
        asked.clear()
        got = built.search(q, 20, None, 8)
        probed = built.index.quantizer.assign(q.reshape(1, -1), 8).reshape(-1)
        assert sorted(asked) == sorted((int(lists.offsets[i]), int(lists.lengths[i]))
                                       for i in probed if lists.lengths[i])
        assert min(lists.lengths[probed]) > 6 * 4096
        assert _mapped_kb(path) <= before + 8 * len(probed)  # a page at either end
        _, want = plain.index.search(q.reshape(1, -1), 20,
                                     params=faiss.SearchParametersIVF(nprobe=8))
        assert np.array_equal(got, plain.ids[want[0][want[0] >= 0]])


def test_a_small_ivf_file_is_left_to_faiss(tmp_path: Path) -> None:
    built = ann.get_index(SimpleNamespace(root=tmp_path), TABLE, "e", coded(), "ivf")
    assert built.mapped
    assert built.lists is None  # below PREFETCH_MIN_BYTES
