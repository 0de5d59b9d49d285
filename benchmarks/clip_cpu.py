"""Speed benchmark: CLIP (ViT-B/32 by default) on the CPU with every backend, in one run.

Builds the real ViT-B-32 architecture with random weights (``open_clip.create_model(
'ViT-B-32', pretrained=None)``: no weights can be downloaded here, and speed does not depend
on their values), then measures images/s and texts/s of ``ClipEmbedder.forward`` for batch
sizes 1, 16 and 64 with:

* ``torch`` — fp32, ``torch.inference_mode`` (pixql's default path; the baseline);
* ``torch-bf16`` — the same under ``torch.autocast('cpu', torch.bfloat16)``;
* ``torch-channels-last`` — model and pixels in channels-last memory format;
* ``torch-compile`` — ``torch.compile(dynamic=True)`` of both towers (``--no-compile`` skips);
* ``onnx``, ``onnx-int8``, ``openvino``, ``openvino-int8`` — pixql's backends
  (``load_clip(backend=...)``); ``--variants`` picks a subset, ``--arch`` another model.

Each call takes another of a few fresh batches per size (crops at random positions, other
generated images, random captions), none of them used for calibration or the accuracy check.

The machine is shared and noisy, so the variants are measured in interleaved rounds and
each figure is reported as a ratio to torch fp32 measured in the same round (median over
rounds). Accuracy: per-row cosine similarity to torch fp32 (min over a batch of crops of
two real photos shipped with scikit-learn, generated photo-like images and captions).
Random weights are a fair but imperfect proxy for real ones there. Writes the
``clip_cpu`` section of ``benchmarks/RESULTS.md``.

Run from the repository root::

    .venv/bin/python benchmarks/clip_cpu.py               # 20-60 min on 2 shared cores
    .venv/bin/python benchmarks/clip_cpu.py --rounds 1 --batch-sizes 1 16 --no-write
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_section

from pixql.models.clip.backends import attach_backend
from pixql.models.clip.calibration import CAPTIONS, photo_like_images
from pixql.models.clip.embedder import ClipEmbedder
from pixql.models.clip.text import encode_text_trimmed

Fn = Callable[[Any], Any]
BACKENDS = ("onnx", "onnx-int8", "openvino", "openvino-int8")
TORCH_VARIANTS = ("torch-bf16", "torch-channels-last", "torch-compile")
#: different input batches each call cycles through (no batch is measured twice in a row)
POOL = 3
TEXTS = [
    *list(CAPTIONS[:-1]),
    "a dog",
    "sunset over the mountains with a lake in the foreground",
    "a screenshot of a spreadsheet",
    "portrait of a smiling woman wearing glasses",
    "a red car parked in front of a brick house",
    "people",
    "aerial view of a city at night",
    "a bowl of ramen with an egg, chopsticks and green onions on a dark table",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (2)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement (1)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (ViT-B-32)")
    p.add_argument("--variants", nargs="+", default=None,
                   help=f"measure only these besides torch (of {', '.join(TORCH_VARIANTS)}, "
                   f"{', '.join(BACKENDS)}); default all")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="thread settings to measure in turn (torch's, and the ONNX "
                   "runtimes' follow it); default 1 2")
    p.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    p.add_argument("--json", type=Path, default=None, help="also dump the raw rates here")
    return p.parse_args(argv)


def make_embedder(arch: str = "ViT-B-32") -> ClipEmbedder:
    """``arch`` with random weights, as ``load_clip`` would wrap it."""
    import open_clip

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
    return ClipEmbedder(model, preprocess, open_clip.get_tokenizer(arch),
                        version_id=arch, dim=512, source="random")


def torch_variants(base: ClipEmbedder, compile_: bool) -> dict[str, tuple[Fn, Fn]]:
    """name → (image fn on a pixel tensor, text fn on a list of str)."""
    def fwd(e: ClipEmbedder) -> tuple[Fn, Fn]:
        return (lambda x: e.forward(x, "image"), lambda t: e.forward(t, "text"))

    def bf16(fn: Fn) -> Fn:
        def run(x: Any) -> Any:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return fn(x)
        return run

    out = {"torch": fwd(base)}
    out["torch-bf16"] = tuple(bf16(f) for f in fwd(base))  # type: ignore[assignment]
    cl_model = copy.deepcopy(base.model).to(memory_format=torch.channels_last)

    def channels_last(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return cl_model.encode_image(x.contiguous(memory_format=torch.channels_last))
    out["torch-channels-last"] = (channels_last, fwd(base)[1])
    if compile_:
        out["torch-compile"] = compiled(base)
    return out


def compiled(base: ClipEmbedder) -> tuple[Fn, Fn]:
    """torch.compile of both towers (dynamic shapes: any batch, any text length)."""
    model = base.model
    image = torch.compile(model.encode_image, dynamic=True)
    text = torch.compile(lambda tokens: encode_text_trimmed(model, tokens), dynamic=True)

    def run_image(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return image(x)

    def run_text(texts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            return text(base.tokens_for(texts))
    return run_image, run_text


def backend_variants(base: ClipEmbedder, info: dict[str, Any],
                     wanted: list[str] | None) -> dict[str, tuple[Fn, Fn]]:
    """pixql's ONNX backends on embedders sharing ``base``'s model; times export and load."""
    out: dict[str, tuple[Fn, Fn]] = {}
    for name in BACKENDS:
        if wanted is not None and name not in wanted:
            continue
        timings = []
        for _ in range(2):  # cold (export + quantize + check), then from the cache
            e = make_sharing(base)
            start = time.perf_counter()
            try:
                attach_backend(e, name)
            except Exception as err:  # noqa: BLE001 - report and go on without it
                print(f"{name}: unavailable ({type(err).__name__}: {err})", flush=True)
                break
            timings.append(time.perf_counter() - start)
        if len(timings) == 2:
            info[name] = {"first_load_s": timings[0], "cached_load_s": timings[1],
                          "check_cosine": e.towers.cosine}
            out[name] = (lambda x, e=e: e.forward(x, "image"), lambda t, e=e: e.forward(t, "text"))
    return out


def make_sharing(base: ClipEmbedder) -> ClipEmbedder:
    return ClipEmbedder(base.model, base.image_transform, base.tokenizer,
                        version_id=base.version_id, dim=base.dim, source=base.source)


def items_per_s(fn: Fn, batches: list[Any], n: int, min_time: float) -> float:
    calls, start = 0, time.perf_counter()
    while True:
        fn(batches[calls % len(batches)])
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return calls * n / elapsed


def real_images(n: int = 24, seed: int = 7) -> list[Any]:
    """``n`` images: crops of scikit-learn's two sample photos at random positions and
    scales, and generated photo-like images (seeds other than those calibration uses)."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(arr) for arr in load_sample_images().images]
    out = []
    for i in range(n):
        if i % 3 == 2:
            out += photo_like_images(1, seed=1000 * seed + i)
            continue
        photo = photos[i % 2]
        w, h = photo.size
        side = int(rng.integers(160, 420))
        x0, y0 = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        out.append(photo.crop((x0, y0, x0 + side, y0 + side)))
    return out


