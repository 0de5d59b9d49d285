"""SimCLR on Ray Train (issue 13): NT-Xent over the global batch, and a 2-worker BUILD."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pixql.errors import ModelError
from pixql.models.simclr.ddp import shard
from pixql.models.simclr.loss import NTXentLoss


@pytest.mark.parametrize(("world", "n_views"), [(2, 2), (4, 2), (2, 4)])
def test_global_loss_of_the_workers_is_the_one_process_loss(world: int, n_views: int) -> None:
    """Fixed projections: the mean of the workers' losses, and its gradient, equal the
    one-process NT-Xent of the global batch (every anchor meets all v N - v negatives),
    with two views and with several (all views of an image are positives)."""
    torch.manual_seed(0)
    zs = [torch.randn(16, 8, requires_grad=True) for _ in range(n_views)]
    one = NTXentLoss(0.2)(*zs)
    want = torch.autograd.grad(one, zs)
    n = 16 // world
    shards = [[z[r * n:(r + 1) * n] for z in zs] for r in range(world)]
    mean = sum(_worker_loss(r, shards) for r in range(world)) / world
    got = torch.autograd.grad(mean, zs)
    assert torch.allclose(mean, one, atol=1e-5)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-6)
    local = sum(NTXentLoss(0.2)(*s) for s in shards) / world  # plain DDP: local negatives
    assert not torch.allclose(local, one, atol=1e-3)


def _worker_loss(rank: int, shards: list[list[torch.Tensor]]) -> torch.Tensor:
    mine = shards[rank]
    views = {id(z): v for v, z in enumerate(mine)}

    def gather(t: torch.Tensor) -> torch.Tensor:
        v = views[id(t)]
        return torch.cat([t if k == rank else s[v] for k, s in enumerate(shards)])

    return NTXentLoss(0.2, gather=gather, rank=rank)(*mine)


def test_shards_are_disjoint_and_the_same_size() -> None:
    paths = [f"p{i}" for i in range(11)]
    parts = [shard(paths, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert len({x for p in parts for x in p}) == 9


def test_too_small_a_batch_for_the_workers_is_refused(image_ws: Any) -> None:
    with pytest.raises(ModelError, match="fewer than 2 images a step"):
        image_ws.sql("BUILD MODEL d USING SimCLR OPTIONS (batch_size=4, engine='ray', "
                     "num_workers=4) AS SELECT * FROM images")


def test_ray_not_installed_names_the_extra_and_leaves_nothing(
        image_ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from pixql.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'pixql\[ray\]'"):
        image_ws.sql("BUILD MODEL d USING SimCLR OPTIONS (batch_size=8, engine='ray') "
                     "AS SELECT * FROM images")
    assert image_ws.catalog.find_model("d") is None
    assert not list(image_ws.root.glob("models/.tmp-*"))


@pytest.mark.parametrize("where", ["environment", "workspace"])
def test_the_default_engine_applies_to_build(image_ws: Any, monkeypatch: pytest.MonkeyPatch,
                                             where: str) -> None:
    """PIXQL_ENGINE / connect(engine=...) reach Ray Train (the batch check is on the Ray
    path only); kinds that do not train (Pixels) build here under engine 'ray'."""
    if where == "environment":
        monkeypatch.setenv("PIXQL_ENGINE", "ray")
    else:
        monkeypatch.setitem(image_ws.compute_defaults, "engine", "ray")
    with pytest.raises(ModelError, match="fewer than 2 images a step"):
        image_ws.sql("BUILD MODEL d USING SimCLR OPTIONS (batch_size=4, num_workers=4) "
                     "AS SELECT * FROM images")
    res = image_ws.sql("BUILD MODEL p USING Pixels OPTIONS (image_size=8) AS SELECT * FROM images")
    assert res.df().iloc[0]["kind"] == "Pixels"


def test_a_worker_killed_once_is_restarted_from_the_last_epoch(
        image_ws: Any, ray_local: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """A 2-worker BUILD (the engine from $PIXQL_ENGINE) whose second worker dies after the
    first epoch: Ray Train restarts the workers, they resume at epoch 2, the model is
    built as an uninterrupted run would count it."""
    marker = tmp_path / "died"
    monkeypatch.setenv("PIXQL_TEST_TRAIN_FAULT", f"once:{marker}")
    monkeypatch.setenv("PIXQL_ENGINE", "ray")  # the default engine, no engine option
    res = image_ws.sql("BUILD MODEL d USING SimCLR OPTIONS (max_epochs=2, batch_size=8, "
                       "image_size=16, num_workers=2, cpus_per_worker=0.5, max_retries=1) "
                       "AS SELECT * FROM images")
    assert marker.exists()  # a worker did die, after the first epoch's checkpoint
    row = res.df().iloc[0]
    assert (row["engine"], row["resumed_from_epoch"], row["epochs"]) == ("ray", 1, 2)
    assert (row["num_workers"], row["global_batch"]) == (2, 8)
    assert row["steps"] == 2 * (24 // 2 // 4)  # each: 12 images, 4 a step; epoch 1 once
    assert row["images"] == 2 * 2 * 12
    assert not list(image_ws.root.glob("models/.tmp-*"))  # staging, state, checkpoints gone
    out = image_ws.sql("CONVERT USING d OPTIONS (result_col='e', engine='local') "
                       "AS SELECT * FROM images")
    assert out.message.startswith("embedded 24 rows")


def test_a_worker_that_always_dies_ends_in_an_error_and_no_model(
        image_ws: Any, ray_local: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pixql.errors import ExecutionError

    monkeypatch.setenv("PIXQL_TEST_TRAIN_FAULT", "always")
    with pytest.raises(ExecutionError, match=r"training on Ray failed after 1 retries.*"
                       r"Nothing was changed"):
        image_ws.sql("BUILD MODEL d USING SimCLR OPTIONS (batch_size=8, image_size=16, "
                     "engine='ray', num_workers=2, cpus_per_worker=0.5, max_retries=1) "
                     "AS SELECT * FROM images")
    assert image_ws.catalog.find_model("d") is None
    assert not list(image_ws.root.glob("models/.tmp-*"))
