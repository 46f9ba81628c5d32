"""External adapters against a tiny stand-in repository that follows the official calling conventions.

The stand-in scripts take the official command lines, read the frames the adapter wrote, and write
their result in the official layout (FSRT: [driver | generated]; EmoPortraits: [source | driver |
result]; MetaPortrait: output_256/<frame>.png). Their "animation" is known exactly:
generated_t = clip(source + driving_t - driving_0), so the tests check that the adapters hand the right
frames in and take the right panel out.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from full_standins import external_checkouts

from magplus_lib.backbones import external
from magplus_lib.backbones.external import ExternalBackboneError, split_panels
from magplus_lib.backbones.registry import build_backbone


@pytest.fixture()
def standin(tmp_path):
    return external_checkouts(tmp_path)


def frames_and_expected(size: int = 32, t: int = 4):
    g = torch.Generator().manual_seed(0)
    source = 0.3 + 0.4 * torch.rand(3, size, size, generator=g)
    base = 0.3 + 0.4 * torch.rand(3, size, size, generator=g)
    driving = torch.stack([base + 0.05 * k * torch.linspace(-1, 1, size) for k in range(t)])
    q = lambda x: torch.round(x * 255) / 255  # noqa: E731 - frames travel as uint8
    expected = (q(source)[None] + q(driving) - q(driving[:1])).clamp(0, 1)
    return source, driving, expected


def cfg(repo, ckpt=None, **kw):
    return {
        "repo": str(repo),
        "checkpoint": str(ckpt) if ckpt else None,
        "python": sys.executable,
        "require_cuda": False,
        "native_size": 32,
        "result_ext": ".avi",
        **kw,
    }


def test_fsrt_adapter_keeps_the_generated_half(standin):
    source, driving, expected = frames_and_expected()
    bb = build_backbone("fsrt", {"fsrt": cfg(standin["fsrt"], standin["ckpt"])}, None)
    out = bb.animate(source, driving)
    assert out.shape == driving.shape
    assert (out - expected).abs().max() < 0.02
    assert (out - driving).abs().mean() > 0.05  # not the driver half


def test_emoportraits_adapter_keeps_the_third_panel(standin):
    source, driving, expected = frames_and_expected()
    bb = build_backbone("emoportraits", {"emoportraits": cfg(standin["emo"])}, None)
    assert bb.checkpoint.name == "328_model.pth"
    out = bb.animate(source, driving)
    assert (out - expected).abs().max() < 0.02


def test_metaportrait_adapter_with_landmark_command(standin):
    source, driving, expected = frames_and_expected()
    command = f"{sys.executable} {standin['root'] / 'landmarks.py'} {{frames}}"
    bb = build_backbone(
        "metaportrait", {"metaportrait": cfg(standin["meta"], standin["ckpt"], landmark_command=command)}
    )
    out = bb.animate(source, driving)
    assert (out - expected).abs().max() < 0.01  # PNG both ways: exact up to rounding


def test_metaportrait_landmark_errors(standin):
    with pytest.raises(ExternalBackboneError, match="669-point dense face landmarks"):
        build_backbone("metaportrait", {"metaportrait": cfg(standin["meta"], standin["ckpt"])})
    source, driving, _ = frames_and_expected(t=2)
    bad = f"{sys.executable} {standin['root'] / 'landmarks.py'} {{frames}} 68"
    bb = build_backbone(
        "metaportrait", {"metaportrait": cfg(standin["meta"], standin["ckpt"], landmark_command=bad)}
    )
    with pytest.raises(ExternalBackboneError, match=r"src_0_ldmk\.npy has shape \(68, 2\).*\(669, 2\)"):
        bb.animate(source, driving)
    prepared = standin["root"] / "prepared"
    prepared.mkdir()
    bb = build_backbone(
        "metaportrait", {"metaportrait": cfg(standin["meta"], standin["ckpt"], landmark_dir=str(prepared))}
    )
    digest = external.frame_sha1(source)
    with pytest.raises(ExternalBackboneError, match=rf"no prepared landmark file .*{digest}_ldmk\.npy"):
        bb.animate(source, driving)


def test_setup_errors_say_what_to_supply(standin, tmp_path):
    with pytest.raises(ExternalBackboneError, match="set FSRT_REPO"):
        build_backbone("fsrt", {"fsrt": {"checkpoint": str(standin["ckpt"])}})
    with pytest.raises(ExternalBackboneError, match=r"demo\.py not found.*andrerochow/fsrt"):
        build_backbone("fsrt", {"fsrt": cfg(tmp_path, standin["ckpt"])})  # a folder without demo.py
    with pytest.raises(ExternalBackboneError, match="FSRT_CHECKPOINT"):
        build_backbone("fsrt", {"fsrt": cfg(standin["fsrt"], tmp_path / "missing.pth")})
    (standin["emo"] / "repos" / "jit_lama.pt").unlink()
    with pytest.raises(ExternalBackboneError, match=r"missing under .*repos/jit_lama\.pt"):
        build_backbone("emoportraits", {"emoportraits": cfg(standin["emo"])})
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['landmarks'\]"):
        build_backbone("metaportrait", {"metaportrait": {"landmarks": "x"}})


def test_cuda_obstacle_is_explained(standin, monkeypatch):
    source, driving, _ = frames_and_expected(t=2)
    monkeypatch.setenv("STANDIN_NO_CUDA", "1")
    bb = build_backbone("fsrt", {"fsrt": cfg(standin["fsrt"], standin["ckpt"])})
    with pytest.raises(ExternalBackboneError, match=r"hard-codes CUDA.*cannot run without a CUDA GPU"):
        bb.animate(source, driving)
    # With the CUDA probe on, the adapter refuses before launching when torch sees no GPU.
    if not torch.cuda.is_available():
        bb = build_backbone("fsrt", {"fsrt": cfg(standin["fsrt"], standin["ckpt"], require_cuda=True)})
        with pytest.raises(ExternalBackboneError, match=r"sees no CUDA device.*FSRT_PYTHON"):
            bb.animate(source, driving)


def test_split_panels_rejects_uneven_frames():
    frames = [np.zeros((4, 9, 3), np.uint8)]
    with pytest.raises(ExternalBackboneError, match="not 2 side-by-side panels"):
        split_panels(frames, 2, 1, "fsrt")
    two = [np.concatenate([np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 3), np.uint8)], axis=1)]
    assert split_panels(two, 2, 1, "fsrt")[0].min() == 1
