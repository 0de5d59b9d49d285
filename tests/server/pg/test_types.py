"""Arrow → PostgreSQL type OIDs and text encodings."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from pixql.server.pg.types import JSON, text_value, type_oid


@pytest.mark.parametrize(("arrow", "oid"), [
    (pa.bool_(), 16), (pa.int16(), 21), (pa.int32(), 23), (pa.int64(), 20),
    (pa.float32(), 700), (pa.float64(), 701), (pa.string(), 25), (pa.binary(), 17),
    (pa.date32(), 1082), (pa.timestamp("us"), 1114), (pa.timestamp("us", "UTC"), 1184),
    (pa.decimal128(10, 2), 1700),
    (pa.list_(pa.float32(), 4), 1021),          # an embedding column: real[]
    (pa.list_(pa.string()), 1009), (pa.list_(pa.int64()), 1016),
    (pa.struct([("a", pa.int32())]), JSON),
])
def test_type_oids(arrow, oid):
    assert type_oid(arrow) == oid


@pytest.mark.parametrize(("value", "text"), [
    (True, "t"), (False, "f"), (7, "7"), (0.5, "0.5"), (float("nan"), "NaN"),
    (float("-inf"), "-Infinity"), ("a b", "a b"), (b"\x01\xff", "\\x01ff"),
    (Decimal("1.50"), "1.50"), (dt.date(2024, 1, 2), "2024-01-02"),
    (dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02 03:04:05"),
    ([0.25, -1.0, None], "{0.25,-1.0,NULL}"),
    (["a b", 'q"', "NULL", "x"], '{"a b","q\\"","NULL",x}'),
    ([[1, 2], [3, 4]], "{{1,2},{3,4}}"),
    ({"k": 1}, '{"k": 1}'),
])
def test_text_values(value, text):
    assert text_value(value) == text
