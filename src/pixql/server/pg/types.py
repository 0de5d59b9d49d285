"""Arrow column types → PostgreSQL type OIDs and text encodings (the wire's text format).

Embedding columns (``FLOAT[d]``, Arrow fixed-size lists of float32) are ``real[]`` (OID 1021)
written as ``{0.1,0.2,...}``; other lists are arrays of their element type where PostgreSQL
has one, else JSON text. Values the text format cannot carry exactly (structs, maps) are
sent as JSON (OID 114).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

TEXT, JSON = 25, 114
#: (predicate, scalar OID, array OID)
_SCALARS: tuple[tuple[Callable[[pa.DataType], bool], int, int], ...] = (
    (pa.types.is_boolean, 16, 1000),
    (pa.types.is_int8, 21, 1005), (pa.types.is_int16, 21, 1005),
    (pa.types.is_uint8, 21, 1005), (pa.types.is_int32, 23, 1007),
    (pa.types.is_uint16, 23, 1007), (pa.types.is_int64, 20, 1016),
    (pa.types.is_uint32, 20, 1016), (pa.types.is_uint64, 1700, 1231),
    (pa.types.is_float16, 700, 1021), (pa.types.is_float32, 700, 1021),
    (pa.types.is_float64, 701, 1022), (pa.types.is_decimal, 1700, 1231),
    (pa.types.is_string, TEXT, 1009), (pa.types.is_large_string, TEXT, 1009),
    (pa.types.is_binary, 17, 1001), (pa.types.is_large_binary, 17, 1001),
    (pa.types.is_date, 1082, 1182), (pa.types.is_time, 1083, 1183),
    (lambda t: pa.types.is_timestamp(t) and t.tz is None, 1114, 1115),
    (pa.types.is_timestamp, 1184, 1185), (pa.types.is_interval, 1186, 1187),
    (pa.types.is_duration, 1186, 1187),
)


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t)
                or pa.types.is_fixed_size_list(t))


def type_oid(t: pa.DataType) -> int:
    """The PostgreSQL OID a column of Arrow type ``t`` is described with."""
    if _is_list(t):
        inner = t.value_type
        for pred, _, array in _SCALARS:
            if pred(inner):
                return array
        return JSON
    for pred, scalar, _ in _SCALARS:
        if pred(t):
            return scalar
    return JSON


def text_value(v: Any) -> str:
    """One non-NULL value in PostgreSQL's text format."""
    return _ENCODERS.get(type(v), _fallback)(v)


def _float(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def _array(v: list[Any] | tuple[Any, ...]) -> str:
    return "{" + ",".join("NULL" if x is None else _array_item(x) for x in v) + "}"


def _array_item(x: Any) -> str:
    s = text_value(x)
    if isinstance(x, (list, tuple)) or (s and all(c not in s for c in ' ,{}"\\') and
                                        s.upper() != "NULL"):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _interval(v: timedelta) -> str:
    return f"{v.days} days {v.seconds} seconds {v.microseconds} microseconds"


def _fallback(v: Any) -> str:
    if isinstance(v, dict):
        return json.dumps(v, default=str)
    return str(v)


_ENCODERS: dict[type, Callable[[Any], str]] = {
    bool: lambda v: "t" if v else "f",
    int: str, float: _float, str: str, Decimal: str,
    bytes: lambda v: "\\x" + v.hex(),
    datetime: lambda v: v.isoformat(sep=" "), date: date.isoformat, time: time.isoformat,
    timedelta: _interval, list: _array, tuple: _array,
    dict: lambda v: json.dumps(v, default=str),
}
