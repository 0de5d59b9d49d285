"""The training loop: the loss goes down, the time budget stops it, seeds reproduce it."""

from __future__ import annotations

import pytest
import torch

from pixql.models.simclr.backbone import SmallResNet
from pixql.models.simclr.heads import ProjectionHead
from pixql.models.simclr.train import SimCLRNet, TrainConfig, lr_factor, train_simclr
from pixql.models.simclr.transforms import AugmentConfig, MultiViewTransform, SimCLRTransform


def _net(seed: int = 0) -> SimCLRNet:
    torch.manual_seed(seed)
    backbone = SmallResNet(in_channels=1, widths=(16, 32), stem_stride=2)
    return SimCLRNet(backbone, ProjectionHead(backbone.feature_dim, 64, 32))


def _views() -> MultiViewTransform:
    return MultiViewTransform(SimCLRTransform(AugmentConfig.from_strength(1.0),
                                              mean=[0.1], std=[0.3]))


def test_training_lowers_the_loss(shapes: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, _ = shapes
    cfg = TrainConfig(max_epochs=6, batch_size=32, learning_rate=3e-3, seed=0)
    stats = train_simclr(_net(), images, _views(), cfg, progress=False)
    assert stats.epochs == 6
    assert stats.steps == 12
    assert stats.images == 6 * 64
    assert not stats.stopped_by_time_budget
    first, last = stats.epoch_losses[0], sum(stats.epoch_losses[-3:]) / 3
    assert last < first - 0.3, stats.epoch_losses


def test_time_budget_stops_training_and_is_recorded(
        shapes: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, _ = shapes
    cfg = TrainConfig(max_epochs=50, batch_size=16, time_budget=1e-4)
    stats = train_simclr(_net(), images, _views(), cfg, progress=False)
    assert stats.stopped_by_time_budget
    assert stats.steps == 1
    assert stats.epochs == 1
    summary = stats.summary()
    assert summary["stopped_by_time_budget"] is True
    assert set(summary) >= {"epochs", "final_loss", "images", "seconds", "images_per_s"}


def test_same_seed_same_weights(shapes: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, _ = shapes
    cfg = TrainConfig(max_epochs=1, batch_size=16, seed=3)
    nets = [_net(seed=1) for _ in range(2)]
    for net in nets:
        train_simclr(net, images[:32], _views(), cfg, progress=False)
    states = [net.state_dict() for net in nets]
    for (name, a), (_, b) in zip(states[0].items(), states[1].items(), strict=True):
        assert torch.equal(a, b), name


def test_batch_larger_than_data_uses_one_batch(shapes: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, _ = shapes
    stats = train_simclr(_net(), images[:5], _views(), TrainConfig(max_epochs=2, batch_size=256),
                         progress=False)
    assert stats.steps == 2
    assert stats.images == 10


def test_needs_two_images(shapes: tuple[torch.Tensor, torch.Tensor]) -> None:
    with pytest.raises(ValueError, match="at least 2 training images"):
        train_simclr(_net(), shapes[0][:1], _views(), TrainConfig(), progress=False)


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    assert lr_factor(0.0, 0.1) == pytest.approx(0.01)
    assert lr_factor(0.05, 0.1) == pytest.approx(0.5)
    assert lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor(0.55, 0.1) == pytest.approx(0.5)
    assert lr_factor(1.0, 0.1) == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(1.5, 0.1) == pytest.approx(0.0, abs=1e-9)


def test_more_views_count_images_once_and_train(
        shapes: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, _ = shapes
    views = MultiViewTransform(SimCLRTransform(AugmentConfig.from_strength(1.0), mean=[0.1],
                                               std=[0.3]), n_views=4)
    cfg = TrainConfig(max_epochs=3, batch_size=32, learning_rate=3e-3, seed=0)
    stats = train_simclr(_net(), images, views, cfg, progress=False)
    assert stats.steps == 6
    assert stats.images == 3 * 64  # images, not views
    assert all(loss > 0 for loss in stats.epoch_losses)


def test_deterministic_run_restores_the_global_setting_and_repeats(
        shapes: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, _ = shapes
    cfg = TrainConfig(max_epochs=1, batch_size=16, seed=5, deterministic=True)
    nets = [_net(seed=2) for _ in range(2)]
    for net in nets:
        train_simclr(net, images[:32], _views(), cfg, progress=False)
        assert not torch.are_deterministic_algorithms_enabled()
    for a, b in zip(nets[0].state_dict().values(), nets[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)
