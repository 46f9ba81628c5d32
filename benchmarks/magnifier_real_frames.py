"""The default profile's magnifiers on a real photograph with a known motion (issue 25's check).

    python benchmarks/magnifier_real_frames.py [--sizes 64 128] [--seeds 8] [--csv out.csv]

The face of matplotlib's `grace_hopper.jpg` (a real photograph; reserved for evaluation, never trained
on) is cropped with the study's Haar box and moved by known smooth fields (`magplus_lib.known_motion`:
SynthME's generic-motion family, peak 0.4 px at the working size for MagPlus, 2 px for DeMagPlus), then
magnified with each committed checkpoint of `cache/default/` and compared with the exactly magnified
frame. Reported per checkpoint, size and alpha (medians over the fields): achieved / what Farneback
reads on the exact frame, PSNR of the output and of the unmagnified frame against the exact one, the
largest mean colour change of a channel where nothing moves (0-255 levels), and the motion read there
in the output minus that read in the exact frame (px). Not a test: a measurement of the models.
"""

from __future__ import annotations

import argparse

import cv2
import pandas as pd
import torch
from matplotlib import cbook

from magplus_lib import faces, known_motion
from magplus_lib.magnifier import load_magnifier
from magplus_lib.profiles import REPO_ROOT

CHECKPOINTS = {
    "magplus_pretrain": ("01_pretrain-forward", [2, 3, 5, 7, 10], 0.4),
    "magplus_samm": ("02_finetune-samm-forward", [3, 5], 0.4),
    "magplus_casme3": ("02_finetune-casme3-forward", [3, 5], 0.4),
    "demagplus_pretrain": ("01_pretrain-inverse", [1 / 2, 1 / 3, 1 / 5], 2.0),
    "demagplus_samm": ("02_finetune-samm-inverse", [1 / 3], 2.0),
    "demagplus_casme3": ("02_finetune-casme3-inverse", [1 / 3], 2.0),
}


def face_patch() -> torch.Tensor:
    """The photograph's Haar face box (the study's crop settings), (3, S, S) in [0, 1]."""
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    box = faces.face_box(rgb, None, where=str(path))
    patch = rgb[box.y0 : box.y0 + box.side, box.x0 : box.x0 + box.side]
    return torch.from_numpy(patch.copy()).permute(2, 0, 1).float() / 255


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[64, 128])
    ap.add_argument("--seeds", type=int, default=8, help="known fields per size")
    ap.add_argument("--csv", default=None, help="write every measurement here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    patch = face_patch()
    rows = []
    for name, (stage, alphas, peak) in CHECKPOINTS.items():
        model = load_magnifier(
            REPO_ROOT / "cache" / "default" / stage / "checkpoints" / f"{name}.safetensors"
        )
        for size in args.sizes:
            for seed in range(args.seeds):
                ex = known_motion.deformation_example(patch, size, alphas, peak, seed)
                for a in alphas:
                    rows.append(
                        {"checkpoint": name, "size": size, "seed": seed}
                        | known_motion.measure_real_frame(model, ex, a)
                    )
    df = pd.DataFrame(rows)
    if args.csv:
        df.to_csv(args.csv, index=False)
    df["psnr_gain"] = df["psnr_output"] - df["psnr_unmagnified"]
    df["colour_shift_max"] = df[["colour_shift_r", "colour_shift_g", "colour_shift_b"]].abs().max(axis=1)
    df["static_excess_px"] = df["static_motion_px"] - df["static_motion_exact_px"]
    cols = [
        "ratio_to_exact",
        "psnr_output",
        "psnr_unmagnified",
        "psnr_gain",
        "colour_shift_max",
        "static_excess_px",
    ]
    summary = df.groupby(["checkpoint", "size", "alpha"], sort=False)[cols].median().round(2)
    print(f"grace_hopper.jpg face, {args.seeds} known fields per size; medians")
    print(summary.reset_index().to_markdown(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
