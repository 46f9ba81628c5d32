"""The default profile's magnifiers on real photographs with a known motion (issue 25's check).

    python benchmarks/magnifier_real_frames.py [--checkpoints magplus_pretrain ...] [--fields 8]
                                               [--csv out.csv] [--figure out.png]

Each committed checkpoint of `cache/default/` goes through `magplus_lib.magnifier.real_frames.check`: two real
faces the project never trains on (matplotlib's grace_hopper.jpg, scikit-image's astronaut.png), moved
by `--fields` known smooth fields each (peak 0.4 px for MagPlus, 2 px for DeMagPlus), at the default
profile's size and twice it, magnified and compared with the exactly magnified frame. Printed per
checkpoint, size and alpha: medians with bootstrap 95% intervals of achieved / exact reading, PSNR of
the output and of the unmagnified frame against the exact one and their difference, the largest mean
colour change of a channel where nothing moves (0-255 levels), the motion read there above the exact
frame's (px); then the verdict against the bar. `--figure`: the montage of the first checkpoint.
Not a test: a measurement of the models.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch
import yaml

from magplus_lib.harness.profiles import REPO_ROOT
from magplus_lib.magnifier import real_frames
from magplus_lib.magnifier.weights import load_magnifier

CHECKPOINTS = {
    "magplus_pretrain": ("01_pretrain-forward", "forward"),
    "magplus_samm": ("02_finetune-samm-forward", "forward"),
    "magplus_casme3": ("02_finetune-casme3-forward", "forward"),
    "demagplus_pretrain": ("01_pretrain-inverse", "inverse"),
    "demagplus_samm": ("02_finetune-samm-inverse", "inverse"),
    "demagplus_casme3": ("02_finetune-casme3-inverse", "inverse"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", nargs="*", default=list(CHECKPOINTS), choices=list(CHECKPOINTS))
    ap.add_argument("--fields", type=int, default=8, help="known fields per face and size")
    ap.add_argument("--csv", default=None, help="write every measurement here")
    ap.add_argument("--figure", default=None, help="write the first checkpoint's montage here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    size = yaml.safe_load((REPO_ROOT / "notebooks" / "profiles" / "default.yaml").read_text())["image_size"]
    all_rows = []
    for i, name in enumerate(args.checkpoints):
        stage, direction = CHECKPOINTS[name]
        model = load_magnifier(
            REPO_ROOT / "cache" / "default" / stage / "checkpoints" / f"{name}.safetensors"
        )
        rows, summary, verdict = real_frames.check(model, direction, size, fields=args.fields)
        all_rows.append(rows.assign(checkpoint=name))
        print(f"\n## {name} ({direction}; n = faces x fields per row)")
        print(real_frames.table(summary).to_markdown(index=False))
        print({k: v for k, v in verdict.items() if k != "bar"}, flush=True)
        if args.figure and i == 0:
            alpha = real_frames.RealFrameBar().alphas(direction)[0]
            patch = real_frames.face_patch("grace_hopper")
            fig = real_frames.montage(model, patch, 2 * size, alpha, real_frames.PEAK_PX[direction])
            fig.suptitle(f"{name} on a real face it never saw (alpha {alpha:.3g}, {2 * size} px)", fontsize=9)
            fig.savefig(args.figure, dpi=150, bbox_inches="tight")
    if args.csv:
        pd.concat(all_rows).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
