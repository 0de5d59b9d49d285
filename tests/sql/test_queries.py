"""Plain SQL scanned inside statements (pixql.sql.queries): brackets, nested AI statements."""

from __future__ import annotations

import pytest

from pixql.errors import ParseError
from pixql.sql import parse_statement
from pixql.sql.nodes import Convert, Passthrough
from pixql.sql.queries import MAX_AI_NESTING


def test_nested_convert_is_parsed_at_its_offsets() -> None:
    text = "SELECT * FROM (CONVERT USING m AS SELECT * FROM t) x"
    stmt = parse_statement(text)
    assert isinstance(stmt, Passthrough)
    (sub,) = stmt.query.subqueries
    assert isinstance(sub.node, Convert)
    assert text[sub.start : sub.end] == "CONVERT USING m AS SELECT * FROM t"


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("SELECT (1]", "line 1, column 10", "']' does not match '(' (line 1, column 8)"),
        ("SELECT ((1)", "line 1, column 8", "'(' is never closed"),
        ("SELECT 1)", "line 1, column 9", "unmatched ')'"),
        ("SELECT (BUILD MODEL m USING SimCLR AS SELECT 1)", "line 1, column 9",
         "only CONVERT, SEARCH, LIST MODEL and SHOW MODELS can be nested"),
    ],
)
def test_bracket_and_nesting_errors_say_where(text: str, where: str, says: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_statement(text)
    assert where in str(err.value)
    assert says in str(err.value)


def test_ai_subqueries_nested_too_deeply_are_refused() -> None:
    inner = "(SEARCH IMAGE USING m OPTIONS (search_input='a') AS SELECT * FROM "
    depth = MAX_AI_NESTING + 1
    with pytest.raises(ParseError, match=f"nested too deeply \\(more than {MAX_AI_NESTING}\\)"):
        parse_statement("SELECT " + inner * depth + "t" + ")" * depth)
    ok = "SELECT " + inner * MAX_AI_NESTING + "t" + ")" * MAX_AI_NESTING
    assert isinstance(parse_statement(ok), Passthrough)
