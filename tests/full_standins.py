"""Stand-ins for every file the full profile reads, fabricated in the official formats with random
weights, so that the full profile's code path runs (and is tested) without the licensed data or the
official weights, which this project can never download.

- RAFT: torchvision's raft_large state dict, saved as the official `raft_large_C_T_V1-22a6c225.pth` is;
- FOMM: a `vox-cpk.pth.tar` with the official layout (generator, kp_detector, discriminator,
  optimizer entries, epoch; names and shapes of ../shared/reference/fomm_vox256_state_dict.txt);
- SAMM and CAS(ME)^3 roots written by SynthME in their official layouts and spreadsheets;
- generic videos (.mp4, .avi) written with OpenCV, for the pretraining pairs;
- checkouts of FSRT, MetaPortrait and EmoPortraits whose entry scripts take the official command lines
  and write their results in the official layout (their "animation" is known exactly:
  generated_t = clip(source + driving_t - driving_0)), a landmark command for MetaPortrait, and an
  interpreter wrapper that answers the adapters' CUDA probe as a GPU machine would;
- Table 3's dedicated-method clips, one folder per method, dataset and clip.

`python tests/full_standins.py OUT` writes them under OUT and prints the environment assignments the
full profile asks for (`make smoke-full` uses it); the tests import the pieces.
"""

from __future__ import annotations

import shlex
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

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


def external_checkouts(root: Path) -> dict[str, Path]:
    """Checkouts of FSRT, EmoPortraits and MetaPortrait (entry scripts and the files they load by fixed
    path), the landmark script and a checkpoint file, under `root`."""
    root = Path(root)
    fsrt = root / "fsrt"
    touch(fsrt / "demo.py", FSRT_DEMO)
    touch(fsrt / "weights" / "kp_detector.pt")
    touch(fsrt / "runs" / "vox256" / "vox256.yaml", "model: {}\n")
    emo = root / "emo"
    touch(emo / "run_video_driven_pipeline.py", EMO_RUN)
    touch(emo / "repos" / "jit_lama.pt")
    touch(emo / "repos" / "MODNet" / "pretrained" / "modnet_photographic_portrait_matting.ckpt")
    touch(emo / "logs" / "exp" / "checkpoints" / "328_model.pth")
    meta = root / "meta"
    touch(meta / "base_model" / "inference.py", META_INFER)
    touch(meta / "base_model" / "utils" / "dense_669_connectivity.tsv", "0 1\n")
    touch(
        meta / "base_model" / "config" / "meta_portrait_256_eval.yaml",
        "dataset:\n  train_data: [personalized]\n  personalized:\n    root: ../data/\n",
    )
    landmarks = touch(root / "landmarks.py", LANDMARKER)
    ckpt = touch(root / "model.ckpt")
    return {"root": root, "fsrt": fsrt, "emo": emo, "meta": meta, "ckpt": ckpt, "landmarks": landmarks}


def cuda_python(root: Path) -> Path:
    """An interpreter wrapper that answers the adapters' CUDA probe ("import torch; print(torch.cuda.
    is_available())") with True, as on a GPU machine, and runs everything else with this Python."""
    path = Path(root) / "python-with-cuda"
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-c" ] && [ "$2" = "import torch; print(torch.cuda.is_available())" ]; then\n'
        "  echo True; exit 0\n"
        "fi\n"
        f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    path.chmod(0o755)
    return path


def raft_large_file(folder: Path) -> Path:
    """torchvision's RAFT-large state dict (random weights) under the official file name."""
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    path = Path(folder) / "raft_large_C_T_V1-22a6c225.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(raft_large(weights=None, progress=False).state_dict(), path)
    return path


