"""The bookkeeping of the CLIP ONNX export cache (:mod:`pixql.models.clip.export`).

Each cache folder holds a ``manifest.json`` recording the size and sha256 of every file
(and, once checked, its cosine vs torch per backend). Files and the manifest are written
under a temporary name and renamed into place; writers hold a lock per folder (threads)
and an ``flock`` on ``.lock`` (processes), readers need neither.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

log = logging.getLogger(__name__)

#: bump when the exported graphs change, so old caches are not reused
EXPORT_FORMAT = 1
MANIFEST = "manifest.json"

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def file_ok(folder: Path, name: str, manifest: dict[str, Any]) -> bool:
    """Whether ``folder/name`` exists with the size and sha256 the manifest records."""
    entry = manifest.get("files", {}).get(name)
    path = folder / name
    if not entry or not path.is_file() or path.stat().st_size != entry.get("size"):
        return False
    if sha256_file(path) != entry.get("sha256"):
        log.warning("cached ONNX file %s is corrupt (sha256 mismatch); exporting again", path)
        return False
    return True


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, or an empty one when missing, unreadable or of another format."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": EXPORT_FORMAT, "files": {}}
    if (not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT
            or not isinstance(data.get("files", {}), dict)):
        return {"format": EXPORT_FORMAT, "files": {}}
    data.setdefault("files", {})
    return data


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically."""
    manifest["format"] = EXPORT_FORMAT
    atomic_write(folder / MANIFEST,
                  lambda tmp: tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8"))


def recorded_cosine(folder: Path, name: str, backend: str) -> float | None:
    """The cosine recorded for ``name`` run by ``backend``, if any."""
    entry = read_manifest(folder)["files"].get(name) or {}
    value = (entry.get("cosine") or {}).get(backend)
    return float(value) if isinstance(value, (int, float)) else None


def record_cosine(folder: Path, name: str, backend: str, cosine: float) -> None:
    """Store the min cosine vs torch of ``name`` run by ``backend`` (while the file is the
    one the manifest describes). A read-only cache just keeps no record."""
    try:
        with thread_lock(folder), process_lock(folder):
            manifest = read_manifest(folder)
            entry = manifest["files"].get(name)
            if entry and entry.get("sha256") == sha256_file(folder / name):
                entry.setdefault("cosine", {})[backend] = round(float(cosine), 6)
                write_manifest(folder, manifest)
    except OSError as e:
        log.debug("cannot record the cosine of %s in %s: %s", name, folder, e)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe(path: Path) -> dict[str, Any]:
    """The manifest entry of a file: its size and sha256."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary path next to ``target``, then rename it over it
    (what ``write`` returns is ignored)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def thread_lock(folder: Path) -> threading.Lock:
    """The lock of ``folder`` among this process's threads."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(folder, threading.Lock())


@contextlib.contextmanager
def process_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder/.lock`` (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / ".lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
