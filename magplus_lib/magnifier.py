"""The alpha-conditioned magnifier (MagPlus / DeMagPlus generator), its checkpoints and inference.

The network is FlowMag's generator (Pan, Geng and Owens, 2023) rebuilt from its description: a 5-level
U-Net with BatchNorm/ReLU double convolutions, bilinear upsampling and a sigmoid output, fed the two
frames and a 32-D sine embedding of alpha tiled over the image (38 input channels). Module names
follow FlowMag's so that its released checkpoint converts by renaming; only the order of the six image
channels differs (ours: R0 G0 B0 R1 G1 B1, FlowMag's: R0 R1 G0 G1 B0 B1), which the converter permutes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from magplus_lib.atomicio import write_json
from magplus_lib.checkpoints import load_state_dict_checked, save_safetensors

EMBED_DIM = 32


@dataclasses.dataclass
class MagnifierConfig:
    """Profile section `magnifier:`: the generator's width and how the notebooks evaluate it."""

    width: int = 16
    flowmag_checkpoint: str | None = None  # FlowMag's released .pth: converted as the forward initialisation
    batch_size: int = 8  # frames per inference batch
    eval_alphas_mag: list = dataclasses.field(default_factory=lambda: [2.0, 3.0, 5.0, 7.0])
    eval_alphas_demag: list = dataclasses.field(default_factory=lambda: [1 / 2, 1 / 3, 1 / 5])
    eval_clips: int | None = 6  # held-out synthetic clips measured per alpha (None: all of them)
    eval_min_apex_px: float = 0.4  # skip clips whose apex motion (working size) is below Farneback's floor
    figure_alphas: list = dataclasses.field(default_factory=lambda: [3.0, 5.0, 7.0])
    # torch CPU threads for the notebooks (None: torch's default). On a shared 2-core machine one thread
    # per process avoids OpenMP oversubscription, which made training steps ~10x slower in our runs.
    threads: int | None = None


# FlowMag's embedding multiplies by 2 * 3.141592 (a truncated pi); the released weights were trained
# with it, so we keep the same constant (the difference to 2*pi is below 2e-4 rad at alpha = 16).
_TWO_PI_FLOWMAG = 2 * 3.141592
MAX_ALPHA_PER_PASS = 16.0


def alpha_wavelengths(dim: int = EMBED_DIM, device=None, dtype=torch.float32) -> torch.Tensor:
    """lambda_k = 2 ** linspace(-3, 7, dim): geometric from 0.125 to 128."""
    return torch.pow(2.0, torch.linspace(-3.0, 7.0, dim, dtype=torch.float64)).to(device=device, dtype=dtype)


def alpha_embedding(alpha: torch.Tensor, dim: int = EMBED_DIM) -> torch.Tensor:
    """(B,) alphas -> (B, dim) sine embedding sin(2 pi alpha / lambda_k) (no parameters)."""
    alpha = torch.as_tensor(alpha, dtype=torch.float32).reshape(-1)
    lam = alpha_wavelengths(dim, device=alpha.device, dtype=alpha.dtype)
    return torch.sin(_TWO_PI_FLOWMAG * alpha[:, None] / lam[None, :])


def alpha_planes(
    alpha: torch.Tensor, h: int, w: int, mask: torch.Tensor | None = None, dim: int = EMBED_DIM
) -> torch.Tensor:
    """(B, dim, H, W) tiled embedding; with a soft mask m (H, W) or (B, 1, H, W) in [0, 1], the
    embedding is pe(alpha) * m + pe(1) * (1 - m) as FlowMag does (alpha where m = 1, identity elsewhere)."""
    pe = alpha_embedding(alpha, dim)[:, :, None, None].expand(-1, -1, h, w)
    if mask is None:
        return pe
    m = torch.as_tensor(mask, dtype=pe.dtype, device=pe.device)
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m[:, None]
    if m.shape[-2:] != (h, w):
        raise ValueError(f"mask of size {tuple(m.shape[-2:])} does not match frames of size {(h, w)}")
    identity = alpha_embedding(torch.ones_like(torch.as_tensor(alpha, dtype=torch.float32).reshape(-1)), dim)
    identity = identity.to(pe.device)[:, :, None, None]
    return pe * m + identity * (1 - m)


