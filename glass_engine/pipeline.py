"""The assembled GLASS model: frozen backbone, patch embedding, trainable head and map post-processing."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from glass_engine.config import GlassConfig
from glass_engine.features import (
    FeatureExtractor,
    PatchEmbedder,
    build_backbone,
    layer_channels,
    reference_embed,
)
from glass_engine.model import GlassHead

logger = logging.getLogger(__name__)

MAP_BLUR_SIGMA = 4.0
"""Standard deviation in pixels of the Gaussian blur applied to upsampled maps (official value)."""


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Normalised 1-D Gaussian with radius round(truncate * sigma), as scipy.ndimage.gaussian_filter uses."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def _symmetric_index(size: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of a half-sample symmetric padding (scipy's `reflect`, numpy's `symmetric`), any radius."""
    index = torch.arange(-radius, size + radius, device=device) % (2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def blur_maps(maps: torch.Tensor, sigma: float = MAP_BLUR_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) maps on their device; equals scipy.ndimage.gaussian_filter
    with its default `reflect` border and truncate 4."""
    kernel = gaussian_kernel1d(sigma).to(maps.device, maps.dtype)
    radius = (len(kernel) - 1) // 2
    height, width = maps.shape[-2:]
    x = maps.index_select(-1, _symmetric_index(width, radius, maps.device)).unsqueeze(1)
    x = F.conv2d(x, kernel.reshape(1, 1, 1, -1))
    x = x.index_select(-2, _symmetric_index(height, radius, maps.device))
    x = F.conv2d(x, kernel.reshape(1, 1, -1, 1))
    return x.squeeze(1)


class GlassModel(torch.nn.Module):
    """Backbone, embedder and head with the official scoring: image score = max patch score, map =
    bilinear upsampling of the patch scores to the input size followed by a Gaussian blur (sigma 4)."""

    def __init__(self, config: GlassConfig, device: torch.device):
        super().__init__()
        self.config = config
        self.device = device
        backbone, self.weights_info = build_backbone(config.backbone)
        self.extractor = FeatureExtractor(backbone, config.backbone.layers)
        channels, grids = layer_channels(self.extractor, config.data.image_size)
        self.channels = channels
        self.feature_shape: tuple[int, int] = grids[0]
        self.embedder = PatchEmbedder(
            channels,
            config.backbone.pretrain_embed_dimension,
            config.backbone.target_embed_dimension,
            config.backbone.patchsize,
        )
        self.head = GlassHead(config.backbone.target_embed_dimension, config.method)
        self.to(device)
        if device.type == "cpu":
            self.extractor.to(memory_format=torch.channels_last)
        logger.info(
            "Model ready: backbone %s layers %s channels %s, feature grid %s, embedding %d, device %s",
            config.backbone.name,
            config.backbone.layers,
            channels,
            self.feature_shape,
            config.backbone.target_embed_dimension,
            device,
        )

    @property
    def positions(self) -> int:
        return self.feature_shape[0] * self.feature_shape[1]

    def embed(self, images: torch.Tensor, reference: bool = False, trainable: bool = True) -> torch.Tensor:
        """(B, 3, S, S) normalised images -> (B*P, D) patch embeddings, without gradients.

        reference=True uses the straightforward unfold embedding (the benchmark's reference loop).
        trainable=False returns an inference-mode tensor (no copy), usable only under inference mode.
        """
        with torch.inference_mode():
            images = images.to(self.device, non_blocking=True)
            if self.device.type == "cpu" and not reference:
                images = images.contiguous(memory_format=torch.channels_last)
            features = self.extractor(images)
            if reference:
                features = [f.contiguous() for f in features]
                backbone = self.config.backbone
                embeddings = reference_embed(
                    features, backbone.pretrain_embed_dimension, backbone.target_embed_dimension, backbone.patchsize
                )
            else:
                embeddings, _ = self.embedder(features)
        # Inference-mode tensors cannot enter autograd, so training gets a normal copy.
        return embeddings.clone() if trainable else embeddings

    def score_embeddings(self, embeddings: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B*P, D) embeddings -> image scores (B,) and blurred maps (B, S, S) at the input size."""
        self.head.eval()
        with torch.inference_mode():
            patch_scores = self.head.score(embeddings.to(self.device)).float()
            patch_scores = patch_scores.reshape(batch, *self.feature_shape)
            image_scores = patch_scores.reshape(batch, -1).max(dim=1).values
            size = self.config.data.image_size
            maps = F.interpolate(patch_scores.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
            maps = blur_maps(maps.squeeze(1))
        return image_scores, maps

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            return self.score_embeddings(self.embed(images, trainable=False), images.shape[0])


def eta_seconds(elapsed: float, done: float, total: float) -> float | None:
    if done <= 0 or total <= 0:
        return None
    remaining = elapsed / done * (total - done)
    return remaining if math.isfinite(remaining) else None
