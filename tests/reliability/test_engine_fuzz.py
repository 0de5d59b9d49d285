"""The engine under fuzzing (quick profile): statements through ``Workspace.sql`` on a small
confined workspace raise only pixql or DuckDB errors, and a failed statement changes nothing.

The long run is ``scripts/fuzz_engine.py --n 10000`` (figures in docs/reliability.md); the
harness, the generators and the fingerprint used here are that script's.
"""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pixql
from pixql.errors import (
    AccessError,
    CatalogError,
    ImageError,
    ModelError,
    NotFoundError,
    OptionError,
    ParseError,
    ProgrammingError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from types import ModuleType

QUICK = settings(max_examples=60, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def harness(fuzz_engine: ModuleType, template: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The script's harness: runs an input, checks the rules, restores the workspace."""
    h = fuzz_engine.Harness(template, tmp_path_factory.mktemp("work") / "ws")
    yield h
    h.close()


def run(harness: Any, fuzz_engine: ModuleType, text: str) -> str:
    """The input's outcome (the harness raises AssertionError when a rule is broken)."""
    return str(harness.run(text))


# ---------------------------------------------------------------------- generated inputs
@QUICK
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, 100))
def test_script_generators(harness: Any, fuzz_engine: ModuleType, fuzz_inputs: ModuleType,
                           seed: int, which: int) -> None:
    """Random text, words, mutated statements, mutated OPTIONS, nesting, glued scripts."""
    generators = fuzz_inputs.GENERATORS
    text = generators[which % len(generators)](random.Random(seed))
    outcome = run(harness, fuzz_engine, text)
    assert outcome in {"ok", "ParseError", "duckdb.Error"} or \
        outcome.startswith("pixql."), outcome


values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
    st.text(max_size=12), st.sampled_from(["shapes/", "bad/text.png", "link/secret.txt",
                                           "image_path", "convert_result", "../x.png"]),
    st.lists(st.integers() | st.text(max_size=3), max_size=3),
)


@st.composite
def option_mutations(draw: st.DrawFn, corpus: list[Any], keys: list[str]) -> str:
    """A valid AI statement of the fuzz corpus with OPTIONS replaced by generated values."""
    node = draw(st.sampled_from(corpus))
    options = dict(node.options)
    for key in draw(st.lists(st.sampled_from(keys), max_size=3)):
        options[key or "x"] = draw(values)
    for key in draw(st.lists(st.sampled_from(sorted(node.options)), max_size=2)):
        options.pop(key, None)
    return str(dataclasses.replace(node, options=options).sql())


@QUICK
@given(data=st.data())
def test_generated_options(harness: Any, fuzz_engine: ModuleType, fuzz_inputs: ModuleType,
                           data: st.DataObject) -> None:
    text = data.draw(option_mutations(fuzz_inputs.AI_CORPUS, fuzz_inputs.OPTION_KEYS))
    outcome = run(harness, fuzz_engine, text)  # ParseError: e.g. image_col and IMAGE_COL
    assert outcome in {"ok", "ParseError", "duckdb.Error"} or \
        outcome.startswith("pixql."), outcome


@settings(max_examples=40, deadline=None, database=None)
@given(st.text(max_size=60))
def test_random_unicode(harness: Any, fuzz_engine: ModuleType, text: str) -> None:
    outcome = run(harness, fuzz_engine, text)
    assert outcome in {"ok", "ParseError", "duckdb.Error"} or outcome.startswith("pixql.")


# ---------------------------------------------------------------------- chosen inputs
SEARCH = ("SEARCH IMAGE USING {model} OPTIONS (search_by='image', search_input={input}, "
          "emb_col='{col}'{extra}) AS SELECT * FROM images")


def search(input: str = "'shapes/circle/000.png'", *, model: str = "px",
           col: str = "convert_result", extra: str = "") -> str:
    return SEARCH.format(model=model, input=input, col=col, extra=extra)


