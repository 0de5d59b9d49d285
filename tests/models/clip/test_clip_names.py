"""Roboflow clip_version_id names → open_clip model names and pretrained tags."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pixql.errors import ModelError
from pixql.models.clip.names import (
    CLIP_VERSIONS,
    DEFAULT_VERSION_ID,
    get_variant,
    resolve_version_id,
    valid_version_ids,
)

ROBOFLOW_IDS = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64",
                "ViT-B-16", "ViT-B-32", "ViT-L-14", "ViT-L-14-336px"]


def test_table_holds_exactly_roboflows_nine_ids():
    assert sorted(valid_version_ids()) == sorted(ROBOFLOW_IDS)
    assert DEFAULT_VERSION_ID == "ViT-B-16"


@pytest.mark.parametrize(("version", "name"), [
    ("ViT-L-14-336px", "ViT-L-14-336"),
    ("ViT-B-16", "ViT-B-16"),
    ("RN50x64", "RN50x64"),
])
def test_maps_to_open_clip_name_and_openai_tag(version, name):
    v = get_variant(version)
    assert (v.open_clip_name, v.pretrained) == (name, "openai")
    assert v.quick_gelu
    assert v.model_id == f"clip/{version}"


@pytest.mark.parametrize("version", ROBOFLOW_IDS)
def test_every_mapping_exists_in_open_clip_with_matching_size_and_dim(version):
    import open_clip

    v = CLIP_VERSIONS[version]
    assert (v.open_clip_name, "openai") in open_clip.list_pretrained()
    cfg = open_clip.get_model_config(v.open_clip_name)
    assert cfg["embed_dim"] == v.dim
    assert cfg["vision_cfg"]["image_size"] == v.image_size
    assert v.hf_hub.startswith("timm/")
    assert v.hf_hub.endswith(".openai")


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ModelError) as e:
        get_variant("ViT-B/32")
    assert "'ViT-B/32'" in str(e.value)
    for name in ROBOFLOW_IDS:
        assert name in str(e.value)


def test_default_comes_from_env(monkeypatch):
    monkeypatch.delenv("CLIP_VERSION_ID", raising=False)
    assert resolve_version_id(None) == "ViT-B-16"
    monkeypatch.setenv("CLIP_VERSION_ID", "RN50")
    assert resolve_version_id(None) == "RN50"
    assert resolve_version_id("ViT-L-14") == "ViT-L-14"
    monkeypatch.setenv("CLIP_VERSION_ID", "nope")
    with pytest.raises(ModelError, match="valid values"):
        resolve_version_id(None)


def test_importing_clip_package_and_kind_stays_light():
    code = ("import sys, pixql.models.clip, pixql.models.clip.kind; "
            "from pixql.models.registry import get_kind; get_kind('clip'); "
            "heavy = [m for m in ('torch', 'open_clip') if m in sys.modules]; "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8",
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
