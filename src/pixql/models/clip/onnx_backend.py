"""Run exported CLIP towers with ONNX Runtime or OpenVINO (CPU).

A *runner* is a callable ``torch.Tensor -> torch.Tensor`` (float32, CPU) wrapping one
exported tower; :mod:`pixql.models.clip.backends` plugs runners into a ``ClipEmbedder``.
Both runtimes are thread-safe here: ONNX Runtime's ``InferenceSession.run`` is, and the
OpenVINO runner keeps one infer request per thread. Both use as many threads as torch
(``torch.get_num_threads()``, i.e. ``OMP_NUM_THREADS`` or the physical cores), so one
setting governs every backend.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pixql.errors import MissingDependencyError, ModelError
from pixql.models.clip.text import trim_padding

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

#: backend → (Python module, install hint)
RUNTIMES: dict[str, tuple[str, str]] = {
    "onnx": ("onnxruntime", "pip install 'pixql[onnx]' (or: pip install onnxruntime)"),
    "onnx-int8": ("onnxruntime", "pip install 'pixql[onnx]' (or: pip install onnxruntime)"),
    "openvino": ("openvino", "pip install 'pixql[openvino]' (or: pip install openvino)"),
    "openvino-int8": ("openvino", "pip install 'pixql[openvino]' (openvino, nncf)"),
}


def require_runtime(backend: str) -> Any:
    """Import the runtime module of ``backend``; MissingDependencyError names the extra."""
    module, hint = RUNTIMES[backend]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"the CLIP backend {backend!r} needs the Python package {module!r}: {hint}. "
            "Or choose backend='torch'."
        ) from e


def runtime_available(backend: str) -> bool:
    """Whether the runtime of ``backend`` can be imported (a broken install counts as
    missing: ``auto`` must not fail because of it)."""
    try:
        require_runtime(backend)
    except MissingDependencyError:
        return False
    except Exception as e:  # noqa: BLE001 - e.g. OSError from a broken shared library
        log.warning("the %s runtime cannot be imported (%s: %s); not using it",
                    RUNTIMES[backend][0], type(e).__name__, e)
        return False
    return True


class OrtRunner:
    """One ONNX file in an ``onnxruntime.InferenceSession`` on the CPU."""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        ort = require_runtime("onnx")
        threads = threads or torch.get_num_threads()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # no busy-waiting worker threads: they would steal the CPU from image decoding
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"onnxruntime cannot load {path}: {e}") from e
        self.input_name = self.session.get_inputs()[0].name
        self.path = path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run the tower on a CPU tensor; returns a float32 CPU tensor."""
        feed = {self.input_name: _numpy(x)}
        return torch.from_numpy(np.asarray(self.session.run(None, feed)[0], dtype=np.float32))

    def __repr__(self) -> str:
        return f"OrtRunner({self.path.name})"


class OpenVinoRunner:
    """One ONNX file compiled by OpenVINO for the CPU (its default precision: bf16 where the
    CPU has it, else fp32; int8 where the file has QuantizeLinear/DequantizeLinear pairs);
    compiled blobs are cached next to the file."""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        ov = require_runtime("openvino")
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(path.parent / "openvino")})
        core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads()})
        try:
            self.compiled = core.compile_model(str(path), "CPU")
        except Exception as e:
            raise ModelError(f"OpenVINO cannot compile {path}: {e}") from e
        self._local = threading.local()
        self.path = path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run the tower on a CPU tensor; returns a float32 CPU tensor."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        out = request.infer([_numpy(x)], share_inputs=False)
        return torch.from_numpy(np.array(next(iter(out.values())), dtype=np.float32))

    def __repr__(self) -> str:
        return f"OpenVinoRunner({self.path.name})"


class RowwiseRunner:
    """Runs another runner one row at a time, text rows cut to their own length, so that
    a row's embedding never depends on the other rows of its batch.

    Dynamic int8 quantization picks each activation's scale from the whole input tensor:
    run batched, an item's embedding would shift (cosine ~0.999) with its batch mates and
    its padding, so CONVERT results would depend on ``batch_size`` and row order and the
    server's micro-batching would change answers. Row by row costs little on a CPU, where
    batching gains ONNX Runtime ~10% (benchmarks/RESULTS.md, section clip_cpu).
    """

    #: tells the server that batching gains nothing here (see ``Embedder.batches``)
    rowwise = True

    def __init__(self, inner: Any, *, trim_text: bool) -> None:
        self.inner = inner
        self.trim_text = trim_text

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) <= 1 and (x.is_floating_point() or not self.trim_text):
            return self.inner(x)
        rows = []
        for row in x.split(1):
            if self.trim_text and not row.is_floating_point():
                row = trim_padding(row)
            rows.append(self.inner(row))
        return torch.cat(rows) if rows else self.inner(x)

    def __repr__(self) -> str:
        return f"RowwiseRunner({self.inner!r})"


def _numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy())


#: backends whose rows depend on their batch mates when run batched (run row by row)
ROWWISE = frozenset({"onnx-int8"})
#: backend → (precision of the ONNX files it runs, runner factory)
RUNNERS: dict[str, tuple[str, Any]] = {
    "onnx": ("fp32", OrtRunner),
    "onnx-int8": ("int8", OrtRunner),
    "openvino": ("fp32", OpenVinoRunner),
    "openvino-int8": ("int8s", OpenVinoRunner),
}
