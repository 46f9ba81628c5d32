"""Generic motion pairs for pretraining: SynthME's own pairs, and pairs sampled from a folder of
videos (the full profile's generic footage) with a flow filter.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from magplus_lib.data.clips import DataError
from magplus_lib.data.synthme.config import SynthMEConfig
from magplus_lib.data.synthme.fields import field_strain
from magplus_lib.data.synthme.identity import _smooth_noise
from magplus_lib.data.synthme.render import _render_sequence
from magplus_lib.data.synthme.writers import _write_jpeg
from magplus_lib.harness import atomicio

log = logging.getLogger(__name__)


@dataclasses.dataclass
class GenericFilter:
    """FlowMag's pair filter (reference/flowmag.md); flow measured by Farneback at `filter_size`."""

    mse_min: float = 10.0  # 0-255 scale
    p999_max: float = 20.0
    p80_max: float = 2.0
    p0001_max: float = 0.1
    filter_size: int | None = 512
    max_gap: int = 3
    pairs_per_video: int = 50
    out_size: int = 512

    def stats(self, img0_u8: np.ndarray, img1_u8: np.ndarray) -> dict:
        import cv2

        from magplus_lib.magnifier.flow import farneback_flow

        a, b = img0_u8, img1_u8
        if self.filter_size:
            a = cv2.resize(a, (self.filter_size, self.filter_size), interpolation=cv2.INTER_AREA)
            b = cv2.resize(b, (self.filter_size, self.filter_size), interpolation=cv2.INTER_AREA)
        mag = np.linalg.norm(farneback_flow(a, b), axis=-1)
        p0001, p80, p999 = np.percentile(mag, [0.01, 80, 99.9])
        mse = float(((a.astype(np.float32) - b.astype(np.float32)) ** 2).mean())
        return {"mse": mse, "flow_p0001": float(p0001), "flow_p80": float(p80), "flow_p999": float(p999)}

    def keep(self, st: dict) -> bool:
        return (
            st["mse"] > self.mse_min
            and st["flow_p999"] <= self.p999_max
            and st["flow_p80"] <= self.p80_max
            and st["flow_p0001"] <= self.p0001_max
        )


