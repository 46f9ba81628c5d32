"""The bf16 autocast path of the full profile (CUDA there), exercised on the CPU, which also has bf16
autocast: the magnifier runs in bf16, the flow estimator and the losses stay float32, and a step under
autocast lowers the loss as a float32 step does."""

import torch

from magplus_lib.magnifier.flow import ClassicalFlow
from magplus_lib.magnifier.model import MagUNet
from magplus_lib.magnifier.training import magnification_losses


def batch():
    g = torch.Generator().manual_seed(0)
    base = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 28, 28, generator=g), 5, 1, 2)
    return base[..., 2:-2, 2:-2], base[..., 2:-2, 3:-1], torch.tensor([3.0, 5.0])


def test_bf16_autocast_keeps_flow_and_losses_in_float32_and_close_to_float32():
    torch.manual_seed(0)
    model, flow = MagUNet(width=8), ClassicalFlow()
    img0, img1, alpha = batch()
    full, _, _ = magnification_losses(flow, model(img0, img1, alpha), img0, img1, alpha)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        generated = model(img0, img1, alpha)
        loss, l_mag, l_color = magnification_losses(flow, generated, img0, img1, alpha)
    assert generated.dtype == torch.bfloat16  # autocast really ran the network in bf16
    assert loss.dtype == l_mag.dtype == l_color.dtype == torch.float32
    assert torch.isfinite(loss) and abs(loss.item() - full.item()) < 0.02 * full.item()


def test_steps_under_bf16_autocast_lower_the_loss():
    torch.manual_seed(0)
    model, flow = MagUNet(width=8), ClassicalFlow()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    img0, img1, alpha = batch()
    losses = []
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _, _ = magnification_losses(flow, model(img0, img1, alpha), img0, img1, alpha)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert losses[-1] < losses[0]
