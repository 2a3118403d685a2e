"""Backbones, weight resolution, layer extraction and the patch embedding of GLASS.

The embedding follows the official GLASS / PatchCore construction: every extracted layer is unfolded into
3x3 neighbourhoods (zero padding), lower-resolution layers are bilinearly resized to the first layer's grid,
each neighbourhood vector is average-pooled to `pretrain_embed_dimension`, and the stacked layer vectors are
pooled again to `target_embed_dimension`.

Every step after the backbone is linear, so `PatchEmbedder` folds unfold + both poolings into one fixed
(grouped where possible) 3x3 convolution per layer and resizes after the convolution. `reference_embed`
keeps the straightforward unfold form; a test checks that both agree to 1e-5.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from glass_engine.config import BackboneConfig
from glass_engine.errors import ConfigError, WeightsMismatchError, WeightsNotFoundError
from glass_engine.paths import user_data_dir

logger = logging.getLogger(__name__)

# Name -> torchvision constructor. Callables, never strings evaluated as code.
BACKBONES: dict[str, Callable[..., torch.nn.Module]] = {
    "wide_resnet50_2": torchvision.models.wide_resnet50_2,
    "wide_resnet101_2": torchvision.models.wide_resnet101_2,
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
    "mobilenet_v2": torchvision.models.mobilenet_v2,
    "efficientnet_b0": torchvision.models.efficientnet_b0,
    "efficientnet_b1": torchvision.models.efficientnet_b1,
    "efficientnet_b2": torchvision.models.efficientnet_b2,
    "efficientnet_b3": torchvision.models.efficientnet_b3,
    "efficientnet_b4": torchvision.models.efficientnet_b4,
    "efficientnet_v2_s": torchvision.models.efficientnet_v2_s,
}

# Suggested layers (strides 8 and 16) per backbone, used by the GUI when the user switches backbone.
DEFAULT_LAYERS: dict[str, list[str]] = {
    "wide_resnet50_2": ["layer2", "layer3"],
    "wide_resnet101_2": ["layer2", "layer3"],
    "resnet18": ["layer2", "layer3"],
    "resnet50": ["layer2", "layer3"],
    "mobilenet_v2": ["features.6", "features.13"],
    "efficientnet_b0": ["features.3", "features.5"],
    "efficientnet_b1": ["features.3", "features.5"],
    "efficientnet_b2": ["features.3", "features.5"],
    "efficientnet_b3": ["features.3", "features.5"],
    "efficientnet_b4": ["features.3", "features.5"],
    "efficientnet_v2_s": ["features.3", "features.5"],
}


RANDOM_INIT_SEED = 0
"""Seed of the untrained backbone of `random_init` runs."""


@dataclass
class WeightsInfo:
    """Source of the backbone's weights, written into every run's config and report."""

    pretrained: bool
    source: str
    """`file:<path>`, `torchvision:<weights enum>` or `random-init:seed=<n>`."""


def user_weights_dir() -> Path:
    """Folder where the GUI's "Import weights file" action stores state dicts as `<backbone>.pth`."""
    path = user_data_dir() / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_backbone(config: BackboneConfig) -> tuple[torch.nn.Module, WeightsInfo]:
    """Create the backbone and load its weights: explicit file, imported file, torchvision, or random init."""
    if config.name not in BACKBONES:
        raise ConfigError(f"Unknown backbone {config.name!r}. Choose one of: {', '.join(BACKBONES)}.")
    if config.random_init:
        # A fixed seed makes the random backbone identical each time a run is loaded again, so that saved
        # checkpoints (which hold only the head) reproduce their scores.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = BACKBONES[config.name](weights=None)
        logger.warning("Backbone %s uses RANDOM weights (random_init). Results are not meaningful.", config.name)
        return _frozen(model), WeightsInfo(pretrained=False, source=f"random-init:seed={RANDOM_INIT_SEED}")

    model = BACKBONES[config.name](weights=None)

    if config.weights:
        path = Path(config.weights).expanduser()
        _load_state_dict_file(model, path, config.name)
        return _frozen(model), WeightsInfo(pretrained=True, source=f"file:{path}")

    imported = user_weights_dir() / f"{config.name}.pth"
    if imported.is_file():
        _load_state_dict_file(model, imported, config.name)
        return _frozen(model), WeightsInfo(pretrained=True, source=f"file:{imported}")

    weights_enum = torchvision.models.get_model_weights(config.name).DEFAULT
    try:
        state_dict = weights_enum.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError, ValueError) as exc:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsNotFoundError(
            f"No pretrained weights for backbone {config.name!r}: torchvision could not load {weights_enum} "
            f"({exc.__class__.__name__}: {exc}). Either pass a local state dict with --weights FILE (GUI: "
            f"Train > Import weights file...), or place torchvision's file {Path(weights_enum.url).name} in "
            f"{cache}. For tests only, --random-init trains on untrained weights."
        ) from exc
    model.load_state_dict(state_dict)
    return _frozen(model), WeightsInfo(pretrained=True, source=f"torchvision:{weights_enum}")