def _discriminator_state() -> dict[str, torch.Tensor]:
    """The vox-256 discriminator's 26 entries (spectral-normalised 4x4 convolutions), random."""
    g = torch.Generator().manual_seed(1)
    out, chans = {}, [3, 64, 128, 256, 512]
    for i in range(4):
        cin, cout = chans[i], chans[i + 1]
        p = f"discs.1.down_blocks.{i}."
        out[p + "conv.bias"] = torch.zeros(cout)
        out[p + "conv.weight_orig"] = torch.randn(cout, cin, 4, 4, generator=g) * 0.02
        out[p + "conv.weight_u"] = torch.randn(cout, generator=g)
        out[p + "conv.weight_v"] = torch.randn(cin * 16, generator=g)
        if i:
            out[p + "norm.weight"], out[p + "norm.bias"] = torch.ones(cout), torch.zeros(cout)
    out["discs.1.conv.bias"] = torch.zeros(1)
    out["discs.1.conv.weight_orig"] = torch.randn(1, 512, 1, 1, generator=g) * 0.02
    out["discs.1.conv.weight_u"] = torch.randn(1, generator=g)
    out["discs.1.conv.weight_v"] = torch.randn(512, generator=g)
    return out


def official_fomm_blob(model) -> dict:
    """A FOMM module's weights in the official `vox-cpk.pth.tar` layout."""
    sd = model.state_dict()

    def part(prefix: str) -> dict:
        return {k[len(prefix) + 1 :]: v for k, v in sd.items() if k.startswith(prefix + ".")}

    groups = [{"lr": 2e-4, "betas": (0.5, 0.999), "params": [0, 1]}]
    return {
        "generator": part("generator"),
        "kp_detector": part("kp_detector"),
        "discriminator": _discriminator_state(),
        "optimizer_generator": {"state": {}, "param_groups": groups},
        "optimizer_kp_detector": {"state": {}, "param_groups": groups},
        "optimizer_discriminator": {"state": {}, "param_groups": groups},
        "epoch": 99,
    }


def fomm_vox_file(folder: Path) -> Path:
    """The official vox-256 FOMM architecture with random weights, saved as `vox-cpk.pth.tar`."""
    from magplus_lib.backbones.fomm import FOMM, vox256_config

    torch.manual_seed(0)
    path = Path(folder) / "vox-cpk.pth.tar"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(official_fomm_blob(FOMM(vox256_config()).eval()), path)
    return path


def datasets(folder: Path, subjects: int = 4) -> dict[str, Path]:
    """SAMM and CAS(ME)^3 roots in their official layouts and spreadsheets (SynthME writes them; its
    ground-truth files are removed, as a real dataset has none)."""
    from magplus_lib.data import synthme

    cfg = synthme.SynthMEConfig(
        seed=5,
        render_size=128,
        samm_subjects=subjects,
        casme3_subjects=subjects,
        micro_clips_per_subject={"happiness": 1, "surprise": 1, "anger": 1, "disgust": 1, "other": 1},
        samm_duration_s=[0.04, 0.06],
        casme3_duration_s=[0.2, 0.3],
    )
    roots = {"samm": Path(folder) / "SAMM", "casme3": Path(folder) / "CASME3"}
    synthme.write_samm(cfg, roots["samm"])
    synthme.write_casme3(cfg, roots["casme3"])
    for root in roots.values():  # real datasets carry no ground-truth motion: neither do their stand-ins
        (root / synthme.GROUND_TRUTH_JSON).unlink()
        (root / synthme.GROUND_TRUTH_NPZ).unlink()
    return roots