class DoubleConv(nn.Module):
    """(3x3 conv with bias -> BatchNorm -> ReLU) twice; `mid` channels after the first conv."""

    def __init__(self, cin: int, cout: int, mid: int | None = None):
        super().__init__()
        mid = mid or cout
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, mid, 3, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """2x2 max-pool then a double conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Bilinear x2 upsampling, pad to the skip's size, concatenate [skip, up], double conv (mid = in/2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(cin, cout, cin // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        dy = skip.shape[-2] - x.shape[-2]
        dx = skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class OutConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MagUNet(nn.Module):
    """G(I0, It, alpha) -> magnified It, (B, 3, H, W) in [0, 1]; 17,287,683 parameters at width 64.

    Encoder widths w, 2w, 4w, 8w, 8w (the bottleneck is halved because upsampling is bilinear);
    decoder 4w, 2w, w, w, then a 1x1 conv to RGB and a sigmoid. Any H x W works.
    """

    levels = 5

    def __init__(self, width: int = 64, embed_dim: int = EMBED_DIM):
        super().__init__()
        if width < 2 or width % 2:
            raise ValueError(f"MagUNet width must be an even number >= 2, got {width}")
        self.width = int(width)
        self.embed_dim = int(embed_dim)
        n = self.levels
        self.down_layers = nn.ModuleList()
        for i in range(n):
            cout = width * 2**i
            if i == 0:
                self.down_layers.append(DoubleConv(6 + embed_dim, cout))
            else:
                self.down_layers.append(Down(cout // 2, cout // 2 if i == n - 1 else cout))
        self.up_layers = nn.ModuleList()
        for i in range(n):
            cin = width * 2 ** (n - 1 - i)
            if i == n - 1:
                self.up_layers.append(OutConv(cin, 3))
            elif i == n - 2:
                self.up_layers.append(Up(cin, cin // 2))
            else:
                self.up_layers.append(Up(cin, cin // 4))

    def generator_input(
        self, img0: torch.Tensor, img1: torch.Tensor, alpha, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The 38-channel input: I0 (RGB), It (RGB), then the tiled alpha embedding."""
        if img0.shape != img1.shape or img0.dim() != 4 or img0.shape[1] != 3:
            raise ValueError(
                f"MagUNet expects two (B, 3, H, W) batches of equal shape, got {tuple(img0.shape)} "
                f"and {tuple(img1.shape)}"
            )
        b, _, h, w = img0.shape
        alpha = torch.as_tensor(alpha, dtype=torch.float32, device=img0.device).reshape(-1)
        if alpha.numel() == 1:
            alpha = alpha.expand(b)
        if alpha.numel() != b:
            raise ValueError(f"alpha has {alpha.numel()} values for a batch of {b}")
        pe = alpha_planes(alpha, h, w, mask, self.embed_dim).to(img0.dtype)
        return torch.cat([img0, img1, pe], dim=1)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, alpha, mask: torch.Tensor | None = None):
        return self.forward_input(self.generator_input(img0, img1, alpha, mask))

    def forward_input(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net on an already assembled (B, 6 + embed_dim, H, W) input."""
        skips = []
        for layer in self.down_layers:
            x = layer(x)
            skips.append(x)
        x = skips.pop()
        for layer, skip in zip(self.up_layers[:-1], reversed(skips)):
            x = layer(x, skip)
        return torch.sigmoid(self.up_layers[-1](x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------


def side_path(path: str | os.PathLike) -> Path:
    """The JSON side file of a checkpoint: same stem, .json."""
    return Path(path).with_suffix(".json")


def save_magnifier(model: MagUNet, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write the weights (and BatchNorm buffers) as safetensors and `meta` + width to the JSON side file.

    Both are written atomically; the weights go first so that a side file never describes weights
    that are not on disk yet.
    """
    model = getattr(model, "module", model)
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {**(meta or {}), "width": model.width, "embed_dim": model.embed_dim, "architecture": "MagUNet"}
    save_safetensors(path, tensors, metadata={"width": str(model.width), "format": "MagUNet"})
    write_json(side_path(path), meta)
    return path


def read_side(path: str | os.PathLike) -> dict:
    """The side-file metadata of a checkpoint ({} when there is none)."""
    p = side_path(path)
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"checkpoint side file {p} is not valid JSON: {exc}") from exc


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"magnifier checkpoint not found: {path}")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - report any parse failure with the file name
        raise ValueError(f"{path} is not a readable safetensors checkpoint: {exc}") from exc


