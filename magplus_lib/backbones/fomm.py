"""First Order Motion Model (Siarohin et al., NeurIPS 2019): an independent re-implementation.

Three parts, named so that ``FOMM(vox256_config()).state_dict()`` has exactly the names and shapes of
the official ``vox-cpk.pth.tar`` (``generator.*`` and ``kp_detector.*``; see
``reference/fomm_vox256_state_dict.txt``), which therefore loads with ``weights_only=True``:

- ``KPDetector``: an hourglass on a 1/4-scale (vox) copy of the frame predicts K heatmaps; a keypoint is
  the heatmap-weighted mean position and its 2x2 Jacobian the heatmap-weighted mean of 4 extra maps.
- ``DenseMotionNetwork``: from K local affine motions (keypoint + Jacobian) plus the identity, an
  hourglass predicts soft masks combining them into one dense backward deformation, and an occlusion map.
- ``OcclusionAwareGenerator``: encodes the source, warps the features with the deformation, multiplies
  by the occlusion map, decodes with a sigmoid.

Coordinates are normalised to [-1, 1] (x then y) on grids whose end points are pixel centres, so the
sampling convention is ``align_corners=True`` (the official weights were trained on torch 1.0, whose
grid_sample behaved that way); it is a config option.

Training follows the paper: self-reconstruction of a driving frame from a source frame of the same
clip, with a multi-scale L1 reconstruction loss (the official VGG perceptual loss needs downloaded
weights, which this study cannot use) and equivariance losses on keypoints and Jacobians under random
thin-plate-spline warps.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from magplus_lib.harness.checkpoints import CheckpointError, load_state_dict_checked
from magplus_lib.harness.profiles import from_dict

# ----------------------------------------------------------------------------------------------------
# configuration


@dataclass
class KPDetectorConfig:
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    temperature: float = 0.1
    scale_factor: float = 0.25
    pad: int = 0  # padding of the 7x7 keypoint / Jacobian heads (0 in the official configs)


@dataclass
class DenseMotionConfig:
    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01


@dataclass
class GeneratorConfig:
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    # The Thin-Plate-Spline Motion Model's output (Zhao & Zhang, CVPR 2022): the occlusion map, at full
    # resolution, blends the deformed source image with the decoded image, so visible regions keep the
    # source's pixels and the decoder only inpaints what the motion uncovers. False: FOMM's output (the
    # decoded image alone), as the official vox-256 model has it.
    blend_deformed_source: bool = False


@dataclass
class FOMMLossConfig:
    """Loss weights; the official vox config weights perceptual and both equivariance terms by 10."""

    scales: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.125])
    reconstruction: float = 10.0
    equivariance_value: float = 10.0
    equivariance_jacobian: float = 10.0
    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5


@dataclass
class FOMMConfig:
    """Defaults are the official vox-256 configuration; profiles shrink it for CPU training."""

    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    image_size: int = 256  # native resolution of the official model (ours record theirs in the checkpoint)
    align_corners: bool = True
    relative: bool = True  # relative keypoint motion (driving frame 0 = neutral reference)
    adapt_scale: bool = True  # convex-hull movement scale
    checkpoint: str | None = None  # official vox-cpk.pth.tar; None -> our trained safetensors checkpoint
    batch_size: int = 8  # frames per forward pass at inference
    kp_detector: KPDetectorConfig | dict = field(default_factory=KPDetectorConfig)
    dense_motion: DenseMotionConfig | dict = field(default_factory=DenseMotionConfig)
    generator: GeneratorConfig | dict = field(default_factory=GeneratorConfig)
    loss: FOMMLossConfig | dict = field(default_factory=FOMMLossConfig)

    def __post_init__(self):
        if isinstance(self.kp_detector, dict):
            self.kp_detector = from_dict(KPDetectorConfig, self.kp_detector, "backbones.fomm.kp_detector")
        if isinstance(self.dense_motion, dict):
            self.dense_motion = from_dict(DenseMotionConfig, self.dense_motion, "backbones.fomm.dense_motion")
        if isinstance(self.generator, dict):
            self.generator = from_dict(GeneratorConfig, self.generator, "backbones.fomm.generator")
        if isinstance(self.loss, dict):
            self.loss = from_dict(FOMMLossConfig, self.loss, "backbones.fomm.loss")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def vox256_config() -> FOMMConfig:
    """The official `vox-256.yaml` model configuration."""
    return FOMMConfig()


# ----------------------------------------------------------------------------------------------------
# geometry helpers


def make_coordinate_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) coordinates in [-1, 1], channel 0 = x, 1 = y; the ends are the corner pixel centres."""
    xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype) if w > 1 else torch.zeros(1, device=device)
    ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype) if h > 1 else torch.zeros(1, device=device)
    return torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)], dim=-1)


