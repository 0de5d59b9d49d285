"""Tokenizer: token kinds, values, positions, both modes, and unterminated input."""

from __future__ import annotations

import pytest

from pixql.errors import ParseError
from pixql.sql.lexer import Lexer, LineIndex, TokenKind, ascii_lower, tokenize

K = TokenKind


def kinds_and_values(text: str, *, options: bool = False) -> list[tuple[TokenKind, str]]:
    return [(t.kind, t.value) for t in tokenize(text, options=options)[:-1]]


def test_identifiers_keep_their_spelling_and_expose_a_lower_case_word() -> None:
    tokens = tokenize("Search IMAGE my_Model2 _x a$b")
    assert [t.text for t in tokens[:-1]] == ["Search", "IMAGE", "my_Model2", "_x", "a$b"]
    assert [t.word for t in tokens[:-1]] == ["search", "image", "my_model2", "_x", "a$b"]
    assert tokens[-1].kind is K.EOF


def test_unicode_identifiers_and_ascii_only_folding() -> None:
    (tok,) = tokenize("İmage_é")[:-1]
    assert tok.kind is K.IDENT
    assert ascii_lower("İmAGE") == "İmage"


def test_quoted_identifier_with_doubled_quote() -> None:
    (tok,) = tokenize('"My ""Model"""')[:-1]
    assert (tok.kind, tok.value, tok.word) == (K.QIDENT, 'My "Model"', None)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'it''s'", "it's"),
        ("'a;b -- not a comment'", "a;b -- not a comment"),
        ("'multi\nline'", "multi\nline"),
        ("'back\\slash'", "back\\slash"),
        ("E'it\\'s\\n'", "it's\n"),
        ("$$a ' \" ; b$$", "a ' \" ; b"),
        ("$tag$ $$ inside $tag$", " $$ inside "),
    ],
)
def test_sql_mode_strings(text: str, value: str) -> None:
    (tok,) = tokenize(text)[:-1]
    assert (tok.kind, tok.value, tok.text) == (K.STRING, value, text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'it\\'s'", "it's"),
        ("'it''s'", "it's"),
        ('"double ; quoted"', "double ; quoted"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'tab\\tnl\\nbs\\\\'", "tab\tnl\nbs\\"),
        ("'C:\\data\\x.png'", "C:\\data\\x.png"),
        ("$$raw \\n$$", "raw \\n"),
    ],
)
def test_options_mode_strings_are_python_like(text: str, value: str) -> None:
    (tok,) = tokenize(text, options=True)[:-1]
    assert (tok.kind, tok.value) == (K.STRING, value)


def test_double_quotes_are_identifiers_in_sql_mode_and_strings_in_options_mode() -> None:
    assert kinds_and_values('"x"') == [(K.QIDENT, "x")]
    assert kinds_and_values('"x"', options=True) == [(K.STRING, "x")]


@pytest.mark.parametrize("text", ["1", "42", "3.14", "1e-3", "2.5E+10", ".5", "1.", "1_000"])
def test_numbers(text: str) -> None:
    assert kinds_and_values(text) == [(K.NUMBER, text)]


def test_minus_is_punctuation_and_numbers_stop_at_letters() -> None:
    assert kinds_and_values("-1e") == [(K.PUNCT, "-"), (K.NUMBER, "1"), (K.IDENT, "e")]


def test_parameters_and_punctuation() -> None:
    assert kinds_and_values("$1 = ( ) [ ] { } , ; : .") == [
        (K.PARAM, "$1"),
        (K.PUNCT, "="),
        (K.PUNCT, "("),
        (K.PUNCT, ")"),
        (K.PUNCT, "["),
        (K.PUNCT, "]"),
        (K.PUNCT, "{"),
        (K.PUNCT, "}"),
        (K.PUNCT, ","),
        (K.PUNCT, ";"),
        (K.PUNCT, ":"),
        (K.PUNCT, "."),
    ]


def test_comments_are_skipped_including_nested_block_comments() -> None:
    text = "a -- line ; comment\n/* block /* nested */ still */ b /**/c"
    assert [t.text for t in tokenize(text)[:-1]] == ["a", "b", "c"]
    assert tokenize("-- only a comment")[0].kind is K.EOF


def test_offsets_lines_and_columns() -> None:
    text = "SELECT\n  'x',\r\n\tfoo"
    tokens = tokenize(text)
    assert [(t.start, t.end, t.line, t.col) for t in tokens[:-1]] == [
        (0, 6, 1, 1),
        (9, 12, 2, 3),
        (12, 13, 2, 6),
        (16, 19, 3, 2),
    ]
    assert tokens[-1].start == len(text)


def test_line_index_gives_lines_without_their_breaks() -> None:
    index = LineIndex("a\r\nbc\n\nd")
    assert [index.line_text(n) for n in (1, 2, 3, 4)] == ["a", "bc", "", "d"]
    assert index.position(4) == (2, 2)


@pytest.mark.parametrize(
    ("text", "options", "message", "col"),
    [
        ("x 'abc", False, "unterminated string literal", 3),
        ("x 'it''s", False, "unterminated string literal", 3),
        ("x 'a\\'", True, "unterminated string literal", 3),
        ('x "ident', False, "unterminated quoted identifier", 3),
        ("x /* a /* b */", False, "unterminated comment", 3),
        ("x $t$ abc $$", False, "unterminated dollar-quoted string", 3),
    ],
)
def test_unterminated_tokens_fail_at_their_opening(
    text: str, options: bool, message: str, col: int
) -> None:
    with pytest.raises(ParseError) as info:
        tokenize("\n" + text, options=options)
    err = info.value
    assert (err.message, err.line, err.col, err.source_line) == (message, 2, col, text)


def test_lexer_reads_lazily_from_any_offset() -> None:
    lexer = Lexer("OPTIONS (a='x\\'y') 'p''q'")
    tok = lexer.token_at(11, options=True)
    assert (tok.kind, tok.value) == (K.STRING, "x'y")
    assert lexer.token_at(19).value == "p'q"
