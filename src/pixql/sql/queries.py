"""Plain SQL inside pixql statements: queries scanned to their end, AI statements nested in them.

:class:`QueryScanner` consumes a DuckDB query as text (checking only that its brackets
match) and parses the AI statements found right after a ``(``; the statement grammar itself
(:meth:`QueryScanner.signature`, :meth:`QueryScanner.ai`) is the parser's
(:mod:`pixql.sql.parser`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pixql.sql.lexer import CLOSERS, Token, TokenKind
from pixql.sql.nodes import AiStatement, Query, Subquery
from pixql.sql.stream import TokenStream

MAX_AI_NESTING = 32  # AI subqueries inside AI subqueries
NESTABLE = frozenset({"convert", "search", "list", "show"})


class QueryScanner(TokenStream, ABC):
    """A token stream that knows where a statement ends and how to scan plain SQL; the
    parser supplies the statement grammar (:meth:`signature`, :meth:`ai`)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.nesting: list[Token] = []  # the '(' of each enclosing AI subquery
        self.lexical = False  # True: only split, parse no nested AI statements

    @abstractmethod
    def signature(self, first: Token) -> bool:
        """Whether the tokens at the cursor start an AI statement."""

    @abstractmethod
    def ai(self, first: Token) -> AiStatement:
        """Parse the AI statement whose first token is ``first``."""

    def is_end(self, tok: Token) -> bool:
        """Whether ``tok`` ends the current statement (``)`` ends a nested one)."""
        return self.at_end(tok) or (bool(self.nesting) and tok.is_punct(")"))

    def end(self, expected: list[str], after: str) -> None:
        """Require the end of the statement (or the ')' closing a nested one)."""
        tok = self.peek()
        if not self.is_end(tok):
            self.fail(tok, [*expected, "')'" if self.nesting else "end of statement"], after=after)

    def as_query(
        self, options_allowed: bool, after: str, *, required: bool, consume: bool = True
    ) -> Query | None:
        """``AS <query>`` (required, or optional at the end of the statement)."""
        tok = self.peek()
        expected = ["OPTIONS", "AS"] if options_allowed else ["AS"]
        if tok.word != "as":
            if not required:
                self.end(expected, after=after if options_allowed else "OPTIONS (...)")
                return None
            self.fail(
                tok, expected, after=after if options_allowed else "OPTIONS (...)", hint=" <query>"
            )
        self.advance()
        first = self.peek()
        if self.is_end(first):
            self.fail(first, ["a query"], after="AS")
        if self.signature(first):
            message = f"put the {first.text} statement in parentheses: AS ({first.text} ...)"
            raise self.error(message, first.start, ["("])
        return self.scan_query(self.nesting[-1] if self.nesting else None) if consume else None

    def unwrapped_query(self) -> Query:
        """PRINT's query, without one pair of parentheses around all of it (kept when
        they hold an AI statement, which may only appear in parentheses)."""
        start, depth, open_tok = self.pos, self.depth, self.peek()
        if open_tok.is_punct("("):
            self.advance()
            self.enter(open_tok)
            first = self.peek()
            if not first.is_punct(")") and not self.signature(first):
                inner = self.scan_query(open_tok)
                self.advance()
                self.depth -= 1
                if self.is_end(self.peek()):
                    return inner
            self.pos, self.depth = start, depth
        return self.scan_query(None)

    def scan_query(self, closing: Token | None) -> Query:
        """Consume plain SQL to the end of the statement, or up to the ')' matching
        ``closing``; parse the AI statements nested in its parentheses."""
        stack: list[Token] = []
        subs: list[Subquery] = []
        start = end = self.peek().start
        while True:
            tok = self.peek()
            if self.at_end(tok):
                unclosed = stack[-1] if stack else closing
                if unclosed is not None:
                    closer = CLOSERS[unclosed.text]
                    raise self.error(
                        f"'{unclosed.text}' is never closed", unclosed.start, [f"'{closer}'"]
                    )
                break
            if tok.is_punct(")]}"):
                if not stack and closing is not None and tok.text == ")":
                    break
                self.close_bracket(tok, stack)
            self.pos = self.last_end = end = tok.end
            if tok.is_punct("([{"):
                self.enter(tok)
                stack.append(tok)
                sub = self.nested(tok) if tok.text == "(" else None
                if sub is not None:
                    subs.append(Subquery(sub.start - start, sub.end - start, sub.node))
        return Query(self.text[start:end], subs)

    def close_bracket(self, tok: Token, stack: list[Token]) -> None:
        """Check that ``tok`` closes the innermost open bracket, and pop it."""
        if not stack:
            raise self.error(f"unmatched '{tok.text}'", tok.start, [])
        opener = stack.pop()
        self.depth -= 1
        if CLOSERS[opener.text] != tok.text:
            message = (
                f"'{tok.text}' does not match '{opener.text}' "
                f"(line {opener.line}, column {opener.col})"
            )
            raise self.error(message, tok.start, [f"'{CLOSERS[opener.text]}'"])

    def nested(self, open_tok: Token) -> Subquery | None:
        """The AI statement right after ``open_tok`` (absolute offsets), if there is one."""
        first = self.peek()
        if self.lexical or not self.signature(first):
            return None
        if first.word not in NESTABLE:
            message = (
                f"{first.text} {self.peek(1).text} is a top-level statement; only "
                "CONVERT, SEARCH, LIST MODEL and SHOW MODELS can be nested"
            )
            raise self.error(message, first.start, ["CONVERT", "SEARCH", "LIST", "SHOW"])
        if len(self.nesting) >= MAX_AI_NESTING:
            raise self.error(
                f"AI subqueries nested too deeply (more than {MAX_AI_NESTING})", first.start
            )
        self.nesting.append(open_tok)
        node = self.ai(first)
        self.nesting.pop()
        if self.peek().kind is TokenKind.EOF:
            raise self.error("'(' is never closed", open_tok.start, ["')'"])
        return Subquery(first.start, self.last_end, node)
