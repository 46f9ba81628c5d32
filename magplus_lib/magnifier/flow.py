"""Optical flow: backward warping, the frozen differentiable estimators, and Farneback for evaluation.

Convention used everywhere in the study: a flow is a tensor (B, 2, H, W) in pixels, channel 0 = x
(columns), channel 1 = y (rows), defined on the grid of the *first* image, such that
``warp(img1, flow(img0, img1))`` reproduces ``img0``: pixel p of img0 is found at p + flow(p) in img1.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from magplus_lib.harness.checkpoints import CheckpointError, load_state_dict_checked


def pixel_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, 2, H, W) absolute pixel coordinates (x, y)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype),
        torch.arange(w, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([xs, ys])[None]


def warp(img: torch.Tensor, flow: torch.Tensor, padding_mode: str = "reflection") -> torch.Tensor:
    """Backward-warp `img` (B, C, H, W) by `flow` (B, 2, H, W): out(p) = img(p + flow(p)).

    Bilinear sampling with align_corners=True and reflection padding, as FlowMag's losses use; it is
    differentiable with respect to both the image and the flow.
    """
    if img.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"warp: image {tuple(img.shape)} and flow {tuple(flow.shape)} differ in size")
    b, _, h, w = img.shape
    coords = pixel_grid(h, w, device=flow.device, dtype=flow.dtype) + flow
    # Normalise to [-1, 1] under align_corners=True semantics (pixel centres at the ends).
    gx = 2.0 * coords[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * coords[:, 1] / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(
        img, grid.to(img.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=True
    )


# Farneback parameters used throughout micro-expression recognition code (see reference/datasets.md).
FARNEBACK_PARAMS = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def _to_gray_u8(img) -> np.ndarray:
    """Accept (3, H, W) / (1, H, W) / (H, W) tensors or arrays in [0, 1], or uint8 arrays (H, W[, 3])."""
    import cv2

    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().float().numpy()
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        if arr.ndim == 3 and arr.shape[0] in (1, 3):
            arr = np.moveaxis(arr, 0, -1)
        arr = np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
    elif arr.ndim == 3:
        arr = arr[..., 0]
    return np.ascontiguousarray(arr)


def farneback_flow(img0, img1, size: int | None = None, **overrides) -> np.ndarray:
    """Dense Farneback flow (H, W, 2) float32 from img0 to img1 (not differentiable; for evaluation).

    With `size`, both frames are resized to size x size first and the flow is in pixels of that size.
    The sign convention matches `warp`: img1 sampled at p + flow(p) looks like img0 at p.
    """
    import cv2

    g0, g1 = _to_gray_u8(img0), _to_gray_u8(img1)
    if g0.shape != g1.shape:
        raise ValueError(f"farneback_flow: frames differ in size {g0.shape} vs {g1.shape}")
    if size is not None:
        g0 = cv2.resize(g0, (size, size), interpolation=cv2.INTER_AREA)
        g1 = cv2.resize(g1, (size, size), interpolation=cv2.INTER_AREA)
    params = {**FARNEBACK_PARAMS, **overrides}
    return cv2.calcOpticalFlowFarneback(g0, g1, None, **params).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Frozen differentiable estimators
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FlowConfig:
    """Profile section `flow:`; `estimator` picks the implementation, the rest tune it."""

    estimator: str = "classical"  # classical | raft
    # classical (pyramidal dense Lucas-Kanade)
    levels: int = 4  # most pyramid levels; fewer when the coarsest side would drop below min_size
    min_size: int = 8
    iterations: int = 3  # warping iterations per level
    window_sigma: float = 2.0  # Gaussian integration window of the structure tensor, pixels
    smooth_sigma: float = 1.0  # Gaussian smoothing of each increment (regularises the aperture problem)
    regularisation: float = 1e-3  # Tikhonov term added to the structure tensor diagonal
    # Photometric normalisation of every pyramid level before matching: "none" (raw RGB) or "lcn"
    # (local contrast normalisation: subtract the local mean, divide by the local RMS contrast over
    # `lcn_sigma`). With "lcn" a colour shift, a contrast change or a blurred copy of an image no longer
    # reads as large motion, as it does for raw brightness constancy; a generator being trained through
    # the estimator then gets flow errors that reflect its geometry, as RAFT gives FlowMag's.
    photometric: str = "none"
    lcn_sigma: float = 2.0
    # raft
    raft_model: str = "large"  # large | small
    raft_weights: str | None = None
    raft_updates: int = 5


def _gaussian_kernel1d(sigma: float, dtype, device) -> torch.Tensor:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding (depthwise, any number of channels)."""
    if sigma <= 0:
        return img
    c = img.shape[1]
    k = _gaussian_kernel1d(sigma, img.dtype, img.device)
    r = k.numel() // 2
    h, w = img.shape[-2:]
    # Reflect padding needs pad < size; fall back to replicate on tiny images.
    mode = "reflect" if r < min(h, w) else "replicate"
    x = F.pad(img, (r, r, 0, 0), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, r, r), mode=mode)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _downsample(img: torch.Tensor) -> torch.Tensor:
    """Blur (binomial-like, sigma 1) and take every second pixel: one pyramid level."""
    return gaussian_blur(img, 1.0)[..., ::2, ::2]


