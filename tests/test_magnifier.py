"""MagUNet: FlowMag's architecture, alpha embedding, checkpoints, FlowMag conversion, inference, CLI."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from magplus_lib.magnifier import cli as magnify_cli
from magplus_lib.magnifier.inference import alpha_schedule, magnify_sequence
from magplus_lib.magnifier.model import MagUNet, alpha_embedding, alpha_planes, count_parameters
from magplus_lib.magnifier.weights import load_flowmag_checkpoint, load_magnifier, save_magnifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def randomised(model: MagUNet, seed: int = 0) -> MagUNet:
    """Random weights and BatchNorm statistics (so eval-mode outputs depend on every tensor)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g))
                else:
                    t.copy_(0.3 * torch.randn(t.shape, generator=g))
    return model.eval()


def test_architecture_matches_flowmag():
    model = MagUNet(width=64)
    assert count_parameters(model) == 17_287_683
    sd = model.state_dict()
    assert sd["down_layers.0.double_conv.0.weight"].shape == (64, 38, 3, 3)
    assert sd["down_layers.4.maxpool_conv.1.double_conv.3.weight"].shape == (512, 512, 3, 3)
    assert sd["up_layers.0.conv.double_conv.0.weight"].shape == (512, 1024, 3, 3)
    assert sd["up_layers.0.conv.double_conv.3.weight"].shape == (256, 512, 3, 3)
    assert sd["up_layers.3.conv.double_conv.0.weight"].shape == (64, 128, 3, 3)
    assert sd["up_layers.4.conv.weight"].shape == (3, 64, 1, 1)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 18
    # fully convolutional, odd sizes, sigmoid output in (0, 1)
    small = randomised(MagUNet(width=8))
    out = small(torch.rand(2, 3, 37, 45), torch.rand(2, 3, 37, 45), torch.tensor([2.0, 5.0]))
    assert out.shape == (2, 3, 37, 45) and 0 < out.min() and out.max() < 1


def test_alpha_embedding_values():
    alphas = torch.tensor([1.0, 3.0, 16.0])
    pe = alpha_embedding(alphas)
    lam = 2.0 ** np.linspace(-3, 7, 32)
    assert lam[0] == 0.125 and lam[-1] == 128
    expected = np.sin(2 * 3.141592 * alphas.numpy()[:, None] / lam[None, :])
    assert np.allclose(pe.numpy(), expected, atol=1e-5)
    # alpha = 1: the first wavelength (1/8) gives sin(2 pi 8) ~ 0; the last sin(2 pi / 128)
    assert abs(pe[0, 0]) < 1e-4 and math.isclose(pe[0, -1], math.sin(2 * math.pi / 128), rel_tol=1e-4)


def test_soft_mask_blends_embeddings():
    alpha = torch.tensor([4.0])
    m = torch.tensor([[0.0, 0.25], [1.0, 0.5]])
    planes = alpha_planes(alpha, 2, 2, m)
    pe4, pe1 = alpha_embedding(alpha)[0], alpha_embedding(torch.ones(1))[0]
    assert torch.allclose(planes[0, :, 0, 0], pe1) and torch.allclose(planes[0, :, 1, 0], pe4)
    assert torch.allclose(planes[0, :, 0, 1], 0.25 * pe4 + 0.75 * pe1, atol=1e-6)
    model = randomised(MagUNet(width=8))
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(a, b, 4.0, torch.zeros(16, 16)), model(a, b, 1.0))
        assert torch.equal(model(a, b, 4.0, torch.ones(16, 16)), model(a, b, 4.0))


