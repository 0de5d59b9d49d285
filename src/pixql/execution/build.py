"""BUILD MODEL and GET THANOSQL MODEL: build into a temp folder, move into place, commit."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pixql.catalog.artifacts import checksum, write_config
from pixql.catalog.store import ModelRecord, now
from pixql.errors import ConflictError, OptionError, ProgrammingError
from pixql.execution.compute import with_defaults
from pixql.execution.engine import executes
from pixql.execution.options import GetModelOptions, validate
from pixql.execution.result import Result
from pixql.models.base import BuildContext, BuildResult, ModelKind
from pixql.models.registry import get_kind
from pixql.sql.nodes import BuildModel, GetModel

if TYPE_CHECKING:
    from pathlib import Path

    from pixql.execution.context import ExecContext


@executes(BuildModel)
def run_build(ctx: ExecContext, node: BuildModel) -> Result:
    kind = get_kind(node.kind)
    options = validate(kind.build_options, node, what=f"BUILD MODEL ... USING {kind.display_name}")
    if "engine" in type(options).model_fields:  # trains on Ray: the default engine applies
        options = with_defaults(ctx, options)
    if kind.needs_data and node.query is None:
        raise ProgrammingError(
            f"BUILD MODEL {node.name} USING {kind.display_name} needs training data: "
            f"add AS SELECT ... FROM <table>")
    with ctx.ws.write_lock:
        _check_name_free(ctx, node.name, bool(getattr(options, "overwrite", False)))
        rows = ctx.query_arrow(node.query) if node.query is not None else None
        rec = build_and_commit(ctx, node.name, kind, options.model_dump(), options, rows)
    summary = {"model": rec.name, "kind": rec.kind, "version": rec.version, "dim": rec.dim,
               **{k: v for k, v in rec.summary.items() if not isinstance(v, (dict, list))}}
    return Result(table=pa.Table.from_pylist([summary]),
                  message=f"built model {rec.name} (version {rec.version})")


def _check_name_free(ctx: ExecContext, name: str, overwrite: bool) -> None:
    if ctx.catalog.find_model(name) is not None and not overwrite:
        raise ConflictError(
            f"model {name!r} already exists; use OPTIONS (overwrite=True) to replace it, "
            f"or DELETE MODEL {name} first")


def build_and_commit(ctx: ExecContext, name: str, kind: type[ModelKind],
                     options_dump: dict[str, Any], options: Any,
                     rows: pa.Table | None) -> ModelRecord:
    """Build in a temp folder; on success move it into place and commit the catalog row.

    Any failure before the commit removes the new folder and leaves the old model as it was.
    """
    ws = ctx.ws
    temp = ws.artifacts.new_temp_dir(name)
    final: Path | None = None
    try:
        started = time.perf_counter()
        result: BuildResult = kind.build(
            BuildContext(name=name, artifact_dir=temp, workspace=ws.root, rows=rows,
                         resolve=ws.resolve, progress=ws.progress), options)
        result.summary.setdefault("seconds", round(time.perf_counter() - started, 3))
        write_config(temp, result.config)
        digest = checksum(temp)
        version = ctx.catalog.next_version()
        final = ws.artifacts.commit_dir(temp, name, version)
        rec = ModelRecord(
            name=name, kind=kind.display_name, version=version, created_at=now(),
            dim=int(result.dim), metric=result.metric, modalities=list(result.modalities),
            options=options_dump, config=result.config,
            artifact_path=ws.artifacts.relative_path(name, version), checksum=digest,
            summary=result.summary)
        old = ctx.catalog.find_model(name)
        _commit_record(ctx, rec)
    except BaseException:
        ws.artifacts.remove(final if final is not None else temp)
        raise
    if old is not None:
        ws.artifacts.remove(ws.root / old.artifact_path)
    ws.forget_embedder(name)
    return rec


def _commit_record(ctx: ExecContext, rec: ModelRecord) -> None:
    with ctx.transaction():
        ctx.catalog.put_model(rec)


@executes(GetModel)
def run_get_model(ctx: ExecContext, node: GetModel) -> Result:
    """ThanoSQL's ``GET THANOSQL MODEL clip OPTIONS (model_name=..., overwrite=...)``."""
    if node.source.lower() != "clip":
        raise ProgrammingError(
            f"GET THANOSQL {node.source!r} is not available: pixql downloads no datasets or "
            "prebuilt models except 'clip'. Load data with COPY t OPTIONS (...) FROM "
            "'file.csv' | 'folder/', or register CLIP weights with "
            "BUILD MODEL m USING CLIP OPTIONS (path='folder')")
    opts = validate(GetModelOptions, node, what="GET THANOSQL MODEL")
    name = (opts.model_name or "clip").lower()
    build_opts = {"overwrite": opts.overwrite}
    for key in ("clip_version_id", "path"):
        if getattr(opts, key) is not None:
            build_opts[key] = getattr(opts, key)
    inner = BuildModel(text=node.text, pos=node.pos, options=build_opts,
                       option_pos=node.option_pos, name=name, kind="CLIP", query=None)
    try:
        return run_build(ctx, inner)
    except OptionError as e:  # pragma: no cover - options validated above
        raise OptionError(f"GET THANOSQL MODEL: {e}") from e
