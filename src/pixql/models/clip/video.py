"""Sample frames evenly from a video file with PyAV (FFmpeg bindings).

A video is embedded as the mean of its frames' CLIP embeddings, so only a few frames are
decoded to images: frame ``i`` of ``n`` is the one at the centre of the ``i``-th of ``n``
equal segments of the video (TSN-style sampling). Frames are decoded in order, and decoding
stops after the last frame needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixql.errors import ImageError, MissingDependencyError


def _av() -> Any:
    try:
        import av
    except ImportError as e:  # pragma: no cover - av ships with the clip extra
        raise MissingDependencyError(
            "reading videos needs PyAV: pip install 'pixql[clip]' (or: pip install av)"
        ) from e
    return av


def frame_indices(total: int, n: int) -> list[int]:
    """Indices of ``n`` frames spread evenly over ``total`` frames (segment centres).

    Examples:
        >>> frame_indices(20, 4)
        [2, 7, 12, 17]
        >>> frame_indices(2, 4)
        [0, 0, 1, 1]
    """
    if total < 1 or n < 1:
        raise ValueError(f"need total >= 1 and n >= 1, got total={total}, n={n}")
    return [min(total - 1, int((i + 0.5) * total / n)) for i in range(n)]


def count_frames(path: Path) -> int:
    """Frames of the first video stream: the container's count, else its packets."""
    av = _av()
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        if stream.frames:
            return int(stream.frames)
        return sum(1 for packet in container.demux(stream) if packet.size)


def sample_frames(path: Path | str, n: int) -> list[Any]:
    """``n`` RGB PIL images sampled evenly from the video at ``path``.

    Raises:
        ImageError: the file is missing, empty, not a video, or has no decodable frame.
    """
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"video file not found: {path}", paths=[str(path)])
    try:
        total = count_frames(path)
        if total < 1:
            raise ImageError(f"{path}: the video has no frames", paths=[str(path)])
        return _decode_at(path, frame_indices(total, n))
    except ImageError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise ImageError(f"{path}: not a decodable video ({e})", paths=[str(path)]) from e


def _decode_at(path: Path, wanted: list[int]) -> list[Any]:
    av = _av()
    want = set(wanted)
    last = max(wanted)
    got: dict[int, Any] = {}
    with av.open(str(path)) as container:
        stream = _video_stream(container, path)
        for i, frame in enumerate(container.decode(stream)):
            if i in want:
                got[i] = frame.to_image().convert("RGB")
            if i >= last:
                break
    if not got:
        raise ImageError(f"{path}: no decodable video frame", paths=[str(path)])
    # a container may announce more frames than it decodes: fall back to the last decoded
    fallback = got[max(got)]
    return [got.get(i, fallback) for i in wanted]


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise ImageError(f"{path}: the file has no video stream", paths=[str(path)])
    return container.streams.video[0]