def _image_gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences with replicated borders (d/dx, d/dy), per channel."""
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (p[..., 1:-1, 2:] - p[..., 1:-1, :-2])
    gy = 0.5 * (p[..., 2:, 1:-1] - p[..., :-2, 1:-1])
    return gx, gy


class ClassicalFlow(nn.Module):
    """Coarse-to-fine dense Lucas-Kanade with warping iterations; no learned weights.

    At each pyramid level (coarse to fine) the current flow is refined `iterations` times: img1 is
    backward-warped by it, the residual is linearised, and the 2x2 Lucas-Kanade system (structure
    tensor integrated over a Gaussian window, summed over the colour channels, Tikhonov-regularised so
    that textureless regions get a zero increment instead of a division by zero) is solved in closed
    form. Every operation is differentiable, so the estimator can supervise a generator like RAFT does.
    """

    def __init__(self, cfg: FlowConfig | None = None):
        super().__init__()
        self.cfg = cfg or FlowConfig()
        if self.cfg.photometric not in ("none", "lcn"):
            raise ValueError(f"flow.photometric must be 'none' or 'lcn', got '{self.cfg.photometric}'")
        self.eval()

    def _num_levels(self, h: int, w: int) -> int:
        n = 1
        while n < self.cfg.levels and min(h, w) // (2**n) >= self.cfg.min_size:
            n += 1
        return n

    def _normalise(self, img: torch.Tensor) -> torch.Tensor:
        if self.cfg.photometric == "none":
            return img
        detail = img - gaussian_blur(img, self.cfg.lcn_sigma)
        contrast = gaussian_blur(detail * detail, self.cfg.lcn_sigma).sum(1, keepdim=True)
        # 0.1 keeps normalised gradients on the scale of raw [0, 1] images, so `regularisation` means
        # the same in both modes; 1e-4 keeps flat regions finite (they get a zero increment).
        return 0.1 * detail / (contrast + 1e-4).sqrt()

    def _refine(self, i0: torch.Tensor, i1: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        i0, i1 = self._normalise(i0), self._normalise(i1)
        for _ in range(cfg.iterations):
            i1w = warp(i1, flow, padding_mode="border")
            gx, gy = _image_gradients(0.5 * (i0 + i1w))
            gt = i1w - i0
            # Structure tensor and mismatch vector, channel-summed then window-integrated.
            terms = torch.stack(
                [(gx * gx).sum(1), (gx * gy).sum(1), (gy * gy).sum(1), (gx * gt).sum(1), (gy * gt).sum(1)], 1
            )
            sxx, sxy, syy, sxt, syt = gaussian_blur(terms, cfg.window_sigma).unbind(1)
            sxx = sxx + cfg.regularisation
            syy = syy + cfg.regularisation
            det = sxx * syy - sxy * sxy
            du = -(syy * sxt - sxy * syt) / det
            dv = -(sxx * syt - sxy * sxt) / det
            flow = flow + gaussian_blur(torch.stack([du, dv], 1), cfg.smooth_sigma)
        return flow

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        if img0.shape != img1.shape or img0.dim() != 4:
            raise ValueError(
                f"ClassicalFlow: expected two (B, C, H, W) batches of equal shape, got "
                f"{tuple(img0.shape)} and {tuple(img1.shape)}"
            )
        b, _, h, w = img0.shape
        n = self._num_levels(h, w)
        pyr0, pyr1 = [img0], [img1]
        for _ in range(n - 1):
            pyr0.append(_downsample(pyr0[-1]))
            pyr1.append(_downsample(pyr1[-1]))
        flow = img0.new_zeros(b, 2, *pyr0[-1].shape[-2:])
        for level in range(n - 1, -1, -1):
            i0, i1 = pyr0[level], pyr1[level]
            if flow.shape[-2:] != i0.shape[-2:]:
                sy = i0.shape[-2] / flow.shape[-2]
                sx = i0.shape[-1] / flow.shape[-1]
                flow = F.interpolate(flow, size=i0.shape[-2:], mode="bilinear", align_corners=False)
                flow = flow * torch.tensor([sx, sy], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
            flow = self._refine(i0, i1, flow)
        return flow


# File names torchvision's weight enums would download; the user places them and points RAFT_WEIGHTS there.
RAFT_WEIGHT_FILES = {
    "large": ("Raft_Large_Weights.C_T_V1", "raft_large_C_T_V1-22a6c225.pth"),
    "small": ("Raft_Small_Weights.C_T_V2", "raft_small_C_T_V2-01064c6d.pth"),
}


RAFT_MIN_SIDE = 128


class RaftFlow(nn.Module):
    """torchvision RAFT with local weights, a fixed number of updates, frozen; [0, 1] images in."""

    def __init__(self, weights_path: str | os.PathLike | None, model: str = "large", updates: int = 5):
        super().__init__()
        from torchvision.models.optical_flow import raft_large, raft_small

        if model not in RAFT_WEIGHT_FILES:
            raise ValueError(f"unknown RAFT model '{model}' (known: {sorted(RAFT_WEIGHT_FILES)})")
        enum_name, file_name = RAFT_WEIGHT_FILES[model]
        if not weights_path or not Path(weights_path).is_file():
            raise FileNotFoundError(
                f"RAFT weights not found at '{weights_path}'. The raft flow estimator needs torchvision's "
                f"{enum_name} weights, the file '{file_name}' "
                f"(https://download.pytorch.org/models/{file_name}); download it yourself, place it e.g. "
                f"at ~/weights/{file_name} and set RAFT_WEIGHTS to that path."
            )
        self.net = (raft_large if model == "large" else raft_small)(weights=None, progress=False)
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling problem is reported with the file name
            raise ValueError(f"RAFT weights '{weights_path}' could not be read: {exc!r}") from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            kind = type(state).__name__
            raise ValueError(f"RAFT weights '{weights_path}': expected a state dict, found {kind}")
        try:  # names the first few mismatches and their counts, not torch's list of every key
            load_state_dict_checked(self.net, state, f"RAFT weights '{weights_path}' ({file_name} expected)")
        except CheckpointError as exc:
            raise ValueError(str(exc)) from exc
        self.updates = int(updates)
        self.net.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        # Frozen: BatchNorm/dropout inside RAFT always stay in eval mode.
        return super().train(False)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        h, w = img0.shape[-2:]
        # RAFT's correlation pyramid needs sides of at least 128 px: smaller inputs are upsampled and
        # the flow scaled back to the input's pixels.
        scale = max(1.0, RAFT_MIN_SIDE / min(h, w))
        if scale > 1.0:
            size = (math.ceil(h * scale), math.ceil(w * scale))
            img0 = F.interpolate(img0, size=size, mode="bilinear", align_corners=False)
            img1 = F.interpolate(img1, size=size, mode="bilinear", align_corners=False)
        sh, sw = img0.shape[-2:]
        ph, pw = (-sh) % 8, (-sw) % 8
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        # RAFT expects [-1, 1] inputs with sides divisible by 8.
        x0 = F.pad(img0 * 2.0 - 1.0, pad, mode="replicate")
        x1 = F.pad(img1 * 2.0 - 1.0, pad, mode="replicate")
        flow = self.net(x0, x1, num_flow_updates=self.updates)[-1]
        flow = flow[..., pad[2] : pad[2] + sh, pad[0] : pad[0] + sw]
        if scale > 1.0:
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
            flow = flow * torch.tensor([w / sw, h / sh], dtype=flow.dtype, device=flow.device).view(
                1, 2, 1, 1
            )
        return flow


def build_flow_estimator(cfg: FlowConfig | dict | None = None) -> nn.Module:
    """The frozen flow estimator named by `cfg.estimator` (`classical` or `raft`)."""
    from magplus_lib.harness.profiles import from_dict

    if cfg is None or isinstance(cfg, dict):
        cfg = from_dict(FlowConfig, cfg or {}, where="flow")
    if cfg.estimator == "classical":
        net: nn.Module = ClassicalFlow(cfg)
    elif cfg.estimator == "raft":
        net = RaftFlow(cfg.raft_weights, cfg.raft_model, cfg.raft_updates)
    else:
        raise ValueError(f"unknown flow estimator '{cfg.estimator}' (known: classical, raft)")
    net.requires_grad_(False)
    return net.eval()


def endpoint_error(flow: torch.Tensor, truth: torch.Tensor, border: int = 0) -> float:
    """Mean end-point error in pixels, optionally ignoring a border of `border` pixels."""
    d = (flow - truth).norm(dim=1)
    if border:
        d = d[..., border:-border, border:-border]
    return float(d.mean())
