import math

import pytest
import torch

from glass_engine.config import MethodConfig
from glass_engine.model import HYPERSPHERE, MANIFOLD, Discriminator, GlassHead, clamp_to_shell, focal_loss


def test_clamp_to_shell_bounds_and_direction():
    torch.manual_seed(0)
    anchors = torch.randn(500, 16)
    directions = torch.randn(500, 16)
    lengths = torch.rand(500, 1) * 4
    points = anchors + directions / directions.norm(dim=1, keepdim=True) * lengths
    moved = clamp_to_shell(points, anchors, 0.5, 1.0)
    distance = (moved - anchors).norm(dim=1)
    assert distance.min() >= 0.5 - 1e-5
    assert distance.max() <= 1.0 + 1e-5
    cosine = torch.nn.functional.cosine_similarity(moved - anchors, points - anchors, dim=1)
    assert torch.all(cosine > 0.9999)
    inside = (lengths[:, 0] >= 0.5) & (lengths[:, 0] <= 1.0)
    assert torch.allclose(moved[inside], points[inside], atol=1e-5)


def test_focal_loss_by_hand():
    probabilities = torch.tensor([0.9, 0.2])
    target = torch.tensor([1.0, 1.0])
    smooth = 1e-5
    expected = []
    for p in (0.9, 0.2):
        pt = (1 - smooth) * p + smooth * (1 - p) + smooth
        expected.append(-((1 - pt) ** 2) * math.log(pt))
    assert focal_loss(probabilities, target).item() == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_focal_loss_zero_target_uses_other_class():
    value = focal_loss(torch.tensor([0.1]), torch.tensor([0.0])).item()
    pt = 0.9 * (1 - 1e-5) + 0.1 * 1e-5 + 1e-5
    assert value == pytest.approx(-((1 - pt) ** 2) * math.log(pt), rel=1e-5)


def test_discriminator_shape_and_range():
    discriminator = Discriminator(32, n_layers=2, hidden=16)
    scores = discriminator(torch.randn(10, 32))
    assert scores.shape == (10, 1)
    assert torch.all((scores > 0) & (scores < 1))


def test_first_layer_shortcut_equals_full_forward():
    torch.manual_seed(1)
    discriminator = Discriminator(32, n_layers=3, hidden=16).eval()
    x = torch.randn(12, 32)
    first = discriminator.body[0][0](x)
    assert torch.allclose(discriminator.forward_with_first_layer(first), discriminator(x), atol=1e-6)


def test_center_is_projection_of_mean():
    torch.manual_seed(2)
    head = GlassHead(24, MethodConfig(dsc_hidden=16))
    embeddings = torch.randn(5, 7, 24)
    direct = head.project(embeddings.reshape(-1, 24)).reshape(5, 7, 24).mean(dim=0)
    assert torch.allclose(head.center(embeddings.mean(dim=0)), direct, atol=1e-5)


@pytest.mark.parametrize("mode", [MANIFOLD, HYPERSPHERE])
def test_train_step_updates_and_reports(mode):
    torch.manual_seed(3)
    method = MethodConfig(dsc_hidden=32, step=10)
    head = GlassHead(24, method)
    optimizers = head.make_optimizers()
    positions = 16
    true = torch.randn(2 * positions, 24)
    fake = true + 0.5 * torch.randn_like(true)
    mask = (torch.rand(2 * positions) > 0.6).float()
    center = true.reshape(2, positions, 24).mean(dim=0)
    before = [p.clone() for p in head.parameters()]
    stats = head.train_step(true, fake, mask, center, mode, optimizers)
    assert any(not torch.equal(a, b) for a, b in zip(before, head.parameters()))
    assert math.isfinite(stats.loss)
    assert 0.0 <= stats.p_true <= 1.0
    assert 0.0 <= stats.p_fake <= 1.0
    assert stats.r_t > 0
    assert stats.r_g > 0


def test_folded_scoring_equals_unfolded():
    torch.manual_seed(4)
    head = GlassHead(24, MethodConfig(dsc_hidden=16, pre_proj=2))
    head.train()
    head.discriminator(torch.randn(64, 24))  # give BatchNorm non-trivial running statistics
    head.eval()
    x = torch.randn(50, 24)
    unfolded = head.discriminator(head.project(x)).squeeze(-1)
    assert torch.allclose(head.score(x), unfolded, atol=1e-5)

    with torch.no_grad():
        head.projection.layers[0].weight.mul_(1.5)
    changed = head.discriminator(head.project(x)).squeeze(-1)
    assert not torch.allclose(changed, unfolded, atol=1e-4)
    assert torch.allclose(head.score(x), changed, atol=1e-5)
