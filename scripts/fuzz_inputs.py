"""The inputs of the engine fuzzer (``fuzz_engine.py``): random text and words, and edits of
the golden statements (``tests/sql/fixtures/identity.sql``) and of the engine corpus
(``tests/reliability/fixtures/engine_corpus.sql``: statements valid on the fuzzing workspace,
so their mutations reach deep into the engine)."""

from __future__ import annotations

import dataclasses
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixql.sql import parse_statement
from pixql.sql.nodes import AiStatement

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_FILE = ROOT / "tests" / "sql" / "fixtures" / "identity.sql"
#: statements valid on the template workspace (mutations of these reach deep into the engine)
CORPUS_FILE = ROOT / "tests" / "reliability" / "fixtures" / "engine_corpus.sql"
WORDS = [
    "SEARCH", "IMAGE", "TEXT", "VIDEO", "USING", "OPTIONS", "AS", "CONVERT", "LIST", "MODEL",
    "SHOW", "MODELS", "BUILD", "PRINT", "COPY", "FROM", "GET", "THANOSQL", "DELETE", "DROP",
    "IF", "EXISTS", "SELECT", "*", "WHERE", "images", "captions", "mixed", "px", "c",
    "Pixels", "CLIP", "image_path", "convert_result", "clip_emb", "label", "(", ")", "[",
    "]", "{", "}", ";", ",", "=", "'", '"', "None", "True", "-1", "1e999", "top_k",
    "search_input", "'shapes/'", "'bad/empty.png'", "'../../etc/passwd'",
]
OPTION_KEYS = [
    "image_col", "text_col", "video_col", "convert_type", "result_col", "batch_size",
    "workers", "on_error", "table_name", "search_by", "search_input", "emb_col", "top_k",
    "column_name", "if_exists", "overwrite", "resolve_paths", "image_size", "grayscale",
    "center", "clip_version_id", "path", "video_frames", "device", "model_name", "max_epochs",
    "", "x", "IMAGE_COL",
]
OPTION_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 3, 2**63, 10**40, 1e999, -1e999, 0.5, "", "x", "image",
    "text", "video", "audio", "null", "fail", "replace", "append", "image_path", "label",
    "convert_result", "clip_emb", "caption", "shapes/", "shapes/cross/001.png",
    "bad/empty.png", "bad/text.png", "bad/truncated.png", "bad/huge.png", "/etc/passwd",
    "../../etc/passwd", "link/secret.txt", "weights/tiny-clip", "ViT-B-32", "cuda", "meta",
    [], [1, "a"], ["image_path", "label"], {"a": 1}, {"": None}, "a" * 500,
    "'; DROP TABLE images; --", "\x00", "shapes/\x00.png", "~nosuchuser/a.png", "~/a.png",
    "é" * 3,
]


Generator = Callable[[random.Random], str]


def statements(path: Path) -> list[str]:
    """The statements of a one-statement-per-line file ("--" lines are comments)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("--")]


def random_text(rng: random.Random) -> str:
    chars = "()[]{}'\";$-/*=,.:_+\\ \n\t" + string.ascii_letters + string.digits
    return "".join(rng.choice(chars) for _ in range(rng.randrange(0, 120)))


def random_words(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 30)))


def mutated(rng: random.Random) -> str:
    """A corpus (or golden) statement with 1-4 character or word edits."""
    text = rng.choice(CORPUS) if rng.random() < 0.8 else rng.choice(GOLDEN)
    for _ in range(rng.randint(1, 4)):
        words = rng.random() < 0.5
        pieces = text.split(" ") if words else list(text)
        if not pieces:
            break
        i, j = rng.randrange(len(pieces)), rng.randrange(len(pieces))
        op = rng.randrange(4)
        if op == 0:
            del pieces[i]
        elif op == 1:
            pieces.insert(i, rng.choice(WORDS) if words else rng.choice("()'\",;=_ 0x"))
        elif op == 2:
            pieces[i], pieces[j] = pieces[j], pieces[i]
        else:
            pieces.insert(i, pieces[j])
        text = (" " if words else "").join(pieces)
    return text


def option_value(rng: random.Random) -> Any:
    return rng.choice(OPTION_VALUES)


def options_mutated(rng: random.Random) -> str:
    """A corpus AI statement whose OPTIONS get values replaced, added or removed."""
    node = rng.choice(AI_CORPUS)
    options = dict(node.options)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(3)
        if op == 0 and options:
            options[rng.choice(list(options))] = option_value(rng)
        elif op == 1:
            options[rng.choice(OPTION_KEYS) or "x"] = option_value(rng)
        elif options:
            del options[rng.choice(list(options))]
    return dataclasses.replace(node, options=options).sql()


def nested(rng: random.Random) -> str:
    """AI statements nested as subqueries, sometimes cut short."""
    inner = "SELECT * FROM images"
    for _ in range(rng.randint(1, 4)):
        inner = rng.choice([
            f"SELECT * FROM (SEARCH IMAGE USING px OPTIONS (search_by='image', search_input="
            f"'shapes/circle/001.png', emb_col='convert_result', top_k=5) AS {inner})",
            f"SELECT * FROM (CONVERT USING px OPTIONS (result_col='e2') AS {inner})",
            f"SELECT * FROM ({inner}) WHERE label <> 'square'",
        ])
    cut = rng.randrange(len(inner) + 1) if rng.random() < 0.3 else len(inner)
    return inner[:cut]


def glued(rng: random.Random) -> str:
    """Several corpus statements as one script."""
    return ";\n".join(rng.choice(CORPUS) for _ in range(rng.randint(2, 4)))


GOLDEN = statements(GOLDEN_FILE)
CORPUS = statements(CORPUS_FILE)
#: the corpus's top-level AI statements with OPTIONS, parsed
AI_CORPUS = [node for node in map(parse_statement, CORPUS)
             if isinstance(node, AiStatement) and node.options]
GENERATORS: list[Generator] = [
    random_text, random_words, mutated, mutated, mutated, options_mutated, options_mutated,
    nested, glued,
]
