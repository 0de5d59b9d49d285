"""Parser for pixql scripts: ThanoSQL-style AI statements between plain DuckDB SQL.

Only the AI statements are parsed; everything else is kept as its original text
(:class:`~pixql.sql.nodes.Passthrough`) for DuckDB to parse. Inside any plain SQL, a
parenthesised ``CONVERT``, ``SEARCH``, ``LIST MODEL`` or ``SHOW MODELS`` is parsed as a
nested AI statement and recorded as a :class:`~pixql.sql.nodes.Subquery`.

Examples:
    >>> stmt = parse_statement("SEARCH IMAGE USING m OPTIONS (top_k=4) AS SELECT * FROM t")
    >>> stmt.target, stmt.model, stmt.options, stmt.query.text
    ('image', 'm', {'top_k': 4}, 'SELECT * FROM t')
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections import OrderedDict
from typing import Any

from pixql.errors import ParseError
from pixql.sql.lexer import MAX_DEPTH, Lexer, Token, TokenKind, ascii_lower
from pixql.sql.nodes import (
    AiStatement,
    BuildModel,
    Convert,
    CopyFrom,
    DeleteModel,
    GetModel,
    ListModels,
    Passthrough,
    Position,
    PrintImage,
    Search,
    Statement,
)
from pixql.sql.queries import MAX_AI_NESTING, QueryScanner

__all__ = ["MAX_AI_NESTING", "MAX_DEPTH", "parse_script", "parse_statement", "split_statements"]

SEARCH_TARGETS = ("image", "text", "video", "audio")
PRINT_TARGETS = ("image", "audio", "video")
LEGACY_SEARCH_KEYS = dict(image="image", images="image", text="text", video="video", audio="audio")

# Leading keyword -> (parse method, words that may follow it). Words in ALWAYS_AI start
# no DuckDB statement, so at the top level they always parse as AI statements (with
# precise errors); otherwise, and always inside parentheses, the second word must match
# (COPY is special: ``COPY name OPTIONS``).
STATEMENTS: dict[str, tuple[str, frozenset[str]]] = {
    "build": ("_build", frozenset({"model"})),
    "get": ("_get", frozenset({"thanosql"})),
    "convert": ("_convert", frozenset({"using"})),
    "search": ("_search", frozenset(SEARCH_TARGETS)),
    "list": ("_list", frozenset({"model", "models", "thanosql"})),
    "show": ("_show", frozenset({"models"})),
    "delete": ("_delete", frozenset({"model"})),
    "drop": ("_drop", frozenset({"model"})),
    "copy": ("_copy", frozenset()),
    "print": ("_print", frozenset(PRINT_TARGETS)),
}
ALWAYS_AI = frozenset({"build", "get", "convert", "search", "list", "print"})


class _Parser(QueryScanner):
    """Recursive-descent parser over a lazily lexed script (one instance per script)."""

    # -- statements ------------------------------------------------------------------

    def script(self) -> list[Statement]:
        """All statements of the script; empty ones are skipped."""
        out: list[Statement] = []
        while True:
            tok = self.peek()
            if tok.kind is TokenKind.EOF:
                return out
            if tok.is_punct(";"):
                self.advance()
                continue
            out.append(self.statement())

    def split(self) -> list[tuple[str, Position]]:
        """Each statement's text and position; a statement with an AI syntax error is
        still split, by its brackets and ';' alone."""
        out: list[tuple[str, Position]] = []
        while (first := self.peek()).kind is not TokenKind.EOF:
            if first.is_punct(";"):
                self.advance()
                continue
            start = self.pos
            try:
                node = self.statement()
                out.append((node.text, node.pos))
            except ParseError:
                self.pos, self.depth, self.nesting, self.lexical = start, 0, [], True
                out.append((self.scan_query(None).text, Position(first.line, first.col)))
                self.lexical = False
        return out

    def statement(self) -> Statement:
        """One top-level statement: an AI statement, or plain SQL as a Passthrough."""
        first = self.peek()
        if first.word in ALWAYS_AI or self.signature(first):
            return self.ai(first)
        node = Passthrough(query=self.scan_query(None))
        node.text, node.pos = node.query.text, Position(first.line, first.col)
        return node

    def signature(self, first: Token) -> bool:
        """Whether the tokens at the cursor (``first`` is the next one) start an AI
        statement by their first two words (``COPY name OPTIONS`` for COPY)."""
        word = first.word
        if word == "copy":
            table = self.peek(1)
            named = table.kind in (TokenKind.IDENT, TokenKind.QIDENT)
            return named and self.peek(2).word == "options"
        entry = STATEMENTS.get(word or "")
        return entry is not None and self.peek(1).word in entry[1]

    def ai(self, first: Token) -> AiStatement:
        """Parse the AI statement whose first token is ``first`` (at the cursor)."""
        node: AiStatement = getattr(self, STATEMENTS[first.word or ""][0])()
        node.text = self.text[first.start : self.last_end]
        node.pos = Position(first.line, first.col)
        return node

    def _build(self) -> BuildModel:
        self.advance()
        self.expect_word("model", "BUILD")
        name = self.name("a model name", "BUILD MODEL")
        self.expect_word("using", f"BUILD MODEL {name}")
        kind = self.name("a model kind", "USING", keep_case=True)
        options, option_pos = self.options_clause()
        query = self.as_query(option_pos is None, f"USING {kind}", required=False)
        return BuildModel(
            options=options, option_pos=option_pos or {}, name=name, kind=kind, query=query
        )

    def _get(self) -> GetModel:
        self.advance()
        self.expect_word("thanosql", "GET")
        tok = self.peek()
        if tok.word not in ("model", "dataset"):
            self.fail(tok, ["MODEL", "DATASET"], after="GET THANOSQL")
        self.advance()
        name = self.name(f"a {tok.word} name", f"GET THANOSQL {tok.text}")
        options, option_pos = self.options_clause()
        self.end(["OPTIONS"] if option_pos is None else [], after=name)
        source = name if tok.word == "model" else f"dataset/{name}"
        return GetModel(options=options, option_pos=option_pos or {}, source=source)

    def _convert(self) -> Convert:
        self.advance()
        self.expect_word("using", "CONVERT")
        model = self.name("a model name", "USING")
        options, option_pos = self.options_clause()
        query = self.as_query(option_pos is None, f"USING {model}", required=True)
        assert query is not None
        return Convert(options=options, option_pos=option_pos or {}, model=model, query=query)

    def _search(self) -> Search:
        self.advance()
        tok = self.peek()
        if tok.word not in SEARCH_TARGETS:
            self.fail(tok, [t.upper() for t in SEARCH_TARGETS], after="SEARCH")
        self.advance()
        options, option_pos = self.legacy_search_input(tok.text)
        self.expect_word("using", f"SEARCH {tok.text}")
        model = self.name("a model name", "USING")
        more, more_pos = self.options_clause(options, option_pos)
        query = self.as_query(more_pos is None, f"USING {model}", required=True)
        assert query is not None
        return Search(
            options=more,
            option_pos=more_pos or option_pos,
            target=tok.word or "",
            model=model,
            query=query,
        )

    def legacy_search_input(self, target: str) -> tuple[dict[str, Any], dict[str, Position]]:
        """``SEARCH IMAGE image='x.png' USING ...`` -> search_by/search_input options."""
        tok = self.peek()
        if tok.kind is not TokenKind.IDENT or tok.word == "using" or not self.peek(1).is_punct("="):
            return {}, {}
        if tok.word not in LEGACY_SEARCH_KEYS:
            self.fail(tok, ["USING"], after=f"SEARCH {target}")
        self.advance()
        self.advance()
        value = self.value()
        pos = Position(tok.line, tok.col)
        by = LEGACY_SEARCH_KEYS[tok.word or ""]
        return {"search_by": by, "search_input": value}, {"search_by": pos, "search_input": pos}

    def _list(self) -> ListModels:
        self.advance()
        tok = self.peek()
        expected = ["MODEL", "MODELS", "THANOSQL"]
        if tok.word == "thanosql":
            self.advance()
            tok, expected = self.peek(), ["MODEL", "MODELS"]
        if tok.word not in ("model", "models"):
            self.fail(tok, expected, after="LIST")
        self.advance()
        self.end([], after=f"LIST {tok.text}")
        return ListModels()

    def _show(self) -> ListModels:
        self.advance()
        self.advance()
        self.end([], after="SHOW MODELS")
        return ListModels()

    def _delete(self) -> DeleteModel:
        self.advance()
        self.advance()
        name = self.name("a model name", "DELETE MODEL")
        self.end([], after=f"DELETE MODEL {name}")
        return DeleteModel(name=name)

    def _drop(self) -> DeleteModel:
        self.advance()
        self.advance()
        if_exists = self.peek().word == "if" and self.peek(1).word == "exists"
        if if_exists:
            self.advance()
            self.advance()
        name = self.name("a model name", "DROP MODEL IF EXISTS" if if_exists else "DROP MODEL")
        self.end([], after=f"DROP MODEL {name}")
        return DeleteModel(name=name, if_exists=if_exists)

    def _copy(self) -> CopyFrom:
        self.advance()
        table = self.name("a table name", "COPY")
        options, option_pos = self.options_clause()
        self.expect_word("from", "OPTIONS (...)")
        tok = self.peek()
        if tok.kind is not TokenKind.STRING:
            self.fail(tok, ["a quoted path"], after="FROM")
        self.advance()
        self.end([], after="the path")
        return CopyFrom(options=options, option_pos=option_pos or {}, table=table, source=tok.value)

    def _print(self) -> PrintImage:
        self.advance()
        tok = self.peek()
        if tok.word not in PRINT_TARGETS:
            self.fail(tok, [t.upper() for t in PRINT_TARGETS], after="PRINT")
        self.advance()
        options, option_pos = self.options_clause()
        self.as_query(option_pos is None, f"PRINT {tok.text}", required=True, consume=False)
        query = self.unwrapped_query()
        return PrintImage(
            options=options, option_pos=option_pos or {}, target=tok.word or "", query=query
        )

    # -- OPTIONS and values ------------------------------------------------------------

    def options_clause(
        self, options: dict[str, Any] | None = None, option_pos: dict[str, Position] | None = None
    ) -> tuple[dict[str, Any], dict[str, Position] | None]:
        """``OPTIONS (k=v, ...)`` if present, added to ``options``; positions are None
        when there is no OPTIONS clause."""
        options, positions = dict(options or {}), dict(option_pos or {})
        if self.peek().word != "options":
            return options, None
        self.advance()
        open_tok = self.peek(opt=True)
        if not open_tok.is_punct("("):
            self.fail(open_tok, ["'('"], after="OPTIONS")
        self.advance(opt=True)
        self.enter(open_tok)
        while not self.peek(opt=True).is_punct(")"):
            key_tok = self.peek(opt=True)
            if key_tok.kind is not TokenKind.IDENT:
                self.fail(key_tok, ["an option name"], after="OPTIONS (")
            key = ascii_lower(self.advance(opt=True).text)
            if key in options:
                raise self.error(f"duplicate option {key!r}", key_tok.start, [])
            if not self.peek(opt=True).is_punct("="):
                self.fail(self.peek(opt=True), ["'='"], after=f"option {key}")
            self.advance(opt=True)
            options[key], positions[key] = self.value(), Position(*key_tok.lines.position(
                key_tok.start))
            self.separator(")", after=f"option {key}")
        self.advance(opt=True)
        self.depth -= 1
        return options, positions

#: recently parsed scripts → their statements: parsing is a pure function of the text, and
#: an application repeats the same statements (a SEARCH's parse is ~0.1-0.2 ms, a copy 10 µs)
_PARSED: OrderedDict[str, tuple[Statement, ...]] = OrderedDict()
PARSED_MAX = 256
#: longer scripts are parsed every time (not kept)
PARSED_TEXT_MAX = 4096
_PARSED_LOCK = threading.Lock()
_ATOMS = (str, int, float, bool, type(None), Position)


def parse_script(text: str) -> list[Statement]:
    """Parse a whole script into statements (empty ones dropped). Every call returns new
    statement objects: a caller may change them without touching another's.

    Raises:
        ParseError: at the 1-based line and column of the first syntax error.
    """
    with _PARSED_LOCK:
        kept = _PARSED.get(text)
        if kept is not None:
            _PARSED.move_to_end(text)
    if kept is not None:
        return [_copy(s) for s in kept]
    statements = _parse(text)
    if len(text) <= PARSED_TEXT_MAX:
        private = tuple(_copy(s) for s in statements)
        with _PARSED_LOCK:
            _PARSED[text] = private
            while len(_PARSED) > PARSED_MAX:
                _PARSED.popitem(last=False)
    return statements


def _copy(x: Any) -> Any:
    """A deep copy of a parsed node (dataclasses, dicts, lists, tuples and immutable
    values), 4x faster than :func:`copy.deepcopy`."""
    if isinstance(x, _ATOMS):
        return x
    if isinstance(x, dict):
        return {k: _copy(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return type(x)(_copy(v) for v in x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        new = object.__new__(type(x))
        for f in dataclasses.fields(x):
            object.__setattr__(new, f.name, _copy(getattr(x, f.name)))
        return new
    return copy.deepcopy(x)


def _parse(text: str) -> list[Statement]:
    parser = _Parser(text)
    try:
        return parser.script()
    except RecursionError:  # a safety net: MAX_DEPTH and MAX_AI_NESTING come first
        raise parser.error("nested too deeply", parser.pos) from None


def parse_statement(text: str) -> Statement:
    """Parse exactly one statement (a trailing ';' is fine)."""
    statements = parse_script(text)
    if len(statements) == 1:
        return statements[0]
    lines = Lexer(text).lines
    if not statements:
        raise lines.error("empty statement; expected a statement", 0, ["a statement"])
    pos = statements[1].pos
    raise ParseError(
        "expected a single statement, found another one",
        line=pos.line,
        col=pos.col,
        source_line=lines.line_text(pos.line),
        expected=[";"],
    )


def split_statements(text: str) -> list[tuple[str, Position]]:
    """The statements of a script as (source text, position) pairs, as
    :func:`parse_script` splits them: a ';' inside a string, comment, dollar quote,
    bracket or OPTIONS value does not end a statement.

    Lenient where parse_script is not: an AI statement with a syntax error is still
    split (up to the next top-level ';'). Only unterminated strings, comments or quoted
    identifiers, and unbalanced brackets, raise :class:`ParseError` (an interactive shell
    reads on after those).
    """
    parser = _Parser(text)
    try:
        return parser.split()
    except RecursionError:
        raise parser.error("nested too deeply", parser.pos) from None
