#!/usr/bin/env python3
"""Long fuzz run of pixql's engine: random and mutated statements through ``Workspace.sql``.

Every input runs on a small confined workspace (images, a Pixels model, embeddings, a tiny
CLIP unless ``--no-clip``). The rules checked for each input:

* it succeeds, or raises ``pixql.errors.Error`` or ``duckdb.Error`` — never another
  exception (KeyError, TypeError, AttributeError, a pydantic error...);
* a ``ParseError`` carries a line and a column;
* a statement that fails leaves the workspace as it was: the committed tables and catalog,
  the model folders and the workspace's files (a fingerprint is compared), and no
  transaction is left open on the cursor.

A statement that succeeds and changes the workspace is fine; the workspace is then restored
from its template so the next input starts from the same state. Any rule broken is a bug:
the script prints the first few and exits with status 1.

Usage:
    python scripts/fuzz_engine.py --n 10000 [--seed 0] [--no-clip]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb

# no downloads (GET THANOSQL MODEL clip would retry the network for a minute), no bars
os.environ.setdefault("PIXQL_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PIXQL_PROGRESS", "0")

from fuzz_inputs import GENERATORS

import pixql
from pixql.errors import Error, ParseError
from pixql.sql import parse_script

ROOT = Path(__file__).resolve().parent.parent
SHAPES = ("circle", "square", "cross")


# ---------------------------------------------------------------------- the workspace
def draw_shape(shape: str, seed: int, size: int = 24) -> Any:
    """A white-on-black glyph (a circle, a square or a cross), slightly shifted by ``seed``."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    r, cx, cy = size // 3, size // 2 + rng.randint(-2, 2), size // 2 + rng.randint(-2, 2)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, outline=255, width=2)
    elif shape == "square":
        d.rectangle(box, outline=255, width=2)
    else:
        d.line(box, fill=255, width=2)
        d.line((box[0], box[3], box[2], box[1]), fill=255, width=2)
    return img


def write_files(root: Path) -> None:
    """Images (shapes/<shape>/00i.png), bad files (bad/), a CSV and a file outside."""
    for c, shape in enumerate(SHAPES):
        (root / "shapes" / shape).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            draw_shape(shape, 10 * c + i).save(root / "shapes" / shape / f"{i:03d}.png")
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.png").write_text("not an image", encoding="utf-8")
    good = (root / "shapes" / "circle" / "000.png").read_bytes()
    (bad / "truncated.png").write_bytes(good[: len(good) // 2])
    from PIL import Image

    Image.new("L", (4000, 4000)).save(bad / "huge.png")  # 16 Mpx: decodes, slowly-ish
    (root / "data.csv").write_text("image_path,label\ncircle/000.png,circle\n", encoding="utf-8")
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("secret", encoding="utf-8")
    (root / "link").symlink_to(outside)


def build_template(folder: Path, *, clip: bool = True) -> Path:
    """Create the template workspace in ``folder`` (must not exist); return it."""
    write_files(folder)
    setup = [
        "COPY images OPTIONS (if_exists='replace') FROM 'shapes/'",
        "CREATE TABLE mixed AS SELECT image_path FROM images UNION ALL "
        "SELECT 'bad/' || f FROM (VALUES ('empty.png'), ('text.png'), ('truncated.png')) v(f)",
        "CREATE TABLE captions AS SELECT * FROM (VALUES (1, 'a dog'), (2, 'a cat')) t(id, caption)",
        "BUILD MODEL px USING Pixels OPTIONS (image_size=8) AS SELECT * FROM images",
        "CONVERT USING px AS SELECT * FROM images",
    ]
    if clip:  # the weights live outside (an allowed folder), linked as weights/
        from pixql.testing.tiny_clip import make_tiny_clip

        make_tiny_clip(folder.parent / "weights" / "tiny-clip")
        (folder / "weights").symlink_to(folder.parent / "weights")
        setup += ["BUILD MODEL c USING CLIP OPTIONS (path='weights/tiny-clip')",
                  "CONVERT USING c OPTIONS (result_col='clip_emb') AS SELECT * FROM images"]
    with pixql.connect(folder, progress=False) as db:
        for stmt in setup:
            db.sql(stmt)
    return folder


def open_workspace(folder: Path) -> pixql.Workspace:
    """The workspace as the server opens it: confined to its folder (and the weights')."""
    weights = (folder / "weights").resolve()
    return pixql.connect(folder, progress=False, confined=True,
                         allowed_dirs=[weights] if weights.is_dir() else [])


# ---------------------------------------------------------------------- fingerprints
def _table_digest(cur: duckdb.DuckDBPyConnection, qualified: str) -> str:
    rows = cur.execute(
        f"SELECT md5(CAST(x AS VARCHAR)) AS h FROM {qualified} AS x ORDER BY h").fetchall()
    return hashlib.sha256("".join(r[0] for r in rows).encode()).hexdigest()


def fingerprint(ws: pixql.Workspace, cur: duckdb.DuckDBPyConnection) -> str:
    """A digest of the committed state: tables (schema + rows), views, model folders
    and the workspace's files. ``cur`` must be a cursor of its own (it sees committed data)."""
    h = hashlib.sha256()
    tables = cur.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary "
        "ORDER BY ALL").fetchall()
    for schema, table in tables:
        cols = cur.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? AND "
            "table_name = ? ORDER BY column_index", [schema, table]).fetchall()
        qualified = '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'
        h.update(repr((schema, table, cols, _table_digest(cur, qualified))).encode())
    for row in cur.execute(
            "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal "
            "ORDER BY ALL").fetchall():
        h.update(repr(row).encode())
    for dirpath, dirnames, filenames in os.walk(ws.root):  # symlinks are not followed
        dirnames.sort()
        for name in sorted(filenames + dirnames):
            path = Path(dirpath) / name
            rel = path.relative_to(ws.root).as_posix()
            if not rel.startswith("pixql.duckdb"):
                size = path.stat().st_size if path.is_file() else -1
                h.update(f"{rel}:{size}".encode())
    return h.hexdigest()