def _load_state_dict_file(model: torch.nn.Module, path: Path, name: str) -> None:
    if not path.is_file():
        raise WeightsNotFoundError(f"Weights file {path} not found. Check the path given to --weights.")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WeightsMismatchError(f"Weights file {path} is not a readable PyTorch state dict ({exc}).") from exc
    if isinstance(state_dict, dict) and "state_dict" in state_dict and isinstance(state_dict["state_dict"], dict):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict):
        raise WeightsMismatchError(f"Weights file {path} contains a {type(state_dict).__name__}, not a state dict.")
    result = _try_load(model, state_dict)
    if result:
        raise WeightsMismatchError(
            f"Weights file {path} does not fit backbone {name!r}: {result}. Choose the backbone this file was "
            f"saved from, or a file for {name}."
        )
    logger.info("Loaded backbone weights for %s from %s", name, path)


def _try_load(model: torch.nn.Module, state_dict: dict) -> str:
    expected = model.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    wrong_shape = [
        key
        for key in expected
        if key in state_dict and hasattr(state_dict[key], "shape") and tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} keys of another shape (e.g. {wrong_shape[0]})")
        return ", ".join(parts)
    model.load_state_dict(state_dict)
    return ""


class _FrozenEval(torch.nn.Module):
    """Wrapper that keeps the wrapped module in eval mode whatever `train()` is called with.

    BatchNorm layers of a frozen backbone must never see batch statistics: a single forward in train mode
    would overwrite their running statistics (a defect of the official code's feature_dimensions()).
    """

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module.eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> "_FrozenEval":
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.module(x)


def _frozen(model: torch.nn.Module) -> torch.nn.Module:
    return model.eval()


class FeatureExtractor(torch.nn.Module):
    """Return the named layers of a frozen backbone; the traced graph ends at the last needed layer."""

    def __init__(self, backbone: torch.nn.Module, layers: list[str]):
        super().__init__()
        names = {name for name, _ in backbone.named_modules()}
        unknown = [layer for layer in layers if layer not in names]
        if unknown:
            candidates = [name for name in names if name and name.count(".") <= 1][:40]
            raise ConfigError(
                f"Layer(s) {', '.join(unknown)} not found in the backbone. Some valid names: {', '.join(sorted(candidates))}."
            )
        self.layers = list(layers)
        graph = create_feature_extractor(backbone.eval(), return_nodes={layer: layer for layer in layers})
        self.graph = _FrozenEval(graph)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.graph(images)
        return [outputs[layer] for layer in self.layers]


def _pool_matrix(in_features: int, out_features: int) -> torch.Tensor:
    """Matrix P (out x in) with P @ v == adaptive_avg_pool1d(v, out) for any vector v."""
    identity = torch.eye(in_features, dtype=torch.float64).unsqueeze(1)
    return F.adaptive_avg_pool1d(identity, out_features).squeeze(1).T.contiguous()


@dataclass
class _LayerMap:
    rows: torch.Tensor
    weight: torch.Tensor
    groups: int


