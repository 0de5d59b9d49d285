"""Parser: the node produced for each statement, nesting, splitting and positions."""

from __future__ import annotations

import pytest

from pixql.errors import ParseError
from pixql.sql import (
    BuildModel,
    Convert,
    CopyFrom,
    DeleteModel,
    GetModel,
    ListModels,
    Passthrough,
    Position,
    PrintImage,
    Query,
    Search,
    Subquery,
    parse_script,
    parse_statement,
    split_statements,
)

# The tutorial cells of the reference (1.4 and 1.5), verbatim.
TUTORIAL_BUILD = """BUILD MODEL my_image_search_model USING SimCLR
OPTIONS (image_col='image_path', max_epochs=1, overwrite=True)
AS SELECT * FROM mnist_train                                          -- prints: Success (~1 min)"""
TUTORIAL_PRINT = """PRINT IMAGE AS (
  SELECT image_path, search_result FROM (
    SEARCH IMAGE USING my_image_search_model
    OPTIONS (search_by='image', search_input='thanosql-dataset/mnist_data/test/923.jpg',
             emb_col='convert_result', result_col='search_result', top_k=4)
    AS SELECT * FROM mnist_test))"""
TUTORIAL_CONVERT = """CONVERT USING tutorial_search_clip
  OPTIONS (image_col='image_path', convert_type='image', batch_size=128, result_col='convert_result')
  AS SELECT * FROM unsplash_data                     -- [24968 rows x 6 columns], ~3 min"""  # noqa: E501
TUTORIAL_SEARCH = """SEARCH IMAGE USING my_image_search_model
OPTIONS (search_by='image', search_input='thanosql-dataset/mnist_data/test/923.jpg',
         emb_col='convert_result', result_col='search_result')
AS SELECT * FROM mnist_test"""
MNIST_923 = "thanosql-dataset/mnist_data/test/923.jpg"


def one(text: str) -> object:
    return parse_statement(text)


def test_tutorial_build() -> None:
    node = one(TUTORIAL_BUILD)
    assert node == BuildModel(
        name="my_image_search_model",
        kind="SimCLR",
        options={"image_col": "image_path", "max_epochs": 1, "overwrite": True},
        query=Query("SELECT * FROM mnist_train"),
    )
    assert node.option_pos["max_epochs"] == Position(2, 34)
    assert node.text == TUTORIAL_BUILD.split("  ")[0]


def test_tutorial_search_and_convert() -> None:
    assert one(TUTORIAL_SEARCH) == Search(
        target="image",
        model="my_image_search_model",
        query=Query("SELECT * FROM mnist_test"),
        options={
            "search_by": "image",
            "search_input": MNIST_923,
            "emb_col": "convert_result",
            "result_col": "search_result",
        },
    )
    node = one(TUTORIAL_CONVERT)
    assert isinstance(node, Convert)
    assert node.model == "tutorial_search_clip"
    assert node.options["batch_size"] == 128
    assert node.query.text == "SELECT * FROM unsplash_data"


def test_tutorial_print_strips_one_pair_of_parentheses_and_nests_the_search() -> None:
    node = one(TUTORIAL_PRINT)
    assert isinstance(node, PrintImage)
    assert node.target == "image"
    assert node.options == {}
    text = node.query.text
    assert text.startswith("SELECT image_path, search_result FROM (\n    SEARCH IMAGE")
    assert text.endswith("AS SELECT * FROM mnist_test)")
    (sub,) = node.query.subqueries
    assert text[sub.start : sub.end] == sub.node.text
    assert text[: sub.start].endswith("FROM (\n    ")
    assert text[sub.end :] == ")"
    assert isinstance(sub.node, Search)
    assert sub.node.options["top_k"] == 4
    assert sub.node.pos == Position(3, 5)