CASES: list[tuple[str, type[Exception], str]] = [
    (search(extra=", top_k=1e999"), OptionError, "top_k"),
    (search(extra=", top_k=0"), OptionError, "top_k"),
    (search("['a', 1]"), OptionError, "search_input"),
    (search("None"), OptionError, "search_input"),
    (search("'bad/truncated.png'"), ImageError, "truncated.png"),
    (search("'bad/empty.png'"), ImageError, "empty"),
    (search("'bad/text.png'"), ImageError, "not a decodable image"),
    (search("'shapes/nope.png'"), ImageError, "not found"),
    (search("'link/secret.txt'"), AccessError, "outside the workspace"),
    (search("'/etc/passwd'"), AccessError, "outside the workspace"),
    (search("'../template/ws/shapes/circle/000.png'"), AccessError, "outside the workspace"),
    (search(col="label"), ProgrammingError, "not an embedding"),
    (search(col="clip_emb"), CatalogError, "model 'c'"),
    (search(model="nope"), NotFoundError, "nope"),
    ("CONVERT USING px AS SELECT * FROM mixed", ImageError, "Nothing was changed"),
    ("CONVERT USING px OPTIONS (image_col='label') AS SELECT * FROM images", ImageError, "circle"),
    ("CONVERT USING px OPTIONS (batch_size=9223372036854775808) AS SELECT * FROM images",
     OptionError, "batch_size"),
    ("CONVERT USING px OPTIONS (workers=-1) AS SELECT * FROM images", OptionError, "workers"),
    ("CONVERT USING px OPTIONS (convert_type='text', text_col='caption') AS "
     "SELECT * FROM captions", ModelError, "text"),
    ("CONVERT USING px OPTIONS (table_name='captions') AS SELECT * FROM images",
     ProgrammingError, "table_name"),
    ("CONVERT USING px AS SELECT 1 AS one", NotFoundError, "image_path"),
    ("BUILD MODEL px USING Pixels OPTIONS (image_size=0, overwrite=True)", OptionError,
     "image_size"),
    ("BUILD MODEL px USING Pixels", pixql.errors.ConflictError, "already exists"),
    ("BUILD MODEL q USING Nope", ProgrammingError, "Nope"),
    ("BUILD MODEL q USING CLIP OPTIONS (path='link/')", AccessError, "outside"),
    ("COPY t OPTIONS (if_exists='replace') FROM 'link/'", AccessError, "outside"),
    ("COPY images OPTIONS (if_exists='fail') FROM 'shapes/'", pixql.errors.ConflictError,
     "already exists"),
    ("COPY t OPTIONS (if_exists='replace') FROM 'bad/empty.png'", ProgrammingError, "cannot read"),
    ("PRINT IMAGE OPTIONS (image_col='nope') AS SELECT * FROM images", NotFoundError, "nope"),
    ("SEARCH AUDIO USING px OPTIONS (search_by='audio', search_input='a.wav', emb_col='e') "
     "AS SELECT * FROM images", ModelError, "AUDIO"),
    ("SELECT 1; SEARCH IMAGE USING px OPTIONS (top_k=) AS SELECT 1", ParseError, "line 1"),
    ('BUILD MODEL "../../escaped" USING Pixels', ProgrammingError, "cannot be used"),
    ('BUILD MODEL "/tmp/escaped" USING Pixels', ProgrammingError, "cannot be used"),
    ("GET THANOSQL MODEL clip OPTIONS (model_name='../../etc/passwd', path='weights/tiny-clip')",
     ProgrammingError, "cannot be used"),
    ("GET THANOSQL MODEL clip OPTIONS (model_name='" + "m" * 200 + "', path='weights/tiny-clip')",
     ProgrammingError, "longer than 128"),
    (search("'" + "a" * 300 + "'"), ProgrammingError, "too long"),
    ("BUILD MODEL q USING CLIP OPTIONS (path='" + "a/" * 2100 + "')", ProgrammingError,
     "too long"),
    (search("'shapes/\x00.png'"), ProgrammingError, "NUL"),
    (search("'~nosuchuser/a.png'"), ProgrammingError, "home directory"),
]


@pytest.mark.parametrize(("text", "error", "words"), CASES,
                         ids=[f"{i:02d}" for i in range(len(CASES))])
def test_chosen_inputs_fail_cleanly(harness: Any, fuzz_engine: ModuleType, text: str,
                                    error: type[Exception], words: str) -> None:
    """Each raises the named pixql error (or DuckDB's) and changes nothing (the harness
    compares the workspace's fingerprint and looks for an open transaction)."""
    assert harness.ws is not None
    with pytest.raises(error) as info:
        harness.ws.sql(text)
    assert isinstance(info.value, pixql.Error | duckdb.Error)
    assert words in str(info.value)
    harness.check_unchanged(text)


@pytest.mark.parametrize("stmt", [
    "BUILD MODEL m USING Pixels AS DELETE FROM captions",
    "CONVERT USING px AS INSERT INTO captions VALUES (5, 'x')",
    "SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='shapes/circle/000.png', "
    "emb_col='convert_result') AS UPDATE captions SET caption = 'y'",
    "PRINT IMAGE AS DROP TABLE mixed",
])
def test_as_query_must_be_a_select(harness: Any, stmt: str) -> None:
    """``AS DELETE ...`` used to run the DELETE (committed) before the statement failed."""
    assert harness.ws is not None
    with pytest.raises(ProgrammingError, match="must be one SELECT"):
        harness.ws.sql(stmt)
    harness.check_unchanged(stmt)


def test_failed_statement_with_nested_convert_changes_nothing(harness: Any) -> None:
    assert harness.ws is not None
    try:
        with pytest.raises(duckdb.BinderException):
            harness.ws.sql("SELECT * FROM (CONVERT USING px OPTIONS (result_col='e2') AS "
                           "SELECT * FROM images) WHERE no_such_column")
        harness.check_unchanged("a failing SELECT around a nested CONVERT")
    finally:
        harness.restore()


def test_the_fingerprint_sees_changes(harness: Any) -> None:
    """The rule checker is not blind: a committed change or an open transaction is noticed."""
    assert harness.ws is not None
    harness.ws.sql("UPDATE captions SET caption = 'changed' WHERE id = 1")
    with pytest.raises(AssertionError, match="changed the workspace"):
        harness.check_unchanged("an UPDATE")
    harness.restore()
    harness.ws.cursor().begin()
    with pytest.raises(AssertionError, match="transaction open"):
        harness.check_unchanged("BEGIN")
    harness.restore()
