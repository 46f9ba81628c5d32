"""The `latent` backbone family: expression as a compact latent code, decoded onto the source identity.

In the spirit of EmoPortraits / MetaPortrait (and unlike FOMM's explicit keypoints), the driver's
expression is summarised by an encoder into a low-dimensional vector. Relative to the driver's
reference frame 0, the code is ``z_t = E(driving_t) - E(driving_0)``, so the identity of the driver
cancels to first order and only its change of expression is transferred. A decoder conditioned on the
source's identity features (FiLM modulation by z) predicts a blending mask, a synthesised colour image
and a basis of flow fields on the source; the dense backward flow is the basis combined with weights z
(LIA's linear motion decomposition, made spatial), and the output is
``m * warp(source, flow) + (1 - m) * colour``.

Trained like FOMM, by self-reconstruction on macro-expression clips: source = frame s of a clip,
reference = the same frame s, target = frame t of the same clip.

`emolatent` (EmoLatentAnimator, emolatent_losses) is the same animator trained with the same loss plus
an EmoPortraits-style expression objective: a linear classifier on the relative code predicts the macro
clip's emotion category (cross-entropy weighted by ``expression_weight``; the classifier is unused at
inference). It shapes the latent by emotion category rather than intensity, as expression-centric
reenactment models do; whether that exaggerates micro motion is measured, not assumed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from magplus_lib.backbones.fomm import make_coordinate_grid
from magplus_lib.backbones.fomm_losses import image_pyramid, multiscale_l1


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


def conv_block(cin, cout, stride=1):
    """3x3 convolution, GroupNorm (one group: per-frame statistics), SiLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(1, cout), nn.SiLU())


def warp_blend_head(channels: int) -> nn.Conv2d:
    """Output convolution predicting flow (2), mask logit (1) and colour (3), initialised so that the
    untrained model returns its source: zero flow and a mask favouring the warped source."""
    head = nn.Conv2d(channels, 2 + 1 + 3, 3, padding=1)
    nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[2] = 4.0
    return head


