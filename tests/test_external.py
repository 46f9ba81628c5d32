"""External adapters against a tiny stand-in repository that follows the official calling conventions.

The stand-in scripts take the official command lines, read the frames the adapter wrote, and write
their result in the official layout (FSRT: [driver | generated]; EmoPortraits: [source | driver |
result]; MetaPortrait: output_256/<frame>.png). Their "animation" is known exactly:
generated_t = clip(source + driving_t - driving_0), so the tests check that the adapters hand the right
frames in and take the right panel out.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from magplus_lib import external
from magplus_lib.backbones import build_backbone
from magplus_lib.external import ExternalBackboneError, split_panels

COMMON = textwrap.dedent(
    """
    import os, sys
    import cv2, numpy as np

    def read_video(path):
        cap = cv2.VideoCapture(path); out = []
        while True:
            ok, f = cap.read()
            if not ok: break
            out.append(f.astype(np.int16))
        return out

    def write_video(path, frames):
        cc = 'FFV1' if path.endswith('.avi') else 'mp4v'
        h, w = frames[0].shape[:2]
        vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*cc), 25.0, (w, h))
        for f in frames: vw.write(np.clip(f, 0, 255).astype(np.uint8))
        vw.release()

    def animate(src, drivers):
        return [np.clip(src + d - drivers[0], 0, 255) for d in drivers]

    if os.environ.get('STANDIN_NO_CUDA'):
        sys.stderr.write('AssertionError: Torch not compiled with CUDA enabled\\n'); sys.exit(1)
    """
)

FSRT_DEMO = COMMON + textwrap.dedent(
    """
    import argparse
    p = argparse.ArgumentParser()
    for a in ['--config', '--checkpoint', '--source_image', '--driving_video', '--result_video']:
        p.add_argument(a, required=True)
    p.add_argument('--relative', action='store_true'); p.add_argument('--adapt_scale', action='store_true')
    o = p.parse_args()
    assert os.path.isfile('./weights/kp_detector.pt') and os.path.isfile(o.config)
    assert o.relative and o.adapt_scale
    src = cv2.imread(o.source_image).astype(np.int16)
    drv = read_video(o.driving_video)
    write_video(o.result_video, [np.concatenate([d, g], axis=1) for d, g in zip(drv, animate(src, drv))])
    """
)

EMO_RUN = COMMON + textwrap.dedent(
    """
    import argparse
    p = argparse.ArgumentParser()
    for a in ['--source_image_path', '--driven_video_path', '--saved_to_path', '--fps', '--max_len']:
        p.add_argument(a)
    o = p.parse_args()
    src = cv2.imread(o.source_image_path).astype(np.int16)
    drv = read_video(o.driven_video_path)[: int(o.max_len)]
    panels = [np.concatenate([src, d, g], axis=1) for d, g in zip(drv, animate(src, drv))]
    write_video(o.saved_to_path, panels)
    """
)

META_INFER = COMMON + textwrap.dedent(
    """
    import argparse, glob, pickle, yaml
    p = argparse.ArgumentParser()
    p.add_argument('--save_dir'); p.add_argument('--ckpt'); p.add_argument('--config')
    o = p.parse_args()
    conf = yaml.safe_load(open(o.config))
    root = conf['dataset'][conf['dataset']['train_data'][0]]['root']
    open('./utils/dense_669_connectivity.tsv').close()
    imgs = sorted(glob.glob(root + '/**/[!src_]*.png', recursive=True))
    mapping = pickle.load(open(os.path.join(root, 'src_map_dict.pkl'), 'rb'))
    src = cv2.imread(os.path.join(root, 'src_%d.png' % mapping[os.path.basename(imgs[0])])).astype(np.int16)
    assert np.load(os.path.join(root, 'src_0_ldmk.npy')).shape == (669, 2)
    drv = [cv2.imread(f).astype(np.int16) for f in imgs]
    for f in imgs: assert os.path.isfile(f[:-4] + '_ldmk.npy') and os.path.isfile(f[:-4] + '_theta.npy')
    os.makedirs(os.path.join(o.save_dir, 'output_256'), exist_ok=True)
    for f, g in zip(imgs, animate(src, drv)):
        cv2.imwrite(os.path.join(o.save_dir, 'output_256', os.path.basename(f)), g.astype(np.uint8))
    """
)

LANDMARKER = textwrap.dedent(
    """
    import glob, os, sys
    import numpy as np
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 669
    for f in glob.glob(os.path.join(sys.argv[1], '**', '*.png'), recursive=True):
        stem = f[:-4]
        np.save(stem + '_ldmk.npy', np.full((rows, 2), 0.5, np.float32))
        np.save(stem + '_theta.npy', np.eye(3, dtype=np.float32))
        if os.path.basename(f).startswith('src_'):
            np.save(stem + '_id.npy', np.zeros(512, np.float32))
    """
)


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture()
def standin(tmp_path):
    fsrt = tmp_path / "fsrt"
    touch(fsrt / "demo.py", FSRT_DEMO)
    touch(fsrt / "weights" / "kp_detector.pt")
    touch(fsrt / "runs" / "vox256" / "vox256.yaml", "model: {}\n")
    emo = tmp_path / "emo"
    touch(emo / "run_video_driven_pipeline.py", EMO_RUN)
    touch(emo / "repos" / "jit_lama.pt")
    touch(emo / "repos" / "MODNet" / "pretrained" / "modnet_photographic_portrait_matting.ckpt")
    touch(emo / "logs" / "exp" / "checkpoints" / "328_model.pth")
    meta = tmp_path / "meta"
    touch(meta / "base_model" / "inference.py", META_INFER)
    touch(meta / "base_model" / "utils" / "dense_669_connectivity.tsv", "0 1\n")
    touch(
        meta / "base_model" / "config" / "meta_portrait_256_eval.yaml",
        "dataset:\n  train_data: [personalized]\n  personalized:\n    root: ../data/\n",
    )
    touch(tmp_path / "landmarks.py", LANDMARKER)
    ckpt = touch(tmp_path / "model.ckpt")
    return {"root": tmp_path, "fsrt": fsrt, "emo": emo, "meta": meta, "ckpt": ckpt}


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
