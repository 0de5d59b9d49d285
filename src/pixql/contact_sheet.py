"""Contact sheets: a grid of image tiles with a caption under each (search results at a glance).

Used by the demo, the CLI and the notebook helpers::

    make_contact_sheet([query, *matches], ["query", "#1 0.98", ...], Path("results.png"))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixql.errors import ImageError
from pixql.images import load_image

if TYPE_CHECKING:
    from collections.abc import Sequence

#: colours (RGB)
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
MISSING = (235, 210, 210)
#: gap between tiles, in pixels
GAP = 6


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1 without sized default font
        return ImageFont.load_default()


def _tile_image(path: Path, tile: int) -> Any:
    """The image scaled to fit ``tile`` square (small images are enlarged with crisp pixels),
    or a placeholder naming the problem."""
    from PIL import Image, ImageDraw

    try:
        img = load_image(path).convert("RGB")
    except ImageError:
        img = Image.new("RGB", (tile, tile), MISSING)
        ImageDraw.Draw(img).text((6, tile // 2 - 8), "unreadable", fill=TEXT, font=_font(14))
        return img
    scale = tile / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS
    return img.resize(size, resample)


def make_contact_sheet(paths: Sequence[Path | str], captions: Sequence[str], out: Path | str, *,
                       tile: int = 128, columns: int = 6, title: str | None = None) -> Path:
    """Draw ``paths`` as a grid of ``tile``-pixel tiles, ``captions[i]`` under tile ``i``.

    Args:
        paths: image files, in reading order (unreadable ones become a marked placeholder).
        captions: one caption per image; ``"\\n"`` starts a new line.
        out: the PNG to write (parent folders are created).
        tile: side of each tile in pixels.
        columns: tiles per row.
        title: optional line of text above the grid.

    Returns:
        ``out`` as a :class:`Path`.

    Raises:
        ValueError: when ``paths`` is empty, ``captions`` has another length, or ``tile`` /
            ``columns`` is below 1.

    Examples:
        >>> from PIL import Image
        >>> for name in ("q.png", "a.png"):
        ...     Image.new("RGB", (32, 32), "teal").save(name)
        >>> make_contact_sheet(["q.png", "a.png"], ["query", "#1 0.97"], "sheet.png")
        PosixPath('sheet.png')
    """
    from PIL import Image, ImageDraw

    if not paths or len(paths) != len(captions) or tile < 1 or columns < 1:
        raise ValueError(f"make_contact_sheet needs one caption per image, at least one image, "
                         f"tile >= 1 and columns >= 1; got {len(paths)} image(s), "
                         f"{len(captions)} caption(s), tile={tile}, columns={columns}")
    font_size = max(10, min(16, tile // 8))
    font = _font(font_size)
    lines = max(str(c).count("\n") + 1 for c in captions)
    caption_h = lines * (font_size + 3) + 4
    title_h = font_size + 12 if title else 0
    cols = min(columns, len(paths))
    rows = -(-len(paths) // cols)
    cell_w, cell_h = tile + GAP, tile + caption_h + GAP
    sheet = Image.new("RGB", (cols * cell_w + GAP, rows * cell_h + GAP + title_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((GAP, GAP), title, fill=TEXT, font=font)
    for i, (path, caption) in enumerate(zip(paths, captions, strict=True)):
        x = GAP + (i % cols) * cell_w
        y = GAP + title_h + (i // cols) * cell_h
        img = _tile_image(Path(path), tile)
        sheet.paste(img, (x + (tile - img.width) // 2, y + (tile - img.height) // 2))
        draw.rectangle((x - 1, y - 1, x + tile, y + tile), outline=(200, 200, 200))
        draw.multiline_text((x + 2, y + tile + 3), str(caption), fill=TEXT, font=font, spacing=3)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
