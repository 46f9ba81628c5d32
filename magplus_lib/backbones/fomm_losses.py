"""FOMM's training objective (Siarohin et al., 2019): the multi-scale reconstruction loss, the equivariance
constraints on keypoints and their Jacobians under a random thin-plate-spline warp, and the study's
cross-identity term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from magplus_lib.backbones.fomm import FOMM, AntiAliasDownsample, make_coordinate_grid, relative_keypoints


class RandomTPS:
    """Random affine + thin-plate-spline warp of normalised coordinates (one per batch element), used
    for the equivariance constraints."""

    def __init__(
        self, batch: int, sigma_affine: float, sigma_tps: float, points_tps: int, generator=None, device=None
    ):
        noise = torch.randn(batch, 2, 3, generator=generator) * sigma_affine
        self.theta = (noise + torch.eye(2, 3)[None]).to(device)
        self.control_points = make_coordinate_grid(points_tps, points_tps).view(-1, 2).to(device)
        self.control_params = (torch.randn(batch, 1, points_tps**2, generator=generator) * sigma_tps).to(
            device
        )

    def warp_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (B, N, 2) -> (B, N, 2)."""
        theta = self.theta.to(coords.dtype)
        out = torch.einsum("bij,bnj->bni", theta[:, :, :2], coords) + theta[:, None, :, 2]
        dist = (coords[:, :, None, :] - self.control_points[None, None].to(coords.dtype)).abs().sum(-1)
        radial = dist**2 * torch.log(dist + 1e-6)  # (B, N, P)
        out = out + (radial * self.control_params.to(coords.dtype)).sum(-1, keepdim=True)
        return out

    def transform_frame(self, frame: torch.Tensor, align_corners: bool = True) -> torch.Tensor:
        b, _, h, w = frame.shape
        grid = (
            make_coordinate_grid(h, w, device=frame.device, dtype=frame.dtype)
            .view(1, -1, 2)
            .expand(b, -1, -1)
        )
        grid = self.warp_coordinates(grid).view(b, h, w, 2)
        return F.grid_sample(frame, grid, padding_mode="reflection", align_corners=align_corners)

    def jacobian(self, coords: torch.Tensor) -> torch.Tensor:
        """(B, N, 2, 2) derivative of warp_coordinates at `coords`."""
        with torch.enable_grad():
            c = coords.detach().requires_grad_(True) if not coords.requires_grad else coords
            warped = self.warp_coordinates(c)
            gx = torch.autograd.grad(warped[..., 0].sum(), c, create_graph=True)[0]
            gy = torch.autograd.grad(warped[..., 1].sum(), c, create_graph=True)[0]
        return torch.stack([gx, gy], dim=-2)


def image_pyramid(x: torch.Tensor, scales: list[float], downsamplers: dict) -> dict[float, torch.Tensor]:
    out = {}
    for s in scales:
        if s == 1:
            out[s] = x
        else:
            key = (x.shape[1], s)
            if key not in downsamplers:
                downsamplers[key] = AntiAliasDownsample(x.shape[1], s).to(x.device)
            out[s] = downsamplers[key](x)
    return out


def multiscale_l1(pred: torch.Tensor, target: torch.Tensor, scales: list[float], cache: dict | None = None):
    """Sum over pyramid levels of the mean absolute error."""
    cache = {} if cache is None else cache
    pp, tp = image_pyramid(pred, scales, cache), image_pyramid(target, scales, cache)
    return sum((pp[s] - tp[s]).abs().mean() for s in scales)


def fomm_losses(model: FOMM, source: torch.Tensor, driving: torch.Tensor, generator=None, cache=None):
    """FOMM's training objective on a batch of (source, driving) frame pairs from the same clips.

    Returns (total, {name: value}); reconstruction = multi-scale L1 (replacing VGG), plus the keypoint and
    Jacobian equivariance losses under a random TPS warp of the driving frame.
    """
    lc = model.cfg.loss
    out = model(source, driving)
    losses = {
        "reconstruction": lc.reconstruction * multiscale_l1(out["prediction"], driving, lc.scales, cache)
    }
    if lc.equivariance_value or lc.equivariance_jacobian:
        tps = RandomTPS(
            driving.shape[0], lc.sigma_affine, lc.sigma_tps, lc.points_tps, generator, driving.device
        )
        warped = tps.transform_frame(driving, model.cfg.align_corners)
        kp_w = model.kp_detector(warped)
        kp_d = out["kp_driving"]
        if lc.equivariance_value:
            back = tps.warp_coordinates(kp_w["value"])
            losses["equivariance_value"] = lc.equivariance_value * (kp_d["value"] - back).abs().mean()
        if lc.equivariance_jacobian and "jacobian" in kp_w:
            jac_w = torch.matmul(tps.jacobian(kp_w["value"]), kp_w["jacobian"])
            prod = torch.matmul(torch.inverse(kp_d["jacobian"]), jac_w)
            eye = torch.eye(2, device=prod.device, dtype=prod.dtype)
            losses["equivariance_jacobian"] = lc.equivariance_jacobian * (eye - prod).abs().mean()
    total = sum(losses.values())
    return total, {k: float(v.detach()) for k, v in losses.items()}


def cross_identity_loss(
    model: FOMM,
    source: torch.Tensor,
    target: torch.Tensor,
    driving_initial: torch.Tensor,
    driving: torch.Tensor,
    cache: dict | None = None,
) -> torch.Tensor:
    """Multi-scale L1 between FOMM's relative-motion animation of `source` (identity B) by the driver's
    motion `driving_initial` -> `driving` (identity A) and `target`, B making A's expression.

    Relative keypoints per sample, without the convex-hull scale: a batch mixes identities, and the scale
    changed nothing at inference (docs/lab-notes.md)."""
    kp_s, kp_i, kp_d = (model.kp_detector(x) for x in (source, driving_initial, driving))
    kp = relative_keypoints(kp_s, kp_d, kp_i, adapt_scale=False)
    out = model.generator(source, kp_driving=kp, kp_source=kp_s)
    return multiscale_l1(out["prediction"], target, model.cfg.loss.scales, cache)
