"""Training: alpha sampling, paired augmentation, the losses, frozen flow, checkpoints and exact resume."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from magplus_lib.magnifier.flow import ClassicalFlow, pixel_grid, warp
from magplus_lib.magnifier.model import MagUNet
from magplus_lib.magnifier.train_config import AugmentConfig, StageConfig, TrainConfig, stage_config
from magplus_lib.magnifier.training import (
    augment_pair,
    magnification_losses,
    optimizer_path,
    sample_alphas,
    set_train_mode,
    state_digest,
    train_magnifier,
)
from magplus_lib.magnifier.weights import load_magnifier, read_side

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_alpha_sampling_is_log2_uniform():
    g = torch.Generator().manual_seed(0)
    a = sample_alphas(20000, 1.0, 16.0, g)
    assert a.min() >= 1.0 and a.max() <= 16.0
    e = torch.log2(a)
    assert abs(e.mean() - 2.0) < 0.05 and abs(e.std() - 4 / math.sqrt(12)) < 0.03
    # a quarter of the mass in each octave pair: P(alpha < 2) = 1/4
    assert abs((a < 2).float().mean() - 0.25) < 0.02
    inv = sample_alphas(20000, 1 / 16, 1.0, g)
    assert inv.min() >= 1 / 16 and inv.max() <= 1.0 and abs(torch.log2(inv).mean() + 2.0) < 0.05
    with pytest.raises(ValueError):
        sample_alphas(3, 2.0, 1.0, g)


def test_augmentation_applies_one_transform_to_both_frames():
    torch.manual_seed(0)
    img = torch.rand(3, 40, 48)
    cfg = AugmentConfig()
    a0, a1 = augment_pair(img, img.clone(), 32, cfg, torch.Generator().manual_seed(1))
    assert a0.shape == (3, 32, 32) and torch.equal(a0, a1)  # identical frames stay identical
    b0, _ = augment_pair(img, img.clone(), 32, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a0, b0)  # deterministic for a seed
    c0, _ = augment_pair(img, img.clone(), 32, cfg, torch.Generator().manual_seed(2))
    assert not torch.equal(a0, c0)
    # a horizontal shift between the frames survives as a (flipped/rotated/scaled) motion, not a colour change
    shifted = torch.roll(img, 2, -1)
    s0, s1 = augment_pair(
        img, shifted, 32, AugmentConfig(rotation=0, hue=0), torch.Generator().manual_seed(3)
    )
    assert (s0 - s1).abs().mean() > 0.01
    plain, _ = augment_pair(img, img, 20, AugmentConfig(enabled=False), torch.Generator())
    ref = torch.nn.functional.interpolate(img[None], size=(20, 20), mode="bilinear", antialias=True)[0]
    assert torch.allclose(plain, ref.clamp(0, 1), atol=1e-6)


class ShiftFlow(torch.nn.Module):
    """A stand-in estimator with a hand-computable output: flow_x = mean(img1 - img0), flow_y = 0."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()), requires_grad=False)

    def forward(self, img0, img1):
        d = (img1 - img0).mean(dim=(1, 2, 3), keepdim=True) * self.scale
        return torch.cat([d.expand(-1, 1, *img0.shape[-2:]), torch.zeros_like(img0[:, :1])], 1)


def test_losses_hand_computed_case():
    img0 = torch.full((1, 3, 8, 8), 0.2)
    img1 = torch.full((1, 3, 8, 8), 0.3)  # flow_x = 0.1
    gen = torch.full((1, 3, 8, 8), 0.5, requires_grad=True)  # flow_x = 0.3
    loss, l_mag, l_color = magnification_losses(ShiftFlow(), gen, img0, img1, torch.tensor([4.0]))
    # L_mag: mean over both channels of |4 * (0.1, 0) - (0.3, 0)| = (0.1 + 0) / 2
    assert math.isclose(l_mag.item(), 0.05, rel_tol=1e-5)
    # constant images: warping changes nothing, L_color = |0.3 - 0.5|
    assert math.isclose(l_color.item(), 0.2, rel_tol=1e-5)
    assert math.isclose(loss.item(), 0.05 + 10 * 0.2, rel_tol=1e-5)
    loss.backward()
    assert gen.grad is not None and gen.grad.abs().sum() > 0


