"""Pretraining variants for issue 25, measured on a real photograph with known motion.

    python benchmarks/pretrain_real_texture.py OUT VARIANT [VARIANT ...] [--steps 3000] [--texture 8000]
        [--texture-motion LO,HI] [--dev IMAGE,IMAGE]

VARIANT is OUTPUT+PAIRS: OUTPUT `image` (FlowMag's sigmoid), `residual` (It + correction, zero at
the start), `eulerian` (It + (alpha - 1)(It - I0) + correction) or `lagrangian` (It warped by
-(alpha - 1) u, u a predicted motion, + correction) or `flowprior` (the same with u = u0 + du, u0 the
frozen flow estimator's I0 -> I1 motion: classical Lagrangian magnification at the start), `flowprior2x`
(the same with u0 read on the frames upsampled 2x: the library's `FlowPriorMagUNet`, adopted from
these runs) or `flowgain` (u = g u0 + du, g one learnt scalar, 1 at the start); the variants that were
not adopted are defined here (`OutputHead`). PAIRS
`synth` (the default profile's SynthME generic pairs, results/default/data/generic: run `make data`),
`mix` (those plus `--texture` photograph pairs, `magplus_lib.data.texture_pairs`) or `exact` (FlowMag's
losses on the SynthME pairs, plus an L1 to the exactly magnified frame on `--texture` photograph pairs
whose field is known: the supervised target of Oh et al.'s learning-based magnification, weighted as
L_color; `ExactTexturePairs`, `train_exact`) or `exactonly` (the same without L_mag: L_color on the
SynthME pairs and the exact target on the photograph pairs, so the motion is learnt from the known
fields alone and not through the flow estimator's bias) or `library` (the exact target through the
library's `train_magnifier(exact_pairs=...)`, as 01 trains it). Each variant pretrains
MagPlus (forward) with the default profile's pretraining settings for `--steps`, then is measured the
way `benchmarks/magnifier_real_frames.py` measures the committed checkpoints
(`magplus_lib.magnifier.real_frames`:
two real faces never trained on, 8 known fields each, at the working size and twice it).
Not a test: a measurement that chose the recipe (docs/lab-notes.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from torch.utils.data import ConcatDataset

from magplus_lib.data import pairs  # noqa: E402
from magplus_lib.data.texture_pairs import (  # noqa: E402
    TEXTURE_IMAGES,
    ExactTexturePairs,
    TexturePairDataset,
    load_images,
)
from magplus_lib.harness.profiles import REPO_ROOT  # noqa: E402
from magplus_lib.magnifier import real_frames, train_config, training  # noqa: E402
from magplus_lib.magnifier.flow import build_flow_estimator, warp  # noqa: E402
from magplus_lib.magnifier.model import MagnifierConfig, MagUNet, build_magnifier  # noqa: E402


class OutputHead(MagUNet):
    """MagUNet with another output parameterisation; every kind but `image` starts as the identity
    (`flowprior`: as classical Lagrangian magnification with the frozen flow estimator's motion)."""

    def __init__(self, width: int, output: str, flow_net=None):
        super().__init__(width=width)
        self.output = output
        self._flow = [flow_net]  # a list: the frozen estimator is not one of the generator's modules
        if output.startswith("flow") and flow_net is None:
            raise ValueError(f"the {output} output needs the flow estimator")
        if output == "flowgain":
            self.prior_gain = torch.nn.Parameter(torch.ones(()))
        if output != "image":
            last = self.up_layers[-1].conv
            if output in ("lagrangian", "flowprior", "flowgain"):  # 2 motion + 3 colour channels
                self.up_layers[-1].conv = last = torch.nn.Conv2d(last.in_channels, 5, 1)
            torch.nn.init.zeros_(last.weight)
            torch.nn.init.zeros_(last.bias)

    def forward(self, img0, img1, alpha, mask=None):
        if self.output == "image":
            return super().forward(img0, img1, alpha, mask)
        x = self.generator_input(img0, img1, alpha, mask)
        skips = []
        for layer in self.down_layers:
            x = layer(x)
            skips.append(x)
        x = skips.pop()
        for layer, skip in zip(self.up_layers[:-1], reversed(skips)):
            x = layer(x, skip)
        head = self.up_layers[-1](x)
        a = torch.as_tensor(alpha, dtype=img1.dtype).reshape(-1).expand(img1.shape[0])
        gain = (a - 1).view(-1, 1, 1, 1)
        if self.output == "residual":
            out = img1 + head
        elif self.output == "eulerian":
            out = img1 + gain * (img1 - img0) + head
        else:
            motion = head[:, :2]
            if self.output != "lagrangian":  # u = u0 + du, u0 the estimator's I0 -> I1 flow
                with torch.no_grad():
                    u0 = self._flow[0](img0.float(), img1.float())
                motion = motion + (self.prior_gain * u0 if self.output == "flowgain" else u0)
            out = warp(img1, -gain * motion, padding_mode="border") + head[:, 2:]
        return out.clamp(0, 1)


def train_exact(
    model, generic, exact, flow_net, tcfg, w_exact: float, log_path: Path, with_mag: bool = True
) -> None:
    """Adam on FlowMag's loss over a generic batch (without L_mag when not `with_mag`) plus
    w_exact * L1(G(I0, I1, alpha), truth) over an exact-texture batch, every step (a measurement loop:
    no resume, no checkpoints)."""
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    g = torch.Generator().manual_seed(tcfg.seed)
    rows = []
    model.train()
    for step in range(tcfg.steps):
        idx = torch.randint(len(generic), (tcfg.batch_size,), generator=g).tolist()
        pairs_ = [training.augment_pair(*generic[i], tcfg.size, tcfg.augment, g) for i in idx]
        img0, img1 = (torch.stack([p[k] for p in pairs_]) for k in (0, 1))
        alpha = training.sample_alphas(tcfg.batch_size, tcfg.alpha_min, tcfg.alpha_max, g)
        loss, l_mag, l_color = training.magnification_losses(
            flow_net, model(img0, img1, alpha), img0, img1, alpha, tcfg.w_mag, tcfg.w_color, tcfg.flow_scale
        )
        items = [exact[i] for i in torch.randint(len(exact), (tcfg.batch_size,), generator=g).tolist()]
        e0, e1, et = (torch.stack([it[k] for it in items]) for k in (0, 1, 3))
        ea = torch.tensor([it[2] for it in items], dtype=torch.float32)
        l_exact = (model(e0, e1, ea) - et).abs().mean()
        total = (loss if with_mag else tcfg.w_color * l_color) + w_exact * l_exact
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        rows.append(
            {
                "step": step + 1,
                "loss_mag": float(l_mag),
                "loss_color": float(l_color),
                "loss_exact": float(l_exact),
            }
        )
    model.eval()
    import pandas as pd

    pd.DataFrame(rows).to_csv(log_path, index=False)


def dev_check(model, names: tuple, size: int, direction: str = "forward"):
    """`real_frames.check` on centre crops of held-out texture photographs instead of the faces."""
    patches = {}
    for name, img in zip(names, load_images(names)):
        side = min(img.shape[:2])
        y0, x0 = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
        crop = np.ascontiguousarray(img[y0 : y0 + side, x0 : x0 + side])
        patches[name] = torch.from_numpy(crop).permute(2, 0, 1).float() / 255
    bar = real_frames.RealFrameBar()
    rows = real_frames.measure(
        model, patches, [size, 2 * size], real_frames.ALPHAS[direction], real_frames.PEAK_PX[direction]
    )
    summary = real_frames.summarise(rows, bar, direction)
    return rows, summary, real_frames.verdict(summary)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument(
        "--direction",
        choices=("forward", "inverse"),
        default="forward",
        help="inverse: DeMagPlus (its alpha range, generic_inverse pairs, the check's inverse alphas)",
    )
    ap.add_argument("--texture", type=int, default=8000)
    ap.add_argument(
        "--texture-motion",
        help="LO,HI peak motion of the photograph pairs in working px (default: synthme.generic_motion_px)",
    )
    ap.add_argument(
        "--dev",
        help="comma-separated TEXTURE_IMAGES held out of training and checked first (centre crops); the "
        "evaluation faces are then read only if the dev check meets the bar",
    )
    ap.add_argument(
        "--dev-only",
        action="store_true",
        help="read only the dev photographs (an untrained start, for scale)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    prof = yaml.safe_load((REPO_ROOT / "notebooks" / "profiles" / "default.yaml").read_text())
    size = prof["image_size"]
    stage = train_config.stage_config(prof["pretrain"], "pretrain")
    direction = args.direction
    tcfg = stage.train_config(direction, size, prof["seed"])
    tcfg.steps = args.steps
    flow_net = build_flow_estimator(prof["flow"])
    folder = "generic" if direction == "forward" else "generic_inverse"
    generic = pairs.GenericPairDataset(REPO_ROOT / "results" / "default" / "data" / folder, size)
    motion = prof["synthme"].get("generic_motion_px", [0.5, 4.0])
    if args.texture_motion:
        motion = [float(v) for v in args.texture_motion.split(",")]
    dev = tuple(args.dev.split(",")) if args.dev else ()
    train_images = tuple(n for n in TEXTURE_IMAGES if n not in dev)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for variant in args.variants:
        output, data = variant.split("+")
        dataset = generic
        if data == "mix":
            dataset = ConcatDataset(
                [generic, TexturePairDataset(size, args.texture, motion, seed=1, images=train_images)]
            )
        torch.manual_seed(prof["seed"])
        width = prof["magnifier"]["width"]
        if output == "flowprior2x":
            model = build_magnifier(MagnifierConfig(width=width, output="flowprior"), prof["flow"])
        else:
            model = OutputHead(width, output, flow_net)
        t0 = time.perf_counter()
        if data in ("exact", "exactonly"):
            exact = ExactTexturePairs(
                size, args.texture, motion, (tcfg.alpha_min, tcfg.alpha_max), images=train_images
            )
            log = out / f"{variant}.csv"
            train_exact(model, generic, exact, flow_net, tcfg, tcfg.w_color, log, with_mag=data == "exact")
            save_file(model.state_dict(), str(out / f"{variant}.safetensors"))
        else:
            exact, run_cfg = None, tcfg
            if data == "library":  # the library's loop (01's): one pass for both batches, epoch order
                exact = ExactTexturePairs(
                    size, args.texture, motion, (tcfg.alpha_min, tcfg.alpha_max), images=train_images
                )
                run_cfg = dataclasses.replace(tcfg, exact_weight=tcfg.w_color)  # not for later variants
            training.train_magnifier(
                model,
                dataset,
                flow_net,
                run_cfg,
                out / f"{variant}.safetensors",
                out / f"{variant}.csv",
                progress=False,
                exact_pairs=exact,
            )
        took = time.perf_counter() - t0
        print(
            f"\n## {variant}: {len(dataset)} pairs, {args.steps} steps, {took:.0f} s, texture motion {motion}"
        )
        if dev:
            rows, summary, verdict = dev_check(model, dev, size, direction)
            rows.to_csv(out / f"{variant}_dev.csv", index=False)
            print(f"### dev photographs {', '.join(dev)}")
            print(real_frames.table(summary).to_markdown(index=False))
            print({k: v for k, v in verdict.items() if k != "bar"}, flush=True)
            if not verdict["meets_bar"]:
                print("dev check misses the bar: the evaluation faces are not read", flush=True)
                continue
            if args.dev_only:
                continue
        rows, summary, verdict = real_frames.check(model, direction, size)
        rows.to_csv(out / f"{variant}_real.csv", index=False)
        print("### evaluation faces")
        print(real_frames.table(summary).to_markdown(index=False))
        print({k: v for k, v in verdict.items() if k != "bar"}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
