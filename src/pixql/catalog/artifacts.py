"""Model artifact folders: ``<workspace>/models/<name>/v<version>/``, written atomically.

A build writes into a fresh ``models/.tmp-*`` folder, which is renamed into place only when
complete; the catalog row is committed after the rename, and the previous version's folder is
removed only after that commit. So a crash or failure at any point leaves the old model
loadable; :func:`repair` removes the leftovers (temp folders, versions the catalog does not
reference) on startup.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from pixql.errors import ProgrammingError

CONFIG_FILE = "config.json"
#: longest model name (bytes): its folder name gets a ``.tmp-`` prefix and a suffix
MAX_NAME_BYTES = 128
_PATH_CHARS = ("/", "\\", "\x00")


def check_name(name: str) -> str:
    """``name`` when it can name a folder inside ``models/``; ProgrammingError otherwise (a
    quoted model name like ``"../../x"`` or ``"/tmp/x"`` must not place files elsewhere)."""
    if (not name or name.startswith(".") or any(c in name for c in _PATH_CHARS)
            or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES):
        raise ProgrammingError(
            f"model name {name!r} cannot be used: a model name names a folder, so it may not "
            f"contain '/', '\\' or NUL, start with '.', or be longer than {MAX_NAME_BYTES} "
            "bytes")
    return name


class ArtifactStore:
    """Paths and file operations for model artifacts under ``root`` (``<ws>/models``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def new_temp_dir(self, name: str) -> Path:
        path = self.root / f".tmp-{check_name(name)}-{uuid.uuid4().hex[:10]}"
        path.mkdir(parents=True)
        return path

    def relative_path(self, name: str, version: int) -> str:
        return f"models/{check_name(name)}/v{version}"

    def commit_dir(self, temp: Path, name: str, version: int) -> Path:
        """Atomically move a finished temp folder to its final place."""
        final = self.root / check_name(name) / f"v{version}"
        final.parent.mkdir(parents=True, exist_ok=True)
        _fsync_tree(temp)
        os.replace(temp, final)
        _fsync_dir(final.parent)
        return final

    def remove(self, path: Path) -> None:
        """Delete a model folder (and its name's folder once empty); never outside
        ``models/`` (a catalog row from before names were checked may point elsewhere)."""
        root = Path(os.path.realpath(self.root))
        if root not in Path(os.path.realpath(path)).parents:
            return
        shutil.rmtree(path, ignore_errors=True)
        parent = path.parent
        if parent != self.root and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def write_config(folder: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` atomically (temp file + rename)."""
    tmp = folder / (CONFIG_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / CONFIG_FILE)


def read_config(folder: Path) -> dict[str, Any]:
    with open(folder / CONFIG_FILE, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def checksum(folder: Path) -> str:
    """sha256 over every file's relative name and bytes, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.relative_to(folder).as_posix().encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()


def repair(store: ArtifactStore, referenced: dict[str, str], workspace: Path) -> list[str]:
    """Remove temp folders and model versions the catalog does not reference.

    Returns a description of each leftover removed (for the startup report).
    """
    keep = {(workspace / p).resolve() for p in referenced.values()}
    removed: list[str] = []
    for child in sorted(store.root.iterdir()) if store.root.is_dir() else []:
        if child.name.startswith(".tmp-"):
            removed.append(f"unfinished build {child.name}")
            shutil.rmtree(child, ignore_errors=True)
            continue
        if not child.is_dir():
            continue
        for version in sorted(child.iterdir()):
            if version.resolve() not in keep:
                removed.append(f"orphaned artifact models/{child.name}/{version.name}")
                shutil.rmtree(version, ignore_errors=True)
        if not any(child.iterdir()):
            child.rmdir()
    return removed


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
