"""The SimCLR kind: options, building from rows, the artifact, and the embedder."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from pixql.errors import ImageError, ModelError, NotFoundError
from pixql.models.base import BuildContext
from pixql.models.registry import get_kind
from pixql.models.simclr.backbone import backbone_spec, build_backbone, save_backbone
from pixql.models.simclr.kind import (
    WEIGHTS_FILE,
    SimCLR,
    SimCLREmbedder,
    SimCLROptions,
)
from tests.conftest import make_image_folder


def test_registered_as_simclr() -> None:
    assert get_kind("SimCLR") is SimCLR
    assert get_kind("simclr").display_name == "SimCLR"


def test_documented_defaults() -> None:
    opts = SimCLROptions()
    assert (opts.image_col, opts.batch_size, opts.max_epochs, opts.pretrained, opts.overwrite) == (
        "image_path", 256, 5, False, False)
    assert opts.flips is False
    assert opts.backbone == "auto"
    assert opts.image_size == "auto"
    assert opts.time_budget is None
    assert (opts.views, opts.temperature, opts.deterministic) == ("auto", 0.2, False)
    assert all(field.description for name, field in SimCLROptions.model_fields.items()
               if name != "overwrite")


@pytest.mark.parametrize(("options", "field"), [
    ({"max_epoch": 1}, "max_epoch"),  # unknown
    ({"max_epochs": "many"}, "max_epochs"),  # wrong type
    ({"batch_size": 1}, "batch_size"),  # out of range
    ({"temperature": 0}, "temperature"),
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"augmentation": 5}, "augmentation"),
    ({"image_size": 4}, "image_size"),
    ({"image_size": "big"}, "image_size"),
    ({"backbone": "vgg"}, "backbone"),
    ({"time_budget": 0}, "time_budget"),
    ({"pretrained": True, "backbone": "small_resnet"}, "backbone"),
    ({"pretrained": True, "grayscale": True}, "grayscale"),
    ({"views": 1}, "views"),
    ({"views": 17}, "views"),
    ({"views": "many"}, "views"),
    ({"deterministic": True, "time_budget": 10}, "deterministic"),
])
def test_invalid_options_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        SimCLROptions(**options)
    assert err.value.errors()[0]["loc"][0] == field


@pytest.mark.parametrize(("max_epochs", "views"), [(1, 8), (2, 4), (3, 2), (4, 2), (50, 2)])
def test_auto_views_spend_about_eight_views_per_image(max_epochs: int, views: int) -> None:
    assert SimCLROptions(max_epochs=max_epochs).n_views() == views
    assert SimCLROptions(max_epochs=max_epochs, views=3).n_views() == 3


def _ctx(tmp_path: Path, files: list[Path], column: str = "image_path") -> BuildContext:
    art = tmp_path / "artifact"
    art.mkdir(exist_ok=True)
    return BuildContext(name="m", artifact_dir=art, workspace=tmp_path,
                        rows=pa.table({column: [str(p) for p in files]}), resolve=Path,
                        progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict, list[Path]]:
    """SimCLR trained 2 epochs on 24 generated shapes: (folder, config, summary, files)."""
    tmp = tmp_path_factory.mktemp("simclr-build")
    files = make_image_folder(tmp / "imgs")
    result = SimCLR.build(_ctx(tmp, files), SimCLROptions(max_epochs=2, batch_size=12, seed=1))
    return tmp / "artifact", result.config, result.summary, files


def test_build_writes_weights_and_a_complete_config(built: tuple) -> None:
    folder, config, summary, _ = built
    assert (folder / WEIGHTS_FILE).is_file()
    json.loads(json.dumps(config))  # JSON-ready
    assert config["backbone"]["name"] == "small_resnet"
    assert config["image_size"] == 28
    assert config["grayscale"] is True
    assert config["channels"] == 1
    assert len(config["mean"]) == len(config["std"]) == 1
    assert 0 < config["mean"][0] < 0.5
    assert config["feature_dim"] == 128
    assert config["pretrained"] is None
    assert summary["epochs"] == 2
    assert summary["images"] == 48
    assert summary["stopped_by_time_budget"] is False
    assert summary["final_loss"] > 0
    assert summary["images_per_s"] > 0
    assert summary["seconds"] > 0


def test_loaded_model_embeds_images(built: tuple) -> None:
    folder, config, _, files = built
    emb = SimCLR.load(folder, json.loads(json.dumps(config)))
    assert emb.modalities == frozenset({"image"})
    assert emb.dim == 128
    vecs = emb.embed([Image.open(p) for p in files[:5]], "image")
    assert vecs.shape == (5, 128)
    assert vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    raw = emb.embed([Image.open(files[0])], "image", normalize=False)
    assert (raw >= 0).all()  # backbone features (ReLU), taken before the projection head
    with pytest.raises(ModelError, match="cannot embed text"):
        emb.embed(["a cat"], "text")


def test_preprocess_resizes_and_converts_any_image(built: tuple) -> None:
    emb = SimCLR.load(built[0], built[1])
    rgb = Image.new("RGB", (50, 40), (200, 10, 10))
    x = emb.preprocess(rgb, "image")
    assert x.shape == (1, 28, 28)
    assert x.dtype == torch.float32


def test_preprocess_is_thread_safe(built: tuple) -> None:
    emb = SimCLR.load(built[0], built[1])
    images = [Image.open(p) for p in built[3]]
    for img in images:
        img.load()
    serial = [emb.preprocess(img, "image") for img in images]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda im: emb.preprocess(im, "image"), images))
    assert all(torch.equal(a, b) for a, b in zip(serial, threaded, strict=True))


def test_save_load_round_trip_gives_identical_embeddings(tmp_path: Path) -> None:
    spec = backbone_spec("auto", image_size=28, in_channels=1, pretrained=False)
    torch.manual_seed(0)
    backbone = build_backbone(spec)
    for m in backbone.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    config = {"backbone": spec, "image_size": 28, "grayscale": True, "mean": [0.13],
              "std": [0.3], "feature_dim": 128, "weights_file": WEIGHTS_FILE}
    before = SimCLREmbedder(backbone, image_size=28, grayscale=True, mean=[0.13], std=[0.3],
                            dim=128, model_id="x")
    save_backbone(backbone, tmp_path / WEIGHTS_FILE)
    after = SimCLR.load(tmp_path, config)
    images = [Image.open(p) for p in make_image_folder(tmp_path / "imgs", per_class=2)]
    np.testing.assert_array_equal(before.embed(images, "image"), after.embed(images, "image"))


def test_load_reports_missing_weights(tmp_path: Path, built: tuple) -> None:
    with pytest.raises(ModelError, match="weights file is missing"):
        SimCLR.load(tmp_path, built[1])


def test_rgb_images_train_in_colour_at_their_size(tmp_path: Path) -> None:
    files = []
    rng = np.random.default_rng(0)
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)).save(path)
        files.append(path)
    result = SimCLR.build(_ctx(tmp_path, files), SimCLROptions(max_epochs=1, batch_size=6))
    assert result.config["grayscale"] is False
    assert result.config["channels"] == 3
    assert result.config["image_size"] == 36  # the median shorter side


def test_missing_column_and_bad_images_are_clear_errors(tmp_path: Path) -> None:
    files = make_image_folder(tmp_path / "imgs", per_class=1)
    with pytest.raises(NotFoundError, match="image_col="):
        SimCLR.build(_ctx(tmp_path, files, column="path"), SimCLROptions())
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageError, match=r"nope\.png"):
        SimCLR.build(_ctx(tmp_path, [*files, missing]), SimCLROptions(max_epochs=1))
    with pytest.raises(ModelError, match="at least 2 training images"):
        SimCLR.build(_ctx(tmp_path, files[:1]), SimCLROptions(max_epochs=1))


def test_loading_without_an_artifact_folder_says_why() -> None:
    """SimCLR's weights live in its artifacts: it cannot be named by a config alone (as the
    server names clip/<version>)."""
    with pytest.raises(ModelError, match="SimCLR model is loaded from its artifact folder"):
        get_kind("simclr").load(None, {"backbone": {"name": "small_resnet"}})


def test_same_seed_gives_byte_identical_weights(tmp_path: Path) -> None:
    files = make_image_folder(tmp_path / "imgs", per_class=3)
    weights = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        opts = SimCLROptions(max_epochs=1, batch_size=6, views=3, seed=7, deterministic=True,
                             image_size=16)
        result = SimCLR.build(_ctx(tmp_path / run, files), opts)
        assert result.summary["views"] == 3
        weights.append((tmp_path / run / "artifact" / WEIGHTS_FILE).read_bytes())
    assert weights[0] == weights[1]
    assert not torch.are_deterministic_algorithms_enabled()  # the setting is restored