def in_transaction(cur: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``cur`` has a transaction open (BEGIN would fail)."""
    try:
        cur.begin()
    except duckdb.TransactionException:
        return True
    cur.rollback()
    return False


# ---------------------------------------------------------------------- running inputs
class Harness:
    """A template workspace and a working copy that is restored whenever it changes."""

    def __init__(self, template: Path, work: Path) -> None:
        self.template = template
        self.work = work
        self.restores = 0
        self.ws: pixql.Workspace | None = None
        self.cur: duckdb.DuckDBPyConnection | None = None
        self.state = ""
        self.restore()

    def restore(self) -> None:
        """Start again from a fresh copy of the template."""
        self.close()
        if self.work.exists():
            shutil.rmtree(self.work)
        shutil.copytree(self.template, self.work, symlinks=True)
        self.ws = open_workspace(self.work)
        self.cur = self.ws._con.cursor()  # its own connection handle: committed state only
        self.state = fingerprint(self.ws, self.cur)
        self.restores += 1

    def close(self) -> None:
        if self.cur is not None:
            self.cur.close()
        if self.ws is not None:
            self.ws.close()
        self.ws = self.cur = None

    def check_unchanged(self, what: str) -> None:
        assert self.ws is not None
        assert self.cur is not None
        if in_transaction(self.ws.cursor()):
            raise AssertionError(f"{what} left a transaction open")
        if fingerprint(self.ws, self.cur) != self.state:
            raise AssertionError(f"{what} changed the workspace")

    def run(self, text: str) -> str:
        """Run one input; return its outcome. AssertionError or any unexpected exception
        means a bug (raised to the caller)."""
        assert self.ws is not None
        try:
            statements = parse_script(text)
        except ParseError as e:
            if e.line < 1 or e.col < 1:
                raise AssertionError(f"ParseError without a position: {e!r}") from e
            try:
                self.ws.sql(text)
            except ParseError:
                pass
            else:
                raise AssertionError("parse_script failed but Workspace.sql did not") from e
            self.check_unchanged("a script with a syntax error")
            return "ParseError"
        outcome = "ok"
        for statement in statements:
            outcome = self._run_statement(statement)
            if outcome != "ok":
                break
        return outcome

    def _run_statement(self, statement: Any) -> str:
        assert self.ws is not None
        try:
            self.ws.sql(statement.text)
        except (Error, duckdb.Error) as e:
            self.check_unchanged(f"failed statement ({type(e).__name__}: {e})")
            return "pixql." + type(e).__name__ if isinstance(e, Error) else "duckdb.Error"
        if self._changed():
            self.restore()
        return "ok"

    def _changed(self) -> bool:
        assert self.ws is not None
        assert self.cur is not None
        return in_transaction(self.ws.cursor()) or fingerprint(self.ws, self.cur) != self.state


# ---------------------------------------------------------------------- the run
@dataclasses.dataclass
class Report:
    """What a run saw."""

    inputs: int = 0
    outcomes: Counter = dataclasses.field(default_factory=Counter)
    failures: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    restores: int = 0
    slowest: float = 0.0
    slowest_input: str = ""
    seconds: float = 0.0

    def line(self, seed: int) -> str:
        errors = sum(v for k, v in self.outcomes.items() if k not in ("ok", "bug"))
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return (f"fuzz_engine: {self.inputs} inputs, {self.outcomes['ok']} ran, {errors} "
                f"refused with pixql/DuckDB errors, {self.outcomes['bug']} bugs; workspace "
                f"restored {self.restores} times; slowest input {self.slowest:.2f}s "
                f"(seed {seed}, {self.seconds:.1f}s)\n  outcomes: {kinds}")


def fuzz(harness: Harness, rng: random.Random, n: int) -> Report:
    """Run ``n`` generated inputs through ``harness``."""
    report = Report()
    started = time.perf_counter()
    for _ in range(n):
        text = rng.choice(GENERATORS)(rng)
        t0 = time.perf_counter()
        try:
            outcome = harness.run(text)
        except Exception:  # noqa: BLE001 - anything else is what we hunt for
            outcome = "bug"
            report.failures.append((text, traceback.format_exc(limit=6)))
            harness.restore()
        elapsed = time.perf_counter() - t0
        if elapsed > report.slowest:
            report.slowest, report.slowest_input = elapsed, text
        report.outcomes[outcome] += 1
        report.inputs += 1
    report.restores = harness.restores
    report.seconds = time.perf_counter() - started
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer; 0 when every input ran or failed cleanly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--n", type=int, default=10_000, help="number of inputs (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-clip", action="store_true", help="no tiny CLIP model")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pixql-fuzz-") as tmp:
        template = build_template(Path(tmp) / "template" / "ws", clip=not args.no_clip)
        harness = Harness(template, Path(tmp) / "work" / "ws")
        try:
            report = fuzz(harness, random.Random(args.seed), args.n)
        finally:
            harness.close()
    for text, why in report.failures[:5]:
        print(f"FAILED on {text!r}:\n{why}", file=sys.stderr)
    print(report.line(args.seed))
    print(f"  slowest: {report.slowest_input[:160]!r}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
