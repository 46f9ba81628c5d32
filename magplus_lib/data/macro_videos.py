"""A user's macro-expression videos of real faces: the backbones' competence check on real data.

The paper's backbones are macro-expression animators; whether one is competent at that job on real faces
is measured on clips the user supplies, with the bar the embedded backbones meet on SynthME
(`magplus_lib.backbones.competence`); today through `benchmarks/backbone_real_competence.py`, and from
`03_backbones` once that stage is next retrained (its cache key would change).

Layout: ``<root>/<identity>/<clip>``, where a clip is a video file (.mp4, .avi, .mov, .mkv, .webm) or a
folder of frames (.jpg, .png; read in numeric order), starting at a neutral face, e.g. CAS(ME)^3 Part
A's macro-expression intervals or any expression videos. The identity folders let the transfer check
take its source from another person.

No annotation is needed: frame 0 is the onset, the clip is thinned to `max_frames` evenly spaced frames,
and the apex is the thinned frame that moves most from frame 0 (mean Farneback magnitude at 64 px).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from magplus_lib.backbones.competence import HeldoutClip
from magplus_lib.data.clips import DataError, frame_number

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_clips(root: str | Path) -> list[tuple[str, Path]]:
    """(identity, clip path) for every clip under `root`, sorted; errors name the folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"macro videos: folder {root} does not exist")
    out = []
    for ident in sorted(p for p in root.iterdir() if p.is_dir()):
        for clip in sorted(ident.iterdir()):
            is_video = clip.is_file() and clip.suffix.lower() in VIDEO_SUFFIXES
            is_frames = clip.is_dir() and any(f.suffix.lower() in FRAME_SUFFIXES for f in clip.iterdir())
            if is_video or is_frames:
                out.append((ident.name, clip))
    if not out:
        raise DataError(f"macro videos: {root} holds no <identity>/<clip> video or frame folder")
    if len({i for i, _ in out}) < 2:
        raise DataError(f"macro videos: {root} holds one identity; cross-identity transfer needs two or more")
    return out


def read_clip(path: Path) -> np.ndarray:
    """All frames of a video file or frame folder: (T, H, W, 3) uint8 RGB."""
    import cv2

    frames = []
    if path.is_dir():
        files = sorted((f for f in path.iterdir() if f.suffix.lower() in FRAME_SUFFIXES), key=frame_number)
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise DataError(f"{f}: missing or unreadable frame")
            frames.append(img)
    else:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise DataError(f"{path}: not a video OpenCV can open")
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(img)
        cap.release()
    if len(frames) < 2:
        raise DataError(f"{path}: {len(frames)} readable frame(s); a clip needs at least 2")
    if any(f.shape != frames[0].shape for f in frames):
        raise DataError(f"{path}: frames of different sizes")
    return np.stack([f[..., ::-1] for f in frames])


def _to_grey(frames: torch.Tensor) -> torch.Tensor:
    luma = 0.299 * frames[:, 0] + 0.587 * frames[:, 1] + 0.114 * frames[:, 2]
    return luma[:, None].repeat(1, 3, 1, 1)


def apex_of(frames: torch.Tensor) -> int:
    """Index of the frame that moves most from frame 0 (mean Farneback magnitude at 64 px), >= 1."""
    from magplus_lib.magnifier.flow import farneback_flow

    small = F.interpolate(frames, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    motion = [float(np.linalg.norm(farneback_flow(small[0], f), axis=-1).mean()) for f in small[1:]]
    return 1 + int(np.argmax(motion))


def load_macro_videos(
    root: str | Path, size: int, crop=None, max_frames: int = 12, limit: int | None = None, grey: bool = False
) -> list[HeldoutClip]:
    """The clips under `root` as competence clips: face crop of frame 0 (`faces.face_box`) applied to every
    frame, resized to `size`, thinned to `max_frames`, optionally grey; at most `limit` clips, taken
    round-robin over identities so that a limit keeps several people."""
    from magplus_lib.data.faces import face_box

    found = find_clips(root)
    by_ident: dict[str, list[Path]] = {}
    for ident, path in found:
        by_ident.setdefault(ident, []).append(path)
    order = []
    for k in range(max(len(v) for v in by_ident.values())):
        order += [(i, v[k]) for i, v in by_ident.items() if k < len(v)]
    out = []
    for ident, path in order[:limit]:
        raw = read_clip(path)
        box = face_box(raw[0], crop, where=str(path))
        patch = torch.from_numpy(
            np.ascontiguousarray(raw[:, box.y0 : box.y0 + box.side, box.x0 : box.x0 + box.side])
        )
        keep = np.unique(np.linspace(0, len(raw) - 1, min(max_frames, len(raw))).round().astype(int))
        frames = patch[keep].permute(0, 3, 1, 2).float() / 255
        frames = F.interpolate(
            frames, size=(size, size), mode="bilinear", align_corners=False, antialias=box.side > size
        ).clamp(0, 1)
        if grey:
            frames = _to_grey(frames)
        out.append(HeldoutClip(f"{ident}/{path.name}", ident, frames, apex_of(frames)))
    return out
