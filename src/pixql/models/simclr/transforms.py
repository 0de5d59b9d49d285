"""Batched SimCLR augmentations on tensors.

Every step works on a whole batch at once (one affine grid sample, one grouped blur
convolution, vectorised colour jitter), so augmenting never starves the model on a CPU.
The recipe follows Chen et al. 2020 (arXiv:2002.05709, appendix A): random resized crop,
colour distortion and Gaussian blur, plus small rotations and shears, random zoom-out and
shifts, and Gaussian noise. Zoom-out and shifts matter for small centred images such as
digits, where a crop alone only ever enlarges the glyph: with them the model learns that a
smaller or off-centre digit is the same digit, which raw pixels never see. Horizontal flips
are off by default: they make a model blind to mirror images (digits, text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from collections.abc import Sequence


#: largest zoom-out per side at augmentation strength 1 (0.15: a view may show the image
#: shrunk to 1/1.15 of its side; 0.3 and 0 both measured worse, see RESULTS.md)
ZOOM_OUT = 0.15
#: largest extra shift at augmentation strength 1, as a share of the side
TRANSLATE = 0.05


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation magnitudes (0 turns a step off).

    Attributes:
        crop_scale_min: smallest area share of a random resized crop (1.0: no cropping).
        zoom_out: largest zoom-out factor per side (1.0: none); the view's area share is
            uniform in ``[crop_scale_min, zoom_out ** 2]``, so values above 1 shrink the image
            inside the view (the border pixels fill the rest).
        translate: largest extra shift, as a share of the side, in each direction.
        aspect_max: largest crop aspect ratio (its inverse is the smallest).
        rotation_deg: rotations are uniform in ``[-rotation_deg, rotation_deg]``.
        shear_deg: shears are uniform in ``[-shear_deg, shear_deg]``.
        brightness: additive brightness jitter, uniform in ``[-b, b]`` (images in [0, 1]).
        contrast: multiplicative contrast jitter, uniform in ``[1 - c, 1 + c]``.
        saturation: RGB only; blend towards grey by up to this share.
        grayscale_prob: RGB only; probability of turning a view grey.
        blur_prob: probability of a Gaussian blur.
        blur_sigma_max: largest blur sigma, in pixels (sigma is uniform from 0.1).
        noise_std: std of additive Gaussian noise (applied to half the views).
        erase_prob: probability of erasing one random rectangle (cutout).
        flips: whether to flip horizontally with probability 0.5.
    """

    crop_scale_min: float = 0.5
    zoom_out: float = 1.0
    translate: float = 0.0
    aspect_max: float = 4 / 3
    rotation_deg: float = 15.0
    shear_deg: float = 10.0
    brightness: float = 0.3
    contrast: float = 0.4
    saturation: float = 0.6
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5
    blur_sigma_max: float = 1.0
    noise_std: float = 0.05
    erase_prob: float = 0.0
    flips: bool = False

    @classmethod
    def from_strength(cls, strength: float, *, flips: bool = False,
                      image_size: int = 28) -> AugmentConfig:
        """Scale every magnitude by ``strength`` (1.0: the defaults, 0: no augmentation)."""
        s = max(0.0, float(strength))
        return cls(
            crop_scale_min=max(0.08, 1.0 - 0.5 * s),
            zoom_out=1.0 + ZOOM_OUT * min(s, 2.0),
            translate=TRANSLATE * min(s, 2.0),
            aspect_max=1.0 + (1 / 3) * min(s, 1.5),
            rotation_deg=15.0 * s,
            shear_deg=10.0 * s,
            brightness=min(0.3 * s, 0.8),
            contrast=min(0.4 * s, 0.9),
            saturation=min(0.6 * s, 1.0),
            grayscale_prob=min(0.2 * s, 1.0),
            blur_prob=min(0.5 * s, 1.0),
            blur_sigma_max=max(0.1, image_size / 28 * s),
            noise_std=0.05 * s,
            flips=flips,
        )


