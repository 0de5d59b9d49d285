"""Helpers shared by the benchmarks: datasets, retrieval metrics, RESULTS.md sections."""

from __future__ import annotations

import os
import platform
import re
import tarfile
from pathlib import Path

from pixql.demo import precision_at_k

__all__ = ["CACHE", "DATASETS", "REPO", "RESULTS", "machine", "precision_at_k", "unpack_mnist",
           "write_section"]

#: repository root (benchmarks/ lives directly under it)
REPO = Path(__file__).resolve().parent.parent
#: the shared datasets folder, next to the repository
DATASETS = REPO.parent / "shared" / "datasets"
#: where unpacked datasets and benchmark workspaces go (outside the repository)
CACHE = Path(os.environ.get("PIXQL_BENCH_CACHE", "~/.cache/pixql")).expanduser()
#: the results file every benchmark writes its own section of
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def unpack_mnist(dest: Path | None = None) -> Path:
    """Unpack ``mnist_png.tar.gz`` once into ``dest`` and return the ``mnist_png`` folder."""
    dest = dest or CACHE / "mnist"
    root = dest / "mnist_png"
    if (root / "train.csv").is_file() and (root / "test.csv").is_file():
        return root
    archive = DATASETS / "mnist_png.tar.gz"
    if not archive.is_file():
        raise SystemExit(f"MNIST archive not found: {archive} (expected ../shared/datasets/)")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return root


def machine() -> str:
    """A one-line description of this machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count() or 0
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.machine()}, {cores} usable cores, load average (1/5/15 min) {load}"


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``.

    Other sections are kept; a lock file keeps benchmarks finishing together from losing
    each other's sections.
    """
    import fcntl

    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    header = "# Benchmark results\n\nEach section is written by the benchmark named in it.\n"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "RESULTS.md.lock", "w") as lock:  # outside the repository
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text(encoding="utf-8") if path.is_file() else header
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _: block, text)
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
        path.write_text(text)
