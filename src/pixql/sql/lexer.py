"""Tokenizer for pixql scripts.

The lexer is lazy: :meth:`Lexer.token_at` reads one token at an offset, in one of two
modes. In SQL mode (the default) strings follow DuckDB: ``'it''s'``, ``E'it\\'s'``,
``$$...$$`` and ``"quoted identifiers"``. Inside ``OPTIONS (...)`` the parser asks for
*options mode*, where both ``'...'`` and ``"..."`` are Python-like strings with
backslash escapes (``''`` is still accepted as an escaped quote). Whitespace and
comments (``-- ...`` and nested ``/* ... */``) are skipped in both modes.

Every token knows its offset and its 1-based line and column in the whole script.
:class:`TokenStream` is the cursor the parser works on; it also reads the Python-like
literals of ``OPTIONS`` values (strings, numbers, True/False/None, lists, tuples, dicts).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from enum import Enum
from typing import Any, NamedTuple

from pixql.errors import ParseError

__all__ = [
    "CLOSERS",
    "MAX_DEPTH",
    "Lexer",
    "LineIndex",
    "Token",
    "TokenKind",
    "ascii_lower",
    "tokenize",
]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

IDENT_RE = re.compile(r"[^\W\d][\w$]*")
_SPACE_RE = re.compile(r"[ \t\n\r\f\v\ufeff]+")  # ASCII whitespace and a BOM
#: the characters whitespace or a comment can start with
_SPACE_OR_COMMENT_START = frozenset(" \t\n\r\f\v\ufeff-/")
_NUMBER_RE = re.compile(r"(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?")
_PARAM_RE = re.compile(r"\$\d+")
_DOLLAR_RE = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_COMMENT_PART_RE = re.compile(r"/\*|\*/")
_STOP_RE = {
    ("'", False): re.compile("'"),
    ("'", True): re.compile(r"['\\]"),
    ('"', False): re.compile('"'),
    ('"', True): re.compile(r'["\\]'),
}
MAX_DEPTH = 200  # parentheses, brackets and braces, all kinds together
CLOSERS = {"(": ")", "[": "]", "{": "}"}
CONSTANTS: dict[str, Any] = {"true": True, "false": False, "none": None}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, as DuckDB folds unquoted identifiers."""
    return text.translate(_ASCII_LOWER)


class TokenKind(str, Enum):
    """The kinds of token the lexer produces."""

    IDENT = "identifier"
    QIDENT = "quoted identifier"
    STRING = "string"
    NUMBER = "number"
    PARAM = "parameter"
    PUNCT = "punctuation"
    EOF = "end of input"


class Token(NamedTuple):
    """One token: ``text`` is the raw source slice, ``value`` the decoded content
    (string contents, identifier without quotes). Its 1-based ``line`` and ``col`` are
    worked out when asked for (error messages and statement positions only)."""

    kind: TokenKind
    text: str
    value: str
    start: int
    end: int
    lines: LineIndex

    @property
    def line(self) -> int:
        return self.lines.position(self.start)[0]

    @property
    def col(self) -> int:
        return self.lines.position(self.start)[1]

    @property
    def word(self) -> str | None:
        """The lower-cased word of an unquoted identifier (a keyword candidate), else None."""
        return ascii_lower(self.text) if self.kind is TokenKind.IDENT else None

    def is_punct(self, chars: str) -> bool:
        """True for a punctuation token whose text is one of ``chars``."""
        return self.kind is TokenKind.PUNCT and self.text in chars