def kp2gaussian(kp_value: torch.Tensor, spatial_size: tuple[int, int], kp_variance: float) -> torch.Tensor:
    """(B, K, 2) keypoints -> (B, K, H, W) unnormalised Gaussians exp(-|p - kp|^2 / (2 var))."""
    grid = make_coordinate_grid(*spatial_size, device=kp_value.device, dtype=kp_value.dtype)
    diff = grid[None, None] - kp_value[:, :, None, None, :]
    return torch.exp(-0.5 * (diff**2).sum(-1) / kp_variance)


def convex_hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of 2-D points (monotone chain); 0 for degenerate sets."""
    pts = sorted({(float(x), float(y)) for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2)})
    if len(pts) < 3:
        return 0.0

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    area = 0.0
    for i in range(len(hull)):
        x0, y0 = hull[i]
        x1, y1 = hull[(i + 1) % len(hull)]
        area += x0 * y1 - x1 * y0
    return abs(area) / 2.0


def relative_keypoints(
    kp_source: dict[str, torch.Tensor],
    kp_driving: dict[str, torch.Tensor],
    kp_driving_initial: dict[str, torch.Tensor],
    adapt_scale: bool = True,
    relative_jacobian: bool = True,
) -> dict[str, torch.Tensor]:
    """Transfer the driver's motion since its frame 0 onto the source keypoints (FOMM's relative mode).

    value = kp_source + (kp_driving - kp_driving_initial) * s, s = sqrt(hull area of the source
    keypoints / hull area of the initial driving keypoints); jacobian = J_d @ inv(J_d0) @ J_s.
    `kp_source` and `kp_driving_initial` hold one frame (batch 1) broadcast over the driving batch.
    """
    scale = 1.0
    if adapt_scale:
        src_area = convex_hull_area(kp_source["value"][0].detach().cpu().numpy())
        drv_area = convex_hull_area(kp_driving_initial["value"][0].detach().cpu().numpy())
        # A degenerate (collinear) hull, e.g. from an untrained detector, carries no scale information.
        if src_area > 1e-12 and drv_area > 1e-12:
            scale = math.sqrt(src_area) / math.sqrt(drv_area)
    value = kp_source["value"] + (kp_driving["value"] - kp_driving_initial["value"]) * scale
    out = {"value": value}
    if "jacobian" in kp_driving and relative_jacobian:
        jac_diff = torch.matmul(kp_driving["jacobian"], torch.inverse(kp_driving_initial["jacobian"]))
        out["jacobian"] = torch.matmul(jac_diff, kp_source["jacobian"])
    elif "jacobian" in kp_driving:
        out["jacobian"] = kp_driving["jacobian"]
    return out


# ----------------------------------------------------------------------------------------------------
# building blocks (names of submodules fixed by the official checkpoint)


class AntiAliasDownsample(nn.Module):
    """Gaussian blur (sigma = (1/scale - 1) / 2) then subsampling by the integer 1/scale.

    The kernel is a persistent buffer called `weight`, as in the official checkpoint.
    """

    def __init__(self, channels: int, scale: float):
        super().__init__()
        inv = 1.0 / scale
        if abs(inv - round(inv)) > 1e-6:
            raise ValueError(f"AntiAliasDownsample: scale {scale} is not 1/integer")
        self.step = int(round(inv))
        sigma = (inv - 1.0) / 2.0
        ksize = 2 * round(sigma * 4) + 1
        self.pad_a = ksize // 2
        self.pad_b = self.pad_a - 1 if ksize % 2 == 0 else self.pad_a
        coords = torch.arange(ksize, dtype=torch.float32) - (ksize - 1) / 2.0
        g = torch.exp(-(coords**2) / (2 * sigma**2)) if sigma > 0 else (coords == 0).float()
        kernel = g[:, None] * g[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel[None, None].repeat(channels, 1, 1, 1))
        self.groups = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step == 1:
            return x
        x = F.pad(x, (self.pad_a, self.pad_b, self.pad_a, self.pad_b))
        x = F.conv2d(x, self.weight.to(x.dtype), groups=self.groups)
        return x[:, :, :: self.step, :: self.step]


class ConvNormRelu(nn.Module):
    """conv -> BatchNorm -> ReLU, optionally followed by 2x average pooling (encoder) or preceded by 2x
    nearest upsampling (decoder)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, padding: int = 1, mode: str = "same"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=kernel, padding=padding)
        self.norm = nn.BatchNorm2d(cout, affine=True)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = F.relu(self.norm(self.conv(x)))
        if self.mode == "down":
            x = F.avg_pool2d(x, kernel_size=2)
        return x


