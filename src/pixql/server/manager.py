"""The CLIP models a server has loaded: lazy loading, preloading, readiness, the registry.

Models are loaded the way SQL loads a workspace's models: through the model-kind registry
(``get_kind("clip").load(...)``, whose CLIP loader caches per process, so SQL and HTTP share
one embedder per weights), on first use or at start-up (``preload_models``), and listed by
``GET /model/registry``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixql.errors import InputError
from pixql.models.base import Embedder
from pixql.models.clip.names import get_variant, resolve_version_id
from pixql.models.registry import get_kind
from pixql.server.schemas import ModelDescription, ModelsDescriptions
from pixql.server.service import EmbeddingService
from pixql.server.settings import ServerSettings

log = logging.getLogger(__name__)

#: the one model family this server serves: ``clip/<version_id>`` (a model kind's name)
FAMILY = "clip"


@dataclass
class LoadedModel:
    """A model in the registry."""

    version_id: str
    embedder: Embedder
    #: the folder its weights were read from (readiness checks it is still there)
    folder: Path | None
    load_seconds: float

    @property
    def model_id(self) -> str:
        """Roboflow's id, ``clip/<version_id>``."""
        return f"{FAMILY}/{self.version_id}"

    def describe(self) -> ModelDescription:
        """Roboflow's ``ModelDescription`` of this model."""
        size = _input_size(self.embedder)
        return ModelDescription(
            model_id=self.model_id, task_type="embedding", batch_size=None,
            input_height=size, input_width=size,
        )


def _input_size(embedder: Embedder) -> int | None:
    size = getattr(getattr(getattr(embedder, "model", None), "visual", None), "image_size", None)
    if isinstance(size, tuple | list):
        size = size[0]
    return int(size) if isinstance(size, int) else None


def version_of(model_id: str) -> str:
    """``'clip/ViT-B-32'`` → ``'ViT-B-32'``; InputError for other model families."""
    family, _, version = model_id.partition("/")
    if family != FAMILY or not version:
        raise InputError(
            f"unknown model_id {model_id!r}: this server serves CLIP only, as "
            f"'clip/<clip_version_id>' (e.g. 'clip/ViT-B-16')",
            field="model_id",
        )
    return version


class ClipModels:
    """Thread-safe registry of loaded CLIP models.

    Args:
        settings: default version, weights folder, device and models to preload.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.RLock()
        self._loading: dict[str, threading.Lock] = {}
        self._preload_done = threading.Event()
        self._preload_error: str | None = None
        #: embedding cache + micro-batchers shared by the /clip routes
        self.service = EmbeddingService(settings)

    # ------------------------------------------------------------------ loading
    def default_version(self) -> str:
        """The server's default ``clip_version_id`` (validated)."""
        return resolve_version_id(self.settings.clip_version_id)

    def get(self, version_id: str | None = None) -> tuple[LoadedModel, bool]:
        """The model ``version_id`` (default: the server's), loading it if needed.

        Returns:
            ``(model, cold)`` where ``cold`` tells whether this call loaded it.

        Raises:
            ModelError: unknown version id (the message lists the valid ones).
            WeightsNotFoundError: no weights for it (HTTP 404).
        """
        version = version_id or self.default_version()
        get_variant(version)
        with self._lock:
            if version in self._loaded:
                return self._loaded[version], False
            loading = self._loading.setdefault(version, threading.Lock())
        with loading:  # one load per version; other versions are served meanwhile
            with self._lock:
                if version in self._loaded:
                    return self._loaded[version], False
            started = time.perf_counter()
            embedder = get_kind(FAMILY).load(None, self.config(version))
            model = LoadedModel(version, embedder, embedder.weights_folder,
                                time.perf_counter() - started)
            with self._lock:
                self._loaded[version] = model
            return model, True

    def config(self, version: str) -> dict[str, Any]:
        """The CLIP kind's config naming ``version`` with the server's weights folder and
        device (what a workspace's catalog records for a built model)."""
        models_dir = self.settings.clip_models_dir
        return {"clip_version_id": version, "device": self.settings.device,
                "models_dir": str(models_dir) if models_dir is not None else None}

    def add(self, model_id: str) -> None:
        """``POST /model/add``: load ``clip/<version>`` now."""
        self.get(version_of(model_id))

    def remove(self, model_id: str) -> None:
        """``POST /model/remove``: forget ``clip/<version>`` (NotFound-free: idempotent)."""
        version = version_of(model_id)
        with self._lock:
            self._loaded.pop(version, None)
        self.service.drop_model(f"{FAMILY}/{version}")
        get_kind(FAMILY).unload(self.config(version))

    def clear(self) -> None:
        """``POST /model/clear``: forget every model (the loader's cache too)."""
        with self._lock:
            self._loaded.clear()
        self.service.clear()
        get_kind(FAMILY).unload()

    def close(self) -> None:
        """Shutdown: finish queued batches and stop the batch workers."""
        self.service.close()

    def describe(self) -> ModelsDescriptions:
        """``GET /model/registry``."""
        with self._lock:
            models = [m.describe() for m in self._loaded.values()]
        return ModelsDescriptions(models=models)

    # ------------------------------------------------------------------ preload / readiness
    def preload_versions(self) -> list[str]:
        """Version ids named by ``preload_models`` (``'clip/ViT-B-32'`` or ``'ViT-B-32'``)."""
        return [m.split("/", 1)[1] if "/" in m else m for m in self.settings.preload_models]

    def preload(self) -> None:
        """Load every ``preload_models`` entry (run in a background thread at start-up)."""
        try:
            for model_id in self.settings.preload_models:
                self.add(model_id if "/" in model_id else f"{FAMILY}/{model_id}")
        except Exception as e:  # noqa: BLE001 - reported by /readiness and the log
            self._preload_error = f"{type(e).__name__}: {e}"
            log.error("preloading models failed: %s", self._preload_error)
        finally:
            self._preload_done.set()

    def mark_preloaded(self) -> None:
        """Readiness without preloading (nothing to preload)."""
        self._preload_done.set()

    def readiness(self) -> str | None:
        """None when ready, else why not (loading, failed, or a model's folder vanished)."""
        if not self._preload_done.is_set():
            return "loading models"
        if self._preload_error is not None:
            return f"preloading failed: {self._preload_error}"
        with self._lock:
            loaded = dict(self._loaded)
        for version in self.preload_versions():
            model = loaded.get(version)
            if model is None:
                return f"clip/{version} is not loaded"
            if model.folder is not None and not model.folder.is_dir():
                return f"the weights folder of clip/{version} ({model.folder}) is gone"
        return None