def warp_blend(
    out: torch.Tensor, source: torch.Tensor, align_corners: bool, prior: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """`warp_blend_head` output -> ``mask * warp(source, flow) + (1 - mask) * colour`` (and its parts);
    `prior` (B, H, W, 2), if given, is added to the predicted flow."""
    h, w = source.shape[-2:]
    flow = out[:, :2].permute(0, 2, 3, 1)  # normalised offsets
    if prior is not None:
        flow = flow + prior
    mask = torch.sigmoid(out[:, 2:3])
    colour = torch.sigmoid(out[:, 3:])
    grid = make_coordinate_grid(h, w, device=source.device, dtype=source.dtype)[None] + flow
    warped = F.grid_sample(source, grid, padding_mode="border", align_corners=align_corners)
    return {"prediction": mask * warped + (1 - mask) * colour, "flow": flow, "mask": mask, "warped": warped}


def warp_pyramid_l1(
    source: torch.Tensor,
    flow: torch.Tensor,
    target: torch.Tensor,
    scales: list[float],
    align_corners: bool,
    cache: dict | None = None,
) -> torch.Tensor:
    """Sum over the coarser pyramid levels (scales < 1) of the L1 between the target and the source
    warped by the predicted flow at that level (unsupervised optical flow's multi-scale photometric loss).

    Why: a warp's gradient reaches only about a pixel around each edge, so at full resolution a face
    moving by 5 px gives its flow almost no signal; a level at 1/8 sees the same motion within a pixel.
    Flows are in normalised coordinates, so one field serves every level after resizing."""
    cache = {} if cache is None else cache
    coarse = [s for s in scales if s < 1]
    if not coarse:
        return flow.new_zeros(())
    src, tgt = image_pyramid(source, coarse, cache), image_pyramid(target, coarse, cache)
    total = flow.new_zeros(())
    for s in coarse:
        h, w = src[s].shape[-2:]
        f = F.interpolate(flow.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=align_corners)
        grid = make_coordinate_grid(h, w, device=flow.device, dtype=flow.dtype)[None] + f.permute(0, 2, 3, 1)
        warped = F.grid_sample(src[s], grid, padding_mode="border", align_corners=align_corners)
        total = total + (warped - tgt[s]).abs().mean()
    return total


class ExpressionEncoder(nn.Module):
    """Frame -> (latent_dim,) code: strided convolutions, a 4 x 4 grid of pooled features, flattened
    into a linear layer (as LIA's and StyleGAN's encoders end). Keeping the grid keeps *where* the face
    moves: a global average would make the code nearly blind to a mouth corner moving by a few pixels."""

    grid = 4

    def __init__(self, width: int, latent_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            conv_block(3, width, 2),
            conv_block(width, 2 * width, 2),
            conv_block(2 * width, 4 * width, 2),
            conv_block(4 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        self.head = nn.Linear(4 * width * self.grid**2, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.net(x)).flatten(1))


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
        self.identity_encoder = nn.Sequential(
            conv_block(3, w), conv_block(w, 2 * w, 2), conv_block(2 * w, 4 * w, 2)
        )
        self.blocks = nn.ModuleList([FiLMResBlock(4 * w, d) for _ in range(self.cfg.num_res_blocks)])
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv_block(4 * w, 2 * w),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            conv_block(2 * w, w),
        )
        # LIA's linear motion decomposition, made spatial: the head predicts latent_dim flow fields on
        # the source (a motion basis, zero at first) and the flow is their combination weighted by the
        # code, so a zero code (a still driver) moves nothing and each code entry has a direct path to
        # the flow from the first step.
        self.head = nn.Conv2d(w + 3, 2 * d + 4, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[2 * d] = 4.0  # mask favouring the warped source

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
        d = self.cfg.latent_dim
        basis = out[:, : 2 * d].view(b, d, 2, h, w)
        flow = torch.einsum("bd,bdchw->bchw", code, basis)
        return warp_blend(torch.cat([flow, out[:, 2 * d :]], dim=1), source, self.cfg.align_corners)

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
    """Self-reconstruction of `driving` from `source` (reference = source frame), multi-scale L1, plus
    the flow's multi-scale photometric loss (`warp_pyramid_l1`)."""
    out = model(source, driving, source)
    rec = multiscale_l1(out["prediction"], driving, model.cfg.scales, cache)
    flow = warp_pyramid_l1(source, out["flow"], driving, model.cfg.scales, model.cfg.align_corners, cache)
    return rec + flow, {"reconstruction": float(rec.detach()), "flow_pyramid": float(flow.detach())}


# ----------------------------------------------------------------------------------------------------
# emolatent: the same animator, with an expression-category objective on its code


@dataclass
class EmoLatentConfig(LatentConfig):
    """`LatentConfig` plus the expression objective of the `emolatent` backbone."""

    # Weight of the expression-category cross-entropy next to the reconstruction loss: 0.1, fixed a
    # priori (before any emolatent run), not tuned toward any motion gain.
    expression_weight: float = 0.1
    # Number of expression categories; None = taken from the training labels (max label + 1).
    num_classes: int | None = None
    # Which code the classifier reads: "neutral" = E(driving) - E(neutral frame of the driving clip), the
    # code the animator is driven by at inference (driving frame 0 is the neutral reference); "source" =
    # E(driving) - E(source), the reconstruction's code. The source code is antisymmetric in the random
    # pair order (pairs (a, b) and (b, a) are equally likely, with the same label), so the expected
    # cross-entropy of a linear classifier on it is minimal when it ignores the code: it cannot learn
    # anything beyond the label frequencies. "neutral" is the default for that reason alone.
    expression_reference: str = "neutral"

    def __post_init__(self):
        if self.expression_reference not in ("neutral", "source"):
            raise ValueError(
                "emolatent: expression_reference must be 'neutral' or 'source', "
                f"got {self.expression_reference!r}"
            )


class EmoLatentAnimator(LatentAnimator):
    """`LatentAnimator` with a linear expression-category classifier on the relative code.

    In the spirit of EmoPortraits, whose expression latent is trained with an expression objective:
    the classifier (part of the model and of its checkpoint) predicts the emotion category of a macro
    clip from the relative code ``z = E(driving) - E(neutral)`` (neutral = the clip's frame 0, as at
    inference; see `EmoLatentConfig.expression_reference`) during training and is unused at inference,
    so `animate` is `LatentAnimator.animate`. The classifier sees the unit-length code, so the objective
    shapes the latent's direction by emotion *category* and leaves its length (the motion's intensity)
    to the reconstruction, as expression-centric reenactment models separate them; whether that
    exaggerates micro motion is measured by 03_backbones, not assumed.
    """

    def __init__(self, cfg: EmoLatentConfig | None = None):
        cfg = cfg or EmoLatentConfig()
        if not cfg.num_classes or cfg.num_classes < 2:
            raise ValueError(f"emolatent: num_classes must be at least 2, got {cfg.num_classes}")
        super().__init__(cfg)  # created first: the animator's initial weights equal `latent`'s
        self.expression_classifier = nn.Linear(cfg.latent_dim, cfg.num_classes)


def emolatent_losses(
    model: EmoLatentAnimator,
    source: torch.Tensor,
    driving: torch.Tensor,
    generator=None,
    cache=None,
    labels: torch.Tensor | None = None,
    neutral: torch.Tensor | None = None,
):
    """`latent_losses` + expression_weight * cross-entropy of the clip's emotion category predicted by the
    linear classifier from a relative code: z = E(driving) - E(neutral) (`neutral`: (B, 3, H, W), frame 0
    of each pair's clip) or, with ``expression_reference = "source"``, the reconstruction's code
    E(driving) - E(source). `labels`: (B,) int64."""
    if labels is None:
        raise ValueError("emolatent_losses: the emotion label of each pair's clip is required")
    by_source = model.cfg.expression_reference == "source"
    if not by_source and neutral is None:
        raise ValueError("emolatent_losses: the neutral frame of each pair's clip is required")
    b = driving.shape[0]
    # One encoder pass for all frames (GroupNorm normalises each frame on its own).
    codes = model.encode(torch.cat([driving, source] if by_source else [driving, source, neutral]))
    z_drv, z_src = codes[:b], codes[b : 2 * b]
    out = model.decode(source, z_drv - z_src)  # = model(source, driving, source)
    rec = multiscale_l1(out["prediction"], driving, model.cfg.scales, cache)
    flow = warp_pyramid_l1(source, out["flow"], driving, model.cfg.scales, model.cfg.align_corners, cache)
    # The classifier reads the code's direction only: the code's length is the flow's scale (it weighs
    # the motion basis), and a cross-entropy on the raw code would lengthen it to sharpen its logits,
    # exaggerating every motion (the first final run: transfer MMR 1.9 on held-out identities).
    z = z_drv - (z_src if by_source else codes[2 * b :])
    logits = model.expression_classifier(F.normalize(z, dim=1, eps=1e-6))
    labels = labels.to(logits.device)
    ce = F.cross_entropy(logits, labels)
    loss = rec + flow + model.cfg.expression_weight * ce
    accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
    return loss, {
        "reconstruction": float(rec.detach()),
        "flow_pyramid": float(flow.detach()),
        "expression_ce": float(ce.detach()),
        "expression_accuracy": float(accuracy),
    }