def _grouped_form(matrix: torch.Tensor, channels: int, kernel: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Split a (rows x channels*k*k) map into the largest number of channel groups it is block-diagonal in."""
    rows = torch.nonzero(matrix.abs().sum(dim=1) > 0).flatten()
    dense = matrix[rows]
    per_channel = kernel * kernel
    for group_size in range(1, channels + 1):
        if channels % group_size:
            continue
        groups = channels // group_size
        if len(rows) % groups:
            continue
        out_per_group = len(rows) // groups
        blocks = dense.reshape(groups, out_per_group, groups, group_size * per_channel)
        off_diagonal = blocks.clone()
        for g in range(groups):
            off_diagonal[g, :, g] = 0
        if torch.count_nonzero(off_diagonal) == 0:
            weight = torch.stack([blocks[g, :, g] for g in range(groups)]).reshape(
                len(rows), group_size, kernel, kernel
            )
            return rows, weight, groups
    return rows, dense.reshape(len(rows), channels, kernel, kernel), 1


def _disjoint_slices(rows: list[torch.Tensor], total: int) -> list[tuple[int, int]] | None:
    """(start, stop) per layer when each layer's rows are one contiguous range and together they tile
    0..total without overlap; None otherwise."""
    slices = []
    for layer_rows in rows:
        start, stop = int(layer_rows[0]), int(layer_rows[-1]) + 1
        if stop - start != len(layer_rows):
            return None
        slices.append((start, stop))
    covered = sorted(slices)
    if covered[0][0] != 0 or covered[-1][1] != total:
        return None
    if any(previous[1] != following[0] for previous, following in zip(covered, covered[1:])):
        return None
    return slices


class PatchEmbedder(torch.nn.Module):
    """Turn backbone layer maps into one `target_dim` vector per position of the first layer's grid."""

    def __init__(self, channels: list[int], pretrain_dim: int, target_dim: int, patchsize: int = 3):
        super().__init__()
        self.patchsize = patchsize
        self.target_dim = target_dim
        aggregate = _pool_matrix(len(channels) * pretrain_dim, target_dim)
        self._maps: list[_LayerMap] = []
        for index, channel_count in enumerate(channels):
            pre = _pool_matrix(channel_count * patchsize * patchsize, pretrain_dim)
            block = aggregate[:, index * pretrain_dim : (index + 1) * pretrain_dim]
            rows, weight, groups = _grouped_form(block @ pre, channel_count, patchsize)
            self.register_buffer(f"rows_{index}", rows, persistent=False)
            self.register_buffer(f"weight_{index}", weight.float(), persistent=False)
            self._maps.append(_LayerMap(rows, weight, groups))
        self._slices = _disjoint_slices([layer.rows for layer in self._maps], target_dim)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Return (B*h*w, target_dim) embeddings in row-major position order and the grid (h, w)."""
        height, width = features[0].shape[-2:]
        batch = features[0].shape[0]
        mapped_layers = []
        for index, feature in enumerate(features):
            weight = getattr(self, f"weight_{index}").to(feature.dtype)
            mapped = F.conv2d(feature, weight, padding=self.patchsize // 2, groups=self._maps[index].groups)
            if mapped.shape[-2:] != (height, width):
                mapped = F.interpolate(mapped, size=(height, width), mode="bilinear", align_corners=False)
            mapped_layers.append(mapped)

        if self._slices is not None:
            # Each layer fills its own contiguous block of output dimensions: copy the blocks straight into
            # the position-major result instead of zero-filling, scattering and transposing.
            output = features[0].new_empty(batch, height, width, self.target_dim)
            for (start, stop), mapped in zip(self._slices, mapped_layers):
                output[..., start:stop] = mapped.permute(0, 2, 3, 1)
            return output.reshape(-1, self.target_dim), (int(height), int(width))

        output = features[0].new_zeros(batch, self.target_dim, height, width)
        for index, mapped in enumerate(mapped_layers):
            output.index_add_(1, getattr(self, f"rows_{index}"), mapped)
        embeddings = output.permute(0, 2, 3, 1).reshape(-1, self.target_dim)
        return embeddings, (int(height), int(width))


def reference_embed(features: list[torch.Tensor], pretrain_dim: int, target_dim: int, patchsize: int = 3) -> torch.Tensor:
    """Straightforward embedding (unfold, resize the unfolded maps, pool twice), for tests and the benchmark."""
    height, width = features[0].shape[-2:]
    padding = patchsize // 2
    per_layer = []
    for feature in features:
        batch, channels = feature.shape[:2]
        unfolded = F.unfold(feature, kernel_size=patchsize, padding=padding)
        grid = feature.shape[-2:]
        unfolded = unfolded.reshape(batch, channels * patchsize * patchsize, *grid)
        if tuple(grid) != (height, width):
            unfolded = F.interpolate(unfolded, size=(height, width), mode="bilinear", align_corners=False)
        vectors = unfolded.permute(0, 2, 3, 1).reshape(-1, 1, channels * patchsize * patchsize)
        per_layer.append(F.adaptive_avg_pool1d(vectors, pretrain_dim).squeeze(1))
    stacked = torch.stack(per_layer, dim=1).reshape(len(per_layer[0]), 1, -1)
    return F.adaptive_avg_pool1d(stacked, target_dim).squeeze(1)


def layer_channels(extractor: FeatureExtractor, image_size: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Probe the extractor with one blank image: channel counts and grid sizes of the extracted layers."""
    with torch.inference_mode():
        outputs = extractor(torch.zeros(1, 3, image_size, image_size))
    return [int(o.shape[1]) for o in outputs], [tuple(int(s) for s in o.shape[-2:]) for o in outputs]


def warm_up_tracing() -> None:
    """Trace a tiny network once so that torch.fx and the modules it imports lazily are loaded.

    A GUI calls this at start-up: the first trace otherwise happens in a training worker, and its lazy
    imports hold Python's import machinery long enough to stall the GUI thread for up to a second.
    """
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    extractor = create_feature_extractor(tiny, return_nodes={"1": "out"})
    with torch.inference_mode():
        extractor(torch.zeros(1, 3, 8, 8))
    torch.cuda.is_available()
