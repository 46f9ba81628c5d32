"""Pretraining variants for issue 25, measured on a real photograph with known motion.

    python benchmarks/pretrain_real_texture.py OUT VARIANT [VARIANT ...] [--steps 3000] [--texture 8000]

VARIANT is OUTPUT+PAIRS: OUTPUT `image` (FlowMag's sigmoid) or `residual` (It + correction); PAIRS
`synth` (the default profile's SynthME generic pairs, results/default/data/generic: run `make data`)
or `mix` (those plus `--texture` photograph pairs, `magplus_lib.texture_pairs`). Each variant pretrains
MagPlus (forward) with the default profile's pretraining settings for `--steps`, then is measured the
way `benchmarks/magnifier_real_frames.py` measures the committed checkpoints (grace_hopper.jpg's face,
never trained on; 8 known fields per size) and on SynthME's held-out clips (`magnifier.held_out_examples`).
Not a test: a measurement that chose the recipe (docs/lab-notes.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from torch.utils.data import ConcatDataset

sys.path.insert(0, str(Path(__file__).parent))
from magnifier_real_frames import face_patch  # noqa: E402

from magplus_lib import known_motion, pairs, training  # noqa: E402
from magplus_lib.flow import build_flow_estimator  # noqa: E402
from magplus_lib.magnifier import MagUNet  # noqa: E402
from magplus_lib.profiles import REPO_ROOT  # noqa: E402
from magplus_lib.texture_pairs import TexturePairDataset  # noqa: E402


def real_frame_summary(model, sizes=(64, 128), alphas=(3, 5), fields=8) -> pd.DataFrame:
    patch = face_patch()
    rows = []
    for size in sizes:
        for seed in range(fields):
            ex = known_motion.deformation_example(patch, size, alphas, 0.4, seed)
            rows += [{"size": size, **known_motion.measure_real_frame(model, ex, a)} for a in alphas]
    df = pd.DataFrame(rows)
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
    return df.groupby(["size", "alpha"])[cols].median().round(3).reset_index()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--texture", type=int, default=8000)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    prof = yaml.safe_load((REPO_ROOT / "notebooks" / "profiles" / "default.yaml").read_text())
    size = prof["image_size"]
    stage = training.stage_config(prof["pretrain"], "pretrain")
    tcfg = stage.train_config("forward", size, prof["seed"])
    tcfg.steps = args.steps
    flow_net = build_flow_estimator(prof["flow"])
    generic = pairs.GenericPairDataset(REPO_ROOT / "results" / "default" / "data" / "generic", size)
    motion = prof["synthme"].get("generic_motion_px", [0.5, 4.0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for variant in args.variants:
        output, data = variant.split("+")
        dataset = generic
        if data == "mix":
            dataset = ConcatDataset([generic, TexturePairDataset(size, args.texture, motion, seed=1)])
        torch.manual_seed(prof["seed"])
        model = MagUNet(width=prof["magnifier"]["width"], output=output)
        t0 = time.perf_counter()
        training.train_magnifier(
            model,
            dataset,
            flow_net,
            tcfg,
            out / f"{variant}.safetensors",
            out / f"{variant}.csv",
            progress=False,
        )
        took = time.perf_counter() - t0
        summary = real_frame_summary(model)
        summary.to_csv(out / f"{variant}_real.csv", index=False)
        print(f"\n## {variant}: {len(dataset)} pairs, {args.steps} steps, {took:.0f} s")
        print(summary.to_markdown(index=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
