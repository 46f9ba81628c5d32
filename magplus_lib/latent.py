"""The `latent` backbone family: expression as a compact latent code, decoded onto the source identity.

In the spirit of EmoPortraits / MetaPortrait (and unlike FOMM's explicit keypoints), the driver's
expression is summarised by an encoder into a low-dimensional vector. Relative to the driver's
reference frame 0, the code is ``z_t = E(driving_t) - E(driving_0)``, so the identity of the driver
cancels to first order and only its change of expression is transferred. A decoder conditioned on the
source's identity features (FiLM modulation by z) predicts a dense backward flow, a blending mask and a
synthesised colour image; the output is ``m * warp(source, flow) + (1 - m) * colour``.

Trained like FOMM, by self-reconstruction on macro-expression clips: source = frame s of a clip,
reference = the same frame s, target = frame t of the same clip.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .fomm import make_coordinate_grid, multiscale_l1


@dataclass
class LatentConfig:
    latent_dim: int = 16  # size of the expression code
    width: int = 32  # channels of the first encoder stage (doubled at each of the two downsamplings)
    num_res_blocks: int = 2
    align_corners: bool = True
    batch_size: int = 8  # frames per forward pass at inference
    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.125])  # reconstruction pyramid

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(1, cout), nn.SiLU())


class ExpressionEncoder(nn.Module):
    """Frame -> (latent_dim,) code through strided convolutions and global average pooling."""

    def __init__(self, width: int, latent_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            _conv(3, width, 2),
            _conv(width, 2 * width, 2),
            _conv(2 * width, 4 * width, 2),
            _conv(4 * width, 4 * width),
        )
        self.head = nn.Linear(4 * width, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x).mean(dim=(2, 3)))


class FiLMResBlock(nn.Module):
    """Residual block whose normalised activations are scaled and shifted from the expression code."""

    def __init__(self, channels: int, latent_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(1, channels, affine=False)
        self.norm2 = nn.GroupNorm(1, channels, affine=False)
        self.film = nn.Linear(latent_dim, 4 * channels)
        # Zero-initialised modulation: an untrained block is a plain residual block.
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        g1, b1, g2, b2 = self.film(z)[:, :, None, None].chunk(4, dim=1)
        h = self.conv1(F.silu(self.norm1(x) * (1 + g1) + b1))
        h = self.conv2(F.silu(self.norm2(h) * (1 + g2) + b2))
        return x + h


class LatentAnimator(nn.Module):
    def __init__(self, cfg: LatentConfig | None = None):
        super().__init__()
        self.cfg = cfg or LatentConfig()
        w, d = self.cfg.width, self.cfg.latent_dim
        self.expression_encoder = ExpressionEncoder(w, d)
        self.identity_encoder = nn.Sequential(_conv(3, w), _conv(w, 2 * w, 2), _conv(2 * w, 4 * w, 2))
        self.blocks = nn.ModuleList([FiLMResBlock(4 * w, d) for _ in range(self.cfg.num_res_blocks)])
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _conv(4 * w, 2 * w),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            _conv(2 * w, w),
        )
        self.head = nn.Conv2d(w + 3, 2 + 1 + 3, 3, padding=1)  # flow (2), mask logit (1), colour (3)
        # Start from the identity mapping: zero flow, mask favouring the warped source.
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[2] = 4.0

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.expression_encoder(frames)

    def decode(self, source: torch.Tensor, code: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = source.shape
        feats = self.identity_encoder(source)
        for block in self.blocks:
            feats = block(feats, code)
        feats = self.up(feats)
        if feats.shape[-2:] != (h, w):
            feats = F.interpolate(feats, size=(h, w), mode="bilinear", align_corners=False)
        out = self.head(torch.cat([feats, source], dim=1))
        flow = out[:, :2].permute(0, 2, 3, 1)  # normalised offsets
        mask = torch.sigmoid(out[:, 2:3])
        colour = torch.sigmoid(out[:, 3:])
        grid = make_coordinate_grid(h, w, device=source.device, dtype=source.dtype)[None] + flow
        warped = F.grid_sample(source, grid, padding_mode="border", align_corners=self.cfg.align_corners)
        return {
            "prediction": mask * warped + (1 - mask) * colour,
            "flow": flow,
            "mask": mask,
            "warped": warped,
        }

    def forward(
        self, source: torch.Tensor, driving: torch.Tensor, reference: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        code = self.encode(driving) - self.encode(reference)
        out = self.decode(source, code)
        out["code"] = code
        return out

    @torch.no_grad()
    def animate(
        self, source: torch.Tensor, driving: torch.Tensor, batch_size: int | None = None
    ) -> torch.Tensor:
        bs = batch_size or self.cfg.batch_size
        z0 = self.encode(driving[:1])
        frames = []
        for start in range(0, driving.shape[0], bs):
            chunk = driving[start : start + bs]
            code = self.encode(chunk) - z0
            frames.append(self.decode(source.expand(chunk.shape[0], -1, -1, -1), code)["prediction"])
        return torch.cat(frames, dim=0)


def latent_losses(
    model: LatentAnimator, source: torch.Tensor, driving: torch.Tensor, generator=None, cache=None
):
    """Self-reconstruction of `driving` from `source` (reference = source frame), multi-scale L1."""
    out = model(source, driving, source)
    rec = multiscale_l1(out["prediction"], driving, model.cfg.scales, cache)
    return rec, {"reconstruction": float(rec.detach())}
