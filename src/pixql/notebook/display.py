"""HTML views of results for notebooks: an image grid (PRINT IMAGE) and a thumbnail table.

Both return one self-contained HTML string: every picture is a base64 PNG thumbnail inlined
as ``<img src="data:image/png;base64,...">``, so the notebook keeps showing them after the
files move, and nothing needs a file server. Every text from the data (paths, captions, cell
values) is HTML-escaped. A picture that cannot be read becomes a placeholder naming the
problem; it never fails the whole view.

Examples:
    >>> from pixql.notebook.display import image_grid, thumbnail_table
    >>> res = db.sql("PRINT IMAGE AS SELECT * FROM images LIMIT 8")  # doctest: +SKIP
    >>> html = image_grid(res, db)                                  # doctest: +SKIP
    >>> html = thumbnail_table(db.sql("SELECT * FROM images"), db)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pixql.errors import ImageError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from pixql.connection import AnyWorkspace
    from pixql.execution.result import Result

#: side of a grid thumbnail in CSS pixels (ThanoSQL shows PRINT IMAGE at 240×240)
GRID_SIZE = 240
#: side of a thumbnail in a table cell
TABLE_SIZE = 96
#: most pictures one view shows (the rest is counted in a note)
MAX_IMAGES = 100
#: most caption fields under a grid picture
MAX_CAPTION_FIELDS = 4
#: longest text shown in a table cell or caption field
MAX_TEXT = 60
#: threads that read and shrink pictures
WORKERS = 4

GRID_CSS = "display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start"
FIGURE_CSS = "margin:0;width:{size}px;font:12px/1.3 monospace;overflow-wrap:anywhere"
PLACEHOLDER_CSS = ("width:{size}px;height:{size}px;display:flex;align-items:center;"
                   "justify-content:center;background:#eee;color:#a00;text-align:center")


@dataclass(frozen=True)
class Picture:
    """One picture of a result row: the stored path, the file it points at, its caption."""

    row: int
    stored: str
    path: Path
    caption: list[str]


def image_column(result: Result) -> str | None:
    """The column holding image paths: PRINT IMAGE's ``image_col``, else ``image_path``."""
    if result.image_col:
        return result.image_col
    return "image_path" if "image_path" in result.columns else None


def is_vector(value: Any) -> bool:
    """Whether ``value`` looks like an embedding (a list/array of numbers or bytes)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return True
    if hasattr(value, "shape") and getattr(value, "ndim", 0) >= 1:
        return True
    return isinstance(value, (list, tuple)) and len(value) > 4 and all(
        isinstance(v, (int, float)) or v is None for v in value[:8])


def format_value(value: Any, *, limit: int = MAX_TEXT) -> str:
    """A short plain-text form of a cell: floats with 6 decimals, vectors abbreviated."""
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.6f}"
    if is_vector(value):
        size = len(value) if not hasattr(value, "shape") else int(value.shape[0])
        head = list(value[:3]) if not isinstance(value, (bytes, bytearray, memoryview)) else []
        shown = ", ".join(f"{float(v):.4f}" for v in head if v is not None)
        return f"[{shown}, … ({size})]" if shown else f"<{size} bytes>"
    text = str(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pictures(result: Result, ws: AnyWorkspace, *, limit: int = MAX_IMAGES,
             caption_fields: int = MAX_CAPTION_FIELDS) -> tuple[list[Picture], int]:
    """The first ``limit`` pictures of ``result`` in row order, and how many there are in all.

    Rows whose image column is NULL have no picture. Captions are ``column=value`` of the
    other selected columns (embeddings left out), at most ``caption_fields`` of them.
    """
    col = image_column(result)
    if col is None:
        return [], 0
    values = result.table.column(col).to_pylist()
    chosen = [i for i, v in enumerate(values) if v is not None]
    others = [(name, result.table.column(j)) for j, name in enumerate(result.columns)
              if name != col]
    out = []
    for i in chosen[:limit]:
        cells = [(name, column[i].as_py()) for name, column in others]
        caption = [f"{name}={format_value(v)}" for name, v in cells if not is_vector(v)]
        stored = str(values[i])
        out.append(Picture(i, stored, ws.resolve(stored), caption[:caption_fields]))
    return out, len(chosen)


def open_small(path: Path, size: int) -> tuple[Any, tuple[int, int]]:
    """Open a picture for a ``size`` px thumbnail, and its original (width, height).

    JPEGs are decoded at a reduced scale (``draft``), several times faster for photos; the
    pixel cap and EXIF orientation are applied as in :func:`pixql.images.load_image`.
    ImageError when the file is missing, too large or not an image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from pixql.images import DEFAULT_MAX_PIXELS

    if not path.is_file():
        raise ImageError(f"image file not found: {path}", paths=[str(path)])
    try:
        with Image.open(path) as img:
            original = img.size
            if original[0] * original[1] > DEFAULT_MAX_PIXELS:
                raise ImageError(f"{path}: image is {original[0]}x{original[1]} pixels, over "
                                 f"the cap of {DEFAULT_MAX_PIXELS}", paths=[str(path)])
            img.draft(None, (size, size))
            img.load()
            turned = ImageOps.exif_transpose(img)
            return (turned if turned is not None else img.copy()), original
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
            SyntaxError) as e:
        raise ImageError(f"{path}: not a readable image ({e})", paths=[str(path)]) from e


