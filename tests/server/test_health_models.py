"""/, /info, /healthz, /readiness and the /model/* registry routes."""

from __future__ import annotations

import shutil
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from pixql import __version__
from tests.server.conftest import VERSION

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

MODELS_KEYS = ["models", "total_vram_bytes", "gpu_memory_used", "gpu_memory_total",
               "torch_cuda_allocated", "torch_cuda_reserved", "torch_cuda_allocator_cache",
               "non_torch_gpu_memory"]


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_landing_page(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "/docs" in r.text


def test_info(client: httpx.Client) -> None:
    info = client.get("/info").json()
    assert list(info) == ["name", "version", "uuid"]
    assert info["name"] == "pixql"
    assert info["version"] == __version__
    uuid.UUID(info["uuid"])


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "healthy"}
    assert client.get("/readiness").json() == {"status": "ready"}


def test_model_registry_add_remove_clear(client: httpx.Client) -> None:
    cleared = client.post("/model/clear")
    assert cleared.status_code == 200
    assert list(cleared.json()) == MODELS_KEYS
    assert cleared.json()["models"] == []
    added = client.post("/model/add", json={"model_id": f"clip/{VERSION}", "model_type": None})
    (model,) = added.json()["models"]
    assert model["model_id"] == f"clip/{VERSION}"
    assert model["task_type"] == "embedding"
    assert model["input_height"] == model["input_width"] == 32  # the tiny CLIP's input
    assert client.get("/model/registry").json()["models"] == [model]
    removed = client.post("/model/remove", json={"model_id": f"clip/{VERSION}"})
    assert removed.json()["models"] == []
    # embedding loads it again, lazily
    assert client.post("/clip/embed_text", json={"text": "x"}).status_code == 200
    assert len(client.get("/model/registry").json()["models"]) == 1


@pytest.mark.parametrize(
    ("model_id", "status", "words"),
    [
        ("yolov8n-640", 400, "clip/<clip_version_id>"),
        ("sam/vit_h", 400, "CLIP only"),
        ("clip/ViT-X-1", 400, "valid values"),
        ("clip/RN50", 404, "not found"),
    ],
)
def test_add_unknown_or_missing_models(client: httpx.Client, model_id: str, status: int,
                                       words: str) -> None:
    r = client.post("/model/add", json={"model_id": model_id})
    assert r.status_code == status
    assert words in r.json()["message"]


def test_readiness_waits_for_preloaded_models_and_notices_a_vanished_folder(
    start_server: Callable[..., tuple[str, Any]], tiny_models_dir: Path, tmp_path: Path
) -> None:
    own = tmp_path / "models"
    shutil.copytree(tiny_models_dir, own)
    base, _ = start_server(clip_models_dir=own, preload_models=[f"clip/{VERSION}"])
    with httpx.Client(base_url=base, timeout=30) as c:
        wait_for(lambda: c.get("/readiness").status_code == 200)
        assert c.get("/model/registry").json()["models"][0]["model_id"] == f"clip/{VERSION}"
        (own / VERSION).rename(own / "moved")
        r = c.get("/readiness")
        assert r.status_code == 503
        assert r.json()["status"] == "not ready"
        assert "is gone" in r.json()["reason"]
        assert c.get("/healthz").status_code == 200


def test_readiness_reports_a_failed_preload(
    start_server: Callable[..., tuple[str, Any]]
) -> None:
    base, _ = start_server(preload_models=["RN50"])
    with httpx.Client(base_url=base, timeout=30) as c:
        wait_for(lambda: "preloading failed" in c.get("/readiness").json().get("reason", ""))
        r = c.get("/readiness")
        assert r.status_code == 503
        assert "WeightsNotFoundError" in r.json()["reason"]
