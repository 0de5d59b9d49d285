"""The ViT-B-16 both servers of ``peers_roboflow.py`` load: one set of weights, two formats.

No weights can be downloaded here, so the model is open_clip's ViT-B-16 architecture with
random weights (fixed seed; OpenAI's QuickGELU activation, like the real ``openai``
checkpoint), saved once:

* for pixql — open_clip's hub layout, ``<models_dir>/ViT-B-16/open_clip_config.json`` +
  ``open_clip_model.safetensors`` (what ``PIXQL_CLIP_MODELS_DIR`` points at);
* for Roboflow — the two ONNX files its CLIP package holds, ``visual.onnx`` (float pixels
  ``(n, 3, 224, 224)`` → ``(n, 512)``) and ``textual.onnx`` (``clip.tokenize`` tokens
  ``(n, 77)`` → ``(n, 512)``), exported from the SAME safetensors (unnormalised projections,
  like Roboflow's files; dynamic batch).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

VERSION = "ViT-B-16"
SEED = 0
#: Roboflow's CLIP package files
ONNX_FILES = ("visual.onnx", "textual.onnx")
#: opset of the exported files (onnxruntime 1.21, Roboflow's pin, runs opsets up to 22)
OPSET = 18


def model_config() -> dict[str, Any]:
    """``open_clip_config.json`` content: ViT-B-16 with QuickGELU, OpenAI preprocessing."""
    import open_clip

    from pixql.testing.tiny_clip import tiny_clip_config

    cfg = dict(open_clip.get_model_config(VERSION))
    cfg["quick_gelu"] = True
    return {"model_cfg": cfg, "preprocess_cfg": tiny_clip_config()["preprocess_cfg"]}


def ensure_weights(models_dir: Path) -> Path:
    """``models_dir/ViT-B-16/`` in open_clip's hub layout (made once); returns ``models_dir``."""
    folder = models_dir / VERSION
    if (folder / "open_clip_config.json").is_file():
        return models_dir
    import open_clip
    import torch
    from safetensors.torch import save_file

    config = model_config()
    torch.manual_seed(SEED)
    model = open_clip.CLIP(**config["model_cfg"])  # random init: no download
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    return models_dir


def md5(path: Path) -> str:
    h = hashlib.md5()  # Roboflow's artefact identity is an MD5
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_onnx(models_dir: Path, out: Path) -> dict[str, str]:
    """``visual.onnx`` / ``textual.onnx`` of ``models_dir``'s weights in ``out`` (made once,
    next to a ``source.json`` naming the weights); returns file name → MD5."""
    weights = models_dir / VERSION / "open_clip_model.safetensors"
    stamp = {"weights": str(weights), "size": weights.stat().st_size, "opset": OPSET}
    marker = out / "source.json"
    if not (marker.is_file() and json.loads(marker.read_text()) == stamp
            and all((out / f).is_file() for f in ONNX_FILES)):
        export_onnx(models_dir, out)
        marker.write_text(json.dumps(stamp))
    return {f: md5(out / f) for f in ONNX_FILES}


def export_onnx(models_dir: Path, out: Path) -> None:
    """Export both towers of the pixql model in ``models_dir`` (loaded by pixql itself, torch
    backend) to Roboflow's two files."""
    import torch

    from pixql.models.clip import load_clip
    from pixql.models.clip.export import ImageTower, TextTower

    model = load_clip(VERSION, models_dir=models_dir, backend="torch").model
    out.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=4096)
    towers = {
        "visual.onnx": (ImageTower(model), torch.zeros(2, 3, 224, 224), "pixels"),
        "textual.onnx": (TextTower(model, trimmed=False),
                         torch.ones(2, 77, dtype=torch.long), "tokens"),
    }
    for name, (module, example, input_name) in towers.items():
        tmp = out / f"{name}.tmp"
        torch.onnx.export(module.eval(), (example,), str(tmp), input_names=[input_name],
                          output_names=["embeddings"], dynamic_shapes={input_name: {0: batch}},
                          dynamo=True, external_data=False, opset_version=OPSET,
                          verbose=False)
        tmp.replace(out / name)