class ResBlock2d(nn.Module):
    """Pre-activation residual block: norm1 -> relu -> conv1 -> norm2 -> relu -> conv2, plus input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm2d(channels, affine=True)
        self.norm2 = nn.BatchNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        h = self.conv2(F.relu(self.norm2(h)))
        return x + h


class _Encoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            cin = in_features if i == 0 else min(max_features, block_expansion * 2**i)
            cout = min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(ConvNormRelu(cin, cout, mode="down"))
        self.down_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class _Decoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            # Every block but the deepest also receives the skip connection of its level.
            mult = 1 if i == num_blocks - 1 else 2
            cin = mult * min(max_features, block_expansion * 2 ** (i + 1))
            cout = min(max_features, block_expansion * 2**i)
            blocks.append(ConvNormRelu(cin, cout, mode="up"))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        feats = list(feats)
        out = feats.pop()
        for block in self.up_blocks:
            out = block(out)
            skip = feats.pop()
            if out.shape[-2:] != skip.shape[-2:]:  # odd sizes: match the skip's grid
                out = F.interpolate(out, size=skip.shape[-2:], mode="nearest")
            out = torch.cat([out, skip], dim=1)
        return out


class Hourglass(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int):
        super().__init__()
        self.encoder = _Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = _Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


# ----------------------------------------------------------------------------------------------------
# the three networks


class KPDetector(nn.Module):
    def __init__(self, cfg: KPDetectorConfig, num_kp: int, num_channels: int, estimate_jacobian: bool = True):
        super().__init__()
        self.num_kp = num_kp
        self.temperature = cfg.temperature
        self.predictor = Hourglass(cfg.block_expansion, num_channels, cfg.num_blocks, cfg.max_features)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=7, padding=cfg.pad)
        if estimate_jacobian:
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * num_kp, kernel_size=7, padding=cfg.pad)
            # Start every Jacobian at the identity so that early training sees plain translations.
            nn.init.zeros_(self.jacobian.weight)
            with torch.no_grad():
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(num_kp))
        else:
            self.jacobian = None
        if cfg.scale_factor != 1:
            self.down = AntiAliasDownsample(num_channels, cfg.scale_factor)
        else:
            self.down = None

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.down(image) if self.down is not None else image
        features = self.predictor(x)
        logits = self.kp(features)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
        grid = make_coordinate_grid(h, w, device=heatmap.device, dtype=heatmap.dtype)
        value = (heatmap[..., None] * grid[None, None]).sum(dim=(2, 3))
        out = {"value": value, "heatmap": heatmap}
        if self.jacobian is not None:
            jmap = self.jacobian(features).view(b, k, 4, h, w)
            jac = (heatmap[:, :, None] * jmap).sum(dim=(3, 4))
            out["jacobian"] = jac.view(b, k, 2, 2)
        return out


class DenseMotionNetwork(nn.Module):
    def __init__(
        self, cfg: DenseMotionConfig, num_kp: int, num_channels: int, occlusion: bool, align_corners: bool
    ):
        super().__init__()
        self.num_kp = num_kp
        self.kp_variance = cfg.kp_variance
        self.align_corners = align_corners
        in_features = (num_kp + 1) * (num_channels + 1)
        self.hourglass = Hourglass(cfg.block_expansion, in_features, cfg.num_blocks, cfg.max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion = (
            nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3) if occlusion else None
        )
        self.down = AntiAliasDownsample(num_channels, cfg.scale_factor) if cfg.scale_factor != 1 else None

    def sparse_motions(self, h, w, kp_driving, kp_source) -> torch.Tensor:
        """(B, K+1, H, W, 2): for each keypoint, where a driving-frame pixel comes from in the source
        under that keypoint's local affine motion; index 0 is the identity (background)."""
        grid = make_coordinate_grid(h, w, device=kp_source["value"].device, dtype=kp_source["value"].dtype)
        b = kp_source["value"].shape[0]
        rel = grid[None, None] - kp_driving["value"][:, :, None, None, :]  # (B, K, H, W, 2)
        if "jacobian" in kp_driving:
            affine = torch.matmul(
                kp_source["jacobian"], torch.inverse(kp_driving["jacobian"])
            )  # (B, K, 2, 2)
            rel = torch.einsum("bkij,bkhwj->bkhwi", affine, rel)
        to_source = rel + kp_source["value"][:, :, None, None, :]
        identity = grid[None, None].expand(b, 1, h, w, 2)
        return torch.cat([identity, to_source], dim=1)

    def forward(self, source_image, kp_driving, kp_source) -> dict[str, torch.Tensor]:
        src = self.down(source_image) if self.down is not None else source_image
        b, c, h, w = src.shape
        heat = kp2gaussian(kp_driving["value"], (h, w), self.kp_variance) - kp2gaussian(
            kp_source["value"], (h, w), self.kp_variance
        )
        heat = torch.cat([torch.zeros_like(heat[:, :1]), heat], dim=1)[:, :, None]  # (B, K+1, 1, H, W)
        motions = self.sparse_motions(h, w, kp_driving, kp_source)  # (B, K+1, H, W, 2)
        k1 = self.num_kp + 1
        src_rep = src[:, None].expand(b, k1, c, h, w).reshape(b * k1, c, h, w)
        deformed = F.grid_sample(
            src_rep, motions.reshape(b * k1, h, w, 2), align_corners=self.align_corners
        ).view(b, k1, c, h, w)
        net_in = torch.cat([heat, deformed], dim=2).view(b, -1, h, w)
        feats = self.hourglass(net_in)
        mask = F.softmax(self.mask(feats), dim=1)  # (B, K+1, H, W)
        deformation = (motions * mask[..., None]).sum(dim=1)  # (B, H, W, 2)
        out = {"mask": mask, "sparse_deformed": deformed, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(feats))
        return out


