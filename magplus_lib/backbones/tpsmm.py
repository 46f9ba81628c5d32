"""Thin-Plate Spline Motion Model (Zhao & Zhang, CVPR 2022): an independent re-implementation.

FOMM's keypoint family with a richer motion per keypoint group. Four parts:

- ``TPSKeypointDetector``: a ResNet-18 (torchvision, no pretrained weights) regresses ``num_tps`` groups
  of 5 keypoints in [-1, 1]; each group defines one thin-plate-spline transform between two frames.
- ``ThinPlateSpline``: the transform through 5 point pairs, $T(p) = A p + b + \\sum_i w_i U(\\lVert p -
  c_i\\rVert)$ with $U(r) = r^2 \\log r^2$, fitted per group by a regularised linear solve.
- ``TPSDenseMotion``: an hourglass sees the source, the source warped by each of the K TPS transforms
  and the keypoints' heatmaps; it predicts soft contribution maps (the dense motion is their weighted
  sum of the K transforms) and occlusion masks at every resolution of the generator.
- ``InpaintingNetwork``: encodes the source, warps every encoder level by the dense motion, masks it by
  that level's occlusion, decodes; the output blends the warped source image with the decoded image by
  the finest occlusion mask, so visible regions keep the source's pixels.

Training (``tpsmm_losses``): multi-scale L1 reconstruction (TPSMM's VGG perceptual loss needs downloaded
weights), keypoint equivariance under a random TPS warp, and TPSMM's warp loss, which compares the warped
(gradient-stopped) source features with the driving frame's own encoding, so the motion gets a signal at
every encoder level. Left out of the official recipe: the background-affine predictor (SynthME faces
are centred crops) and the dropout of TPS transforms in early epochs.

One change from the official model: the identity is not among the candidate motions (TPSMM offers it,
or the background affine, as candidate 0). At 64 px the regressed splines start noisier than standing
still; the contribution maps then gave the identity all the weight (0.99998 after 1500 steps), so the
reconstruction never reached the keypoints and nothing moved. Without it the motion must come from the
splines, which can still represent standing still (docs/lab-notes.md, 2026-12-07).

Not yet a study backbone: it enters the registry, the trainer and 03 only once it passes the competence
bar on the dev stream (benchmarks/backbone_dev_validation.py; docs/lab-notes.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from magplus_lib.backbones.fomm import (
    AntiAliasDownsample,
    ConvNormRelu,
    Hourglass,
    ResBlock2d,
    kp2gaussian,
    make_coordinate_grid,
    relative_keypoints,
)
from magplus_lib.harness.profiles import from_dict

POINTS_PER_TPS = 5


@dataclass
class TPSDenseMotionConfig:
    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01


@dataclass
class InpaintingConfig:
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 3


@dataclass
class TPSMMLossConfig:
    """Loss weights of the official vox config (perceptual 10 -> multi-scale L1 10, equivariance 10,
    warp 10)."""

    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.125])
    reconstruction: float = 10.0
    equivariance_value: float = 10.0
    warp: float = 10.0
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5


@dataclass
class TPSMMConfig:
    """Defaults are the official vox-256 configuration; profiles shrink it for CPU training."""

    num_tps: int = 10
    num_channels: int = 3
    image_size: int = 256
    align_corners: bool = True
    adapt_scale: bool = True  # relative motion scaled by the keypoints' convex-hull size, as TPSMM's demo
    batch_size: int = 8  # frames per forward pass at inference
    dense_motion: TPSDenseMotionConfig | dict = field(default_factory=TPSDenseMotionConfig)
    generator: InpaintingConfig | dict = field(default_factory=InpaintingConfig)
    loss: TPSMMLossConfig | dict = field(default_factory=TPSMMLossConfig)

    def __post_init__(self):
        if isinstance(self.dense_motion, dict):
            self.dense_motion = from_dict(
                TPSDenseMotionConfig, self.dense_motion, "backbones.tpsmm.dense_motion"
            )
        if isinstance(self.generator, dict):
            self.generator = from_dict(InpaintingConfig, self.generator, "backbones.tpsmm.generator")
        if isinstance(self.loss, dict):
            self.loss = from_dict(TPSMMLossConfig, self.loss, "backbones.tpsmm.loss")
        inv = 1.0 / self.dense_motion.scale_factor
        if abs(inv - round(inv)) > 1e-6 or round(inv) & (round(inv) - 1):
            raise ValueError(
                f"backbones.tpsmm.dense_motion.scale_factor = {self.dense_motion.scale_factor}: must be 1/2^n"
            )
        up = round(inv).bit_length() - 1
        if up > self.generator.num_down_blocks:
            raise ValueError(
                "backbones.tpsmm: the dense motion runs below the generator's coarsest level "
                f"(scale_factor {self.dense_motion.scale_factor}, "
                f"{self.generator.num_down_blocks} down blocks)"
            )
        if self.generator.num_down_blocks + 1 - up > self.dense_motion.num_blocks:
            raise ValueError("backbones.tpsmm: the dense-motion hourglass has too few levels for the masks")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------
# the thin-plate spline through keypoint pairs


class ThinPlateSpline:
    """For each batch item and group g, the TPS that maps `points_from` (B, G, 5, 2) onto `points_to`.

    `warp(coords (B, N, 2))` -> (B, G, N, 2). Fitted by solving the TPS system with 0.01 added to the
    diagonal: points that coincide (an untrained detector) then give a smooth, near-affine map instead
    of a singular system.
    """

    def __init__(self, points_from: torch.Tensor, points_to: torch.Tensor, regulariser: float = 0.01):
        b, g, n, _ = points_from.shape
        dtype, device = points_from.dtype, points_from.device
        kernel = self._radial(((points_from[:, :, :, None] - points_from[:, :, None, :]) ** 2).sum(-1))
        homog = torch.cat([points_from, torch.ones(b, g, n, 1, dtype=dtype, device=device)], dim=-1)
        top = torch.cat([kernel, homog], dim=-1)  # (B, G, n, n + 3)
        bottom = torch.cat([homog.transpose(-1, -2), torch.zeros(b, g, 3, 3, dtype=dtype, device=device)], -1)
        system = torch.cat([top, bottom], dim=-2)
        system = system + regulariser * torch.eye(n + 3, dtype=dtype, device=device)
        rhs = torch.cat([points_to, torch.zeros(b, g, 3, 2, dtype=dtype, device=device)], dim=-2)
        solution = torch.linalg.solve(system, rhs)  # (B, G, n + 3, 2)
        self.control_points = points_from
        self.radial_weights = solution[:, :, :n]  # (B, G, n, 2)
        self.affine = solution[:, :, n:]  # (B, G, 3, 2): rows x, y, 1

    @staticmethod
    def _radial(squared_distance: torch.Tensor) -> torch.Tensor:
        return squared_distance * torch.log(squared_distance + 1e-9)

    def warp(self, coords: torch.Tensor) -> torch.Tensor:
        affine = self.affine
        out = torch.einsum("bnj,bgjk->bgnk", coords, affine[:, :, :2]) + affine[:, :, None, 2]
        sq = ((coords[:, None, :, None, :] - self.control_points[:, :, None, :, :]) ** 2).sum(-1)
        return out + torch.einsum("bgnp,bgpk->bgnk", self._radial(sq), self.radial_weights)


# ----------------------------------------------------------------------------------------------------
# the networks


class TPSKeypointDetector(nn.Module):
    """ResNet-18 -> num_tps x 5 keypoints, sigmoid-mapped into [-1, 1] (x then y)."""

    def __init__(self, num_tps: int, num_channels: int = 3):
        super().__init__()
        self.num_points = num_tps * POINTS_PER_TPS
        self.encoder = torchvision.models.resnet18(weights=None, num_classes=2 * self.num_points)
        if num_channels != 3:
            self.encoder.conv1 = nn.Conv2d(num_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        value = torch.sigmoid(self.encoder(image)) * 2 - 1
        return {"value": value.view(image.shape[0], self.num_points, 2)}


def _hourglass_levels(hourglass: Hourglass, x: torch.Tensor) -> list[torch.Tensor]:
    """Every decoder level of `hourglass` (coarsest first), not only its last: the occlusion masks of
    the coarser generator levels are read from them."""
    feats = hourglass.encoder(x)
    out, levels = feats.pop(), []
    for block in hourglass.decoder.up_blocks:
        out = block(out)
        skip = feats.pop()
        out = torch.cat([out, skip], dim=1)
        levels.append(out)
    return levels


class TPSDenseMotion(nn.Module):
    def __init__(
        self,
        cfg: TPSDenseMotionConfig,
        num_tps: int,
        num_channels: int,
        num_masks: int,
        align_corners: bool,
    ):
        super().__init__()
        self.num_tps = num_tps
        self.kp_variance = cfg.kp_variance
        self.align_corners = align_corners
        in_features = num_channels * (num_tps + 1) + num_tps * POINTS_PER_TPS
        self.hourglass = Hourglass(cfg.block_expansion, in_features, cfg.num_blocks, cfg.max_features)
        level_channels = [
            2 * min(cfg.max_features, cfg.block_expansion * 2**i) for i in reversed(range(1, cfg.num_blocks))
        ] + [self.hourglass.out_filters]
        self.maps = nn.Conv2d(level_channels[-1], num_tps, kernel_size=7, padding=3)
        self.down = AntiAliasDownsample(num_channels, cfg.scale_factor) if cfg.scale_factor != 1 else None
        # masks at the generator's levels; those finer than the dense motion come from up-sampling blocks
        self.num_up = round(1 / cfg.scale_factor).bit_length() - 1
        from_levels = num_masks - self.num_up
        self.mask_levels = list(range(len(level_channels) - from_levels, len(level_channels)))
        self.occlusion = nn.ModuleList(
            [nn.Conv2d(level_channels[i], 1, kernel_size=7, padding=3) for i in self.mask_levels]
        )
        width = level_channels[-1]
        self.up = nn.ModuleList()
        for _ in range(self.num_up):
            self.up.append(ConvNormRelu(width, width // 2, mode="up"))
            self.occlusion.append(nn.Conv2d(width // 2, 1, kernel_size=7, padding=3))
            width //= 2

    def transformations(self, h: int, w: int, kp_driving, kp_source) -> torch.Tensor:
        """(B, K, H, W, 2): where each driving-frame pixel comes from in the source under each TPS
        transform (driving keypoints -> source keypoints)."""
        value_d, value_s = kp_driving["value"], kp_source["value"]
        b = value_d.shape[0]
        tps = ThinPlateSpline(
            value_d.view(b, self.num_tps, POINTS_PER_TPS, 2), value_s.view(b, self.num_tps, POINTS_PER_TPS, 2)
        )
        grid = make_coordinate_grid(h, w, device=value_d.device, dtype=value_d.dtype)
        return tps.warp(grid.view(1, -1, 2).expand(b, -1, -1)).view(b, self.num_tps, h, w, 2)

    def forward(self, source_image, kp_driving, kp_source) -> dict[str, Any]:
        src = self.down(source_image) if self.down is not None else source_image
        b, c, h, w = src.shape
        heat = kp2gaussian(kp_driving["value"], (h, w), self.kp_variance) - kp2gaussian(
            kp_source["value"], (h, w), self.kp_variance
        )
        motions = self.transformations(h, w, kp_driving, kp_source)
        k = self.num_tps
        src_rep = src[:, None].expand(b, k, c, h, w).reshape(b * k, c, h, w)
        deformed = F.grid_sample(
            src_rep, motions.reshape(b * k, h, w, 2), align_corners=self.align_corners
        ).view(b, k, c, h, w)
        # the hourglass also sees the source as it is; the motion is a blend of the splines alone
        net_in = torch.cat([heat, src, deformed.view(b, -1, h, w)], dim=1)
        levels = _hourglass_levels(self.hourglass, net_in)
        contribution = F.softmax(self.maps(levels[-1]), dim=1)  # (B, K, H, W)
        deformation = (motions * contribution[..., None]).sum(dim=1)
        masks = [torch.sigmoid(conv(levels[i])) for conv, i in zip(self.occlusion, self.mask_levels)]
        x = levels[-1]
        for block, conv in zip(self.up, list(self.occlusion)[len(self.mask_levels) :]):
            x = block(x)
            masks.append(torch.sigmoid(conv(x)))
        return {
            "contribution_maps": contribution,
            "deformed_source": deformed,
            "deformation": deformation,
            "occlusion_map": masks,  # coarsest first; the last one is at the image's resolution
        }


class InpaintingNetwork(nn.Module):
    def __init__(self, cfg: InpaintingConfig, num_channels: int, align_corners: bool):
        super().__init__()
        self.align_corners = align_corners
        be, mf, n = cfg.block_expansion, cfg.max_features, cfg.num_down_blocks
        self.first = ConvNormRelu(num_channels, be, kernel=7, padding=3)
        self.down_blocks = nn.ModuleList(
            [ConvNormRelu(min(mf, be * 2**i), min(mf, be * 2 ** (i + 1)), mode="down") for i in range(n)]
        )
        self.up_blocks = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i in range(n):
            cin = min(mf, be * 2 ** (n - i))
            cin = cin if i == 0 else 2 * cin  # below the coarsest level the skip is concatenated
            cout = min(mf, be * 2 ** (n - i - 1))
            self.resblocks.append(nn.Sequential(ResBlock2d(cin), ResBlock2d(cin)))
            self.up_blocks.append(ConvNormRelu(cin, cout, mode="up"))
        self.final = nn.Conv2d(be, num_channels, kernel_size=7, padding=3)

    def _warp(self, x: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != deformation.shape[1:3]:
            d = F.interpolate(
                deformation.permute(0, 3, 1, 2),
                size=x.shape[-2:],
                mode="bilinear",
                align_corners=self.align_corners,
            )
            deformation = d.permute(0, 2, 3, 1)
        return F.grid_sample(x, deformation, align_corners=self.align_corners)

    @staticmethod
    def _occlude(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if mask.shape[-2:] != x.shape[-2:]:
            mask = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return x * mask

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.first(image)]
        for block in self.down_blocks:
            feats.append(block(feats[-1]))
        return feats  # finest first

    def forward(self, source_image: torch.Tensor, motion: dict[str, Any]) -> dict[str, Any]:
        feats = self.encode(source_image)
        masks, deformation = motion["occlusion_map"], motion["deformation"]
        # the warp loss's features (training only): the source encoding warped and masked with the
        # gradient stopped at the encoding and at the masks, so that loss trains the deformation only
        # (coarsest level first). A live mask would let the loss lower the masks wherever the warped
        # features miss, shifting the output from the warped source to the decoder.
        warped_detached = (
            [
                self._occlude(self._warp(f.detach(), deformation), m.detach())
                for f, m in zip(reversed(feats), masks)
            ]
            if self.training
            else []
        )
        out = self._occlude(self._warp(feats[-1], deformation), masks[0])
        n = len(self.down_blocks)
        for i in range(n):
            out = self.up_blocks[i](self.resblocks[i](out))
            skip = self._occlude(self._warp(feats[-(i + 2)], deformation), masks[i + 1])
            if i < n - 1:
                out = torch.cat([out, skip], dim=1)
        last = masks[-1]
        out = out * (1 - last) + skip
        decoded = torch.sigmoid(self.final(out))
        deformed = self._warp(source_image, deformation)
        return {
            "prediction": last * deformed + (1 - last) * decoded,
            "deformed": deformed,
            "warped_encoder_maps": warped_detached,
        }


class TPSMMGenerator(nn.Module):
    """Dense motion + inpainting, called like FOMM's generator: (source, kp_driving=, kp_source=)."""

    def __init__(self, cfg: TPSMMConfig):
        super().__init__()
        num_masks = cfg.generator.num_down_blocks + 1
        self.dense_motion_network = TPSDenseMotion(
            cfg.dense_motion, cfg.num_tps, cfg.num_channels, num_masks, cfg.align_corners
        )
        self.inpainting = InpaintingNetwork(cfg.generator, cfg.num_channels, cfg.align_corners)

    def forward(self, source_image, kp_driving, kp_source) -> dict[str, Any]:
        motion = self.dense_motion_network(source_image, kp_driving, kp_source)
        out = self.inpainting(source_image, motion)
        out.update({k: motion[k] for k in ("contribution_maps", "deformation", "occlusion_map")})
        return out


