"""OPTIONS validation: pydantic models per statement, errors turned into OptionError."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import Field, ValidationError

from pixql.errors import OptionError
from pixql.models.base import Options

if TYPE_CHECKING:
    from pixql.sql.nodes import AiStatement

T = TypeVar("T", bound=Options)


class ConvertOptions(Options):
    """CONVERT USING m OPTIONS (...)."""

    image_col: str = Field(default="image_path", description="column of image paths or URLs "
                           "(http(s)://, s3://, gs://; pixql[cloud])")
    text_col: str = Field(default="text", description="column of texts (convert_type='text')")
    video_col: str = Field(default="video_path",
                           description="column of video paths (convert_type='video')")
    convert_type: Literal["image", "text", "video"] = Field(
        default="image", description="what the source column holds")
    result_col: str = Field(default="convert_result", description="the FLOAT[d] column to store")
    batch_size: int = Field(default=256, ge=1, le=65536,
                            description="items per forward pass (CLIP's default: 16)")
    workers: int | None = Field(default=None, ge=0, le=64,
                                description="decoding threads; 0 or 1: inline (default: "
                                "usable cores for items taking >= 1 ms, else inline)")
    on_error: Literal["fail", "null"] = Field(
        default="fail", description="bad images: fail and change nothing, or store NULL")
    table_name: str | None = Field(
        default=None, description="ThanoSQL's old spelling; checked against the query's table")
    refresh: Literal["missing", "all"] = Field(
        default="missing", description="'missing': embed only rows without a current "
        "embedding (new, changed or made by another model version) and keep the rest; "
        "'all': embed every row again")
    chunk_size: int = Field(default=4096, ge=1, le=1_000_000,
                            description="source values embedded and committed together (a crash "
                            "loses at most one chunk; re-running continues)")
    engine: Literal["local", "ray"] | None = Field(
        default=None, description="who computes the vectors: 'local' (this process) or "
        "'ray' (a Ray cluster, pixql[ray]); default: the workspace's, $PIXQL_ENGINE, 'local'")
    ray_address: str | None = Field(
        default=None, description="engine='ray': 'auto', 'host:port' or 'ray://host:port' "
        "joins a cluster; default: the workspace's, $PIXQL_RAY_ADDRESS, else a local Ray")
    num_workers: int = Field(default=2, ge=1, le=4096,
                             description="engine='ray': model actors computing at once")
    cpus_per_worker: float = Field(default=1.0, gt=0, le=1024,
                                   description="engine='ray': CPUs each actor reserves")
    gpus_per_worker: float = Field(default=0.0, ge=0, le=64,
                                   description="engine='ray': GPUs each actor reserves")
    worker_root: str | None = Field(
        default=None, description="engine='ray': where workers see the workspace folder "
        "(default: the same path as here)")
    model_transfer: Literal["auto", "shared", "ship"] = Field(
        default="auto", description="engine='ray': how the model reaches workers: 'shared' "
        "(read from the workspace's path), 'ship' (through Ray's object store), 'auto' "
        "(shared where every node can read it, else ship)")
    max_retries: int = Field(default=2, ge=0, le=100,
                             description="engine='ray': restarts of a crashed worker (and "
                             "retries of its batch) before CONVERT fails")


class SearchOptions(Options):
    """SEARCH IMAGE USING m OPTIONS (...)."""

    search_by: Literal["image", "text", "video", "audio", "row"] = Field(
        description="what search_input is (audio: no model embeds it; 'row': the key of a "
        "row of the searched table, whose stored embedding is the query)")
    search_input: str | int | list[str | int] | None = Field(
        default=None, description="a file path (workspace-relative or absolute), a text, or "
        "with search_by='row' a key; a list: one query each (a batch). Required, except "
        "search_by='row' without it: every row of the AS query is a query (a kNN self-join)")
    input_query: str | None = Field(
        default=None, description="instead of search_input: a SELECT whose first column "
        "holds the inputs, one query per row (a batch)")
    key_col: str | None = Field(
        default=None, description="search_by='row': the column whose value names the row "
        "(default: the column CONVERT embedded, e.g. image_path); 'rowid' for row ids")
    emb_col: str = Field(description="the embedding column made by CONVERT")
    result_col: str = Field(default="search_result", description="the similarity column")
    top_k: int | None = Field(default=1000, ge=1,
                              description="rows to return (per query in a batch, where the "
                              "default is 10); None for all")
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0,
                                    description="only matches scoring at least this much")
    exclude_self: bool | None = Field(
        default=None, description="search_by='row': a query row never matches itself "
        "(default True); only allowed with search_by='row'")
    column_name: str | None = Field(default=None,
                                    description="ThanoSQL's old spelling of result_col")


class CopyOptions(Options):
    """COPY t OPTIONS (...) FROM 'source'."""

    if_exists: Literal["fail", "replace", "append"] = Field(
        default="fail", description="what to do when the table exists")
    overwrite: bool | None = Field(
        default=None, description="ThanoSQL's old spelling: True means if_exists='replace'")
    resolve_paths: str | list[str] | None = Field(
        default=None, description="columns of paths relative to the file's own folder, "
                                  "rewritten to workspace-relative (or absolute) paths")
    image_col: str = Field(default="image_path",
                           description="name of the path column when copying a folder")


class PrintOptions(Options):
    """PRINT IMAGE OPTIONS (...)."""

    image_col: str = Field(default="image_path", description="column of image paths to show")


class GetModelOptions(Options):
    """GET THANOSQL MODEL clip OPTIONS (...)."""

    model_name: str | None = Field(default=None, description="name to register (default: clip)")
    overwrite: bool = Field(default=False, description="replace a model of that name")
    clip_version_id: str | None = Field(default=None,
                                        description="Roboflow CLIP name (default ViT-B-16)")
    path: str | None = Field(default=None, description="a local weights folder (hub layout)")


def validate(model: type[T], node: AiStatement, *, extra: dict[str, Any] | None = None,
             what: str = "") -> T:
    """Build ``model`` from the node's OPTIONS, or raise an OptionError saying what is wrong,
    where, and which options or values are allowed."""
    values = {**(extra or {}), **node.options}
    allowed = sorted(model.model_fields)
    unknown = [k for k in node.options if k not in model.model_fields]
    if unknown:
        key = unknown[0]
        pos = node.option_pos.get(key)
        raise OptionError(
            f"unknown option {key!r}{' for ' + what if what else ''}; "
            f"valid options: {', '.join(allowed)}",
            option=key, allowed=allowed,
            line=pos.line if pos else None, col=pos.col if pos else None,
        )
    try:
        return model(**values)
    except ValidationError as e:
        raise _option_error(e, node, what) from None


def _option_error(e: ValidationError, node: AiStatement, what: str) -> OptionError:
    err = e.errors()[0]
    key = str(err["loc"][0]) if err.get("loc") else "?"
    pos = node.option_pos.get(key)
    got = node.options.get(key, "<missing>")
    kind = err.get("type", "")
    if kind == "missing":
        msg = f"option {key!r} is required{' for ' + what if what else ''}"
    else:
        msg = f"option {key}={got!r} is invalid: {err['msg']}"
    return OptionError(msg, option=key, line=pos.line if pos else None,
                       col=pos.col if pos else None)