@pytest.mark.parametrize(
    ("text", "node"),
    [
        (
            "GET THANOSQL MODEL clip OPTIONS (model_name='tutorial_search_clip', overwrite=True)",
            GetModel(
                source="clip", options={"model_name": "tutorial_search_clip", "overwrite": True}
            ),
        ),
        (
            "GET THANOSQL DATASET mnist_data OPTIONS (overwrite=True)",
            GetModel(source="dataset/mnist_data", options={"overwrite": True}),
        ),
        (
            "COPY mnist_test  OPTIONS (if_exists='replace') FROM 'd/mnist_test.csv'",
            CopyFrom(
                table="mnist_test", source="d/mnist_test.csv", options={"if_exists": "replace"}
            ),
        ),
        (
            "BUILD MODEL c USING CLIP OPTIONS (clip_version_id='ViT-B-32')",
            BuildModel(name="c", kind="CLIP", options={"clip_version_id": "ViT-B-32"}),
        ),
        ("list model", ListModels()),
        ("LIST MODELS", ListModels()),
        ("List ThanoSQL Model", ListModels()),
        ("SHOW MODELS", ListModels()),
        ("DELETE MODEL M1", DeleteModel(name="m1")),
        ('DROP MODEL IF EXISTS "M1"', DeleteModel(name="M1", if_exists=True)),
        ("PRINT VIDEO AS SELECT 1", PrintImage(target="video", query=Query("SELECT 1"))),
        (
            "PRINT IMAGE OPTIONS (image_col='p') AS (SELECT p FROM t)",
            PrintImage(options={"image_col": "p"}, query=Query("SELECT p FROM t")),
        ),
    ],
)
def test_statement_nodes(text: str, node: object) -> None:
    assert one(text) == node


def test_keywords_are_case_insensitive_and_names_fold_unless_quoted() -> None:
    node = one('search Text using "SBERT_Ko" options (Top_K=3) as select 1')
    assert isinstance(node, Search)
    assert (node.target, node.model, node.options) == ("text", "SBERT_Ko", {"top_k": 3})
    assert one("BUILD MODEL MyModel USING simclr").name == "mymodel"


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'s'", "s"),
        ('"s"', "s"),
        ("'it\\'s'", "it's"),
        ("7", 7),
        ("-7", -7),
        ("+7", 7),
        ("2.5", 2.5),
        ("-1e-3", -0.001),
        ("1E3", 1000.0),
        ("TRUE", True),
        ("false", False),
        ("None", None),
        ("[]", []),
        ("[1, [2, 'x'],]", [1, [2, "x"]]),
        ("(1, 2)", [1, 2]),
        ("(1,)", [1]),
        ("(1)", 1),
        ("()", []),
        ("{}", {}),
        ("{'a': 1, 2: [None]}", {"a": 1, 2: [None]}),
    ],
)
def test_option_values(literal: str, value: object) -> None:
    node = one(f"CONVERT USING m OPTIONS (v={literal}) AS SELECT 1")
    assert node.options == {"v": value}
    assert type(node.options["v"]) is type(value)


def test_empty_options_and_trailing_comma() -> None:
    assert one("CONVERT USING m OPTIONS () AS SELECT 1").options == {}
    assert one("CONVERT USING m OPTIONS (a=1,) AS SELECT 1").options == {"a": 1}


def test_option_positions_are_script_positions() -> None:
    node = parse_script("SELECT 1;\nCONVERT USING m OPTIONS (\n  A=1, b='x') AS SELECT 1")[1]
    assert node.option_pos == {"a": Position(3, 3), "b": Position(3, 8)}


def test_legacy_search_input_maps_to_options() -> None:
    node = one("SEARCH IMAGE images='x.png' USING m AS SELECT * FROM t")
    assert node.options == {"search_by": "image", "search_input": "x.png"}
    node = one("SEARCH IMAGE image='x.png' USING m OPTIONS (emb_col='e') AS SELECT * FROM t")
    assert node.options == {"search_by": "image", "search_input": "x.png", "emb_col": "e"}
    assert node.option_pos["search_input"] == Position(1, 14)


