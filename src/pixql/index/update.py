"""ANN indexes follow the data: when a column's cached vectors are reloaded (after an
incremental CONVERT, an INSERT, a DELETE, an UPDATE...), each index built over the previous
vectors is updated by row id instead of being rebuilt.

The update compares the two loads row by row (row id, currency, and the vector's bits):

* rows whose vector is unchanged keep their faiss label;
* rows deleted, made stale or changed get their label *dead*: faiss cannot remove from an
  HNSW graph, so dead labels stay in the graph as waypoints and are filtered out of every
  search (an ID selector), never returned;
* new or changed rows are added (new labels).

A rebuild happens instead (the next ``index=`` SEARCH builds afresh) when it pays:

* dead labels would exceed :data:`MAX_DEAD_SHARE` of the index (searches walk through
  them for nothing);
* for IVF, the rows outgrow :data:`IVF_MAX_GROWTH` times those its centroids were trained
  on (lists get long and unbalanced: recall per probe falls);
* the dimension changed.

The updated index is a copy (faiss ``clone_index``, or a serialised copy of an index
memory-mapped from its file, whose lists faiss cannot grow): a search still running on the
previous one is never disturbed. It is saved under ``indexes/`` on its next use.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pixql.index.ann import AnnIndex, _faiss, _positions
from pixql.index.exact import gather
from pixql.index.ivf_file import BLOCK

if TYPE_CHECKING:  # pragma: no cover
    from pixql.index.vectors_api import IndexedVectors

#: rebuild when more than this share of the labels would be dead
MAX_DEAD_SHARE = 0.3
#: IVF: rebuild when the live rows exceed this many times the rows it was trained on
IVF_MAX_GROWTH = 4.0


def follow(ann: AnnIndex, old: IndexedVectors, new: IndexedVectors) -> AnnIndex | None:
    """``ann`` (built over ``old``) updated to the rows of ``new``; None when a rebuild
    pays (see the module docstring)."""
    if old.units.shape[1] != new.units.shape[1]:
        return None
    started = time.perf_counter()
    where = _positions(new.rowids, ann.rowids)  # each label's row in the new load
    keep = (ann.ids >= 0) & (where >= 0)
    idx = np.flatnonzero(keep)
    keep[idx[~new.valid[where[idx]]]] = False
    idx = np.flatnonzero(keep)
    same = np.empty(len(idx), dtype=bool)
    for s in range(0, len(idx), BLOCK):  # compare the vectors' bits, a block at a time
        part = idx[s : s + BLOCK]
        same[s : s + BLOCK] = (new.units[where[part]] == old.units[ann.ids[part]]).all(1)
    keep[idx[~same]] = False
    covered = np.zeros(len(new.rowids), dtype=bool)
    covered[where[keep]] = True
    add = np.flatnonzero(new.valid & ~covered)
    labels = len(ann.ids) + len(add)
    live = int(np.count_nonzero(keep)) + len(add)
    if labels - live > MAX_DEAD_SHARE * labels:
        return None
    if ann.kind == "ivf" and live > IVF_MAX_GROWTH * max(ann.built_rows, 1):
        return None
    index = _owned_copy(ann) if len(add) else ann.index
    for s in range(0, len(add), BLOCK):
        index.add(gather(new.units, add[s : s + BLOCK]))
    ids = np.concatenate([np.where(keep, where, -1), add]).astype(np.int64)
    rowids = np.concatenate([ann.rowids, new.rowids[add]]).astype(np.int64)
    return replace(ann, index=index, ids=ids, rowids=rowids, loaded=False,
                   mapped=ann.mapped and not len(add),
                   lists=None if len(add) else ann.lists,
                   updates=ann.updates + 1, saved=False,
                   update_seconds=time.perf_counter() - started)


def follow_all(old: IndexedVectors, new: IndexedVectors) -> None:
    """Carry every index of ``old`` over to ``new`` where an update beats a rebuild."""
    with old.lock:
        indexes = dict(old.indexes)
    for kind, ann in indexes.items():
        updated = follow(ann, old, new)
        if updated is not None:
            new.indexes[kind] = updated



def _owned_copy(ann: AnnIndex) -> Any:
    """A copy of ``ann.index`` that owns its data: ``clone_index`` of an index memory-mapped
    from its file (``IO_FLAG_MMAP_IFC``) still views the file, and adding to it fails."""
    faiss = _faiss()
    if ann.mapped:
        return faiss.deserialize_index(faiss.serialize_index(ann.index))
    return faiss.clone_index(ann.index)
