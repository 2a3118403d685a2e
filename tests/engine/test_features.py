import pytest
import torch

from glass_engine.config import BackboneConfig
from glass_engine.errors import ConfigError, WeightsMismatchError, WeightsNotFoundError
from glass_engine.features import (
    BACKBONES,
    FeatureExtractor,
    PatchEmbedder,
    build_backbone,
    layer_channels,
    reference_embed,
)
from tests.conftest import mobilenet_weights


@pytest.mark.parametrize(
    "channels, pretrain, target",
    [([512, 1024], 1536, 1536), ([32, 96], 288, 576), ([24, 40], 100, 300), ([16, 8, 12], 50, 70)],
)
def test_embedder_matches_unfold_reference(channels, pretrain, target):
    torch.manual_seed(0)
    sizes = [(20, 17), (10, 9), (5, 5)]
    features = [torch.randn(2, c, *sizes[i]) for i, c in enumerate(channels)]
    fast, grid = PatchEmbedder(channels, pretrain, target)(features)
    slow = reference_embed(features, pretrain, target)
    assert grid == sizes[0]
    assert fast.shape == (2 * sizes[0][0] * sizes[0][1], target)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_embedder_uses_grouped_convolution_for_default_sizes():
    embedder = PatchEmbedder([512, 1024], 1536, 1536)
    assert [layer.groups for layer in embedder._maps] == [256, 256]


def test_registry_holds_callables_only():
    assert "wide_resnet50_2" in BACKBONES
    assert all(callable(factory) for factory in BACKBONES.values())


def test_unknown_backbone_is_config_error():
    with pytest.raises(ConfigError, match="resnet9000"):
        build_backbone(BackboneConfig(name="resnet9000"))


def test_missing_weights_names_both_ways_out(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("torch.hub.load_state_dict_from_url", offline)
    with pytest.raises(WeightsNotFoundError) as error:
        build_backbone(BackboneConfig(name="resnet18"))
    message = str(error.value)
    assert "--weights" in message
    assert "resnet18" in message


def test_weights_file_of_wrong_architecture(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(BACKBONES["resnet18"](weights=None).state_dict(), path)
    with pytest.raises(WeightsMismatchError) as error:
        build_backbone(BackboneConfig(name="mobilenet_v2", layers=["features.6"], weights=str(path)))
    assert str(path) in str(error.value)


def test_missing_weights_file(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nothing.pth"):
        build_backbone(BackboneConfig(name="resnet18", weights=str(tmp_path / "nothing.pth")))


def test_shared_mobilenet_weights_load():
    path = mobilenet_weights()
    model, info = build_backbone(BackboneConfig(name="mobilenet_v2", weights=str(path)))
    assert info.pretrained
    assert info.source.startswith("file:")
    extractor = FeatureExtractor(model, ["features.6", "features.13"])
    channels, grids = layer_channels(extractor, 256)
    assert channels == [32, 96]
    assert grids == [(32, 32), (16, 16)]


def test_extractor_keeps_batchnorm_statistics():
    model, _ = build_backbone(BackboneConfig(name="resnet18", random_init=True))
    before = model.bn1.running_mean.clone()
    extractor = FeatureExtractor(model, ["layer2", "layer3"])
    extractor.train()
    extractor(torch.randn(2, 3, 64, 64) * 5 + 3)
    after = dict(extractor.graph.module.named_buffers())["bn1.running_mean"]
    assert torch.equal(before, after)


def test_extractor_stops_after_last_layer():
    model, _ = build_backbone(BackboneConfig(name="resnet18", random_init=True))
    extractor = FeatureExtractor(model, ["layer2"])
    module_names = {name for name, _ in extractor.graph.module.named_modules()}
    assert not any(name.startswith("layer3") or name.startswith("layer4") or name == "fc" for name in module_names)


def test_unknown_layer_is_config_error():
    model, _ = build_backbone(BackboneConfig(name="resnet18", random_init=True))
    with pytest.raises(ConfigError, match="layer9"):
        FeatureExtractor(model, ["layer9"])


def test_random_init_backbone_is_reproducible():
    first, info = build_backbone(BackboneConfig(name="resnet18", random_init=True))
    second, _ = build_backbone(BackboneConfig(name="resnet18", random_init=True))
    assert not info.pretrained
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