def test_losses_vanish_for_the_exactly_magnified_frame():
    """With the real classical estimator, the analytically magnified frame has a much smaller L_mag
    than the unmagnified one, which has L_mag ~ (alpha - 1) |flow|."""
    from test_flow import constant, texture  # tests/ is on sys.path under pytest

    p = pixel_grid(48, 48, dtype=torch.float64)
    d, alpha = 0.5, 4.0
    img0 = texture(p)
    img1 = texture(p - constant(d, 0)(p))
    magnified = texture(p - constant(alpha * d, 0)(p))
    est = ClassicalFlow()
    a = torch.tensor([alpha])
    _, l_true, c_true = magnification_losses(est, magnified, img0, img1, a)
    _, l_none, _ = magnification_losses(est, img1, img0, img1, a)
    assert math.isclose(float(l_none), (alpha - 1) * d / 2, rel_tol=0.15)  # x only; mean over 2 channels
    assert float(l_true) < 0.2 * float(l_none)
    assert warp(img1, est(img0, img1)).shape == img0.shape and float(c_true) < 0.05


def test_loss_reference_size_makes_l_mag_independent_of_the_resolution():
    """One scene and motion rendered at 32 and 64 px, the unmagnified frame as the output. In crop
    pixels L_mag doubles with the resolution; in pixels of a 512 px frame (loss_reference_size) it is
    the same at both sizes, (alpha - 1) * d / 2 * 16, as FlowMag would measure it at 512 px."""
    from test_flow import constant, texture

    est, alpha, d = ClassicalFlow(), torch.tensor([4.0]), 0.5  # d: motion in pixels at 32 px
    raw, scaled = {}, {}
    for size in (32, 64):
        s = size / 32
        p = pixel_grid(size, size, dtype=torch.float64)
        img0, img1 = texture(p / s), texture((p - constant(d * s, 0)(p)) / s)
        cfg = TrainConfig(size=size, loss_reference_size=512)
        assert cfg.flow_scale == 512 / size and TrainConfig(size=size).flow_scale == 1.0
        _, raw[size], _ = magnification_losses(est, img1, img0, img1, alpha)
        _, scaled[size], _ = magnification_losses(est, img1, img0, img1, alpha, flow_scale=cfg.flow_scale)
    assert math.isclose(float(raw[64] / raw[32]), 2.0, rel_tol=0.1)
    assert math.isclose(float(scaled[64] / scaled[32]), 1.0, rel_tol=0.1)
    assert math.isclose(float(scaled[32]), 3 * d / 2 * 16, rel_tol=0.15)


def tiny_dataset(n=6, size=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(n, 3, size + 4, size + 4, generator=g), 3, 1, 1)
    return [(b[:, 2:-2, 2:-2], b[:, 2:-2, 3:-1]) for b in base]


def tiny_cfg(**kw):
    base = dict(steps=6, batch_size=2, size=16, checkpoint_every=2, lr=1e-3, seed=5)
    base.update(kw)
    return TrainConfig(**base)


def test_training_reduces_loss_and_keeps_flow_frozen(tmp_path):
    torch.manual_seed(0)
    model, flow = MagUNet(width=4), ShiftFlow()
    before = flow.scale.clone()
    cfg = tiny_cfg(steps=30, lr=3e-3, augment=AugmentConfig(enabled=False), checkpoint_every=0)
    hist = train_magnifier(model, tiny_dataset(), flow, cfg, tmp_path / "m.safetensors", progress=False)
    assert hist["loss"].iloc[-5:].mean() < 0.75 * hist["loss"].iloc[:5].mean()
    assert torch.equal(flow.scale, before) and flow.scale.grad is None and not flow.training
    side = read_side(tmp_path / "m.safetensors")
    assert side["training"]["complete"] and side["training"]["step"] == 30