def load_magnifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> MagUNet:
    """Load a MagUNet written by `save_magnifier` (width read from the weights), in eval mode."""
    path = Path(path)
    state = _read_safetensors(path)
    key = "down_layers.0.double_conv.0.weight"
    if key not in state or state[key].dim() != 4:
        raise ValueError(f"{path} is not a MagUNet checkpoint (no tensor '{key}')")
    width = int(state[key].shape[0])
    model = MagUNet(width=width, embed_dim=int(state[key].shape[1]) - 6)
    load_state_dict_checked(model, state, str(path))
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------
# FlowMag's released checkpoint
# ----------------------------------------------------------------------------------------------------

FLOWMAG_PREFIX = "module.generator."
# Our input channel c comes from FlowMag's channel FLOWMAG_FROM_OURS[c]: FlowMag interleaves
# (R0, R1, G0, G1, B0, B1), we stack (R0, G0, B0, R1, G1, B1); the embedding channels are unchanged.
FLOWMAG_FROM_OURS = [0, 2, 4, 1, 3, 5]


def convert_flowmag_state(raw: dict, source: str = "FlowMag checkpoint") -> dict[str, torch.Tensor]:
    """FlowMag's checkpoint dict (or its state_dict) -> a MagUNet state dict.

    Keeps the `module.generator.` entries without the prefix, drops the RAFT weights and everything else,
    and permutes the first convolution's six image input channels into our order.
    """
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{source}: expected a dict with a 'state_dict' mapping")
    out = {k[len(FLOWMAG_PREFIX) :]: v for k, v in state.items() if k.startswith(FLOWMAG_PREFIX)}
    if not out:
        # Tolerate checkpoints saved without DataParallel's `module.` prefix.
        out = {k[len("generator.") :]: v for k, v in state.items() if k.startswith("generator.")}
    if not out:
        raise ValueError(f"{source}: no '{FLOWMAG_PREFIX}*' generator weights found")
    first = "down_layers.0.double_conv.0.weight"
    if first not in out or out[first].dim() != 4 or out[first].shape[1] < 6:
        raise ValueError(f"{source}: generator has no usable '{first}'")
    w = out[first].clone()
    order = FLOWMAG_FROM_OURS + list(range(6, w.shape[1]))
    out[first] = w[:, order].contiguous()
    return {
        k: torch.as_tensor(v).float() if torch.is_floating_point(torch.as_tensor(v)) else v
        for k, v in out.items()
    }