def test_row_and_batch_search_options_parse_with_positions() -> None:
    text = ("SEARCH IMAGE USING m OPTIONS (search_by='row', search_input=[7, 'a.png'],\n"
            "  key_col='rowid', input_query='SELECT k FROM q WHERE x = \\'y\\'', "
            "min_score=0.95, exclude_self=False, emb_col='e') AS SELECT * FROM t")
    node = one(text)
    assert isinstance(node, Search)
    assert node.options == {"search_by": "row", "search_input": [7, "a.png"], "key_col": "rowid",
                            "input_query": "SELECT k FROM q WHERE x = 'y'", "min_score": 0.95,
                            "exclude_self": False, "emb_col": "e"}
    assert node.option_pos["search_input"] == Position(1, 48)
    assert node.option_pos["min_score"] == Position(2, 67)
    assert one(node.sql()) == node


def test_nested_subqueries_in_passthrough() -> None:
    text = (
        "SELECT image_path, search_result FROM (SEARCH IMAGE USING m OPTIONS (search_by='image', "
        "search_input='a.png', emb_col='e', top_k=4) AS SELECT * FROM t) WHERE label = 8"
    )
    node = one(text)
    assert isinstance(node, Passthrough)
    assert node.query.text == text
    (sub,) = node.query.subqueries
    assert text[sub.start : sub.end].startswith("SEARCH IMAGE")
    assert text[sub.end :] == (
        ") WHERE label = 8"
    )
    assert sub.node.query == Query("SELECT * FROM t")


def test_nested_subqueries_recurse_and_join() -> None:
    text = (
        "SELECT * FROM a JOIN (SEARCH TEXT USING s OPTIONS (search_input='x') AS "
        "SELECT * FROM (CONVERT USING s AS SELECT * FROM docs) WHERE n > (SELECT 1)) AS b ON true"
    )
    outer = one(text).query.subqueries
    assert len(outer) == 1
    search = outer[0].node
    inner = search.query.subqueries
    assert [type(s.node) for s in inner] == [Convert]
    q = search.query.text
    assert q[inner[0].start : inner[0].end] == "CONVERT USING s AS SELECT * FROM docs"
    assert q.endswith("WHERE n > (SELECT 1)")


def test_list_model_subquery() -> None:
    node = one("SELECT * FROM (LIST MODEL) WHERE kind = 'pixels'")
    assert node.query.subqueries == [Subquery(15, 25, ListModels())]


@pytest.mark.parametrize(
    "text",
    [
        "SELECT (list(label)) FROM t",
        "SELECT * FROM t WHERE (search) OR (convert IS NULL) OR (show = 1)",
        "SELECT (copy) FROM t",
        "DELETE FROM t WHERE id IN (SELECT id FROM u)",
        "DROP TABLE models",
        "COPY t FROM 'f.csv' (HEADER)",
        "COPY (SELECT 1) TO 'x.csv'",
        "SHOW TABLES",
        "CREATE TABLE options (a INT)",
    ],
)
def test_plain_sql_that_looks_like_ai_stays_plain(text: str) -> None:
    node = one(text)
    assert node == Passthrough(query=Query(text))
    assert node.sql() == text


def test_split_statements_respects_quotes_comments_and_brackets() -> None:
    script = (
        "SELECT ';' AS a; -- comment ; here\n"
        "/* ; */ SEARCH IMAGE USING m OPTIONS (search_input='a;b', x=\"c;d\") AS SELECT 1;;\n"
        'SELECT $$;$$, "we;ird" FROM (SELECT 1) t ;  -- trailing comment only\n'
        ";"
    )
    assert split_statements(script) == [
        ("SELECT ';' AS a", Position(1, 1)),
        (
            "SEARCH IMAGE USING m OPTIONS (search_input='a;b', x=\"c;d\") AS SELECT 1",
            Position(2, 9),
        ),
        ('SELECT $$;$$, "we;ird" FROM (SELECT 1) t', Position(3, 1)),
    ]
    assert split_statements(" ;; -- nothing\n") == []


def test_split_is_lenient_about_ai_syntax_errors_but_not_about_open_quotes() -> None:
    script = "LIST TABLES; CONVERT USING m OPTIONS (a=) AS SELECT 1;\nSELECT 2"
    assert split_statements(script) == [
        ("LIST TABLES", Position(1, 1)),
        ("CONVERT USING m OPTIONS (a=) AS SELECT 1", Position(1, 14)),
        ("SELECT 2", Position(2, 1)),
    ]
    for incomplete in ["SELECT 'abc;", "SELECT (1;", "LIST MODEL /* ;", 'SELECT "x;']:
        with pytest.raises(ParseError):
            split_statements(incomplete)


