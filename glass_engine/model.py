"""GLASS networks and the training step: projection, discriminator, focal loss, GAS and LAS features.

The step reproduces the official GLASS training step (cqylunlun/GLASS, glass.py `_train_discriminator`).
Gaussian noise is added to projected normal features, which then make `step` gradient-ascent moves of
`step_size` along the normalised gradient of the discriminator's loss. Every 5 moves they are truncated:
in manifold mode their distance to the true feature is clamped to [0.5, 1], in hypersphere mode their
distance to the centre to [r_t, 2 r_t]. In hypersphere mode LAS features are clamped to [2 r_t, 4 r_t].
The loss is BCE on true vs GAS features plus a focal loss with hard-sample mining on the LAS features.

One change of computation, not of result: during the ascent moves the discriminator's first linear layer is
applied to the true features once per batch instead of once per move, because those rows do not change and
the gradient is taken with respect to the GAS features only. The final forward, whose loss is
back-propagated, is the full forward as in the official code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from glass_engine.config import MethodConfig

HYPERSPHERE = "hypersphere"
MANIFOLD = "manifold"


def _init_weights(module: torch.nn.Module) -> None:
    if isinstance(module, torch.nn.Linear):
        torch.nn.init.xavier_normal_(module.weight)


class Projection(torch.nn.Module):
    """Stack of `n_layers` linear layers without activation (the official `pre_proj` adaptor)."""

    def __init__(self, dimension: int, n_layers: int = 1):
        super().__init__()
        self.layers = torch.nn.Sequential(*[torch.nn.Linear(dimension, dimension) for _ in range(n_layers)])
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class Discriminator(torch.nn.Module):
    """MLP: (n_layers - 1) blocks of Linear, BatchNorm1d and LeakyReLU(0.2), then Linear to 1 and a sigmoid."""

    def __init__(self, dimension: int, n_layers: int = 2, hidden: int = 1024):
        super().__init__()
        blocks = []
        width = dimension
        for _ in range(n_layers - 1):
            blocks.append(
                torch.nn.Sequential(
                    torch.nn.Linear(width, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.LeakyReLU(0.2)
                )
            )
            width = hidden
        self.body = torch.nn.Sequential(*blocks)
        self.tail = torch.nn.Sequential(torch.nn.Linear(width, 1, bias=False), torch.nn.Sigmoid())
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(x))

    def forward_with_first_layer(self, first: torch.Tensor) -> torch.Tensor:
        """Finish a forward whose first Linear output is given (only for n_layers >= 2)."""
        block = self.body[0]
        x = block[2](block[1](first))
        for rest in self.body[1:]:
            x = rest(x)
        return self.tail(x)


def focal_loss(probabilities: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, smooth: float = 1e-5) -> torch.Tensor:
    """Binary focal loss on probabilities of class 1, with the official code's label smoothing of 1e-5.

    pt is the probability given to the true class, computed from targets clamped to [smooth, 1 - smooth]
    and shifted by `smooth`. The loss is mean((1 - pt)^gamma * -log(pt)).
    """
    probabilities = probabilities.reshape(-1)
    target = target.reshape(-1).float().clamp(smooth, 1.0 - smooth)
    pt = target * probabilities + (1.0 - target) * (1.0 - probabilities) + smooth
    return (-(1.0 - pt).pow(gamma) * pt.log()).mean()


@dataclass
class StepStats:
    loss: float
    p_true: float
    p_fake: float
    r_t: float
    r_g: float
    r_f: float


class GlassHead(torch.nn.Module):
    """Trainable part of GLASS: projection and discriminator over patch embeddings."""

    def __init__(self, dimension: int, method: MethodConfig):
        super().__init__()
        self.method = method
        self.projection = Projection(dimension, method.pre_proj) if method.pre_proj > 0 else None
        self.discriminator = Discriminator(dimension, method.dsc_layers, method.dsc_hidden)

    def project(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.projection(embeddings) if self.projection is not None else embeddings

    def score(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Patch anomaly scores in [0, 1] (1 = anomalous) for (N, D) embeddings.

        In eval mode the affine projection is folded into the discriminator's first linear layer, which
        removes one D x D product per patch. The result equals the unfolded form up to float rounding.
        """
        if self.training or self.projection is None or self.method.dsc_layers < 2:
            return self.discriminator(self.project(embeddings)).squeeze(-1)
        weight, bias = self._folded_first_layer()
        first = torch.nn.functional.linear(embeddings, weight, bias)
        return self.discriminator.forward_with_first_layer(first).squeeze(-1)

    def _folded_first_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of first_layer(projection(x)), cached until any parameter changes in place."""
        first = self.discriminator.body[0][0]
        parameters = [first.weight, first.bias, *self.projection.parameters()]
        key = tuple((id(p), p._version) for p in parameters)
        cached = getattr(self, "_folded_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        with torch.no_grad():
            weight, bias = first.weight, first.bias
            for layer in reversed(self.projection.layers):
                bias = bias + weight @ layer.bias
                weight = weight @ layer.weight
        self._folded_cache = (key, weight, bias)
        return weight, bias

    def make_optimizers(self) -> list[torch.optim.Optimizer]:
        optimizers = [torch.optim.AdamW(self.discriminator.parameters(), lr=self.method.lr * 2)]
        if self.projection is not None:
            optimizers.append(torch.optim.Adam(self.projection.parameters(), self.method.lr, weight_decay=1e-5))
        return optimizers

    def center(self, mean_embedding: torch.Tensor) -> torch.Tensor:
        """Centre of the projected normal features per patch position, (positions, D).

        The projection is affine, so the mean of projected features equals the projection of the mean
        embedding, and the centre needs no pass over the training images.
        """
        with torch.no_grad():
            return self.project(mean_embedding)

    def train_step(
        self,
        true_embeddings: torch.Tensor,
        fake_embeddings: torch.Tensor,
        mask_s: torch.Tensor,
        center: torch.Tensor,
        mode: str,
        optimizers: list[torch.optim.Optimizer],
        autocast_dtype: torch.dtype = torch.float32,
        reuse_first_layer: bool = True,
    ) -> StepStats:
        """Run one optimisation step on a batch and return its statistics.

        true_embeddings, fake_embeddings: (B*P, D) embeddings of the clean and the LAS images;
        mask_s: (B*P,) 1 where the LAS mask covers the patch; center: (P, D) centre per position.
        reuse_first_layer=False recomputes the whole discriminator in every ascent move, as the official
        code does (the benchmark's reference loop).
        """
        method = self.method
        device = true_embeddings.device
        hypersphere = mode == HYPERSPHERE
        self.train()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)

        fake = self.project(fake_embeddings)
        true = self.project(true_embeddings)
        mask = mask_s.reshape(-1, 1).to(device=device, dtype=true.dtype)
        clean = mask[:, 0] == 0
        positions = center.shape[0]
        batch_center = center.repeat(len(true) // positions, 1)

        noise = torch.normal(0.0, method.noise, true.shape, device=device)
        gaus = true + noise

        true_points = torch.cat([fake[clean], true])
        center_points = torch.cat([batch_center[clean], batch_center])
        r_t = torch.quantile(torch.norm(true_points - center_points, dim=1).detach().float(), method.radius)
        r_g = torch.zeros((), device=device)

        autocast = _autocast(device, autocast_dtype)
        use_first_layer_cache = reuse_first_layer and method.dsc_layers >= 2
        if use_first_layer_cache:
            with torch.no_grad(), autocast:
                true_first = self.discriminator.body[0][0](true.detach())

        for move in range(method.step):
            with autocast:
                if use_first_layer_cache:
                    gaus_first = self.discriminator.body[0][0](gaus)
                    scores = self.discriminator.forward_with_first_layer(torch.cat([true_first, gaus_first]))
                else:
                    scores = self.discriminator(torch.cat([true, gaus]))
            gaus_scores = scores[len(true) :].float()
            gaus_loss = F.binary_cross_entropy(gaus_scores, torch.ones_like(gaus_scores))
            grad = torch.autograd.grad(gaus_loss, [gaus])[0]
            grad = grad / (torch.norm(grad, dim=1, keepdim=True) + 1e-10)
            with torch.no_grad():
                gaus.add_(method.step_size * grad)

            if (move + 1) % 5 == 0:
                dist_g = torch.norm(gaus - batch_center, dim=1)
                r_g = torch.quantile(dist_g.detach().float(), method.radius)
                if hypersphere:
                    gaus = clamp_to_shell(gaus, batch_center, r_t, 2 * r_t)
                else:
                    gaus = clamp_to_shell(gaus, true, 0.5, 1.0)

        with autocast:
            scores = self.discriminator(torch.cat([true, gaus])).float()
        true_scores = scores[: len(true)]
        gaus_scores = scores[len(true) :]
        bce = F.binary_cross_entropy(true_scores, torch.zeros_like(true_scores)) + F.binary_cross_entropy(
            gaus_scores, torch.ones_like(gaus_scores)
        )

        covered = mask[:, 0] == 1
        fake_points = fake[covered]
        dist_f = torch.norm(fake_points - batch_center[covered], dim=1)
        r_f = torch.quantile(dist_f.detach().float(), method.radius) if len(dist_f) else torch.zeros((), device=device)
        if hypersphere and len(fake_points):
            fake = fake.clone()
            fake[covered] = clamp_to_shell(fake_points, batch_center[covered], 2 * r_t, 4 * r_t)

        with autocast:
            fake_scores = self.discriminator(fake).float()
        if method.p > 0:
            distance = (fake_scores - mask) ** 2
            hard = distance >= torch.quantile(distance.detach(), method.p)
            mined_scores, mined_mask = fake_scores[hard], mask[hard]
        else:
            mined_scores, mined_mask = fake_scores, mask
        loss = bce + focal_loss(mined_scores, mined_mask)
        loss.backward()
        for optimizer in reversed(optimizers):
            optimizer.step()

        with torch.no_grad():
            pix_true = torch.cat([fake_scores * (1 - mask), true_scores])
            pix_fake = torch.cat([fake_scores * mask, gaus_scores])
            margin = method.dsc_margin
            p_true = ((pix_true < margin).sum() - (pix_true == 0).sum()) / ((mask == 0).sum() + len(true_scores))
            p_fake = (pix_fake >= margin).sum() / ((mask == 1).sum() + len(gaus_scores))
        return StepStats(
            loss=float(loss.detach()),
            p_true=float(p_true),
            p_fake=float(p_fake),
            r_t=float(r_t),
            r_g=float(r_g),
            r_f=float(r_f),
        )


def clamp_to_shell(points: torch.Tensor, anchors: torch.Tensor, low, high) -> torch.Tensor:
    """Move each point along its ray from its anchor so that its distance lies in [low, high]."""
    offset = points - anchors
    length = torch.norm(offset, dim=1)
    clamped = torch.clamp(length, low, high)
    return anchors + (clamped / (length + 1e-10)).reshape(-1, 1) * offset


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