def _texture_canvas(rng, S: int) -> np.ndarray:
    """A natural-looking random texture: coloured multi-octave noise, shapes, lines, soft shading."""
    import cv2

    img = np.zeros((S, S, 3), np.float32)
    for cells, w in ((3, 0.5), (8, 0.3), (24, 0.15), (64, 0.08)):
        img += w * _smooth_noise(rng, S, cells, 3)
    img = 0.5 + 0.12 * img
    for _ in range(int(rng.integers(5, 25))):
        col = tuple(rng.uniform(0, 1, 3).tolist())
        kind = rng.integers(3)
        c = tuple(rng.integers(0, S, 2).tolist())
        if kind == 0:
            cv2.ellipse(
                img,
                c,
                tuple(rng.integers(2, S // 4, 2).tolist()),
                float(rng.uniform(0, 180)),
                0,
                360,
                col,
                -1,
            )
        elif kind == 1:
            cv2.rectangle(img, c, tuple(rng.integers(0, S, 2).tolist()), col, -1)
        else:
            cv2.line(
                img, c, tuple(rng.integers(0, S, 2).tolist()), col, int(rng.integers(1, max(2, S // 40)))
            )
    img *= 1 + 0.1 * _smooth_noise(rng, S, 20, 1)
    return cv2.GaussianBlur(np.clip(img, 0, 1), (0, 0), 1.0)


def random_motion(rng, size: int, magnitude: float) -> np.ndarray:
    """Smooth local motion (a few moving blobs, sometimes a slight global drift), peak = magnitude.

    Mostly local so that part of the frame stays still, as FlowMag's filter requires (0.01st
    percentile of |flow| <= 0.1 px).
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size - 0.5
    f = np.zeros((2, size, size))
    for _ in range(int(rng.integers(1, 4))):
        c = rng.uniform(-0.3, 0.3, 2)
        sig = rng.uniform(0.08, 0.2)
        g = np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / (2 * sig**2))
        A = rng.standard_normal((2, 2)) * 0.3
        v = rng.standard_normal(2)
        f[0] += (v[0] + A[0, 0] * (xx - c[0]) / sig + A[0, 1] * (yy - c[1]) / sig) * g
        f[1] += (v[1] + A[1, 0] * (xx - c[0]) / sig + A[1, 1] * (yy - c[1]) / sig) * g
    f *= magnitude / (np.sqrt((f**2).sum(0)).max() + 1e-9)
    if rng.random() < 0.3:
        f += rng.standard_normal((2, 1, 1)) * 0.03
    strain = field_strain(f)
    return f * min(1.0, 0.6 / max(strain, 1e-9))


def write_generic(
    cfg: SynthMEConfig,
    root: Path,
    filt: GenericFilter | None = None,
    progress=None,
    motion_px: list | None = None,
    stream: int = 4,
) -> int:
    """Synthetic generic-motion pretraining pairs + pairs.csv (the kept-pair index); returns pairs kept.

    `motion_px` (default cfg.generic_motion_px) is the log-uniform range of the peak motion; `stream`
    picks the random stream, so a second set (the inverse stage's) has its own textures.
    """
    import cv2
    import pandas as pd

    filt = filt or GenericFilter(filter_size=None)
    rng = np.random.default_rng([cfg.seed, stream])
    size, ss = cfg.generic_size, 2
    (root / "pairs").mkdir(parents=True, exist_ok=True)
    rows, tried = [], 0
    lo, hi = cfg.generic_motion_px if motion_px is None else motion_px
    while len(rows) < cfg.generic_pairs and tried < 10 * cfg.generic_pairs + 20:
        tried += 1
        canvas = cv2.GaussianBlur(_texture_canvas(rng, size * ss), (0, 0), 0.5 * ss)
        mag = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # log-uniform: many small, some large
        motion = random_motion(rng, size, mag)
        fields = np.concatenate([motion, np.zeros_like(motion)])
        fr = _render_sequence(canvas, ss, size, np.zeros((2, 2)), [0.0, 1.0], [0.0, 0.0], fields)
        fr = (fr + cfg.noise_std * torch.from_numpy(rng.standard_normal(fr.shape).astype(np.float32))).clamp(
            0, 1
        )
        u8 = [(f.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8) for f in fr]
        st = filt.stats(u8[0], u8[1])
        if not filt.keep(st):
            continue
        i = len(rows)
        names = [f"pairs/{i:06d}_0.jpg", f"pairs/{i:06d}_1.jpg"]
        for name, f in zip(names, fr):
            _write_jpeg(root / name, f, cfg.jpeg_quality, False)
        rows.append(
            {
                "pair_id": i,
                "frame0": names[0],
                "frame1": names[1],
                "source": "synthetic",
                "gt_max_px": float(np.sqrt((motion**2).sum(0)).max()),
                **st,
            }
        )
        if progress is not None:
            progress.update(1)
    with atomicio.atomic_path(root / "pairs.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return len(rows)


def index_generic_videos(
    source: str | Path, out_root: str | Path, filt: GenericFilter, n_pairs: int, seed: int = 0
) -> int:
    """Sample frame pairs from a folder of videos or frame folders, keep those passing the filter.

    Kept frames are stored squashed to `out_size` under out_root/pairs with the index pairs.csv.
    """
    import cv2
    import pandas as pd
    from tqdm.auto import tqdm

    source, out_root = Path(source), Path(out_root)
    if not source.is_dir():
        raise DataError(f"{source}: generic video folder does not exist")
    vids = sorted(
        p for p in source.rglob("*") if p.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm")
    )
    dirs = sorted({p.parent for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")})
    if not vids and not dirs:
        raise DataError(f"{source}: no videos (.mp4/.avi/.mov/.mkv/.webm) or frame folders found")
    rng = np.random.default_rng([seed, 9])
    (out_root / "pairs").mkdir(parents=True, exist_ok=True)
    rows = []

    def read_video(p):
        cap = cv2.VideoCapture(str(p))
        frames = []
        ok, f = cap.read()
        while ok:
            frames.append(f)
            ok, f = cap.read()
        cap.release()
        return frames

    sources = [("video", v) for v in vids] + [("frames", d) for d in dirs]
    for kind, src in tqdm(sources, desc="generic pairs"):
        if len(rows) >= n_pairs:
            break
        if kind == "video":
            frames = read_video(src)
        else:
            frames = [
                cv2.imread(str(p))
                for p in sorted(src.iterdir())
                if p.suffix.lower() in (".jpg", ".jpeg", ".png")
            ]
        frames = [f for f in frames if f is not None]
        if len(frames) < 2:
            continue
        for _ in range(filt.pairs_per_video):
            gap = int(rng.integers(1, filt.max_gap + 1))
            if len(frames) <= gap:
                break
            t = int(rng.integers(0, len(frames) - gap))
            a, b = (
                cv2.resize(frames[i], (filt.out_size, filt.out_size), interpolation=cv2.INTER_AREA)
                for i in (t, t + gap)
            )
            st = filt.stats(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY))
            if not filt.keep(st):
                continue
            i = len(rows)
            names = [f"pairs/{i:06d}_0.jpg", f"pairs/{i:06d}_1.jpg"]
            for name, img in zip(names, (a, b)):
                cv2.imwrite(str(out_root / name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            rows.append(
                {"pair_id": i, "frame0": names[0], "frame1": names[1], "source": f"{src}:{t}+{gap}", **st}
            )
            if len(rows) >= n_pairs:
                break
    if not rows:
        raise DataError(f"{source}: no frame pair passed the flow filter {filt}")
    if len(rows) < n_pairs:
        log.warning(
            "%s: only %d of the %d requested generic pairs passed the flow filter (%d sources, %d pairs "
            "tried per source); pretraining will see fewer distinct pairs",
            source,
            len(rows),
            n_pairs,
            len(sources),
            filt.pairs_per_video,
        )
    with atomicio.atomic_path(out_root / "pairs.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return len(rows)


def generic_pairs_stamp(source: str | Path, filt: GenericFilter, n_pairs: int, seed: int) -> dict:
    """What a generic-pair set is built from: the source folder's files (names, sizes, times), the
    filter, the count and the seed. A set whose stamp differs is stale."""
    source = Path(source).resolve()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else []
    digest = hashlib.sha256()
    for p in files:
        st = p.stat()
        digest.update(f"{p.relative_to(source)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return {
        "source": str(source),
        "files": len(files),
        "files_sha256": digest.hexdigest(),
        "filter": dataclasses.asdict(filt),
        "n_pairs": int(n_pairs),
        "seed": int(seed),
    }


def ensure_generic_pairs(
    source: str | Path, out_root: str | Path, filt: GenericFilter, n_pairs: int, seed: int = 0
) -> bool:
    """Sample the generic pairs unless out_root already holds the set this source, filter, count and
    seed give (its pairs.stamp.json); a stale set is removed first. Returns whether it sampled."""
    out_root = Path(out_root)
    stamp = generic_pairs_stamp(source, filt, n_pairs, seed)
    path = out_root / "pairs.stamp.json"
    if (out_root / "pairs.csv").is_file() and path.is_file():
        try:
            if json.loads(path.read_text()) == json.loads(json.dumps(stamp)):
                return False
        except json.JSONDecodeError:
            pass
    if out_root.exists():
        log.warning("%s: generic pairs from another source or setting; sampling them again", out_root)
        (out_root / "pairs.csv").unlink(missing_ok=True)
        shutil.rmtree(out_root / "pairs", ignore_errors=True)
    index_generic_videos(source, out_root, filt, n_pairs, seed)
    atomicio.write_json(path, stamp)
    return True