class TPSMM(nn.Module):
    """Keypoint detector + generator; relative motion at inference, as FOMM."""

    def __init__(self, cfg: TPSMMConfig | None = None):
        super().__init__()
        self.cfg = cfg or TPSMMConfig()
        self.kp_detector = TPSKeypointDetector(self.cfg.num_tps, self.cfg.num_channels)
        self.generator = TPSMMGenerator(self.cfg)

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict[str, Any]:
        kp_source, kp_driving = self.kp_detector(source), self.kp_detector(driving)
        out = self.generator(source, kp_driving=kp_driving, kp_source=kp_source)
        out["kp_source"], out["kp_driving"] = kp_source, kp_driving
        return out

    @torch.no_grad()
    def animate(
        self, source: torch.Tensor, driving: torch.Tensor, batch_size: int | None = None
    ) -> torch.Tensor:
        """source (1, 3, H, W), driving (T, 3, H, W) at the native size -> (T, 3, H, W): the source's
        keypoints moved by the driver's keypoint motion since its frame 0."""
        bs = batch_size or self.cfg.batch_size
        kp_source = self.kp_detector(source)
        kp_initial = self.kp_detector(driving[:1])
        frames = []
        for start in range(0, driving.shape[0], bs):
            chunk = driving[start : start + bs]
            kp = relative_keypoints(
                kp_source, self.kp_detector(chunk), kp_initial, adapt_scale=self.cfg.adapt_scale
            )
            n = chunk.shape[0]
            kp_src = {k: v.expand(n, *v.shape[1:]) for k, v in kp_source.items()}
            frames.append(
                self.generator(source.expand(n, -1, -1, -1), kp_driving=kp, kp_source=kp_src)["prediction"]
            )
        return torch.cat(frames, dim=0)


