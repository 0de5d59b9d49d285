"""Weights resolution: explicit path, $PIXQL_CLIP_MODELS_DIR, offline errors, bad files."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest
import torch

from pixql.errors import ModelError, WeightsNotFoundError
from pixql.models.clip import load_clip, loader
from pixql.models.clip.loader import clear_cache, resolve_weights
from pixql.testing import make_tiny_clip, make_tiny_clip_models_dir


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PIXQL_CLIP_MODELS_DIR", raising=False)
    monkeypatch.delenv("CLIP_VERSION_ID", raising=False)


def test_make_tiny_clip_writes_hub_layout_deterministically(tmp_path):
    from safetensors.torch import load_file

    a = make_tiny_clip(tmp_path / "a", seed=3)
    b = make_tiny_clip(tmp_path / "b", seed=3)
    c = make_tiny_clip(tmp_path / "c", seed=4)
    assert sorted(p.name for p in a.iterdir()) == ["open_clip_config.json",
                                                    "open_clip_model.safetensors"]
    cfg = json.loads((a / "open_clip_config.json").read_text(encoding="utf-8"))
    assert cfg["model_cfg"]["embed_dim"] == 32
    assert cfg["model_cfg"]["text_cfg"]["vocab_size"] == 49408
    assert cfg["preprocess_cfg"]["interpolation"] == "bicubic"
    wa, wb, wc = (load_file(str(p / "open_clip_model.safetensors")) for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(wa["token_embedding.weight"], wc["token_embedding.weight"])


def test_load_from_explicit_path(tiny_clip_dir):
    emb = load_clip("ViT-B-32", path=tiny_clip_dir)
    assert emb.model_id == "clip/ViT-B-32"
    assert emb.dim == 32
    assert emb.source == str(tiny_clip_dir)
    assert emb.modalities == frozenset({"image", "text", "video"})
    assert emb.max_text_tokens == 77


def test_same_version_and_path_share_one_instance(tiny_clip_dir):
    a = load_clip("ViT-B-32", path=tiny_clip_dir)
    assert load_clip("ViT-B-32", path=str(tiny_clip_dir)) is a
    assert load_clip("RN50", path=tiny_clip_dir) is not a


def test_load_from_models_dir_env(tmp_path, monkeypatch):
    root = make_tiny_clip_models_dir(tmp_path / "models", "ViT-B-16", embed_dim=24)
    monkeypatch.setenv("PIXQL_CLIP_MODELS_DIR", str(root))
    assert resolve_weights("ViT-B-16").folder == root / "ViT-B-16"
    emb = load_clip()  # default version ViT-B-16, resolved through the env variable
    assert (emb.model_id, emb.dim) == ("clip/ViT-B-16", 24)
    assert emb.source == str(root / "ViT-B-16")


def test_models_dir_argument_overrides_env(tmp_path, monkeypatch):
    env_root = make_tiny_clip_models_dir(tmp_path / "env", "ViT-B-32", embed_dim=16)
    arg_root = make_tiny_clip_models_dir(tmp_path / "arg", "ViT-B-32", embed_dim=8)
    monkeypatch.setenv("PIXQL_CLIP_MODELS_DIR", str(env_root))
    assert load_clip("ViT-B-32").dim == 16
    assert load_clip("ViT-B-32", models_dir=arg_root).dim == 8


def test_env_version_id_picks_the_folder(tmp_path, monkeypatch):
    root = make_tiny_clip_models_dir(tmp_path / "m", "RN50", embed_dim=16)
    monkeypatch.setenv("CLIP_VERSION_ID", "RN50")
    assert load_clip(models_dir=root).model_id == "clip/RN50"


def test_weights_in_hugging_face_cache_are_used_offline(tmp_path, tiny_clip_dir,
                                                       isolated_hf_cache):
    """A snapshot open_clip downloaded earlier is found without network."""
    repo = isolated_hf_cache / "models--timm--vit_base_patch32_clip_224.openai"
    snapshot = repo / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_clip_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    src = resolve_weights("ViT-B-32")
    assert (src.origin, src.folder) == ("hf_cache", snapshot)
    assert load_clip("ViT-B-32").source == str(snapshot)


def test_no_weights_offline_says_which_files_where(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXQL_CLIP_MODELS_DIR", str(tmp_path / "weights"))
    with pytest.raises(WeightsNotFoundError) as e:
        load_clip("ViT-B-16")
    msg = str(e.value)
    assert f"{tmp_path / 'weights'}/ViT-B-16" in msg
    assert "open_clip_config.json" in msg
    assert "open_clip_model.safetensors" in msg
    assert "open_clip_pytorch_model.bin" in msg
    assert "PIXQL_CLIP_MODELS_DIR" in msg
    assert "snapshot_download('timm/vit_base_patch16_clip_224.openai'" in msg
    assert e.value.http_status == 404


def test_pixql_offline_also_forbids_download(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("PIXQL_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match=r"\$PIXQL_CLIP_MODELS_DIR/ViT-L-14-336px"):
        load_clip("ViT-L-14-336px")


def test_missing_path_folder(tmp_path):
    with pytest.raises(WeightsNotFoundError) as e:
        load_clip("ViT-B-32", path=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(e.value)
    assert "does not exist" in str(e.value)


def test_folder_without_weight_file(tmp_path, tiny_clip_dir):
    folder = tmp_path / "cfg-only"
    folder.mkdir()
    shutil.copy(tiny_clip_dir / "open_clip_config.json", folder)
    with pytest.raises(WeightsNotFoundError) as e:
        load_clip("ViT-B-32", path=folder)
    assert f"no weight file in {folder}" in str(e.value)


def test_corrupt_weights_raise_model_error_with_path(tmp_path, tiny_clip_dir):
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_clip_dir, folder)
    (folder / "open_clip_model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError) as e:
        load_clip("ViT-B-32", path=folder)
    assert not isinstance(e.value, WeightsNotFoundError)
    assert str(folder) in str(e.value)


def test_weights_of_another_architecture_without_config(tmp_path, tiny_clip_dir):
    """No config → open_clip's built-in ViT-B-32 architecture; tiny weights do not fit."""
    folder = tmp_path / "no-config"
    folder.mkdir()
    shutil.copy(tiny_clip_dir / "open_clip_model.safetensors", folder)
    with pytest.raises(ModelError, match=r"open_clip_model\.safetensors"):
        load_clip("ViT-B-32", path=folder)


