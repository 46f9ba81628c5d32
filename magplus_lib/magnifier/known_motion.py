"""Magnifier accuracy on real frames: a real frame moved by a known smooth field, and its exact magnification.

Real datasets carry no ground-truth motion, so the magnifier's accuracy on them is measured the way
FlowMag's synthetic evaluation does it, with the motion put there on purpose. A real frame I0 (a clip's
onset face crop at its own resolution) is warped by a smooth sub-pixel field d (SynthME's generic-motion
family, `synthme.random_motion`: a few Gaussian blobs of local affine motion, peak `magnitude_px`):

    I1(x) = I0(x - d(x)),        exact magnification  I_alpha(x) = I0(x - alpha d(x)),

so the motion I0 -> I1 is d and the motion I0 -> I_alpha is alpha d (to first order in |grad d|). The
warps are done at the crop's native resolution and then resized to the working size, so that
interpolation blur stays below the working pixel. The result has the keys of
`magnifier.synthme_apex_example` and goes through the same `measure_examples`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from magplus_lib.data import faces, synthme


def warp_backward(image: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """out(x) = image(x - field(x)): image (C, H, W), field (2, H, W) in pixels (x then y), bilinear
    (`flow.warp` with the field negated, in float64 so that sub-pixel shifts are not rounded)."""
    from magplus_lib.magnifier.flow import warp

    return warp(image[None].double(), -field[None].double(), padding_mode="border")[0].to(image.dtype)


def _resize(img: torch.Tensor, size: int) -> torch.Tensor:
    if img.shape[-1] == size:
        return img.clamp(0, 1)
    big = img.shape[-1] > size
    out = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False, antialias=big)
    return out[0].clamp(0, 1)


def deformation_example(
    patch: torch.Tensor, size: int, alphas, magnitude_px: float = 1.0, seed: int = 0
) -> dict:
    """A known-motion test case from one square image `patch` (3, S, S) in [0, 1], S >= 1.

    The field is drawn at the working `size` (peak `magnitude_px` working pixels, seeded by `seed`),
    upsampled to S for the warps. Returns {"frame0", "frame1", "truth": {alpha: frame},
    "displacement": (2, size, size) in working pixels, "apex_px": mean |d| over its upper half}.
    """
    if patch.ndim != 3 or patch.shape[0] != 3 or patch.shape[1] != patch.shape[2]:
        raise ValueError(f"deformation_example: patch must be (3, S, S), got {tuple(patch.shape)}")
    side = patch.shape[-1]
    d = torch.from_numpy(synthme.random_motion(np.random.default_rng(seed), size, magnitude_px)).float()
    d_native = F.interpolate(d[None], size=(side, side), mode="bilinear", align_corners=False)[0] * (
        side / size
    )
    mag = d.norm(dim=0).flatten()
    top = mag[mag >= mag.median()]
    return {
        "frame0": _resize(patch.float(), size),
        "frame1": _resize(warp_backward(patch.float(), d_native), size),
        "truth": {float(a): _resize(warp_backward(patch.float(), d_native * float(a)), size) for a in alphas},
        "displacement": d,
        "apex_px": float(top.mean()),
    }


def real_frame_examples(
    clips, size: int, alphas, crop=None, limit: int | None = None, magnitude_px: float = 1.0, seed: int = 0
) -> list[tuple]:
    """(clip, `deformation_example`) for the onset face crop of each clip, in order, at most `limit`;
    clip i's field is drawn with seed `seed + i`."""
    out = []
    for i, clip in enumerate(clips):
        if limit is not None and len(out) >= limit:
            break
        patch = torch.from_numpy(faces.onset_crop(clip, crop)).permute(2, 0, 1).float() / 255
        out.append((clip, deformation_example(patch, size, alphas, magnitude_px, seed + i)))
    return out


def measure_real_frame(model, ex: dict, alpha: float, static_below: float = 0.02) -> dict:
    """Magnify `ex` (a `deformation_example`) by `alpha` and compare with the exact result.

    Motion is read by Farneback for the output and for the exactly magnified frame alike, so
    `ratio_to_exact` = achieved / what the same measurement reads on the exact frame (1 = perfect).
    Where nothing moves (|d| below `static_below` of its peak): the mean colour change of the output
    against the input per channel (0-255 levels) and the motion read in the output and the exact frame.
    """
    from magplus_lib.evaluation.metrics import psnr
    from magplus_lib.magnifier.accuracy import flow_slope, motion_region
    from magplus_lib.magnifier.flow import farneback_flow
    from magplus_lib.magnifier.inference import magnify_sequence

    frame0, frame1, exact = ex["frame0"], ex["frame1"], ex["truth"][float(alpha)]
    out = magnify_sequence(model, torch.stack([frame0, frame1]), alpha, tile=None)[1]
    d = ex["displacement"].permute(1, 2, 0).numpy()
    region = motion_region(d, 0.5)
    mag = np.linalg.norm(d, axis=-1)
    static = mag < static_below * mag.max()
    f_in, f_out, f_exact = (farneback_flow(frame0, x) for x in (frame1, out, exact))
    achieved, exact_reading = flow_slope(f_out, f_in, region), flow_slope(f_exact, f_in, region)
    nan = float("nan")
    shift, static_motion, static_exact = [nan] * 3, nan, nan
    if static.any():
        shift = ((out - frame1) * 255)[:, torch.from_numpy(static)].mean(dim=1).tolist()
        static_motion = float(np.linalg.norm(f_out[static], axis=-1).mean())
        static_exact = float(np.linalg.norm(f_exact[static], axis=-1).mean())
    return {
        "alpha": float(alpha),
        "achieved": achieved,
        "exact_reading": exact_reading,
        "ratio_to_exact": achieved / exact_reading if exact_reading else nan,
        "psnr_output": psnr(out, exact),
        "psnr_unmagnified": psnr(frame1, exact),
        "static_share": float(static.mean()),
        **{f"colour_shift_{c}": float(v) for c, v in zip("rgb", shift)},
        "static_motion_px": static_motion,
        "static_motion_exact_px": static_exact,
    }
