"""`python -m magplus_lib magnify`: magnify (or, with a DeMagPlus checkpoint and alpha < 1, attenuate)
the motion of a clip relative to a reference frame.

IN is a folder of image frames (sorted by name) or a video file; OUT is a folder of PNG frames, or a
video when it ends in .mp4.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


class MagnifyError(ValueError):
    """Bad input to the magnify command (missing/unreadable files, mixed sizes, ...)."""


def read_frames(path: str | Path):
    """(frames float32 (T, 3, H, W) in [0, 1], fps) from a folder of images or a video file."""
    import cv2
    import torch

    path = Path(path)
    if not path.exists():
        raise MagnifyError(f"input not found: {path}")
    arrays: list[np.ndarray] = []
    fps = 30.0
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MagnifyError(
                f"input folder {path} holds no image frames ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise MagnifyError(f"cannot read frame {f} (corrupt or not an image)")
            if arrays and img.shape != arrays[0].shape:
                raise MagnifyError(
                    f"frame {f} is {img.shape[1]}x{img.shape[0]} but {files[0].name} is "
                    f"{arrays[0].shape[1]}x{arrays[0].shape[0]}: all frames must have the same size"
                )
            arrays.append(img)
    else:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise MagnifyError(f"cannot open video {path}")
        fps = cap.get(cv2.CAP_PROP_FPS) or fps
        while True:
            ok, img = cap.read()
            if not ok:
                break
            arrays.append(img)
        cap.release()
        if not arrays:
            raise MagnifyError(f"video {path} has no readable frames")
    rgb = np.stack([a[..., ::-1] for a in arrays]).astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).contiguous(), fps


def write_frames(frames, path: str | Path, fps: float = 30.0) -> Path:
    """Write (T, 3, H, W) frames in [0, 1] as numbered PNGs in a folder, or as an .mp4 video."""
    import cv2
    import torch

    from magplus_lib.atomicio import atomic_path

    path = Path(path)
    u8 = frames.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if path.suffix.lower() == ".mp4":
        h, w = u8.shape[1:3]
        with atomic_path(path) as tmp:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
            if not writer.isOpened():
                raise MagnifyError(f"cannot open a video writer for {path}")
            for frame in u8:
                writer.write(np.ascontiguousarray(frame[..., ::-1]))
            writer.release()
        path.chmod(0o644)  # temp files are created private; outputs are ordinary files
        return path
    path.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(u8):
        with atomic_path(path / f"{i:05d}.png") as tmp:
            if not cv2.imwrite(str(tmp), np.ascontiguousarray(frame[..., ::-1])):
                raise MagnifyError(f"cannot write {path / f'{i:05d}.png'}")
        (path / f"{i:05d}.png").chmod(0o644)
    return path


def _read_mask(path: str | Path, h: int, w: int):
    import cv2
    import torch

    path = Path(path)
    if not path.is_file():
        raise MagnifyError(f"mask not found: {path}")
    if path.suffix == ".npy":
        m = np.load(path).astype(np.float32)
    else:
        m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise MagnifyError(f"cannot read mask {path}")
        m = m.astype(np.float32) / 255.0
    if m.shape != (h, w):
        raise MagnifyError(f"mask {path} is {m.shape[1]}x{m.shape[0]}, frames are {w}x{h}")
    return torch.from_numpy(np.clip(m, 0, 1))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m magplus_lib magnify", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="MagPlus / DeMagPlus .safetensors checkpoint")
    p.add_argument("--alpha", required=True, type=float, help="motion factor (> 1 magnifies, < 1 attenuates)")
    p.add_argument("--input", required=True, help="folder of frames (sorted by name) or a video file")
    p.add_argument("--output", required=True, help="output folder of PNG frames, or a .mp4 file")
    p.add_argument("--reference", type=int, default=0, help="index of the reference frame (default 0)")
    p.add_argument("--mask", default=None, help="optional soft mask (.npy or grey image, 1 = magnify)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--tile", type=int, default=512, help="frames larger than this are processed in tiles (0: never)"
    )
    p.add_argument("--device", default="auto")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        from magplus_lib.magnifier import load_magnifier, magnify_sequence, read_side
        from magplus_lib.runtime import pick_device

        ckpt = Path(args.checkpoint)
        if not ckpt.is_file():
            raise MagnifyError(f"checkpoint not found: {ckpt}")
        if not args.alpha > 0:
            raise MagnifyError(f"--alpha must be positive, got {args.alpha}")
        model = load_magnifier(ckpt, pick_device(args.device))
        direction = read_side(ckpt).get("direction")
        if direction == "forward" and args.alpha < 1:
            print(
                f"warning: {ckpt.name} is a MagPlus (forward) checkpoint; use a DeMagPlus one to attenuate",
                file=sys.stderr,
            )
        if direction == "inverse" and args.alpha > 1:
            print(
                f"warning: {ckpt.name} is a DeMagPlus (inverse) checkpoint; use a MagPlus one to magnify",
                file=sys.stderr,
            )
        frames, fps = read_frames(args.input)
        mask = _read_mask(args.mask, *frames.shape[-2:]) if args.mask else None
        out = magnify_sequence(
            model,
            frames,
            args.alpha,
            reference=args.reference,
            mask=mask,
            batch_size=args.batch_size,
            tile=args.tile if args.tile and args.tile > 0 else None,
            progress=True,
        )
        dest = write_frames(out, args.output, fps)
        print(f"wrote {len(out)} frames magnified x{args.alpha:g} to {dest}")
        return 0
    except (MagnifyError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
