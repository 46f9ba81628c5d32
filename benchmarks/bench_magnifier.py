"""Magnifier throughput on this machine: magnify frames/s and training step time, with GFLOP/s and the
flow estimator's share of a training step.

    python benchmarks/bench_magnifier.py            # short run: 64 and 128 px, width 16
    python benchmarks/bench_magnifier.py --full     # the grid: 64/128/256/512 px x widths 16/32/64

Not a test: numbers depend on the machine and on what else runs on it. FLOPs are counted with
torch.utils.flop_counter (convolutions and matrix products; element-wise work is not counted), so the
GFLOP/s figures are lower bounds of the arithmetic actually done.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from magplus_lib.magnifier.flow import build_flow_estimator
from magplus_lib.magnifier.model import MagUNet, count_parameters
from magplus_lib.magnifier.training import magnification_losses, sample_alphas


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def bench(size: int, width: int, batch: int, repeats: int, flow_cfg: dict) -> dict:
    torch.manual_seed(0)
    model = MagUNet(width=width)
    flow_net = build_flow_estimator(flow_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    img0 = torch.rand(batch, 3, size, size)
    img1 = torch.roll(img0, 1, -1)
    alpha = sample_alphas(batch, 1.0, 16.0, torch.Generator().manual_seed(0))

    def magnify():
        with torch.inference_mode():
            model.eval()(img0, img1, alpha)

    def train_step():
        model.train()
        gen = model(img0, img1, alpha)
        loss, _, _ = magnification_losses(flow_net, gen, img0, img1, alpha)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def flow_only():
        # The estimator's part of a step: target flow (no grad) + the generated frame's flow and its backward.
        with torch.no_grad():
            flow_net(img0, img1)
        x = img1.clone().requires_grad_(True)
        flow_net(img0, x).abs().mean().backward()

    t_mag = _timed(magnify, repeats)
    t_step = _timed(train_step, repeats)
    t_flow = _timed(flow_only, repeats)
    f_mag, f_step = _flops(magnify), _flops(train_step)
    return {
        "size": size,
        "width": width,
        "params_M": count_parameters(model) / 1e6,
        "batch": batch,
        "magnify_fps": batch / t_mag,
        "magnify_GFLOPs": f_mag / t_mag / 1e9,
        "step_s": t_step,
        "step_GFLOPs": f_step / t_step / 1e9,
        "flow_share": min(1.0, t_flow / t_step),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="64/128/256/512 px x widths 16/32/64 (takes minutes)")
    p.add_argument("--sizes", type=int, nargs="*", default=None)
    p.add_argument("--widths", type=int, nargs="*", default=None)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--estimator", default="classical", help="flow estimator timed in the training step")
    p.add_argument("--photometric", default="lcn", help="classical estimator mode (default profile: lcn)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.sizes or ([64, 128, 256, 512] if args.full else [64, 128])
    widths = args.widths or ([16, 32, 64] if args.full else [16])
    threads = torch.get_num_threads()
    mode = f" ({args.photometric})" if args.estimator == "classical" else ""
    print(f"torch {torch.__version__}, {threads} threads, batch {args.batch}, flow {args.estimator}{mode}")
    cols = ["size", "width", "params", "mag fr/s", "GFLOP/s", "step s", "GFLOP/s", "flow %"]
    print(" ".join(f"{c:>9}" for c in cols))
    for size in sizes:
        for width in widths:
            flow_cfg = {"estimator": args.estimator}
            if args.estimator == "classical":
                flow_cfg["photometric"] = args.photometric
            r = bench(size, width, args.batch, args.repeats, flow_cfg)
            vals = [
                f"{r['size']}",
                f"{r['width']}",
                f"{r['params_M']:.2f}M",
                f"{r['magnify_fps']:.2f}",
                f"{r['magnify_GFLOPs']:.2f}",
                f"{r['step_s']:.3f}",
                f"{r['step_GFLOPs']:.2f}",
                f"{100 * r['flow_share']:.1f}%",
            ]
            print(" ".join(f"{v:>9}" for v in vals), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