def test_clear_cache_reloads(tiny_clip_dir):
    a = load_clip("ViT-B-32", path=tiny_clip_dir)
    clear_cache()
    b = load_clip("ViT-B-32", path=tiny_clip_dir)
    assert a is not b
    assert load_clip("ViT-B-32", path=tiny_clip_dir) is b


def test_unknown_version_is_model_error(tiny_clip_dir):
    with pytest.raises(ModelError, match="valid values: RN50"):
        load_clip("ViT-Z-99", path=tiny_clip_dir)


def test_relative_path_is_made_absolute(tiny_clip_dir, monkeypatch):
    monkeypatch.chdir(Path(tiny_clip_dir).parent)
    src = resolve_weights("ViT-B-32", path=Path(tiny_clip_dir).name)
    assert src.folder == Path(tiny_clip_dir)


# ---------------------------------------------------------------------- online, fast failure
@pytest.fixture
def online(monkeypatch):
    """Downloads allowed (no offline variable), open_clip's loader replaced by a recorder
    (nothing is ever fetched); returns the list of names it was asked for."""
    import open_clip

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("PIXQL_OFFLINE", raising=False)
    monkeypatch.delenv("PIXQL_CLIP_MODELS_DIR", raising=False)
    asked: list[str] = []

    def no_download(name, **kwargs):
        asked.append(name)
        raise RuntimeError("test: no downloads here")

    monkeypatch.setattr(open_clip, "create_model_from_pretrained", no_download)
    clear_cache()
    return asked


def _endpoint(monkeypatch, url: str) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", url)


def test_an_unreachable_download_host_fails_at_once_with_the_local_options(online,
                                                                           monkeypatch):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _endpoint(monkeypatch, f"http://127.0.0.1:{port}")
    with pytest.raises(WeightsNotFoundError) as e:
        load_clip("ViT-B-32")
    message = str(e.value)
    assert f"cannot reach the download host 127.0.0.1:{port}" in message
    assert "PIXQL_CLIP_MODELS_DIR" in message
    assert "snapshot_download(" in message
    assert online == []  # open_clip's download (and its retries) never started


def test_a_download_host_that_never_answers_is_given_up_after_the_timeout(online,
                                                                           monkeypatch):
    """A black hole (a resolver or a SYN that never returns): the probe's thread is left
    behind, the load returns after CONNECT_TIMEOUT_S (made short here)."""
    release = threading.Event()
    monkeypatch.setattr(loader, "CONNECT_TIMEOUT_S", 0.2)

    def black_hole(*args, **kwargs):
        release.wait(60)
        raise OSError("released at the end of the test")

    monkeypatch.setattr(loader.socket, "create_connection", black_hole)
    try:
        with pytest.raises(WeightsNotFoundError, match=r"did not answer within 0\.2 s"):
            load_clip("ViT-B-32")
    finally:
        release.set()
    assert online == []


def test_a_reachable_host_goes_on_to_open_clips_download(online, monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        _endpoint(monkeypatch, f"http://127.0.0.1:{server.getsockname()[1]}")
        assert loader.download_host_unreachable() is None
        with pytest.raises(WeightsNotFoundError, match="the download failed"):
            load_clip("ViT-B-32")
    assert len(online) == 1  # the probe passed: open_clip was asked (and failed here)


def test_evict_forgets_one_version_only(tiny_clip_dir):
    from pixql.models.clip.loader import evict

    a = load_clip("ViT-B-32", path=tiny_clip_dir)
    b = load_clip("RN50", path=tiny_clip_dir)  # with path, the version is only a label
    evict("ViT-B-32")
    assert load_clip("ViT-B-32", path=tiny_clip_dir) is not a
    assert load_clip("RN50", path=tiny_clip_dir) is b
