"""What runs in Ray's worker processes: the model actor and the per-node probe.

A worker gets the model as a :class:`Shipment`: the kind, its config, the catalog checksum
of the artifact folder and where to find it — a folder every node can read (shared
storage), or the folder's files through Ray's object store. Either way the folder's
checksum is verified against the catalog's before the model is loaded. Values arrive
already resolved by the driver (paths made absolute, by the workspace's rules), so a
worker reads exactly the file a local CONVERT would; URL values arrive as given and are
read here, under the driver's URL settings (SSRF rules, caps, storage options).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixql.catalog.artifacts import checksum
from pixql.errors import ModelError
from pixql.execution.embedding import embed_values
from pixql.models.registry import get_kind
from pixql.remote.sources import UrlReader, UrlSettings, is_url

if TYPE_CHECKING:
    from pixql.models.base import Embedder


#: threads a worker downloads a batch's URL values in (files are read in the actor's thread)
URL_THREADS = 8


@dataclass(frozen=True)
class Shipment:
    """How a worker gets the model (see the module docstring). ``files`` is a Ray object
    reference to ``{relative name: bytes}`` when the model is shipped, else None."""

    name: str
    kind: str
    kind_module: str
    config: dict[str, Any]
    checksum: str
    folder: str
    files: Any = None


def verify(folder: Path, expected: str, name: str) -> None:
    """ModelError unless ``folder`` exists and its checksum is the catalog's."""
    if not folder.is_dir():
        raise ModelError(f"the artifact folder of model {name!r} is not readable on this "
                         f"node: {folder}")
    got = checksum(folder)
    if got != expected:
        raise ModelError(f"the artifact folder of model {name!r} at {folder} does not match "
                         f"the catalog's checksum ({got} != {expected})")


def unpack(files: dict[str, bytes]) -> Path:
    """Write shipped artifact files into a fresh temporary folder of this node."""
    folder = Path(tempfile.mkdtemp(prefix="pixql-model-"))
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def load_model(ship: Shipment, files: dict[str, bytes] | None) -> Embedder:
    """The model of ``ship``, from its verified artifact folder."""
    folder = unpack(files) if files is not None else Path(ship.folder)
    verify(folder, ship.checksum, ship.name)
    importlib.import_module(ship.kind_module)  # registers kinds outside the built-ins
    return get_kind(ship.kind).load(folder, ship.config)


class EmbedActor:
    """A Ray Data actor: loads the model once, then embeds batches of ``{"i", "v"}`` rows
    into ``{"i", "vec", "ok", "err"}`` (bad values: ``ok`` False, ``err`` the reason)."""

    def __init__(self, ship: Shipment, modality: str, urls: UrlSettings | None = None) -> None:
        files = None
        if ship.files is not None:
            import ray

            files = ray.get(ship.files)
        self.embedder = load_model(ship, files)
        self.modality = modality
        self.urls = UrlReader(urls)  # the driver's URL settings, read on this node

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = batch["v"].tolist()
        threads = URL_THREADS if any(is_url(v) for v in values) else 0  # downloads wait
        emb = embed_values(self.embedder, values, modality=self.modality, resolve=Path,
                           batch_size=max(1, len(values)), workers=threads, on_error="null",
                           progress=False, urls=self.urls)
        reasons = iter(emb.errors)
        err = ["" if ok else next(reasons, "") for ok in emb.valid.tolist()]
        return {"i": batch["i"], "vec": emb.vectors, "ok": emb.valid,
                "err": np.asarray(err, dtype=object)}


def probe(folder: str, expected: str | None, name: str, paths: list[str],
          urls: UrlSettings | None = None) -> dict[str, Any]:
    """What one node can read: the artifact (None: not checked) and the sample paths
    (URLs: reached under the driver's URL settings ``urls``)."""
    import ray

    artifact = ""
    if expected is not None:
        try:
            verify(Path(folder), expected, name)
        except (ModelError, OSError) as e:
            artifact = str(e)
    reader = UrlReader(urls) if any(is_url(p) for p in paths) else None
    unreadable = [p for p in paths if (reader.check(p) is not None if reader and is_url(p)
                                       else not (os.path.isfile(p) and os.access(p, os.R_OK)))]
    node = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
    return {"node": node, "artifact": artifact,
            "unreadable": unreadable}