def test_resume_after_kill_is_bit_identical(tmp_path):
    data, flow = tiny_dataset(), ClassicalFlow()
    torch.manual_seed(0)
    init = MagUNet(width=4).state_dict()

    full = MagUNet(width=4)
    full.load_state_dict(init)
    hist_full = train_magnifier(
        full, data, flow, tiny_cfg(), tmp_path / "a.safetensors", tmp_path / "a.csv", progress=False
    )

    class Killed(RuntimeError):
        pass

    def kill_at_5(step, row):
        if step == 5:  # the last checkpoint is at step 4: step 5 is lost and redone
            raise Killed

    broken = MagUNet(width=4)
    broken.load_state_dict(init)
    with pytest.raises(Killed):
        train_magnifier(
            broken,
            data,
            flow,
            tiny_cfg(),
            tmp_path / "b.safetensors",
            tmp_path / "b.csv",
            progress=False,
            on_step=kill_at_5,
        )
    assert read_side(tmp_path / "b.safetensors")["training"]["step"] == 4
    assert optimizer_path(tmp_path / "b.safetensors").is_file()
    # disturb every global RNG: the resumed run must restore them from the side file
    torch.manual_seed(123)
    resumed = MagUNet(width=4)  # fresh weights: everything must come from the checkpoint
    hist_resumed = train_magnifier(
        resumed, data, flow, tiny_cfg(), tmp_path / "b.safetensors", tmp_path / "b.csv", progress=False
    )
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(
        load_magnifier(tmp_path / "a.safetensors").state_dict()["up_layers.4.conv.weight"],
        load_magnifier(tmp_path / "b.safetensors").state_dict()["up_layers.4.conv.weight"],
    )
    log_a, log_b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert list(log_b["step"]) == [1, 2, 3, 4, 5, 6]
    assert log_a["loss"].tolist() == log_b["loss"].tolist()
    assert hist_full["loss"].tolist() == hist_resumed["loss"].tolist()

    # a finished checkpoint is loaded, not retrained
    again = MagUNet(width=4)
    train_magnifier(again, data, flow, tiny_cfg(), tmp_path / "a.safetensors", progress=False)
    assert all(torch.equal(a[k], again.state_dict()[k]) for k in a)
    # a checkpoint from another configuration is refused with a clear message
    with pytest.raises(ValueError, match=r"a.safetensors.*lr differ.*0.001.*0.002"):
        train_magnifier(
            MagUNet(width=4), data, flow, tiny_cfg(lr=2e-3), tmp_path / "a.safetensors", progress=False
        )
    # ... and so is a shorter run than the one that wrote it (it cannot be undone)
    with pytest.raises(ValueError, match=r"a.safetensors.*steps differ.*6.*4"):
        train_magnifier(
            MagUNet(width=4), data, flow, tiny_cfg(steps=4), tmp_path / "a.safetensors", progress=False
        )


