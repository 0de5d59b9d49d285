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
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixql.errors import MissingDependencyError, ModelError

#: backend → (Python module, install hint)
RUNTIMES: dict[str, tuple[str, str]] = {
    "onnx": ("onnxruntime", "pip install 'pixql[onnx]' (or: pip install onnxruntime)"),
    "onnx-int8": ("onnxruntime", "pip install 'pixql[onnx]' (or: pip install onnxruntime)"),
    "openvino": ("openvino", "pip install 'pixql[openvino]' (or: pip install openvino)"),
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
    """Whether the runtime of ``backend`` can be imported."""
    try:
        require_runtime(backend)
    except MissingDependencyError:
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
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors
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
    CPU has it, else fp32); compiled blobs are cached next to the file."""

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        ov = require_runtime("openvino")
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(path.parent / "openvino")})
        core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads()})
        try:
            self.compiled = core.compile_model(str(path), "CPU")
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
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


def _numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy())


#: backend → (precision of the ONNX files it runs, runner factory)
RUNNERS: dict[str, tuple[str, Any]] = {
    "onnx": ("fp32", OrtRunner),
    "onnx-int8": ("int8", OrtRunner),
    "openvino": ("fp32", OpenVinoRunner),
}
