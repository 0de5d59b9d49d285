"""The query side of SEARCH: which form a statement takes, batch defaults, labels."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pixql.errors import OptionError
from pixql.execution import search_inputs as si
from pixql.execution.options import SearchOptions
from pixql.sql import Search, parse_statement


def node_and_opts(options: str) -> tuple[Search, SearchOptions]:
    node = parse_statement(f"SEARCH IMAGE USING m OPTIONS (emb_col='e', {options}) "
                           "AS SELECT * FROM t")
    assert isinstance(node, Search)
    return node, SearchOptions(**node.options)


@pytest.mark.parametrize(("options", "form"), [
    ("search_by='image', search_input='a.png'", "single"),
    ("search_by='text', search_input='a cat'", "single"),
    ("search_by='row', search_input='a.png'", "row"),
    ("search_by='row', search_input=42", "row"),
    ("search_by='image', search_input=['a.png']", "batch"),
    ("search_by='row', search_input=[1, 'b']", "batch"),
    ("search_by='row'", "batch"),
    ("search_by='text', input_query='SELECT q FROM queries'", "batch"),
])
def test_forms(options: str, form: str) -> None:
    node, opts = node_and_opts(options)
    assert si.search_form(node, opts) == form


def test_top_k_defaults_to_ten_per_query_in_a_batch_only() -> None:
    node, opts = node_and_opts("search_by='row'")
    assert si.top_k(node, opts, "batch") == si.BATCH_TOP_K == 10
    node, opts = node_and_opts("search_by='row', search_input=1")
    assert si.top_k(node, opts, "row") == 1000  # ThanoSQL's default
    node, opts = node_and_opts("search_by='row', top_k=None")
    assert si.top_k(node, opts, "batch") is None  # as given: every row


def test_key_col_only_with_rows() -> None:
    node, opts = node_and_opts("search_by='text', search_input='x', key_col='id'")
    with pytest.raises(OptionError, match="only applies to search_by='row'") as err:
        si.search_form(node, opts)
    assert err.value.option == "key_col"
    node, opts = node_and_opts("search_by='image', search_input='x', exclude_self=False")
    assert si.search_form(node, opts) == "single"  # False is harmless


def test_labels_keep_their_type_or_become_text_when_mixed() -> None:
    assert si.labels_of([1, 2]).type == pa.int64()
    assert si.labels_of(["a", "b"]).type == pa.string()
    assert si.labels_of([1, "b"]).to_pylist() == ["1", "b"]
