"""Typed, validated configuration of one GLASS run, with presets and a YAML round trip.

The defaults of `GlassConfig()` are the settings of the official GLASS MVTec AD script
(cqylunlun/GLASS, shell/run-mvtec.sh): WideResNet-50-2 layers 2 and 3, 288 px images, 1536-dimensional
embeddings, 640 meta epochs, GAS with 20 steps of 0.001 and noise 0.015, radius quantile 0.75.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from glass_engine.errors import ConfigError

RESIZE_POLICIES = ("resize", "resize_crop", "letterbox")
DISTRIBUTION_MODES = ("auto", "manifold", "hypersphere", "from_table")
SELECTION_RULES = ("test_auroc_sum", "validation", "last")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
FOREGROUND_MODES = ("none", "files", "binarize")


@dataclass
class DataConfig:
    image_size: int = 288
    """Side in pixels of the square network input."""
    resize_policy: str = "resize"
    """Geometry from an image to the square input. `resize` squashes the whole image (default, nothing is
    cut), `letterbox` keeps the aspect ratio and pads, and `resize_crop` is the official short-side resize
    plus centre crop, which cuts the edges of non-square images."""
    crop_ratio: float = 1.0
    """For `resize_crop` only: the short side is resized to image_size / crop_ratio before the centre crop."""
    batch_size: int = 8
    workers: int = 0
    """DataLoader worker processes that build LAS images; 0 uses a prefetch thread instead."""
    validation_fraction: float = 0.1
    """Share of train/good images held out for the `validation` checkpoint rule."""


@dataclass
class BackboneConfig:
    name: str = "wide_resnet50_2"
    layers: list[str] = field(default_factory=lambda: ["layer2", "layer3"])
    weights: str | None = None
    """Path of a local torchvision state dict; empty uses torchvision's pretrained weights and its cache."""
    random_init: bool = False
    """Use untrained backbone weights. Only for tests: results are meaningless and the run is marked."""
    pretrain_embed_dimension: int = 1536
    target_embed_dimension: int = 1536
    patchsize: int = 3


@dataclass
class MethodConfig:
    meta_epochs: int = 640
    eval_epochs: int = 1
    """Evaluate (and consider a checkpoint) every this many epochs."""
    dsc_layers: int = 2
    dsc_hidden: int = 1024
    dsc_margin: float = 0.5
    pre_proj: int = 1
    mining: int = 1
    noise: float = 0.015
    """Standard deviation of the Gaussian noise added to normal features before gradient ascent."""
    radius: float = 0.75
    """Quantile of distances to the centre that defines r_t."""
    p: float = 0.5
    """Hard-sample mining quantile of the focal loss; 0 disables mining."""
    lr: float = 0.0001
    step: int = 20
    """Gradient-ascent steps of GAS per batch."""
    step_size: float = 0.001
    limit: int = 392
    """Training samples per epoch; the epoch ends at the first batch that passes this count."""
    distribution: str = "auto"
    """Feature-space model of the anomalies: `auto` (FFT judgement of the mean training image), `manifold`,
    `hypersphere`, or `from_table` (read from `distribution_table`)."""
    distribution_table: str | None = None
    """Spreadsheet of per-category judgements (our analyze output or the official Class/Distribution file)."""
    beta_mean: float = 0.5
    beta_std: float = 0.1
    rand_aug: bool = True
    textures: str | None = None
    """Folder of texture images for LAS (DTD layout or any images); empty uses the built-in textures."""
    foreground: str = "none"
    """Foreground masks for LAS: `none`, `files` (fg_mask folder beside the data) or `binarize` (Otsu)."""
    perlin_min_scale: int = 0
    perlin_max_scale: int = 6


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"
    precision: str = "float32"
    """Autocast dtype of the discriminator and GAS steps: float32, bfloat16, float16 or auto."""
    selection_rule: str = "test_auroc_sum"
    """Checkpoint selection. `test_auroc_sum`: the paper's rule, best image AUROC + pixel AUROC on the test
    set (optimistic, it looks at test labels). `validation`: best score on held-out good images with
    synthetic anomalies, never looking at the test set. `last`: the final epoch."""
    cache_features: bool = True
    cache_limit_mb: int = 4096
    """Feature cache size bound; beyond it, embeddings are kept in a memory-mapped file in the run folder."""
    save_maps: bool = True


