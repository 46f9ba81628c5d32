"""`python -m magplus_lib magnify`: magnify (or, with a DeMagPlus checkpoint and alpha < 1, attenuate)
the motion of a clip relative to a reference frame.

IN is a folder of image frames (sorted by name) or a video file. OUT is a folder of PNG frames (a
name without a suffix, or ending in '/') or a video whose container its suffix names (.mp4, .avi,
.mkv, .mov, .m4v). Nothing is computed before every argument and the output location are checked;
OUT never is, contains or lies inside IN; an existing OUT is replaced, whole, only with --overwrite.
The result is written beside OUT under a temporary name and renamed, so OUT is either the old one or
the complete new one. Every failure is one line `error: ...` and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
# The codec each output container is written with (all ship with opencv-python-headless).
VIDEO_WRITERS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
PYTORCH_SUFFIXES = {".pth", ".pt", ".ckpt", ".tar", ".bin"}
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class MagnifyError(ValueError):
    """Bad input to the magnify command (missing/unreadable files, mixed sizes, bad output path, ...)."""


def read_frames(path: str | Path):
    """(frames float32 (T, 3, H, W) in [0, 1], fps) from a folder of images or a video file.

    A video that yields fewer frames than its container announces is read as far as it goes, with a
    warning naming both counts (a truncated file)."""
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
            raise MagnifyError(f"cannot open video {path} (not a video, or a container OpenCV cannot read)")
        fps = cap.get(cv2.CAP_PROP_FPS) or fps
        announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        while True:
            ok, img = cap.read()
            if not ok:
                break
            arrays.append(img)
        cap.release()
        if not arrays:
            raise MagnifyError(f"video {path} has no readable frames")
        if announced > len(arrays):
            print(
                f"warning: video {path} announces {announced} frames but only {len(arrays)} could be "
                f"read (truncated or corrupt?); magnifying those {len(arrays)}",
                file=sys.stderr,
            )
    rgb = np.stack([a[..., ::-1] for a in arrays]).astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).contiguous(), fps


def output_kind(output: str) -> str:
    """'folder' or a video suffix, from how OUT is spelt; anything else is refused."""
    path = Path(output)
    suffix = path.suffix.lower()
    if output.endswith(("/", os.sep)) or not suffix:
        return "folder"
    if suffix in VIDEO_WRITERS:
        return suffix
    if suffix in IMAGE_SUFFIXES:
        raise MagnifyError(
            f"--output {output}: an image file name; give a folder for PNG frames or a video "
            f"({', '.join(sorted(VIDEO_WRITERS))})"
        )
    raise MagnifyError(
        f"--output {output}: unknown container '{suffix}'; write a video as "
        f"{', '.join(sorted(VIDEO_WRITERS))}, or frames into a folder (a name ending in '/')"
    )


def _is_within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output(inp: Path, output: str, overwrite: bool) -> tuple[Path, str]:
    """(OUT, kind) once OUT is known to be writable and not to touch IN (see the module docstring)."""
    out = Path(output)
    kind = output_kind(output)
    src, dst = inp.resolve(), out.resolve()
    if _is_within(dst, src):
        raise MagnifyError(f"--output {out} is or lies inside the input {inp}; choose another location")
    if _is_within(src, dst):
        raise MagnifyError(f"--output {out} contains the input {inp}; choose another location")
    if out.exists() or out.is_symlink():
        if kind == "folder" and not out.is_dir():
            raise MagnifyError(f"--output {out} exists and is not a folder")
        if kind != "folder" and out.is_dir():
            raise MagnifyError(f"--output {out} exists and is a folder, not a {kind} file")
        if not overwrite and (kind != "folder" or any(out.iterdir())):
            what = "a non-empty folder" if kind == "folder" else "a file"
            raise MagnifyError(f"--output {out} exists ({what}); pass --overwrite to replace it whole")
    parent = dst.parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise MagnifyError(f"--output {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MagnifyError(f"--output {out}: no permission to write in {existing}")
    if kind != "folder":
        _probe_writer(existing, kind)
    return out, kind


def _probe_writer(folder: Path, suffix: str) -> None:
    """Open (and discard) a tiny writer of that container, so a missing codec is found before computing."""
    import cv2

    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".probe.tmp{os.getpid()}.", suffix=suffix)
    os.close(fd)
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*VIDEO_WRITERS[suffix]), 25.0, (16, 16))
        ok = writer.isOpened()
        writer.release()
    finally:
        Path(tmp).unlink(missing_ok=True)
    if not ok:
        raise MagnifyError(f"OpenCV cannot write {suffix} videos ({VIDEO_WRITERS[suffix]}) on this machine")


def write_frames(frames, path: str | Path, fps: float = 30.0, overwrite: bool = False) -> Path:
    """Write (T, 3, H, W) frames in [0, 1] as numbered PNGs in a folder, or as a video (by suffix).

    Written under a temporary name beside `path` and renamed; an existing `path` is replaced whole
    only with `overwrite` (an empty folder is always replaced)."""
    import cv2
    import torch

    path = Path(path)
    kind = output_kind(str(path))
    u8 = frames.clamp(0, 1).mul(255).add(0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)
    if kind != "folder":
        from magplus_lib.harness.atomicio import atomic_path

        if path.exists() and not overwrite:
            raise MagnifyError(f"--output {path} exists; pass --overwrite to replace it")
        h, w = u8.shape[1:3]
        with atomic_path(path) as tmp:
            writer = cv2.VideoWriter(
                str(tmp), cv2.VideoWriter_fourcc(*VIDEO_WRITERS[kind]), float(fps), (w, h)
            )
            if not writer.isOpened():
                raise MagnifyError(f"cannot open a {kind} video writer for {path}")
            for frame in u8:
                writer.write(np.ascontiguousarray(frame[..., ::-1]))
            writer.release()
        return path
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise MagnifyError(f"--output {path} is a non-empty folder; pass --overwrite to replace it")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp{os.getpid()}."))
    try:
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes private folders; outputs are ordinary ones
        for i, frame in enumerate(u8):
            if not cv2.imwrite(str(tmp / f"{i:05d}.png"), np.ascontiguousarray(frame[..., ::-1])):
                raise MagnifyError(f"cannot write {path / f'{i:05d}.png'}")
            (tmp / f"{i:05d}.png").chmod(0o666 & ~umask)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


def _read_mask(path: str | Path, h: int, w: int):
    import cv2
    import torch

    path = Path(path)
    if not path.is_file():
        raise MagnifyError(f"mask not found: {path}")
    if path.suffix == ".npy":
        try:
            m = np.load(path).astype(np.float32)
        except (ValueError, OSError) as exc:
            raise MagnifyError(f"cannot read mask {path}: {exc}") from None
    else:
        m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise MagnifyError(f"cannot read mask {path}")
        m = m.astype(np.float32) / 255.0
    if m.shape != (h, w):
        size = f"{m.shape[1]}x{m.shape[0]}" if m.ndim == 2 else f"an array of shape {m.shape}"
        raise MagnifyError(f"mask {path} is {size}, frames are {w}x{h}")
    return torch.from_numpy(np.clip(m, 0, 1))


def load_checkpoint(path: Path, device):
    """Our MagPlus / DeMagPlus .safetensors checkpoint, or FlowMag's released torch checkpoint; an error
    that says what kind of file `path` is when it is neither."""
    from magplus_lib.magnifier.weights import load_flowmag_checkpoint, load_magnifier

    if path.is_dir():
        raise MagnifyError(f"--checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise MagnifyError(f"--checkpoint {path}: file not found")
    if path.suffix.lower() in PYTORCH_SUFFIXES:
        try:
            return load_flowmag_checkpoint(path, device)
        except ValueError as exc:
            raise MagnifyError(
                f"--checkpoint {path} is a PyTorch pickle ({path.suffix}) but not FlowMag's released "
                f"checkpoint ({exc}); magnify reads MagPlus/DeMagPlus .safetensors files or FlowMag's"
            ) from None
    try:
        return load_magnifier(path, device)
    except ValueError as exc:
        raise MagnifyError(
            f"--checkpoint {path} is not a MagPlus/DeMagPlus safetensors checkpoint: {exc}"
        ) from None


def _trained_alpha_range(path: Path) -> tuple[float, float] | None:
    from magplus_lib.magnifier.weights import read_side

    try:
        cfg = read_side(path).get("training", {}).get("config", {})
    except ValueError:
        return None
    if "alpha_min" in cfg and "alpha_max" in cfg:
        return float(cfg["alpha_min"]), float(cfg["alpha_max"])
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m magplus_lib magnify", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="MagPlus / DeMagPlus .safetensors checkpoint")
    p.add_argument("--alpha", required=True, type=float, help="motion factor (> 1 magnifies, < 1 attenuates)")
    p.add_argument("--input", required=True, help="folder of frames (sorted by name) or a video file")
    p.add_argument(
        "--output", required=True, help="folder of PNG frames, or a video (.mp4, .avi, .mkv, .mov, .m4v)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (whole)")
    p.add_argument("--reference", type=int, default=0, help="index of the reference frame (default 0)")
    p.add_argument("--mask", default=None, help="optional soft mask (.npy or grey image, 1 = magnify)")
    p.add_argument("--batch-size", type=int, default=8, help="frames per forward pass (>= 1)")
    p.add_argument(
        "--tile", type=int, default=512, help="frames larger than this are processed in tiles (0: never)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    return p


def _check_arguments(args) -> None:
    from magplus_lib.magnifier.inference import TILE_OVERLAP

    if not (args.alpha > 0 and np.isfinite(args.alpha)):
        raise MagnifyError(f"--alpha must be a positive number, got {args.alpha}")
    if args.batch_size < 1:
        raise MagnifyError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.tile < 0 or 0 < args.tile <= TILE_OVERLAP:
        raise MagnifyError(
            f"--tile must be 0 (never tile) or larger than the tiles' overlap ({TILE_OVERLAP}), "
            f"got {args.tile}"
        )
    if not _DEVICE.match(args.device):
        raise MagnifyError(f"--device {args.device!r}: expected auto, cpu, cuda, cuda:N or mps")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        from magplus_lib.harness.runtime import pick_device
        from magplus_lib.magnifier.inference import magnify_sequence
        from magplus_lib.magnifier.weights import read_side

        _check_arguments(args)
        ckpt = Path(args.checkpoint)
        if ckpt.is_dir():
            raise MagnifyError(f"--checkpoint {ckpt} is a folder, not a checkpoint file")
        if not ckpt.is_file():
            raise MagnifyError(f"--checkpoint {ckpt}: file not found")
        inp = Path(args.input)
        if not inp.exists():
            raise MagnifyError(f"--input {inp}: not found")
        out, _kind = check_output(inp, args.output, args.overwrite)
        if args.mask and not Path(args.mask).is_file():
            raise MagnifyError(f"--mask {args.mask}: not found")
        try:
            device = pick_device(args.device)
        except RuntimeError as exc:
            raise MagnifyError(f"--device {args.device}: {exc}") from None
        model = load_checkpoint(ckpt, device)
        direction = read_side(ckpt).get("direction") if ckpt.suffix == ".safetensors" else None
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
        trained = _trained_alpha_range(ckpt)
        if trained and not trained[0] - 1e-9 <= args.alpha <= trained[1] + 1e-9:
            print(
                f"warning: alpha {args.alpha:g} is outside the range {trained[0]:g}-{trained[1]:g} "
                f"{ckpt.name} was trained on; expect artefacts",
                file=sys.stderr,
            )
        frames, fps = read_frames(inp)
        mask = _read_mask(args.mask, *frames.shape[-2:]) if args.mask else None
        result = magnify_sequence(
            model,
            frames,
            args.alpha,
            reference=args.reference,
            mask=mask,
            batch_size=args.batch_size,
            tile=args.tile or None,
            progress=True,
        )
        dest = write_frames(result, out, fps, overwrite=args.overwrite)
        print(f"wrote {len(result)} frames magnified x{args.alpha:g} to {dest}")
        return 0
    except (MagnifyError, ValueError, OSError, RuntimeError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the output was not written", file=sys.stderr)
        return 130