def test_more_steps_continue_a_finished_run_exactly(tmp_path):
    data, flow = tiny_dataset(), ClassicalFlow()
    torch.manual_seed(0)
    init = MagUNet(width=4).state_dict()
    runs = {}
    for name, steps in (("long", [8]), ("extended", [6, 8])):
        model = MagUNet(width=4)
        model.load_state_dict(init)
        for n in steps:  # the 6-step run finishes, then the profile asks for 8
            hist = train_magnifier(
                model,
                data,
                flow,
                tiny_cfg(steps=n),
                tmp_path / f"{name}.safetensors",
                tmp_path / f"{name}.csv",
                progress=False,
            )
        runs[name] = (model.state_dict(), pd.read_csv(tmp_path / f"{name}.csv"), hist)
    (a, log_a, hist_a), (b, log_b, hist_b) = runs["long"], runs["extended"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert log_a["loss"].tolist() == log_b["loss"].tolist() and list(log_b["step"]) == list(range(1, 9))
    assert hist_a["loss"].tolist() == hist_b["loss"].tolist()
    assert read_side(tmp_path / "extended.safetensors")["training"]["complete"]


def test_a_checkpoint_from_another_initialisation_is_trained_again(tmp_path):
    data, flow = tiny_dataset(), ClassicalFlow()
    torch.manual_seed(0)
    first, second = MagUNet(width=4), MagUNet(width=4)  # two different starting points
    ids = [state_digest(first), state_digest(second)]
    assert ids[0] != ids[1] and ids[0] == state_digest(first)
    reference = MagUNet(width=4)
    reference.load_state_dict(second.state_dict())
    ckpt = tmp_path / "ft.safetensors"
    train_magnifier(first, data, flow, tiny_cfg(), ckpt, progress=False, init_id=ids[0])
    assert read_side(ckpt)["training"]["init"] == ids[0]
    # same init: the finished checkpoint is reused, whatever weights the caller passes
    reused = MagUNet(width=4)
    train_magnifier(reused, data, flow, tiny_cfg(), ckpt, progress=False, init_id=ids[0])
    assert all(torch.equal(v, first.state_dict()[k]) for k, v in reused.state_dict().items())
    # another init (the pretraining changed): trained again from it, as if no checkpoint existed
    train_magnifier(second, data, flow, tiny_cfg(), ckpt, progress=False, init_id=ids[1])
    train_magnifier(reference, data, flow, tiny_cfg(), tmp_path / "ref.safetensors", progress=False)
    assert read_side(ckpt)["training"]["init"] == ids[1]
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in second.state_dict().items())
    assert not torch.equal(
        second.state_dict()["up_layers.4.conv.weight"], first.state_dict()["up_layers.4.conv.weight"]
    )


def bn_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}


