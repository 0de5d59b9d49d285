"""Export a CLIP model's two towers to ONNX once, cache them on disk, quantize to int8.

Layout of the cache (``$PIXQL_CACHE_DIR/onnx`` or ``~/.cache/pixql/onnx``)::

    <fingerprint>/               sha256 of the weights, the architecture and the export format
      image.onnx  text.onnx      fp32 towers (dynamic batch; text also dynamic length)
      image.int8.onnx  ...       onnxruntime dynamic int8 quantization of the fp32 files
      image.int8s.onnx ...       static int8 (QDQ, calibrated; see pixql.models.clip.quantize)
      manifest.json              size + sha256 of every file (+ its cosine vs torch, when known)
      .lock                      held (flock) while a process exports

Every file is written under a temporary name and renamed into place, so a crash never
leaves a half-written model behind, and readers never see a partial file: intact files are
used without taking the lock (so a read-only, pre-filled cache works); a file whose size or
sha256 differs from the manifest (truncated, corrupted) is exported again. The text tower
is open_clip's ``encode_text`` with the positional embedding and the causal mask cut to the
batch's length, so batches padded to their longest text (not to 77 tokens) run unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pixql.errors import MissingDependencyError, ModelError
from pixql.models.clip import export_cache as cache
from pixql.models.clip.text import encode_text_trimmed

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from pixql.models.clip.towers import ClipModule

    #: tower → calibration batches for static quantization
    Calibration = Callable[[str], list[torch.Tensor]]

log = logging.getLogger(__name__)

#: environment variable naming pixql's cache folder (ONNX files go to ``<it>/onnx``)
CACHE_ENV = "PIXQL_CACHE_DIR"
#: ONNX opset of the exported graphs
OPSET = 18
#: file name of each (tower, precision)
FILES: dict[tuple[str, str], str] = {
    ("image", "fp32"): "image.onnx",
    ("text", "fp32"): "text.onnx",
    ("image", "int8"): "image.int8.onnx",
    ("text", "int8"): "text.int8.onnx",
    ("image", "int8s"): "image.int8s.onnx",
    ("text", "int8s"): "text.int8s.onnx",
}
#: precision → the precision its file is made from
SOURCES = {"int8": "fp32", "int8s": "fp32"}
ONNX_EXTRA = "pip install 'pixql[onnx]' (onnxruntime, onnx, onnxscript)"
NNCF_EXTRA = "pip install 'pixql[onnx,openvino]' (openvino, nncf)"

#: model attributes that change the graph without changing the weights
_ARCH_ATTRS = ("context_length", "vocab_size", "text_pool_type", "text_eos_id", "output_dict")
_QUANT_NAG = "Please consider to run pre-processing before quantization"

#: one export at a time per process (two concurrent dynamo exports corrupt each other)
_EXPORT_LOCK = threading.Lock()


class CacheNotWritableError(ModelError):
    """The export cache folder cannot be created or written (read-only, full, a file...)."""


class ExportError(ModelError):
    """Exporting or quantizing one ``(tower, precision)`` file failed."""

    def __init__(self, message: str, *, tower: str, precision: str) -> None:
        super().__init__(message, tower=tower, precision=precision)
        self.tower, self.precision = tower, precision


class ImageTower(torch.nn.Module):
    """``model.encode_image`` as a module (what is exported)."""

    def __init__(self, model: ClipModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` float pixels → ``(n, dim)`` unnormalised embeddings."""
        return self.model.encode_image(pixels).float()


