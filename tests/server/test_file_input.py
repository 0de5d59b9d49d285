"""``{"type": "file"}`` images: off by default; when enabled, only inside the workspace."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from pixql.images import load_image

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, images: dict[str, bytes]) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    (root / "pics").mkdir()
    (root / "pics" / "red.png").write_bytes(images["red"])
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.png").write_bytes(images["blue"])
    (root / "pics" / "escape.png").symlink_to(outside / "secret.png")
    return root


@pytest.fixture(scope="module")
def files_client(start_server: Callable[..., tuple[str, Any]],
                 workspace: Path) -> Iterator[httpx.Client]:
    base, _ = start_server(workspace=workspace, allow_file_input=True)
    with httpx.Client(base_url=base, timeout=30) as c:
        yield c


def embed_file(c: httpx.Client, value: str) -> httpx.Response:
    return c.post("/clip/embed_image", json={"image": {"type": "file", "value": value}})


@pytest.mark.parametrize("relative", [True, False])
def test_files_inside_the_workspace_are_read(files_client: httpx.Client, workspace: Path,
                                             embedder: Any, relative: bool) -> None:
    path = "pics/red.png" if relative else str(workspace / "pics" / "red.png")
    r = embed_file(files_client, path)
    assert r.status_code == 200, r.text
    expected = embedder.embed([load_image(workspace / "pics" / "red.png")], "image",
                              normalize=False)
    np.testing.assert_allclose(np.asarray(r.json()["embeddings"]), expected, atol=1e-5)


@pytest.mark.parametrize("value", ["../outside/secret.png", "/etc/hostname",
                                   "pics/escape.png", "pics/../../x.png"])
def test_files_outside_the_workspace_are_refused(files_client: httpx.Client,
                                                 value: str) -> None:
    r = embed_file(files_client, value)
    assert r.status_code == 400
    assert "inside the workspace" in r.json()["message"]


def test_missing_file_is_400(files_client: httpx.Client) -> None:
    r = embed_file(files_client, "pics/nope.png")
    assert r.status_code == 400
    assert "not found" in r.json()["message"]


def test_file_input_is_off_by_default(client: httpx.Client) -> None:
    r = embed_file(client, "pics/red.png")
    assert r.status_code == 400
    assert "filesystem is disabled" in r.json()["message"]