@dataclass
class GlassConfig:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> "GlassConfig":
        _check_choice("data.resize_policy", self.data.resize_policy, RESIZE_POLICIES)
        _check_choice("method.distribution", self.method.distribution, DISTRIBUTION_MODES)
        _check_choice("method.foreground", self.method.foreground, FOREGROUND_MODES)
        _check_choice("run.selection_rule", self.run.selection_rule, SELECTION_RULES)
        _check_choice("run.precision", self.run.precision, PRECISIONS)
        _check_choice("run.device", self.run.device, DEVICES)
        _check_range("data.image_size", self.data.image_size, 32, 4096)
        _check_range("data.batch_size", self.data.batch_size, 1, 4096)
        _check_range("data.workers", self.data.workers, 0, 64)
        _check_range("data.crop_ratio", self.data.crop_ratio, 0.1, 1.0)
        _check_range("data.validation_fraction", self.data.validation_fraction, 0.0, 0.9)
        _check_range("backbone.pretrain_embed_dimension", self.backbone.pretrain_embed_dimension, 1, 65536)
        _check_range("backbone.target_embed_dimension", self.backbone.target_embed_dimension, 1, 65536)
        _check_range("backbone.patchsize", self.backbone.patchsize, 1, 15)
        if self.backbone.patchsize % 2 == 0:
            raise ConfigError(f"backbone.patchsize must be odd, got {self.backbone.patchsize}. Use 1, 3, 5, ...")
        if not self.backbone.layers:
            raise ConfigError("backbone.layers is empty. Name at least one module, for example layer2.")
        _check_range("method.meta_epochs", self.method.meta_epochs, 1, 100000)
        _check_range("method.eval_epochs", self.method.eval_epochs, 1, 100000)
        _check_range("method.dsc_layers", self.method.dsc_layers, 1, 16)
        _check_range("method.dsc_hidden", self.method.dsc_hidden, 1, 65536)
        _check_range("method.noise", self.method.noise, 0.0, 10.0)
        _check_range("method.radius", self.method.radius, 0.0, 1.0)
        _check_range("method.p", self.method.p, 0.0, 1.0)
        _check_range("method.lr", self.method.lr, 0.0, 1.0)
        _check_range("method.step", self.method.step, 0, 1000)
        _check_range("method.limit", self.method.limit, 1, 10_000_000)
        _check_range("method.beta_mean", self.method.beta_mean, 0.0, 1.0)
        _check_range("method.perlin_min_scale", self.method.perlin_min_scale, 0, 8)
        _check_range("method.perlin_max_scale", self.method.perlin_max_scale, self.method.perlin_min_scale + 1, 9)
        _check_range("run.cache_limit_mb", self.run.cache_limit_mb, 0, 10_000_000)
        if self.method.distribution == "from_table" and not self.method.distribution_table:
            raise ConfigError("method.distribution is from_table but method.distribution_table is empty. Give the .xlsx path.")
        if self.backbone.weights and self.backbone.random_init:
            raise ConfigError("backbone.weights and backbone.random_init exclude each other. Give only one.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> "GlassConfig":
        if not isinstance(payload, dict):
            raise ConfigError(f"A configuration must be a mapping of sections, got {type(payload).__name__}.")
        sections = {f.name: f.type for f in fields(cls)}
        unknown = set(payload) - set(sections)
        if unknown:
            raise ConfigError(
                f"Unknown configuration section(s): {', '.join(sorted(unknown))}. Known: {', '.join(sections)}."
            )
        config = cls()
        for name, value in payload.items():
            section = getattr(config, name)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"Section `{name}` must be a mapping of keys, got {value!r}.")
            _update_section(name, section, value)
        return config.validate()

    @classmethod
    def from_yaml(cls, text: str) -> "GlassConfig":
        try:
            payload = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"Configuration is not valid YAML: {exc}") from exc
        return cls.from_dict(payload)

    @classmethod
    def load(cls, path: Path) -> "GlassConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Configuration file {path} not found. Check the path given to --config.")
        return cls.from_yaml(path.read_text(encoding="utf-8"))

    def updated(self, overrides: dict[str, Any]) -> "GlassConfig":
        """Return a copy with dotted-key overrides applied, for example {"method.meta_epochs": 5}."""
        payload = self.to_dict()
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            if section not in payload or key not in payload[section]:
                raise ConfigError(f"Unknown configuration key `{dotted}`.")
            payload[section][key] = value
        return GlassConfig.from_dict(payload)


def _update_section(section_name: str, section: Any, values: dict[str, Any]) -> None:
    known = {f.name: f for f in fields(section)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"Unknown key `{section_name}.{key}`. Known keys of `{section_name}`: {', '.join(known)}."
            )
        current = getattr(section, key)
        setattr(section, key, _coerce(f"{section_name}.{key}", value, current, known[key]))


def _coerce(name: str, value: Any, current: Any, spec: dataclasses.Field) -> Any:
    if value is None:
        if "None" in str(spec.type):
            return None
        raise ConfigError(f"`{name}` must not be empty.")
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"`{name}` must be true or false, got {value!r}.")
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"`{name}` must be a whole number, got {value!r}.")
        return int(value)
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"`{name}` must be a number, got {value!r}.")
        return float(value)
    if isinstance(current, list):
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"`{name}` must be a list of names, got {value!r}.")
        return list(value)
    if not isinstance(value, (str, Path)):
        raise ConfigError(f"`{name}` must be text, got {value!r}.")
    return str(value)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"`{name}` is {value!r}; choose one of: {', '.join(choices)}.")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"`{name}` is {value}; it must be between {low} and {high}.")


def preset(name: str) -> GlassConfig:
    """Return a named preset.

    `official`: the MVTec AD settings of the official code. `fast`: a CPU-friendly variant (fewer epochs and
    samples, evaluation every 5 epochs). `mobilenet`: the MobileNetV2 backbone at layers features.6 and
    features.13 (strides 8 and 16, 32 and 96 channels), embeddings sized to their 3x3 patches (288 and 864
    values, pooled to 288 and aggregated to 576), otherwise as `fast`.
    """
    config = GlassConfig()
    if name == "official":
        return config
    if name in ("fast", "mobilenet"):
        config.method.meta_epochs = 40
        config.method.eval_epochs = 5
        config.method.limit = 96
        config.data.image_size = 256
        if name == "mobilenet":
            config.backbone.name = "mobilenet_v2"
            config.backbone.layers = ["features.6", "features.13"]
            config.backbone.pretrain_embed_dimension = 288
            config.backbone.target_embed_dimension = 576
            config.method.dsc_hidden = 512
        return config.validate()
    raise ConfigError(f"Unknown preset {name!r}. Choose one of: {', '.join(PRESETS)}.")


PRESETS = ("official", "fast", "mobilenet")
