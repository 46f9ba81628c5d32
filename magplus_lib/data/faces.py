"""Face crops: one box per clip from an OpenCV Haar detection on the onset frame, cached per clip.

The detector is a profile setting (`data.crop.detector`: 'haar' or 'center'). When Haar finds no face
(SynthME's cartoon faces often defeat it), the documented fallback box is used: the centre square of
`fallback_fraction` of the frame's shorter side. Every fallback is logged as a warning and counted
(`crop_stats()`); it is never a silent guess. Crops are cached as uint8 arrays with a JSON side file
holding the box, so detection and resizing run once per clip, size and setting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from magplus_lib.data.clips import Clip, DataError
from magplus_lib.harness import atomicio

log = logging.getLogger(__name__)
_STATS: Counter = Counter()


@dataclasses.dataclass
class CropConfig:
    detector: str = "haar"  # 'haar' | 'center'
    cascade: str = "haarcascade_frontalface_default.xml"  # file in cv2.data.haarcascades
    scale_factor: float = 1.1
    min_neighbors: int = 4
    min_face_fraction: float = 0.25  # smallest face side accepted, as a share of the shorter frame side
    margin: float = 0.15  # the square box grows by this share of the face side on every side
    fallback_fraction: float = 0.8  # fallback: centre square of this share of the shorter side
    detect_max_side: int = 480  # frames are downscaled to this for detection (speed on 1280x720)
    cache_format: str = "npy"  # 'npy' (raw, memory-mapped by the pair datasets) or 'jpg' (q95, ~10x smaller)


def as_config(crop) -> CropConfig:
    if crop is None:
        return CropConfig()
    if isinstance(crop, CropConfig):
        return crop
    from magplus_lib.harness.profiles import from_dict

    return from_dict(CropConfig, crop, "data.crop")


def crop_stats() -> dict:
    """Counts of boxes from the detector ('detected') and from the fallback ('fallback') in this process."""
    return dict(_STATS)


@dataclasses.dataclass
class Box:
    x0: int
    y0: int
    side: int
    detected: bool


def _clamp_square(cx: float, cy: float, side: float, w: int, h: int) -> tuple[int, int, int]:
    side = int(round(min(side, w, h)))
    x0 = int(round(min(max(cx - side / 2, 0), w - side)))
    y0 = int(round(min(max(cy - side / 2, 0), h - side)))
    return x0, y0, side


@__import__("functools").lru_cache(maxsize=4)
def _cascade(name: str):
    import cv2

    path = Path(cv2.data.haarcascades) / name
    clf = cv2.CascadeClassifier(str(path))
    if clf.empty():
        raise DataError(f"{path}: Haar cascade not found or unreadable")
    return clf


def face_box(image_rgb_u8: np.ndarray, crop: CropConfig | dict | None = None, where: str = "") -> Box:
    """The square crop box of one frame (H, W, 3) uint8: largest Haar face + margin, else the fallback."""
    import cv2

    cfg = as_config(crop)
    h, w = image_rgb_u8.shape[:2]
    if cfg.detector not in ("haar", "center"):
        raise DataError(f"data.crop.detector must be 'haar' or 'center', not {cfg.detector!r}")
    if cfg.detector == "haar":
        gray = cv2.cvtColor(image_rgb_u8, cv2.COLOR_RGB2GRAY) if image_rgb_u8.ndim == 3 else image_rgb_u8
        f = min(1.0, cfg.detect_max_side / max(h, w))
        small = cv2.resize(gray, (int(w * f), int(h * f)), interpolation=cv2.INTER_AREA) if f < 1 else gray
        min_side = max(12, int(cfg.min_face_fraction * min(small.shape[:2])))
        faces = _cascade(cfg.cascade).detectMultiScale(
            cv2.equalizeHist(small),
            scaleFactor=cfg.scale_factor,
            minNeighbors=cfg.min_neighbors,
            minSize=(min_side, min_side),
        )
        if len(faces):
            x, y, fw, fh = max(faces, key=lambda r: r[2] * r[3]) / f
            side = max(fw, fh) * (1 + 2 * cfg.margin)
            _STATS["detected"] += 1
            return Box(*_clamp_square(x + fw / 2, y + fh / 2, side, w, h), detected=True)
        _STATS["fallback"] += 1
        log.warning(
            "no face found by Haar in %s: using the centre %.0f%% box (fallback #%d)",
            where or "frame",
            100 * cfg.fallback_fraction,
            _STATS["fallback"],
        )
    else:
        _STATS["center"] += 1
    return Box(*_clamp_square(w / 2, h / 2, cfg.fallback_fraction * min(w, h), w, h), detected=False)


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: missing or unreadable frame")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _cache_key(clip: Clip, size: int, cfg: CropConfig) -> str:
    # File sizes and times of the end frames: a regenerated corpus with the same names is not served stale.
    stats = [(p.stat().st_size, p.stat().st_mtime_ns) for p in (clip.frame_paths[0], clip.frame_paths[-1])]
    ident = json.dumps(
        [dataclasses.asdict(cfg), size, [str(p) for p in clip.frame_paths], stats], sort_keys=True
    )
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def clip_box(clip: Clip, crop: CropConfig | dict | None = None) -> Box:
    """The clip's crop box, detected on its onset frame."""
    return face_box(_read_rgb(clip.frame_paths[clip.onset_index]), crop, where=f"clip {clip.clip_id}")