def test_frozen_batchnorm_normalises_with_the_running_statistics():
    torch.manual_seed(0)
    model = MagUNet(width=4)
    with torch.no_grad():  # statistics far from any batch's, so the two modes differ clearly
        for name, t in model.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(0.5 * torch.randn(t.shape))
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape))
    x0, x1 = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    alpha = torch.tensor([2.0, 5.0])
    model.eval()
    with torch.no_grad():
        expected = model(x0, x1, alpha)
    before = bn_buffers(model)
    set_train_mode(model, freeze_batchnorm=True)
    assert model.training and not any(
        m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert torch.allclose(model(x0, x1, alpha), expected, atol=1e-6)
    assert all(torch.equal(v, before[k]) for k, v in bn_buffers(model).items())
    set_train_mode(model, freeze_batchnorm=False)  # batch statistics: another output, statistics move
    assert (model(x0, x1, alpha) - expected).abs().max() > 1e-2
    assert not torch.equal(
        bn_buffers(model)["down_layers.0.double_conv.1.running_mean"],
        before["down_layers.0.double_conv.1.running_mean"],
    )


def test_training_with_frozen_batchnorm_trains_parameters_only(tmp_path):
    torch.manual_seed(0)
    model, data, flow = MagUNet(width=4), tiny_dataset(), ClassicalFlow()
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def switch_to_train_mode(step, row):  # e.g. magnify_sequence restores model.train(): must not unfreeze
        model.train()

    train_magnifier(
        model,
        data,
        flow,
        tiny_cfg(freeze_batchnorm=True, checkpoint_every=0),
        tmp_path / "f.safetensors",
        progress=False,
        on_step=switch_to_train_mode,
    )
    after = model.state_dict()
    assert all(torch.equal(after[k], start[k]) for k in bn_buffers(model))
    assert int(after["down_layers.0.double_conv.1.num_batches_tracked"]) == 0
    # the BatchNorm affine weights and the convolutions are generator parameters: they train
    assert not torch.equal(
        after["down_layers.0.double_conv.1.weight"], start["down_layers.0.double_conv.1.weight"]
    )
    assert not torch.equal(after["up_layers.4.conv.weight"], start["up_layers.4.conv.weight"])
    assert read_side(tmp_path / "f.safetensors")["training"]["config"]["freeze_batchnorm"] is True


def test_stage_config_from_profile_mapping():
    st = stage_config({"steps": 7, "lr": 1e-4, "augment": {"rotation": 5}}, "finetune")
    fwd, inv = st.train_config("forward", 32, 1), st.train_config("inverse", 32, 1)
    assert (fwd.alpha_min, fwd.alpha_max) == (1.0, 16.0) and (inv.alpha_min, inv.alpha_max) == (1 / 16, 1.0)
    assert fwd.lr == 1e-4 and fwd.augment.rotation == 5 and fwd.steps == 7 and inv.steps == 7
    longer = stage_config({"steps": 30, "inverse_steps": 12}, "pretrain")
    assert longer.train_config("forward", 32, 1).steps == 30
    assert longer.train_config("inverse", 32, 1).steps == 12
    assert not fwd.freeze_batchnorm and not inv.freeze_batchnorm
    frozen = stage_config({"inverse_freeze_batchnorm": True}, "finetune")
    assert frozen.train_config("inverse", 32, 1).freeze_batchnorm
    assert not frozen.train_config("forward", 32, 1).freeze_batchnorm  # each direction has its own key
    replaying = stage_config({"inverse_replay": 0.25}, "finetune")
    assert replaying.replay_share("inverse") == 0.25 and replaying.replay_share("forward") == 0.0
    with pytest.raises(ValueError, match="finetune.inverse_replay must be in"):
        stage_config({"inverse_replay": 1.0}, "finetune")
    for removed in ("forward_replay", "forward_freeze_batchnorm"):  # measured, never used: removed
        with pytest.raises(Exception, match=removed):
            stage_config({removed: 0}, "finetune")
    with pytest.raises(ValueError, match="sideways"):
        replaying.replay_share("sideways")
    assert fwd.loss_reference_size is None and fwd.flow_scale == 1.0
    at512 = stage_config({"loss_reference_size": 512}, "pretrain")
    assert at512.train_config("forward", 64, 1).flow_scale == 8.0
    assert at512.train_config("inverse", 128, 1).flow_scale == 4.0
    with pytest.raises(ValueError, match="pretrain.loss_reference_size must be a positive"):
        stage_config({"loss_reference_size": 0}, "pretrain")
    forward_only = stage_config({"loss_reference_size": {"forward": 512}}, "finetune")
    assert forward_only.train_config("forward", 64, 1).flow_scale == 8.0
    assert forward_only.train_config("inverse", 64, 1).loss_reference_size is None
    with pytest.raises(ValueError, match=r"finetune.loss_reference_size.inverse must be a positive.*-1"):
        stage_config({"loss_reference_size": {"inverse": -1}}, "finetune")
    with pytest.raises(ValueError, match=r"unknown direction\(s\) \['sideways'\]"):
        stage_config({"loss_reference_size": {"sideways": 512}}, "finetune")
    assert fwd.batch_size == inv.batch_size == StageConfig().batch_size  # one number: both directions
    split = stage_config({"batch_size": {"forward": 32, "inverse": 8}}, "finetune")
    assert split.train_config("forward", 64, 1).batch_size == 32
    assert split.train_config("inverse", 64, 1).batch_size == 8
    with pytest.raises(ValueError, match=r"finetune.batch_size: a mapping names both.*\['forward'\]"):
        stage_config({"batch_size": {"forward": 32}}, "finetune")
    with pytest.raises(ValueError, match=r"finetune.batch_size.inverse must be a positive.*0"):
        stage_config({"batch_size": {"forward": 32, "inverse": 0}}, "finetune")
    with pytest.raises(ValueError, match=r"pretrain.batch_size must be a positive.*2.5"):
        stage_config({"batch_size": 2.5}, "pretrain")
    with pytest.raises(ValueError, match="sideways"):
        st.train_config("sideways", 32, 1)
    from magplus_lib.harness.profiles import ProfileError

    with pytest.raises(ProfileError, match="stepz"):
        stage_config({"stepz": 3}, "pretrain")
