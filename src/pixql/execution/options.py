"""OPTIONS validation: pydantic models per statement, errors turned into OptionError."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError

from pixql.errors import OptionError
from pixql.models.base import Options
from pixql.sql.nodes import AiStatement

T = TypeVar("T", bound=Options)


class ConvertOptions(Options):
    """CONVERT USING m OPTIONS (...)."""

    image_col: str = "image_path"
    text_col: str = "text"
    video_col: str = "video_path"
    convert_type: Literal["image", "text", "video"] = "image"
    result_col: str = "convert_result"
    batch_size: int = Field(default=256, ge=1, le=65536)
    workers: int | None = Field(default=None, ge=0, le=64)
    on_error: Literal["fail", "null"] = "fail"
    table_name: str | None = None  # legacy ThanoSQL spelling; accepted, checked


class SearchOptions(Options):
    """SEARCH IMAGE USING m OPTIONS (...)."""

    search_by: Literal["image", "text", "video", "audio"]
    search_input: str
    emb_col: str
    result_col: str = "search_result"
    top_k: int | None = Field(default=1000, ge=1)
    column_name: str | None = None  # legacy spelling of result_col


class CopyOptions(Options):
    """COPY t OPTIONS (...) FROM 'source'."""

    if_exists: Literal["fail", "replace", "append"] = "fail"
    overwrite: bool | None = None  # legacy: overwrite=True means if_exists='replace'
    resolve_paths: str | list[str] | None = None
    image_col: str = "image_path"


class PrintOptions(Options):
    """PRINT IMAGE OPTIONS (...)."""

    image_col: str = "image_path"


class GetModelOptions(Options):
    """GET THANOSQL MODEL clip OPTIONS (...)."""

    model_name: str | None = None
    overwrite: bool = False
    clip_version_id: str | None = None
    path: str | None = None


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
