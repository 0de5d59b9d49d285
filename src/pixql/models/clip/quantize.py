"""Static int8 quantization of an exported CLIP tower (for the ``openvino-int8`` backend).

NNCF's post-training quantization of the fp32 ONNX file, calibrated on generated inputs
(:func:`pixql.models.clip.calibration.quantization_samples`: other images and captions
than the accuracy check's), written as an ONNX file with QuantizeLinear/DequantizeLinear
pairs (QDQ) that OpenVINO runs with int8 kernels:

* weights int8, per output channel; activations int8 with scales fixed by the calibration
  (so, unlike dynamic quantization, a row's embedding does not depend on its batch mates
  and batches run as batches);
* kept in fp32: the patch embedding (the only convolution), the final projection (the
  MatMul producing the embeddings), and everything that is not a MatMul (layer norms,
  softmax, GELU: NNCF's transformer preset);
* no SmoothQuant: on the models measured it lowered the cosine to torch (0.984 vs 0.9995
  on a random-weight ViT-B/32 image tower, benchmarks/RESULTS.md).

This module imports nothing heavy at import time; :func:`quantize_static` needs ``nncf``
and ``onnx``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import numpy as np

#: operator types NNCF leaves in fp32 wherever they are
FP32_OPS = ("Conv",)


def quantize_static(source: Path, target: Path, samples: list[np.ndarray]) -> None:
    """Write the static int8 (QDQ) version of the fp32 ONNX file ``source`` to ``target``.

    Args:
        source: an fp32 tower exported by :mod:`pixql.models.clip.export` (one input).
        target: where the quantized ONNX file goes (written directly: the caller renames).
        samples: calibration inputs of the tower, one array per batch.
    """
    import nncf
    import onnx

    model = onnx.load(str(source))
    name = model.graph.input[0].name
    keep = fp32_nodes(model)
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.ERROR)  # its INFO lines and progress bars are noise here
    try:
        quantized = _quantize(nncf, model, name, samples, keep)
    finally:
        nncf_log.setLevel(level)
    onnx.save(quantized, str(target))


def _quantize(nncf: Any, model: Any, name: str, samples: list[np.ndarray],
              keep: list[str]) -> Any:
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    return nncf.quantize(
        model,
        nncf.Dataset([{name: s} for s in samples]),
        subset_size=len(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        ignored_scope=nncf.IgnoredScope(names=keep, validate=False),
        advanced_parameters=AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1)),
    )


def fp32_nodes(model: Any) -> list[str]:
    """Names of the nodes kept in fp32: the convolutions (patch embedding) and the MatMul or
    Gemm producing the graph's output (the final projection)."""
    nodes = list(model.graph.node)
    keep = [n.name for n in nodes if n.op_type in FP32_OPS]
    outputs = {o.name for o in model.graph.output}
    produced = {out: n for n in nodes for out in n.output}
    node = next((produced[o] for o in outputs if o in produced), None)
    # walk back through casts and reshapes to the projection
    while node is not None and node.op_type not in ("MatMul", "Gemm") and node.input:
        node = produced.get(node.input[0])
    if node is not None:
        keep.append(node.name)
    return keep
