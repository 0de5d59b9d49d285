"""Syntax errors: line, column, caret, expected tokens and message, in whole scripts."""

from __future__ import annotations

import pytest

from pixql.errors import ParseError, ProgrammingError
from pixql.sql import parse_script

PREFIX = "SELECT 1;\n-- a comment line\n"  # so every statement below starts on line 3

CASES = [
    # (statement, text the caret points at (first occurrence, or "$" for end), expected, message)
    (
        "BUILD MODEL m USING SimCLR OPTIONS (max_epochs=) AS SELECT 1",
        ")",
        ["a value"],
        "expected a value, found ')'",
    ),
    (
        "CONVERT USING m OPTIONS (a=1) FROM t",
        "FROM",
        ["AS"],
        "expected AS after OPTIONS (...), found 'FROM'",
    ),
    (
        "CONVERT USING m FROM t",
        "FROM",
        ["OPTIONS", "AS"],
        "expected OPTIONS or AS after USING m, found 'FROM'",
    ),
    (
        "CONVERT USING m OPTIONS (a=1)",
        "$",
        ["AS"],
        "unexpected end of statement; expected AS <query>",
    ),
    (
        "SEARCH IMAGES USING m AS SELECT 1",
        "IMAGES",
        ["IMAGE", "TEXT", "VIDEO", "AUDIO"],
        "expected IMAGE or TEXT or VIDEO or AUDIO after SEARCH, found 'IMAGES'",
    ),
    (
        "SEARCH IMAGE USING m OPTIONS (top_k=1, TOP_K=2) AS SELECT 1",
        "TOP_K",
        [],
        "duplicate option 'top_k'",
    ),
    ("BUILD m USING SimCLR", "m", ["MODEL"], "expected MODEL after BUILD, found 'm'"),
    (
        "GET THANOSQL clip",
        "clip",
        ["MODEL", "DATASET"],
        "expected MODEL or DATASET after GET THANOSQL, found 'clip'",
    ),
    (
        "LIST TABLES",
        "TABLES",
        ["MODEL", "MODELS", "THANOSQL"],
        "expected MODEL or MODELS or THANOSQL after LIST, found 'TABLES'",
    ),
    ("SELECT (1 + 2", "(", ["')'"], "'(' is never closed"),
    ("SELECT 1)", ")", [], "unmatched ')'"),
    ("SELECT * FROM (SEARCH IMAGE USING m AS SELECT * FROM t", "(", ["')'"], "'(' is never closed"),
    (
        "SELECT * FROM (BUILD MODEL m USING x AS SELECT 1)",
        "BUILD",
        ["CONVERT", "SEARCH", "LIST", "SHOW"],
        "BUILD MODEL is a top-level statement; only CONVERT, SEARCH, LIST MODEL and SHOW MODELS "
        "can be nested",
    ),
    ("SELECT * FROM (LIST MODEL x)", "x", ["')'"], "expected ')' after LIST MODEL, found 'x'"),
    (
        "COPY t OPTIONS (if_exists='replace') FROM t2",
        "t2",
        ["a quoted path"],
        "expected a quoted path after FROM, found 't2'",
    ),
    (
        "CONVERT USING m OPTIONS (a=[1, 2) AS SELECT 1",
        ")",
        ["','", "']'"],
        "expected ',' or ']' after the item, found ')'",
    ),
    (
        "CONVERT USING m OPTIONS (a=1 b=2) AS SELECT 1",
        "b",
        ["','", "')'"],
        "expected ',' or ')' after option a, found 'b'",
    ),
    ("CONVERT USING m OPTIONS (a='x) AS SELECT 1", "'", ["'"], "unterminated string literal"),
    (
        "CONVERT USING m AS SEARCH IMAGE USING m AS SELECT 1",
        "SEARCH",
        ["("],
        "put the SEARCH statement in parentheses: AS (SEARCH ...)",
    ),
    (
        "SEARCH IMAGE USING m OPTIONS (search_by='row', search_input=['a.png' 'b.png']) "
        "AS SELECT * FROM t",
        "'b.png'",
        ["','", "']'"],
        "expected ',' or ']' after the item, found \"'b.png'\"",
    ),
    (
        "DROP MODEL m extra",
        "extra",
        ["end of statement"],
        "expected end of statement after DROP MODEL m, found 'extra'",
    ),
    (
        "PRINT IMAGE",
        "$",
        ["OPTIONS", "AS"],
        "unexpected end of statement; expected OPTIONS or AS <query>",
    ),
]


@pytest.mark.parametrize(("statement", "at", "expected", "message"), CASES)
def test_error_location_and_message(
    statement: str, at: str, expected: list[str], message: str
) -> None:
    with pytest.raises(ParseError) as info:
        parse_script(PREFIX + statement + ";\nSELECT 2")
    err = info.value
    col = len(statement) + 1 if at == "$" else statement.index(at) + 1
    assert (err.line, err.col, err.source_line) == (3, col, statement + ";")
    assert err.expected == expected
    assert err.message == message
    rendered = str(err).splitlines()
    caret = "  " + " " * (col - 1) + "^"
    assert rendered == [f"line 3, column {col}: {message}", f"  {statement};", caret]


def test_error_inside_a_multi_line_statement_reports_the_script_line() -> None:
    script = "SELECT 1;\n\nSEARCH IMAGE USING m\n  OPTIONS (search_by='image',\n   top_k=) AS t"
    with pytest.raises(ParseError) as info:
        parse_script(script)
    assert (info.value.line, info.value.col, info.value.source_line) == (5, 10, "   top_k=) AS t")


def test_parse_error_is_a_programming_error_with_a_dict_form() -> None:
    with pytest.raises(ProgrammingError) as info:
        parse_script("LIST")
    out = info.value.to_dict()
    assert out["error"] == "ParseError"
    assert (out["line"], out["col"]) == (1, 5)
    assert out["expected"] == ["MODEL", "MODELS", "THANOSQL"]
    assert "unexpected end of statement; expected MODEL or MODELS or THANOSQL" in out["message"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(" * 300, "nested too deeply (more than 200 levels of brackets)"),
        ("CONVERT USING m OPTIONS (a=" + "[" * 250 + ") AS SELECT 1", "nested too deeply"),
        (
            "SELECT " + "(SEARCH IMAGE USING m AS SELECT * FROM " * 40 + "t" + ")" * 40,
            "AI subqueries nested too deeply (more than 32)",
        ),
    ],
)
def test_deep_nesting_is_a_parse_error_not_a_recursion_error(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_script(text)


def test_passthrough_statements_are_not_validated() -> None:
    (stmt,) = parse_script("SELEC * FORM t WHERE")
    assert stmt.sql() == "SELEC * FORM t WHERE"