def generic_videos(folder: Path, count: int = 4, size: int = 96, frames: int = 8) -> Path:
    """Short videos (.mp4 and .avi, written with OpenCV) of a texture whose right half drifts."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for k in range(count):
        base = cv2.GaussianBlur(rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), 2)
        base = np.clip((base - 128) * 4 + 128, 0, 255)
        name, codec = (f"video{k}.mp4", "mp4v") if k % 2 == 0 else (f"video{k}.avi", "MJPG")
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*codec), 25, (size, size))
        for t in range(frames):
            img = base.copy()
            img[:, size // 2 :] = np.roll(base, t * (k + 1), axis=1)[:, size // 2 :]
            writer.write(img.astype(np.uint8))
        writer.release()
    return folder


def macro_videos(folder: Path, identities: int = 3, size: int = 96) -> Path:
    """<identity>/<clip> macro-expression clips in the layout `magplus_lib.data.macro_videos` reads: SynthME
    macro renders written as an .mp4, an .avi and a folder of PNG frames (one kind per identity, in turn).
    Used by benchmarks/backbone_real_competence.py when no real clips are at hand."""
    import cv2

    from magplus_lib.data import synthme

    folder = Path(folder)
    cfg = synthme.SynthMEConfig(seed=5, render_size=128)
    for k, spec in enumerate(synthme.macro_specs(cfg, identities, 1, stream=55)):
        frames, _ = synthme.render_thinned(spec, size, 8)
        imgs = [(f.permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8) for f in frames]
        ident = folder / f"person{k}"
        ident.mkdir(parents=True, exist_ok=True)
        kind = ("mp4", "avi", "frames")[k % 3]
        if kind == "frames":
            (ident / "smile").mkdir(exist_ok=True)
            for t, img in enumerate(imgs):
                cv2.imwrite(str(ident / "smile" / f"{t + 1}.png"), img)
        else:
            codec = "mp4v" if kind == "mp4" else "MJPG"
            writer = cv2.VideoWriter(
                str(ident / f"smile.{kind}"), cv2.VideoWriter_fourcc(*codec), 25, (size, size)
            )
            for img in imgs:
                writer.write(img)
            writer.release()
    return folder


def dedicated_clips(folder: Path, roots: dict[str, Path], methods=("fpb_fomm", "tps_fp")) -> Path:
    """<method>/<dataset>/<clip_id>/*.png for every clip, frame for frame onset..offset (the clip's own
    frames: a stand-in for what the dedicated methods would generate)."""
    import cv2

    from magplus_lib.data import clips as cl
    from magplus_lib.data.datasets import load_clips

    folder = Path(folder)
    for dataset, root in roots.items():
        for clip in load_clips(dataset, root):
            frames = cl.load_frames(
                clip, 64, start=clip.frame_index(clip.onset), stop=clip.frame_index(clip.offset) + 1
            )
            for method in methods:
                out = folder / method / dataset / clip.clip_id
                out.mkdir(parents=True, exist_ok=True)
                for t, f in enumerate(frames):
                    img = (f.permute(1, 2, 0).numpy()[..., ::-1] * 255).round().astype(np.uint8)
                    cv2.imwrite(str(out / f"{t:04d}.png"), img)
    return folder


def fabricate(out: Path) -> dict[str, str]:
    """Every stand-in under `out`; returns the full profile's environment variables for them."""
    out = Path(out).resolve()
    ext = external_checkouts(out / "checkouts")
    roots = datasets(out / "data")
    python = cuda_python(out)
    landmark_cmd = f"{shlex.quote(sys.executable)} {shlex.quote(str(ext['landmarks']))} {{frames}}"
    return {
        "SAMM_ROOT": str(roots["samm"]),
        "CASME3_ROOT": str(roots["casme3"]),
        "GENERIC_VIDEOS": str(generic_videos(out / "videos")),
        "MACRO_VIDEOS": str(macro_videos(out / "macro_videos")),
        "RAFT_WEIGHTS": str(raft_large_file(out / "weights")),
        "FOMM_CHECKPOINT": str(fomm_vox_file(out / "weights")),
        "FSRT_REPO": str(ext["fsrt"]),
        "FSRT_CHECKPOINT": str(ext["ckpt"]),
        "FSRT_PYTHON": str(python),
        "METAPORTRAIT_REPO": str(ext["meta"]),
        "METAPORTRAIT_CHECKPOINT": str(ext["ckpt"]),
        "METAPORTRAIT_LANDMARK_CMD": landmark_cmd,
        "METAPORTRAIT_PYTHON": str(python),
        "EMOPORTRAITS_REPO": str(ext["emo"]),
        "EMOPORTRAITS_PYTHON": str(python),
        "DEDICATED_CLIPS": str(dedicated_clips(out / "dedicated", roots)),
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/full_standins.py OUT  (prints VAR=value lines for the full profile)")
    for var, value in fabricate(Path(sys.argv[1])).items():
        print(f"export {var}={shlex.quote(value)}")
