"""How well a magnifier does its job: the motion it achieves against the motion requested, read by
Farneback flow (independent of the training estimator), and the output against the exactly magnified
frame, on held-out SynthME clips with ground truth.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from magplus_lib.evaluation.metrics import psnr
from magplus_lib.magnifier.inference import magnify_sequence


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
    out = magnify_sequence(model, torch.stack([frame0, frame1]), alpha, tile=None)[1]
    return measure_output(frame0, frame1, out, alpha, truth, displacement, region_fraction)


def measure_output(
    frame0: torch.Tensor,
    frame1: torch.Tensor,
    out: torch.Tensor,
    alpha: float,
    truth: torch.Tensor | None = None,
    displacement: torch.Tensor | None = None,
    region_fraction: float = 0.5,
) -> dict:
    """`measure_magnification`'s reading of an output the magnifier already produced."""
    from magplus_lib.magnifier.flow import farneback_flow

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


def magnify_pair(model: nn.Module, frame0: torch.Tensor, frame1: torch.Tensor, alphas) -> list[dict]:
    """One pair magnified by each alpha: [{"alpha", "output" (3, H, W), "achieved"}] (achieved as in
    `measure_magnification`, Farneback over the pair's motion region), for showing what training does."""
    rows = []
    for alpha in alphas:
        out = magnify_sequence(model, torch.stack([frame0, frame1]), float(alpha), tile=None)[1]
        achieved = measure_output(frame0, frame1, out, alpha)["achieved"]
        rows.append({"alpha": float(alpha), "output": out, "achieved": achieved})
    return rows


def synthme_apex_example(truth, clip, size: int, alphas, crop=None, grayscale: bool | None = None) -> dict:
    """Held-out SynthME test case: onset and apex frames cropped like the training data (the clip's
    onset face box), the exactly magnified apex for every alpha, and the ground-truth displacement.

    `truth` is a synthme.ClipTruth, `clip` the matching clips.Clip. `grayscale` renders the clip in
    grey (True) or colour (False) instead of its own format: a SAMM-tuned model is measured on grey
    macro clips, as SAMM's frames are. Returns {"frame0", "frame1", "truth": {alpha: frame},
    "displacement": (2, size, size) in crop pixels, "box"}.
    """
    from magplus_lib.data import faces, synthme

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