class TextTower(torch.nn.Module):
    """``encode_text`` for token batches of any length up to the context length."""

    def __init__(self, model: ClipModule, trimmed: bool) -> None:
        super().__init__()
        self.model = model
        self.trimmed = trimmed

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(n, L)`` int64 tokens → ``(n, dim)`` unnormalised embeddings."""
        if not self.trimmed:
            return self.model.encode_text(tokens).float()
        return encode_text_trimmed(self.model, tokens).float()


def cache_root() -> Path:
    """``$PIXQL_CACHE_DIR/onnx``, else ``~/.cache/pixql/onnx``."""
    base = os.environ.get(CACHE_ENV, "").strip()
    root = Path(base).expanduser() if base else Path("~/.cache/pixql").expanduser()
    return (root / "onnx").absolute()


def fingerprint(model: ClipModule, trimmed: bool) -> str:
    """sha256 over the weights (names, dtypes, shapes, bytes), the architecture (module
    types, e.g. QuickGELU vs GELU; text pooling; sizes) and the export format.

    The Roboflow version id is not part of it: with ``path=`` it is only a label.
    """
    h = hashlib.sha256()
    arch = {
        "modules": sorted({type(m).__name__ for m in model.modules()}),
        "attrs": {a: repr(getattr(model, a, None)) for a in _ARCH_ATTRS},
        "image_size": _image_size(model),
        "trimmed": trimmed,
        "format": [cache.EXPORT_FORMAT, OPSET, torch.__version__],
    }
    h.update(json.dumps(arch, sort_keys=True).encode())
    for name, value in sorted(model.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:32]


def ensure_files(
    model: ClipModule,
    folder: Path,
    wanted: list[tuple[str, str]],
    *,
    trimmed: bool,
    calibration: Calibration | None = None,
) -> dict[tuple[str, str], Path]:
    """Make sure the ``(tower, precision)`` files exist and are intact; export what is not.

    Intact files are used as they are, without locking (files are only ever replaced by
    renaming a complete file over them); anything missing or damaged is exported under a
    lock per folder (other threads) and an ``flock`` (other processes), so concurrent first
    loads export once. ``calibration(tower)`` gives the inputs static quantization
    (``int8s``) calibrates on.

    Raises:
        CacheNotWritableError: the cache folder cannot be written (and a file is missing).
        ExportError: exporting or quantizing a file failed.
        MissingDependencyError: onnx / onnxscript / onnxruntime are not installed.
    """
    paths = {key: folder / FILES[key] for key in wanted}
    manifest = cache.read_manifest(folder)
    if all(cache.file_ok(folder, FILES[key], manifest) for key in wanted):
        return paths
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with cache.thread_lock(folder), cache.process_lock(folder):
            manifest = cache.read_manifest(folder)
            missing = [key for key in wanted if not cache.file_ok(folder, FILES[key], manifest)]
            if missing:
                log.warning("exporting CLIP to ONNX in %s (%s): done once per weights, it "
                            "takes a minute or two for ViT-B/32", folder,
                            ", ".join(FILES[key] for key in missing))
            for key in missing:
                _ensure(model, folder, key, manifest, trimmed, calibration)
    except OSError as e:
        raise CacheNotWritableError(
            f"cannot write the CLIP ONNX cache in {folder}: {e}. Set {CACHE_ENV} to a "
            f"writable folder, or use backend='torch'.") from e
    return paths


def _ensure(model: ClipModule, folder: Path, key: tuple[str, str],
            manifest: dict[str, Any], trimmed: bool, calibration: Calibration | None) -> None:
    """Export ``key`` unless intact; an int8 file first needs its (intact) fp32 source."""
    tower, precision = key
    name = FILES[key]
    if cache.file_ok(folder, name, manifest):
        return
    if precision in SOURCES:
        _ensure(model, folder, (tower, SOURCES[precision]), manifest, trimmed, calibration)
    log.info("exporting CLIP %s tower (%s) to %s", tower, precision, folder / name)
    job = _Job(model, folder, tower, trimmed, calibration)
    try:
        with _EXPORT_LOCK:  # torch.onnx.export is not thread-safe, even for other models
            _EXPORTERS[precision](job)
    except (MissingDependencyError, OSError):
        raise
    except Exception as e:
        raise ExportError(f"cannot export the CLIP {tower} tower to ONNX ({precision}): "
                          f"{type(e).__name__}: {e}. Use backend='torch'.",
                          tower=tower, precision=precision) from e
    manifest["files"][name] = cache.describe(folder / name)
    cache.write_manifest(folder, manifest)


# ---------------------------------------------------------------------- exporters
@dataclass(frozen=True)
class _Job:
    """What an exporter needs."""

    model: ClipModule
    folder: Path
    tower: str
    trimmed: bool
    calibration: Calibration | None


def _export_fp32(job: _Job) -> None:
    """torch.onnx.export (dynamo) of one tower with a dynamic batch (and text length)."""
    _require("onnx", "onnxscript")
    model, folder, tower, trimmed = job.model, job.folder, job.tower, job.trimmed
    from torch.export import Dim

    batch = Dim("batch", min=1, max=65536)
    if tower == "image":
        module: torch.nn.Module = ImageTower(model)
        size = _image_size(model)
        example: torch.Tensor = torch.zeros(2, 3, *size)
        shapes = {"pixels": {0: batch}}
    else:
        module = TextTower(model, trimmed)
        context = int(getattr(model, "context_length", 77))
        example = torch.ones(2, 8 if trimmed else context, dtype=torch.long)
        shapes = {"tokens": {0: batch, 1: Dim("length", min=2, max=context)} if trimmed
                  else {0: batch}}
    (name,) = shapes

    def write(tmp: Path) -> None:
        with _quiet():
            torch.onnx.export(module.eval(), (example,), str(tmp), input_names=[name],
                              output_names=["embeddings"], dynamic_shapes=shapes, dynamo=True,
                              external_data=False, opset_version=OPSET, verbose=False)

    cache.atomic_write(folder / FILES[(tower, "fp32")], write)


def _export_int8(job: _Job) -> None:
    """onnxruntime dynamic quantization of the fp32 file: int8 weights (per output channel),
    activations quantized to uint8 on the fly."""
    _require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder, tower = job.folder, job.tower
    source = folder / FILES[(tower, "fp32")]

    def write(tmp: Path) -> None:
        with _quiet():
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8,
                             per_channel=True)

    cache.atomic_write(folder / FILES[(tower, "int8")], write)


def _export_int8_static(job: _Job) -> None:
    """NNCF static int8 of the fp32 file, calibrated (see :mod:`.quantize`)."""
    _require("onnx")
    _require("nncf", extra=NNCF_EXTRA)
    from pixql.models.clip.quantize import quantize_static

    if job.calibration is None:
        raise ValueError("static int8 quantization needs calibration inputs")
    samples = [t.numpy() for t in job.calibration(job.tower)]
    source = job.folder / FILES[(job.tower, "fp32")]

    def write(tmp: Path) -> None:
        with _quiet():
            quantize_static(source, tmp, samples)

    cache.atomic_write(job.folder / FILES[(job.tower, "int8s")], write)


_EXPORTERS: dict[str, Callable[[_Job], None]] = {
    "fp32": _export_fp32,
    "int8": _export_int8,
    "int8s": _export_int8_static,
}


def _image_size(model: ClipModule) -> tuple[int, int]:
    size = getattr(getattr(model, "visual", None), "image_size", 224)
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


# ---------------------------------------------------------------------- helpers
def _require(*modules: str, extra: str = ONNX_EXTRA) -> None:
    """Import ``modules`` or raise MissingDependencyError naming the ``onnx`` extra."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise MissingDependencyError(
                f"exporting CLIP to ONNX needs the Python package {module!r}: {extra}"
            ) from e


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints and warnings, and the quantizer's advice."""
    root = logging.getLogger()
    nag = _DropMessage(_QUANT_NAG)
    root.addFilter(nag)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeFilter(nag)


class _DropMessage(logging.Filter):
    """Drops log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)
