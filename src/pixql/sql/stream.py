"""A cursor over the token stream, with the OPTIONS value reader and error helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from pixql.sql.lexer import (
    CLOSERS,
    CONSTANTS,
    MAX_DEPTH,
    Lexer,
    Token,
    TokenKind,
    ascii_lower,
)

if TYPE_CHECKING:
    from pixql.errors import ParseError

__all__ = ["TokenStream", "shown"]


def shown(tok: Token) -> str:
    """A token quoted for an error message (long ones shortened)."""
    return repr(tok.text if len(tok.text) <= 30 else tok.text[:27] + "...")


class TokenStream:
    """A cursor over the lazily lexed tokens of a script, with error helpers and a
    reader of Python-like literals (the values of ``OPTIONS (k=v)``).

    Only the last few tokens are cached (lookahead re-reads them), so memory stays flat.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.lexer = Lexer(text)
        self.lines = self.lexer.lines
        self.pos = 0  # offset just after the last consumed token
        self.last_end = 0  # end offset of the last consumed token
        self.depth = 0  # open brackets of any kind
        self._sql: dict[int, Token] = {}  # offset → token, one cache per lexing mode
        self._opt: dict[int, Token] = {}

    def peek(self, ahead: int = 0, *, opt: bool = False) -> Token:
        """The token ``ahead`` tokens after the cursor (``opt``: options mode)."""
        tok = self._token(self.pos, opt)
        for _ in range(ahead):
            tok = self._token(tok.end, opt)
        return tok

    def _token(self, offset: int, opt: bool) -> Token:
        cache = self._opt if opt else self._sql
        tok = cache.get(offset)
        if tok is None:
            if len(cache) > 16:
                cache.clear()
            tok = cache[offset] = self.lexer.token_at(offset, options=opt)
        return tok

    def advance(self, *, opt: bool = False) -> Token:
        """Consume and return the next token."""
        tok = self.peek(opt=opt)
        self.pos = self.last_end = tok.end
        return tok

    def at_end(self, tok: Token) -> bool:
        """Whether ``tok`` ends the statement: the end of the input, or a ';' outside
        brackets (inside them it is an ordinary token, as in psql)."""
        return tok.kind is TokenKind.EOF or (tok.is_punct(";") and not self.depth)

    def error(self, message: str, offset: int, expected: list[str] | None = None) -> ParseError:
        """A :class:`ParseError` at ``offset``."""
        return self.lines.error(message, offset, expected)

    def fail(self, tok: Token, expected: list[str], *, after: str = "", hint: str = "") -> NoReturn:
        """Raise 'expected X after Y, found Z' (or 'unexpected end of statement')."""
        wanted = " or ".join(expected)
        if self.at_end(tok):
            message = f"unexpected end of statement; expected {wanted}{hint}"
            raise self.error(message, self.last_end, expected)
        where = f" after {after}" if after else ""
        raise self.error(f"expected {wanted}{where}, found {shown(tok)}", tok.start, expected)

    def expect_word(self, word: str, after: str) -> Token:
        """Consume the keyword ``word`` or fail."""
        tok = self.peek()
        if tok.word != word:
            self.fail(tok, [word.upper()], after=after)
        return self.advance()

    def name(self, what: str, after: str, *, keep_case: bool = False) -> str:
        """An identifier: unquoted ones are lower-cased (unless ``keep_case``)."""
        tok = self.peek()
        if tok.kind is TokenKind.QIDENT:
            if not tok.value:
                raise self.error("zero-length quoted identifier", tok.start, [what])
            return self.advance().value
        if tok.kind is not TokenKind.IDENT:
            self.fail(tok, [what], after=after)
        self.advance()
        return tok.text if keep_case else ascii_lower(tok.text)

    def enter(self, tok: Token) -> None:
        """Count one more open bracket, refusing deep nesting."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            message = f"nested too deeply (more than {MAX_DEPTH} levels of brackets)"
            raise self.error(message, tok.start)

    # -- Python-like literals (OPTIONS values), read in options mode ----------------

    def separator(self, closer: str, after: str) -> bool:
        """Consume a ',' (True) or stop before ``closer`` (False); anything else fails."""
        tok = self.peek(opt=True)
        if tok.is_punct(","):
            self.advance(opt=True)
            return True
        if not tok.is_punct(closer):
            self.fail(tok, ["','", f"'{closer}'"], after=after)
        return False

    def value(self) -> Any:
        """A Python-like literal: string, number, True/False/None, list, tuple, dict."""
        tok = self.peek(opt=True)
        if tok.kind is TokenKind.STRING:
            return self.advance(opt=True).value
        if tok.kind is TokenKind.NUMBER or tok.is_punct("+-"):
            return self.number()
        if tok.word in CONSTANTS:
            self.advance(opt=True)
            return CONSTANTS[tok.word or ""]
        if tok.is_punct("[({"):
            return self.collection(tok)
        self.fail(tok, ["a value"], hint=" (a string, number, True/False/None, list or dict)")

    def number(self) -> int | float:
        """An int or float literal, with an optional leading sign."""
        sign = self.advance(opt=True) if self.peek(opt=True).is_punct("+-") else None
        tok = self.peek(opt=True)
        if tok.kind is not TokenKind.NUMBER:
            self.fail(tok, ["a number"], after=repr(sign.text) if sign else "")
        self.advance(opt=True)
        try:
            value = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
        except ValueError:
            raise self.error(f"invalid number {shown(tok)}", tok.start, ["a number"]) from None
        return -value if sign is not None and sign.text == "-" else value

    def collection(self, open_tok: Token) -> Any:
        """``[...]`` and ``(...)`` (a list; ``(x)`` alone is x) or ``{k: v, ...}``."""
        closer = CLOSERS[open_tok.text]
        self.advance(opt=True)
        self.enter(open_tok)
        items: list[Any] = []
        comma = False
        while not self.peek(opt=True).is_punct(closer):
            key_tok = self.peek(opt=True)
            item = self.value()
            if closer == "}":
                if isinstance(item, (list, dict)):
                    raise self.error(
                        "a dict key must be a string, number, bool or None",
                        key_tok.start,
                        ["a dict key"],
                    )
                if not self.peek(opt=True).is_punct(":"):
                    self.fail(self.peek(opt=True), ["':'"], after="the dict key")
                self.advance(opt=True)
                item = (item, self.value())
            items.append(item)
            comma = self.separator(closer, after="the item")
        self.advance(opt=True)
        self.depth -= 1
        if closer == "}":
            return dict(items)
        return items[0] if closer == ")" and len(items) == 1 and not comma else items
