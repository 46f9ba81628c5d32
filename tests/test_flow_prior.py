"""The flow-prior generator and the exact target (issue 25): `model.FlowPriorMagUNet`, its checkpoints,
`texture_pairs.ExactTexturePairs` and `train_magnifier(exact_pairs=...)`."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from test_flow import constant, texture
from test_training import tiny_cfg, tiny_dataset

from magplus_lib.data.texture_pairs import DEV_IMAGES, TEXTURE_IMAGES, TRAINING_IMAGES, ExactTexturePairs
from magplus_lib.evaluation.metrics import psnr
from magplus_lib.magnifier.flow import ClassicalFlow, FlowConfig, pixel_grid
from magplus_lib.magnifier.model import FlowPriorMagUNet, MagnifierConfig, MagUNet, build_magnifier
from magplus_lib.magnifier.train_config import stage_config
from magplus_lib.magnifier.training import train_magnifier
from magplus_lib.magnifier.weights import load_magnifier, save_magnifier, side_path

PRIOR = FlowConfig(photometric="lcn")


def shifted_pair(d: float, size: int = 64):
    """A texture and its copy moved right by d px, plus the copy moved by alpha * d for any alpha."""
    p = pixel_grid(size, size, dtype=torch.float64)

    def moved(shift: float) -> torch.Tensor:
        return texture(p - constant(shift, 0)(p)).float().clamp(0, 1)

    return moved(0.0), moved(d), moved


def test_untrained_flow_prior_is_classical_lagrangian_magnification():
    """Zero correction: the output is the frame moved by (alpha - 1) times the prior's motion, so a
    0.3 px shift magnified 3x lands on the 0.9 px frame far closer than the input does; alpha 1 and a
    zero mask return the frame itself."""
    img0, img1, moved = shifted_pair(0.3)
    model = FlowPriorMagUNet(PRIOR, width=4).eval()
    u0 = model.prior_flow(img0, img1)
    inner = (slice(None), 0, slice(8, -8), slice(8, -8))
    assert abs(float(u0[inner].mean()) - 0.3) < 0.03 and float(u0[:, 1].abs().mean()) < 0.02
    with torch.no_grad():
        out = model(img0, img1, 3.0)
        exact = moved(0.9)
        crop = (..., slice(8, -8), slice(8, -8))
        assert float(psnr(out[crop], exact[crop])) > float(psnr(img1[crop], exact[crop])) + 10
        assert torch.allclose(model(img0, img1, 1.0), img1, atol=1e-5)
        assert torch.allclose(model(img0, img1, 3.0, mask=torch.zeros(64, 64)), img1, atol=1e-5)


def test_flow_prior_checkpoint_round_trip_and_bad_files(tmp_path):
    torch.manual_seed(0)
    model = FlowPriorMagUNet(PRIOR, width=4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.eval()
    path = save_magnifier(model, tmp_path / "m.safetensors")
    loaded = load_magnifier(path)
    assert type(loaded) is FlowPriorMagUNet and loaded.prior == PRIOR
    img0, img1, _ = shifted_pair(0.4, 32)
    with torch.no_grad():
        assert torch.equal(loaded(img0, img1, 5.0), model(img0, img1, 5.0))
    side = json.loads(side_path(path).read_text())
    assert side["architecture"] == "FlowPriorMagUNet" and side["prior"]["photometric"] == "lcn"
    # an image-output checkpoint still loads as a MagUNet
    assert type(load_magnifier(save_magnifier(MagUNet(width=4), tmp_path / "i.safetensors"))) is MagUNet
    # the prior settings missing from the weights file: named, not guessed
    from safetensors.torch import load_file, save_file

    save_file(
        load_file(str(path)), str(tmp_path / "bare.safetensors"), metadata={"format": "FlowPriorMagUNet"}
    )
    with pytest.raises(ValueError, match=r"bare.safetensors.*prior"):
        load_magnifier(tmp_path / "bare.safetensors")
    save_file(load_file(str(path)), str(tmp_path / "odd.safetensors"), metadata={"format": "Painter"})
    with pytest.raises(ValueError, match=r"odd.safetensors.*unknown magnifier format 'Painter'"):
        load_magnifier(tmp_path / "odd.safetensors")


def test_build_magnifier_and_its_settings():
    torch.manual_seed(1)
    plain = build_magnifier(MagnifierConfig(width=4))
    torch.manual_seed(1)
    assert type(plain) is MagUNet and all(
        torch.equal(a, b) for a, b in zip(plain.state_dict().values(), MagUNet(width=4).state_dict().values())
    )
    prior = build_magnifier(MagnifierConfig(width=4, output="flowprior"), {"photometric": "lcn"})
    assert type(prior) is FlowPriorMagUNet and prior.prior == PRIOR
    assert prior.up_layers[-1].conv.weight.abs().sum() == 0 and prior.up_layers[-1].conv.out_channels == 5
    with pytest.raises(ValueError, match="magnifier.output must be one of image, flowprior, got 'paint'"):
        MagnifierConfig(output="paint")
    with pytest.raises(ValueError, match="flowmag_checkpoint.*needs magnifier.output 'image'"):
        MagnifierConfig(output="flowprior", flowmag_checkpoint="flowmag.pth")
    with pytest.raises(ValueError, match="classical estimator"):
        FlowPriorMagUNet(FlowConfig(estimator="raft"), width=4)


def test_exact_texture_pairs_carry_the_exactly_magnified_frame():
    assert set(DEV_IMAGES) <= set(TEXTURE_IMAGES) and not set(DEV_IMAGES) & set(TRAINING_IMAGES)
    pairs = ExactTexturePairs(32, 4, (0.5, 1.0), (1.0, 16.0))
    again = ExactTexturePairs(32, 4, (0.5, 1.0), (1.0, 16.0))
    for i in range(4):
        f0, f1, alpha, truth = pairs[i]
        assert 1.0 <= alpha <= 16.0 and f0.shape == f1.shape == truth.shape == (3, 32, 32)
        assert all(torch.equal(a, b) for a, b in zip((f0, f1, truth), again[i][:2] + again[i][3:]))
        # the target is further from the onset than the moved frame is: more motion, same texture
        assert float((truth - f0).abs().mean()) > float((f1 - f0).abs().mean())
    # alpha 1: the exact target is the moved frame itself
    one = ExactTexturePairs(32, 2, (0.5, 1.0), (1.0, 1.0))
    assert all(torch.equal(one[i][1], one[i][3]) and one[i][2] == 1.0 for i in range(2))
    with pytest.raises(ValueError, match="alpha_range"):
        ExactTexturePairs(32, 2, (0.5, 1.0), (2.0, 1.0))


def test_exact_target_settings():
    stage = stage_config(
        {"exact_target": {"pairs": 10, "weight": 5.0, "motion_px": {"forward": [0.15, 1.0]}}}, "pretrain"
    )
    assert stage.exact("forward").pairs == 10 and stage.exact("inverse") is None
    assert stage.train_config("forward", 32, 0).exact_weight == 5.0
    assert stage.train_config("inverse", 32, 0).exact_weight == 0.0
    assert stage_config({}, "pretrain").exact("forward") is None
    bad = stage_config({"exact_target": {"motion_px": {"sideways": [1, 2]}}}, "pretrain")
    with pytest.raises(ValueError, match="motion_px maps forward / inverse"):
        bad.exact("forward")
    for entry in (0.5, [0.5], [0.5, 1.0, 2.0]):
        malformed = stage_config({"exact_target": {"motion_px": {"forward": entry}}}, "pretrain")
        with pytest.raises(ValueError, match=r"motion_px.forward must be \[lo, hi\] px"):
            malformed.exact("forward")


def test_exact_target_trains_resumes_exactly_and_is_checked(tmp_path):
    """The exact term is logged, moves the loss, and a run killed and resumed equals an uninterrupted
    one bit for bit (the photograph batch is drawn from the run's generator)."""
    data, flow, exact = (
        tiny_dataset(size=20),
        ClassicalFlow(),
        ExactTexturePairs(16, 6, (0.3, 1.0), (1.0, 4.0)),
    )
    cfg = tiny_cfg(exact_weight=10.0)
    torch.manual_seed(0)
    init = FlowPriorMagUNet(PRIOR, width=4).state_dict()

    def run(name, **kw):
        model = FlowPriorMagUNet(PRIOR, width=4)
        model.load_state_dict(init)
        path = tmp_path / f"{name}.safetensors"
        train_magnifier(
            model, data, flow, cfg, path, tmp_path / f"{name}.csv", progress=False, exact_pairs=exact, **kw
        )
        return model

    full = run("full")
    log = pd.read_csv(tmp_path / "full.csv")
    assert "loss_exact" in log and (log["loss_exact"] > 0).all()
    assert (log["loss"] > log["loss_mag"] + 10 * log["loss_color"]).all()

    class Killed(RuntimeError):
        pass

    def kill(step, row):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        run("resumed", on_step=kill)
    resumed = run("resumed")
    assert all(torch.equal(full.state_dict()[k], v) for k, v in resumed.state_dict().items())
    assert pd.read_csv(tmp_path / "resumed.csv")["loss_exact"].tolist() == log["loss_exact"].tolist()

    with pytest.raises(ValueError, match="exact_weight 10.0 needs exact pairs"):
        train_magnifier(MagUNet(width=4), data, flow, cfg, tmp_path / "x.safetensors", progress=False)
    with pytest.raises(ValueError, match="exact pairs need exact_weight > 0"):
        train_magnifier(
            MagUNet(width=4),
            data,
            flow,
            tiny_cfg(),
            tmp_path / "y.safetensors",
            progress=False,
            exact_pairs=exact,
        )


def test_checkpoint_of_another_generator_kind_is_retrained(tmp_path, capsys):
    data, flow = tiny_dataset(), ClassicalFlow()
    path = tmp_path / "m.safetensors"
    train_magnifier(MagUNet(width=4), data, flow, tiny_cfg(steps=2), path, progress=False)
    model = FlowPriorMagUNet(PRIOR, width=4)
    train_magnifier(model, data, flow, tiny_cfg(steps=2), path, progress=False)
    assert "a MagUNet checkpoint; training a FlowPriorMagUNet from step 0" in capsys.readouterr().out
    assert type(load_magnifier(path)) is FlowPriorMagUNet


def test_side_file_from_before_a_setting_resumes_with_its_default(tmp_path):
    """A finished checkpoint whose side file predates `exact_weight` is loaded, not refused."""
    data, flow = tiny_dataset(), ClassicalFlow()
    path = tmp_path / "m.safetensors"
    trained = MagUNet(width=4)
    train_magnifier(trained, data, flow, tiny_cfg(steps=2), path, progress=False)
    side = json.loads(side_path(path).read_text())
    del side["training"]["config"]["exact_weight"]
    side_path(path).write_text(json.dumps(side))
    again = MagUNet(width=4)
    train_magnifier(again, data, flow, tiny_cfg(steps=2), path, progress=False)
    assert all(torch.equal(trained.state_dict()[k], v) for k, v in again.state_dict().items())