def load_flowmag_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> MagUNet:
    """FlowMag's released checkpoint (torch pickle, loaded with weights_only=True) as a MagUNet."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FlowMag checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path} could not be read as a torch checkpoint: {exc}") from exc
    state = convert_flowmag_state(raw, str(path))
    width = int(state["down_layers.0.double_conv.0.weight"].shape[0])
    model = MagUNet(width=width, embed_dim=int(state["down_layers.0.double_conv.0.weight"].shape[1]) - 6)
    load_state_dict_checked(model, state, str(path))
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------------


# Pixels two neighbouring tiles share (blended with linear ramps) when a frame is processed in tiles.
TILE_OVERLAP = 64


def alpha_schedule(alpha: float, max_alpha: float = MAX_ALPHA_PER_PASS) -> list[float]:
    """Per-pass factors: one pass for 1/max <= alpha <= max (inclusive), else n equal passes alpha**(1/n)."""
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a positive finite number, got {alpha}")
    ratio = abs(math.log(alpha)) / math.log(max_alpha)
    n = max(1, math.ceil(ratio - 1e-12))
    return [alpha ** (1.0 / n)] * n


def _ramp_weights(size: int, start: int, stop: int, total: int, overlap: int) -> torch.Tensor:
    """1-D blending weight of a tile [start, stop) inside [0, total).

    On sides that touch another tile the weight is 0 over the outer quarter of the overlap (where the
    tile's own border effects live) and rises linearly to 1 across the rest; at the image border it is 1.
    """
    w = torch.ones(size, dtype=torch.float64)
    if overlap > 0:
        margin = overlap // 4
        ramp = torch.zeros(overlap, dtype=torch.float64)
        ramp[margin:] = torch.linspace(0, 1, overlap - margin + 2, dtype=torch.float64)[1:-1]
        if start > 0:
            w[:overlap] = torch.minimum(w[:overlap], ramp)
        if stop < total:
            w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


def _tile_starts(total: int, tile: int, overlap: int) -> list[int]:
    if total <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, total - tile, step)) + [total - tile]
    return sorted(set(starts))


def _generate(model, ref, frames, alpha, mask, tile, overlap):
    """One generator pass over a batch, tiled when the frame exceeds `tile` on either side."""
    b, _, h, w = frames.shape
    if tile is None or (h <= tile and w <= tile):
        return model(ref.expand(b, -1, -1, -1), frames, alpha, mask)
    out = torch.zeros_like(frames)
    weight = torch.zeros(1, 1, h, w, dtype=frames.dtype, device=frames.device)
    th, tw = min(tile, h), min(tile, w)
    for y in _tile_starts(h, th, overlap):
        for x in _tile_starts(w, tw, overlap):
            sl = (..., slice(y, y + th), slice(x, x + tw))
            m = None if mask is None else mask[sl]
            pred = model(ref[sl].expand(b, -1, -1, -1), frames[sl], alpha, m)
            wy = _ramp_weights(th, y, y + th, h, overlap)
            wx = _ramp_weights(tw, x, x + tw, w, overlap)
            wt = (wy[:, None] * wx[None, :]).to(frames)[None, None]
            out[sl] += pred * wt
            weight[sl] += wt
    return out / weight


def magnify_sequence(
    model: MagUNet,
    frames: torch.Tensor,
    alpha: float,
    reference: int = 0,
    mask: torch.Tensor | None = None,
    batch_size: int = 8,
    tile: int | None = 512,
    tile_overlap: int = TILE_OVERLAP,
    progress: bool = False,
) -> torch.Tensor:
    """Magnify (alpha > 1) or attenuate (alpha < 1) the motion of every frame relative to `reference`.

    frames: (T, 3, H, W) in [0, 1]. Returns (T, 3, H, W) float32 on the CPU; the reference frame is
    returned unchanged (its motion is zero). Alpha beyond [1/16, 16] runs as repeated passes of
    alpha**(1/n) (each pass magnifies the previous output against the reference). `mask` (H, W) in
    [0, 1] blends the alpha embedding with the identity one (soft spatial mask). Frames larger than
    `tile` pixels on a side are processed in overlapping tiles blended with linear ramps.
    """
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"magnify_sequence expects frames (T, 3, H, W), got {tuple(frames.shape)}")
    t = frames.shape[0]
    if not -t <= reference < t:
        raise ValueError(f"reference frame {reference} is outside a sequence of {t} frames")
    reference %= t
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive number of frames, got {batch_size!r}")
    if tile is not None and tile_overlap >= tile:
        raise ValueError(f"tile_overlap ({tile_overlap}) must be smaller than tile ({tile})")
    passes = alpha_schedule(alpha)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = torch.empty(frames.shape, dtype=torch.float32)
    ref = frames[reference : reference + 1].to(device=device, dtype=torch.float32)
    m = None if mask is None else torch.as_tensor(mask, dtype=torch.float32, device=device)
    try:
        from tqdm.auto import tqdm

        starts = range(0, t, batch_size)
        with torch.inference_mode():
            for s in tqdm(starts, desc=f"magnify x{alpha:g}", disable=not progress, leave=False):
                x = frames[s : s + batch_size].to(device=device, dtype=torch.float32)
                for a in passes:
                    x = _generate(model, ref, x, a, m, tile, tile_overlap)
                out[s : s + batch_size] = x.float().cpu()
        out[reference] = frames[reference].float().cpu()
    finally:
        model.train(was_training)
    return out


# ----------------------------------------------------------------------------------------------------
# Measuring magnification (independent of the training estimator: OpenCV Farneback)
# ----------------------------------------------------------------------------------------------------


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [0, 1]."""
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def flow_slope(flow: np.ndarray, reference: np.ndarray, region: np.ndarray) -> float:
    """Least-squares factor s minimising sum_region |flow - s * reference|^2 (both (H, W, 2))."""
    a, b = flow[region], reference[region]
    den = float((b * b).sum())
    return float("nan") if den <= 1e-12 else float((a * b).sum()) / den


def motion_region(displacement: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """Pixels whose displacement magnitude is at least `fraction` of the largest: where motion is."""
    mag = np.linalg.norm(displacement, axis=-1)
    return mag >= fraction * mag.max() if mag.max() > 0 else np.zeros(mag.shape, bool)


def measure_magnification(
    model: nn.Module,
    frame0: torch.Tensor,
    frame1: torch.Tensor,
    alpha: float,
    truth: torch.Tensor | None = None,
    displacement: torch.Tensor | None = None,
    region_fraction: float = 0.5,
) -> dict:
    """Magnify frame1 against frame0 and measure what came out.

    achieved = slope of the Farneback flow (frame0 -> output) on the Farneback flow (frame0 -> frame1)
    over the motion region (from `displacement` (2, H, W) when given, else from the input flow);
    achieved_gt uses the ground-truth displacement as the denominator. With `truth` (the exactly
    magnified frame) the PSNR of the output and of the unmagnified frame against it are reported.
    """
    from magplus_lib.flow import farneback_flow

    out = magnify_sequence(model, torch.stack([frame0, frame1]), alpha, tile=None)[1]
    f_in = farneback_flow(frame0, frame1)
    f_out = farneback_flow(frame0, out)
    disp = None if displacement is None else displacement.permute(1, 2, 0).cpu().numpy()
    region = motion_region(disp if disp is not None else f_in, region_fraction)
    res = {
        "alpha": float(alpha),
        "achieved": flow_slope(f_out, f_in, region),
        "achieved_gt": flow_slope(f_out, disp, region) if disp is not None else float("nan"),
        "input_motion_px": float(np.linalg.norm(f_in[region], axis=-1).mean()) if region.any() else 0.0,
        "region_px": int(region.sum()),
    }
    if truth is not None:
        res["psnr_output"] = psnr(out, truth)
        res["psnr_unmagnified"] = psnr(frame1, truth)
    return res


def synthme_apex_example(truth, clip, size: int, alphas, crop=None, grayscale: bool | None = None) -> dict:
    """Held-out SynthME test case: onset and apex frames cropped like the training data (the clip's
    onset face box), the exactly magnified apex for every alpha, and the ground-truth displacement.

    `truth` is a synthme.ClipTruth, `clip` the matching clips.Clip. `grayscale` renders the clip in
    grey (True) or colour (False) instead of its own format: a SAMM-tuned model is measured on grey
    macro clips, as SAMM's frames are. Returns {"frame0", "frame1", "truth": {alpha: frame},
    "displacement": (2, size, size) in crop pixels, "box"}.
    """
    from magplus_lib import faces, synthme

    box = faces.clip_box(clip, crop)
    spec = truth.spec
    # The ground truth's own apex (a spreadsheet quirk may have moved the clip's); render just the
    # onset and apex frames: every per-frame list of the spec is cut to those two.
    k = (
        spec.frame_numbers.index(spec.apex)
        if spec.apex in spec.frame_numbers
        else len(spec.frame_numbers) // 2
    )
    two = dataclasses.replace(
        spec,
        **{
            f: [getattr(spec, f)[0], getattr(spec, f)[k]]
            for f in ("frame_numbers", "s", "blink", "jitter", "gains")
        },
        grayscale=spec.grayscale if grayscale is None else bool(grayscale),
    )

    def crop_frame(img: torch.Tensor) -> torch.Tensor:
        patch = img[..., box.y0 : box.y0 + box.side, box.x0 : box.x0 + box.side]
        return F.interpolate(
            patch[None].float(),
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=box.side > size,
        )[0].clamp(0, 1)

    base = synthme.render_clip(two, 1.0)
    disp = faces.crop_field(synthme.displacement(two, 1.0)[1], box, size)
    return {
        "frame0": crop_frame(base[0]),
        "frame1": crop_frame(base[1]),
        "truth": {float(a): crop_frame(synthme.render_clip(two, float(a))[1]) for a in alphas},
        "displacement": disp,
        "box": box,
        "apex_px": float(disp.norm(dim=0).max()),
    }


def held_out_examples(
    truths: dict,
    clips,
    size: int,
    alphas,
    crop=None,
    grayscale: bool | None = None,
    limit: int | None = None,
    min_apex_px: float = 0.0,
) -> list[tuple]:
    """(clip, `synthme_apex_example`) for the clips with ground truth in `truths` whose apex moves at
    least `min_apex_px` at `size` (Farneback cannot measure less), in order, at most `limit`."""
    examples = []
    for clip in clips:
        if (limit is not None and len(examples) >= limit) or clip.clip_id not in truths:
            continue
        ex = synthme_apex_example(truths[clip.clip_id], clip, size, alphas, crop, grayscale)
        if ex["apex_px"] >= min_apex_px:
            examples.append((clip, ex))
    return examples


def measure_examples(model: nn.Module, examples: list[tuple], alphas) -> pd.DataFrame:
    """`measure_magnification` of every (clip, example) at every alpha: one row per clip and alpha."""
    rows = [
        {
            "clip": clip.clip_id,
            "apex_px": ex["apex_px"],
            **measure_magnification(
                model, ex["frame0"], ex["frame1"], a, ex["truth"][float(a)], ex["displacement"]
            ),
        }
        for clip, ex in examples
        for a in alphas
    ]
    return pd.DataFrame(rows)
