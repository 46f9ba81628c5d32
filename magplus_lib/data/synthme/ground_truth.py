"""Reading SynthME's ground-truth motion back for the magnifier's accuracy check."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from magplus_lib.data.clips import Clip, DataError
from magplus_lib.data.synthme.config import GROUND_TRUTH_JSON, GROUND_TRUTH_NPZ
from magplus_lib.data.synthme.render import ClipSpec, displacement, render_clip


@dataclasses.dataclass
class ClipTruth:
    spec: ClipSpec
    apex_field: np.ndarray  # (2, H, W) displacement onset -> apex as stored (float16 -> float32)

    def displacement(self, alpha: float = 1.0) -> torch.Tensor:
        """(T, 2, H, W) displacement of every frame onset..offset from the onset frame (flow convention)."""
        return displacement(self.spec, alpha)

    def render(self, alpha: float = 1.0, photometric: bool = True) -> torch.Tensor:
        return render_clip(self.spec, alpha, photometric)


def load_ground_truth(root: str | Path) -> dict[str, ClipTruth]:
    """{clip_id: ClipTruth} for a SynthME corpus root (the folder given to the loader, e.g. data/SAMM)."""
    root = Path(root)
    jpath, npath = root / GROUND_TRUTH_JSON, root / GROUND_TRUTH_NPZ
    if not jpath.is_file() or not npath.is_file():
        raise DataError(
            f"{root}: no SynthME ground truth ({GROUND_TRUTH_JSON} + {GROUND_TRUTH_NPZ}); "
            "real datasets have none"
        )
    meta = json.loads(jpath.read_text())
    with np.load(npath) as z:
        return {
            c["clip_id"]: ClipTruth(ClipSpec(**c), z[c["clip_id"]].astype(np.float32)) for c in meta["clips"]
        }


def ground_truth_meta(root: str | Path) -> dict:
    """The ground-truth JSON without the clip specs: format, quirks, fps, landmarks."""
    meta = json.loads((Path(root) / GROUND_TRUTH_JSON).read_text())
    meta.pop("clips", None)
    return meta


def load_macro_clips(root: str | Path) -> list[Clip]:
    """The macro-expression corpus (CAS(ME)^3 layout) for training the face-animation backbones."""
    from magplus_lib.data.casme3 import load_casme3

    clips = load_casme3(root)
    for c in clips:
        c.dataset = "macro"
    return clips


def corpus_is_grey(root: str | Path) -> bool:
    """Whether a SynthME corpus at `root` is rendered in grey (SAMM's format): a model tuned on it is
    measured on grey renders."""
    return any(t.spec.grayscale for t in load_ground_truth(root).values())
