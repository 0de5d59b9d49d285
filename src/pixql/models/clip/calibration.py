"""A small, fixed batch of photo-like images and captions to check a backend against torch.

The images are generated (no files ship with pixql): smooth colour gradients with filled
shapes, a soft blur and mild sensor-like noise — closer to photographs' statistics than
uniform noise, which matters for int8 quantization (activation ranges). The captions vary in
length from one word to past the 77-token context, so trimmed and full-length text batches
are both exercised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from PIL import Image

    from pixql.models.clip.embedder import ClipEmbedder

CAPTIONS = (
    "a photo of a cat",
    "a black dog running on the beach at sunset",
    "x",
    "two red apples and a green pear on a wooden kitchen table next to an open window",
    "the eiffel tower at night",
    "a hand-drawn diagram of a neural network with three layers",
    "close-up of a blue flower, shallow depth of field",
    " ".join(["a very long caption about a crowded street market"] * 12),
)


def photo_like_images(n: int = 8, size: int = 256, seed: int = 0) -> list[Image.Image]:
    """``n`` deterministic RGB images of ``size``² pixels that look vaguely like photos."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    images = []
    for _ in range(n):
        a, b, c = rng.uniform(0, 255, size=(3, 3))
        base = np.stack([a[i] * (1 - yy) + b[i] * xx + c[i] * yy * xx for i in range(3)], -1)
        img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(3, 9))):
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(size // 10, size // 2, 2)
            color = tuple(int(v) for v in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=color)
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 2.5))))
        noisy = np.asarray(img, np.float32) + rng.normal(0, 6, (size, size, 3))
        images.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB"))
    return images


#: captions static int8 quantization calibrates on (not those of the accuracy check)
QUANTIZATION_CAPTIONS = (
    "a dog",
    "people",
    "sunset over the mountains with a lake in the foreground",
    "a screenshot of a spreadsheet with numbers",
    "portrait of a smiling woman wearing glasses",
    "a red car parked in front of a brick house",
    "aerial view of a city at night with bright lights",
    "a bowl of ramen with an egg, chopsticks and green onions on a dark table",
    "logo",
    "a watercolor painting of a small boat on a calm sea in the early morning",
    "an x-ray of a hand",
    "three children playing football in a park on a sunny afternoon",
    " ".join(["a detailed description of a busy train station during rush hour"] * 8),
    "macro photo of a bee on a yellow flower",
    "a black and white photo of an old man reading a newspaper",
    "text",
)
#: seeds of the images static int8 quantization calibrates on (the check uses seed 0)
QUANTIZATION_SEEDS = (1, 2, 3, 4)


def quantization_samples(embedder: ClipEmbedder, tower: str) -> list[torch.Tensor]:
    """Calibration inputs for static quantization of ``tower``: 4 batches of 8 generated
    images, or the captions one by one (each at its own length, as single texts run) and
    all together — different inputs from :func:`calibration_batch`, so the accuracy check
    does not see the data the quantizer was fitted on."""
    return _SAMPLES[tower](embedder)


def _image_samples(embedder: ClipEmbedder) -> list[torch.Tensor]:
    return [torch.stack([embedder.preprocess(img, "image") for img in photo_like_images(seed=s)])
            for s in QUANTIZATION_SEEDS]


def _text_samples(embedder: ClipEmbedder) -> list[torch.Tensor]:
    captions = list(QUANTIZATION_CAPTIONS)
    return [embedder.tokens_for([c]) for c in captions] + [embedder.tokens_for(captions)]


def calibration_batch(embedder: ClipEmbedder, tower: str) -> torch.Tensor:
    """The model input of ``tower``: preprocessed images, or tokens as ``forward`` makes them."""
    return _BATCHES[tower](embedder)


def _image_batch(embedder: ClipEmbedder) -> torch.Tensor:
    return torch.stack([embedder.preprocess(img, "image") for img in photo_like_images()])


def _text_batch(embedder: ClipEmbedder) -> torch.Tensor:
    return embedder.tokens_for(list(CAPTIONS))


_BATCHES: dict[str, Callable[[ClipEmbedder], torch.Tensor]] = {
    "image": _image_batch, "text": _text_batch,
}
_SAMPLES: dict[str, Callable[[ClipEmbedder], list[torch.Tensor]]] = {
    "image": _image_samples, "text": _text_samples,
}
