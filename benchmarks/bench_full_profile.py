"""What the full profile costs: its three heavy operations timed on this CPU, and a projection of
`make paper PROFILE=full` on one GPU from their FLOP counts and published GPU throughput.

    python benchmarks/bench_full_profile.py --threads 2 > docs/bench_full_profile.txt

Measured (random weights: the arithmetic does not depend on them): one RAFT-large forward at 512 px
(5 updates, the profile's setting); one training step of the width-64 magnifier at 512 px through
RAFT-large (batch 1; the profile trains with batch 8); one FOMM vox-256 forward (one driving frame).
FLOPs are counted by torch.utils.flop_counter (convolutions and matrix products only: RAFT's
grid-sample lookups and every element-wise operation are not counted), so the projection is a
*projection*, a lower bound at the stated utilisation, not a measurement. Not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from magplus_lib.backbones.fomm import FOMM, vox256_config
from magplus_lib.harness.profiles import REPO_ROOT
from magplus_lib.magnifier.flow import build_flow_estimator
from magplus_lib.magnifier.model import MagUNet
from magplus_lib.magnifier.training import magnification_losses, sample_alphas

# Published dense tensor-core throughput (vendor data sheets), TFLOP/s: (BF16, TF32). The magnifier runs
# under bf16 autocast; the flow estimator is kept in float32 (training.magnification_losses), whose
# convolutions cuDNN runs in TF32 by default.
GPU_PEAK_TFLOPS = {"NVIDIA A100 SXM": (312.0, 156.0), "NVIDIA H100 SXM": (989.0, 495.0)}
UTILISATION = (0.2, 0.4)  # assumed share of peak a conv net of this kind sustains (a stated assumption)


def measure(fn, repeats: int) -> tuple[float, int]:
    """(seconds per call after one warm-up call, FLOPs per call)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats, counter.get_total_flops()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from torchvision.models.optical_flow import raft_large

    size = args.size
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "raft_large_C_T_V1-22a6c225.pth"  # official file name and format
        torch.save(raft_large(weights=None, progress=False).state_dict(), weights)
        flow = build_flow_estimator(
            {"estimator": "raft", "raft_model": "large", "raft_weights": str(weights)}
        )
    img0 = torch.rand(1, 3, size, size)
    img1 = torch.roll(img0, 1, -1)
    rows = {}

    def raft_forward():
        with torch.no_grad():
            flow(img0, img1)

    rows["RAFT-large forward, 5 updates"] = measure(raft_forward, args.repeats)

    model = MagUNet(width=64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    alpha = sample_alphas(1, 1.0, 16.0, torch.Generator().manual_seed(0))

    def train_step():
        loss, _, _ = magnification_losses(flow, model(img0, img1, alpha), img0, img1, alpha)
        opt.zero_grad()
        loss.backward()
        opt.step()

    rows["magnifier width 64 training step through RAFT-large (batch 1)"] = measure(train_step, args.repeats)

    def flow_part():  # the estimator's share of a step: target flow, generated frame's flow and backward
        with torch.no_grad():
            flow(img0, img1)
        x = img1.clone().requires_grad_(True)
        flow(img0, x).abs().mean().backward()

    rows["of which RAFT-large (target flow + generated flow and its backward)"] = measure(
        flow_part, args.repeats
    )

    fomm = FOMM(vox256_config()).eval()
    src, drv = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    rows["FOMM vox-256 forward, 256 px (one frame)"] = measure(lambda: fomm.animate(src, drv), args.repeats)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {size} px")
    print("| operation | CPU s | GFLOP (counted) |\n|---|---|---|")
    for name, (sec, flops) in rows.items():
        print(f"| {name} | {sec:.2f} | {flops / 1e9:.1f} |")

    full = yaml.safe_load((REPO_ROOT / "notebooks" / "profiles" / "full.yaml").read_text())
    n_ds = len(full["datasets"])
    samples = 2 * full["pretrain"]["steps"] * full["pretrain"]["batch_size"]  # forward + inverse
    samples += 2 * n_ds * full["finetune"]["steps"] * full["finetune"]["batch_size"]  # 4 fine-tunes
    step_s, step_flops = rows["magnifier width 64 training step through RAFT-large (batch 1)"]
    flow_flops = rows["of which RAFT-large (target flow + generated flow and its backward)"][1]
    total, total_flow = samples * step_flops, samples * min(flow_flops, step_flops)
    print(
        f"\nmagnifier training of the full profile: {samples:,} samples (2 x {full['pretrain']['steps']} "
        f"pretraining steps x {full['pretrain']['batch_size']} + {2 * n_ds} fine-tunes x "
        f"{full['finetune']['steps']} x {full['finetune']['batch_size']}) = {total / 1e15:.0f} PFLOP "
        f"counted, {total_flow / 1e15:.0f} of them in RAFT; on this CPU {samples * step_s / 3600:,.0f} h"
    )
    print("| GPU (projection) | hours at 40% of peak | hours at 20% of peak |\n|---|---|---|")
    for gpu, (bf16, tf32) in GPU_PEAK_TFLOPS.items():
        seconds = (total - total_flow) / (bf16 * 1e12) + total_flow / (tf32 * 1e12)
        hours = [seconds / u / 3600 for u in sorted(UTILISATION, reverse=True)]
        print(f"| {gpu} (magnifier BF16, RAFT TF32) | {hours[0]:.1f} | {hours[1]:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
