"""Backbone interface, registry, flowwarp, latent family, pipeline settings and backbone training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from magplus_lib.backbones.base import Backbone, BackboneError, checkpoint_path
from magplus_lib.backbones.flowwarp import FlowWarpBackbone
from magplus_lib.backbones.latent import LatentAnimator, LatentConfig
from magplus_lib.backbones.registry import build_backbone
from magplus_lib.backbones.training import reconstruction_psnr, train_backbone
from magplus_lib.evaluation import pipeline
from magplus_lib.evaluation.metrics import psnr


def blob_frame(
    cx: float, cy: float, size: int = 48, colour=(1.0, 0.6, 0.2), sigma2: float = 40.0
) -> torch.Tensor:
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    g = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / sigma2)
    return torch.stack([0.1 + 0.8 * c * g for c in colour])


def centroid_x(frame: torch.Tensor) -> float:
    w = frame.mean(0) - frame.mean(0).min()
    xs = torch.arange(frame.shape[-1], dtype=torch.float32)
    return float((w.sum(0) * xs).sum() / w.sum())


class DrivingCopy(Backbone):
    """Stand-in that returns the driving frames: isolates resizing and pipeline plumbing."""

    name = "copy"

    def __init__(self, native_size=None):
        super().__init__()
        self.native_size = native_size
        self.seen = []

    def _animate_native(self, source, driving):
        self.seen.append(tuple(driving.shape))
        return driving.clone()


# ------------------------------------------------------------------------------------------ interface


def test_animate_resizes_to_native_and_back():
    bb = DrivingCopy(native_size=24)
    driving = torch.stack([blob_frame(20 + t, 24) for t in range(3)])
    out = bb.animate(driving[0], driving)
    assert bb.seen == [(3, 3, 24, 24)]
    assert out.shape == driving.shape
    assert (out - driving).abs().mean() < 0.01  # smooth content survives 48 -> 24 -> 48
    assert centroid_x(out[2]) - centroid_x(out[0]) == pytest.approx(2.0, abs=0.15)


def test_animate_rejects_bad_inputs():
    bb = DrivingCopy()
    with pytest.raises(BackboneError, match=r"source must be a \(3, H, W\)"):
        bb.animate(torch.zeros(1, 3, 8, 8), torch.zeros(2, 3, 8, 8))
    with pytest.raises(BackboneError, match=r"driving must be a \(T, 3, H, W\)"):
        bb.animate(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


def test_registry_errors_name_what_to_supply(tmp_path):
    with pytest.raises(BackboneError, match=r"unknown backbone 'fomn'.*fomm, latent, flowwarp"):
        build_backbone("fomn", {}, tmp_path)
    with pytest.raises(BackboneError, match=r"backbone_latent\.safetensors is missing.*03_backbones"):
        build_backbone("latent", {}, tmp_path)
    with pytest.raises(FileNotFoundError, match="FOMM_CHECKPOINT"):
        build_backbone("fomm", {"fomm": {"checkpoint": str(tmp_path / "vox-cpk.pth.tar")}}, tmp_path)
    with pytest.raises(ValueError, match=r"backbones: unknown setting\(s\) \['fom'\]"):
        build_backbone("flowwarp", {"fom": {}}, tmp_path)


def test_flowwarp_moves_the_source_like_the_driver():
    driving = torch.stack([blob_frame(20 + d, 24) for d in (0.0, 1.0, 3.0)])
    source = blob_frame(22, 24, colour=(0.3, 0.9, 0.7))  # another "identity", same layout
    bb = build_backbone("flowwarp", {}, None)
    out = bb.animate(source, driving)
    torch.testing.assert_close(out[0], source, atol=1e-3, rtol=0)  # frame 0 is the neutral reference
    shifts = [centroid_x(out[t]) - centroid_x(source) for t in range(3)]
    assert shifts[1] == pytest.approx(1.0, abs=0.25)
    assert shifts[2] == pytest.approx(3.0, abs=0.5)
    # colours are the source's, not the driver's
    assert float(out[2][1].max()) > 0.7 > float(driving[2][1].max())


# ------------------------------------------------------------------------------------------ pipeline


def linear_magnifier(log: list, tag: str):
    """Stand-in with magnify_sequence's signature: moves every frame alpha times further from frame 0."""

    def magnify(frames, alpha, reference=0):
        log.append((tag, alpha, reference))
        ref = frames[reference : reference + 1]
        return ref + alpha * (frames - ref)

    return magnify


