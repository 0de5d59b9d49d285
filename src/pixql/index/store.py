"""Saved ANN indexes: ``<workspace>/indexes/<schema.table>/<column>/<kind>.faiss`` plus a
sidecar ``<kind>.json`` recording what it was built from.

An index file is used only when the sidecar's ``checksum`` equals the content hash of the
column's vectors as loaded now (:meth:`~pixql.execution.vectors.ColumnVectors.checksum`),
so a changed column can never be searched through a stale index; CONVERT and COPY also
delete the files of the columns they change.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

#: format of the sidecar JSON
SIDECAR_FORMAT = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name.lower()) or "_"


def index_dir(root: Path, table_key: str, column: str) -> Path:
    """The folder holding the saved indexes of one column."""
    return root / _safe(table_key) / _safe(column)


def read_sidecar(folder: Path, kind: str) -> dict[str, Any] | None:
    """The sidecar of ``kind`` in ``folder`` (None when missing or unreadable)."""
    try:
        meta = json.loads((folder / f"{kind}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        return None
    return meta


def save(folder: Path, kind: str, write_index: Any, meta: dict[str, Any]) -> bool:
    """Write the index (``write_index(path)``) then its sidecar, each atomically; False when
    the folder is not writable (the index then lives in memory only). Whatever
    ``write_index`` raises propagates, and its partial file is removed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = str(folder / f"{kind}.{uuid.uuid4().hex}.tmp")
        # created as any file is (the umask decides; mkstemp would make it owner-only)
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except OSError:
        return False
    try:
        try:
            write_index(tmp)
        except BaseException:  # a failed write leaves no partial file behind
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.replace(tmp, folder / f"{kind}.faiss")
        side = folder / f"{kind}.json.tmp"
        side.write_text(json.dumps({"format": SIDECAR_FORMAT, **meta}, indent=1), encoding="utf-8")
        os.replace(side, folder / f"{kind}.json")
        return True
    except OSError:
        return False


def write_array(path: Path, arr: Any) -> None:
    """Write a numpy array to ``path`` atomically (``.npy``)."""
    import numpy as np

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr)
    os.replace(tmp, path)


def remove_saved(root: Path, table: str, column: str | None) -> None:
    """Delete the saved indexes of ``table`` (any schema; one column, or all)."""
    if not root.is_dir():
        return
    name = _safe(table)
    for tdir in root.iterdir():
        if not tdir.is_dir() or tdir.name.split(".")[-1] != name:
            continue
        targets = [tdir / _safe(column)] if column else [tdir]
        for t in targets:
            shutil.rmtree(t, ignore_errors=True)