def test_semicolon_inside_brackets_does_not_end_the_statement() -> None:
    (stmt,) = parse_script("SELECT (1;\n2) AS x;")
    assert stmt.text == "SELECT (1;\n2) AS x"
    with pytest.raises(ParseError, match="expected '\\)' after LIST MODEL, found ';'"):
        parse_script("SELECT * FROM (LIST MODEL;)")


def test_statement_text_and_position_in_a_script() -> None:
    stmts = parse_script("\n\n  list model ;\n  select 1")
    assert [(s.text, s.pos) for s in stmts] == [
        ("list model", Position(3, 3)),
        ("select 1", Position(4, 3)),
    ]


def test_ai_query_runs_to_the_end_of_the_statement() -> None:
    stmts = parse_script("CONVERT USING m AS SELECT * FROM t WHERE x = 'a;b'; SELECT 2")
    assert stmts[0].query.text == "SELECT * FROM t WHERE x = 'a;b'"
    assert stmts[1] == Passthrough(query=Query("SELECT 2"))


def test_print_keeps_parentheses_that_do_not_span_the_query() -> None:
    node = one("PRINT IMAGE AS (SELECT 1) UNION (SELECT 2)")
    assert node.query.text == "(SELECT 1) UNION (SELECT 2)"
    node = one("PRINT IMAGE AS ((SELECT 1))")
    assert node.query.text == "(SELECT 1)"


def test_print_of_a_parenthesised_search_keeps_it_as_a_subquery() -> None:
    node = one("PRINT IMAGE AS (SEARCH IMAGE USING m AS SELECT * FROM t)")
    assert node.query.text.startswith("(SEARCH")
    assert len(node.query.subqueries) == 1


def test_parse_statement_requires_exactly_one() -> None:
    with pytest.raises(ParseError, match="single statement") as info:
        parse_statement("SELECT 1;\n SELECT 2")
    assert (info.value.line, info.value.col) == (2, 2)
    with pytest.raises(ParseError, match="empty statement"):
        parse_statement("  -- nothing ;")
    assert parse_statement("LIST MODEL;") == ListModels()


def test_a_repeated_script_is_parsed_once_and_every_caller_gets_its_own_copy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pixql.sql import parser

    text = ("SEARCH IMAGE USING m OPTIONS (search_by='text', search_input='a cat', "
            "emb_col='e', top_k=3) AS SELECT * FROM t WHERE id IN (1, 2); SELECT 42")
    first = parser.parse_script(text)
    calls: list[str] = []
    real = parser._parse
    monkeypatch.setattr(parser, "_parse", lambda t: calls.append(t) or real(t))
    second = parser.parse_script(text)
    assert calls == []  # kept
    assert second == first
    assert [s.pos for s in second] == [s.pos for s in first]
    assert second[0].option_pos == first[0].option_pos  # type: ignore[attr-defined]
    assert second[0] is not first[0]
    second[0].options["top_k"] = 99  # type: ignore[attr-defined]
    second[0].query.subqueries.append(None)  # type: ignore[attr-defined]
    third = parser.parse_script(text)
    assert third == first  # a caller's change never reaches the kept statements
    assert third[0].options["top_k"] == 3  # type: ignore[attr-defined]


def test_the_kept_scripts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from pixql.sql import parser

    monkeypatch.setattr(parser, "PARSED_MAX", 3)
    for i in range(10):
        parser.parse_script(f"SELECT {i}")
    assert len(parser._PARSED) <= 3
    long = "SELECT 1" + " " * parser.PARSED_TEXT_MAX
    parser.parse_script(long)
    assert long not in parser._PARSED
    with pytest.raises(ParseError):  # a syntax error is not kept either
        parser.parse_script("SEARCH IMAGE USING")
    assert "SEARCH IMAGE USING" not in parser._PARSED
