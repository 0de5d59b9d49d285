"""Batched augmentations: shapes, reproducibility, the identity at strength 0, flips."""

from __future__ import annotations

import pytest
import torch

from pixql.models.simclr.transforms import AugmentConfig, MultiViewTransform, SimCLRTransform


def _batch(n: int = 8, c: int = 1, s: int = 28) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, c, s, s), generator=gen, dtype=torch.uint8)


def _gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels", [1, 3])
def test_output_is_normalised_float_of_same_shape(channels: int) -> None:
    tf = SimCLRTransform(AugmentConfig.from_strength(1.0), mean=[0.5] * channels,
                         std=[0.25] * channels)
    out = tf(_batch(c=channels), _gen())
    assert out.shape == (8, channels, 28, 28)
    assert out.dtype == torch.float32
    assert out.min() >= (0 - 0.5) / 0.25 - 1e-5
    assert out.max() <= (1 - 0.5) / 0.25 + 1e-5


def test_same_seed_same_views_other_seed_other_views() -> None:
    tf = SimCLRTransform(AugmentConfig.from_strength(1.0), mean=[0.1], std=[0.3])
    x = _batch()
    assert torch.equal(tf(x, _gen(5)), tf(x, _gen(5)))
    assert not torch.allclose(tf(x, _gen(5)), tf(x, _gen(6)))


def test_strength_zero_is_the_identity() -> None:
    tf = SimCLRTransform(AugmentConfig.from_strength(0.0), mean=[0.0], std=[1.0])
    x = _batch()
    assert torch.allclose(tf(x, _gen()), x.float() / 255.0, atol=1e-4)


def _arrow() -> torch.Tensor:
    img = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    img[..., 4:12, 2:6] = 255  # a bar on the left
    return img.repeat(16, 1, 1, 1)


def test_flips_only_when_asked() -> None:
    still = AugmentConfig.from_strength(0.0)
    x = _arrow()
    no_flip = SimCLRTransform(still, mean=[0.0], std=[1.0])(x, _gen())
    assert (no_flip[..., :8].sum(dim=(1, 2, 3)) > no_flip[..., 8:].sum(dim=(1, 2, 3))).all()
    flipping = AugmentConfig(**{**still.__dict__, "flips": True})
    out = SimCLRTransform(flipping, mean=[0.0], std=[1.0])(x, _gen())
    mirrored = out[..., 8:].sum(dim=(1, 2, 3)) > out[..., :8].sum(dim=(1, 2, 3))
    assert 0 < int(mirrored.sum()) < 16  # about half of them, never all or none


def test_cutout_zeroes_a_rectangle() -> None:
    cfg = AugmentConfig(**{**AugmentConfig.from_strength(0.0).__dict__, "erase_prob": 1.0})
    x = torch.full((4, 1, 20, 20), 255, dtype=torch.uint8)
    out = SimCLRTransform(cfg, mean=[0.0], std=[1.0])(x, _gen())
    zero_share = (out == 0).float().mean(dim=(1, 2, 3))
    assert ((zero_share > 0.03) & (zero_share < 0.3)).all()


def test_multiview_gives_independent_views() -> None:
    views = MultiViewTransform(SimCLRTransform(AugmentConfig(), mean=[0.0], std=[1.0]), n_views=3)
    out = views(_batch(), _gen())
    assert len(out) == 3
    assert all(v.shape == (8, 1, 28, 28) for v in out)
    assert not torch.allclose(out[0], out[1])


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="n_views >= 2"):
        MultiViewTransform(SimCLRTransform(AugmentConfig(), mean=[0.0], std=[1.0]), n_views=1)
    with pytest.raises(ValueError, match="std > 0"):
        SimCLRTransform(AugmentConfig(), mean=[0.0, 0.0], std=[1.0])


def _geometry_only(**changes: float) -> SimCLRTransform:
    from dataclasses import replace

    still = replace(AugmentConfig.from_strength(0.0), **changes)
    return SimCLRTransform(still, mean=[0.0], std=[1.0])


def _square() -> torch.Tensor:
    img = torch.zeros(4, 1, 32, 32, dtype=torch.uint8)
    img[..., 8:24, 8:24] = 255
    return img


def test_zoom_out_shrinks_the_image_inside_the_view() -> None:
    tf = _geometry_only(crop_scale_min=4.0, zoom_out=2.0)  # every view zoomed out 2x
    out = tf(_square(), _gen())
    ink = (out > 0.5).float().sum(dim=(1, 2, 3))
    assert torch.allclose(ink, torch.full_like(ink, 16 * 16 / 4), rtol=0.2)


def test_translate_moves_the_image() -> None:
    tf = _geometry_only(translate=0.2)
    out = tf(_square(), _gen(3))
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    w = out[:, 0]
    cx = (w * xs).sum(dim=(1, 2)) / w.sum(dim=(1, 2))
    cy = (w * ys).sum(dim=(1, 2)) / w.sum(dim=(1, 2))
    moved = ((cx - 15.5) ** 2 + (cy - 15.5) ** 2).sqrt()
    assert (moved > 0.5).all()
    assert (moved <= 0.2 * 32 * 2 ** 0.5 + 1).all()