def tpsmm_losses(model: TPSMM, source: torch.Tensor, driving: torch.Tensor, generator=None, cache=None):
    """TPSMM's objective on (source, driving) frame pairs of one clip; returns (total, {name: value})."""
    from magplus_lib.backbones.fomm_losses import RandomTPS, multiscale_l1

    lc = model.cfg.loss
    out = model(source, driving)
    losses = {
        "reconstruction": lc.reconstruction * multiscale_l1(out["prediction"], driving, lc.scales, cache)
    }
    if lc.equivariance_value:
        tps = RandomTPS(
            driving.shape[0], lc.sigma_affine, lc.sigma_tps, lc.points_tps, generator, driving.device
        )
        warped = tps.transform_frame(driving, model.cfg.align_corners)
        back = tps.warp_coordinates(model.kp_detector(warped)["value"])
        losses["equivariance_value"] = (
            lc.equivariance_value * (out["kp_driving"]["value"] - back).abs().mean()
        )
    if lc.warp:
        with torch.no_grad():
            target = model.generator.inpainting.encode(driving)
        masks = [m.detach() for m in out["occlusion_map"]]
        target = [InpaintingNetwork._occlude(f, m) for f, m in zip(reversed(target), masks)]
        losses["warp"] = lc.warp * sum(
            (t - w).abs().mean() for t, w in zip(target, out["warped_encoder_maps"])
        )
    total = sum(losses.values())
    return total, {k: float(v.detach()) for k, v in losses.items()}