def test_save_load_roundtrip_and_errors(tmp_path):
    model = randomised(MagUNet(width=8))
    path = save_magnifier(model, tmp_path / "m.safetensors", {"direction": "forward"})
    loaded = load_magnifier(path)
    a, b = torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(loaded(a, b, 3.0), model(a, b, 3.0))
    assert loaded.width == 8
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_magnifier(tmp_path / "missing.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="corrupt.safetensors"):
        load_magnifier(tmp_path / "corrupt.safetensors")
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["up_layers.4.conv.weight"] = torch.zeros(3, 9, 1, 1)
    save_file(sd, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ValueError, match=r"wrong.safetensors.*up_layers.4.conv.weight"):
        load_magnifier(tmp_path / "wrong.safetensors")


def test_flowmag_checkpoint_conversion(tmp_path):
    """A checkpoint in FlowMag's layout converts to a MagUNet whose output equals FlowMag's forward
    pass, i.e. the generator fed R0 R1 G0 G1 B0 B1 + embedding."""
    reference = randomised(MagUNet(width=8), seed=3)
    state = {f"module.generator.{k}": v for k, v in reference.state_dict().items()}
    state["module.mm_loss_fn.flow_net.flowNet.fnet.conv1.weight"] = torch.randn(64, 3, 7, 7)
    state["module.mm_loss_fn.flow_net.flowNet.update_block.mask.0.bias"] = torch.randn(256)
    path = tmp_path / "raft_chkpt_00140.pth"
    torch.save({"state_dict": state, "optimizer_state_dict": {}, "epoch": 140}, path)

    converted = load_flowmag_checkpoint(path)
    img0, img1 = torch.rand(2, 3, 24, 28), torch.rand(2, 3, 24, 28)
    alpha = torch.tensor([2.0, 7.5])
    interleaved = torch.stack([img0, img1], dim=2).flatten(1, 2)  # b c t h w -> b (c t) h w
    assert torch.equal(interleaved[:, 1], img1[:, 0]) and torch.equal(interleaved[:, 2], img0[:, 1])
    flowmag_input = torch.cat([interleaved, alpha_planes(alpha, 24, 28)], 1)
    with torch.no_grad():
        expected = reference.forward_input(flowmag_input)
        ours = converted(img0, img1, alpha)
        naive = reference(img0, img1, alpha)  # same weights without the channel permutation
    assert torch.allclose(ours, expected, atol=1e-6)
    assert (naive - expected).abs().max() > 1e-3
    bad = tmp_path / "other.pth"
    torch.save({"state_dict": {"module.encoder.weight": torch.zeros(1)}}, bad)
    with pytest.raises(ValueError, match="other.pth.*module.generator"):
        load_flowmag_checkpoint(bad)


def test_alpha_schedule_inclusive_16_and_repeated_passes():
    assert alpha_schedule(16) == [16.0] and alpha_schedule(1 / 16) == [1 / 16]
    assert alpha_schedule(5) == [5.0]
    two = alpha_schedule(25)
    assert len(two) == 2 and math.isclose(two[0], 5.0)
    assert len(alpha_schedule(1 / 20)) == 2 and math.isclose(math.prod(alpha_schedule(1 / 20)), 1 / 20)
    assert len(alpha_schedule(300)) == 3
    with pytest.raises(ValueError):
        alpha_schedule(0)

    model = randomised(MagUNet(width=8))
    frames = torch.rand(4, 3, 16, 16)
    out = magnify_sequence(model, frames, 25.0, reference=1, batch_size=3)
    with torch.no_grad():
        ref = frames[1:2].expand(4, -1, -1, -1)
        manual = model(ref, model(ref, frames, 5.0), 5.0)
    assert torch.equal(out[1], frames[1])  # the reference frame is returned unchanged
    keep = [0, 2, 3]
    assert torch.allclose(out[keep], manual[keep], atol=1e-6)
    assert not out.requires_grad


class LocalModel(torch.nn.Module):
    """A stand-in generator with a 3x3 receptive field: tiling must reproduce its untiled output."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, img0, img1, alpha, mask=None):
        return self.conv(torch.cat([img0, img1], 1)) * float(alpha)


def test_tiled_inference_has_no_seams():
    torch.manual_seed(0)
    model = LocalModel().eval()
    frames = torch.rand(3, 3, 70, 90)
    whole = magnify_sequence(model, frames, 2.0, tile=None)
    tiled = magnify_sequence(model, frames, 2.0, tile=32, tile_overlap=12)
    assert torch.allclose(whole, tiled, atol=1e-5)
    with pytest.raises(ValueError, match="tile_overlap"):
        magnify_sequence(model, frames, 2.0, tile=16, tile_overlap=16)


def _write_clip(folder, frames):
    folder.mkdir()
    for i, f in enumerate(frames):
        u8 = (f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), u8[..., ::-1])


def test_magnify_command(tmp_path, capsys):
    model = randomised(MagUNet(width=8))
    ckpt = save_magnifier(model, tmp_path / "demagplus_x.safetensors", {"direction": "inverse"})
    frames = torch.rand(3, 3, 20, 24)
    _write_clip(tmp_path / "in", frames)
    rc = magnify_cli.main(
        [
            "--checkpoint",
            str(ckpt),
            "--alpha",
            "0.5",
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    written = sorted((tmp_path / "out").glob("*.png"))
    assert len(written) == 3
    read, _ = magnify_cli.read_frames(tmp_path / "out")
    inp, _ = magnify_cli.read_frames(tmp_path / "in")
    expected = magnify_sequence(model, inp, 0.5)
    assert (read - expected).abs().max() <= 1 / 255 + 1e-6
    # mp4 output
    assert (
        magnify_cli.main(
            [
                "--checkpoint",
                str(ckpt),
                "--alpha",
                "0.5",
                "--input",
                str(tmp_path / "in"),
                "--output",
                str(tmp_path / "o.mp4"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    video, _ = magnify_cli.read_frames(tmp_path / "o.mp4")
    assert video.shape == (3, 3, 20, 24)

    def run(*args):
        code = magnify_cli.main(["--device", "cpu", *args])
        return code, capsys.readouterr().err

    code, err = run(
        "--checkpoint", str(tmp_path / "nope.safetensors"), "--alpha", "2", "--input", "x", "--output", "y"
    )
    assert code == 2 and "nope.safetensors" in err
    (tmp_path / "empty").mkdir()
    code, err = run(
        "--checkpoint", str(ckpt), "--alpha", "2", "--input", str(tmp_path / "empty"), "--output", "y"
    )
    assert code == 2 and "no image frames" in err
    _write_clip(tmp_path / "mixed", [torch.rand(3, 20, 24), torch.rand(3, 22, 24)])
    code, err = run(
        "--checkpoint", str(ckpt), "--alpha", "2", "--input", str(tmp_path / "mixed"), "--output", "y"
    )
    assert code == 2 and "001.png" in err and "same size" in err
    (tmp_path / "in" / "004.png").write_bytes(b"broken")
    code, err = run(
        "--checkpoint", str(ckpt), "--alpha", "2", "--input", str(tmp_path / "in"), "--output", "y"
    )
    assert code == 2 and "004.png" in err
    wrong = tmp_path / "wrong.safetensors"
    save_file({"down_layers.0.double_conv.0.weight": torch.zeros(8, 38, 3, 3)}, str(wrong))
    code, err = run(
        "--checkpoint", str(wrong), "--alpha", "2", "--input", str(tmp_path / "in"), "--output", "y"
    )
    assert code == 2 and "wrong.safetensors" in err and "missing" in err


def test_measure_magnification_on_an_ideal_and_an_identity_magnifier():
    """An ideal magnifier (renders the texture moved alpha times as far) measures ~alpha with
    Farneback; one that returns its input measures ~1. PSNR against the exact frame tells them apart."""
    from test_flow import constant, texture

    from magplus_lib.magnifier.accuracy import measure_magnification
    from magplus_lib.magnifier.flow import pixel_grid

    p = pixel_grid(64, 64, dtype=torch.float64)
    shift = (0.4, -0.3)

    def moved(a):
        return texture(p - constant(a * shift[0], a * shift[1])(p))[0]

    frame0, frame1 = moved(0.0), moved(1.0)
    disp = torch.stack([torch.full((64, 64), shift[0]), torch.full((64, 64), shift[1])])

    class Ideal(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(()))

        def forward(self, img0, img1, alpha, mask=None):
            return torch.stack([moved(float(alpha)) for _ in range(img1.shape[0])])

    class Identity(Ideal):
        def forward(self, img0, img1, alpha, mask=None):
            return img1

    for alpha in (3.0, 7.0):
        exact = moved(alpha)
        ideal = measure_magnification(Ideal(), frame0, frame1, alpha, exact, disp)
        assert abs(ideal["achieved"] / alpha - 1) < 0.1 and abs(ideal["achieved_gt"] / alpha - 1) < 0.1
        assert ideal["psnr_output"] == float("inf") and ideal["psnr_unmagnified"] < 40
        lazy = measure_magnification(Identity(), frame0, frame1, alpha, exact, disp)
        assert abs(lazy["achieved"] - 1) < 0.1 and lazy["psnr_output"] == lazy["psnr_unmagnified"]
