"""Two CPU processes under torchrun (gloo) train exactly like one process with the combined batch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from magplus_lib.magnifier.flow import ClassicalFlow
from magplus_lib.magnifier.training import train_magnifier
from magplus_lib.magnifier.weights import load_magnifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SETUP = textwrap.dedent(
    """
    import torch
    from magplus_lib.magnifier.flow import ClassicalFlow
    from magplus_lib.magnifier.model import MagUNet
    from magplus_lib.magnifier.training import train_magnifier
    from magplus_lib.magnifier.train_config import TrainConfig

    def dataset():
        g = torch.Generator().manual_seed(0)
        base = torch.nn.functional.avg_pool2d(torch.rand(6, 3, 24, 24, generator=g), 3, 1, 1)
        return [(b[:, 2:-2, 2:-2], b[:, 2:-2, 3:-1]) for b in base]

    def model():
        torch.manual_seed(0)
        return MagUNet(width=4)

    def cfg(batch):
        return TrainConfig(steps=1, batch_size=batch, size=16, checkpoint_every=0, lr=1e-3, seed=7)
    """
)

WORKER = SETUP + textwrap.dedent(
    """
    import sys
    train_magnifier(model(), dataset(), ClassicalFlow(), cfg(2), sys.argv[1], sys.argv[2], progress=False)
    """
)


def test_two_gloo_processes_equal_one_process_with_the_combined_batch(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    env.pop("WORLD_SIZE", None)
    ckpt = tmp_path / "ddp.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(ckpt),
        str(tmp_path / "ddp.csv"),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]

    namespace: dict = {}
    exec(SETUP, namespace)  # the very same model, data and configuration, one process, batch 4
    single = namespace["model"]()
    single_log = train_magnifier(
        single,
        namespace["dataset"](),
        ClassicalFlow(),
        namespace["cfg"](4),
        tmp_path / "single.safetensors",
        progress=False,
    )
    ddp = load_magnifier(ckpt).state_dict()
    ref = single.state_dict()
    init = namespace["model"]().state_dict()
    # BatchNorm statistics come from the synchronised forward pass: equal to the combined batch's.
    for k in ref:
        if "running" in k:
            assert torch.allclose(ddp[k], ref[k], atol=1e-6), k
        elif k.endswith("num_batches_tracked"):
            assert torch.equal(ddp[k], ref[k])
    # Weights after one Adam step. Adam divides each gradient element by its own magnitude, so elements
    # whose gradient is at round-off level (the conv biases in front of BatchNorm, whose true gradient
    # is zero, and a few others) may step differently; everything else must agree to round-off.
    conv_bias_before_bn = {
        k for k in ref if k.endswith("double_conv.0.bias") or k.endswith("double_conv.3.bias")
    }
    diffs = torch.cat(
        [
            (ddp[k] - ref[k]).abs().flatten()
            for k in ref
            if k not in conv_bias_before_bn and "running" not in k and ref[k].is_floating_point()
        ]
    )
    lr = 1e-3
    assert (diffs < 1e-6).float().mean() > 0.99
    assert diffs.max() < 0.1 * lr
    moved = (ref["up_layers.4.conv.weight"] - init["up_layers.4.conv.weight"]).abs().max()
    assert moved > 0.5 * lr  # the runs did train
    import pandas as pd

    loss_ddp = pd.read_csv(tmp_path / "ddp.csv")["loss"].iloc[0]
    loss_single = single_log["loss"].iloc[0]
    assert abs(loss_ddp - loss_single) < 1e-5 * abs(loss_single)
