"""Why the default profile's magnifier under-magnifies: the FlowMag loss around candidate outputs.

    python benchmarks/diagnose_magnifier.py [--results results/default] [--checkpoint CKPT]

Not a test. On a fixed batch of generic pretraining pairs (64 px, the default profile's frozen
classical estimator) it prints, for several alphas, the loss L = L_mag + 10 L_color (paper Eqs. 1-3)
and the magnification the estimator measures for hand-made outputs G:

- `identity`      G = It (what an untrained residual generator returns),
- `eulerian`      G = I0 + alpha (It - I0) (linear Eulerian magnification: amplifies noise too),
- `warp_It`       G = It backward-warped by -(alpha - 1) F(I0, It) (a motion-compensated oracle),
- `pixels`        G optimised directly in pixel space by Adam on L, starting from It (no network),

and, with `--checkpoint`, the trained generator's own output. A last block measures how much flow the
estimator reads between It and photometrically perturbed copies of it (no motion at all): the error a
generator whose colours are slightly off is charged in L_mag. If `pixels` and `warp_It` reach the
requested alpha while the trained generator does not, the objective is fine and the generator is
what falls short (capacity, optimisation budget), which is what the README reports.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from magplus_lib.data.pairs import GenericPairDataset
from magplus_lib.magnifier.flow import build_flow_estimator, gaussian_blur, warp
from magplus_lib.magnifier.training import magnification_losses
from magplus_lib.magnifier.weights import load_magnifier


def _measured(flow_net, img0, out, flow_in) -> float:
    """Least-squares slope of the estimator's flow of `out` on the input flow (1 = unmagnified)."""
    with torch.no_grad():
        return float((flow_net(img0, out) * flow_in).sum() / (flow_in * flow_in).sum())


def optimise_pixels(flow_net, img0, img1, alpha, steps: int = 150, lr: float = 3e-3) -> torch.Tensor:
    g = img1.clone().requires_grad_(True)
    opt = torch.optim.Adam([g], lr=lr)
    for _ in range(steps):
        loss = magnification_losses(flow_net, g, img0, img1, alpha)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            g.clamp_(0, 1)
    return g.detach()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results/default")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--alphas", type=float, nargs="*", default=[2.0, 4.0, 8.0])
    p.add_argument("--checkpoint", default=None, help="a trained MagPlus checkpoint to compare")
    p.add_argument("--photometric", default="lcn", help="classical estimator mode: none | lcn")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    generic = GenericPairDataset(Path(args.results) / "data" / "generic", args.size)
    idx = [int(i) for i in torch.linspace(0, len(generic) - 1, args.pairs).round()]
    img0 = torch.stack([generic[i][0] for i in idx])
    img1 = torch.stack([generic[i][1] for i in idx])
    flow_net = build_flow_estimator({"estimator": "classical", "photometric": args.photometric})
    model = load_magnifier(args.checkpoint).eval() if args.checkpoint else None
    with torch.no_grad():
        flow_in = flow_net(img0, img1)
    mag = flow_in.norm(dim=1)
    print(
        f"{len(idx)} generic pairs at {args.size} px, classical estimator ({args.photometric}): "
        f"|flow| mean {mag.mean():.3f} px, "
        f"99th percentile {mag.flatten().quantile(0.99):.3f} px"
    )
    print(f"{'alpha':>5} {'output':>10} {'L':>8} {'L_mag':>8} {'10 L_color':>10} {'measured':>9}")
    for a in args.alphas:
        alpha = torch.full((len(idx),), a)
        outputs = {
            "identity": img1,
            "eulerian": (img0 + a * (img1 - img0)).clamp(0, 1),
            "warp_It": warp(img1, -(a - 1) * flow_in).clamp(0, 1),
            "pixels": optimise_pixels(flow_net, img0, img1, alpha),
        }
        if model is not None:
            with torch.no_grad():
                outputs["trained"] = model(img0, img1, alpha)
        for name, out in outputs.items():
            with torch.no_grad():
                loss, l_mag, l_color = magnification_losses(flow_net, out, img0, img1, alpha)
            print(
                f"{a:>5g} {name:>10} {loss.item():>8.4f} {l_mag.item():>8.4f} {10 * l_color.item():>10.4f} "
                f"{_measured(flow_net, img0, out, flow_in):>9.2f}",
                flush=True,
            )
    perturbed = {
        "colour shift 0.03": (img1 + torch.tensor([0.03, -0.02, 0.01]).view(1, 3, 1, 1)).clamp(0, 1),
        "contrast x0.9": ((img1 - 0.5) * 0.9 + 0.5).clamp(0, 1),
        "blur sigma 0.7": gaussian_blur(img1, 0.7),
    }
    for name, out in perturbed.items():
        with torch.no_grad():
            err = (flow_net(img0, out) - flow_in).norm(dim=1).mean()
        print(f"spurious flow, {name}: {err:.3f} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
