"""Decoding ``POST /sql`` results: the JSON body into pandas, the Arrow stream into pyarrow.

The JSON body is ``{"columns": [{"name", "type"}], "rows": [[...]], "row_count",
"truncated", "message", "time"}`` where ``type`` is the Arrow type's text
(``int64``, ``string``, ``fixed_size_list<item: float>[512]``, ``timestamp[us]``...).
Values are turned back into what ``Result.df()`` gives locally: embeddings become float32
numpy arrays (from JSON lists or base64), timestamps pandas datetimes, dates ``date``s,
binary values ``bytes``.
"""

from __future__ import annotations

import base64
import re
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

ARROW_STREAM = "application/vnd.apache.arrow.stream"

#: e.g. ``fixed_size_list<item: float>[512]``; DuckDB's Arrow lists have an empty child name
_FLOAT_LIST = re.compile(r"^(fixed_size_list|list|large_list)<[^:<>]*: (half_float|float|double)>")
_NUMPY_DTYPE = {"half_float": "<f2", "float": "<f4", "double": "<f8"}


def _vector_converter(arrow_type: str) -> Callable[[list[Any]], list[Any]] | None:
    match = _FLOAT_LIST.match(arrow_type)
    if match is None:
        return None
    dtype = _NUMPY_DTYPE[match.group(2)]

    def convert(values: list[Any]) -> list[Any]:
        import numpy as np

        out: list[Any] = []
        for v in values:
            if v is None:
                out.append(None)
            elif isinstance(v, str):  # embeddings="base64": little-endian bytes
                out.append(np.frombuffer(base64.b64decode(v), dtype=dtype).copy())
            else:
                out.append(np.asarray([np.nan if x is None else x for x in v], dtype=dtype))
        return out

    return convert


def _timestamps(values: list[Any]) -> Any:
    import pandas as pd

    return pd.to_datetime(pd.Series(values, dtype="object"), format="ISO8601")


def _dates(values: list[Any]) -> list[Any]:
    return [None if v is None else date.fromisoformat(v) for v in values]


def _binary(values: list[Any]) -> list[Any]:
    return [None if v is None else base64.b64decode(v) for v in values]


#: Arrow type text prefix → converter of a column's JSON values
CONVERTERS: dict[str, Callable[[list[Any]], Any]] = {
    "timestamp": _timestamps,
    "date32": _dates,
    "date64": _dates,
    "binary": _binary,
    "large_binary": _binary,
}


def converter(arrow_type: str) -> Callable[[list[Any]], Any] | None:
    """The converter of a column of type ``arrow_type`` (None: values are used as sent)."""
    vector = _vector_converter(arrow_type)
    if vector is not None:
        return vector
    head = re.split(r"[\[<(]", arrow_type, maxsplit=1)[0]
    return CONVERTERS.get(head)


def frame_from_json(body: dict[str, Any]) -> Any:
    """A pandas DataFrame of a JSON ``/sql`` body (index 0..n-1; ``attrs["pixql"]`` holds
    the body's ``message``, ``row_count``, ``truncated`` and ``time``)."""
    import pandas as pd

    columns = body.get("columns") or []
    names = [c["name"] for c in columns]
    rows = body.get("rows") or []
    df = pd.DataFrame.from_records(rows, columns=names) if names else pd.DataFrame()
    for i, col in enumerate(columns):
        convert = converter(str(col.get("type", "")))
        if convert is not None:
            df.isetitem(i, convert([row[i] for row in rows]))
    df.attrs["pixql"] = {k: body.get(k) for k in ("message", "row_count", "truncated", "time")}
    return df


def arrow_from_response(response: httpx.Response) -> Any:
    """The pyarrow Table of a ``/sql`` response (an Arrow stream, or JSON from a server
    that does not send Arrow)."""
    import pyarrow as pa

    if response.headers.get("content-type", "").startswith(ARROW_STREAM):
        return pa.ipc.open_stream(response.content).read_all()
    return pa.Table.from_pandas(frame_from_json(response.json()), preserve_index=False)
