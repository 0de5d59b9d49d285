#!/usr/bin/env python3
"""Long fuzz run of pixql's SQL parser.

Feeds ``--n`` generated inputs (random text, mutated golden statements, glued scripts and
deep nesting) to :func:`pixql.sql.split_statements` and :func:`pixql.sql.parse_script`.
Every input must either parse, with each statement's ``.sql()`` parsing back to an equal
node and the split agreeing with the parse, or raise ``ParseError``.
Any other exception (or a round-trip mismatch) is a bug: the script prints the first
few and exits with status 1.

Usage:
    python scripts/fuzz_sql.py --n 10000 [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from pixql.errors import ParseError
from pixql.sql import parse_script, parse_statement, split_statements

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "sql" / "fixtures" / "identity.sql"
CHARS = "()[]{}'\";$-/*=,.:_+\\ \n\t\r\x00\x1f" + string.ascii_letters + string.digits + "éİ€"
WORDS = [
    "SEARCH",
    "IMAGE",
    "TEXT",
    "USING",
    "OPTIONS",
    "AS",
    "CONVERT",
    "LIST",
    "MODEL",
    "SHOW",
    "MODELS",
    "BUILD",
    "PRINT",
    "COPY",
    "FROM",
    "GET",
    "THANOSQL",
    "DELETE",
    "DROP",
    "IF",
    "EXISTS",
    "SELECT",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ";",
    ",",
    "=",
    "'",
    '"',
    "$$",
    "$t$",
    "/*",
    "*/",
    "--",
    "\n",
    "E'",
    "None",
    "True",
    "-",
    "1e-3",
    "top_k",
]


def golden() -> list[str]:
    """The golden statements, one per line."""
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("--")]


def random_text(rng: random.Random, _golden: list[str]) -> str:
    """Random characters, mostly SQL punctuation and letters, sometimes any code point."""
    alphabet = (
        CHARS if rng.random() < 0.8 else "".join(chr(rng.randrange(0x110000)) for _ in "x" * 20)
    )
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 200)))


def random_words(rng: random.Random, _golden: list[str]) -> str:
    """Random keywords and punctuation separated by spaces."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 40)))


def mutated(rng: random.Random, lines: list[str]) -> str:
    """A golden line with 1-5 character or word edits."""
    text = rng.choice(lines)
    for _ in range(rng.randint(1, 5)):
        pieces = list(text) if rng.random() < 0.5 else text.split(" ")
        glue = "" if len(pieces) == len(text) else " "
        i, j = rng.randrange(len(pieces) or 1), rng.randrange(len(pieces) or 1)
        op = rng.randrange(4)
        if op == 0 and pieces:
            del pieces[i]
        elif op == 1:
            pieces.insert(i, rng.choice(WORDS + list(CHARS)))
        elif op == 2 and pieces:
            pieces[i], pieces[j] = pieces[j], pieces[i]
        elif pieces:
            pieces.insert(i, pieces[j])
        text = glue.join(pieces)
    return text


def glued(rng: random.Random, lines: list[str]) -> str:
    """Several golden statements joined by assorted separators."""
    seps = [";", ";\n", " ; -- c\n", ";/* ; */", "\n;;\n", " "]
    return "".join(rng.choice(lines) + rng.choice(seps) for _ in range(rng.randint(1, 5)))


def nested(rng: random.Random, lines: list[str]) -> str:
    """Deep parentheses or AI subqueries around the limits, sometimes cut short."""
    depth = rng.choice([5, 31, 33, 150, 199, 201, 1000])
    if rng.random() < 0.5:
        core = "SELECT " + "(" * depth + "1" + ")" * depth
    else:
        core = (
            "SELECT * FROM " + "(SEARCH IMAGE USING m AS SELECT * FROM " * depth + "t" + ")" * depth
        )
    cut = rng.randrange(len(core) + 1) if rng.random() < 0.3 else len(core)
    return core[:cut]


GENERATORS: list[Callable[[random.Random, list[str]], str]] = [
    random_text,
    random_words,
    mutated,
    mutated,
    mutated,
    glued,
    nested,
]


def run_one(text: str) -> str:
    """'parsed', 'error' (ParseError) or 'roundtrip' (a node that does not round-trip,
    or a split that disagrees with the parse)."""
    try:
        split = split_statements(text)
    except ParseError:
        split = None
    try:
        statements = parse_script(text)
    except ParseError:
        return "error"
    if split != [(statement.text, statement.pos) for statement in statements]:
        return "roundtrip"
    for statement in statements:
        if parse_statement(statement.sql()) != statement:
            return "roundtrip"
    return "parsed"


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer; 0 when every input parsed or raised ParseError."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--n", type=int, default=10_000, help="number of inputs (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    rng, lines = random.Random(args.seed), golden()
    counts = {"parsed": 0, "error": 0, "roundtrip": 0, "other": 0}
    failures: list[tuple[str, str]] = []
    started = time.perf_counter()
    for _ in range(args.n):
        text = rng.choice(GENERATORS)(rng, lines)
        try:
            outcome = run_one(text)
        except Exception:  # noqa: BLE001 - any other exception is what we hunt for
            outcome = "other"
            failures.append((text, traceback.format_exc(limit=3)))
        if outcome == "roundtrip":
            failures.append((text, "round-trip mismatch"))
        counts[outcome] += 1
    elapsed = time.perf_counter() - started
    for text, why in failures[:5]:
        print(f"FAILED on {text!r}:\n{why}", file=sys.stderr)
    print(
        f"fuzz_sql: {args.n} inputs, {counts['parsed']} parsed, {counts['error']} ParseError, "
        f"{counts['other']} other exceptions, {counts['roundtrip']} round-trip failures "
        f"(seed {args.seed}, {elapsed:.1f}s)"
    )
    return 1 if counts["other"] or counts["roundtrip"] else 0


if __name__ == "__main__":
    sys.exit(main())
