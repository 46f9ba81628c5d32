"""Flow estimators: accuracy on known flows, differentiability, freezing, RAFT weight loading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from magplus_lib.harness.profiles import ProfileError
from magplus_lib.magnifier.flow import (
    ClassicalFlow,
    FlowConfig,
    RaftFlow,
    build_flow_estimator,
    endpoint_error,
    farneback_flow,
    pixel_grid,
    warp,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def texture(coords: torch.Tensor, seed: int = 0, waves: int = 24) -> torch.Tensor:
    """An analytic RGB texture (sum of random plane waves, wavelengths 5-30 px) evaluated at any
    (B, 2, H, W) coordinates, so a warped copy can be rendered exactly at sub-pixel positions."""
    g = torch.Generator().manual_seed(seed)
    x, y = coords[:, 0].double(), coords[:, 1].double()
    chans = []
    for _ in range(3):
        acc = torch.zeros_like(x)
        for _ in range(waves):
            lam, th, ph = (
                (5 + 25 * torch.rand(1, generator=g)).item(),
                *(2 * math.pi * torch.rand(2, generator=g)),
            )
            acc = acc + torch.sin(2 * math.pi * (x * math.cos(th) + y * math.sin(th)) / lam + ph)
        chans.append(acc)
    t = torch.stack(chans, 1)
    return (0.5 + 0.45 * t / t.abs().amax()).float()


def rendered_pair(flow_fn, size: int = 64, seed: int = 0):
    """img0 = T(p), img1 = T(q - f(q')) with f(p) the true flow on img0's grid (inverse by fixed point),
    so that img1(p + f(p)) = img0(p) holds exactly."""
    p = pixel_grid(size, size, dtype=torch.float64)
    src = p.clone()
    for _ in range(40):
        src = p - flow_fn(src)
    return texture(p, seed), texture(src, seed), flow_fn(p).float()


def constant(fx: float, fy: float):
    return lambda p: torch.stack([torch.full_like(p[:, 0], fx), torch.full_like(p[:, 1], fy)], 1)


def rotation_zoom(p: torch.Tensor) -> torch.Tensor:
    x, y = p[:, 0] - 32, p[:, 1] - 32
    return torch.stack([-0.1 * y + 0.05 * x, 0.1 * x + 0.05 * y], 1)


def test_warp_integer_shift_and_identity():
    img = torch.rand(1, 3, 8, 9)
    flow = torch.zeros(1, 2, 8, 9)
    assert torch.allclose(warp(img, flow), img, atol=1e-6)
    flow[:, 0] = 2.0  # out(p) = img(p + 2 in x)
    out = warp(img, flow)
    assert torch.allclose(out[..., :, :-2], img[..., :, 2:], atol=1e-6)


# (name, flow, bound on the interior EPE in px). Interior = 12 px border, where no pixel leaves the view.
CASES = [
    ("0.3px", constant(0.3, -0.2), 0.06),
    ("2.5px", constant(2.0, 1.5), 0.06),
    ("6px", constant(-5.0, 3.3), 0.08),
    ("10px", constant(8.0, -6.0), 0.2),
    ("rotation+zoom", rotation_zoom, 0.06),
]


@pytest.mark.parametrize("photometric", ["none", "lcn"])
@pytest.mark.parametrize("name,flow_fn,bound", CASES, ids=[c[0] for c in CASES])
def test_classical_flow_recovers_known_flow(name, flow_fn, bound, photometric):
    img0, img1, truth = rendered_pair(flow_fn)
    est = build_flow_estimator({"estimator": "classical", "photometric": photometric})
    flow = est(img0, img1)
    epe = endpoint_error(flow, truth, border=12)
    mean = truth.norm(dim=1).mean()
    print(f"classical ({photometric}) EPE {name}: {epe:.3f} px (mean |flow| {mean:.2f} px)")
    assert epe < bound
    # the estimate is consistent with the warp convention: img1 warped by it reproduces img0
    residual = (warp(img1, flow) - img0)[..., 12:-12, 12:-12].abs().mean()
    assert residual < 0.3 * (img1 - img0)[..., 12:-12, 12:-12].abs().mean()


def test_local_contrast_normalisation_ignores_photometric_change():
    # A colour shift plus a contrast change of a still image is no motion. Raw brightness constancy reads
    # it as flow; the "lcn" mode must not (this is what a generator trained through the estimator sees
    # when its output's colours are slightly off).
    img0, _, _ = rendered_pair(constant(0, 0))
    shifted = ((img0 - 0.5) * 0.9 + 0.5 + torch.tensor([0.04, -0.03, 0.02]).view(1, 3, 1, 1)).clamp(0, 1)
    raw = build_flow_estimator({"estimator": "classical"})(img0, shifted)
    lcn = build_flow_estimator({"estimator": "classical", "photometric": "lcn"})(img0, shifted)
    raw_px, lcn_px = raw.norm(dim=1).mean().item(), lcn.norm(dim=1).mean().item()
    print(f"spurious flow from a colour/contrast change: raw {raw_px:.3f} px, lcn {lcn_px:.4f} px")
    assert lcn_px < 0.02 and raw_px > 5 * lcn_px
    with pytest.raises(ValueError, match="photometric must be 'none' or 'lcn'"):
        build_flow_estimator({"estimator": "classical", "photometric": "census"})


def test_classical_flow_zero_for_identical_and_textureless_images():
    img0, _, _ = rendered_pair(constant(0, 0), size=32)
    est = ClassicalFlow()
    assert est(img0, img0).abs().max() < 1e-5
    flat = torch.full((1, 3, 32, 32), 0.5)
    assert est(flat, flat * 1.01).abs().max() < 1e-3  # Tikhonov term: no blow-up without texture


def test_classical_flow_gradient_matches_finite_differences():
    torch.manual_seed(0)
    img0 = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 12, 12, dtype=torch.float64), 3, 1, 1)
    img1 = (torch.roll(img0, 1, -1) * 0.9 + 0.05).requires_grad_(True)
    img0 = img0.requires_grad_(True)
    est = ClassicalFlow(FlowConfig(levels=2, min_size=6, iterations=2))
    assert torch.autograd.gradcheck(lambda b: est(img0.detach(), b), (img1,), eps=1e-6, atol=1e-5, rtol=1e-3)
    # w.r.t. the first image: random-projection check (fast_mode) keeps the test short
    assert torch.autograd.gradcheck(
        lambda a: est(a, img1.detach()), (img0,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True
    )


def test_estimators_are_frozen_and_config_errors():
    est = build_flow_estimator({"estimator": "classical", "iterations": 2})
    assert not est.training and not any(p.requires_grad for p in est.parameters())
    with pytest.raises(ValueError, match="unknown flow estimator 'pwc'"):
        build_flow_estimator({"estimator": "pwc"})
    with pytest.raises(ProfileError, match="levles"):
        build_flow_estimator({"levles": 3})


def test_farneback_agrees_with_the_warp_convention():
    img0, img1, truth = rendered_pair(constant(1.5, -1.0))
    fb = farneback_flow(img0[0], img1[0])
    inner = fb[12:-12, 12:-12].reshape(-1, 2).mean(0)
    assert np.allclose(inner, [1.5, -1.0], atol=0.2)


def _raft_file(tmp_path, model="small"):
    from torchvision.models.optical_flow import raft_large, raft_small

    torch.manual_seed(0)
    net = (raft_small if model == "small" else raft_large)(weights=None)
    path = tmp_path / f"raft_{model}.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_raft_loads_local_weights_frozen_and_differentiable(tmp_path):
    path, state = _raft_file(tmp_path)
    est = build_flow_estimator(
        {"estimator": "raft", "raft_model": "small", "raft_weights": str(path), "raft_updates": 2}
    )
    loaded = est.net.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    est.train()  # must stay frozen
    assert not est.training and not est.net.training
    assert not any(p.requires_grad for p in est.parameters())
    img0 = torch.rand(1, 3, 60, 68)  # not multiples of 8: padded inside, cropped back
    img1 = torch.roll(img0, 2, -1).requires_grad_(True)
    flow = est(img0, img1)
    assert flow.shape == (1, 2, 60, 68) and torch.isfinite(flow).all()
    flow.abs().mean().backward()
    assert img1.grad is not None and img1.grad.abs().sum() > 0
    # deterministic and independent of batch composition (eval mode BatchNorm)
    pair = est(torch.cat([img0, img0.flip(-1)]), torch.cat([img1.detach(), img1.detach().flip(-1)]))
    assert torch.allclose(pair[:1], flow.detach(), atol=1e-5)


def test_raft_missing_or_wrong_weights_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="raft_large_C_T_V1-22a6c225.pth") as info:
        RaftFlow(tmp_path / "nope.pth", "large")
    assert "RAFT_WEIGHTS" in str(info.value)
    path, _ = _raft_file(tmp_path, "small")
    with pytest.raises(ValueError, match="raft_small.pth.*raft_large_C_T_V1.*does not match") as info:
        RaftFlow(path, "large")
    # the first few mismatches and their counts, not torch's list of every key (8,000+ characters)
    assert len(str(info.value)) < 1000 and "missing" in str(info.value)
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        RaftFlow(bad, "small")