def test_transfer_four_settings():
    driver = torch.stack([torch.full((3, 8, 8), 0.4 + 0.02 * t) for t in range(4)])
    source = torch.zeros(3, 8, 8)
    log: list = []
    mag, demag = linear_magnifier(log, "mag"), linear_magnifier(log, "demag")
    bb = DrivingCopy()
    base = pipeline.transfer(driver, source, bb)
    torch.testing.assert_close(base, driver)
    magged = pipeline.transfer(driver, source, bb, magplus=mag, alpha_mag=3.0)
    torch.testing.assert_close(magged[3] - magged[0], 3 * (driver[3] - driver[0]))
    demagged = pipeline.transfer(driver, source, bb, demagplus=demag, alpha_demag=0.5)
    torch.testing.assert_close(demagged[3] - demagged[0], 0.5 * (driver[3] - driver[0]))
    full = pipeline.transfer(
        driver, source, bb, magplus=mag, demagplus=demag, alpha_mag=3.0, alpha_demag=1 / 3
    )
    torch.testing.assert_close(full, driver)
    assert log == [("mag", 3.0, 0), ("demag", 0.5, 0), ("mag", 3.0, 0), ("demag", 1 / 3, 0)]
    with pytest.raises(ValueError, match="alphas must be positive"):
        pipeline.transfer(driver, source, bb, magplus=mag, alpha_mag=0.0)


def test_transfer_uses_magnify_sequence_for_modules(monkeypatch):
    import types

    calls = []
    fake = types.ModuleType("magplus_lib.magnifier.inference")
    fake.magnify_sequence = lambda model, frames, alpha, reference=0: (
        calls.append((alpha, reference)) or frames * 1.0
    )
    monkeypatch.setitem(__import__("sys").modules, "magplus_lib.magnifier.inference", fake)
    driver = torch.rand(3, 3, 8, 8)
    pipeline.transfer(driver, driver[0], DrivingCopy(), magplus=torch.nn.Identity(), alpha_mag=5.0)
    assert calls == [(5.0, 0)]


# ------------------------------------------------------------------------------------------ latent + training


def test_latent_starts_as_identity_on_the_source():
    torch.manual_seed(0)
    model = LatentAnimator(LatentConfig(latent_dim=4, width=4)).eval()
    source = blob_frame(10, 12, size=16)[None]
    driving = torch.stack([blob_frame(8 + t, 12, size=16) for t in range(3)])
    out = model.animate(source, driving)
    # zero flow and a mask of sigmoid(4): 98 % warped source + 2 % grey colour branch
    expect = torch.sigmoid(torch.tensor(4.0)) * source + (1 - torch.sigmoid(torch.tensor(4.0))) * 0.5
    torch.testing.assert_close(out, expect.expand_as(out), atol=1e-5, rtol=0)


def macro_clips(n: int = 3, size: int = 16, frames: int = 5) -> list[torch.Tensor]:
    clips = []
    for i in range(n):
        colour = (0.5 + 0.2 * i, 0.8 - 0.2 * i, 0.4)
        clips.append(torch.stack([blob_frame(6 + i + 1.0 * t, 8, size, colour, 10.0) for t in range(frames)]))
    return clips


TINY = {
    "latent": {"latent_dim": 4, "width": 4, "num_res_blocks": 1, "scales": [1.0, 0.5]},
    "fomm": {
        "num_kp": 3,
        "kp_detector": {
            "block_expansion": 4,
            "max_features": 8,
            "num_blocks": 2,
            "scale_factor": 1.0,
            "pad": 3,
        },
        "dense_motion": {"block_expansion": 4, "max_features": 8, "num_blocks": 2, "scale_factor": 1.0},
        "generator": {
            "block_expansion": 4,
            "max_features": 8,
            "num_down_blocks": 1,
            "num_bottleneck_blocks": 1,
        },
        "loss": {"scales": [1.0, 0.5]},
    },
}


