"""Property tests: any input gives statements or a ParseError, and nodes round-trip.

The long run is ``scripts/fuzz_sql.py``; this is the quick profile.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pixql.errors import ParseError
from pixql.sql import (
    BuildModel,
    Convert,
    CopyFrom,
    DeleteModel,
    GetModel,
    PrintImage,
    Query,
    Search,
    Statement,
    parse_script,
    parse_statement,
    split_statements,
)
from pixql.sql.lexer import tokenize

QUICK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIXTURE = Path(__file__).parent / "fixtures" / "identity.sql"
GOLDEN = [
    line
    for line in FIXTURE.read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("--")
]
SQL_CHARS = "()[]{}'\";$-/*=,.:_+\\ \n\t\r\x00" + string.ascii_letters + string.digits + "éİ"
KEYWORDS = [
    "SEARCH",
    "IMAGE",
    "USING",
    "OPTIONS",
    "AS",
    "CONVERT",
    "LIST",
    "MODEL",
    "BUILD",
    "PRINT",
    "COPY",
    "FROM",
    "SELECT",
    "(",
    ")",
    ";",
    "'",
    '"',
    "$$",
    "/*",
    "--",
    "\n",
]


def check(text: str) -> None:
    """Split and parse ``text``: a ParseError is fine; anything parsed must round-trip,
    and the split must agree with the parse."""
    try:
        split: list[Any] | None = split_statements(text)
    except ParseError:
        split = None
    try:
        statements = parse_script(text)
    except ParseError:
        return
    assert split == [(s.text, s.pos) for s in statements]
    for statement in statements:
        again = parse_statement(statement.sql())
        assert again == statement, statement.sql()


@QUICK
@given(st.text(alphabet=st.sampled_from(SQL_CHARS), max_size=120))
def test_random_sql_like_text(text: str) -> None:
    check(text)


@QUICK
@given(st.text(max_size=80))
def test_random_unicode_text(text: str) -> None:
    check(text)


@st.composite
def mutated_golden(draw: st.DrawFn) -> str:
    """A golden statement with characters or tokens deleted, inserted, swapped or duplicated."""
    line = draw(st.sampled_from(GOLDEN))
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            pieces = list(line)
        else:
            pieces = [t.text + " " for t in tokenize(line)[:-1]] if _lexes(line) else list(line)
        if not pieces:
            break
        i = draw(st.integers(0, len(pieces) - 1))
        j = draw(st.integers(0, len(pieces) - 1))
        op = draw(st.sampled_from(["delete", "insert", "swap", "duplicate"]))
        if op == "delete":
            del pieces[i]
        elif op == "insert":
            pieces.insert(i, draw(st.sampled_from(KEYWORDS + list(SQL_CHARS))))
        elif op == "swap":
            pieces[i], pieces[j] = pieces[j], pieces[i]
        else:
            pieces.insert(i, pieces[j])
        line = "".join(pieces)
    return line


def _lexes(text: str) -> bool:
    try:
        tokenize(text)
    except ParseError:
        return False
    return True


@QUICK
@given(mutated_golden())
def test_mutated_golden_statements(text: str) -> None:
    check(text)


@QUICK
@given(
    st.lists(st.sampled_from(GOLDEN), min_size=1, max_size=4),
    st.sampled_from([";", ";\n", " ; -- x\n", ";/* ; */", "\n;;\n"]),
)
def test_scripts_of_golden_statements(lines: list[str], sep: str) -> None:
    statements = parse_script(sep.join(lines))
    assert statements == [parse_statement(line) for line in lines]


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3)
    ),
    max_leaves=12,
)
option_dicts = st.dictionaries(
    st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), values, max_size=4
)
names = st.text(min_size=1, max_size=12)


@st.composite
def ai_nodes(draw: st.DrawFn) -> Statement:
    """Random AI statement nodes with arbitrary names and option values."""
    options: dict[str, Any] = draw(option_dicts)
    query = Query(draw(st.sampled_from(["SELECT * FROM t", "SELECT 'a;b' AS x", "(SELECT 1)"])))
    return draw(
        st.sampled_from(
            [
                BuildModel(options=options, name=draw(names), kind=draw(names), query=query),
                BuildModel(options=options, name=draw(names), kind=draw(names)),
                GetModel(options=options, source=draw(names)),
                Convert(options=options, model=draw(names), query=query),
                Search(
                    options=options,
                    target=draw(st.sampled_from(["image", "text", "video", "audio"])),
                    model=draw(names),
                    query=query,
                ),
                DeleteModel(name=draw(names), if_exists=draw(st.booleans())),
                CopyFrom(options=options, table=draw(names), source=draw(st.text(max_size=20))),
                PrintImage(
                    options=options,
                    target=draw(st.sampled_from(["image", "audio", "video"])),
                    query=query,
                ),
            ]
        )
    )


@QUICK
@given(ai_nodes())
def test_generated_nodes_round_trip(node: Statement) -> None:
    assert parse_statement(node.sql()) == node
