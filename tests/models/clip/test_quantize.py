"""Static int8 quantization (``openvino-int8``): what is kept in fp32, what is quantized,
and that batches stay batches (rows do not depend on their batch mates). No quality bar:
how well int8 keeps a random tiny CLIP is the quantizer's business (docs/testing.md)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytest.importorskip("onnx")

import onnx

from pixql.models.clip import export, export_cache
from pixql.models.clip.backends import attach_backend
from pixql.models.clip.calibration import calibration_batch, quantization_samples
from pixql.models.clip.embedder import ClipEmbedder
from pixql.models.clip.quantize import fp32_nodes

TEXTS = ["a cat", "x", "a photo of a black dog sitting on a red chair in the garden"]


@pytest.fixture(scope="module")
def int8_embedder(default_cache, tiny_clip):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(export.CACHE_ENV, str(default_cache["root"]))
        e = ClipEmbedder(tiny_clip.model, tiny_clip.image_transform, tiny_clip.tokenizer,
                         version_id=tiny_clip.version_id, dim=tiny_clip.dim)
        yield attach_backend(e, "openvino-int8")


def _graph(folder, tower: str, precision: str):
    return onnx.load(str(folder / export.FILES[(tower, precision)])).graph


def test_patch_embedding_and_projection_stay_fp32(int8_embedder):
    folder = int8_embedder._export_folder
    image = onnx.load(str(folder / "image.onnx"))
    kept = fp32_nodes(image)
    ops = {n.name: n.op_type for n in image.graph.node}
    assert [ops[k] for k in kept] == ["Conv", "MatMul"]
    (out,) = [n for n in image.graph.node if image.graph.output[0].name in n.output]
    assert kept[-1] == out.name  # the final projection
    quantized = _graph(folder, "image", "int8s")
    from_dq = {o for n in quantized.node if n.op_type == "DequantizeLinear" for o in n.output}
    by_name = {n.name: n for n in quantized.node}
    for name in kept:  # their activations are not quantized
        assert by_name[name].input[0] not in from_dq
    quantized_inputs = [n for n in quantized.node if n.op_type == "MatMul"
                        and n.name not in kept and n.input[0] in from_dq]
    assert quantized_inputs  # the other MatMuls read int8 activations


def test_calibration_data_differs_from_the_check_batch(int8_embedder):
    check = calibration_batch(int8_embedder, "image")
    samples = quantization_samples(int8_embedder, "image")
    assert all(not any(np.allclose(s, c) for c in check) for batch in samples for s in batch)
    text = quantization_samples(int8_embedder, "text")
    assert len(text) > 1
    assert all(len(t) == 1 for t in text[:-1])  # single captions at their own length


def test_openvino_int8_runs_batches_as_batches(int8_embedder, tiny_clip):
    e = int8_embedder
    assert e.backend == "openvino-int8"
    assert e.batches("image")
    assert e.batches("text")
    assert set(e.towers.cosine) == {"image", "text"}
    recorded = export_cache.read_manifest(e._export_folder)["files"]["image.int8s.onnx"]["cosine"]
    assert recorded["openvino-int8"] == pytest.approx(e.towers.cosine["image"], abs=1e-6)
