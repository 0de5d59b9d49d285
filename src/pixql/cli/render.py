"""Printing results in the terminal, and writing contact sheets of their images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pixql.connection import AnyWorkspace
    from pixql.execution.result import Result

#: columns whose values make good captions, in order of preference
CAPTION_COLS = ("search_result", "score", "label", "filename")


def result_images(result: Result, ws: AnyWorkspace) -> tuple[list[Path], list[str]]:
    """The image paths of a result (PRINT IMAGE, or any result with an ``image_path`` column)
    and one caption per image from the other selected columns."""
    col = result.image_col or ("image_path" if "image_path" in result.columns else None)
    if col is None:
        return [], []
    rows = result.table.to_pylist()
    paths, captions = [], []
    for row in rows:
        if row.get(col) is None:
            continue
        paths.append(ws.resolve(str(row[col])))
        captions.append(_caption(row, col))
    return paths, captions


def _caption(row: dict[str, object], image_col: str) -> str:
    parts = []
    for key in CAPTION_COLS:
        if key in row and key != image_col and row[key] is not None:
            value = row[key]
            parts.append(f"{value:.4f}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts[:2])


def emit_result(result: Result, ws: AnyWorkspace, *, show: str | None, max_rows: int) -> None:
    """Print the table; write a contact sheet for PRINT IMAGE or when ``show`` is given."""
    print(result.render(max_rows=max_rows))
    if result.images is None and not show:
        return
    paths, captions = result_images(result, ws)
    if not paths:
        print("no images in this result", file=sys.stderr)
        return
    from pixql.contact_sheet import make_contact_sheet

    out = Path(show) if show else ws.root / "print_image.png"
    make_contact_sheet(paths, captions, out)
    print(f"wrote {len(paths)} image(s) to {out}")
