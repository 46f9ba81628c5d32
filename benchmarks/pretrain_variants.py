"""Does more capacity or another setting lift the default magnifier's saturation? Train and measure.

    python benchmarks/pretrain_variants.py --out /tmp/variants \
        --variant base --variant width=32 --variant w_color=3 --variant batch_size=16,steps=1500

Not a test (each variant is a full forward pretraining: about 8 min at the default's 3000 steps, width
16, one thread). Every variant starts from the default profile's `pretrain`, `flow` and
`magnifier.width` and overrides the given keys (`width` is the U-Net's; the others are
`train_config.StageConfig` fields). It trains MagPlus forward on the generic pairs of an existing
`results/<profile>/data/generic` (run `make data` first), writes `<out>/<variant>.safetensors` (+ log
CSV; an interrupted variant resumes), and prints, as `diagnose_magnifier.py` does for a checkpoint,
the magnification the training estimator measures on a fixed batch of generic pairs at each alpha,
with the loss terms and the training time.

With `--snapshots 6000,12000,18000` each variant is trained to every step count in turn (a finished
run asked for more steps continues exactly, as `training.train_magnifier` does) and measured at each:
the magnification against the training budget. The training time column is then cumulative.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import torch

from magplus_lib.data.pairs import GenericPairDataset
from magplus_lib.harness.profiles import load_profile
from magplus_lib.magnifier import train_config, training
from magplus_lib.magnifier.flow import build_flow_estimator
from magplus_lib.magnifier.model import MagUNet
from magplus_lib.magnifier.training import magnification_losses
from magplus_lib.magnifier.weights import load_magnifier


def parse_variant(text: str) -> tuple[str, dict]:
    """'base' -> ('base', {}); 'width=32,steps=1500' -> ('width32_steps1500', {'width': 32, 'steps': 1500})
    (a value with a '.' or an exponent is a float)."""
    if text == "base":
        return "base", {}
    over = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: expected key=value[,key=value...] or 'base'")
        over[key.strip()] = float(value) if re.search(r"[.eE]", value) else int(value)
    tag = "_".join(f"{k}{v:g}" for k, v in over.items())
    return tag, over


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--out", required=True, help="folder for the variants' checkpoints and logs")
    p.add_argument("--variant", action="append", default=[], help="'base' or key=value[,key=value]")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--alphas", type=float, nargs="*", default=[2.0, 4.0, 8.0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--snapshots", default=None, help="comma-separated step counts to train to and measure at")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    prof = load_profile(args.profile)
    size = int(prof["image_size"])
    results = Path("results") / args.profile
    generic = GenericPairDataset(results / "data" / "generic", size)
    flow_net = build_flow_estimator(prof["flow"])
    idx = [int(i) for i in torch.linspace(0, len(generic) - 1, args.pairs).round()]
    img0 = torch.stack([generic[i][0] for i in idx])
    img1 = torch.stack([generic[i][1] for i in idx])
    with torch.no_grad():
        flow_in = flow_net(img0, img1)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'variant':>24} {'alpha':>5} {'L':>8} {'L_mag':>8} {'L_color':>8} {'measured':>9} {'train s':>8}")
    for text in args.variant or ["base"]:
        tag, over = parse_variant(text)
        width = int(over.pop("width", prof["magnifier"]["width"]))
        stage = train_config.stage_config({**prof["pretrain"], **over}, "pretrain")
        tcfg = stage.train_config("forward", size, int(prof.get("seed", 0)))
        snapshots = [int(x) for x in args.snapshots.split(",")] if args.snapshots else [tcfg.steps]
        ckpt = out_dir / f"{tag}.safetensors"
        seconds = 0.0
        for steps in snapshots:
            tcfg.steps = steps
            torch.manual_seed(int(prof.get("seed", 0)))
            t0 = time.perf_counter()
            training.train_magnifier(
                MagUNet(width=width), generic, flow_net, tcfg, ckpt, out_dir / f"{tag}.csv", progress=False
            )
            seconds += time.perf_counter() - t0
            model = load_magnifier(ckpt).eval()
            label = f"{tag}@{steps}" if args.snapshots else tag
            for a in args.alphas:
                alpha = torch.full((len(idx),), a)
                with torch.no_grad():
                    out = model(img0, img1, alpha)
                    loss, l_mag, l_color = magnification_losses(
                        flow_net, out, img0, img1, alpha, tcfg.w_mag, tcfg.w_color, tcfg.flow_scale
                    )
                    measured = float((flow_net(img0, out) * flow_in).sum() / (flow_in * flow_in).sum())
                print(
                    f"{label:>24} {a:>5g} {loss.item():>8.4f} {l_mag.item():>8.4f} {l_color.item():>8.4f} "
                    f"{measured:>9.2f} {seconds:>8.0f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