class OcclusionAwareGenerator(nn.Module):
    def __init__(
        self,
        cfg: GeneratorConfig,
        dense_cfg: DenseMotionConfig,
        num_kp: int,
        num_channels: int,
        align_corners: bool,
    ):
        super().__init__()
        self.align_corners = align_corners
        if cfg.blend_deformed_source and not cfg.estimate_occlusion_map:
            raise ValueError("fomm generator: blend_deformed_source needs estimate_occlusion_map")
        self.blend_deformed_source = cfg.blend_deformed_source
        self.dense_motion_network = DenseMotionNetwork(
            dense_cfg, num_kp, num_channels, cfg.estimate_occlusion_map, align_corners
        )
        be, mf = cfg.block_expansion, cfg.max_features
        self.first = ConvNormRelu(num_channels, be, kernel=7, padding=3)
        self.down_blocks = nn.ModuleList(
            [
                ConvNormRelu(min(mf, be * 2**i), min(mf, be * 2 ** (i + 1)), mode="down")
                for i in range(cfg.num_down_blocks)
            ]
        )
        n = cfg.num_down_blocks
        self.up_blocks = nn.ModuleList(
            [
                ConvNormRelu(min(mf, be * 2 ** (n - i)), min(mf, be * 2 ** (n - i - 1)), mode="up")
                for i in range(n)
            ]
        )
        self.bottleneck = nn.Sequential()
        width = min(mf, be * 2**n)
        for i in range(cfg.num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width))
        self.final = nn.Conv2d(be, num_channels, kernel_size=7, padding=3)

    def _warp(self, x: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != deformation.shape[1:3]:
            d = deformation.permute(0, 3, 1, 2)
            d = F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=self.align_corners)
            deformation = d.permute(0, 2, 3, 1)
        return F.grid_sample(x, deformation, align_corners=self.align_corners)

    def forward(self, source_image, kp_driving, kp_source) -> dict[str, torch.Tensor]:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        motion = self.dense_motion_network(source_image, kp_driving, kp_source)
        result = {"mask": motion["mask"], "sparse_deformed": motion["sparse_deformed"]}
        out = self._warp(out, motion["deformation"])
        if "occlusion_map" in motion:
            occ = motion["occlusion_map"]
            if occ.shape[-2:] != out.shape[-2:]:
                occ = F.interpolate(
                    occ, size=out.shape[-2:], mode="bilinear", align_corners=self.align_corners
                )
            out = out * occ
            result["occlusion_map"] = occ
        result["deformed"] = self._warp(source_image, motion["deformation"])
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        prediction = torch.sigmoid(self.final(out))
        if self.blend_deformed_source:
            occ = F.interpolate(
                motion["occlusion_map"],
                size=prediction.shape[-2:],
                mode="bilinear",
                align_corners=self.align_corners,
            )
            prediction = occ * result["deformed"] + (1 - occ) * prediction
        result["prediction"] = prediction
        return result