@pytest.mark.parametrize("name", ["latent", "fomm"])
def test_training_resumes_exactly_and_builds_a_backbone(tmp_path, name):
    clips = macro_clips()
    train = {"steps": 4, "batch_size": 3, "lr": 1e-3, "save_every": 2, "log_every": 1, "num_threads": 1}
    full = train_backbone(name, clips, TINY[name], train, 16, tmp_path / "a", seed=3, progress=False)
    # interrupted after 2 steps, then resumed to 4
    train_backbone(name, clips, TINY[name], {**train, "steps": 2}, 16, tmp_path / "b", seed=3, progress=False)
    resumed = train_backbone(name, clips, TINY[name], train, 16, tmp_path / "b", seed=3, progress=False)
    assert full["steps"] == resumed["steps"] == 4 and not resumed["reused"]
    from safetensors.torch import load_file

    a = load_file(str(checkpoint_path(tmp_path / "a" / "checkpoints", name)))
    b = load_file(str(checkpoint_path(tmp_path / "b" / "checkpoints", name)))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    log = (tmp_path / "b" / "logs" / f"backbone_{name}.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]
    again = train_backbone(name, clips, TINY[name], train, 16, tmp_path / "b", seed=3, progress=False)
    assert again["reused"] and again["steps"] == 4

    bb = build_backbone(name, {}, tmp_path / "a" / "checkpoints")
    assert bb.native_size == 16
    out = bb.animate(clips[0][0], clips[0])
    assert out.shape == clips[0].shape and torch.isfinite(out).all()
    value = reconstruction_psnr(bb, clips)
    assert np.isfinite(value) and value == pytest.approx(
        np.mean([psnr(bb.animate(c[0], c)[1:], c[1:]) for c in clips])
    )


def test_wrong_shaped_checkpoint_is_a_clear_error(tmp_path):
    clips = macro_clips()
    train_backbone(
        "latent", clips, TINY["latent"], {"steps": 1, "batch_size": 2}, 16, tmp_path, progress=False
    )
    side = checkpoint_path(tmp_path / "checkpoints", "latent").with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["model_config"]["width"] = 6  # the stored tensors were made with width 4
    side.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"backbone_latent\.safetensors: does not match.*wrong shape"):
        build_backbone("latent", {}, tmp_path / "checkpoints")


def test_psnr_hand_case():
    a = torch.zeros(2, 3, 4, 4)
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    assert psnr(a, a) == float("inf")


def test_flowwarp_is_a_backbone():
    assert isinstance(FlowWarpBackbone(), Backbone)


def test_measure_mmr_copy_is_one_and_flowwarp_near_one():
    from magplus_lib.backbones.training import measure_mmr

    drivers = [torch.stack([blob_frame(20 + 0.5 * t, 24, size=64, sigma2=60.0) for t in range(4)])]
    sources = [blob_frame(22, 24, size=64, colour=(0.3, 0.9, 0.7), sigma2=60.0)]
    value, ratios, generated = measure_mmr(DrivingCopy(), drivers, [3], sources)
    assert value == pytest.approx(1.0) and ratios == [pytest.approx(1.0)]
    torch.testing.assert_close(generated[0], drivers[0])
    still, _, _ = measure_mmr(DrivingCopy(), [drivers[0][:1].repeat(4, 1, 1, 1)], [3], sources)
    assert still == pytest.approx(0.0, abs=1e-6)
    fw, _, _ = measure_mmr(build_backbone("flowwarp"), drivers, [3], sources)
    assert 0.6 < fw < 1.4


def test_train_config_for_merges_overrides():
    from magplus_lib.backbones.training import train_config_for

    cfg = train_config_for(
        "fomm", {"batch_size": 4, "steps": 10, "fomm": {"steps": 30}, "latent": {"lr": 1.0}}
    )
    assert (cfg.batch_size, cfg.steps, cfg.lr) == (4, 30, 2e-4)
    with pytest.raises(ValueError, match=r"backbones.train \(latent\).*\['stepz'\]"):
        train_config_for("latent", {"latent": {"stepz": 3}})


def test_source_copy_reference_psnr():
    from magplus_lib.backbones.training import SourceCopy

    clip = torch.stack([torch.full((3, 4, 4), v) for v in (0.5, 0.6, 0.5)])
    # frames 1..2 differ from frame 0 by 0.1 and 0 -> mse 0.005 -> 23.01 dB
    assert reconstruction_psnr(SourceCopy(), [clip]) == pytest.approx(10 * np.log10(1 / 0.005))
