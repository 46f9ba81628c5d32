"""Magnifying a frame sequence with a trained magnifier: alpha beyond one pass is applied in passes,
large frames in overlapping tiles blended by linear ramps.
"""

from __future__ import annotations

import math

import torch

from magplus_lib.magnifier.model import MAX_ALPHA_PER_PASS, MagUNet

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