def thumbnail_png(path: Path, size: int) -> tuple[bytes, tuple[int, int]]:
    """A PNG of the picture shrunk to fit ``size``×``size`` (never enlarged), and the
    original (width, height). ImageError when the file is missing or not an image."""
    img, original = open_small(path, size)
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue(), original


def img_tag(path: Path, size: int, *, title: str = "") -> str:
    """An ``<img>`` of the picture in a ``size`` px box (small pictures are enlarged by the
    browser without smoothing, like MNIST digits), or a placeholder naming the problem."""
    try:
        data, (w, h) = thumbnail_png(path, size)
    except ImageError as e:
        css = PLACEHOLDER_CSS.format(size=size)
        return f'<div style="{css}" title="{html.escape(str(e))}">{html.escape(_short(e))}</div>'
    pixelated = ";image-rendering:pixelated" if max(w, h) < size else ""
    style = f"width:{size}px;height:{size}px;object-fit:contain{pixelated}"
    src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    label = html.escape(title)
    return f'<img src="{src}" style="{style}" title="{label}" alt="{label}">'


def _short(error: ImageError) -> str:
    text = str(error)
    return "image not found" if "not found" in text else "unreadable image"


def render_tags(items: Sequence[Path], size: int, titles: Sequence[str]) -> list[str]:
    """``img_tag`` of each path, in order (read in a few threads)."""
    from pixql.images import map_ordered

    pairs = list(zip(items, titles, strict=True))
    make: Callable[[tuple[Path, str]], str] = lambda p: img_tag(p[0], size, title=p[1])  # noqa: E731
    tags: list[str] = []
    for chunk in map_ordered(make, pairs, workers=min(WORKERS, max(1, len(pairs))), chunk=16):
        tags.extend(chunk)
    return tags


def more_note(shown: int, total: int, what: str) -> str:
    """``<p>`` saying how many were left out (empty when none)."""
    if total <= shown:
        return ""
    return (f'<p style="font:12px monospace;color:#555">showing the first {shown} of {total} '
            f"{what}; narrow it with LIMIT or show more with --max-images N</p>")


def image_grid(result: Result, ws: AnyWorkspace, *, size: int = GRID_SIZE,
               max_images: int = MAX_IMAGES) -> str:
    """One HTML block showing the result's pictures in a wrapping grid, in row order.

    Each picture sits in a ``size`` px box above its caption: the stored path, then
    ``column=value`` of the other selected columns (e.g. ``search_result=0.964153``).
    """
    pics, total = pictures(result, ws, limit=max_images)
    if not pics:
        return '<p style="font:12px monospace">no images in this result</p>'
    tags = render_tags([p.path for p in pics], size, [p.stored for p in pics])
    figures = []
    for pic, tag in zip(pics, tags, strict=True):
        lines = [html.escape(format_value(pic.stored, limit=MAX_TEXT * 2))]
        lines += [html.escape(c) for c in pic.caption]
        caption = "<br>".join(lines)
        figures.append(f'<figure class="pixql-image" data-row="{pic.row}" '
                       f'style="{FIGURE_CSS.format(size=size)}">{tag}'
                       f"<figcaption>{caption}</figcaption></figure>")
    body = "".join(figures)
    return (f'<div class="pixql-grid" style="{GRID_CSS}">{body}</div>'
            + more_note(len(pics), total, "images"))


def thumbnail_table(result: Result, ws: AnyWorkspace, *, size: int = TABLE_SIZE,
                    max_rows: int = MAX_IMAGES) -> str:
    """An HTML table of the result's first ``max_rows`` rows with the image column drawn
    as thumbnails (path underneath) and embeddings abbreviated."""
    head_rows = result.table.slice(0, max_rows)
    columns = [c.to_pylist() for c in head_rows.columns]
    col = image_column(result)
    paths = columns[result.columns.index(col)] if col else [None] * head_rows.num_rows
    with_image = [i for i, p in enumerate(paths) if p is not None]
    rendered = render_tags([ws.resolve(str(paths[i])) for i in with_image], size,
                           [str(paths[i]) for i in with_image])
    tags = dict(zip(with_image, rendered, strict=True))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in result.columns)
    body = []
    for i in range(head_rows.num_rows):
        cells = []
        for name, values in zip(result.columns, columns, strict=True):
            text = html.escape(format_value(values[i]))
            if name == col and i in tags:
                text = f"{tags[i]}<br>{text}"
            cells.append(f"<td>{text}</td>")
        body.append(f"<tr><th>{i}</th>{''.join(cells)}</tr>")
    table = (f'<table class="dataframe pixql-thumbs"><thead><tr><th></th>{head}</tr></thead>'
             f"<tbody>{''.join(body)}</tbody></table>")
    return table + more_note(head_rows.num_rows, result.table.num_rows, "rows")
