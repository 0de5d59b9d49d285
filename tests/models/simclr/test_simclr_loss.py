"""NT-Xent against hand-written references (two views, and V views with multiple positives),
plus symmetry and closed-form cases."""

from __future__ import annotations

import math

import pytest
import torch

from pixql.models.simclr.loss import NTXentLoss


def reference_ntxent(z0: torch.Tensor, z1: torch.Tensor, temperature: float) -> float:
    """Chen et al. 2020 eq. 1, one anchor and one pair at a time."""
    z = torch.cat([z0, z1]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        sim = lambda a, b: float(z[a] @ z[b]) / temperature  # noqa: E731
        denom = sum(math.exp(sim(i, k)) for k in range(n2) if k != i)
        total += -math.log(math.exp(sim(i, j)) / denom)
    return total / n2


@pytest.mark.parametrize("n", [1, 2, 5, 16])
@pytest.mark.parametrize("dim", [2, 7, 32])
@pytest.mark.parametrize("temperature", [0.07, 0.2, 0.5, 1.0])
def test_matches_reference(n: int, dim: int, temperature: float) -> None:
    gen = torch.Generator().manual_seed(n * 1000 + dim)
    z0, z1 = torch.randn(n, dim, generator=gen), torch.randn(n, dim, generator=gen)
    got = float(NTXentLoss(temperature)(z0, z1))
    assert got == pytest.approx(reference_ntxent(z0, z1, temperature), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("n", [2, 9])
def test_symmetric_in_its_views(n: int) -> None:
    z0, z1 = torch.randn(n, 12), torch.randn(n, 12)
    loss = NTXentLoss(0.3)
    assert float(loss(z0, z1)) == pytest.approx(float(loss(z1, z0)), rel=1e-6)


def test_invariant_to_scale_and_shared_row_order() -> None:
    z0, z1 = torch.randn(6, 8), torch.randn(6, 8)
    perm = torch.randperm(6)
    loss = NTXentLoss(0.5)
    base = float(loss(z0, z1))
    assert float(loss(3.0 * z0, 0.1 * z1)) == pytest.approx(base, rel=1e-5)
    assert float(loss(z0[perm], z1[perm])) == pytest.approx(base, rel=1e-5)


def test_single_pair_has_no_negatives_so_zero_loss() -> None:
    loss = NTXentLoss(0.5)(torch.randn(1, 4), torch.randn(1, 4))
    assert float(loss) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("n", [2, 3, 10])
def test_identical_projections_give_log_of_candidates(n: int) -> None:
    # every similarity is 1: each anchor's positive is one of 2n-1 equal candidates
    z = torch.ones(n, 5)
    assert float(NTXentLoss(0.2)(z, z.clone())) == pytest.approx(math.log(2 * n - 1), rel=1e-5)


def test_perfectly_separated_views_approach_zero() -> None:
    z = torch.eye(4)  # positives identical, negatives orthogonal
    assert float(NTXentLoss(0.05)(z, z.clone())) < 1e-6


def test_gradients_flow_to_both_views() -> None:
    z0 = torch.randn(4, 6, requires_grad=True)
    z1 = torch.randn(4, 6, requires_grad=True)
    NTXentLoss(0.5)(z0, z1).backward()
    assert z0.grad is not None
    assert z0.grad.abs().sum() > 0
    assert z1.grad is not None
    assert z1.grad.abs().sum() > 0


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), "0.5", None])
def test_rejects_bad_temperature(bad: object) -> None:
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        NTXentLoss(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("shapes", [((4, 8), (3, 8)), ((4, 8), (4, 7)), ((0, 8), (0, 8)),
                                    ((8,), (8,))])
def test_rejects_mismatched_shapes(shapes: tuple[tuple[int, ...], tuple[int, ...]]) -> None:
    with pytest.raises(ValueError, match="2 \\(n, d\\) tensors"):
        NTXentLoss()(torch.randn(*shapes[0]), torch.randn(*shapes[1]))


def reference_multiview(views: list[torch.Tensor], temperature: float) -> float:
    """SupCon eq. 2 with "same image" as the class, one anchor and one positive at a time."""
    z = torch.cat(views).double()
    z = z / z.norm(dim=1, keepdim=True)
    n, m = views[0].shape[0], z.shape[0]
    total = 0.0
    for i in range(m):
        denom = sum(math.exp(float(z[i] @ z[k]) / temperature) for k in range(m) if k != i)
        positives = [p for p in range(m) if p != i and p % n == i % n]
        total += sum(-math.log(math.exp(float(z[i] @ z[p]) / temperature) / denom)
                     for p in positives) / len(positives)
    return total / m


@pytest.mark.parametrize("n_views", [2, 3, 5])
@pytest.mark.parametrize("n", [1, 4])
def test_multiview_matches_reference(n_views: int, n: int) -> None:
    gen = torch.Generator().manual_seed(n_views * 10 + n)
    views = [torch.randn(n, 6, generator=gen) for _ in range(n_views)]
    got = float(NTXentLoss(0.2)(*views))
    assert got == pytest.approx(reference_multiview(views, 0.2), rel=1e-4, abs=1e-5)


def test_two_views_are_the_multiview_loss_with_two() -> None:
    z0, z1 = torch.randn(5, 8), torch.randn(5, 8)
    assert float(NTXentLoss(0.3)(z0, z1)) == pytest.approx(
        reference_multiview([z0, z1], 0.3), rel=1e-4)


@pytest.mark.parametrize("n_views", [3, 4])
def test_identical_views_give_log_of_candidates_minus_share(n_views: int) -> None:
    # all similarities 1: each positive is one of (V n - 1) equal candidates
    n = 3
    z = torch.ones(n, 4)
    got = float(NTXentLoss(0.5)(*[z.clone() for _ in range(n_views)]))
    assert got == pytest.approx(math.log(n_views * n - 1), rel=1e-5)


def test_multiview_rejects_a_mismatched_third_view() -> None:
    with pytest.raises(ValueError, match="3 \\(n, d\\) tensors"):
        NTXentLoss()(torch.randn(4, 8), torch.randn(4, 8), torch.randn(3, 8))
