"""The `landmark` backbone: a face-animation model driven by a landmark tracker (MetaPortrait's family).

MetaPortrait drives its warping network with dense facial landmarks from a separate tracker, given to
the network as landmark *images*. This module is the embedded analogue, with the same three parts:

- ``LandmarkTracker``: a CNN that regresses K facial landmarks (soft-argmax over K heatmaps) from one
  frame, trained with supervision (SynthME renders its faces from known landmarks, see
  ``synthme.landmark_tracks``). Like a real tracker it sees every frame on its own, so its error on
  consecutive frames is not tied to the motion between them.
- ``draw_landmarks``: landmark images: a filled square of side ``2 * marker_radius + 1`` pixels per
  landmark, one channel per landmark, centred on the landmark rounded to the nearest pixel, the way
  landmark images are plotted with integer-coordinate drawing calls (``cv2.circle``). Not
  differentiable, and not needed to be: the generator's input carries no gradient to the tracker.
- ``LandmarkGenerator``: an encoder-decoder that takes the source frame, its landmark image and the
  driving landmark image, and predicts a dense backward flow, a blending mask and a synthesised colour
  image: ``out = m * warp(source, flow) + (1 - m) * colour`` (as the `latent` family does).

Relative motion as in FOMM / MetaPortrait: the driving landmarks are ``l_src + (l_t - l_0)``, driving
frame 0 being the neutral reference. Training is self-reconstruction on macro clips (source = frame s,
target = frame t of the same clip) plus the tracker's supervised loss; the generator is driven by the
tracker's (detached) estimates, so it learns from the landmarks it will see at inference.

Nothing here refers to micro-expressions or to a motion gain: how this macro-trained model treats
micro motion is measured by 03_backbones (MMR), not assumed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from magplus_lib.backbones.fomm_losses import multiscale_l1
from magplus_lib.backbones.latent import conv_block, warp_blend, warp_blend_head, warp_pyramid_l1


@dataclass
class LandmarkConfig:
    num_landmarks: int = 22  # SynthME's annotated landmarks (synthme.LANDMARK_NAMES)
    width: int = 16  # channels of the first stage (doubled at each of the two downsamplings)
    num_res_blocks: int = 2
    marker_radius: int = 1  # landmark images: squares of side 2 r + 1 pixels
    marker_flow_sigma: float = 0.08  # width of `marker_flow`'s Gaussians, a fraction of the image width
    tracker_weight: float = 1.0  # weight of the tracker's L1 (pixels) next to the reconstruction
    align_corners: bool = True
    batch_size: int = 8  # frames per forward pass at inference
    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.125])  # reconstruction pyramid

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LandmarkTracker(nn.Module):
    """Frame (B, 3, H, W) -> landmarks (B, K, 2) in pixels (x, y; pixel centres at integers).

    K heatmaps at 1/4 resolution, a spatial softmax each, and their expected coordinates (soft-argmax),
    so estimates are continuous and sub-pixel.
    """

    def __init__(self, width: int, num_landmarks: int):
        super().__init__()
        self.net = nn.Sequential(
            conv_block(3, width),
            conv_block(width, 2 * width, 2),
            conv_block(2 * width, 4 * width, 2),
            conv_block(4 * width, 4 * width),
            conv_block(4 * width, 4 * width),
        )
        self.head = nn.Conv2d(4 * width, num_landmarks, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        h, w = frames.shape[-2:]
        logits = self.head(self.net(frames))
        b, k, hh, ww = logits.shape
        prob = logits.flatten(2).softmax(dim=-1).view(b, k, hh, ww)
        # Heatmap cell centres mapped back to input pixel coordinates.
        xs = (torch.arange(ww, device=frames.device, dtype=frames.dtype) + 0.5) * (w / ww) - 0.5
        ys = (torch.arange(hh, device=frames.device, dtype=frames.dtype) + 0.5) * (h / hh) - 0.5
        x = (prob.sum(dim=2) * xs).sum(dim=-1)
        y = (prob.sum(dim=3) * ys).sum(dim=-1)
        return torch.stack([x, y], dim=-1)


def draw_landmarks(points: torch.Tensor, size: tuple[int, int], radius: int = 1) -> torch.Tensor:
    """Landmark images (B, K, H, W): channel k is 1 on the (2r+1)-pixel square centred on landmark k
    rounded to the nearest pixel, 0 elsewhere (points (B, K, 2) in pixels, x then y)."""
    h, w = size
    centre = torch.round(points.detach())
    xs = torch.arange(w, device=points.device, dtype=points.dtype)
    ys = torch.arange(h, device=points.device, dtype=points.dtype)
    in_x = (xs.view(1, 1, w) - centre[..., 0:1]).abs() <= radius  # (B, K, W)
    in_y = (ys.view(1, 1, h) - centre[..., 1:2]).abs() <= radius  # (B, K, H)
    return (in_y[..., :, None] & in_x[..., None, :]).to(points.dtype)


def marker_flow(
    source_points: torch.Tensor,
    driving_points: torch.Tensor,
    size: tuple[int, int],
    sigma: float,
    align_corners: bool = True,
) -> torch.Tensor:
    """The backward flow the landmark images imply, (B, H, W, 2) in normalised coordinates.

    Each driving marker (landmark rounded to the nearest pixel, as `draw_landmarks` draws it) pulls the
    pixels around it from its source marker's position: Gaussian weights of width `sigma` pixels around
    the driving markers, normalised together with a background weight (the value at 2 sigma) so the
    flow fades to zero away from the face's landmarks. It carries no more than the two landmark images:
    the generator only refines it."""
    h, w = size
    src, drv = torch.round(source_points.detach()), torch.round(driving_points.detach())
    ys, xs = torch.meshgrid(
        torch.arange(h, device=src.device, dtype=src.dtype),
        torch.arange(w, device=src.device, dtype=src.dtype),
        indexing="ij",
    )
    pix = torch.stack([xs, ys], dim=-1).view(1, 1, h * w, 2)
    d2 = ((pix - drv[:, :, None, :]) ** 2).sum(-1)  # (B, K, HW)
    g = torch.exp(-d2 / (2 * sigma**2))
    weights = g / (g.sum(dim=1, keepdim=True) + torch.exp(torch.tensor(-2.0, dtype=src.dtype)))
    offset_px = torch.einsum("bkp,bkc->bpc", weights, src - drv)  # source position - output position
    scale = torch.tensor(
        [2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)] if align_corners else [2.0 / w, 2.0 / h],
        dtype=src.dtype,
        device=src.device,
    )
    return (offset_px * scale).view(-1, h, w, 2)


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(1, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(1, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LandmarkGenerator(nn.Module):
    """(source, source landmark image, driving landmark image) -> warped-and-blended frame."""

    def __init__(self, width: int, num_landmarks: int, num_res_blocks: int, align_corners: bool):
        super().__init__()
        w = width
        self.align_corners = align_corners
        self.down1 = conv_block(3 + 2 * num_landmarks + 2, w)
        self.down2 = conv_block(w, 2 * w, 2)
        self.down3 = conv_block(2 * w, 4 * w, 2)
        self.blocks = nn.Sequential(*[_ResBlock(4 * w) for _ in range(num_res_blocks)])
        self.up2 = conv_block(4 * w + 2 * w, 2 * w)
        self.up1 = conv_block(2 * w + w, w)
        self.head = warp_blend_head(w + 3)

    def forward(
        self, source: torch.Tensor, source_map: torch.Tensor, driving_map: torch.Tensor, prior: torch.Tensor
    ) -> dict:
        """`prior`: `marker_flow` (B, H, W, 2); the predicted flow is added to it."""
        h, w = source.shape[-2:]
        f1 = self.down1(torch.cat([source, source_map, driving_map, prior.permute(0, 3, 1, 2)], dim=1))
        f2 = self.down2(f1)
        f3 = self.blocks(self.down3(f2))
        u2 = self.up2(torch.cat([F.interpolate(f3, size=f2.shape[-2:], mode="bilinear"), f2], dim=1))
        u1 = self.up1(torch.cat([F.interpolate(u2, size=(h, w), mode="bilinear"), f1], dim=1))
        return warp_blend(self.head(torch.cat([u1, source], dim=1)), source, self.align_corners, prior)


class LandmarkAnimator(nn.Module):
    def __init__(self, cfg: LandmarkConfig | None = None):
        super().__init__()
        self.cfg = cfg or LandmarkConfig()
        c = self.cfg
        self.tracker = LandmarkTracker(c.width, c.num_landmarks)
        self.generator = LandmarkGenerator(c.width, c.num_landmarks, c.num_res_blocks, c.align_corners)

    def track(self, frames: torch.Tensor) -> torch.Tensor:
        return self.tracker(frames)

    def generate(
        self, source: torch.Tensor, source_landmarks: torch.Tensor, driving_landmarks: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        size = tuple(source.shape[-2:])
        r = self.cfg.marker_radius
        prior = marker_flow(
            source_landmarks,
            driving_landmarks,
            size,
            self.cfg.marker_flow_sigma * size[-1],
            self.cfg.align_corners,
        )
        return self.generator(
            source,
            draw_landmarks(source_landmarks, size, r),
            draw_landmarks(driving_landmarks, size, r),
            prior,
        )

    def forward(self, source: torch.Tensor, driving: torch.Tensor, reference: torch.Tensor) -> dict:
        """Animate `source` by the landmark motion reference -> driving (all (B, 3, H, W))."""
        lm = self.track(torch.cat([source, driving, reference])).detach()
        l_src, l_drv, l_ref = lm.chunk(3)
        return self.generate(source, l_src, l_src + (l_drv - l_ref))

    @torch.no_grad()
    def animate(
        self, source: torch.Tensor, driving: torch.Tensor, batch_size: int | None = None
    ) -> torch.Tensor:
        bs = batch_size or self.cfg.batch_size
        l_src = self.track(source[:1])
        l_ref = self.track(driving[:1])
        frames = []
        for start in range(0, driving.shape[0], bs):
            chunk = driving[start : start + bs]
            l_drv = l_src + (self.track(chunk) - l_ref)
            n = chunk.shape[0]
            out = self.generate(source.expand(n, -1, -1, -1), l_src.expand(n, -1, -1), l_drv)
            frames.append(out["prediction"])
        return torch.cat(frames, dim=0)


def landmark_losses(
    model: LandmarkAnimator,
    source: torch.Tensor,
    driving: torch.Tensor,
    generator=None,
    cache=None,
    source_landmarks: torch.Tensor | None = None,
    driving_landmarks: torch.Tensor | None = None,
):
    """Self-reconstruction of `driving` from `source` (multi-scale L1), the generator driven by the
    tracker's detached estimates, + tracker_weight * the tracker's mean L1 error (pixels) against the
    annotated landmarks (B, K, 2) of both frames."""
    if source_landmarks is None or driving_landmarks is None:
        raise ValueError("landmark_losses: the annotated landmarks of both frames of each pair are required")
    b = source.shape[0]
    est = model.track(torch.cat([source, driving]))
    truth = torch.cat([source_landmarks, driving_landmarks]).to(est)
    if truth.shape != est.shape:
        raise ValueError(f"landmark_losses: landmarks {tuple(truth.shape)}, tracker gives {tuple(est.shape)}")
    track = (est - truth).abs().mean()
    l_src, l_drv = est.detach()[:b], est.detach()[b:]
    out = model.generate(source, l_src, l_drv)  # reference = source: relative landmarks = l_drv
    rec = multiscale_l1(out["prediction"], driving, model.cfg.scales, cache)
    flow = warp_pyramid_l1(source, out["flow"], driving, model.cfg.scales, model.cfg.align_corners, cache)
    loss = rec + flow + model.cfg.tracker_weight * track
    return loss, {
        "reconstruction": float(rec.detach()),
        "flow_pyramid": float(flow.detach()),
        "tracker_l1_px": float(track.detach()),
    }
