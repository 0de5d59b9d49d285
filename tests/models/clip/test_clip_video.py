"""Video embeddings: frames sampled evenly with PyAV, frame embeddings averaged."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from pixql.errors import ImageError
from pixql.models.clip.video import count_frames, frame_indices, sample_frames

if TYPE_CHECKING:
    from pathlib import Path

av = pytest.importorskip("av", reason="PyAV is needed to write and read test videos")

N_FRAMES = 20


def write_video(path: Path, n: int = N_FRAMES, size: int = 32) -> Path:
    """An MPEG-4 video whose frame i is a flat colour that changes with i."""
    try:
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=10)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            for i in range(n):
                arr = np.zeros((size, size, 3), np.uint8)
                arr[..., 0] = 12 * i
                arr[..., 1] = 255 - 12 * i
                arr[: size // 2, :, 2] = 200
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except (av.FFmpegError, ValueError) as e:  # pragma: no cover - codec missing here
        pytest.skip(f"cannot write an MPEG-4 video with this PyAV build: {e}")
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def test_frame_indices_are_segment_centres():
    assert frame_indices(20, 4) == [2, 7, 12, 17]
    assert frame_indices(3, 3) == [0, 1, 2]
    assert frame_indices(2, 4) == [0, 0, 1, 1]
    assert frame_indices(1, 2) == [0, 0]
    with pytest.raises(ValueError, match="need total >= 1"):
        frame_indices(0, 2)


def test_sample_frames_picks_the_right_frames(video):
    assert count_frames(video) == N_FRAMES
    frames = sample_frames(video, 4)
    assert len(frames) == 4
    assert all(f.mode == "RGB" for f in frames)
    reds = [np.asarray(f)[..., 0].mean() for f in frames]
    for red, i in zip(reds, [2, 7, 12, 17], strict=True):
        assert abs(red - 12 * i) < 8, (reds, i)


def test_video_embedding_is_normalised_mean_of_frame_embeddings(tiny_clip, video):
    got = tiny_clip.embed([str(video)], "video")
    frames = sample_frames(video, tiny_clip.video_frames)
    per_frame = tiny_clip.embed(frames, "image")  # L2-normalised
    mean = per_frame.mean(axis=0)
    np.testing.assert_allclose(got[0], mean / np.linalg.norm(mean), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_batch_of_videos_keeps_videos_apart(tiny_clip, video, tmp_path):
    short = write_video(tmp_path / "short.mp4", n=3)
    both = tiny_clip.embed([str(video), str(short)], "video")
    np.testing.assert_allclose(both[0], tiny_clip.embed([str(video)], "video")[0], atol=1e-5)
    np.testing.assert_allclose(both[1], tiny_clip.embed([str(short)], "video")[0], atol=1e-5)
    assert not np.allclose(both[0], both[1])


def test_bad_videos_raise_image_error_naming_the_path(tiny_clip, tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(ImageError, match="video file not found") as e:
        tiny_clip.embed([str(missing)], "video")
    assert e.value.paths == [str(missing)]
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(ImageError, match=r"junk\.mp4"):
        tiny_clip.embed([str(junk)], "video")
