"""The server's model registry loads CLIP the way SQL loads a workspace's models: through the
model-kind registry (``get_kind("clip").load``), so SQL and HTTP share one embedder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pixql.models import registry
from pixql.server.manager import ClipModels
from pixql.server.settings import ServerSettings
from tests.server.conftest import VERSION

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def kind_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Record the CLIP kind's load/unload calls (the real kind still does the work)."""
    calls: list[tuple[Any, ...]] = []
    clip = registry.get_kind("clip")

    class Recorded(clip):
        @classmethod
        def load(cls, artifact_dir: Any, config: dict[str, Any]) -> Any:
            calls.append(("load", artifact_dir, dict(config)))
            return super().load(artifact_dir, config)

        @classmethod
        def unload(cls, config: dict[str, Any] | None = None) -> None:
            calls.append(("unload", config))
            super().unload(config)

    monkeypatch.setitem(registry._KINDS, "clip", Recorded)
    return calls


def test_models_load_through_the_model_kind_registry(
    kind_calls: list[tuple[Any, ...]], server_env: Path
) -> None:
    models = ClipModels(ServerSettings.from_env(clip_models_dir=server_env))
    try:
        model, cold = models.get(VERSION)
        config = {"clip_version_id": VERSION, "device": "cpu", "models_dir": str(server_env)}
        assert cold
        assert kind_calls == [("load", None, config)]
        assert model.folder == server_env / VERSION
        assert models.get(VERSION) == (model, False)
        assert len(kind_calls) == 1

        models.remove(f"clip/{VERSION}")
        assert kind_calls[-1] == ("unload", config)
        assert models.describe().models == []
        models.clear()
        assert kind_calls[-1] == ("unload", None)
    finally:
        models.close()


def test_sql_and_the_server_share_the_embedder_of_the_same_weights(server_env: Path) -> None:
    """A workspace's CLIP model of the same weights gets the server's very embedder (the
    config a BUILD records: no models_dir, which then comes from the environment)."""
    models = ClipModels(ServerSettings.from_env(clip_models_dir=server_env))
    try:
        served, _ = models.get(VERSION)
        built = {"clip_version_id": VERSION, "path": None, "video_frames": 8, "device": "cpu",
                 "backend": None}
        assert registry.get_kind("clip").load(server_env, built) is served.embedder
    finally:
        models.close()
