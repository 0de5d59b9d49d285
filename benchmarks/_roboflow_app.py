"""Run by the Roboflow venv's python (never pixql's): Roboflow's inference HTTP server, as
its CPU Docker image builds it (``docker/config/cpu_http.py`` of roboflow/inference: a
``ModelManager`` over the Roboflow model registry, a fixed-size model cache, the
``HttpInterface`` FastAPI app), served by uvicorn on 127.0.0.1 only (the image's default
``HOST`` is 0.0.0.0) with one worker.

    <roboflow-venv>/bin/python _roboflow_app.py PORT
"""

from __future__ import annotations

import sys


def main() -> None:
    port = int(sys.argv[1])
    import uvicorn
    from inference.core.env import MAX_ACTIVE_MODELS
    from inference.core.interfaces.http.http_api import HttpInterface
    from inference.core.managers.base import ModelManager
    from inference.core.managers.decorators.fixed_size_cache import WithFixedSizeCache
    from inference.core.registries.roboflow import RoboflowModelRegistry
    from inference.models.utils import ROBOFLOW_MODEL_TYPES

    manager = WithFixedSizeCache(ModelManager(model_registry=RoboflowModelRegistry(
        ROBOFLOW_MODEL_TYPES)), max_size=MAX_ACTIVE_MODELS)
    app = HttpInterface(manager).app
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", workers=None)


if __name__ == "__main__":
    main()