class LineIndex:
    """Maps offsets of a text to 1-based (line, column) and gives back whole lines."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def position(self, offset: int) -> tuple[int, int]:
        """1-based line and column of ``offset``."""
        line = bisect_right(self.starts, offset)
        return line, offset - self.starts[line - 1] + 1

    def line_text(self, line: int) -> str:
        """The text of 1-based ``line`` without its line break."""
        start = self.starts[line - 1]
        end = self.starts[line] - 1 if line < len(self.starts) else len(self.text)
        out = self.text[start:end]
        return out[:-1] if out.endswith("\r") else out

    def error(self, message: str, offset: int, expected: list[str] | None = None) -> ParseError:
        """A :class:`ParseError` located at ``offset``."""
        line, col = self.position(offset)
        return ParseError(
            message, line=line, col=col, source_line=self.line_text(line), expected=expected
        )


def _decode_escapes(body: str, quote: str) -> str:
    """Decode the backslash escapes (and doubled quotes) of an options-mode string body."""
    if "\\" not in body and quote * 2 not in body:
        return body
    pattern = re.compile(r"\\(.)|" + re.escape(quote * 2), re.DOTALL)

    def repl(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return quote
        return _ESCAPES.get(m.group(1), "\\" + m.group(1))

    return pattern.sub(repl, body)


class Lexer:
    """Reads tokens from ``text`` on demand; see the module docstring for the two modes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = LineIndex(text)

    def skip_space(self, offset: int) -> int:
        """The offset of the first character at or after ``offset`` that is not
        whitespace or part of a comment."""
        text = self.text
        if offset < len(text) and text[offset] not in _SPACE_OR_COMMENT_START:
            return offset  # the common case: a token right here
        while True:
            m = _SPACE_RE.match(text, offset)
            if m:
                offset = m.end()
            if text.startswith("--", offset):
                newline = text.find("\n", offset)
                offset = len(text) if newline < 0 else newline + 1
            elif text.startswith("/*", offset):
                offset = self._skip_block_comment(offset)
            else:
                return offset

    def _skip_block_comment(self, start: int) -> int:
        depth, pos = 1, start + 2
        while depth:
            m = _COMMENT_PART_RE.search(self.text, pos)
            if m is None:
                raise self.lines.error("unterminated comment", start, ["*/"])
            depth += 1 if m.group() == "/*" else -1
            pos = m.end()
        return pos

    def token_at(self, offset: int, *, options: bool = False) -> Token:
        """The token starting at the first non-space character at or after ``offset``."""
        start = self.skip_space(offset)
        if start >= len(self.text):
            return self._make(TokenKind.EOF, start, start, "")
        char = self.text[start]
        if char == "'" or (char == '"' and options):
            return self._options_string(start) if options else self._sql_string(start)
        if char == '"':
            return self._quoted_ident(start)
        if char == "$":
            return self._dollar(start)
        m = IDENT_RE.match(self.text, start)
        if m:
            if (not options and m.end() == start + 1 and self.text.startswith("'", m.end())
                    and char in "eE"):
                return self._escape_string(start)
            return self._make(TokenKind.IDENT, start, m.end(), m.group())
        m = _NUMBER_RE.match(self.text, start)
        if m:
            return self._make(TokenKind.NUMBER, start, m.end(), m.group())
        return self._make(TokenKind.PUNCT, start, start + 1, char)

    def _make(self, kind: TokenKind, start: int, end: int, value: str) -> Token:
        return Token(kind, self.text[start:end], value, start, end, self.lines)

    def _close(self, start: int, quote: str, *, escapes: bool, what: str) -> int:
        """End offset of the quoted token opened at ``start`` (doubled quotes, and
        backslash escapes when ``escapes``); ParseError at ``start`` if unterminated."""
        stop, text, pos = _STOP_RE[quote, escapes], self.text, start + 1
        while True:
            m = stop.search(text, pos)
            if m is None:
                raise self.lines.error(f"unterminated {what}", start, [quote])
            pos = m.end()
            if m.group() == "\\" or text.startswith(quote, pos):
                pos += 1
            else:
                return pos

    def _sql_string(self, start: int) -> Token:
        end = self._close(start, "'", escapes=False, what="string literal")
        value = self.text[start + 1 : end - 1].replace("''", "'")
        return self._make(TokenKind.STRING, start, end, value)

    def _escape_string(self, start: int) -> Token:
        end = self._close(start + 1, "'", escapes=True, what="string literal")
        value = _decode_escapes(self.text[start + 2 : end - 1], "'")
        return self._make(TokenKind.STRING, start, end, value)

    def _quoted_ident(self, start: int) -> Token:
        end = self._close(start, '"', escapes=False, what="quoted identifier")
        value = self.text[start + 1 : end - 1].replace('""', '"')
        return self._make(TokenKind.QIDENT, start, end, value)

    def _options_string(self, start: int) -> Token:
        quote = self.text[start]
        end = self._close(start, quote, escapes=True, what="string literal")
        value = _decode_escapes(self.text[start + 1 : end - 1], quote)
        return self._make(TokenKind.STRING, start, end, value)

    def _dollar(self, start: int) -> Token:
        m = _PARAM_RE.match(self.text, start)
        if m:
            return self._make(TokenKind.PARAM, start, m.end(), m.group())
        m = _DOLLAR_RE.match(self.text, start)
        if m is None:
            return self._make(TokenKind.PUNCT, start, start + 1, "$")
        tag = m.group()
        close = self.text.find(tag, m.end())
        if close < 0:
            raise self.lines.error("unterminated dollar-quoted string", start, [tag])
        end = close + len(tag)
        return self._make(TokenKind.STRING, start, end, self.text[m.end() : close])


def tokenize(text: str, *, options: bool = False) -> list[Token]:
    """All tokens of ``text`` in one mode, ending with an EOF token (for tests and tools)."""
    lexer, out, offset = Lexer(text), [], 0
    while True:
        token = lexer.token_at(offset, options=options)
        out.append(token)
        if token.kind is TokenKind.EOF:
            return out
        offset = token.end
