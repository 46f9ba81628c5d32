"""``flowwarp``: the training-free reference backbone. Farneback flow from driving frame t back to frame 0
backward-warps the source (SynthME faces share a canonical layout, so the driver's flow field fits the
source).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from magplus_lib.backbones.base import Backbone


@dataclass
class FlowWarpConfig:
    size: int | None = None  # working size; None = the input size
    winsize: int = 15  # Farneback window (the study's evaluation uses 15)


class FlowWarpBackbone(Backbone):
    """Training-free reference: out_t = warp(source, Farneback flow(driving_t -> driving_0))."""

    name = "flowwarp"

    def __init__(self, cfg: FlowWarpConfig | None = None, device="cpu"):
        super().__init__("cpu")  # Farneback runs on the CPU whatever the device
        self.cfg = cfg or FlowWarpConfig()
        self.native_size = self.cfg.size

    def _animate_native(self, source, driving):
        from magplus_lib.magnifier.flow import farneback_flow, warp

        ref = driving[0]
        frames = []
        for t in range(driving.shape[0]):
            # Flow on frame t's grid pointing to where each pixel sits in frame 0: sampling the source
            # there moves it the way the driver moved from frame 0 to frame t.
            flow = farneback_flow(driving[t], ref, winsize=self.cfg.winsize)
            flow_t = torch.from_numpy(flow).permute(2, 0, 1)[None].to(source.dtype)
            frames.append(warp(source, flow_t))
        return torch.cat(frames, dim=0)
