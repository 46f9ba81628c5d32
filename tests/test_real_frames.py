"""The magnifier's real-frame check (magplus_lib.magnifier.real_frames):
the identity fails it, an oracle passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from magplus_lib.magnifier import known_motion, real_frames
from magplus_lib.magnifier.real_frames import RealFrameBar


class Identity(nn.Module):
    """Returns the frame unchanged: the trivial baseline the check must reject."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))

    def forward(self, ref, frames, alpha, mask=None):
        return frames


class Oracle(Identity):
    """Returns the exactly magnified frame (+ 0.5 level) for the frames it was built for."""

    def __init__(self, examples):
        super().__init__()
        self.examples = examples

    def forward(self, ref, frames, alpha, mask=None):
        a = float(torch.as_tensor(alpha).reshape(-1)[0])
        for ex in self.examples:
            if torch.equal(frames[-1], ex["frame1"]):
                return torch.stack([ex["frame0"], ex["truth"][a] + 0.5 / 255])[-len(frames) :]
        return frames


@pytest.fixture(scope="module")
def patch():
    return real_frames.face_patch("grace_hopper")


def _examples(patch, alphas):
    return [known_motion.deformation_example(patch, 32, alphas, 0.4, s) for s in range(3)]


def test_returning_the_input_does_not_beat_the_input(patch):
    df = real_frames.measure(Identity(), {"g": patch}, [32], [3.0], 0.4, fields=3)
    assert len(df) == 3 and (df["psnr_gain"].abs() < 1e-9).all() and (df["colour_shift_max"] < 1e-3).all()
    summary = real_frames.summarise(df, RealFrameBar(), "forward")
    assert summary.loc[0, "n"] == 3 and summary.loc[0, "checked"]
    v = real_frames.verdict(summary)
    assert not v["beats_input"] and not v["meets_bar"] and v["failing"] == ["alpha 3 at 32 px"]


def test_the_exact_result_meets_the_bar(patch):
    oracle = Oracle(_examples(patch, [3.0]))
    df = real_frames.measure(oracle, {"g": patch}, [32], [3.0], 0.4, fields=3)
    assert (df["ratio_to_exact"] - 1).abs().max() < 0.01  # the exact frame (+0.5 level) reads as exact
    assert df["colour_shift_max"].max() == pytest.approx(0.5, abs=0.05)  # + the static drift
    summary = real_frames.summarise(df, RealFrameBar(), "forward")
    assert real_frames.verdict(summary) == {"beats_input": True, "meets_bar": True, "failing": []}


def test_a_verdict_needs_the_checked_alphas_and_faces_are_known(patch):
    df = real_frames.measure(Identity(), {"g": patch}, [32], [2.0], 0.4, fields=2)
    with pytest.raises(ValueError, match="no row at the bar's alphas"):
        real_frames.verdict(real_frames.summarise(df, RealFrameBar(), "forward"))
    with pytest.raises(ValueError, match="unknown evaluation face 'mona'"):
        real_frames.face_patch("mona")
    assert real_frames.face_patch("astronaut").shape[0] == 3
