"""Shared fixtures: a fresh workspace and small generated image sets (no downloads)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path as _Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

os.environ.setdefault("PIXQL_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# exact-parity tests expect torch; tests/models/clip/test_default_backend.py covers "auto"
os.environ.setdefault("PIXQL_CLIP_BACKEND", "torch")

SHAPES = ("circle", "square", "cross", "triangle")
REPO = _Path(__file__).resolve().parent.parent


def _untracked_files() -> set[str] | None:
    """Files in the checkout that git does not track nor ignore (None: not a git checkout),
    but for hidden top-level folders (tool caches: ``.mypy_cache``, ... written by whatever
    else runs meanwhile)."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        return None
    done = subprocess.run([git, "-C", str(REPO), "ls-files", "--others", "--exclude-standard"],
                          capture_output=True, encoding="utf-8", check=False)
    if done.returncode != 0:
        return None
    return {p for p in done.stdout.splitlines() if not p.startswith(".")}


@pytest.fixture(scope="session", autouse=True)
def _tests_write_only_under_tmp() -> Iterator[None]:
    """Tests write under tmp paths only: a file a test session leaves in the checkout (like
    the ``src.parquet`` that a relative path once leaked) fails the run, named."""
    before = _untracked_files()
    yield
    after = _untracked_files()
    if before is not None and after is not None:
        leaked = sorted(after - before)
        assert not leaked, f"the tests left files in the checkout {REPO}: {leaked}"


def draw_shape(shape: str, *, size: int = 28, seed: int = 0) -> object:
    """A white-on-black glyph of ``shape`` with a random offset and scale (MNIST-like)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    r = rng.randint(size // 4, size // 3)
    cx = size // 2 + rng.randint(-2, 2)
    cy = size // 2 + rng.randint(-2, 2)
    box = (cx - r, cy - r, cx + r, cy + r)
    width = rng.randint(2, 3)
    if shape == "circle":
        d.ellipse(box, outline=255, width=width)
    elif shape == "square":
        d.rectangle(box, outline=255, width=width)
    elif shape == "cross":
        d.line((box[0], box[1], box[2], box[3]), fill=255, width=width)
        d.line((box[0], box[3], box[2], box[1]), fill=255, width=width)
    else:
        d.polygon([(cx, box[1]), (box[0], box[3]), (box[2], box[3])], outline=255, width=width)
    return img


def make_image_folder(root: Path, *, per_class: int = 6, size: int = 28,
                      shapes: tuple[str, ...] = SHAPES) -> list[Path]:
    """``root/<shape>/<i>.png`` for each shape; returns the files in sorted order."""
    files = []
    for c, shape in enumerate(shapes):
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = root / shape / f"{i:03d}.png"
            draw_shape(shape, size=size, seed=1000 * c + i).save(path)  # type: ignore[attr-defined]
            files.append(path)
    return sorted(files)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[object]:
    """A fresh workspace in a temp folder."""
    import pixql

    db = pixql.connect(tmp_path / "ws", progress=False)
    yield db
    db.close()


@pytest.fixture
def image_ws(ws: object) -> object:
    """A workspace with ``shapes/<shape>/<i>.png`` (4 classes × 6) and a table ``images``
    (image_path, filename, label) loaded with COPY from the folder."""
    make_image_folder(ws.root / "shapes")  # type: ignore[attr-defined]
    ws.sql("COPY images OPTIONS (if_exists='replace') FROM 'shapes/'")  # type: ignore[attr-defined]
    return ws


@pytest.fixture(scope="session")
def ray_session() -> Iterator[object]:
    """A Ray started by pixql in this process (2 logical CPUs, bound to 127.0.0.1), shared
    by the tests of engine='ray'; skipped when Ray is not installed. A test module that
    needs another Ray (tests/distributed's loopback cluster) shuts it down; the next user
    gets a fresh one through :func:`ray_local`."""
    pytest.importorskip("ray")
    yield None
    import ray

    ray.shutdown()


@pytest.fixture
def ray_local(ray_session: object) -> object:
    """The session's Ray (started on first use, or again after a module shut it down)."""
    from pixql.distributed.cluster import connect

    return connect(None, num_cpus=2)