class SimCLRTransform:
    """One random view of every image in a batch.

    Args:
        config: augmentation magnitudes.
        mean: per-channel mean used to normalise the output.
        std: per-channel standard deviation used to normalise the output.

    Shapes:
        ``uint8 (n, c, s, s)`` (or float in [0, 1]) → ``float32 (n, c, s, s)``, normalised.
    """

    def __init__(self, config: AugmentConfig, *, mean: Sequence[float],
                 std: Sequence[float]) -> None:
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(
                f"mean and std need one entry per channel and std > 0, got {mean}, {std}")
        self.config = config
        self.mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment and normalise a batch."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        x = self._geometry(x, generator)
        x = self._colour(x, generator)
        x = self._blur(x, generator)
        x = self._noise_and_erase(x, generator)
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.clamp_(0.0, 1.0) - mean) / std

    def _rand(self, n: int, lo: float, hi: float, x: torch.Tensor,
              g: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(n, generator=g, device=g.device if g else x.device).to(x.device)
        return u * (hi - lo) + lo

    def _geometry(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """Random resized crop, rotation, shear and flip as one affine warp per image."""
        c, n = self.config, x.shape[0]
        area = self._rand(n, c.crop_scale_min, max(1.0, c.zoom_out) ** 2, x, g)
        log_r = self._rand(n, -math.log(c.aspect_max), math.log(c.aspect_max), x, g)
        top = max(1.0, c.zoom_out)
        sx = torch.sqrt(area * torch.exp(log_r)).clamp(max=top)  # view width share (>1: zoom out)
        sy = torch.sqrt(area / torch.exp(log_r)).clamp(max=top)
        shift = 2.0 * c.translate
        tx = self._rand(n, -1.0, 1.0, x, g) * (1 - sx).abs() + self._rand(n, -shift, shift, x, g)
        ty = self._rand(n, -1.0, 1.0, x, g) * (1 - sy).abs() + self._rand(n, -shift, shift, x, g)
        rot = torch.deg2rad(self._rand(n, -c.rotation_deg, c.rotation_deg, x, g))
        shear = torch.tan(torch.deg2rad(self._rand(n, -c.shear_deg, c.shear_deg, x, g)))
        flip = torch.ones(n, device=x.device)
        if c.flips:
            flip = torch.where(self._rand(n, 0.0, 1.0, x, g) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(rot), torch.sin(rot)
        # output coords → input coords: translate · rotate · shear · scale(·flip)
        a = cos * sx * flip
        b = (cos * shear - sin) * sy
        d = sin * sx * flip
        e = (sin * shear + cos) * sy
        theta = torch.stack([torch.stack([a, b, tx], 1), torch.stack([d, e, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _colour(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """Brightness, contrast and (RGB) saturation jitter and random greyscale."""
        c, n = self.config, x.shape[0]
        shape = (n, 1, 1, 1)
        if x.shape[1] == 3:
            grey = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
            keep = 1.0 - self._rand(n, 0.0, c.saturation, x, g).view(shape)
            to_grey = self._rand(n, 0.0, 1.0, x, g).view(shape) < c.grayscale_prob
            keep = torch.where(to_grey, 0.0, keep)
            x = grey + (x - grey) * keep
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        contrast = self._rand(n, 1 - c.contrast, 1 + c.contrast, x, g).view(shape)
        bright = self._rand(n, -c.brightness, c.brightness, x, g).view(shape)
        return (x - mean) * contrast + mean + bright

    def _blur(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """Separable Gaussian blur with a random sigma per image (grouped convolution)."""
        c, (n, ch, h, w) = self.config, x.shape
        if c.blur_prob <= 0:
            return x
        radius = max(1, math.ceil(2 * c.blur_sigma_max))
        sigma = self._rand(n, 0.1, max(0.1, c.blur_sigma_max), x, g)
        sigma = torch.where(self._rand(n, 0.0, 1.0, x, g) < c.blur_prob, sigma, 1e-3)
        taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-(taps.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
        k = (k / k.sum(1, keepdim=True)).repeat_interleave(ch, 0)  # (n*ch, taps)
        y = x.reshape(1, n * ch, h, w)
        y = F.pad(y, (radius, radius, radius, radius), mode="replicate")
        y = F.conv2d(y, k.view(n * ch, 1, 1, -1), groups=n * ch)
        y = F.conv2d(y, k.view(n * ch, 1, -1, 1), groups=n * ch)
        return y.view(n, ch, h, w)

    def _noise_and_erase(self, x: torch.Tensor, g: torch.Generator | None) -> torch.Tensor:
        """Additive Gaussian noise on half the views, and an optional cutout rectangle."""
        c, n = self.config, x.shape[0]
        if c.noise_std > 0:
            on = (self._rand(n, 0.0, 1.0, x, g) < 0.5).float().view(n, 1, 1, 1)
            noise = torch.randn(x.shape, generator=g, device=g.device if g else x.device)
            x = x + noise.to(x.device) * c.noise_std * on
        if c.erase_prob > 0:
            x = _erase(x, c.erase_prob, self._rand(n * 5, 0.0, 1.0, x, g).view(5, n))
        return x


def _erase(x: torch.Tensor, prob: float, u: torch.Tensor) -> torch.Tensor:
    """Zero one rectangle (side 20–50% of the image) in a ``prob`` share of the images."""
    n, _, h, w = x.shape
    eh, ew = (0.2 + 0.3 * u[0]) * h, (0.2 + 0.3 * u[1]) * w
    y0, x0 = u[2] * (h - eh), u[3] * (w - ew)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1))
              & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1)))
    mask = inside & (u[4] < prob).view(n, 1, 1)
    return x.masked_fill(mask.unsqueeze(1), 0.0)


class MultiViewTransform:
    """Applies a transform ``n_views`` times, independently, to the same batch.

    Shapes: ``(n, c, s, s)`` → list of ``n_views`` tensors ``(n, c, s, s)``.
    """

    def __init__(self, transform: SimCLRTransform, n_views: int = 2) -> None:
        if n_views < 2:
            raise ValueError(f"contrastive learning needs n_views >= 2, got {n_views}")
        self.transform = transform
        self.n_views = n_views

    def __call__(self, images: torch.Tensor,
                 generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """The views, in order."""
        return [self.transform(images, generator) for _ in range(self.n_views)]
