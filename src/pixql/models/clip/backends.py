"""Which runtime computes a CLIP model's embeddings: PyTorch, ONNX Runtime or OpenVINO.

``load_clip(..., backend=...)``, ``$PIXQL_CLIP_BACKEND`` and the ``backend`` option of
``BUILD MODEL ... USING CLIP`` take one of :data:`BACKENDS`:

* ``torch`` — open_clip's PyTorch model (exact; any device).
* ``onnx`` — both towers exported to ONNX (fp32) and run by ONNX Runtime on the CPU.
* ``onnx-int8`` — the same, dynamically quantized to int8 (weights int8, activations
  quantized on the fly); the fastest on CPUs with AVX-512 VNNI / AVX2.
* ``openvino`` — OpenVINO runs the fp32 ONNX files (it picks bf16 itself where the CPU has it).
* ``openvino-int8`` — OpenVINO runs a static int8 version of them (NNCF, calibrated on
  generated inputs; patch embedding and final projection kept fp32: see
  :mod:`pixql.models.clip.quantize`). Rows do not depend on their batch mates, so batches
  run batched; the fastest here at every batch size.
* ``auto`` (the default) — per tower, the first of :data:`AUTO_ORDER` that is installed,
  exports, loads and keeps cosine :data:`MIN_COSINE` vs torch fp32 on a calibration batch;
  torch otherwise (and always off the CPU). Nothing it tries can fail the load: a missing
  runtime is skipped silently (debug log), any other failure (export, quantization, runtime,
  an unwritable cache) is logged as a warning and the next candidate, or torch, is used. A
  runner that fails later, on real inputs, hands its tower over to torch for good (warning).

Preprocessing and tokenization stay in the :class:`~pixql.models.clip.embedder.ClipEmbedder`;
only ``encode_image`` / ``encode_text`` are swapped, so texts are still padded to the
batch's longest text. Exports are cached on disk (see :mod:`pixql.models.clip.export`) and
each file's cosine vs torch is checked once and recorded in the cache's manifest.

This module imports neither torch nor a runtime at import time (option validation uses it).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from pixql.errors import MissingDependencyError, ModelError, OptionError
from pixql.models.clip.towers import TOWERS, Runner, Towers

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from pathlib import Path

    import torch

    from pixql.models.clip.embedder import ClipEmbedder

log = logging.getLogger(__name__)

#: environment variable choosing the backend when none is given
BACKEND_ENV = "PIXQL_CLIP_BACKEND"
#: the backend used when neither the caller nor the environment names one
DEFAULT_BACKEND = "auto"
#: backend name → what it is
BACKENDS: dict[str, str] = {
    "torch": "open_clip's PyTorch model (exact, any device)",
    "onnx": "ONNX Runtime fp32 on the CPU (needs pixql[onnx])",
    "onnx-int8": "ONNX Runtime with dynamic int8 quantization on the CPU (needs pixql[onnx])",
    "openvino": "OpenVINO on the CPU, bf16 where supported (needs pixql[onnx,openvino])",
    "openvino-int8": "OpenVINO on the CPU with static int8 quantization (calibrated; needs "
                     "pixql[onnx,openvino])",
    "auto": "per tower the fastest installed CPU backend keeping cosine >= 0.99 vs torch, "
            "else torch (the default)",
}
#: candidates of ``auto``, fastest first, for both towers (benchmarks/RESULTS.md, section
#: clip_cpu_int8: ``openvino-int8`` is >= 3x torch fp32 at batch 1, 16 and 64 with 1 and 2
#: threads on images and texts; ``onnx-int8`` is faster on single texts but runs row by row,
#: 2.2-2.6x at batch 16/64 with 2 threads)
AUTO_ORDER = ("openvino-int8", "onnx-int8", "openvino", "onnx")
#: the least per-row cosine similarity to torch fp32 a backend must keep
MIN_COSINE = 0.99


def valid_backend(name: str) -> str:
    """``name`` if it is a backend; OptionError listing the valid ones otherwise."""
    if name not in BACKENDS:
        raise OptionError(
            f"unknown CLIP backend {name!r}; valid values: {', '.join(BACKENDS)}",
            option="backend", allowed=list(BACKENDS),
        )
    return name


def resolve_backend(name: str | None = None) -> str:
    """``name``, else ``$PIXQL_CLIP_BACKEND``, else :data:`DEFAULT_BACKEND`; validated."""
    chosen = name or os.environ.get(BACKEND_ENV, "").strip().lower() or DEFAULT_BACKEND
    return valid_backend(chosen)


def attach_backend(embedder: ClipEmbedder, backend: str | None = None) -> ClipEmbedder:
    """Make ``embedder`` compute embeddings with ``backend`` (see the module docstring).

    When another runtime computes both towers, the torch model is released (if the embedder
    can load it again: see :meth:`~pixql.models.clip.embedder.ClipEmbedder.release_torch`),
    so a served model holds only what its runtime uses.

    Raises:
        OptionError: unknown backend.
        MissingDependencyError: an explicit backend whose runtime is not installed.
        ModelError: an explicit ONNX backend on a non-CPU device, or a failed export
            (never for ``auto``, which falls back to torch).
    """
    name = resolve_backend(backend)
    towers = embedder.towers = _BUILDERS[name](embedder, name)
    if towers is not None and all(getattr(towers, t) is not None for t in TOWERS):
        embedder.release_torch()  # only an embedder that can reload its weights frees them
    log.info("CLIP %s: backend %s", getattr(embedder, "model_id", "?"), embedder.backend)
    return embedder


def _torch(embedder: ClipEmbedder, name: str) -> Towers | None:
    return None


def _explicit(embedder: ClipEmbedder, name: str) -> Towers:
    """One ONNX-based backend for both towers; warns when it strays from torch."""
    if embedder.device.type != "cpu":
        raise ModelError(f"the CLIP backend {name!r} runs on the CPU only, but the model is "
                         f"on {embedder.device}; use backend='torch' (or 'auto') there")
    from pixql.models.clip.onnx_backend import require_runtime

    require_runtime(name)
    towers = Towers(name)
    for tower in TOWERS:
        runner, cosine = _runner_and_cosine(embedder, name, tower)
        if cosine < MIN_COSINE:
            log.warning("CLIP backend %s: %s embeddings reach only cosine %.4f vs torch fp32",
                        name, tower, cosine)
        setattr(towers, tower, runner)
        towers.chosen[tower], towers.cosine[tower] = name, cosine
    return towers


def _auto(embedder: ClipEmbedder, name: str) -> Towers | None:
    """Per tower, the first working candidate that keeps :data:`MIN_COSINE`; else torch."""
    if embedder.device.type != "cpu":
        return None
    from pixql.models.clip.export import CacheNotWritableError
    from pixql.models.clip.onnx_backend import runtime_available

    candidates = [b for b in AUTO_ORDER if runtime_available(b)]
    if not candidates:
        log.debug("CLIP backend auto: neither onnxruntime nor openvino is installed; torch")
        return None
    towers = Towers("auto")
    try:
        for tower in TOWERS:
            _pick(embedder, towers, tower, candidates)
    except CacheNotWritableError as e:
        log.warning("CLIP backend auto: %s Using torch for the towers not set up yet.", e)
    for tower in TOWERS:
        towers.chosen.setdefault(tower, "torch")
    if towers.image is None and towers.text is None:
        return None
    towers.name = auto_name(towers.chosen)
    return towers


def _pick(embedder: ClipEmbedder, towers: Towers, tower: str, candidates: list[str]) -> None:
    """Give ``tower`` the first of ``candidates`` that works and keeps the cosine (else
    leave it to torch). A candidate whose runtime or exporter is missing is dropped from
    ``candidates``; a failed export of a precision skips the candidates that need it too.

    Raises:
        CacheNotWritableError: nothing can be exported (the caller stops trying).
    """
    from pixql.models.clip.export import SOURCES, CacheNotWritableError, ExportError
    from pixql.models.clip.onnx_backend import RUNNERS

    failed: set[str] = set()
    for backend in sorted(candidates, key=AUTO_ORDER.index):
        precision = RUNNERS[backend][0]
        if precision in failed or SOURCES.get(precision) in failed:
            continue
        try:
            runner, cosine = _runner_and_cosine(embedder, backend, tower)
        except CacheNotWritableError:
            raise
        except MissingDependencyError as e:
            log.debug("CLIP backend auto: %s is not available: %s", backend, e)
            candidates.remove(backend)
            continue
        except Exception as e:  # noqa: BLE001 - a default must never break the load
            if isinstance(e, ExportError):
                failed.add(e.precision)
            log.warning("CLIP backend auto: %s failed for the %s tower, trying the next "
                        "backend: %s: %s", backend, tower, type(e).__name__, e)
            continue
        if cosine >= MIN_COSINE:
            setattr(towers, tower, Guarded(embedder, towers, tower, runner))
            towers.chosen[tower], towers.cosine[tower] = backend, cosine
            return
        log.info("CLIP backend auto: %s reaches only cosine %.4f vs torch for the %s tower; "
                 "not used", backend, cosine, tower)


def auto_name(chosen: dict[str, str]) -> str:
    """``'auto(image=onnx-int8, text=torch)'``: what ``auto`` picked per tower."""
    return "auto(" + ", ".join(f"{t}={chosen.get(t, 'torch')}" for t in TOWERS) + ")"


class Guarded:
    """A runner chosen by ``auto``: if it ever raises, its tower goes back to torch for good
    (with a warning), so the default backend cannot fail a query torch would answer."""

    def __init__(self, embedder: ClipEmbedder, towers: Towers, tower: str,
                 runner: Runner) -> None:
        self.embedder, self.towers, self.tower = embedder, towers, tower
        self.runner: Runner | None = runner

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        runner = self.runner
        if runner is not None:
            try:
                return runner(x)
            except Exception as e:  # noqa: BLE001 - any runtime error: torch answers
                self.runner = None
                self.towers.chosen[self.tower] = "torch"
                self.towers.name = auto_name(self.towers.chosen)
                log.warning("CLIP backend auto: the %s tower failed (%s: %s); torch computes "
                            "it from now on", self.tower, type(e).__name__, e)
        return _TORCH_TOWERS[self.tower](self.embedder, x)

    @property
    def rowwise(self) -> bool:
        """Whether the guarded runner works row by row (torch, after a failure, does not)."""
        return bool(getattr(self.runner, "rowwise", False))

    def __repr__(self) -> str:
        return f"Guarded({self.runner!r})"


_BUILDERS: dict[str, Callable[[ClipEmbedder, str], Towers | None]] = {
    "torch": _torch,
    "onnx": _explicit,
    "onnx-int8": _explicit,
    "openvino": _explicit,
    "openvino-int8": _explicit,
    "auto": _auto,
}


# ---------------------------------------------------------------------- export + check
def _runner_and_cosine(embedder: ClipEmbedder, backend: str, tower: str) -> tuple[Runner, float]:
    """The runner of ``tower`` for ``backend`` and its min cosine vs torch (cached)."""
    from pixql.models.clip import export, export_cache
    from pixql.models.clip.calibration import quantization_samples
    from pixql.models.clip.onnx_backend import ROWWISE, RUNNERS, RowwiseRunner, require_runtime

    require_runtime(backend)
    precision, factory = RUNNERS[backend]
    folder = _export_folder(embedder)
    path = export.ensure_files(embedder.model, folder, [(tower, precision)],
                               trimmed=embedder.can_trim(),
                               calibration=lambda t: quantization_samples(embedder, t),
                               )[(tower, precision)]
    runner = factory(path)
    if backend in ROWWISE:
        runner = RowwiseRunner(runner, trim_text=tower == "text" and embedder.can_trim())
    cosine = export_cache.recorded_cosine(folder, path.name, backend)
    if cosine is None:
        cosine = min_cosine(embedder, tower, runner)
        export_cache.record_cosine(folder, path.name, backend, cosine)
    return runner, cosine


def _export_folder(embedder: ClipEmbedder) -> Path:
    """The cache folder of ``embedder``'s weights (fingerprint computed once per embedder)."""
    from pixql.models.clip import export

    folder = embedder._export_folder
    if folder is None:
        key = export.fingerprint(embedder.model, embedder.can_trim())
        folder = embedder._export_folder = export.cache_root() / key
    return folder


def min_cosine(embedder: ClipEmbedder, tower: str, runner: Runner) -> float:
    """Least per-row cosine similarity between ``runner`` and torch fp32 on the calibration
    batch of ``tower`` (see :mod:`pixql.models.clip.calibration`)."""
    import torch
    import torch.nn.functional as F

    from pixql.models.clip.calibration import calibration_batch

    inputs = calibration_batch(embedder, tower)
    with torch.inference_mode():
        expected = _TORCH_TOWERS[tower](embedder, inputs)
    got = runner(inputs)
    return float(F.cosine_similarity(got.float(), expected.float(), dim=-1).min())


_TORCH_TOWERS: dict[str, Callable[[ClipEmbedder, torch.Tensor], torch.Tensor]] = {
    "image": lambda e, x: e.encode_image_torch(x.to(e.device)),
    "text": lambda e, x: e.encode_text_torch(x.to(e.device)),
}
