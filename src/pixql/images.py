"""Image decoding shared by SQL and HTTP: one place for caps, EXIF and error messages."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixql.errors import ImageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

#: default cap on decoded pixels (width × height): 64 megapixels
DEFAULT_MAX_PIXELS = 64_000_000


def _open(fp: Any, max_pixels: int, name: str) -> Any:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(fp) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(
                    f"{name}: image is {w}x{h} = {w * h} pixels, over the cap of {max_pixels}",
                    paths=[name],
                )
            img.load()
            out = ImageOps.exif_transpose(img)
            return _eight_bit(out if out is not None else img.copy())
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        raise ImageError(f"{name}: not a decodable image (unknown or unsupported format)",
                         paths=[name]) from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: image too large to decode safely ({e})", paths=[name]) from e
    except (OSError, ValueError, SyntaxError) as e:  # truncated / corrupt data
        raise ImageError(f"{name}: corrupt or truncated image ({e})", paths=[name]) from e


#: 16-bit grey modes: Pillow's convert("L"/"RGB") clips them at 255 instead of scaling
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


def _eight_bit(img: Any) -> Any:
    """16-bit grey → 8-bit grey scaled over the 16-bit range (a 16-bit PNG would otherwise
    come out saturated white when converted to L or RGB)."""
    if img.mode not in _SIXTEEN_BIT:
        return img
    import numpy as np
    from PIL import Image

    return Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8), "L")


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> Any:
    """Decode bytes into a PIL image (EXIF orientation applied); ImageError when impossible."""
    if not data:
        raise ImageError(f"{name}: empty image payload", paths=[name])
    return _open(io.BytesIO(data), max_pixels, name)


def load_image(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Any:
    """Read and decode an image file; ImageError names the path when it is missing or bad."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image file not found: {p}", paths=[str(p)])
    if p.stat().st_size == 0:
        raise ImageError(f"image file is empty: {p}", paths=[str(p)])
    return _open(p, max_pixels, str(p))


def map_ordered(
    fn: Callable[[Any], Any], items: Sequence[Any], *, workers: int, chunk: int
) -> Iterator[list[Any]]:
    """Apply ``fn`` to ``items`` in a thread pool, yielding results in order, ``chunk`` at a time.

    Results of the next chunk are computed while the caller consumes the current one, so the
    decoding never starves the model. Each chunk is cut into one contiguous slice per worker
    and each slice is one task: a future per item cost more than decoding a small image
    (MNIST: 2,900 images/s with a future each on two threads, against 6,500/s in one
    thread). ``fn`` should catch its own errors when the caller wants to keep going;
    exceptions propagate otherwise.
    """
    if workers <= 1:
        for i in range(0, len(items), chunk):
            yield [fn(x) for x in items[i : i + chunk]]
        return

    def run(part: Sequence[Any]) -> list[Any]:
        return [fn(x) for x in part]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pixql-decode") as pool:
        pending = None
        for i in range(0, len(items), chunk):
            part = items[i : i + chunk]
            step = -(-len(part) // workers)  # ceil: at most ``workers`` slices
            futures = [pool.submit(run, part[j : j + step]) for j in range(0, len(part), step)]
            if pending is not None:
                yield [y for f in pending for y in f.result()]
            pending = futures
        if pending is not None:
            yield [y for f in pending for y in f.result()]


def default_workers() -> int:
    """Decoding threads: the number of usable cores (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
