"""Known-motion accuracy check on real frames (magplus_lib.magnifier.known_motion):
exact warps, recoverable motion."""

import numpy as np
import torch
import torch.nn.functional as F

from magplus_lib.data import clips as clipsmod
from magplus_lib.magnifier import known_motion as km
from magplus_lib.magnifier.accuracy import flow_slope, motion_region
from magplus_lib.magnifier.flow import farneback_flow


def textured(side: int, seed: int = 0) -> torch.Tensor:
    """A smooth random colour texture (3, side, side) in [0, 1]: Farneback needs structure to track."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, 24, 24, generator=g)
    return F.interpolate(small, size=(side, side), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def test_warp_backward_shifts_a_ramp_by_the_field():
    ramp = torch.arange(16, dtype=torch.float32).repeat(16, 1)[None].repeat(3, 1, 1)  # value = x
    field = torch.zeros(2, 16, 16)
    field[0] = 0.25  # out(x) = ramp(x - 0.25) = x - 0.25 away from the left border
    out = km.warp_backward(ramp, field)
    assert torch.allclose(out[:, :, 2:], ramp[:, :, 2:] - 0.25, atol=1e-5)


def test_zero_motion_gives_identical_frames_and_truths():
    ex = km.deformation_example(textured(128), 64, [3, 0.5], magnitude_px=0.0)
    assert torch.equal(ex["frame0"], ex["frame1"])
    assert torch.equal(ex["truth"][3.0], ex["frame0"]) and torch.equal(ex["truth"][0.5], ex["frame0"])
    assert ex["apex_px"] == 0.0


def test_field_has_the_requested_peak_and_alpha_one_truth_is_the_moved_frame():
    ex = km.deformation_example(textured(128), 64, [1, 3], magnitude_px=1.0, seed=3)
    assert abs(float(ex["displacement"].norm(dim=0).max()) - 1.0) < 0.05
    assert torch.equal(ex["truth"][1.0], ex["frame1"])
    assert ex["frame0"].shape == (3, 64, 64) and ex["displacement"].shape == (2, 64, 64)


def test_farneback_reads_the_planted_motion_and_its_magnification():
    ex = km.deformation_example(textured(256), 64, [3], magnitude_px=1.5, seed=1)
    d = ex["displacement"].permute(1, 2, 0).numpy()
    region = motion_region(d, 0.5)
    f1 = farneback_flow(ex["frame0"], ex["frame1"])
    f3 = farneback_flow(ex["frame0"], ex["truth"][3.0])
    assert flow_slope(f1, d, region) > 0.5  # the planted field, read back (Farneback reads sub-pixel low)
    assert 2.5 < flow_slope(f3, f1, region) < 3.4  # exact magnification reads as about 3x the input


def test_real_frame_examples_use_each_clips_onset_crop(tmp_path):
    import cv2

    folder = tmp_path / "s1" / "c1"
    folder.mkdir(parents=True)
    for i in range(3):
        img = (textured(96, seed=i).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"img{i + 1:03d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    paths = sorted(folder.glob("*.jpg"))
    clip = clipsmod.Clip("samm", "s1", "c1", paths, 2, 3, 3, "happiness", None, "", "Positive", 200.0)
    crop = {"detector": "center", "fallback_fraction": 1.0}
    out = km.real_frame_examples([clip, clip], 32, [2], crop, limit=1, magnitude_px=1.0, seed=5)
    assert len(out) == 1 and out[0][0] is clip
    onset = (
        torch.from_numpy(cv2.cvtColor(cv2.imread(str(paths[1])), cv2.COLOR_BGR2RGB)).permute(2, 0, 1) / 255
    )
    want = F.interpolate(
        onset[None].float(), size=(32, 32), mode="bilinear", align_corners=False, antialias=True
    )
    assert torch.allclose(out[0][1]["frame0"], want[0].clamp(0, 1), atol=1e-6)


class Identity(torch.nn.Module):
    """A "magnifier" that returns its input frame: magnifies nothing, changes no colour."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ref, frames, alpha, mask=None):
        return frames


class Offset(Identity):
    def forward(self, ref, frames, alpha, mask=None):
        return (frames + torch.tensor([0.02, 0.0, -0.01]).view(1, 3, 1, 1)).clamp(0, 1)


def test_measure_real_frame_scores_the_identity_against_the_exact_result():
    ex = km.deformation_example(textured(256), 64, [4], magnitude_px=1.5, seed=1)
    r = km.measure_real_frame(Identity(), ex, 4)
    assert abs(r["achieved"] - 1.0) < 1e-6  # the output is the input: achieved = 1 exactly
    assert 3.0 < r["exact_reading"] < 4.6 and abs(r["ratio_to_exact"] - 1 / r["exact_reading"]) < 1e-9
    assert r["psnr_output"] == r["psnr_unmagnified"]
    assert r["static_share"] > 0.05 and r["colour_shift_r"] == r["colour_shift_g"] == 0.0
    shifted = km.measure_real_frame(Offset(), ex, 4)
    assert abs(shifted["colour_shift_r"] - 5.1) < 0.3 and abs(shifted["colour_shift_b"] + 2.55) < 0.3
    assert shifted["psnr_output"] < r["psnr_output"]
