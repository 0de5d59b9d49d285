"""pretrained=True: torchvision's ImageNet weights from torch hub's cache, never the network."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import torch

from pixql.errors import ModelError, WeightsNotFoundError
from pixql.models.base import BuildContext
from pixql.models.simclr.backbone import backbone_spec, build_backbone
from pixql.models.simclr.kind import SimCLR, SimCLROptions, _plan
from pixql.models.simclr.weights import cache_dir, load_pretrained, pretrained_info

FILENAME = "resnet18-f37072fd.pth"


def _write_cached_weights(torch_home: Path) -> dict[str, torch.Tensor]:
    """A state dict of the right format (torchvision's resnet18 keys) with random values,
    saved where torch hub caches it."""
    from torchvision.models import resnet18

    torch.manual_seed(123)
    state = resnet18(weights=None).state_dict()
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / FILENAME)
    return state


def _resnet18() -> torch.nn.Module:
    return build_backbone(backbone_spec("resnet18", image_size=224, in_channels=3, pretrained=True))


def test_cache_location_follows_torch_home(torch_home: Path) -> None:
    assert cache_dir() == torch_home / "hub" / "checkpoints"
    info = pretrained_info("resnet18")
    assert info.filename == FILENAME
    assert info.enum_name == "ResNet18_Weights.IMAGENET1K_V1"
    assert info.mean == pytest.approx((0.485, 0.456, 0.406))


def test_cached_file_is_loaded(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXQL_OFFLINE", "1")
    state = _write_cached_weights(torch_home)
    net = _resnet18()
    record = load_pretrained("resnet18", net)
    assert record == {"weights": "ResNet18_Weights.IMAGENET1K_V1", "file": FILENAME}
    loaded = net.state_dict()
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])
    assert torch.equal(loaded["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"])
    assert "fc.weight" not in loaded


@pytest.mark.parametrize("offline", ["1", ""])
def test_missing_file_offline_names_file_and_folder(
        torch_home: Path, monkeypatch: pytest.MonkeyPatch, offline: str) -> None:
    # offline="1": PIXQL_OFFLINE forbids the download; "": the download itself fails
    monkeypatch.setenv("PIXQL_OFFLINE", offline)
    with pytest.raises(WeightsNotFoundError) as err:
        load_pretrained("resnet18", _resnet18())
    message = str(err.value)
    assert FILENAME in message
    assert str(torch_home / "hub" / "checkpoints") in message
    assert isinstance(err.value, ModelError)
    assert not (torch_home / "hub" / "checkpoints" / FILENAME).exists()


def test_corrupt_cached_file_says_delete_it(torch_home: Path) -> None:
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / FILENAME).write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="delete the file"):
        load_pretrained("resnet18", _resnet18())


def test_no_pretrained_weights_for_small_resnet() -> None:
    with pytest.raises(ModelError, match="works with backbone: resnet18"):
        pretrained_info("small_resnet")


def _rows(tmp_path: Path) -> pa.Table:
    from tests.conftest import make_image_folder

    files = make_image_folder(tmp_path / "imgs", per_class=2, size=32)
    return pa.table({"image_path": [str(p) for p in files]})


def test_build_with_pretrained_uses_imagenet_setup(
        torch_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIXQL_OFFLINE", "1")
    _write_cached_weights(torch_home)
    ctx = BuildContext(name="p", artifact_dir=tmp_path / "art", workspace=tmp_path,
                       rows=_rows(tmp_path), resolve=Path, progress=False)
    ctx.artifact_dir.mkdir()
    assert _plan(ctx, SimCLROptions(pretrained=True))["image_size"] == 64  # auto: >= 64
    options = SimCLROptions(pretrained=True, max_epochs=1, batch_size=8, image_size=32,
                            mixed_precision=False)
    result = SimCLR.build(ctx, options)
    cfg = result.config
    assert cfg["backbone"]["name"] == "resnet18"
    assert cfg["backbone"]["small_stem"] is False
    assert cfg["pretrained"]["file"] == FILENAME
    assert cfg["grayscale"] is False
    assert cfg["channels"] == 3
    assert cfg["image_size"] == 32
    assert cfg["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert result.dim == 512


def test_build_with_pretrained_offline_fails_before_training(
        torch_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PIXQL_OFFLINE", "1")
    ctx = BuildContext(name="p", artifact_dir=tmp_path, workspace=tmp_path, rows=_rows(tmp_path),
                       resolve=Path, progress=False)
    with pytest.raises(WeightsNotFoundError, match=FILENAME):
        SimCLR.build(ctx, SimCLROptions(pretrained=True, max_epochs=1))
    assert list(tmp_path.glob("*.safetensors")) == []