def cropped_frames(
    clip: Clip, size: int, cache_dir: str | Path | None, crop: CropConfig | dict | None = None
) -> torch.Tensor:
    """All frames of the clip cropped with its onset box and resized: float32 (T, 3, size, size) in [0, 1].

    With a `cache_dir`, crops are stored under cache_dir/<dataset>/ and reused.
    """
    arr, _ = cropped_uint8(clip, size, cache_dir, crop)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div_(255.0)


def _write_cache(path: Path, meta_path: Path, out: np.ndarray, fmt: str) -> None:
    import cv2

    if fmt == "npy":
        with atomicio.atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, out)
        return
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for i, frame in enumerate(out):
        cv2.imwrite(
            str(tmp / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def _read_cache(path: Path, fmt: str, n: int, mmap: bool) -> np.ndarray:
    if fmt == "npy":
        arr = np.load(path, mmap_mode="r" if mmap else None)
    else:
        arr = np.stack([_read_rgb(path / f"{i:05d}.jpg") for i in range(n)])
    if len(arr) != n:
        raise ValueError(f"{len(arr)} cached frames for a clip of {n}")
    return arr


def cropped_uint8(
    clip: Clip,
    size: int,
    cache_dir: str | Path | None,
    crop: CropConfig | dict | None = None,
    mmap: bool = False,
) -> tuple[np.ndarray, Box]:
    """(T, size, size, 3) uint8 crops and the box used (`mmap`: a read-only memory map of an npy cache)."""
    import cv2

    cfg = as_config(crop)
    if cfg.cache_format not in ("npy", "jpg"):
        raise DataError(f"data.crop.cache_format must be 'npy' or 'jpg', not {cfg.cache_format!r}")
    path = meta_path = None
    if cache_dir is not None:
        stem = f"{clip.clip_id.replace('/', '_')}_{size}_{_cache_key(clip, size, cfg)}"
        folder = Path(cache_dir) / clip.dataset
        path = folder / (f"{stem}.npy" if cfg.cache_format == "npy" else stem)
        meta_path = folder / f"{stem}.json"
        if path.exists() and meta_path.is_file():  # the JSON is written last: its presence means complete
            try:
                meta = json.loads(meta_path.read_text())
                return _read_cache(path, cfg.cache_format, len(clip), mmap), Box(**meta["box"])
            except (OSError, ValueError, KeyError, DataError) as exc:
                log.warning("%s: unreadable crop cache (%s), recomputing", path, exc)
    first = _read_rgb(clip.frame_paths[clip.onset_index])
    box = face_box(first, cfg, where=f"clip {clip.clip_id}")
    out = np.empty((len(clip), size, size, 3), np.uint8)
    for i, p in enumerate(clip.frame_paths):
        img = first if i == clip.onset_index else _read_rgb(p)
        if img.shape != first.shape:
            raise DataError(f"{p}: frame size {img.shape} differs from the onset frame's {first.shape}")
        patch = img[box.y0 : box.y0 + box.side, box.x0 : box.x0 + box.side]
        interp = cv2.INTER_AREA if box.side >= size else cv2.INTER_LINEAR
        out[i] = cv2.resize(patch, (size, size), interpolation=interp)
    if path is not None:
        _write_cache(path, meta_path, out, cfg.cache_format)
        meta = {
            "clip_id": clip.clip_id,
            "size": size,
            "box": dataclasses.asdict(box),
            "crop": dataclasses.asdict(cfg),
        }
        atomicio.write_json(meta_path, meta)
        if cfg.cache_format == "jpg":  # hand out what later reads will see (JPEG-decoded), not the raw crops
            out = _read_cache(path, "jpg", len(clip), False)
    return out, box


def crop_field(field: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """A displacement (..., 2, H, W) on the full frame, cut to `box` and resized to size, in crop pixels.

    Uses the same mapping as the frame crop (pixel centres, align_corners=False), so ground-truth
    motion can be compared with motion measured on cropped frames.
    """
    import torch.nn.functional as F

    lead = field.shape[:-3]
    f = field.reshape(-1, 2, *field.shape[-2:])[:, :, box.y0 : box.y0 + box.side, box.x0 : box.x0 + box.side]
    f = F.interpolate(
        f.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=box.side > size
    )
    return (f * (size / box.side)).reshape(*lead, 2, size, size)


def onset_crop(clip, crop=None) -> np.ndarray:
    """The clip's onset frame cut to its face box (`faces.face_box`) at the frame's own resolution:
    (side, side, 3) uint8 RGB: the box `faces.cropped_uint8` uses, before its resize."""
    import cv2

    path = clip.frame_paths[clip.onset_index]
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: missing or unreadable frame")
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    box = face_box(rgb, crop, where=f"clip {clip.clip_id}")
    return np.ascontiguousarray(rgb[box.y0 : box.y0 + box.side, box.x0 : box.x0 + box.side])
