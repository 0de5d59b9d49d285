"""Golden identity tests: every fixture statement parses, and ``.sql()`` round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixql.sql import (
    BuildModel,
    Convert,
    CopyFrom,
    DeleteModel,
    GetModel,
    ListModels,
    Passthrough,
    PrintImage,
    Search,
    Statement,
    parse_script,
    parse_statement,
)

FIXTURE = Path(__file__).parent / "fixtures" / "identity.sql"
LINES = [
    line
    for line in FIXTURE.read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("--")
]


def validate_identity(stmt: Statement) -> None:
    """``stmt.sql()`` parses back to an equal node, and is a fixed point of sql()."""
    canonical = stmt.sql()
    again = parse_statement(canonical)
    assert again == stmt, canonical
    assert again.sql() == canonical


def test_fixture_is_big_enough_and_covers_every_node_type() -> None:
    assert len(LINES) >= 40
    kinds = {type(parse_statement(line)) for line in LINES}
    assert kinds == {
        BuildModel,
        Convert,
        CopyFrom,
        DeleteModel,
        GetModel,
        ListModels,
        Passthrough,
        PrintImage,
        Search,
    }


@pytest.mark.parametrize("line", LINES)
def test_identity(line: str) -> None:
    (stmt,) = parse_script(line)
    assert stmt.text == line
    validate_identity(stmt)
    if isinstance(stmt, Passthrough):
        assert stmt.query.text == line
        if not stmt.query.subqueries:
            assert stmt.sql() == line  # byte-identical: plain SQL is never regenerated
    for sub in getattr(getattr(stmt, "query", None), "subqueries", None) or []:
        validate_identity(sub.node)


def test_fixture_as_one_script_gives_the_same_statements_in_order() -> None:
    script = ";\n".join(LINES) + ";"
    stmts = parse_script(script)
    assert [s.text for s in stmts] == LINES
    assert stmts == [parse_statement(line) for line in LINES]
    assert [s.pos.line for s in stmts] == list(range(1, len(LINES) + 1))


@pytest.mark.parametrize(
    "text",
    [
        "PRINT IMAGE AS (\n  SELECT image_path, search_result FROM (\n    SEARCH IMAGE USING m\n"
        "    OPTIONS (search_by='image', search_input='x/923.jpg',\n"
        "             emb_col='convert_result', result_col='search_result', top_k=4)\n"
        "    AS SELECT * FROM mnist_test))",
        "SEARCH TEXT USING m OPTIONS (search_input='multi\nline\\tand \\'quotes\\' \\\\')"
        " AS SELECT 1",
        "BUILD MODEL x USING k OPTIONS (a=1e999, b=-1e999, c=-0.0, d=1.7976931348623157e+308)",
        "COPY t OPTIONS () FROM E'it\\'s'",
        "COPY t OPTIONS (if_exists='replace') FROM $$C:\\new\\it's$$",
        "PRINT IMAGE AS (((SELECT 1)))",
        "PRINT IMAGE AS ()",
        'SELECT * FROM (SEARCH IMAGE USING "Model X" AS SELECT 1) -- c\n',
        "SELECT 1 FROM (CONVERT USING m AS SELECT 2 -- trailing comment\n) AS x",
    ],
)
def test_non_canonical_statements_round_trip(text: str) -> None:
    validate_identity(parse_statement(text))