class FOMM(nn.Module):
    """Keypoint detector + generator; `state_dict()` keys are `kp_detector.*` and `generator.*`."""

    def __init__(self, cfg: FOMMConfig | None = None):
        super().__init__()
        self.cfg = cfg or vox256_config()
        c = self.cfg
        self.kp_detector = KPDetector(c.kp_detector, c.num_kp, c.num_channels, c.estimate_jacobian)
        self.generator = OcclusionAwareGenerator(
            c.generator, c.dense_motion, c.num_kp, c.num_channels, c.align_corners
        )

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict[str, torch.Tensor]:
        """Self-reconstruction: render `driving` from `source` using both frames' keypoints."""
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        out = self.generator(source, kp_driving=kp_driving, kp_source=kp_source)
        out["kp_source"], out["kp_driving"] = kp_source, kp_driving
        return out

    @torch.no_grad()
    def animate(
        self, source: torch.Tensor, driving: torch.Tensor, batch_size: int | None = None
    ) -> torch.Tensor:
        """source (1, 3, H, W), driving (T, 3, H, W) at the native size -> (T, 3, H, W), relative motion."""
        bs = batch_size or self.cfg.batch_size
        kp_source = self.kp_detector(source)
        kp_initial = self.kp_detector(driving[:1])
        frames = []
        for start in range(0, driving.shape[0], bs):
            chunk = driving[start : start + bs]
            kp_driving = self.kp_detector(chunk)
            if self.cfg.relative:
                kp_norm = relative_keypoints(
                    kp_source, kp_driving, kp_initial, adapt_scale=self.cfg.adapt_scale
                )
            else:
                kp_norm = kp_driving
            n = chunk.shape[0]
            kp_src_b = {k: v.expand(n, *v.shape[1:]) for k, v in kp_source.items()}
            out = self.generator(source.expand(n, -1, -1, -1), kp_driving=kp_norm, kp_source=kp_src_b)
            frames.append(out["prediction"])
        return torch.cat(frames, dim=0)


# ----------------------------------------------------------------------------------------------------
# official checkpoint


def load_official_fomm(path: str | os.PathLike, cfg: FOMMConfig | None = None, device="cpu") -> FOMM:
    """Load an official FOMM checkpoint (e.g. `vox-cpk.pth.tar`: a dict with `generator` and
    `kp_detector` state dicts) into our implementation, with `torch.load(weights_only=True)`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"FOMM checkpoint {path} does not exist (set FOMM_CHECKPOINT to vox-cpk.pth.tar)"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(
            f"{path}: cannot be read as a torch checkpoint with weights_only=True: {exc}"
        ) from exc
    if not isinstance(blob, dict) or not {"generator", "kp_detector"} <= set(blob):
        if isinstance(blob, dict):  # e.g. a RAFT state dict: hundreds of keys, name a few
            keys = sorted(map(str, blob))
            found = f"{len(keys)} keys, e.g. {keys[:4]}"
        else:
            found = type(blob).__name__
        raise CheckpointError(
            f"{path}: expected a dict with 'generator' and 'kp_detector' state dicts, found {found}"
        )
    model = FOMM(cfg or vox256_config())
    state = {}
    for part in ("kp_detector", "generator"):
        for name, tensor in blob[part].items():
            state[f"{part}.{name.removeprefix('module.')}"] = tensor
    load_state_dict_checked(model, state, str(path))
    return model.to(device).eval()
