"""Generated test images for the reliability tests: many modes and formats, broken files,
decompression bombs and EXIF-rotated JPEGs (nothing is downloaded)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image

#: EXIF orientation → the transform that, undone by ``exif_transpose``, gives the upright image
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
ORIENTATION_TAG = 0x0112


def upright(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """An asymmetric RGB picture (gradient, a bright block top-left, a bar at the bottom)."""
    w, h = size
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[..., 0] = np.linspace(0, 200, w, dtype=np.uint8)[None, :]
    arr[..., 2] = np.linspace(0, 160, h, dtype=np.uint8)[:, None]
    arr[: h // 3, : w // 3] = 255
    arr[-6:, w // 2 :] = (0, 220, 0)
    return Image.fromarray(arr, "RGB")


def encode(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg(img: Image.Image, orientation: int | None = None) -> bytes:
    """High-quality 4:4:4 JPEG, with an EXIF Orientation tag when given."""
    kw: dict[str, Any] = {"quality": 95, "subsampling": 0}
    if orientation is not None:
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation
        kw["exif"] = exif.tobytes()
    return encode(img, "JPEG", **kw)


def exif_rotated(img: Image.Image, orientation: int) -> tuple[bytes, bytes]:
    """(JPEG stored rotated with the EXIF tag that makes it upright, the same JPEG without
    the tag: what a reader ignoring EXIF would see)."""
    stored = img.transpose(STORED_AS[orientation])
    return jpeg(stored, orientation), jpeg(stored)


def good_images() -> dict[str, bytes]:
    """Images every path must embed: grey, palette, alpha, 1-bit, 16-bit, CMYK, many formats."""
    base = upright()
    grey16 = Image.fromarray(np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    palette_t = base.convert("P")
    palette_t.info["transparency"] = 0
    frames = [base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50)
    return {
        "rgb.png": encode(base, "PNG"),
        "grey.png": encode(base.convert("L"), "PNG"),
        "grey-alpha.png": encode(base.convert("LA"), "PNG"),
        "palette.png": encode(base.convert("P"), "PNG"),
        "palette-transparent.png": encode(palette_t, "PNG"),
        "rgba.png": encode(base.convert("RGBA"), "PNG"),
        "bilevel.png": encode(base.convert("1"), "PNG"),
        "grey16.png": encode(grey16, "PNG"),
        "rgb.jpg": jpeg(base),
        "grey.jpg": encode(base.convert("L"), "JPEG"),
        "cmyk.jpg": encode(base.convert("CMYK"), "JPEG"),
        "progressive.jpg": encode(base, "JPEG", progressive=True),
        "animated.gif": gif.getvalue(),
        "image.bmp": encode(base, "BMP"),
        "image.webp": encode(base, "WEBP"),
        "float.tif": encode(base.convert("F"), "TIFF"),
        "tiny-1x1.png": encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
        "thin-1000x1.png": encode(Image.new("L", (1000, 1), 128), "PNG"),
    }


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b""))


def bad_images(max_pixels: int) -> dict[str, tuple[bytes, str]]:
    """Files that must be refused: name → (bytes, a regex the error message must match)."""
    png = encode(upright(), "PNG")
    jpg = jpeg(upright())
    corrupt = bytearray(png)
    idat = png.index(b"IDAT") + 8
    corrupt[idat : idat + 40] = bytes(40)
    side = int(max_pixels**0.5) + 50
    return {
        "empty.png": (b"", "empty"),
        "text.png": (b"hello, I am not an image\n", "not a decodable image"),
        "html.jpg": (b"<!doctype html><html><body>404</body></html>", "not a decodable image"),
        "pdf.png": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "not a decodable"),
        "random.png": (bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)),
                       "not a decodable image"),
        "header-only.png": (png[:33], "not a decodable image|truncated"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "truncated.jpg": (jpg[: len(jpg) // 2], "truncated"),
        "corrupt.png": (bytes(corrupt), "corrupt"),
        "over-the-cap.png": (encode(Image.new("L", (side, side)), "PNG"), "over the cap"),
        "bomb-100mpx.png": (png_claiming(10_000, 10_000), "over the cap"),
        "bomb-10gpx.png": (png_claiming(100_000, 100_000), "decompression bomb|over the cap"),
    }
