"""Run by the Roboflow venv's python (never pixql's): put two CLIP ONNX files into
``inference_models``' offline cache as ``clip/<version>``, so that Roboflow's server with
``OFFLINE_MODE=True`` loads them through its default path (``AutoModel`` → ``ClipOnnx``)
without calling the Roboflow API.

What a warm-up run with network would leave behind, written with the library's own code:
the files in ``$INFERENCE_HOME/models-cache/<slug>/<package_id>/`` and a record in
``$INFERENCE_HOME/offline-weights-registry/`` (``offline_registry.record_successful_load``).

    <roboflow-venv>/bin/python _roboflow_register.py ONNX_DIR [--version ViT-B-16]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path

PACKAGE_ID = "pixqlbenchonnxfp32"  # letters and digits only (the library checks)
FILES = ("visual.onnx", "textual.onnx")


def md5(path: Path) -> str:
    h = hashlib.md5()  # the registry's artefact identity is an MD5
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("onnx_dir", type=Path)
    p.add_argument("--version", default="ViT-B-16")
    p.add_argument("--opset", type=int, default=18)
    args = p.parse_args()
    if not os.environ.get("INFERENCE_HOME"):
        raise SystemExit("set INFERENCE_HOME (the server's MODEL_CACHE_DIR)")

    from inference_models.models.auto_loaders.entities import BackendType
    from inference_models.models.auto_loaders.model_cache_paths import (
        generate_model_package_cache_path,
    )
    from inference_models.weights_providers import offline_registry
    from inference_models.weights_providers.entities import (
        LocalFileArtefactSpecs,
        ModelMetadata,
        ModelPackageMetadata,
        ONNXPackageDetails,
        PackageSourceType,
        Quantization,
    )

    model_id = f"clip/{args.version}"
    package_dir = Path(generate_model_package_cache_path(model_id, PACKAGE_ID))
    package_dir.mkdir(parents=True, exist_ok=True)
    artefacts = []
    for name in FILES:
        target = package_dir / name
        source = args.onnx_dir / name
        if not target.is_file() or target.stat().st_size != source.stat().st_size \
                or md5(target) != md5(source):
            target.unlink(missing_ok=True)
            try:
                os.link(source, target)  # no second copy of ~600 MB
            except OSError:
                shutil.copyfile(source, target)
        artefacts.append(LocalFileArtefactSpecs(file_handle=name, md5_hash=md5(target)))
    package = ModelPackageMetadata(
        package_id=PACKAGE_ID, backend=BackendType.ONNX, package_artefacts=artefacts,
        package_source=PackageSourceType.LOCAL_CACHE, quantization=Quantization.FP32,
        dynamic_batch_size_supported=True,
        onnx_package_details=ONNXPackageDetails(opset=args.opset), trusted_source=True)
    metadata = ModelMetadata(model_id=model_id, model_architecture="clip",
                             model_packages=[package], task_type="embedding",
                             model_variant=args.version)
    ok = offline_registry.record_successful_load(
        model_metadata=metadata, requested_model_id=model_id, proven_package_id=PACKAGE_ID)
    if not ok:
        raise SystemExit("inference_models refused the offline record")
    print(json.dumps({"model_id": model_id, "package_dir": str(package_dir)}))


if __name__ == "__main__":
    main()