def random_texts(n: int, seed: int) -> list[str]:
    """``n`` captions of 1 to ~25 words drawn from TEXTS' vocabulary."""
    rng = np.random.default_rng(seed)
    words = sorted({w for t in TEXTS[:-1] for w in t.split()})
    return [" ".join(rng.choice(words, int(rng.integers(1, 26)))) for _ in range(n)]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every thread setting of ``--threads`` in turn, sharing the model and the exports."""
    base = make_embedder(args.arch)
    torch_fns = {k: v for k, v in torch_variants(base, not args.no_compile).items()
                 if k == "torch" or args.variants is None or k in args.variants}
    images = real_images()
    pixels = torch.stack([base.preprocess(i, "image") for i in images])
    out: dict[str, Any] = {"n_images": len(images), "n_texts": len(TEXTS), "by_threads": {},
                           "pools": make_pools(base, args.batch_sizes)}
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)  # the ONNX runtimes' sessions follow it
        out["by_threads"][threads] = run_threads(base, torch_fns, pixels, args, out["pools"])
    return out


def make_pools(base: ClipEmbedder, sizes: list[int]) -> dict[tuple[str, int], list[Any]]:
    """(modality, batch size) → POOL different batches: fresh images and captions, none of
    them the accuracy batch's or the calibration's."""
    pools: dict[tuple[str, int], list[Any]] = {}
    for bs in sizes:
        pools[("image", bs)] = [
            torch.stack([base.preprocess(i, "image") for i in real_images(bs, 100 + k)])
            for k in range(POOL)]
        pools[("text", bs)] = [random_texts(bs, 100 + k) for k in range(POOL)]
    return pools


def run_threads(base: ClipEmbedder, torch_fns: dict[str, tuple[Fn, Fn]],
                pixels: torch.Tensor, args: argparse.Namespace,
                pools: dict[tuple[str, int], list[Any]]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    variants = dict(torch_fns)
    variants.update(backend_variants(base, info, args.variants))
    # accuracy on every measured batch, as measured (batched), plus the fixed sets
    inputs = {"image": [pixels, *[b for (m, _), bs in pools.items() if m == "image" for b in bs]],
              "text": [TEXTS, *[b for (m, _), bs in pools.items() if m == "text" for b in bs]]}
    refs = {m: [variants["torch"][i](b).float() for b in inputs[m]]
            for i, m in enumerate(("image", "text"))}
    cos: dict[str, tuple[float, float]] = {}
    for name, fns in variants.items():  # also warms every variant up
        start = time.perf_counter()
        cos[name] = tuple(  # type: ignore[assignment]
            min(float(torch.cosine_similarity(fns[i](b).float(), ref).min())
                for b, ref in zip(inputs[m], refs[m], strict=True))
            for i, m in enumerate(("image", "text")))
        info.setdefault(name, {})["warmup_s"] = time.perf_counter() - start
    rates: dict[tuple[str, str, int], list[float]] = {}
    for r in range(args.rounds):
        for bs in args.batch_sizes:
            for modality in ("image", "text"):
                measure_round(variants, modality, pools[(modality, bs)], bs, args.min_time,
                              rates, r)
    return {"rates": rates, "cos": cos, "info": info, "variants": list(variants)}


def measure_round(variants: dict[str, tuple[Fn, Fn]], modality: str, batch: list[Any], bs: int,
                  min_time: float, rates: dict, r: int) -> None:
    """One round: torch, every other variant, torch again (its rate is the mean of both,
    so each ratio compares measurements minutes apart at most)."""
    idx = 0 if modality == "image" else 1
    order = ["torch", *[v for v in variants if v != "torch"], "torch"]
    got: dict[str, list[float]] = {}
    for name in order:
        rate = items_per_s(variants[name][idx], batch, bs, min_time)
        got.setdefault(name, []).append(rate)
        print(f"round {r} bs {bs:3d} {name:20s} {modality}: {rate:8.2f}/s", flush=True)
    for name, values in got.items():
        rates.setdefault((name, modality, bs), []).append(statistics.mean(values))


def ratio(rates: dict, name: str, modality: str, bs: int) -> float:
    """Median over rounds of (variant rate / torch rate of the same round)."""
    ours, base = rates[(name, modality, bs)], rates[("torch", modality, bs)]
    return statistics.median(a / b for a, b in zip(ours, base, strict=True))


def render(res: dict[str, Any], args: argparse.Namespace, command: str, wall: float) -> str:
    lines = [f"## CLIP {args.arch} on the CPU: backends compared", "",
             f"Command: `{command}` — {machine()}, torch {torch.__version__}, "
             f"{args.rounds} interleaved rounds (torch measured first and last in each), "
             f"wall {wall / 60:.1f} min.", "",
             f"Random weights (real {args.arch} architecture: random weights lack the "
             "activation outliers of trained CLIPs, so int8 accuracy on real weights is "
             "checked per model at its first load, not here); throughput of "
             "`ClipEmbedder.forward` on preprocessed images / raw texts (tokenization "
             f"included, padded to the batch's longest text), each call on another of {POOL} "
             "fresh batches per size (none used for calibration or the accuracy check). "
             "**×** = ratio to torch fp32 "
             "measured in the same round (median over rounds); items/s are medians and "
             "depend on the machine's load. *N threads*: torch's and the ONNX runtimes'.", ""]
    first = None
    for threads, part in res["by_threads"].items():
        lines += render_threads(part, threads, args.batch_sizes)
        first = first or part
    lines += [f"Min cosine: per row vs torch fp32 over every measured batch (as batched) and "
              f"{res['n_images']} more images (crops of scikit-learn's two sample photos and "
              f"generated photo-like images) and {res['n_texts']} captions of 1 to 77+ "
              "tokens.", "",
              "| backend | first load (export + quantize + check) | load from cache |",
              "|---|---|---|"]
    for name in BACKENDS:
        if first and "first_load_s" in first["info"].get(name, {}):
            i = first["info"][name]
            lines.append(f"| {name} | {i['first_load_s']:.1f} s | {i['cached_load_s']:.1f} s |")
    return "\n".join(lines) + "\n"


def render_threads(part: dict[str, Any], threads: int, sizes: list[int]) -> list[str]:
    rates, lines = part["rates"], []
    for modality in ("image", "text"):
        head = " | ".join(f"bs {b}: /s (×)" for b in sizes)
        lines += [f"### {modality} embeddings, {threads} thread(s)", "",
                  f"| backend | {head} | min cosine |", "|---" * (len(sizes) + 2) + "|"]
        idx = 0 if modality == "image" else 1
        for name in part["variants"]:
            cells = " | ".join(
                f"{statistics.median(rates[(name, modality, b)]):.1f} "
                f"({ratio(rates, name, modality, b):.2f}×)" for b in sizes)
            lines.append(f"| {name} | {cells} | {part['cos'][name][idx]:.5f} |")
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = "python benchmarks/clip_cpu.py " + shlex.join(argv or sys.argv[1:])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:  # cold exports, measured
        os.environ["PIXQL_CACHE_DIR"] = cache
        res = run(args)
    res.pop("pools")
    if args.json:
        raw = {**res, "by_threads": {t: {**p, "rates": [[*k, v] for k, v in p["rates"].items()]}
                                     for t, p in res["by_threads"].items()}}
        args.json.write_text(json.dumps(raw, indent=1, default=str))
    body = render(res, args, command.strip(), time.perf_counter() - start)
    print(body)
    if not args.no_write:
        write_section("clip_cpu" if args.arch == "ViT-B-32" else f"clip_cpu_{args.arch}", body)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
