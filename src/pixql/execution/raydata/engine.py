"""CONVERT's ``ray`` engine, driver side: a statement's chunks → one Ray Data pipeline.

The values of all the statement's chunks (resolved here, by the workspace's path rules)
become one Ray Dataset (:mod:`.pool`), ``map_batches`` runs :class:`~.worker.EmbedActor`
on one pool of ``num_workers`` actors (``ActorPoolStrategy``; each reserves
``cpus_per_worker``/``gpus_per_worker``; crashed actors are restarted and their batch
retried at most ``max_retries`` times), and the results come back here by row index, so a
retried batch can neither lose nor duplicate a row; each chunk is handed back (and
committed) as soon as all its rows are. This process alone writes the DuckDB file
(:mod:`pixql.execution.incremental`).

Before the first chunk, one probe per node checks that the model artifact (by its catalog
checksum) and a sample of the chunk's paths are readable there; ``model_transfer='auto'``
ships the artifact through Ray's object store when some node cannot read it.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixql.catalog.artifacts import read_config
from pixql.distributed.cluster import alive_nodes, check_resources, connect
from pixql.errors import ExecutionError, ImageError, ModelError
from pixql.execution.compute import Chunk
from pixql.execution.raydata.pool import Assembly, Sent, blocks_of
from pixql.execution.raydata.worker import EmbedActor, Shipment, probe, verify
from pixql.models.registry import get_kind
from pixql.remote.sources import is_url

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable

    from pixql.catalog.store import ModelRecord
    from pixql.execution.context import ExecContext
    from pixql.execution.embedding import Embedded
    from pixql.execution.options import ConvertOptions
    from pixql.models.base import Embedder

#: paths per chunk the probe checks on every node
PROBE_PATHS = 8
#: modalities whose values are files (resolved here, checked by the probe)
FILE_MODALITIES = frozenset({"image", "video", "audio"})
#: how many values an error names
NAMED = 5


class RayEngine:
    """See the module docstring."""

    name = "ray"

    def __init__(self, ctx: ExecContext, rec: ModelRecord, embedder: Embedder,
                 opts: ConvertOptions, progress: bool = False) -> None:
        self.ctx, self.rec, self.opts, self.dim = ctx, rec, opts, embedder.dim
        self.root = ctx.ws.root
        self.ship: Shipment | None = None
        self._ray: Any = None

    @property
    def ray(self) -> Any:
        """Ray, connected on first use: a CONVERT with nothing to embed starts no Ray."""
        if self._ray is None:
            o = self.opts
            ray = connect(o.ray_address, num_cpus=o.num_workers * o.cpus_per_worker,
                          num_gpus=o.num_workers * o.gpus_per_worker)
            check_resources(ray, o.num_workers, o.cpus_per_worker, o.gpus_per_worker)
            importlib.import_module("ray.data")
            data_ctx = ray.data.DataContext.get_current()
            data_ctx.max_consecutive_actor_init_deaths = o.max_retries
            data_ctx.enable_progress_bars = False
            logging.getLogger("ray.data").setLevel(logging.WARNING)  # a line per pipeline else
            self._ray = ray
        return self._ray

    # -- paths --------------------------------------------------------------------------
    def worker_path(self, path: Path) -> str:
        """Where a worker finds ``path`` (``worker_root`` stands for the workspace)."""
        if self.opts.worker_root:
            try:
                return str(Path(self.opts.worker_root) / path.relative_to(self.root))
            except ValueError:
                pass
        return str(path)

    def prepare(self, values: list[Any]) -> tuple[list[tuple[int, Any]], dict[int, str]]:
        """(index, what the worker gets) per value, and the reason of those failing here
        (NULL; a path the workspace refuses) — as a local CONVERT would fail them."""
        todo: list[tuple[int, Any]] = []
        failed: dict[int, str] = {}
        files = self.opts.convert_type in FILE_MODALITIES
        for i, v in enumerate(values):
            if v is None:
                failed[i] = "NULL value"
            elif not files or is_url(v):  # a URL is read on the worker, as given
                todo.append((i, str(v)))
            else:
                try:
                    todo.append((i, self.worker_path(self.ctx.ws.resolve(str(v)))))
                except Exception as e:  # noqa: BLE001 - as embed_values names a bad value
                    failed[i] = (str(e) if isinstance(e, ImageError)
                                 else f"{v}: {type(e).__name__}: {e}")
        return todo, failed

    def sample(self, values: list[Any], todo: list[tuple[int, Any]]) -> list[str]:
        """Up to :data:`PROBE_PATHS` worker paths whose file this process can read (URLs:
        whose object this process can reach)."""
        if self.opts.convert_type not in FILE_MODALITIES:
            return []
        out, asked = [], 0
        for i, v in todo:
            if is_url(v):
                asked += 1  # each is a request: ask a few more than the sample at most
                if asked > 4 * PROBE_PATHS:
                    continue
            if (self.ctx.ws.urls.check(v) is None if is_url(v)
                    else os.path.isfile(self.ctx.ws.resolve(str(values[i])))):
                out.append(v)
                if len(out) == PROBE_PATHS:
                    break
        return out

    # -- the model ----------------------------------------------------------------------
    def shipment(self, sample: list[str]) -> Shipment:
        """Probe every node, then decide how the model travels (see the module docstring)."""
        rec, mode = self.rec, self.opts.model_transfer
        folder = self.root / rec.artifact_path
        kind = get_kind(rec.kind)
        ship = Shipment(name=rec.name, kind=rec.kind, kind_module=kind.__module__,
                        config=read_config(folder), checksum=rec.checksum,
                        folder=self.worker_path(folder))
        found = self.probe(ship, sample, check_artifact=mode != "ship")
        if mode == "ship" or (mode == "auto" and any(r["artifact"] for r in found)):
            verify(folder, rec.checksum, rec.name)  # what is shipped is what the catalog says
            files = {p.relative_to(folder).as_posix(): p.read_bytes()
                     for p in sorted(folder.rglob("*")) if p.is_file()}
            return dataclasses.replace(ship, files=self.ray.put(files))
        bad = [r for r in found if r["artifact"]]
        if bad:
            raise ModelError(f"model_transfer='shared' but on Ray node {bad[0]['node']}: "
                             f"{bad[0]['artifact']}. Put the workspace on storage every node "
                             "mounts (set worker_root if the path differs), or use "
                             "model_transfer='ship'")
        return ship

    def probe(self, ship: Shipment, sample: list[str], *,
              check_artifact: bool) -> list[dict[str, Any]]:
        """One probe per live node; ImageError when a node cannot read sample paths this
        process can read (a missing mount: one error, not one per row)."""
        ray = self.ray  # connects (or names the missing extra) first
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(num_cpus=0, max_retries=self.opts.max_retries)(probe)
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
                    n["NodeID"], soft=False)).remote(
                    ship.folder, ship.checksum if check_artifact else None, ship.name, sample,
                    self.ctx.ws.urls.settings)
                for n in alive_nodes(self.ray)]
        found: list[dict[str, Any]] = self.ray.get(refs)
        for r in found:
            if r["unreadable"]:
                raise ImageError(
                    f"Ray node {r['node']} cannot read {len(r['unreadable'])} of the "
                    f"{len(sample)} sample paths this process reads, e.g. "
                    f"{r['unreadable'][0]}: mount the images at the same path on every node "
                    "(or set worker_root to where the workspace is on the workers; for URLs: "
                    "let every node reach the store, with the same url_allow_hosts). "
                    "Nothing was changed.", paths=r["unreadable"][:NAMED])
        return found

    # -- the statement ------------------------------------------------------------------
    def embed(self, values: list[Any]) -> Embedded:
        (_, emb), = self.run([Chunk(values, [1] * len(values))])  # to the end: Ray's iterator
        return emb  # finishes here, not when collected (maybe after ray.shutdown)

    def stream(self, chunks: Iterable[Chunk]) -> Generator[tuple[Chunk, Embedded], None, None]:
        """All of ``chunks`` through one pipeline (one actor pool for the statement)."""
        yield from self.run(chunks)

    def send(self, chunks: Iterable[Chunk]) -> tuple[list[Sent], list[Any]]:
        """Every chunk into the object store (module :mod:`.pool`); the probe runs on the
        first chunk's sample paths."""
        sent: list[Sent] = []
        blocks: list[Any] = []
        start = 0
        per_block = max(1, self.opts.batch_size)
        for chunk in chunks:
            todo, failed = self.prepare(chunk.keys)
            if self.ship is None:
                self.ship = self.shipment(self.sample(chunk.keys, todo))
            per = max(per_block, -(-len(todo) // (4 * self.opts.num_workers)))
            blocks += [self.ray.put(b) for b in blocks_of(start, todo, per)]
            meta = self.ray.put((chunk, [i for i, _ in todo], failed))
            sent.append(Sent(start, len(todo), meta))
            start += len(todo)
        return sent, blocks

    def run(self, chunks: Iterable[Chunk]) -> Generator[tuple[Chunk, Embedded], None, None]:
        """Embed all of ``chunks`` in one pipeline; hand each back once its rows are."""
        sent, blocks = self.send(chunks)
        o = self.opts
        got = Assembly(self.ray, sent, self.dim, o.on_error, o.batch_size)
        yield from got.ready()  # chunks with nothing to send
        if not blocks:
            return
        ds = self.ray.data.from_arrow_refs(blocks)
        ds.context.execution_options.preserve_order = True  # chunks come back in order
        with warnings.catch_warnings():  # max_restarts/max_task_retries have no named
            warnings.filterwarnings("ignore", ".*ray_remote_args")  # parameters (2.60)
            out = self.pipeline(ds, min(len(blocks), o.num_workers))
        batches = iter(out.iter_batches(batch_format="numpy", batch_size=None))
        while True:
            try:
                batch = next(batches, None)
            except Exception as e:  # noqa: BLE001 - Ray wraps the worker's failure in its own
                raise self.failed(got.values_in_flight(), e) from None
            if batch is None:
                break
            got.add(batch)
            yield from got.ready()
        got.check_done()

    def pipeline(self, ds: Any, actors: int) -> Any:
        """``ds`` through ``actors`` model actors (bounded restarts and retries)."""
        o, data = self.opts, self.ray.data
        return ds.map_batches(
            EmbedActor, fn_constructor_kwargs={"ship": self.ship, "modality": o.convert_type,
                                               "urls": self.ctx.ws.urls.settings},
            batch_size=o.batch_size, batch_format="numpy",
            compute=data.ActorPoolStrategy(size=actors), num_cpus=o.cpus_per_worker,
            num_gpus=o.gpus_per_worker or None, max_restarts=o.max_retries,
            max_task_retries=o.max_retries)

    def failed(self, todo: list[Any], e: BaseException) -> ExecutionError:
        """The error of a chunk the workers kept failing on, naming its values."""
        shown = ", ".join(str(v) for v in todo[:NAMED])
        cause = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        return ExecutionError(
            f"the Ray workers failed on a chunk of {len(todo)} value(s) ({shown}"
            f"{', ...' if len(todo) > NAMED else ''}) after {self.opts.max_retries} "
            f"retries: {type(e).__name__}: {cause}. Nothing was changed.")

    def close(self) -> None:
        return None
